"""Functions for the ``verigrad report FILE.py:FUNCTION`` examples and CLI tests.

``softplus_wrong`` is the failing custom Function of ``reports/softplus-wrong``: a Softplus
whose backward is off by 0.1%, which the checker names as the culprit.

    python -m verigrad report tests/report_examples.py:softplus_wrong --at 'x=[-2,-1,0,1,2]'
"""
from __future__ import annotations

import numpy as np
import sympy

import verigrad as vg


class Softplus(vg.Function):
    """softplus(x) = log(1 + exp(x)) with a backward that is 0.1% too large."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return vg.tensor(np.logaddexp(0.0, x.numpy()))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sigmoid = 1.0 / (1.0 + np.exp(-x.numpy()))
        return grad * vg.tensor(sigmoid * 1.001)   # the bug: should be sigmoid

    @staticmethod
    def symbolic(x):
        return sympy.log(1 + sympy.exp(x))


class SoftplusFixed(Softplus):
    """The same op with the right backward."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * vg.tensor(1.0 / (1.0 + np.exp(-x.numpy())))


def softplus_wrong(x):
    """sum(softplus(x)) through the wrong custom Function."""
    return Softplus.apply(x).sum()


def softplus_fixed(x):
    """sum(softplus(x)) through the corrected custom Function."""
    return SoftplusFixed.apply(x).sum()


def layer(A, x, b=None):
    """sum(tanh(A @ x + b)): a tiny dense layer (b optional)."""
    y = A @ x
    return vg.tanh(y if b is None else y + b).sum()


def raises(x):
    """A function that fails at any point."""
    raise ZeroDivisionError("this function always fails")


NOT_A_FUNCTION = 3
