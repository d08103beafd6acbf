"""Issue 9's classes of correct-but-nasty backwards (no false alarms), lost digits told from
wrong formulas, and mutants right at the edge of the tolerance model."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import verigrad as vg
from corpus import function

# 1. float32 custom Functions
class Tanh32(vg.Function):
    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x.numpy()).astype(np.float32)
        ctx.save_for_backward(x); return vg.tensor(y)
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return vg.tensor((g.numpy() * (1 - np.tanh(x.numpy())**2)).astype(np.float32))
    @staticmethod
    def symbolic(x): return sympy.tanh(x)
class Exp32In(vg.Function):  # computes in float32 throughout
    @staticmethod
    def forward(ctx, x):
        x32 = x.numpy().astype(np.float32); ctx.x32 = x32
        return vg.tensor(np.exp(x32))
    @staticmethod
    def backward(ctx, g):
        return vg.tensor(g.numpy().astype(np.float32) * np.exp(ctx.x32))
    @staticmethod
    def symbolic(x): return sympy.exp(x)

# 2. equivalent formulas with different rounding
def sinc_f(x): return np.where(np.abs(x) < 1e-2, 1 - x*x/6 + x**4/120, np.sin(x)/np.where(x==0,1,x))
def sinc_b(g, x):
    series = -x/3 + x**3/30 - x**5/840
    closed = (x*np.cos(x) - np.sin(x))/np.where(x==0,1,x)**2
    return g*np.where(np.abs(x) < 1e-2, series, closed)
Sinc = function("Sinc", sinc_f, sinc_b, lambda x: sympy.sin(x)/x)
def omc_b(g, x):  # d/dx (1-cos x)/x^2
    series = -x/12 + x**3/180
    closed = (x*np.sin(x) - 2*(1-np.cos(x)))/np.where(x==0,1,x)**3
    return g*np.where(np.abs(x) < 1e-2, series, closed)
OneMinusCos = function("OneMinusCos", lambda x: np.where(np.abs(x)<1e-2, 0.5 - x*x/24, (1-np.cos(x))/np.where(x==0,1,x)**2), omc_b,
                       lambda x: (1-sympy.cos(x))/x**2)
Sech2 = function("TanhSech", np.tanh, lambda g, x: g/np.cosh(x)**2, sympy.tanh)
def sig(x): return 1/(1+np.exp(-x))
Swish = function("Swish", lambda x: x*sig(x), lambda g, x: g*(sig(x) + x*sig(x)*(1-sig(x))), lambda x: x/(1+sympy.exp(-x)))

# 3. cancellation-heavy vector layers
def softmax(z): e = np.exp(z - z.max()); return e/e.sum()
Softmax = function("Softmax", softmax, lambda g, z: softmax(z)*(g - np.dot(g, softmax(z))),
                   lambda z: np.array([sympy.exp(z[i])/sympy.Add(*[sympy.exp(zj) for zj in z]) for i in range(z.shape[0])], dtype=object))
def lse(z): m = z.max(); return m + np.log(np.exp(z-m).sum())
def nll(z, t): return lse(z) - z[t]
def nll_b(g, z, t):
    p = softmax(z); p[t] -= 1; return g*p, None
NLL = function("LogSoftmaxNLL", nll, nll_b, lambda z, t: sympy.log(sympy.Add(*[sympy.exp(zj) for zj in z])) - z[t])
def ln_f(x): mu = x.mean(); v = ((x-mu)**2).mean(); return (x-mu)/np.sqrt(v+1e-5)
def ln_b(g, x):
    n = x.size; mu = x.mean(); v = ((x-mu)**2).mean(); r = 1/np.sqrt(v+1e-5); xh = (x-mu)*r
    return r*(g - g.mean() - xh*(g*xh).mean())
def ln_sym(x):
    n = x.shape[0]; mu = sympy.Add(*x)/n; v = sympy.Add(*[(xi-mu)**2 for xi in x])/n
    return np.array([(xi-mu)/sympy.sqrt(v+sympy.Float(1e-5)) for xi in x], dtype=object)
LayerNorm = function("LayerNorm", ln_f, ln_b, ln_sym)

# the implementation cancels where the mirror's formula does not: lost digits, not wrong
SqrtGap = function("SqrtGap", lambda x: 1/(np.sqrt(x*x+1)+x), lambda g, x: g*(x/np.sqrt(x*x+1) - 1),
                 lambda x: 1/(sympy.sqrt(x**2+1)+x))

rng = np.random.default_rng(0)
CORRECT = {
    "backward returned as float32": (lambda x: Tanh32.apply(x).sum(), [np.linspace(-2, 2, 5)]),
    "computed in float32": (lambda x: Exp32In.apply(x).sum(), [np.linspace(-2, 2, 5)]),
    "sinc series switched at 1e-2": (lambda x: Sinc.apply(x).sum(), [np.array([0.011, -0.012, 0.5])]),
    "(1 - cos x)/x^2 series": (lambda x: OneMinusCos.apply(x).sum(), [np.array([0.0101, 0.3])]),
    "1/cosh^2 for 1 - tanh^2 at 20": (lambda x: Sech2.apply(x).sum(), [np.array([20.0, 3.0])]),
    "swish with 1 - s by subtraction": (lambda x: Swish.apply(x).sum(), [np.array([19.0, -0.3])]),
    "log-softmax + NLL near one-hot": (lambda z: NLL.apply(z, 3), [np.array([0., 1., 2., 40., -1.])]),
    "layer norm, tiny variance": (lambda x, w: (LayerNorm.apply(x) * w).sum(),
                                  [1.0 + 1e-3 * rng.standard_normal(8), rng.standard_normal(8)]),
    "built-in log-softmax near one-hot": (lambda z: -vg.log_softmax(z, 0)[3],
                                          [np.array([0., 1., 2., 40., -1.])]),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_backwards_are_not_flagged(name):
    fn, inputs = CORRECT[name]
    report = vg.check(fn, *inputs)
    assert report.verdict == "pass", str(report)


def test_a_formula_that_cancels_is_a_precision_warning_not_a_failure():
    report = vg.check(lambda x: SqrtGap.apply(x).sum(), np.array([1e4, 2.5e3, 0.5]))
    assert report.verdict == "pass", str(report)
    assert report.warnings and "loses" in report.warnings[0]
    assert any(e.status == "precision" for e in report.entries)


@pytest.mark.parametrize("factor", [1e-9, 1e-12])
def test_a_wrong_constant_at_the_tolerance_edge_still_fails(factor):
    Bad = function(f"Scaled{int(-np.log10(factor))}", np.sin,
                   lambda g, x: g * np.cos(x) * (1 + factor), sympy.sin)
    report = vg.check(lambda x: Bad.apply(x).sum(), np.array([0.3, 1.2]))
    assert report.verdict == "fail" and report.culprit.grad_fn == Bad.__name__ + "Backward"


def test_factory_classes_never_share_a_cached_rule():
    # each class has the same qualname and a different mirror; none may reuse another's rule
    for k in range(1, 40):
        F = function("Made", lambda x, k=k: k * x, lambda g, x, k=k: g * k, lambda x, k=k: k * x)
        report = vg.check(lambda x: F.apply(x).sum(), np.array([0.5, 1.5]), nearby=0)
        assert report.verdict == "pass", (k, str(report))


def test_an_underflowed_intermediate_is_rounding_not_a_wrong_rule():
    # at a nearby point exp(v[1]) underflows to 0 and the tape's gradient is 0 against an
    # exact 5e-161: the 1e-323 error of the underflow, times the cotangent 1 / exp(-700)
    report = vg.check(lambda v: vg.log(vg.exp(v).sum()), np.array([-800.0, -801.0]))
    assert report.verdict == "inconclusive", report
    assert not any(e.status == "fail" for e in report.entries)
