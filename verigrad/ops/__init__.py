"""Public op functions (``vg.exp``, ``vg.sum``, ...) over the declarations in this package.

The functions come from the registry's faces (:class:`verigrad.registry.Face`): a function
with one overload and nothing to normalise is generated from its row; the others are the
dispatchers below, each attached to its face with :func:`~verigrad.registry.public`, which
only pick the overload and normalise arguments. The math lives in the declarations
(elementwise.py, reduce.py, linalg.py, shape.py). ``__all__``, ``vg.<name>`` and the Tensor
methods are derived from the faces, so a new op is one row.
"""
from __future__ import annotations

import builtins
import inspect
import numbers
import sys
from typing import Any, Sequence

import numpy as np

from .. import _dtype
from ..errors import ShapeError
from ..registry import FACES, Face, on_change, public
from ..autograd.engine import register_ops
from ..tensor import (MaxResult, MinResult, Tensor, _normalize_key, _vbox, _wrap, apply,
                      as_tensor, binary_fn, unary_fn)
from . import elementwise as E
from . import linalg as L
from . import reduce as R
from . import shape as S
from . import namespaces as _namespaces  # noqa: F401  (registers the VJP namespaces)
from . import nn as _nn  # noqa: F401  (rows the torch bridge maps aten ops onto)
from . import numeric as _numeric  # noqa: F401  (rows and numpy forms numpy code calls)

#: the public function names, derived from the registry's faces (kept in sync by _bind)
__all__: list[str] = []

Number = (numbers.Number, np.generic)
# this module defines max/min/sum/abs/pow as ops; keep the builtins at hand
_bmax, _bsum = builtins.max, builtins.sum


def _t(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else as_tensor(x)


def _operand(y: Any) -> Any:
    """A Python number stays a number (a weakly typed scalar, as in PyTorch); arrays and
    lists become tensors."""
    if isinstance(y, Tensor):
        return y
    if isinstance(y, np.generic):
        return y.item()
    if isinstance(y, numbers.Number):
        return y
    return as_tensor(y)


@public()
def pow(input: Any, exponent: Any) -> Tensor:  # noqa: A001 - PyTorch's name
    """``input ** exponent``; either side may be a Python number.

    >>> import verigrad as vg
    >>> (vg.tensor(3.0, requires_grad=True) ** 2).grad_fn.name()
    'PowBackward0'
    """
    if not isinstance(input, Tensor) and isinstance(input, Number):
        return apply(E.POW_SCALAR_BASE, (_t(exponent),), {"base": _operand(input)})
    exponent = _operand(exponent)
    if isinstance(exponent, Tensor):
        return apply(E.POW_TENSOR, (_t(input), exponent))
    return apply(E.POW_SCALAR_EXP, (_t(input),), {"exponent": exponent})


@public(expression=True, aliases={"clip": ("function", "method")})
def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit values to ``[min, max]``; bounds may be numbers or tensors.

    >>> import verigrad as vg
    >>> vg.clamp(vg.tensor([-2.0, 0.5, 3.0]), min=-1, max=1)
    tensor([-1.0000,  0.5000,  1.0000])
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        lo = None if min is None else _t(min)
        hi = None if max is None else _t(max)
        return apply(E.CLAMP_TENSOR, (_t(input), lo, hi))
    return apply(E.CLAMP, (_t(input),), {"min": min, "max": max})


@public(method=False)
def rsub(input: Any, other: Any) -> Tensor:
    """``other - input`` (what ``2 - x`` records, as in PyTorch)."""
    other = _operand(other)
    if isinstance(other, Tensor):
        return apply(E.RSUB_TENSOR, (_t(input), other))
    return apply(E.RSUB_SCALAR, (_t(input),), {"other": other})


# Tensor.where(condition, other) takes its arguments in another order: bound in _methods
@public(method=False, expression=True, keywords=())
def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` holds, else ``other``.

    >>> import verigrad as vg
    >>> x = vg.tensor([-1.0, 2.0])
    >>> vg.where(x > 0, x, 0.0)
    tensor([0., 2.])
    """
    cond = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where expected a bool condition, got {cond.dtype}; compare first "
                        f"(x > 0)")
    return apply(E.WHERE, (_operand(input), _operand(other)), {"condition": cond})


# --- reductions -------------------------------------------------------------------------

def _dim_op(full, per_dim):
    def fn(input: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        x = _t(input)
        if dim is None:
            return apply(full, (x,))
        if not isinstance(dim, (int, np.integer)) and len(dim) == 0:
            dim = tuple(range(x.ndim))  # PyTorch: an empty dim list reduces everything
        return apply(per_dim, (x,), {"dim": _check_dims(dim, x.ndim), "keepdim": keepdim})

    return fn


def _check_dims(dim: Any, ndim: int) -> Any:
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    for d in dims:
        if not -_bmax(ndim, 1) <= d < _bmax(ndim, 1):
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-_bmax(ndim, 1)}, {_bmax(ndim, 1) - 1}], but got {d})")
    return dim if isinstance(dim, (int, np.integer)) else dims


sum = _dim_op(R.SUM, R.SUM_DIM)  # noqa: A001
sum.__name__, sum.__qualname__, sum.__doc__ = "sum", "sum", """Sum of all elements, or along ``dim`` (int or tuple).

    >>> import verigrad as vg
    >>> vg.sum(vg.tensor([[1.0, 2.0], [3.0, 4.0]]), dim=0)
    tensor([4., 6.])
    """
public(expression=True)(sum)
mean = _dim_op(R.MEAN, R.MEAN_DIM)
mean.__name__, mean.__qualname__ = "mean", "mean"
mean.__doc__ = "Mean of all elements, or along ``dim``."
public(expression=True)(mean)


@public(expression=True)
def prod(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Product of all elements, or along one ``dim`` (exact gradients with zeros)."""
    x = _t(input)
    if dim is None:
        return apply(R.PROD, (x,))
    return apply(R.PROD_DIM, (x,), {"dim": _check_dims(dim, x.ndim), "keepdim": keepdim})


def _extremum(full, per_dim, arg, result):
    def fn(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
        x = _t(input)
        if dim is None:
            if x.numel() == 0:
                raise RuntimeError("max(): Expected reduction dim to be specified for "
                                   "input.numel() == 0. Specify the reduction dim.")
            return apply(full, (x,))
        _check_dims(dim, x.ndim)
        values = apply(per_dim, (x,), {"dim": int(dim), "keepdim": keepdim})
        idx = arg(x._data, axis=int(dim) if x.ndim else None, keepdims=keepdim)
        return result(values, _wrap(np.asarray(idx, dtype=np.int64)))

    return fn


def _pairwise_or_reduce(reduce: Any, pairwise: Any) -> Any:
    # in an expression, max(a, b) means the elementwise maximum; max(x) the largest element
    def form(x: Any, other: Any = None, dim: Any = None, keepdim: bool = False) -> Any:
        if other is not None:
            return pairwise(x, other)
        if dim is not None:
            return reduce(x, dim, keepdim).values
        return reduce(x)

    return form


max = _extremum(R.MAX, R.MAX_DIM, np.argmax, MaxResult)  # noqa: A001
max.__name__, max.__qualname__, max.__doc__ = "max", "max", """Largest element, or ``(values, indices)`` along ``dim``.

    >>> import verigrad as vg
    >>> vg.max(vg.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=1).indices
    tensor([1, 0])
    """
min = _extremum(R.MIN, R.MIN_DIM, np.argmin, MinResult)  # noqa: A001
min.__name__, min.__qualname__ = "min", "min"
min.__doc__ = "Smallest element, or ``(values, indices)`` along ``dim``."
# the global lookups run at call time: maximum/minimum are generated from their rows below
public(expression=_pairwise_or_reduce(max, lambda a, b: maximum(a, b)))(max)  # noqa: F821
public(expression=_pairwise_or_reduce(min, lambda a, b: minimum(a, b)))(min)  # noqa: F821


@public(expression=True)
def logsumexp(input: Tensor, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` along ``dim``, computed stably.

    >>> import verigrad as vg
    >>> vg.logsumexp(vg.tensor([0.0, 0.0], dtype=vg.float64), dim=0)
    tensor(0.6931, dtype=verigrad.float64)
    """
    x = _t(input)
    return apply(R.LOGSUMEXP, (x,), {"dim": _check_dims(dim, x.ndim), "keepdim": keepdim})


@public(expression=True)
def softmax(input: Tensor, dim: int) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``."""
    x = _t(input)
    return apply(R.SOFTMAX, (x,), {"dim": _check_dims(dim, x.ndim)})


@public(expression=True)
def log_softmax(input: Tensor, dim: int) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``."""
    x = _t(input)
    return apply(R.LOG_SOFTMAX, (x,), {"dim": _check_dims(dim, x.ndim)})


# --- matrix products --------------------------------------------------------------------

def _cannot(a: Tensor, b: Tensor) -> ShapeError:
    fmt = lambda s: "x".join(map(str, s)) or "scalar"  # noqa: E731
    return ShapeError(f"matmul: shapes cannot be multiplied ({fmt(a.shape)} and {fmt(b.shape)}); "
                      f"the last dimension of the first must equal the "
                      f"{'only' if b.ndim == 1 else 'second-to-last'} dimension of the second")


@public(expression=True)
def matmul(input: Any, other: Any) -> Tensor:
    """Matrix product with numpy's rules (1-D operands are vectors, leading dims broadcast).

    >>> import verigrad as vg
    >>> a = vg.ones(2, 3, requires_grad=True)
    >>> (a @ vg.ones(3, 4)).grad_fn.name()
    'MmBackward0'
    """
    a, b = _t(input), _t(other)
    da, db = a._data, b._data
    if da.ndim == 2 and db.ndim == 2 and da.shape[1] == db.shape[0]:  # the common case first
        return apply(L.MM, (a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("both arguments to matmul need to be at least 1D, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-1] != b.shape[0 if b.ndim == 1 else -2]:
        raise _cannot(a, b)
    if a.ndim == 1 and b.ndim == 1:
        return apply(L.DOT, (a, b))
    if a.ndim == 2 and b.ndim == 1:
        return apply(L.MV, (a, b))
    if a.ndim == 1 and b.ndim == 2:
        return squeeze(apply(L.MM, (unsqueeze(a, 0), b)), 0)
    if a.ndim == 2 and b.ndim == 2:
        return apply(L.MM, (a, b))
    if b.ndim <= 2:  # fold the batch into rows: one 2-D product, as PyTorch does
        rows = reshape(a, (-1, a.shape[-1]))
        out = apply(L.MM if b.ndim == 2 else L.MV, (rows, b))
        return apply(S.UNSAFE_VIEW, (out,), {"shape": a.shape[:-1] + b.shape[1:]})
    if a.ndim == 1:
        return squeeze(matmul(unsqueeze(a, 0), b), -2)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a3 = reshape(expand(a, batch + a.shape[-2:]), (-1,) + a.shape[-2:])
    b3 = reshape(expand(b, batch + b.shape[-2:]), (-1,) + b.shape[-2:])
    out = apply(L.BMM, (a3, b3))
    return apply(S.UNSAFE_VIEW, (out,), {"shape": batch + (a.shape[-2], b.shape[-1])})


@public()
def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """2-D matrix product."""
    a, b = _t(input), _t(mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm expects 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


@public()
def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix-vector product."""
    return matmul(input, vec)


@public()
def dot(input: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-D tensors."""
    return matmul(input, other)


@public()
def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched product of 3-D tensors."""
    return apply(L.BMM, (_t(input), _t(mat2)))


# --- shapes -----------------------------------------------------------------------------

def _as_view(result: Tensor, x: Tensor) -> Tensor:
    """Views share their base's version counter, so modifying either is noticed."""
    result._vbox = _vbox(x)
    result._base = x._base if x._base is not None else x
    return result


def _shape_arg(shape: tuple) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


@public()
def view(input: Tensor, *shape: Any) -> Tensor:
    """A view with another shape; fails if the memory layout does not allow it (use reshape)."""
    x = _t(input)
    shape = _shape_arg(shape)
    try:
        return _as_view(apply(S.VIEW, (x,), {"shape": shape}), x)
    except ShapeError as e:
        raise ShapeError(f"view size is not compatible with input tensor's size and stride; use "
                         f".reshape(...) instead ({e})") from None


@public()
def reshape(input: Tensor, *shape: Any) -> Tensor:
    """Same data in another shape: a view when possible, else a copy (as PyTorch).

    >>> import verigrad as vg
    >>> vg.reshape(vg.arange(6.0), (2, 3)).shape
    (2, 3)
    """
    x = _t(input)
    shape = _shape_arg(shape)
    try:
        np.reshape(x._data, shape, copy=False)
    except ValueError:
        try:
            np.reshape(x._data, shape)
        except ValueError as e:
            raise ShapeError(f"shape {list(shape)} is invalid for input of size {x.numel()} "
                             f"({e})") from None
        return apply(S.UNSAFE_VIEW, (apply(S.CLONE, (x,)),), {"shape": shape})
    return view(x, shape)


@public()
def flatten(input: Tensor) -> Tensor:
    """All elements in one dimension."""
    return reshape(input, (-1,))


@public()
def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions (a view)."""
    x = _t(input)
    _check_dims((dim0, dim1), x.ndim)
    return _as_view(apply(S.TRANSPOSE, (x,), {"dim0": dim0, "dim1": dim1}), x)


@public()
def permute(input: Tensor, *dims: Any) -> Tensor:
    """Reorder dimensions (a view)."""
    x = _t(input)
    dims = _shape_arg(dims)
    if sorted(d % _bmax(x.ndim, 1) for d in dims) != list(range(x.ndim)):
        raise ShapeError(f"permute: dims {dims} are not a permutation of {x.ndim} dimensions")
    return _as_view(apply(S.PERMUTE, (x,), {"dims": dims}), x)


@public()
def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a dimension of size 1 at ``dim`` (a view)."""
    x = _t(input)
    _check_dims(dim, x.ndim + 1)
    return _as_view(apply(S.UNSQUEEZE, (x,), {"dim": dim}), x)


@public()
def squeeze(input: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """Remove dimensions of size 1 (all, one, or several; others are left alone)."""
    x = _t(input)
    if dim is None:
        return _as_view(apply(S.SQUEEZE, (x,)), x)
    if isinstance(dim, (int, np.integer)):
        _check_dims(dim, x.ndim)
        return _as_view(apply(S.SQUEEZE_DIM, (x,), {"dim": int(dim) % _bmax(x.ndim, 1)}), x)
    dims = tuple(int(d) % _bmax(x.ndim, 1) for d in _check_dims(dim, x.ndim))
    return _as_view(apply(S.SQUEEZE_DIMS, (x,), {"dims": dims}), x)


@public()
def expand(input: Tensor, *sizes: Any) -> Tensor:
    """Broadcast to a larger shape without copying (``-1`` keeps a size)."""
    x = _t(input)
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ShapeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                         f"equal to the number of dimensions in the tensor ({x.ndim})")
    full = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return _as_view(apply(S.EXPAND, (x,), {"size": full}), x)


@public()
def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dimension.

    >>> import verigrad as vg
    >>> vg.cat([vg.tensor([1.0]), vg.tensor([2.0, 3.0])])
    tensor([1., 2., 3.])
    """
    ts = tuple(_t(t) for t in tensors)
    if not ts:
        raise ValueError("cat expects a non-empty sequence of tensors")
    _check_dims(dim, ts[0].ndim)
    return apply(S.CAT, ts, {"dim": dim})


@public()
def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack along a new dimension."""
    ts = tuple(_t(t) for t in tensors)
    if not ts:
        raise ValueError("stack expects a non-empty sequence of tensors")
    shapes = {t.shape for t in ts}
    if len(shapes) > 1:
        raise ShapeError(f"stack expects each tensor to be equal size, got shapes "
                         f"{[tuple(t.shape) for t in ts]}")
    _check_dims(dim, ts[0].ndim + 1)
    return apply(S.STACK, ts, {"dim": dim})


@public(method=False)  # Tensor.__getitem__
def getitem(input: Tensor, key: Any) -> Tensor:
    """``x[key]`` as PyTorch records it: ints select, slices slice and ``None`` unsqueezes
    (in that order, dimension by dimension); integer-array or mask indices then index what is
    left (``IndexBackward0``), so ``x[0, :, [0, 1]]`` is ``x[0][:, [0, 1]]`` as in PyTorch.

    >>> import verigrad as vg
    >>> x = vg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> x[1:].grad_fn.name(), x[0].grad_fn.name(), x[[0, 2]].grad_fn.name()
    ('SliceBackward0', 'SelectBackward0', 'IndexBackward0')
    """
    x = _t(input)
    lone_slice = isinstance(key, slice)  # x[a:b] records a slice even when it is x[:]
    key = _normalize_key(key)
    if any(isinstance(k, (bool, np.bool_)) or isinstance(k, np.ndarray) and k.ndim == 0
           and k.dtype == np.bool_ for k in key):
        return _index(x, key)  # x[True]: numpy's rule
    # a 0-d integer tensor selects, as an int does
    key = tuple(int(k) if isinstance(k, np.ndarray) and k.ndim == 0 else k for k in key)
    n_real = _bsum(_index_width(k) for k in key)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    if _bsum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    expanded: list = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(k)
    out, dim = x, 0
    advanced: list = []  # (dimension of out, index array), applied after the basic indexing
    for k in expanded:
        if k is None:
            out = unsqueeze(out, dim)
            dim += 1
        elif isinstance(k, slice):
            if k.step is not None and k.step <= 0:
                raise ValueError("step must be greater than zero")
            size = out.shape[dim]
            # inside a tuple, a slice covering the whole dimension records nothing (PyTorch)
            if lone_slice or k.indices(size) != (0, size, 1):
                out = _as_view(apply(S.SLICE, (out,), {"dim": dim, "start": k.start,
                                                        "stop": k.stop, "step": k.step}), out)
            dim += 1
        elif isinstance(k, np.ndarray):
            advanced.append((dim, k))
            dim += _index_width(k)
        else:
            size = out.shape[dim]
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dimension {dim} with size "
                                 f"{size}")
            out = _as_view(apply(S.SELECT, (out,), {"dim": dim, "index": int(k)}), out)
    if advanced:
        rest: list = []
        pos = 0
        for d, k in advanced:
            rest.extend([slice(None)] * (d - pos))
            rest.append(k)
            pos = d + _index_width(k)
        return _index(out, tuple(rest))
    if out is x:  # x[...] or x[:, :] is still a new view in PyTorch
        out = _as_view(apply(S.ALIAS, (x,)), x)
    return out


def _index_width(k: Any) -> int:
    """How many dimensions of the indexed tensor one index entry consumes."""
    if k is None or k is Ellipsis:
        return 0
    if isinstance(k, np.ndarray) and k.dtype == np.bool_:
        return k.ndim
    return 1


def _index(x: Tensor, key: tuple) -> Tensor:
    try:
        x._data[key]
    except IndexError as e:
        raise IndexError(f"index {key!r} is invalid for a tensor of shape "
                         f"{tuple(x.shape)}: {e}") from None
    return apply(S.INDEX, (x,), {"key": key})


# a Tensor method only, as in PyTorch; astype for numpy code (x.astype(float)) on the tape
@public(function=False, aliases={"astype": ("method",)})
def to(input: Tensor, dtype: Any) -> Tensor:
    """A copy in another dtype (records ``ToCopyBackward0``); the same tensor if it matches."""
    x = _t(input)
    target = _dtype.as_dtype(dtype)
    if x.dtype is target:
        return x
    if x._data.dtype.kind not in "fc":  # no graph possible; apply() would re-cast int->float
        return _wrap(x._data.astype(target.np))
    return apply(S.TO_COPY, (x,), {"dtype": target.np, "src": x._data.dtype})


# --- functions generated from single rows, and the surfaces kept in sync with the faces ----

# the row's generic input names become PyTorch's argument names
_ARG_NAMES = {"x": "input", "y": "other"}
_MISSING = object()


def _defaults(fn: Any) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature (np.exp)
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _generate(face: Face) -> Any:
    """The public function of a face with one row and no dispatcher: tensors in, params as
    arguments (with the forward's defaults), nothing else."""
    if len(face.rows) != 1:
        raise TypeError(f"{face.name!r} has {len(face.rows)} overloads "
                        f"({', '.join(op.name for op in face.rows)}) and no dispatcher; attach "
                        f"one with @verigrad.registry.public")
    op = face.rows[0]
    inputs = [i.lstrip("*") for i in op.inputs]
    if op.variadic:
        def call(a: dict) -> Tensor:
            return apply(op, tuple(_t(t) for t in a[inputs[0]]),
                         {p: a[p] for p in op.params})
    elif op.arguments == tuple(inputs) and len(inputs) == 1:  # the hot paths: no binding
        # 0-d tensors take a fast path of their own (scalar graphs pay per op)
        fn = unary_fn(op, _t)
    elif op.arguments == tuple(inputs) and len(inputs) == 2:
        fn = binary_fn(op, _t, _operand)
    else:
        def call(a: dict) -> Tensor:
            tensors = tuple((_t if k == 0 else _operand)(a[_ARG_NAMES.get(n, n)])
                            for k, n in enumerate(inputs))
            return apply(op, tensors, {p: a[p] for p in op.params})
    if op.variadic or op.arguments != tuple(inputs) or len(inputs) > 2:
        defaults = _defaults(op.forward)
        parameters, seen_default = [], False
        for n in reversed(op.arguments):  # a default only where every later one has one
            default = defaults.get(n, inspect.Parameter.empty)
            if default is inspect.Parameter.empty:
                seen_default = True
            parameters.append(inspect.Parameter(
                _ARG_NAMES.get(n, n) if n in inputs else n,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if seen_default else default))
        signature = inspect.Signature(parameters[::-1])

        def fn(*args: Any, **kwargs: Any) -> Tensor:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return call(bound.arguments)

        fn.__signature__ = signature  # type: ignore[attr-defined]
    fn.__name__ = fn.__qualname__ = face.name
    fn.__module__ = __name__
    what = "Elementwise " if op.elementwise else ""
    fn.__doc__ = f"{what}``{face.name}`` (records ``{op.grad_fn_name}``)."
    if op.doc:
        fn.__doc__ += f"\n\n{op.doc}"
    if not op.differentiable:
        fn.__doc__ += " Not differentiable."
    elif op.elementwise and len(inputs) == 1:
        fn.__doc__ += (f"\n\n    >>> import verigrad as vg\n"
                       f"    >>> vg.{face.name}(vg.tensor([0.5, 1.5], requires_grad=True))"
                       f".grad_fn.name()\n    '{op.grad_fn_name}'\n")
    return fn


def callable_of(face: Face) -> Any:
    """The public function of ``face`` (its dispatcher, else generated once from its row)."""
    if face.fn is not None:
        return face.fn
    if face.generated is None or len(face.rows) != 1:  # a second overload needs a dispatcher
        face.generated = _generate(face)
    return face.generated


def bind(target: Any, surface: str) -> Any:
    """Keep ``target``'s attributes (a module or a class) equal to the faces on ``surface``,
    now and after every registry change; what a scratch op added is removed with it."""
    added: dict[str, Any] = {}  # name -> what the attribute was before (or _MISSING)

    def sync() -> None:
        want = {n: callable_of(face) for face in FACES.values() for n in face.names(surface)}
        for n in [n for n in added if n not in want]:
            before = added.pop(n)
            if before is _MISSING:
                delattr(target, n)
            else:
                setattr(target, n, before)
        for n, fn in want.items():
            if n not in added:
                before = vars(target).get(n, _MISSING)
                if before is fn:
                    continue  # the dispatcher's own def
                added[n] = before
            setattr(target, n, fn)
        if surface == "function" and target is sys.modules[__name__]:
            __all__[:] = list(want)

    sync()
    on_change(sync)
    return sync


bind(sys.modules[__name__], "function")
# the engine and custom Functions (lower layers) record with these
register_ops(clone=clone, to=to)  # noqa: F821  (clone: generated from its row by bind)
