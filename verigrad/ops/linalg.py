"""Matrix products. ``matmul`` dispatches on the operands' dimensions to the same ops PyTorch
records (``MmBackward0`` for 2-D @ 2-D, ``MvBackward0``, ``DotBackward0``, and batched products
through ``BmmBackward0`` under ``UnsafeViewBackward0``)."""
from __future__ import annotations

import numpy as np

from .._lazy import sp
from ..registry import Domain, defop
from .reduce import _obj_reduce


def _mirror_mm(a, b):
    # one n-ary Add per entry: np.matmul on object arrays would re-flatten pairwise sums
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    return _obj_reduce(a[..., :, :, None] * b[..., None, :, :], -2, False, sp.Add)


def _mirror_mv(a, v):
    return _obj_reduce(np.asarray(a, dtype=object) * np.asarray(v, dtype=object), -1, False, sp.Add)


def _mirror_dot(u, v):
    return _obj_reduce(np.asarray(u, dtype=object) * np.asarray(v, dtype=object), None, False, sp.Add)


MM = defop("mm", inputs=("x", "y"), forward=np.matmul, numpy="matmul",
           vjp=lambda F, g, x, y, needs: (g @ F.mT(y) if needs[0] else None,
                                          F.mT(x) @ g if needs[1] else None),
           mirror=_mirror_mm,
           domain=Domain(intervals=(((-2.0, 2.0),),),
                         cases=lambda rng: [(((2, 3), (3, 4)), {}), (((1, 1), (1, 3)), {})]))
MV = defop("mv", inputs=("x", "y"), forward=np.matmul, numpy="matmul",
           vjp=lambda F, g, x, y, needs: (F.expand_dims(g, -1) * y if needs[0] else None,
                                          F.mT(x) @ g if needs[1] else None),
           mirror=_mirror_mv,
           domain=Domain(intervals=(((-2.0, 2.0),),), cases=lambda rng: [(((2, 3), (3,)), {})]))
DOT = defop("dot", inputs=("x", "y"), forward=np.dot, vjp=lambda F, g, x, y: (g * y, g * x),
            mirror=_mirror_dot,
            domain=Domain(intervals=(((-2.0, 2.0),),), cases=lambda rng: [(((4,), (4,)), {})]))
BMM = defop("bmm", inputs=("x", "y"), forward=np.matmul, numpy="matmul",
            vjp=lambda F, g, x, y, needs: (g @ F.mT(y) if needs[0] else None,
                                           F.mT(x) @ g if needs[1] else None),
            mirror=_mirror_mm,
            domain=Domain(intervals=(((-2.0, 2.0),),),
                          cases=lambda rng: [(((2, 2, 3), (2, 3, 2)), {})]))
