"""Elementwise ops: unary, binary (with numpy broadcasting) and comparisons."""
from __future__ import annotations

import math
import operator

import numpy as np

from .._lazy import sp
from ..registry import Domain, defop

POS = ((0.2, 4.0),)
NONZERO = ((-3.0, -0.3), (0.3, 3.0))
ANY = ((-2.0, 2.0),)

# VJPs use F.imul/F.mul_into/F.irsub/... on temporaries they made (numpy writes into them instead of
# allocating) and F.g_mul/F.g_div/F.g_neg on the incoming gradient (overwritten only when the
# engine owns it); every such form computes the same ufunc on the same operands as the
# plain expression it replaces, so gradients are bitwise unchanged.


def _unary(name, forward, vjp, mirror, domain=ANY, params=(), cases=None, doc="", **face):
    return defop(name, inputs=("x",), params=params, forward=forward, vjp=vjp, mirror=mirror,
                 elementwise=True, domain=Domain(intervals=(domain,), cases=cases), doc=doc,
                 **face)


def _binary(name, forward, vjp, mirror, domain=(ANY, ANY), inputs=("x", "y"), doc="",
            defined=(), **face):
    return defop(name, inputs=inputs, forward=forward, vjp=vjp, mirror=mirror, elementwise=True,
                 domain=Domain(intervals=domain, defined=defined), doc=doc, **face)


def _cfunctions():
    import sympy.codegen.cfunctions as cf  # lazily: it imports SymPy

    return cf


def _sigmoid(x):
    # both tails accurate, no overflow: sigmoid(-40) is 4e-18, not 0
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x, beta=1, threshold=20):
    # PyTorch's definition: linear above the threshold
    bx = x * beta
    return np.where(bx > threshold, x, np.logaddexp(0, bx) / beta)


def _clamp(x, min=None, max=None):
    if min is not None:
        x = np.maximum(x, min)
    if max is not None:
        x = np.minimum(x, max)
    return x


def _clamp_mirror(x, min=None, max=None):
    if min is not None:
        x = sp.Max(x, min)
    if max is not None:
        x = sp.Min(x, max)
    return x


def _in_range(x, lo, hi):
    """Mask where clamp passes x through (bounds inclusive, as PyTorch)."""
    mask = True
    if lo is not None:
        mask = (x >= lo) * mask
    if hi is not None:
        mask = (x <= hi) * mask
    return mask


NEG = _unary("neg", np.negative, lambda F, g: F.g_neg(g), lambda x: -x, numpy="negative")
EXP = _unary("exp", np.exp, lambda F, g, out: F.g_mul(g, out), lambda x: sp.exp(x), expression=True)
LOG = _unary("log", np.log, lambda F, g, x: F.g_div(g, x), lambda x: sp.log(x), POS, expression=True,
             aliases={"ln": "expression"})
# SymPy's codegen log1p/expm1: log(1 + x) at 30 digits is 0 for x = 1e-129
LOG1P = _unary("log1p", np.log1p, lambda F, g, x: F.g_div(g, x + 1),
               lambda x: _cfunctions().log1p(x), ((-0.8, 3.0),), expression=True)
EXPM1 = _unary("expm1", np.expm1, lambda F, g, out: F.mul_into(g, out + 1),
               lambda x: _cfunctions().expm1(x), expression=True)
SQRT = _unary("sqrt", np.sqrt, lambda F, g, out: F.g_div(g, 2 * out), lambda x: sp.sqrt(x), POS,
              expression=True)
ABS = _unary("abs", np.abs, lambda F, g, x: F.mul_into(g, F.sign(x)), lambda x: sp.Abs(x),
             NONZERO, expression=True)
SIN = _unary("sin", np.sin, lambda F, g, x: F.mul_into(g, F.cos(x)), lambda x: sp.sin(x),
             expression=True)
COS = _unary("cos", np.cos, lambda F, g, x: F.mul_into(F.g_neg(g), F.sin(x)),
             lambda x: sp.cos(x), expression=True)
TAN = _unary("tan", np.tan, lambda F, g, out: F.mul_into(g, F.iadd(out * out, 1)),
             lambda x: sp.tan(x), ((-1.2, 1.2),), expression=True)
TANH = _unary("tanh", np.tanh, lambda F, g, out: F.mul_into(g, F.irsub(out * out, 1)),
              lambda x: sp.tanh(x), expression=True)
SIGMOID = _unary("sigmoid", _sigmoid, lambda F, g, out: F.imul(F.g_mul(g, out), 1 - out),
                 lambda x: 1 / (1 + sp.exp(-x)), ((-4.0, 4.0),), expression=True,
                 numpy="scipy.special.expit")
RELU = _unary("relu", lambda x: np.maximum(x, 0), lambda F, g, out: g * (out > 0),
              lambda x: sp.Max(x, 0), NONZERO, expression=True)
RECIPROCAL = _unary("reciprocal", np.reciprocal,
                    lambda F, g, out: F.imul(F.imul(F.g_neg(g), out), out),
                    lambda x: 1 / x, NONZERO)
SOFTPLUS = _unary(
    "softplus", _softplus,
    lambda F, g, x, beta, threshold: F.where(x * beta > threshold, g, g * F.sigmoid(x * beta)),
    lambda x, beta=1, threshold=20: sp.Piecewise(
        (x, beta * x > threshold), (sp.log(1 + sp.exp(beta * x)) / beta, True)),
    ((-3.0, 3.0),), params=("beta", "threshold"),
    cases=lambda rng: [(((3,),), {"beta": 1, "threshold": 20}),
                       (((2, 3),), {"beta": 2.0, "threshold": 5})], expression=True)
POW_SCALAR_EXP = _unary(
    "pow.Tensor_Scalar", lambda x, exponent: np.power(x, exponent),
    lambda F, g, x, exponent: g * 0 if exponent == 0 else F.imul(F.g_mul(g, exponent),
                                                                  x ** (exponent - 1)),
    lambda x, exponent: x ** exponent, POS, params=("exponent",), numpy="power",
    cases=lambda rng: [(((3,),), {"exponent": 2}), (((2, 3),), {"exponent": -1.5}),
                       (((),), {"exponent": 0.5}), (((2,),), {"exponent": 3})])
CLAMP_TENSOR = defop(
    "clamp.Tensor", inputs=("x", "min", "max"),
    forward=lambda x, min, max: _clamp(x, min, max),
    vjp=lambda F, g, x, min, max: (
        g * _in_range(x, min, max),
        None if min is None else g * (x < min),
        None if max is None else g * (x > max)),
    mirror=_clamp_mirror, elementwise=True, numpy="clip",
    domain=Domain(intervals=(ANY, ((-2.0, -0.5),), ((0.5, 2.0),)),
                  cases=lambda rng: [(((3,), (3,), (3,)), {}), (((2, 3), (3,), ()), {})]))
CLAMP = _unary("clamp", _clamp, lambda F, g, x, min, max: g * _in_range(x, min, max),
               _clamp_mirror, ((-2.0, -1.1), (-0.9, 0.9), (1.1, 2.0)), params=("min", "max"),
               numpy="clip",
               cases=lambda rng: [(((5,),), {"min": -1.0, "max": 1.0}),
                                  (((2, 3),), {"min": -1.0, "max": None}),
                                  (((),), {"min": None, "max": 1.0})])

# scalar=: numpy scalars' own operators, IEEE-exact as the ufunc (a binary ufunc call on
# numpy scalars costs more than one on 0-d arrays)
ADD = _binary("add", np.add, lambda F, g: (g, g), operator.add, scalar=operator.add)
SUB = _binary("sub", np.subtract, lambda F, g: (g, -g), operator.sub, numpy="subtract",
              scalar=operator.sub)
# g * y first: the second product may then overwrite g (when the engine owns it); both are
# returned as they are, so either may be the other factor itself (F.times)
MUL = _binary("mul", np.multiply, lambda F, g, x, y: (F.times(g, y), F.g_times(g, x)),
              operator.mul, numpy="multiply", scalar=operator.mul)
DIV = _binary("div", np.true_divide,
              lambda F, g, x, y: (g / y, F.idiv(F.imul(F.g_neg(g), x), y * y)),
              operator.truediv, (ANY, NONZERO), numpy="divide", scalar=operator.truediv)
RSUB_TENSOR = _binary("rsub.Tensor", lambda x, y: y - x, lambda F, g: (-g, g),
                      lambda x, y: y - x)
RSUB_SCALAR = _unary("rsub.Scalar", lambda x, other: other - x, lambda F, g: F.g_neg(g),
                     lambda x, other: other - x, params=("other",),
                     cases=lambda rng: [(((3,),), {"other": 2.0}), (((),), {"other": -1})])
POW_TENSOR = _binary(
    "pow.Tensor_Tensor", np.power,
    lambda F, g, x, y, out: (
        g * y * x ** (y - 1),
        g * F.where((x == 0) * (y >= 0), 0, out * F.log(x))),
    operator.pow, (POS, ANY),
    # d/dy x**y = x**y log(x): defined for x > 0 only, an edge the mirror does not show as a kink
    defined=((0.0, math.inf), None), numpy="power")


def _pow_scalar_base_vjp(F, g, x, out, base):
    # PyTorch's rule: no gradient where base == 0 and exponent >= 0; NaN for a negative base
    if base == 0:
        return g * F.where(x >= 0, 0, out * -math.inf)
    return g * out * (math.log(base) if base > 0 else math.nan)


POW_SCALAR_BASE = _unary(
    "pow.Scalar", lambda x, base: np.power(base, x), _pow_scalar_base_vjp,
    lambda x, base: base ** x, params=("base",), numpy="power",
    cases=lambda rng: [(((3,),), {"base": 2.0}), (((2, 2),), {"base": 0.5})])
MAXIMUM = _binary("maximum", np.maximum,
                  lambda F, g, x, y: (g * (x > y) + 0.5 * g * (x == y),
                                      g * (y > x) + 0.5 * g * (x == y)),
                  lambda x, y: sp.Max(x, y), expression=True)
MINIMUM = _binary("minimum", np.minimum,
                  lambda F, g, x, y: (g * (x < y) + 0.5 * g * (x == y),
                                      g * (y < x) + 0.5 * g * (x == y)),
                  lambda x, y: sp.Min(x, y), expression=True)
WHERE = defop(
    "where", inputs=("x", "y"), params=("condition",),
    forward=lambda x, y, condition: np.where(condition, x, y),
    vjp=lambda F, g, condition: (F.where(condition, g, 0), F.where(condition, 0, g)),
    # the forward works on object arrays of SymPy expressions: the condition is data
    mirror=lambda x, y, condition: np.where(condition, x, y),
    domain=Domain(intervals=(ANY, ANY),
                  cases=lambda rng: [(((4,), (4,)), {"condition": rng.random(4) > 0.5}),
                                     (((2, 3), ()), {"condition": rng.random((2, 3)) > 0.5})]))


def _comparison(name, forward, mirror):
    # the numpy function is the forward itself (np.greater for gt)
    return defop(name, inputs=("x", "y"), forward=forward, vjp=None, mirror=mirror,
                 elementwise=True, domain=Domain(intervals=(ANY, ANY)), numpy=forward.__name__)


GT = _comparison("gt", np.greater, lambda x, y: sp.StrictGreaterThan(x, y))
GE = _comparison("ge", np.greater_equal, lambda x, y: sp.GreaterThan(x, y))
LT = _comparison("lt", np.less, lambda x, y: sp.StrictLessThan(x, y))
LE = _comparison("le", np.less_equal, lambda x, y: sp.LessThan(x, y))
EQ = _comparison("eq", np.equal, lambda x, y: sp.Eq(x, y))
NE = _comparison("ne", np.not_equal, lambda x, y: sp.Ne(x, y))
