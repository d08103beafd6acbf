"""A corpus of wrong gradients (mutants) and nasty-but-correct functions for the checker.

Each mutant is a custom Function with a correct forward and a hand-written backward that is
wrong in one of the ways people get backward rules wrong. ``MUTANTS`` maps a name to
``(fn, inputs, culprit grad_fn name)``; ``CORRECT`` maps a name to ``(fn, inputs)``.
"""
from __future__ import annotations

import numpy as np
import sympy

import verigrad as vg


def _t(a):
    return vg.tensor(np.asarray(a, dtype=np.float64))


def function(name, forward, backward, symbolic=None):
    """A vg.Function subclass from plain numpy functions of the input arrays."""

    def fwd(ctx, *args):
        ctx.save_for_backward(*[a for a in args if isinstance(a, vg.Tensor)])
        ctx.args = args
        return _t(forward(*[a.numpy() if isinstance(a, vg.Tensor) else a for a in args]))

    def bwd(ctx, grad):
        arrays = [a.numpy() if isinstance(a, vg.Tensor) else a for a in ctx.args]
        grads = backward(grad.numpy(), *arrays)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(None if g is None else _t(g) for g in grads)

    ns = {"forward": staticmethod(fwd), "backward": staticmethod(bwd)}
    if symbolic is not None:
        ns["symbolic"] = staticmethod(symbolic)
    return type(name, (vg.Function,), ns)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# --- wrong gradients ------------------------------------------------------------------------

SignFlip = function("SignFlip", np.sin, lambda g, x: -g * np.cos(x), sympy.sin)
Scaled = function("Scaled", np.sin, lambda g, x: g * np.cos(x) * (1 + 1e-7), sympy.sin)
ScaledNoMirror = function("ScaledNoMirror", np.sin, lambda g, x: g * np.cos(x) * (1 + 1e-6))
# d/dx x*sin(x) = sin(x) + x cos(x): the second term dropped (invisible at x = 0)
DroppedTerm = function("DroppedTerm", lambda x: x * np.sin(x), lambda g, x: g * np.sin(x),
                       lambda x: x * sympy.sin(x))
WrongDerivative = function("WrongDerivative", np.sin, lambda g, x: g * np.sin(x), sympy.sin)
# y = A @ x with the gradient of A computed as x g^T instead of g x^T (transposed)
MatVec = function(
    "MatVec", lambda a, x: a @ x,
    lambda g, a, x: (np.outer(g, x).T if a.shape[0] == a.shape[1] else np.outer(g, x), a.T @ g),
    lambda a, x: np.array([sympy.Add(*[a[i, k] * x[k] for k in range(x.shape[0])])
                           for i in range(a.shape[0])], dtype=object))
OneWrongElement = function(
    "OneWrongElement", np.tanh,
    lambda g, x: g * (1 - np.tanh(x) ** 2) + np.eye(1, x.size, x.size // 2).reshape(x.shape) * 1e-3
    * g.reshape(x.shape), sympy.tanh)
OneWrongElementNoMirror = function(
    "OneWrongElementNoMirror", np.tanh,
    lambda g, x: g * (1 - np.tanh(x) ** 2) * (1 + 0.5 * (np.arange(x.size) == 7777).reshape(x.shape)))
# x (3,) + b (1,) broadcast: the bias gradient must be summed, not taken from entry 0
WrongReduction = function(
    "WrongReduction", lambda x, b: x + b, lambda g, x, b: (g, g[:1]),
    lambda x, b: np.array([x[i] + b[0] for i in range(x.shape[0])], dtype=object))
# f(x, y) = x*y called as f(x, x): each input's gradient is right; the engine adds them
TwiceCountedOnce = function(
    "TwiceCountedOnce", lambda x, y: x * y, lambda g, x, y: (g * y, None),
    lambda x, y: x * y)
AdditiveConstant = function("AdditiveConstant", np.exp, lambda g, x: g * np.exp(x) + 1e-6,
                            sympy.exp)
SoftplusWrong = function("SoftplusWrong", lambda x: np.log1p(np.exp(x)),
                         lambda g, x: g * _sigmoid(x) * 1.001,
                         lambda x: sympy.log(1 + sympy.exp(x)))

MUTANTS = {
    "sign flip": (lambda x: SignFlip.apply(x).sum(), [np.array([0.3, 1.2])], "SignFlipBackward"),
    "scale 1+1e-7": (lambda x: Scaled.apply(x).sum(), [np.array([0.3, 1.2, -0.4])],
                     "ScaledBackward"),
    "scale 1+1e-6 without mirror": (lambda x: ScaledNoMirror.apply(x).sum(),
                                    [np.array([0.3, 1.2])], "ScaledNoMirrorBackward"),
    "dropped product-rule term at zero": (lambda x: DroppedTerm.apply(x).sum(),
                                          [np.array([0.0])], "DroppedTermBackward"),
    "wrong elementary derivative": (lambda x: WrongDerivative.apply(x).sum(),
                                    [np.array([0.5, 2.0])], "WrongDerivativeBackward"),
    "transposed matmul at a symmetric matrix": (
        lambda a, x: vg.tanh(MatVec.apply(a, x)).sum(),
        [np.array([[2.0, 1.0], [1.0, 3.0]]), np.array([1.0, 1.0])], "MatVecBackward"),
    "one wrong element": (lambda x: OneWrongElement.apply(x).sum(),
                          [np.linspace(-1, 1, 9)], "OneWrongElementBackward"),
    "wrong broadcast reduction": (lambda x, b: (WrongReduction.apply(x, b) ** 2).sum(),
                                  [np.array([0.5, 1.0, 2.0]), np.array([0.1])],
                                  "WrongReductionBackward"),
    "input used twice, counted once": (lambda x: TwiceCountedOnce.apply(x, x).sum(),
                                       [np.array([0.7, -1.3])], "TwiceCountedOnceBackward"),
    "additive constant": (lambda x: AdditiveConstant.apply(x).sum(), [np.array([0.2, 0.4])],
                          "AdditiveConstantBackward"),
    "softplus off by 0.1%": (lambda x: (SoftplusWrong.apply(x) * 2).sum(),
                             [np.linspace(-3, 3, 7)], "SoftplusWrongBackward"),
}

# --- nasty but correct ----------------------------------------------------------------------

Softplus = function("Softplus", lambda x: np.logaddexp(0, x), lambda g, x: g * _sigmoid(x),
                    lambda x: sympy.log(1 + sympy.exp(x)))
SoftplusNoMirror = function("SoftplusNoMirror", lambda x: np.logaddexp(0, x),
                            lambda g, x: g * _sigmoid(x))

CORRECT = {
    "steep sin(1e3 x)": ("sin(1000*x)", {"x": 1.0}),
    "high frequency sin(1e6 x)": ("sin(1000000*x)", {"x": 0.37}),
    "huge x**2 at 1e10": ("x**2", {"x": 1e10}),
    "tiny x**2 at 1e-8": ("x**2 * y", {"x": 1e-8, "y": 3.0}),
    "exp(x) at 700": ("exp(x)", {"x": 700.0}),
    "cancellation (1 - cos x)/x^2 at 1e-9": ("(1 - cos(x)) / x**2", {"x": 1e-9}),
    "near the log edge": ("log(x)", {"x": 1e-12}),
    "near a pole 1/x": ("1/x", {"x": 1e-6}),
    "near the tan pole": ("tan(x)", {"x": 1.5707963}),
    "sqrt near 0": ("sqrt(x)", {"x": 1e-14}),
    "saturated softplus": ("softplus(x)", {"x": 40.0}),
    "saturated sigmoid": ("sigmoid(x)", {"x": -40.0}),
    "saturated tanh": ("tanh(x)", {"x": 30.0}),
    "logsumexp of large values": ("logsumexp(v, dim=0)", {"v": [1000.0, 1001.0, 999.5]}),
    "softmax": ("sum(softmax(v, dim=0) * w)", {"v": [0.1, 2.0, -1.0], "w": [1.0, -2.0, 0.5]}),
    "mlp": ("sum(tanh(A @ x) ** 2)", {"A": [[0.5, -1.0], [2.0, 0.1], [0.3, 0.3]],
                                      "x": [1.0, -0.5]}),
    "float32 inputs": ("sin(x) * exp(y)", {"x": np.float32(0.7), "y": np.float32(-1.2)}),
    "correct custom Function": (lambda x: Softplus.apply(x).sum(), [np.linspace(-3, 3, 7)]),
    "correct custom Function, no mirror": (lambda x: SoftplusNoMirror.apply(x).sum(),
                                           [np.linspace(-3, 3, 7)]),
    "prod with a zero": ("prod(x)", {"x": [0.0, 2.0, 3.0]}),
    "sum that cancels to exactly zero": ("sum(tanh(v))", {"v": np.linspace(-1, 1, 150)}),
    "matrix function": (lambda a: vg.log_softmax(a @ a.T, 1).sum(),
                        [np.array([[1.0, 2.0], [0.5, -1.0]])]),
}

KINKS = {
    "relu at 0": ("relu(x)", {"x": 0.0}),
    "abs at 0": ("abs(x) * y", {"x": 0.0, "y": 2.0}),
    "max tie": ("max(v)", {"v": [1.0, 3.0, 3.0]}),
    "maximum tie": ("maximum(x, y)", {"x": 1.0, "y": 1.0}),
    "clamp at its bound": ("clamp(x, min=0)", {"x": 0.0}),
}

# --- functions that are not what their graph says (issue 9, item 3): fail ------------------

_calls = [0]


def _drifting(x):
    # a forward that changes on every call (a counter, an unseeded dropout)
    _calls[0] += 1
    return (x * x).sum() + 1e-3 * _calls[0]


_noise_rng = np.random.default_rng(12345)

BROKEN = {
    "x * x.detach()": (lambda x: (x * x.detach()).sum(), [np.array([1.0, 2.0])]),
    "(x * 2).detach()": (lambda x: (x * 2).detach().sum(), [np.array([1.0, 2.0])]),
    "numpy round trip": (lambda x: (vg.tensor(np.sin(x.numpy())) * x).sum(),
                         [np.array([1.0, 2.0])]),
    "numpy round trip in a vector output": (lambda x: vg.tensor(np.exp(x.numpy())) + x,
                                            [np.array([0.5, -0.5])]),
    "forward that changes on every call": (_drifting, [np.array([1.0, 2.0])]),
    "forward with unseeded noise": (
        lambda x: (x * x).sum() * (1 + 1e-6 * float(_noise_rng.standard_normal())),
        [np.array([1.0, 2.0])]),
}

# --- points outside the domain (item 5): inconclusive -------------------------------------

DOMAIN = {
    "log of a negative": ("log(x)", {"x": -1.0}),
    "sqrt of a negative": ("sqrt(x)", {"x": -4.0}),
    "one entry outside the domain": (lambda x: vg.log(x).sum(), [np.array([2.0, -1.0])]),
    "log1p below -1": ("log1p(x) * y", {"x": -2.0, "y": 3.0}),
}

# --- kinks without a mirror (item 5): inconclusive, found from one-sided differences -------

ReluNoMirror = function("ReluNoMirror", lambda x: np.maximum(x, 0), lambda g, x: g * (x > 0))
AbsNoMirror = function("AbsNoMirror", np.abs, lambda g, x: g * np.sign(x))
WHERE_KINKS = {
    "where(x > 0, x, -x) at 0": ("where(x > 0, x, -x)", {"x": 0.0}),
    "where(x >= 1, x*x, 3*x - 2) at 1": ("where(x >= 1, x*x, 3*x - 2) * y",
                                         {"x": 1.0, "y": 0.5}),
}
NOMIRROR_KINKS = {
    "relu Function without a mirror at 0": (lambda x: ReluNoMirror.apply(x).sum(),
                                            [np.array([0.0, 1.0])]),
    "abs Function without a mirror at 0": (lambda x: (AbsNoMirror.apply(x) * 3).sum(),
                                           [np.array([0.0, -2.0])]),
}
