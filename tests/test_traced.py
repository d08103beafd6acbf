"""Custom Functions without ``symbolic``: the forward, traced on the tape, is the exact
reference (validated against finite differences before it is trusted)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import verigrad as vg
from verigrad.symbolic.traced import Trace, trace_of


def _fn(forward, backward, name="Traced"):
    return type(name, (vg.Function,), {"forward": staticmethod(forward),
                                       "backward": staticmethod(backward)})


def _softplus_fwd(ctx, x):
    ctx.save_for_backward(x)
    return vg.log1p(vg.exp(-vg.abs(x))) + vg.relu(x)


def _softplus_bwd(ctx, g):
    (x,) = ctx.saved_tensors
    return g * vg.sigmoid(x)


def _cube_fwd(ctx, x):
    ctx.save_for_backward(x)
    return x * x * x


def _branchy_fwd(ctx, x):
    ctx.save_for_backward(x)
    # Python control flow on values: the trace (and its rule) depends on the branch taken
    return x * x if float(x.sum()) > 0 else vg.sin(x)


def _branchy_bwd(ctx, g):
    (x,) = ctx.saved_tensors
    return g * (2 * x if float(x.sum()) > 0 else vg.cos(x))


def _numpy_fwd(ctx, x):
    ctx.save_for_backward(x)
    return vg.tensor(np.sin(x.numpy()))  # leaves the tape: the trace must not be trusted


def _cos_bwd(ctx, g):
    (x,) = ctx.saved_tensors
    return g * vg.cos(x)


CORRECT = [
    ("softplus", _softplus_fwd, _softplus_bwd, np.array([1.5, -20.0, 30.0, 0.3])),
    ("cube", _cube_fwd, lambda ctx, g: 3 * ctx.saved_tensors[0] ** 2 * g, np.array([0.5, -2.0])),
    ("branch +", _branchy_fwd, _branchy_bwd, np.array([0.5, 2.0])),
    ("branch -", _branchy_fwd, _branchy_bwd, np.array([-0.5, -2.0])),
    ("two inputs", lambda ctx, x, w: (ctx.save_for_backward(x, w), vg.tanh(x * w))[1],
     lambda ctx, g: (lambda x, w: (g * w * (1 - vg.tanh(x * w) ** 2),
                                   g * x * (1 - vg.tanh(x * w) ** 2)))(*ctx.saved_tensors),
     (np.array([0.5, -1.0]), np.array([2.0, 0.25]))),
]

WRONG = [
    ("softplus", _softplus_fwd, lambda ctx, g: g * vg.sigmoid(ctx.saved_tensors[0]) * 1.001,
     np.array([1.5, -2.0])),
    ("cube", _cube_fwd, lambda ctx, g: 2 * ctx.saved_tensors[0] ** 2 * g, np.array([0.5, -2.0])),
    ("branch", _branchy_fwd, lambda ctx, g: g * vg.cos(ctx.saved_tensors[0]) * -1,
     np.array([-0.5, -2.0])),
]


def _exact(report) -> bool:
    """Every entry was compared with the exact (symbolic) reference."""
    return bool(report.entries) and all(e.symbolic is not None for e in report.entries)


def _check(fwd, bwd, inputs, name="Traced"):
    F = _fn(fwd, bwd, name)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    return vg.check(lambda *a: F.apply(*a).sum(), *inputs), F


@pytest.mark.parametrize("label,fwd,bwd,x", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_function_passes_against_its_traced_forward(label, fwd, bwd, x):
    report, _ = _check(fwd, bwd, x)
    assert report.verdict == "pass", report
    assert _exact(report), report.notes  # the exact reference, not finite differences alone


@pytest.mark.parametrize("label,fwd,bwd,x", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_backward_fails_against_its_traced_forward(label, fwd, bwd, x):
    report, _ = _check(fwd, bwd, x, name="Mutant")
    assert report.verdict == "fail", report
    assert "MutantBackward" in str(report.culprit) and "symbolic mirror" in str(report.culprit)


def test_forward_that_leaves_the_tape_is_not_trusted():
    report, _ = _check(_numpy_fwd, _cos_bwd, np.array([0.3, 1.0]))
    assert report.verdict == "pass"  # finite differences still check it
    assert any("traced forward is not the function" in n for n in report.notes), report.notes
    wrong, _ = _check(_numpy_fwd, lambda ctx, g: -g * vg.cos(ctx.saved_tensors[0]),
                      np.array([0.3, 1.0]))
    assert wrong.verdict == "fail"


def test_symbolic_of_a_traced_function():
    x = vg.tensor(2.0, requires_grad=True, name="x")
    F = _fn(_cube_fwd, lambda ctx, g: g)
    assert vg.symbolic(F.apply(x)) == sp.Symbol("x", real=True) ** 3


def test_branches_give_different_traces():
    F = _fn(_branchy_fwd, _branchy_bwd)
    pos = F.apply(vg.tensor([1.0, 2.0], requires_grad=True))._grad_fn
    neg = F.apply(vg.tensor([-1.0, -2.0], requires_grad=True))._grad_fn
    tp, tn = trace_of(pos), trace_of(neg)
    assert isinstance(tp, Trace) and isinstance(tn, Trace) and not tp.problem + tn.problem
    assert tp.signature != tn.signature


def test_forward_closing_over_a_parameter_treats_it_as_a_constant():
    w = vg.tensor([2.0, 3.0], requires_grad=True)

    def fwd(ctx, x):
        ctx.save_for_backward(x)
        return x * w

    report, _ = _check(fwd, lambda ctx, g: g * w.detach(), np.array([0.5, 1.5]))
    assert report.verdict == "pass" and _exact(report), report


def test_forward_that_raises_when_traced_falls_back():
    def fwd(ctx, x):
        if vg.is_grad_enabled():
            raise RuntimeError("only in no_grad")
        ctx.save_for_backward(x)
        return x * 2

    report, _ = _check(fwd, lambda ctx, g: 2 * g, np.array([0.5]))
    assert report.verdict == "pass"
    assert any("could not be traced" in n for n in report.notes), report.notes


def test_kink_of_the_traced_formula_falls_back_without_complex_step_false_alarm():
    # at 0 the trace's abs/relu kinks make its gradient differ from the smooth softplus; the
    # finite differences then decide, and the complex step (blind to abs: |30 + ih| = 30) is
    # not used: it used to report 4.0 exactly against the right 3.999999999999626
    report, _ = _check(_softplus_fwd, _softplus_bwd, np.array([0.0, 30.0]))
    assert report.verdict == "pass", report
    assert all(e.fd_method != "complex-step" for e in report.entries)


@pytest.mark.parametrize("make,bad", [
    (lambda x: (vg.exp(x) * vg.sin(x)).sum(), ""),
    (lambda x: vg.abs(x).sum(), "AbsBackward0"),
    (lambda x: vg.relu(x).sum(), "ReluBackward0"),
    (lambda x: x.max(), "MaxBackward1"),
    (lambda x: _fn(_softplus_fwd, _softplus_bwd, "Sp").apply(x).sum(), "SpBackward"),
])
def test_holomorphic_graphs_are_read_from_the_mirrors(make, bad):
    from verigrad.checker.analytic import non_holomorphic
    from verigrad.symbolic.graph import GraphView

    x = vg.tensor([0.0, 2.0], requires_grad=True)
    assert non_holomorphic(GraphView.of(make(x))) == bad


def test_rules_of_one_class_closing_over_different_tensors_are_not_shared():
    # one class whose forward reads a tensor that changes between checks: the cached rule
    # of the first check must not be reused for the second
    current = {}

    class Scaled(vg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * current["w"]

        @staticmethod
        def backward(ctx, g):
            return g * current["w"].detach()

    results = []
    for scale in (2.0, 5.0, 2.0):
        current["w"] = vg.tensor([scale, 1.0], requires_grad=True)
        report = vg.check(lambda x: Scaled.apply(x).sum(), np.array([0.5, 1.5]))
        results.append((report.verdict, _exact(report)))
    assert results == [("pass", True)] * 3
