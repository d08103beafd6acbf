"""Tensor: a numpy array plus what reverse-mode autograd needs, with PyTorch's names and reprs.

The hot path is :func:`apply`: run an op's numpy forward and, when grad mode is on and an
input requires grad, record one node pointing at the op's declaration. Nodes keep edges to
their inputs' nodes (never to their own output), so graphs hold no reference cycles.
"""
from __future__ import annotations

import itertools
import numbers
import weakref
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from . import _dtype
from ._dtype import dtype as DType
from ._format import format_tensor
from .autograd import pool as _pool
from .autograd.grad_mode import _state
from .autograd.node import S1, S2, _give_data
from .errors import DtypeGradError, InplaceOnLeafError, ShapeError
from .registry import OpDef

__all__ = ["Tensor", "apply", "tensor", "as_tensor"]

_NO_EDGE = (None, 0)
_NO_PARAMS: dict = {}
_seq = itertools.count()
_HIDDEN_DTYPES = frozenset({np.dtype(np.int64), np.dtype(np.bool_)})


def _wrap(data: np.ndarray) -> "Tensor":
    t = object.__new__(Tensor)
    t._data = data
    t._requires_grad = False
    t._grad = None
    t._grad_fn = None
    t._output_nr = 0
    t._vbox = None
    t._base = None
    t._retains_grad = False
    t._accumulator = None
    t.name = None
    return t


def _version(t: "Tensor") -> int:
    return 0 if t._vbox is None else t._vbox[0]


def _vbox(t: "Tensor") -> list:
    if t._vbox is None:
        t._vbox = [0]
    return t._vbox


def _scalar_kind(v: object) -> int:
    if isinstance(v, (bool, np.bool_)):
        return 0
    if isinstance(v, numbers.Integral):
        return 1
    if isinstance(v, numbers.Real):
        return 2
    if isinstance(v, numbers.Complex):
        return 3
    raise TypeError(f"expected a Tensor or a Python number, got {type(v).__name__}: {v!r}")


def _forward(op: OpDef, datas: list, params: dict) -> np.ndarray:
    try:
        return op.forward(*datas, **params)
    except ValueError as e:  # numpy's broadcasting/shape complaints, said in our words
        shapes = ", ".join(str(tuple(d.shape)) for d in datas if isinstance(d, np.ndarray))
        raise ShapeError(f"{op.base}: cannot apply to inputs of shapes {shapes}: {e}") from None


def _promote(args: tuple, datas: list) -> list:
    """Cast inputs to PyTorch's result dtype (numpy's rules differ for mixed and integer
    inputs); the engine casts each gradient back to its input's dtype."""
    tens = tuple((a._data.dtype, a._data.ndim == 0) for a in args if isinstance(a, Tensor))
    kinds = tuple(_scalar_kind(a) for a in args if a is not None and not isinstance(a, Tensor))
    target = _dtype.result_type(tuple((_dtype.from_numpy_dtype(d), z) for d, z in tens), kinds,
                                _dtype.get_default_dtype()).np
    return [d.astype(target) if isinstance(a, Tensor) and d.dtype != target else d
            for a, d in zip(args, datas)]


def apply(op: OpDef, args: tuple, params: dict = _NO_PARAMS) -> "Tensor":
    """Run ``op`` on tensors (or Python numbers standing for wrapped scalars) and record it.

    >>> import verigrad as vg
    >>> from verigrad.registry import REGISTRY
    >>> x = vg.tensor(2.0, requires_grad=True)
    >>> apply(REGISTRY["exp"], (x,)).grad_fn.name()
    'ExpBackward0'
    """
    # The common calls (one tensor, two tensors of one float dtype, a tensor and a Python
    # number) take a path of their own: scalar graphs spend most of their time here, not in
    # numpy. It computes exactly what _apply_general does for these arguments (the same
    # forward call, the same node fields); everything else goes there.
    n = len(args)
    if n == 1:
        a = args[0]
        if type(a) is not Tensor:
            return _apply_general(op, args, params)
        da = a._data
        dt = da.dtype
        if dt is not _F64 and dt is not _F32 and dt.kind not in "fc":
            return _apply_general(op, args, params)
        sc = op.scalar
        if sc is not None and not da.ndim and not params and (dt is _F64 or dt is _F32):
            out = sc(da[()])  # on a numpy scalar: the same bits, a fraction of the cost
        elif (da.nbytes >= _POOL_MIN and not params and da.flags.c_contiguous
              and _poolable(op, dt, 1) and (buf := _take(da.shape, dt)) is not None):
            out = op.forward(da, out=buf)  # an array the pool held: no fresh pages
        else:
            try:
                out = op.forward(da, **params) if params else op.forward(da)
            except ValueError:
                out = _forward(op, [da], params)  # re-raises in our words
        b = db = None
        requires = a._requires_grad
    elif n == 2:
        a, b = args
        if type(a) is not Tensor:
            return _apply_general(op, args, params)
        da = a._data
        dt = da.dtype
        if dt is not _F64 and dt is not _F32 and dt.kind not in "fc":
            return _apply_general(op, args, params)
        tb = type(b)
        if tb is Tensor:
            db = b._data
            if db.dtype is not dt:
                return _apply_general(op, args, params)
            requires = a._requires_grad or b._requires_grad
        elif tb is float or tb is int:
            db = None
            requires = a._requires_grad
        else:
            return _apply_general(op, args, params)
        sc = op.scalar
        if (sc is not None and not da.ndim and not params
                and (dt is _F64 or (dt is _F32 and db is not None))
                and (db is None or not db.ndim)):
            # numpy scalars (float32 with a Python number stays on the ufunc: its weak-scalar
            # cast is the ufunc's to keep)
            out = sc(da[()], b if db is None else db[()])
        elif (db is not None and da.nbytes >= _POOL_MIN and not params and da.shape == db.shape
              and da.flags.c_contiguous and db.flags.c_contiguous and _poolable(op, dt, 2)
              and (buf := _take(da.shape, dt)) is not None):
            out = op.forward(da, db, out=buf)  # (same shapes: the result's layout is C)
        else:
            try:
                if params:
                    out = op.forward(da, b if db is None else db, **params)
                else:
                    out = op.forward(da, b if db is None else db)
            except ValueError:
                out = _forward(op, [da, b if db is None else db], params)
    else:
        return _apply_general(op, args, params)
    scalar = None
    if type(out) is not np.ndarray:
        scalar = out  # a ufunc on 0-d arrays returns a numpy scalar: keep it for the node
        out = np.asarray(out)
    result = _new_tensor(Tensor)  # _wrap inlined: one call fewer per recorded op
    result._data = out
    result._requires_grad = False
    result._grad = None
    result._grad_fn = None
    result._output_nr = 0
    result._vbox = None
    result._base = None
    result._retains_grad = False
    result._accumulator = None
    result.name = None
    if not requires or op.vjp is None or not _state.enabled:
        return result
    odt = out.dtype
    if odt is not dt and odt.kind not in "fc":
        return result
    cls = op.node_cls
    node = _new_tensor(cls)
    fn = a._grad_fn
    if fn is not None:
        ea = (fn, a._output_nr)
        ka = cls._keep0
    elif a._requires_grad:
        ea = (a, 0)
        ka = cls._keep0
    else:
        ea = _NO_EDGE
        ka = True
    if n == 1:
        node._edges = (ea,)
        node._inputs = (a,) if ka else _DROPPED
        # shared tuples for the common records: fewer objects for the garbage collector to
        # count (every tracked allocation moves it closer to a collection of the graph)
        sh = da.shape
        node._shapes = _S1 if sh is _EMPTY else (sh,)
        node._dtypes = _DT1.get(dt) or _record_dtypes(_DT1, dt, (dt,))
    elif db is None:  # a Python number: a constant
        node._edges = (ea, _NO_EDGE)
        node._inputs = (a if ka else None, b)
        sh = da.shape
        node._shapes = _S2 if sh is _EMPTY else (sh, ())
        node._dtypes = _DTC.get(dt) or _record_dtypes(_DTC, dt, (dt, None))
    else:
        fn = b._grad_fn
        if fn is not None:
            eb = (fn, b._output_nr)
            kb = cls._keep1
        elif b._requires_grad:
            eb = (b, 0)
            kb = cls._keep1
        else:
            eb = _NO_EDGE
            kb = True
        node._edges = (ea, eb)
        node._inputs = (a if ka else None, b if kb else None) if ka or kb else _DROPPED2
        sh, shb = da.shape, db.shape
        node._shapes = _S2 if sh is _EMPTY and shb is _EMPTY else (sh, shb)
        node._dtypes = _DT2.get(dt) or _record_dtypes(_DT2, dt, (dt, dt))
    saved = op.saved
    if saved:
        if len(saved) == 1:
            vb = getattr(args[saved[0]], "_vbox", None)
            node._versions = _V0 if vb is None or not vb[0] else (vb[0],)
        else:  # both inputs (n == 2)
            va = getattr(a, "_vbox", None)
            vb = getattr(b, "_vbox", None)
            node._versions = (_V00 if (va is None or not va[0]) and (vb is None or not vb[0])
                              else (0 if va is None else va[0], 0 if vb is None else vb[0]))
    else:
        node._versions = ()
    if op.uses_out:
        node._out = out if out.ndim else (out[()] if scalar is None else scalar)
        node._out_vbox = result._vbox = [0]
    else:
        node._out = None
        node._out_vbox = None
    node._params = params
    node._freed = False
    node._retain = None
    node._seq = next(_seq)
    result._grad_fn = node
    result._requires_grad = True
    return result


def _apply_general(op: OpDef, args: tuple, params: dict) -> "Tensor":
    """:func:`apply` for any arguments: promotion, mixed inputs, variadic ops."""
    datas = []
    requires = False
    common = None
    same = True
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            if a._requires_grad:
                requires = True
            dt = d.dtype
            if common is None:
                common = dt
            elif dt is not common and dt != common:
                same = False
            datas.append(d)
        else:
            datas.append(a)
    if not same or common is None or common.kind not in "fc":
        datas = _promote(args, datas)
        out = _forward(op, datas, params)
        # ops such as exp/div on integers give float64 in numpy, default float in PyTorch
        if out.dtype == np.float64 and not any(
                isinstance(d, np.ndarray) and d.dtype == np.float64 for d in datas):
            out = out.astype(_dtype.get_default_dtype().np)
    else:
        try:
            out = op.forward(*datas, **params) if params else op.forward(*datas)
        except ValueError:
            out = _forward(op, datas, params)  # re-raises in our words
    scalar = None
    if type(out) is not np.ndarray:
        scalar = out  # a ufunc on 0-d arrays returns a numpy scalar: keep it for the node
        out = np.asarray(out)
    result = _wrap(out)  # (the fast path above inlines it: it is the hot one)
    if requires and op.vjp is not None and _state.enabled:
        if out.dtype.kind not in "fc":
            return result
        cls = op.node_cls
        node = _new_tensor(cls)
        if len(args) == 1:  # unary: the argument is a tensor that requires grad
            a = args[0]
            fn = a._grad_fn
            node._edges = ((fn, a._output_nr),) if fn is not None else ((a, 0),)
            node._inputs = (a,) if cls._keep0 else _DROPPED
            d = a._data
            node._shapes = (d.shape,)
            node._dtypes = (d.dtype,)
        else:
            edges = []
            shapes = []
            dtypes = []
            # the node keeps what its VJP reads and the constants (the mirror needs them);
            # other inputs that require grad are dropped, as PyTorch frees them: their values
            # can be replayed from the leaves (GraphView.input_values)
            kept = []
            keep, keep_all = op.keep, op.keep_all
            i = 0
            for a in args:
                if isinstance(a, Tensor):
                    fn = a._grad_fn
                    if fn is not None:
                        edges.append((fn, a._output_nr))
                        kept.append(a if keep_all or i in keep else None)
                    elif a._requires_grad:
                        edges.append((a, 0))
                        kept.append(a if keep_all or i in keep else None)
                    else:
                        edges.append(_NO_EDGE)
                        kept.append(a)
                    d = a._data
                    shapes.append(d.shape)
                    dtypes.append(d.dtype)
                else:
                    edges.append(_NO_EDGE)
                    kept.append(a)
                    shapes.append(a.shape if isinstance(a, np.ndarray) else ())
                    dtypes.append(None)
                i += 1
            node._edges = tuple(edges)
            node._inputs = tuple(kept)
            node._shapes = tuple(shapes)
            node._dtypes = tuple(dtypes)
        saved = op.saved
        if saved:
            if len(saved) == 1:
                vb = getattr(args[saved[0]], "_vbox", None)
                node._versions = _V0 if vb is None else (vb[0],)
            else:
                versions = []
                for i in saved:
                    vb = getattr(args[i], "_vbox", None)
                    versions.append(0 if vb is None else vb[0])
                node._versions = tuple(versions)
        else:
            node._versions = ()
        if op.uses_out:
            # a scalar: cheaper 0-d VJP arithmetic
            node._out = out if out.ndim else (out[()] if scalar is None else scalar)
            node._out_vbox = result._vbox = [0]
        else:
            node._out = None
            node._out_vbox = None
        node._params = params
        node._freed = False
        node._retain = None
        node._seq = next(_seq)
        result._grad_fn = node
        result._requires_grad = True
    return result


_DROPPED = (None,)
_DROPPED2 = (None, None)
_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)
_V0 = (0,)
_V00 = (0, 0)
_EMPTY = ()
_S1 = S1
_S2 = S2
_DT1: dict = {}
_DT2: dict = {}
_DTC: dict = {}


def _record_dtypes(cache: dict, dt: np.dtype, value: tuple) -> tuple:
    cache[dt] = value
    return value
_new_tensor = object.__new__
_asarray = np.asarray
_take = _pool.take
_POOL_MIN = _pool.MIN_BYTES
_POOLED: dict = {}  # (op, dtype) -> (the forward it was decided for, poolable)


def _poolable(op: OpDef, dt: np.dtype, nin: int) -> bool:
    """Whether ``op``'s forward on C-contiguous inputs of dtype ``dt`` (all of one shape) may
    write into a pooled array: a ufunc with ``nin`` inputs and one output of dtype ``dt``
    (then ``out=`` runs the very loop the allocating call runs)."""
    f = op.forward
    known = _POOLED.get((op, dt))
    if known is not None and known[0] is f:
        return known[1]
    ok = False
    if isinstance(f, np.ufunc) and f.nin == nin and f.nout == 1:
        try:
            ok = f.resolve_dtypes((dt,) * nin + (None,))[-1] == dt
        except (TypeError, ValueError):  # no loop for dt
            ok = False
    _POOLED[(op, dt)] = (f, ok)
    return ok


# ---------------------------------------------------------------------------------------
# 0-d fast paths: the public function of a one- or two-input op (``vg.tanh``, ``x * y``)
# calls one of these closures instead of apply. For 0-d float inputs (scalar graphs, where
# the time goes to Python, not numpy) it computes what apply's own fast path computes, with
# the same forward call and the same node fields, but without the argument tuple, the
# branches on the argument count and the checks whose answer is known here; anything else
# goes to apply. Everything about the op is read at call time (tests patch declarations).


def unary_fn(op: OpDef, convert: Any) -> Any:
    """``f(a)``: ``apply(op, (a,))``, where ``convert(a)`` makes a non-Tensor ``a`` one.

    The 0-d float path below and :func:`binary_fn`'s write the result's and the node's
    fields out in full rather than through shared helpers: on a scalar graph every call
    is paid per op (tests/test_engine_fast.py holds both to what ``apply`` records)."""

    def unary(input: Any) -> "Tensor":  # PyTorch's argument names
        a = input
        if type(a) is not Tensor:
            return apply(op, (convert(a),))
        da = a._data
        dt = da.dtype
        sc = op.scalar
        if da.ndim or sc is None or (dt is not _F64 and dt is not _F32):
            return apply(op, (a,))
        s = sc(da[()])  # a numpy scalar: the same bits as the ufunc on the 0-d array
        out = s if type(s) is np.ndarray else _asarray(s)
        result = _new_tensor(Tensor)
        result._data = out
        result._requires_grad = False
        result._grad = None
        result._grad_fn = None
        result._output_nr = 0
        result._vbox = None
        result._base = None
        result._retains_grad = False
        result._accumulator = None
        result.name = None
        if not a._requires_grad or op.vjp is None or not _state.enabled:
            return result
        if out.dtype is not dt and out.dtype.kind not in "fc":
            return result
        cls = op.node_cls
        node = _new_tensor(cls)
        fn = a._grad_fn
        node._edges = ((a, 0) if fn is None else (fn, a._output_nr),)
        node._inputs = (a,) if cls._keep0 else _DROPPED
        node._shapes = _S1
        node._dtypes = _DT1.get(dt) or _record_dtypes(_DT1, dt, (dt,))
        if op.saved:  # (one input: saved is (0,))
            vb = a._vbox
            node._versions = _V0 if vb is None or not vb[0] else (vb[0],)
        else:
            node._versions = ()
        if op.uses_out:
            node._out = ((out if out.ndim else out[()]) if s is out else s)
            node._out_vbox = result._vbox = [0]
        else:
            node._out = None
            node._out_vbox = None
        node._params = _NO_PARAMS
        node._freed = False
        node._retain = None
        node._seq = next(_seq)
        result._grad_fn = node
        result._requires_grad = True
        return result

    return unary


def binary_fn(op: OpDef, convert: Any, operand: Any) -> Any:
    """``f(a, b)``: ``apply(op, (a, b))``, where ``convert(a)`` makes a non-Tensor ``a`` one
    and ``operand(b)`` a ``b`` that is neither a Tensor nor a float an operand of apply."""

    def general(a: Any, b: Any) -> "Tensor":
        return apply(op, (a if type(a) is Tensor else convert(a),
                          b if type(b) is Tensor or type(b) is float else operand(b)))

    def binary(input: Any, other: Any) -> "Tensor":
        a, b = input, other
        if type(a) is not Tensor:
            return general(a, b)
        da = a._data
        tb = type(b)
        if tb is Tensor:
            db = b._data
            if da.ndim or db.ndim or da.dtype is not _F64 or db.dtype is not _F64:
                return apply(op, (a, b))
            sc = op.scalar
            if sc is None:
                return apply(op, (a, b))
            s = sc(da[()], db[()])
            requires = a._requires_grad or b._requires_grad
        elif tb is float or tb is int:
            db = None
            if da.ndim or da.dtype is not _F64:
                return apply(op, (a, b))
            sc = op.scalar
            if sc is None:
                return apply(op, (a, b))
            s = sc(da[()], b)
            requires = a._requires_grad
        else:
            return general(a, b)
        out = s if type(s) is np.ndarray else _asarray(s)
        result = _new_tensor(Tensor)
        result._data = out
        result._requires_grad = False
        result._grad = None
        result._grad_fn = None
        result._output_nr = 0
        result._vbox = None
        result._base = None
        result._retains_grad = False
        result._accumulator = None
        result.name = None
        if not requires or op.vjp is None or not _state.enabled:
            return result
        if out.dtype is not _F64 and out.dtype.kind not in "fc":
            return result
        cls = op.node_cls
        node = _new_tensor(cls)
        fn = a._grad_fn
        if fn is not None:
            ea = (fn, a._output_nr)
            ka = cls._keep0
        elif a._requires_grad:
            ea = (a, 0)
            ka = cls._keep0
        else:
            ea = _NO_EDGE
            ka = True
        saved = op.saved
        if db is None:  # a Python number: a constant
            node._edges = (ea, _NO_EDGE)
            node._inputs = (a if ka else None, b)
            node._dtypes = _DTC.get(_F64) or _record_dtypes(_DTC, _F64, (_F64, None))
            if not saved:
                node._versions = ()
            elif len(saved) == 1:
                vb = a._vbox if saved[0] == 0 else None
                node._versions = _V0 if vb is None or not vb[0] else (vb[0],)
            else:
                va = a._vbox
                node._versions = _V00 if va is None or not va[0] else (va[0], 0)
        else:
            fn = b._grad_fn
            if fn is not None:
                eb = (fn, b._output_nr)
                kb = cls._keep1
            elif b._requires_grad:
                eb = (b, 0)
                kb = cls._keep1
            else:
                eb = _NO_EDGE
                kb = True
            node._edges = (ea, eb)
            node._inputs = (a if ka else None, b if kb else None) if ka or kb else _DROPPED2
            node._dtypes = _DT2.get(_F64) or _record_dtypes(_DT2, _F64, (_F64, _F64))
            if not saved:
                node._versions = ()
            elif len(saved) == 1:
                vb = (a if saved[0] == 0 else b)._vbox
                node._versions = _V0 if vb is None or not vb[0] else (vb[0],)
            else:
                va = a._vbox
                vb = b._vbox
                node._versions = (_V00 if (va is None or not va[0]) and (vb is None or not vb[0])
                                  else (0 if va is None else va[0], 0 if vb is None else vb[0]))
        node._shapes = _S2
        if op.uses_out:
            node._out = ((out if out.ndim else out[()]) if s is out else s)
            node._out_vbox = result._vbox = [0]
        else:
            node._out = None
            node._out_vbox = None
        node._params = _NO_PARAMS
        node._freed = False
        node._retain = None
        node._seq = next(_seq)
        result._grad_fn = node
        result._requires_grad = True
        return result

    return binary


# ---------------------------------------------------------------------------------------
# construction


def _to_array(data: Any, dtype: DType | None) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data._data.copy()
    elif isinstance(data, np.ndarray):
        arr = data.copy()
    elif isinstance(data, np.generic):
        arr = np.array(data)
    else:
        # with an explicit dtype, cast once from numpy's exact inference (a detour through
        # the default float32 would round 0.7 before making it float64)
        arr = _from_python(data, infer=dtype is None)
    if dtype is not None:
        target = _dtype.as_dtype(dtype).np
        if arr.dtype != target:
            arr = arr.astype(target)
    return arr


def _from_python(data: Any, infer: bool = True) -> np.ndarray:
    """Python numbers and nested lists follow PyTorch's inference: floats -> default dtype,
    ints -> int64, bools -> bool, complex -> default complex (``infer=False``: numpy's
    lossless dtype, for a caller that casts to an explicit dtype)."""
    try:
        arr = np.array(data)
    except ValueError as e:  # ragged lists
        raise ValueError(f"could not make a tensor from {data!r}: {e}. Nested lists must be "
                         f"rectangular (every row the same length).") from None
    if arr.dtype == object or arr.dtype.kind not in "biufc":
        raise TypeError(f"could not make a tensor from {type(data).__name__} {data!r}: "
                        f"expected numbers, nested lists of numbers, numpy arrays or tensors")
    if not infer:
        return arr
    if arr.dtype.kind == "f":
        arr = arr.astype(_dtype.get_default_dtype().np)
    elif arr.dtype.kind == "c":
        arr = arr.astype(_dtype.default_complex().np)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    return arr


def tensor(data: Any, dtype: DType | None = None, requires_grad: bool = False,
           name: str | None = None) -> "Tensor":
    """Make a leaf tensor (a copy of ``data``), PyTorch-style.

    ``name`` labels the leaf in symbolic mirrors and reports.

    >>> import verigrad as vg
    >>> vg.tensor(2.0, requires_grad=True)
    tensor(2., requires_grad=True)
    >>> vg.tensor([1, 2]).dtype
    verigrad.int64
    """
    t = _wrap(_to_array(data, dtype))
    if requires_grad:
        t.requires_grad_(True)
    if name is not None:
        t.name = str(name)
    return t


def as_tensor(data: Any, dtype: DType | None = None) -> "Tensor":
    """Return ``data`` if it is already a tensor of that dtype, else a new tensor."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype is _dtype.as_dtype(dtype)):
        return data
    return tensor(data, dtype=dtype)


class MaxResult(NamedTuple):
    """``(values, indices)`` from ``max(dim)``, as ``torch.return_types.max``."""

    values: "Tensor"
    indices: "Tensor"

    def __repr__(self) -> str:
        return f"verigrad.return_types.max(\nvalues={self.values!r},\nindices={self.indices!r})"


class MinResult(NamedTuple):
    """``(values, indices)`` from ``min(dim)``, as ``torch.return_types.min``."""

    values: "Tensor"
    indices: "Tensor"

    def __repr__(self) -> str:
        return f"verigrad.return_types.min(\nvalues={self.values!r},\nindices={self.indices!r})"


# ---------------------------------------------------------------------------------------


class Tensor:
    """An n-dimensional array that can record operations for reverse-mode autograd.

    Create with :func:`verigrad.tensor` (or ``zeros``, ``randn``, ...), not directly.

    >>> import verigrad as vg
    >>> x = vg.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4.])
    """

    __slots__ = ("_data", "_requires_grad", "_grad", "_grad_fn", "_output_nr", "_vbox", "_base",
                 "_retains_grad", "_accumulator", "name", "__weakref__")
    # numpy must hand binary operators back to us (ndarray * Tensor -> Tensor.__rmul__)
    __array_ufunc__ = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "Tensor":
        if args or kwargs:
            raise TypeError("create tensors with verigrad.tensor(data, ...), not Tensor(...)")
        return super().__new__(cls)

    # --- properties -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> DType:
        return _dtype.from_numpy_dtype(self._data.dtype)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self) -> int:
        return int(self._data.size)

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def item(self) -> Any:
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to "
                             f"a Python scalar; use .tolist() or index an element first")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def numpy(self) -> np.ndarray:
        """The underlying numpy array (shared memory, as in PyTorch; unlike PyTorch this also
        works on tensors that require grad: verigrad's custom Functions use it)."""
        return self._data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._requires_grad and _state.enabled:
            raise RuntimeError("Can't convert a tensor that requires grad to a numpy array "
                               "implicitly: that would drop it from the graph. Use "
                               "tensor.detach().numpy(), or verigrad ops instead of numpy ones.")
        return self._data if dtype is None else self._data.astype(dtype)

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} elements is "
                               f"ambiguous; use .any() or .all()")
        return bool(self._data.reshape(()))

    def __float__(self) -> float:
        if self._data.size != 1:  # PyTorch: ValueError here, RuntimeError from .item()
            raise ValueError("only one element tensors can be converted to Python scalars")
        return float(self.item())

    def __int__(self) -> int:
        if self._data.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __iter__(self) -> Iterator["Tensor"]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        suffixes = []
        # PyTorch hides int64, bool, the default float dtype and its complex counterpart
        hidden = (_dtype.get_default_dtype().np, _dtype.default_complex().np)
        if self._data.dtype not in _HIDDEN_DTYPES and self._data.dtype not in hidden:
            suffixes.append(f"dtype={self.dtype!r}")
        if self._grad_fn is not None:
            suffixes.append(f"grad_fn=<{self._grad_fn.name()}>")
        elif self._requires_grad:
            suffixes.append("requires_grad=True")
        return format_tensor(self._data, suffixes)

    __str__ = __repr__

    # --- autograd state ---------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set ``requires_grad`` on a leaf in place (returns self)."""
        if self._grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach().")
            return self
        if requires_grad and self._data.dtype.kind not in "fc":
            raise DtypeGradError(
                f"Only Tensors of floating point and complex dtype can require gradients, got "
                f"{self.dtype!r}. Make a float tensor, e.g. vg.tensor(data, dtype=vg.float64).")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def grad(self) -> "Tensor | None":
        return self._grad

    @grad.setter
    def grad(self, value: "Tensor | None") -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got "
                                f"{type(value).__name__}")
            if value.shape != self.shape:
                raise ShapeError(f"assigned grad has shape {value.shape} but the tensor has "
                                 f"shape {self.shape}")
        old = self._grad
        self._grad = value
        if old is not None and old is not value:
            # ``x.grad = None`` before a step: a big gradient nothing else holds goes to the
            # engine's pool (autograd/pool.py), for the next backward to write into
            _give_data(old)

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (leaves always keep it)."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self._grad_fn is None or self._retains_grad:
            return
        node = self._grad_fn
        node._retain = (node._retain or ()) + ((self._output_nr, weakref.ref(self)),)
        self._retains_grad = True

    def detach(self) -> "Tensor":
        """A new leaf sharing this tensor's data (and version counter), without a graph."""
        t = _wrap(self._data)
        t._vbox = _vbox(self)
        t.name = self.name
        return t

    def detach_(self) -> "Tensor":
        self._grad_fn = None
        self._requires_grad = False
        return self

    def backward(self, gradient: "Tensor | None" = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Sequence["Tensor"] | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see ``vg.autograd.backward``)."""
        _BACKWARD[0]((self,), None if gradient is None else (gradient,), retain_graph, create_graph,
                 inputs=inputs)

    @property
    def data(self) -> "Tensor":
        """A detached tensor sharing storage (PyTorch's ``.data``)."""
        return self.detach()

    @property
    def _version(self) -> int:
        return _version(self)

    # --- in-place ---------------------------------------------------------------------
    def _inplace(self, fn: Any, *args: Any) -> "Tensor":
        """Run ``fn(self_before, *args)`` out of place and write the result into self's memory.

        Recording keeps PyTorch's semantics: a leaf that requires grad refuses outside
        ``no_grad``; views refuse (their base's history cannot be rewritten here); the
        version counter bumps so a node that saved this tensor refuses to run backward.
        """
        tracking = _state.enabled and (self._requires_grad or any(
            isinstance(a, Tensor) and a._requires_grad for a in args))
        if tracking and self._grad_fn is None and self._requires_grad:
            raise InplaceOnLeafError(
                "a leaf Variable that requires grad is being used in an in-place operation. "
                "Wrap the update in `with vg.no_grad():` (as optimizers do), or write it out of "
                "place: x = x + 1.")
        if tracking and self._base is not None:
            raise InplaceOnLeafError(
                "in-place modification of a view of a tensor (from view/reshape/indexing/"
                "transpose/expand) is not supported while recording a graph; write it out of "
                "place (y = y + 1) or do it under vg.no_grad().")
        if tracking:
            before = _wrap(self._data.copy())
            before._grad_fn, before._output_nr = self._grad_fn, self._output_nr
            before._requires_grad = self._requires_grad
            result = fn(before, *args)
        else:
            with _NoGrad():
                result = fn(self.detach(), *args)
        new = result._data
        if new.shape != self._data.shape:
            raise ShapeError(f"output with shape {list(self.shape)} doesn't match the broadcast "
                             f"shape {list(new.shape)} of an in-place op; write it out of place")
        if not np.can_cast(new.dtype, self._data.dtype, casting="same_kind"):
            raise TypeError(f"result type {_dtype.from_numpy_dtype(new.dtype)!r} can't be cast "
                            f"to the desired output type {self.dtype!r} of an in-place op")
        if not self._data.flags.writeable:
            raise RuntimeError("unsupported operation: this tensor is a read-only expanded "
                               "view (from expand or broadcasting); call .clone() first")
        self._data[...] = new
        _vbox(self)[0] += 1
        if tracking:
            self._grad_fn, self._output_nr = result._grad_fn, result._output_nr
            self._requires_grad = True
        return self

    def zero_(self) -> "Tensor":
        return self._inplace(lambda t: t * 0)

    def fill_(self, value: Any) -> "Tensor":
        return self._inplace(lambda t, v: t * 0 + v, value)

    def copy_(self, src: Any) -> "Tensor":
        return self._inplace(lambda t, s: t * 0 + s, src)

    def add_(self, other: Any, alpha: Any = 1) -> "Tensor":
        return self._inplace(lambda t, o: t + o * alpha if alpha != 1 else t + o, other)

    def sub_(self, other: Any, alpha: Any = 1) -> "Tensor":
        return self._inplace(lambda t, o: t - o * alpha if alpha != 1 else t - o, other)

    def mul_(self, other: Any) -> "Tensor":
        return self._inplace(lambda t, o: t * o, other)

    def div_(self, other: Any) -> "Tensor":
        return self._inplace(lambda t, o: t / o, other)

    def __iadd__(self, other: Any) -> "Tensor":
        return self.add_(other)

    def __isub__(self, other: Any) -> "Tensor":
        return self.sub_(other)

    def __imul__(self, other: Any) -> "Tensor":
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> "Tensor":
        return self.div_(other)

    def __setitem__(self, key: Any, value: Any) -> None:
        if _state.enabled and (self._requires_grad or (isinstance(value, Tensor)
                                                       and value._requires_grad)):
            raise InplaceOnLeafError(
                "item assignment into a tensor that is part of a graph is not supported; build "
                "the tensor with vg.where/vg.cat, or assign under vg.no_grad().")
        try:
            self._data[_normalize_key(key)] = value._data if isinstance(value, Tensor) else value
        except ValueError as e:
            raise ShapeError(f"cannot assign a value of shape {tuple(np.shape(value))} to "
                             f"x[{key!r}] of a tensor of shape {tuple(self.shape)}: {e}") from None
        _vbox(self)[0] += 1


def _normalize_key(key: Any) -> tuple:
    """Tensors and lists in an index become numpy arrays; everything else is numpy's."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, Tensor):
            k = k._data
        elif isinstance(k, list):
            k = np.asarray(k)
        if isinstance(k, np.ndarray) and k.dtype.kind not in "biu":
            raise IndexError(f"tensors used as indices must be integer or bool, got {k.dtype}")
        out.append(k)
    return tuple(out)


#: [backward(tensors, grad_tensors, retain_graph, create_graph, inputs=)]: the engine sits
#: above this layer and registers itself (register_backward)
_BACKWARD: list = []


def register_backward(backward: Any) -> None:
    """Let ``Tensor.backward`` run the engine's ``backward`` (called by the engine).

    >>> import verigrad  # its engine has registered itself
    >>> _BACKWARD[0].__module__
    'verigrad.autograd.engine'
    """
    _BACKWARD[:] = [backward]


class _NoGrad:
    """Minimal no-grad block for internal use (the public one lives in grad_mode)."""

    def __enter__(self) -> None:
        self.prev = _state.enabled
        _state.enabled = False

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self.prev
