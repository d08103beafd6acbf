"""The on-disk cache of derived local rules (verigrad/symbolic/rule_cache.py): text that
rebuilds only SymPy expressions, a directory chosen by the environment, files that are safe
to delete or corrupt, and verdicts that never depend on the cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp

import verigrad as vg
from verigrad.symbolic import local, rule_cache
from verigrad.symbolic.local import input_sensitivity, rounding_magnitude

X, Y = sp.Symbol("a0", real=True), sp.Symbol("a1", real=True)

EXPRESSIONS = [
    X * Y + 1, sp.exp(-X ** 2) / 2, 1 - sp.tanh(X) ** 2, 1 / (2 * sp.sqrt(X)),
    sp.Piecewise((X, X < 0), (Y, True)), sp.Abs(X) * sp.sign(Y), sp.Max(X, Y) * X,
    sp.Heaviside(X), sp.Float(0.1) * X, sp.Rational(1, 3) * X + sp.pi, sp.oo * X,
    rounding_magnitude(1 - sp.tanh(X) ** 2) + input_sensitivity(sp.log(X) * Y),
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=[str(e)[:40] for e in EXPRESSIONS])
def test_expressions_round_trip_through_text(expr):
    text = rule_cache.dumps(expr)
    assert text is not None
    rebuilt = rule_cache.loads(text)
    assert rebuilt == expr and rebuilt.args == expr.args


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",          # a call of a name outside the whitelist
    "Symbol('x').__class__",                    # attribute access
    "sin('__import__(\"os\")')",                # text that sympify would parse (eval)
    "Add(Symbol('x'), 'y')",
    "Piecewise(('x', true))",
    "Float('1+1')",
    "Symbol('x', real='yes')",
    "(lambda: 0)()",
    "Symbol(*['x'])",
    "Integer(1) + Integer(2)",                  # operators are code too
])
def test_text_that_is_not_a_sympy_expression_is_refused(text):
    with pytest.raises((ValueError, SyntaxError)):
        rule_cache.loads(text)


def test_the_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(rule_cache.ENV, str(tmp_path))
    assert rule_cache.cache_dir() == tmp_path / f"rules-{rule_cache.FORMAT}"
    for off in ("", "off", "OFF", "0", "none"):
        monkeypatch.setenv(rule_cache.ENV, off)
        assert rule_cache.cache_dir() is None
    monkeypatch.delenv(rule_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rule_cache.cache_dir() == tmp_path / "xdg" / "verigrad" / f"rules-{rule_cache.FORMAT}"


class Cube(vg.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3.001 * x * x * g   # wrong on purpose

    @staticmethod
    def symbolic(x):
        return x ** 3


def _checks() -> list:
    """A few verdicts and the numbers behind them (registry ops only, and a wrong Function)."""
    runs = [
        vg.check("w*x + b", x=2.0, w=3.0, b=1.0),
        vg.check("tanh(w * x + b) * log(1 + exp(x))", x=0.3, w=-1.2, b=0.5),
        vg.check(lambda x: vg.softmax(x, dim=0)[1], np.array([0.3, -1.0, 2.0])),
        vg.check(lambda x: (vg.sin(x) * vg.exp(-x * x)).sum(), np.linspace(0.1, 1.0, 4)),
        vg.check(lambda x: (Cube.apply(x) * vg.sqrt(x)).sum(), np.array([0.5, 1.5])),
        vg.check("abs(x) * y", x=0.0, y=2.0),
    ]
    return [(r.verdict, [(e.status, e.reason, e.tape, e.symbolic, e.replayed, e.tolerance) for e in r.entries],
             [(c.grad_fn, c.input_name, c.element) for c in r.culprits]) for r in runs]


def test_verdicts_are_the_same_with_the_cache_off_cold_and_warm(monkeypatch, tmp_path):
    monkeypatch.setenv(rule_cache.ENV, "off")
    local._CACHE.clear()
    off = _checks()
    monkeypatch.setenv(rule_cache.ENV, str(tmp_path))
    local._CACHE.clear()
    cold = _checks()                  # derives and writes
    files = list((tmp_path / f"rules-{rule_cache.FORMAT}").glob("*.json"))
    assert files
    local._CACHE.clear()
    hits = []
    load = rule_cache.load
    monkeypatch.setattr(rule_cache, "load", lambda key: hits.append(load(key)) or hits[-1])
    warm = _checks()                  # reads every registry rule back from disk
    assert hits and all(h is not None for h in hits)
    assert off == cold == warm
    assert off[4][0] == "fail" and off[4][2][0][0] == "CubeBackward"


def test_custom_functions_are_never_stored(monkeypatch, tmp_path):
    monkeypatch.setenv(rule_cache.ENV, str(tmp_path))
    local._CACHE.clear()
    vg.check(lambda x: Cube.apply(x).sum(), np.array([0.5, 1.5]))
    keys = [json.loads(f.read_text())["key"]
            for f in (tmp_path / f"rules-{rule_cache.FORMAT}").glob("*.json")]
    assert keys and all("'op'" in k for k in keys)
    assert not any("Cube" in k or "'fn'" in k for k in keys)


def test_corrupt_or_stale_files_are_ignored_and_rewritten(monkeypatch, tmp_path):
    monkeypatch.setenv(rule_cache.ENV, str(tmp_path))
    local._CACHE.clear()
    before = _checks()
    files = sorted((tmp_path / f"rules-{rule_cache.FORMAT}").glob("*.json"))
    for k, f in enumerate(files):
        if k % 3 == 0:
            f.write_text("{not json")
        elif k % 3 == 1:
            rec = json.loads(f.read_text())
            f.write_text(json.dumps(dict(rec, key=rec["key"] + " stale")))
        else:
            rec = json.loads(f.read_text())
            rec["outs"] = [[[], ["exp(__import__('os'))"]]]
            f.write_text(json.dumps(rec))
    local._CACHE.clear()
    assert _checks() == before
    for f in files:               # every file is whole again (rewritten, atomically)
        rec = json.loads(f.read_text())
        assert "outs" in rec and "__import__" not in f.read_text()
    assert not list((tmp_path / f"rules-{rule_cache.FORMAT}").glob(".rule-*"))


def test_an_unwritable_cache_is_no_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(rule_cache.ENV, str(blocker))
    local._CACHE.clear()
    assert vg.check("w*x + b", x=2.0, w=3.0, b=1.0).verdict == "pass"


def test_long_expressions_are_neither_written_nor_read():
    """Reading megabytes of text back costs more than deriving the rule again."""
    from verigrad.symbolic import rule_cache

    x = sp.Symbol("x", real=True)
    long = sp.Add(*[sp.sin(k * x) for k in range(1, 2000)])
    assert len(rule_cache._text(long)) > rule_cache.MAX_TEXT
    assert rule_cache.dumps(long) is None
    assert rule_cache.dumps(sp.sin(x)) is not None
    with pytest.raises(ValueError, match="characters"):
        rule_cache.loads("x" * (rule_cache.MAX_TEXT + 1))


def test_a_rule_part_over_the_record_budget_is_not_stored(tmp_path, monkeypatch):
    """Turning 10,000 softmax partials into checked text took 131 s: a part over
    MAX_RECORD characters is left for the next process to derive."""
    from verigrad.symbolic import rule_cache
    from verigrad.symbolic.local import _texts

    x = sp.Symbol("x")
    exprs = [sp.sin(x + k) * sp.exp(x * k) for k in range(50)]
    assert _texts(exprs) is not None
    monkeypatch.setattr(rule_cache, "MAX_RECORD", sum(len(t) for t in _texts(exprs)) - 1)
    assert _texts(exprs) is None


def test_a_file_larger_than_any_record_is_a_miss(tmp_path, monkeypatch):
    """A 35 MB record from before MAX_RECORD took 37 s to read on every run: now a miss,
    and the rule derived again replaces it."""
    monkeypatch.setenv(rule_cache.ENV, str(tmp_path))
    rule_cache.save("k", {"a": 1})
    assert rule_cache.load("k") == {"a": 1, "key": "k"}
    monkeypatch.setattr(rule_cache, "MAX_FILE", 5)
    assert rule_cache.load("k") is None
