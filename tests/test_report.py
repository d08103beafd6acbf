"""The report renderers: JSON against its shipped schema, Markdown, self-contained HTML,
determinism, escaping of hostile names, and figures without matplotlib."""
from __future__ import annotations

import io
import json
import re
import sys
from html.parser import HTMLParser

import jsonschema
import numpy as np
import pytest

import verigrad as vg
from verigrad.report import FORMATS, save
from verigrad.report.json_report import SCHEMA_VERSION, schema
from verigrad.report.markdown import md_escape
from verigrad.report.terminal import render_terminal, render_text, use_color

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
HOSTILE = "<script>alert('x')</script>|*_`$"


def _softplus_wrong():
    from report_examples import softplus_wrong

    return softplus_wrong


@pytest.fixture(scope="module")
def reports():
    """A few checks reused across tests (each check costs a fraction of a second)."""
    with np.errstate(all="ignore"):
        return {
            "linear": vg.check("w*x + b", x=2.0, w=3.0, b=1.0, nearby=1),
            "layer": vg.check("sum(tanh(A @ x))", A=[[0.5, -1.0], [2.0, 0.1], [0.3, 0.3]],
                              x=[1.0, -0.5], nearby=0),
            "kink": vg.check("abs(x)", x=0.0, nearby=1),
            "wrong": vg.check(_softplus_wrong(), np.array([-1.0, 0.0, 2.0]), nearby=1),
            "pole": vg.check("1/x", x=0.0, nearby=0),          # -inf and nan inside
            "vector": vg.check("tanh(v) * 2", v=[0.1, 0.2], nearby=0),  # non-scalar output
            "big": vg.check("sum(v ** 2)", v=np.linspace(-1, 1, 13), nearby=0),
        }


@pytest.fixture(scope="module")
def hostile():
    def f(a):
        return (a * 2).sum()

    f.__qualname__ = HOSTILE
    return vg.check(f, np.array([1.0, 2.0]), names=["<img src=x onerror=alert(1)>"], nearby=0)


# --- JSON ------------------------------------------------------------------------------------

def _strict(text: str):
    """json.loads that refuses NaN/Infinity tokens."""
    def bad(token):
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=bad)


def test_schema_is_valid_and_shipped_in_the_package():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    from importlib import resources

    assert resources.files("verigrad.report").joinpath("schema/report.schema.json").is_file()


@pytest.mark.parametrize("name", ["linear", "layer", "kink", "wrong", "pole", "vector", "big"])
def test_json_validates_against_the_schema_and_is_strict(reports, name):
    text = reports[name].to_json()
    doc = _strict(text)
    jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
    json.dumps(doc, allow_nan=False)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["verdict"] == reports[name].verdict
    assert len(doc["entries"]) == len(reports[name].entries)


def test_json_non_finite_values_are_strings(reports):
    doc = _strict(reports["pole"].to_json())
    e = doc["entries"][0]
    assert e["tape"] == "-inf" and e["status"] == "inconclusive" and e["reason"]
    assert float(e["tape"]) == -np.inf     # every number field reads back with float()


def test_json_records_what_reproduces_the_run(reports):
    doc = _strict(reports["linear"].to_json())
    assert doc["expression"] == "w*x + b"
    assert doc["inputs"]["x"] == {"shape": [], "dtype": "float64", "value": 2.0}
    assert [e["tape"] for e in doc["entries"][:3]] == [3.0, 2.0, 1.0]
    assert doc["entries"][0]["symbolic_digits"] == "3.0"
    assert doc["settings"]["seed"] == 0 and doc["points"][1]["seed"] == 1
    assert {"verigrad", "numpy", "sympy"} <= set(doc["versions"])
    assert doc["reproduce"] == "verigrad check 'w*x + b' --at x=2.0 w=3.0 b=1.0 --nearby 1"
    assert doc["derivatives"] == {"x": "w", "w": "x", "b": "1"}
    assert TIMESTAMP.fullmatch(doc["created"])
    assert "seconds" not in doc      # timing differs on every run


def test_json_culprit(reports):
    doc = _strict(reports["wrong"].to_json())
    assert doc["verdict"] == "fail" and doc["ok"] is False
    assert doc["culprit"]["grad_fn"] == "SoftplusBackward"
    assert doc["counts"]["fail"] == len(doc["entries"])


# --- Markdown ----------------------------------------------------------------------------------

def test_markdown_content(reports):
    md = reports["linear"].to_markdown()
    assert md.startswith("# verigrad report: `w*x + b`\n")
    assert "**Verdict: PASS**" in md
    for name, d in (("x", "w"), ("w", "x"), ("b", "1")):
        assert f"$$ \\frac{{\\partial f}}{{\\partial {name}}} = {d} $$" in md
    assert "| input | index | status | tape | symbolic | FD |" in md
    assert "| `x` | — | pass | 3.0 | 3.0 | 3.0 |" in md
    assert "```sh\nverigrad check 'w*x + b' --at x=2.0 w=3.0 b=1.0 --nearby 1\n```" in md
    assert "| nearby 1 | 1 | pass |" in md              # the seed of the nearby point


def test_markdown_failure_kink_and_no_closed_form(reports):
    md = reports["wrong"].to_markdown()
    assert "**Verdict: FAIL** — SoftplusBackward computes a wrong gradient." in md
    assert "## Culprit" in md and "fail (wrong)" in md
    assert "| `x` | `[0]` | nearby 1 | fail (wrong) |" in md     # entries of a nearby point
    kink = reports["kink"].to_markdown()
    assert "**Verdict: INCONCLUSIVE**" in kink
    assert "inconclusive (kink): left -1.0, right 1.0" in kink
    assert "valid subgradient" in kink
    big = reports["big"].to_markdown()
    assert "No closed form shown: closed forms are shown for up to 12 input entries." in big
    vector = reports["vector"].to_markdown()
    assert "closed forms are shown for scalar outputs only" in vector
    assert "| output |" in vector


def _outside_code(md: str) -> str:
    md = re.sub(r"```.*?```", "", md, flags=re.S)
    return re.sub(r"(`+).*?\1", "", md)


def test_markdown_escapes_user_text(hostile):
    md = hostile.to_markdown()
    prose = _outside_code(md)
    assert not re.search(r"(?<!\\)<", prose.replace("$$", "")), "raw HTML in Markdown"
    assert "\\<script\\>" in prose or "<script>" not in prose
    for line in md.splitlines():
        if line.startswith("$$"):
            assert "<" not in line and ">" not in line
    # every row of a table has as many cells as its header
    blocks = re.findall(r"((?:^\|.*\n)+)", md, flags=re.M)
    for block in blocks:
        counts = {len(re.split(r"(?<!\\)\|", r)) for r in block.strip().splitlines()}
        assert len(counts) == 1, block


def test_md_escape():
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("# title") == "\\# title"
    assert md_escape("grad_fn") == "grad_fn"          # intraword _ is not emphasis
    assert md_escape("$x$ *y*") == "\\$x\\$ \\*y\\*"
    assert md_escape("1. one", block_start=False) == "1. one"


# --- HTML --------------------------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text, self.styles = [], [], [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)


def _parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    p.close()
    return p


def _assert_self_contained(page: str) -> None:
    p = _parse(page)
    assert not {"script", "link", "iframe", "object", "embed", "img", "base", "audio",
                "video", "source", "frame"} & set(p.tags)
    for tag, key, value in p.attrs:
        assert not key.startswith("on"), (tag, key)
        if key in ("src", "href", "xlink:href", "action", "data", "poster", "srcset",
                   "background"):
            assert value.startswith("#"), (tag, key, value)
        assert "://" not in value and not value.startswith("//"), (tag, key, value)
    css = "".join(p.styles)
    assert "@import" not in css and not re.search(r"url\((?!#)", css)


@pytest.mark.parametrize("name", ["linear", "layer", "kink", "wrong", "pole"])
def test_html_is_self_contained(reports, name):
    page = reports[name].to_html()
    assert page.startswith("<!DOCTYPE html>")
    _assert_self_contained(page)
    assert "http" not in page    # not even XML namespaces: inline SVG in HTML needs none


def test_html_content_and_figures(reports):
    page = reports["wrong"].to_html()
    p = _parse(page)
    text = " ".join(p.text)
    assert 'class="verdict fail"' in page and "FAIL" in text
    assert "SoftplusBackward computes a wrong gradient." in text
    assert p.tags.count("svg") == 2       # the agreement plot and one FD plot (one input)
    assert "finite-difference step h" in page and "|tape − reference|" in page
    assert "Figures skipped" not in page
    # the same sections as the Markdown report
    md = reports["wrong"].to_markdown()
    for heading in re.findall(r"^## (.+)$", md, flags=re.M):
        assert f"<h2>{heading}</h2>" in page
    # ids are unique across the inline SVGs
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_html_escapes_hostile_names(hostile):
    page = hostile.to_html()
    _assert_self_contained(page)
    p = _parse(page)
    assert "script" not in p.tags and "img" not in p.tags
    text = "".join(p.text)
    assert HOSTILE in text                                 # shown, as text
    assert "<img src=x onerror=alert(1)>" in text
    assert "&lt;script&gt;" in page


def test_html_without_matplotlib(reports, monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    page = reports["linear"].to_html()
    assert "<svg" not in page
    assert "Figures skipped: matplotlib is not available" in page
    assert "pip install &#x27;verigrad[plot]&#x27;" in page
    _assert_self_contained(page)


# --- determinism ----------------------------------------------------------------------------

def test_same_check_gives_identical_files_but_the_timestamp():
    def run():
        r = vg.check("sum(tanh(A @ x))", A=[[0.5, -1.0], [2.0, 0.1]], x=[1.0, -0.5],
                     nearby=1)
        return [TIMESTAMP.sub("T", r.to_json()), TIMESTAMP.sub("T", r.to_markdown()),
                TIMESTAMP.sub("T", r.to_html())]

    first, second = run(), run()
    assert first == second
    assert all(text.count("T") for text in first)
    assert len(TIMESTAMP.findall(vg.check("x**2", x=1.0, nearby=0).to_html())) == 1


# --- save and the terminal -------------------------------------------------------------------

def test_save_writes_the_formats_with_one_timestamp(reports, tmp_path):
    paths = reports["linear"].save(str(tmp_path / "out"))
    assert [p.rsplit("/", 1)[1] for p in paths] == list(FORMATS.values())
    stamps = {TIMESTAMP.search(open(p, encoding="utf-8").read()).group() for p in paths}
    assert len(stamps) == 1
    assert save(reports["linear"], tmp_path / "md", "md") == [str(tmp_path / "md/report.md")]
    with pytest.raises(ValueError, match="unknown report format"):
        save(reports["linear"], tmp_path / "x", ("json", "pdf"))
    assert not (tmp_path / "x").exists()


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_terminal_colour_only_on_a_tty(reports, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    r = reports["wrong"]
    assert "\033[31mFAIL\033[0m" in render_terminal(r, _TTY())
    assert "\033[" not in render_terminal(r, io.StringIO())
    assert render_text(r) == str(r) and "\033[" not in str(r)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_TTY())
    assert "\033[" not in render_terminal(r, _TTY())
