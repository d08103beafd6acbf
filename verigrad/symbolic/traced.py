"""Mirrors for custom Functions that have no ``symbolic`` staticmethod: their forward,
re-run on tape tensors, records a small graph of registry ops whose mirrors make the exact
reference. The user writes ``forward`` and ``backward`` only; verigrad checks ``backward``
against the exact derivative of what ``forward`` computes.

A forward may leave the tape (``x.numpy()``, ``.detach()``, ``.item()``): its recorded graph
then is not the function. So every trace is validated before it is trusted: the recorded
graph's own gradient (registry VJPs, which the op tests cover) must match finite differences
of ``forward`` along a random direction. A trace that fails this, raises, or returns
non-tensors is never used; the check falls back to finite differences and says why.

>>> import numpy as np, verigrad as vg
>>> class Cube(vg.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x * x * x
...     @staticmethod
...     def backward(ctx, g):
...         (x,) = ctx.saved_tensors
...         return 3 * x * x * g
>>> vg.symbolic(Cube.apply(vg.tensor(2.0, requires_grad=True, name="x")))
x**3
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..autograd.engine import grad
from ..autograd.function import FunctionCtx
from ..autograd.grad_mode import enable_grad, no_grad
from ..autograd.node import Node
from ..tensor import Tensor, _wrap, tensor
from .graph import GraphView
from .local import MirrorError, _freeze
from .mirror import _const, replay_outputs

__all__ = ["Trace", "trace_of", "traced_mirror", "mirror_missing"]

#: validation tolerance, relative to the scale of the directional derivative: a forward that
#: leaves the tape loses whole terms (errors of order one), never digits
_VALIDATION_RTOL = 1e-6


@dataclass(frozen=True)
class Trace:
    """The graph ``forward`` recorded at one point, and how it maps to the node's slots."""

    view: GraphView | None
    leaves: tuple            # (input slot, traced leaf tensor) per float tensor input
    outputs: tuple           # traced output tensors, in the node's output order
    signature: tuple         # hashable structure, for rule caches (branches change it)
    problem: str = ""        # why the trace is not the function ("" when it is)


_TRACES: "weakref.WeakKeyDictionary[FunctionCtx, Trace | str]" = weakref.WeakKeyDictionary()


def mirror_missing(node: Node) -> str:
    """Why ``node`` has no mirror ("" when it has one: a registry op, ``symbolic`` or a
    valid trace)."""
    if not node.user_code or node.own_mirror() is not None:
        return ""
    t = trace_of(node)
    return t if isinstance(t, str) else t.problem


def trace_of(node: FunctionCtx) -> "Trace | str":
    """The trace of ``node``'s forward (``problem`` says why it is not to be trusted, if it is
    not), or why there is none (cached per node; the node keeps its inputs, so the trace is
    reproducible)."""
    try:
        return _TRACES[node]
    except KeyError:
        pass
    # a Function that knows it has no mirror says why (the torch bridge's aten ops without
    # a mapping run torch's code, which no verigrad tape can trace)
    unavailable = getattr(node._forward_cls, "mirror_unavailable", None)
    if unavailable:
        _TRACES[node] = unavailable
        return unavailable
    try:
        result: Trace | str = _trace(node)
    except Exception as e:  # noqa: BLE001 - the user's forward, re-run on tape tensors
        result = f"its forward could not be traced ({type(e).__name__}: {e})"
    why = result if isinstance(result, str) else result.problem
    if why:
        why = (f"{node._forward_cls.__name__} (grad_fn {node.name()}) has no symbolic "
               f"staticmethod and {why}; add `@staticmethod def symbolic(...)` for an exact "
               f"reference")
        result = why if isinstance(result, str) else Trace(
            result.view, result.leaves, result.outputs, result.signature, why)
    _TRACES[node] = result
    return result


def _inputs_of(node: FunctionCtx) -> list[Any]:
    return [a._data if isinstance(a, Tensor) else a for a in node._inputs]


def _run_forward(cls: type, values: list[Any], grad_slots: set[int]) -> tuple[list, list]:
    """``cls.forward`` on fresh tensors (slots in ``grad_slots`` require grad)."""
    args, leaves = [], []
    for i, v in enumerate(values):
        if isinstance(v, np.ndarray):
            if i in grad_slots:
                t = tensor(np.array(v), requires_grad=True)
                leaves.append((i, t))
            else:
                t = _wrap(np.array(v))
            args.append(t)
        else:
            args.append(v)
    out = cls.forward(cls._backward_cls(), *args)
    outs = list(out) if isinstance(out, tuple) else [out]
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"output {k} is {type(o).__name__}, not a tensor")
    return leaves, outs


def _trace(node: FunctionCtx) -> "Trace | str":
    from ..checker.finite_diff import derivative  # numeric only; the checker package is above

    cls = node._forward_cls
    values = _inputs_of(node)
    slots = {i for i, v in enumerate(values)
             if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size}
    if not slots:
        return "it has no floating-point tensor inputs"
    with enable_grad(), np.errstate(all="ignore"):
        leaves, outs = _run_forward(cls, values, slots)
    if len(outs) != node.n_outputs:
        return "its forward returned a different number of outputs when traced"
    rng = np.random.default_rng(0)
    float_outs = [k for k, o in enumerate(outs) if o._data.dtype.kind == "f"]
    v = {k: rng.standard_normal(outs[k].shape) for k in float_outs}
    u = [rng.standard_normal(t.shape) for _, t in leaves]
    # the recorded graph's gradient of <v, out> along u
    live = [k for k in float_outs if outs[k]._grad_fn is not None]
    tape = 0.0
    if live:
        with enable_grad():
            s = sum((outs[k] * v[k]).sum() for k in live)
            gs = grad(s, [t for _, t in leaves], allow_unused=True)
        tape = float(sum(np.vdot(g._data, d) for g, d in zip(gs, u) if g is not None))
    sizes = [t._data.size for _, t in leaves]
    x0 = np.concatenate([t._data.reshape(-1) for _, t in leaves]).astype(np.float64)

    def f(z: np.ndarray) -> np.ndarray:
        vals = list(values)
        pos = 0
        for (i, t), n in zip(leaves, sizes):
            vals[i] = z[pos:pos + n].reshape(t.shape).astype(t._data.dtype)
            pos += n
        with no_grad(), np.errstate(all="ignore"):
            _, o = _run_forward(cls, vals, set())
        return np.array([sum(float(np.vdot(o[k]._data, v[k])) for k in float_outs)])

    dtype = min((t._data.dtype for _, t in leaves), key=lambda d: d.itemsize)
    est = derivative(f, x0, np.concatenate([d.reshape(-1) for d in u]), dtype=dtype)
    fd, err = float(est.value[0]), float(est.error[0])
    scale = abs(fd) + abs(tape) + float(np.vdot(np.abs(x0), np.abs(np.concatenate(
        [d.reshape(-1) for d in u])))) * 1e-12
    problem = ""
    if not (est.reliable and np.isfinite(fd) and np.isfinite(err)):
        problem = "finite differences of its forward could not confirm the traced graph"
    elif abs(fd - tape) > 4 * err + _VALIDATION_RTOL * scale:
        problem = (f"its traced forward is not the function here (the traced graph's "
                   f"derivative {tape:.6g}, finite differences {fd:.6g}: a .numpy(), .item() "
                   f"or detach() leaves the tape, or the point is on a kink of the formula)")
    view = GraphView.of([o for o in outs if o._grad_fn is not None]) if live else None
    return Trace(view, tuple(leaves), tuple(outs), _signature(view, leaves, outs), problem)


def _signature(view: GraphView | None, leaves: list, outs: list) -> tuple:
    nodes = view.nodes if view is not None else []
    index = {id(n): k for k, n in enumerate(nodes)}
    leaf_slot = {id(t): i for i, t in leaves}
    sig: list[Any] = []
    for n in nodes:
        kind = _freeze(n.rule_key())  # op and parameters, or a nested Function's class
        # constants and tensors the forward closed over are baked into the mirror: by value
        srcs = tuple((s.kind, index.get(id(s.node)), s.nr, leaf_slot.get(id(s.leaf)),
                      _freeze(s.value) if s.kind == "const" else
                      _freeze(s.leaf._data) if s.kind == "leaf" and id(s.leaf) not in leaf_slot
                      else None)
                     for s in view.sources[n])
        sig.append((kind, srcs))
    tail = tuple((index.get(id(o._grad_fn)), o._output_nr, leaf_slot.get(id(o)), o.shape)
                 for o in outs)
    return tuple(sig) + (tail,)


def traced_mirror(node: FunctionCtx, args: list[Any]) -> tuple[np.ndarray, ...]:
    """The node's outputs as SymPy object arrays of ``args``, replayed from its trace."""
    t = trace_of(node)
    if isinstance(t, str) or t.problem:
        raise MirrorError(t if isinstance(t, str) else t.problem)
    syms = {id(leaf): np.asarray(args[i], dtype=object) for i, leaf in t.leaves}
    for leaf in t.view.leaves if t.view is not None else ():
        syms.setdefault(id(leaf), _const(leaf._data))  # a tensor the forward closed over
    return tuple(replay_outputs(t.view, syms, t.outputs))
