"""The result of a check as plain data: what was compared, what agreed, what did not.

Renderers (terminal, JSON, Markdown, HTML) live in :mod:`verigrad.report` and read only
these fields; nothing here computes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "Culprit", "NodeResult", "PointResult", "FDTrace", "CheckReport"]


@dataclass
class Entry:
    """One derivative d output[o] / d input[index], seen by the three opinions."""

    input: str
    index: tuple
    output: tuple | None          # None for a scalar output
    tape: float
    symbolic: float | None        # exact (mirror, high precision), None without a mirror
    symbolic_error: float | None  # agreement of two precisions
    replayed: float | None        # the mirror's chain rule at the tape's own forward values
    finite_diff: float | None
    fd_error: float | None
    fd_method: str
    abs_error: float | None       # |tape - reference|
    rel_error: float | None
    tolerance: float | None
    status: str                   # "pass" | "fail" | "inconclusive" | "precision" (a warning)
    reason: str = ""              # kink, singularity, nan, fd-unreliable, ill-conditioned, ...
    left: float | None = None     # one-sided derivatives at a kink
    right: float | None = None
    point: int = 0                # 0: the given point; k: nearby point k
    symbolic_digits: str | None = None  # the exact value to 25 significant digits

    @property
    def reference(self) -> float | None:
        return self.symbolic if self.symbolic is not None else self.finite_diff

    @property
    def label(self) -> str:
        idx = f"[{', '.join(map(str, self.index))}]" if self.index else ""
        out = f"d out[{', '.join(map(str, self.output))}] / " if self.output else ""
        return f"{out}{self.input}{idx}"


@dataclass
class Culprit:
    """The first node (in backward order) whose backward disagrees with its reference."""

    grad_fn: str
    input_index: int
    input_name: str
    path: str                     # "SumBackward0 <- MulBackward0 <- SoftplusBackward"
    element: tuple
    expected: float
    got: float
    method: str                   # "symbolic" or "finite-differences"
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class NodeResult:
    """The local check of one node: its backward against its own mirror (or FD)."""

    grad_fn: str
    path: str
    method: str                   # "symbolic", "finite-differences", "skipped"
    ok: bool
    max_abs_error: float = 0.0
    tolerance: float = 0.0
    note: str = ""


@dataclass
class PointResult:
    """One evaluation point: the given one (index 0) or a seeded nearby one."""

    index: int
    seed: int | None
    verdict: str
    summary: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class FDTrace:
    """Finite-difference estimates against step size for one entry (the V-shaped plot)."""

    input: str
    index: tuple
    steps: list[float]
    errors: list[float]           # |estimate(step) - exact value (or final FD estimate)|
    chosen: float
    method: str


@dataclass
class CheckReport:
    """What ``vg.check`` found. ``str(report)`` is a short summary a person can act on.

    >>> import verigrad as vg
    >>> r = vg.check("w*x + b", x=2.0, w=3.0, b=1.0)
    >>> r.verdict, [e.tape for e in r.entries]
    ('pass', [3.0, 2.0, 1.0])
    """

    verdict: str
    expression: str
    inputs: dict[str, dict[str, Any]]
    entries: list[Entry]
    culprit: Culprit | None = None
    culprits: list[Culprit] = field(default_factory=list)
    nodes: list[NodeResult] = field(default_factory=list)
    kinks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: precision warnings: a right formula that loses digits where it cancels (not a failure)
    warnings: list[str] = field(default_factory=list)
    contract: list[str] = field(default_factory=list)     # violations found
    points: list[PointResult] = field(default_factory=list)
    # the finite-difference step sweeps (V plots): a list, or a function making it on first
    # use (only reports plot them; the sweep re-runs f ~30 times per entry)
    fd_traces_source: Any = field(default_factory=list, repr=False, compare=False)
    # closed forms are printed on request (reports), not on every check: see ``derivatives``
    closed_form: Any = field(default=None, repr=False, compare=False)
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: the command (or Python snippet) that reruns this check, set by whoever knows the
    #: target: the CLI (``file.py:function``), the pytest fixture; None: derived from an
    #: expression, or unknown
    reproduce: str | None = field(default=None, compare=False)
    #: True when the check was of an expression string (its text then reruns it); a
    #: callable's name never does, even when it reads like an expression
    from_expression: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """How many entries the report lists, by status: the one count every format shows
        (``nearby``: how many of them are from nearby points, where only failures are kept).

        >>> import verigrad as vg
        >>> vg.check("w*x + b", x=2.0, w=3.0, b=1.0).counts
        {'entries': 3, 'pass': 3, 'fail': 0, 'inconclusive': 0, 'nearby': 0}
        """
        n_fail = sum(e.status == "fail" for e in self.entries)
        n_inc = sum(e.status == "inconclusive" for e in self.entries)
        n = len(self.entries)
        return {"entries": n, "pass": n - n_fail - n_inc, "fail": n_fail,
                "inconclusive": n_inc, "nearby": sum(e.point != 0 for e in self.entries)}

    @property
    def counts_text(self) -> str:
        """:attr:`counts` as the one line every format prints.

        >>> import verigrad as vg
        >>> vg.check("w*x + b", x=2.0, w=3.0, b=1.0).counts_text
        '3 entries: 3 pass'
        """
        c = self.counts
        text = f"{c['entries']} {'entry' if c['entries'] == 1 else 'entries'}: {c['pass']} pass"
        text += f", {c['fail']} fail" if c["fail"] else ""
        text += f", {c['inconclusive']} inconclusive" if c["inconclusive"] else ""
        text += f" ({c['nearby']} of them at nearby points)" if c["nearby"] else ""
        return text

    @property
    def derivatives(self) -> dict[str, str]:
        """LaTeX of each derivative by input entry (small scalar-output checks only)."""
        return self._closed_forms()[0]

    @property
    def derivatives_note(self) -> str:
        """Why ``derivatives`` is empty, when it is."""
        return self._closed_forms()[1]

    @property
    def derivative_expressions(self) -> dict[str, Any]:
        """The SymPy expressions behind :attr:`derivatives` (the HTML report prints them as
        MathML); empty when ``derivatives`` is."""
        return self._closed_forms()[2]

    def _closed_forms(self) -> tuple[dict[str, str], str, dict[str, Any]]:
        if callable(self.closed_form):
            self.closed_form = self.closed_form()  # computed once, on first use
        found = tuple(self.closed_form) if self.closed_form is not None else ({}, "")
        return (found + ({},))[:3] if len(found) < 3 else found[:3]

    @property
    def fd_traces(self) -> list[FDTrace]:
        """Each checked entry's FD estimates over a sweep of steps (computed once, on use)."""
        if callable(self.fd_traces_source):
            self.fd_traces_source = self.fd_traces_source()
        return self.fd_traces_source

    @property
    def ok(self) -> bool:
        """True unless the verdict is ``fail`` (inconclusive is not a failure)."""
        return self.verdict != "fail"

    @property
    def reasons(self) -> list[str]:
        return sorted({e.reason for e in self.entries if e.status == "inconclusive" and e.reason})

    def worst(self, n: int = 5) -> list[Entry]:
        """The entries most worth looking at: failures, then inconclusive, then the largest
        relative errors (to 3 significant digits), ties in the entries' order."""
        rank = {"fail": 0, "inconclusive": 1, "precision": 2, "pass": 3}

        def key(item: tuple[int, Entry]) -> tuple:
            k, e = item
            r = e.rel_error
            # no error: nothing to rank; an infinite or nan one is the worst there is
            r = 0.0 if r is None else (float(f"{r:.3g}") if math.isfinite(r) else math.inf)
            # errors equal to the 3 digits a table shows (every entry off by the same factor,
            # up to rounding) keep the entries' order, rather than an order set by rounding
            return (rank.get(e.status, 3), e.point != 0, -r, k)

        return [e for _, e in sorted(enumerate(self.entries), key=key)[:n]]

    def shown_entries(self, n: int) -> list[Entry]:
        """The ``n`` entries a table shows: :meth:`worst`, always including the culprit's
        element (the entry of the culprit's input and element, when there is one), so the
        number the culprit names can be read next to the others."""
        shown = self.worst(n)
        c = self.culprit
        if c is None or n <= 0 or len(shown) == len(self.entries):
            return shown

        def of_culprit(e: Entry) -> bool:
            return e.input == c.input_name and tuple(e.index) == tuple(c.element)

        if any(of_culprit(e) for e in shown):
            return shown
        mine = [e for e in self.worst(len(self.entries)) if of_culprit(e)]
        return shown[:n - 1] + mine[:1] if mine else shown

    def __str__(self) -> str:
        from ..report.terminal import render_text

        return render_text(self, color=False)

    def __repr__(self) -> str:
        return f"<CheckReport {self.verdict}: {self.expression} ({len(self.entries)} entries)>"

    def to_json(self) -> str:
        from ..report.json_report import render_json

        return render_json(self)

    def to_markdown(self) -> str:
        from ..report.markdown import render_markdown

        return render_markdown(self)

    def to_html(self) -> str:
        from ..report.html import render_html

        return render_html(self)

    def save(self, directory: str, formats: tuple[str, ...] = ("json", "md", "html")) -> list[str]:
        """Write ``report.json``/``report.md``/``report.html`` into ``directory``; returns
        the paths."""
        from ..report import save

        return save(self, directory, formats)
