"""The public functions' 0-d fast paths (``tensor.unary_fn``/``binary_fn``, issue 15) record
what ``apply`` records: the same output bits, the same node class and fields, the same reprs,
for every generated one- and two-input function, on 0-d and dimensioned inputs, float64 and
float32, tensors and Python numbers, with and without grad mode.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import verigrad as vg
from verigrad import ops as O
from verigrad.registry import FACES
from verigrad.tensor import apply


def _bits(a):
    a = np.asarray(a)
    return (a.dtype, a.shape, a.tobytes())


def _generated():
    """(public function, its row) for every face whose function is the generated 1- or
    2-input form (the ones that take the fast paths)."""
    out = []
    for face in FACES.values():
        if face.fn is not None or len(face.rows) != 1:
            continue
        op = face.rows[0]
        inputs = tuple(i.lstrip("*") for i in op.inputs)
        if op.variadic or op.arguments != inputs or len(inputs) > 2:
            continue
        out.append((O.callable_of(face), op))
    return out


GENERATED = _generated()


def test_the_hot_functions_are_generated():
    names = {op.name for _, op in GENERATED}
    assert {"tanh", "exp", "sin", "add", "mul", "sub", "div"} <= names


def _same_record(got, want):
    assert _bits(got._data) == _bits(want._data)
    assert type(got._data) is type(want._data)
    assert got.requires_grad == want.requires_grad and repr(got) == repr(want)
    assert (got._vbox is None) == (want._vbox is None)
    a, b = got.grad_fn, want.grad_fn
    assert (a is None) == (b is None)
    if a is None:
        return
    assert type(a) is type(b) and a.name() == b.name()
    assert [(t, nr) for t, nr in a._edges] == [(t, nr) for t, nr in b._edges]
    assert len(a._inputs) == len(b._inputs)
    for x, y in zip(a._inputs, b._inputs):
        assert x is y or (not hasattr(x, "_data") and x == y and type(x) is type(y))
    assert a._shapes == b._shapes and a._dtypes == b._dtypes and a._versions == b._versions
    assert a._params == b._params and a._freed == b._freed and a._retain == b._retain
    assert (a._out is None) == (b._out is None)
    if a._out is not None:
        assert _bits(a._out) == _bits(b._out) and type(a._out) is type(b._out)
    assert (a._out_vbox is None) == (b._out_vbox is None)
    if a._out_vbox is not None:
        assert a._out_vbox == b._out_vbox


def _leaf(rng, dtype, zero_d, requires, bump):
    v = rng.uniform(0.3, 2.0, () if zero_d else (3,)).astype(dtype)
    t = vg.tensor(v, requires_grad=requires)
    if bump:  # a version counter that is not 0 (what the node records for saved inputs)
        with vg.no_grad():
            t.add_(0.0)
    return t


@pytest.mark.parametrize("item", GENERATED, ids=lambda it: it[1].name)
def test_fast_path_records_what_apply_records(item):
    # every combination (a few hundred per op, microseconds each): a sampled subset missed
    # the rare ones (a saved input with a bumped version next to a Python number)
    fn, op = item
    rng = np.random.default_rng(5)
    combos = itertools.product([np.float64, np.float32], [True, False],
                               itertools.product([True, False], repeat=2), [False, True],
                               [False, True], ["tensor", "float", "int", "bool", "numpy scalar"],
                               [True, False])
    for dtype, zero_d, requires, through_node, bump, other, grad_mode in combos:
        if len(op.inputs) == 1 and other != "tensor":
            continue
        a = _leaf(rng, dtype, zero_d, requires[0], bump)
        if through_node and a.requires_grad:
            a = a * 1.0  # an edge to a node, not a leaf
        if len(op.inputs) == 2:
            if other == "tensor":
                b = _leaf(rng, dtype, zero_d, requires[1], bump)
            else:
                b = {"float": 0.75, "int": 2, "bool": True,
                     "numpy scalar": np.float64(0.75)}[other]
            args = (a, O._operand(b))  # apply's operands, as the function converts them
            call = lambda: fn(a, b)  # noqa: E731
        else:
            args = (a,)
            call = lambda: fn(a)  # noqa: E731
        with vg.set_grad_enabled(grad_mode), np.errstate(all="ignore"):
            try:
                want = apply(op, args)
            except Exception as e:  # noqa: BLE001 - the fast path must fail the same way
                with pytest.raises(type(e)):
                    call()
                continue
            got = call()
        _same_record(got, want)


def test_keyword_arguments_keep_pytorch_names():
    x = vg.tensor(0.5, dtype=vg.float64, requires_grad=True)
    assert vg.add(input=x, other=2.0).item() == 2.5
    assert vg.tanh(input=x).grad_fn.name() == "TanhBackward0"


def test_a_patched_vjp_is_read_at_call_time(monkeypatch):
    x = vg.tensor(0.5, dtype=vg.float64, requires_grad=True)
    tanh = vg.tanh
    op = next(op for f, op in GENERATED if op.name == "tanh")
    monkeypatch.setattr(op, "vjp", lambda F, g, out: g * 3.0)
    tanh(x).backward()
    assert float(x.grad) == 3.0
    monkeypatch.setattr(op, "vjp", None)  # not differentiable: no node recorded
    assert tanh(x).grad_fn is None
