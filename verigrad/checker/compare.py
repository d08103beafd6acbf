"""The tolerance model and the comparison rules, in one pure place: numbers in, verdicts out.

A correct backward may compute any formula that is mathematically equal to the mirror's, in
the precision it works in. What such an implementation can be off by is bounded here; what
exceeds the bound is then told apart as *lost digits* (a right formula evaluated where it
cancels) or *wrong* (a different derivative) by measuring the implementation at a few points
within ~1e-7 relative of the given one, where the exact derivative barely moves but every
intermediate rounding changes. See docs/design.md, "The tolerance model".

>>> import numpy as np
>>> tol = tolerance(np.float64, scale=np.array([1.0]), terms=np.array([0.0]))
>>> bool(tol[0] < 1e-13), bool(tolerance(np.float32, np.array([1.0]), np.array([0.0]))[0] > 1e-7)
(True, True)
>>> lost_digits_or_wrong([3e-15, -1e-15, 2e-15, -4e-15, 1e-16, 5e-15])
'precision'
>>> lost_digits_or_wrong([1e-9, 1.0000001e-9, 0.9999998e-9, 1e-9, 1.0000002e-9, 1e-9])
'wrong'
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["ROUNDING_FACTOR", "unit_roundoff", "working_precision", "tolerance",
           "lost_digits_or_wrong", "digits_lost", "PROBES", "PROBE_SPREAD", "distinct"]

#: How many unit roundoffs per unit of magnitude a correct implementation may be off by.
#: A first-order bound counts one rounding per operation; an equivalent formula may take a
#: different route through the same magnitudes (``1/cosh(x)**2`` for ``1 - tanh(x)**2``,
#: ``s*(1 - s)`` with ``1 - s`` formed by subtraction) and a sum of n terms accumulates
#: about log2(n) roundings when summed pairwise. 32 covers that for every formula we have
#: seen while keeping a wrong constant of 1e-12 relative (2^-40) visible in float64.
ROUNDING_FACTOR = 32.0

#: points probed around the given one to tell lost digits from a wrong formula, and how far
#: (relative) each is moved: far enough to reshuffle every rounding (thousands of ulps of the
#: working dtype), close enough that the error of a wrong formula stays the same function of
#: the point. Each probe is compared with its own exact reference.
PROBES = 6
PROBE_SPREAD = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4,
                np.dtype(np.float16): 1e-2}


def unit_roundoff(dtype: Any) -> float:
    """``eps/2`` of a floating dtype (complex: of its real part); float64 for non-floats."""
    dt = np.dtype(dtype)
    if dt.kind not in "fc":
        dt = np.dtype(np.float64)
    return float(np.finfo(dt).eps) / 2.0


def working_precision(dtypes: Sequence[Any]) -> np.dtype:
    """The least precise floating dtype among those an implementation was given or returned:
    it bounds how exact its result can be (a backward computed in float64 and returned as
    float32 is as exact as float32)."""
    floats = [np.dtype(d) for d in dtypes if d is not None and np.dtype(d).kind in "fc"]
    if not floats:
        return np.dtype(np.float64)
    return max(floats, key=unit_roundoff)


def tolerance(dtype: Any, scale: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """What a correct implementation working in ``dtype`` may be off by, per entry.

    ``scale`` is ``|J|^T |v|`` (the magnitudes a sum of products rounds against), ``terms``
    the magnitudes of the terms inside the partial derivatives' expressions (``1 - p`` with
    ``p`` near 1 is made of terms of size 1, not of its tiny value), both in the entry's
    units. Subnormal results are not held to relative accuracy (the smallest normal number
    times the scale's count is added).
    """
    u = unit_roundoff(dtype)
    tiny = float(np.finfo(np.dtype(dtype) if np.dtype(dtype).kind == "f"
                          else np.float64).tiny)
    return ROUNDING_FACTOR * u * (np.abs(scale) + np.abs(terms)) + 4 * tiny


def lost_digits_or_wrong(errors: Sequence[float]) -> str:
    """Classify signed errors measured at points around the given one (relative to the scale
    at each point): ``"wrong"`` when they are the same smooth function of the point (same
    sign, about the same size: a wrong constant, a dropped term), ``"precision"`` when they
    scatter in sign or size (rounding and cancellation reshuffle from point to point).

    The test is deliberately one-sided towards ``precision`` only when the scatter is clear:
    a consistent error has a spread (std/|mean|) far below 1, rounding noise one near 1.
    """
    e = np.asarray([x for x in errors if math.isfinite(x)], dtype=float)
    if e.size < 3:
        return "wrong"
    if np.all(e == e[0]):
        return "wrong"   # no scatter at all: the rounding did not move, or it is a formula
    mean = float(np.mean(e))
    spread = float(np.std(e))
    same_sign = bool(np.all(e > 0) or np.all(e < 0))
    if same_sign and spread <= 0.25 * abs(mean):
        return "wrong"
    return "precision"


def digits_lost(error: float, reference: float, dtype: Any = np.float64) -> float:
    """How many significant digits of ``reference`` an error of ``error`` costs, beyond the
    unit roundoff of ``dtype``."""
    if not reference or not math.isfinite(error):
        return float(-math.log10(unit_roundoff(dtype)))
    rel = abs(error) / abs(reference)
    if rel <= unit_roundoff(dtype):
        return 0.0
    return float(min(-math.log10(unit_roundoff(dtype)), math.log10(rel / unit_roundoff(dtype))))


def distinct(a: float, b: float, least: int = 10) -> tuple[str, str]:
    """``a`` and ``b`` printed with the fewest significant digits (at least ``least``, at
    most 17) at which they differ, so an error of 2e-15 relative is visible in both:

    >>> distinct(-0.45264933690001, -0.45264933690002)
    ('-0.45264933690001', '-0.45264933690002')
    >>> distinct(1.0, 2.0)
    ('1', '2')
    """
    for d in range(least, 18):
        sa, sb = f"{a:.{d}g}", f"{b:.{d}g}"
        if sa != sb:
            return sa, sb
    return f"{a:.17g}", f"{b:.17g}"
