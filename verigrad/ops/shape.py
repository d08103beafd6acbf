"""Shape ops (views where numpy gives a view), concatenation, indexing and dtype casts.

Their forwards work unchanged on object arrays of SymPy expressions, so each one's mirror
is its forward.
"""
from __future__ import annotations

import numpy as np

from ..registry import Domain, defop


def _cases(*cs):
    return Domain(intervals=(((-2.0, 2.0),),), cases=lambda rng: list(cs))


def _shape_op(name, forward, cases, params, vjp=None, inputs=("x",), moves_data=True, **face):
    vjp = vjp or (lambda F, g, shapes: F.reshape(g, shapes[0]))
    return defop(name, inputs=inputs, params=params, forward=forward, vjp=vjp, mirror=forward,
                 domain=_cases(*cases), moves_data=moves_data, **face)


def _view(x, shape):
    return np.reshape(x, shape, copy=False)


def _reshape(x, shape):
    return np.reshape(x, shape)


def _squeeze_dims(x, dims):
    return np.squeeze(x, tuple(d for d in dims if x.shape[d] == 1)) if x.ndim else x


def _index_tuple(dim, item):
    return (slice(None),) * dim + (item,)


def _select(x, dim, index):
    return x[_index_tuple(dim, index)]


def _slice(x, dim, start, stop, step):
    return x[_index_tuple(dim, slice(start, stop, step))]


def _zeros(shape, like):
    return np.zeros(shape, dtype=np.asarray(like).dtype)


def _select_backward(g, shape, dim, index):
    z = _zeros(shape, g)
    z[_index_tuple(dim, index)] = g
    return z


def _slice_backward(g, shape, dim, start, stop, step):
    z = _zeros(shape, g)
    z[_index_tuple(dim, slice(start, stop, step))] = g
    return z


def _index_put(g, shape, key):
    z = _zeros(shape, g)
    np.add.at(z, key, g)  # repeated indices accumulate
    return z


def _split(F, g, dim, shapes):
    bounds = np.cumsum([s[dim] for s in shapes])
    return tuple(F.slice(g, dim, int(b - s[dim]), int(b), 1) for b, s in zip(bounds, shapes))


VIEW = _shape_op("view", _view, [(((2, 3),), {"shape": (3, 2)}), (((4,),), {"shape": (2, 2)})],
                 ("shape",), numpy="reshape")
UNSAFE_VIEW = _shape_op("_unsafe_view", _reshape, [(((2, 3),), {"shape": (6,)})], ("shape",),
                        numpy="reshape")
# x[...] and x[:, :] in PyTorch: a new view of the whole tensor
ALIAS = _shape_op("alias", lambda x: np.asarray(x).view(), [(((2, 3),), {})], (),
                  lambda F, g: g,
                  public=False)
CLONE = defop("clone", forward=np.copy, vjp=lambda F, g: g, mirror=np.copy, domain=_cases(
    (((2, 3),), {})), numpy="copy")
TRANSPOSE = _shape_op("transpose", lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1),
                      [(((2, 3),), {"dim0": 0, "dim1": 1}), (((2, 3, 4),), {"dim0": -1, "dim1": 0})],
                      ("dim0", "dim1"), lambda F, g, dim0, dim1: F.swapaxes(g, dim0, dim1),
                      numpy="swapaxes")
PERMUTE = _shape_op("permute", lambda x, dims: np.transpose(x, dims),
                    [(((2, 3, 4),), {"dims": (2, 0, 1)}), (((2, 3),), {"dims": (1, 0)})], ("dims",),
                    lambda F, g, dims: F.transpose(g, tuple(np.argsort([d % len(dims) for d in dims]))),
                    numpy="transpose")
UNSQUEEZE = _shape_op("unsqueeze", lambda x, dim: np.expand_dims(x, dim),
                      [(((3,),), {"dim": 0}), (((2, 3),), {"dim": -1})], ("dim",),
                      numpy="expand_dims")
# PyTorch's overloads: squeeze() 0, squeeze(dim) 1, squeeze(dims) 2
SQUEEZE = _shape_op("squeeze", lambda x: np.squeeze(x), [(((1, 3, 1),), {})], ())
SQUEEZE_DIM = _shape_op("squeeze.dim", lambda x, dim: _squeeze_dims(x, (dim,)),
                        [(((1, 3),), {"dim": 0}), (((2, 3),), {"dim": 1})], ("dim",))
SQUEEZE_DIMS = _shape_op("squeeze.dims", _squeeze_dims, [(((1, 3, 1),), {"dims": (0, 2)})],
                         ("dims",))
EXPAND = _shape_op("expand", lambda x, size: np.broadcast_to(x, size),
                   [(((3,),), {"size": (2, 3)}), (((2, 1),), {"size": (2, 4)})], ("size",),
                   # the engine sums a broadcast gradient back to the input's shape
                   lambda F, g: g, numpy="broadcast_to")
CAT = defop("cat", inputs=("*tensors",), params=("dim",),
            forward=lambda *tensors, dim: np.concatenate(tensors, axis=dim),
            vjp=lambda F, g, dim, shapes: _split(F, g, dim % len(shapes[0]), shapes),
            mirror=lambda *tensors, dim: np.concatenate(tensors, axis=dim), numpy="concatenate",
            moves_data=True,
            domain=_cases((((2,), (3,)), {"dim": 0}), (((2, 2), (2, 1), (2, 3)), {"dim": 1})))
STACK = defop("stack", inputs=("*tensors",), params=("dim",),
              forward=lambda *tensors, dim: np.stack(tensors, axis=dim),
              vjp=lambda F, g, dim, shapes: tuple(
                  F.select(g, dim % (len(shapes[0]) + 1), i) for i in range(len(shapes))),
              mirror=lambda *tensors, dim: np.stack(tensors, axis=dim), moves_data=True,
              domain=_cases((((2,), (2,)), {"dim": 0}), (((2, 3), (2, 3), (2, 3)), {"dim": -1})))
SELECT = _shape_op("select", _select, [(((3,),), {"dim": 0, "index": 1}),
                                        (((2, 3),), {"dim": 1, "index": -1})], ("dim", "index"),
                   lambda F, g, dim, index, shapes: F.select_backward(g, shapes[0], dim, index),
                   public=False, numpy=())  # np.select is another function
SLICE = _shape_op("slice", _slice, [(((5,),), {"dim": 0, "start": 1, "stop": 4, "step": 2}),
                                     (((2, 4),), {"dim": 1, "start": None, "stop": -1, "step": None})],
                  ("dim", "start", "stop", "step"),
                  lambda F, g, dim, start, stop, step, shapes: F.slice_backward(
                      g, shapes[0], dim, start, stop, step),
                  public=False)
INDEX = _shape_op("index", lambda x, key: x[key],
                  [(((4,),), {"key": (np.array([0, 2, 2]),)}),
                   (((2, 3),), {"key": (np.array([True, False]), slice(None))})], ("key",),
                  lambda F, g, key, shapes: F.index_put(g, shapes[0], key),
                  public=False)
SELECT_BACKWARD = _shape_op("select_backward", _select_backward,
                            [(((3,),), {"shape": (2, 3), "dim": 0, "index": 1})],
                            ("shape", "dim", "index"),
                            lambda F, g, dim, index: F.select(g, dim, index),
                            public=False)
SLICE_BACKWARD = _shape_op("slice_backward", _slice_backward,
                           [(((2,),), {"shape": (5,), "dim": 0, "start": 1, "stop": 4, "step": 2})],
                           ("shape", "dim", "start", "stop", "step"),
                           lambda F, g, dim, start, stop, step: F.slice(g, dim, start, stop, step),
                           public=False)
INDEX_PUT = _shape_op("index_put", _index_put,
                      [(((3,),), {"shape": (4,), "key": (np.array([0, 2, 2]),)})], ("shape", "key"),
                      lambda F, g, key: F.index(g, key),
                      public=False, moves_data=False)  # repeated indices add up
TO_COPY = defop("_to_copy", params=("dtype", "src"), forward=lambda x, dtype, src: x.astype(dtype),
                vjp=lambda F, g, src: F.astype(g, src), mirror=lambda x, dtype, src: x,
                domain=_cases((((3,),), {"dtype": np.float32, "src": np.float64}),
                              (((2,),), {"dtype": np.float64, "src": np.float64})))
