"""Engine semantics, without torch: the seed example, accumulation, retain_graph, errors,
retain_grad/detach/requires_grad_, autograd.grad, higher derivatives, deep graphs, garbage and
in-place rules."""
from __future__ import annotations

import contextlib
import gc
import io
import re
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

import verigrad as vg

ADDR = re.compile(r"0x[0-9a-f]+")

SEED = """\
import verigrad as vg
x = vg.tensor(2.0, requires_grad=True); w = vg.tensor(3.0, requires_grad=True); b = vg.tensor(1.0, requires_grad=True)
print(x.grad)        # None
y = w * x + b
print(y.grad_fn)     # <AddBackward0 object at 0x7f20a37583c8>
y.backward()
print(x.grad, w.grad, b.grad)   # tensor(3.) tensor(2.) tensor(1.)
with vg.set_grad_enabled(True):
    y = w * x + b
print(y.requires_grad, y.grad_fn)   # True <AddBackward0 object at 0x...>
with vg.set_grad_enabled(False):
    y = w * x + b
print(y.requires_grad, y.grad_fn)   # False None
"""

SEED_OUTPUT = """\
None
<AddBackward0 object at ADDR>
tensor(3.) tensor(2.) tensor(1.)
True <AddBackward0 object at ADDR>
False None
"""


def _run_printing(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<seed>", "exec"), {})
    return out.getvalue()


def _check_seed_output(text: str) -> None:
    addresses = re.findall(r"object at (\S+)>", text)
    assert len(addresses) == 2
    assert all(re.fullmatch(r"0x[0-9a-f]+", a) for a in addresses), addresses
    assert ADDR.sub("ADDR", text) == SEED_OUTPUT


def test_seed_example_prints_exactly():
    _check_seed_output(_run_printing(SEED))


def test_readme_first_example_prints_exactly():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("no README.md yet")
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    if not blocks or "w * x + b" not in blocks[0]:
        pytest.skip("README's first python example is not the seed example")
    _check_seed_output(_run_printing(blocks[0]))


# ---------------------------------------------------------------------------------------
# accumulation, retain_graph, errors


def test_grad_accumulates_across_backward_calls():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    first = x.grad
    assert first.tolist() == [2.0, 4.0]
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    assert x.grad is first  # accumulated in place, as PyTorch
    assert not x.grad.requires_grad and x.grad.grad_fn is None
    x.grad.zero_()
    assert x.grad.tolist() == [0.0, 0.0]
    x.grad = None
    (x * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_leaf_used_twice_gets_the_sum():
    x = vg.tensor(3.0, requires_grad=True)
    y = x * x + x  # three uses of x
    y.backward()
    assert x.grad.item() == 7.0


def test_grad_keeps_the_leaf_dtype_and_shape():
    x = vg.tensor([[1.0], [2.0]], dtype=vg.float64, requires_grad=True)
    y = vg.tensor([1.0, 2.0, 3.0], requires_grad=True)  # float32, broadcast
    (x * y).sum().backward()
    assert x.grad.dtype is vg.float64 and x.grad.shape == (2, 1)
    assert y.grad.dtype is vg.float32 and y.grad.shape == (3,)
    assert x.grad.tolist() == [[6.0], [6.0]] and y.grad.tolist() == [3.0, 3.0, 3.0]


def test_grad_setter_checks():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    x.grad = vg.tensor([5.0, 5.0])
    (x * 1).sum().backward()
    assert x.grad.tolist() == [6.0, 6.0]
    with pytest.raises(vg.ShapeError):
        x.grad = vg.ones(3)
    with pytest.raises(TypeError):
        x.grad = [1.0, 2.0]


def test_retain_graph_allows_a_second_backward():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    once = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * once)
    with pytest.raises(vg.GraphFreedError):
        y.backward()


def test_second_backward_without_retain_graph_raises():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(vg.GraphFreedError, match="retain_graph=True") as info:
        y.backward()
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(vg.GraphFreedError):
        vg.autograd.grad(y, x)


def test_graph_without_saved_values_can_be_rerun():
    # as in PyTorch: nothing was freed, so a second pass is fine
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = (x + 1).sum()
    y.backward()
    y.backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_non_scalar_backward_needs_gradient():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(vg.NonScalarBackwardError, match="gradient=") as info:
        y.backward()
    assert isinstance(info.value, RuntimeError) and "(2,)" in str(info.value)
    y.backward(vg.tensor([1.0, 10.0]))
    assert x.grad.tolist() == [2.0, 20.0]
    z = (x * 3)[:1]  # one element: implicit gradient allowed, as PyTorch
    z.backward()
    assert x.grad.tolist() == [5.0, 20.0]
    with pytest.raises(vg.ShapeError):
        (x * 2).backward(vg.ones(3))


def test_backward_from_a_tensor_without_graph_raises():
    with pytest.raises(vg.NoGradFnError, match="requires_grad=True"):
        vg.tensor([1.0]).sum().backward()
    x = vg.tensor([1.0], requires_grad=True)
    with vg.no_grad():
        y = (x * 2).sum()
    with pytest.raises(vg.NoGradFnError):
        y.backward()


def test_backward_on_a_leaf_and_autograd_backward():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    x.backward(vg.tensor([3.0, 4.0]))
    assert x.grad.tolist() == [3.0, 4.0]
    a = vg.tensor([1.0, 2.0], requires_grad=True)
    b = vg.tensor([3.0, 4.0], requires_grad=True)
    vg.autograd.backward([a * b, (a + b).sum()], [vg.ones(2), None])
    assert a.grad.tolist() == [4.0, 5.0] and b.grad.tolist() == [2.0, 3.0]


def test_backward_inputs_restricts_accumulation():
    a = vg.tensor([1.0, 2.0], requires_grad=True)
    b = vg.tensor([3.0, 4.0], requires_grad=True)
    (a * b).sum().backward(inputs=[a])
    assert a.grad.tolist() == [3.0, 4.0] and b.grad is None


# ---------------------------------------------------------------------------------------
# retain_grad, detach, requires_grad_


def test_retain_grad():
    x = vg.tensor([1.0, -2.0], requires_grad=True)
    h = x.exp()
    k = h * 2  # not retained
    h.retain_grad()
    h.retain_grad()  # twice is harmless
    x.retain_grad()  # a leaf: no-op
    y = (k * h).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(h.grad.numpy(), 4 * np.exp([1.0, -2.0]), rtol=1e-6)
    assert k.grad is None and h.retains_grad and not k.retains_grad
    y.backward()  # retained grads accumulate too
    np.testing.assert_allclose(h.grad.numpy(), 8 * np.exp([1.0, -2.0]), rtol=1e-6)
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        vg.ones(2).retain_grad()


def test_retain_grad_of_a_broadcast_gradient_is_writable():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1
    h.retain_grad()
    h.sum().backward()
    h.grad.zero_()  # SumBackward0 hands a broadcast view: the retained grad must own it
    assert h.grad.tolist() == [0.0, 0.0]


def test_detach_shares_data_and_version_counter():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.numpy(), y.numpy())
    v = y._version
    d.add_(1)  # no graph: allowed
    assert y.tolist() == d.tolist()
    assert y._version == d._version == v + 1
    with pytest.raises(vg.SavedTensorModifiedError):  # exp saved its output
        y.sum().backward()
    dx = x.detach()
    assert dx.requires_grad is False and x.requires_grad is True
    with vg.no_grad():
        x.mul_(2)
    assert dx.tolist() == [2.0, 4.0]


def test_requires_grad_():
    x = vg.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad and x.is_leaf
    x.requires_grad_(False)
    assert not x.requires_grad
    x.requires_grad = True
    assert x.requires_grad
    y = x * 2
    assert y.requires_grad_() is y  # True on a non-leaf is fine
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    with pytest.raises(vg.DtypeGradError):
        vg.tensor([1, 2]).requires_grad_()
    with pytest.raises(vg.DtypeGradError):
        vg.tensor([True]).requires_grad = True
    assert vg.tensor([1, 2]).requires_grad_(False).requires_grad is False


def test_is_leaf_and_grad_fn():
    x = vg.tensor(1.0, requires_grad=True)
    c = vg.tensor(1.0)
    assert x.is_leaf and c.is_leaf and x.grad_fn is None
    y = x * c
    assert not y.is_leaf and y.grad_fn.name() == "MulBackward0"
    assert (c * c).is_leaf  # no grad needed: a leaf


# ---------------------------------------------------------------------------------------
# autograd.grad


def test_grad_allow_unused():
    x = vg.tensor(2.0, requires_grad=True)
    z = vg.tensor(5.0, requires_grad=True)
    y = x * 3
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        vg.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = vg.autograd.grad(y, [x, z], allow_unused=True)
    assert gx.item() == 3.0 and gz is None
    assert x.grad is None and z.grad is None  # returned, not accumulated


def test_grad_errors_and_forms():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(vg.NoGradFnError):
        vg.autograd.grad((x * 2).sum(), vg.tensor([1.0]))
    (g,) = vg.autograd.grad(x * x, x, vg.tensor([1.0, 1.0]))
    assert g.tolist() == [2.0, 4.0]
    h = x * 3
    gh, gx = vg.autograd.grad((h * h).sum(), [h, x])  # a non-leaf input
    assert gh.tolist() == [6.0, 12.0] and gx.tolist() == [18.0, 36.0]
    (gs,) = vg.autograd.grad(x, x, vg.ones(2))
    assert gs.tolist() == [1.0, 1.0]


def _f_and_hessian(a):
    """f(x) = sum(x**3) + x0*x1*x2 + sum(sin(x)), its gradient and Hessian."""
    g = 3 * a ** 2 + np.cos(a) + np.array([a[1] * a[2], a[0] * a[2], a[0] * a[1]])
    H = np.diag(6 * a - np.sin(a))
    H += np.array([[0, a[2], a[1]], [a[2], 0, a[0]], [a[1], a[0], 0]])
    return g, H


def test_hessian_vector_product_against_analytic_hessian():
    a = np.array([0.5, -1.3, 2.0])
    v = np.array([1.0, -2.0, 0.5])
    x = vg.tensor(a, requires_grad=True)
    f = (x ** 3).sum() + x[0] * x[1] * x[2] + vg.sin(x).sum()
    (g,) = vg.autograd.grad(f, x, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    g_true, H = _f_and_hessian(a)
    np.testing.assert_allclose(g.detach().numpy(), g_true, rtol=1e-12)
    (hv,) = vg.autograd.grad((g * vg.tensor(v)).sum(), x, retain_graph=True)
    np.testing.assert_allclose(hv.numpy(), H @ v, rtol=1e-12)
    # the full Hessian, row by row, from the same first-order graph
    rows = [vg.autograd.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(3)]
    np.testing.assert_allclose(np.array(rows), H, rtol=1e-12, atol=1e-14)


def test_third_derivative():
    x = vg.tensor(0.7, dtype=vg.float64, requires_grad=True)
    y = x ** 4
    (d1,) = vg.autograd.grad(y, x, create_graph=True)
    (d2,) = vg.autograd.grad(d1, x, create_graph=True)
    (d3,) = vg.autograd.grad(d2, x)
    np.testing.assert_allclose([d1.item(), d2.item(), d3.item()],
                               [4 * 0.7 ** 3, 12 * 0.7 ** 2, 24 * 0.7], rtol=1e-14)


def test_backward_create_graph_gives_differentiable_grad():
    x = vg.tensor([1.0, 2.0], dtype=vg.float64, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    np.testing.assert_allclose(x.grad.detach().numpy(), [3.0, 12.0])
    (h,) = vg.autograd.grad(x.grad.sum(), x)
    np.testing.assert_allclose(h.numpy(), [6.0, 12.0])


def test_create_graph_leaf_grads_are_not_shared():
    x = vg.tensor([1.0], requires_grad=True)
    y = vg.tensor([1.0], requires_grad=True)
    (x + y).sum().backward(create_graph=True)
    assert x.grad is not y.grad
    (x + y).sum().backward()
    assert x.grad.tolist() == [2.0] and y.grad.tolist() == [2.0]
    x.grad.zero_()
    assert y.grad.tolist() == [2.0]


def test_tensor_dtype_is_exact_for_python_floats():
    # 0.7 must not be rounded through the default float32 on its way to float64
    assert vg.tensor(0.7, dtype=vg.float64).item() == 0.7
    assert vg.tensor([0.1, 1e300], dtype=vg.float64).tolist() == [0.1, 1e300]
    assert vg.tensor(0.7).dtype is vg.float32


# ---------------------------------------------------------------------------------------
# deep graphs and garbage


def test_100k_op_chain_without_recursion_error():
    start = time.perf_counter()
    x = vg.tensor(0.5, dtype=vg.float64, requires_grad=True)
    z = x
    for _ in range(100_000):
        z = vg.tanh(z)
    z.backward()
    # d/dx of tanh^n(x) = prod (1 - tanh^2) along the chain
    v, d = 0.5, 1.0
    for _ in range(100_000):
        v = np.tanh(v)
        d *= 1 - v * v
    np.testing.assert_allclose(z.item(), v, rtol=1e-12)
    np.testing.assert_allclose(x.grad.item(), d, rtol=1e-9)
    ref = weakref.ref(z.grad_fn)
    del z  # freeing a deep graph must not recurse either
    assert ref() is None
    assert time.perf_counter() - start < 20  # a loose guard; about 1-2 s here


def test_deep_chain_with_mul_add():
    x = vg.tensor(1.0, dtype=vg.float64, requires_grad=True)
    z = x
    for _ in range(20_000):
        z = z * 1.0001 + 0.0
    z.backward()
    np.testing.assert_allclose(x.grad.item(), 1.0001 ** 20_000, rtol=1e-10)


@contextlib.contextmanager
def _gc_disabled():
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _SaveOutputExp(vg.Function):
    @staticmethod
    def forward(ctx, x):
        out = vg.tensor(np.exp(x.numpy()))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


def _graph_plain():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    return x, y


def _graph_retain_grad():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    return x, (h * h).sum()


def _graph_function():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    return x, _SaveOutputExp.apply(x).sum()


def _graph_next_functions():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = vg.tanh(x).sum()
    y.grad_fn.next_functions[0][0].next_functions  # makes an AccumulateGrad node
    return x, y


@pytest.mark.parametrize("build", [_graph_plain, _graph_retain_grad, _graph_function,
                                   _graph_next_functions])
@pytest.mark.parametrize("do_backward", [False, True])
def test_graph_is_freed_by_reference_counting(build, do_backward):
    with _gc_disabled():
        x, y = build()
        refs = [weakref.ref(y.grad_fn), weakref.ref(y.grad_fn.next_functions[0][0])]
        if do_backward:
            y.backward()
        del y
        assert [r() for r in refs] == [None, None]
        leaf = weakref.ref(x)
        del x
        assert leaf() is None


def test_create_graph_grad_graph_is_freed():
    with _gc_disabled():
        x = vg.tensor([1.0, 2.0], requires_grad=True)
        y = (x ** 3).sum()
        (g,) = vg.autograd.grad(y, x, create_graph=True)
        refs = [weakref.ref(y.grad_fn), weakref.ref(g.grad_fn)]
        (g * g).sum().backward()
        del y, g
        assert [r() for r in refs] == [None, None]


def test_saved_tensors_of_a_function_do_not_keep_the_graph_alive():
    with _gc_disabled():
        x = vg.tensor([1.0, 2.0], requires_grad=True)
        y = _SaveOutputExp.apply(x)
        saved = y.grad_fn.saved_tensors
        ref = weakref.ref(y.grad_fn)
        del y, saved
        assert ref() is None


# ---------------------------------------------------------------------------------------
# in-place


def test_inplace_on_leaf_requiring_grad_raises():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    for op in (lambda t: t.__iadd__(1), lambda t: t.__isub__(1), lambda t: t.__imul__(2),
               lambda t: t.__itruediv__(2), lambda t: t.zero_(), lambda t: t.fill_(1.0),
               lambda t: t.add_(1), lambda t: t.copy_(vg.ones(2))):
        with pytest.raises(vg.InplaceOnLeafError, match="no_grad"):
            op(x)
    with pytest.raises(vg.InplaceOnLeafError):
        x += 1
    assert x.tolist() == [1.0, 2.0] and x._version == 0
    with pytest.raises(vg.InplaceOnLeafError):
        x[0] = 3.0


def test_inplace_under_no_grad_works():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    with vg.no_grad():
        x += 1
        x *= 2
        x[0] = 10.0
    assert x.tolist() == [10.0, 6.0]
    assert x.is_leaf and x.requires_grad and x.grad_fn is None
    assert x._version == 3
    (x * x).sum().backward()
    assert x.grad.tolist() == [20.0, 12.0]


def test_inplace_with_a_grad_requiring_operand_on_a_constant():
    c = vg.tensor([1.0, 2.0])
    w = vg.tensor([3.0, 4.0], requires_grad=True)
    c += w  # c joins the graph, as in PyTorch
    assert c.requires_grad and c.grad_fn.name() == "AddBackward0"
    c.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]


def test_modifying_a_saved_tensor_then_backward_raises():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    a = x * 1
    y = (a * a).sum()
    a += 1
    with pytest.raises(vg.SavedTensorModifiedError, match="version 1; expected version 0") as info:
        y.backward()
    assert "MulBackward0" in str(info.value) and isinstance(info.value, RuntimeError)

    c = vg.tensor([3.0, 4.0])  # a saved constant
    y = (x * c).sum()
    c += 1
    with pytest.raises(vg.SavedTensorModifiedError):
        y.backward()

    e = x.exp()  # a saved output
    y = e.sum()
    with vg.no_grad():
        e.mul_(2)
    with pytest.raises(vg.SavedTensorModifiedError, match="ExpBackward0"):
        y.backward()


def test_modifying_an_unsaved_tensor_is_fine():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    a = x * 1
    y = (a + 2).sum()  # add saves nothing
    a += 1
    y.backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_nonleaf_inplace_gradient():
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y += 1
    assert y.grad_fn.name() == "AddBackward0" and y._version == 1
    assert y.grad_fn.next_functions[0][0].name() == "MulBackward0"
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]

    x.grad = None
    y = x * 1
    y *= x  # y = x * x
    y.mul_(3)
    y.sum().backward()
    assert y.tolist() == [3.0, 12.0] and x.grad.tolist() == [6.0, 12.0]


def test_views_share_the_version_counter():
    x = vg.tensor([[1.0, 2.0], [3.0, 4.0]])
    v = x[0]
    t = x.T
    with vg.no_grad():
        v += 1
    assert x.tolist() == [[2.0, 3.0], [3.0, 4.0]]
    assert x._version == v._version == t._version == 1
    w = vg.tensor([1.0, 1.0], requires_grad=True)
    y = (w * x[1]).sum()  # saves a view of x
    with vg.no_grad():
        x.mul_(2)
    with pytest.raises(vg.SavedTensorModifiedError):
        y.backward()


def test_inplace_dtype_rules():
    i = vg.tensor([1, 2])
    with pytest.raises(TypeError):
        i += 0.5  # float result cannot be written into an int64 tensor
    f = vg.tensor([1.0, 2.0])
    f += vg.tensor([1, 1])
    assert f.dtype is vg.float32 and f.tolist() == [2.0, 3.0]


def test_a_product_under_a_sum_hands_on_the_other_factor_without_writing_into_it():
    """mul's VJP under sum (a broadcast 1) returns the other factor itself (bitwise 1 * y):
    the leaves' .grad are copies, and the saved factors stay untouched."""
    import numpy as np
    import verigrad as vg
    from verigrad.ops.namespaces import NUMPY

    rng = np.random.default_rng(3)
    a0, b0 = rng.standard_normal(50), rng.standard_normal(50)
    a = vg.tensor(a0, requires_grad=True)
    b = vg.tensor(b0, requires_grad=True)
    (vg.sin(a) * vg.exp(b)).sum().backward()
    assert np.array_equal(a.grad.numpy(), np.cos(a0) * (1.0 * np.exp(b0)))
    assert np.array_equal(b.grad.numpy(), (1.0 * np.sin(a0)) * np.exp(b0))
    assert np.array_equal(a.numpy(), a0) and np.array_equal(b.numpy(), b0)
    c = vg.tensor(a0, requires_grad=True)
    (c * c).sum().backward()  # both factors the leaf itself: .grad must not alias it
    assert np.array_equal(c.grad.numpy(), a0 + a0) and np.array_equal(c.numpy(), a0)
    ones = np.broadcast_to(np.float64(1.0), (50,))
    assert NUMPY.times(ones, b0) is b0
    assert NUMPY.times(np.broadcast_to(np.float64(2.0), (50,)), b0) is not b0
    assert NUMPY.times(np.ones(50), b0) is not b0  # a writable array of ones: a product
    z = np.array([complex(-0.0, np.inf)] * 3)
    got = NUMPY.times(np.broadcast_to(np.complex128(1), (3,)), z)  # complex: a product
    assert got is not z and got.tobytes() == (np.complex128(1) * z).tobytes()


@pytest.mark.parametrize("value", [np.float64(0.25), np.array(-1.5), np.float32(2.0),
                                   np.array(3 + 1j), np.int64(4)])
@pytest.mark.parametrize("shape", [(), (3,), (2, 1, 4)])
def test_the_vjp_broadcast_is_numpys(value, shape):
    """sum's and mean's VJPs broadcast a scalar with a direct view: numpy's values, dtype,
    strides and read-only flag."""
    from verigrad.ops.namespaces import NUMPY

    got, want = NUMPY.broadcast_to(value, shape), np.broadcast_to(value, shape)
    assert got.shape == want.shape and got.dtype == want.dtype and got.strides == want.strides
    assert np.array_equal(got, want) and not got.flags.writeable
    assert NUMPY.broadcast_to(np.arange(3.0), (2, 3)).shape == (2, 3)  # arrays: numpy's own


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.float16, np.int64])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (4, 1, 33), (1000,)])
def test_mean_forward_is_np_mean_bitwise(dtype, shape):
    from verigrad.ops.reduce import MEAN

    x = (np.random.default_rng(len(shape)).standard_normal(shape) * 100).astype(dtype)
    got, want = MEAN.forward(x), np.mean(x)
    assert type(got) is type(want) and np.asarray(got).tobytes() == np.asarray(want).tobytes()
