"""The HTML report: one self-contained file a person can open.

The same content as the Markdown report (both print :func:`verigrad.report.document.document`)
plus figures as inline SVG. No scripts, no external fonts, images or stylesheets: the page
reads the same offline and without JavaScript. Every piece of user text goes through
:func:`html.escape`. Derivatives are presentation MathML (SymPy's printer), which browsers
render natively, with no scripts or fonts.

>>> import verigrad as vg
>>> page = vg.check("w*x + b", x=2.0, w=3.0, b=1.0).to_html()
>>> page.startswith("<!DOCTYPE html>"), "<script" in page
(True, False)
"""
from __future__ import annotations

from html import escape
from typing import Any

from .document import (Bullets, Code, FigureSlot, Footer, Formula, Heading, Para, Preformatted,
                       Strong, Table, Verdict, document)

__all__ = ["render_html", "CSS"]

CSS = """
:root { --pass: #1a7f37; --fail: #cf222e; --inconclusive: #9a6700; --muted: #57606a;
        --line: #d0d7de; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: #1f2328;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6em; margin: 0 0 16px; font-weight: 600; }
h1 code { font-size: 0.95em; }
h2 { font-size: 1.2em; margin: 32px 0 8px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); font-weight: 600; }
p { margin: 8px 0; }
code, pre, td.num { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
                  "Liberation Mono", monospace; font-size: 0.86em; }
code { background: var(--soft); padding: 1px 5px; border-radius: 4px;
       overflow-wrap: anywhere; }
pre { background: var(--soft); padding: 10px 14px; border-radius: 6px; overflow-x: auto;
      border: 1px solid var(--line); }
.verdict { border-radius: 8px; padding: 16px 20px; margin: 8px 0 20px; color: #fff; }
.verdict .word { font-size: 1.7em; font-weight: 700; letter-spacing: 0.04em; }
.verdict .headline { font-size: 1.1em; margin-top: 2px; }
.verdict .counts { opacity: 0.9; font-size: 0.95em; }
.verdict.pass { background: var(--pass); }
.verdict.fail { background: var(--fail); }
.verdict.inconclusive { background: var(--inconclusive); }
.scroll { overflow-x: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
td:first-child, td.nowrap { white-space: nowrap; }
th { background: var(--soft); text-align: left; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tr.fail td { background: #ffebe9; }
tr.inconclusive td { background: #fff8c5; }
td.status { white-space: nowrap; font-weight: 600; }
tr.pass td.status { color: var(--pass); }
tr.fail td.status { color: var(--fail); }
tr.inconclusive td.status { color: var(--inconclusive); }
.formula { margin: 6px 0; padding: 6px 12px; background: var(--soft); border-radius: 6px;
           border-left: 3px solid var(--line); }
.formula .name { color: var(--muted); font-size: 0.85em; margin-right: 10px; }
.formula code { background: none; padding: 0; }
.formula { overflow-x: auto; }
.formula math { font-size: 1.15em; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
        gap: 8px 28px; align-items: start; }
figure { margin: 12px 0 20px; }
figure svg.figure { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 0.9em; max-width: 900px; }
.skipped { color: var(--muted); font-style: italic; }
footer { margin-top: 36px; color: var(--muted); font-size: 0.85em;
         border-top: 1px solid var(--line); padding-top: 8px; }
ul { padding-left: 22px; }
li { margin: 3px 0; }
"""


def _inline(parts: Any) -> str:
    if isinstance(parts, (str, Code, Strong)):
        parts = [parts]
    out = []
    for p in parts:
        if isinstance(p, Code):
            out.append(f"<code>{escape(p.text)}</code>")
        elif isinstance(p, Strong):
            out.append(f"<strong>{escape(p.text)}</strong>")
        else:
            out.append(escape(str(p)))
    return "".join(out)


def _table(t: Table) -> str:
    # short columns that read badly when wrapped ("nearby 1", "[0, 1]"), and the status
    classes = []
    for h, r in zip(t.header, t.numeric):
        c = ["num"] if r else []
        c += ["nowrap"] if h in ("index", "output", "point", "seed", "element") else []
        c += ["status"] if h in ("status", "verdict", "ok") else []
        classes.append(f' class="{" ".join(c)}"' if c else "")
    num = ' class="num"'
    head = "".join(f"<th{num if r else ''}>{escape(h)}</th>" for h, r in zip(t.header, t.numeric))
    rows = []
    for k, row in enumerate(t.rows):
        cls = f' class="{escape(t.cls[k])}"' if k < len(t.cls) and t.cls[k] else ""
        cells = "".join(f"<td{c}>{_inline(v)}</td>" for v, c in zip(row, classes))
        rows.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


def _figures(report: Any) -> str:
    from .plots import figures

    figs, skipped = figures(report)
    out = ["<h2>Figures</h2>"]
    if skipped:
        out.append(f'<p class="skipped">Figures skipped: {escape(skipped)}.</p>')
        return "\n".join(out)
    if not figs:
        out.append('<p class="skipped">No figures: no entry has a single reference and no '
                   'finite-difference ladder was recorded.</p>')
    # only drawn figures go into the grid: a note there would leave a cell without a plot
    drawn = [f"<figure>\n{f.svg}\n<figcaption>{escape(f.caption)}</figcaption>\n</figure>"
             for f in figs if f.svg]
    if drawn:
        out += ['<div class="figs">', *drawn, "</div>"]
    out += [f'<p class="skipped">{escape(f.title)}: {escape(f.caption)}</p>'
            for f in figs if not f.svg]
    return "\n".join(out)


def render_html(report: Any, created: str | None = None) -> str:
    """The report as one self-contained HTML page (figures need matplotlib).

    >>> import verigrad as vg
    >>> page = vg.check("abs(x)", x=0.0, nearby=0).to_html()
    >>> "INCONCLUSIVE" in page
    True
    """
    body: list[str] = []
    for b in document(report, created):
        if isinstance(b, Heading):
            code = f" <code>{escape(b.code)}</code>" if b.code else ""
            body.append(f"<h{b.level}>{escape(b.text.rstrip(': '))}{':' if b.code else ''}"
                        f"{code}</h{b.level}>")
        elif isinstance(b, Verdict):
            body.append(f'<section class="verdict {escape(b.verdict)}">'
                        f'<div class="word">{escape(b.verdict.upper())}</div>'
                        f'<div class="headline">{escape(b.headline)}</div>'
                        f'<div class="counts">{escape(b.counts)}</div></section>')
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.parts)}</p>")
        elif isinstance(b, Formula):
            if b.mathml:
                body.append(f'<div class="formula"><math display="block">{b.mathml}</math>'
                            f'</div>')
            else:
                body.append(f'<div class="formula"><span class="name">∂f/∂{escape(b.name)} ='
                            f'</span><code>{escape(b.rhs)}</code></div>')
        elif isinstance(b, Bullets):
            body.append("<ul>\n" + "\n".join(f"<li>{_inline(i)}</li>" for i in b.items)
                        + "\n</ul>")
        elif isinstance(b, Preformatted):
            body.append(f"<pre>{escape(b.text)}</pre>")
        elif isinstance(b, Table):
            body.append(_table(b))
        elif isinstance(b, FigureSlot):
            body.append(_figures(report))
        elif isinstance(b, Footer):
            body.append(f"<footer>Versions: {escape(b.versions)}.<br>"
                        f"Created: {escape(b.created)}</footer>")
    title = escape(f"verigrad {report.verdict.upper()}: {report.expression}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
