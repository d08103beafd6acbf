"""The document model the Markdown and HTML reports share, and what every format reads.

:func:`document` turns a :class:`~verigrad.checker.report.CheckReport` into a list of plain
blocks (headings, paragraphs, tables, formulas); :func:`render_markdown` and
:func:`verigrad.report.html.render_html` only print those blocks, so both formats say the
same thing. Nothing here computes: every number comes from the report.

>>> import verigrad as vg
>>> blocks = document(vg.check("w*x + b", x=2.0, w=3.0, b=1.0))
>>> blocks[0].code
'w*x + b'
"""
from __future__ import annotations

import json
import math
import numbers
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["document", "created_now", "reproduce_command", "shell_command", "python_snippet", "plain", "Code", "Strong", "Heading", "Para",
           "Table", "Formula", "Bullets", "Verdict", "Preformatted", "FigureSlot", "Footer",
           "num", "err"]


# --- the document model -------------------------------------------------------------------

@dataclass(frozen=True)
class Code:
    """Inline user text shown verbatim (a code span)."""

    text: str


@dataclass(frozen=True)
class Strong:
    text: str


#: a piece of a paragraph or table cell: plain (user) text, a code span, or bold text
Inline = Union[str, Code, Strong]
Cell = Union[str, Code, list]


@dataclass
class Heading:
    level: int
    text: str
    code: str = ""                 # a code span after the text (the expression in the title)


@dataclass
class Para:
    parts: list


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]
    numeric: list[bool]            # right-aligned columns
    cls: list[str] = field(default_factory=list)   # a CSS class per row (status), HTML only


@dataclass
class Formula:
    """``d f / d name = latex`` (LaTeX from the report, shown as display maths)."""

    name: str
    lhs: str
    rhs: str
    mathml: str = ""               # the same formula as presentation MathML (HTML report)


@dataclass
class Bullets:
    items: list[list]


@dataclass
class Verdict:
    verdict: str
    headline: str
    counts: str


@dataclass
class Preformatted:
    text: str
    lang: str = "sh"


@dataclass
class FigureSlot:
    """Where the HTML report puts its figures (Markdown has none)."""


@dataclass
class Footer:
    created: str
    versions: str


def plain(v: Any) -> Any:
    """Python/numpy data as strict-JSON data (non-finite floats as strings).

    >>> plain({"a": (1, float("nan")), "b": [float("-inf")]})
    {'a': [1, 'nan'], 'b': ['-inf']}
    """
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isfinite(f):
            return f
        return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "tolist"):          # numpy arrays and scalars (np.bool_ too)
        return plain(v.tolist())
    return str(v)



# --- formatting helpers (no maths: only how numbers are written) ---------------------------

def num(v: Any) -> str:
    """A float in full (shortest round-trip repr), or a dash when there is none."""
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, float):
        return repr(v)
    return str(v)


def err(v: Any) -> str:
    """An error or tolerance: three significant digits."""
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return num(v)
    return f"{float(v):.3g}"


def created_now() -> str:
    """The report's one timestamp (UTC, to the second). ``SOURCE_DATE_EPOCH`` fixes it, as
    in reproducible builds."""
    import os
    from datetime import datetime, timezone

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else \
        datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _index(idx: Any) -> str:
    return f"[{', '.join(map(str, idx))}]" if idx else "—"


def _output(out: Any) -> str:
    if out is None:
        return "—"
    if len(out) == 2 and out[0] == "v":
        return f"random v{out[1]}"
    return f"[{', '.join(map(str, out))}]"


def _compact(value: Any, limit: int = 120) -> str:
    text = json.dumps(plain(value), separators=(",", ":"), allow_nan=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _status(e: Any) -> str:
    s = e.status
    if e.reason:
        s += f" ({e.reason})"
    if e.reason == "kink":
        s += f": left {num(e.left)}, right {num(e.right)}"
    return s


def _digits_agree(e: Any) -> bool:
    """Whether the 25-digit string is the same number as ``symbolic`` (a guard, so the
    table never shows digits that contradict the float next to them)."""
    if e.symbolic_digits is None or e.symbolic is None:
        return False
    try:
        d = float(e.symbolic_digits)
    except ValueError:
        return False
    return d == e.symbolic or abs(d - e.symbolic) <= 4e-16 * abs(e.symbolic)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _latex_name(name: str) -> str:
    """An input name as LaTeX, written as SymPy writes that symbol in the derivatives
    (``x``, ``x_{1}``, ``\\alpha``, ``A[1, 0]``); anything else inside ``\\text{}``."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\[[0-9, ]+\])?", name):
        import sympy

        return sympy.latex(sympy.Symbol(name))
    return r"\text{" + latex_text(name) + "}"


def latex_text(text: str) -> str:
    """Escape text for LaTeX (and keep ``<``/``>``/``&`` out of it: the maths ends up in
    Markdown and HTML, where those are markup)."""
    table = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
             "#": r"\#", "%": r"\%", "_": r"\_", "^": r"\^{}", "~": r"\~{}",
             "<": r"\textless{}", ">": r"\textgreater{}"}
    return "".join(table.get(c, c) for c in " ".join(text.splitlines()))


def safe_latex(latex: str) -> str:
    """LaTeX from SymPy, with ``<``, ``>`` and ``&`` (markup in Markdown/HTML, and only ever
    from odd symbol names here) replaced by LaTeX commands."""
    # `$` would end the `$$` block and a blank line the paragraph: neither is ever SymPy's
    # own, only an odd input name's
    latex = " ".join(latex.replace("$", r"\$").split("\n"))
    return latex.replace("&", r"\&").replace("<", r"\lt ").replace(">", r"\gt ")


def reproduce_command(report: Any) -> str | None:
    """What reruns the check: the report's own ``reproduce`` (set by the CLI for a
    ``file.py:function`` target and by the pytest fixture), else the ``verigrad check``
    command of an expression; None for a callable nothing knows the source of. A callable's
    name is never taken for an expression, even when it reads like one (``def x(x)``)."""
    if getattr(report, "reproduce", None):
        return report.reproduce
    if not getattr(report, "from_expression", False):
        return None
    return shell_command(report.expression, report) or python_snippet(
        repr(report.expression), report, by_name=True)


#: vg.check's options the command line has flags for, and their defaults there
_CLI_OPTIONS = {"seed": 0, "nearby": 3, "rtol": None, "atol": None}
#: the other options of vg.check a report records, and vg.check's defaults
_OTHER_OPTIONS = {"eps": None, "use_symbolic": True, "max_rows": 16, "order": 1}


def _options(report: Any, which: dict[str, Any]) -> dict[str, Any]:
    return {k: report.settings[k] for k in which
            if k in report.settings and report.settings[k] != which[k]}


def python_snippet(callee: str, report: Any, imports: tuple[str, ...] = (),
                   by_name: bool = False) -> str:
    """Python that reruns the check: ``vg.check(CALLEE, <the inputs>, <options>)`` (inputs
    by name for an expression, ``by_name``, else positionally), printing the verdict."""
    def value(info: dict[str, Any]) -> str:
        dtype = info.get("dtype") or "float64"
        return f"np.array({json.dumps(plain(info.get('value')))}, dtype={dtype!r})"

    if by_name:
        args = ["values={" + ", ".join(f"{n!r}: {value(i)}" for n, i in report.inputs.items())
                + "}"]
    else:
        args = [value(i) for i in report.inputs.values()]
        args.append(f"names={list(report.inputs)!r}")
    opts = _options(report, _CLI_OPTIONS) | _options(report, _OTHER_OPTIONS)
    args += [f"{k}={v!r}" for k, v in opts.items()]
    lines = ["import numpy as np", "import verigrad as vg", *imports,
             f"print(vg.check({callee}, {', '.join(args)}).verdict)"]
    return "\n".join(lines)


def shell_command(target: str, report: Any) -> str | None:
    """``verigrad check TARGET --at ...`` with the report's input values and the settings
    that differ from the CLI's defaults; None when an input name cannot be given to --at."""
    if not report.inputs or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)
                                    for n in report.inputs):
        return None
    args = ["verigrad", "check", target, "--at"]
    args += [f"{n}={json.dumps(plain(i.get('value')), separators=(',', ':'))}"
             for n, i in report.inputs.items()]
    dtypes = {i.get("dtype") for i in report.inputs.values()}
    if dtypes == {"float32"}:
        args += ["--dtype", "float32"]
    if _options(report, _OTHER_OPTIONS):
        return None      # options the command line has no flag for
    for key, v in _options(report, _CLI_OPTIONS).items():
        args += [f"--{key}", repr(v) if isinstance(v, float) else str(v)]
    return " ".join(shlex.quote(a) for a in args)


def mathml(expr: Any) -> str:
    """``expr`` as presentation MathML (the contents of a ``<math>`` element), safe to put
    in HTML: SymPy's printer writes symbol names unescaped, so every symbol is printed
    under a placeholder name and its own name put back escaped.

    >>> import sympy
    >>> mathml(sympy.Symbol("<b>") * 2)
    '<mrow><mn>2</mn><mo>&InvisibleTimes;</mo><mi>&lt;b&gt;</mi></mrow>'
    """
    from html import escape

    import sympy
    from sympy.printing.mathml import mathml as sympy_mathml

    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    # letters only: SymPy reads trailing digits and underscores as subscripts
    stand_in = {s: sympy.Symbol("vgsym" + "".join(chr(97 + int(d)) for d in f"{k:03d}"),
                                **s.assumptions0) for k, s in enumerate(symbols)}
    text = sympy_mathml(expr.xreplace(stand_in), printer="presentation")
    for s, t in stand_in.items():
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", s.name):   # x, x_1, alpha: SymPy's way
            shown = sympy_mathml(sympy.Symbol(s.name), printer="presentation")
        else:
            shown = f"<mi>{escape(s.name)}</mi>"
        text = text.replace(f"<mi>{t.name}</mi>", shown)
    return text


def mathml_name(name: str) -> str:
    """An input name (``x``, ``x_1``, ``A[1, 0]``, anything) as MathML, escaped."""
    import sympy

    return mathml(sympy.Symbol(name))


# --- the document ------------------------------------------------------------------------

#: at most this many entries in the per-entry table (the JSON report has them all)
MAX_ENTRY_ROWS = 100


def _headline(report: Any) -> tuple[str, str]:
    entries = report.entries
    c = report.counts
    n_fail, n_inc, counts = c["fail"], c["inconclusive"], report.counts_text
    refs = []
    if any(e.symbolic is not None for e in entries):
        refs.append("the exact symbolic values")
    if any(e.finite_diff is not None for e in entries):
        refs.append("finite differences")
    ref = " and ".join(refs) or "the references"
    if report.verdict == "pass":
        return f"The tape's gradient agrees with {ref} at every checked entry.", counts
    if report.verdict == "fail":
        if report.culprit is not None:
            return f"{report.culprit.grad_fn} computes a wrong gradient.", counts
        if report.contract:
            return "A backward rule breaks the autograd contract.", counts
        return f"{_plural(n_fail, 'derivative')} disagree with {ref}.", counts
    reasons = ", ".join(report.reasons) or "no single reference"
    return (f"No wrong gradient found, but {_plural(n_inc, 'derivative')} cannot be decided "
            f"here ({reasons})."), counts


def document(report: Any, created: str | None = None) -> list:
    """The report as blocks, in reading order (shared by Markdown and HTML)."""
    created = created or created_now()
    blocks: list = [Heading(1, "verigrad report: ", code=report.expression)]
    headline, counts = _headline(report)
    blocks.append(Verdict(report.verdict, headline, counts))

    # inputs
    blocks.append(Heading(2, "Inputs"))
    rows = [[Code(name), "×".join(map(str, info.get("shape", []))) or "scalar",
             str(info.get("dtype", "")), Code(_compact(info.get("value")))]
            for name, info in report.inputs.items()]
    blocks.append(Table(["input", "shape", "dtype", "value"], rows, [False] * 4))

    # closed forms
    blocks.append(Heading(2, "Derivatives"))
    if report.derivatives:
        blocks.append(Para(["Closed forms from the symbolic mirror:"]))
        exprs = getattr(report, "derivative_expressions", {})
        for name, latex in report.derivatives.items():
            ml = ""
            if name in exprs:
                ml = ("<mfrac><mrow><mo>&part;</mo><mi>f</mi></mrow><mrow><mo>&part;</mo>"
                      f"{mathml_name(name)}</mrow></mfrac><mo>=</mo>{mathml(exprs[name])}")
            blocks.append(Formula(name, rf"\frac{{\partial f}}{{\partial {_latex_name(name)}}}",
                                  safe_latex(latex), ml))
    else:
        note = (report.derivatives_note or "the report carries none").strip().rstrip(".")
        if not note.lower().startswith("no closed form"):
            note = f"No closed form shown: {note}"
        blocks.append(Para([note[0].upper() + note[1:] + "."]))

    # culprit
    if report.culprit is not None:
        c = report.culprit
        blocks.append(Heading(2, "Culprit"))
        blocks.append(Para([c.message]))
        blocks.append(Table(
            ["grad_fn", "input", "element", "expected", "got", "checked against", "path"],
            [[Code(c.grad_fn), Code(f"{c.input_index} ({c.input_name})"),
              Code(_index(c.element)) if c.element else "—",
              num(c.expected), num(c.got), c.method, Code(c.path)]],
            [False, False, False, True, True, False, False], ["fail"]))
        if len(report.culprits) > 1:
            blocks.append(Para(["Also wrong:"]))
            blocks.append(Bullets([[o.message] for o in report.culprits[1:]]))
    others = [c for c in report.contract
              if report.culprit is None or c != report.culprit.message]
    if others:
        blocks.append(Heading(2, "Contract violations"))
        blocks.append(Bullets([[c] for c in others]))
    kinked = [e for e in report.entries if e.reason == "kink"]
    if report.kinks or kinked:
        blocks.append(Heading(2, "Kinks"))
        items = [[k] for k in report.kinks]
        for e in kinked[:10]:
            where = "" if not e.point else f" (nearby point {e.point})"
            items.append([Code(e.label), f"{where}: left derivative {num(e.left)}, right "
                          f"{num(e.right)}; the tape says {num(e.tape)}. Any value in between "
                          f"is a valid subgradient, so there is no single derivative to "
                          f"compare with: inconclusive, not wrong."])
        blocks.append(Bullets(items))

    # entries
    blocks.append(Heading(2, "Entries"))
    entries = report.entries
    shown = entries if len(entries) <= MAX_ENTRY_ROWS else report.shown_entries(MAX_ENTRY_ROWS)
    blocks.append(Para([
        "Each derivative seen by the three opinions: the tape (backward), the exact symbolic "
        "value (25 digits) and finite differences (with their own error estimate). The status "
        "compares the tape with the reference within the tolerance."]))
    with_output = any(e.output is not None for e in entries)
    if any(e.output is not None and len(e.output) == 2 and e.output[0] == "v" for e in entries):
        blocks.append(Para(["The output is large: output \"random vk\" is the derivative of "
                            "vk · output for a seeded random cotangent vk (the seed setting "
                            "reproduces it)."]))
    with_point = any(e.point for e in entries)
    header = ["input", "index"] + (["output"] if with_output else []) + \
        (["point"] if with_point else []) + \
        ["status", "tape", "symbolic", "FD", "FD error (method)", "abs error", "tolerance",
         "rel error"]
    numeric = [False, False] + [False] * with_output + [False] * with_point + \
        [False] + [True] * 7
    rows, classes = [], []
    for e in shown:
        row: list = [Code(e.input), Code(_index(e.index)) if e.index else "—"]
        if with_output:
            row.append(_output(e.output))
        if with_point:
            row.append("given" if not e.point else f"nearby {e.point}")
        sym = e.symbolic_digits if _digits_agree(e) else num(e.symbolic)
        fd = f"{err(e.fd_error)} ({e.fd_method})" if e.fd_method else err(e.fd_error)
        row += [_status(e), num(e.tape), sym, num(e.finite_diff), fd, err(e.abs_error),
                err(e.tolerance), err(e.rel_error)]
        rows.append(row)
        classes.append(e.status)
    blocks.append(Table(header, rows, numeric, classes))
    if len(shown) < len(entries):
        blocks.append(Para([f"The {len(shown)} entries most worth a look, of "
                            f"{len(entries)}; report.json has them all."]))
    blocks.append(FigureSlot())

    # nodes
    if report.nodes:
        blocks.append(Heading(2, "Nodes"))
        blocks.append(Para(["Each op's backward against its own reference (its symbolic "
                            "mirror, or finite differences of its forward)."]))
        blocks.append(Table(
            ["grad_fn", "path", "method", "ok", "max abs error", "tolerance", "note"],
            [[Code(nd.grad_fn), Code(nd.path), nd.method, "yes" if nd.ok else "NO",
              err(nd.max_abs_error), err(nd.tolerance), nd.note] for nd in report.nodes],
            [False, False, False, False, True, True, False],
            ["pass" if nd.ok else "fail" for nd in report.nodes]))

    # points
    if report.points:
        blocks.append(Heading(2, "Points"))
        blocks.append(Para(["The given point and seeded nearby points (the seed reproduces "
                            "each one)."]))
        blocks.append(Table(
            ["point", "seed", "verdict", "summary", "values"],
            [["given" if p.index == 0 else f"nearby {p.index}",
              "—" if p.seed is None else str(p.seed), p.verdict, p.summary,
              Code(_compact(p.values))] for p in report.points],
            [False, True, False, False, False], [p.verdict for p in report.points]))

    if report.notes:
        blocks.append(Heading(2, "Notes"))
        blocks.append(Bullets([[n] for n in report.notes]))

    # reproduce
    blocks.append(Heading(2, "Reproduce"))
    cmd = reproduce_command(report)
    if cmd:
        blocks.append(Para(["Rerun this check with:"]))
        blocks.append(Preformatted(cmd, "sh" if cmd.startswith("verigrad ") else "python"))
    settings: list = ["Settings: "]
    for k, v in report.settings.items():
        settings += [Code(f"{k}={_compact(v)}"), ", "]
    blocks.append(Para(settings[:-1] + ["."]))
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    blocks.append(Footer(created, versions))
    return blocks
