"""The Markdown report: the blocks of :func:`verigrad.report.document.document` as
GitHub-flavoured Markdown (LaTeX maths in ``$$`` blocks).

>>> import verigrad as vg
>>> md = vg.check("w*x + b", x=2.0, w=3.0, b=1.0).to_markdown()
>>> md.splitlines()[0]
'# verigrad report: `w*x + b`'
"""
from __future__ import annotations

import re
from typing import Any

from .document import (Bullets, Code, Footer, Formula, Heading, Para, Preformatted, Strong,
                       Table, Verdict, created_now, document, err, num, reproduce_command)

__all__ = ["render_markdown", "md_escape", "document", "created_now", "reproduce_command",
           "num", "err"]


# --- Markdown ----------------------------------------------------------------------------

# an underscore inside a word never starts emphasis (CommonMark), so grad_fn stays readable
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|&~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_escape(text: str, block_start: bool = True) -> str:
    """Escape user text for Markdown (CommonMark/GFM): inline markup, HTML, table pipes and
    ``$`` maths; at the start of a block (``block_start``) also a leading ``#``, ``+``,
    ``-``, ``=``, ``>`` or ``1.``, which would start a heading or a list.

    >>> md_escape("<b>|x*y|</b>")
    '\\\\<b\\\\>\\\\|x\\\\*y\\\\|\\\\</b\\\\>'
    """
    text = " ".join(str(text).split("\n"))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    if block_start:
        text = re.sub(r"^([#+\-=>])", r"\\\1", text)
        text = re.sub(r"^(\d+)([.)])", r"\1\\\2", text)
    return text


def _md_code(text: str, in_table: bool = False) -> str:
    text = " ".join(str(text).split("\n"))
    if in_table:
        text = text.replace("|", r"\|")   # GFM splits cells before reading code spans
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_inline(parts: Any, in_table: bool = False) -> str:
    if isinstance(parts, (str, Code, Strong)):
        parts = [parts]
    out = []
    for p in parts:
        if isinstance(p, Code):
            out.append(_md_code(p.text, in_table))
        elif isinstance(p, Strong):
            out.append(f"**{md_escape(p.text)}**")
        else:
            # only the first piece of a paragraph or list item can start a block
            out.append(md_escape(p, block_start=not out and not in_table))
    return "".join(out)


def render_markdown(report: Any, created: str | None = None) -> str:
    """The report as GitHub-flavoured Markdown (LaTeX maths in ``$$`` blocks).

    >>> import verigrad as vg
    >>> md = vg.check("w*x + b", x=2.0, w=3.0, b=1.0).to_markdown()
    >>> "$$ \\\\frac{\\\\partial f}{\\\\partial x} = w $$" in md
    True
    """
    out: list[str] = []
    for b in document(report, created):
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + md_escape(b.text).rstrip()
                       + (" " + _md_code(b.code) if b.code else ""))
        elif isinstance(b, Verdict):
            out.append(f"**Verdict: {b.verdict.upper()}** — {md_escape(b.headline)}")
            out.append("")
            out.append(md_escape(b.counts))
        elif isinstance(b, Para):
            out.append(_md_inline(b.parts))
        elif isinstance(b, Formula):
            out.append(f"$$ {b.lhs} = {b.rhs} $$")
        elif isinstance(b, Bullets):
            out.append("\n".join("- " + _md_inline(item) for item in b.items))
        elif isinstance(b, Preformatted):
            out.append(f"```{b.lang}\n" + b.text.replace("```", "` ` `") + "\n```")
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(md_escape(h, False) for h in b.header) + " |",
                     "|" + "|".join("---:" if r else "---" for r in b.numeric) + "|"]
            lines += ["| " + " | ".join(_md_inline(c, in_table=True) for c in row) + " |"
                      for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Footer):
            out.append(f"Versions: {md_escape(b.versions)}.")
            out.append("")
            out.append(f"Created: {b.created}")
        # FigureSlot: figures are in the HTML report only
        if out and out[-1] != "":
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
