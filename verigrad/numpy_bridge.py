"""numpy's protocols on ``vg.Tensor``: plain numpy code run on tensors is recorded on the tape.

``np.sin(t)``, ``np.sum(t, axis=0)``, ``a @ t``, ``np.where(t > 0, t, 0)`` call the verigrad op
the registry declares for that numpy function (the ``numpy=`` field of each row, numpy's
arguments renamed to the op's), or the function's numpy form (:func:`~verigrad.registry.numpy_form`,
for a numpy signature that is not an op's: ``np.var``'s ``ddof``, ``np.linalg.norm``), so the
call gets a node, a backward and a SymPy mirror. The dispatch table is derived from the
registry; nothing here lists op names.

What the tape cannot record (a numpy function without a row, ``out=``/``dtype=`` arguments,
``np.asarray(tensor)`` and the like) is computed by numpy on the plain arrays, as before. Inside
:func:`recording` it raises :class:`Unrecordable` instead, naming the call and where in the
user's code it happened, so a checker can say which one and fall back to finite differences
of the whole function rather than trust a graph with a hole in it.

>>> import numpy as np, verigrad as vg
>>> x = vg.tensor([0.5, 1.0], dtype=vg.float64, requires_grad=True)
>>> y = np.sum(np.sin(x) * np.exp(x), axis=0)
>>> y.grad_fn.name()
'SumBackward1'
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from . import ops as O
from .autograd.grad_mode import _state
from .registry import NUMPY_FORMS, REGISTRY, OpDef, on_change
from .tensor import Tensor

__all__ = ["Unrecordable", "recording", "is_recording", "mapped", "numpy_table"]

_RECORDING: contextvars.ContextVar[bool] = contextvars.ContextVar("verigrad_numpy_recording",
                                                                  default=False)

# numpy's parameter names -> verigrad's (a naming convention, not a list of ops)
_RENAME = {"axis": "dim", "keepdims": "keepdim", "axis1": "dim0", "axis2": "dim1",
           "axes": "dims", "a_min": "min", "a_max": "max", "arrays": "tensors",
           "array": "input", "a": "input"}
# numpy defaults that verigrad spells out: transpose(a) reverses the axes
_SPELLED_DEFAULTS: dict[str, Callable[[Any], Any]] = {
    "axes": lambda x: tuple(reversed(range(np.ndim(x._data if isinstance(x, Tensor) else x))))}
_HERE = os.path.dirname(os.path.abspath(__file__))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))


class Unrecordable(Exception):
    """A numpy call on a tensor that needs gradients, which the tape cannot record."""

    def __init__(self, what: str, why: str) -> None:
        self.what, self.why, self.where = what, why, _user_frame()
        at = f" at {self.where}" if self.where else ""
        super().__init__(f"{what}{at}: {why}")


def _user_frame() -> str:
    """The innermost frame outside verigrad and numpy: the user's line that made the call."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        path = os.path.abspath(fr.filename)
        if not (path.startswith(_HERE) or path.startswith(_NUMPY_DIR)
                or "contextlib" in path):
            return f"{os.path.basename(fr.filename)}:{fr.lineno} in {fr.name}"
    return ""


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Within this block, numpy calls that would drop a tensor's gradient raise
    :class:`Unrecordable` instead of silently computing on plain arrays.

    >>> import numpy as np, verigrad as vg
    >>> x = vg.tensor([1.0, 2.0], requires_grad=True)
    >>> with recording():
    ...     try:
    ...         np.sort(x)
    ...     except Unrecordable as e:
    ...         print(e.what)
    np.sort
    """
    token = _RECORDING.set(True)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def is_recording() -> bool:
    return _RECORDING.get()


# --- the dispatch table, derived from the registry ---------------------------------------

@dataclass(frozen=True)
class _Mapping:
    numpy_name: str
    public: Callable | None  # the verigrad function that picks the overload
    rows: tuple[OpDef, ...]
    form: Callable | None = None  # takes numpy's arguments as they are (a numpy form)


def _public_for(name: str, rows: list[OpDef]) -> Callable:
    """The public function of the rows' base name (``np.negative`` -> ``vg.neg``); where the
    rows are overloads of several bases, the public function that picks among them, named as
    numpy's (``np.matmul`` over mm/mv/bmm -> ``vg.matmul``)."""
    faces = {r.public for r in rows}
    if len(faces) == 1 and next(iter(faces)) in O.__all__:
        return getattr(O, faces.pop())
    if name in O.__all__:
        return getattr(O, name)
    raise TypeError(f"np.{name} is declared on rows {[r.name for r in rows]}, which have no "
                    f"single public function; declare it on the rows of one")


_TABLE: dict[Any, _Mapping] | None = None
_TABLE_SAW_SCIPY = False


def _numpy_function(name: str) -> Any:
    """``np.<name>``, dotted names through numpy's submodules (``linalg.norm``); None where
    this numpy has no such function. ``scipy.special.<name>`` names scipy's ufuncs (they
    reach ``__array_ufunc__`` like numpy's), once the program imported scipy.special:
    verigrad never imports scipy itself."""
    obj: Any = np
    if name.startswith("scipy.special."):
        obj, name = sys.modules.get("scipy.special"), name[len("scipy.special."):]
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj if callable(obj) else None


def _table_misses_scipy() -> bool:
    """Whether the table was built before the program imported scipy.special (its ufuncs
    are then missing from it)."""
    return not _TABLE_SAW_SCIPY and "scipy.special" in sys.modules


@on_change
def _forget_table() -> None:
    # rebuilt on next use: a row or form added (or removed by scratch) changes the table
    global _TABLE
    _TABLE = None


def numpy_table() -> dict[Any, _Mapping]:
    """numpy callable (ufunc or function) -> how verigrad records it."""
    global _TABLE, _TABLE_SAW_SCIPY
    if _TABLE is None or _table_misses_scipy():
        _TABLE_SAW_SCIPY = "scipy.special" in sys.modules
        by_name: dict[str, list[OpDef]] = {}
        for op in REGISTRY.values():
            for name in op.numpy:
                by_name.setdefault(name, []).append(op)
        table = {}
        for name in list(by_name) + [n for n in NUMPY_FORMS if n not in by_name]:
            fn = _numpy_function(name)
            if fn is None:  # an older numpy without this name
                continue
            rows = by_name.get(name, [])
            # a declared form takes precedence: it is how numpy's signature maps to the op's
            public = None if name in NUMPY_FORMS else _public_for(name, rows)
            table[fn] = _Mapping(name, public, tuple(rows), NUMPY_FORMS.get(name))
        _TABLE = table
    return _TABLE


def mapped() -> list[str]:
    """The numpy names recorded on the tape, sorted."""
    return sorted(m.numpy_name for m in numpy_table().values())


# --- translating one call ------------------------------------------------------------------

class _Untranslatable(Exception):
    pass


def _is_default(value: Any, default: Any) -> bool:
    if default is inspect.Parameter.empty:
        return False
    if value is default:
        return True
    return default is None and value is None


_SIGS: dict[Any, inspect.Signature | None] = {}


def _signature(fn: Any) -> inspect.Signature | None:
    if fn not in _SIGS:
        try:
            _SIGS[fn] = inspect.signature(fn)
        except (TypeError, ValueError):
            _SIGS[fn] = None
    return _SIGS[fn]


def _translate(func: Any, m: _Mapping, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """numpy's arguments -> the verigrad function's: the first argument is the first; the
    others by name (through _RENAME) or, failing that, by position. A numpy argument given
    a non-default value that verigrad has no place for makes the call untranslatable."""
    nsig, vsig = _signature(func), _signature(m.public)
    if nsig is None or vsig is None:
        raise _Untranslatable("its signature cannot be read")
    try:
        bound = nsig.bind(*args, **kwargs)
    except TypeError as e:
        raise _Untranslatable(str(e)) from None
    nparams = list(nsig.parameters.values())
    vparams = list(vsig.parameters.values())
    vnames = [p.name for p in vparams]
    given = bound.arguments
    out: dict[str, Any] = {}
    first = nparams[0].name
    if first not in given:
        raise _Untranslatable("no array argument")
    out[vnames[0]] = given[first]
    for pos, p in enumerate(nparams[1:], start=1):
        if p.name in given:
            value = given[p.name]
            if p.kind is p.VAR_KEYWORD:
                if value:
                    raise _Untranslatable(f"argument(s) {', '.join(value)} are not recorded")
                continue
            if _is_default(value, p.default):
                continue
        elif p.name in _SPELLED_DEFAULTS:
            value = _SPELLED_DEFAULTS[p.name](given[first])
        else:
            continue
        target = _RENAME.get(p.name, p.name)
        if target not in vnames:
            # by position only for array-like arguments (required or positional-only):
            # np.where(c, x, y) -> where(condition, input, other); never an option (dtype=)
            by_pos = p.default is p.empty or p.kind is p.POSITIONAL_ONLY
            target = vnames[pos] if by_pos and pos < len(vnames) and vnames[pos] not in out \
                else None
        if target is None or target in out:
            raise _Untranslatable(f"argument {p.name}={value!r} is not recorded")
        out[target] = value
    pos_args: list = []
    kw: dict = {}
    for p in vparams:
        if p.name not in out:
            if p.kind is p.VAR_POSITIONAL:
                continue
            break
        if p.kind is p.VAR_POSITIONAL:
            v = out.pop(p.name)
            pos_args.append(tuple(v) if isinstance(v, list) else v)
            break
        if p.kind is p.KEYWORD_ONLY:
            break
        pos_args.append(out.pop(p.name))
    kw.update(out)  # after a gap, by name
    return tuple(pos_args), kw


def _values_only(result: Any) -> Any:
    # numpy's max/min return the values; verigrad's max(dim) also returns the indices
    return result.values if hasattr(result, "values") and hasattr(result, "indices") else result


def _needs_grad(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return obj.requires_grad
    if isinstance(obj, (list, tuple)):
        return any(_needs_grad(o) for o in obj)
    if isinstance(obj, dict):
        return any(_needs_grad(o) for o in obj.values())
    return False


def _plain(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj._data
    if isinstance(obj, list):
        return [_plain(o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _qualname(func: Any) -> str:
    mod = getattr(func, "__module__", None) or "numpy"
    mod = "np" + mod[len("numpy"):] if mod.startswith("numpy") else mod
    mod = "np" if mod in ("np.core.multiarray", "np._core.multiarray", "np.core.fromnumeric",
                          "np._core.fromnumeric", "np.core.numeric", "np._core.numeric",
                          "np.core.shape_base", "np._core.shape_base", "np.lib._shape_base_impl",
                          "np.lib.shape_base", "np._core._multiarray_umath") else mod
    return f"{mod}.{getattr(func, '__name__', repr(func))}"


def _unrecorded(what: str, why: str, func: Any, args: Any, kwargs: dict) -> Any:
    """numpy on the plain arrays for tensors without gradients; for ones that need them the
    same refusal as ``np.asarray(tensor)`` (an :class:`Unrecordable` while recording)."""
    if _state.enabled and (_needs_grad(args) or _needs_grad(kwargs)):
        if _RECORDING.get():
            raise Unrecordable(what, why)
        raise RuntimeError(f"{what} cannot be recorded on the tape ({why}): it would drop the "
                           f"tensor from the graph; use tensor.detach().numpy() for numpy's "
                           f"result, or verigrad ops")
    return func(*_plain(args), **_plain(kwargs))


# --- the protocol methods --------------------------------------------------------------------

def __array_ufunc__(self: Tensor, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any
                    ) -> Any:
    what = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    m = numpy_table().get(ufunc) if method == "__call__" else None
    if m is None:
        return _unrecorded(what, "numpy function without a verigrad op", getattr(ufunc, method),
                           inputs, kwargs)
    if kwargs:
        return _unrecorded(what, f"argument(s) {', '.join(kwargs)} are not recorded",
                           getattr(ufunc, method), inputs, kwargs)
    return (m.form or m.public)(*inputs)


def __array_function__(self: Tensor, func: Any, types: tuple, args: tuple, kwargs: dict) -> Any:
    m = numpy_table().get(func)
    if m is None:
        return _unrecorded(_qualname(func), "numpy function without a verigrad op", func, args,
                           kwargs)
    try:
        if m.form is not None:
            return m.form(*args, **kwargs)
        pos, kw = _translate(func, m, args, kwargs)
        return _values_only(m.public(*pos, **kw))
    except _Untranslatable as e:
        why = str(e)
    except TypeError as e:  # a form of the call verigrad's function does not take
        why = f"this form of the call is not recorded ({e})"
    return _unrecorded(_qualname(func), why, func, args, kwargs)


def _guarded(method: Callable, what: str) -> Callable:
    """``method`` refused while recording on a tensor that needs its gradient: the value
    leaves the tape (a float, a list, a plain array) and the reference would miss a term."""

    def guarded(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._requires_grad and _RECORDING.get() and _state.enabled:
            raise Unrecordable(what, "the value leaves the tape, and its gradient with it")
        return method(self, *args, **kwargs)

    guarded.__name__ = method.__name__
    guarded.__doc__ = method.__doc__
    return guarded


def _positive_steps(x: Tensor, key: Any) -> tuple[Any, tuple[int, ...]] | None:
    """A basic index with negative-step slices as the same index with positive steps, and
    the result's dimensions to flip afterwards (``x[::-1]`` is ``flip(x[0:n], 0)``); None
    for keys without negative steps or with advanced indices (left to ``getitem``)."""
    keys = key if isinstance(key, tuple) else (key,)
    if not any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in keys):
        return None
    basic = (slice, int, np.integer)
    if any(isinstance(k, (bool, np.bool_)) or not (k is None or k is Ellipsis
                                                   or isinstance(k, basic)) for k in keys):
        return None
    n_real = sum(1 for k in keys if isinstance(k, basic))
    if n_real > x.ndim:
        return None
    new: list = []
    flips: list[int] = []
    in_dim = out_dim = 0
    for k in keys:
        if k is None:
            out_dim += 1
        elif k is Ellipsis:
            in_dim += x.ndim - n_real
            out_dim += x.ndim - n_real
        elif isinstance(k, slice):
            if k.step is not None and k.step < 0:
                idx = range(x.shape[in_dim])[k]
                k = slice(idx[-1], idx[0] + 1, -k.step) if len(idx) else slice(0, 0)
                flips.append(out_dim)
            in_dim += 1
            out_dim += 1
        else:
            in_dim += 1
        new.append(k)
    return (tuple(new) if isinstance(key, tuple) else new[0]), tuple(flips)


def _numpy_getitem(getitem: Callable) -> Callable:
    """``tensor[key]`` with numpy's negative steps while recording numpy code (PyTorch,
    and therefore verigrad outside :func:`recording`, refuses them)."""

    def __getitem__(self: Tensor, key: Any) -> Any:
        if _RECORDING.get():
            rewritten = _positive_steps(self, key)
            if rewritten is not None:
                out = getitem(self, rewritten[0])
                return O.flip(out, rewritten[1])
        return getitem(self, key)

    __getitem__.__doc__ = getitem.__doc__
    return __getitem__


def _install() -> None:
    Tensor.__getitem__ = _numpy_getitem(Tensor.__getitem__)
    Tensor.__array_ufunc__ = __array_ufunc__
    Tensor.__array_function__ = __array_function__
    for name, what in (("__array__", "np.asarray / np.array (the tensor became a numpy array)"),
                       ("__float__", "float(tensor)"), ("item", "tensor.item()"),
                       ("tolist", "tensor.tolist()"), ("numpy", "tensor.numpy()")):
        setattr(Tensor, name, _guarded(getattr(Tensor, name), what))


_install()

