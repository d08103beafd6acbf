"""The engine's array pool (``verigrad.autograd.pool``, issue 15): big arrays that die inside
the engine are reused by the next forward and backward, and that changes no bits and never
touches an array someone still holds.
"""
from __future__ import annotations

import numpy as np
import pytest

import verigrad as vg
from verigrad.autograd import pool

N = 40_000  # 320 KB float64: above the pool's threshold


@pytest.fixture
def fresh_pool():
    pool.clear()
    yield
    pool.clear()
    pool.enabled[0] = True


def _elementwise(vx):
    vx.grad = None
    y = (vg.sin(vx) * vg.exp(-vx * vx)).sum()
    y.backward()
    return y.item(), vx.grad


def _mlp(params, X, Y):
    for p in params:
        p.grad = None
    W1, b1, W2, b2 = params
    h = vg.tanh(X @ W1 + b1)
    loss = ((h @ W2 + b2 - Y) ** 2).mean()
    loss.backward()
    return loss.item(), [p.grad for p in params], h


def _bits(a):
    a = np.asarray(a)
    return a.dtype, a.shape, a.tobytes()


def test_repeated_steps_are_bitwise_those_without_the_pool(fresh_pool):
    x = np.random.default_rng(0).standard_normal(N)
    vx = vg.tensor(x, requires_grad=True, dtype=vg.float64)
    pool.enabled[0] = False
    want = [(y, _bits(g.numpy())) for y, g in (_elementwise(vx) for _ in range(3))]
    assert pool.held_bytes() == 0
    pool.enabled[0] = True
    got = []
    for _ in range(5):
        y, g = _elementwise(vx)
        got.append((y, _bits(g.numpy())))
        del g
    assert pool.held_bytes() > 0, "the steps put nothing in the pool"
    assert all(r == want[0] for r in got) and all(r == want[0] for r in want)


def test_mlp_steps_with_the_pool_match_without(fresh_pool):
    rng = np.random.default_rng(1)
    X = vg.tensor(rng.standard_normal((64, 256)))
    Y = vg.tensor(rng.standard_normal((64, 10)))
    params = [vg.tensor(rng.standard_normal(s) / 16, requires_grad=True)
              for s in ((256, 512), (512,), (512, 10), (10,))]
    pool.enabled[0] = False
    loss, grads, _ = _mlp(params, X, Y)
    want = (loss, [_bits(g.numpy()) for g in grads])
    del grads
    pool.enabled[0] = True
    for _ in range(4):
        loss, grads, _ = _mlp(params, X, Y)
        assert (loss, [_bits(g.numpy()) for g in grads]) == want
        del grads


def test_arrays_someone_holds_are_never_reused(fresh_pool):
    x = np.random.default_rng(2).standard_normal(N)
    vx = vg.tensor(x, requires_grad=True, dtype=vg.float64)
    kept = []
    for _ in range(4):
        vx.grad = None
        s = vg.sin(vx)           # an intermediate the caller keeps
        e = vg.exp(-vx * vx)
        y = (s * e).sum()
        y.backward()
        g = vx.grad.numpy()      # the gradient's array, held without its tensor
        kept.append((s, s.numpy().copy(), e, e.numpy().copy(), g, g.copy()))
    for s, s0, e, e0, g, g0 in kept:
        assert _bits(s.numpy()) == _bits(s0) and _bits(e.numpy()) == _bits(e0)
        assert _bits(g) == _bits(g0)
    assert np.array_equal(kept[0][4], kept[-1][4])


def test_retain_graph_keeps_saved_arrays_out_of_the_pool(fresh_pool):
    x = np.random.default_rng(3).standard_normal(N)
    vx = vg.tensor(x, requires_grad=True, dtype=vg.float64)
    y = (vg.sin(vx) * vg.exp(-vx * vx)).sum()
    y.backward(retain_graph=True)
    first = vx.grad.numpy().copy()
    for _ in range(2):  # other steps in between may take what the pool holds
        _elementwise(vg.tensor(x + 1.0, requires_grad=True, dtype=vg.float64))
    vx.grad = None
    y.backward()
    assert _bits(vx.grad.numpy()) == _bits(first)


def test_give_refuses_views_and_shared_arrays(fresh_pool):
    a = np.empty(N)
    for _ in range(3):  # requests the pool missed: it may now keep up to three of these
        assert pool.take(a.shape, a.dtype) is None
    b = a  # a second holder
    assert not pool.give_if_sole(a)
    del b
    v = a[: N // 2 * 2].reshape(2, -1)
    assert not pool.give_if_sole(v)  # a view: its base is someone's
    del v
    small = np.empty(8)
    assert not pool.give_if_sole(small)
    assert pool.give_if_sole(a)
    assert pool.take(a.shape, a.dtype) is a
    assert pool.take(a.shape, a.dtype) is None


def test_the_pool_is_bounded(fresh_pool):
    n = pool.MAX_BYTES // 8 // 4 + 1  # four of these exceed the bound
    for _ in range(6):
        assert pool.take((n,), np.dtype(np.float64)) is None
    for _ in range(6):
        assert pool.give_if_sole(np.empty(n))
    assert pool.held_bytes() <= pool.MAX_BYTES


def test_only_shapes_that_were_asked_for_are_kept(fresh_pool):
    # a matmul's output (no ufunc takes that shape) goes back to the allocator
    assert not pool.give_if_sole(np.empty((300, 200)))
    assert pool.held_bytes() == 0
    assert pool.take((300, 200), np.dtype(np.float64)) is None
    assert pool.give_if_sole(np.empty((300, 200)))
    assert not pool.give_if_sole(np.empty((300, 200)))  # one miss: one kept
    assert pool.take((300, 200), np.dtype(np.float32)) is None  # (another key)
