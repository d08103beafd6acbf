"""The engine's buffer reuse changes no bits: every registered VJP gives bitwise the same
gradients whether it may overwrite its incoming gradient (an engine-owned buffer) or not,
and the plain namespace never writes into a gradient it was handed."""
from __future__ import annotations

import numpy as np
import pytest

import verigrad as vg
from verigrad.ops import namespaces as NS
from verigrad.registry import REGISTRY
from verigrad.tensor import apply

CASES = [(op, i, case) for op in REGISTRY.values() if op.differentiable
         for i, case in enumerate(op.domain.cases(np.random.default_rng(0)))]


def _same_bits(a, b):
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("item", CASES, ids=lambda it: f"{it[0].name}-{it[1]}")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_owned_gradient_vjp_is_bitwise_the_plain_one(item, dtype):
    op, i, (shapes, params) = item
    rng = np.random.default_rng(i + 11)
    arrays = [op.domain.sample(rng, s, k).astype(dtype) for k, s in enumerate(shapes)]
    ts = [vg.tensor(a, requires_grad=True) for a in arrays]
    out = apply(op, tuple(ts), params)
    g = rng.standard_normal(out.shape).astype(out._data.dtype)
    g_plain = g.copy()
    plain = out.grad_fn._backward([g_plain], False)
    assert g_plain.tobytes() == g.tobytes(), f"{op.name}: the plain VJP wrote into its gradient"
    owned = out.grad_fn._backward([g.copy()], False, True)
    assert len(plain) == len(owned)
    for k, (p, o) in enumerate(zip(plain, owned)):
        assert _same_bits(p, o), f"{op.name}: input {k} differs when the gradient is owned"


@pytest.mark.parametrize("name", ["imul", "iadd", "isub", "idiv"])
@pytest.mark.parametrize("other", [np.arange(1.0, 7.0).reshape(2, 3), np.array([2.0, 3.0, 4.0]),
                                   2.5, 3, np.float64(1.5), np.float32(2.0),
                                   np.ones(3, dtype=np.float32), np.ones((4, 2, 3))])
def test_inplace_forms_equal_the_operators(name, other):
    op = {"imul": np.multiply, "iadd": np.add, "isub": np.subtract, "idiv": np.true_divide}[name]
    a = np.linspace(-1.0, 2.0, 6).reshape(2, 3)
    expected = op(a, other)
    got = getattr(NS.NUMPY, name)(a.copy(), other)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def test_irsub_and_mul_into_keep_operand_order():
    a = np.linspace(-1.0, 2.0, 6)
    t = np.linspace(3.0, 5.0, 6)
    assert NS.NUMPY.irsub(a.copy(), 1).tobytes() == (1 - a).tobytes()
    assert NS.NUMPY.mul_into(a, t.copy()).tobytes() == (a * t).tobytes()
    # a float64 gradient into a float32 temporary must not be rounded to float32
    t32 = t.astype(np.float32)
    assert NS.NUMPY.mul_into(a, t32.copy()).dtype == np.float64


def test_saved_intermediates_are_dropped_after_backward_and_replayed_by_the_mirror():
    from verigrad.symbolic.graph import GraphView

    x = vg.tensor(np.linspace(0.1, 1.0, 5), dtype=vg.float64, requires_grad=True)
    s = vg.sin(x)
    y = s * vg.exp(-x * x)
    node = y.grad_fn
    before = [t._data.copy() for t in node._inputs]
    del s
    y.sum().backward()
    assert node._inputs == (None, None)
    view = GraphView.of(y)
    for a, b in zip(view.input_values(node), before):
        assert np.asarray(a).tobytes() == b.tobytes()
