"""Checks at any scale (issue 14): deep graphs without recursion, capped closed forms,
bounded precision work and large inputs. No timing assertions here: benchmarks/checker.py
measures time and memory."""
from __future__ import annotations

import json

import numpy as np
import pytest

import verigrad as vg
from verigrad.cli import main
from verigrad.symbolic import SizeCapExceeded
from verigrad.symbolic.graph import PATH_LIMIT, GraphView
from verigrad.symbolic.mirror import DEFAULT_DEPTH_CAP, size_and_depth


def chain(x, n: int):
    """``n`` ops: tanh and a scaling, alternately (stays away from saturation)."""
    z = x
    for _ in range(n // 2):
        z = vg.tanh(z) * 1.5
    return z


# --- deep graphs: every stage iterative ----------------------------------------------------

def test_a_10k_op_chain_checks_and_reports_without_recursion():
    report = vg.check(lambda x: chain(x, 10_000), 0.3, nearby=0)
    assert report.verdict == "pass"
    assert len(report.nodes) == 10_000
    data = json.loads(report.to_json())
    assert data["derivatives"] == {}
    assert data["derivatives_note"].startswith("closed form omitted:")
    assert "closed form omitted" in report.to_markdown()


def test_paths_of_deep_nodes_are_shortened_and_name_the_output():
    x = vg.tensor(0.3, requires_grad=True)
    view = GraphView.of(chain(x, 1000))
    path = [n.name() for n in view.path_to_output(view.nodes[0])]
    assert len(path) == PATH_LIMIT + 1
    assert path[0] == "MulBackward0" and path[-1] == "TanhBackward0"
    assert path[1] == f"... {1000 - PATH_LIMIT} more ..."
    short = [n.name() for n in view.path_to_output(view.nodes[-3])]
    assert short == ["MulBackward0", "TanhBackward0", "MulBackward0"]


def test_a_wrong_rule_deep_in_a_chain_is_named_with_a_short_path():
    def f(x):
        return chain(Twice.apply(x), 400)

    report = vg.check(f, 0.1, nearby=0)
    assert report.verdict == "fail"
    assert report.culprit.grad_fn == "TwiceBackward"
    assert "more ..." in report.culprit.path and report.culprit.path.endswith("TwiceBackward")


@pytest.mark.parametrize("grad", [False, True])
def test_symbolic_on_a_deep_chain_says_the_cap_not_recursion(grad):
    x = vg.tensor(0.3, requires_grad=True, name="x")
    z = chain(x, 10_000)
    with pytest.raises(SizeCapExceeded, match=f"closed form omitted: .*deeper than "
                                              f"{DEFAULT_DEPTH_CAP}"):
        vg.symbolic_grad(z, x) if grad else vg.symbolic(z)


def test_symbolic_without_caps_reports_sympys_recursion_as_a_cap():
    x = vg.tensor(0.3, requires_grad=True, name="x")
    with pytest.raises(SizeCapExceeded, match="too deep for SymPy"):
        vg.symbolic_grad(chain(x, 10_000), x, cap=None, depth_cap=None)


def test_size_and_depth_count_the_tree_not_the_dag():
    import sympy

    x = sympy.Symbol("x")
    e = x
    for _ in range(30):   # each level shares its argument twice: a DAG of 2 nodes per level
        e = sympy.sin(e) * sympy.cos(e)
    n, d = size_and_depth(e)
    assert d == 61 and n > 2 ** 30
    deep = x
    for _ in range(5000):
        deep = sympy.exp(deep, evaluate=False)
    assert size_and_depth(deep) == (5001, 5001)


def test_report_command_on_a_200_op_expression_writes_files(tmp_path, capsys):
    expr = "tanh(" * 199 + "x" + ")" * 199
    code = main(["report", expr, "--at", "x=0.3", "--nearby", "0", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["derivatives_note"].startswith("closed form omitted:")
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()


def test_a_moderate_nesting_still_gets_its_closed_form(tmp_path):
    expr = "sin(1.1*" * 30 + "x" + ")" * 30
    report = vg.check(expr, x=0.3, nearby=0).add_details()
    assert report.derivatives_note == ""
    assert "cos" in report.derivatives["x"]


# --- bounded precision work ----------------------------------------------------------------

@pytest.mark.parametrize("expr, x", [("exp(exp(exp(x)))", 10.0), ("exp(exp(exp(exp(x))))", 20.0),
                                     ("x**y", 10.0)])
def test_exploding_magnitudes_are_inconclusive_overflow(expr, x):
    values = {"x": x, "y": 1e6} if "y" in expr else {"x": x}
    report = vg.check(expr, **values)
    assert report.verdict == "inconclusive"
    assert {e.reason for e in report.entries if e.point == 0} == {"overflow"}
    assert report.entries[0].symbolic_digits == "overflow"
    assert "digits" not in " ".join(report.notes + report.warnings)


def test_the_overflow_command_line_says_so(capsys):
    code = main(["check", "exp(exp(exp(exp(x))))", "--at", "x=10"])
    out = capsys.readouterr()
    assert code == 3, out.err
    assert "inconclusive (overflow)" in out.out
    assert "Error" not in out.out + out.err


def test_large_but_representable_values_keep_their_verdict():
    assert vg.check("exp(exp(x))", x=6.5).verdict == "pass"    # 4.9e291: inside float64
    assert vg.check("x*exp(exp(exp(x)))", x=-30.0).verdict == "pass"


def test_the_vm_saturates_magnitudes_instead_of_growing_exponents():
    import mpmath
    import sympy

    from verigrad.symbolic.vm import MAGNITUDE_CAP_BITS, Program

    x = sympy.Symbol("x")
    prog = Program([x], [sympy.exp(sympy.exp(sympy.exp(sympy.exp(x)))),
                         sympy.exp(-sympy.exp(sympy.exp(x))), sympy.exp(x) + 1])
    huge, tiny, small = prog(mpmath.mpf(10))
    assert huge == mpmath.mpf(2) ** MAGNITUDE_CAP_BITS
    assert tiny == mpmath.mpf(2) ** -MAGNITUDE_CAP_BITS
    assert small == mpmath.exp(10) + 1


def _one_wrong_tanh(n: int, wrong: int, factor: float) -> type:
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return vg.tensor(np.tanh(x.numpy()))

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        d = 1.0 - np.tanh(x.numpy()) ** 2
        d[wrong] *= factor
        return g * vg.tensor(d)

    return type("OneWrongTanh", (vg.Function,), {"forward": staticmethod(forward),
                                                  "backward": staticmethod(backward)})


@pytest.mark.parametrize("n,factor", [(2_000, 1.001), (20_000, 1 + 1e-6)])
def test_one_wrong_entry_of_a_large_function_is_named(n, factor):
    """The node's own check of a large input splits it into random blocks, each with the
    measured rounding of its projection: one entry wrong by 1e-6 among 2e4 is named (the
    bounded allowance for all entries at once hid it; so it did 0.1% among 1e6)."""
    wrong = n // 3
    F = _one_wrong_tanh(n, wrong, factor)
    x = np.random.default_rng(0).standard_normal(n)
    report = vg.check(lambda t: F.apply(t).sum(), x, nearby=1)
    assert report.verdict == "fail"
    assert report.culprit is not None and report.culprit.element == (wrong,), report.culprit
    assert report.culprit.grad_fn == "OneWrongTanhBackward"


# --- deep graphs: built-in nodes on a bounded sample per rule, user code at every node ------

class Twice(vg.Function):
    """A custom Function whose backward is wrong by 1e-4 relative."""

    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, g):
        return g * 2.0001

    @staticmethod
    def symbolic(x):
        return 2 * x


class Half(vg.Function):
    """A correct custom Function (without a mirror: checked by finite differences)."""

    @staticmethod
    def forward(ctx, x):
        return vg.tensor(x.numpy() * 0.5)

    @staticmethod
    def backward(ctx, g):
        return g * 0.5


def test_one_wrong_function_in_the_middle_of_a_10k_op_chain_is_named():
    report = vg.check(lambda x: chain(Twice.apply(chain(x, 5_000)) * 0.5, 5_000), 0.3,
                      nearby=0)
    assert report.verdict == "fail"
    assert report.culprit.grad_fn == "TwiceBackward"
    assert report.culprit.path.endswith("TwiceBackward") and "more ..." in report.culprit.path


def test_a_deep_graph_checks_every_function_and_a_sample_of_each_builtin_rule():
    from verigrad.checker.local import NODES_PER_RULE

    def f(x):
        z = x
        for k in range(25):
            z = Half.apply(chain(z, 200)) * 2.0
        return z

    report = vg.check(f, 0.3, nearby=0)
    assert report.verdict == "pass"
    assert len(report.nodes) == 25 * 202
    left_out = [n for n in report.nodes if n.note.startswith("not checked on its own")]
    functions = [n for n in report.nodes if n.grad_fn == "HalfBackward"]
    assert len(functions) == 25 and all(n.method == "finite-differences" for n in functions)
    # two built-in rules (tanh, and a product with a constant: * 1.5 and * 2.0 alike),
    # each checked on NODES_PER_RULE of its nodes
    assert sum(n.grad_fn == "TanhBackward0" for n in left_out) == 2_500 - NODES_PER_RULE
    assert sum(n.grad_fn == "MulBackward0" for n in left_out) == 2_525 - NODES_PER_RULE
    assert len(left_out) == len(report.nodes) - 25 - 2 * NODES_PER_RULE


def _deep_with_one_odd_value(op):
    """A 2103-op graph, ``sum of op(x * c)`` over 701 terms, whose last ``op`` alone sees an
    input above 2 (a sum: the gradient does not vanish with depth, as a chain's does)."""
    def f(x):
        z = op(x * 1.0)
        for _ in range(699):
            z = z + op(x * 1.0)
        return z + op(x * 10.0)
    return f


def test_a_builtin_rule_wrong_where_its_sample_did_not_look_is_still_named():
    from verigrad.checker.local import check_nodes
    from verigrad.registry import defop, scratch

    with scratch():
        defop("tanh_odd", forward=np.tanh, elementwise=True,
              vjp=lambda F, g, x: g * (1 - np.tanh(x) ** 2) * np.where(np.abs(x) > 2,
                                                                         1.001, 1.0),
              mirror=lambda x: __import__("sympy").tanh(x))
        f = _deep_with_one_odd_value(vg.tanh_odd)
        # the seeded sample of tanh_odd's 701 nodes misses the wrong one: the node checks
        # alone pass, the whole-graph comparison does not, and the check is redone in full
        x = vg.tensor(0.3, requires_grad=True)
        view = GraphView.of(f(x))
        odd = view.nodes[-2]
        assert odd.name() == "TanhOddBackward0"
        sampled = {id(g.node): g.sampled for g in check_nodes(view, 0)}
        assert sampled[id(odd)]
        report = vg.check(f, 0.3, nearby=0)
        assert report.verdict == "fail"
        assert report.culprit.grad_fn == "TanhOddBackward0"
        assert report.culprit.path == "AddBackward0 <- TanhOddBackward0"
        assert not any(n.note.startswith("not checked on its own") for n in report.nodes)


def test_one_wrong_entry_of_a_large_builtin_elementwise_op_is_named():
    """Over RULE_COST_CAP entries a built-in elementwise node is checked by projections
    run on each block's own entries (the op declares entry k depends on entry k alone);
    its one entry past 2, where the rule is wrong, is still found by index."""
    from verigrad.checker.local import RULE_COST_CAP
    from verigrad.registry import defop, scratch

    n = RULE_COST_CAP + 50_000
    x = np.random.default_rng(1).uniform(-1.0, 1.0, n)
    x[n // 3] = 2.5
    with scratch():
        defop("tanh_odd", forward=np.tanh, elementwise=True,
              vjp=lambda F, g, x: g * (1 - np.tanh(x) ** 2) * np.where(np.abs(x) > 2,
                                                                         1.001, 1.0),
              mirror=lambda x: __import__("sympy").tanh(x))
        report = vg.check(lambda t: vg.tanh_odd(t).sum(), x, nearby=0)
    assert report.verdict == "fail"
    assert report.culprit.grad_fn == "TanhOddBackward0"
    assert report.culprit.element == (n // 3,)
