"""The two array namespaces VJPs are written against (the ``F`` argument).

``NUMPY`` computes a first-order backward on raw arrays; ``TENSOR`` has the same functions
built from recorded ops, so the same VJP run under ``create_graph=True`` is differentiable.
Keep the two in step: the registry tests run every VJP through both.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import ops as O  # the package being imported (it imports this module): read late
from ..autograd.pool import MIN_BYTES as _POOL_MIN, take as _take
from ..autograd.node import register_namespaces
from ..tensor import Tensor, apply, as_tensor
from . import shape as S


def broadcast_axes(g_shape: tuple, shape: tuple) -> tuple[int, ...]:
    """The axes along which an array of ``shape`` was broadcast to ``g_shape``."""
    lead = len(g_shape) - len(shape)
    return tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g_shape[i + lead] != 1)


_AXES: dict = {}  # (gradient shape, input shape) -> broadcast_axes: a step asks the same


def sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the one place broadcasting is undone; works
    on float and object arrays alike)."""
    gshape = g.shape
    axes = _AXES.get((gshape, shape))
    if axes is None:
        if len(_AXES) > 4096:  # (a bound: programs use a handful of shapes)
            _AXES.clear()
        axes = _AXES[(gshape, shape)] = broadcast_axes(gshape, shape)
    if axes:
        if shape and len(axes) == len(gshape) - len(shape) and type(g) is np.ndarray:
            # only leading axes of a dimensioned input (a bias): the same reduction gives the
            # shape itself, without keepdims and a reshape (a view the engine cannot own);
            # np.add.reduce is what ndarray.sum calls, without its Python wrapper
            return np.add.reduce(g, axis=axes)
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if g.shape != shape else g


def _mT(x):
    # ndarray.mT: the view np.swapaxes(x, -1, -2) makes, without its Python wrapper
    return x.mT if type(x) is np.ndarray and x.ndim >= 2 else np.swapaxes(x, -1, -2)


def _broadcast_to(x, shape):
    """``np.broadcast_to`` (a read-only view), built directly for a scalar of a numeric dtype:
    what sum's and mean's VJPs broadcast, where numpy's general version costs several times
    the rest of the VJP."""
    if type(x) is np.ndarray and not x.ndim or isinstance(x, np.generic):
        a = np.asarray(x)
        if a.dtype.kind in "biufc":
            shape = tuple(shape)
            view = np.ndarray(shape, a.dtype, a, 0, (0,) * len(shape))
            view.flags.writeable = False
            return view
    return np.broadcast_to(x, shape)


def _argmax_mask(x, dim):
    """One-hot mask of the first maximum along ``dim`` (the position max(dim) reports)."""
    x = np.asarray(x)
    idx = np.expand_dims(np.argmax(x, axis=dim), dim) if x.ndim else 0
    if not x.ndim:
        return np.ones((), dtype=bool)
    return np.arange(x.shape[dim]).reshape([-1 if a == dim % x.ndim else 1
                                            for a in range(x.ndim)]) == idx


def _reusable(a, b) -> bool:
    """Whether ``a op b`` can be written into ``a`` with the same result: ``a`` a writable
    array (numpy scalars and 0-d arrays gain nothing) whose shape and dtype the result keeps
    (no upcast by ``b``, no broadcast beyond ``a``)."""
    if type(a) is not np.ndarray or not a.ndim:
        return False
    tb = type(b)
    if tb is float or tb is int:
        return a.dtype.kind == "f"  # a weak Python scalar keeps the array's float dtype
    if tb is not np.ndarray and not isinstance(b, np.generic):
        return False
    if b.dtype != a.dtype:
        return False
    if b.shape != a.shape:
        try:
            if np.broadcast_shapes(a.shape, b.shape) != a.shape:
                return False
        except ValueError:
            return False
    return a.flags.writeable


# In-place forms for VJPs: ``F.imul(a, b)`` is ``a * b`` where ``a`` is a temporary the VJP
# made itself (a fresh result it uses nowhere else; ``F.mul_into(a, t)``: ``a * t`` into the
# temporary ``t``), so numpy may write into it instead of
# asking for a new buffer. The value is bitwise the same (one ufunc, same operands); the
# tensor namespace simply records the out-of-place op.
def _imul(a, b):
    return np.multiply(a, b, out=a) if _reusable(a, b) else a * b


def _mul_into(a, t):
    """``a * t`` written into the temporary ``t`` (operands in this order, as recorded)."""
    return np.multiply(a, t, out=t) if _reusable(t, a) else a * t


def _iadd(a, b):
    return np.add(a, b, out=a) if _reusable(a, b) else a + b


def _isub(a, b):
    return np.subtract(a, b, out=a) if _reusable(a, b) else a - b


def _irsub(a, b):
    """``b - a``, written into ``a``."""
    return np.subtract(b, a, out=a) if _reusable(a, b) else b - a


def _idiv(a, b):
    return np.true_divide(a, b, out=a) if _reusable(a, b) else a / b


def _ineg(a):
    return np.negative(a, out=a) if type(a) is np.ndarray and a.ndim and a.flags.writeable \
        else -a


def _pooled(a, b=None):
    """A pooled array (autograd/pool.py) for a ufunc result of ``a``'s shape and dtype, or
    None: ``a`` (and ``b``, when given) a big C-contiguous float array of that very shape and
    dtype, so the allocating call would make a C-contiguous array of it too."""
    if (type(a) is np.ndarray and a.nbytes >= _POOL_MIN and a.dtype.kind in "fc"
            and a.flags.c_contiguous
            and (b is None or (type(b) is np.ndarray and b.shape == a.shape
                               and b.dtype == a.dtype and b.flags.c_contiguous))):
        return _take(a.shape, a.dtype)
    return None


def _unary_pooled(ufunc):
    """``ufunc(x)``, into a pooled array where there is one (the same loop, the same bits)."""
    def fn(x):
        buf = _pooled(x)
        return ufunc(x) if buf is None else ufunc(x, out=buf)

    fn.__name__ = ufunc.__name__
    return fn


def _plain_mul(a, b):
    buf = _pooled(a, b)
    return a * b if buf is None else np.multiply(a, b, out=buf)


def _times(g, y):
    """``g * y`` for a product the VJP returns as it is (and never writes into): ``y`` itself
    when ``g`` is a read-only broadcast of exactly 1 with ``y``'s shape and real floating dtype
    (what ``sum``'s VJP hands on from a root), since ``1 * y`` is ``y`` bitwise there (only a
    signalling NaN would be quieted; numpy never makes one). Not for complex: ``1 * (a + inf
    j)`` is not ``a + inf j``. Saves a pass and a fresh buffer; the engine never owns ``y``
    (the node saved it), so nothing writes into it."""
    if (type(g) is np.ndarray and type(y) is np.ndarray and g.base is not None and g.ndim
            and not any(g.strides) and g.shape == y.shape and g.dtype == y.dtype
            and g.dtype.kind == "f" and g.item(0) == 1):
        return y
    return _plain_mul(g, y)


def _plain_div(a, b):
    return a / b


def _plain_neg(a):
    return -a


NUMPY = SimpleNamespace(
    sign=np.sign, cos=_unary_pooled(np.cos), sin=_unary_pooled(np.sin),
    exp=_unary_pooled(np.exp), log=_unary_pooled(np.log), sinh=_unary_pooled(np.sinh),
    cosh=_unary_pooled(np.cosh),
    sigmoid=lambda x: 1 / (1 + np.exp(-x)),
    where=np.where,
    sum=lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims),
    prod=lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims),
    expand_dims=np.expand_dims, broadcast_to=_broadcast_to, reshape=np.reshape,
    swapaxes=np.swapaxes, transpose=np.transpose, mT=_mT,
    select=S._select, slice=S._slice, index=lambda x, key: x[key],
    select_backward=S._select_backward, slice_backward=S._slice_backward,
    index_put=S._index_put, argmax_mask=_argmax_mask,
    astype=lambda x, dtype: x.astype(dtype), sum_to=sum_to,
    imul=_imul, mul_into=_mul_into, iadd=_iadd, isub=_isub, irsub=_irsub, idiv=_idiv, ineg=_ineg,
    # ``g_*``: the same on the incoming gradient, which only the engine may let a VJP
    # overwrite: in NUMPY they never do, in NUMPY_OWNED (gradients nothing else holds) they do
    g_mul=_plain_mul, g_div=_plain_div, g_neg=_plain_neg,
    # ``times``/``g_times``: ``g * y`` that the VJP returns as it is (it may be ``y`` itself:
    # see _times); ``g_times`` writes into an owned ``g``
    times=_times, g_times=_times,
)

#: NUMPY for a node whose incoming gradient is a buffer the engine owns outright
NUMPY_OWNED = SimpleNamespace(**dict(vars(NUMPY), g_mul=_imul, g_div=_idiv, g_neg=_ineg,
                                     g_times=_imul))


def _tensor_namespace() -> SimpleNamespace:
    def t(x):
        return x if isinstance(x, Tensor) else as_tensor(x)

    def sum_(x, axis=None, keepdims=False):
        x = t(x)
        return O.sum(x, axis, keepdims) if axis is not None else (
            O.reshape(O.sum(x), (1,) * x.ndim) if keepdims else O.sum(x))

    def prod_(x, axis=None, keepdims=False):
        x = t(x)
        if axis is None:
            p = O.prod(x)
            return O.reshape(p, (1,) * x.ndim) if keepdims else p
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        for a in sorted(axes, reverse=True):
            x = O.prod(x, a, True)
        return x if keepdims else O.squeeze(x, axes)

    def sum_to_(g, shape):
        axes = broadcast_axes(tuple(g.shape), tuple(shape))
        if axes:
            g = O.sum(g, axes, True)
        return O.reshape(g, shape) if tuple(g.shape) != tuple(shape) else g

    def mul(a, b):
        return a * b

    def div(a, b):
        return a / b

    def neg(a):
        return -a

    def op(o):
        return lambda x, *a, **k: apply(o, (t(x),), dict(zip(o.params, a), **k))

    return SimpleNamespace(
        sign=lambda x: as_tensor(np.sign(t(x)._data)),  # piecewise constant: no graph needed
        cos=O.cos, sin=O.sin, exp=O.exp, log=O.log, sigmoid=O.sigmoid, sinh=O.sinh,
        cosh=O.cosh,
        where=lambda c, a, b: O.where(c, a, b),
        sum=sum_, prod=prod_,
        expand_dims=O.unsqueeze, broadcast_to=O.expand, reshape=O.reshape,
        swapaxes=O.transpose, transpose=O.permute, mT=lambda x: O.transpose(x, -1, -2),
        select=op(S.SELECT), slice=op(S.SLICE), index=op(S.INDEX),
        select_backward=op(S.SELECT_BACKWARD), slice_backward=op(S.SLICE_BACKWARD),
        index_put=op(S.INDEX_PUT),
        argmax_mask=lambda x, dim: as_tensor(_argmax_mask(t(x)._data, dim)),
        astype=lambda x, dtype: O.to(x, dtype), sum_to=sum_to_,
        imul=mul, mul_into=mul, iadd=lambda a, b: a + b, isub=lambda a, b: a - b,
        irsub=lambda a, b: b - a, idiv=div, ineg=neg, g_mul=mul, g_div=div, g_neg=neg,
        times=mul, g_times=mul,
    )


class _Lazy:
    """The tensor namespace needs the public ops, which import this module: build it late."""

    _ns = None

    def __getattr__(self, name):
        if _Lazy._ns is None:
            _Lazy._ns = _tensor_namespace()
        return getattr(_Lazy._ns, name)


TENSOR = _Lazy()

# the nodes (a lower layer) run their VJPs on these
register_namespaces(NUMPY, TENSOR, NUMPY_OWNED)
