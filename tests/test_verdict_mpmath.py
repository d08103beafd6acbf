"""Issue 9, item 7: no global state. A check's result does not depend on the caller's
mpmath precision or on checks running in other threads, and leaves mpmath as it found it."""
from __future__ import annotations

import sys
import threading

import mpmath
import numpy as np
import pytest

import verigrad as vg
from test_verdict import CORRECT as NASTY

CASES = [
    ("sin(x) * exp(w*x) + b", {"x": 0.5, "w": -1.0, "b": 2.0}),
    ("logsumexp(v, dim=0)", {"v": [1000.0, 1001.0, 999.5]}),
    ("(1 - cos(x)) / x**2", {"x": 1e-3}),
    ("sum(softmax(v, dim=0) * w)", {"v": [0.1, 2.0, -1.0], "w": [1.0, -2.0, 0.5]}),
]
CALLABLES = ["swish with 1 - s by subtraction", "sinc series switched at 1e-2"]


def _summary(report):
    # everything a verdict is made of, exact digits included (seconds and versions aside)
    return (report.verdict, report.notes, report.warnings,
            [(e.label, e.tape, e.symbolic, e.symbolic_digits, e.replayed, e.finite_diff,
              e.status, e.reason) for e in report.entries])


def _run_all():
    out = [_summary(vg.check(e, **kw)) for e, kw in CASES]
    out += [_summary(vg.check(NASTY[n][0], *NASTY[n][1])) for n in CALLABLES]
    return out


@pytest.fixture
def restore_mpmath():
    saved = mpmath.mp.prec
    yield
    mpmath.mp.prec = saved


@pytest.mark.parametrize("dps", [5, 50])
def test_the_callers_precision_neither_changes_the_report_nor_is_changed(dps, restore_mpmath):
    serial = _run_all()
    mpmath.mp.dps = dps
    assert _run_all() == serial
    assert mpmath.mp.dps == dps


def test_checks_from_four_threads_equal_the_serial_results(restore_mpmath):
    serial = _run_all()
    before = mpmath.mp.prec
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = _run_all()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: interleave their mpmath work
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert all(results[k] == serial for k in range(4))
    assert mpmath.mp.prec == before


def test_a_check_that_raises_still_restores_mpmath(restore_mpmath):
    mpmath.mp.dps = 7
    with pytest.raises(ValueError):
        vg.check(lambda x: x.sum(), np.array([]))
    assert mpmath.mp.dps == 7
