"""Torch bridge benchmark: checking a correct custom torch.autograd.Function, from one run.

    python benchmarks/torch_bridge.py            # default run (~1 min)
    python benchmarks/torch_bridge.py --quick    # smoke run (1 timed round per size)
    python benchmarks/torch_bridge.py --only 100 --rounds 9

Workload (issue 12): ``f(x) = TanhLinear.apply(x, A).sum()``, a custom
``torch.autograd.Function`` (forward ``tanh(A @ x)``, hand-written backward
``A.T @ (g * (1 - y*y))``, the matrix a non-differentiated argument), A a fixed seeded
n x n float64 matrix scaled by 1/sqrt(n), x seeded, n = 10, 100, 1000; for
  vg.check(f, x)                 verigrad's default (nearby=3): the symbolic mirror of the
                                 Function's traced forward, the tape, finite differences,
                                 and torch's own gradient, at the point and 3 nearby points
  vg.check(f, x, nearby=0)       the given point only
  verigrad.torch.gradcheck       the drop-in (fast_mode=True: the given point only)
  torch gradcheck (slow)         torch.autograd.gradcheck(f, (x,)): the baseline
  torch gradcheck (fast)         the same with fast_mode=True
All contenders run in this process (verigrad's bridge runs torch itself), torch pinned to
one thread. Each is called once untimed (the first verigrad call pays SymPy's import and the
rule cache: shown in the notes), then alternating rounds of one timed call per contender,
the order flipping every round; ratios are medians of per-round ratios against torch slow
mode, with their IQR. The verdict column is each checker's answer on this correct Function
(anything but a pass is a false alarm).

Target (issue 12): vg.check within 5x of torch slow mode at n = 10 and 100, faster than it
at n = 1000. This is a report, not a test: it always exits 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402  (pins BLAS/OpenMP pools to one thread before numpy)
from _harness import alternate, cpu_name, median, paired_ratio, print_table  # noqa: E402

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

VG3 = "vg.check (nearby=3, default)"
VG0 = "vg.check (nearby=0)"
VGT = "verigrad.torch.gradcheck (fast_mode)"
TORCH_SLOW = "torch gradcheck (slow)"
TORCH_FAST = "torch gradcheck (fast_mode)"
BASELINE = TORCH_SLOW
SIZES = (10, 100, 1000)
ROUNDS = {10: 15, 100: 15, 1000: 5}


def make_function(torch: Any) -> type:
    class TanhLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, A):
            y = torch.tanh(A @ x)
            ctx.save_for_backward(y, A)
            return y

        @staticmethod
        def backward(ctx, g):
            y, A = ctx.saved_tensors
            return A.t() @ (g * (1 - y * y)), None

    return TanhLinear


class Runner:
    """One contender on one size: ``run(inner, settle)`` for ``alternate``; remembers the
    answer of its last call."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.answer: Any = None
        t0 = time.perf_counter()
        self.answer = call()
        self.first = time.perf_counter() - t0

    def run(self, inner: int, settle: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        for _ in range(inner):
            self.answer = self.call()
        return (time.perf_counter() - t0) / inner, 0.0


def contenders(vg: Any, vgt: Any, torch: Any, n: int) -> dict[str, Callable[[], Any]]:
    gen = torch.Generator().manual_seed(n)
    A = torch.randn(n, n, generator=gen, dtype=torch.float64) / n ** 0.5
    x = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = make_function(torch)

    def f(x: Any) -> Any:
        return fn.apply(x, A).sum()

    def verdict(ok: bool) -> str:
        return "pass" if ok else "fail"

    return {
        VG3: lambda: vg.check(f, x).verdict,
        VG0: lambda: vg.check(f, x, nearby=0).verdict,
        VGT: lambda: verdict(vgt.gradcheck(f, (x,), fast_mode=True, raise_exception=False)),
        TORCH_SLOW: lambda: verdict(torch.autograd.gradcheck(f, (x,), raise_exception=False)),
        TORCH_FAST: lambda: verdict(torch.autograd.gradcheck(f, (x,), fast_mode=True,
                                                             raise_exception=False)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 timed round per size")
    ap.add_argument("--rounds", type=int, default=None, help="rounds for every size")
    ap.add_argument("--only", default=None, help="sizes to run, e.g. 10,100")
    ap.add_argument("--src", default=None, help="measure the verigrad package in DIR")
    args = ap.parse_args(argv)
    torch, torch_note = _harness.import_torch(True)
    vg = _harness.import_verigrad(args.src)
    print(f"torch bridge benchmark: verigrad from {Path(vg.__file__).parent}, torch "
          f"{torch_note}; python {platform.python_version()}, {cpu_name()}")
    if torch is None:
        print("torch is not importable: nothing to compare (install the CPU wheel)")
        return 0
    import verigrad.torch as vgt

    sizes = [int(s) for s in args.only.split(",")] if args.only else list(SIZES)
    rows, notes, verdicts = [], [], {}
    for n in sizes:
        rounds = 1 if args.quick else (args.rounds or ROUNDS.get(n, 5))
        runners = {name: Runner(call) for name, call in contenders(vg, vgt, torch, n).items()}
        notes.append(f"n={n}: first calls " + ", ".join(
            f"{name} {r.first:.3g} s" for name, r in runners.items()))
        times, _ = alternate(runners, rounds, inner=1, settle=0)
        for name, r in runners.items():
            med = median(times[name])
            if name == BASELINE:
                ratio, iqr = "1.00 (baseline)", ""
            else:
                m, lo, hi = paired_ratio(times, name, BASELINE)
                ratio, iqr = f"{m:.2f}x", f"{lo:.2f}-{hi:.2f}"
            answer = r.answer
            flag = "" if answer == "pass" else "  FALSE ALARM"
            rows.append((f"n={n}", name, f"{med * 1e3:.1f}", ratio, iqr, f"{answer}{flag}"))
            verdicts[(n, name)] = (answer, med)
    print()
    print_table(("size", "contender", "median ms", "ratio vs torch slow", "ratio IQR",
                 "verdict"), rows)
    print()
    for n in sizes:
        vgm, base = verdicts[(n, VG3)][1], verdicts[(n, BASELINE)][1]
        if n >= 1000:
            goal, met = "faster than torch slow mode", vgm < base
        else:
            goal, met = "within 5x of torch slow mode", vgm <= 5 * base
        print(f"target n={n}: vg.check (default) {goal}: {'met' if met else 'NOT met'} "
              f"({vgm / base:.2f}x)")
    print()
    for line in notes:
        print(f"note: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
