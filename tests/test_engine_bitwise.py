"""Issue 15's second round (0-d fast paths in the public functions, the array pool, cheaper
bias reductions) changes no bits: the engine benchmark's workloads, several steps in a row,
give the same losses and gradients as the engine before it (``BEFORE``, taken from git when
the checkout has its history).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import verigrad as vg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_bitwise_workloads as workloads  # noqa: E402
from engine_before import run_at  # noqa: E402

#: main before the round: the reference
BEFORE = "3bf4f1a"


def _before(tmp: Path) -> dict | None:
    return run_at(BEFORE, Path(workloads.__file__), [], tmp, 600)


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
