"""Large arrays the engine owns, reused from one step to the next (issue 15).

A training step frees its big arrays at the end of backward and asks for the same shapes
again in the next forward. glibc hands memory of that size back to the kernel (``munmap``,
or a heap trim) and the next step faults every page in afresh, which on the machines measured
costs far more than the arithmetic (an 8 MB array: ~18 ms of page faults against 0.4 ms to
fill it warm). So arrays that die inside the engine (gradient buffers nothing else holds,
saved arrays of a node that has run, when nothing else holds them) are kept here, and ufunc
forwards and VJP temporaries write into them with ``out=`` instead of asking for new memory.

``out=`` runs the same ufunc loop on the same operands: the results are bitwise those of the
allocating call. An array goes into the pool only when its reference count proves that
nothing but the caller holds it (see :func:`give_if_sole`), and it leaves the pool for one
new owner only.

>>> import numpy as np
>>> f8 = np.dtype(np.float64)
>>> take((256, 128), f8) is None  # a request the pool misses: it may keep one of these
True
>>> a = np.empty((256, 128))  # 256 KiB
>>> give_if_sole(a), give_if_sole(np.empty((256, 128)))  # (one wanted: the second goes)
(True, False)
>>> take((256, 128), f8) is a
True
"""
from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["take", "give_if_sole", "sole", "clear", "held_bytes", "MIN_BYTES", "MAX_BYTES",
           "MAX_PER_SHAPE"]

#: arrays below glibc's default mmap threshold (128 KiB) come from the heap's free lists
#: without the kernel, and a pool look-up would cost more than malloc
MIN_BYTES = 1 << 17
#: at most this much is held; past it the least recently given shapes are let go
MAX_BYTES = 1 << 26

_lock = threading.Lock()
_free: dict = {}  # (shape, dtype) -> [arrays], least recently given key first
_wanted: dict = {}  # (shape, dtype) -> how many the pool may hold (requests it missed)
#: the most arrays of one shape and dtype held
MAX_PER_SHAPE = 16
_held = [0]
_refcount = getattr(sys, "getrefcount", None)


def take(shape: tuple, dtype: np.dtype) -> np.ndarray | None:
    """A C-contiguous writable array of ``shape`` and ``dtype`` that nothing else holds (its
    contents are garbage), or None."""
    with _lock:
        arrays = _free.get((shape, dtype))
        if not arrays:
            # a request the pool could not serve: it may keep that many of the shape
            key = (shape, dtype)
            if _wanted.get(key, 0) < MAX_PER_SHAPE:
                _wanted[key] = _wanted.get(key, 0) + 1
            return None
        a = arrays.pop()
        if not arrays:
            del _free[(shape, dtype)]
        _held[0] -= a.nbytes
    return a


def _probe(a: Any) -> int:
    return _refcount(a)  # (as give_if_sole reads it: on its own argument)


def _sole_refs() -> int:
    """What the reference count of an array reads inside :func:`give_if_sole` when its
    caller holds the only other reference, in a local variable (measured, not assumed:
    interpreters differ in borrowed references)."""
    a = np.empty(1)
    return _probe(a)


#: [on]: False keeps nothing (tests compare results with and without the pool)
enabled = [True]


def give_if_sole(a: Any, extra: int = 0) -> bool:
    """Keep ``a`` for reuse if nothing but the caller (one reference, plus ``extra`` more
    the caller accounts for) holds it; True when kept. Arrays that are views, read-only,
    not contiguous, not the pool's size or held through a weak reference are left alone."""
    if (type(a) is not np.ndarray or _refcount is None
            or _refcount(a) != _SOLE + extra or not enabled[0]):
        return False
    n = a.nbytes
    if (n < MIN_BYTES or n > MAX_BYTES or a.base is not None or not a.flags.c_contiguous
            or not a.flags.writeable or not a.flags.owndata or weakref.getweakrefcount(a)):
        return False
    key = (a.shape, a.dtype)
    with _lock:
        # only shapes something asked for and did not get: arrays no ufunc or VJP would
        # take (a matmul's output, say) go back to the allocator as before
        held = _free.get(key)
        if len(held or ()) >= _wanted.get(key, 0):
            return False
        while _held[0] + n > MAX_BYTES and _free:
            old = next(iter(_free))  # the least recently given shape goes first
            arrays = _free[old]
            _held[0] -= arrays.pop(0).nbytes
            if not arrays:
                del _free[old]
        arrays = _free.pop(key, None) or []
        arrays.append(a)
        _free[key] = arrays  # re-inserted: now the most recently given
        _held[0] += n
    return True


def sole(obj: Any, extra: int = 0) -> bool:
    """Whether nothing but the caller's one local reference (plus ``extra``) holds ``obj``."""
    return _refcount is not None and _refcount(obj) == _SOLE + extra


def held_bytes() -> int:
    """Bytes the pool holds now."""
    return _held[0]


def clear() -> None:
    """Let every pooled array go (to the allocator, and the kernel)."""
    with _lock:
        _free.clear()
        _wanted.clear()
        _held[0] = 0


_SOLE = _sole_refs() if _refcount is not None else -1
