"""dtypes with PyTorch's names and promotion rules, on top of numpy dtypes."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["dtype", "float16", "float32", "float64", "complex64", "complex128", "int8", "int16",
           "int32", "int64", "uint8", "bool", "get_default_dtype", "set_default_dtype", "to_numpy_dtype"]

class dtype:
    """A tensor element type: ``verigrad.float32`` prints as it does in PyTorch (``torch.float32``)."""

    __slots__ = ("name", "np", "is_floating_point", "is_complex", "is_signed", "itemsize")

    def __init__(self, name: str, np_type: type) -> None:
        self.name = name
        self.np = np.dtype(np_type)
        self.is_complex = self.np.kind == "c"
        self.is_floating_point = self.np.kind == "f"
        self.is_signed = self.np.kind in "fci"
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"verigrad.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))

    @property
    def kind(self) -> int:
        """Promotion category as in PyTorch: bool < integer < floating < complex."""
        return {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}[self.np.kind]


float16 = dtype("float16", np.float16)
float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
complex64 = dtype("complex64", np.complex64)
complex128 = dtype("complex128", np.complex128)
int8 = dtype("int8", np.int8)
int16 = dtype("int16", np.int16)
int32 = dtype("int32", np.int32)
int64 = dtype("int64", np.int64)
uint8 = dtype("uint8", np.uint8)
bool = dtype("bool", np.bool_)  # noqa: A001 - PyTorch's name

_ALL = (float16, float32, float64, complex64, complex128, int8, int16, int32, int64, uint8, bool)
_FROM_NP = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL}
_BY_NAME.update(half=float16, float=float32, double=float64, long=int64, int=int32, cfloat=complex64,
                cdouble=complex128)


def _by_name(name: str) -> dtype:
    return _BY_NAME[name]


class _Defaults:
    float: dtype = float32


_defaults = _Defaults()


def get_default_dtype() -> dtype:
    """The dtype Python floats become (float32 unless changed).

    >>> import verigrad as vg
    >>> vg.get_default_dtype()
    verigrad.float32
    """
    return _defaults.float


def set_default_dtype(d: dtype) -> None:
    """Make Python floats (and float factories) produce ``d``: ``vg.set_default_dtype(vg.float64)``."""
    d = as_dtype(d)
    if not d.is_floating_point or d is float16:
        raise TypeError(f"set_default_dtype only accepts float32 or float64, got {d!r}")
    _defaults.float = d


def default_complex() -> dtype:
    return complex128 if _defaults.float is float64 else complex64


def as_dtype(d: object) -> dtype:
    """Accept a verigrad dtype, a numpy dtype or type, or a name such as ``"float64"``."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    try:
        found = _FROM_NP.get(np.dtype(d))
    except TypeError:
        found = None
    if found is None:
        raise TypeError(f"unsupported dtype {d!r}; use one of {', '.join(x.name for x in _ALL)}")
    return found


def from_numpy_dtype(d: np.dtype) -> dtype:
    found = _FROM_NP.get(d)
    if found is None:
        raise TypeError(f"numpy dtype {d} has no verigrad equivalent; use one of "
                        f"{', '.join(x.name for x in _ALL)}")
    return found


def to_numpy_dtype(d: object) -> np.dtype:
    return as_dtype(d).np


def _promote_pair(a: dtype, b: dtype) -> dtype:
    # numpy's table agrees with PyTorch's for the dtypes we support, except that
    # integer/float mixes must not widen the float (int64 + float32 -> float32 in torch).
    if a.kind != b.kind and min(a.kind, b.kind) <= 1 and max(a.kind, b.kind) >= 2:
        return a if a.kind > b.kind else b
    return _FROM_NP[np.promote_types(a.np, b.np)]


@lru_cache(maxsize=1024)
def result_type(tensor_dtypes: tuple, scalar_kinds: tuple, default_float: dtype) -> dtype:
    """PyTorch's type promotion (dimensioned tensors > zero-dim tensors > Python scalars).

    ``tensor_dtypes`` holds (dtype, is_zero_dim) pairs; ``scalar_kinds`` the kinds of Python
    numbers (0 bool, 1 int, 2 float, 3 complex). A lower-priority operand only matters when it
    is of a higher category, as documented for torch.result_type.
    """
    dims = [d for d, zero in tensor_dtypes if not zero]
    zeros = [d for d, zero in tensor_dtypes if zero]
    result = None
    for group in (dims, zeros):
        if not group:
            continue
        r = group[0]
        for d in group[1:]:
            r = _promote_pair(r, d)
        if result is None:
            result = r
        elif r.kind > result.kind:
            result = _promote_pair(result, r) if r.kind == 3 or result.kind == 3 else r
    if scalar_kinds:
        k = max(scalar_kinds)
        if result is None or k > result.kind:
            wrapped = {0: bool, 1: int64, 2: default_float,
                       3: complex128 if default_float is float64 else complex64}[k]
            if result is not None and k == 3 and result.kind == 2:
                wrapped = complex128 if result is float64 else complex64
            result = wrapped
    return result
