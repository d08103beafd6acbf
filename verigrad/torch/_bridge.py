"""Torch code as a verigrad tape graph: shadow execution at the aten level.

The user's torch function runs on float64 CPU copies of its inputs under a
``TorchDispatchMode``. Every aten call on a traced tensor is also applied, by the rule in
``_aten.RULES``, to the verigrad tensors shadowing its arguments, so the verigrad graph is
the torch computation op for op and each node's mirror, domain and kinks come from its
registry row. ``torch._decomp`` decomposes ops without a rule; what is left becomes a node
that runs the aten op (and torch's derivative of it) and is checked by finite differences.

A custom ``torch.autograd.Function`` is recorded around ``apply`` (its boundary is not in
the aten stream): it becomes a verigrad Function of the same name whose forward runs the
torch forward, whose backward calls the user's ``backward`` on torch's own ctx (so a
gradient of the wrong shape is seen before torch would sum it) and whose SymPy mirror
is the mirror of the aten ops traced inside its forward. Each call re-traces, so control
flow that depends on values is followed at every point the checker evaluates.
"""
from __future__ import annotations

import contextlib
import inspect
import itertools
import re
import threading
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

import verigrad as vg
from verigrad.autograd.function import Function as VgFunction
from verigrad.checker.compare import distinct
from verigrad.checker.local import FD_SAFETY
from verigrad.errors import BackwardContractError
from verigrad.ops import shape as S
from verigrad.tensor import Tensor as VgTensor
from verigrad.tensor import apply as vg_apply

from ._aten import RULES, numpy_dtype

__all__ = ["check", "check_module", "trace"]

_TorchFunction = torch.autograd.Function
_ORIG_APPLY_ATTR = _TorchFunction.__dict__["apply"]  # restored as the very same object
_ORIG_APPLY = _ORIG_APPLY_ATTR.__func__
_local = threading.local()  # the tracing envs of this thread, innermost last
_patch_lock = threading.Lock()
_patch_depth = [0]
_UNIQUE = itertools.count()

# aten ops whose result is a view of their first argument: a write into the view is
# scattered back into the base (``R[i, j] = v``)
_VIEW_KEYS: dict[str, Callable] = {
    "aten::select.int": lambda a, base: (slice(None),) * (int(a[1]) % max(base.ndim, 1))
    + (int(a[2]),),
    "aten::slice.Tensor": lambda a, base: (slice(None),) * (
        int(a[1] if len(a) > 1 else 0) % max(base.ndim, 1))
    + (slice(a[2] if len(a) > 2 else None, a[3] if len(a) > 3 else None,
             a[4] if len(a) > 4 else 1),),
    "aten::alias.default": lambda a, base: (Ellipsis,),
}
_RESHAPE_VIEWS = {"aten::view.default", "aten::_unsafe_view.default"}


class Trace:
    """What one traced run saw: shadows, view parents, and ops verigrad could not map."""

    def __init__(self) -> None:
        self.shadow: dict[int, tuple[torch.Tensor, VgTensor]] = {}
        self.parent: dict[int, tuple[torch.Tensor, Any]] = {}
        self.unmapped: dict[str, int] = {}
        self.decomposed: set[str] = set()
        self.functions: list[str] = []
        self.notes: list[str] = []
        #: ops that cut the graph where they stand (an in-place write with no functional
        #: form): a decomposition that meets one is not used
        self.cuts: set[str] = set()

    def traced(self, a: Any) -> bool:
        return isinstance(a, torch.Tensor) and id(a) in self.shadow

    def set(self, t: torch.Tensor, v: Any) -> None:
        if v is None or not isinstance(v, VgTensor):
            self.shadow.pop(id(t), None)
        else:
            self.shadow[id(t)] = (t, v)

    def V(self, a: Any) -> Any:
        """The verigrad value standing for a torch value."""
        if isinstance(a, torch.Tensor):
            hit = self.shadow.get(id(a))
            return hit[1] if hit is not None else constant(a)
        return a


def constant(t: torch.Tensor) -> VgTensor:
    t = t.detach()
    if t.dtype in (torch.bfloat16,):
        t = t.float()
    return vg.tensor(np.array(t.cpu().numpy()))


def to_torch(v: VgTensor) -> torch.Tensor:
    return torch.from_numpy(np.array(v._data))


def _camel(name: str) -> str:
    base = name.split("::")[-1].split(".")[0]
    return "".join(p[:1].upper() + p[1:] for p in base.split("_") if p) or "Aten"


_DECOMP: dict = {}


def _decompositions() -> tuple[dict, dict]:
    """torch's decompositions: into core aten ops, and the full table (``gelu``,
    ``native_layer_norm``, ``embedding``... into ops verigrad maps, so they get an exact
    reference) for what the first does not decompose."""
    if not _DECOMP:
        from torch._decomp import core_aten_decompositions, decomposition_table

        _DECOMP["core"] = core_aten_decompositions()
        _DECOMP["full"] = decomposition_table
    return _DECOMP["core"], _DECOMP["full"]


class _Shadow(TorchDispatchMode):
    def __init__(self, env: Trace) -> None:
        super().__init__()
        self.env = env

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None):
        kwargs = kwargs or {}
        env = self.env
        flat, _ = tree_flatten((args, kwargs))
        if not any(env.traced(a) for a in flat):
            return func(*args, **kwargs)
        name = func.name()
        if "." not in name.split("::")[-1]:
            name += ".default"  # torch names the default overload without a suffix
        if func._schema.is_mutable and args and isinstance(args[0], torch.Tensor):
            return self._inplace(func, name, args, kwargs)
        return self._functional(func, name, args, kwargs)

    def _functional(self, func: Any, name: str, args: tuple, kwargs: dict) -> Any:
        env = self.env
        rule = RULES.get(name) or RULES.get(name.split(".")[0])
        out = func(*args, **kwargs) if rule is not None else None
        res = rule(env.V, args, kwargs, out, name) if rule is not None else NotImplemented
        if res is not NotImplemented:  # a rule may decline a call it cannot map exactly
            _bind(env, out, res)
            if name in _VIEW_KEYS or name in _RESHAPE_VIEWS:
                env.parent[id(out)] = (args[0], name, args)
            return out
        core, full = _decompositions()
        decomp = core.get(func)
        if decomp is None:
            decomp = full.get(func)
        if decomp is not None:
            before, notes, cuts = dict(env.unmapped), len(env.notes), set(env.cuts)
            with _Shadow(env):
                out = decomp(*args, **kwargs)
            if out is not NotImplemented:
                if decomp is core.get(func) or not (env.cuts - cuts or any(
                        k.startswith("prims::") and k not in before for k in env.unmapped)):
                    env.decomposed.add(name)
                    return out
                # a prim has no derivative in torch, an in-place prim cuts the graph: the
                # decomposition's nodes are dropped (nothing refers to them) and the op
                # runs whole (decided per call: the same op may decompose cleanly for other
                # arguments, and no verdict may depend on which call came first)
                env.unmapped.clear()
                env.unmapped.update(before)
                del env.notes[notes:]
                env.cuts = cuts
        return _unmapped(env, func, name, args, kwargs)

    def _inplace(self, func: Any, name: str, args: tuple, kwargs: dict) -> Any:
        env = self.env
        target = args[0]
        functional = _functional_form(func)
        if functional is None:
            env.notes.append(f"{name} writes in place and has no functional form verigrad "
                             f"maps; later uses of its result are constants")
            env.cuts.add(name)
            out = func(*args, **kwargs)
            env.set(target, None)
            return out
        # the shadow is computed on the values before the write; torch then writes
        before = target.clone()
        fargs = (before,) + tuple(args[1:])
        env.shadow[id(before)] = (before, env.V(target)) if env.traced(target) else None
        if env.shadow[id(before)] is None:
            del env.shadow[id(before)]
        with _Shadow(env):
            new = functional(*fargs, **kwargs)
        value = env.V(new) if env.traced(new) else None
        with _disable_current_modes():
            out = func(*args, **kwargs)
        _assign(env, target, value)
        return out


def _functional_form(func: Any) -> Any:
    """The out-of-place op an in-place one stands for: the same overload name
    (``add_.Tensor`` -> ``add.Tensor``), else the overload taking the same arguments
    (``transpose_.default`` -> ``transpose.int``)."""
    packet = getattr(torch.ops.aten, func._overloadpacket.__name__.rstrip("_"), None)
    if packet is None:
        return None
    names = [a.name for a in func._schema.arguments]
    for overload in [func._overloadname] + list(packet.overloads()):
        op = getattr(packet, overload, None)
        if op is not None and not op._schema.is_mutable and \
                [a.name for a in op._schema.arguments] == names:
            return op
    return None


def _bind(env: Trace, out: Any, res: Any) -> None:
    if isinstance(out, torch.Tensor):
        if out.is_floating_point() or out.is_complex():
            env.set(out, res if not isinstance(res, tuple) else res[0])
        return
    if isinstance(out, (tuple, list)):
        results = res if isinstance(res, (tuple, list)) else (res,)
        for o, r in zip(out, results):
            _bind(env, o, r)


def _assign(env: Trace, target: torch.Tensor, value: Any) -> None:
    """``target`` now holds ``value``; a view's base gets the value scattered into it."""
    env.set(target, value)
    link = env.parent.get(id(target))
    if link is None:
        return
    base, name, vargs = link
    base_v = env.V(base)
    if value is None:
        value = constant(target)
    if name in _RESHAPE_VIEWS:
        new = vg.reshape(value, tuple(base.shape))
    else:
        key = _VIEW_KEYS[name](vargs, base)
        placed = vg_apply(S.INDEX_PUT, (value,), {"shape": tuple(base.shape), "key": key})
        mask = np.zeros(tuple(base.shape), dtype=bool)
        mask[key] = True
        new = vg.where(mask, placed, base_v)
    _assign(env, base, new)


_DIFFERENTIABLE: dict[str, tuple[bool, ...]] = {}


def _differentiable_outputs(name: str, run: Callable, inputs: list, n_out: int) -> tuple:
    """Which outputs torch differentiates (``native_layer_norm``'s mean and rstd, ``det``'s
    LU factors and an op's integer results are not): torch's own answer, per overload.

    Inside ``__torch_dispatch__`` autograd is off for this thread (the dispatcher is below
    its key), so the op runs once on a helper thread, whose dispatch state is the default,
    on detached copies of the inputs."""
    known = _DIFFERENTIABLE.get(name)
    if known is not None:
        return known
    found: list = []

    def probe() -> None:
        try:
            ts = [t.detach().requires_grad_(True) for t in inputs]
            with torch.enable_grad():
                res = run(ts)
        except Exception:  # noqa: BLE001 - torch will say what is wrong when the op runs
            return
        found.extend(isinstance(o, torch.Tensor) and o.requires_grad
                     for o in (res if isinstance(res, (tuple, list)) else (res,)))

    worker = threading.Thread(target=probe, name="verigrad-torch-probe")
    worker.start()
    worker.join()
    if len(found) != n_out:  # the op failed on the helper thread: torch will say why later
        return (True,) * n_out
    _DIFFERENTIABLE[name] = tuple(found)
    return _DIFFERENTIABLE[name]


def _unmapped(env: Trace, func: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """An aten op verigrad has no row for: a node running the op (forward) and torch's own
    derivative of it (backward), with no mirror, so the checker uses finite differences."""
    out = func(*args, **kwargs)
    if not any(isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex())
               for o in tree_flatten(out)[0]):
        return out  # a Python number (``.item()``, ``float(t)``): control flow, not a value
    flat, spec = tree_flatten((args, kwargs))
    slots = [i for i, a in enumerate(flat) if env.traced(a) and
             (a.is_floating_point() or a.is_complex())]
    if not slots:
        return out
    env.unmapped[name] = env.unmapped.get(name, 0) + 1
    func = _with_derivative(func)

    def run(values: Sequence[torch.Tensor]) -> Any:
        items = list(flat)
        for i, v in zip(slots, values):
            items[i] = v
        a, k = spec.unflatten(items) if hasattr(spec, "unflatten") else \
            torch.utils._pytree.tree_unflatten(items, spec)
        return func(*a, **k)

    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    differentiable = _differentiable_outputs(name, run, [flat[i] for i in slots], n_out)
    cls = _torch_op(_camel(name), name, run, differentiable)
    with _disable_current_modes():
        res = cls.apply(*[env.V(flat[i]) for i in slots])
    _bind(env, out, res)
    return out


def _with_derivative(func: Any) -> Any:
    """The op a no-grad variant stands for: below autograd torch picks
    ``_embedding_bag_forward_only``, which has no derivative; ``_embedding_bag`` computes
    the same values and has one."""
    packet = func._overloadpacket.__name__
    if not packet.endswith("_forward_only"):
        return func
    full = getattr(torch.ops.aten, packet[: -len("_forward_only")], None)
    return getattr(full, func._overloadname, func) if full is not None else func


def _torch_op(label: str, name: str, run: Callable, differentiable: Sequence[bool]) -> type:
    """A verigrad Function running torch code: forward ``run(tensors)``, backward torch's
    derivative of it. Under ``create_graph=True`` that backward is itself such a Function
    (of the inputs and the incoming gradients), so second and higher derivatives go on
    through torch: torch's double backward of ``native_layer_norm`` is checked, not taken
    for zero."""

    def forward(ctx: Any, *vals: VgTensor) -> Any:
        ts = [to_torch(v) for v in vals]
        with torch.enable_grad(), _disable_current_modes():
            res = run(ts)
        outs = res if isinstance(res, (tuple, list)) else (res,)
        pairs = [(constant(o), d) for o, d in zip(outs, differentiable)
                 if isinstance(o, torch.Tensor)]
        # what torch does not differentiate (a layer norm's saved mean) is not an output
        # to hold its backward against
        ctx.mark_non_differentiable(*[v for v, d in pairs if not d])
        ctx.save_for_backward(*vals)
        vouts = tuple(v for v, _ in pairs)
        return vouts if isinstance(res, (tuple, list)) else vouts[0]

    def backward(ctx: Any, *grads: Any) -> Any:
        vals = ctx.saved_tensors
        live = [k for k, g in enumerate(grads) if g is not None and differentiable[k]]
        n = len(vals)

        def vjp(ts: Sequence[torch.Tensor]) -> tuple:
            xs = [t if t.requires_grad else t.detach().requires_grad_(True) for t in ts[:n]]
            with torch.enable_grad():
                try:
                    res = run(xs)
                except RuntimeError as e:
                    raise BackwardContractError(
                        f"torch could not differentiate {name}: {str(e).splitlines()[0]}"
                    ) from None
                outs = res if isinstance(res, (tuple, list)) else (res,)
                pairs = [(outs[k], g) for k, g in zip(live, ts[n:]) if outs[k].requires_grad]
                if not pairs:
                    raise BackwardContractError(f"torch has no derivative for {name}")
                try:
                    gs = torch.autograd.grad([o for o, _ in pairs], xs, [g for _, g in pairs],
                                             create_graph=True, allow_unused=True)
                except RuntimeError as e:
                    raise BackwardContractError(
                        f"torch has no derivative for {name}: {str(e).splitlines()[0]}") from None
            return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(gs, xs))

        cotangents = [grads[k] for k in live]
        if vg.is_grad_enabled():  # create_graph=True: the backward is a node of its own
            return _torch_op(f"{label}Backward", f"the derivative of {name}", vjp,
                             (True,) * n).apply(*vals, *cotangents)
        return tuple(constant(g) for g in vjp([to_torch(v) for v in (*vals, *cotangents)]))

    return type(label, (VgFunction,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward),
        "mirror_unavailable": f"{name} has no verigrad mapping (torch's own forward and "
                              f"derivative, checked by finite differences)",
        "foreign": f"torch's {name}",
        "__doc__": f"{name}: no verigrad mapping; checked by finite differences",
        "_verigrad_internal": True})


# --- custom torch.autograd.Function -------------------------------------------------------

def _current() -> Trace | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _patched_apply(cls: type, *args: Any, **kwargs: Any) -> Any:
    env = _current()
    if env is None or cls.__dict__.get("_verigrad_internal"):
        return _ORIG_APPLY(cls, *args, **kwargs)
    flat, _ = tree_flatten((args, kwargs))
    if not any(env.traced(a) for a in flat):
        return _ORIG_APPLY(cls, *args, **kwargs)
    with _disable_current_modes():
        return _bridge_function(env, cls, args, kwargs)


@contextlib.contextmanager
def tracing(env: Trace):
    """Shadow torch ops into ``env`` (and record custom Functions) inside the block.

    A custom Function's boundary is invisible to dispatch and function modes (torch offers
    no hook for ``Function.apply``), so ``apply`` is replaced on the base class while any
    thread traces. The replacement is safe for everyone else: it consults this thread's own
    stack of traces and, with none (any other thread), calls torch's ``apply`` unchanged;
    the original attribute object is restored when the last trace ends, exceptions
    included, under a lock that counts overlapping traces of all threads.
    """
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    with _patch_lock:
        if _patch_depth[0] == 0:
            _TorchFunction.apply = classmethod(_patched_apply)
        _patch_depth[0] += 1
    try:
        stack.append(env)
        with _Shadow(env):
            yield env
    finally:
        if stack and stack[-1] is env:
            stack.pop()
        with _patch_lock:
            _patch_depth[0] -= 1
            if _patch_depth[0] == 0:
                _TorchFunction.apply = _ORIG_APPLY_ATTR


def _user_backward(cls: type) -> Callable:
    """The backward torch itself would call (``vjp`` is its alias)."""
    bw, vjp = cls.backward, getattr(cls, "vjp", None)
    base_vjp = getattr(_TorchFunction, "vjp", None)
    if vjp is not None and vjp is not base_vjp and bw is _TorchFunction.backward:
        return vjp
    return bw


def _expandable(shape: tuple, desired: tuple) -> bool:
    """torch's ``is_expandable_to``: when it holds, torch sums a gradient to the input."""
    if len(shape) > len(desired):
        return False
    return all(s == d or s == 1 for s, d in zip(reversed(shape), reversed(desired)))


def _bridge_function(env: Trace, cls: type, args: tuple, kwargs: dict) -> Any:
    """Run ``cls.apply`` as a verigrad Function named like the torch one."""
    label = cls.__qualname__
    env.functions.append(label)
    vargs = [env.V(a) if isinstance(a, torch.Tensor) else a for a in args]
    info: dict[str, Any] = {}

    def forward(ctx: Any, *vals: Any) -> Any:
        inner = Trace()
        targs, leaves, positions = [], [], []
        for i, v in enumerate(vals):
            if isinstance(v, VgTensor):
                t = to_torch(v)
                if t.is_floating_point():
                    t.requires_grad_(True)
                    leaf = vg.tensor(np.array(v._data), requires_grad=True)
                    inner.set(t, leaf)
                    leaves.append(leaf)
                    positions.append(i)
                targs.append(t)
            else:
                targs.append(v)
        with torch.enable_grad(), vg.enable_grad(), tracing(inner):
            res = _ORIG_APPLY(cls, *targs, **kwargs)
        env.unmapped.update({k: env.unmapped.get(k, 0) + n for k, n in inner.unmapped.items()})
        env.decomposed |= inner.decomposed
        env.notes += inner.notes
        touts = res if isinstance(res, tuple) else (res,)
        tctx = next((o.grad_fn for o in touts if isinstance(o, torch.Tensor)
                     and o.grad_fn is not None), None)
        ctx._torch = (tctx, targs, touts)
        inner_outs = [inner.V(o) if isinstance(o, torch.Tensor) else None for o in touts]
        if "mirror" not in info:
            info["mirror"] = _mirror_of(leaves, positions, inner_outs, touts)
            if info["mirror"] is not None:
                # same traced graph -> same local rule: lets the rule cache work across the
                # checker's points and repeated checks (the class itself is new per call)
                ctx._forward_cls._rule_key = ("torch", cls, info["mirror"].fingerprint)
        vouts = []
        for o in touts:
            if not isinstance(o, torch.Tensor):
                raise BackwardContractError(f"{label}.forward returned {type(o).__name__}; "
                                            f"only tensors are supported as outputs")
            vo = constant(o)
            if o.is_floating_point() and not o.requires_grad:
                ctx.mark_non_differentiable(vo)  # torch's mark_non_differentiable
            vouts.append(vo)
        return tuple(vouts) if isinstance(res, tuple) else vouts[0]

    def backward(ctx: Any, *grads: Any) -> Any:
        tctx, targs, touts = ctx._torch
        if tctx is None:
            raise BackwardContractError(f"torch recorded no graph for {label} (no output "
                                        f"requires grad), so its backward cannot be called")
        tg = [None if g is None else to_torch(g) for g in grads]
        with torch.no_grad():
            result = _user_backward(cls)(tctx, *tg)
        result = result if isinstance(result, tuple) else (result,)
        out = []
        for i, r in enumerate(result):
            if r is None or i >= len(targs):
                out.append(None if r is None else r)
                continue
            if not isinstance(r, torch.Tensor):
                raise BackwardContractError(
                    f"{label}.backward returned {type(r).__name__} for input {i}; return a "
                    f"tensor or None")
            inp = targs[i]
            if isinstance(inp, torch.Tensor) and tuple(r.shape) != tuple(inp.shape):
                fate = (f"torch.autograd would silently sum it to {tuple(inp.shape)} "
                        f"(torch.autograd.gradcheck passes it)"
                        if _expandable(tuple(inp.shape), tuple(r.shape))
                        else "torch.autograd raises on it")
                raise BackwardContractError(
                    f"{label}.backward ({_names(cls)[i] if i < len(_names(cls)) else i}) returned "
                    f"a gradient of shape {tuple(r.shape)} for input {i} of shape "
                    f"{tuple(inp.shape)}: {fate}. Return a gradient of exactly the input's "
                    f"shape.")
            out.append(constant(r.to(inp.dtype) if isinstance(inp, torch.Tensor) else r))
        if vg.is_grad_enabled():
            # create_graph=True (a second-order check): the backward must itself be a
            # node, whose own backward is torch's double backward of the user's backward
            return _double_backward(cls, label, ctx._inputs, grads, out)
        return tuple(out)

    def symbolic(*syms: Any) -> Any:
        mirror = info.get("mirror")
        if mirror is None:
            raise _NoMirror(label)
        return mirror(*syms)

    arg_names = _names(cls)
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(arg_names[i] if i < len(arg_names) else f"arg{i}",
                          inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in range(len(args))]
    forward.__signature__ = inspect.Signature(params)  # reports name inputs as torch's forward
    ns = {"forward": staticmethod(forward), "backward": staticmethod(backward),
          "__doc__": f"verigrad bridge of torch Function {label}", "__module__": cls.__module__,
          "_verigrad_internal": True}
    bridge = type(cls.__name__, (VgFunction,), ns)
    res = bridge.apply(*vargs)
    if info.get("mirror") is not None:
        bridge.symbolic = staticmethod(symbolic)
    else:
        env.notes.append(f"{label}: its forward is not made of aten ops verigrad can mirror "
                         f"(numpy, or an op without a mapping), so its backward is checked "
                         f"by finite differences")
    tres = res if isinstance(res, tuple) else (res,)
    touts = tuple(to_torch(v) for v in tres)
    for t, v in zip(touts, tres):
        env.set(t, v)
    return touts if isinstance(res, tuple) else touts[0]


class _NoMirror(Exception):
    pass


def _double_backward(cls: type, label: str, inputs: tuple, grads: tuple,
                     first: list) -> tuple:
    """The user's torch ``backward`` as a verigrad node (inputs: the incoming gradients and
    the forward's inputs), so a second-order check differentiates it with torch's own
    double backward. It re-runs the torch forward at its inputs: the checker re-runs nodes
    at shifted values."""
    g_slots = [k for k, g in enumerate(grads) if g is not None]
    slots = [i for i, r in enumerate(first) if isinstance(r, VgTensor)]
    n_g = len(g_slots)

    def forward(ctx: Any, *vals: Any) -> Any:
        gs, xs = vals[:n_g], vals[n_g:]
        targs = []
        for x in xs:
            t = to_torch(x) if isinstance(x, VgTensor) else x
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                t.requires_grad_(True)
            targs.append(t)
        with torch.enable_grad():
            res = _ORIG_APPLY(cls, *targs)
            touts = res if isinstance(res, tuple) else (res,)
            tctx = next(o.grad_fn for o in touts if isinstance(o, torch.Tensor)
                        and o.grad_fn is not None)
            tg: list = [None] * len(touts)
            for k, g in zip(g_slots, gs):
                tg[k] = to_torch(g).requires_grad_(True)
            r = _user_backward(cls)(tctx, *tg)
        r = r if isinstance(r, tuple) else (r,)
        ctx._torch = ([t for t in tg if t is not None], targs, [r[i] for i in slots])
        return tuple(constant(r[i]) for i in slots)

    def backward(ctx: Any, *ws: Any) -> Any:
        tg, targs, rs = ctx._torch
        pairs = [(r, to_torch(w)) for r, w in zip(rs, ws) if w is not None]
        wrt = tg + [t for t in targs if isinstance(t, torch.Tensor) and t.requires_grad]
        live = [(r, w) for r, w in pairs if r.requires_grad]
        if not live:
            raise BackwardContractError(
                f"{label}.backward is not differentiable (it ran without building a torch "
                f"graph, e.g. @once_differentiable or .detach()), so its double backward "
                f"cannot be checked")
        try:
            gs = torch.autograd.grad([r for r, _ in live], wrt, [w for _, w in live],
                                     allow_unused=True)
        except RuntimeError as e:
            raise BackwardContractError(f"torch's double backward of {label} raised: "
                                        f"{str(e).splitlines()[0]}") from None
        out = [None if g is None else constant(g) for g in gs[:len(tg)]]
        rest = iter(gs[len(tg):])
        for t in targs:
            g = next(rest) if isinstance(t, torch.Tensor) and t.requires_grad else None
            out.append(None if g is None else constant(g))
        return tuple(out)

    name = f"{cls.__name__}Backward"
    dbl = type(name, (VgFunction,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward),
        "__doc__": f"the torch backward of {label}, differentiated by torch",
        "_verigrad_internal": True})
    res = dbl.apply(*[grads[k] for k in g_slots], *inputs)
    res = res if isinstance(res, tuple) else (res,)
    out: list = [None] * len(first)
    for i, v in zip(slots, res):
        out[i] = v
    return tuple(out)


def _mirror_of(leaves: list, positions: list, inner_outs: list, touts: tuple
               ) -> Callable | None:
    """The SymPy mirror of a Function's traced forward, or None if some output left the
    aten stream (computed through numpy, say)."""
    from verigrad.symbolic.graph import GraphView
    from verigrad.symbolic.mirror import _const, replay_outputs

    picked = []
    for v, o in zip(inner_outs, touts):
        if v is None or not o.is_floating_point():
            picked.append(None)
            continue
        if v._grad_fn is None and not any(v is leaf for leaf in leaves):
            if o.requires_grad:
                return None  # differentiable in torch, a constant in the trace: not mirrored
        picked.append(v)
    graph_outs = [v for v in picked if v is not None and v._grad_fn is not None]
    view = GraphView.of(graph_outs) if graph_outs else None
    fingerprint = _fingerprint(view, leaves, positions, picked, touts)

    def mirror(*syms: Any) -> Any:
        table = {id(leaf): np.asarray(syms[k], dtype=object).reshape(leaf.shape)
                 for leaf, k in zip(leaves, positions)}
        replayed = iter(replay_outputs(view, table, [v for v in picked if v is not None]))
        outs = [_const(o.detach().numpy()) if v is None else next(replayed)
                for v, o in zip(picked, touts)]
        return tuple(outs) if len(outs) > 1 else outs[0]

    mirror.fingerprint = fingerprint
    return mirror


def _fingerprint(view: Any, leaves: list, positions: list, picked: list, touts: tuple) -> str:
    """A digest of everything the mirror is made of: each node's op and parameters, where
    each of its inputs comes from (a node, a leaf position, or a constant's bytes) and what
    the outputs are. Equal digests mean equal mirrors (a value-dependent trace, like sort
    indices, changes the constants and so the digest)."""
    import hashlib

    from verigrad.symbolic.local import _freeze

    h = hashlib.sha256()

    def put(obj: Any) -> None:
        if isinstance(obj, np.ndarray):
            h.update(repr((obj.shape, obj.dtype.str)).encode())
            h.update(np.ascontiguousarray(obj).tobytes())
        else:
            h.update(repr(_freeze(obj)).encode())

    index = {node: k for k, node in enumerate(view.nodes)} if view is not None else {}
    where = {id(leaf): p for leaf, p in zip(leaves, positions)}
    for node in (view.nodes if view is not None else ()):
        if not node.user_code:  # the node protocol: ("op", name, parameters)
            put(node.rule_key())
        else:  # a Function nested in the forward: its own digest, else never equal
            key = getattr(node._forward_cls, "_rule_key", None)
            put(("fn", key if key is not None else ("unique", next(_UNIQUE))))
        for src in view.sources[node]:
            put((src.kind, index.get(src.node), src.nr,
                 where.get(id(src.leaf)) if src.leaf is not None else None))
            if src.kind == "const":
                put(src.value if isinstance(src.value, np.ndarray) else ("v", src.value))
    for v, o in zip(picked, touts):
        if v is None:
            put(("out-const",))
            put(o.detach().cpu().numpy())
        elif v._grad_fn is not None:
            put(("out-node", index[v._grad_fn], v._output_nr))
        elif id(v) in where:
            put(("out-leaf", where[id(v)]))
        else:
            put(("out-const",))
            put(np.asarray(v._data))
    return h.hexdigest()


def _names(cls: type) -> list[str]:
    try:
        params = [p.name for p in inspect.signature(cls.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []
    from torch.autograd.function import _is_setup_context_defined

    return params if _is_setup_context_defined(cls.setup_context) else params[1:]


# --- vg.check for torch callables ---------------------------------------------------------

_NP_FLOAT = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
             torch.bfloat16: np.float32}


def _display(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and getattr(fn, "__name__", "") == "apply":
        return f"{owner.__qualname__}.apply"
    if isinstance(fn, torch.nn.Module):
        return type(fn).__name__
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _arg_names(fn: Any, n: int) -> list[str]:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, _TorchFunction):
        names = _names(owner)
    else:
        target = fn.forward if isinstance(fn, torch.nn.Module) else fn
        try:
            names = [p.name for p in inspect.signature(target).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            names = []
    names = names[:n]
    return names + [f"x{i}" for i in range(len(names), n)]


class _Spec:
    """How one user argument enters the check: differentiated (``diff``) or constant."""

    def __init__(self, value: Any, any_tensor: bool) -> None:
        self.user = value
        if isinstance(value, torch.Tensor):
            self.diff = value.requires_grad and (value.is_floating_point() or value.is_complex())
            self.dtype = value.dtype
            self.device = value.device
            if self.diff:
                np_dtype = _NP_FLOAT.get(value.dtype, np.float64)
                self.array = value.detach().cpu().to(torch.float64).numpy().astype(np_dtype)
            else:
                self.const = value.detach().cpu() if value.device.type != "cpu" else value
        elif not any_tensor and isinstance(value, (float, int, list, tuple, np.ndarray)) and \
                not isinstance(value, bool):
            # no torch tensor at all (vg.check(MyFn.apply, [1.0, 2.0])): numbers are inputs
            self.diff, self.dtype, self.device = True, torch.float64, torch.device("cpu")
            self.array = np.asarray(value, dtype=np.float64)
        else:
            self.diff, self.const = False, value


def _arguments(specs: list[_Spec], diff_values: Sequence[torch.Tensor]) -> list:
    """The user's arguments: differentiated ones from ``diff_values`` (in order), constants
    as given, except that a float constant of a differentiated input's dtype follows it to
    the dtype the check runs in (a float32 batch beside float32 weights checked in float64:
    torch refuses mixed dtypes in a matmul)."""
    it = iter(diff_values)
    diff = [next(it) if s.diff else None for s in specs]
    cast = {s.dtype: d.dtype for s, d in zip(specs, diff) if d is not None}
    args = []
    for s, d in zip(specs, diff):
        c = d if d is not None else s.const
        if d is None and isinstance(c, torch.Tensor) and c.is_floating_point() and \
                cast.get(c.dtype, c.dtype) != c.dtype:
            c = c.to(cast[c.dtype])
        args.append(c)
    return args


def _outputs(out: Any) -> list:
    """The outputs, flat: nested tuples (an LSTM's ``output, (h, c)``) in order."""
    return tree_flatten(out)[0] if isinstance(out, (tuple, list)) else [out]


def _convert(fn: Any, inputs: Sequence[Any]) -> tuple[list[_Spec], Callable, list[Trace]]:
    any_tensor = any(isinstance(a, torch.Tensor) for a in inputs)
    display = _display(fn)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, _TorchFunction) and \
            getattr(fn, "__name__", "") == "apply":
        # ``MyFn.apply`` was bound before tracing patched ``apply``: call it late
        fn = (lambda cls: lambda *a, **k: cls.apply(*a, **k))(owner)
    specs = [_Spec(a, any_tensor) for a in inputs]
    traces: list[Trace] = []

    def vg_fn(*vals: Any) -> Any:
        # only the differentiated inputs reach the checker; constants are closed over
        env = Trace()
        ts = [to_torch(v) for v in vals]
        for t, v in zip(ts, vals):
            env.set(t, v)
        targs = _arguments(specs, ts)
        if traces and not vg.is_grad_enabled():
            # values only (finite differences): torch's forward as is, nothing to trace
            with torch.no_grad():
                out = fn(*targs)
            vouts = [constant(o) if isinstance(o, torch.Tensor) else o for o in _outputs(out)]
            return tuple(vouts) if isinstance(out, (tuple, list)) else vouts[0]
        with tracing(env):
            out = fn(*targs)
        if not traces:
            traces.append(env)
        vouts = [env.V(o) if isinstance(o, torch.Tensor) else o for o in _outputs(out)]
        return tuple(vouts) if isinstance(out, (tuple, list)) else vouts[0]

    vg_fn.__qualname__ = vg_fn.__name__ = display
    vg_fn._verigrad_internal = True  # already the bridge: vg.check must not route it again
    return specs, vg_fn, traces


def check(fn: Any, *inputs: Any, names: Sequence[str] | None = None, **options: Any) -> Any:
    """Check a torch callable with verigrad's three opinions, plus torch's own gradient.

    Tensors that require grad are differentiated (in float64 on CPU; a float32 input is also
    run in float32 and its rounding noted); other tensors and values are constants.
    """
    from verigrad.checker.core import check as core_check

    from verigrad.checker.problem import CheckInputError

    complex_in = [i for i, v in enumerate(inputs) if isinstance(v, torch.Tensor) and
                  v.is_complex() and v.requires_grad]
    if complex_in:  # its imaginary part would be dropped, and a missing conj() pass
        raise CheckInputError(f"input {complex_in[0]} is complex: verigrad checks gradients "
                              f"of real inputs; pass the real and imaginary parts as two real "
                              f"tensors and build torch.complex(re, im) inside the function")
    specs, vg_fn, traces = _convert(fn, inputs)
    if not any(s.diff for s in specs):
        raise CheckInputError("none of the inputs requires grad: pass the tensors to check "
                              "with requires_grad=True (others are constants)")
    names = list(names) if names is not None else _arg_names(fn, len(inputs))
    args = [vg.tensor(s.array, requires_grad=True) for s in specs if s.diff]
    with _one_thread():
        report = core_check(vg_fn, *args, names=[n for n, s in zip(names, specs) if s.diff],
                            **options)
        _annotate(report, traces, specs)
        _compare_torch(report, fn, specs, names)
    return report


@contextlib.contextmanager
def _one_thread():
    """torch's intra-op threads for the check: the checker runs thousands of tiny ops, where
    waking a second thread costs more than the op (``max.dim`` on a 3x4 tensor: 12 ms with
    2 threads on a loaded machine, 2 us with 1). Values do not depend on it (a reduction
    is split across threads only above 32768 elements); the user's setting is restored."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def _annotate(report: Any, traces: list[Trace], specs: list[_Spec]) -> None:
    if not traces:
        return
    env = traces[0]
    if env.unmapped:
        ops = ", ".join(sorted(env.unmapped))
        report.notes.append(f"aten ops without a verigrad mapping (each is a node running the "
                            f"op and torch's derivative of it, checked by finite differences, "
                            f"no mirror): {ops}")
    if env.decomposed:
        report.notes.append(f"decomposed by torch._decomp into mapped ops: "
                            f"{', '.join(sorted(env.decomposed))}")
    report.notes.extend(dict.fromkeys(env.notes))
    odd = sorted({str(s.dtype) for s in specs if s.diff and s.dtype not in
                  (torch.float64, torch.float32)})
    if odd:
        report.notes.append(f"inputs in {', '.join(odd)} were checked in float64 (and float32 "
                            f"for the rounding note); that dtype's own rounding is coarser")
    devices = sorted({str(s.device) for s in specs if s.diff and s.device.type != "cpu"})
    if devices:
        report.notes.append(f"inputs on {', '.join(devices)} were copied to the CPU")


def _compare_torch(report: Any, fn: Any, specs: list[_Spec], names: list[str]) -> None:
    """The whole gradient from ``torch.autograd.grad`` on the original code (torch's own
    tape, the one the user runs) against the reference of each checked entry."""
    entries = [e for e in report.entries if e.point == 0]
    if not entries or any(isinstance(e.output, tuple) and e.output[:1] == ("v",)
                          for e in entries):
        return
    diff_names = [n for n, s in zip(names, specs) if s.diff]

    def torch_grads(arrays: list) -> Callable:
        """d output / d inputs by torch's own tape at ``arrays`` (one per spec), per entry."""
        leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) if s.diff else None
                  for a, s in zip(arrays, specs)]
        diff_leaves = [leaf for leaf in leaves if leaf is not None]
        # the float outputs, as the check numbered them (an argmax beside them is not one)
        outs = [o for o in _outputs(fn(*_arguments(specs, diff_leaves)))
                if isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex())]
        cache: dict[Any, list] = {}

        def grad(e: Any) -> float:
            if e.output not in cache:
                cts = [torch.zeros_like(o) for o in outs]
                if e.output is None:
                    cts = [torch.ones_like(o) for o in outs]
                else:
                    k, idx = (e.output[0], e.output[1:]) if len(outs) > 1 else (0, e.output)
                    cts[k][idx] = 1.0
                pairs = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
                gs = torch.autograd.grad([o for o, _ in pairs], diff_leaves,
                                         [c for _, c in pairs], retain_graph=True,
                                         allow_unused=True)
                cache[e.output] = [np.zeros(t.shape) if g is None else g.detach().numpy()
                                   for g, t in zip(gs, diff_leaves)]
            return float(cache[e.output][diff_names.index(e.input)][e.index])

        return grad

    arrays = [s.array if s.diff else None for s in specs]
    try:
        grad = torch_grads(arrays)
        bad = []
        for e in entries:
            got = grad(e)
            ref = e.reference
            if ref is None or e.tolerance is None or not np.isfinite(ref):
                continue
            if abs(got - ref) > e.tolerance and e.status not in ("inconclusive", "precision"):
                bad.append((e, got))
        if bad:
            # torch's kernels round on their own (a variance's mean of 1000 is not the
            # replay's, a layer norm's backward is one fused kernel): allow what torch's
            # gradient moves when the inputs move by a few ulps, and what finite differences
            # of the function could tell apart (this opinion is for gross disagreements:
            # a backward torch runs that is not the one traced)
            rng = np.random.default_rng(43)
            noise = {id(e): 0.0 for e, _ in bad}
            for _ in range(2):
                # 16 ulps: a normalisation can round a one-ulp move away entirely
                moved = [a + 16 * np.spacing(a) * np.where(rng.random(np.shape(a)) < 0.5, -1, 1)
                         if s.diff else a for a, s in zip(arrays, specs)]
                other = torch_grads(moved)
                for e, got in bad:
                    noise[id(e)] = max(noise[id(e)], abs(other(e) - got))
            bad = [(e, got) for e, got in bad
                   if abs(got - e.reference) > e.tolerance + FD_SAFETY * noise[id(e)] + (
                       e.fd_error if e.fd_error is not None and np.isfinite(e.fd_error)
                       else 0.0)]
    except Exception as err:  # noqa: BLE001 - torch's own backward failing is a finding
        report.notes.append(f"torch.autograd.grad on {report.expression} raised "
                            f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
        report.verdict = "fail"
        return
    if bad:
        e, got = bad[0]
        t_s, r_s = distinct(got, e.reference)  # digits enough to see them differ
        report.notes.append(
            f"torch.autograd.grad (torch's own tape) disagrees with the reference on "
            f"{len(bad)} of {len(entries)} entries, first {e.label}: torch {t_s}, "
            f"reference {r_s}")
        report.verdict = "fail"
    else:
        report.notes.append(f"torch.autograd.grad agrees with the reference on all "
                            f"{len(entries)} checked entries")


def check_module(module: torch.nn.Module, *inputs: Any, **options: Any) -> Any:
    """Check a module's gradients with respect to its parameters (by their names) and the
    inputs that require grad.

    >>> import torch, verigrad.torch as vgt                            # doctest: +SKIP
    >>> vgt.check_module(torch.nn.Linear(3, 2).double(), torch.randn(4, 3,
    ...                  dtype=torch.float64)).verdict                 # doctest: +SKIP
    'pass'
    """
    from torch.func import functional_call

    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    n_in = len(inputs)

    def call(*args: Any) -> Any:
        return functional_call(module, {n: a for (n, _), a in zip(params, args[n_in:])},
                               tuple(args[:n_in]))

    call.__qualname__ = type(module).__name__
    names = _arg_names(module, n_in) + [n for n, _ in params]
    return check(call, *inputs, *[p for _, p in params], names=names, **options)
