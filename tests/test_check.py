"""The checker on a corpus of wrong gradients and nasty-but-correct functions."""
from __future__ import annotations

import numpy as np
import pytest

import verigrad as vg
from corpus import CORRECT, KINKS, MUTANTS, OneWrongElementNoMirror, function


def _run(fn, inputs, **options):
    if isinstance(fn, str):
        return vg.check(fn, **inputs, **options)
    return vg.check(fn, *inputs, **options)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_is_caught_and_its_op_named(name):
    fn, inputs, culprit = MUTANTS[name]
    report = _run(fn, inputs)
    assert report.verdict == "fail", str(report)
    assert report.culprit is not None and report.culprit.grad_fn == culprit, str(report)
    assert culprit in str(report)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_no_correct_function_is_flagged(name):
    fn, inputs = CORRECT[name]
    report = _run(fn, inputs)
    assert report.verdict == "pass", str(report)
    assert report.culprit is None


@pytest.mark.parametrize("name", sorted(KINKS))
def test_kinks_are_inconclusive_never_fail(name):
    fn, inputs = KINKS[name]
    report = _run(fn, inputs)
    assert report.verdict == "inconclusive", str(report)
    kinked = [e for e in report.entries if e.reason == "kink"]
    assert kinked and all(e.left is not None and e.right is not None for e in kinked)


def test_finite_differences_alone_do_not_flag_a_cancelling_sum():
    # f is 0 up to rounding of 150 terms: FD must budget for that noise, not for |f|
    report = vg.check("sum(tanh(v))", v=np.linspace(-1, 1, 150), use_symbolic=False, nearby=0)
    assert report.verdict == "pass", str(report)


def test_singularity_at_the_point_is_inconclusive_not_a_contract_failure():
    report = vg.check("1/x", x=0.0)
    assert report.verdict == "inconclusive" and not report.contract
    assert report.entries[0].reason == "singularity"


def test_readme_expression_entries():
    report = vg.check("w*x + b", x=2.0, w=3.0, b=1.0)
    assert report.verdict == "pass" and report.ok
    assert [(e.input, e.tape, e.symbolic) for e in report.entries] == [
        ("x", 3.0, 3.0), ("w", 2.0, 2.0), ("b", 1.0, 1.0)]
    for e in report.entries:
        assert e.finite_diff == pytest.approx(e.symbolic, rel=1e-9)
        assert e.fd_error is not None and e.fd_error < 1e-6
        assert e.status == "pass" and e.abs_error == 0.0


def test_summary_names_culprit_path_and_worst_entries():
    fn, inputs, _ = MUTANTS["softplus off by 0.1%"]
    text = str(_run(fn, inputs))
    assert text.startswith("verigrad: FAIL")
    assert "culprit: SoftplusWrongBackward returns a wrong gradient for input 0 (arg0)" in text
    assert "path SumBackward0 <- MulBackward0 <- SoftplusWrongBackward" in text
    assert "relative error 0.001" in text
    assert "x[" in text and "fail (wrong)" in text


def test_ill_conditioned_point_passes_with_a_note():
    report = vg.check("(1 - cos(x)) / x**2", x=1e-9)
    assert report.verdict == "pass"
    assert any(n.startswith("ill-conditioned") for n in report.notes)
    (entry,) = report.entries
    assert entry.reason == "ill-conditioned" and entry.replayed == pytest.approx(entry.tape)
    assert entry.symbolic == pytest.approx(-1e-9 / 12, rel=1e-6)


def test_a_one_entry_error_among_ten_thousand_is_found_with_its_index():
    x = np.random.default_rng(0).standard_normal(10_000)
    report = vg.check(lambda x: OneWrongElementNoMirror.apply(x).sum(), x, nearby=0)
    assert report.verdict == "fail"
    assert report.culprit.grad_fn == "OneWrongElementNoMirrorBackward"
    assert report.culprit.element == (7777,)


def test_float32_input_is_checked_in_float64_with_a_note():
    report = vg.check(lambda x: (vg.sin(x) * vg.exp(x)).sum(), np.float32([0.1, 0.2, 0.3]))
    assert report.verdict == "pass"
    assert any("float32" in n and "not a wrong rule" in n for n in report.notes)


def test_nearby_point_failure_is_reported_with_its_seed():
    fn, inputs, _ = MUTANTS["dropped product-rule term at zero"]
    report = _run(fn, inputs, seed=5)
    assert report.points[0].verdict == "pass"  # at 0 the dropped term x*cos(x) is zero
    failed = [p for p in report.points[1:] if p.verdict == "fail"]
    assert failed and failed[0].seed == 6
    assert any(e.point == failed[0].index for e in report.entries)


def test_seed_makes_the_report_reproducible():
    fn, inputs, _ = MUTANTS["softplus off by 0.1%"]
    a, b = _run(fn, inputs, seed=3), _run(fn, inputs, seed=3)
    assert [(e.label, e.tape, e.point) for e in a.entries] == \
        [(e.label, e.tape, e.point) for e in b.entries]
    assert [p.values for p in a.points] == [p.values for p in b.points]


def test_vector_output_checks_each_output_entry():
    report = vg.check(lambda x: vg.sin(x) * 2, np.array([0.1, 0.5]))
    assert report.verdict == "pass"
    assert {e.output for e in report.entries} == {(0,), (1,)}
    assert len(report.entries) == 4


def test_rtol_atol_override_the_derived_tolerance():
    fn, inputs, _ = MUTANTS["scale 1+1e-7"]
    assert _run(fn, inputs).verdict == "fail"
    assert _run(fn, inputs, rtol=1e-3, atol=1e-9, nearby=0).entries[0].status == "pass"


def test_gradcheck_drop_in():
    x = vg.tensor([0.3, 0.9], dtype=vg.float64, requires_grad=True)
    assert vg.gradcheck(vg.sin, (x,)) is True
    fn, inputs, _ = MUTANTS["sign flip"]
    with pytest.raises(vg.GradcheckError, match="SignFlipBackward") as err:
        vg.gradcheck(fn, tuple(inputs))
    assert err.value.report.verdict == "fail"
    assert vg.gradcheck(fn, tuple(inputs), raise_exception=False) is False


def test_backward_with_wrong_shape_is_a_failure_naming_the_function():
    Bad = function("BadShape", np.sin, lambda g, x: np.ones((4, 3)))
    report = vg.check(lambda x: Bad.apply(x).sum(), np.array([0.1, 0.2, 0.3]))
    assert report.verdict == "fail"
    assert "BadShape.backward returned a gradient of shape (4, 3)" in str(report)


@pytest.mark.parametrize("args,kwargs,match", [
    (("w*x",), {"x": 1.0}, "missing value"),
    (("w*x",), {"x": 1.0, "w": 2.0, "q": 3.0}, "q not in the expression"),
    (("x",), {"x": "abc"}, "must be numbers"),
    (("x.__class__",), {"x": 1.0}, "attribute access"),
    ((42,), {}, "needs a callable"),
    ((np.sin,), {}, "at least one input"),
])
def test_bad_input_gets_a_clear_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vg.check(*args, **kwargs)


def test_step_sweeps_are_made_only_when_a_report_asks_for_them():
    # the sweep re-runs f ~30 times per entry: a check in a test suite never pays for it;
    # reading an attribute runs nothing, add_details() (called by the writers) makes them
    report = vg.check("sin(x) * y", x=1.0, y=2.0)
    assert report.fd_traces == [] and "add_details" in report.derivatives_note
    traces = report.add_details().fd_traces
    assert [t.input for t in traces] == ["x", "y"] and all(len(t.steps) > 5 for t in traces)
    assert report.add_details().fd_traces is traces  # made once
    assert '"fd_traces"' in report.to_json()


def test_an_input_that_does_not_reach_the_output_has_zero_gradient():
    """An unused bias, or outputs that each read some of the inputs: zeros, not a KeyError."""
    r = vg.check(lambda x, w: vg.sin(x).sum(), np.ones(3), np.ones(2))
    assert r.verdict == "pass" and [e.tape for e in r.entries if e.input == "w"] == [0.0, 0.0]
    assert vg.check(lambda x, w: (vg.sin(x), vg.cos(w)), np.ones(3), np.ones(2)).verdict == "pass"


def test_float32_overflow_is_inconclusive():
    report = vg.check("exp(x)", x=np.float32(89.0))
    assert report.verdict == "inconclusive" and any("overflows" in n for n in report.notes)


@pytest.mark.parametrize("expr,verdict", [
    ("sum(relu(x)*x)", "pass"), ("sum(relu(x)**2)", "pass"), ("sum(x*abs(x))", "pass"),
    ("sum(relu(x))", "inconclusive"), ("sum(abs(x))", "inconclusive")])
def test_smooth_at_a_switch_is_not_a_kink(expr, verdict):
    """relu(x)*x is C1 at 0: its one-sided derivatives agree up to the high-precision
    forward's rounding over the step (0 and -2e-21 were read as a kink)."""
    assert vg.check(expr, x=[0.0, 1.0]).verdict == verdict


@pytest.mark.parametrize("seed,max_rows", [(0, 16), (5, 16), (3, 2)])
def test_float32_run_is_compared_along_the_given_point_cotangents(seed, max_rows):
    """30 outputs: projections on seeded cotangents, which the float32 run must share."""
    x = np.float32(np.random.default_rng(0).normal(size=30))
    report = vg.check(lambda x: vg.tanh(x) * 2, x, seed=seed, max_rows=max_rows)
    assert report.verdict == "pass", str(report)
    assert any("within float32's rounding" in n for n in report.notes), report.notes
