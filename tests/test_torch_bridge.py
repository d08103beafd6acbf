"""The PyTorch bridge as a torch user meets it: ``vg.check`` on custom ``torch.autograd.Function``s
and torch functions, ``verigrad.torch.gradcheck`` as a drop-in, ``check_module``.

Table-driven: every correct Function (written as in public torch code) must pass, and every
mutant of it (a wrong constant, a flipped sign, a missing term, a gradient of a shape torch
would silently sum) must fail with the culprit named by its torch name.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest_plugins = ["pytester"]

import verigrad as vg  # noqa: E402
import verigrad.torch as vgt  # noqa: E402
from torch.autograd.function import once_differentiable  # noqa: E402
from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError  # noqa: E402

F64 = torch.float64


def _gen(seed: int) -> Any:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, grad: bool = True, dtype: Any = F64) -> Any:
    return torch.randn(*shape, generator=_gen(seed), dtype=F64).to(dtype).requires_grad_(grad)


# --- correct Functions, written as public torch code writes them ----------------------------

class Softplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.log1p(torch.exp(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)


class LayerNorm(torch.autograd.Function):
    """Layer norm over the last dim, with affine weight and bias (apex/fused style)."""

    @staticmethod
    def forward(ctx, x, w, b, eps):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        xhat = (x - mu) * rstd
        ctx.save_for_backward(xhat, rstd, w)
        return xhat * w + b

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, w = ctx.saved_tensors
        n = xhat.shape[-1]
        gxhat = g * w
        gx = rstd / n * (n * gxhat - gxhat.sum(-1, keepdim=True)
                         - xhat * (gxhat * xhat).sum(-1, keepdim=True))
        return gx, (g * xhat).sum(0), g.sum(0), None


class LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        m = x.max(dim=-1, keepdim=True).values
        out = m.squeeze(-1) + torch.log(torch.exp(x - m).sum(-1))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        return g.unsqueeze(-1) * torch.exp(x - out.unsqueeze(-1))


class Linear(torch.autograd.Function):
    """The torch tutorial's LinearFunction (matmul based), bias optional."""

    @staticmethod
    def forward(ctx, x, w, b=None):
        ctx.save_for_backward(x, w, b)
        out = x.mm(w.t())
        if b is not None:
            out = out + b.unsqueeze(0).expand_as(out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = g.mm(w)
        if ctx.needs_input_grad[1]:
            gw = g.t().mm(x)
        if b is not None and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


class SortTopK(torch.autograd.Function):
    """Sum of the k largest entries per row: sort, then gather the indices (sparsemax-like)."""

    @staticmethod
    def forward(ctx, x, k):
        idx = torch.sort(x, dim=-1, descending=True).indices[..., :k]
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return torch.gather(x, -1, idx).sum(-1)

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        gx = torch.zeros(ctx.shape, dtype=g.dtype)
        gx.scatter_(-1, idx, g.unsqueeze(-1).expand(idx.shape))
        return gx, None


class SwishSetup(torch.autograd.Function):
    """``setup_context``-style (torch >= 2.0): forward takes no ctx."""

    @staticmethod
    def forward(x, beta):
        return x * torch.sigmoid(beta * x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, beta = inputs
        ctx.save_for_backward(x)
        ctx.beta = beta

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.beta * x)
        return g * (s + ctx.beta * x * s * (1 - s)), None


class TanhOnce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class ScaleInPlace(torch.autograd.Function):
    """In-place writes in the forward (``tau /= n``, ``R[i] = ...``) on a fresh tensor."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        out = x.clone()
        out.mul_(3.0)
        out[0] = x[0] ** 2
        return out

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gx = 3.0 * g.clone()
        gx[0] = 2.0 * x[0] * g[0]
        return gx


# --- mutants: one deliberate bug each ----------------------------------------------------------

class SoftplusWrongConstant(Softplus):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(1.01 * x)


class SoftplusWrongSign(Softplus):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(-x)


class LayerNormMissingTerm(LayerNorm):
    @staticmethod
    def backward(ctx, g):
        xhat, rstd, w = ctx.saved_tensors
        n = xhat.shape[-1]
        gxhat = g * w
        gx = rstd / n * (n * gxhat - gxhat.sum(-1, keepdim=True))  # the xhat term is lost
        return gx, (g * xhat).sum(0), g.sum(0), None


class LinearUnsummedBias(Linear):
    """Returns the bias gradient per row, shape (N, D) for a (D,) bias: torch sums it."""

    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        return g.mm(w), g.t().mm(x), g


class LogSumExpBroadcast(LogSumExp):
    """For a (N, 1) input, ``g * p.T`` makes an (N, N) gradient that torch sums to (N, 1):
    a wrong value torch's gradcheck cannot see as a shape error."""

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        return g.unsqueeze(-1) * torch.exp(x - out.unsqueeze(-1)).t()


class SortTopKWrongConstant(SortTopK):
    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        gx = torch.zeros(ctx.shape, dtype=g.dtype)
        gx.scatter_(-1, idx, 0.5 * g.unsqueeze(-1).expand(idx.shape))
        return gx, None


class SwishSetupWrongConstant(SwishSetup):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.beta * x)
        return g * (s + x * s * (1 - s)), None  # beta dropped from the second term


class TanhOnceWrongSign(TanhOnce):
    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 + y * y)


class ScaleInPlaceWrongConstant(ScaleInPlace):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gx = 2.0 * g.clone()
        gx[0] = 2.0 * x[0] * g[0]
        return gx


@dataclass
class Case:
    name: str
    fn: Callable
    inputs: Callable[[], tuple]
    mutants: tuple = ()
    # text the failure must contain (the culprit's torch name is always checked)
    says: str = ""


def _ln_inputs():
    return (randn(4, 5, seed=1), randn(5, seed=2), randn(5, seed=3), 1e-5)


CASES = [
    Case("softplus", Softplus, lambda: (randn(6, seed=0),),
         (SoftplusWrongConstant, SoftplusWrongSign)),
    Case("layer_norm", LayerNorm, _ln_inputs, (LayerNormMissingTerm,)),
    Case("logsumexp", LogSumExp, lambda: (randn(3, 4, seed=4),)),
    Case("logsumexp_column", LogSumExp, lambda: (randn(3, 1, seed=5),),
         (LogSumExpBroadcast,), says="silently sum"),
    Case("linear", Linear, lambda: (randn(4, 3, seed=6), randn(2, 3, seed=7),
                                    randn(2, seed=8)),
         (LinearUnsummedBias,), says="silently sum"),
    Case("sort_gather_topk", SortTopK, lambda: (randn(3, 5, seed=9), 2),
         (SortTopKWrongConstant,)),
    Case("setup_context_swish", SwishSetup, lambda: (randn(5, seed=10), 1.5),
         (SwishSetupWrongConstant,)),
    Case("once_differentiable", TanhOnce, lambda: (randn(5, seed=11),), (TanhOnceWrongSign,)),
    Case("inplace_forward", ScaleInPlace, lambda: (randn(4, seed=12),),
         (ScaleInPlaceWrongConstant,)),
    Case("float32", Softplus, lambda: (randn(6, seed=13, dtype=torch.float32),),
         (SoftplusWrongConstant,)),
    Case("float32_layer_norm", LayerNorm,
         lambda: (randn(4, 5, seed=1, dtype=torch.float32),
                  randn(5, seed=2, dtype=torch.float32),
                  randn(5, seed=3, dtype=torch.float32), 1e-5),
         (LayerNormMissingTerm,)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_correct_function_passes(case: Case) -> None:
    assert vgt.gradcheck(case.fn.apply, case.inputs(), fast_mode=True)
    report = vg.check(case.fn.apply, *case.inputs())
    assert report.verdict == "pass", str(report)
    assert not any("disagrees" in n or "raised" in n for n in report.notes), report.notes


MUTANTS = [(c, m) for c in CASES for m in c.mutants]


@pytest.mark.parametrize("case,mutant", MUTANTS, ids=lambda x: getattr(x, "name", None)
                         or getattr(x, "__name__", ""))
def test_mutant_fails_with_culprit(case: Case, mutant: type) -> None:
    with pytest.raises(TorchGradcheckError, match=f"{mutant.__name__}Backward") as info:
        vgt.gradcheck(mutant.apply, case.inputs())
    report = info.value.report
    assert report.verdict == "fail"
    assert report.culprit is not None and report.culprit.grad_fn == f"{mutant.__name__}Backward"
    assert case.says in str(report), str(report)


def test_silent_sum_is_invisible_to_torch_gradcheck() -> None:
    """The reason the shape mutants matter: torch's own gradcheck passes the broadcast bug
    only when the summed values happen to be right (the unsummed bias), and it cannot say
    where the (N, N) gradient came from."""
    x, w, b = randn(4, 3, seed=6), randn(2, 3, seed=7), randn(2, seed=8)
    assert torch.autograd.gradcheck(LinearUnsummedBias.apply, (x, w, b))
    assert not vgt.gradcheck(LinearUnsummedBias.apply, (x, w, b), raise_exception=False)


# --- torch functions (no custom Function) ------------------------------------------------------

def _attention(q, k, v):
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return torch.softmax(s, dim=-1) @ v


TORCH_FUNCTIONS = [
    ("gelu_erf", lambda x: 0.5 * x * (1 + torch.erf(x / 2 ** 0.5)), lambda: (randn(5),)),
    ("silu", torch.nn.functional.silu, lambda: (randn(5),)),
    ("log_softmax_nll", lambda x, t: torch.nn.functional.nll_loss(
        torch.log_softmax(x, -1), t), lambda: (randn(3, 4), torch.tensor([0, 3, 1]))),
    ("attention", _attention, lambda: (randn(2, 3, seed=1), randn(4, 3, seed=2),
                                       randn(4, 2, seed=3))),
    ("var_mean_dims", lambda x: x.var(dim=0) + x.mean(dim=1).sum(), lambda: (randn(3, 4),)),
    ("cumsum_triu", lambda x: torch.triu(torch.cumsum(x, 0)), lambda: (randn(3, 3),)),
    ("index_select", lambda x, i: torch.index_select(x, 0, i) ** 2,
     lambda: (randn(4, 2), torch.tensor([2, 0, 2]))),
]


@pytest.mark.parametrize("name,fn,inputs", TORCH_FUNCTIONS, ids=[t[0] for t in TORCH_FUNCTIONS])
def test_torch_function_passes(name: str, fn: Callable, inputs: Callable) -> None:
    report = vg.check(fn, *inputs())
    assert report.verdict == "pass", str(report)


def test_constant_inputs_pass_through() -> None:
    """Targets, masks and index tensors do not require grad: they are constants, and only
    the differentiated input appears in the entries."""
    x, t = randn(3, 4), torch.tensor([1, 0, 3])
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)

    def loss(x, target, mask):
        return (torch.nn.functional.cross_entropy(x, target, reduction="none") * mask).sum()

    report = vg.check(loss, x, t, mask)
    assert report.verdict == "pass", str(report)
    assert {e.input for e in report.entries} == {"x"}
    # a float tensor without requires_grad is a constant too: its entries are absent
    report = vg.check(Linear.apply, randn(4, 3, seed=6), randn(2, 3, seed=7, grad=False))
    assert report.verdict == "pass" and {e.input for e in report.entries} == {"x"}


def test_no_input_requires_grad_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="requires_grad=True"):
        vg.check(torch.sin, torch.ones(3, dtype=F64))


def test_check_module_names_parameters() -> None:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                              torch.nn.Linear(4, 1)).double()
    report = vgt.check_module(mlp, randn(5, 3, grad=False))
    assert report.verdict == "pass", str(report)
    names = {e.input for e in report.entries}
    assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= names, names


class _BadLinearModule(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = _gen(3)
        self.weight = torch.nn.Parameter(torch.randn(2, 3, generator=g, dtype=F64))
        self.bias = torch.nn.Parameter(torch.randn(2, generator=g, dtype=F64))

    def forward(self, x):
        return torch.tanh(LinearWrongWeight.apply(x, self.weight, self.bias))


class LinearWrongWeight(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        return g.mm(w), g.t().mm(x) * 2, g.sum(0)


def test_check_module_names_the_culprit_and_parameter() -> None:
    report = vgt.check_module(_BadLinearModule(), randn(4, 3, grad=False))
    assert report.verdict == "fail"
    text = str(report)
    assert "LinearWrongWeightBackward" in text and "weight" in text, text


def test_unmapped_op_is_named_and_falls_back_to_finite_differences() -> None:
    """An aten op without a row (here torch.special.i0e has no verigrad mapping) is named
    in the notes and checked by finite differences; never a guessed mirror."""
    def f(x):
        return torch.special.i0e(x).sum() + torch.sin(x).sum()

    report = vg.check(f, randn(4))
    assert report.verdict == "pass", str(report)
    note = " ".join(report.notes)
    assert "without a verigrad mapping" in note and "i0e" in note, report.notes


def test_unmapped_op_inside_function_still_catches_a_wrong_backward() -> None:
    class I0e(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.special.i0e(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            # d/dx i0e(x) = i1e(x) - sign(x) i0e(x); the sign term is missing
            return g * torch.special.i1e(x)

    report = vg.check(I0e.apply, randn(4))
    assert report.verdict == "fail"
    assert "I0eBackward" in str(report)
    assert any("i0e" in n for n in report.notes), report.notes


# torch's built-in layers, as models use them: correct by construction, so every one must pass
# (with `exact`, the symbolic reference: torch._decomp's decompositions into mapped ops)
BUILTIN_LAYERS = [
    ("layer_norm", lambda x: torch.nn.functional.layer_norm(x, (4,)), True),
    ("batch_norm_train", lambda x: torch.nn.functional.batch_norm(x, None, None, training=True),
     True),
    ("gelu_tanh", lambda x: torch.nn.functional.gelu(x, approximate="tanh"), True),
    ("embedding", lambda x: torch.nn.functional.embedding(torch.tensor([0, 2, 2]), x), True),
    # unmapped ops with outputs torch does not differentiate (LU factors, pivots, info)
    ("det", lambda x: torch.linalg.det(x + 3 * torch.eye(4, dtype=F64)), False),
    ("inv", lambda x: torch.linalg.inv(x + 3 * torch.eye(4, dtype=F64)).sum(), False),
    # decomposed into an in-place prim (copy_to), which would cut the graph: run whole
    ("pad", lambda x: torch.nn.functional.pad(x, (1, 2)), False),
    # torch's derivative reads one triangle's input as symmetric, by convention
    ("cholesky", lambda x: torch.linalg.cholesky(x @ x.T + torch.eye(4, dtype=F64)), False),
    ("eigvalsh", lambda x: torch.linalg.eigvalsh(x + x.T), False),
    # complex intermediates (real input, real output)
    ("rfft_abs", lambda x: torch.fft.rfft(x).abs().sum(), False),
    ("view_as_complex", lambda x: torch.view_as_complex(x.reshape(8, 2)).abs().sum(), False),
]


@pytest.mark.parametrize("name,fn,exact", BUILTIN_LAYERS, ids=[c[0] for c in BUILTIN_LAYERS])
def test_builtin_layers_pass(name: str, fn: Callable, exact: bool) -> None:
    report = vg.check(fn, randn(4, 4, seed=5))
    assert report.verdict == "pass", str(report)
    fd_only = any("finite differences are the reference" in n for n in report.notes)
    assert fd_only != exact, report.notes


class CholeskyWrongBackward(torch.autograd.Function):
    """A custom Function around a foreign op (cholesky): its own wrong backward is still
    the user's, found by differences of its forward."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return torch.linalg.cholesky(a @ a.T + torch.eye(a.shape[0], dtype=a.dtype)).sum()

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a  # not the derivative


def test_a_wrong_function_around_a_foreign_op_still_fails() -> None:
    report = vg.check(CholeskyWrongBackward.apply, randn(3, 3, seed=4))
    assert report.verdict == "fail" and "CholeskyWrongBackward" in str(report)


def _normalised(x):
    return (_affine(x) * torch.linspace(-1, 2, x.shape[-1], dtype=x.dtype)).sum(-1)


def _affine(x):  # one level down: the function that calls torch is found through its callers
    w, b = torch.ones(x.shape[-1], dtype=x.dtype), torch.zeros(x.shape[-1], dtype=x.dtype)
    return LAYER_NORM(x, w, b, 1e-5)


@pytest.mark.parametrize("fn_class,verdict", [(LayerNorm, "pass"),
                                              (LayerNormMissingTerm, "fail")])
def test_numbers_given_to_a_function_calling_torch_go_through_torch(fn_class, verdict,
                                                                    monkeypatch) -> None:
    """``verigrad check model.py:f --at x=...`` passes numbers to a function whose code calls
    a torch Function: it must be checked through torch (its backward), not recorded on
    verigrad's tape around it (which never runs that backward: a false pass)."""
    monkeypatch.setitem(globals(), "LAYER_NORM", fn_class.apply)
    x = np.random.default_rng(0).standard_normal((2, 4))
    assert vg.check(_normalised, x).verdict == verdict


def test_a_foreign_derivative_is_held_to_its_library_accuracy() -> None:
    """torch's digamma has no mapping, and its derivative (trigamma) is good to ~5e-10
    relative: that is a precision warning, not a wrong gradient."""
    x = torch.tensor([0.4, 1.3, 2.7, 6.0], dtype=F64, requires_grad=True)
    report = vg.check(torch.digamma, x)
    assert report.verdict == "pass", str(report)
    assert all(e.status in ("pass", "precision") for e in report.entries)
    assert any("another library's derivative" in w for w in report.warnings), report.warnings


def test_outputs_torch_does_not_differentiate_are_found_by_asking_torch() -> None:
    from verigrad.torch._bridge import _differentiable_outputs

    x = randn(3, 4)
    run = lambda ts: torch.ops.aten.native_layer_norm.default(ts[0], [4], None, None, 1e-5)
    assert _differentiable_outputs("test::layer_norm", run, [x], 3) == (True, False, False)


def test_double_backward_of_an_unmapped_op_is_torchs_not_zero() -> None:
    """conv2d has no mapping: its backward is torch's, and under create_graph=True so is its
    double backward (a constant backward would read as a zero, wrong, second derivative)."""
    img, k = randn(1, 2, 5, 5, seed=1), randn(3, 2, 3, 3, seed=2)
    report = vg.check(lambda a, b: torch.nn.functional.conv2d(a, b, padding=1).pow(2).sum(),
                      img, k, order=2)
    assert report.verdict == "pass", str(report)
    assert any("ConvolutionBackward" in n or "convolution" in n for n in report.notes)


def test_recurrent_module_with_nested_outputs() -> None:
    """An LSTM returns ``output, (h, c)``: nested outputs are checked flat."""
    torch.manual_seed(0)
    report = vgt.check_module(torch.nn.LSTM(2, 2, batch_first=True).double(),
                              randn(1, 2, 2, grad=False))
    assert report.verdict == "pass", str(report)


def test_gru_gets_the_exact_reference() -> None:
    """A GRU splits its gates with as_strided on a view with a storage offset, and
    transposes in place (transpose_): both are recorded, so the whole graph is mirrored."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True).double()
    report = vg.check(lambda x: gru(x)[0].sum(), randn(2, 3, 3))
    assert report.verdict == "pass", str(report)
    assert not any("finite differences are the reference" in n for n in report.notes), \
        report.notes


@pytest.mark.parametrize("fn", [
    # storage positions of a view with an offset, overlapping windows
    lambda x: x[1:].as_strided((2, 3), (1, 2), 4) * x[1:].as_strided((2, 3), (1, 2), 4),
    lambda x: (x * 1).reshape(3, 4).t_().sin(),
    lambda x: torch.cat(torch.tensor_split(x.exp(), 3)[::-1]) * torch.arange(12.0),
    lambda x: torch.stack(torch.tensor_split(x.cos(), [2, 7, -1])[1:3:2] * 2).sum(),
], ids=["as_strided_view", "transpose_inplace", "tensor_split_sections",
        "tensor_split_indices"])
def test_layout_ops_are_mirrored_exactly(fn: Callable) -> None:
    report = vg.check(fn, randn(12))
    assert report.verdict == "pass", str(report)
    assert not report.notes or not any("finite differences are the reference" in n
                                       for n in report.notes), report.notes


def test_a_wrong_backward_read_through_as_strided_is_named() -> None:
    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return 2 * x

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return 3 * g

    report = vg.check(lambda x: Twice.apply(x[2:].as_strided((2, 2), (2, 1), 3)).sum(),
                      randn(8))
    assert report.verdict == "fail" and report.culprit is not None, str(report)
    assert "Twice" in report.culprit.grad_fn, str(report)


def test_a_no_grad_variant_is_differentiated_as_the_op_it_stands_for() -> None:
    """Below autograd, torch runs EmbeddingBag as _embedding_bag_forward_only (no
    derivative); its backward is _embedding_bag's."""
    torch.manual_seed(0)
    report = vgt.check_module(torch.nn.EmbeddingBag(5, 3, mode="mean").double(),
                              torch.tensor([[0, 2], [1, 4]]))
    assert report.verdict == "pass", str(report)


def test_float32_module_with_a_float32_batch() -> None:
    """The checker runs float32 parameters in float64; the batch (a constant) follows, or
    torch refuses the mixed-dtype matmul."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    report = vg.torch.check_module(mlp, torch.randn(2, 3))
    assert report.verdict == "pass", str(report)


# --- gradcheck / gradgradcheck as drop-ins ------------------------------------------------------

def test_gradcheck_keywords_like_torch() -> None:
    x = (randn(5),)
    assert vgt.gradcheck(Softplus.apply, x, eps=1e-6, atol=1e-5, rtol=1e-3, nondet_tol=0.0,
                         check_undefined_grad=True, check_grad_dtypes=True, fast_mode=True)
    assert vgt.gradcheck(torch.sigmoid, x, check_forward_ad=True, check_batched_grad=True)
    # torch's loose atol/rtol, given explicitly, let a 1e-4 relative error through, as in torch
    assert vgt.gradcheck(SoftplusWrongConstant.apply, x, atol=1.0, rtol=1.0)
    with pytest.raises(ValueError, match="masked"):
        vgt.gradcheck(Softplus.apply, x, masked=True)
    with pytest.raises(TorchGradcheckError):
        vgt.gradcheck(SoftplusWrongConstant.apply, x)


def test_gradcheck_error_is_torchs_and_carries_the_report() -> None:
    with pytest.raises(vgt.GradcheckError) as info:
        vgt.gradcheck(SoftplusWrongSign.apply, (randn(4),))
    assert isinstance(info.value, TorchGradcheckError)
    assert info.value.report.verdict == "fail"


def test_gradcheck_nondeterministic_backward_is_caught() -> None:
    class Noisy(Softplus):
        calls = [0]

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            Noisy.calls[0] += 1
            return g * torch.sigmoid(x) + (1e-9 if Noisy.calls[0] % 2 else 0.0)

    assert not vgt.gradcheck(Noisy.apply, (randn(4),), raise_exception=False, atol=1e-6)


def test_gradgradcheck() -> None:
    x = (randn(4),)
    assert vgt.gradgradcheck(Softplus.apply, x)
    assert vgt.gradgradcheck(torch.tanh, x)

    class DetachedBackward(Softplus):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x).detach()  # first order right, second order zero

    assert vgt.gradcheck(DetachedBackward.apply, x)
    with pytest.raises(TorchGradcheckError, match="DetachedBackwardBackward"):
        vgt.gradgradcheck(DetachedBackward.apply, x)
    assert not vgt.gradgradcheck(TanhOnce.apply, x, raise_exception=False)


def test_gradcheck_drop_in_for_a_torch_test_file(pytester: Any) -> None:
    pytester.makepyfile(test_user="""
        import torch
        from verigrad.torch import gradcheck   # was: from torch.autograd import gradcheck

        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g

        class BadSquare(Square):
            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 3 * x * g

        def test_square():
            x = torch.randn(4, dtype=torch.float64, requires_grad=True)
            assert gradcheck(Square.apply, (x,), eps=1e-6, atol=1e-4)

        def test_bad_square():
            x = torch.randn(4, dtype=torch.float64, requires_grad=True)
            assert gradcheck(BadSquare.apply, (x,), eps=1e-6, atol=1e-4)
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*GradcheckError*", "*BadSquareBackward*"])


# --- tracing does not leak: the patch of Function.apply ----------------------------------------

def test_apply_is_restored_after_an_exception() -> None:
    original = torch.autograd.Function.__dict__["apply"]

    def boom(x):
        Softplus.apply(x)
        raise ValueError("user code failed")

    with pytest.raises(Exception, match="user code failed"):
        vg.check(boom, randn(3))
    assert torch.autograd.Function.__dict__["apply"] is original


def test_other_threads_are_not_traced() -> None:
    """While one thread checks, custom Functions called by another thread run as plain
    torch (no tracing, no verigrad nodes)."""
    started, release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    class Waiting(Softplus):
        @staticmethod
        def forward(ctx, x):
            started.set()
            release.wait(10)
            return Softplus.forward(ctx, x)

    def checker():
        seen["report"] = vg.check(Waiting.apply, randn(3), nearby=0)

    t = threading.Thread(target=checker)
    t.start()
    assert started.wait(10)
    x = randn(3, seed=5)
    y = Softplus.apply(x)  # runs while the other thread is inside its trace
    seen["grad_fn"] = type(y.grad_fn).__name__
    (g,) = torch.autograd.grad(y.sum(), x)
    release.set()
    t.join(30)
    assert seen["grad_fn"] == "SoftplusBackward"
    assert torch.allclose(g, torch.sigmoid(x))
    assert seen["report"].verdict == "pass"


def test_import_verigrad_does_not_import_torch() -> None:
    code = ("import sys, verigrad, verigrad.torch; import verigrad as vg; "
            "vg.check('sin(x)', x=0.5); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_readme_example_prints_what_the_readme_says(capsys: Any) -> None:
    from pathlib import Path
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## For PyTorch users", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["True", "False"]
    tail = block.splitlines()
    first = max(i for i, ln in enumerate(tail) if not ln.startswith("#")) + 1
    expected = " ".join(ln[2:] for ln in tail[first:])
    assert lines[2] == expected


class Branchy(torch.autograd.Function):
    """Control flow on values: the traced mirror differs between the branches, and the
    cached local rule must follow it (a digest of the traced graph, not the class)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x if float(x.sum()) > 0 else torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x if float(x.sum()) > 0 else g * torch.cos(x)


def test_value_dependent_traces_get_their_own_rules() -> None:
    up = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    down = torch.tensor([-1.0, -2.0], dtype=F64, requires_grad=True)
    for x in (up, down, up):
        report = vg.check(Branchy.apply, x, nearby=0)
        assert report.verdict == "pass", str(report)


def test_two_threads_check_at_once() -> None:
    """Overlapping traces in two threads: each sees only its own Functions, each verdict is
    the one it gets alone, and ``apply`` is torch's own again when both are done."""
    original = torch.autograd.Function.__dict__["apply"]
    results: dict[str, Any] = {}

    def run(name: str, fn: type) -> None:
        try:
            results[name] = vg.check(fn.apply, randn(5, seed=3), nearby=0).verdict
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results[name] = repr(e)

    threads = [threading.Thread(target=run, args=("good", Softplus)),
               threading.Thread(target=run, args=("bad", SoftplusWrongSign))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {"good": "pass", "bad": "fail"}
    assert torch.autograd.Function.__dict__["apply"] is original


def test_pytest_fixture_accepts_torch_functions(pytester: Any) -> None:
    pytester.makepyfile(test_fixture_user="""
        import torch

        class Cube(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x ** 3

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 3 * x * x * g

        class BadCube(Cube):
            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 3 * x * g

        def test_cube(gradcheck):
            gradcheck(Cube.apply, torch.randn(3, dtype=torch.float64, requires_grad=True))

        def test_bad_cube(gradcheck):
            gradcheck(BadCube.apply, torch.randn(3, dtype=torch.float64, requires_grad=True))
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*BadCubeBackward*"])


class _DtypeBranch(torch.autograd.Function):
    """Right in float64, twice too large in float32: a backward that branches on the dtype."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return g * (x.cos() * 2 if x.dtype == torch.float32 else x.cos())


class _NaiveSoftplus(torch.autograd.Function):
    """e / (1 + e) with e = exp(x): nan in float32 at x = 100, where float64 is fine."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x)
        return torch.nn.functional.softplus(x)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        e = torch.exp(x)
        return g * e / (1 + e)


@pytest.mark.parametrize("fn,x", [(_DtypeBranch.apply, [0.3, 1.2]),
                                  (_NaiveSoftplus.apply, [100.0, 1.0])],
                         ids=["dtype_branch", "float32_nan"])
def test_a_float32_path_that_is_wrong_fails(fn: Callable, x: list) -> None:
    t = torch.tensor(x, requires_grad=True)
    report = vg.check(fn, t)
    assert report.verdict == "fail", str(report)
    assert any("float32 run" in e.reason for e in report.entries), str(report)
    assert not vgt.gradcheck(fn, (t,), raise_exception=False)


def test_float32_layer_norm_at_an_offset_is_float32_rounding() -> None:
    """float32's cancellation of a mean of 1000 is rounding, not a wrong gradient."""
    for seed in range(3):
        x = (torch.randn(4, 8, generator=_gen(seed)) + 1000).requires_grad_()
        report = vg.check(lambda x: torch.nn.functional.layer_norm(x, (8,)).sum(), x)
        assert report.verdict == "pass", str(report)


def test_deterministic_torch_code_summing_to_zero_is_deterministic() -> None:
    """torch's kernels and the replay order sums differently: a layer norm summed to 0 gave
    8.9e-16 and -8.9e-16, which is rounding of values of size 1, not a changing function."""
    for seed in range(4):
        x = randn(4, 8, seed=seed)
        report = vg.check(lambda x: torch.nn.functional.layer_norm(x, (8,)).sum(), x)
        assert report.verdict == "pass" and not report.contract, str(report)


@pytest.mark.parametrize("fn", [lambda x: x.var(), lambda x: x.std(),
                                lambda x: torch.nn.functional.layer_norm(x, (50,)).sum()],
                         ids=["var", "std", "layer_norm_sum"])
def test_torch_own_rounding_at_an_offset_is_not_a_disagreement(fn: Callable) -> None:
    """torch's kernels round x - mean at a mean of 1000 their own way: not a wrong tape."""
    for seed in range(4):
        x = (randn(50, seed=seed, grad=False) + 1000).requires_grad_()
        report = vg.check(fn, x)
        assert report.verdict == "pass", str(report)


def test_a_complex_input_is_a_clear_error() -> None:
    """Its imaginary part would be dropped (and a backward missing conj() pass)."""
    z = torch.randn(3, dtype=torch.complex128, requires_grad=True)
    from verigrad.checker.problem import CheckInputError

    with pytest.raises(CheckInputError, match="complex"):
        vg.check(lambda z: (z * z).abs().sum(), z)


def test_integer_outputs_are_not_differentiated() -> None:
    """A max with its argmax (mark_non_differentiable): torch's gradcheck ignores the
    integer output, and so does verigrad."""

    class MaxArg(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            m, i = x.max(0)
            ctx.save_for_backward(x, i)
            ctx.mark_non_differentiable(i)
            return m, i

        @staticmethod
        def backward(ctx: Any, gm: Any, gi: Any) -> Any:
            x, i = ctx.saved_tensors
            g = torch.zeros_like(x)
            g[i] = gm
            return g

    x = torch.tensor([0.3, 1.2, -0.5], dtype=F64, requires_grad=True)
    assert vg.check(MaxArg.apply, x).verdict == "pass"
    assert vgt.gradcheck(MaxArg.apply, (x,))


class _MM32(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        a, b = ctx.saved_tensors
        return g @ b.T, a.T @ g


class _I0(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x)
        return torch.special.i0(x)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return g * torch.special.i1(x)


class _Exp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        y = torch.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        return g * y


@pytest.mark.parametrize("fn,inputs,verdict", [
    (_MM32.apply, lambda: (torch.randn(3, 4, generator=_gen(0)).requires_grad_(),
                           torch.randn(4, 2, generator=_gen(1)).requires_grad_()), "pass"),
    (lambda x, w: torch.nn.functional.conv2d(x, w).sum(),
     lambda: (torch.randn(1, 1, 4, 4, generator=_gen(0)).requires_grad_(),
              torch.randn(1, 1, 3, 3, generator=_gen(1)).requires_grad_()), "pass"),
    (lambda a, b: torch.linalg.solve(a, b).sum(),
     lambda: ((torch.randn(3, 3, generator=_gen(0)) + 4 * torch.eye(3)).requires_grad_(),
              torch.randn(3, generator=_gen(1)).requires_grad_()), "pass"),
    (_I0.apply, lambda: (torch.tensor([-7.5, 1.0, 3.0], requires_grad=True),), "pass"),
    # a float32 gradient entry of -2.8e-45 (subnormal) is float32's underflow
    (lambda x: torch.log_softmax(x, -1)[0],
     lambda: (torch.tensor([0.0, -102.0, 0.0], requires_grad=True),), "pass"),
    (_Exp.apply, lambda: (torch.tensor([89.0, 1.0], requires_grad=True),), "inconclusive"),
], ids=["matmul_function", "conv2d", "solve", "i0", "subnormal", "overflow_in_function"])
def test_correct_float32_code_is_not_failed_by_its_float32_run(fn: Callable, inputs: Callable,
                                                               verdict: str) -> None:
    report = vg.check(fn, *inputs())
    assert report.verdict == verdict, str(report)


@pytest.mark.parametrize("fn", [lambda x: (x.sin(), x.argmax()), lambda x: (x.argmax(), x.sin()),
                                lambda x: torch.topk(x, 2)], ids=["after", "before", "topk"])
def test_integer_outputs_beside_vector_outputs(fn: Callable) -> None:
    assert vg.check(fn, randn(4)).verdict == "pass"
