"""The result of a check as plain data: what was compared, what agreed, what did not.

Renderers (terminal, JSON, Markdown, HTML) live in :mod:`verigrad.report` and read only
these fields: reading an attribute never runs SymPy or finite differences. The two costly
extras only reports show (closed forms, finite-difference step sweeps) are made by one
explicit step, :meth:`CheckReport.add_details`, which the report writers call.

The report layer sits above the checker (docs/design.md, "Layers"), so this module never
imports it: ``verigrad.report`` fills :data:`RENDERERS` when it is imported, and
``verigrad`` imports it together with the checker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..symbolic.mirror import REPORT_SIZE_CAP

__all__ = ["Entry", "Culprit", "NodeResult", "PointResult", "FDTrace", "CheckReport",
           "PendingDetails", "RENDERERS", "register_renderer", "DETAILS_PENDING",
           "MAX_CLOSED_FORM_INPUTS"]

#: How a report becomes text, by format: ``"text"`` (``str(report)``), ``"json"``, ``"md"``,
#: ``"html"``, and ``"save"`` (writes files). Filled in by :mod:`verigrad.report`.
RENDERERS: dict[str, Callable[..., Any]] = {}

#: closed forms are made for up to this many input entries (a scalar output's gradient)
MAX_CLOSED_FORM_INPUTS = 12

#: what ``derivatives_note`` says before :meth:`CheckReport.add_details` ran
DETAILS_PENDING = ("closed forms are made for reports: call report.add_details() (the report "
                   "writers and `verigrad report` do)")


def register_renderer(fmt: str, render: Callable[..., Any]) -> None:
    """Make ``render`` the renderer of ``fmt`` (called by :mod:`verigrad.report` on import).

    >>> import verigrad as vg
    >>> sorted(RENDERERS)
    ['html', 'json', 'md', 'save', 'text']
    """
    RENDERERS[fmt] = render


def _renderer(fmt: str) -> Callable[..., Any]:
    try:
        return RENDERERS[fmt]
    except KeyError:
        raise RuntimeError(f"no {fmt!r} renderer is registered for CheckReport: import "
                           f"verigrad.report (import verigrad does, with the checker)") from None


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
class PendingDetails:
    """How the checker makes a report's details later (never on attribute access):
    ``closed_forms(max_inputs, max_nodes)`` returns ``(latex by entry, note[, SymPy
    expressions])`` and ``fd_traces()`` the step sweeps. Only
    :meth:`CheckReport.add_details` calls them, once."""

    closed_forms: Callable[[int, int], tuple] | None = None
    fd_traces: Callable[[], list] | None = None


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
    #: LaTeX of each derivative by input entry, and the SymPy expressions behind it (the
    #: HTML report prints them as MathML): made by :meth:`add_details` for small
    #: scalar-output checks, with ``derivatives_note`` saying why when there are none
    derivatives: dict[str, str] = field(default_factory=dict)
    derivatives_note: str = ""
    derivative_expressions: dict[str, Any] = field(default_factory=dict, repr=False,
                                                   compare=False)
    #: each checked entry's FD estimates over a sweep of steps (the V plots): made by
    #: :meth:`add_details` (the sweep re-runs f ~30 times per entry)
    fd_traces: list[FDTrace] = field(default_factory=list)
    #: what :meth:`add_details` will run; None once it ran (or for a report built by hand)
    pending_details: PendingDetails | None = field(default=None, repr=False, compare=False)
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

    #: how many entries the report lists, by status (``nearby``: how many of them are from
    #: nearby points, where only failures are kept), and the one line every format prints
    #: with them; counted once, here (call :meth:`recount` after editing ``entries``)
    counts: dict[str, int] = field(init=False, repr=False, compare=False)
    counts_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.recount()

    def recount(self) -> None:
        """Count the entries by status into :attr:`counts` and :attr:`counts_text`.

        >>> import verigrad as vg
        >>> r = vg.check("w*x + b", x=2.0, w=3.0, b=1.0)
        >>> r.counts
        {'entries': 3, 'pass': 3, 'fail': 0, 'inconclusive': 0, 'nearby': 0}
        >>> r.counts_text
        '3 entries: 3 pass'
        """
        n_fail = sum(e.status == "fail" for e in self.entries)
        n_inc = sum(e.status == "inconclusive" for e in self.entries)
        n = len(self.entries)
        c = {"entries": n, "pass": n - n_fail - n_inc, "fail": n_fail, "inconclusive": n_inc,
             "nearby": sum(e.point != 0 for e in self.entries)}
        text = f"{n} {'entry' if n == 1 else 'entries'}: {c['pass']} pass"
        text += f", {n_fail} fail" if n_fail else ""
        text += f", {n_inc} inconclusive" if n_inc else ""
        text += f" ({c['nearby']} of them at nearby points)" if c["nearby"] else ""
        self.counts, self.counts_text = c, text

    def defer_details(self, closed_forms: Callable[[int, int], tuple] | None,
                      fd_traces: Callable[[], list] | None) -> None:
        """Leave the details to :meth:`add_details` (the checker's hand-over): until then
        ``derivatives`` and ``fd_traces`` are empty and ``derivatives_note`` says why."""
        self.pending_details = PendingDetails(closed_forms, fd_traces)
        self.derivatives_note = DETAILS_PENDING

    def add_details(self, max_inputs: int = MAX_CLOSED_FORM_INPUTS,
                    max_nodes: int = REPORT_SIZE_CAP) -> "CheckReport":
        """Make what only reports show, once: :attr:`derivatives` (closed forms, for a
        scalar output of at most ``max_inputs`` input entries, each derivative at most
        ``max_nodes`` tree nodes) and :attr:`fd_traces` (the FD step sweeps). The report
        writers (``to_json``/``to_markdown``/``to_html``, :meth:`save`, ``verigrad
        report``, the pytest fixture's saved reports) call it; a plain ``vg.check`` does
        not pay for it. Returns the report.

        >>> import verigrad as vg
        >>> r = vg.check("w*x + b", x=2.0, w=3.0, b=1.0, nearby=0)
        >>> r.derivatives, r.fd_traces
        ({}, [])
        >>> r.add_details().derivatives
        {'x': 'w', 'w': 'x', 'b': '1'}
        >>> [t.input for t in r.fd_traces]
        ['x', 'w', 'b']
        """
        pending, self.pending_details = self.pending_details, None
        if pending is None:
            return self
        if pending.closed_forms is not None:
            found = tuple(pending.closed_forms(max_inputs, max_nodes))
            self.derivatives, self.derivatives_note = dict(found[0]), found[1]
            self.derivative_expressions = dict(found[2]) if len(found) > 2 else {}
        if pending.fd_traces is not None:
            self.fd_traces = list(pending.fd_traces())
        return self

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
        return _renderer("text")(self, color=False)

    def __repr__(self) -> str:
        return f"<CheckReport {self.verdict}: {self.expression} ({len(self.entries)} entries)>"

    def to_json(self) -> str:
        """The versioned JSON report (details included: see :meth:`add_details`)."""
        return _renderer("json")(self.add_details())

    def to_markdown(self) -> str:
        """The Markdown report (details included: see :meth:`add_details`)."""
        return _renderer("md")(self.add_details())

    def to_html(self) -> str:
        """The self-contained HTML report (details included: see :meth:`add_details`)."""
        return _renderer("html")(self.add_details())

    def save(self, directory: str, formats: Iterable[str] | str = ("json", "md", "html")
             ) -> list[str]:
        """Write ``report.json``/``report.md``/``report.html`` into ``directory`` (details
        included); returns the paths."""
        return _renderer("save")(self.add_details(), directory, formats)
