"""Figures for the HTML report, as inline SVG text (matplotlib's ``Figure``, never pyplot).

* :func:`fd_figure`: per input, the finite-difference error against the step on log-log
  axes, the classic V (truncation error falls with the step, rounding error rises), with
  the chosen step marked;
* :func:`agreement_figure`: per entry, ``|tape - reference|`` against its tolerance.

Deterministic: the default style (not the user's matplotlibrc), a fixed SVG hash salt per
figure, no date or creator metadata, text as ``<text>``, and element ids prefixed per
figure so several SVGs can share one HTML page. Without matplotlib, :func:`figures` returns
no figures and the reason.

>>> import verigrad as vg
>>> figs, skipped = figures(vg.check("x**3", x=2.0, nearby=0))
>>> skipped or figs[0].svg.startswith("<svg")
True
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["FigureSVG", "figures", "fd_figure", "agreement_figure", "matplotlib_missing"]

#: status colours, shared with the HTML stylesheet
COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}
#: at most this many entries of one input in its FD figure (one line each)
MAX_TRACES = 8
#: at most this many entries in the agreement figure
MAX_POINTS = 64


@dataclass
class FigureSVG:
    title: str
    svg: str          # an <svg> element, ready to inline in HTML
    caption: str


def matplotlib_missing() -> str | None:
    """Why figures cannot be drawn (None when matplotlib imports)."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError as e:
        return (f"matplotlib is not available ({e}); install the plot extra "
                f"(pip install 'verigrad[plot]') for figures")
    return None


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _svg(fig: Any, key: str) -> str:
    """The figure as an <svg> element: no XML prolog, no metadata, ids prefixed by ``key``."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"verigrad-{key}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    # namespace declarations are not fetched, but an HTML page needs none of them
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    ids = set(re.findall(r'\bid="([^"]+)"', text))

    def rename(m: re.Match) -> str:
        return m.group(1) + (f"{key}-{m.group(2)}" if m.group(2) in ids else m.group(2))

    text = re.sub(r'(\bid="|href="#|url\(#)([^")]+)', rename, text)
    # width/height from CSS, so the figure scales with the page
    text = re.sub(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"',
                  r'<svg class="figure" width="\1pt" height="\2pt"', text, count=1)
    return text.strip()


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decades(axis: Any) -> None:
    """Label a log axis ``10⁻⁸`` in plain Unicode: matplotlib's default ``$10^{-8}$``
    goes through mathtext, which costs ~10 ms a label."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def label(v: float, _pos: Any) -> str:
        if v <= 0:
            return ""
        e = round(math.log10(v))
        return "1" if e == 0 else f"10{str(e).translate(_SUPERSCRIPT)}"

    axis.set_major_locator(LogLocator(base=10, numticks=9))
    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(NullFormatter())


def _style() -> Any:
    import matplotlib
    import matplotlib.style

    rc = {"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 10,
          "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
          "axes.spines.right": False, "figure.dpi": 100}
    return matplotlib.style.context(["default", rc])


def fd_figure(report: Any, name: str, key: str) -> FigureSVG | None:
    """FD error against step for the entries of input ``name`` (at the given point)."""
    from matplotlib.figure import Figure

    traces = [t for t in report.fd_traces if t.input == name]
    if not traces:
        return None
    shown = traces[:MAX_TRACES]
    flat, marked, outside = [], [], {}   # caption material, grouped
    with _style():
        fig = Figure(figsize=(6.4, 3.9), layout="constrained")
        ax = fig.add_subplot()
        plotted = 0
        colors = ["#0969da", "#bc4c00", "#8250df", "#1a7f37", "#cf222e", "#4d2d00", "#1b7c83",
                  "#6e7781"]
        for k, t in enumerate(shown):
            label = f"{t.input}[{', '.join(map(str, t.index))}]" if t.index else t.input
            pts = sorted((s, e) for s, e in zip(t.steps, t.errors)
                         if _positive(s) and _positive(e))
            if not pts:
                flat.append(label)
                continue
            color = colors[k % len(colors)]
            xs, ys = zip(*pts)
            ax.loglog(xs, ys, marker="o", ms=3, lw=1.3, color=color, label=label)
            plotted += 1
            if _positive(t.chosen) and xs[0] <= t.chosen <= xs[-1]:
                ax.axvline(t.chosen, color=color, ls="--", lw=1)
                near = min(pts, key=lambda p: abs(math.log(p[0] / t.chosen)))
                if abs(math.log(near[0] / t.chosen)) < 1e-6:
                    ax.plot([near[0]], [near[1]], marker="D", ms=8, mfc="none", mec=color,
                            mew=1.8)
                marked.append(f"{label}: h = {t.chosen:.3g} ({t.method})")
            else:
                outside.setdefault(t.method, []).append(f"{label} (h = {t.chosen:.2g})")
        notes = []
        if marked:
            notes.append("chosen steps (dashed lines, diamonds): " + "; ".join(marked))
        for method, labels in outside.items():
            why = (": the complex step has no rounding error, so it takes a tiny step"
                   if method == "complex-step" else "")
            notes.append(f"the chosen step ({method}) is off the plotted range for "
                         f"{', '.join(labels)}{why}")
        if flat:
            notes.append(f"every step gives the same estimate for {', '.join(flat)} (error 0, "
                         f"nothing to draw on log axes)")
        if not plotted:
            return FigureSVG(f"Finite differences for {name}", "", "; ".join(notes) + ".")
        _decades(ax.xaxis)
        _decades(ax.yaxis)
        # which error wins where is said under the axis, not inside it: a V's arms can run
        # through any corner of the axes, and text there would cross them
        ax.set_xlabel("finite-difference step h\n← rounding error dominates · truncation "
                      "error dominates →", fontsize=9)
        ax.set_ylabel("|D(h) − reference|")
        ax.set_title(f"Finite-difference error against step: {name}", loc="left")
        if plotted > 1 or len(shown) > 1:
            # beside the axes: inside, it would hide one of the V's arms
            ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
                      frameon=False)
        svg = _svg(fig, key)
    more = f" (first {len(shown)} of {len(traces)} entries)" if len(traces) > len(shown) else ""
    caption = (f"Central differences D(h) of the given point{more}, compared with the "
               f"reference (the exact symbolic value, or without a mirror the final "
               f"finite-difference estimate). Large steps suffer truncation error (falling as "
               f"h²), small ones rounding error (rising as 1/h): typically a V. "
               + ". ".join(n[0].upper() + n[1:] for n in notes) + ".")
    return FigureSVG(f"Finite differences for {name}", svg, caption)


def agreement_figure(report: Any, key: str) -> FigureSVG | None:
    """Per entry of the given point: |tape − reference| (dots) against the tolerance (bars)."""
    from matplotlib.figure import Figure

    entries = [e for e in report.entries if e.point == 0 and e.abs_error is not None
               and e.tolerance is not None and math.isfinite(e.abs_error)][:MAX_POINTS]
    if not entries:
        return None
    positive = [v for e in entries for v in (e.abs_error, e.tolerance) if _positive(v)]
    floor = min(positive) / 30 if positive else 1e-17
    with _style():
        width = min(9.6, max(5.0, 0.35 * len(entries) + 2.5))
        fig = Figure(figsize=(width, 3.6), layout="constrained")
        ax = fig.add_subplot()
        xs = list(range(len(entries)))
        ax.scatter(xs, [e.tolerance if _positive(e.tolerance) else floor for e in entries],
                   marker="_", s=300, linewidths=2, color="#57606a", label="tolerance", zorder=2)
        for status in ("pass", "fail", "inconclusive"):
            pts = [(x, e.abs_error) for x, e in zip(xs, entries) if e.status == status]
            nonzero = [(x, v) for x, v in pts if v > 0]
            zero = [x for x, v in pts if v <= 0]
            if nonzero:
                ax.scatter(*zip(*nonzero), s=28, color=COLORS[status], label=status, zorder=3)
            if zero:
                ax.scatter(zero, [floor] * len(zero), s=36, marker="v", color=COLORS[status],
                           label=f"{status}: exactly equal", zorder=3)
        ax.set_yscale("log")
        _decades(ax.yaxis)
        labels = [e.label for e in entries]
        if len(entries) <= 24:
            ax.set_xticks(xs, labels, rotation=45 if len(entries) > 6 else 0,
                          ha="right" if len(entries) > 6 else "center", fontsize=8)
        else:
            ax.set_xticks([])
            ax.set_xlabel("entries in report order")
        ax.set_ylabel("|tape − reference|")
        ax.set_title("Tape against the reference, per entry", loc="left")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        ax.margins(x=0.5 / max(len(entries), 1) + 0.02)
        svg = _svg(fig, key)
    skipped = sum(1 for e in report.entries if e.point == 0) - len(entries)
    caption = ("Each dot is one derivative at the given point: its distance from the reference "
               "(the exact symbolic value, or finite differences without a mirror); the bar "
               "is the tolerance it must stay under. A triangle on the bottom edge means the "
               "two agree exactly.")
    if skipped > 0:
        caption += (f" {skipped} entr{'y' if skipped == 1 else 'ies'} without a single "
                    f"reference (kinks, non-finite values) or beyond the first {MAX_POINTS} "
                    f"are not shown.")
    return FigureSVG("Tape against reference", svg, caption)


def figures(report: Any) -> tuple[list[FigureSVG], str | None]:
    """Every figure of the report, and why figures were skipped (None if they were not)."""
    missing = matplotlib_missing()
    if missing:
        return [], missing
    out: list[FigureSVG] = []
    agree = agreement_figure(report, "agree")
    out.append(agree or FigureSVG(
        "Tape against reference", "", "no entry at the given point has a single reference to "
        "compare with (a kink, or non-finite values), so there is nothing to plot"))
    names = list(dict.fromkeys(t.input for t in report.fd_traces))
    for k, name in enumerate(names):
        f = fd_figure(report, name, f"fd{k}")
        if f is not None:
            out.append(f)
    return out, None
