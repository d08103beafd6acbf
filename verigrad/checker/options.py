"""Validation of ``vg.check``'s keyword options: one place that says what is allowed.

:func:`validate_options` is pure (it reads its arguments and the environment, changes
nothing) and raises :class:`~verigrad.checker.problem.CheckInputError` (a ``ValueError``)
with one line saying what was wrong and how to fix it, before any work starts. The command
line uses the same limits (:data:`MAX_NEARBY`, :data:`MAX_SEED`), so both say the same.

>>> validate_options(seed=0, nearby=3, rtol=None, atol=1e-8)
>>> validate_options(rtol=-1)
Traceback (most recent call last):
...
verigrad.checker.problem.CheckInputError: rtol=-1 must be a finite number >= 0 (or None for the derived tolerance)
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any

from .problem import CheckInputError

__all__ = ["validate_options", "backend_warning", "MAX_NEARBY", "MAX_SEED", "MAX_ROWS",
           "BACKENDS", "BACKEND_ENV"]

#: at most this many seeded nearby points per check (each is a full re-check; beyond a
#: hundred they add time, not evidence)
MAX_NEARBY = 100
#: seeds are whole numbers in [0, MAX_SEED] (what numpy's SeedSequence takes, with room for
#: the per-point offsets the checker adds)
MAX_SEED = 2**63 - 1
#: at most this many output entries checked one by one (beyond, seeded random cotangents)
MAX_ROWS = 10_000
#: the values ``VERIGRAD_SYMBOLIC_BACKEND`` may take
BACKENDS = ("auto", "sympy", "symengine")
BACKEND_ENV = "VERIGRAD_SYMBOLIC_BACKEND"

_UNSET = object()


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(name: str, v: Any, low: int, high: int, hint: str) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise CheckInputError(f"{name}={_short(v)} must be a whole number ({hint}), got "
                              f"{type(v).__name__}")
    if not low <= int(v) <= high:
        raise CheckInputError(f"{name}={_short(v)} is out of range: use {low} to {high} "
                              f"({hint})")


def _tolerance(name: str, v: Any, positive: bool = False) -> None:
    if v is None:
        return
    what = "a finite number > 0" if positive else "a finite number >= 0"
    default = "the chosen step" if name == "eps" else "the derived tolerance"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise CheckInputError(f"{name}={_short(v)} must be {what} (or None for {default}), "
                              f"got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f) or f < 0 or (positive and f == 0):
        raise CheckInputError(f"{name}={_short(v)} must be {what} (or None for {default})")


def validate_options(*, seed: Any = 0, nearby: Any = 3, rtol: Any = None, atol: Any = None,
                     eps: Any = None, max_rows: Any = 16, use_symbolic: Any = True,
                     progress: Any = None, names: Any = _UNSET, **_ignored: Any) -> None:
    """Raise :class:`CheckInputError` if an option of ``vg.check`` is out of range; warn
    (:func:`backend_warning`) about an unknown ``VERIGRAD_SYMBOLIC_BACKEND``.

    Options this function does not know are accepted unchanged (``_ignored``), so a new
    option of ``check`` needs no change here to keep working.

    >>> validate_options(nearby=MAX_NEARBY + 1)
    Traceback (most recent call last):
    ...
    verigrad.checker.problem.CheckInputError: nearby=101 is out of range: use 0 to 100 (seeded nearby points checked besides the given one)
    """
    _whole("seed", seed, 0, MAX_SEED, "it seeds every random choice")
    _whole("nearby", nearby, 0, MAX_NEARBY, "seeded nearby points checked besides the given one")
    _whole("max_rows", max_rows, 1, MAX_ROWS, "output entries checked one by one")
    _tolerance("rtol", rtol)
    _tolerance("atol", atol)
    _tolerance("eps", eps, positive=True)
    if not isinstance(use_symbolic, (bool, type(None))) and not (
            isinstance(use_symbolic, numbers.Integral) and int(use_symbolic) in (0, 1)):
        raise CheckInputError(f"use_symbolic={_short(use_symbolic)} must be True or False")
    if progress is not None and not callable(progress):
        raise CheckInputError(f"progress={_short(progress)} must be a function "
                              f"progress(stage, fraction) or None")
    if names is not _UNSET and names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise CheckInputError(f"names={_short(names)} must be a list of strings, one per "
                                  f"input, e.g. names=['x', 'w']")
    message = backend_warning()
    if message:
        # stacklevel 3: the warning points at the caller of vg.check
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def backend_warning(environ: Any = None) -> str | None:
    """The warning for an unknown ``VERIGRAD_SYMBOLIC_BACKEND`` (None when it is unset or
    one of :data:`BACKENDS`). An unknown value is treated as ``auto``.

    >>> backend_warning({"VERIGRAD_SYMBOLIC_BACKEND": "sympi"})
    "VERIGRAD_SYMBOLIC_BACKEND='sympi' is not one of auto, sympy, symengine; using auto"
    """
    env = os.environ if environ is None else environ
    value = env.get(BACKEND_ENV)
    if value is None or value in BACKENDS:
        return None
    return f"{BACKEND_ENV}={value!r} is not one of {', '.join(BACKENDS)}; using auto"
