"""``vg.check``: the three opinions compared, entry by entry and node by node."""
from __future__ import annotations

import math
import platform
import warnings
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import mpmath
import numpy as np

from ..autograd.engine import grad as autograd_grad
from ..autograd.grad_mode import no_grad
from ..errors import VerigradError
from ..symbolic.exact import EPS64, SAFETY, ExactGraph, digits as mp_digits
from ..symbolic.graph import GraphView
from ..symbolic.kinks import find_kinks, one_sided_derivatives
from ..symbolic.local import MirrorError
from ..tensor import Tensor, tensor
from . import finite_diff as fd
from .analytic import non_holomorphic
from .compare import ROUNDING_FACTOR, distinct, unit_roundoff
from .local import FD_SAFETY, LocalFinding, check_nodes, graph_magnitude, restricted
from .options import validate_options
from .precision import mpmath_isolated
from .problem import CheckInputError, Problem, make_problem, option_handler
from .second_order import extend_report
from .report import CheckReport, Culprit, Entry, FDTrace, NodeResult, PointResult

__all__ = ["check", "CheckInputError", "DEFAULTS"]

DEFAULTS = {
    "seed": 0,
    "nearby": 3,           # seeded random points near the given one
    "max_rows": 16,        # output entries checked one by one; beyond, seeded random cotangents
    "fd_full": 200,        # up to this many input entries, FD checks every one
    "fd_sample": 32,       # beyond, a seeded sample of entries
    "dps": 30,
    "radius": 1e-6,        # kinks closer than this (relative) are reported
}


#: (wanted(fn, inputs), dispatch(check's locals())) pairs: front ends for code the checker
#: does not run itself. verigrad.torch registers one (this layer cannot import it)
FRONTENDS: list[tuple[Callable[[Any, Sequence[Any]], bool], Callable[[dict], Any]]] = []


def register_frontend(wanted: Callable[[Any, Sequence[Any]], bool],
                      dispatch: Callable[[dict], Any]) -> None:
    """Let ``check`` hand ``fn`` to ``dispatch(check's arguments)`` when ``wanted(fn, inputs)``
    (registering the same pair twice is a no-op).

    >>> from verigrad.checker.core import FRONTENDS, register_frontend
    >>> register_frontend(lambda fn, inputs: fn == "never", lambda scope: None)
    >>> FRONTENDS.pop()[0]("never", ())
    True
    """
    if (wanted, dispatch) not in FRONTENDS:
        FRONTENDS.append((wanted, dispatch))


@dataclass
class _Point:
    """Everything found at one evaluation point."""

    entries: list[Entry] = field(default_factory=list)
    findings: list[LocalFinding] = field(default_factory=list)
    nearby_findings: list[LocalFinding] = field(default_factory=list)  # wrong only elsewhere
    notes: list[str] = field(default_factory=list)
    contract: list[str] = field(default_factory=list)
    kinks: list[str] = field(default_factory=list)
    trace_fn: Any = None     # makes the reports' FD step sweeps on first use
    warnings: list[str] = field(default_factory=list)
    symbolic: bool = False
    nodes: int = 0              # nodes in the recorded graph
    claimed_rounding: float = 0.0  # relative rounding allowed for a claimed (user) derivative
    claimed_allow: Any = None      # per entry: a claimed jac's own rounding (_claimed_allowance)
    # flat input j -> (left, right) one-sided FD estimates where FD found a kink (no mirror)
    numeric_kinks: dict = field(default_factory=dict)
    rows: Any = None
    fd_steps: dict = field(default_factory=dict)   # flat input j -> real FD step
    fd_fn: Any = None                              # (f, x) the FD ran on
    magnitude: float = 0.0                         # largest value the forward is made of
    fx: Any = None             # f(x) flat in float64, from the determinism check (FD reuses it)
    forward_error: Any = None                      # |float forward - exact|, per output entry


@mpmath_isolated  # mpmath's precision is process-wide: see checker/precision.py
def check(fn: Any, *inputs: Any, seed: int = 0, nearby: int = 3, rtol: float | None = None,
          atol: float | None = None, eps: float | None = None, use_symbolic: bool = True,
          names: Sequence[str] | None = None, max_rows: int = 16,
          progress: Callable[[str, float], None] | None = None,
          values: dict[str, Any] | None = None, order: int = 1, **named: Any) -> CheckReport:
    """Check the gradients of ``fn`` at ``inputs`` with three opinions and return a report.

    ``fn`` is a callable on tensors (a ``Function.apply`` too) with its inputs given
    positionally, or an expression string with its inputs given by name. Numbers, lists and
    arrays are differentiated; tensors keep their ``requires_grad``. Everything runs in
    float64 (a float32 input is also run in float32, and its rounding reported as a note).

    ``rtol``/``atol`` replace the derived tolerances (tape vs reference: ``atol + rtol*|ref|``);
    ``eps`` fixes the finite-difference step; ``seed`` fixes every random choice.
    ``progress(stage, fraction)`` is called as the check advances (for progress bars).
    An expression's inputs may also come as ``values={"seed": 1.0}``, for variables that are
    named like an option. A function with scipy's ``jac=`` (and ``hess=``), as in
    ``vg.check(rosen, x0, jac=rosen_der)``, is checked as ``vg.check_grad(fun, jac, x0)``.

    >>> import verigrad as vg
    >>> report = vg.check("sin(x) * exp(w*x) + b", x=0.5, w=-1.0, b=2.0)
    >>> report.verdict, report.ok
    ('pass', True)
    """
    validate_options(**{k: v for k, v in locals().items() if k not in ("fn", "inputs")})
    for wanted, dispatch in FRONTENDS:  # torch code goes to verigrad.torch (registered there)
        if wanted(fn, inputs):
            return dispatch(locals())
    handler = option_handler(fn, named)  # jac=/hess=: scipy's convention (scipy_check's)
    if handler is not None:
        return handler(locals())
    t0 = time.perf_counter()
    problem = make_problem(fn, inputs, {**named, **(values or {})}, names)
    opts = dict(DEFAULTS, seed=seed, nearby=nearby, rtol=rtol, atol=atol, eps=eps,
                use_symbolic=use_symbolic, max_rows=max_rows)
    tick = progress or (lambda stage, fraction: None)
    with np.errstate(all="ignore"):
        tick("the given point", 0.0)
        main = _analyze(problem, None, opts, point=0, full=True)
        if _verdict(main) != "pass" and all(f.ok for f in main.findings) and any(
                f.sampled for f in main.findings):
            # a sample of a deep graph's built-in nodes decides a pass only (check_nodes)
            main = _analyze(problem, None, dict(opts, sample_nodes=False), point=0, full=True)
        points = [PointResult(0, None, _verdict(main), _summary(main),
                              _values(problem, None))]
        extra_entries: list[Entry] = []
        spread = _nearby_scale(problem) if nearby else None
        # nodes the given point found wrong are named already: not checked again nearby
        named = frozenset(f.node.name() for f in main.findings if not f.ok)
        for k in range(nearby):
            tick(f"nearby point {k + 1} of {nearby}", (k + 1) / (nearby + 1))
            s = seed + 1 + k
            arrays = _nearby(problem, s, spread)
            if arrays is None:
                points.append(PointResult(k + 1, s, "skipped", "no finite nearby point found"))
                continue
            try:
                res = _analyze(problem, arrays, dict(opts, max_rows=4, symbolic_ok=(
                    main.symbolic and main.nodes <= NEARBY_SYMBOLIC_NODES), named=named),
                    point=k + 1, full=False)
            except CheckInputError as e:
                points.append(PointResult(k + 1, s, "skipped", str(e)))
                continue
            v = _verdict(res)
            points.append(PointResult(k + 1, s, v, _summary(res, named),
                                      _values(problem, arrays)))
            main.warnings += [f"{f.precision} (nearby point {k + 1})" for f in res.findings
                              if f.precision]
            if v == "fail":
                extra_entries += [e for e in res.entries if e.status == "fail"]
                main.nearby_findings += [f for f in res.findings
                                         if not f.ok and f.node.name() not in named]
                main.contract += res.contract
        _float32_note(problem, main, seed)
        points[0].verdict, points[0].summary = _verdict(main), _summary(main)
    tick("done", 1.0)
    verdict = _combine(main, points)
    culprits = _culprits(main.findings + main.nearby_findings)
    if verdict == "fail" and not culprits and any(
            e.status == "fail" and e.reason != "graph broken" for e in main.entries):
        by_fd = any(f.method == "finite-differences" for f in main.findings)
        main.notes.append("every op's backward matches its own reference, yet the composed "
                          "gradient does not: the graph's wiring (not one op) is at fault, or "
                          "the function is not its graph (a detach() or a .numpy() round trip "
                          "cuts the gradient)" + (
                              ", or a node checked by finite differences of its forward "
                              "hides one wrong entry of a large input in its projections' "
                              "rounding allowance (the entries above say where)"
                              if by_fd else ""))
    if not main.symbolic:
        main.notes.append("no complete symbolic mirror for this graph: finite differences are "
                          "the reference")
    report = CheckReport(
        verdict=verdict, expression=problem.expression,
        inputs={n: {"shape": list(np.shape(v)), "dtype": str(d), "value": np.asarray(v).tolist()}
                for n, v, d in zip(problem.diff_names, [problem.values[i] for i in
                                                          problem.diff_index],
                                   [problem.user_dtypes[i] for i in problem.diff_index])},
        entries=main.entries + extra_entries, culprit=culprits[0] if culprits else None,
        culprits=culprits,
        nodes=[NodeResult(f.node.name(), f.path, f.method, f.ok, f.max_abs_error, f.tolerance,
                          f.note) for f in main.findings],
        kinks=main.kinks, notes=main.notes, contract=sorted(set(main.contract)), points=points,
        warnings=[f.precision for f in main.findings if f.precision] + main.warnings,
        settings=dict(opts),
        versions=_versions(), seconds=time.perf_counter() - t0,
        from_expression=problem.expr is not None)
    scalar = bool(report.entries) and report.entries[0].output is None
    # closed forms and FD step sweeps only reports show: made by report.add_details()
    report.defer_details(lambda max_inputs, max_nodes: _closed_form(problem, scalar, max_inputs,
                                                                    max_nodes), main.trace_fn)
    report.seconds = time.perf_counter() - t0
    if order != 1:  # the double backward of custom Functions: see second_order.py
        extend_report(report, problem, order, seed, use_symbolic)
    return report


# --- one point -----------------------------------------------------------------------------

def _analyze(problem: Problem, arrays: list[np.ndarray] | None, opts: dict, point: int,
             full: bool) -> _Point:
    res = _Point()
    args = problem.leaves(arrays)
    leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
    outs = problem.run(args)
    sizes = [o.numel() for o in outs]
    m = sum(sizes)
    if m == 0:
        raise CheckInputError(f"{problem.expression} returned only empty outputs (shapes "
                              f"{[list(o.shape) for o in outs]}): there is no derivative to "
                              f"check")
    if full:
        res.contract += _determinism(problem, arrays, outs, res)
    rows, labels = _rows(outs, m, opts["max_rows"], opts["seed"] + 7919 * point)
    res.rows = rows
    if full and labels and labels[0] is not None and labels[0][0] == "v":
        res.notes.append(f"the output has {m} entries: each entry 'd out[v, k] / ...' is "
                         f"v_k . J for a seeded random cotangent v_k (a projection on a random "
                         f"direction, seed {opts['seed']}); every node's backward is checked "
                         f"on its own, and a wrong one is named with its element")
    # tape
    tape_rows, tape_error = _tape_rows(outs, leaves, rows, sizes) if problem.claimed is None \
        else (problem.claimed(args, rows), "")
    if problem.claimed is not None and tape_rows.dtype.kind == "f" and tape_rows.dtype.itemsize < 8:
        # a jac returned in float32 is judged at float32's precision, like a Function's
        res.claimed_rounding = ROUNDING_FACTOR * unit_roundoff(tape_rows.dtype)
        tape_rows = tape_rows.astype(np.float64)
    if tape_error:
        res.contract.append(tape_error)
    view = GraphView.of(outs)
    # nearby points re-check the user's own Functions; built-in ops are covered there by the
    # whole-graph comparison (tape vs the mirror's chain, or FD)
    override = None if opts["rtol"] is None and opts["atol"] is None else (opts["rtol"],
                                                                           opts["atol"])
    res.findings = check_nodes(view, opts["seed"] + point, use_mirror=opts["use_symbolic"],
                               functions_only=not full, override=override,
                               skip=opts.get("named", frozenset()),
                               sample=opts.get("sample_nodes", True))
    res.contract += [f.contract for f in res.findings if f.contract]
    # symbolic: exact values, and the chain at the tape's recorded values with bounds
    sym = None
    mirrors = all(f.method == "symbolic" for f in res.findings) and opts.get("symbolic_ok", full)
    # a nearby point reports only its verdict and its failing entries: its bounds are first
    # made without the probes of vjp_with_bound (a lower bound, see ExactGraph.gradient),
    # and made in full only if some entry does not pass within them
    screen = not full and override is None
    if opts["use_symbolic"] and mirrors:
        try:
            sym = _symbolic_rows(outs, leaves, rows, sizes, opts["dps"], with_exact=full, view=view,
                                 node_eps=_node_eps(res.findings),
                                 bounds="lower" if screen else True)
        except (MirrorError, ValueError) as e:
            res.notes.append(f"symbolic reference unavailable: {e}")
    elif opts["use_symbolic"] and any(f.method != "symbolic" for f in res.findings):
        why = next(f for f in res.findings if f.method != "symbolic")
        res.notes.append(f"symbolic reference unavailable for the whole graph because of "
                         f"{why.node.name()}: {why.note or why.method}")
    res.symbolic = sym is not None
    res.nodes = len(view.nodes)
    # finite differences
    fd_rows, fd_errs, fd_meth, fd_checked = _fd(problem, arrays, rows, opts, sym, full, res,
                                                view)
    if sym is None and fd_rows is not None:
        # FD is the reference: allow for the tape's own rounding (a 1000-term sum in a
        # matrix-vector backward), measured the way _noise measures f's
        fd_errs = fd_errs + FD_SAFETY * _tape_noise(problem, arrays, rows, sizes, opts["seed"],
                                                    tape_rows)
    if problem.claimed is not None and sym is not None:
        res.claimed_allow = _claimed_allowance(problem, arrays, rows, sizes, opts["seed"],
                                               tape_rows, sym)
    # kinks at the point
    kink_cols: dict[tuple[int, int], tuple[float, float]] = {}
    singular = False
    if sym is not None:
        kink_cols, singular = _kinks(outs, leaves, rows, sizes, opts, res, full, sym.graphs)
    if fd_rows is not None:
        res.magnitude = graph_magnitude(view)
    if sym is not None and fd_rows is not None:
        res.forward_error = _forward_error(outs, sym)
    outside = _outside_domain(outs, rows, singular, res)
    notes = list(res.notes)
    _entries(problem, res, labels, tape_rows, sym, fd_rows, fd_errs, fd_meth, fd_checked,
             kink_cols, singular, opts, point, outside)
    if sym is not None and screen and any(e.status in ("fail", "precision")
                                          for e in res.entries):
        # not within the lower bound: the entries again, against the full bound
        res.entries, res.notes = [], notes
        sym = _symbolic_rows(outs, leaves, rows, sizes, opts["dps"], with_exact=full, view=view,
                             node_eps=_node_eps(res.findings), graphs=sym.graphs)
        _entries(problem, res, labels, tape_rows, sym, fd_rows, fd_errs, fd_meth, fd_checked,
                 kink_cols, singular, opts, point, outside)
    if sym is not None:
        _broken_graph(res)
    foreign = sorted({n.foreign for n in view.nodes if n.foreign})
    if foreign and sym is None and override is None:
        _foreign_accuracy(res, foreign)
    return res


#: how closely another library's derivative is held to finite differences when the graph
#: has no mirror: sqrt(eps), what differences of a function can promise at all. torch's
#: trigamma (digamma's derivative) is good to ~5e-10 relative, not to rounding: a correct
#: library is not a wrong gradient
FOREIGN_RTOL = float(np.sqrt(EPS64))


def _foreign_accuracy(res: _Point, foreign: list[str]) -> None:
    """Entries that fail only by a foreign derivative's accuracy become precision warnings
    (when no node of the user's own is wrong: those are still named)."""
    if any(not f.ok for f in res.findings):
        return
    close = [e for e in res.entries if e.status == "fail" and e.reason == "wrong"
             and e.rel_error is not None and e.rel_error <= FOREIGN_RTOL]
    if not close:
        return
    for e in close:
        e.status, e.reason = "precision", "foreign accuracy"
    worst = max(e.rel_error for e in close)
    res.warnings.append(
        f"{len(close)} entr{'y' if len(close) == 1 else 'ies'} differ from finite differences "
        f"by up to {worst:.2g} (relative) through {', '.join(foreign)}: within the accuracy "
        f"of another library's derivative (below sqrt(eps) = {FOREIGN_RTOL:.2g}), not a "
        f"wrong gradient")


def _rows(outs: list[Tensor], m: int, max_rows: int, seed: int
          ) -> tuple[np.ndarray, list[tuple | None]]:
    """Cotangents for the output: each output entry if few, else seeded random ones."""
    if m == 1:
        return np.ones((1, 1)), [None]
    if m <= max_rows:
        labels = []
        for k, o in enumerate(outs):
            for idx in np.ndindex(o.shape):
                labels.append(((k,) if len(outs) > 1 else ()) + tuple(int(i) for i in idx))
        return np.eye(m), labels
    rng = np.random.default_rng(seed)
    n = min(max_rows, 4)
    return rng.standard_normal((n, m)), [("v", r) for r in range(n)]


def _split_row(row: np.ndarray, sizes: list[int], outs: list[Tensor]) -> list[np.ndarray]:
    if len(outs) == 1:
        return [row.reshape(outs[0].shape)]
    bounds = np.cumsum([0] + sizes)
    return [row[bounds[k]:bounds[k + 1]].reshape(o.shape) for k, o in enumerate(outs)]


def _tape_rows(outs: list[Tensor], leaves: list[Tensor], rows: np.ndarray, sizes: list[int]
               ) -> tuple[np.ndarray, str]:
    n = sum(t.numel() for t in leaves)
    result = np.zeros((rows.shape[0], n))
    live = [o for o in outs if o.requires_grad]
    if not live:
        return result, ""
    for r, row in enumerate(rows):
        cts = _split_row(row, sizes, outs)
        pairs = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
        try:
            grads = autograd_grad([o for o, _ in pairs], leaves,
                                  [tensor(c, dtype=o.dtype) for o, c in pairs],
                                  retain_graph=True, allow_unused=True)
        except VerigradError as e:
            return result, str(e)
        result[r] = np.concatenate([
            (np.asarray(g._data, dtype=float) if g is not None else np.zeros(t.shape)).reshape(-1)
            for g, t in zip(grads, leaves)])
    return result, ""


@dataclass
class _Sym:
    exact: np.ndarray
    exact_digits: list[list[str]]    # 25 significant digits of each exact entry
    exact_err: np.ndarray
    replayed: np.ndarray
    bound: np.ndarray
    graphs: list[ExactGraph]
    overflow: bool = False          # high-precision values beyond float64 (exact.py)


def _node_eps(findings: list[LocalFinding]) -> dict:
    """Each node's rounding allowance for the chained bound: the same model as its local
    check (the precision it works in). Measured lost digits widen entries in ``_entries``."""
    return {f.node: ROUNDING_FACTOR * unit_roundoff(f.dtype) for f in findings}


def _symbolic_rows(outs: list[Tensor], leaves: list[Tensor], rows: np.ndarray,
                   sizes: list[int], dps: int, with_exact: bool = True,
                   node_eps: dict | None = None, view: GraphView | None = None,
                   bounds: bool | str = True, graphs: list | None = None) -> _Sym:
    """Exact gradients (verified at two precisions) and the mirror's chain at the tape's
    recorded values with rounding bounds (``bounds="lower"``: without the measured input
    sensitivity, see ``ExactGraph.gradient``). Nearby points skip the exact values: the
    recorded-value chain decides their verdict alone. ``graphs``: the live graphs of an
    earlier call at this point, whose evaluations are kept."""
    n = sum(t.numel() for t in leaves)
    shape = (rows.shape[0], n)
    exact, err, rep, bnd = (np.zeros(shape) for _ in range(4))
    exact_mp = np.full(shape, mpmath.mpf(0), dtype=object)
    if graphs is not None:
        live = iter(graphs)
        graphs = [next(live) if o.requires_grad else None for o in outs]
    else:
        # one output: the point's view is its graph's view (no second walk and replay)
        graphs = [ExactGraph(o, dps, view=view if len(outs) == 1 else None) if o.requires_grad
                  else None for o in outs]
    for g in graphs:
        if g is not None:
            g.node_eps = node_eps or {}
    for r, row in enumerate(rows):
        for g, c in zip(graphs, _split_row(row, sizes, outs)):
            if g is None or not np.any(c):
                continue
            rp, bd = g.gradient(c, recorded=True, bounds=bounds)
            replayed = _flat(rp, leaves)  # an input this output does not reach: zeros
            rep[r] += replayed
            bnd[r] += _flat(bd, leaves)
            if not with_exact:
                exact[r] += replayed
                continue
            ex, er = g.gradient_verified(c)
            exact[r] += _flat(ex, leaves)
            err[r] += _flat(er, leaves)
            with mpmath.workdps(g.dps + 20):
                exact_mp[r] = exact_mp[r] + np.concatenate(
                    [np.asarray(g.last_mp[t], dtype=object).reshape(-1) if t in g.last_mp
                     else np.full(t.numel(), mpmath.mpf(0), dtype=object) for t in leaves])
    digits = [[mp_digits(v, 25) if with_exact else None for v in row] for row in exact_mp]
    live = [g for g in graphs if g is not None]
    return _Sym(exact, digits, err, rep, bnd, live, any(g.overflow for g in live))


def _flat(d: dict, leaves: list[Tensor]) -> np.ndarray:
    return np.concatenate([np.asarray(d.get(t, np.zeros(t.shape)), dtype=float).reshape(-1)
                           for t in leaves])


#: without a mirror, the FD sample of a large input is cut so that (entries x partials) stays
#: below this (32 partials up to 1e5 entries), down to 8 (2 at nearby points)
FD_COST = 3_200_000

#: graphs with more ops than this get no FD step sweep (it re-runs f ~66 times for the plot)
SWEEP_NODES = 2000


def _fd(problem: Problem, arrays: list[np.ndarray] | None, rows: np.ndarray, opts: dict,
        sym: "_Sym | None", full: bool, res: _Point, view: GraphView) -> tuple:
    """The FD witness: every entry for up to ``fd_full`` inputs, else a seeded sample (the
    choice depends on sizes only, so a report is reproducible). Nearby points with a
    mirror need no FD at all."""
    x = np.concatenate([a.reshape(-1) for a in arrays]) if arrays is not None \
        else problem.flat_values()
    n = x.size
    if sym is not None and not full:
        return None, None, None, np.zeros(n, bool)
    if full and n <= opts["fd_full"]:
        cols = list(range(n))
    else:
        seed = opts["seed"] + 17
        # each partial evaluates f ~8 times on all n entries: beyond FD_COST entries the
        # sample shrinks (to a floor), since projections cover every entry (_group_test)
        k = min(n, opts["fd_sample"] if full else 8,
                max(8 if full else 2, FD_COST // (n if full else 4 * n)))
        cols = sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
        if full:
            res.notes.append(f"finite differences on a seeded sample of {k} of {n} entries "
                             f"(seed {seed}); every node's backward is checked in full, by its "
                             f"mirror or by projections with bisection")
    # the complex step is a costly witness (complex BLAS is ~10x slower): small inputs only
    f_complex = _complex_fn(problem) if len(cols) <= 64 and not non_holomorphic(view) \
        else None
    record = full and n <= 64
    if record and sym is not None and sum(len(g.view.nodes) for g in sym.graphs) > SWEEP_NODES:
        record = False  # the plot's step sweep: ~66 more runs of f, too costly on deep graphs
        res.notes.append(f"finite-difference step sweep (the plot) skipped: more than "
                         f"{SWEEP_NODES} ops; the estimate itself is unchanged")
    f = problem.flat()
    # f(x) as the determinism check computed it (the same function at the same point)
    fx = res.fx if full and res.fx is not None and res.fx.size else None
    ests = fd.partials(f, x, cols, eps=opts["eps"], f_complex=f_complex, fx=fx)
    res.fd_fn = (f, x)
    noise = None   # measured only if a real difference needs it (a complex step does not)
    fd_rows = np.full((rows.shape[0], n), np.nan)
    fd_errs = np.full((rows.shape[0], n), np.inf)
    meth = [""] * n
    checked = np.zeros(n, bool)
    for j, e in zip(cols, ests):
        if noise is None and e.method in _REAL_METHODS:
            noise = _noise(f, x, opts["seed"], base=fx)
        _fd_column(problem, res, j, e, noise, rows, fd_rows, fd_errs, meth, checked,
                   sym is None)
    if record:
        res.trace_fn = lambda: _step_traces(problem, f, x, cols, opts, f_complex, rows, sym)
    return fd_rows, fd_errs, meth, checked


def _step_traces(problem: Problem, f: Any, x: np.ndarray, cols: list[int], opts: dict,
                 f_complex: Any, rows: np.ndarray, sym: "_Sym | None") -> list[FDTrace]:
    """The FD estimates over a sweep of steps, for the reports' V plots (the same estimates
    as the check's: the sweep only records more steps)."""
    traces = []
    with np.errstate(all="ignore"):
        ests = fd.partials(f, x, cols, eps=opts["eps"], f_complex=f_complex,
                           record_ladder=True)
    for j, e in zip(cols, ests):
        if not e.ladder:
            continue
        name, idx = problem.locate(j)
        ref = sym.exact[0, j] if sym is not None else float(rows[0] @ e.value)
        traces.append(FDTrace(name, idx, [float(s) for s, _ in e.ladder],
                              [abs(float(rows[0] @ v) - ref) for _, v in e.ladder],
                              float(e.step), e.method))
    return traces


#: FD methods whose error depends on f's rounding noise (not the complex step's)
_REAL_METHODS = ("central", "forward", "backward")


def _noise(f: Any, x: np.ndarray, seed: int, probes: int = 4,
           base: np.ndarray | None = None) -> np.ndarray:
    """f's rounding noise near ``x`` (:func:`finite_diff.rounding_noise`), seeded."""
    return fd.rounding_noise(f, x, np.random.default_rng(seed + 29), probes, base)


def _tape_noise(problem: Problem, arrays: list[np.ndarray] | None, rows: np.ndarray,
                sizes: list[int], seed: int, base: np.ndarray, probes: int = 2,
                dtype: Any = np.float64) -> np.ndarray:
    """How much the tape's gradient moves when every input moves by one ulp of ``dtype``
    (a point where the function fails is left out)."""
    rng = np.random.default_rng(seed + 31)
    arrays = arrays if arrays is not None else [problem.values[i] for i in problem.diff_index]
    worst = np.zeros_like(base)
    for _ in range(probes):
        moved = [np.nextafter(np.asarray(a, dtype=dtype), np.where(
            rng.random(np.shape(a)) < 0.5, -np.inf, np.inf).astype(dtype)) for a in arrays]
        args = problem.leaves(moved, dtype=dtype)
        leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
        try:
            g, err = _tape_rows(problem.run(args), leaves, rows, sizes) \
                if problem.claimed is None else (problem.claimed(args, rows), "")
        except (CheckInputError, VerigradError):
            continue
        if not err:
            worst = np.fmax(worst, np.abs(g - base))
    return np.nan_to_num(worst, nan=0.0, posinf=0.0)


def _claimed_allowance(problem: Problem, arrays: list[np.ndarray] | None, rows: np.ndarray,
                       sizes: list[int], seed: int, claimed: np.ndarray, sym: "_Sym"
                       ) -> np.ndarray:
    """A hand-written jac rounds in code the tape never sees: allow what it moves when the
    inputs move by one ulp (2*(x - mean) at an offset of 1e4), and rounding against the
    row's largest entry (0.5*(1 + tanh(x/2)) is 0 at x = -40, where sigmoid is 4e-18)."""
    noise = _tape_noise(problem, arrays, rows, sizes, seed, claimed)
    scale = np.max(np.abs(np.nan_to_num(sym.replayed, nan=0.0, posinf=0.0, neginf=0.0)),
                   axis=1, keepdims=True)
    return FD_SAFETY * noise + ROUNDING_FACTOR * EPS64 * scale


def _complex_fn(problem: Problem) -> Any:
    """The function on complex inputs, for the complex step (the FD module keeps it only
    where it agrees with real differences: abs or relu are not holomorphic)."""

    def fc(z: np.ndarray) -> np.ndarray:
        it = iter(problem.split(z))
        args = [tensor(next(it), dtype="complex128") if kind == "diff" else v
                for kind, v in zip(problem.kinds, problem.values)]
        with no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # user code casting complex to real, and the like
            outs = problem.run(args)
        return np.concatenate([o._data.reshape(-1) for o in outs])

    return fc


def _kinks(outs: list[Tensor], leaves: list[Tensor], rows: np.ndarray, sizes: list[int],
           opts: dict, res: _Point, full: bool, graphs: list | None = None
           ) -> tuple[dict, bool]:
    cols: dict[tuple[int, int], tuple[float, float]] = {}
    singular = False
    graphs = [g.at_dps(opts["dps"]) for g in graphs] if graphs else \
        [ExactGraph(o, opts["dps"]) for o in outs if o.requires_grad]
    at_point = []
    for g in graphs:
        for k in find_kinks(g, radius=opts["radius"]):
            res.kinks.append(k.describe() + f" (path {k.path})")
            if k.at_point:
                at_point.append(k)
                singular |= k.kind == "singularity"
    if not at_point or not full:
        return cols, singular
    # which entries does a kink at the point affect? those whose one-sided derivatives differ
    offsets = np.cumsum([0] + [t.numel() for t in leaves])
    for r, row in enumerate(rows):
        if rows.shape[0] > 1 and len(graphs) != 1:
            break
        graph = graphs[0]
        comp = None if outs[0].numel() == 1 else row
        for li, t in enumerate(leaves):
            for idx in np.ndindex(t.shape):
                j = offsets[li] + int(np.ravel_multi_index(idx, t.shape)) if t.shape else \
                    offsets[li]
                left, right = _one_sided(graph, t, idx, comp)
                if not (math.isfinite(left) and math.isfinite(right)) or \
                        abs(left - right) > 1e-9 * (abs(left) + abs(right) + 1e-300):
                    cols[(r, int(j))] = (left, right)
    return cols, singular


def _one_sided(graph: ExactGraph, leaf: Tensor, idx: tuple, comp: np.ndarray | None
               ) -> tuple[float, float]:
    if comp is None:
        return one_sided_derivatives(graph, leaf, idx)
    # a vector output: the kink of the component picked by this row
    scal = _Component(graph, comp)
    return one_sided_derivatives(scal, leaf, idx)


class _Component:
    """A scalar view ``row . output`` of a vector-valued exact graph."""

    def __init__(self, graph: ExactGraph, row: np.ndarray) -> None:
        self.graph, self.row, self.dps = graph, row, graph.dps

    def value(self, leaf_values: Any = None) -> np.ndarray:
        v = self.graph.value(leaf_values)
        with mpmath.workdps(self.dps):
            total = mpmath.mpf(0)
            for c, x in zip(self.row.reshape(-1), v.reshape(-1)):
                if c:
                    total += mpmath.mpf(float(c)) * x
        out = np.empty((), dtype=object)
        out[()] = total
        return out


def _entries(problem: Problem, res: _Point, labels: list, tape: np.ndarray, sym: _Sym | None,
             fd_rows: Any, fd_errs: Any, fd_meth: Any, fd_checked: np.ndarray,
             kink_cols: dict, singular: bool, opts: dict, point: int,
             outside: np.ndarray | None = None) -> None:
    n = tape.shape[1]
    ill = []
    # lost digits measured at nodes (a right formula that cancels) widen the bound they feed
    slack = max([f.slack for f in res.findings if f.precision], default=1.0)
    if sym is None and fd_rows is not None and point == 0 and not np.all(fd_checked):
        # FD on a sample of entries: projections over all entries, bisected to any wrong one
        _group_test(problem, res, tape, fd_rows, fd_errs, fd_meth, fd_checked, opts)
    # only entries with a reference become entries: without a mirror, the FD-checked ones
    # (a 1e6-element input must not cost a Python loop over every entry)
    cols = np.arange(n) if sym is not None else np.flatnonzero(fd_checked) \
        if fd_rows is not None else np.zeros(0, np.int64)
    where = problem.locate_many(cols)
    for r, label in enumerate(labels):
        for j, (name, idx) in zip(cols.tolist(), where):
            t = float(tape[r, j])
            s = float(sym.exact[r, j]) if sym is not None else None
            s_err = float(sym.exact_err[r, j]) if sym is not None else None
            rp = float(sym.replayed[r, j]) if sym is not None else None
            bound = float(sym.bound[r, j]) if sym is not None else None
            if res.claimed_allow is not None:
                bound += float(res.claimed_allow[r, j])
            f = float(fd_rows[r, j]) if fd_rows is not None and fd_checked[j] else None
            fe = float(fd_errs[r, j]) if fd_rows is not None and fd_checked[j] else None
            meth = fd_meth[j] if fd_meth is not None else ""
            if sym is None and f is None:
                continue  # not sampled: nothing to compare
            ref = s if s is not None else f
            e = Entry(name, idx, label, t, s, s_err, rp, f, fe, meth, None, None, None,
                      "pass", point=point,
                      symbolic_digits=sym.exact_digits[r][j] if sym is not None else None)
            if ref is not None and math.isfinite(ref) and math.isfinite(t):
                e.abs_error = abs(t - ref)
                e.rel_error = e.abs_error / abs(ref) if ref else (0.0 if t == 0 else math.inf)
            kink = kink_cols.get((r, j))
            numeric = res.numeric_kinks.get(j) if sym is None else None
            if outside is not None and outside[r]:
                # NaN (or inf away from a pole) forward: no derivative to compare with; an
                # exact value beyond float64's range is an overflow, not a domain edge
                e.status = "inconclusive"
                e.reason = "overflow" if sym is not None and sym.overflow else \
                    "outside the domain"
                e.abs_error = e.rel_error = None
            elif kink is not None:
                e.left, e.right = kink
                smooth_sides = math.isfinite(e.left) and math.isfinite(e.right)
                e.status = "inconclusive"
                e.reason = "kink" if smooth_sides and not singular else "singularity"
                e.abs_error = e.rel_error = None  # no single derivative to compare with
            elif ref is None or not math.isfinite(ref) or not math.isfinite(t):
                if sym is not None and sym.overflow:
                    e.status, e.reason = "inconclusive", "overflow"
                elif ref is not None and math.isfinite(ref) and not singular:
                    e.status, e.reason = "fail", "nan"
                elif sym is None and f is not None and math.isnan(f) and not singular:
                    # f is finite here and undefined on both sides at every step tried
                    e.status, e.reason = "inconclusive", "outside the domain"
                else:
                    e.status, e.reason = "inconclusive", "singularity" if singular or (
                        ref is not None and not math.isfinite(ref)) else "nan"
            elif sym is not None:
                tol = _override(opts, s, bound + max(2 * EPS64, res.claimed_rounding) * abs(rp)
                                + 1e-300)
                e.tolerance = tol
                compare_to = s if opts["rtol"] is not None or opts["atol"] is not None else rp
                if abs(t - compare_to) > tol and abs(t - compare_to) <= tol * slack:
                    # within what the nodes' measured lost digits allow: a warning
                    e.status, e.reason = "precision", "lost digits"
                elif abs(t - compare_to) > tol:
                    e.status, e.reason = "fail", "wrong"
                elif abs(t - s) <= max(tol, 1e-10 * abs(s)) + s_err and \
                        _fd_contradicts(t, s, f, fe, _resolution(res, r, j)):
                    # tape and exact mirror agree (a forward too ill-conditioned for that
                    # is one FD cannot differentiate either) and FD of the function does
                    # not: a cut in the graph, unless the function has a kink the mirror
                    # does not know (a where() whose condition is data)
                    side = _probe_kink(problem, res, r, j)
                    if side is not None and side[0] - side[2] <= t <= side[1] + side[2]:
                        e.status, e.reason = "inconclusive", "kink"
                        e.left, e.right = side[3], side[4]
                        e.abs_error = e.rel_error = None
                    else:
                        e.status, e.reason = "fail", "graph broken"
                        e.abs_error = abs(t - f)  # against the function's own slope
                        e.rel_error = e.abs_error / abs(f) if f else math.inf
                        e.tolerance = BROKEN_MARGIN * fe
                elif abs(t - s) > max(tol, 1e-10 * abs(s)) + s_err:
                    e.reason = "ill-conditioned"
                    ill.append(e)
            else:
                if fe is None or not math.isfinite(fe):
                    e.status, e.reason = "inconclusive", "fd-unreliable"
                else:
                    # what differences at their real step can resolve: lse(z) - z[3] at
                    # z[3] = 40 rounds against 40, so its FD is 0 +- 1e-11, however confident
                    seen = _resolution(res, r, j)
                    tol = _override(opts, f, fe + (seen if math.isfinite(seen) else 0.0) + max(
                        EPS64 * SAFETY, res.claimed_rounding) * (abs(t) + abs(f)) + 1e-300)
                    e.tolerance = tol
                    side = _kink_sides(numeric, res.rows[r])
                    if side is not None and side[0] - side[2] <= t <= side[1] + side[2]:
                        # one-sided differences disagree: a kink; the tape's value is one
                        # of the subgradients between them
                        e.status, e.reason = "inconclusive", "kink"
                        e.left, e.right = side[3], side[4]
                        e.abs_error = e.rel_error = None
                    elif abs(t - f) > tol:
                        e.status, e.reason = "fail", "wrong"
            res.entries.append(e)
    if ill:
        worst = max(ill, key=lambda e: e.rel_error or 0)
        res.notes.append(
            f"ill-conditioned: the float64 tape differs from exact math by up to "
            f"{worst.rel_error:.2g} (relative, at {worst.label}) because of rounding in the "
            f"forward pass; every backward rule is right for the values it saw")


def _override(opts: dict, ref: float, derived: float) -> float:
    if opts["rtol"] is None and opts["atol"] is None:
        return derived
    return (opts["atol"] or 0.0) + (opts["rtol"] or 0.0) * abs(ref)


# --- the three opinions held against each other --------------------------------------------

#: finite differences contradict a tape that agrees with the mirror only beyond this multiple
#: of their own tolerance (already FD_SAFETY times their error estimate plus measured noise):
#: the estimate is a spread of extrapolations, not a bound, and a false "broken graph" on
#: correct code costs more than a late one (a detach() moves a derivative by O(1))
BROKEN_MARGIN = 4.0


def _fd_contradicts(t: float, s: float, f: float | None, fe: float | None,
                    resolution: float) -> bool:
    """FD of the function itself disagrees with both the tape and the mirror (which agree
    with each other) beyond its error estimate and beyond what differences of a float
    function can resolve: the function is not what the recorded graph says."""
    if f is None or fe is None or not (math.isfinite(f) and math.isfinite(fe)):
        return False
    tol = BROKEN_MARGIN * fe + resolution + \
        ROUNDING_FACTOR * EPS64 * (abs(t) + abs(f)) + 1e-300
    return abs(f - t) > tol and abs(f - s) > tol


def _resolution(res: _Point, r: int, j: int) -> float:
    """The smallest slope differences at the FD's real step can see: each evaluation of f
    is off by rounding against the magnitudes it is made of (a function that is flat in
    float64, tanh at 20, has FD exactly 0 with a tiny error estimate)."""
    step = res.fd_steps.get(j, 0.0)
    if not step > 0:
        return math.inf
    row = np.abs(res.rows[r])
    floor = ROUNDING_FACTOR * EPS64 * res.magnitude * float(np.sum(row)) / step
    if res.forward_error is not None:
        # measured: the float forward's own error at the point, amplified by whatever
        # follows the rounding ((1 - cos x) / x**2 at 1e-7 is off by 1e-4), over the step
        floor += FD_SAFETY * float(row @ res.forward_error) / step
    return floor


def _forward_error(outs: list[Tensor], sym: _Sym) -> np.ndarray | None:
    """|float forward - exact forward| per flat output entry (None if unavailable)."""
    graphs = iter(sym.graphs)
    parts = []
    try:
        for o in outs:
            y = np.asarray(o._data, dtype=float).reshape(-1)
            if not o.requires_grad:
                parts.append(np.zeros(y.size))
                continue
            exact = np.array(np.asarray(next(graphs).value(), dtype=object).reshape(-1).tolist(),
                             dtype=float)
            with np.errstate(all="ignore"):
                parts.append(np.nan_to_num(np.abs(y - exact), nan=np.inf))
    except (StopIteration, MirrorError, ValueError, TypeError):
        return None
    return np.concatenate(parts)


def _probe_kink(problem: Problem, res: _Point, r: int, j: int
                ) -> tuple[float, float, float, float, float] | None:
    if j not in res.numeric_kinks and res.fd_fn is not None:
        f, x = res.fd_fn
        _numeric_kink(problem, f, x, j, res.rows, res)
    return _kink_sides(res.numeric_kinks.get(j), res.rows[r])


def _broken_graph(res: _Point) -> None:
    broken = [e for e in res.entries if e.reason == "graph broken"]
    if not broken:
        return
    worst = max(broken, key=lambda e: abs(e.finite_diff - e.tape) / max(e.fd_error or 0.0,
                                                                          1e-300))
    res.notes.insert(0, (
        f"the graph is broken between {worst.input} and the output: finite differences "
        f"{worst.finite_diff:.10g} (error estimate {worst.fd_error:.2g}), tape "
        f"{worst.tape:.10g}, mirror {worst.symbolic:.10g} at {worst.label}; the tape and its "
        f"mirror follow the recorded graph but the function does not: a detach(), a "
        f".numpy() round trip or a value computed outside the tape cuts the gradient"))


def _determinism(problem: Problem, arrays: list[np.ndarray] | None,
                 outs: list[Tensor], res: _Point | None = None) -> list[str]:
    """Evaluate the forward once more at the same point: a function that changes between
    calls (a counter, unseeded dropout) has no derivative to check. A float64 result is
    kept in ``res.fx``: it is the f(x) finite differences start from."""
    x = np.concatenate([a.reshape(-1) for a in arrays]) if arrays is not None \
        else problem.flat_values()
    first = np.concatenate([np.asarray(o._data, dtype=float).reshape(-1) for o in outs])
    try:
        raw = np.asarray(problem.flat()(x))
        again = raw.astype(float).reshape(-1)
    except CheckInputError as e:
        return [f"the forward is not deterministic: it ran once at this point, then raised "
                f"({e})"]
    if res is not None and raw.dtype == np.float64:
        res.fx = again
    if again.shape != first.shape:
        return [f"the forward is not deterministic: it returned {first.size} values, then "
                f"{again.size} at the same point"]
    finite = np.isfinite(first)
    big = float(np.max(np.abs(first[finite]), initial=0.0))
    # a reduction may round differently when run another way (no graph recorded): allow
    # rounding of the largest output, nothing more
    tol = ROUNDING_FACTOR * unit_roundoff(np.float64) * big + 4 * np.finfo(float).tiny
    with np.errstate(invalid="ignore"):
        bad = ~((first == again) | (np.isnan(first) & np.isnan(again)) |
                (np.abs(first - again) <= tol))
    if np.any(bad):
        # two runs may order their sums differently (torch's kernels against the replay,
        # a BLAS against another): each output may move by the rounding of sums of its
        # inputs' entries at the largest magnitude anywhere in the forward (a layer norm's
        # offset of 1e4, summed to 0)
        n = max(1, int(x.size))
        tol = ROUNDING_FACTOR * unit_roundoff(np.float64) * n * max(
            big, graph_magnitude(GraphView.of(outs))) + 4 * np.finfo(float).tiny
        with np.errstate(invalid="ignore"):
            bad &= ~(np.abs(first - again) <= tol)
    if not np.any(bad):
        return []
    k = int(np.argmax(bad))
    where = f" (output entry {k})" if first.size > 1 else ""
    return [f"the forward is not deterministic: two evaluations at the same point gave "
            f"{first[k]:.17g} and {again[k]:.17g}{where}; a function that changes between "
            f"calls has no gradient to check: seed its randomness (dropout, sampling) or pass "
            f"it in as an input"]


def _outside_domain(outs: list[Tensor], rows: np.ndarray, singular: bool,
                    res: _Point) -> np.ndarray | None:
    """Per cotangent row: does it touch an output that is NaN (or infinite away from a
    pole the mirror knows)? Such a point is outside the function's domain."""
    y = np.concatenate([np.asarray(o._data).reshape(-1) for o in outs])
    bad = np.isnan(y) if singular else ~np.isfinite(y)
    if not np.any(bad):
        return None
    touched = np.any((rows != 0) & bad[None, :], axis=1)
    k = int(np.argmax(bad))
    what = "overflows to" if np.isinf(y[k]) else "gives"
    entry = f" (output entry {k})" if y.size > 1 else ""
    res.notes.append(f"outside the domain: the forward {what} {y[k]}{entry}; "
                     f"no derivative is compared there: check at a point where the function "
                     f"is defined and finite")
    return touched


def _numeric_kink(problem: Problem, f: Any, x: np.ndarray, j: int, rows: np.ndarray,
                  res: _Point) -> None:
    """Without a mirror, a kink shows as left and right one-sided differences that disagree
    beyond their error estimates (as Chainer's check_backward tests it)."""
    d = np.zeros(x.size)
    d[j] = 1.0
    left, right = fd.one_sided(f, x, d)
    mask = fd.is_kink(left, right, FD_SAFETY)
    if not np.any(mask):
        return
    res.numeric_kinks[j] = (left, right, mask)
    name, idx = problem.locate(j)
    k = int(np.argmax(mask))
    res.kinks.append(f"{name}{list(idx) if idx else ''}: at a kink found by one-sided "
                     f"differences (left {left.value[k]:.6g}, right {right.value[k]:.6g}"
                     f"{f', output entry {k}' if left.value.size > 1 else ''})")


def _kink_sides(numeric: tuple | None, row: np.ndarray
                ) -> tuple[float, float, float, float, float] | None:
    """(low, high, allowance, left, right) of the one-sided derivatives along ``row``, or
    None where they agree."""
    if numeric is None:
        return None
    left, right, mask = numeric
    if not np.any(mask[row != 0]):
        return None
    with np.errstate(all="ignore"):
        lv, rv = float(row @ np.nan_to_num(left.value)), float(row @ np.nan_to_num(right.value))
        allow = FD_SAFETY * float(np.abs(row) @ (left.error + right.error)) + \
            EPS64 * SAFETY * (abs(lv) + abs(rv))
    if not math.isfinite(allow) or abs(lv - rv) <= allow:
        return None
    return min(lv, rv), max(lv, rv), allow, lv, rv


# --- verdicts ------------------------------------------------------------------------------

def _verdict(p: _Point) -> str:
    if p.contract or any(not f.ok for f in p.findings) or any(e.status == "fail"
                                                              for e in p.entries):
        return "fail"
    if any(e.status == "inconclusive" for e in p.entries):
        return "inconclusive"
    return "pass"


def _combine(main: _Point, points: list[PointResult]) -> str:
    if any(p.verdict == "fail" for p in points):
        return "fail"
    return points[0].verdict


def _summary(p: _Point, named: frozenset = frozenset()) -> str:
    """One line for a point; ``named``: nodes already found wrong at the given point, not
    checked again here."""
    bad = [e for e in p.entries if e.status == "fail"]
    inc = [e for e in p.entries if e.status == "inconclusive"]
    nodes = [f for f in p.findings if not f.ok]
    parts = [f"{len(p.entries)} {'entry' if len(p.entries) == 1 else 'entries'}"]
    if bad:
        parts.append(f"{len(bad)} fail")
    if inc:
        parts.append(f"{len(inc)} inconclusive")
    if nodes:
        parts.append("wrong backward: " + ", ".join(sorted({f.node.name() for f in nodes})))
    if named and bad:
        parts.append("not checked again: " + ", ".join(sorted(named)) + " (wrong at the "
                     "given point)")
    return ", ".join(parts)


def _culprits(findings: list[LocalFinding]) -> list[Culprit]:
    """Wrong nodes in backward order, the given point's first; one per grad_fn name."""
    out = []
    seen = set()
    for f in findings:
        if f.ok or f.node.name() in seen:
            continue
        seen.add(f.node.name())
        if f.contract:
            msg = f.contract
        else:
            where = f" at {_index(f.element)}" if f.element else ""
            against = "its symbolic mirror" if f.method == "symbolic" else \
                "finite differences of its forward"
            msg = _culprit_message(f, where, against)
        # the numbers the message quotes: the element's own derivative where it was found
        exp, got = (f.own[1], f.own[2]) if f.projected and f.own is not None else \
            (f.expected, f.got)
        out.append(Culprit(f.node.name(), f.input_index, f.input_name, f.path, f.element,
                           exp, got, f.method, msg))
    return out


def _index(idx: tuple) -> str:
    return f"[{', '.join(map(str, idx))}]" if idx else ""


def _culprit_message(f: LocalFinding, where: str, against: str) -> str:
    """Expected and got with the digits at which they differ, the error next to its
    tolerance. A projection on a random cotangent is replaced by the element's own
    derivative when that was found, and labelled as a projection when not."""
    exp, got, err, tol = f.expected, f.got, f.max_abs_error, f.tolerance
    what = "expected"
    if f.projected and f.own is not None:
        k, exp, got, tol = f.own
        err = abs(got - exp)
        what = f"d out{_index(k)} / d {f.input_name}{_index(f.element)} is"
    e_s, g_s = distinct(exp, got)
    rel = abs(got - exp) / abs(exp) if exp else math.inf
    msg = (f"{f.node.name()} returns a wrong gradient for input {f.input_index} "
           f"({f.input_name}){where}: {what} {e_s} by {against}, got {g_s} (error "
           f"{err:.2g} > tolerance {tol:.2g}, relative error {rel:.2g}; path {f.path})")
    if f.projected and f.own is None:
        msg += ("; these are v . J for a seeded random cotangent v on its output (a "
                "projection on a random direction)")
    if rel <= FOREIGN_RTOL:
        msg += ("; an error this small comes from an approximate library function in the "
                "backward (torch.polygamma is good to about 1e-9) or a constant written with "
                "few digits, not from a wrong formula")
    return msg


# --- extras --------------------------------------------------------------------------------

#: nearby points of a graph with more nodes than this are compared with finite differences
#: instead of the exact chain: the chain costs O(nodes) mpmath work per point, and the given
#: point has had it (a 1e5-op chain spent half its check time on the nearby points' chains)
NEARBY_SYMBOLIC_NODES = 2000


def _nearby_scale(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The given point flat, and each entry's scale of a nearby move: max(|a|, mean |a| of
    its input), or 0.05 for an input that is all zeros. A floor for every input moved x =
    3e-6 to -2.6e-3, into poles a function scaled by 1e6 has there."""
    scale = []
    for i in problem.diff_index:
        a = np.abs(problem.values[i])
        mean = float(np.mean(a)) if a.size else 0.0
        scale.append(np.maximum(a, mean if mean > 0 else 0.05).reshape(-1))
    return problem.flat_values(), np.concatenate(scale)


def _nearby(problem: Problem, seed: int,
            spread: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray] | None:
    """A seeded random point near the given one (moves off zeros and symmetric matrices).
    ``spread``: ``_nearby_scale(problem)``, made once for all nearby points."""
    rng = np.random.default_rng(seed)
    # flat, all inputs at once: one draw of every entry's normal is the stream drawn input
    # by input
    x0, scale = spread if spread is not None else _nearby_scale(problem)
    f = problem.flat()
    for shrink in (1.0, 0.25, 0.0625, 0.015625):
        x = x0 + 0.1 * shrink * scale * rng.standard_normal(x0.size)
        try:
            y = f(x)
        except CheckInputError:
            continue
        if np.isfinite(y).all():
            return problem.split(x)
    return None


def _values(problem: Problem, arrays: list[np.ndarray] | None) -> dict:
    arrays = arrays if arrays is not None else [problem.values[i] for i in problem.diff_index]
    return {n: np.asarray(a).tolist() for n, a in zip(problem.diff_names, arrays)}


#: the float32 run is held to its float64 tolerances rescaled to float32's unit roundoff plus
#: its measured ulp noise, times this: float32's rounding is modelled less tightly than
#: float64's (cancellation in a layer norm at an offset of 1000), and what this opinion is
#: for, a backward that branches on the dtype or overflows in float32, is off by far more
F32_SAFETY = 16.0


def _float32_note(problem: Problem, main: _Point, seed: int) -> None:
    """The float32 run, judged at float32's precision: its gradient against the reference
    with the float64 tolerances rescaled to float32's unit roundoff plus the rounding noise
    measured by nudging the float32 inputs one ulp (a backward that branches on the dtype,
    or overflows in float32 with a finite forward, is wrong there). Its nodes are not
    checked on their own: a float32 node's saved values and float64 cotangents mix."""
    if not any(d is not None and np.dtype(d) == np.float32 for d in problem.user_dtypes):
        return
    try:
        args = problem.leaves(dtype=np.float32)
        leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
        outs = problem.run(args)
        # the given point's cotangents: its entries are the references compared with
        rows = main.rows
        if rows is None or rows.shape[1] != sum(o.numel() for o in outs):
            return
        g32, err = _tape_rows(outs, leaves, rows, [o.numel() for o in outs])
    except (CheckInputError, VerigradError) as e:
        main.notes.append(f"float32 run failed: {e}")
        return
    given = [e for e in main.entries if e.point == 0]
    if g32.size != len(given):  # FD on a sample of entries: no entry-by-entry comparison
        return
    noise = _tape_noise(problem, None, rows, [o.numel() for o in outs], seed, g32,
                        dtype=np.float32).reshape(-1)
    scale = unit_roundoff(np.float32) / unit_roundoff(np.float64)
    forward_finite = all(np.isfinite(o._data).all() for o in outs)
    worst, bad, overflow = 0.0, [], []
    for e, got, n in zip(given, g32.reshape(-1).tolist(), noise.tolist()):
        ref = e.reference if e.reference is not None else e.tape
        if e.status not in ("pass", "precision") or ref is None or not np.isfinite(ref):
            continue
        if not np.isfinite(got):
            (bad if forward_finite else overflow).append((e, got, ref, 0.0))
            continue
        diff = abs(got - ref)
        worst = max(worst, diff)
        # float32's underflow: a gradient below its normal range is rounding to zero
        allowed = F32_SAFETY * ((e.tolerance or 0.0) * scale + n + np.finfo(np.float32).tiny)
        if diff > allowed:
            bad.append((e, got, ref, allowed))
    for e, got, ref, allowed in bad:
        main.entries.append(replace(e, tape=got, abs_error=abs(got - ref) if np.isfinite(got)
                                    else None, rel_error=None, tolerance=allowed or None,
                                    status="fail", reason="float32 run"))
    for e, got, ref, _ in overflow:
        main.entries.append(replace(e, tape=got, abs_error=None, rel_error=None,
                                    tolerance=None, status="inconclusive", reason="overflow"))
    if bad:
        e, got, ref, allowed = bad[0]
        main.notes.append(f"the float32 run is wrong beyond float32's rounding: {e.label} is "
                          f"{got:.10g} in float32, reference {ref:.10g}" + (
                              f" (float32 tolerance {allowed:.2g})" if allowed else
                              " (the float32 forward is finite)")
                          + (f"; {err}" if err else ""))
    elif overflow:
        main.notes.append(f"the float32 run overflows: {overflow[0][0].label} is "
                          f"{overflow[0][1]} in float32, with a float32 forward that is not "
                          f"finite either")
    else:
        main.notes.append(f"checked in float64; the float32 run differs from it by up to "
                          f"{worst:.2g}, within float32's rounding: not a wrong rule"
                          + (f" ({err})" if err else ""))


def _closed_form(problem: Problem, scalar: bool, max_inputs: int, max_nodes: int) -> tuple:
    """LaTeX of the derivatives for reports (``CheckReport.add_details``), when the output is
    a scalar of at most ``max_inputs`` input entries and each derivative has at most
    ``max_nodes`` tree nodes."""
    if not scalar:
        return {}, "closed forms are shown for scalar outputs only"
    from ..symbolic.mirror import closed_forms

    try:
        with np.errstate(all="ignore"):
            args = problem.leaves()
            leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
            if sum(t.numel() for t in leaves) > max_inputs:
                return {}, f"closed forms are shown for up to {max_inputs} input entries"
            # the SymPy expressions too: the HTML report prints them as MathML
            return closed_forms(problem.run(args)[0], leaves, cap=max_nodes,
                                with_expressions=True)
    except (MirrorError, CheckInputError, ValueError) as e:
        return {}, f"no closed form: {e}"


def _versions() -> dict[str, str]:
    import sympy

    from .._version import __version__

    return {"verigrad": __version__, "numpy": np.__version__, "sympy": sympy.__version__,
            "mpmath": mpmath.__version__, "python": platform.python_version()}


def _fd_column(problem: Problem, res: _Point, j: int, e: fd.FDEstimate,
               noise: np.ndarray | None, rows: np.ndarray, fd_rows: np.ndarray,
               fd_errs: np.ndarray, meth: list, checked: np.ndarray, screen_kinks: bool
               ) -> None:
    """Record FD's estimate of input entry ``j`` (every output) as each row's reference."""
    fd_rows[:, j] = rows @ e.value
    # FD error estimates are spreads of extrapolations, not bounds: where f cancels
    # (a sum of terms that nearly vanishes) the rounding noise can reach them
    # the FD module models f's rounding from |f|; a sum that cancels is noisier than its
    # value says, so the measured noise (over the step, through the extrapolation) is added
    rounding = 8 * noise / e.step if e.method in _REAL_METHODS else 0
    fd_errs[:, j] = FD_SAFETY * (np.abs(rows) @ (e.error + rounding)) if e.reliable \
        else np.inf
    meth[j] = e.method + ("" if e.reliable else f" (unreliable: {e.reason})")
    checked[j] = True
    res.fd_steps[j] = e.real_step
    if screen_kinks and e.kink_suspect is not None and np.any(e.kink_suspect):
        f, x = res.fd_fn
        _numeric_kink(problem, f, x, j, rows, res)


# --- large inputs: projections over every entry, bisected to a wrong one -------------------

#: without a mirror, FD checks a sample of a large input's entries one by one; every entry is
#: also covered by seeded random +-1 projections on this many random blocks (each its own
#: tolerance, from FD's error estimate and the block's own magnitudes, so one wrong entry
#: among 1e6 is not diluted by the others)
GROUP_BLOCKS = 8
#: a block whose projection disagrees is halved (one FD per level: the second half's
#: disagreement is the block's minus the first half's) down to single entries; at most this
#: many projections per check (each ~7 evaluations of f), the rest is said to be uncovered
GROUP_BUDGET = 96
#: at most this many entries located by bisection are checked one by one
GROUP_FOUND = 4


@dataclass
class _Block:
    coords: np.ndarray          # flat input entries
    signs: np.ndarray           # the +-1 direction on them
    gap: float = 0.0            # FD minus tape along the direction
    tol: float = 0.0
    fd_value: float = 0.0
    tape_value: float = 0.0
    step: float = 0.0           # FD's step along the direction (its halves reuse it)


def _group_test(problem: Problem, res: _Point, tape: np.ndarray, fd_rows: np.ndarray,
                fd_errs: np.ndarray, fd_meth: list, fd_checked: np.ndarray, opts: dict) -> None:
    """Cover every input entry, not just FD's sample: the rows are combined by seeded random
    weights into one scalar ``s = w . rows . f``, whose tape gradient ``g`` is held against
    FD along a random +-1 direction on each of ``GROUP_BLOCKS`` random blocks. A block that
    disagrees is bisected; the entries it ends on are checked one by one like the sample
    (added to ``fd_checked``), so the verdict comes from an entry's own derivative."""
    if res.fd_fn is None:
        return
    f, x = res.fd_fn
    n = x.size
    seed = opts["seed"] + 43
    rng = np.random.default_rng(seed)
    rows = res.rows
    w = rng.standard_normal(rows.shape[0]) if rows.shape[0] > 1 else np.ones(1)
    wrow = w @ rows
    g = w @ tape
    try:
        y0 = np.asarray(f(x), dtype=float).reshape(-1)
    except CheckInputError:
        return
    noise = _noise(f, x, opts["seed"])
    # s's own rounding: f's measured noise, and the weighted sum of m outputs
    noise_s = float(np.abs(wrow) @ noise) + ROUNDING_FACTOR * EPS64 * float(
        np.abs(wrow) @ np.abs(np.nan_to_num(y0)))
    per_entry = _group_tape_noise(problem, rows, tape, opts["seed"])
    tnoise = np.abs(w) @ per_entry
    floor = ROUNDING_FACTOR * EPS64 * res.magnitude * float(np.sum(np.abs(wrow)))
    claimed = max(EPS64 * SAFETY, res.claimed_rounding)

    def s(z: np.ndarray) -> np.ndarray:
        return np.array([float(wrow @ np.asarray(f(z), dtype=float).reshape(-1))])

    s0 = np.array([float(wrow @ y0)])

    def project(b: _Block, eps: float | None) -> bool | None:
        """Does FD along the block's direction disagree with the tape (None: unreliable)?"""
        # s of the block's entries alone (check_nodes' restriction): the same values of s,
        # FD's own work proportional to the block; entries ascending, as FD takes them
        at = np.argsort(b.coords)
        c = b.coords[at]
        e = fd.derivative(restricted(s, x, c), x[c], b.signs[at], eps=eps, fx=s0)
        b.step = e.step
        if not e.reliable or not np.isfinite(e.value[0]) or not e.step > 0:
            return None
        # +-1 signs: the products are exact and fsum adds them exactly
        b.tape_value = math.fsum((g[b.coords] * b.signs).tolist())
        b.fd_value = float(e.value[0])
        rounding = 8 * noise_s / e.step if e.method in ("central", "forward", "backward") \
            else 0.0
        b.gap = b.fd_value - b.tape_value
        b.tol = FD_SAFETY * (float(e.error[0]) + rounding + float(np.sum(tnoise[b.coords]))) \
            + floor / (e.real_step or e.step) + claimed * (
                float(np.sum(np.abs(g[b.coords]))) + abs(b.fd_value)) + 1e-300
        return abs(b.gap) > b.tol

    order = rng.permutation(n)
    blocks = [_Block(c, rng.choice((-1.0, 1.0), c.size))
              for c in np.array_split(order, min(GROUP_BLOCKS, n)) if c.size]
    spent, uncovered, worst_tol = 0, 0, 0.0
    found: list[int] = []
    spread: list[_Block] = []
    stack: list[_Block] = []
    for b in blocks:
        verdict = project(b, opts["eps"])
        spent += 1
        if verdict is None:
            uncovered += b.coords.size
            continue
        worst_tol = max(worst_tol, b.tol)
        if verdict:
            stack.append(b)
    disagreed = len(stack)
    stack.reverse()
    while stack and len(found) < GROUP_FOUND:
        b = stack.pop()
        if b.coords.size == 1:
            found.append(int(b.coords[0]))
            continue
        if spent >= GROUP_BUDGET:
            uncovered += b.coords.size
            continue
        half = b.coords.size // 2
        first = _Block(b.coords[:half], b.signs[:half])
        second = _Block(b.coords[half:], b.signs[half:], step=b.step)
        # a half is the same function along part of the same direction: FD at its block's
        # step (two rungs, 4 evaluations) instead of a new adaptive walk
        verdict = project(first, opts["eps"] or b.step)
        spent += 1
        if verdict is None:
            uncovered += b.coords.size
            continue
        # the derivative is linear in the direction: the second half's gap is what is left
        second.gap, second.tol = b.gap - first.gap, b.tol + first.tol
        second.fd_value, second.tape_value = b.fd_value - first.fd_value, \
            b.tape_value - first.tape_value
        halves = [h for h in (first, second) if abs(h.gap) > h.tol]
        if not halves:
            spread.append(b)  # the error is spread over entries of both halves
        stack.extend(reversed(halves))
    for j in found:
        if fd_checked[j]:
            continue
        e = fd.partials(f, x, [j], eps=opts["eps"])[0]
        _fd_column(problem, res, j, e, noise, rows, fd_rows, fd_errs, fd_meth, fd_checked, True)
        fd_errs[:, j] += FD_SAFETY * per_entry[:, j]
    _group_note(problem, res, n, len(blocks), seed, spent, worst_tol, disagreed, found,
                spread, uncovered)


def _group_tape_noise(problem: Problem, rows: np.ndarray, tape: np.ndarray, seed: int
                      ) -> np.ndarray:
    """The tape's own rounding per row and entry, measured (inputs nudged by one ulp), as
    the sampled entries allow for it."""
    sizes = [o.numel() for o in problem.run(problem.leaves())]
    return _tape_noise(problem, None, rows, sizes, seed, tape)


def _group_note(problem: Problem, res: _Point, n: int, blocks: int, seed: int, spent: int,
                worst_tol: float, disagreed: int, found: list[int], spread: list[_Block],
                uncovered: int) -> None:
    """Say which entries were checked and how."""
    covered = n - uncovered
    msg = (f"every entry covered by projections: {covered} of {n} entries in {blocks} seeded "
           f"random blocks (seed {seed}), each compared along a random +-1 direction (finite "
           f"differences against the tape, {spent} projections in all; an error above "
           f"{worst_tol:.2g} in any one entry is seen)")
    if disagreed:
        where = ", ".join(f"{name}{list(idx) if idx else ''}"
                          for name, idx in problem.locate_many(found)) or "no single entry"
        msg += f"; {disagreed} block(s) disagreed and were bisected to {where}, checked one " \
               f"by one below"
    if uncovered:
        msg += (f"; {uncovered} entries not covered (finite differences unreliable there, or "
                f"the budget of {GROUP_BUDGET} projections spent)")
    res.notes.append(msg)
    for b in spread:
        j = int(b.coords[0])
        name, idx = problem.locate(j)
        res.entries.append(Entry(name, idx, ("projection", int(b.coords.size)), b.tape_value,
                                 None, None, None, b.fd_value, b.tol, "projection", abs(b.gap),
                                 None, b.tol, "inconclusive", "spread error"))
        res.notes.append(f"a projection on {b.coords.size} entries (from {name}"
                         f"{list(idx) if idx else ''}) disagrees with finite differences (gap "
                         f"{b.gap:.3g} > tolerance {b.tol:.2g}), but neither half does: the "
                         f"error is spread over several entries; not located")
