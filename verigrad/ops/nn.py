"""Ops PyTorch code records that the core set lacks: ``erf``, ``rsqrt``, ``silu``,
``cumsum``, ``index_select``, ``gather``, ``triu``/``tril``. Declared once here; the torch
bridge (``verigrad.torch``) maps aten overloads onto these rows."""
from __future__ import annotations

import math

import numpy as np

from .._lazy import sp
from ..registry import Domain, defop
from ..tensor import apply
from .elementwise import _sigmoid

__all__ = ["ERF", "RSQRT", "SILU", "CUMSUM", "INDEX_SELECT", "GATHER", "TRIU", "TRIL"]

ANY = ((-2.0, 2.0),)
POS = ((0.2, 4.0),)
_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    x = np.asarray(x)
    return np.asarray(_erf_scalar(x), dtype=x.dtype if x.dtype.kind == "f" else np.float64)


def _unary(name, forward, vjp, mirror, intervals=ANY, **face):
    return defop(name, forward=forward, vjp=vjp, mirror=mirror, elementwise=True,
                 domain=Domain(intervals=(intervals,)), **face)


ERF = _unary("erf", _erf, lambda F, g, x: g * (2 / math.sqrt(math.pi)) * F.exp(-(x * x)),
             lambda x: sp.erf(x), numpy="scipy.special.erf")
RSQRT = _unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda F, g, out: g * (-0.5) * out * out * out,
               lambda x: 1 / sp.sqrt(x), POS)
SILU = _unary("silu", lambda x: x * _sigmoid(x),
              lambda F, g, x: g * F.sigmoid(x) * (1 + x * (1 - F.sigmoid(x))),
              lambda x: x / (1 + sp.exp(-x)), ((-4.0, 4.0),))


def _obj_cumsum(x, dim):
    x = np.asarray(x)
    if x.dtype != object:
        return np.cumsum(x, axis=dim)
    out = np.empty(x.shape, dtype=object)
    moved = np.moveaxis(x, dim, -1)
    res = np.moveaxis(out, dim, -1)  # a view: writing it fills out
    for idx in np.ndindex(moved.shape[:-1]):
        acc = 0
        for k in range(moved.shape[-1]):
            acc = acc + moved[idx + (k,)]
            res[idx + (k,)] = acc
    return out


def _reverse_cumsum(F, g, dim):
    # d cumsum: each input entry collects the gradient of every later output
    total = F.sum(g, dim, True)
    return total - _cumsum_f(F, g, dim) + g


def _cumsum_f(F, g, dim):
    if isinstance(g, np.ndarray) or np.isscalar(g):
        return np.cumsum(g, axis=dim)
    return apply(CUMSUM, (g,), {"dim": dim})


# np.cumsum flattens without an axis: a different signature, not this op
CUMSUM = defop("cumsum", params=("dim",), numpy=(), forward=lambda x, dim: _obj_cumsum(x, dim),
               vjp=lambda F, g, dim: _reverse_cumsum(F, g, dim),
               mirror=lambda x, dim: _obj_cumsum(x, dim),
               domain=Domain(cases=lambda rng: [(((4,),), {"dim": 0}), (((2, 3),), {"dim": 1}),
                                                (((2, 3),), {"dim": -2})]))


def _index_select(x, dim, index):
    return np.take(x, index, axis=dim)


def _index_select_vjp(F, g, shapes, dim, index):
    key = (slice(None),) * (dim % len(shapes[0])) + (np.asarray(index),)
    return F.index_put(g, shapes[0], key)


INDEX_SELECT = defop(
    "index_select", params=("dim", "index"), forward=_index_select, vjp=_index_select_vjp,
    mirror=_index_select,
    domain=Domain(cases=lambda rng: [(((4,),), {"dim": 0, "index": np.array([0, 2, 2])}),
                                     (((2, 3),), {"dim": 1, "index": np.array([2, 0])})]))


def _gather_key(shape, dim, index):
    index = np.asarray(index)
    grids = list(np.indices(index.shape, sparse=True))
    grids[dim % len(shape)] = index
    return tuple(grids)


def _gather(x, dim, index):
    return np.asarray(x)[_gather_key(np.shape(x), dim, index)]


GATHER = defop(
    "gather", params=("dim", "index"), forward=_gather,
    vjp=lambda F, g, shapes, dim, index: F.index_put(g, shapes[0],
                                                     _gather_key(shapes[0], dim, index)),
    mirror=_gather,
    domain=Domain(cases=lambda rng: [(((2, 3),), {"dim": 1, "index": np.array([[0, 0], [2, 1]])}),
                                     (((3,),), {"dim": 0, "index": np.array([1, 1, 0])})]))


def _tri(name, np_fn):
    def mask(shape, diagonal):
        return np_fn(np.ones(shape[-2:], dtype=bool), diagonal)

    # numpy's triu/tril take k=, not diagonal=: not mapped to the numpy protocol
    return defop(name, params=("diagonal",), numpy=(),
                 forward=lambda x, diagonal: np.where(mask(np.shape(x), diagonal), x, 0),
                 vjp=lambda F, g, shapes, diagonal: F.where(mask(shapes[0], diagonal), g, 0),
                 mirror=lambda x, diagonal: np.where(mask(np.shape(x), diagonal), x, 0),
                 domain=Domain(cases=lambda rng: [(((3, 3),), {"diagonal": 0}),
                                                  (((2, 3, 4),), {"diagonal": -1})]))


TRIU = _tri("triu", np.triu)
TRIL = _tri("tril", np.tril)
