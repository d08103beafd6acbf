"""mpmath isolation for checks: no result may depend on the caller's mpmath settings or on
other threads.

mpmath keeps its working precision in one process-wide context (``mpmath.mp``), and
``mpmath.workdps`` saves and restores it around a block: two threads interleaving such
blocks leave each other at the wrong precision (and can leave ``mp.dps`` changed for good),
and a caller who set ``mp.dps = 5`` would have every conversion ``mpf(float)`` rounded to 5
digits. Every check therefore runs inside :func:`isolated_mpmath`: one re-entrant lock
(checks are pure-Python mpmath work under the GIL anyway, so serialising them costs little),
the precision reset to mpmath's default 53 bits for the duration, and the caller's precision
restored afterwards, also when the check raises.

>>> import mpmath
>>> mpmath.mp.dps = 5
>>> with isolated_mpmath():
...     mpmath.mp.dps
15
>>> mpmath.mp.dps
5
>>> mpmath.mp.dps = 15
"""
from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import mpmath

__all__ = ["isolated_mpmath", "mpmath_isolated", "BASE_PREC"]

#: the precision every check starts from (mpmath's own default: float64's 53 bits)
BASE_PREC = 53

_LOCK = threading.RLock()
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def isolated_mpmath() -> Iterator[None]:
    """Hold the mpmath lock, work from :data:`BASE_PREC`, restore the caller's settings."""
    with _LOCK:
        saved_prec, saved_pretty = mpmath.mp.prec, mpmath.mp.pretty
        mpmath.mp.prec, mpmath.mp.pretty = BASE_PREC, False
        try:
            yield
        finally:
            mpmath.mp.prec, mpmath.mp.pretty = saved_prec, saved_pretty


def mpmath_isolated(func: F) -> F:
    """Decorator form of :func:`isolated_mpmath` (the signature and docstring are kept)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with isolated_mpmath():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
