"""Issue 15's second round (0-d fast paths in the public functions, the array pool, cheaper
bias reductions) changes no bits: the engine benchmark's workloads, several steps in a row,
give the same losses and gradients as the engine before it (``BEFORE``, taken from git when
the checkout has its history).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import verigrad as vg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_bitwise_workloads as workloads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: main before the round: the reference
BEFORE = "3bf4f1a"


def _before(tmp: Path) -> dict | None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    try:
        blob = subprocess.run([git, "-C", str(ROOT), "archive", BEFORE, "verigrad"],
                              capture_output=True, check=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(tmp, filter="data")
    env = dict(os.environ, PYTHONPATH=str(tmp))
    run = subprocess.run([sys.executable, str(Path(workloads.__file__))], env=env,
                         capture_output=True, text=True, timeout=600, cwd=str(tmp))
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_workloads_match_the_engine_before_the_round(tmp_path):
    before = _before(tmp_path)
    if before is None:
        pytest.skip(f"no git history with {BEFORE} in this checkout")
    now = workloads.workloads(vg)
    assert set(now) == set(before)
    for name in now:
        assert now[name] == before[name], f"{name}: steps differ from the engine before"


def test_steps_repeat_their_bits():
    # the pool hands later steps the earlier steps' arrays: every step gives the same bits
    now = workloads.workloads(vg)
    for name, digests in now.items():
        assert len(set(digests)) == 1, name
