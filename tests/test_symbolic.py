"""The symbolic mirror: every op's mirror against its numpy forward and its exact gradient
against the tape, closed forms, naming, custom Functions, kinks and the size cap."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import verigrad as vg
from verigrad.registry import REGISTRY
from verigrad.symbolic import ExactGraph, MirrorError, SizeCapExceeded
from verigrad.symbolic.kinks import find_kinks, one_sided_derivatives
from verigrad.tensor import apply

CASES = [(op, i, case) for op in REGISTRY.values() if op.differentiable
         for i, case in enumerate(op.domain.cases(np.random.default_rng(0)))]


def _make(op, shapes, seed):
    rng = np.random.default_rng(seed)
    return [vg.tensor(op.domain.sample(rng, s, k), dtype=vg.float64, requires_grad=True)
            for k, s in enumerate(shapes)]


@pytest.mark.parametrize("item", CASES, ids=lambda c: f"{c[0].name}-{c[1]}")
def test_mirror_value_and_exact_gradient_match_the_tape(item):
    op, i, (shapes, params) = item
    ts = _make(op, shapes, 100 + i)
    out = apply(op, tuple(ts), params)
    graph = ExactGraph(out)
    exact = np.array(graph.value().tolist(), dtype=float)
    rtol = 1e-6 if out.dtype is vg.float32 else 1e-12  # the mirror is exact math, not rounding
    np.testing.assert_allclose(exact, out.numpy(), rtol=rtol, atol=1e-14)
    v = np.random.default_rng(i).standard_normal(out.shape)
    out.backward(vg.tensor(v, dtype=vg.float64))
    grads = graph.gradient(v)
    for t in ts:
        np.testing.assert_allclose(np.array(grads[t].tolist(), dtype=float), t.grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=op.name)


@pytest.mark.parametrize("op", [op for op in REGISTRY.values() if not op.differentiable],
                         ids=lambda op: op.name)
def test_comparison_mirrors_agree_with_numpy(op):
    for a, b in [(1.0, 2.0), (2.0, 2.0), (3.0, -1.0)]:
        assert bool(op.mirror(sympy.Float(a), sympy.Float(b))) == bool(op.forward(a, b))


def test_closed_form_of_the_readme_example():
    x, w, b = (vg.tensor(v, requires_grad=True, name=n) for v, n in [(2.0, "x"), (3.0, "w"),
                                                                     (1.0, "b")])
    y = w * x + b
    assert str(vg.symbolic(y)) == "b + w*x"
    assert [str(d) for d in vg.symbolic_grad(y, [x, w, b])] == ["w", "x", "1"]


def test_leaf_naming_auto_and_arrays():
    a = vg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, name="W")
    u = vg.tensor(1.0, requires_grad=True)
    v = vg.tensor(1.0, requires_grad=True)
    expr = vg.symbolic(a.sum() * u + v)
    names = sorted(str(s) for s in expr.free_symbols)
    assert names == ["W[0, 0]", "W[0, 1]", "W[1, 0]", "W[1, 1]", "x0", "x1"]
    arr = vg.symbolic(a * 2)
    assert isinstance(arr, sympy.Array) and arr.shape == (2, 2)
    assert str(arr[0, 1]) == "2*W[0, 1]"


def test_duplicate_names_are_made_unique():
    a = vg.tensor(1.0, requires_grad=True, name="x")
    b = vg.tensor(2.0, requires_grad=True, name="x")
    assert sorted(str(s) for s in vg.symbolic(a * b).free_symbols) == ["x", "x_2"]


def test_constants_are_exact_numbers():
    x = vg.tensor(2.0, requires_grad=True, name="x", dtype=vg.float64)
    assert str(vg.symbolic(x * 3 + 0.5)) == "3*x + 0.5"


class Softplus(vg.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return vg.tensor(np.log1p(np.exp(x.numpy())))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * vg.tensor(1 / (1 + np.exp(-x.numpy())))

    @staticmethod
    def symbolic(x):  # written for scalars: applied per element
        return sympy.log(1 + sympy.exp(x))


class RowSum(vg.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return vg.tensor(x.numpy().sum(axis=1) * scale)

    @staticmethod
    def backward(ctx, grad):
        return grad.unsqueeze(1).expand(-1, 3) * ctx.scale, None

    @staticmethod
    def symbolic(x, scale):  # array form
        return np.array([sympy.Add(*row) * scale for row in x], dtype=object)


class NoMirror(vg.Function):
    @staticmethod
    def forward(ctx, x):
        return vg.tensor(x.numpy() * 2)

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


def test_function_mirrors_elementwise_and_array_forms():
    x = vg.tensor([0.5, -1.0], dtype=vg.float64, requires_grad=True, name="x")
    y = Softplus.apply(x).sum()
    assert str(vg.symbolic(y)) == "log(exp(x[0]) + 1) + log(exp(x[1]) + 1)"
    g = ExactGraph(y).gradient()[x]
    np.testing.assert_allclose(np.array(g.tolist(), dtype=float), 1 / (1 + np.exp(-x.numpy())))
    m = vg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, name="M")
    r = RowSum.apply(m, 2.0)
    assert vg.symbolic(r).shape == (2,)
    np.testing.assert_allclose(np.array(ExactGraph(r.sum()).gradient()[m].tolist(), dtype=float),
                               np.full((2, 3), 2.0))


def test_function_without_mirror_is_named():
    x = vg.tensor(1.0, requires_grad=True)
    with pytest.raises(MirrorError, match="NoMirror .*NoMirrorBackward.* no symbolic"):
        vg.symbolic(NoMirror.apply(x))


def test_size_cap_says_it_was_exceeded():
    x = vg.tensor(np.ones(30), requires_grad=True)
    y = x
    for _ in range(6):
        y = vg.sin(y * y + y)
    with pytest.raises(SizeCapExceeded, match="passed 500 nodes"):
        vg.symbolic(y.sum(), cap=500)


def test_exact_gradient_of_a_chain_is_precise():
    # 1 - cos(x) for tiny x cancels catastrophically in float64; the mirror does not
    x = vg.tensor(1e-9, dtype=vg.float64, requires_grad=True)
    y = (1 - vg.cos(x)) / (x * x)
    graph = ExactGraph(y)
    # at 30 digits the cancellation leaves no correct digit; the verified gradient notices
    # and raises the precision until two precisions agree
    grads, errors = graph.gradient_verified()
    # d/dx (1 - cos x)/x^2 = -x/12 + O(x^3)
    assert abs(grads[x][()] - (-1e-9 / 12)) < 1e-24
    assert errors[x][()] < 1e-24


# --- kinks ---------------------------------------------------------------------------

def _kinks(y):
    return find_kinks(ExactGraph(y))


def test_kink_abs_at_zero_with_one_sided_derivatives():
    x = vg.tensor(0.0, dtype=vg.float64, requires_grad=True)
    g = ExactGraph(vg.abs(x) * 3)
    (k,) = find_kinks(g)
    assert k.at_point and k.function == "Abs" and k.kind == "kink"
    assert k.path == "MulBackward0 <- AbsBackward0"
    left, right = one_sided_derivatives(g, x, ())
    assert left == pytest.approx(-3.0, abs=1e-12) and right == pytest.approx(3.0, abs=1e-12)


def test_kink_relu_only_where_the_input_is_zero():
    x = vg.tensor([-1.0, 0.0, 2.0], dtype=vg.float64, requires_grad=True)
    kinks = _kinks(vg.relu(x).sum())
    assert [(k.element, k.at_point) for k in kinks] == [((1,), True)]


def test_kink_max_ties():
    x = vg.tensor([1.0, 3.0, 3.0], dtype=vg.float64, requires_grad=True)
    assert [k.function for k in _kinks(vg.max(x))] == ["Max"]
    y = vg.tensor([1.0, 3.0, 2.0], dtype=vg.float64, requires_grad=True)
    assert _kinks(vg.max(y)) == []


def test_singularities_sqrt_at_zero_log_near_zero_tan_pole():
    s = vg.tensor(0.0, dtype=vg.float64, requires_grad=True)
    (k,) = _kinks(vg.sqrt(s))
    assert k.kind == "singularity" and k.at_point
    near = _kinks(vg.log(vg.tensor(1e-9, dtype=vg.float64, requires_grad=True)))
    assert near[0].kind == "singularity" and not near[0].at_point
    assert near[0].distance == pytest.approx(1e-9)
    pole = _kinks(vg.tan(vg.tensor(np.pi / 2, dtype=vg.float64, requires_grad=True)))
    assert pole and pole[0].function == "tan"


def test_atan2_branch_cut_and_log1p_edge():
    def at(y, x):
        a = vg.tensor(y, dtype=vg.float64, requires_grad=True)
        return _kinks(vg.atan2(a, vg.tensor(x, dtype=vg.float64, requires_grad=True)))

    (cut,) = at(0.0, -1.0)
    assert (cut.function, cut.kind, cut.at_point) == ("atan2", "singularity", True)
    assert at(1e-9, -2.0)[0].distance == pytest.approx(1e-9)
    assert at(0.0, 1.0) == [] and at(0.5, -1.0) == []  # smooth off the cut
    (edge,) = _kinks(vg.log1p(vg.tensor(-1 + 1e-9, dtype=vg.float64, requires_grad=True)))
    assert edge.function == "log1p" and edge.distance == pytest.approx(1e-9, rel=1e-6)


def test_atan2_on_its_branch_cut_is_inconclusive_not_a_pass():
    report = vg.check(lambda p: vg.atan2(p[0], p[1]), np.array([0.0, -1.0]))
    assert report.verdict == "inconclusive" and report.entries[0].reason == "singularity"
    assert vg.check(lambda p: vg.atan2(p[0], p[1]), np.array([0.5, -1.0])).verdict == "pass"


def test_a_registered_switch_is_found_in_a_custom_mirror():
    from verigrad.symbolic.kinks import _SWITCHES, register_switch

    class ramp(sympy.Function):
        @classmethod
        def eval(cls, t):
            return None

    register_switch(ramp, lambda e: ("kink", [e.args[0] - 1]))
    t = sympy.Symbol("t", real=True)
    try:
        assert _switches_of(ramp(t) + t) == [("ramp", "kink", [t - 1])]
    finally:
        del _SWITCHES[ramp]
    assert _switches_of(ramp(t)) == []


def _switches_of(expr):
    from verigrad.symbolic.kinks import _switch_of
    return [(sw.function, sw.kind, sw.exprs) for sub in sympy.preorder_traversal(expr)
            if (sw := _switch_of(sub)) is not None]


def test_no_kinks_on_smooth_functions():
    x = vg.tensor([0.3, -0.2], dtype=vg.float64, requires_grad=True)
    assert _kinks((vg.sin(x) * vg.exp(x)).sum()) == []


def test_where_boundary_is_seen_through_softplus_piecewise():
    x = vg.tensor(20.0, dtype=vg.float64, requires_grad=True)
    (k,) = _kinks(vg.softplus(x))
    assert k.function == "Piecewise" and k.at_point


# --- the optional SymEngine backend -----------------------------------------------------

@pytest.mark.parametrize("op_name", ["mm", "sum.dim_IntList", "softmax", "logsumexp", "prod",
                                     "max", "log_softmax", "cat"])
def test_symengine_backend_agrees_with_sympy(op_name):
    pytest.importorskip("symengine")
    from verigrad.symbolic import local as L

    op = REGISTRY[op_name]
    shapes, params = op.domain.cases(np.random.default_rng(0))[0]
    ts = _make(op, shapes, 7)
    out = apply(op, tuple(ts), params)
    v = np.random.default_rng(1).standard_normal(out.shape)
    results = {}
    try:
        for name in ("sympy", "symengine"):
            L.set_backend(name)
            grads = ExactGraph(out).gradient(v)
            results[name] = [np.array(grads[t].tolist(), dtype=float) for t in ts]
    finally:
        L.set_backend("auto")
    for a, b in zip(results["sympy"], results["symengine"]):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)


def test_backend_setting_is_validated():
    from verigrad.symbolic import set_backend

    with pytest.raises(ValueError, match="unknown symbolic backend"):
        set_backend("maple")
