"""Reductions and the softmax family. ``dim`` follows PyTorch: an int or a tuple of ints."""
from __future__ import annotations

import math

import numpy as np

from .._lazy import sp
from ..registry import Domain, defop


def _axes(dim, ndim):
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    return tuple(sorted(int(d) % ndim for d in dims)) if ndim else ()


def _expand_back(F, g, dim, keepdim, shape):
    """Broadcast a reduced gradient back to the input's shape."""
    if not keepdim and len(shape):
        for a in _axes(dim, len(shape)):
            g = F.expand_dims(g, a)
    return F.broadcast_to(g, shape)


def _obj_reduce(x, dim, keepdim, fn):
    """Reduce an object array of SymPy expressions with ``fn(*terms)`` (Add/Mul/Max: one
    n-ary call, not n pairwise ones that re-flatten each time)."""
    x = np.asarray(x, dtype=object)
    axes = _axes(dim, x.ndim) if dim is not None else tuple(range(x.ndim))
    rest = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, rest + list(axes))
    flat = moved.reshape([x.shape[a] for a in rest] + [-1])
    out = np.empty(flat.shape[:-1], dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*flat[idx])
    if keepdim:
        out = out.reshape([1 if a in axes else x.shape[a] for a in range(x.ndim)])
    return out


def _count(shape, dim):
    return int(np.prod([shape[a] for a in _axes(dim, len(shape))])) if dim is not None \
        else int(np.prod(shape))


def _tied_share(F, g, x, out):
    """Even split of the gradient among tied extrema (PyTorch's rule for full max/min)."""
    mask = x == out
    return g * mask / F.sum(mask, None, True)  # g first: the result keeps g's dtype


def _prod_grad(F, g, x, dim, keepdim, shape):
    """d prod / d x_i = product of the others, exact when some x are zero."""
    axis = None if dim is None else _axes(dim, len(shape))
    zero = x == 0
    nonzero = F.where(zero, 1, x)
    p = F.prod(nonzero, axis, True)
    zeros = F.sum(zero, axis, True)
    g = _expand_back(F, g, dim, keepdim, shape) if dim is not None else g
    return g * F.where(zeros == 0, p / nonzero, F.where((zeros == 1) * zero, p, 0))


REDUCE_CASES = lambda rng: [(((3,),), {}), (((2, 3),), {}), (((),), {})]  # noqa: E731
DIM_CASES = lambda rng: [(((2, 3),), {"dim": 1, "keepdim": False}),  # noqa: E731
                         (((2, 3, 2),), {"dim": (0, 2), "keepdim": True}),
                         (((4,),), {"dim": -1, "keepdim": False})]
INT_DIM_CASES = lambda rng: [(((2, 3),), {"dim": 1, "keepdim": False}),  # noqa: E731
                             (((2, 3, 2),), {"dim": 0, "keepdim": True}),
                             (((4,),), {"dim": -1, "keepdim": False})]


def _red(name, forward, vjp, mirror, params=(), cases=REDUCE_CASES, intervals=(((-2.0, 2.0),),),
         **face):
    return defop(name, inputs=("x",), params=params, forward=forward, vjp=vjp, mirror=mirror,
                 domain=Domain(intervals=intervals, cases=cases), **face)


SUM = _red("sum", lambda x: np.sum(x), lambda F, g, shapes: F.broadcast_to(g, shapes[0]),
           lambda x: _obj_reduce(x, None, False, sp.Add))
SUM_DIM = _red("sum.dim_IntList", lambda x, dim, keepdim: np.sum(x, _axes(dim, x.ndim), keepdims=keepdim),
               lambda F, g, dim, keepdim, shapes: _expand_back(F, g, dim, keepdim, shapes[0]),
               lambda x, dim, keepdim: _obj_reduce(x, dim, keepdim, sp.Add), ("dim", "keepdim"),
               DIM_CASES)
def _mean(x):
    # np.mean's own steps for a float array (np.add.reduce, then one true division by the
    # count), without its Python-level bookkeeping; float16, ints, empty: np.mean itself
    if type(x) is np.ndarray and x.size and (x.dtype.kind == "c" or x.dtype.kind == "f"
                                             and x.dtype.itemsize >= 4):
        return np.add.reduce(x, axis=None) / x.size
    return np.mean(x)


MEAN = _red("mean", _mean,
            lambda F, g, shapes: F.broadcast_to(g / max(math.prod(shapes[0]), 1), shapes[0]),
            lambda x: _obj_reduce(x, None, False, sp.Add) / max(np.size(x), 1))
MEAN_DIM = _red("mean.dim", lambda x, dim, keepdim: np.mean(x, _axes(dim, x.ndim), keepdims=keepdim),
                lambda F, g, dim, keepdim, shapes: _expand_back(
                    F, g / _count(shapes[0], dim), dim, keepdim, shapes[0]),
                lambda x, dim, keepdim: _obj_reduce(x, dim, keepdim, sp.Add) / _count(np.shape(x), dim),
                ("dim", "keepdim"), DIM_CASES)
PROD = _red("prod", lambda x: np.prod(x),
            lambda F, g, x, shapes: _prod_grad(F, g, x, None, False, shapes[0]),
            lambda x: _obj_reduce(x, None, False, sp.Mul))
PROD_DIM = _red("prod.dim_int", lambda x, dim, keepdim: np.prod(x, int(dim), keepdims=keepdim),
                lambda F, g, x, dim, keepdim, shapes: _prod_grad(F, g, x, dim, keepdim, shapes[0]),
                lambda x, dim, keepdim: _obj_reduce(x, dim, keepdim, sp.Mul), ("dim", "keepdim"),
                INT_DIM_CASES)
# overload order as in PyTorch: max.dim is MaxBackward0, the full max MaxBackward1
MAX_DIM = _red("max.dim", lambda x, dim, keepdim: np.max(x, int(dim), keepdims=keepdim),
               lambda F, g, x, dim, keepdim, shapes: _expand_back(F, g, dim, keepdim, shapes[0])
               * F.argmax_mask(x, dim),
               lambda x, dim, keepdim: _obj_reduce(x, dim, keepdim, sp.Max), ("dim", "keepdim"),
               INT_DIM_CASES, numpy=("max", "amax"))
MAX = _red("max", lambda x: np.max(x),
           lambda F, g, x, out: _tied_share(F, g, x, out),
           lambda x: _obj_reduce(x, None, False, sp.Max), numpy=("max", "amax"))
MIN_DIM = _red("min.dim", lambda x, dim, keepdim: np.min(x, int(dim), keepdims=keepdim),
               lambda F, g, x, dim, keepdim, shapes: _expand_back(F, g, dim, keepdim, shapes[0])
               * F.argmax_mask(-x, dim),
               lambda x, dim, keepdim: _obj_reduce(x, dim, keepdim, sp.Min), ("dim", "keepdim"),
               INT_DIM_CASES, numpy=("min", "amin"))
MIN = _red("min", lambda x: np.min(x),
           lambda F, g, x, out: _tied_share(F, g, x, out),
           lambda x: _obj_reduce(x, None, False, sp.Min), numpy=("min", "amin"))


def _logsumexp(x, dim, keepdim):
    axes = _axes(dim, x.ndim)
    m = np.max(x, axes, keepdims=True) if x.size else np.zeros((1,) * x.ndim, x.dtype)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axes, keepdims=True)) + m
    return out if keepdim else np.squeeze(out, axes)


def _softmax(x, dim):
    e = np.exp(x - np.max(x, int(dim), keepdims=True, initial=-np.inf))  # initial: empty x
    return e / np.sum(e, int(dim), keepdims=True)


def _log_softmax(x, dim):
    s = x - np.max(x, int(dim), keepdims=True, initial=-np.inf)
    return s - np.log(np.sum(np.exp(s), int(dim), keepdims=True))


def _softmax_mirror(x, dim):
    e = np.vectorize(sp.exp, otypes=[object])(np.asarray(x, dtype=object))
    return e / _obj_reduce(e, dim, True, sp.Add)


def _log_softmax_mirror(x, dim):
    e = np.vectorize(sp.exp, otypes=[object])(np.asarray(x, dtype=object))
    return x - np.vectorize(sp.log, otypes=[object])(_obj_reduce(e, dim, True, sp.Add))


LOGSUMEXP = _red(
    "logsumexp", _logsumexp,
    lambda F, g, x, out, dim, keepdim: _expand_back(F, g, dim, keepdim, x.shape) * F.exp(
        x - _expand_back(F, out, dim, keepdim, x.shape)),
    lambda x, dim, keepdim: np.vectorize(sp.log, otypes=[object])(_obj_reduce(
        np.vectorize(sp.exp, otypes=[object])(np.asarray(x, dtype=object)), dim, keepdim, sp.Add)),
    ("dim", "keepdim"), DIM_CASES, (((-3.0, 3.0),),))
SOFTMAX = _red("softmax", _softmax,
               lambda F, g, out, dim: F.mul_into(out, g - F.sum(g * out, int(dim), True)),
               _softmax_mirror, ("dim",),
               lambda rng: [(((4,),), {"dim": 0}), (((2, 3),), {"dim": 1}), (((2, 3),), {"dim": -2})])
LOG_SOFTMAX = _red("log_softmax", _log_softmax,
                   lambda F, g, out, dim: F.irsub(F.imul(F.exp(out), F.sum(g, int(dim), True)), g),
                   _log_softmax_mirror, ("dim",),
                   lambda rng: [(((4,),), {"dim": 0}), (((2, 3),), {"dim": 1})])
