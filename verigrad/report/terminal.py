"""The terminal summary: verdict, culprit, the worst entries, and why anything is
inconclusive. Colour only on a tty, and never with NO_COLOR set."""
from __future__ import annotations

import math
import os
import sys
from typing import Any, TextIO

__all__ = ["render_text", "render_terminal", "use_color", "fmt"]

_COLORS = {"pass": "\033[32m", "fail": "\033[31m", "inconclusive": "\033[33m"}
_RESET = "\033[0m"


def use_color(stream: TextIO | None = None) -> bool:
    """Colour only for a terminal: not when ``stream`` (stdout by default) is a file or a
    pipe, not with ``NO_COLOR`` set to anything non-empty (https://no-color.org), not on a
    ``TERM=dumb`` terminal."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def fmt(v: Any, digits: int = 10) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    return str(v)


def _pair(a: Any, b: Any) -> tuple[str, str]:
    if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b):
        from ..checker.compare import distinct
        return distinct(a, b)
    return fmt(a), fmt(b)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in
                             enumerate(zip(r, widths))).rstrip() for r in rows]


def render_terminal(report: Any, stream: TextIO | None = None, max_rows: int = 6) -> str:
    """The summary for ``stream`` (stdout by default): the verdict in colour only when the
    stream is a terminal and ``NO_COLOR`` is unset.

    >>> import io, verigrad as vg
    >>> render_terminal(vg.check("w*x + b", x=2.0, w=3.0, b=1.0), io.StringIO()).split()[:2]
    ['verigrad:', 'PASS']
    """
    return render_text(report, color=use_color(stream), max_rows=max_rows)


def render_text(report: Any, color: bool = False, max_rows: int = 6) -> str:
    """The short summary printed by ``str(report)`` and ``verigrad check`` (ANSI colour on
    the verdict with ``color=True``).

    >>> import verigrad as vg
    >>> print(render_text(vg.check("w*x + b", x=2.0, w=3.0, b=1.0)).splitlines()[0])
    verigrad: PASS  w*x + b
    """
    verdict = report.verdict.upper()
    if color:
        verdict = f"{_COLORS.get(report.verdict, '')}{verdict}{_RESET}"
    head = f"verigrad: {verdict}  {report.expression}"
    counts = "  " + report.counts_text
    lines = [head, counts]
    if report.culprit is not None:
        lines.append(f"  culprit: {report.culprit.message}")
        for c in report.culprits[1:3]:
            lines.append(f"  also wrong: {c.message}")
    for c in report.contract:
        if report.culprit is None or c != report.culprit.message:
            lines.append(f"  contract: {c}")
    shown = report.shown_entries(max_rows)
    if shown:
        rows = [["entry", "tape", "reference", "abs error", "status"]]
        for e in shown:
            status = e.status + (f" ({e.reason})" if e.reason else "")
            if e.point:
                status += f" at nearby point {e.point}"
            tape, ref = _pair(e.tape, e.reference) if e.status != "pass" else (
                fmt(e.tape), fmt(e.reference))  # failures: digits enough to see them differ
            ref = f"{fmt(e.left, 6)}..{fmt(e.right, 6)}" if e.reason == "kink" else ref
            err = fmt(e.abs_error, 3) + (f" (tol {fmt(e.tolerance, 2)})" if e.status != "pass"
                                         and e.abs_error is not None and e.tolerance else "")
            rows.append([e.label, tape, ref, err, status])
        lines += _table(rows)
        if len(report.entries) > len(shown):
            lines.append(f"  ... {len(report.entries) - len(shown)} more entries")
    for e in report.entries:
        if e.status == "inconclusive" and e.reason == "kink":
            lines.append(f"  kink at {e.label}: left derivative {fmt(e.left)}, right "
                         f"{fmt(e.right)}; the tape says {fmt(e.tape)} (any value between "
                         f"is a valid subgradient)")
            break
    for p in report.points[1:]:
        if p.verdict == "fail":
            lines.append(f"  nearby point {p.index} (seed {p.seed}) failed: {p.summary}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
