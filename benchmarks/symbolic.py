"""Symbolic benchmarks: verigrad's exact gradients against plain sympy.diff, from one run.

    python benchmarks/symbolic.py            # default run (~2-3 min, mostly plain sympy.diff)
    python benchmarks/symbolic.py --quick    # smoke run (~30 s; plain sympy.diff capped at 5 s)
    python benchmarks/symbolic.py --only abc,lse --rounds 9 --timeout 120

Time to the exact (high-precision) gradient of three scalar functions with
``verigrad.symbolic.ExactGraph(output).gradient()`` (per-node local rules from sympy.diff,
evaluated in mpmath and chained in reverse; issue 3), against plain ``sympy.diff`` of the
same function written out as one SymPy expression of scalar symbols:

  abc  sum(A @ B @ C), A, B, C 10x10 (300 inputs)
  lse  logsumexp over 100 values (100 inputs)
  mlp  2-layer MLP loss: batch 8, 16->32->4, tanh, mean squared error; inputs are the
       weights and biases (676); data X, Y are constants

verigrad is measured
  cold  in a fresh process with an empty rule cache: ``import verigrad``, the tape forward
        and the tape's backward happen first, untimed; the timed call is the first
        ``ExactGraph(output).gradient()``, so it includes the first (lazy) import of SymPy and
        SymEngine (shown separately), building and differentiating every local rule, and
        evaluating it: what a user pays. One process per sample; the two backends
        alternate, the order flipping every round.
  warm  in a long-lived worker, a fresh ``ExactGraph(output)`` per call (rule cache warm):
        what a second check of a same-shaped graph pays. Alternating rounds, medians.
with the default backend ("auto": SymEngine differentiates when installed) and with
``VERIGRAD_SYMBOLIC_BACKEND=sympy`` in the worker's environment. Every verigrad gradient is
compared with the tape's (``output.backward()``) to 1e-12 (relative to max(1, |g|)).

Plain sympy.diff runs once per case in its own process, killed after ``--timeout`` seconds
(default 60, 5 with --quick): the time is ``import sympy`` (as in the cold figures), building
the expression and ``sympy.diff`` with respect to every input symbol; evaluating the
derivatives is not included, so the plain figure is a lower bound on what it takes to get
numbers. Where it
finishes, three derivatives are evaluated at the point and compared with the tape.
``--expand`` also applies ``sympy.expand`` (products distributed: the issue's "expanded per
element" wording; slower, so the default is the stricter, faster baseline).

Targets (issue 3): every case under 2 s (cold), and at least 50x faster than plain sympy.diff
where that finishes. This is a report, not a test: it always exits 0.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# the shared harness pins every BLAS/OpenMP pool to one thread before numpy is imported
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402
from _harness import Worker, WorkerError, WorkerTimeout, cpu_name, median  # noqa: E402

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

GRAD_TOL = 1e-12
TARGET_SECONDS = 2.0
TARGET_SPEEDUP = 50.0
BACKEND_ENV = "VERIGRAD_SYMBOLIC_BACKEND"

AUTO = "verigrad (auto)"
SYMPY_BACKEND = "verigrad (sympy backend)"
CONTENDERS = {AUTO: "auto", SYMPY_BACKEND: "sympy"}
PLAIN = "plain sympy.diff"

LABELS = {
    "abc": "sum(A@B@C), 10x10",
    "lse": "logsumexp, 100 values",
    "mlp": "MLP 8x16->32->4 loss",
}


# ---------------------------------------------------------------------------------------
# the functions: the same seeded data for verigrad and for SymPy


def case_data(key: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, constants) as float64 arrays, inputs in the order gradients are reported."""
    rng = np.random.default_rng({"abc": 3, "lse": 4, "mlp": 5}[key])
    if key == "abc":
        return {k: rng.standard_normal((10, 10)) for k in "ABC"}, {}
    if key == "lse":
        return {"x": 3.0 * rng.standard_normal(100)}, {}
    if key == "mlp":
        X = rng.standard_normal((8, 16))
        Y = rng.standard_normal((8, 4))
        inputs = {"W1": rng.standard_normal((16, 32)) / 4.0, "b1": 0.1 * rng.standard_normal(32),
                  "W2": rng.standard_normal((32, 4)) / np.sqrt(32.0),
                  "b2": 0.1 * rng.standard_normal(4)}
        return inputs, {"X": X, "Y": Y}
    raise KeyError(key)


def build_verigrad(vg: Any, key: str) -> tuple[Any, list[Any]]:
    """(scalar output, input leaves in ``case_data`` order)."""
    inputs, consts = case_data(key)
    leaves = {k: vg.tensor(v, dtype=vg.float64, requires_grad=True) for k, v in inputs.items()}
    c = {k: vg.tensor(v, dtype=vg.float64) for k, v in consts.items()}
    if key == "abc":
        out = (leaves["A"] @ leaves["B"] @ leaves["C"]).sum()
    elif key == "lse":
        out = vg.logsumexp(leaves["x"], 0)
    else:
        h = vg.tanh(c["X"] @ leaves["W1"] + leaves["b1"])
        out = ((h @ leaves["W2"] + leaves["b2"] - c["Y"]) ** 2).mean()
    return out, list(leaves.values())


def build_sympy(sp: Any, key: str, expand: bool) -> tuple[Any, list[Any]]:
    """(one SymPy expression of scalar symbols, the symbols in flat ``case_data`` order)."""
    inputs, consts = case_data(key)

    def symbols(name: str, shape: tuple) -> Any:
        if len(shape) == 1:
            return sp.Matrix(1, shape[0], lambda i, j: sp.Symbol(f"{name}_{j}", real=True))
        return sp.Matrix(*shape, lambda i, j: sp.Symbol(f"{name}_{i}_{j}", real=True))

    def constant(a: np.ndarray) -> Any:
        return sp.Matrix(*a.shape, lambda i, j: sp.Float(float(a[i, j])))

    m = {k: symbols(k, v.shape) for k, v in inputs.items()}
    if key == "abc":
        expr = sp.Add(*(m["A"] * m["B"] * m["C"]))
    elif key == "lse":
        expr = sp.log(sp.Add(*[sp.exp(s) for s in m["x"]]))
    else:
        X, Y = constant(consts["X"]), constant(consts["Y"])
        Z = X * m["W1"]
        H = sp.Matrix(8, 32, lambda i, j: sp.tanh(Z[i, j] + m["b1"][0, j]))
        O = H * m["W2"]
        expr = sp.Add(*[(O[i, j] + m["b2"][0, j] - Y[i, j]) ** 2
                        for i in range(8) for j in range(4)]) / 32
    if expand:
        expr = sp.expand(expr)
    syms = [s for k in inputs for s in m[k]]
    return expr, syms


# ---------------------------------------------------------------------------------------
# worker functions (module level: they are sent to worker processes by reference)


def _vg_setup(src: str | None) -> dict:
    vg = _harness.import_verigrad(src)
    import verigrad.symbolic  # noqa: F401 - the module only; SymPy itself stays lazy

    return {"vg": vg}


def _vg_build(state: dict, key: str) -> None:
    vg = state["vg"]
    out, leaves = build_verigrad(vg, key)
    out.backward()
    state.update(out=out, leaves=leaves, tape=[np.array(t.grad.numpy()) for t in leaves])


def _grad_error(state: dict, grads: dict) -> float:
    worst = 0.0
    for t, ref in zip(state["leaves"], state["tape"]):
        g = np.asarray(grads[t], dtype=object).astype(float)
        if g.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(g - ref))) / max(1.0, float(np.max(np.abs(ref)))))
    return worst


def _exact_gradient(state: dict) -> dict:
    from verigrad.symbolic import ExactGraph

    return ExactGraph(state["out"]).gradient()


def _vg_cold(state: dict) -> tuple[float, float, float, str, bool]:
    """The first exact gradient in this process: (seconds in all, of which importing SymPy
    (and SymEngine for the auto backend), error vs tape, backend, whether SymPy had been
    imported before). verigrad imports them lazily on first use; importing them here, right
    before, costs the same and tells the two apart."""
    preloaded = "sympy" in sys.modules
    t0 = time.perf_counter()
    import sympy  # noqa: F401

    if os.environ.get(BACKEND_ENV, "auto") != "sympy":
        try:
            import symengine  # noqa: F401
        except ImportError:
            pass
    t1 = time.perf_counter()
    grads = _exact_gradient(state)
    t2 = time.perf_counter()
    from verigrad.symbolic import backend

    return t2 - t0, t1 - t0, _grad_error(state, grads), backend(), preloaded


def _vg_check(state: dict) -> tuple[float, float]:
    """(error vs tape, seconds) of one exact gradient (warms the rule cache)."""
    t0 = time.perf_counter()
    grads = _exact_gradient(state)
    return _grad_error(state, grads), time.perf_counter() - t0


def _vg_warm(state: dict, inner: int, settle: int) -> tuple[float, float]:
    return _harness.time_calls(lambda: _exact_gradient(state), inner, settle)


def _vg_tape(state: dict) -> np.ndarray:
    return np.concatenate([g.reshape(-1) for g in state["tape"]])


def _sympy_setup() -> dict:
    return {}


def _sympy_plain(state: dict, key: str, expand: bool) -> dict:
    """Import SymPy, build the whole expression, differentiate it w.r.t. every input."""
    t0 = time.perf_counter()
    import sympy as sp

    t1 = time.perf_counter()
    expr, syms = build_sympy(sp, key, expand)
    t2 = time.perf_counter()
    derivs = [sp.diff(expr, s) for s in syms]
    t3 = time.perf_counter()
    state.update(sp=sp, syms=syms, derivs=derivs, key=key)
    return {"import": t1 - t0, "build": t2 - t1, "diff": t3 - t2, "total": t3 - t0,
            "symbols": len(syms), "ops": int(sp.count_ops(expr))}


def _sympy_values(state: dict, positions: list[int]) -> tuple[list[float], float]:
    """The plain derivatives at the case's point (30 digits), for a few flat positions, and
    the seconds per derivative that took."""
    sp = state["sp"]
    t0 = time.perf_counter()
    inputs, _ = case_data(state["key"])
    flat = np.concatenate([v.reshape(-1) for v in inputs.values()])
    subs = {s: sp.Float(float(v), 30) for s, v in zip(state["syms"], flat)}
    vals = [float(state["derivs"][p].xreplace(subs).evalf(30)) for p in positions]
    return vals, (time.perf_counter() - t0) / len(positions)


# ---------------------------------------------------------------------------------------
# the run


@dataclass
class CaseResult:
    key: str
    plain: dict | None = None          # _sympy_plain's answer
    plain_note: str = ""               # "> timeout" / error text
    spot: str = ""
    cold: dict[str, list[float]] = field(default_factory=dict)
    imports: dict[str, list[float]] = field(default_factory=dict)
    warm: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[float]] = field(default_factory=dict)
    backends: dict[str, set] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    warm_inner: int = 1


def run_plain(res: CaseResult, timeout: float, expand: bool, tape: np.ndarray | None) -> None:
    w = None
    try:
        w = Worker(_sympy_setup, timeout=60)
        t0 = time.perf_counter()
        try:
            res.plain = w.call(_sympy_plain, res.key, expand, timeout=timeout)
        except WorkerTimeout:
            res.plain_note = f"> {timeout:g} s (timeout)"
            return
        spent = time.perf_counter() - t0
        if tape is None:
            res.spot = "not checked (no tape gradient)"
            return
        positions = sorted(np.random.default_rng(7).choice(tape.size, 3, replace=False).tolist())
        try:
            vals, per = w.call(_sympy_values, positions, timeout=max(10.0, min(30.0, spent)))
        except WorkerTimeout:
            res.spot = "evaluating 3 derivatives at the point timed out"
            return
        errs = [abs(v - tape[p]) / max(1.0, abs(tape[p])) for v, p in zip(vals, positions)]
        worst = max(errs)
        res.spot = (f"{'ok' if worst <= GRAD_TOL else 'MISMATCH'} ({worst:.1e}) at flat "
                    f"entries {positions}; evaluating one derivative there (xreplace + evalf, "
                    f"30 digits) took {_fmt_s(per)}, not included above")
    except (WorkerError, WorkerTimeout) as e:
        res.plain_note = f"error: {e}"
    finally:
        if w is not None:
            w.stop()


def run_cold(res: CaseResult, rounds: int, src: str | None) -> None:
    """One fresh process per sample, the backends alternating (order flipping each round)."""
    names = list(CONTENDERS)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            if name in res.failures:
                continue
            w = None
            try:
                w = Worker(_vg_setup, src, env={BACKEND_ENV: CONTENDERS[name]}, timeout=300)
                w.call(_vg_build, res.key)
                t, t_imp, err, be, preloaded = w.call(_vg_cold)
                res.cold.setdefault(name, []).append(t)
                res.imports.setdefault(name, []).append(t_imp)
                res.errors.setdefault(name, []).append(err)
                res.backends.setdefault(name, set()).add(
                    be + (" (SymPy already imported: cold figure too low)" if preloaded else ""))
            except (WorkerError, WorkerTimeout) as e:
                res.failures[name] = str(e)
            finally:
                if w is not None:
                    w.stop()


class _WarmRunner:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def run(self, inner: int, settle: int) -> tuple[float, float]:
        return self.worker.call(_vg_warm, inner, settle)


def run_warm(res: CaseResult, workers: dict[str, Worker], rounds: int) -> np.ndarray | None:
    """Warm timings in the long-lived workers; returns the tape gradient (flat)."""
    tape = None
    runners = {}
    slowest = 0.0
    for name, w in workers.items():
        if name in res.failures:
            continue
        try:
            w.call(_vg_build, res.key)
            w.call(_vg_check)                  # first one for this shape: fills the cache
            err, secs = w.call(_vg_check)      # the warm gradient, checked before timing
            res.errors.setdefault(name, []).append(err)
            slowest = max(slowest, secs)
            if tape is None:
                tape = w.call(_vg_tape)
            runners[name] = _WarmRunner(w)
        except (WorkerError, WorkerTimeout) as e:
            res.failures[name] = str(e)
    if not runners:
        return tape
    res.warm_inner = max(1, min(50, int(0.05 / max(slowest, 1e-6))))
    times, _ = _harness.alternate(runners, rounds, res.warm_inner, settle=1)
    res.warm = times
    return tape


def _fmt_s(s: float) -> str:
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 0.01:
        return f"{s * 1e3:.0f} ms"
    return f"{s * 1e3:.1f} ms"


def _fmt_x(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _iqr(xs: list[float]) -> str:
    if len(xs) < 2:
        return ""
    q = statistics.quantiles(sorted(xs), n=4)
    return f"{_fmt_s(q[0])}-{_fmt_s(q[2])}"


def report(results: list[CaseResult], timeout: float) -> tuple[list[tuple], list[str]]:
    rows: list[tuple] = []
    notes: list[str] = []
    for res in results:
        label = LABELS[res.key]
        p = res.plain
        if p is not None:
            rows.append((label, PLAIN, _fmt_s(p["total"]), _fmt_s(p["import"]), "", "",
                         "1.00x (baseline)", "", "", ""))
            notes.append(f"{label}: plain = import {_fmt_s(p['import'])} + build "
                         f"{_fmt_s(p['build'])} + diff {_fmt_s(p['diff'])} ({p['symbols']} "
                         f"symbols, expression of {p['ops']} operations); vs tape: {res.spot}")
        else:
            rows.append((label, PLAIN, res.plain_note or "not run", "", "", "", "baseline", "",
                         "", ""))
        for name in CONTENDERS:
            if name in res.failures and name not in res.cold:
                rows.append((label, name, "error", "", "", "", "", "", "",
                             f"ERROR {res.failures[name]}"))
                continue
            cold, warm = res.cold.get(name, []), res.warm.get(name, [])
            c = median(cold) if cold else None
            wm = median(warm) if warm else None
            imp = median(res.imports[name]) if res.imports.get(name) else None
            errs = res.errors.get(name, [])
            worst = max(errs) if errs else float("nan")
            mismatch = "" if errs and worst <= GRAD_TOL else f" (gradients MISMATCH {worst:.1e})"
            under = ("met" if c < TARGET_SECONDS else "NOT met") if c is not None else "n/a"
            x_cold = x_warm = ""
            fast = "n/a"
            if c is not None and p is not None:
                x = p["total"] / c
                x_cold = _fmt_x(x)
                fast = "met" if x >= TARGET_SPEEDUP else "NOT met"
                if wm is not None:
                    x_warm = _fmt_x((p["build"] + p["diff"]) / wm)
            elif c is not None and res.plain_note.startswith(">"):
                x_cold = f"> {_fmt_x(timeout / c)}"
                fast = "n/a (plain timed out)"
                if wm is not None:
                    x_warm = f"> {_fmt_x(timeout / wm)}"
            rows.append((label, name, _fmt_s(c) if c is not None else "-",
                         _fmt_s(imp) if imp is not None else "", _iqr(cold),
                         _fmt_s(wm) if wm is not None else "-", x_cold, x_warm,
                         under + mismatch, fast + mismatch))
        parts = []
        for name in CONTENDERS:
            errs = res.errors.get(name, [])
            if errs:
                be = ", ".join(sorted(res.backends.get(name, set()))) or "?"
                parts.append(f"{name} {'ok' if max(errs) <= GRAD_TOL else 'MISMATCH'} "
                             f"({max(errs):.1e}; differentiated by {be})")
            if name in res.failures:
                parts.append(f"{name} failed: {res.failures[name]}")
        notes.append(f"{label}: exact gradient vs tape (every sample): " + ", ".join(parts)
                     + f"; cold {len(res.cold.get(AUTO, []))} fresh processes per backend, "
                       f"warm {len(res.warm.get(AUTO, []))} rounds x {res.warm_inner} calls")
    return rows, notes


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 cold process per backend, 3 warm rounds, 5 s timeout")
    p.add_argument("--rounds", type=int, default=None,
                   help="cold processes per backend (default 5; the warm rounds are 4x this)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds for plain sympy.diff per case (default 60, --quick 5)")
    p.add_argument("--only", default="abc,lse,mlp", help="comma-separated subset of: abc, lse, mlp")
    p.add_argument("--expand", action="store_true",
                   help="apply sympy.expand to the plain expression before differentiating")
    p.add_argument("--no-plain", action="store_true", help="skip plain sympy.diff")
    p.add_argument("--src", default=None,
                   help="directory containing the verigrad package to measure (default: this "
                        "checkout)")
    args = p.parse_args(argv)

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - set(LABELS)
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}; choose from {', '.join(LABELS)}")
        return 0
    cold_rounds = 1 if args.quick else 5
    if args.rounds is not None:
        cold_rounds = max(1, args.rounds)
    warm_rounds = 3 if args.quick else 4 * cold_rounds
    timeout = args.timeout if args.timeout is not None else (5.0 if args.quick else 60.0)
    src = str(Path(args.src).resolve()) if args.src else None
    if src and not (Path(src) / "verigrad" / "__init__.py").is_file():
        print(f"--src {args.src}: no verigrad package in that directory")
        return 0

    print(f"verigrad symbolic benchmarks: {cpu_name()}, {os.cpu_count()} logical CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}, sympy "
          f"{_version('sympy')}, symengine {_version('symengine')}, mpmath {_version('mpmath')}")
    print(f"verigrad from {Path(src) / 'verigrad' if src else _harness.ROOT / 'verigrad'}")
    print("time to the exact gradient. verigrad = ExactGraph(output).gradient(): cold = first "
          "call in a fresh process (empty rule cache; the first import of SymPy, and SymEngine "
          "for auto, included and shown), warm = median over alternating rounds with the rule "
          "cache warm (a fresh ExactGraph per call). plain = import sympy + build the whole "
          "expression + sympy.diff w.r.t. every input, in a fresh process killed after "
          f"{timeout:g} s" + (" (sympy.expand applied)" if args.expand else "")
          + ". speedup cold = plain / verigrad cold; speedup warm = plain without its import / "
          "verigrad warm")
    print()

    t_start = time.perf_counter()
    results: list[CaseResult] = []
    workers: dict[str, Worker] = {}
    notes: list[str] = []
    try:
        for name, be in CONTENDERS.items():
            try:
                workers[name] = Worker(_vg_setup, src, env={BACKEND_ENV: be}, timeout=300)
            except (WorkerError, WorkerTimeout) as e:
                notes.append(f"{name}: warm worker failed to start: {e}")
        for key in wanted:
            res = CaseResult(key)
            results.append(res)
            try:
                run_cold(res, cold_rounds, src)
                tape = run_warm(res, {n: w for n, w in workers.items()}, warm_rounds)
                if args.no_plain:
                    res.plain_note = "skipped (--no-plain)"
                else:
                    run_plain(res, timeout, args.expand, tape)
            except Exception as e:  # noqa: BLE001 - a report: keep going
                res.failures.setdefault(AUTO, f"{type(e).__name__}: {e}")
    finally:
        for w in workers.values():
            w.stop()
    head = ("case", "contender", "cold (median)", "of which imports", "cold IQR",
            "warm (median)", "speedup cold", "speedup warm", "target < 2 s cold",
            "target >= 50x plain")
    rows, case_notes = report(results, timeout)
    _harness.print_table(head, rows)
    print()
    for note in case_notes + notes:
        print(f"  {note}")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
