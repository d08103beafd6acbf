"""The two array namespaces VJPs are written against (the ``F`` argument).

``NUMPY`` computes a first-order backward on raw arrays; ``TENSOR`` has the same functions
built from recorded ops, so the same VJP run under ``create_graph=True`` is differentiable.
Keep the two in step: the registry tests run every VJP through both.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from . import shape as S


def broadcast_axes(g_shape: tuple, shape: tuple) -> tuple[int, ...]:
    """The axes along which an array of ``shape`` was broadcast to ``g_shape``."""
    lead = len(g_shape) - len(shape)
    return tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g_shape[i + lead] != 1)


def sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the one place broadcasting is undone; works
    on float and object arrays alike)."""
    axes = broadcast_axes(g.shape, shape)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if g.shape != shape else g


def _argmax_mask(x, dim):
    """One-hot mask of the first maximum along ``dim`` (the position max(dim) reports)."""
    x = np.asarray(x)
    idx = np.expand_dims(np.argmax(x, axis=dim), dim) if x.ndim else 0
    if not x.ndim:
        return np.ones((), dtype=bool)
    return np.arange(x.shape[dim]).reshape([-1 if a == dim % x.ndim else 1
                                            for a in range(x.ndim)]) == idx


NUMPY = SimpleNamespace(
    sign=np.sign, cos=np.cos, sin=np.sin, exp=np.exp, log=np.log,
    sigmoid=lambda x: 1 / (1 + np.exp(-x)),
    where=np.where,
    sum=lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims),
    prod=lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims),
    expand_dims=np.expand_dims, broadcast_to=np.broadcast_to, reshape=np.reshape,
    swapaxes=np.swapaxes, transpose=np.transpose, mT=lambda x: np.swapaxes(x, -1, -2),
    select=S._select, slice=S._slice, index=lambda x, key: x[key],
    select_backward=S._select_backward, slice_backward=S._slice_backward,
    index_put=S._index_put, argmax_mask=_argmax_mask,
    astype=lambda x, dtype: x.astype(dtype), sum_to=sum_to,
)


def _tensor_namespace() -> SimpleNamespace:
    from .. import ops as O
    from ..tensor import Tensor, apply, as_tensor

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

    def op(o):
        return lambda x, *a, **k: apply(o, (t(x),), dict(zip(o.params, a), **k))

    return SimpleNamespace(
        sign=lambda x: as_tensor(np.sign(t(x)._data)),  # piecewise constant: no graph needed
        cos=O.cos, sin=O.sin, exp=O.exp, log=O.log, sigmoid=O.sigmoid,
        where=lambda c, a, b: O.where(c, a, b),
        sum=sum_, prod=prod_,
        expand_dims=O.unsqueeze, broadcast_to=O.expand, reshape=O.reshape,
        swapaxes=O.transpose, transpose=O.permute, mT=lambda x: O.transpose(x, -1, -2),
        select=op(S.SELECT), slice=op(S.SLICE), index=op(S.INDEX),
        select_backward=op(S.SELECT_BACKWARD), slice_backward=op(S.SLICE_BACKWARD),
        index_put=op(S.INDEX_PUT),
        argmax_mask=lambda x, dim: as_tensor(_argmax_mask(t(x)._data, dim)),
        astype=lambda x, dtype: O.to(x, dtype), sum_to=sum_to_,
    )


class _Lazy:
    """The tensor namespace needs the public ops, which import this module: build it late."""

    _ns = None

    def __getattr__(self, name):
        if _Lazy._ns is None:
            _Lazy._ns = _tensor_namespace()
        return getattr(_Lazy._ns, name)


TENSOR = _Lazy()
