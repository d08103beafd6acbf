"""Custom ops: vg.Function (API.md section 2)."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import sympy

import verigrad as vg


class Softplus(vg.Function):
    @staticmethod
    def forward(ctx, x):  # x: Tensor (grad disabled inside)
        ctx.save_for_backward(x)
        return vg.tensor(np.log1p(np.exp(x.numpy())))

    @staticmethod
    def backward(ctx, grad):  # one gradient per forward input
        (x,) = ctx.saved_tensors
        return grad * vg.tensor(1 / (1 + np.exp(-x.numpy())))

    @staticmethod
    def symbolic(x):  # optional SymPy mirror
        return sympy.log(1 + sympy.exp(x))


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def test_softplus_example():
    a = np.array([-2.0, 0.0, 1.5])
    x = vg.tensor([-2.0, 0.0, 1.5], requires_grad=True)  # float32, the default
    y = Softplus.apply(x)
    assert y.grad_fn.name() == "SoftplusBackward"
    assert type(y.grad_fn).__name__ == "SoftplusBackward"
    assert repr(y).endswith("grad_fn=<SoftplusBackward>)")
    assert y.requires_grad and not y.is_leaf and y.dtype is vg.float32
    np.testing.assert_allclose(y.numpy(), np.log1p(np.exp(a)), rtol=1e-6)
    (acc, nr), = y.grad_fn.next_functions
    assert type(acc).__name__ == "AccumulateGrad" and acc.variable is x and nr == 0
    y.backward(vg.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad.numpy(), [1, 2, 3] * _sigmoid(a), rtol=1e-6)
    assert x.grad.dtype is vg.float32


def test_softplus_in_a_larger_graph_and_twice():
    x = vg.tensor([0.5, -1.0], dtype=vg.float64, requires_grad=True)
    y = (Softplus.apply(x * 2) * Softplus.apply(x)).sum()
    y.backward()
    a = np.array([0.5, -1.0])
    sp = np.log1p(np.exp(a))
    sp2 = np.log1p(np.exp(2 * a))
    expected = 2 * _sigmoid(2 * a) * sp + sp2 * _sigmoid(a)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_symbolic_is_stored_and_reachable_from_the_node():
    y = Softplus.apply(vg.tensor([1.0], requires_grad=True))
    assert y.grad_fn._forward_cls is Softplus
    sym = y.grad_fn._forward_cls.symbolic
    s = sympy.Symbol("s")
    assert sym(s) == sympy.log(1 + sympy.exp(s))

    class NoSym(vg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g

    z = NoSym.apply(vg.tensor([1.0], requires_grad=True))
    assert getattr(z.grad_fn._forward_cls, "symbolic", None) is None


def test_ctx_is_the_grad_fn_and_keeps_attributes():
    seen = {}

    class Scale(vg.Function):
        @staticmethod
        def forward(ctx, x, k):
            seen["ctx"] = ctx
            ctx.k = k
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g * ctx.k, None

    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = Scale.apply(x, 3.0)
    assert y.grad_fn is seen["ctx"] and y.grad_fn.k == 3.0
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


# ---------------------------------------------------------------------------------------
# saved tensors


class MulSave(vg.Function):
    """Saves both inputs and its output; checks they come back right."""

    @staticmethod
    def forward(ctx, x, y):
        out = x * y
        ctx.save_for_backward(x, y, out, None)
        return out

    @staticmethod
    def backward(ctx, g):
        x, y, out, nothing = ctx.saved_tensors
        assert nothing is None
        np.testing.assert_allclose(out.numpy(), x.numpy() * y.numpy())
        return g * y, g * x


def test_saved_tensors_of_inputs_and_outputs():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    w = vg.tensor([3.0, 5.0], requires_grad=True)
    out = MulSave.apply(x, w)
    sx, sw, so, none = out.grad_fn.saved_tensors
    assert sx is x and sw is w and none is None
    assert so.tolist() == out.tolist()
    out.sum().backward()
    assert x.grad.tolist() == [3.0, 5.0] and w.grad.tolist() == [1.0, 2.0]
    with pytest.raises(vg.GraphFreedError, match="retain_graph"):
        out.grad_fn.saved_tensors


def test_saved_tensors_survive_retain_graph():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = Softplus.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * _sigmoid(np.array([1.0, 2.0])), rtol=1e-6)
    with pytest.raises(vg.GraphFreedError):
        y.backward()


def test_saving_an_intermediate_tensor():
    class Cube(vg.Function):
        @staticmethod
        def forward(ctx, x):
            sq = x * x
            ctx.save_for_backward(sq)
            return sq * x

        @staticmethod
        def backward(ctx, g):
            (sq,) = ctx.saved_tensors
            return g * 3 * sq

    x = vg.tensor([2.0, -1.0], requires_grad=True)
    Cube.apply(x).sum().backward()
    assert x.grad.tolist() == [12.0, 3.0]


def test_save_for_backward_only_takes_tensors():
    class Bad(vg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, 3.0)
            return x * 1

    with pytest.raises(TypeError, match="ctx.k"):
        Bad.apply(vg.tensor([1.0], requires_grad=True))


def test_modified_saved_input_or_output_raises():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    w = vg.tensor([3.0, 5.0])  # saved, does not require grad
    out = MulSave.apply(x, w)
    w += 1
    with pytest.raises(vg.SavedTensorModifiedError, match="MulSaveBackward"):
        out.sum().backward()

    x2 = vg.tensor([1.0, 2.0], requires_grad=True)
    out = MulSave.apply(x2, vg.tensor([3.0, 5.0]))
    with vg.no_grad():
        out.mul_(2)  # the saved output
    with pytest.raises(vg.SavedTensorModifiedError, match="output 0"):
        out.sum().backward()


def test_saved_output_makes_no_reference_cycle():
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        x = vg.tensor([1.0, 2.0], requires_grad=True)
        out = MulSave.apply(x, vg.tensor([3.0, 5.0]))
        node = weakref.ref(out.grad_fn)
        tensor = weakref.ref(out)
        saved = out.grad_fn.saved_tensors  # re-wrapped, still no cycle
        del out, saved
        assert node() is None and tensor() is None

        out = MulSave.apply(x, vg.tensor([3.0, 5.0]))
        node = weakref.ref(out.grad_fn)
        out.sum().backward()
        del out
        assert node() is None
    finally:
        if was:
            gc.enable()


# ---------------------------------------------------------------------------------------
# needs_input_grad, non-tensor arguments


class Affine(vg.Function):
    """a * x + b with a Python-number scale and an optional tensor offset."""

    @staticmethod
    def forward(ctx, x, a, b, tag):
        ctx.a, ctx.tag = a, tag
        ctx.record = tuple(ctx.needs_input_grad)
        return x * a + b

    @staticmethod
    def backward(ctx, g):
        gx = g * ctx.a if ctx.needs_input_grad[0] else None
        gb = g if ctx.needs_input_grad[2] else None
        return gx, None, gb, None


@pytest.mark.parametrize("rx,rb", [(True, True), (True, False), (False, True)])
def test_needs_input_grad_and_non_tensor_args(rx, rb):
    x = vg.tensor([1.0, 2.0], requires_grad=rx)
    b = vg.tensor([0.5, 0.5], requires_grad=rb)
    y = Affine.apply(x, 3.0, b, "tag")
    assert y.grad_fn.needs_input_grad == (rx, False, rb, False)
    assert y.grad_fn.record == (rx, False, rb, False)
    nf = y.grad_fn.next_functions  # one entry per tensor argument, as PyTorch
    assert len(nf) == 2
    assert (nf[0][0] is not None) == rx and (nf[1][0] is not None) == rb
    y.sum().backward()
    assert (x.grad.tolist() if rx else x.grad) == ([3.0, 3.0] if rx else None)
    assert (b.grad.tolist() if rb else b.grad) == ([1.0, 1.0] if rb else None)


def test_gradient_for_an_input_not_needing_it_is_dropped():
    class Both(vg.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return g, g  # also for y, which needs none

    x = vg.tensor([1.0], requires_grad=True)
    y = vg.tensor([1.0])
    Both.apply(x, y).sum().backward()
    assert x.grad.tolist() == [1.0] and y.grad is None


def test_no_graph_without_inputs_requiring_grad():
    y = Softplus.apply(vg.tensor([1.0]))
    assert y.grad_fn is None and not y.requires_grad
    with vg.no_grad():
        y = Softplus.apply(vg.tensor([1.0], requires_grad=True))
    assert y.grad_fn is None and not y.requires_grad


# ---------------------------------------------------------------------------------------
# several outputs


class SinCos(vg.Function):
    @staticmethod
    def forward(ctx, x):
        s = vg.tensor(np.sin(x.numpy()))
        c = vg.tensor(np.cos(x.numpy()))
        ctx.save_for_backward(s, c)
        return s, c

    @staticmethod
    def backward(ctx, gs, gc):
        s, c = ctx.saved_tensors
        ctx.got = (gs.tolist(), gc.tolist())
        return gs * c - gc * s


def test_several_outputs():
    a = np.array([0.3, -1.2])
    x = vg.tensor(a, dtype=vg.float64, requires_grad=True)
    s, c = SinCos.apply(x)
    assert s.grad_fn is c.grad_fn and s.grad_fn.name() == "SinCosBackward"
    assert s.grad_fn.n_outputs == 2
    (2 * s + 3 * c).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(a) - 3 * np.sin(a), rtol=1e-12)


def test_unused_output_gets_materialized_zeros():
    x = vg.tensor([0.3, -1.2], dtype=vg.float64, requires_grad=True)
    s, c = SinCos.apply(x)
    node = s.grad_fn
    s.sum().backward()
    assert node.got == ([1.0, 1.0], [0.0, 0.0])
    np.testing.assert_allclose(x.grad.numpy(), np.cos([0.3, -1.2]), rtol=1e-12)


def test_set_materialize_grads_false_passes_none():
    class Two(vg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            ctx.got = (g1 is None, g2 is None)
            out = 0
            if g1 is not None:
                out = out + g1 * 2
            if g2 is not None:
                out = out + g2 * 3
            return out

    x = vg.tensor([1.0], requires_grad=True)
    a, b = Two.apply(x)
    node = a.grad_fn
    b.sum().backward()
    assert node.got == (True, False) and x.grad.tolist() == [3.0]


def test_mark_non_differentiable():
    class MaxWithIndex(vg.Function):
        @staticmethod
        def forward(ctx, x):
            i = int(np.argmax(x.numpy()))
            ctx.i, ctx.n = i, x.shape[0]
            value = vg.tensor(x.numpy()[i])
            index = vg.tensor(i)
            ctx.mark_non_differentiable(index)
            return value, index

        @staticmethod
        def backward(ctx, g, g_index):
            assert g_index is None or not g_index.numpy().any()
            out = np.zeros(ctx.n, dtype=g.numpy().dtype)
            out[ctx.i] = g.item()
            return vg.tensor(out)

    class Flagged(vg.Function):  # a float output marked non-differentiable
        @staticmethod
        def forward(ctx, x):
            a, b = x * 2, x * 3
            ctx.mark_non_differentiable(b)
            return a, b

        @staticmethod
        def backward(ctx, ga, gb):
            return ga * 2

    x = vg.tensor([1.0, 5.0, 2.0], requires_grad=True)
    value, index = MaxWithIndex.apply(x)
    assert index.dtype is vg.int64 and not index.requires_grad and index.grad_fn is None
    assert value.grad_fn.name() == "MaxWithIndexBackward"
    (value * 3).backward()
    assert x.grad.tolist() == [0.0, 3.0, 0.0]

    a, b = Flagged.apply(vg.tensor([1.0], requires_grad=True))
    assert a.requires_grad and not b.requires_grad and b.grad_fn is None


def test_input_returned_as_is():
    class Identity(vg.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 5

    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = Identity.apply(x)
    assert y is not x and x.is_leaf and x.grad_fn is None
    assert y.grad_fn.name() == "IdentityBackward"
    assert np.shares_memory(y.numpy(), x.numpy())
    y.sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]


def test_create_graph_through_a_function():
    class Cube(vg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return vg.tensor(x.numpy() ** 3)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x  # recorded ops: differentiable again

    x = vg.tensor(2.0, dtype=vg.float64, requires_grad=True)
    (d1,) = vg.autograd.grad(Cube.apply(x), x, create_graph=True)
    (d2,) = vg.autograd.grad(d1, x)
    assert d1.item() == 12.0 and d2.item() == 12.0


# ---------------------------------------------------------------------------------------
# the backward contract


def _bad(ret, forward=None):
    class BadGrad(vg.Function):
        @staticmethod
        def forward(ctx, x, k=None):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return ret(g)

    return BadGrad


def test_too_few_gradients():
    x = vg.ones(3, requires_grad=True)
    with pytest.raises(vg.BackwardContractError, match=r"returned 1 gradient\(s\).*2 input") as info:
        _bad(lambda g: (g,)).apply(x, 2.0).sum().backward()
    assert "BadGrad" in str(info.value) and "(x, k)" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_too_many_gradients():
    x = vg.ones(3, requires_grad=True)
    with pytest.raises(vg.BackwardContractError, match=r"returned 2 gradient\(s\).*1 input"):
        _bad(lambda g: (g, g)).apply(x).sum().backward()
    # trailing Nones are tolerated, as in PyTorch
    _bad(lambda g: (g * 2, None, None)).apply(x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_wrong_shape_gradient_is_an_error_naming_everything():
    x = vg.ones(3, requires_grad=True)
    with pytest.raises(vg.BackwardContractError) as info:
        _bad(lambda g: vg.ones(4, 3)).apply(x).sum().backward()
    msg = str(info.value)
    for part in ["BadGrad", "input 0", "(x)", "(4, 3)", "(3,)"]:
        assert part in msg, (part, msg)
    assert x.grad is None  # nothing was silently summed into the leaf
    with pytest.raises(vg.BackwardContractError, match=r"\(1, 3\)"):  # not broadcast either
        _bad(lambda g: vg.ones(1, 3)).apply(x).sum().backward()


def test_gradient_for_a_non_tensor_argument_raises():
    x = vg.ones(3, requires_grad=True)
    with pytest.raises(vg.BackwardContractError, match=r"input 1 \(k\).*not a tensor"):
        _bad(lambda g: (g, vg.ones(1))).apply(x, 2.0).sum().backward()


def test_backward_returning_non_tensors_or_complex_raises():
    x = vg.ones(3, requires_grad=True)
    with pytest.raises(vg.BackwardContractError, match="ndarray"):
        _bad(lambda g: g.numpy()).apply(x).sum().backward()
    with pytest.raises(vg.BackwardContractError, match="complex"):
        _bad(lambda g: vg.tensor(g.numpy() + 0j)).apply(x).sum().backward()


def test_gradient_dtype_is_cast_to_the_input_dtype():
    x = vg.ones(3, requires_grad=True)
    _bad(lambda g: vg.ones(3, dtype=vg.float64)).apply(x).sum().backward()
    assert x.grad.dtype is vg.float32 and x.grad.tolist() == [1.0, 1.0, 1.0]


def test_forward_must_return_tensors():
    class ReturnsArray(vg.Function):
        @staticmethod
        def forward(ctx, x):
            return x.numpy() * 2

    with pytest.raises(vg.BackwardContractError, match="vg.tensor"):
        ReturnsArray.apply(vg.ones(2, requires_grad=True))


def test_function_cannot_be_instantiated_and_needs_methods():
    with pytest.raises(RuntimeError, match="apply"):
        Softplus()

    class Empty(vg.Function):
        pass

    with pytest.raises(NotImplementedError):
        Empty.apply(vg.ones(1, requires_grad=True))
    assert vg.autograd.Function is vg.Function
    assert vg.autograd.once_differentiable(len) is len
