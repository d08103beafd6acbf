"""Reports a person reads (issue 10, item 2): derivatives as MathML in HTML, the culprit's
element always in the entries table, one entry count in every format, worst entries by
error then index, no empty figure cells."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy

import verigrad as vg
from verigrad.checker.report import CheckReport, Culprit, Entry
from verigrad.report.document import mathml
from verigrad.report.terminal import render_text


def _entry(k: int, rel: float, status: str = "pass") -> Entry:
    tape = 1.0 + rel
    return Entry(input="x", index=(k,), output=None, tape=tape, symbolic=1.0,
                 symbolic_error=0.0, replayed=1.0, finite_diff=1.0, fd_error=1e-10,
                 fd_method="central", abs_error=rel, rel_error=rel, tolerance=1e-6,
                 status=status)


def test_html_derivatives_are_mathml_not_latex():
    page = vg.check("sin(x)*exp(w*x) + b", x=2.0, w=3.0, b=1.0, nearby=0).to_html()
    assert page.count('<math display="block">') == 3
    assert "<mfrac><mrow><mo>&part;</mo><mi>f</mi></mrow>" in page
    assert "\\frac" not in page and "\\partial" not in page and "<script" not in page


def test_mathml_escapes_symbol_names_sympy_would_print_raw():
    x = sympy.Symbol("<img src=x onerror=alert(1)>")
    text = mathml(2 * sympy.exp(x))
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    # an ordinary name is printed as SymPy prints it (x_1: x with subscript 1)
    assert mathml(sympy.Symbol("x_1") ** 2) == \
        "<msup><msub><mi>x</mi><mi>1</mi></msub><mn>2</mn></msup>"


def test_hostile_input_names_stay_text_inside_the_math():
    def f(a):
        return (a * a).sum()

    report = vg.check(f, np.array([1.0, 2.0]), names=["<b>a</b>"], nearby=0)
    page = report.to_html()
    assert "<math" in page and "<b>" not in page and "&lt;b&gt;a&lt;/b&gt;" in page


def test_one_count_of_entries_in_every_format():
    from report_examples import softplus_wrong

    with np.errstate(all="ignore"):
        report = vg.check(softplus_wrong, np.array([-1.0, 0.5]), nearby=1)
    c = report.counts
    assert c["fail"] == c["entries"] == len(report.entries) and c["nearby"] == 2
    assert report.counts_text == "4 entries: 0 pass, 4 fail (2 of them at nearby points)"
    assert report.counts_text in render_text(report)
    assert report.counts_text in report.to_markdown()
    assert report.counts_text in report.to_html()
    assert json.loads(report.to_json())["counts"] == c


def test_worst_sorts_by_error_then_keeps_the_entries_order():
    # 1, 2 and 5 are off by the same factor, up to rounding in the last digits
    entries = [_entry(0, 1e-9), _entry(1, 3.0000000000000001e-3, "fail"),
               _entry(2, 3.0000000000004e-3, "fail"), _entry(3, 5e-9),
               _entry(4, math.nan, "fail"), _entry(5, 2.9999999999996e-3, "fail"),
               _entry(6, 4e-3, "fail")]
    report = CheckReport("fail", "f", {"x": {}}, entries)
    assert [e.index[0] for e in report.worst(7)] == [4, 6, 1, 2, 5, 3, 0]


def test_the_culprits_element_is_always_in_the_entries_table():
    # 150 entries, the table shows 100: the culprit's element has the smallest error of all
    entries = [_entry(k, 1e-3 + k * 1e-6, "fail") for k in range(150)]
    entries[123] = _entry(123, 0.0, "fail")
    culprit = Culprit("SBackward", 0, "x", "SBackward", (123,), 1.0, 1.0, "symbolic",
                      "SBackward returns a wrong gradient for input 0 (x) at [123]")
    report = CheckReport("fail", "f", {"x": {"shape": [150], "dtype": "float64"}}, entries,
                         culprit=culprit, culprits=[culprit])
    assert 123 not in [e.index[0] for e in report.worst(100)]
    shown = report.shown_entries(100)
    assert len(shown) == 100 and shown[-1].index == (123,)
    table = report.to_markdown().split("## Entries", 1)[1]
    assert "| `x` | `[123]` |" in table and "| `x` | `[149]` |" in table
    assert "| `x` | `[23]` |" not in table   # the smallest errors give way
    assert "x[123]" in render_text(report, max_rows=4)


def test_no_figure_grid_without_a_figure():
    with np.errstate(all="ignore"):
        page = vg.check("abs(x)", x=0.0, nearby=0).to_html()
    figures = page.split("<h2>Figures</h2>", 1)[1].split("<h2>", 1)[0]
    assert '<div class="figs">' not in figures and '<p class="skipped">' in figures


def test_fd_figure_labels_sit_under_the_axes(monkeypatch):
    pytest.importorskip("matplotlib")
    from verigrad.report import plots

    drawn = []
    monkeypatch.setattr(plots, "_svg", lambda fig, key: drawn.append(fig) or "<svg></svg>")
    report = vg.check("sin(x)*exp(w*x) + b", x=2.0, w=3.0, b=1.0, nearby=0).add_details()
    assert plots.fd_figure(report, "x", "t") is not None
    (ax,) = drawn[0].axes
    # nothing written inside the axes, where the V's arms run; the hint is in the axis label
    assert list(ax.texts) == []
    assert "rounding error dominates" in ax.get_xlabel()
