"""aten overload -> the verigrad op that records the same computation.

Each rule receives ``V`` (torch value -> verigrad value: shadow tensors for traced tensors,
constants for the rest), the aten call's ``args``/``kwargs`` and torch's own output, and
returns the verigrad result. The math lives in the registry rows the public ops apply;
a rule only translates arguments. An aten op with no rule here is decomposed by
``torch._decomp`` when torch has a decomposition, else it becomes a node checked by
finite differences (never a guessed mirror).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import verigrad as vg
from verigrad import ops as O
from verigrad.ops import nn as NN
from verigrad.tensor import apply

__all__ = ["RULES", "numpy_dtype"]

#: "aten::name.overload" (or "aten::name" for every overload) -> rule
RULES: dict[str, Callable] = {}


def rule(*names: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        for n in names:
            RULES[n if "::" in n else f"aten::{n}"] = fn
        return fn

    return deco


def numpy_dtype(dtype: Any) -> np.dtype:
    import torch

    return torch.empty((), dtype=dtype).numpy().dtype


def _kw(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _scaled(y: Any, alpha: Any) -> Any:
    return y if alpha is None or alpha == 1 else y * alpha


# --- elementwise --------------------------------------------------------------------------

@rule("add.Tensor", "add.Scalar")
def _add(V, args, kwargs, out, name):
    return O.add(V(args[0]), _scaled(V(args[1]), _kw(args, kwargs, 2, "alpha")))


@rule("sub.Tensor", "sub.Scalar")
def _sub(V, args, kwargs, out, name):
    return O.sub(V(args[0]), _scaled(V(args[1]), _kw(args, kwargs, 2, "alpha")))


@rule("rsub.Tensor", "rsub.Scalar")
def _rsub(V, args, kwargs, out, name):
    return O.rsub(_scaled(V(args[0]), _kw(args, kwargs, 2, "alpha")), V(args[1]))


@rule("mul.Tensor", "mul.Scalar")
def _mul(V, args, kwargs, out, name):
    return O.mul(V(args[0]), V(args[1]))


@rule("div.Tensor", "div.Scalar")
def _div(V, args, kwargs, out, name):
    return O.div(V(args[0]), V(args[1]))


def _unary(public: str) -> Callable:
    fn = getattr(O, public)
    return lambda V, args, kwargs, out, name: fn(V(args[0]))


for _name in ("neg", "exp", "log", "log1p", "expm1", "sqrt", "abs", "sin", "cos", "tan", "tanh",
              "sigmoid", "relu", "reciprocal", "sinh", "cosh", "asin", "acos", "atan", "asinh",
              "acosh", "atanh", "log2", "log10", "exp2"):
    RULES[f"aten::{_name}.default"] = _unary(_name)

for _row in (NN.ERF, NN.RSQRT, NN.SILU):
    RULES[f"aten::{_row.name}.default"] = (lambda row: lambda V, args, kwargs, out, name:
                                           apply(row, (V(args[0]),)))(_row)


@rule("softplus.default")
def _softplus(V, args, kwargs, out, name):
    return O.softplus(V(args[0]), _kw(args, kwargs, 1, "beta", 1),
                      _kw(args, kwargs, 2, "threshold", 20))


@rule("pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar")
def _pow(V, args, kwargs, out, name):
    return O.pow(V(args[0]), V(args[1]))


@rule("clamp.default", "clamp.Tensor")
def _clamp(V, args, kwargs, out, name):
    return O.clamp(V(args[0]), V(_kw(args, kwargs, 1, "min")), V(_kw(args, kwargs, 2, "max")))


@rule("clamp_min.default", "clamp_min.Tensor")
def _clamp_min(V, args, kwargs, out, name):
    return O.clamp(V(args[0]), min=V(args[1]))


@rule("clamp_max.default", "clamp_max.Tensor")
def _clamp_max(V, args, kwargs, out, name):
    return O.clamp(V(args[0]), max=V(args[1]))


@rule("maximum.default")
def _maximum(V, args, kwargs, out, name):
    return O.maximum(V(args[0]), V(args[1]))


@rule("minimum.default")
def _minimum(V, args, kwargs, out, name):
    return O.minimum(V(args[0]), V(args[1]))


@rule("where.self", "where.ScalarOther", "where.ScalarSelf", "where.Scalar")
def _where(V, args, kwargs, out, name):
    cond = V(args[0])
    return O.where(cond._data.astype(bool), V(args[1]), V(args[2]))


# --- reductions ---------------------------------------------------------------------------

def _dims(dim: Any) -> Any:
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return None
    return tuple(dim) if isinstance(dim, (list, tuple)) else int(dim)


@rule("sum.default", "mean.default", "prod.default")
def _full_reduce(V, args, kwargs, out, name):
    name = "sum" if "sum" in name else "mean" if "mean" in name \
        else "prod"
    return getattr(O, name)(V(args[0]))


@rule("sum.dim_IntList", "mean.dim")
def _reduce_dim(V, args, kwargs, out, name):
    reduce = O.sum if "sum" in name else O.mean
    dim = _dims(_kw(args, kwargs, 1, "dim"))
    keepdim = _kw(args, kwargs, 2, "keepdim", False)
    x = V(args[0])
    if dim is None:
        r = reduce(x)
        return O.reshape(r, (1,) * x.ndim) if keepdim else r
    return reduce(x, dim, keepdim)


@rule("var.correction", "var.dim", "var_mean.correction", "var_mean.dim")
def _var(V, args, kwargs, out, name):
    """var as mean, subtract, square, sum, divide: each step is a registry row, so the
    mirror is the formula itself (torch's ``correction``; ``unbiased`` in the old overload)."""
    x = V(args[0])
    dim = _dims(_kw(args, kwargs, 1, "dim"))
    keepdim = bool(kwargs.get("keepdim", args[3] if len(args) > 3 else False))
    if name.endswith(".dim"):
        correction = 1 if _kw(args, kwargs, 2, "unbiased", True) else 0
    else:
        c = _kw(args, kwargs, 2, "correction", None)
        correction = 1 if c is None else c
    dim = (dim,) if isinstance(dim, int) else dim
    axes = tuple(range(x.ndim)) if dim is None else tuple(d % max(x.ndim, 1) for d in dim)
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    mean = O.mean(x, axes, True)
    d = x - mean
    var = O.sum(d * d, axes, keepdim) / (n - correction)
    if name.startswith("aten::var_mean"):
        return var, (mean if keepdim else O.mean(x, axes, False))
    return var


@rule("prod.dim_int")
def _prod_dim(V, args, kwargs, out, name):
    return O.prod(V(args[0]), int(args[1]), _kw(args, kwargs, 2, "keepdim", False))


@rule("max.default", "min.default")
def _extremum(V, args, kwargs, out, name):
    return getattr(O, "max" if "max" in name else "min")(V(args[0]))


@rule("max.dim", "min.dim")
def _extremum_dim(V, args, kwargs, out, name):
    fn = O.max if "max" in name else O.min
    res = fn(V(args[0]), int(args[1]), _kw(args, kwargs, 2, "keepdim", False))
    return (res.values, None)


@rule("logsumexp.default")
def _logsumexp(V, args, kwargs, out, name):
    return O.logsumexp(V(args[0]), _dims(args[1]), _kw(args, kwargs, 2, "keepdim", False))


@rule("_softmax.default")
def _softmax(V, args, kwargs, out, name):
    return O.softmax(V(args[0]), int(args[1]))


@rule("_log_softmax.default")
def _log_softmax(V, args, kwargs, out, name):
    return O.log_softmax(V(args[0]), int(args[1]))


@rule("cumsum.default")
def _cumsum(V, args, kwargs, out, name):
    x = V(args[0])
    return apply(NN.CUMSUM, (x,), {"dim": int(args[1]) % max(x.ndim, 1)})


# --- products -----------------------------------------------------------------------------

@rule("mm.default", "bmm.default", "dot.default", "mv.default", "matmul.default")
def _mm(V, args, kwargs, out, name):
    return O.matmul(V(args[0]), V(args[1]))


@rule("addmm.default", "addmv.default", "baddbmm.default")
def _addmm(V, args, kwargs, out, name):
    prod = _scaled(O.matmul(V(args[1]), V(args[2])), _kw(args, kwargs, 4, "alpha"))
    return O.add(prod, _scaled(V(args[0]), _kw(args, kwargs, 3, "beta")))


# --- shapes -------------------------------------------------------------------------------

@rule("t.default")
def _t(V, args, kwargs, out, name):
    x = V(args[0])
    return O.transpose(x, 0, 1) if x.ndim == 2 else x


@rule("transpose.int")
def _transpose(V, args, kwargs, out, name):
    return O.transpose(V(args[0]), int(args[1]), int(args[2]))


@rule("permute.default")
def _permute(V, args, kwargs, out, name):
    return O.permute(V(args[0]), tuple(args[1]))


@rule("view.default", "_unsafe_view.default", "reshape.default")
def _view(V, args, kwargs, out, name):
    return O.reshape(V(args[0]), tuple(out.shape))


@rule("expand.default")
def _expand(V, args, kwargs, out, name):
    return O.expand(V(args[0]), tuple(out.shape))


@rule("unsqueeze.default")
def _unsqueeze(V, args, kwargs, out, name):
    return O.unsqueeze(V(args[0]), int(args[1]))


@rule("squeeze.default", "squeeze.dim", "squeeze.dims")
def _squeeze(V, args, kwargs, out, name):
    return O.squeeze(V(args[0]), args[1] if len(args) > 1 else None)


@rule("clone.default", "contiguous.default")
def _clone(V, args, kwargs, out, name):
    return O.clone(V(args[0]))


@rule("alias.default")
def _alias(V, args, kwargs, out, name):
    return O.getitem(V(args[0]), ...)


@rule("select.int")
def _select(V, args, kwargs, out, name):
    return O.getitem(V(args[0]), (slice(None),) * _pos(args[1], out.ndim + 1) + (int(args[2]),))


def _pos(dim: int, ndim: int) -> int:
    return int(dim) % max(ndim, 1)


@rule("slice.Tensor")
def _slice(V, args, kwargs, out, name):
    x = V(args[0])
    dim = _pos(_kw(args, kwargs, 1, "dim", 0), x.ndim)
    start, end = _kw(args, kwargs, 2, "start"), _kw(args, kwargs, 3, "end")
    step = _kw(args, kwargs, 4, "step", 1)
    return O.getitem(x, (slice(None),) * dim + (slice(start, end, step),))


@rule("as_strided.default")
def _as_strided(V, args, kwargs, out, name):
    # sizes, strides and offset address the input's *storage* (RNNs split their gates this
    # way on a view with an offset): each output element is the input element at that
    # storage position, a gather with an exact mirror. Positions outside the input's own
    # elements read its base, which is not this op's argument: the op is not mapped then
    x = args[0]
    size = tuple(int(s) for s in _kw(args, kwargs, 1, "size"))
    stride = tuple(int(s) for s in _kw(args, kwargs, 2, "stride"))
    offset = _kw(args, kwargs, 3, "storage_offset")
    offset = x.storage_offset() if offset is None else int(offset)
    own = _positions(tuple(x.shape), tuple(x.stride()), x.storage_offset())
    wanted = _positions(size, stride, offset)
    lo, hi = int(own.min(initial=0)), int(own.max(initial=-1))
    if wanted.size and (wanted.min() < lo or wanted.max() > hi):
        return NotImplemented
    where = np.full(hi - lo + 1, -1, dtype=np.int64)
    where[own.reshape(-1) - lo] = np.arange(own.size)
    index = where[wanted - lo] if wanted.size else wanted
    if (index < 0).any():
        return NotImplemented
    return O.getitem(O.reshape(V(x), (-1,)), index)


def _positions(shape: tuple, stride: tuple, offset: int) -> np.ndarray:
    """The storage position of every element of a strided layout, in the layout's shape."""
    pos = np.full(shape, offset, dtype=np.int64)
    for d, (n, s) in enumerate(zip(shape, stride)):
        pos += (np.arange(n, dtype=np.int64) * s).reshape((n,) + (1,) * (len(shape) - d - 1))
    return pos


@rule("tensor_split.sections", "tensor_split.indices")
def _tensor_split(V, args, kwargs, out, name):
    x = V(args[0])
    dim = _pos(_kw(args, kwargs, 2, "dim", 0), x.ndim)
    n = x.shape[dim]
    if name.endswith("sections"):
        q, r = divmod(n, int(args[1]))
        sizes = [q + 1] * r + [q] * (int(args[1]) - r)
        cuts = np.cumsum([0] + sizes).tolist()
    else:
        cuts = [0] + [min(max(int(i) + n if int(i) < 0 else int(i), 0), n) for i in args[1]] + [n]
    return tuple(O.getitem(x, (slice(None),) * dim + (slice(a, max(a, b)),))
                 for a, b in zip(cuts, cuts[1:]))


@rule("index.Tensor")
def _index(V, args, kwargs, out, name):
    key = tuple(slice(None) if i is None else V(i)._data for i in args[1])
    return O.getitem(V(args[0]), key)


@rule("index_select.default")
def _index_select(V, args, kwargs, out, name):
    x = V(args[0])
    return apply(NN.INDEX_SELECT, (x,), {"dim": _pos(args[1], x.ndim),
                                         "index": V(args[2])._data.astype(np.int64)})


@rule("gather.default")
def _gather(V, args, kwargs, out, name):
    x = V(args[0])
    return apply(NN.GATHER, (x,), {"dim": _pos(args[1], x.ndim),
                                   "index": V(args[2])._data.astype(np.int64)})


@rule("triu.default", "tril.default")
def _tri(V, args, kwargs, out, name):
    row = NN.TRIU if "triu" in name else NN.TRIL
    return apply(row, (V(args[0]),), {"diagonal": int(_kw(args, kwargs, 1, "diagonal", 0))})


@rule("cat.default")
def _cat(V, args, kwargs, out, name):
    return O.cat([V(t) for t in args[0]], _kw(args, kwargs, 1, "dim", 0))


@rule("stack.default")
def _stack(V, args, kwargs, out, name):
    return O.stack([V(t) for t in args[0]], _kw(args, kwargs, 1, "dim", 0))


@rule("_to_copy.default", "prims::convert_element_type.default", "to.dtype", "to.dtype_layout",
      "to.device", "to.other")
def _to_copy(V, args, kwargs, out, name):
    return O.to(V(args[0]), numpy_dtype(out.dtype))


@rule("copy.default")
def _copy(V, args, kwargs, out, name):
    src = O.to(V(args[1]), numpy_dtype(out.dtype))
    return O.expand(src, tuple(out.shape)) if tuple(src.shape) != tuple(out.shape) else O.clone(src)


@rule("detach.default", "lift_fresh.default", "lift_fresh_copy.default")
def _detach(V, args, kwargs, out, name):
    return None  # a constant from here on (torch's meaning of detach)
