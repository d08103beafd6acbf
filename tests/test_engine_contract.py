"""Registered VJPs are held to the same contract as custom Functions: one gradient per input,
each of the input's shape (or one that broadcasting reduces to it), else a
BackwardContractError naming the op. Bad ops are declared in a fixture that removes them
from the registry again, so the table-driven tests never see them."""
from __future__ import annotations

import numpy as np
import pytest

import verigrad as vg
from verigrad import registry
from verigrad.tensor import apply


@pytest.fixture
def declare():
    """``declare(name, **defop_kwargs)`` -> OpDef, removed from the registry afterwards."""
    made = []
    counts = dict(registry._BASE_COUNT)

    def make(name, **kw):
        kw.setdefault("mirror", None)
        op = registry.defop(name, **kw)
        made.append(name)
        return op

    yield make
    for name in made:
        registry.REGISTRY.pop(name, None)
    registry._BASE_COUNT.clear()
    registry._BASE_COUNT.update(counts)


def _xy():
    return (vg.tensor([1.0, 2.0], dtype=vg.float64, requires_grad=True),
            vg.tensor([3.0, 4.0], dtype=vg.float64, requires_grad=True))


@pytest.mark.parametrize("create_graph", [False, True])
def test_too_few_gradients_name_the_op(declare, create_graph):
    op = declare("_test_bad_few", inputs=("x", "y"), forward=np.multiply,
                 vjp=lambda F, g, x, y: (g * y,))
    x, y = _xy()
    out = apply(op, (x, y)).sum()
    with pytest.raises(vg.BackwardContractError, match=r"'_test_bad_few'.*1 gradient\(s\) for 2 "
                                                       r"input\(s\) \(x, y\)"):
        out.backward(create_graph=create_graph)


@pytest.mark.parametrize("create_graph", [False, True])
def test_too_many_gradients(declare, create_graph):
    op = declare("_test_bad_many", inputs=("x", "y"), forward=np.add,
                 vjp=lambda F, g: (g, g, g))
    x, y = _xy()
    with pytest.raises(vg.BackwardContractError, match=r"_test_bad_many.*3 gradient\(s\)"):
        apply(op, (x, y)).sum().backward(create_graph=create_graph)


@pytest.mark.parametrize("create_graph", [False, True])
def test_tuple_from_a_one_input_vjp(declare, create_graph):
    op = declare("_test_bad_tuple", inputs=("x",), forward=np.negative,
                 vjp=lambda F, g: (-g, g))
    x, _ = _xy()
    with pytest.raises(vg.BackwardContractError, match=r"_test_bad_tuple.*one gradient \(not "
                                                       r"a tuple\)"):
        apply(op, (x,)).sum().backward(create_graph=create_graph)


def test_single_array_for_two_inputs_is_not_unpacked(declare):
    # a (2, n) array would otherwise be zipped row by row into the two inputs
    op = declare("_test_bad_stacked", inputs=("x", "y"), forward=np.add,
                 vjp=lambda F, g: np.stack([g, g]))
    x, y = _xy()
    with pytest.raises(vg.BackwardContractError, match=r"_test_bad_stacked.*a single ndarray"):
        apply(op, (x, y)).sum().backward()


@pytest.mark.parametrize("create_graph", [False, True])
def test_gradient_that_does_not_reduce_to_the_input_shape(declare, create_graph):
    # (6,) for a (2, 3) input has the right size: a reshape would have hidden it
    op = declare("_test_bad_shape", inputs=("x",), forward=np.negative,
                 vjp=lambda F, g: F.reshape(g, (6,)))
    x = vg.tensor(np.ones((2, 3)), dtype=vg.float64, requires_grad=True)
    with pytest.raises(vg.BackwardContractError,
                       match=r"_test_bad_shape.*shape \(6,\) for input 0 \(x\) of shape \(2, 3\)"):
        apply(op, (x,)).sum().backward(create_graph=create_graph)


def test_broadcast_gradients_are_still_reduced(declare):
    # the contract allows a gradient at the broadcast shape: the engine sums it back
    op = declare("_test_ok_broadcast", inputs=("x", "y"), forward=np.add,
                 vjp=lambda F, g: (g, g))
    x = vg.tensor(np.ones((2, 3)), dtype=vg.float64, requires_grad=True)
    b = vg.tensor(np.ones(3), dtype=vg.float64, requires_grad=True)
    apply(op, (x, b)).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))


def test_fixture_leaves_the_registry_as_it_was(declare):
    before = dict(registry.REGISTRY)
    declare("_test_tmp", inputs=("x",), forward=np.negative, vjp=lambda F, g: -g)
    assert "_test_tmp" in registry.REGISTRY
    assert set(registry.REGISTRY) - set(before) == {"_test_tmp"}


def test_no_test_op_left_in_the_registry():
    assert not [n for n in registry.REGISTRY if n.startswith("_test_")]
