"""200 small gradient checks in one pytest file: verigrad's fixture against the same file
written with ``torch.autograd.gradcheck`` (issue 14's "at the speed of a test suite").

    python benchmarks/suite.py            # 3 alternating rounds of each file
    python benchmarks/suite.py --rounds 1 --checks 40

Both files check the same functions at the same points: expressions of scalars, small
elementwise functions on 3-element vectors, and 10-element custom Functions (a correct
backward each). The wall time of a whole ``python -m pytest`` run is what a user waits for,
so that is what is timed (interpreter start and imports included), in alternating rounds;
the ratio is the median of per-round ratios. The script is a report: it always exits 0.
"""
from __future__ import annotations

import _harness  # noqa: F401 - pins BLAS threads before numpy (inherited by the subprocesses)

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, median

# (verigrad expression or lambda body, torch lambda body, input shape); one family each
_SCALAR = [
    ("w * x + b", "w * x + b"),
    ("sin(x) * exp(w * x) + b", "torch.sin(x) * torch.exp(w * x) + b"),
    ("tanh(w * x + b)", "torch.tanh(w * x + b)"),
    ("log(1 + exp(w * x)) * b", "torch.log(1 + torch.exp(w * x)) * b"),
    ("sqrt(x * x + w * w) + b", "torch.sqrt(x * x + w * w) + b"),
]
_VECTOR = [
    ("(vg.sin(x) * vg.exp(-x * x)).sum()", "(torch.sin(x) * torch.exp(-x * x)).sum()"),
    ("vg.sigmoid(x).prod()", "torch.sigmoid(x).prod()"),
    ("(x * x).sum().sqrt()", "(x * x).sum().sqrt()"),
    ("vg.softmax(x, dim=0)[0]", "torch.softmax(x, dim=0)[0]"),
]

_VG_HEAD = '''import numpy as np
import pytest
import verigrad as vg


class Cube(vg.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g

    @staticmethod
    def symbolic(x):
        return x ** 3


POINTS = [0.3 + 0.01 * k for k in range({n})]
'''

_TORCH_HEAD = '''import pytest
import torch

torch.set_num_threads(1)


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


POINTS = [0.3 + 0.01 * k for k in range({n})]


def t(v):
    return torch.tensor(v, dtype=torch.float64, requires_grad=True)
'''


def _files(n_checks: int, where: Path) -> tuple[Path, Path]:
    per = max(1, n_checks // 3)
    vg_lines, th_lines = [_VG_HEAD.format(n=per)], [_TORCH_HEAD.format(n=per)]
    for k, (expr, _) in enumerate(_SCALAR):
        vg_lines.append(f'''
@pytest.mark.parametrize("p", POINTS[{k}::{len(_SCALAR)}])
def test_scalar_{k}(gradcheck, p):
    gradcheck({expr!r}, x=p, w=0.5 + p, b=1.0 - p)
''')
    for k, (_, body) in enumerate(_SCALAR):
        th_lines.append(f'''
@pytest.mark.parametrize("p", POINTS[{k}::{len(_SCALAR)}])
def test_scalar_{k}(p):
    assert torch.autograd.gradcheck(lambda x, w, b: {body}, (t(p), t(0.5 + p), t(1.0 - p)))
''')
    for k, (vbody, tbody) in enumerate(_VECTOR):
        vg_lines.append(f'''
@pytest.mark.parametrize("p", POINTS[{k}::{len(_VECTOR)}])
def test_vector_{k}(gradcheck, p):
    gradcheck(lambda x: {vbody}, np.array([p, 2 * p, -p]))
''')
        th_lines.append(f'''
@pytest.mark.parametrize("p", POINTS[{k}::{len(_VECTOR)}])
def test_vector_{k}(p):
    x = torch.tensor([p, 2 * p, -p], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: {tbody}, (x,))
''')
    vg_lines.append('''
@pytest.mark.parametrize("p", POINTS)
def test_function(gradcheck, p):
    gradcheck(lambda x: Cube.apply(x).sum(), np.linspace(-1, 1, 10) + p)
''')
    th_lines.append('''
@pytest.mark.parametrize("p", POINTS)
def test_function(p):
    x = (torch.linspace(-1, 1, 10, dtype=torch.float64) + p).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: Cube.apply(x).sum(), (x,))
''')
    vg_file, th_file = where / "test_suite_verigrad.py", where / "test_suite_torch.py"
    vg_file.write_text("".join(vg_lines))
    th_file.write_text("".join(th_lines))
    return vg_file, th_file


def _run(path: Path, src: Path) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(src))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        str(path)], cwd=path.parent, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    last = (p.stdout.strip().splitlines() or ["(no output)"])[-1]
    return dt, last if p.returncode == 0 else f"FAILED: {last}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", type=int, default=200, help="checks per file (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--src", default=str(ROOT), help="directory holding the verigrad package")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not importable: nothing to compare with")
        return
    with tempfile.TemporaryDirectory() as d:
        vg_file, th_file = _files(args.checks, Path(d))
        times: dict[str, list[float]] = {"verigrad": [], "torch": []}
        status = {}
        for r in range(args.rounds):
            order = [("verigrad", vg_file), ("torch", th_file)]
            for name, path in (order if r % 2 == 0 else order[::-1]):
                dt, status[name] = _run(path, Path(args.src))
                times[name].append(dt)
    ratios = sorted(a / b for a, b in zip(times["verigrad"], times["torch"]))
    print(f"{args.checks} small checks in one pytest file, {args.rounds} alternating rounds "
          f"(wall time of `python -m pytest`, imports included)")
    print(f"{'file':10s} {'median s':>9s}  result")
    for name in times:
        print(f"{name:10s} {median(times[name]):9.2f}  {status[name]}")
    verdict = "met" if median(ratios) <= 3.0 else "NOT met"
    print(f"ratio verigrad / torch: {median(ratios):.2f}x (target <= 3x: {verdict})")


if __name__ == "__main__":
    main()
