"""Engine benchmarks: verigrad against hand-written numpy and PyTorch eager, from one run.

    python benchmarks/engine.py            # default run (~25-40 s)
    python benchmarks/engine.py --quick    # smoke run (a few seconds)
    python benchmarks/engine.py --rounds 300 --only mlp,chain

Machines here are shared and noisy, so every workload alternates its contenders round by
round (the order flips every round), takes the median over many rounds, and quotes ratios
against a baseline measured in the same run: the ratio is the median of the per-round
ratios (contender time / baseline time in that round), which cancels most drift in machine
load. numpy, OpenBLAS, MKL and torch are pinned to one thread before they are imported.

Each contender (numpy, verigrad, torch) is timed in a worker process of its own, and only
one worker runs at a time. In one shared process the contenders disturb each other through
the allocator: glibc trims the heap after one contender's step and the next contender's
arrays fault fresh pages in (or the reverse), which moved ratios by up to 1.5x here. Each
sample also starts with one untimed call (the contender's own steady state, caches warm).
``--same-process`` times everything in this process instead (for profiling/debugging).

Workloads (the targets are issue 15's; the last line says how many one run met):
  mlp          one training step, batch 64, 256->512->10, tanh, MSE, float64, forward+backward;
               baseline: hand-written numpy forward+backward. Target <= 1.15x.
  chain        z = tanh(z * w + b) repeated 667 times (2,001 ops) on float64 scalars,
               forward+backward; microseconds per op; baseline: PyTorch CPU eager (skipped
               cleanly when torch is not importable). Target <= 0.5x.
  elementwise  sum(sin(x) * exp(-x*x)) on 1e6 float64 elements, forward+backward;
               baseline: hand-written numpy. Target <= 1.0x.

Before timing, every contender's loss and gradients are checked against the baseline's
(and the chain against a hand-written float reference) to 1e-10.
This is a report, not a test: it always exits 0.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# the shared harness pins every BLAS/OpenMP pool to one thread; it must be imported before
# numpy/torch (worker processes inherit the environment)
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402
from _harness import (ROOT, alternate, import_torch, import_verigrad, resource,  # noqa: E402,F401
                      time_calls as _time_calls)

import argparse  # noqa: E402
import gc  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

CHAIN_STEPS = 667            # 3 ops per step: mul, add, tanh -> 2,001 ops
CHAIN_OPS = 3 * CHAIN_STEPS
GRAD_TOL = 1e-10

NUMPY = "numpy (hand-written)"
VERIGRAD = "verigrad"
TORCH = "torch eager"
TORCH_INFO = "torch eager (info)"
REFERENCE = "_reference"     # checked against, never timed


def _kind(contender: str) -> str:
    """Which worker process runs a contender."""
    return "torch" if contender.startswith("torch") else (
        "verigrad" if contender == VERIGRAD else "numpy")


# ---------------------------------------------------------------------------------------
# workloads: ``build(vg, torch)`` returns ({contender: factory}, baseline). A factory makes
# the contender's step function; a step returns (loss, gradients as numpy arrays). vg and
# torch may be None when the caller only needs the other contenders.


def mlp_workload(vg: Any, torch: Any, seed: int = 0) -> tuple[dict[str, Callable], str]:
    rng = np.random.default_rng(seed)
    n, d_in, d_h, d_out = 64, 256, 512, 10
    X = rng.standard_normal((n, d_in))
    Y = rng.standard_normal((n, d_out))
    W1 = rng.standard_normal((d_in, d_h)) / np.sqrt(d_in)
    b1 = 0.1 * rng.standard_normal(d_h)
    W2 = rng.standard_normal((d_h, d_out)) / np.sqrt(d_h)
    b2 = 0.1 * rng.standard_normal(d_out)

    def make_numpy():
        def numpy_step():
            h = np.tanh(X @ W1 + b1)
            out = h @ W2 + b2
            diff = out - Y
            loss = np.mean(diff * diff)
            g_out = diff * (2.0 / diff.size)
            gW2 = h.T @ g_out
            gb2 = g_out.sum(axis=0)
            g_z = (g_out @ W2.T) * (1.0 - h * h)
            gW1 = X.T @ g_z
            gb1 = g_z.sum(axis=0)
            return loss, (gW1, gb1, gW2, gb2)

        return numpy_step

    def make_verigrad():
        f64 = vg.float64
        vX, vY = vg.tensor(X, dtype=f64), vg.tensor(Y, dtype=f64)
        params = [vg.tensor(p, dtype=f64, requires_grad=True) for p in (W1, b1, W2, b2)]
        vW1, vb1, vW2, vb2 = params
        tanh = vg.tanh

        def verigrad_step():
            for p in params:
                p.grad = None
            h = tanh(vX @ vW1 + vb1)
            out = h @ vW2 + vb2
            loss = ((out - vY) ** 2).mean()
            loss.backward()
            return loss.item(), tuple(p.grad.numpy() for p in params)

        return verigrad_step

    def make_torch():
        tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
        params = [torch.tensor(p, dtype=torch.float64, requires_grad=True)
                  for p in (W1, b1, W2, b2)]
        tW1, tb1, tW2, tb2 = params

        def torch_step():
            for p in params:
                p.grad = None
            h = torch.tanh(tX @ tW1 + tb1)
            out = h @ tW2 + tb2
            loss = ((out - tY) ** 2).mean()
            loss.backward()
            return loss.item(), tuple(p.grad.numpy() for p in params)

        return torch_step

    factories = {NUMPY: make_numpy, VERIGRAD: make_verigrad}
    if torch is not None:
        factories[TORCH_INFO] = make_torch
    return factories, NUMPY


def chain_workload(vg: Any, torch: Any, steps: int = CHAIN_STEPS
                   ) -> tuple[dict[str, Callable], str | None]:
    z0, w0, b0 = 0.3, 0.9, 0.1

    def make_reference():
        def python_reference():
            """Hand-written float forward+backward of the chain."""
            zs = [z0]
            z = z0
            for _ in range(steps):
                z = float(np.tanh(z * w0 + b0))
                zs.append(z)
            gz, gw, gb = 1.0, 0.0, 0.0
            for i in range(steps, 0, -1):
                gu = gz * (1.0 - zs[i] * zs[i])
                gw += gu * zs[i - 1]
                gb += gu
                gz = gu * w0
            return z, (np.float64(gz), np.float64(gw), np.float64(gb))

        return python_reference

    def make_verigrad():
        # leaves from float64 numpy scalars, exactly the values torch and the reference use
        f64 = vg.float64
        leaves = tuple(vg.tensor(np.float64(v), dtype=f64, requires_grad=True)
                       for v in (z0, w0, b0))
        vz0, vw, vb = leaves
        tanh = vg.tanh

        def verigrad_chain():
            for p in leaves:
                p.grad = None
            z = vz0
            for _ in range(steps):
                z = tanh(z * vw + vb)
            z.backward()
            return z.item(), tuple(p.grad.numpy() for p in leaves)

        return verigrad_chain

    def make_torch():
        leaves = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True)
                       for v in (z0, w0, b0))
        tz0, tw, tb = leaves
        tanh = torch.tanh

        def torch_chain():
            for p in leaves:
                p.grad = None
            z = tz0
            for _ in range(steps):
                z = tanh(z * tw + tb)
            z.backward()
            return z.item(), tuple(p.grad.numpy() for p in leaves)

        return torch_chain

    factories: dict[str, Callable] = {}
    baseline = None
    if torch is not None:
        factories[TORCH] = make_torch
        baseline = TORCH
    factories[VERIGRAD] = make_verigrad
    factories[REFERENCE] = make_reference
    return factories, baseline


def elementwise_workload(vg: Any, torch: Any, n: int = 1_000_000, seed: int = 1
                         ) -> tuple[dict[str, Callable], str]:
    x = np.random.default_rng(seed).standard_normal(n)

    def make_numpy():
        def numpy_fb():
            s = np.sin(x)
            e = np.exp(-(x * x))
            y = np.sum(s * e)
            # d/dx sin(x) exp(-x^2) = cos(x) exp(-x^2) - 2x sin(x) exp(-x^2), reusing s and e
            gx = np.cos(x) * e - 2.0 * x * s * e
            return y, (gx,)

        return numpy_fb

    def make_verigrad():
        vx = vg.tensor(x, dtype=vg.float64, requires_grad=True)
        sin, exp = vg.sin, vg.exp

        def verigrad_fb():
            vx.grad = None
            y = (sin(vx) * exp(-vx * vx)).sum()
            y.backward()
            return y.item(), (vx.grad.numpy(),)

        return verigrad_fb

    def make_torch():
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)

        def torch_fb():
            tx.grad = None
            y = (torch.sin(tx) * torch.exp(-tx * tx)).sum()
            y.backward()
            return y.item(), (tx.grad.numpy(),)

        return torch_fb

    factories = {NUMPY: make_numpy, VERIGRAD: make_verigrad}
    if torch is not None:
        factories[TORCH_INFO] = make_torch
    return factories, NUMPY


WORKLOADS: dict[str, Callable] = {"mlp": mlp_workload, "chain": chain_workload,
                                  "elementwise": elementwise_workload}


# ---------------------------------------------------------------------------------------
# gradient check


def check_gradients(steps: dict[str, Callable], reference: str) -> dict[str, str]:
    """Run each step once; compare loss and gradients to ``reference``'s (max abs error,
    relative to the scale when that exceeds 1)."""
    ref_loss, ref_grads = steps[reference]()
    status = {}
    for name, fn in steps.items():
        if name == reference:
            continue
        loss, grads = fn()
        errs = [abs(float(loss) - float(ref_loss)) / max(1.0, abs(float(ref_loss)))]
        if len(grads) != len(ref_grads):
            errs.append(np.inf)
        for g, r in zip(grads, ref_grads):
            g, r = np.asarray(g), np.asarray(r)
            if g.shape != r.shape:
                errs.append(np.inf)
                continue
            errs.append(float(np.max(np.abs(g - r))) / max(1.0, float(np.max(np.abs(r)))))
        worst = max(errs)
        status[name] = f"ok ({worst:.1e})" if worst <= GRAD_TOL else f"MISMATCH ({worst:.1e})"
    return status


# ---------------------------------------------------------------------------------------
# timing: a runner times ``inner`` calls after ``settle`` untimed ones, and reports
# (seconds per call, minor page faults per call)


class InProcess:
    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def run(self, inner: int, settle: int) -> tuple[float, float]:
        return _time_calls(self.fn, inner, settle)

    def close(self) -> None:
        self.fn = None


def _worker(conn: Any, kind: str, src: str | None) -> None:
    """A worker process: builds one contender at a time and times it on request."""
    vg = import_verigrad(src) if kind == "verigrad" else None
    torch = import_torch(True)[0] if kind == "torch" else None
    fn = None
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "build":
                fn = None
                gc.collect()
                factories, _ = WORKLOADS[msg[1]](vg, torch)
                fn = factories[msg[2]]()
                for _ in range(2):
                    fn()
                gc.collect()
                conn.send(("ok", None))
            elif msg[0] == "run":
                conn.send(("ok", _time_calls(fn, msg[1], msg[2])))
            else:
                conn.send(("ok", None))
                return
        except Exception as e:  # noqa: BLE001 - hand the failure to the parent
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Worker:
    """One process per contender kind (numpy, verigrad, torch), started once per run."""

    def __init__(self, kind: str, src: str | None) -> None:
        ctx = mp.get_context("spawn")  # a clean interpreter: no inherited heap or threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, kind, src), daemon=True)
        self.proc.start()
        child.close()

    def call(self, *msg: Any) -> Any:
        self.conn.send(msg)
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"worker: {value}")
        return value

    def stop(self) -> None:
        try:
            self.call("stop")
        except Exception:  # noqa: BLE001
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()


class InWorker:
    def __init__(self, worker: Worker, workload: str, contender: str) -> None:
        self.worker = worker
        worker.call("build", workload, contender)

    def run(self, inner: int, settle: int) -> tuple[float, float]:
        return self.worker.call("run", inner, settle)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------
# report


@dataclass
class Row:
    workload: str
    contender: str
    median: str
    ratio: str = "1.00x (baseline)"
    spread: str = ""
    faults: str = ""
    target: str = ""
    met: str = ""


@dataclass
class Result:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    torch_note: str = ""


_paired_ratio = _harness.paired_ratio


@dataclass
class Spec:
    key: str
    label: str
    fmt: Callable[[float], str]
    target: float
    target_text: str


SPECS = [
    Spec("mlp", "MLP step 64x256->512->10", lambda s: f"{s * 1e3:.3f} ms", 1.15,
         "<= 1.15x numpy"),
    Spec("chain", f"scalar chain {CHAIN_OPS} ops", lambda s: f"{s * 1e6 / CHAIN_OPS:.2f} us/op",
         0.5, "<= 0.5x torch"),
    Spec("elementwise", "sum(sin(x)*exp(-x*x)) 1e6", lambda s: f"{s * 1e3:.2f} ms", 1.0,
         "<= 1.0x numpy"),
]


def run_workload(result: Result, spec: Spec, vg: Any, torch: Any, rounds: int, inner: int,
                 workers: dict[str, Worker] | None) -> None:
    factories, baseline = WORKLOADS[spec.key](vg, torch)
    steps = {name: make() for name, make in factories.items()}
    reference = baseline if baseline is not None else REFERENCE
    checks = check_gradients(steps, reference)
    if REFERENCE in steps and reference != REFERENCE:
        ref_checks = check_gradients(steps, REFERENCE)
        result.notes.append(f"{spec.label}: gradients vs hand-written float reference: "
                            + ", ".join(f"{k} {v}" for k, v in ref_checks.items()))
        for k, v in ref_checks.items():
            if v.startswith("MISMATCH"):
                checks[k] = v
    names = [n for n in steps if not n.startswith("_")]
    if workers is None:
        runners = {n: InProcess(steps[n]) for n in names}
        for r in runners.values():  # warm-up
            r.run(2, 0)
    else:
        steps.clear()
        runners = {n: InWorker(workers[_kind(n)], spec.key, n) for n in names}
    gc.collect()
    times, faults = alternate(runners, rounds, inner)
    for r in runners.values():
        r.close()

    for name in names:
        row = Row(spec.label, name, spec.fmt(statistics.median(times[name])))
        if resource is not None:
            row.faults = f"{statistics.median(faults[name]):.0f}"
        if baseline is None:
            row.ratio = "n/a"
            row.target = spec.target_text
            row.met = f"n/a (no torch baseline: torch {result.torch_note})"
        elif name != baseline:
            ratio, lo, hi = _paired_ratio(times, name, baseline)
            row.ratio = f"{ratio:.2f}x"
            row.spread = f"{lo:.2f}-{hi:.2f}"
            if name == VERIGRAD:
                row.target = spec.target_text
                row.met = "met" if ratio <= spec.target else "NOT met"
        if checks.get(name, "").startswith("MISMATCH"):
            row.met = f"{row.met} (gradients {checks[name]})".strip()
        result.rows.append(row)
    ref_label = "hand-written float reference" if reference == REFERENCE else reference
    result.notes.append(f"{spec.label}: gradients vs {ref_label}: "
                        + ", ".join(f"{k} {v}" for k, v in checks.items()
                                    if not k.startswith("_"))
                        + f"; {rounds} rounds x {inner} timed calls")


def targets_summary(rows: list[Row]) -> str:
    """One line: each target of this run and whether it was met."""
    judged = [r for r in rows if r.contender == VERIGRAD and r.target]
    parts = [f"{r.workload} {r.ratio} ({r.target}): {r.met or 'n/a'}" for r in judged]
    met = sum(1 for r in judged if r.met.startswith("met"))
    return f"targets met: {met}/{len(judged)}" + ("; " if parts else "") + "; ".join(parts)


def print_table(rows: list[Row]) -> None:
    head = ("workload", "contender", "median", "ratio vs baseline", "ratio IQR",
            "page faults/call", "target", "status")
    _harness.print_table(head, [(r.workload, r.contender, r.median, r.ratio, r.spread, r.faults,
                                 r.target, r.met) for r in rows])


_cpu_name = _harness.cpu_name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 3 rounds per workload")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds per workload (default: mlp 200, chain 100, elementwise 40)")
    p.add_argument("--only", default="mlp,chain,elementwise",
                   help="comma-separated subset of: mlp, chain, elementwise")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    p.add_argument("--same-process", action="store_true",
                   help="time every contender in this process (no worker processes)")
    p.add_argument("--src", default=None,
                   help="directory containing the verigrad package to measure (default: this "
                        "checkout)")
    args = p.parse_args(argv)

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - set(WORKLOADS)
    if unknown:
        print(f"unknown workload(s): {', '.join(sorted(unknown))}; choose from "
              f"{', '.join(WORKLOADS)}")
        return 0

    try:
        vg = import_verigrad(args.src)
    except Exception as e:  # noqa: BLE001 - a report: say why and still exit 0
        print(f"cannot import verigrad: {type(e).__name__}: {e}")
        return 0
    torch, torch_note = import_torch(not args.no_torch)

    plan = {"mlp": (200, 5), "chain": (100, 1), "elementwise": (40, 1)}
    if args.quick:
        plan = {"mlp": (3, 2), "chain": (3, 1), "elementwise": (3, 1)}
    if args.rounds is not None:
        plan = {k: (max(1, args.rounds), inner) for k, (_, inner) in plan.items()}

    print(f"verigrad engine benchmarks: {_cpu_name()}, {os.cpu_count()} logical CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch_note}; "
          f"one thread per library")
    print(f"verigrad from {Path(vg.__file__).parent}")
    print("medians over alternating rounds; ratio = median over rounds of (contender / "
          "baseline in the same round); IQR = interquartile range of those ratios; "
          + ("all contenders in one process" if args.same_process
             else "each contender in its own worker process"))
    print()

    t_start = time.perf_counter()
    workers: dict[str, Worker] | None = None
    result = Result(torch_note=torch_note)
    if not args.same_process:
        kinds = ["numpy", "verigrad"] + (["torch"] if torch is not None else [])
        try:
            workers = {}
            for k in kinds:
                workers[k] = Worker(k, args.src)
        except Exception as e:  # noqa: BLE001 - no subprocesses here: time in this process
            for w in workers.values():
                w.stop()
            workers = None
            result.notes.append(f"worker processes unavailable ({type(e).__name__}: {e}); "
                                f"timed in this process instead")
    try:
        for spec in SPECS:
            if spec.key not in wanted:
                continue
            rounds, inner = plan[spec.key]
            try:
                run_workload(result, spec, vg, torch, rounds, inner, workers)
            except Exception as e:  # noqa: BLE001 - report the failure, keep going
                result.rows.append(Row(spec.label, VERIGRAD, "error", "", "", "",
                                       spec.target_text, f"ERROR {type(e).__name__}: {e}"))
    finally:
        for w in (workers or {}).values():
            w.stop()
    print_table(result.rows)
    print()
    for note in result.notes:
        print(f"  {note}")
    print()
    print(targets_summary(result.rows))
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
