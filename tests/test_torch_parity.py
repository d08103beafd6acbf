"""PyTorch parity: values, gradients, grad_fn names, graph structure, reprs, dtypes, errors.

Driven by a table (``CASES``): each row names a case, gives one lambda ``f(m, *xs)`` run with
``m = verigrad`` and (unless a separate torch lambda is given) ``m = torch``, and the input
shapes and sampling domains. Every row is checked for forward values and dtype, the
``grad_fn`` name (``.name()`` and the class name), the whole recorded graph (names,
``output_nr``, ``None`` for inputs that need no gradient, ``AccumulateGrad`` for leaves), and
the gradients of a random cotangent. Rows with several inputs are also run with only the first
input requiring grad. Add a row to extend it.

Known, deliberate differences from PyTorch (each is pinned by a test below, so a change of
either library shows up):

* dtypes print as ``verigrad.float64`` (reprs are compared after replacing ``torch.`` with
  ``verigrad.``).
* ``1-D @ 2-D`` records ``SqueezeBackward1`` where torch records ``SqueezeBackward4`` (torch's
  internal squeeze overload; verigrad's ``squeeze(dim)`` is overload 1 and we keep one name per
  public overload).
* ``matmul`` of a 1-D/2-D left operand with a >=3-D right operand: torch "folds" the batch
  through transposes (``TBackward0``, ``CloneBackward0``, ...), and for batched products the
  choice between ``ViewBackward0`` and ``ReshapeAliasBackward0`` depends on strides; verigrad
  has no strides and records ``expand`` + ``view`` + ``bmm``. Values and gradients agree.
* A custom ``Function.backward`` returning a gradient of the wrong shape raises
  ``BackwardContractError`` in verigrad; torch silently sums/broadcasts it (hides real bugs).
* ``.numpy()`` works on tensors that require grad (verigrad's custom Functions use it); torch
  raises. Implicit conversion (``np.asarray(t)``) still raises while grad mode is on.
* ``.shape`` / ``.size()`` are plain tuples (print ``(2, 3)``, not ``torch.Size([2, 3])``);
  they compare equal to torch's sizes.
* In-place ops on a *view* while recording a graph (``y[0:1] += 1`` or ``y[0] = 5`` with ``y``
  requiring grad) raise ``InplaceOnLeafError``; torch rewrites the base's history
  (``CopySlices``). Under ``no_grad`` both work.
* verigrad is more permissive about dtypes where torch refuses: ``mean``/``softmax``/
  ``log_softmax`` of integer tensors give the default float dtype, and ``matmul`` promotes
  mixed dtypes (torch: "expected both vectors to have same dtype").
* numpy's ``RuntimeWarning`` (``log(0)``, ``0/0``) may be emitted by forwards; torch is
  silent. Values (``inf``/``nan``) agree.
* Rare indexing forms follow numpy, not torch's legacy rules: ``x[True]`` (no
  ``UnsqueezeBackward0`` recorded), ``x[[[0, 1]]]`` (torch treats the outer list as a tuple),
  several ``...`` in one index (torch accepts, verigrad raises IndexError).
* ``backward(create_graph=True)``: a leaf's new ``.grad`` records ``CloneBackward0`` (or
  ``AddBackward0`` when the leaf gets several contributions) where torch records
  ``CopyBackwards``; values and higher derivatives agree.
* With ``create_graph=True``, a gradient through a piecewise-linear op (relu, clamp, abs,
  max) may have no graph in verigrad where torch's has one with a zero derivative (torch's
  ``threshold_backward`` formally depends on the result). Hessian values agree.
* Some dtype errors come from numpy and are ``TypeError`` where torch raises
  ``RuntimeError``: ``-bool_tensor``, ``bool - bool``, ``vg.where`` with a non-bool
  condition; an integer tensor to a negative integer power raises (torch: integer result
  0 for a tensor exponent, RuntimeError for a scalar one).
* float16 softmax is computed in float16 (torch accumulates in float32): last-digit
  differences. ``x.T`` on a non-2-D tensor is silent (torch warns that it is deprecated).
  ``ndarray @ tensor`` works (torch raises TypeError).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [  # torch's deprecation notices for forms the table checks on purpose
    pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning"),
    pytest.mark.filterwarnings("ignore:Tensor.T is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning"),
    pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph:UserWarning"),
    # numpy's notices for log(0), 0 ** -1, ...: the table checks those values on purpose
    pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning"),
]
F = torch.nn.functional

import verigrad as vg  # noqa: E402

ADDR = re.compile(r"0x[0-9a-f]+")

# sampling domains: unions of intervals
ANY = ((-2.0, 2.0),)
POS = ((0.2, 4.0),)
NZ = ((-3.0, -0.3), (0.3, 3.0))
UNIT = ((-1.2, 1.2),)
CLAMPABLE = ((-2.0, -1.1), (-0.9, -0.6), (-0.4, 0.4), (0.6, 0.9), (1.1, 2.0))


@dataclass
class In:
    """One input: shape, domain, whether it requires grad, dtype ('float64' unless said)."""

    shape: tuple
    domain: tuple = ANY
    grad: bool = True
    dtype: str = "float64"


@dataclass
class Case:
    name: str
    fn: Callable                        # fn(m, *xs), m is verigrad or torch
    inputs: list
    th: Callable | None = None          # torch-only lambda when the spelling differs
    graph: bool = True                  # compare the whole recorded graph
    rtol: float = 1e-10
    f32: bool = True                    # also run in float32 (constants here are float64)
    id: str = field(default="")

    def torch_fn(self) -> Callable:
        return self.th or self.fn


def I(*shape, domain=ANY, grad=True, dtype="float64"):  # noqa: E743 - short on purpose
    return In(tuple(shape), domain, grad, dtype)


def C(name, fn, *inputs, **kw):
    return Case(name, fn, list(inputs), **kw)


MASK = np.array([[True, False, True, True], [False, False, True, False],
                 [True, True, False, True]])

CASES = [
    # --- unary, function and method forms ----------------------------------------------
    *[C(f"{op}-{shape}", lambda m, x, op=op: getattr(m, op)(x), I(*shape, domain=dom))
      for op, dom in [("neg", ANY), ("exp", ANY), ("log", POS), ("log1p", ((-0.8, 3.0),)),
                      ("expm1", ANY), ("sqrt", POS), ("abs", NZ), ("sin", ANY), ("cos", ANY),
                      ("tan", UNIT), ("tanh", ANY), ("sigmoid", ((-4.0, 4.0),)), ("relu", NZ),
                      ("reciprocal", NZ)]
      for shape in [(), (3,), (2, 3)]],
    *[C(f"method-{op}", lambda m, x, op=op: getattr(x, op)(), I(2, 3, domain=dom))
      for op, dom in [("neg", ANY), ("exp", ANY), ("log", POS), ("log1p", POS), ("expm1", ANY),
                      ("sqrt", POS), ("abs", NZ), ("sin", ANY), ("cos", ANY), ("tan", UNIT),
                      ("tanh", ANY), ("sigmoid", ANY), ("relu", NZ), ("reciprocal", NZ),
                      ("square", ANY), ("clone", ANY), ("flatten", ANY)]],
    C("softplus", lambda m, x: vg.softplus(x), I(2, 3), th=lambda m, x: F.softplus(x)),
    C("softplus-beta", lambda m, x: vg.softplus(x, beta=2.0, threshold=1.0),
      I(3, 4, domain=((-2.0, 0.4), (0.6, 2.0))),
      th=lambda m, x: F.softplus(x, beta=2.0, threshold=1.0)),
    C("method-softplus", lambda m, x: x.softplus(), I(4), th=lambda m, x: F.softplus(x)),
    C("operator-neg", lambda m, x: -x, I(2, 3)),
    C("operator-abs", lambda m, x: abs(x), I(2, 3, domain=NZ)),
    # --- pow --------------------------------------------------------------------------
    C("pow-2", lambda m, x: x ** 2, I(2, 3)),
    C("pow-3-method", lambda m, x: x.pow(3), I(2, 3)),
    C("pow-neg-frac", lambda m, x: m.pow(x, -1.5), I(2, 3, domain=POS)),
    C("pow-half", lambda m, x: x ** 0.5, I(3, domain=POS)),
    C("pow-tensor", lambda m, x, y: m.pow(x, y), I(2, 3, domain=POS), I(3)),
    C("pow-tensor-op", lambda m, x, y: x ** y, I(2, 1, domain=POS), I(1, 3)),
    C("rpow-int", lambda m, x: 2 ** x, I(2, 3)),
    C("rpow-float", lambda m, x: 2.5 ** x, I(3)),
    C("pow-scalar-base", lambda m, x: m.pow(0.5, x), I(3)),
    C("rpow-zero-base", lambda m, x: 0 ** x, I(2, 3)),  # inf and -inf gradients for x < 0
    C("rpow-zero-base-float", lambda m, x: 0.0 ** x, I(4, domain=POS)),
    C("rpow-negative-base", lambda m, x: (-2.0) ** x, I(3)),  # NaN values and gradients
    # --- clamp ------------------------------------------------------------------------
    C("clamp", lambda m, x: m.clamp(x, -1, 1), I(3, 4, domain=CLAMPABLE)),
    C("clamp-min", lambda m, x: m.clamp(x, min=-0.5), I(3, 4, domain=CLAMPABLE)),
    C("clamp-max-method", lambda m, x: x.clamp(max=0.5), I(3, 4, domain=CLAMPABLE)),
    C("clip", lambda m, x: x.clip(-1, 1), I(3, 4, domain=CLAMPABLE)),
    C("clamp-tensor", lambda m, x, lo, hi: m.clamp(x, lo, hi), I(3, 4),
      I(4, domain=((-1.5, -0.5),)), I(4, domain=((0.5, 1.5),))),
    C("clamp-tensor-min", lambda m, x, lo: m.clamp(x, min=lo), I(3, 4), I(4)),
    # --- binary arithmetic with broadcasting -----------------------------------------
    *[C(f"{op}-{sx}-{sy}", lambda m, x, y, op=op: getattr(m, op)(x, y), I(*sx),
        I(*sy, domain=NZ if op == "div" else ANY))
      for op in ["add", "sub", "mul", "div", "maximum", "minimum"]
      for sx, sy in [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 3)),
                     ((4, 1, 2), (3, 1))]],
    *[C(f"method-{op}", lambda m, x, y, op=op: getattr(x, op)(y), I(2, 3),
        I(3, domain=NZ)) for op in ["add", "sub", "mul", "div", "maximum", "minimum"]],
    C("rsub-tensor", lambda m, x, y: m.rsub(x, y), I(2, 3), I(3)),
    C("rsub-scalar", lambda m, x: m.rsub(x, 2), I(2, 3)),
    # operators, reflected forms, Python scalars on either side
    C("op-add", lambda m, x, y: x + y, I(2, 3), I(3)),
    C("op-sub", lambda m, x, y: x - y, I(2, 3), I(2, 1)),
    C("op-mul", lambda m, x, y: x * y, I(1, 3), I(2, 1)),
    C("op-div", lambda m, x, y: x / y, I(2, 3), I(3, domain=NZ)),
    C("op-add-scalar", lambda m, x: x + 2, I(2, 3)),
    C("op-radd-scalar", lambda m, x: 2 + x, I(2, 3)),
    C("op-sub-scalar", lambda m, x: x - 1.5, I(2, 3)),
    C("op-rsub-scalar", lambda m, x: 1.5 - x, I(2, 3)),
    C("op-mul-scalar", lambda m, x: x * 3, I(2, 3)),
    C("op-rmul-scalar", lambda m, x: 0.5 * x, I(2, 3)),
    C("op-div-scalar", lambda m, x: x / 4, I(2, 3)),
    C("op-rdiv-scalar", lambda m, x: 2 / x, I(2, 3, domain=NZ)),
    C("op-rdiv-int", lambda m, x: 1 / x, I(3, domain=NZ)),
    C("op-reuse", lambda m, x: x * x + x, I(3)),
    # --- where ------------------------------------------------------------------------
    C("where", lambda m, x, y: m.where(x > 0, x, y), I(3, 4, domain=NZ), I(4)),
    C("where-scalar-other", lambda m, x: m.where(x > 0, x, 0.0), I(3, 4, domain=NZ)),
    C("where-scalar-input", lambda m, x: m.where(x > 0, 1.0, x), I(3, 4, domain=NZ)),
    C("where-method", lambda m, x, y: x.where(y > 0, y), I(3, 4), I(3, 4, domain=NZ)),
    # --- comparisons: non-differentiable bool tensors --------------------------------
    *[C(f"compare-{name}", fn, I(2, 3), I(3))
      for name, fn in [("gt", lambda m, x, y: x > y), ("ge", lambda m, x, y: x >= y),
                       ("lt", lambda m, x, y: x < y), ("le", lambda m, x, y: x <= y),
                       ("eq", lambda m, x, y: x == y), ("ne", lambda m, x, y: x != y),
                       ("fn-gt", lambda m, x, y: m.gt(x, y)), ("fn-le", lambda m, x, y: m.le(x, y)),
                       ("method-eq", lambda m, x, y: x.eq(y)), ("method-ne", lambda m, x, y: x.ne(y)),
                       ("scalar-gt", lambda m, x, y: x > 0.5), ("scalar-rlt", lambda m, x, y: 0.5 < y),
                       ("eq-self", lambda m, x, y: x == x)]],
    # --- reductions -------------------------------------------------------------------
    C("sum", lambda m, x: m.sum(x), I(2, 3)),
    C("sum-0d", lambda m, x: x.sum(), I()),
    C("sum-dim", lambda m, x: x.sum(0), I(2, 3)),
    C("sum-dims", lambda m, x: m.sum(x, (0, 2)), I(2, 3, 2)),
    C("sum-keepdim", lambda m, x: x.sum(-1, keepdim=True), I(2, 3)),
    C("sum-dim-kw", lambda m, x: m.sum(x, dim=1), I(2, 3)),
    C("sum-empty-dims", lambda m, x: x.sum(()), I(2, 3)),  # torch: reduces everything
    C("mean-empty-dims", lambda m, x: m.mean(x, []), I(2, 3)),
    C("sum-of-empty", lambda m, x: x.sum(), I(0)),
    C("mean", lambda m, x: x.mean(), I(2, 3)),
    C("mean-dim", lambda m, x: m.mean(x, 1), I(2, 3)),
    C("mean-dims-keepdim", lambda m, x: x.mean((0, 1), keepdim=True), I(2, 3, 2)),
    C("prod", lambda m, x: m.prod(x), I(2, 3, domain=NZ)),
    C("prod-dim", lambda m, x: x.prod(1), I(2, 3, domain=NZ)),
    C("prod-keepdim", lambda m, x: x.prod(0, keepdim=True), I(2, 3, domain=NZ)),
    C("max", lambda m, x: m.max(x), I(2, 3)),
    C("max-method", lambda m, x: x.max(), I(5)),
    C("max-dim", lambda m, x: m.max(x, 1).values, I(2, 3)),
    C("max-dim-keepdim", lambda m, x: x.max(dim=0, keepdim=True)[0], I(2, 3)),
    C("min", lambda m, x: m.min(x), I(2, 3)),
    C("min-dim", lambda m, x: x.min(0).values, I(2, 3)),
    C("logsumexp", lambda m, x: m.logsumexp(x, 1), I(2, 3)),
    C("logsumexp-dims", lambda m, x: m.logsumexp(x, (0, 1)), I(2, 3)),
    C("logsumexp-keepdim", lambda m, x: x.logsumexp(0, keepdim=True), I(2, 3)),
    C("softmax", lambda m, x: m.softmax(x, 1), I(2, 3)),
    C("softmax-neg-dim", lambda m, x: x.softmax(-2), I(2, 3)),
    C("softmax-1d", lambda m, x: x.softmax(0), I(4)),
    C("softmax-empty", lambda m, x: x.softmax(0), I(0)),
    C("softmax-0d", lambda m, x: x.softmax(0), I()),
    C("log_softmax-empty", lambda m, x: x.log_softmax(-1), I(2, 0)),
    C("log_softmax", lambda m, x: m.log_softmax(x, 0), I(2, 3)),
    C("log_softmax-method", lambda m, x: x.log_softmax(-1), I(2, 3)),
    # --- matrix products --------------------------------------------------------------
    C("matmul-2d-2d", lambda m, a, b: a @ b, I(2, 3), I(3, 4)),
    C("matmul-fn", lambda m, a, b: m.matmul(a, b), I(2, 3), I(3, 4)),
    C("mm", lambda m, a, b: m.mm(a, b), I(2, 3), I(3, 4)),
    C("mm-method", lambda m, a, b: a.mm(b), I(2, 3), I(3, 4)),
    C("matmul-2d-1d", lambda m, a, b: a @ b, I(2, 3), I(3)),
    C("mv", lambda m, a, b: m.mv(a, b), I(2, 3), I(3)),
    C("matmul-1d-1d", lambda m, a, b: a @ b, I(4), I(4)),
    C("dot", lambda m, a, b: m.dot(a, b), I(4), I(4)),
    C("matmul-1d-2d", lambda m, a, b: a @ b, I(3), I(3, 4), graph=False),  # SqueezeBackward4
    C("matmul-3d-1d", lambda m, a, b: a @ b, I(2, 2, 3), I(3)),
    C("matmul-3d-2d", lambda m, a, b: a @ b, I(2, 2, 3), I(3, 4)),
    C("matmul-3d-3d", lambda m, a, b: a @ b, I(2, 2, 3), I(2, 3, 4)),
    C("matmul-4d-3d", lambda m, a, b: a @ b, I(3, 2, 2, 3), I(2, 3, 4)),
    C("matmul-2d-3d", lambda m, a, b: a @ b, I(2, 3), I(2, 3, 4), graph=False),  # fold
    C("matmul-1d-3d", lambda m, a, b: a @ b, I(3), I(2, 3, 4), graph=False),  # fold
    C("bmm", lambda m, a, b: m.bmm(a, b), I(2, 2, 3), I(2, 3, 4)),
    C("matmul-T", lambda m, a: a @ a.T, I(3, 2)),
    C("matmul-constant", lambda m, a: a @ m.tensor(np.eye(2, 3)), I(3, 2), f32=False),
    # --- shapes -----------------------------------------------------------------------
    C("reshape", lambda m, x: x.reshape(3, 2), I(2, 3)),
    C("reshape-tuple", lambda m, x: m.reshape(x, (-1,)), I(2, 3)),
    C("reshape-copy", lambda m, x: x.T.reshape(6), I(2, 3)),
    C("view", lambda m, x: x.view(3, 2), I(2, 3)),
    C("view-fn", lambda m, x: m.view(x, (-1, 2)) if m is vg else x.view(-1, 2), I(2, 3)),
    C("transpose", lambda m, x: m.transpose(x, 0, 1), I(2, 3)),
    C("transpose-neg", lambda m, x: x.transpose(-1, 0), I(2, 3, 4)),
    C("T", lambda m, x: x.T, I(2, 3)),
    C("T-1d", lambda m, x: x.T, I(3)),
    C("T-0d", lambda m, x: x.T, I()),
    C("mT", lambda m, x: x.mT, I(2, 2, 3)),
    C("permute", lambda m, x: m.permute(x, (2, 0, 1)), I(2, 3, 4)),
    C("permute-method", lambda m, x: x.permute(1, 0), I(2, 3)),
    C("unsqueeze", lambda m, x: m.unsqueeze(x, 0), I(3)),
    C("unsqueeze-neg", lambda m, x: x.unsqueeze(-1), I(2, 3)),
    C("squeeze", lambda m, x: m.squeeze(x), I(1, 3, 1)),
    C("squeeze-dim", lambda m, x: x.squeeze(0), I(1, 3)),
    C("squeeze-dim-noop", lambda m, x: x.squeeze(1), I(2, 3)),
    C("squeeze-dims", lambda m, x: x.squeeze((0, 2)), I(1, 3, 1)),
    C("expand", lambda m, x: m.expand(x, 2, 3), I(3), th=lambda m, x: x.expand(2, 3)),
    C("expand-neg", lambda m, x: x.expand(2, -1, 4), I(3, 1)),
    C("cat", lambda m, x, y: m.cat([x, y]), I(2), I(3)),
    C("cat-dim", lambda m, x, y, z: m.cat((x, y, z), dim=1), I(2, 2), I(2, 1), I(2, 3)),
    C("cat-neg-dim", lambda m, x, y: m.cat([x, y], -1), I(2, 2), I(2, 1)),
    C("stack", lambda m, x, y: m.stack([x, y]), I(2, 3), I(2, 3)),
    C("stack-dim", lambda m, x, y, z: m.stack([x, y, z], dim=-1), I(2, 3), I(2, 3), I(2, 3)),
    C("double", lambda m, x: x.double(), I(2, 3, dtype="float32")),
    C("float", lambda m, x: x.float(), I(2, 3)),
    C("to", lambda m, x: x.to(m.float32), I(2, 3)),
    C("type_as", lambda m, x, y: x.type_as(y), I(2, 3, dtype="float32"), I(1, grad=False)),
    # --- __getitem__ ------------------------------------------------------------------
    *[C(f"getitem[{key}]", lambda m, x, key=key: eval(f"x[{key}]"), I(3, 4))
      for key in ["0", "-1", "1:", "1:3", ":", "...", ":, :", "::2", "0, 1:", ":, 1:",
                  "1:, ::2", "0:3, 1", "None", ":, None", "..., None", "None, ..., None",
                  "..., 0", "..., 0, :", "0, 1", "0][None", "[0, 2]", "[0, 2, 2]", "[[0, 1], [2, 2]], :",
                  "[0, 1], [1, 2]", ":, [0, 1]", "0, [1, 2]", "[0, 1], 1:", "1:, [2, 0]",
                  "MASK", "MASK[:, 0]", ":, MASK[0]", "-3:", ":100", "3:1"]],
    *[C(f"getitem3d[{key}]", lambda m, x, key=key: eval(f"x[{key}]"), I(2, 3, 4))
      for key in ["0, :, [0, 1]", "[0, 1], :, 0", ":, [0, 1], 0", "..., [0, 1]",
                  "None, 0, [0, 1]", "0, MASK", "[0, 1], None, 0", ":, [0, 1], [1, 2]",
                  "[0, 1], :, [1, 2]", "[0], 0:2, [1, 2]", "0, ..., [1, 2]"]],
    C("getitem-fn", lambda m, x: m.getitem(x, (0, slice(1, None))) if m is vg else x[0, 1:],
      I(3, 4)),
    C("getitem-tensor-index", lambda m, x: x[m.tensor([2, 0])], I(3, 4)),
    C("getitem-0d-tensor-index", lambda m, x: x[m.tensor(1)], I(3, 4)),
    C("getitem-bool-tensor", lambda m, x: x[x > 0], I(3, 4)),
]
for _c in CASES:
    _c.id = _c.name


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _sample(rng, spec: In) -> np.ndarray:
    parts = spec.domain
    which = rng.integers(len(parts), size=spec.shape)
    lo = np.array([p[0] for p in parts])[which]
    hi = np.array([p[1] for p in parts])[which]
    return np.asarray(lo + (hi - lo) * rng.random(spec.shape)).astype(spec.dtype)


def make_inputs(case: Case, first_only: bool = False):
    rng = _rng(case.name)
    arrays = [_sample(rng, s) for s in case.inputs]
    needs = [s.grad and (k == 0 or not first_only) for k, s in enumerate(case.inputs)]
    vx = [vg.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
    tx = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
    return rng, vx, tx


def graph_sig(fn: Any, depth: int = 0) -> Any:
    """The graph below ``fn`` as nested (class name, ((child, output_nr), ...))."""
    if fn is None:
        return None
    assert depth < 50, "graph too deep for a parity case"
    return (type(fn).__name__, tuple((graph_sig(g, depth + 1), nr) for g, nr in fn.next_functions))


def run_both(case: Case, first_only: bool = False):
    g = globals()
    g["MASK"] = MASK  # visible to the eval'd getitem keys
    rng, vx, tx = make_inputs(case, first_only)
    vy = case.fn(vg, *vx)
    ty = case.torch_fn()(torch, *tx)
    return rng, vx, tx, vy, ty


def _dtype_name(d: Any) -> str:
    return str(d).split(".")[-1]


def assert_same_values(vy, ty, rtol=1e-10):
    assert tuple(vy.shape) == tuple(ty.shape)
    assert _dtype_name(vy.dtype) == _dtype_name(ty.dtype)
    np.testing.assert_allclose(vy.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_gradients(case):
    rng, vx, tx, vy, ty = run_both(case)
    assert_same_values(vy, ty, case.rtol)
    assert vy.requires_grad == ty.requires_grad
    assert vy.is_leaf == ty.is_leaf
    if ty.grad_fn is None:
        assert vy.grad_fn is None
        return
    if case.graph:  # the known differences (see the top) only change the recorded graph
        assert vy.grad_fn.name() == ty.grad_fn.name()
        assert type(vy.grad_fn).__name__ == type(ty.grad_fn).__name__
        assert ADDR.sub("ADDR", repr(vy.grad_fn)) == ADDR.sub("ADDR", repr(ty.grad_fn))
        assert graph_sig(vy.grad_fn) == graph_sig(ty.grad_fn)
    cot = rng.standard_normal(tuple(ty.shape))
    vy.backward(vg.tensor(cot, dtype=vy.dtype))
    ty.backward(torch.tensor(cot, dtype=ty.dtype))
    for k, (a, b) in enumerate(zip(vx, tx)):
        if b.grad is None:
            assert a.grad is None, f"input {k}"
            continue
        assert a.grad is not None, f"input {k} got no gradient"
        assert_same_values(a.grad, b.grad, case.rtol)


FLOAT32 = [c for c in CASES if c.f32 and all(s.dtype == "float64" for s in c.inputs)]


@pytest.mark.parametrize("case", FLOAT32, ids=lambda c: c.id)
def test_float32_forward_and_gradients(case):
    """The default dtype: same dtypes as torch for outputs and gradients, values to float32
    precision."""
    for s in case.inputs:
        s.dtype = "float32"
    try:
        rng, vx, tx, vy, ty = run_both(case)
    finally:
        for s in case.inputs:
            s.dtype = "float64"
    assert_same_values(vy, ty, 2e-5)
    if ty.grad_fn is None:
        assert vy.grad_fn is None
        return
    cot = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    vy.backward(vg.tensor(cot))
    ty.backward(torch.tensor(cot))
    for a, b in zip(vx, tx):
        if b.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)
            assert _dtype_name(a.grad.dtype) == _dtype_name(b.grad.dtype) == "float32"


MULTI = [c for c in CASES if sum(s.grad for s in c.inputs) > 1]


@pytest.mark.parametrize("case", MULTI, ids=lambda c: c.id)
def test_next_functions_with_inputs_not_requiring_grad(case):
    rng, vx, tx, vy, ty = run_both(case, first_only=True)
    assert_same_values(vy, ty, case.rtol)
    if ty.grad_fn is None:
        assert vy.grad_fn is None
        return
    if case.graph:
        assert graph_sig(vy.grad_fn) == graph_sig(ty.grad_fn)
    cot = rng.standard_normal(tuple(ty.shape))
    vy.backward(vg.tensor(cot))
    ty.backward(torch.tensor(cot))
    assert_same_values(vx[0].grad, tx[0].grad, case.rtol)
    assert all(a.grad is None for a in vx[1:])


def test_next_functions_details():
    """None for inputs without grad, AccumulateGrad holding the very leaf, output_nr."""
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0], requires_grad=True)
        c = m.tensor([3.0, 4.0])
        y = x * c
        (acc, nr), (none, nr2) = y.grad_fn.next_functions
        assert type(acc).__name__ == "AccumulateGrad" and nr == 0
        assert acc.name() == "torch::autograd::AccumulateGrad"
        assert acc.variable is x
        assert acc.next_functions == ()
        assert none is None and nr2 == 0
        # the same leaf gives the same AccumulateGrad node each time (while it lives)
        z = x + 1
        assert z.grad_fn.next_functions[0][0] is y.grad_fn.next_functions[0][0]
        # several outputs: output_nr
        v = m.max(m.tensor([[1.0, 5.0], [7.0, 2.0]], requires_grad=True), 1)
        assert v.values.grad_fn.next_functions[0][1] == 0
        assert ADDR.sub("A", repr(acc)) == "<AccumulateGrad object at A>"


def test_known_difference_matmul_1d_2d_squeeze_name():
    a, b = np.ones(3), np.ones((3, 4))
    vy = vg.tensor(a, requires_grad=True) @ vg.tensor(b)
    ty = torch.tensor(a, requires_grad=True) @ torch.tensor(b)
    assert vy.grad_fn.name() == "SqueezeBackward1"
    assert ty.grad_fn.name() == "SqueezeBackward4"
    assert graph_sig(vy.grad_fn)[1] == graph_sig(ty.grad_fn)[1]  # same below the squeeze


def test_getitem_negative_step_is_refused_like_torch():
    for m in (vg, torch):
        with pytest.raises(ValueError, match="step must be greater than zero"):
            m.ones(3)[::-1]


@pytest.mark.parametrize("key", ["5", "0, 0, 0", "[0, 5]"])
def test_getitem_errors(key):
    for m in (vg, torch):
        x = m.ones(3, 4)
        with pytest.raises(IndexError):
            eval(f"x[{key}]")


def test_known_difference_rare_index_forms():
    x, t = vg.ones(3, 4), torch.ones(3, 4)
    assert x[[[0, 1]]].shape == (1, 2, 4) and t[[[0, 1]]].shape == (2, 4)  # torch: legacy tuple
    assert x[True].shape == t[True].shape == (1, 3, 4)
    with pytest.raises(IndexError):
        x[..., ...]


def test_max_min_dim_results():
    data = [[1.0, 5.0, 2.0], [7.0, 2.0, 9.0]]
    for fn in ("max", "min"):
        vr = getattr(vg.tensor(data), fn)(1)
        tr = getattr(torch.tensor(data), fn)(1)
        assert repr(vr) == repr(tr).replace("torch.", "verigrad.")
        v, i = vr
        assert v.tolist() == tr.values.tolist() and i.tolist() == tr.indices.tolist()
        assert _dtype_name(i.dtype) == "int64"
        assert vr.indices.tolist() == tr[1].tolist()


# ---------------------------------------------------------------------------------------
# reprs

REPRS = [
    "m.tensor(3.)", "m.tensor(3.5)", "m.tensor(-0.)", "m.tensor(-2.25)", "m.tensor([1., 2.])",
    "m.tensor([[1., 2.], [3., 4.5]])", "m.tensor([[-1., 2.], [3., 4.]])",
    "m.tensor(2., requires_grad=True)", "m.tensor([1., 2.], requires_grad=True)",
    "m.tensor([1., 2.], requires_grad=True) * 2", "m.tensor(2., requires_grad=True).exp()",
    "m.tensor([[1.5, 2.], [3., 4.]], requires_grad=True).sum(0)",
    "m.tensor(3., dtype=m.float64)", "m.tensor([1., 2.], dtype=m.float64)",
    "m.tensor([1., 2.], dtype=m.float64, requires_grad=True)",
    "m.tensor([1., 2.], dtype=m.float64, requires_grad=True).exp()",
    "m.tensor([1., 2.], dtype=m.float16)", "m.tensor([1, 2])", "m.tensor(7)",
    "m.tensor([True, False])", "m.tensor([1, 2], dtype=m.int32)", "m.tensor(1e10)",
    "m.tensor([1e-5, 1.])", "m.tensor([1e20, 1.])", "m.tensor([float('nan'), float('inf'), 1.])",
    "m.tensor([-float('inf'), 0.5])", "m.zeros(2, 3)", "m.ones(0)", "m.zeros(2, 0)",
    "m.arange(12.).reshape(3, 4)", "m.arange(5)", "m.tensor([0.1, 0.25], dtype=m.float64) * 3",
    "m.tensor(1 + 2j)", "m.tensor([1.123456789, 2.], dtype=m.float64)",
    "m.tensor([[[1., 2.], [3., 4.]], [[5., 6.], [7., 8.]]])", "m.tensor([100., 2.5])",
    "m.tensor([1.,2.]) > 1", "m.full((2,), 3)", "m.full((2,), 3.)", "m.eye(2)",
    "m.tensor(2., requires_grad=True).detach()", "m.tensor([1., 2.], requires_grad=True)[0]",
    "m.tensor([1., 2.], requires_grad=True)[:, None]",
    "m.tensor([3., 4.], requires_grad=True).max(0)",
]


@pytest.mark.parametrize("expr", REPRS)
def test_repr(expr):
    vr = repr(eval(expr, {"m": vg}))
    tr = repr(eval(expr, {"m": torch})).replace("torch.", "verigrad.")
    assert vr == tr
    assert str(eval(expr, {"m": vg})) == vr


def test_repr_under_float64_default():
    prev = vg.get_default_dtype()
    tprev = torch.get_default_dtype()
    try:
        vg.set_default_dtype(vg.float64)
        torch.set_default_dtype(torch.float64)
        for expr in ["m.tensor([1., 2.])", "m.tensor([1., 2.], dtype=m.float32)", "m.ones(2)",
                     "m.tensor(1.) + 1"]:
            assert repr(eval(expr, {"m": vg})) == \
                repr(eval(expr, {"m": torch})).replace("torch.", "verigrad.")
    finally:
        vg.set_default_dtype(prev)
        torch.set_default_dtype(tprev)


def test_seed_example_prints_like_torch(capsys):
    def seed(m):
        x = m.tensor(2.0, requires_grad=True)
        w = m.tensor(3.0, requires_grad=True)
        b = m.tensor(1.0, requires_grad=True)
        print(x.grad)
        y = w * x + b
        print(y.grad_fn)
        y.backward()
        print(x.grad, w.grad, b.grad)
        with m.set_grad_enabled(False):
            y = w * x + b
        print(y.requires_grad, y.grad_fn)

    seed(vg)
    v_out = capsys.readouterr().out
    seed(torch)
    t_out = capsys.readouterr().out
    assert ADDR.sub("A", v_out) == ADDR.sub("A", t_out)


# ---------------------------------------------------------------------------------------
# dtypes and promotion

DTYPES = [
    "m.tensor(1.)", "m.tensor([1.])", "m.tensor(1)", "m.tensor(True)", "m.tensor(1.5) * 2",
    "m.tensor([1., 2.]) * 2.5", "m.tensor([1., 2.]) + 1", "2.5 * m.tensor([1., 2.])",
    "m.tensor([1., 2.]) ** 2", "m.tensor([1., 2.]) / 3", "m.tensor([1, 2]) + 1.5",
    "m.tensor([1, 2]) * 2.0", "m.tensor([1, 2]) / 2", "m.tensor([1, 2]) / m.tensor([2, 2])",
    "m.tensor([1, 2]) + 1", "m.tensor([1, 2]) * True", "m.tensor([True]) + True",
    "m.tensor([1, 2]).exp()", "m.tensor([1, 2]).sqrt()", "m.tensor([1, 2]).sigmoid()",
    "m.tensor([1, 2]).tanh()", "m.tensor([1, 2]).neg()", "m.tensor([1, 2]).abs()",
    "m.tensor([1, 2]).sum()", "m.tensor([True, False]).sum()", "m.tensor([1, 2]).prod()",
    "m.tensor([1, 2], dtype=m.int32).sum()", "m.tensor([1, 2]) ** 2", "m.tensor([1, 2]) ** 0.5",
    "2 ** m.tensor([1, 2])", "2. ** m.tensor([1, 2])", "m.tensor([1., 2.]) > 1",
    "m.tensor([1, 2]) > 1.5", "m.tensor([1., 2.]) + m.tensor([1., 2.], dtype=m.float64)",
    "m.tensor([1., 2.], dtype=m.float64) * m.tensor([1., 2.])",
    "m.tensor([1., 2.]) + m.tensor(1., dtype=m.float64)",
    "m.tensor(1.) + m.tensor([1., 2.], dtype=m.float64)",
    "m.tensor(1., dtype=m.float64) + m.tensor(1.)",
    "m.tensor([1, 2]) + m.tensor(1.5, dtype=m.float64)",
    "m.tensor([1, 2]) * m.tensor(1.5)", "m.tensor([1, 2], dtype=m.int32) + m.tensor([1, 2])",
    "m.tensor([1, 2], dtype=m.int32) + 5", "m.tensor([1, 2], dtype=m.int32) + m.tensor(5)",
    "m.tensor([1., 2.], dtype=m.float64) * m.tensor(2, dtype=m.int32)",
    "m.tensor([1., 2.], dtype=m.float16) * 2.0", "m.tensor([1., 2.], dtype=m.float16) + m.tensor(1.)",
    "m.tensor(5).float()", "m.tensor(5).double()", "m.tensor(5.).double()",
    "m.tensor([1., 2.], dtype=m.float64).float()", "m.tensor([1, 2]).to(m.float64)",
    "m.where(m.tensor([True, False]), m.tensor([1, 2]), 0.5)",
    "m.where(m.tensor([True, False]), 1., 0.)", "m.maximum(m.tensor([1, 2]), m.tensor([1.5]))",
    "m.tensor([1, 2]).clamp(min=1.5)", "m.cat([m.tensor([1]), m.tensor([1.5])])",
    "m.stack([m.tensor([1.]), m.tensor([1.5], dtype=m.float64)])", "m.zeros(2)",
    "m.zeros(2, dtype=m.float64)", "m.arange(3)", "m.arange(3.)", "m.arange(0, 1, 0.5)",
    "m.linspace(0, 1, 3)", "m.full((2,), 3)", "m.full((2,), 3.)", "m.full((2,), True)",
    "m.ones_like(m.tensor([1, 2]))", "m.zeros_like(m.tensor([1., 2.], dtype=m.float64))",
    "m.eye(2)", "m.rand(2)", "m.randn(2, dtype=m.float64)", "m.tensor(np.float64(1.5))",
    "m.tensor(np.array([1., 2.]))", "m.tensor(np.array([1., 2.], dtype=np.float32))",
    "m.tensor(np.array([1, 2], dtype=np.int32))", "m.from_numpy(np.array([1., 2.]))",
    "m.tensor([1., 2.]) * np.float64(2.)", "m.tensor([1., 2.], dtype=m.float64)[0] * m.tensor([1., 2.])",
    "m.tensor(1+2j) * m.tensor(2.)", "m.tensor([1., 2.]) * 1j",
]


@pytest.mark.parametrize("expr", DTYPES)
def test_dtype_promotion(expr):
    v = eval(expr, {"m": vg, "np": np})
    t = eval(expr, {"m": torch, "np": np})
    assert _dtype_name(v.dtype) == _dtype_name(t.dtype), expr
    assert tuple(v.shape) == tuple(t.shape)
    if not v.dtype.is_complex:
        np.testing.assert_allclose(v.numpy().astype(np.float64), t.numpy().astype(np.float64),
                                   rtol=1e-6) if expr.find("rand") < 0 else None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_keep_each_inputs_dtype(dtype):
    other = "float64" if dtype == "float32" else "float32"
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0], dtype=getattr(m, dtype), requires_grad=True)
        y = m.tensor([3.0, 4.0], dtype=getattr(m, other), requires_grad=True)
        z = (x * y).sum()
        assert _dtype_name(z.dtype) == "float64"
        z.backward()
        assert _dtype_name(x.grad.dtype) == dtype and _dtype_name(y.grad.dtype) == other
    s = vg.tensor(2.0, dtype=vg.float64, requires_grad=True)
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = x * s  # a 0-d float64 tensor does not promote a 1-d float32 one
    assert y.dtype is vg.float32
    y.sum().backward()
    assert s.grad.dtype is vg.float64 and x.grad.dtype is vg.float32
    np.testing.assert_allclose(s.grad.numpy(), 3.0)


@pytest.mark.parametrize("expr", ["m.tensor([1, 2], requires_grad=True)",
                                  "m.tensor([True], requires_grad=True)",
                                  "m.tensor([1, 2]).requires_grad_()",
                                  "m.zeros(2, dtype=m.int64, requires_grad=True)",
                                  "m.arange(3, requires_grad=True)"])
def test_requires_grad_on_integer_or_bool_raises(expr):
    with pytest.raises(RuntimeError):
        eval(expr, {"m": torch})
    with pytest.raises(vg.DtypeGradError, match="floating point") as info:
        eval(expr, {"m": vg})
    assert isinstance(info.value, RuntimeError)
    assert "dtype=vg.float64" in str(info.value)  # says how to fix it


def test_ops_on_integer_tensors_do_not_require_grad():
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0], requires_grad=True)
        i = m.tensor([1, 2])
        y = x * i
        assert y.requires_grad and _dtype_name(y.dtype) == "float32"
        assert y.grad_fn.next_functions[1] == (None, 0)
        assert not (x > 1).requires_grad and (x > 1).grad_fn is None
        assert x.argmax().grad_fn is None if hasattr(x, "argmax") else True


# ---------------------------------------------------------------------------------------
# errors


def _freed(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


def _freed_exp(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp().sum()
    y.backward()
    y.backward()


def _freed_grad(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    m.autograd.grad(y, x)
    m.autograd.grad(y, x)


def _nonscalar(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).backward()


def _nonscalar_grad(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    m.autograd.grad(x * 2, x)


def _leaf_iadd(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    x += 1


def _leaf_mul_(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    x.mul_(2)


def _leaf_zero_(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    x.zero_()


def _saved_input(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    a = x * 1
    y = (a * a).sum()
    a += 1
    y.backward()


def _saved_output(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    a = x.exp()
    y = a.sum()
    a += 1
    y.backward()


def _saved_constant(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    c = m.tensor([3.0, 4.0])
    y = (x * c).sum()
    c += 1
    y.backward()


def _saved_via_view(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    c = m.tensor([3.0, 4.0])
    y = (x * c).sum()
    with m.no_grad():
        c[0:1].mul_(2)
    y.backward()


def _broadcast(m):
    m.tensor([1.0, 2.0]) + m.tensor([1.0, 2.0, 3.0])


def _broadcast_grad(m):
    m.ones(2, 3, requires_grad=True) * m.ones(3, 2)


def _matmul(m):
    m.ones(2, 3) @ m.ones(2, 3)


def _reshape(m):
    m.ones(2, 3).reshape(4)


def _expand(m):
    m.ones(2, 3).expand(3, 3)


def _stack(m):
    m.stack([m.ones(2, 3), m.ones(3, 2)])


def _cat(m):
    m.cat([m.ones(2, 3), m.ones(3, 2)])


def _no_grad_fn(m):
    m.tensor([1.0, 2.0]).sum().backward()


def _wrong_gradient_shape(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).backward(m.ones(3))


def _nonleaf_requires_grad_false(m):
    x = m.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).requires_grad_(False)


def _unused(m):
    x = m.tensor(1.0, requires_grad=True)
    z = m.tensor(1.0, requires_grad=True)
    m.autograd.grad(x * 2, [x, z])


def _item(m):
    m.ones(2).item()


def _inplace_broadcast(m):
    x = m.ones(3)
    x += m.ones(2, 3)


def _setitem_shape(m):
    x = m.ones(3)
    x[0] = m.ones(2)


def _mT_1d(m):
    m.ones(3).mT


def _bool(m):
    bool(m.ones(2))


def _retain_grad_no_grad(m):
    m.ones(2).retain_grad()


def _setitem_leaf(m):
    x = m.ones(2, requires_grad=True)
    x[0] = 5.0


ERRORS = [
    # (function, verigrad error class, words verigrad's message must contain)
    (_freed, vg.GraphFreedError, ["second time", "retain_graph=True"]),
    (_freed_exp, vg.GraphFreedError, ["retain_graph=True"]),
    (_freed_grad, vg.GraphFreedError, ["retain_graph=True"]),
    (_nonscalar, vg.NonScalarBackwardError, ["scalar outputs", "(2,)", "gradient="]),
    (_nonscalar_grad, vg.NonScalarBackwardError, ["scalar outputs"]),
    (_leaf_iadd, vg.InplaceOnLeafError, ["leaf", "in-place", "no_grad"]),
    (_leaf_mul_, vg.InplaceOnLeafError, ["leaf", "in-place"]),
    (_leaf_zero_, vg.InplaceOnLeafError, ["leaf"]),
    (_saved_input, vg.SavedTensorModifiedError, ["modified by an inplace operation",
                                                 "MulBackward0", "version 1", "version 0"]),
    (_saved_output, vg.SavedTensorModifiedError, ["ExpBackward0", "version"]),
    (_saved_constant, vg.SavedTensorModifiedError, ["MulBackward0", "[verigrad.float32 [2]]"]),
    (_saved_via_view, vg.SavedTensorModifiedError, ["MulBackward0"]),
    (_broadcast, vg.ShapeError, ["(2,)", "(3,)", "broadcast"]),
    (_broadcast_grad, vg.ShapeError, ["(2, 3)", "(3, 2)"]),
    (_matmul, vg.ShapeError, ["2x3 and 2x3"]),
    (_reshape, vg.ShapeError, ["[4]", "size 6"]),
    (_expand, vg.ShapeError, ["expand"]),
    (_stack, vg.ShapeError, ["equal size"]),
    (_cat, vg.ShapeError, ["cat"]),
    (_no_grad_fn, vg.NoGradFnError, ["does not require grad", "requires_grad=True"]),
    (_wrong_gradient_shape, vg.ShapeError, ["(3,)", "(2,)"]),
    (_nonleaf_requires_grad_false, RuntimeError, ["leaf", "detach"]),
    (_unused, RuntimeError, ["allow_unused=True"]),
    (_item, RuntimeError, ["2 elements"]),
    (_inplace_broadcast, vg.ShapeError, ["[3]", "[2, 3]"]),
    (_setitem_shape, vg.ShapeError, ["(2,)", "(3,)"]),
    (_mT_1d, RuntimeError, ["matrices", "1-D"]),
    (_bool, RuntimeError, ["ambiguous"]),
    (_retain_grad_no_grad, RuntimeError, ["requires_grad=False"]),
    (_setitem_leaf, vg.InplaceOnLeafError, ["no_grad"]),
]


@pytest.mark.parametrize("fn,cls,words", ERRORS, ids=[e[0].__name__.strip("_") for e in ERRORS])
def test_errors(fn, cls, words):
    with pytest.raises(RuntimeError):
        fn(torch)
    with pytest.raises(cls) as info:
        fn(vg)
    assert isinstance(info.value, RuntimeError)
    if cls is not RuntimeError:
        assert isinstance(info.value, vg.VerigradError)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("expr", ["x[5]", "x[0, 0, 0]", "x.sum(2)", "x.softmax(3)",
                                  "x.transpose(0, 2)", "m.cat([x, x], 2)", "m.stack([x, x], 3)",
                                  "x.max(2)", "x.unsqueeze(3)"])
def test_index_errors(expr):
    for m in (vg, torch):
        x = m.ones(2, 3)
        with pytest.raises(IndexError):
            eval(expr)


def test_python_number_conversions():
    for m in (vg, torch):
        with pytest.raises(ValueError):
            float(m.ones(2))
        with pytest.raises(ValueError):
            int(m.ones(2))
        with pytest.raises(RuntimeError):
            m.ones(2).item()
        assert float(m.tensor([2.5])) == 2.5 and int(m.tensor(2.7)) == 2
        assert [10, 11, 12][m.tensor(1)] == 11
        assert m.tensor(3).item() == 3 and isinstance(m.tensor(3).item(), int)
        assert m.tensor([[1.0, 2.0]]).tolist() == [[1.0, 2.0]]
        assert len(m.ones(3, 2)) == 3 and [t.tolist() for t in m.tensor([1.0, 2.0])] == [1.0, 2.0]


def test_pow_of_a_zero_base_at_the_edges():
    for m in (vg, torch):
        x = m.tensor([-1.0, 0.0, 1.0], dtype=m.float64, requires_grad=True)
        (0 ** x).sum().backward()
        assert x.grad.tolist() == [-float("inf"), 0.0, 0.0]


def test_known_difference_numpy_on_requires_grad():
    with pytest.raises(RuntimeError):
        torch.ones(2, requires_grad=True).numpy()
    x = vg.ones(2, requires_grad=True)
    assert isinstance(x.numpy(), np.ndarray)
    with pytest.raises(RuntimeError, match="detach"):
        np.asarray(x)  # implicit conversion still refuses
    with vg.no_grad():
        assert np.asarray(x).shape == (2,)


def test_known_difference_inplace_on_view_while_recording():
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    y = t * 2
    y[0:1] += 1
    y.sum().backward()
    assert t.grad.tolist() == [2.0, 2.0]
    x = vg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    v = y[0:1]
    with pytest.raises(vg.InplaceOnLeafError, match="view"):
        v += 1
    with pytest.raises(vg.InplaceOnLeafError):
        y[0] = 5.0


# ---------------------------------------------------------------------------------------
# composite graphs


def _params(rng, shapes):
    return [rng.standard_normal(s) * 0.5 for s in shapes]


def _mlp(m, x, w1, b1, w2, b2, targets, use_log_softmax):
    h = m.tanh(x @ w1 + b1)
    logits = h @ w2 + b2
    if use_log_softmax:
        logp = m.log_softmax(logits, dim=1)
        return -logp[m.arange(x.shape[0]), targets].mean()
    p = m.softmax(logits, 1)
    return ((p - 0.5) ** 2).sum(1).mean()


@pytest.mark.parametrize("use_log_softmax", [True, False])
def test_mlp(use_log_softmax):
    rng = np.random.default_rng(1)
    arrays = _params(rng, [(6, 5), (5, 8), (8,), (8, 3), (3,)])
    targets = np.array([0, 2, 1, 1, 0, 2])
    results = {}
    for m in (vg, torch):
        ts = [m.tensor(a, requires_grad=k > 0) for k, a in enumerate(arrays)]
        loss = _mlp(m, *ts, m.tensor(targets), use_log_softmax)
        sig = graph_sig(loss.grad_fn)
        loss.backward()
        results[m] = (loss, sig, [t.grad for t in ts])
    (vl, vsig, vgrads), (tl, tsig, tgrads) = results[vg], results[torch]
    assert_same_values(vl, tl)
    assert vsig == tsig
    assert vgrads[0] is None and tgrads[0] is None
    for a, b in zip(vgrads[1:], tgrads[1:]):
        assert_same_values(a, b)


def test_mlp_training_steps_match():
    rng = np.random.default_rng(2)
    arrays = _params(rng, [(8, 4), (4, 6), (6,), (6, 2), (2,)])
    targets = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    params = {}
    for m in (vg, torch):
        ts = [m.tensor(a, requires_grad=k > 0) for k, a in enumerate(arrays)]
        for _ in range(3):
            loss = _mlp(m, *ts, m.tensor(targets), True)
            loss.backward()
            with m.no_grad():
                for p in ts[1:]:
                    p -= 0.1 * p.grad
                    p.grad.zero_()
        params[m] = ts
    for a, b in zip(params[vg][1:], params[torch][1:]):
        assert_same_values(a, b)


def test_logsumexp_composite():
    a = np.random.default_rng(3).standard_normal((3, 4)) * 3
    out = {}
    for m in (vg, torch):
        x = m.tensor(a, requires_grad=True)
        mx = x.max(1, keepdim=True).values.detach()
        manual = m.log(m.exp(x - mx).sum(1)) + mx.squeeze(1)
        builtin = m.logsumexp(x, 1)
        (manual * m.tensor([1.0, 2.0, 3.0], dtype=m.float64)).sum().backward()
        g_manual = x.grad.clone()
        x.grad = None
        (builtin * m.tensor([1.0, 2.0, 3.0], dtype=m.float64)).sum().backward()
        out[m] = (manual, builtin, g_manual, x.grad, graph_sig(manual.grad_fn))
    for a_, b_ in zip(out[vg][:4], out[torch][:4]):
        assert_same_values(a_, b_)
    assert out[vg][4] == out[torch][4]
    assert_same_values(out[vg][2], out[vg][3])


def test_chain_with_reuse():
    a = np.array([0.3, -1.2, 2.0])
    out = {}
    for m in (vg, torch):
        x = m.tensor(a, requires_grad=True)
        y = x * x + x.sin() * x
        z = (y * x).sum() + (y / (1 + x * x)).mean()
        z.backward()
        out[m] = (z, x.grad, graph_sig(z.grad_fn))
    assert_same_values(out[vg][0], out[torch][0])
    assert_same_values(out[vg][1], out[torch][1])
    assert out[vg][2] == out[torch][2]


def test_hessian_vector_product_matches_torch():
    rng = np.random.default_rng(4)
    a, v, w = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal((4, 4))
    out = {}
    for m in (vg, torch):
        x = m.tensor(a, requires_grad=True)
        W = m.tensor(w)
        f = m.tanh(W @ x).sum() + (x ** 3).sum() + x[0] * x[1] + m.logsumexp(x, 0) + \
            m.softmax(x, 0)[2] + m.sigmoid(x).prod()
        (g,) = m.autograd.grad(f, x, create_graph=True)
        assert g.requires_grad and g.grad_fn is not None
        (hv,) = m.autograd.grad((g * m.tensor(v)).sum(), x)
        out[m] = (f, g, hv)
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_, rtol=1e-9)


def test_second_and_third_derivatives_match_torch():
    out = {}
    for m in (vg, torch):
        x = m.tensor(0.7, dtype=m.float64, requires_grad=True)
        y = m.exp(m.sin(x)) * x ** 2 / (1 + x)
        (d1,) = m.autograd.grad(y, x, create_graph=True)
        (d2,) = m.autograd.grad(d1, x, create_graph=True)
        (d3,) = m.autograd.grad(d2, x)
        out[m] = (d1, d2, d3)
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_, rtol=1e-9)


def test_backward_with_create_graph_accumulates_differentiable_grad():
    out = {}
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)
        (x ** 3).sum().backward(create_graph=True)
        g = x.grad
        assert g.requires_grad
        (h,) = m.autograd.grad(g.sum(), x)
        out[m] = (g.detach(), h)
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_)


def test_grad_with_grad_outputs_and_several_outputs():
    out = {}
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0, 3.0], dtype=m.float64, requires_grad=True)
        y = m.tensor([0.5, -1.0, 2.0], dtype=m.float64, requires_grad=True)
        a, b = x * y, (x + y).exp()
        gx, gy = m.autograd.grad([a, b], [x, y],
                                 [m.tensor([1.0, 0.0, 2.0], dtype=m.float64),
                                  m.tensor([0.5, 0.5, 0.5], dtype=m.float64)])
        out[m] = (gx, gy)
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_)


def test_grad_of_non_leaf_input():
    out = {}
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)
        h = x * 3
        y = (h ** 2).sum()
        gh, gx = m.autograd.grad(y, [h, x])
        out[m] = (gh, gx)
        assert x.grad is None
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_)


def test_retain_grad_and_leaf_grads_match():
    out = {}
    for m in (vg, torch):
        x = m.tensor([1.0, -2.0], dtype=m.float64, requires_grad=True)
        h = x.exp()
        h.retain_grad()
        y = (h * h).sum()
        y.backward()
        out[m] = (h.grad, x.grad)
        assert h.retains_grad and not x.retains_grad
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_)


# ---------------------------------------------------------------------------------------
# custom Functions, the same code in both libraries


def _functions(m):
    Function = m.autograd.Function

    class Softplus(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return m.tensor(np.log1p(np.exp(x.detach().numpy())))

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * m.tensor(1 / (1 + np.exp(-x.detach().numpy())))

    class SinCos(Function):  # two outputs, one saved output
        @staticmethod
        def forward(ctx, x):
            s, c = m.tensor(np.sin(x.detach().numpy())), m.tensor(np.cos(x.detach().numpy()))
            ctx.save_for_backward(s, c)
            return s, c

        @staticmethod
        def backward(ctx, gs, gc):
            s, c = ctx.saved_tensors
            return gs * c - gc * s

    class Scale(Function):  # non-tensor argument, needs_input_grad
        @staticmethod
        def forward(ctx, x, k, y):
            ctx.k = k
            ctx.seen = tuple(ctx.needs_input_grad)
            ctx.save_for_backward(x, y)
            return x * k * y

        @staticmethod
        def backward(ctx, grad):
            x, y = ctx.saved_tensors
            gx = grad * ctx.k * y if ctx.needs_input_grad[0] else None
            gy = grad * ctx.k * x if ctx.needs_input_grad[2] else None
            return gx, None, gy

    class ArgmaxValue(Function):  # a non-differentiable integer output
        @staticmethod
        def forward(ctx, x):
            idx = int(np.argmax(x.detach().numpy()))
            ctx.idx, ctx.n = idx, x.shape[0]
            out = x[idx].clone()
            ind = m.tensor(idx)
            ctx.mark_non_differentiable(ind)
            return out, ind

        @staticmethod
        def backward(ctx, g, g_ind):
            z = m.zeros(ctx.n, dtype=g.dtype)
            z[ctx.idx] = g
            return z

    return Softplus, SinCos, Scale, ArgmaxValue


def test_custom_softplus():
    a = np.array([-1.5, 0.0, 2.0])
    cot = np.array([0.3, -1.0, 2.0])
    out = {}
    for m in (vg, torch):
        Softplus = _functions(m)[0]
        x = m.tensor(a, requires_grad=True)
        y = Softplus.apply(x)
        assert y.grad_fn.name() == "SoftplusBackward"
        assert type(y.grad_fn).__name__ == "SoftplusBackward"
        out[m] = [y, graph_sig(y.grad_fn), ADDR.sub("A", repr(y.grad_fn)),
                  ADDR.sub("A", repr(y))]
        y.backward(m.tensor(cot))
        out[m].append(x.grad)
    v, t = out[vg], out[torch]
    assert_same_values(v[0], t[0])
    assert v[1] == t[1] == ("SoftplusBackward", ((("AccumulateGrad", ()), 0),))
    assert v[2] == t[2].replace("torch.", "verigrad.")
    assert v[3] == t[3].replace("torch.", "verigrad.")
    assert_same_values(v[4], t[4])


def test_custom_function_several_outputs():
    a = np.array([0.1, 0.7, -2.0])
    out = {}
    for m in (vg, torch):
        SinCos = _functions(m)[1]
        x = m.tensor(a, requires_grad=True)
        s, c = SinCos.apply(x)
        assert s.grad_fn is c.grad_fn
        nrs = (s.grad_fn.next_functions, s.output_nr if hasattr(s, "output_nr") else None)
        (s * 2 + c * 3).sum().backward()
        g_both = x.grad.clone()
        x.grad = None
        s2, c2 = SinCos.apply(x)
        s2.sum().backward()  # the unused output gets materialized zeros
        out[m] = (s, c, g_both, x.grad, graph_sig(s.grad_fn), len(nrs[0]))
    for a_, b_ in zip(out[vg][:4], out[torch][:4]):
        assert_same_values(a_, b_)
    assert out[vg][4:] == out[torch][4:]


@pytest.mark.parametrize("which", [(True, True), (True, False), (False, True)])
def test_custom_function_non_tensor_args_and_needs_input_grad(which):
    out = {}
    for m in (vg, torch):
        Scale = _functions(m)[2]
        x = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=which[0])
        y = m.tensor([3.0, -1.0], dtype=m.float64, requires_grad=which[1])
        z = Scale.apply(x, 2.5, y)
        ctx = z.grad_fn
        assert ctx.needs_input_grad == (which[0], False, which[1])
        assert ctx.seen == (which[0], False, which[1])
        sig = graph_sig(ctx)
        z.sum().backward()
        out[m] = (z, x.grad, y.grad, sig)
    v, t = out[vg], out[torch]
    assert_same_values(v[0], t[0])
    for a_, b_ in zip(v[1:3], t[1:3]):
        assert (a_ is None) == (b_ is None)
        if a_ is not None:
            assert_same_values(a_, b_)
    assert v[3] == t[3]


def test_custom_function_mark_non_differentiable():
    out = {}
    for m in (vg, torch):
        ArgmaxValue = _functions(m)[3]
        x = m.tensor([1.0, 5.0, 2.0], dtype=m.float64, requires_grad=True)
        with m.no_grad():
            pass
        val, ind = ArgmaxValue.apply(x)
        assert not ind.requires_grad and ind.grad_fn is None
        assert val.grad_fn.name() == "ArgmaxValueBackward"
        (val * 3).backward()
        out[m] = (val, ind, x.grad)
    for a_, b_ in zip(out[vg], out[torch]):
        assert_same_values(a_, b_)


def test_custom_function_without_grad_records_nothing():
    for m in (vg, torch):
        Softplus = _functions(m)[0]
        y = Softplus.apply(m.tensor([1.0, 2.0]))
        assert y.grad_fn is None and not y.requires_grad
        with m.no_grad():
            y = Softplus.apply(m.tensor([1.0, 2.0], requires_grad=True))
        assert y.grad_fn is None and not y.requires_grad


def test_known_difference_wrong_shape_custom_gradient():
    def make(m):
        class Bad(m.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return m.ones(4, 3, dtype=g.dtype)

        return Bad

    x = torch.ones(3, requires_grad=True)
    make(torch).apply(x).sum().backward()  # torch silently sums the (4, 3) gradient
    assert x.grad.tolist() == [4.0, 4.0, 4.0]
    x = vg.ones(3, requires_grad=True)
    with pytest.raises(vg.BackwardContractError, match=r"\(4, 3\).*\(3,\)"):
        make(vg).apply(x).sum().backward()


# ---------------------------------------------------------------------------------------
# random compositions (seeded, so a failure reproduces): values, gradients and graphs

UNARY_STEPS = [
    lambda m, x: m.exp(m.tanh(x)), lambda m, x: m.sin(x), lambda m, x: m.cos(x) * 2,
    lambda m, x: m.sigmoid(x), lambda m, x: x.relu() + 0.1, lambda m, x: m.log(x * x + 1),
    lambda m, x: m.sqrt(x * x + 0.5), lambda m, x: (x ** 2 + 1) ** -0.5, lambda m, x: -x,
    lambda m, x: 1 / (m.abs(x) + 1), lambda m, x: x.sum(-1, keepdim=True),
    lambda m, x: x.mean(), lambda m, x: m.clamp(x, -0.5, 0.7), lambda m, x: x[..., None][..., 0],
    lambda m, x: m.softmax(x, -1) if x.ndim else x * 3,
    lambda m, x: m.logsumexp(x, -1, keepdim=True) if x.ndim else x - 1,
    lambda m, x: x.reshape(-1).sum() + x, lambda m, x: 2 ** x, lambda m, x: x.expm1(),
    lambda m, x: x.max() * x, lambda m, x: x.min(-1, keepdim=True).values if x.ndim else x,
    lambda m, x: x.prod(-1, keepdim=True) if x.ndim else x.prod(),
    lambda m, x: m.log_softmax(x, -1) if x.ndim else x, lambda m, x: x.abs().log1p(),
    lambda m, x: m.stack([x, x * 2]).sum(0), lambda m, x: m.cat([x.reshape(-1), x.reshape(-1)]).sum(),
    lambda m, x: x[..., :1] * x if x.ndim else x, lambda m, x: x.reshape(-1)[m.tensor([0, 0])].sum() + x,
    lambda m, x: x.unsqueeze(0).expand(2, *x.shape).sum(0), lambda m, x: x.tan().clamp(max=2.0),
    lambda m, x: (x.reshape(-1, 1) @ x.reshape(1, -1)).sum(0).sum(), lambda m, x: x.clone() ** 3,
]
BINARY_STEPS = [
    lambda m, x, y: x + y, lambda m, x, y: x - y, lambda m, x, y: x * y,
    lambda m, x, y: x / (y * y + 1), lambda m, x, y: m.maximum(x, y),
    lambda m, x, y: m.minimum(x, y), lambda m, x, y: m.where(x > y, x, y * 2),
    lambda m, x, y: (x * x + 1) ** m.tanh(y), lambda m, x, y: 1.5 - x * y,
    lambda m, x, y: m.clamp(x, min=y - 0.5)
    if tuple(x.shape) == np.broadcast_shapes(tuple(x.shape), tuple(y.shape))
    else x + y,
    lambda m, x, y: m.dot(x.reshape(-1)[:1], y.reshape(-1)[:1]) + x,
    lambda m, x, y: (x.reshape(-1, 1) * y.reshape(1, -1)).sum() + y,
]
SHAPES = [(), (1,), (3,), (2, 1), (2, 3)]


def _program(seed):
    rng = np.random.default_rng(seed)
    n_leaves = int(rng.integers(1, 4))
    shapes = [SHAPES[i] for i in rng.integers(len(SHAPES), size=n_leaves)]
    leaves = [rng.uniform(-1.5, 1.5, size=s) for s in shapes]
    steps = []
    for _ in range(int(rng.integers(4, 12))):
        if rng.random() < 0.5:
            steps.append((0, int(rng.integers(len(UNARY_STEPS)))))
        else:
            steps.append((1, int(rng.integers(len(BINARY_STEPS)))))
    picks = rng.integers(0, 10 ** 6, size=(len(steps), 2))
    weights = rng.standard_normal(len(steps) + n_leaves)
    return leaves, steps, picks, weights


def _run_program(m, leaves, steps, picks, weights):
    xs = [m.tensor(a, requires_grad=True) for a in leaves]
    pool = list(xs)
    for (kind, i), (p, q) in zip(steps, picks):
        a = pool[p % len(pool)]
        if kind == 0:
            pool.append(UNARY_STEPS[i](m, a))
        else:
            pool.append(BINARY_STEPS[i](m, a, pool[q % len(pool)]))
    loss = sum(float(w) * t.sum() for w, t in zip(weights, pool))
    return xs, loss


@pytest.mark.parametrize("seed", range(40))
def test_random_compositions(seed):
    prog = _program(seed)
    vx, vl = _run_program(vg, *prog)
    tx, tl = _run_program(torch, *prog)
    assert_same_values(vl, tl, 1e-9)
    assert graph_sig(vl.grad_fn) == graph_sig(tl.grad_fn)
    vl.backward()
    tl.backward()
    for a, b in zip(vx, tx):
        assert_same_values(a.grad, b.grad, 1e-9)


@pytest.mark.parametrize("seed", range(40, 60))
def test_random_compositions_second_order(seed):
    """Hessian-vector products through create_graph=True. A part of the Hessian that is zero
    may be a tensor without graph on one side (torch's relu backward formally depends on the
    result; verigrad's multiplies by a mask): compare as zeros."""
    prog = _program(seed)
    rng = np.random.default_rng(seed)
    vs = [rng.standard_normal(np.shape(a)) for a in prog[0]]
    out = {}
    for m in (vg, torch):
        xs, loss = _run_program(m, *prog)
        grads = m.autograd.grad(loss, xs, create_graph=True, allow_unused=True)
        grads = [m.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]
        dot = sum((g * m.tensor(v)).sum() for g, v in zip(grads, vs))
        hv = [None] * len(xs)
        if dot.requires_grad:
            hv = list(m.autograd.grad(dot, xs, allow_unused=True))
        hv = [m.zeros_like(x) if h is None else h for h, x in zip(hv, xs)]
        out[m] = (grads, hv)
    for a, b in zip(out[vg][0] + out[vg][1], out[torch][0] + out[torch][1]):
        assert_same_values(a, b, 1e-8)


def test_known_difference_create_graph_leaf_grad_name():
    names = {}
    for m in (vg, torch):
        x = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)
        (x ** 3).sum().backward(create_graph=True)
        names[m] = type(x.grad.grad_fn).__name__
        assert_same_values(x.grad, m.tensor([3.0, 12.0], dtype=m.float64))
        x.grad = None
    assert names == {vg: "CloneBackward0", torch: "CopyBackwards"}


def test_known_difference_relu_gradient_graph():
    graph = {}
    for m in (vg, torch):
        x = m.tensor([1.0, -2.0], dtype=m.float64, requires_grad=True)
        (g,) = m.autograd.grad((x.relu() * 3).sum(), x, create_graph=True)
        assert g.tolist() == [3.0, 0.0]
        graph[m] = g.requires_grad
    assert graph == {vg: False, torch: True}


def test_known_difference_numpy_dtype_errors():
    for expr in ["-m.tensor([True])", "m.tensor([True]) - m.tensor([False])",
                 "m.where(m.tensor([1, 0]), m.ones(2), m.zeros(2))"]:
        with pytest.raises(RuntimeError):
            eval(expr, {"m": torch})
        with pytest.raises(TypeError):
            eval(expr, {"m": vg})
    assert (torch.tensor([2]) ** torch.tensor([-1])).tolist() == [0]
    with pytest.raises(RuntimeError):
        vg.tensor([2]) ** vg.tensor([-1])


# --- every elementwise row against torch's function of the same name -------------------------

def _torch_twins():
    from verigrad.registry import FACES

    out = []
    for face in FACES.values():
        for op in face.rows:
            if (op.elementwise and op.differentiable and len(op.inputs) == 1 and not op.params
                    and callable(getattr(torch, face.name, None)) and face.on("function")):
                out.append(pytest.param(face.name, op, id=face.name))
    return out


@pytest.mark.parametrize("name,op", _torch_twins())
def test_elementwise_row_matches_torch(name, op):
    """Forward, gradient and grad_fn name of each unary elementwise row against torch's
    function of the same name, on the row's own test domain: a new row is compared with
    PyTorch as soon as it is declared."""
    rng = np.random.default_rng(7)
    x = op.domain.sample(rng, (5,), 0)
    vx = vg.tensor(x, dtype=vg.float64, requires_grad=True)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    vy, ty = getattr(vg, name)(vx), getattr(torch, name)(tx)
    np.testing.assert_allclose(vy.detach().numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert vy.grad_fn.name() == ty.grad_fn.name()
    vy.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(vx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-15)
