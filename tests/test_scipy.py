"""vg.check_grad in scipy's convention: scipy's own functions pass, mutants are named."""
import numpy as np
import pytest

import verigrad as vg

so = pytest.importorskip("scipy.optimize")
X0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])


def rosen(x):  # scipy's formula, without scipy's np.asarray
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0, axis=0)


def test_scipy_rosen_passes():
    r = vg.check_grad(rosen, so.rosen_der, X0, hess=so.rosen_hess, nearby=1)
    assert r.verdict == "pass"


def test_scipy_own_rosen_falls_back_with_a_note():
    r = vg.check_grad(so.rosen, so.rosen_der, X0, nearby=0)
    assert r.verdict == "pass"
    assert any("np.asarray" in n and "finite differences" in n for n in r.notes)


@pytest.mark.parametrize("delta", [1e-3, 1e-7])
def test_wrong_entry_is_named(delta):
    def jac(x):
        g = so.rosen_der(x)
        g[2] += delta
        return g

    r = vg.check_grad(rosen, jac, X0, nearby=0)
    assert r.verdict == "fail"
    assert [e.label for e in r.entries if e.status == "fail"] == ["x[2]"]
    assert r.culprit.grad_fn == "jac"


def _wrong_hess(x):
    h = so.rosen_hess(x)
    h[0, 1] += 1.0
    return h


def test_wrong_hess_is_blamed_not_jac():
    r = vg.check_grad(rosen, so.rosen_der, X0, hess=_wrong_hess, nearby=0)
    assert r.verdict == "fail"
    assert [c.grad_fn for c in r.culprits] == ["hess"]
    assert "H[0, 1]" in [e.label for e in r.entries if e.status == "fail"]


def residuals(x):
    return np.stack([x[0] ** 2 + x[1], np.sin(x[0]) * x[1] - x[2], 3e7 * x[1] ** 2 * x[2]])


def jacobian(x):
    return np.array([[2 * x[0], 1.0, 0.0], [np.cos(x[0]) * x[1], np.sin(x[0]), -1.0],
                     [0.0, 6e7 * x[1] * x[2], 3e7 * x[1] ** 2]])


def test_jacobian_and_stiff_terms_pass():
    assert vg.check_jacobian(residuals, jacobian, [0.3, 2.0, 0.5], nearby=1).verdict == "pass"


def test_transposed_jacobian_is_named():
    r = vg.check_jacobian(residuals, lambda x: jacobian(x).T, [0.3, 2.0, 0.5], nearby=0)
    assert r.verdict == "fail"
    assert any("transpose" in n for n in r.notes)


def test_wrong_sign_row_is_named():
    def jac(x):
        J = jacobian(x)
        J[1] *= -1
        return J

    r = vg.check_jacobian(residuals, jac, [0.3, 2.0, 0.5], nearby=0)
    assert r.verdict == "fail"
    assert any("[1]" in n and "sign" in n for n in r.notes)
    assert all(e.label.startswith("d fun[1]") for e in r.entries if e.status == "fail")


@pytest.mark.parametrize("scale,verdict", [(1.0, "pass"), (1 + 1e-5, "fail")])
def test_a_float32_jac_is_judged_at_float32_precision(scale, verdict):
    # a right jac returned as float32 is off by ~3e-8 relative: rounding, not a wrong rule;
    # a wrong one at 1e-5 is still wrong
    report = vg.check_grad(lambda x: np.sum(np.exp(x)),
                           lambda x: (np.exp(x) * scale).astype(np.float32),
                           np.array([0.1, 0.2, -1.3]))
    assert report.verdict == verdict, report


# --- nan and inf at the point: no false "other values on tensors" ------------------------

def _exp_pair(x):
    return np.stack([np.exp(x[0]), x[1] ** 2])


def _exp_pair_jac(x):
    return np.array([[np.exp(x[0]), 0.0], [0.0, 2 * x[1]]])


@pytest.mark.parametrize("fun, jac, x0", [
    (_exp_pair, _exp_pair_jac, [1000.0, 1.0]),                        # inf in one output
    (lambda x: np.stack([np.log(x[0]), x[1] ** 2]),                    # nan in one output
     lambda x: np.array([[1 / x[0], 0.0], [0.0, 2 * x[1]]]), [-1.0, 1.0]),
    (lambda x: np.sum(np.sqrt(x)), lambda x: 0.5 / np.sqrt(x), [-1.0, 1.0]),  # nan scalar
], ids=["inf", "nan", "nan-scalar"])
def test_a_nan_or_inf_output_is_recorded_and_not_called_different(fun, jac, x0):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the probe's own arithmetic is quiet
        with np.errstate(all="ignore"):
            r = vg.check_grad(fun, jac, x0, nearby=0)
    assert not any("other values" in n for n in r.notes), r.notes
    assert not any("not recorded" in n for n in r.notes), r.notes
    assert r.verdict == "inconclusive"
    assert any("outside the domain" in n for n in r.notes)


@pytest.mark.parametrize("got, want", [
    ([np.nan, 1.0], [1.0, 1.0]),        # nan on tensors only
    ([1.0, 1.0], [np.inf, 1.0]),        # inf on numpy only
    ([-np.inf, 2.0], [np.inf, 2.0]),    # infinities of opposite signs
    ([np.inf, 2.0], [np.inf, 3.0]),     # a finite difference beside an equal inf
])
def test_values_that_differ_around_nan_or_inf_are_named_never_up_to_0(got, want):
    from verigrad import scipy_check as sc

    setup = sc._setup(lambda x: x * 1.0, np.array(got), (), 0)
    with np.errstate(all="ignore"):
        why = sc._probe(setup, np.array(want))
    assert "other values" in why
    assert "up to 0 apart" not in why and "nan apart" not in why and "inf apart" not in why


def test_equal_infinities_and_nans_count_as_equal():
    from verigrad import scipy_check as sc

    x = np.array([np.inf, -np.inf, np.nan, 1.0])
    setup = sc._setup(lambda x: x * 1.0, x, (), 0)
    with np.errstate(all="ignore"):
        assert sc._probe(setup, x.copy()) == ""


def test_the_merged_jac_and_hess_report_counts_both():
    r = vg.check_grad(rosen, so.rosen_der, X0, hess=_wrong_hess, nearby=0)
    counts, text = dict(r.counts), r.counts_text
    assert counts["entries"] == len(r.entries) == X0.size + X0.size ** 2
    r.recount()
    assert (counts, text) == (r.counts, r.counts_text)
    assert counts["fail"] >= 1 and "fail" in text


# --- vg.check(fun, x0, jac=...): scipy's convention through vg.check ----------------------

def _summary(r):
    return r.verdict, [(e.label, e.status, e.tape, e.reference) for e in r.entries], r.notes


def test_check_with_jac_is_check_grad():
    assert _summary(vg.check(so.rosen, X0, jac=so.rosen_der, nearby=1)) == \
        _summary(vg.check_grad(so.rosen, so.rosen_der, X0, nearby=1))


def test_check_with_a_wrong_hess_names_it():
    def hess(x):
        h = so.rosen_hess(x)
        h[0, 1] += 1.0
        return h

    r = vg.check(rosen, X0, jac=so.rosen_der, hess=hess, nearby=0)
    assert r.verdict == "fail" and [c.grad_fn for c in r.culprits] == ["hess"]


def test_check_with_jac_passes_args_and_options():
    fun = lambda x, a: np.sum(a * x ** 2)  # noqa: E731
    jac = lambda x, a: 2 * a * x + np.array([0.0, 1e-6])  # noqa: E731
    r = vg.check(fun, [0.5, 1.0], 3.0, jac=jac, nearby=0)
    assert r.verdict == "fail" and [e.label for e in r.entries if e.status == "fail"] == ["x[1]"]
    assert vg.check(fun, [0.5, 1.0], 3.0, jac=jac, nearby=0, atol=1e-3).verdict == "pass"


@pytest.mark.parametrize("kwargs, words", [
    (dict(jac=3), ["jac=3", "function", "int"]),
    (dict(jac=True), ["jac=True", "(f, g)"]),
    (dict(jac="2-point"), ["finite-difference"]),
    (dict(jac=so.rosen_der, hess=[[1.0]]), ["hess=", "function"]),
    (dict(hess=so.rosen_hess), ["needs jac="]),
    (dict(jac=so.rosen_der, tol=1e-3), ["tol", "vg.check_grad"]),
    (dict(jac=so.rosen_der, order=2), ["order", "vg.check_grad"]),
])
def test_check_with_nonsense_jac_says_so_in_one_line(kwargs, words):
    with pytest.raises(vg.checker.CheckInputError) as info:
        vg.check(so.rosen, X0, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_an_expression_variable_named_jac_is_a_value():
    r = vg.check("jac * x", jac=2.0, x=3.0)
    assert r.verdict == "pass" and [e.tape for e in r.entries] == [3.0, 2.0]


def test_without_the_scipy_layer_the_error_points_at_check_grad(monkeypatch):
    from verigrad.checker import problem

    monkeypatch.setattr(problem, "OPTION_HANDLERS", {})
    with pytest.raises(vg.checker.CheckInputError, match=r"vg\.check_grad\(fun, jac, x0"):
        vg.check(so.rosen, X0, jac=so.rosen_der)


def test_import_verigrad_is_enough_for_check_with_jac():
    import subprocess
    import sys

    code = ("import numpy as np, verigrad as vg; from scipy.optimize import rosen, rosen_der; "
            "print(vg.check(rosen, np.array([1.3, 0.7, 0.8]), jac=rosen_der, nearby=0).verdict)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "pass"


def test_a_right_jac_that_rounds_its_own_way_passes():
    """A hand-written jac rounds in code the tape never sees: cancellation to 0 in a tiny
    entry (sigmoid as 0.5*(1 + tanh(x/2)) at -40) and a mean of 1e4 rounded its own way
    are rounding; the same jacs off by 1e-12 and 1e-9 relative still fail."""
    lse = lambda x: np.sum(np.logaddexp(0, x))  # noqa: E731
    sig = lambda x, k=1.0: 0.5 * (1 + np.tanh(x / 2)) * k  # noqa: E731
    assert vg.check_grad(lse, sig, np.array([-40.0, 1.0])).verdict == "pass"
    assert vg.check_grad(lse, lambda x: sig(x, 1 + 1e-12), np.array([-4.0, 1.0])).verdict \
        == "fail"
    x = np.random.default_rng(2).normal(size=20) + 1e4
    sq = lambda x: np.sum((x - np.mean(x)) ** 2)  # noqa: E731
    assert vg.check_grad(sq, lambda x: 2 * (x - x.mean()), x).verdict == "pass"
    assert vg.check_grad(sq, lambda x: 2 * (x - x.mean()) * (1 + 1e-9), x).verdict == "fail"


def test_nearby_points_move_on_the_input_own_scale():
    """x = 3e-6 moved by a floor of 5e-3 landed among the poles of gammaln(1e6 x)."""
    sp = pytest.importorskip("scipy.special")
    f = lambda x: np.sum(sp.gammaln(x * 1e6))  # noqa: E731
    x0 = np.array([3e-6, 5e-6])
    assert vg.check_grad(f, lambda x: 1e6 * sp.digamma(x * 1e6), x0).verdict == "pass"
    assert vg.check_grad(f, lambda x: 1.0001e6 * sp.digamma(x * 1e6), x0).verdict == "fail"


def test_empty_x0_is_a_clear_error():
    with pytest.raises(vg.checker.problem.CheckInputError, match="empty"):
        vg.check_grad(lambda x: np.sum(x ** 2), lambda x: 2 * x, np.array([]))


def test_rosenbrock_of_1000_variables_gets_the_exact_reference():
    """x[1:] and x[:-1] of 1000 entries are slices (one partial per output entry), not a
    dense 999 x 1000 rule too large to build: a jac off by 1e-6 in one entry (5e-9
    relative) is below what finite differences resolve, and is found against the mirror."""
    from scipy.optimize import rosen_der

    rosen = lambda x: np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)  # noqa
    x = np.random.default_rng(7).uniform(0.5, 1.5, 1000)

    def bad(x):
        g = rosen_der(x)
        g[777] += 1e-6
        return g

    assert vg.check_grad(rosen, rosen_der, x).verdict == "pass"
    report = vg.check_grad(rosen, bad, x)
    assert report.verdict == "fail" and any(e.index == (777,) and e.status == "fail"
                                            for e in report.entries), str(report)
