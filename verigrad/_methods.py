"""Tensor methods and operators: thin bindings to the public op functions.

The methods named after ops (``x.exp()``, ``x.sum(dim=0)``) come from the registry's faces
(``Face.on("method")``) and follow it as ops are declared; the operators and the few methods
that are not ops (``argmax``, ``double``...) are bound here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import ops as O
from .tensor import Tensor, _wrap

def _bool_op(fn):
    def method(self: Tensor, other: Any = None) -> Tensor:
        data = [self._data] + ([] if other is None else
                               [other._data if isinstance(other, Tensor) else other])
        if any(np.asarray(d).dtype.kind not in "biu" for d in data):
            raise TypeError("logical operators (& | ~) need bool or integer tensors")
        return _wrap(np.asarray(fn(*data)))

    return method


def _mT(self: Tensor) -> Tensor:
    if self.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. "
                           f"Got {self.ndim}-D tensor.")
    return O.transpose(self, -2, -1)


def _install() -> None:
    O.bind(Tensor, "method")
    T = Tensor
    T.where = lambda self, condition, other: O.where(condition, self, other)
    T.double = lambda self: O.to(self, "float64")
    T.float = lambda self: O.to(self, "float32")
    T.type_as = lambda self, other: O.to(self, other.dtype)
    T.contiguous = lambda self: self
    T.square = lambda self: O.pow(self, 2)
    T.argmax = lambda self, dim=None, keepdim=False: _wrap(np.asarray(
        np.argmax(self._data, axis=dim, keepdims=keepdim if dim is not None else False),
        dtype=np.int64))
    T.argmin = lambda self, dim=None, keepdim=False: _wrap(np.asarray(
        np.argmin(self._data, axis=dim, keepdims=keepdim if dim is not None else False),
        dtype=np.int64))
    T.any = lambda self: _wrap(np.asarray(self._data.any()))
    T.all = lambda self: _wrap(np.asarray(self._data.all()))
    T.isnan = lambda self: _wrap(np.isnan(self._data))
    T.isfinite = lambda self: _wrap(np.isfinite(self._data))
    # PyTorch records PermuteBackward0 for .T of any rank (0-d and 1-d included)
    T.T = property(lambda self: O.permute(self, tuple(reversed(range(self.ndim)))))
    T.mT = property(_mT)
    T.__getitem__ = O.getitem
    T.__add__ = T.__radd__ = O.add
    T.__sub__ = O.sub
    T.__rsub__ = O.rsub
    T.__mul__ = T.__rmul__ = O.mul
    T.__truediv__ = O.div
    # 2 / x is recorded as reciprocal(x) * 2, as PyTorch does
    T.__rtruediv__ = lambda self, other: O.mul(O.reciprocal(self), other)
    T.__pow__ = O.pow
    T.__rpow__ = lambda self, other: O.pow(other, self)
    T.__matmul__ = O.matmul
    T.__rmatmul__ = lambda self, other: O.matmul(other, self)
    T.__neg__ = O.neg
    T.__pos__ = lambda self: self
    T.__abs__ = O.abs
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = O.lt, O.le, O.gt, O.ge
    T.__eq__, T.__ne__ = O.eq, O.ne
    T.__and__ = T.__rand__ = _bool_op(np.logical_and)
    T.__or__ = T.__ror__ = _bool_op(np.logical_or)
    T.__invert__ = _bool_op(lambda a: ~a)


_install()
