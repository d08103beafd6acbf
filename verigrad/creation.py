"""Tensor factories (zeros, ones, arange, randn, ...) with PyTorch's signatures and dtypes."""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from . import _dtype
from .tensor import Tensor, _wrap, tensor

__all__ = ["zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "empty", "arange",
           "linspace", "eye", "rand", "randn", "manual_seed", "Generator", "from_numpy",
           "default_generator"]


def _size(size: Sequence[Any]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        out = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"sizes must be integers, got {size!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"sizes must be non-negative, got {out}")
    return out


def _finish(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _float(dtype: Any) -> np.dtype:
    return (_dtype.as_dtype(dtype) if dtype is not None else _dtype.get_default_dtype()).np


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``vg.zeros(2, 3)`` or ``vg.zeros((2, 3))``.

    >>> import verigrad as vg
    >>> vg.zeros(2)
    tensor([0., 0.])
    """
    return _finish(np.zeros(_size(size), _float(dtype)), requires_grad)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones.

    >>> import verigrad as vg
    >>> vg.ones(2, dtype=vg.float64)
    tensor([1., 1.], dtype=verigrad.float64)
    """
    return _finish(np.ones(_size(size), _float(dtype)), requires_grad)


def empty(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Like zeros (verigrad never hands out uninitialised memory)."""
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


def full(size: Sequence[int], fill_value: Any, dtype: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value``; the dtype follows the value as in PyTorch."""
    if dtype is None:
        dtype = tensor(fill_value).dtype
    return _finish(np.full(_size((size,)), fill_value, _dtype.as_dtype(dtype).np), requires_grad)


def _like(t: Tensor, fill: float, dtype: Any, requires_grad: bool) -> Tensor:
    d = _dtype.as_dtype(dtype).np if dtype is not None else t._data.dtype
    return _finish(np.full(t.shape, fill, d), requires_grad)


def zeros_like(input: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape (and dtype, unless given) of ``input``."""
    return _like(input, 0, dtype, requires_grad)


def ones_like(input: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape (and dtype, unless given) of ``input``."""
    return _like(input, 1, dtype, requires_grad)


def full_like(input: Tensor, fill_value: Any, dtype: Any = None,
              requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, with the shape of ``input``."""
    return _like(input, fill_value, dtype, requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None,
           requires_grad: bool = False) -> Tensor:
    """``[start, end)`` in steps: int64 for integer arguments, else the default float dtype.

    >>> import verigrad as vg
    >>> vg.arange(3), vg.arange(0, 1, 0.5)
    (tensor([0, 1, 2]), tensor([0.0000, 0.5000]))
    """
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = _dtype.int64 if ints else _dtype.get_default_dtype()
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    return _finish(np.arange(start, end, step).astype(_dtype.as_dtype(dtype).np), requires_grad)


def linspace(start: float, end: float, steps: int, dtype: Any = None,
             requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    return _finish(np.linspace(start, end, int(steps)).astype(_float(dtype)), requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """The identity matrix (``n`` x ``m``)."""
    return _finish(np.eye(n, m, dtype=_float(dtype)), requires_grad)


class Generator:
    """A seeded random source: ``g = vg.Generator().manual_seed(0)``; pass ``generator=g``.

    The streams are numpy's (PCG64), not PyTorch's: same seed, different numbers.
    """

    def __init__(self) -> None:
        self._seed = 0
        self._rng = np.random.default_rng(0)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int:
        return self._seed


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator used by rand/randn (returns it).

    >>> import verigrad as vg
    >>> _ = vg.manual_seed(0); a = vg.randn(3)
    >>> _ = vg.manual_seed(0); bool((a == vg.randn(3)).all())
    True
    """
    return default_generator.manual_seed(seed)


def rand(*size: Any, generator: Generator | None = None, dtype: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    rng = (generator or default_generator)._rng
    return _finish(rng.random(_size(size)).astype(_float(dtype)), requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples."""
    rng = (generator or default_generator)._rng
    return _finish(rng.standard_normal(_size(size)).astype(_float(dtype)), requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (and keeping its dtype).

    >>> import numpy as np, verigrad as vg
    >>> a = np.zeros(2); t = vg.from_numpy(a); a[0] = 5; t
    tensor([5., 0.], dtype=verigrad.float64)
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    _dtype.from_numpy_dtype(array.dtype)
    return _wrap(array)
