"""Issue 9, items 3 and 5: finite differences held against the tape and the mirror (a cut
graph, a forward that changes between calls), points outside the domain, empty inputs, and
kinks found without a mirror (one-sided differences) or at a where() boundary."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import verigrad as vg
from corpus import BROKEN, DOMAIN, NOMIRROR_KINKS, WHERE_KINKS, function
from verigrad.checker import finite_diff as fd


def _run(fn, inputs):
    return vg.check(fn, **inputs) if isinstance(fn, str) else vg.check(fn, *inputs)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_function_that_is_not_its_graph_fails(name):
    fn, inputs = BROKEN[name]
    report = _run(fn, inputs)
    assert report.verdict == "fail", str(report)
    said = " ".join(report.notes + report.contract)
    assert "graph is broken" in said or "not deterministic" in said, str(report)


def test_the_broken_graph_message_gives_both_slopes():
    report = vg.check(lambda x: (x * x.detach()).sum(), np.array([1.0, 2.0]))
    note = next(n for n in report.notes if "graph is broken" in n)
    assert "finite differences 2" in note and "tape 1" in note and "detach()" in note
    assert report.culprit is None  # no op is wrong: the function is not its graph
    assert not any("wiring" in n for n in report.notes)


def test_a_drifting_forward_is_named_not_deterministic():
    calls = []

    def f(x):
        calls.append(1)
        return (x * x).sum() * (1 + 1e-9 * len(calls))

    report = vg.check(f, np.array([1.0, 2.0]), nearby=0)
    assert report.verdict == "fail"
    assert any("not deterministic" in c for c in report.contract), str(report)


def test_a_forward_flat_in_float64_is_no_broken_graph():
    # tanh(20) and lse(z) - z[3] round to constants: FD is exactly 0 with a tiny error
    # estimate, the tape is 1e-17; differences cannot resolve that, so it is no finding
    for fn, x in [(lambda x: vg.tanh(x).sum(), np.array([20.0, 3.0])),
                  (lambda z: vg.logsumexp(z, 0) - z[3], np.array([0., 1., 2., 40., -1.]))]:
        report = vg.check(fn, x)
        assert report.verdict == "pass", str(report)


@pytest.mark.parametrize("name", sorted(DOMAIN))
def test_a_point_outside_the_domain_is_inconclusive(name):
    fn, inputs = DOMAIN[name]
    report = _run(fn, inputs)
    assert report.verdict == "inconclusive", str(report)
    assert "outside the domain" in report.reasons
    assert any("outside the domain" in n for n in report.notes)


def test_log_of_a_negative_no_longer_claims_agreement():
    report = vg.check("log(x)", x=-1.0)
    assert report.verdict == "inconclusive"
    assert all(e.status == "inconclusive" for e in report.entries)


@pytest.mark.parametrize("inputs", [(np.array([]),), (np.zeros((2, 0)),)])
def test_empty_inputs_are_a_one_line_error(inputs):
    with pytest.raises(ValueError, match="is empty") as info:
        vg.check(lambda x: x.sum(), *inputs)
    assert "\n" not in str(info.value)


def test_an_empty_expression_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="'v' is empty"):
        vg.check("sum(v)", v=[])


def test_only_empty_outputs_are_an_error():
    with pytest.raises(ValueError, match="only empty outputs"):
        vg.check(lambda x: x[:0], np.array([1.0, 2.0]))


@pytest.mark.parametrize("name", sorted(NOMIRROR_KINKS) + sorted(WHERE_KINKS))
def test_kinks_without_a_mirror_are_inconclusive_with_both_sides(name):
    fn, inputs = {**NOMIRROR_KINKS, **WHERE_KINKS}[name]
    report = _run(fn, inputs)
    assert report.verdict == "inconclusive", str(report)
    kinked = [e for e in report.entries if e.reason == "kink"]
    assert kinked and all(e.left != e.right for e in kinked)


def test_a_slope_outside_both_sides_of_a_kink_still_fails():
    # relu without a mirror whose backward says 2 at 0: not between 0 and 1
    Bad = function("ReluSlope2", lambda x: np.maximum(x, 0),
                   lambda g, x: g * ((x > 0) + 2.0 * (x == 0)))
    report = vg.check(lambda x: Bad.apply(x).sum(), np.array([0.0, 1.0]))
    assert report.verdict == "fail" and report.culprit.grad_fn == "ReluSlope2Backward"


def test_a_mirrored_smooth_function_is_no_kink():
    Smooth = function("SmoothSq", lambda x: x * x, lambda g, x: 2 * g * x, lambda x: x * x)
    assert vg.check(lambda x: Smooth.apply(x).sum(), np.array([0.0, 1.0])).verdict == "pass"


@pytest.mark.parametrize("f, x, kink", [
    (lambda v: np.maximum(v, 0), 0.0, True), (np.abs, 0.0, True),
    (lambda v: np.where(v > 1, 3 * v, v + 2), 1.0, True),
    (np.sin, 1.0, False), (np.exp, 3.0, False), (lambda v: np.sin(1e6 * v), 0.37, False),
    (lambda v: v ** 2, 1e10, False), (lambda v: np.maximum(v, 0), 1e-9, False)])
def test_one_sided_differences_see_kinks_and_only_kinks(f, x, kink):
    left, right = fd.one_sided(f, np.array([x]), np.array([1.0]))
    assert bool(fd.is_kink(left, right)[0]) is kink
    central = fd.derivative(f, np.array([x]), np.array([1.0]))
    if not kink:
        assert not central.kink_suspect[0]


@pytest.mark.parametrize("x", [1e-5, 1e-7, 3e-8])
def test_an_ill_conditioned_forward_is_no_broken_graph(x):
    # (1 - cos x)/x**2 cancels catastrophically: FD differentiates the rounding staircase
    # (-1e7 at 1e-7, with a confident error estimate); that is no cut in the graph
    report = vg.check("(1 - cos(x)) / x**2", x=x)
    assert report.verdict == "pass", str(report)


def test_a_kink_among_many_entries_without_a_mirror_hides_no_wrong_element():
    # 101 entries: the node check bisects on random projections; the kink at x[50] is
    # recognised there and the search goes on, so a wrong x[70] is still found
    x = np.linspace(-1, 1, 101)
    x[50] = 0.0
    Relu = function("ReluMany", lambda x: np.maximum(x, 0), lambda g, x: g * (x > 0))
    assert vg.check(lambda x: Relu.apply(x).sum(), x).verdict == "inconclusive"
    Wrong = function("ReluManyWrong", lambda x: np.maximum(x, 0),
                     lambda g, x: g * (x > 0) * (1 + 0.01 * (np.arange(x.size) == 70)))
    report = vg.check(lambda x: Wrong.apply(x).sum(), x)
    assert report.verdict == "fail" and report.culprit.element == (70,)
