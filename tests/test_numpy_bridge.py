"""numpy's protocols on Tensor: every mapped numpy function, recorded, against numpy's result."""
import numpy as np
import pytest

import verigrad as vg
from verigrad.numpy_bridge import Unrecordable, mapped, numpy_table, recording
from verigrad.registry import REGISTRY

RNG = np.random.default_rng(0)
A = RNG.uniform(0.5, 2.0, (2, 3))
B = RNG.uniform(0.5, 2.0, (2, 3))
C = RNG.uniform(0.5, 2.0, (3, 2))
# how to call each numpy name on arrays (arguments only; which names exist comes from the registry)
CALLS = {
    "broadcast_to": lambda f, a, b: f(a[0], (2, 3)), "clip": lambda f, a, b: f(a, 0.8, 1.5),
    "concatenate": lambda f, a, b: f([a, b], axis=1), "stack": lambda f, a, b: f([a, b], axis=0),
    "dot": lambda f, a, b: f(a, C), "matmul": lambda f, a, b: f(a, C),
    "expand_dims": lambda f, a, b: f(a, 0), "reshape": lambda f, a, b: f(a, (3, 2)),
    "squeeze": lambda f, a, b: f(np.expand_dims(a, 0) if isinstance(a, np.ndarray) else a[None]),
    "swapaxes": lambda f, a, b: f(a, 0, 1), "transpose": lambda f, a, b: f(a),
    "where": lambda f, a, b: f(A > 1, a, b), "sum": lambda f, a, b: f(a, axis=1, keepdims=True),
    "mean": lambda f, a, b: f(a, axis=0), "prod": lambda f, a, b: f(a, axis=1),
    "max": lambda f, a, b: f(a, axis=1), "min": lambda f, a, b: f(a),
}


def _call(name, a, b):
    fn = getattr(np, name)
    if name in CALLS:
        return CALLS[name](fn, a, b)
    return fn(a, b) if isinstance(fn, np.ufunc) and fn.nin == 2 else fn(a)


@pytest.mark.parametrize("name", mapped())
def test_recorded_call_matches_numpy(name):
    x = vg.tensor(A, dtype=vg.float64, requires_grad=True)
    y = vg.tensor(B, dtype=vg.float64)
    with recording():
        got = _call(name, x, y)
    assert isinstance(got, vg.Tensor)
    np.testing.assert_allclose(got.detach().numpy(), _call(name, A, B), rtol=1e-15)
    if got.detach().numpy().dtype.kind == "f":  # comparisons give bools, without a graph
        assert got.grad_fn is not None


def test_table_comes_from_the_registry():
    names = {n for op in REGISTRY.values() for n in op.numpy}
    assert set(mapped()) == names
    assert numpy_table()[np.negative].public is vg.neg


@pytest.mark.parametrize("call", [lambda x: np.cosh(x), lambda x: np.asarray(x),
                                  lambda x: np.sum(x, dtype=np.float32), lambda x: float(x[0])])
def test_unrecordable_is_named(call):
    x = vg.tensor([0.5, 1.0], dtype=vg.float64, requires_grad=True)
    with recording(), pytest.raises(Unrecordable):
        call(x)


def test_unmapped_without_grad_is_numpy():
    x = vg.tensor([3.0, 4.0], dtype=vg.float64)
    assert float(np.linalg.norm(x)) == 5.0
