"""Speed paths of the checker that must not change what it answers (issue 14, small checks).

Nearby points first bound the tape's rounding without the terms evaluated in high precision
for the bound alone (a lower bound) and make the full bound only when an entry does not pass
within it: the lower bound must be below the full one, and no report may change.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import verigrad as vg
from verigrad.symbolic.exact import ExactGraph

from corpus import MUTANTS


def _graphs():
    rng = np.random.default_rng(3)
    a = vg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x = vg.tensor(rng.standard_normal(4), requires_grad=True)
    yield (vg.tanh(a @ x) * vg.exp(-x[:3])).sum(), [a, x]
    z = vg.tensor(rng.standard_normal(5) * 3, requires_grad=True)
    yield vg.logsumexp(z, dim=0) + (vg.softmax(z, dim=0) * z).sum(), [z]
    s = vg.tensor(0.7, requires_grad=True)
    yield vg.sigmoid(vg.tanh(s) * 3.0) / (1.0 + s * s), [s]


@pytest.mark.parametrize("case", range(3))
def test_lower_bound_is_below_the_full_bound(case):
    out, leaves = list(_graphs())[case]
    g = ExactGraph(out)
    rp_lo, lo = g.gradient(recorded=True, bounds="lower")
    rp, full = g.gradient(recorded=True, bounds=True)
    smaller = False
    for t in leaves:
        # the chain itself is the same numbers; only its bound differs
        assert [str(v) for v in rp_lo[t].reshape(-1)] == [str(v) for v in rp[t].reshape(-1)]
        assert np.all(lo[t] <= full[t]), (lo[t], full[t])
        assert np.all(lo[t] >= 0)
        smaller |= bool(np.any(lo[t] < full[t]))
    assert smaller   # the terms left out are there to leave out


def _report(fn, inputs):
    r = json.loads(vg.check(fn, *inputs).to_json())
    for when in ("seconds", "created"):   # the clock's, not the check's
        r.pop(when, None)
    return r


@pytest.mark.parametrize("name", ["dropped product-rule term at zero", "sign flip",
                                  "softplus off by 0.1%"])
def test_screened_nearby_points_change_no_report(name, monkeypatch):
    """Mutants wrong at nearby points (one is right at the given point): their nearby entries
    fail the lower bound and are judged again against the full one, as without the screen."""
    fn, inputs, _ = MUTANTS[name]
    screened = _report(fn, inputs)
    full = ExactGraph.gradient
    monkeypatch.setattr(ExactGraph, "gradient", lambda self, c=None, recorded=False,
                        bounds=False: full(self, c, recorded, bounds and True))
    assert _report(fn, inputs) == screened
    assert screened["verdict"] == "fail"


def test_screened_nearby_points_of_a_correct_check(monkeypatch):
    f = lambda x: (vg.tanh(x) * vg.softmax(x, dim=0)).sum()  # noqa: E731
    x = np.array([0.3, -1.2, 2.0])
    screened = _report(f, [x])
    full = ExactGraph.gradient
    monkeypatch.setattr(ExactGraph, "gradient", lambda self, c=None, recorded=False,
                        bounds=False: full(self, c, recorded, bounds and True))
    assert _report(f, [x]) == screened
    assert screened["verdict"] == "pass"


def test_compiled_expression_builds_like_the_tree():
    """Expression.build runs instructions made once per expression: the same values, calls in
    source order, and an error pointing at the node whose operation the values refuse."""
    import math

    from verigrad.parse import parse
    from verigrad.parsing.errors import ExpressionError

    seen = []

    def log(v):
        seen.append(("log", v))
        return math.log(v)

    def sq(v):
        seen.append(("sq", v))
        return v * v

    expr = parse("sq(x) - -log(y) * 2 ** sq(x)", functions={"sq", "log"})
    assert expr.build({"x": 3.0, "y": 2.0}, {"sq": sq, "log": log}) == \
        9.0 - -math.log(2.0) * 2 ** 9.0
    assert seen == [("sq", 3.0), ("log", 2.0), ("sq", 3.0)]   # left to right, once each
    bad = parse("x + (y @ x) * 2")
    with pytest.raises(ExpressionError) as info:
        bad.build({"x": 1.0, "y": 2.0}, {})
    assert "'@' failed" in info.value.reason
    assert (info.value.start, info.value.end) == (5, 10)
    with pytest.raises(ExpressionError, match="function 'sq'"):   # the first one missing
        expr.build({"x": 1.0, "y": 1.0}, {})
