"""Second order: ``vg.check(order=2)`` and ``vg.gradgradcheck`` check double backward.

Mutants have a right backward (the first-order check passes) and a wrong double backward;
each must fail with its grad_fn named. Correct Functions must pass, with or without a mirror.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import verigrad as vg
from verigrad.checker import GradcheckError
from verigrad.checker.problem import CheckInputError
from verigrad.checker.second_order import check_second_order
from verigrad.registry import REGISTRY
from verigrad.symbolic.graph import GraphView
from verigrad.tensor import apply


def _softplus(x):
    return vg.tensor(np.log1p(np.exp(x.numpy())))


def _fn(name, backward, symbolic=True, forward=_softplus):
    def fwd(ctx, x):
        ctx.save_for_backward(x)
        return forward(x)

    def bwd(ctx, g):
        (x,) = ctx.saved_tensors
        return backward(g, x)

    ns = {"forward": staticmethod(fwd), "backward": staticmethod(bwd)}
    if symbolic:
        ns["symbolic"] = staticmethod(lambda x: sympy.log(1 + sympy.exp(x)))
    return type(name, (vg.Function,), ns)


class WrongSigmoid(vg.Function):
    """sigmoid with a right forward and a wrong backward (used inside a backward)."""

    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + np.exp(-x.numpy()))
        ctx.s = s
        return vg.tensor(s)

    @staticmethod
    def backward(ctx, g):
        return g * vg.tensor(ctx.s * (1 - ctx.s) * 1.5)


CORRECT = {
    "softplus": _fn("Softplus", lambda g, x: g * vg.sigmoid(x)),
    "softplus-no-mirror": _fn("SoftplusNoMirror", lambda g, x: g * vg.sigmoid(x), False),
    "softplus-by-hand": _fn("SoftplusByHand", lambda g, x: g / (1 + vg.exp(-x))),
}

MUTANTS = {
    # the backward's numbers come from numpy: right values, no graph for the second pass
    "numpy-backward": _fn("NumpyBackward",
                          lambda g, x: g * vg.tensor(1 / (1 + np.exp(-x.numpy())))),
    "numpy-backward-no-mirror": _fn("NumpyBackwardNoMirror",
                                    lambda g, x: g * vg.tensor(1 / (1 + np.exp(-x.numpy()))),
                                    False),
    # right value (x - x.detach() is 0), derivative off by g/2
    "detach-trick": _fn("DetachTrick",
                        lambda g, x: g * (vg.sigmoid(x) + 0.5 * (x - x.detach()))),
    # an inner Function whose own backward is wrong
    "inner-wrong": _fn("InnerWrong", lambda g, x: g * WrongSigmoid.apply(x)),
    "inner-wrong-no-mirror": _fn("InnerWrongNoMirror", lambda g, x: g * WrongSigmoid.apply(x),
                                 False),
}

X = np.linspace(-2.0, 1.5, 5)


def _loss(F):
    return lambda x: (F.apply(x) * vg.tensor([1.0, -2.0, 0.5, 3.0, 1.0])).sum()


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_double_backward_passes(name):
    r = vg.check(_loss(CORRECT[name]), X, order=2)
    assert r.verdict == "pass", str(r)
    second = [n for n in r.nodes if n.method.startswith("second-order")]
    assert any(n.grad_fn == CORRECT[name].__name__ + "Backward" for n in second)
    assert r.settings["order"] == 2


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_wrong_double_backward_fails_naming_the_function(name):
    F = MUTANTS[name]
    assert vg.check(_loss(F), X).verdict == "pass"  # the first order is right
    r = vg.check(_loss(F), X, order=2)
    assert r.verdict == "fail"
    assert r.culprit is not None and r.culprit.grad_fn == F.__name__ + "Backward"
    assert "double backward" in r.culprit.message
    method = "symbolic" if hasattr(F, "symbolic") else "finite-differences"
    assert r.culprit.method == f"second-order {method}"


def test_numpy_backward_is_explained():
    r = vg.check(_loss(MUTANTS["numpy-backward"]), X, order=2)
    assert "exactly zero" in r.culprit.message and "numpy" in r.culprit.message


def test_vector_function_second_order():
    """A non-elementwise Function: y = A @ tanh(x), with a right and a wrong double backward."""

    def make(name, scale):
        def fwd(ctx, a, x):
            ctx.save_for_backward(a, x)
            return vg.tensor(a.numpy() @ np.tanh(x.numpy()))

        def bwd(ctx, g):
            a, x = ctx.saved_tensors
            t = vg.tanh(x)
            gx = (a.T @ g) * (1 - t * t.detach() * scale - t.detach() * t.detach() * (1 - scale))
            return g.reshape(-1, 1) @ t.reshape(1, -1), gx

        def sym(a, x):
            return np.array([sympy.Add(*[a[i, k] * sympy.tanh(x[k]) for k in range(x.shape[0])])
                             for i in range(a.shape[0])], dtype=object)

        return type(name, (vg.Function,), {"forward": staticmethod(fwd),
                                           "backward": staticmethod(bwd),
                                           "symbolic": staticmethod(sym)})

    a = np.array([[0.5, -1.0, 2.0], [0.3, 0.2, -0.7]])
    x = np.array([0.4, -0.3, 1.1])
    good = make("TanhLayer", 2.0)
    bad = make("TanhLayerHalf", 1.0)  # the same values; d/dx of the tanh**2 term halved
    assert vg.check(lambda a, x: good.apply(a, x).sum(), a, x, order=2).verdict == "pass"
    assert vg.check(lambda a, x: bad.apply(a, x).sum(), a, x).verdict == "pass"
    r = vg.check(lambda a, x: bad.apply(a, x).sum(), a, x, order=2)
    assert r.verdict == "fail" and r.culprit.grad_fn == "TanhLayerHalfBackward"
    assert r.culprit.input_index == 1


def test_gradgradcheck_drop_in():
    x = vg.tensor(X, dtype=vg.float64, requires_grad=True)
    assert vg.gradgradcheck(_loss(CORRECT["softplus"]), (x,)) is True
    assert vg.gradgradcheck(_loss(MUTANTS["detach-trick"]), (x,), raise_exception=False) is False
    with pytest.raises(GradcheckError, match="DetachTrickBackward"):
        vg.gradgradcheck(_loss(MUTANTS["detach-trick"]), (x,))


def test_order_must_be_one_or_two():
    with pytest.raises(CheckInputError, match="order"):
        vg.check("x*x", x=1.0, order=3)


DIFFERENTIABLE = [(op, i, case) for op in REGISTRY.values() if op.differentiable
                  for i, case in enumerate(op.domain.cases(np.random.default_rng(0)))]


@pytest.mark.parametrize("item", DIFFERENTIABLE, ids=lambda it: f"{it[0].name}-{it[1]}")
def test_every_registry_op_double_backward_matches_its_mirror(item):
    op, i, (shapes, params) = item
    rng = np.random.default_rng(i + 7)
    ts = [vg.tensor(op.domain.sample(rng, s, k).astype(np.float64), requires_grad=True)
          for k, s in enumerate(shapes)]
    out = apply(op, tuple(ts), params)
    if out.dtype.np.kind != "f" or not out.requires_grad:
        pytest.skip("no float output")
    findings = check_second_order(GraphView.of(out.sum()), seed=i)
    assert findings
    for f in findings:
        assert f.ok, (op.name, f.node.name(), f.wrt, f.expected, f.got, f.tolerance)


def test_torch_gradgradcheck_agrees():
    torch = pytest.importorskip("torch")

    class TSoftplus(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.nn.functional.softplus(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x)

    class TDetach(TSoftplus):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (torch.sigmoid(x) + 0.5 * (x - x.detach()))

    xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(TSoftplus.apply, (xt,))
    assert not torch.autograd.gradgradcheck(TDetach.apply, (xt,), raise_exception=False)
    x = vg.tensor(X, dtype=vg.float64, requires_grad=True)
    assert vg.gradgradcheck(CORRECT["softplus"].apply, (x,))
    assert not vg.gradgradcheck(MUTANTS["detach-trick"].apply, (x,), raise_exception=False)


def test_second_order_at_a_kink_is_inconclusive_not_the_op():
    """relu's second derivative at 0 is not a number: the built-in op is not to blame."""
    report = vg.check("relu(x)", x=0.0, order=2)
    assert report.verdict == "inconclusive" and report.culprit is None, str(report)
    assert vg.check("relu(x)*x", x=0.5, order=2).verdict == "pass"
    # C1 at 0: the first order passes, the second derivative does not exist
    assert vg.check("relu(x)*x", x=0.0, order=2).verdict == "inconclusive"
