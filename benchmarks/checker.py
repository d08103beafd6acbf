"""Checker benchmarks: vg.check against torch.autograd.gradcheck, from one run.

    python benchmarks/checker.py             # default run (~1.5 min)
    python benchmarks/checker.py --quick     # smoke run (~15 s; 1 timed round per workload)
    python benchmarks/checker.py --only tanh1000 --rounds 9
    python benchmarks/checker.py --profile tanh1000   # where vg.check's time goes

Speed (issue 4): the time of one full gradient check on correct functions,
  tanhN     f(x) = sum(tanh(A @ x)), A a fixed random n x n float64 matrix captured by the
            closure (scaled by 1/sqrt(n) so tanh is not saturated), x random; n = 10, 100, 1000
  mlp       a 2-layer MLP loss as a function of its weights: batch 16, 8->16->1, tanh, mean
            squared error; inputs W1, b1, W2, b2 (161 numbers), data X, Y captured
for
  vg.check(f, x)              verigrad's default (nearby=3: the point plus three seeded
                              nearby points)
  vg.check(f, x, nearby=0)    the given point only
  torch gradcheck (slow)      torch.autograd.gradcheck on the same function in torch, float64
                              inputs with requires_grad=True: the baseline
  torch gradcheck (fast)      the same with fast_mode=True
Each contender kind (verigrad, torch) runs in a worker process of its own, one at a time.
Each contender is called once untimed when it is built (the first call pays SymPy's import
and the rule cache; shown in the notes), then the rounds alternate the contenders, the order
flipping every round, one timed call per contender per round (calls take 10 ms to seconds,
so no further settling call). Ratios are medians of per-round ratios against torch's slow
mode. The verdict column is each checker's answer on these correct functions (anything but
a pass is a false alarm).

Catches: a few wrong backward rules, each implemented both as a ``vg.Function`` and as a
``torch.autograd.Function`` with the same numpy math, checked once by each checker (torch
with default tolerances): which of them flag it. verigrad is shown with the Function's
``symbolic`` mirror (its exact reference) and without one (finite differences only), and
with nearby=0. A correct rule and a sign flip are controls.

Target (issue 4): at n = 1000, vg.check (default) faster than torch's slow mode, while
catching strictly more. This is a report, not a test: it always exits 0.

Scale (issue 14), ``--only scale`` (also part of the default run with ``--scale``):
    python benchmarks/checker.py --only scale                      # this checkout
    python benchmarks/checker.py --only scale --baseline DIR       # and DIR's verigrad beside
each row runs in a fresh process (``--scale-child KEY``), so its peak memory (ru_maxrss) is
its own; time is wall and CPU seconds of the work itself (imports excluded), the result
column what the check answered. Rows: deep chains (``z = tanh(z) * 1.5``, 2 ops per step)
through vg.check; ``vg.symbolic_grad`` on a 200-op chain; ``verigrad report`` on a 199-deep
expression; exp towers; a custom elementwise Function whose backward is wrong in one entry
(n // 3), to be found by index, the same Function correct, and built-in ops on 1e6 entries
(sum(sin(x) * exp(-x*x))); warm small checks (median of 20 calls): w*x+b and a
10-element custom Function with a symbolic mirror. Targets: 1e5 ops < 60 s and < 1 GB; 1e6
elements < 10 s and < 500 MB; no RecursionError or leaked Python limit anywhere; w*x+b
< 2 ms, the Function < 5 ms. Rows over ``--scale-timeout`` seconds (default 300) say so.
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
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

VG3 = "vg.check (nearby=3, default)"
VG0 = "vg.check (nearby=0)"
TORCH_SLOW = "torch gradcheck (slow)"
TORCH_FAST = "torch gradcheck (fast_mode)"
CONTENDERS = {VG3: "verigrad", VG0: "verigrad", TORCH_SLOW: "torch", TORCH_FAST: "torch"}
BASELINE = TORCH_SLOW
TARGET_WORKLOAD = "tanh1000"

WORKLOADS = {
    "tanh10": "sum(tanh(A@x)), n=10",
    "tanh100": "sum(tanh(A@x)), n=100",
    "tanh1000": "sum(tanh(A@x)), n=1000",
    "mlp": "MLP loss 16x8->16->1 (161 weights)",
}


# ---------------------------------------------------------------------------------------
# the functions: the same seeded data for both libraries


def workload_data(key: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """(inputs to check, captured constants)."""
    if key.startswith("tanh"):
        n = int(key[4:])
        rng = np.random.default_rng(n)
        return [rng.standard_normal(n)], {"A": rng.standard_normal((n, n)) / np.sqrt(n)}
    if key == "mlp":
        rng = np.random.default_rng(16)
        consts = {"X": rng.standard_normal((16, 8)), "Y": rng.standard_normal((16, 1))}
        inputs = [rng.standard_normal((8, 16)) / np.sqrt(8.0), 0.1 * rng.standard_normal(16),
                  rng.standard_normal((16, 1)) / 4.0, 0.1 * rng.standard_normal(1)]
        return inputs, consts
    raise KeyError(key)


def verigrad_fn(vg: Any, key: str) -> tuple[Callable, list[np.ndarray]]:
    inputs, consts = workload_data(key)
    c = {k: vg.tensor(v, dtype=vg.float64) for k, v in consts.items()}
    if key.startswith("tanh"):
        A = c["A"]

        def f(x):
            return vg.tanh(A @ x).sum()
    else:
        X, Y = c["X"], c["Y"]

        def f(W1, b1, W2, b2):
            return ((vg.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2).mean()
    return f, inputs


def torch_fn(torch: Any, key: str) -> tuple[Callable, tuple]:
    inputs, consts = workload_data(key)
    c = {k: torch.from_numpy(v) for k, v in consts.items()}
    args = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in inputs)
    if key.startswith("tanh"):
        A = c["A"]

        def f(x):
            return torch.tanh(A @ x).sum()
    else:
        X, Y = c["X"], c["Y"]

        def f(W1, b1, W2, b2):
            return ((torch.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2).mean()
    return f, args


# ---------------------------------------------------------------------------------------
# wrong backward rules: numpy math shared by a vg.Function and a torch.autograd.Function

CATCH_N = 8           # entries of the elementwise mutants' input
CATCH_M = 4           # the symmetric matrix is CATCH_M x CATCH_M


def _tanh_back(scale: Any = 1.0, add: float = 0.0) -> Callable:
    return lambda g, x: g * (1.0 - np.tanh(x) ** 2) * scale + add


def _one_entry() -> np.ndarray:
    w = np.ones(CATCH_N)
    w[CATCH_N // 2] = 1.0 + 1e-3
    return w


def _square_back_transposed(g: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (g @ m.T + m.T @ g).T     # the right rule without .T


def _square_mirror(m: Any) -> Any:
    return m.dot(m)


# name -> (what is wrong, forward, backward, kind of mirror, input kind)
MUTANTS: dict[str, tuple[str, Callable, Callable, str, str]] = {
    "correct (control)": ("tanh, right backward", np.tanh, _tanh_back(), "tanh", "vector"),
    "sign flip (control)": ("tanh, backward negated", np.tanh, _tanh_back(-1.0), "tanh",
                            "vector"),
    "scale 1+1e-4": ("tanh, backward x (1 + 1e-4)", np.tanh, _tanh_back(1.0 + 1e-4), "tanh",
                     "vector"),
    "one wrong entry": (f"tanh, entry {CATCH_N // 2} of {CATCH_N} x (1 + 1e-3)", np.tanh,
                        _tanh_back(_one_entry()), "tanh", "vector"),
    "transposed at symmetric": (f"M @ M at a symmetric {CATCH_M}x{CATCH_M} M, gradient "
                                f"transposed", lambda m: m @ m, _square_back_transposed,
                                "square", "symmetric"),
    "additive constant 1e-6": ("tanh, backward + 1e-6", np.tanh, _tanh_back(add=1e-6), "tanh",
                               "vector"),
}


def mutant_input(kind: str) -> np.ndarray:
    rng = np.random.default_rng(42)
    if kind == "vector":
        return rng.standard_normal(CATCH_N)
    b = rng.standard_normal((CATCH_M, CATCH_M))
    return (b + b.T) / 2.0


def vg_function(vg: Any, name: str, mirror: bool) -> Any:
    _, fwd_np, back_np, kind, _ = MUTANTS[name]

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return vg.tensor(fwd_np(x.numpy()), dtype=vg.float64)

    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return vg.tensor(back_np(grad.numpy(), x.numpy()), dtype=vg.float64)

    ns: dict[str, Any] = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    if mirror:
        import sympy

        ns["symbolic"] = staticmethod(sympy.tanh if kind == "tanh" else _square_mirror)
    cls_name = "".join(w.capitalize() for w in name.replace("(", "").replace(")", "")
                       .replace("+", "").replace("-", "").split())
    return type(f"{cls_name}{'' if mirror else 'NoMirror'}", (vg.Function,), ns)


def torch_function(torch: Any, name: str) -> Any:
    _, fwd_np, back_np, _, _ = MUTANTS[name]

    class Mutant(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.from_numpy(np.asarray(fwd_np(x.detach().numpy()), dtype=np.float64))

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return torch.from_numpy(np.asarray(back_np(grad.detach().numpy(), x.detach().numpy()),
                                               dtype=np.float64))

    return Mutant


# ---------------------------------------------------------------------------------------
# worker functions (module level: they are sent to worker processes by reference)


def _setup(kind: str, src: str | None) -> dict:
    if kind == "verigrad":
        return {"vg": _harness.import_verigrad(src), "steps": {}}
    torch, note = _harness.import_torch(True)
    if torch is None:
        raise RuntimeError(f"torch {note}")
    return {"torch": torch, "steps": {}}


def _make_step(state: dict, key: str, contender: str) -> Callable[[], str]:
    """A zero-argument call of the contender's check on the workload; returns its verdict."""
    if contender in (VG3, VG0):
        vg = state["vg"]
        f, inputs = verigrad_fn(vg, key)
        nearby = 3 if contender == VG3 else 0

        def step() -> str:
            return vg.check(f, *inputs, nearby=nearby).verdict

        return step
    torch = state["torch"]
    f, args = torch_fn(torch, key)
    fast = contender == TORCH_FAST

    def torch_step() -> str:
        ok = torch.autograd.gradcheck(f, args, fast_mode=fast, raise_exception=False)
        return "pass" if ok else "fail"

    return torch_step


def _build(state: dict, key: str, contender: str) -> tuple[float, str]:
    """Build the contender's step and call it once (untimed for the rounds): (seconds of
    that first call, verdict)."""
    step = _make_step(state, key, contender)
    t0 = time.perf_counter()
    verdict = step()
    t = time.perf_counter() - t0
    state["steps"][contender] = step
    return t, verdict


def _run(state: dict, contender: str, inner: int, settle: int) -> tuple[float, float, str]:
    step = state["steps"][contender]
    verdicts = []

    def call() -> None:
        verdicts.append(step())

    t, faults = _harness.time_calls(call, inner, settle)
    return t, faults, ",".join(sorted(set(verdicts)))


def _catch(state: dict, name: str, how: str) -> tuple[str, float]:
    """One check of a mutant: (verdict and a short reason, seconds)."""
    _, _, _, _, kind = MUTANTS[name]
    x = mutant_input(kind)
    t0 = time.perf_counter()
    if how.startswith("verigrad"):
        vg = state["vg"]
        F = vg_function(vg, name, mirror="no mirror" not in how)
        nearby = 0 if "nearby=0" in how else 3
        report = vg.check(lambda t: F.apply(t).sum(), x, nearby=nearby)
        t = time.perf_counter() - t0
        verdict = report.verdict
        where = [p.index for p in report.points if p.verdict == "fail"]
        detail = ""
        if verdict == "fail":
            if report.contract:
                detail = "contract"
            elif where and where != [0]:
                detail = "nearby pt" if 0 not in where else ""
        return verdict + (f" ({detail})" if detail else ""), t
    torch = state["torch"]
    F = torch_function(torch, name)
    arg = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ok = torch.autograd.gradcheck(lambda t: F.apply(t).sum(), (arg,),
                                  fast_mode="fast" in how, raise_exception=False)
    return ("pass" if ok else "fail"), time.perf_counter() - t0


CATCHERS = {
    "verigrad (mirror)": "verigrad",
    "verigrad (mirror, nearby=0)": "verigrad",
    "verigrad (no mirror)": "verigrad",
    "torch (slow)": "torch",
    "torch (fast)": "torch",
}


# ---------------------------------------------------------------------------------------
# the run


@dataclass
class Timing:
    key: str
    times: dict[str, list[float]] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, set] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class _Runner:
    def __init__(self, worker: Worker, contender: str, res: Timing) -> None:
        self.worker, self.contender, self.res = worker, contender, res

    def run(self, inner: int, settle: int) -> tuple[float, float]:
        t, faults, verdicts = self.worker.call(_run, self.contender, inner, settle)
        self.res.verdicts.setdefault(self.contender, set()).update(verdicts.split(","))
        return t, faults


def time_workload(key: str, workers: dict[str, Worker], rounds: int) -> Timing:
    res = Timing(key)
    runners = {}
    for name, kind in CONTENDERS.items():
        if kind not in workers:
            continue
        try:
            t, verdict = workers[kind].call(_build, key, name)
            res.first[name] = t
            res.verdicts.setdefault(name, set()).add(verdict)
            runners[name] = _Runner(workers[kind], name, res)
        except (WorkerError, WorkerTimeout) as e:
            res.failures[name] = str(e)
    if runners:
        res.times, _ = _harness.alternate(runners, rounds, inner=1, settle=0)
    return res


def _fmt_s(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 0.01:
        return f"{s * 1e3:.0f} ms"
    return f"{s * 1e3:.1f} ms"


def timing_rows(results: list[Timing], torch_note: str) -> tuple[list[tuple], list[str]]:
    rows, notes = [], []
    for res in results:
        label = WORKLOADS[res.key]
        for name in CONTENDERS:
            if name in res.failures:
                rows.append((label, name, "error", "", "", "", "",
                             f"ERROR {res.failures[name]}"))
                continue
            if name not in res.times:
                continue
            verdicts = res.verdicts.get(name, set())
            verdict = "/".join(sorted(verdicts))
            if verdict != "pass":
                verdict += " (FALSE ALARM: the function is correct)"
            med = _fmt_s(median(res.times[name]))
            ratio = spread = target = met = ""
            if name == BASELINE:
                ratio = "1.00x (baseline)"
            elif BASELINE in res.times:
                r, lo, hi = _harness.paired_ratio(res.times, name, BASELINE)
                ratio = f"{r:.2f}x"
                spread = f"{lo:.2f}-{hi:.2f}" if len(res.times[name]) > 1 else ""
                if res.key == TARGET_WORKLOAD and name in (VG3, VG0):
                    target = "< 1.0x torch slow" + (" (info)" if name == VG0 else "")
                    met = "met" if r < 1.0 else "NOT met"
            elif res.key == TARGET_WORKLOAD and name in (VG3, VG0):
                target = "< 1.0x torch slow"
                met = f"n/a (no torch: {torch_note})"
            rows.append((label, name, med, ratio, spread, verdict, target, met))
        firsts = ", ".join(f"{n} {_fmt_s(t)}" for n, t in res.first.items())
        notes.append(f"{label}: first (untimed) call in the worker: {firsts}; "
                     f"{len(next(iter(res.times.values()), []))} timed rounds")
    return rows, notes


def run_catches(workers: dict[str, Worker]) -> tuple[list[tuple], dict[str, list[float]]]:
    rows = []
    secs: dict[str, list[float]] = {}
    for name, (what, *_rest) in MUTANTS.items():
        row = [name, what]
        for how, kind in CATCHERS.items():
            if kind not in workers:
                row.append("n/a")
                continue
            try:
                verdict, t = workers[kind].call(_catch, name, how)
                secs.setdefault(how, []).append(t)
            except (WorkerError, WorkerTimeout) as e:
                verdict = f"error: {e}"
            row.append(verdict)
        rows.append(tuple(row))
    return rows, secs


def _caught_summary(rows: list[tuple]) -> list[str]:
    """How many wrong rules each checker flags, whether verigrad's set strictly contains
    torch slow mode's, and any false alarm on the correct control."""
    cols = list(CATCHERS)
    wrong = [r for r in rows if r[0] != "correct (control)"]
    correct = [r for r in rows if r[0] == "correct (control)"]
    caught = {c: {r[0] for r in wrong if r[2 + i].startswith("fail")} for i, c in enumerate(cols)}
    have = {c for i, c in enumerate(cols) if all(r[2 + i] != "n/a" for r in rows)}
    lines = [", ".join(f"{c} flags {len(caught[c])}/{len(wrong)}" for c in cols if c in have)]
    if {"verigrad (mirror)", "torch (slow)"} <= have:
        vg, tc = caught["verigrad (mirror)"], caught["torch (slow)"]
        verdict = "strictly more than" if tc < vg else "NOT strictly more than"
        extra = f" (only torch: {', '.join(sorted(tc - vg))})" if tc - vg else ""
        lines.append(f"verigrad (mirror) catches {verdict} torch slow mode{extra}")
    false = [c for i, c in enumerate(cols) if c in have and correct
             and not correct[0][2 + i].startswith("pass")]
    if false:
        lines.append(f"no pass on the correct control: {', '.join(false)}")
    return lines


def profile_check(key: str, src: str | None, nearby: int = 3, top: int = 25) -> None:
    """cProfile of one vg.check call on a workload (after one warm-up call), in this process."""
    import cProfile
    import pstats

    vg = _harness.import_verigrad(src)
    f, inputs = verigrad_fn(vg, key)
    vg.check(f, *inputs, nearby=nearby)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    report = vg.check(f, *inputs, nearby=nearby)
    prof.disable()
    print(f"vg.check on {WORKLOADS[key]} (nearby={nearby}): {time.perf_counter() - t0:.2f} s "
          f"under the profiler, verdict {report.verdict}\n")
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


# ---------------------------------------------------------------------------------------
# scale (issue 14): one fresh process per row


def _chain(vg: Any, n: int) -> Callable:
    def f(x):
        z = x
        for _ in range(n // 2):
            z = vg.tanh(z) * 1.5
        return z
    return f


def _one_wrong(vg: Any, n: int, factor: float = 1.001) -> Any:
    """An elementwise tanh Function whose backward is wrong (x ``factor``) at entry n // 3
    (``factor`` 1: a correct one)."""
    wrong = n // 3

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return vg.tensor(np.tanh(x.numpy()))

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        d = 1.0 - np.tanh(x.numpy()) ** 2
        d[wrong] *= factor
        return g * vg.tensor(d)

    return type("OneWrongTanh", (vg.Function,), {"forward": staticmethod(forward),
                                                  "backward": staticmethod(backward)})


def _scale_chain(vg: Any, n: int) -> str:
    r = vg.check(_chain(vg, n), 0.3)
    return f"{r.verdict}, {len(r.nodes)} nodes checked"


def _scale_symbolic(vg: Any, n: int) -> str:
    x = vg.tensor(0.3, requires_grad=True, name="x")
    try:
        vg.symbolic_grad(_chain(vg, n)(x), x)
        return "closed form"
    except RecursionError:
        return "RecursionError"
    except ValueError as e:
        return f"{type(e).__name__}: {str(e)[:60]}"


def _scale_report(vg: Any, n: int) -> str:
    import contextlib
    import io
    import tempfile

    from verigrad.cli import main as cli

    expr = "tanh(" * n + "x" + ")" * n
    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = cli(["report", expr, "--at", "x=0.3", "--out", d])
        except RecursionError:
            return "RecursionError"
        files = sorted(os.listdir(d))
    tail = err.getvalue().strip().splitlines()[-1:] if code else []
    return f"exit {code}, files: {', '.join(files) or 'none'}" + (f" ({tail[0][:60]})"
                                                                  if tail else "")


def _scale_tower(vg: Any, n: int) -> str:
    expr = "exp(" * n + "x" + ")" * n
    try:
        r = vg.check(expr, x=10.0)
    except Exception as e:  # noqa: BLE001 - a report
        return f"{type(e).__name__}: {str(e)[:60]}"
    reasons = sorted({e.reason for e in r.entries if e.reason})
    leaked = any("digits" in t for t in r.notes + r.warnings)
    return f"{r.verdict} ({', '.join(reasons)})" + (" LEAKED a limit message" if leaked else "")


def _scale_elementwise(vg: Any, n: int) -> str:
    F = _one_wrong(vg, n)
    x = np.random.default_rng(0).standard_normal(n)
    r = vg.check(lambda t: F.apply(t).sum(), x)
    where = r.culprit.element if r.culprit else None
    ok = "found" if where == (n // 3,) else "NOT found"
    return f"{r.verdict}, wrong entry {n // 3} {ok} (culprit at {where})"


def _scale_elementwise_ok(vg: Any, n: int) -> str:
    """The same Function with a correct backward: every entry covered, no false alarm."""
    F = _one_wrong(vg, n, 1.0)
    x = np.random.default_rng(0).standard_normal(n)
    r = vg.check(lambda t: F.apply(t).sum(), x)
    return f"{r.verdict}" + ("" if r.verdict == "pass" else " (a FALSE ALARM)")


def _scale_builtin(vg: Any, n: int) -> str:
    """``sum(sin(x) * exp(-x*x))`` of built-in ops on n entries (engine.py's workload)."""
    x = np.random.default_rng(0).standard_normal(n)
    r = vg.check(lambda t: (vg.sin(t) * vg.exp(-t * t)).sum(), x)
    return f"{r.verdict}" + ("" if r.verdict == "pass" else " (a FALSE ALARM)")


def _warm(call: Callable[[], Any], rounds: int = 20) -> str:
    """Median wall time of ``rounds`` calls after two untimed ones (rule cache filled)."""
    call()
    call()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = call()
        times.append(time.perf_counter() - t0)
    return f"{r.verdict}, median {median(times) * 1e3:.1f} ms per warm check"


def _scale_small(vg: Any, n: int) -> str:
    return _warm(lambda: vg.check("w*x + b", x=2.0, w=3.0, b=1.0))


def _scale_function(vg: Any, n: int) -> str:
    """A correct custom Function with a symbolic mirror (suite.py's Cube) on n elements."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g

    cube = type("Cube", (vg.Function,), {"forward": staticmethod(forward),
                                         "backward": staticmethod(backward),
                                         "symbolic": staticmethod(lambda x: x ** 3)})
    x = np.linspace(-1, 1, n) + 0.3
    return _warm(lambda: vg.check(lambda t: cube.apply(t).sum(), x))


# key -> (what, runner, size, target)
SCALE: dict[str, tuple[str, Callable, int, str]] = {
    "chain1e3": ("chain of 1e3 ops, vg.check", _scale_chain, 1_000, ""),
    "chain1e4": ("chain of 1e4 ops, vg.check", _scale_chain, 10_000, ""),
    "chain1e5": ("chain of 1e5 ops, vg.check", _scale_chain, 100_000, "< 60 s, < 1 GB"),
    "symbolic200": ("vg.symbolic_grad, 200-op chain", _scale_symbolic, 200, "no RecursionError"),
    "report199": ("verigrad report, tanh nested 199 deep", _scale_report, 199, "writes files"),
    "exp3": ("exp(exp(exp(x))) at x=10", _scale_tower, 3, "seconds, no leak"),
    "exp4": ("exp(exp(exp(exp(x)))) at x=10", _scale_tower, 4, "no error"),
    "elem1e4": ("elementwise Function, 1e4, one wrong entry", _scale_elementwise, 10_000, ""),
    "elem1e5": ("elementwise Function, 1e5, one wrong entry", _scale_elementwise, 100_000, ""),
    "elem1e6": ("elementwise Function, 1e6, one wrong entry", _scale_elementwise, 1_000_000,
                "< 10 s, < 500 MB"),
    "elemok1e6": ("elementwise Function, 1e6, correct", _scale_elementwise_ok, 1_000_000,
                  "< 10 s, < 500 MB"),
    "builtin1e6": ("sum(sin(x) * exp(-x*x)), 1e6 entries", _scale_builtin, 1_000_000,
                   "< 10 s, < 500 MB"),
    "small": ("warm vg.check('w*x + b')", _scale_small, 0, "< 2 ms"),
    "func10": ("warm vg.check of a 10-element custom Function", _scale_function, 10, "< 5 ms"),
}


def _scale_child(key: str, src: str | None) -> None:
    """Run one scale row in this (fresh) process and print its JSON result line."""
    import json
    import resource

    vg = _harness.import_verigrad(src)
    _, fn, size, _ = SCALE[key]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        result = fn(vg, size)
    except MemoryError:
        result = "MemoryError"
    except RecursionError:
        result = "RecursionError"
    except Exception as e:  # noqa: BLE001 - a report
        result = f"{type(e).__name__}: {str(e)[:80]}"
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print("SCALE " + json.dumps({"wall": wall, "cpu": cpu, "rss_mb": rss, "result": result}))


def _scale_run(key: str, src: str | None, timeout: float) -> dict:
    import json
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--scale-child", key]
    if src:
        cmd += ["--src", src]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"result": f"> {timeout:.0f} s (timeout)"}
    for line in p.stdout.splitlines():
        if line.startswith("SCALE "):
            return json.loads(line[6:])
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"result": f"crashed (exit {p.returncode}): {err[:80]}"}


def scale_rows(keys: list[str], src: str | None, baseline: str | None, timeout: float
               ) -> list[tuple]:
    rows = []
    for key in keys:
        what, _, _, target = SCALE[key]
        for label, where in ([("baseline", baseline)] if baseline else []) + [("this", src)]:
            r = _scale_run(key, where, timeout)
            t = f"{_fmt_s(r['wall'])} (cpu {_fmt_s(r['cpu'])})" if "wall" in r else "-"
            mem = f"{r['rss_mb']:.0f} MB" if "rss_mb" in r else "-"
            rows.append((what, label, t, mem, r["result"], target))
    return rows


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 timed round per workload")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds per workload (default: tanh10/tanh100 30, tanh1000/mlp 15)")
    p.add_argument("--only", default="tanh10,tanh100,tanh1000,mlp,catches",
                   help="comma-separated subset of: tanh10, tanh100, tanh1000, mlp, catches")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    p.add_argument("--profile", metavar="WORKLOAD", default=None,
                   help="instead of the benchmark, profile one vg.check call on WORKLOAD")
    p.add_argument("--src", default=None,
                   help="directory containing the verigrad package to measure (default: this "
                        "checkout)")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="scale rows: also run the verigrad package found in DIR (e.g. an "
                        "export of main), row by row beside this one")
    p.add_argument("--scale-timeout", type=float, default=300.0,
                   help="scale rows: seconds before a row is stopped (default 300)")
    p.add_argument("--scale-rows", default=",".join(SCALE),
                   help=f"scale rows to run (default all: {', '.join(SCALE)})")
    p.add_argument("--scale-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    src = str(Path(args.src).resolve()) if args.src else None
    if args.scale_child:
        _scale_child(args.scale_child, src)
        return 0
    if src and not (Path(src) / "verigrad" / "__init__.py").is_file():
        print(f"--src {args.src}: no verigrad package in that directory")
        return 0

    if args.profile:
        if args.profile not in WORKLOADS:
            print(f"unknown workload {args.profile}; choose from {', '.join(WORKLOADS)}")
            return 0
        try:
            profile_check(args.profile, src)
        except Exception as e:  # noqa: BLE001 - a report
            print(f"profile failed: {type(e).__name__}: {e}")
        return 0

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - set(WORKLOADS) - {"catches", "scale"}
    if unknown:
        print(f"unknown workload(s): {', '.join(sorted(unknown))}; choose from "
              f"{', '.join(WORKLOADS)}, catches")
        return 0
    plan = {"tanh10": 30, "tanh100": 30, "tanh1000": 15, "mlp": 15}
    if args.quick:
        plan = {k: 1 for k in plan}
    if args.rounds is not None:
        plan = {k: max(1, args.rounds) for k in plan}

    torch_note = "disabled (--no-torch)" if args.no_torch else f"{_version('torch')}"
    print(f"verigrad checker benchmarks: {cpu_name()}, {os.cpu_count()} logical CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch_note}; "
          f"one thread per library")
    print(f"verigrad from {Path(src) / 'verigrad' if src else _harness.ROOT / 'verigrad'}")
    print("one full gradient check per call on correct functions; medians over alternating "
          "rounds; ratio = median over rounds of (contender / torch gradcheck slow mode in the "
          "same round); IQR = interquartile range of those ratios; each library in its own "
          "worker process")
    print()

    t_start = time.perf_counter()
    workers: dict[str, Worker] = {}
    setup_notes: list[str] = []
    kinds = ["verigrad"] + ([] if args.no_torch else ["torch"])
    for kind in kinds:
        try:
            workers[kind] = Worker(_setup, kind, src, timeout=600)
        except (WorkerError, WorkerTimeout) as e:
            setup_notes.append(f"{kind} worker unavailable: {e}")
            if kind == "torch":
                torch_note = str(e)
    results: list[Timing] = []
    catch_rows: list[tuple] = []
    catch_secs: dict[str, list[float]] = {}
    try:
        for key in WORKLOADS:
            if key in wanted:
                try:
                    results.append(time_workload(key, workers, plan[key]))
                except Exception as e:  # noqa: BLE001 - a report: keep going
                    res = Timing(key)
                    res.failures[VG3] = f"{type(e).__name__}: {e}"
                    results.append(res)
        if "catches" in wanted:
            try:
                catch_rows, catch_secs = run_catches(workers)
            except Exception as e:  # noqa: BLE001
                setup_notes.append(f"catches failed: {type(e).__name__}: {e}")
    finally:
        for w in workers.values():
            w.stop()

    if results:
        rows, notes = timing_rows(results, torch_note)
        head = ("workload", "checker", "median", "ratio vs torch slow", "ratio IQR",
                "verdict", "target", "status")
        _harness.print_table(head, rows)
        print()
        for note in notes:
            print(f"  {note}")
        print()
    if "scale" in wanted:
        keys = [k.strip() for k in args.scale_rows.split(",") if k.strip() in SCALE]
        base = str(Path(args.baseline).resolve()) if args.baseline else None
        print("scale (issue 14): one fresh process per row; wall and CPU time of the work, "
              "peak resident memory of the process" + (f"; baseline = {base}" if base else ""))
        print()
        _harness.print_table(("workload", "verigrad", "time", "peak memory", "result",
                              "target"), scale_rows(keys, src, base, args.scale_timeout))
        print()
    if catch_rows:
        print(f"catches: does the checker flag a wrong backward rule? (one check each; "
              f"elementwise inputs of {CATCH_N} entries)")
        print()
        head = ("mutant", "what is wrong") + tuple(CATCHERS)
        _harness.print_table(head, catch_rows, group=None)
        print()
        for line in _caught_summary(catch_rows):
            print(f"  {line}")
        if catch_secs:
            print("  seconds per check: " + ", ".join(
                f"{h} {_fmt_s(median(s))}" for h, s in catch_secs.items()))
        print("  (contract) = verigrad found it with its backward contract check (a zero "
              "cotangent must give zero gradients); (nearby pt) = found only at a seeded nearby "
              "point. Every function is F(x).sum(), so torch sees one cotangent (all ones); "
              "verigrad also checks each node's backward against its mirror (or finite "
              "differences) with random cotangents")
        print()
    for note in setup_notes:
        print(f"  {note}")
    print(f"total {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
