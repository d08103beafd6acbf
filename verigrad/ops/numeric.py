"""Ops plain numpy code calls in hand-written ``jac`` code, one row each: ``hypot``,
``atan2``, ``logaddexp``, ``sign``, ``sinc``, ``var``/``std``, ``trace``, ``diagonal``/
``diag_embed``, ``linalg_vector_norm``, ``linalg_det``/``linalg_inv_ex``/``linalg_solve_ex``/
``linalg_cholesky_ex`` (numpy's: of the lower triangle),
``sort`` and ``flip`` (grad_fn names as PyTorch's). Below them the numpy forms
(:func:`verigrad.registry.numpy_form`) of numpy functions whose signature is not an op's:
``np.linalg.norm`` (vector, Frobenius, matrix 1/inf norms), ``np.diag``, ``np.trace``,
``np.outer``, ``np.square``, ``np.ravel``, ``np.var``/``np.std`` (``ddof``), ``np.cumsum``
(flattens without an axis), ``np.sort``, ``np.flip``, ``np.einsum`` (decomposed into products
and sums), ``np.ones_like`` and friends (constants) and ``np.shape``/``ndim``/``size``.

The numpy bridge (``verigrad.numpy_bridge``) records numpy calls through the rows' ``numpy=``
names and these forms.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._lazy import sp
from .. import ops as O  # the package being imported (it imports this module): read late
from ..registry import Domain, defop, numpy_form, public
from ..tensor import Tensor, _wrap, apply, tensor
from .reduce import _axes, _expand_back, _obj_reduce

ANY = ((-2.0, 2.0),)
POS = ((0.2, 4.0),)
NONZERO = ((-3.0, -0.3), (0.3, 3.0))
BINARY = lambda rng: [(((), ()), {}), (((3,), (3,)), {}), (((2, 3), (3,)), {}),  # noqa: E731
                      (((2, 1), (1, 3)), {})]


def _binary(name, forward, vjp, mirror, intervals=(ANY, ANY), **face):
    return defop(name, inputs=("x", "y"), forward=forward, vjp=vjp, mirror=mirror,
                 elementwise=True, domain=Domain(intervals=intervals, cases=BINARY), **face)


def _unary(name, forward, vjp, mirror, intervals=ANY, **face):
    return defop(name, forward=forward, vjp=vjp, mirror=mirror, elementwise=True,
                 domain=Domain(intervals=(intervals,)), **face)


# --- elementwise ---------------------------------------------------------------------------

HYPOT = _binary("hypot", np.hypot,
                # 0/0 only where both are 0, where PyTorch's gradient is NaN as well
                lambda F, g, x, y, out: (g * x / out, g * y / out),
                lambda x, y: sp.sqrt(x * x + y * y), (NONZERO, NONZERO))
# atan2(y, x) with x > 0 in the tests: the branch cut (x < 0, y = 0) stays out of the samples
ATAN2 = _binary("atan2", np.arctan2,
                lambda F, g, x, y: (g * y / (x * x + y * y), -g * x / (x * x + y * y)),
                lambda x, y: sp.atan2(x, y), (ANY, POS), numpy="arctan2")
LOGADDEXP = _binary("logaddexp", np.logaddexp,
                    lambda F, g, x, y, out: (g * F.exp(x - out), g * F.exp(y - out)),
                    lambda x, y: sp.log(sp.exp(x) + sp.exp(y)), ((((-3.0, 3.0),),) * 2))
# piecewise constant: a zero gradient (PyTorch's), not None (that would make it a comparison)
# the mirror as a Piecewise: sp.sign differentiates to a DiracDelta mpmath cannot evaluate
SIGN = _unary("sign", np.sign, lambda F, g: g * 0,
              lambda x: sp.Piecewise((1, x > 0), (-1, x < 0), (0, True)), NONZERO)


# the inverse and hyperbolic functions objectives call through numpy (np.arcsin is
# numpy's name; the public names are PyTorch's); (1 - x) * (1 + x) rather than 1 - x * x,
# which cancels near |x| = 1
UNIT = ((-0.9, 0.9),)
SINH = _unary("sinh", np.sinh, lambda F, g, x: F.mul_into(g, F.cosh(x)), lambda x: sp.sinh(x))
COSH = _unary("cosh", np.cosh, lambda F, g, x: F.mul_into(g, F.sinh(x)), lambda x: sp.cosh(x))
ASIN = _unary("asin", np.arcsin, lambda F, g, x: g * ((1 - x) * (1 + x)) ** -0.5,
              lambda x: sp.asin(x), UNIT, numpy="arcsin")
ACOS = _unary("acos", np.arccos, lambda F, g, x: F.g_neg(g) * ((1 - x) * (1 + x)) ** -0.5,
              lambda x: sp.acos(x), UNIT, numpy="arccos")
ATAN = _unary("atan", np.arctan, lambda F, g, x: g / (x * x + 1), lambda x: sp.atan(x),
              numpy="arctan")
ASINH = _unary("asinh", np.arcsinh, lambda F, g, x: g * (x * x + 1) ** -0.5,
               lambda x: sp.asinh(x), numpy="arcsinh")
ACOSH = _unary("acosh", np.arccosh, lambda F, g, x: g * ((x - 1) * (x + 1)) ** -0.5,
               lambda x: sp.acosh(x), ((1.2, 4.0),), numpy="arccosh")
ATANH = _unary("atanh", np.arctanh, lambda F, g, x: g / ((1 - x) * (1 + x)),
               lambda x: sp.atanh(x), UNIT, numpy="arctanh")
LOG2 = _unary("log2", np.log2, lambda F, g, x: g / (x * math.log(2)),
              lambda x: sp.log(x) / sp.log(2), POS)
LOG10 = _unary("log10", np.log10, lambda F, g, x: g / (x * math.log(10)),
               lambda x: sp.log(x) / sp.log(10), POS)
EXP2 = _unary("exp2", np.exp2, lambda F, g, out: F.mul_into(g, out * math.log(2)),
              lambda x: 2 ** x)


def _sinc_vjp(F, g, x, out):
    safe = F.where(x == 0, 1, x)  # sinc'(0) = 0
    return g * F.where(x == 0, 0, (F.cos(math.pi * x) - out) / safe)


# numpy's and PyTorch's sinc is sin(pi x) / (pi x); SymPy's is unnormalised
SINC = _unary("sinc", np.sinc, _sinc_vjp, lambda x: sp.sinc(sp.pi * x), ((-2.5, 2.5),))


# --- var / std --------------------------------------------------------------------------------

def _moment_axes(dim, ndim):
    return None if dim is None else _axes(dim, ndim)


def _back(F, g, dim, keepdim, shape):
    """A reduced gradient broadcast back to the input's shape (any dim, or all)."""
    if dim is None:
        return F.broadcast_to(g, shape)
    return _expand_back(F, g, dim, keepdim, shape)


def _centered(F, x, dim, shape):
    n = _n(shape, dim)
    return x - F.sum(x, _moment_axes(dim, len(shape)), True) / n


def _n(shape, dim):
    axes = range(len(shape)) if dim is None else _axes(dim, len(shape))
    return int(np.prod([shape[a] for a in axes]))


def _var_mirror(x, dim=None, correction=1, keepdim=False):
    x = np.asarray(x, dtype=object)
    n = _n(x.shape, dim)
    mean = _obj_reduce(x, dim, True, sp.Add) / n
    return _obj_reduce((x - mean) ** 2, dim, keepdim, sp.Add) / (n - correction)


def _var(x, dim=None, correction=1, keepdim=False):
    return np.var(x, axis=_moment_axes(dim, np.ndim(x)), ddof=correction, keepdims=keepdim)


def _std(x, dim=None, correction=1, keepdim=False):
    return np.std(x, axis=_moment_axes(dim, np.ndim(x)), ddof=correction, keepdims=keepdim)


MOMENT_CASES = lambda rng: [(((4,),), {"dim": None, "correction": 1, "keepdim": False}),  # noqa: E731
                            (((2, 3),), {"dim": 1, "correction": 0, "keepdim": False}),
                            (((2, 3, 2),), {"dim": (0, 2), "correction": 1, "keepdim": True}),
                            (((2, 3),), {"dim": None, "correction": 0, "keepdim": True})]
# PyTorch's overload var.correction: VarBackward0 / StdBackward0 for every dim form
VAR = defop("var", params=("dim", "correction", "keepdim"), forward=_var,
            vjp=lambda F, g, x, dim, correction, keepdim, shapes: _back(
                F, g, dim, keepdim, shapes[0]) * _centered(F, x, dim, shapes[0])
            * (np.float64(2.0) / np.float64(_n(shapes[0], dim) - correction)),
            mirror=_var_mirror, domain=Domain(cases=MOMENT_CASES))
STD = defop("std", params=("dim", "correction", "keepdim"), forward=_std,
            vjp=lambda F, g, x, out, dim, correction, keepdim, shapes: _back(
                F, g / (np.float64(_n(shapes[0], dim) - correction) * out), dim, keepdim,
                shapes[0])
            * _centered(F, x, dim, shapes[0]),
            mirror=lambda x, dim=None, correction=1, keepdim=False: np.vectorize(
                sp.sqrt, otypes=[object])(_var_mirror(x, dim, correction, keepdim)),
            domain=Domain(cases=MOMENT_CASES))


@numpy_form("var")
def _np_var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: float = 0,
            keepdims: bool = False, *, where: Any = True, mean: Any = None,
            correction: Any = None) -> Any:
    _refuse(dtype=dtype, out=out, mean=mean, where=None if where is True else where)
    return O.var(a, axis, correction=ddof if correction is None else correction,
                 keepdim=keepdims)


@numpy_form("std")
def _np_std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: float = 0,
            keepdims: bool = False, *, where: Any = True, mean: Any = None,
            correction: Any = None) -> Any:
    _refuse(dtype=dtype, out=out, mean=mean, where=None if where is True else where)
    return O.std(a, axis, correction=ddof if correction is None else correction,
                 keepdim=keepdims)


def _refuse(**options: Any) -> None:
    """numpy options the tape does not record (``out=``, ``dtype=``): TypeError, which the
    bridge reports as an unrecordable form of the call."""
    given = [k for k, v in options.items() if v is not None]
    if given:
        raise TypeError(f"argument(s) {', '.join(given)} are not recorded")


# --- diagonals and trace ----------------------------------------------------------------------

def _diag_ij(n_rows, n_cols, offset):
    length = max(0, min(n_rows - max(0, -offset), n_cols - max(0, offset)))
    k = np.arange(length)
    return k + max(0, -offset), k + max(0, offset)


def _diag_perm(ndim, dim1, dim2):
    d1, d2 = dim1 % ndim, dim2 % ndim
    return [a for a in range(ndim) if a not in (d1, d2)] + [d1, d2]


def _diagonal(x, offset=0, dim1=0, dim2=1):
    # a copy, with the diagonal as the last axis (numpy's and PyTorch's layout)
    x = np.asarray(x)
    moved = np.transpose(x, _diag_perm(x.ndim, dim1, dim2))
    i, j = _diag_ij(moved.shape[-2], moved.shape[-1], offset)
    return moved[..., i, j]


def _diagonal_vjp(F, g, shapes, offset, dim1, dim2):
    shape = shapes[0]
    perm = _diag_perm(len(shape), dim1, dim2)
    moved = tuple(shape[a] for a in perm)
    i, j = _diag_ij(moved[-2], moved[-1], offset)
    z = F.index_put(g, moved, (slice(None),) * (len(shape) - 2) + (i, j))
    return F.transpose(z, tuple(np.argsort(perm)))


DIAGONAL = defop("diagonal", params=("offset", "dim1", "dim2"), forward=_diagonal,
                 vjp=_diagonal_vjp, mirror=_diagonal, numpy=(),  # np.diagonal: axis1/axis2
                 domain=Domain(cases=lambda rng: [
                     (((3, 3),), {"offset": 0, "dim1": 0, "dim2": 1}),
                     (((3, 4),), {"offset": 1, "dim1": 0, "dim2": 1}),
                     (((2, 3, 4),), {"offset": -1, "dim1": 2, "dim2": 0})]))


def _diag_embed(x, offset=0):
    x = np.asarray(x)
    n = x.shape[-1] + abs(offset)
    out = np.zeros(x.shape[:-1] + (n, n), dtype=x.dtype)  # object arrays: SymPy's 0 is 0
    i, j = _diag_ij(n, n, offset)
    out[..., i, j] = x
    return out


def _diag_embed_vjp(F, g, shapes, offset):
    n = shapes[0][-1] + abs(offset)
    i, j = _diag_ij(n, n, offset)
    return F.index(g, (slice(None),) * (len(shapes[0]) - 1) + (i, j))


# PyTorch's diag_embed(input, offset, dim1=-2, dim2=-1), on the last two dimensions
DIAG_EMBED = defop("diag_embed", params=("offset",), forward=_diag_embed, vjp=_diag_embed_vjp,
                   mirror=_diag_embed,
                   domain=Domain(cases=lambda rng: [(((3,),), {"offset": 0}),
                                                    (((2, 3),), {"offset": -1})]))
TRACE = defop("trace", forward=np.trace,
              vjp=lambda F, g, shapes: g * np.eye(*shapes[0]),
              mirror=lambda x: sp.Add(*np.diagonal(np.asarray(x, dtype=object))),
              domain=Domain(cases=lambda rng: [(((3, 3),), {}), (((2, 4),), {})]))


@numpy_form("diag")
def _np_diag(v: Any, k: int = 0) -> Any:
    t = O._t(v)
    if t.ndim == 1:
        return O.diag_embed(t, int(k))
    if t.ndim == 2:
        return O.diagonal(t, int(k), 0, 1)
    raise ValueError("Input must be 1- or 2-d.")


@numpy_form("diagonal")
def _np_diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    return O.diagonal(O._t(a), int(offset), axis1, axis2)


@numpy_form("trace")
def _np_trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None,
              out: Any = None) -> Any:
    _refuse(dtype=dtype, out=out)
    t = O._t(a)
    if t.ndim == 2 and offset == 0:
        return O.trace(t)
    return O.sum(O.diagonal(t, int(offset), axis1, axis2), -1)


def _along(t: Any, axis: int, part: slice) -> Any:
    return t[(slice(None),) * axis + (part,)]


@numpy_form("diff")
def _np_diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = None,
             append: Any = None) -> Any:
    """Differences of neighbours along ``axis``, ``n`` times, as slices subtracted."""
    _refuse(prepend=prepend, append=append)
    t = O._t(a)
    if not t.ndim:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = int(axis) % t.ndim
    for _ in range(int(n)):
        t = _along(t, axis, slice(1, None)) - _along(t, axis, slice(None, -1))
    return t


@numpy_form("roll")
def _np_roll(a: Any, shift: Any, axis: Any = None) -> Any:
    """A cyclic shift as two slices put back together (over the flattened array without
    an axis, as numpy)."""
    t = O._t(a)
    if axis is None:
        return O.reshape(_np_roll(O.reshape(t, (-1,)), shift, 0), tuple(t.shape))
    shifts = (shift,) if isinstance(shift, int) else tuple(shift)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if len(shifts) == 1 and len(axes) > 1:
        shifts = shifts * len(axes)
    if len(shifts) != len(axes):
        raise ValueError("'shift' and 'axis' should be scalars or 1D sequences")
    for s, ax in zip(shifts, axes):
        ax = int(ax) % t.ndim
        k = int(s) % t.shape[ax] if t.shape[ax] else 0
        if k:
            t = O.cat([_along(t, ax, slice(-k, None)), _along(t, ax, slice(None, -k))], ax)
    return t


@numpy_form("polyval")
def _np_polyval(p: Any, x: Any) -> Any:
    """Horner's rule with recorded products and sums (coefficients may be tensors too)."""
    coeffs = [p[i] for i in range(len(p))]
    if not coeffs:
        return O.zeros_like(O._t(x))
    y = coeffs[0] * O.ones_like(O._t(x)) if len(coeffs) == 1 else coeffs[0]
    for c in coeffs[1:]:
        y = y * x + c
    return y


@numpy_form("tile")
def _np_tile(A: Any, reps: Any) -> Any:
    """Copies put together along each axis (numpy's rule for unequal lengths: ones in front)."""
    t = O._t(A)
    reps = (int(reps),) if np.ndim(reps) == 0 else tuple(int(r) for r in reps)
    nd = max(t.ndim, len(reps))
    t = O.reshape(t, (1,) * (nd - t.ndim) + tuple(t.shape))
    for ax, r in enumerate((1,) * (nd - len(reps)) + reps):
        if r != 1:
            t = O.cat([t] * r, ax) if r else _along(t, ax, slice(0, 0))
    return t


@numpy_form("kron")
def _np_kron(a: Any, b: Any) -> Any:
    """Kronecker product of vectors or matrices: a broadcast product, reshaped."""
    ta, tb = O._t(a), O._t(b)
    if ta.ndim != tb.ndim or ta.ndim not in (1, 2):
        raise TypeError("kron of arrays other than two vectors or two matrices is not recorded")
    if ta.ndim == 1:
        return O.reshape(O.reshape(ta, (-1, 1)) * O.reshape(tb, (1, -1)), (-1,))
    (m, n), (p, q) = ta.shape, tb.shape
    prod = O.reshape(ta, (m, 1, n, 1)) * O.reshape(tb, (1, p, 1, q))
    return O.reshape(prod, (m * p, n * q))


# --- products ---------------------------------------------------------------------------------

@numpy_form("outer")
def _np_outer(a: Any, b: Any, out: Any = None) -> Any:
    _refuse(out=out)
    # as torch.outer records it: a column times a row
    return O.reshape(O._t(a), (-1, 1)) * O.reshape(O._t(b), (1, -1))


@numpy_form("ravel")
def _np_ravel(a: Any, order: str = "C") -> Any:
    if order not in ("C", "A", "K"):  # no strides: only the row-major order is the same
        raise TypeError(f"order={order!r} is not recorded")
    return O.reshape(O._t(a), (-1,))


@numpy_form("square")
def square(x: Any) -> Any:
    return O.pow(x, 2)  # torch.square records PowBackward0


def _ellipses(terms: list[str], ndims: list[int]) -> tuple[list[str], str]:
    """Each ``...`` as labels of its own (upper case: numpy's labels are letters, and these
    stand for broadcast dimensions aligned from the right), and those labels in order."""
    widths = []
    for term, n in zip(terms, ndims):
        if term.count("...") > 1 or "." in term.replace("...", ""):
            raise ValueError(f"einsum: invalid subscripts {term!r}")
        widths.append(n - len(term.replace("...", "")) if "..." in term else 0)
    if any(w < 0 for w in widths):
        raise ValueError("einsum: an operand has fewer dimensions than its subscripts")
    width = max(widths, default=0)
    used = set("".join(terms))
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used][:width]
    if len(spare) < width:
        raise TypeError("einsum: too many broadcast dimensions to record")
    out = [t.replace("...", "".join(spare[width - w:])) for t, w in zip(terms, widths)]
    return out, "".join(spare)


@numpy_form("einsum")
def _np_einsum(subscripts: Any, *operands: Any, out: Any = None, optimize: Any = False,
               **options: Any) -> Any:
    """Explicit and implicit einsum (with ``...``), as broadcast products summed over the
    contracted labels (a label repeated in one operand takes that diagonal first;
    ``optimize`` changes no value)."""
    _refuse(out=out, **options)
    if not isinstance(subscripts, str):
        raise TypeError("the interleaved einsum form is not recorded")
    spec = subscripts.replace(" ", "")
    ins, arrow, outs = spec.partition("->")
    terms = ins.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {len(terms)} operand(s) in {subscripts!r}, "
                         f"{len(operands)} given")
    terms, broadcast = _ellipses(terms, [np.ndim(O._t(op)._data) for op in operands])
    letters = "".join(terms)
    if not arrow:  # numpy's implicit output: the labels used once, in alphabetical order
        outs = "..." + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                      and c not in broadcast))
    if outs.count("...") > 1 or "." in outs.replace("...", ""):
        raise ValueError(f"einsum: invalid output {outs!r}")
    outs = outs.replace("...", broadcast)
    if len(set(outs)) != len(outs) or not set(outs) <= set(letters):
        raise ValueError(f"einsum: output {outs!r} repeats a label or has one no operand has")
    labels = list(outs) + [c for c in dict.fromkeys(letters) if c not in outs]
    acc = None
    for term, op in zip(terms, operands):
        t = O._t(op)
        if t.ndim != len(term):
            raise ValueError(f"einsum: operand {term!r} has {t.ndim} dimension(s)")
        while len(set(term)) != len(term):  # a repeated label: that diagonal, as the last axis
            c = next(c for c in term if term.count(c) > 1)
            p, q = term.index(c), term.index(c, term.index(c) + 1)
            t = O.diagonal(t, 0, p, q)
            term = "".join(l for k, l in enumerate(term) if k not in (p, q)) + c
        size = dict(zip(term, t.shape))
        order = [term.index(c) for c in labels if c in term]
        if order != sorted(order):
            t = O.permute(t, order)
        full = tuple(size.get(c, 1) for c in labels)
        if full != tuple(t.shape):
            t = O.reshape(t, full)
        acc = t if acc is None else acc * t
    contracted = tuple(range(len(outs), len(labels)))
    return O.sum(acc, contracted) if contracted else acc


# --- norms --------------------------------------------------------------------------------

def _vector_norm(x, ord=2, dim=None, keepdim=False):
    x = np.asarray(x)
    axes = _moment_axes(dim, x.ndim)
    a = np.abs(x)
    if ord == math.inf:
        return np.max(a, axis=axes, keepdims=keepdim)
    if ord == -math.inf:
        return np.min(a, axis=axes, keepdims=keepdim)
    if ord == 0:
        return np.sum(a != 0, axis=axes, keepdims=keepdim).astype(x.dtype)
    if ord == 2:
        return np.sqrt(np.sum(x * x, axis=axes, keepdims=keepdim))
    if ord == 1:
        return np.sum(a, axis=axes, keepdims=keepdim)
    return np.sum(a ** ord, axis=axes, keepdims=keepdim) ** (1.0 / ord)


def _vector_norm_vjp(F, g, x, out, ord, dim, keepdim, shapes):
    shape = shapes[0]
    g = _back(F, g, dim, keepdim, shape)
    o = _back(F, out, dim, keepdim, shape)
    s = F.sign(x)
    if ord == 0:
        return g * 0
    if ord == 1:
        return g * s
    if ord == 2:  # 0 where the norm is 0 (x is 0 there), as PyTorch
        return g * x / F.where(o == 0, 1, o)
    if ord in (math.inf, -math.inf):  # split evenly among the tied extremes, as PyTorch
        hit = s * x == o
        count = _back(F, F.sum(hit, _moment_axes(dim, len(shape)), True), dim, True, shape)
        return g * s * hit / count
    return g * s * (s * x) ** (ord - 1) / o ** (ord - 1)


def _vector_norm_mirror(x, ord=2, dim=None, keepdim=False):
    x = np.asarray(x, dtype=object)
    absx = np.vectorize(sp.Abs, otypes=[object])(x)
    if ord in (math.inf, -math.inf):
        return _obj_reduce(absx, dim, keepdim, sp.Max if ord > 0 else sp.Min)
    if ord == 0:
        return _obj_reduce(np.vectorize(lambda e: sp.Piecewise((0, sp.Eq(e, 0)), (1, True)),
                                        otypes=[object])(x), dim, keepdim, sp.Add)
    if ord == 2:
        return np.vectorize(sp.sqrt, otypes=[object])(_obj_reduce(x * x, dim, keepdim, sp.Add))
    if ord == 1:
        return _obj_reduce(absx, dim, keepdim, sp.Add)
    return _obj_reduce(absx ** ord, dim, keepdim, sp.Add) ** (1 / sp.S(ord))


VECTOR_NORM = defop(
    "linalg_vector_norm", params=("ord", "dim", "keepdim"), forward=_vector_norm,
    vjp=_vector_norm_vjp, mirror=_vector_norm_mirror, numpy=(), public="vector_norm",
    method=False,
    domain=Domain(intervals=(NONZERO,), cases=lambda rng: [
        (((4,),), {"ord": 2, "dim": None, "keepdim": False}),
        (((2, 3),), {"ord": 2, "dim": 1, "keepdim": True}),
        (((3,),), {"ord": 1, "dim": None, "keepdim": False}),
        (((2, 3),), {"ord": math.inf, "dim": 0, "keepdim": False}),
        (((2, 3),), {"ord": -math.inf, "dim": None, "keepdim": False}),
        (((3,),), {"ord": 3, "dim": 0, "keepdim": False})]))


@numpy_form("linalg.norm")
def _np_norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """numpy's norm: vector norms (1-D, or along one axis), the Frobenius norm, and the
    matrix 1- and inf-norms (max column / row sums); the spectral and nuclear norms need an
    SVD and are not recorded."""
    t = O._t(x)
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    matrix = (axis is None and t.ndim == 2) or (axis is not None and len(axis) == 2)
    if axis is None and t.ndim > 2 and ord is not None:
        raise ValueError("Improper number of dimensions to norm.")
    if not matrix:
        if isinstance(ord, str):
            raise ValueError(f"Invalid norm order '{ord}' for vectors")
        dim = None if axis is None else tuple(axis)
        return O.vector_norm(t, 2 if ord is None else ord, dim, keepdims)
    rows, cols = (0, 1) if axis is None else tuple(int(a) % t.ndim for a in axis)
    if ord in (None, "fro"):
        return O.vector_norm(t, 2, None if axis is None else (rows, cols), keepdims)
    if ord in (1, -1, math.inf, -math.inf):
        # 1: the largest column sum of |x|; inf: the largest row sum
        summed, kept = (rows, cols) if ord in (1, -1) else (cols, rows)
        s = O.sum(O.abs(t), summed, True)
        out = (O.max if ord > 0 else O.min)(s, kept, True).values
        return out if keepdims else O.squeeze(out, tuple(sorted((rows, cols))))
    raise TypeError(f"the matrix norm ord={ord!r} needs an SVD, which the tape does not record")


# --- det, inv, solve --------------------------------------------------------------------------

def _recorded(a: Any) -> bool:
    return isinstance(a, Tensor)


def _inv_any(a):
    # the VJP's inverse: numpy's on arrays, the recorded op under create_graph=True
    if _recorded(a):
        return O.inv(a)
    return np.linalg.inv(a)


def _solve_any(a, b):
    if _recorded(a) or _recorded(b):
        return O.solve(a, b)
    return np.linalg.solve(a, b)


def _per_matrix(x, fn):
    """``fn`` of each SymPy matrix in an object array of shape (..., n, m)."""
    x = np.asarray(x, dtype=object)
    lead = x.shape[:-2]
    out = None
    for idx in np.ndindex(lead):
        r = fn(sp.Matrix(x[idx].tolist()))
        r = np.array(r.tolist(), dtype=object) if isinstance(r, sp.MatrixBase) else r
        if out is None:
            out = np.empty(lead + np.shape(r), dtype=object)
        out[idx] = r
    return out


def _solve_mirror(a, b):
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if b.ndim == 1:
        return _per_matrix(a, lambda m: m.LUsolve(sp.Matrix(b.tolist())))[:, 0]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a, b = np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty(batch + (a.shape[-2], b.shape[-1]), dtype=object)
    for idx in np.ndindex(batch):
        out[idx] = np.array(sp.Matrix(a[idx].tolist()).LUsolve(sp.Matrix(b[idx].tolist()))
                            .tolist(), dtype=object)
    return out


def _solve_vjp(F, g, x, y, out, needs):
    vector = y.ndim == 1
    gy = _solve_any(F.mT(x), g)
    gx = None
    if needs[0]:
        gx = -(F.expand_dims(gy, -1) * F.expand_dims(out, -2)) if vector \
            else -(gy @ F.mT(out))
    return gx, gy if needs[1] else None


# a well-conditioned sample: entries of one sign and size, so the matrices the tests draw
# are far from singular at their seeds (checked by the registry tests' central differences)
SQUARE = lambda rng: [(((2, 2),), {}), (((3, 3),), {}), (((2, 3, 3),), {})]  # noqa: E731
DET = defop("linalg_det", forward=np.linalg.det, numpy="linalg.det", public="det",
            vjp=lambda F, g, x, out: F.expand_dims(F.expand_dims(g * out, -1), -1)
            * F.mT(_inv_any(x)),
            mirror=lambda x: _per_matrix(x, lambda m: m.det(method="berkowitz")),
            domain=Domain(intervals=(ANY,), cases=SQUARE))
INV = defop("linalg_inv_ex", forward=np.linalg.inv, numpy="linalg.inv", public="inv",
            method=False,
            vjp=lambda F, g, out: -(F.mT(out) @ g @ F.mT(out)),
            mirror=lambda x: _per_matrix(x, lambda m: m.inv(method="LU")),
            domain=Domain(intervals=(ANY,), cases=SQUARE))
SOLVE = defop("linalg_solve_ex", inputs=("x", "y"), forward=np.linalg.solve,
              numpy="linalg.solve", public="solve", method=False, vjp=_solve_vjp,
              mirror=_solve_mirror,
              domain=Domain(intervals=(ANY, ANY), cases=lambda rng: [
                  (((2, 2), (2,)), {}), (((3, 3), (3, 2)), {}), (((2, 3, 3), (2, 3, 1)), {})]))


# numpy's (LAPACK's) Cholesky reads the lower triangle only, so its derivative is that of
# a function of the lower triangle: the upper entries get zero, unlike torch's symmetric
# convention. Phi (the lower triangle, diagonal halved) is Murray (2016)'s; with
# S = L^-T Phi(L^T dL) L^-1 the gradient is Phi(S + S^T).
def _phi(n: int) -> np.ndarray:
    return np.tril(np.ones((n, n))) - 0.5 * np.eye(n)


def _cholesky_vjp(F, g, out):
    n = out.shape[-1]
    phi, inv = _phi(n), _inv_any(out)
    p = (F.mT(out) @ (g * np.tril(np.ones((n, n))))) * phi
    s = F.mT(inv) @ p @ inv
    return (s + F.mT(s)) * phi


def _lower_symmetric(m):
    n = m.shape[0]
    return sp.Matrix(n, n, lambda i, j: m[max(i, j), min(i, j)])


class _SPD(Domain):
    """Symmetric positive definite samples (``a a^T + n I``), well away from singular."""

    def sample(self, rng: np.random.Generator, shape: tuple, index: int) -> np.ndarray:
        if len(shape) < 2:  # not a matrix: the forward says what is wrong
            return super().sample(rng, shape, index)
        a = rng.uniform(-1.0, 1.0, shape)
        return a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])


CHOLESKY = defop("linalg_cholesky_ex", forward=np.linalg.cholesky, numpy="linalg.cholesky",
                 public="cholesky", method=False, vjp=_cholesky_vjp,
                 mirror=lambda x: _per_matrix(
                     x, lambda m: _lower_symmetric(m).cholesky(hermitian=False)),
                 domain=_SPD(intervals=(ANY,), cases=SQUARE))


class SlogdetResult(NamedTuple):
    """``(sign, logabsdet)`` as numpy's: the sign a plain array (piecewise constant)."""

    sign: Any
    logabsdet: Any


@numpy_form("linalg.slogdet")
def _np_slogdet(a: Any) -> SlogdetResult:
    """log |det a| through det (Gaussian log-likelihoods): its mirror is log(Abs(det)),
    singular only where the matrix is."""
    d = O.det(O._t(a))
    return SlogdetResult(np.sign(d.detach().numpy()), O.log(O.abs(d)))


# --- sort -------------------------------------------------------------------------------------

class SortResult(NamedTuple):
    """``(values, indices)`` from :func:`sort`, as ``torch.return_types.sort``."""

    values: Any
    indices: Any


def _sort_key(shape, dim, indices):
    grids = list(np.indices(np.shape(indices), sparse=True))
    grids[dim % len(shape)] = np.asarray(indices)
    return tuple(grids)


# Sorting is locally a permutation: the row records the one the values chose (a parameter,
# as ``where``'s condition), so forward, VJP and mirror are exact between ties.
SORT = defop("sort", params=("dim", "indices"), numpy=(),
             forward=lambda x, dim, indices: np.asarray(x)[_sort_key(np.shape(x), dim, indices)],
             vjp=lambda F, g, dim, indices, shapes: F.index_put(
                 g, shapes[0], _sort_key(shapes[0], dim, indices)),
             mirror=lambda x, dim, indices: np.asarray(x)[_sort_key(np.shape(x), dim, indices)],
             domain=Domain(cases=lambda rng: [
                 (((4,),), {"dim": 0, "indices": np.array([2, 0, 3, 1])}),
                 (((2, 3),), {"dim": 1, "indices": np.array([[1, 2, 0], [0, 2, 1]])}),
                 (((2, 3),), {"dim": 0, "indices": np.array([[1, 0, 1], [0, 1, 0]])})]))


@public()
def sort(input: Any, dim: int = -1, descending: bool = False) -> SortResult:
    """Sorted values along ``dim`` and where they came from (ties keep their order).

    >>> import verigrad as vg
    >>> r = vg.sort(vg.tensor([3.0, 1.0, 2.0], requires_grad=True))
    >>> r.values.grad_fn.name(), r.indices.tolist()
    ('SortBackward0', [1, 2, 0])
    """
    x = O._t(input)
    if x.ndim == 0:  # one element: sorted as a vector of one
        one = apply(SORT, (O.reshape(x, (1,)),), {"dim": 0, "indices": np.zeros(1, np.int64)})
        return SortResult(O.reshape(one, ()), _wrap(np.zeros((), np.int64)))
    d = int(dim) % x.ndim
    idx = np.argsort(-x._data if descending else x._data, axis=d, kind="stable")
    return SortResult(apply(SORT, (x,), {"dim": d, "indices": idx}), _wrap(idx.astype(np.int64)))


@numpy_form("sort")
def _np_sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
             stable: Any = None) -> Any:
    _refuse(order=order)  # kind and stable change no value of a float sort
    t = O._t(a)
    if axis is None:
        return sort(O.reshape(t, (-1,)), 0).values
    return sort(t, int(axis)).values


# --- reversal ---------------------------------------------------------------------------------

def _reversing(ndim, dims):
    dims = {d % ndim for d in dims} if ndim else set()
    return tuple(slice(None, None, -1) if a in dims else slice(None) for a in range(ndim))


# torch.flip(input, dims); numpy's x[::-1] is recorded as a slice and this (numpy_bridge)
FLIP = defop("flip", params=("dims",),
             forward=lambda x, dims: np.asarray(x)[_reversing(np.ndim(x), dims)].copy(),
             vjp=lambda F, g, dims, shapes: F.index(g, _reversing(len(shapes[0]), dims)),
             mirror=lambda x, dims: np.asarray(x)[_reversing(np.ndim(x), dims)],
             domain=Domain(cases=lambda rng: [(((4,),), {"dims": (0,)}),
                                              (((2, 3),), {"dims": (0, -1)}),
                                              (((2, 3, 2),), {"dims": (1,)})]))


@numpy_form("flip")
def _np_flip(m: Any, axis: Any = None) -> Any:
    t = O._t(m)
    dims = tuple(range(t.ndim)) if axis is None else (
        (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis))
    return O.flip(t, dims)


# --- cumsum, and constants ----------------------------------------------------------------

@numpy_form("cumsum")
def _np_cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    _refuse(dtype=dtype, out=out)
    t = O._t(a)
    if axis is None:  # numpy flattens first
        return O.cumsum(O.reshape(t, (-1,)), 0)
    return O.cumsum(t, int(axis))


def _constant(name: str) -> None:
    like = getattr(np, name)

    def form(a: Any, *args: Any, **kwargs: Any) -> Any:
        # a constant of a's shape: its value never depends on a's, so no gradient flows
        data = a._data if isinstance(a, Tensor) else np.asarray(a)
        return tensor(like(data, *args, **kwargs))

    form.__name__ = form.__qualname__ = name
    form.__doc__ = f"``np.{name}`` of a tensor: a constant tensor without a gradient."
    numpy_form(name)(form)


for _name in ("ones_like", "zeros_like", "full_like"):
    _constant(_name)


def _metadata(name: str) -> None:
    like = getattr(np, name)

    def form(a: Any, *args: Any, **kwargs: Any) -> Any:
        # the shape of a tensor, not its values: nothing leaves the tape
        return like(np.empty(a.shape, dtype=a._data.dtype) if isinstance(a, Tensor) else a,
                    *args, **kwargs)

    form.__name__ = form.__qualname__ = name
    form.__doc__ = f"``np.{name}`` of a tensor (its shape only, as numpy's)."
    numpy_form(name)(form)


for _name in ("shape", "ndim", "size"):
    _metadata(_name)
