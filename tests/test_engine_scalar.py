"""The 0-d fast path (issue 15) changes no bits and no records.

* ``apply``'s fast path builds exactly the result and node the general path builds, for every
  registered op of one or two inputs, on 0-d and dimensioned inputs.
* Each op's written-out first-order ``_backward`` returns bitwise what the generic method
  returns (plain and owned gradients, numpy scalars and arrays).
* A seeded corpus of random scalar graphs (``engine_scalar_corpus.py``) gives the same outputs,
  gradients and reprs as the engine before the fast path (commit ``PRE_FAST_PATH``, taken
  from git when the checkout has its history).
* Leaf gradients summed as numpy scalars reach ``.grad`` even when backward fails midway.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import verigrad as vg
from verigrad.autograd.node import OpNode
from verigrad.errors import SavedTensorModifiedError
from verigrad.registry import REGISTRY
from verigrad.tensor import _apply_general, apply

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_scalar_corpus as corpus  # noqa: E402
from engine_before import run_at  # noqa: E402

#: the last commit before the fast path: the reference the corpus is compared with
PRE_FAST_PATH = "37f80cd"

OPS = [op for op in REGISTRY.values() if op.differentiable and not op.variadic
       and len(op.inputs) <= 2]
CASES = [(op, k, case) for op in OPS
         for k, case in enumerate(op.domain.cases(np.random.default_rng(0)))]


def _bits(a):
    a = np.asarray(a)
    return (a.dtype, a.shape, a.tobytes())


def _same(a, b):
    if a is None or b is None or isinstance(a, (int, float)) or isinstance(b, (int, float)):
        return a is b or a == b
    return _bits(a) == _bits(b)


def _inputs(op, shapes, dtype, rng, requires):
    out = []
    for k, s in enumerate(shapes):
        v = op.domain.sample(rng, s, k).astype(dtype)
        out.append(vg.tensor(v, requires_grad=bool(requires[k % len(requires)])))
    return out


@pytest.mark.parametrize("item", CASES, ids=lambda it: f"{it[0].name}-{it[1]}")
@given(dtype=st.sampled_from([np.float64, np.float32]),
       requires=st.lists(st.booleans(), min_size=2, max_size=2).filter(any),
       zero_d=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=8, deadline=None)
def test_fast_apply_records_what_the_general_path_records(item, dtype, requires, zero_d, seed):
    op, _, (shapes, params) = item
    if zero_d:
        shapes = tuple(() for _ in shapes)
    rng = np.random.default_rng(seed)
    ts = _inputs(op, shapes, dtype, rng, requires)
    # an earlier op in front, so edges point at nodes as well as leaves
    ts = [t * 1.0 if t.requires_grad and k == 0 else t for k, t in enumerate(ts)]
    with np.errstate(all="ignore"):
        try:
            want = _apply_general(op, tuple(ts), params)
        except Exception as e:  # noqa: BLE001 - the fast path must fail the same way
            with pytest.raises(type(e)):
                apply(op, tuple(ts), params)
            return
        got = apply(op, tuple(ts), params)
    assert _bits(got._data) == _bits(want._data)
    assert got.requires_grad == want.requires_grad and repr(got) == repr(want)
    a, b = got.grad_fn, want.grad_fn
    assert (a is None) == (b is None)
    if a is None:
        return
    assert type(a) is type(b) and a.name() == b.name()
    assert [(t, nr) for t, nr in a._edges] == [(t, nr) for t, nr in b._edges]
    assert all(x is y for x, y in zip(a._inputs, b._inputs)) and len(a._inputs) == len(b._inputs)
    assert a._shapes == b._shapes and a._dtypes == b._dtypes and a._versions == b._versions
    assert a._params == b._params and a._freed == b._freed and a._retain == b._retain
    assert (a._out is None) == (b._out is None)
    if a._out is not None:
        assert _bits(a._out) == _bits(b._out) and type(a._out) is type(b._out)
    assert (a._out_vbox is None) == (b._out_vbox is None)


@pytest.mark.parametrize("item", CASES, ids=lambda it: f"{it[0].name}-{it[1]}")
@pytest.mark.parametrize("zero_d", [True, False])
@pytest.mark.parametrize("owned", [False, True])
def test_written_out_backward_is_the_generic_one(item, zero_d, owned):
    op, k, (shapes, params) = item
    if zero_d:
        shapes = tuple(() for _ in shapes)
    rng = np.random.default_rng(k + 3)
    ts = _inputs(op, shapes, np.float64, rng, [True, k % 2 == 0])
    with np.errstate(all="ignore"):
        try:
            out = apply(op, tuple(ts), params)
        except Exception:  # noqa: BLE001 - shapes this op does not take at 0-d
            return
        node = out.grad_fn
        assert type(node)._backward is not OpNode._backward, "no written-out backward"
        g = rng.standard_normal(out.shape)
        if not out.ndim:
            g = g[()]  # what the engine hands a 0-d node
        plain = OpNode._backward(node, [np.copy(g) if out.ndim else g], False, owned)
        fast = node._backward([np.copy(g) if out.ndim else g], False, owned)
    assert len(plain) == len(fast)
    for p, f in zip(plain, fast):
        assert (p is None) == (f is None)
        if p is not None:
            assert _bits(p) == _bits(f) and type(p) is type(f)


def _pre_change_corpus(n: int, tmp: Path) -> list | None:
    """The corpus run by the engine as it was before the fast path (None without git)."""
    return run_at(PRE_FAST_PATH, Path(corpus.__file__), [str(n)], tmp, 300)


def test_scalar_corpus_matches_the_engine_before_the_fast_path(tmp_path):
    n = 400
    before = _pre_change_corpus(n, tmp_path)
    if before is None:
        pytest.skip(f"no git history with {PRE_FAST_PATH} in this checkout")
    now = json.loads(json.dumps(corpus.corpus(vg, n)))
    assert len(now) == len(before) == n
    for seed, (a, b) in enumerate(zip(now, before)):
        assert a == b, f"graph {seed} differs from the engine before the fast path"


def test_corpus_records_are_reproducible():
    # the corpus itself is deterministic (else the comparison above could not fail usefully)
    assert corpus.corpus(vg, 30) == corpus.corpus(vg, 30)


def test_scalar_leaf_gradients_survive_a_failing_backward():
    w = vg.tensor(0.5, dtype=vg.float64, requires_grad=True)
    v = vg.tensor(0.25, dtype=vg.float64, requires_grad=True)
    out = (w * w) + (v * 2.0) + v * v
    with vg.no_grad():
        w.add_(1.0)  # w*w saved w: its backward must refuse
    with pytest.raises(SavedTensorModifiedError):
        out.backward()
    # v's two gradients were delivered before w*w ran (later nodes run first)
    assert v.grad is not None and float(v.grad) == 2.0 + 2 * 0.25
    assert w.grad is None


def test_scalar_leaf_gradients_add_in_delivery_order_onto_an_existing_grad():
    w = vg.tensor(np.float32(0.1), requires_grad=True)
    w.grad = vg.tensor(np.float32(1e8))
    z = w
    for _ in range(5):
        z = z * 1.0 + w * 3.0
    z.backward()
    # what += into .grad after each delivery gives, float32 rounding at every step
    expect = np.float32(1e8)
    for g in [np.float32(3.0)] * 5 + [np.float32(1.0)]:
        expect = np.float32(expect + g)
    assert w.grad._data.dtype == np.float32 and w.grad._data.tobytes() == \
        np.asarray(expect).tobytes()


SCALAR_OPS = [op for op in REGISTRY.values() if op.scalar is not None]
_SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-310, -1e-310, 1e308, -1e308, np.inf, -np.inf, np.nan,
            3.0e-8, 7.25, -123.456, 2.0 ** 60]


@pytest.mark.parametrize("op", SCALAR_OPS, ids=lambda op: op.name)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scalar_forwards_are_bitwise_the_forward_on_0d_arrays(op, dtype):
    """``OpDef.scalar`` (what 0-d inputs run) gives the bits and type the forward gives on
    0-d arrays, special values included, and with a Python number as second input where
    the fast path uses it (float64 only)."""
    rng = np.random.default_rng(7)
    values = np.concatenate([np.array(_SPECIAL), rng.standard_normal(200) * 3,
                             rng.uniform(-60, 60, 100)]).astype(dtype)
    n = len(op.inputs)
    with np.errstate(all="ignore"):
        for k, v in enumerate(values):
            args = [v] if n == 1 else [v, values[(k * 7 + 3) % len(values)]]
            want = op.forward(*(np.array(a) for a in args))
            got = op.scalar(*args)
            assert type(got) is type(want), (op.name, args)
            assert _bits(got) == _bits(want), (op.name, args, got, want)
            if n == 2 and dtype is np.float64:
                py = float(args[1])
                want = op.forward(np.array(args[0]), py)
                got = op.scalar(args[0], py)
                assert type(got) is type(want) and _bits(got) == _bits(want), (op.name, args)


def test_unary_ufunc_rows_run_their_ufunc_on_scalars_and_others_opt_in():
    assert REGISTRY["tanh"].scalar is np.tanh and REGISTRY["exp"].scalar is np.exp
    assert REGISTRY["mul"].scalar is not None and REGISTRY["sum"].scalar is None
