"""Table-driven tests over the op registry: every declared op, every declared case."""
from __future__ import annotations

import numpy as np
import pytest

import verigrad as vg
from verigrad.registry import REGISTRY
from verigrad.tensor import apply

DIFFERENTIABLE = [op for op in REGISTRY.values() if op.differentiable]
CASES = [(op, i, case) for op in REGISTRY.values()
         for i, case in enumerate(op.domain.cases(np.random.default_rng(0)))]


def _ids(item):
    op, i, _ = item
    return f"{op.name}-{i}"


def _inputs(op, shapes, rng, dtype=np.float64):
    return [op.domain.sample(rng, s, k).astype(dtype) for k, s in enumerate(shapes)]


def _run(op, arrays, params, requires_grad=True):
    ts = [vg.tensor(a, requires_grad=requires_grad) for a in arrays]
    return ts, apply(op, tuple(ts), params)


def _central_vjp(op, arrays, params, v):
    """d/dx_k of sum(v * f(x)) by a 4th-order central stencil in float64."""
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            h = 1e-4 * max(1.0, abs(a[idx]))
            vals = []
            for step in (-2, -1, 1, 2):
                shifted = [b.copy() for b in arrays]
                shifted[k][idx] += step * h
                vals.append(np.sum(v * op.forward(*shifted, **params)))
            g[idx] = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("item", [c for c in CASES if c[0].differentiable], ids=_ids)
def test_vjp_matches_central_differences(item):
    op, i, (shapes, params) = item
    rng = np.random.default_rng(i + 7)
    arrays = _inputs(op, shapes, rng)
    ts, out = _run(op, arrays, params)
    v = rng.standard_normal(out.shape)
    out.backward(vg.tensor(v))
    expected = _central_vjp(op, arrays, params, v)
    tol = 1e-3 if out.dtype is vg.float32 else 1e-6
    for k, (t, e) in enumerate(zip(ts, expected)):
        assert t.grad is not None, f"{op.name}: input {k} got no gradient"
        assert t.grad.shape == t.shape and t.grad.dtype is t.dtype
        np.testing.assert_allclose(t.grad.numpy(), e, rtol=tol, atol=tol,
                                   err_msg=f"{op.name} case {i}, input {k}")


@pytest.mark.parametrize("item", [c for c in CASES if c[0].differentiable], ids=_ids)
def test_vjp_on_tensors_equals_vjp_on_arrays(item):
    """create_graph=True runs the same VJP through recorded ops: same numbers."""
    op, i, (shapes, params) = item
    rng = np.random.default_rng(i + 11)
    arrays = _inputs(op, shapes, rng)
    ts, out = _run(op, arrays, params)
    v = vg.tensor(rng.standard_normal(out.shape))
    first = vg.autograd.grad(out, ts, v, retain_graph=True)
    second = vg.autograd.grad(out, ts, v, create_graph=True)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("item", [c for c in CASES if c[0].differentiable], ids=_ids)
def test_float32_in_float32_out(item):
    op, i, (shapes, params) = item
    if op.name == "_to_copy":
        pytest.skip("changes dtype by design")
    rng = np.random.default_rng(i)
    ts, out = _run(op, _inputs(op, shapes, rng, np.float32), params)
    assert out.dtype is vg.float32, op.name
    out.backward(vg.ones_like(out))
    assert all(t.grad.dtype is vg.float32 for t in ts)


@pytest.mark.parametrize("op", [op for op in REGISTRY.values() if not op.differentiable],
                         ids=lambda op: op.name)
def test_non_differentiable_ops_record_nothing(op):
    x = vg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = apply(op, (x, vg.tensor([2.0, 2.0, 2.0])))
    assert out.dtype is vg.bool and out.grad_fn is None and not out.requires_grad


# The grad_fn names, pinned: derived from the op name and overload order as PyTorch does.
GOLDEN_NAMES = {
    "neg": "NegBackward0", "exp": "ExpBackward0", "log": "LogBackward0",
    "log1p": "Log1PBackward0", "expm1": "Expm1Backward0", "sqrt": "SqrtBackward0",
    "abs": "AbsBackward0", "sin": "SinBackward0", "cos": "CosBackward0", "tan": "TanBackward0",
    "tanh": "TanhBackward0", "sigmoid": "SigmoidBackward0", "relu": "ReluBackward0",
    "reciprocal": "ReciprocalBackward0", "softplus": "SoftplusBackward0",
    "pow.Tensor_Scalar": "PowBackward0", "pow.Tensor_Tensor": "PowBackward1",
    "pow.Scalar": "PowBackward2", "clamp.Tensor": "ClampBackward0", "clamp": "ClampBackward1",
    "add": "AddBackward0", "sub": "SubBackward0", "mul": "MulBackward0", "div": "DivBackward0",
    "rsub.Tensor": "RsubBackward0", "rsub.Scalar": "RsubBackward1",
    "maximum": "MaximumBackward0", "minimum": "MinimumBackward0", "where": "WhereBackward0",
    "sum": "SumBackward0", "sum.dim_IntList": "SumBackward1", "mean": "MeanBackward0",
    "mean.dim": "MeanBackward1", "prod": "ProdBackward0", "prod.dim_int": "ProdBackward1",
    "max.dim": "MaxBackward0", "max": "MaxBackward1", "min.dim": "MinBackward0",
    "min": "MinBackward1", "logsumexp": "LogsumexpBackward0", "softmax": "SoftmaxBackward0",
    "log_softmax": "LogSoftmaxBackward0", "mm": "MmBackward0", "mv": "MvBackward0",
    "dot": "DotBackward0", "bmm": "BmmBackward0", "view": "ViewBackward0",
    "_unsafe_view": "UnsafeViewBackward0", "alias": "AliasBackward0", "clone": "CloneBackward0",
    "transpose": "TransposeBackward0", "permute": "PermuteBackward0",
    "unsqueeze": "UnsqueezeBackward0", "squeeze": "SqueezeBackward0",
    "squeeze.dim": "SqueezeBackward1", "squeeze.dims": "SqueezeBackward2",
    "expand": "ExpandBackward0", "cat": "CatBackward0", "stack": "StackBackward0",
    "select": "SelectBackward0", "slice": "SliceBackward0", "index": "IndexBackward0",
    "select_backward": "SelectBackwardBackward0", "slice_backward": "SliceBackwardBackward0",
    "index_put": "IndexPutBackward0", "_to_copy": "ToCopyBackward0",
    # verigrad/ops/nn.py (rows the torch bridge maps aten ops onto)
    "erf": "ErfBackward0", "rsqrt": "RsqrtBackward0", "silu": "SiluBackward0",
    "cumsum": "CumsumBackward0", "index_select": "IndexSelectBackward0",
    "gather": "GatherBackward0", "triu": "TriuBackward0", "tril": "TrilBackward0",
    # verigrad/ops/numeric.py (what numpy code calls; names checked against torch 2.13)
    "hypot": "HypotBackward0", "atan2": "Atan2Backward0", "logaddexp": "LogaddexpBackward0",
    "sign": "SignBackward0", "sinc": "SincBackward0", "sinh": "SinhBackward0",
    "cosh": "CoshBackward0", "asin": "AsinBackward0", "acos": "AcosBackward0",
    "atan": "AtanBackward0", "asinh": "AsinhBackward0", "acosh": "AcoshBackward0",
    "atanh": "AtanhBackward0", "log2": "Log2Backward0", "log10": "Log10Backward0",
    "exp2": "Exp2Backward0", "var": "VarBackward0",
    "std": "StdBackward0", "diagonal": "DiagonalBackward0", "diag_embed": "DiagEmbedBackward0",
    "trace": "TraceBackward0", "linalg_vector_norm": "LinalgVectorNormBackward0",
    "flip": "FlipBackward0", "sort": "SortBackward0", "linalg_det": "LinalgDetBackward0",
    "linalg_inv_ex": "LinalgInvExBackward0", "linalg_solve_ex": "LinalgSolveExBackward0",
    "linalg_cholesky_ex": "LinalgCholeskyExBackward0",
}


def test_grad_fn_names_are_pinned():
    got = {op.name: op.grad_fn_name for op in REGISTRY.values() if op.differentiable}
    assert got == GOLDEN_NAMES


def test_every_op_has_a_mirror_and_cases():
    for op in REGISTRY.values():
        assert op.mirror is not None, op.name
        assert op.domain.cases(np.random.default_rng(0)), op.name
