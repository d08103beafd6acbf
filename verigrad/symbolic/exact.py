"""High-precision numbers from the mirror: forward values and exact gradients in mpmath.

Each node's local rule (its mirror and ``sympy.diff`` partials) is evaluated at the node's
high-precision input values, and gradients are chained in reverse with this module's own
loop over the nonzero partials. Nothing here calls a VJP, so the symbolic opinion cannot
share a bug with the tape.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import mpmath
import numpy as np

from ..autograd.function import FunctionCtx
from ..tensor import Tensor
from .graph import GraphView
from .local import LocalRule, MirrorError, rule_for

__all__ = ["ExactGraph", "to_mp", "DEFAULT_DPS"]

DEFAULT_DPS = 30


def to_mp(value: Any) -> np.ndarray:
    """A numpy array (or number) as an object array of exact mpmath numbers."""
    arr = np.asarray(value)
    if arr.dtype.kind == "c":
        raise MirrorError("complex tensors have no symbolic reference in verigrad yet; "
                          "the check uses finite differences for them")
    out = np.empty(arr.shape, dtype=object)
    flat = arr.reshape(-1).tolist()
    conv = mpmath.mpf
    out.reshape(-1)[:] = [conv(v) if not isinstance(v, bool) else conv(int(v)) for v in flat]
    return out


def _mpf(v: Any) -> Any:
    return v if isinstance(v, (mpmath.mpf, mpmath.mpc)) else mpmath.mpf(v)


def _sum_to(g: Any, shape: tuple) -> np.ndarray:
    g = np.asarray(g, dtype=object)  # 0-d object arithmetic yields bare mpf scalars
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a + b, dtype=object)


class ExactGraph:
    """The mirror of a recorded graph, evaluated in mpmath at ``dps`` significant digits.

    >>> import verigrad as vg
    >>> from verigrad.symbolic.exact import ExactGraph
    >>> x = vg.tensor(0.5, requires_grad=True, dtype=vg.float64)
    >>> g = ExactGraph(vg.sin(x) * x)
    >>> float(g.gradient()[x][()])   # cos(x)*x + sin(x)
    0.9182100352458356
    """

    def __init__(self, output: Tensor, dps: int = DEFAULT_DPS,
                 view: GraphView | None = None) -> None:
        self.output = output
        self.view = view or GraphView.of(output)
        self.dps = dps
        self._rules: dict[Any, LocalRule] = {}
        for node in self.view.nodes:
            self._check_real(node)

    def _check_real(self, node: Any) -> None:
        for v in self.view.input_values(node):
            if isinstance(v, np.ndarray) and v.dtype.kind == "c" or isinstance(v, complex):
                raise MirrorError(f"{node.name()} has complex inputs; the symbolic reference "
                                  f"covers real tensors only")

    def rule(self, node: Any) -> LocalRule:
        rule = self._rules.get(node)
        if rule is None:
            srcs = self.view.sources[node]
            diff = tuple(i for i, s in enumerate(srcs) if s.kind in ("node", "leaf"))
            rule = rule_for(node, self.view.input_values(node), diff)
            self._rules[node] = rule
        return rule

    # --- forward ---------------------------------------------------------------------
    def _inputs_mp(self, node: Any, values: dict, leaf_values: Mapping[int, np.ndarray]) -> list:
        args = []
        for s, raw in zip(self.view.sources[node], self.view.input_values(node)):
            if s.kind == "node":
                args.append(values[(s.node, s.nr)])
            elif s.kind == "leaf":
                args.append(leaf_values[id(s.leaf)])
            elif s.value is None:
                args.append(None)
            elif isinstance(node, FunctionCtx) and not isinstance(raw, np.ndarray):
                args.append(s.value)  # a non-tensor argument of a custom Function
            else:
                args.append(to_mp(s.value))
        return args

    def forward(self, leaf_values: Mapping[Tensor, Any] | None = None, with_partials: bool = False
                ) -> tuple[dict, dict]:
        """Evaluate every node in high precision. ``leaf_values`` overrides leaf data (any
        array-like; floats are taken exactly). Returns (values, partials) keyed by
        ``(node, output_nr)`` and by node."""
        lv = {id(t): to_mp(t._data) for t in self.view.leaves}
        if leaf_values:
            for t, v in leaf_values.items():
                lv[id(t)] = v if isinstance(v, np.ndarray) and v.dtype == object else to_mp(v)
        values: dict = {}
        partials: dict = {}
        with mpmath.workdps(self.dps):
            for node in self.view.nodes:
                rule = self.rule(node)
                args = self._inputs_mp(node, values, lv)
                outs, parts = self._eval(rule, args, with_partials)
                for nr, o in enumerate(outs):
                    values[(node, nr)] = o
                if with_partials:
                    partials[node] = parts
        self._leaf_mp = lv
        return values, partials

    def _eval(self, rule: LocalRule, args: list, with_partials: bool) -> tuple[list, Any]:
        sym_args = [a for a, s in zip(args, rule.in_syms) if s is not None]
        if rule.elementwise:
            arrays = np.broadcast_arrays(*[np.asarray(a, dtype=object) for a in sym_args])
            shape = arrays[0].shape if arrays else ()
            fn = rule.full_fn() if with_partials else rule.forward_fn()
            n_out = 1
            out = np.empty(shape, dtype=object)
            parts = [np.empty(shape, dtype=object) for _ in rule.diff_inputs] \
                if with_partials else None
            flat_args = [a.reshape(-1) for a in arrays]
            for j in range(out.size):
                res = fn(*[a[j] for a in flat_args])
                out.reshape(-1)[j] = _mpf(res[0])
                if with_partials:
                    for k in range(len(rule.diff_inputs)):
                        parts[k].reshape(-1)[j] = _mpf(res[n_out + k])
            return [out], parts
        flat = [v for a in sym_args for v in np.asarray(a, dtype=object).reshape(-1)]
        fn = rule.full_fn() if with_partials else rule.forward_fn()
        res = fn(*flat)
        outs = []
        pos = 0
        for o in rule.outs:
            arr = np.empty(o.shape, dtype=object)
            arr.reshape(-1)[:] = [_mpf(v) for v in res[pos:pos + o.size]]
            outs.append(arr)
            pos += o.size
        parts = [_mpf(v) for v in res[pos:]] if with_partials else None
        return outs, parts

    def value(self, leaf_values: Mapping[Tensor, Any] | None = None) -> np.ndarray:
        """The output's value in high precision (object array of mpf)."""
        if self.output._grad_fn is None:
            src = leaf_values.get(self.output) if leaf_values else None
            return to_mp(self.output._data if src is None else src)
        values, _ = self.forward(leaf_values)
        return values[(self.output._grad_fn, self.output._output_nr)]

    # --- reverse ---------------------------------------------------------------------
    def gradient(self, cotangent: Any = None) -> dict[Tensor, np.ndarray]:
        """d(output . cotangent)/d(leaf) for every leaf, as object arrays of mpf.

        The cotangent defaults to 1 (a scalar output)."""
        out = self.output
        with mpmath.workdps(self.dps):
            ct = to_mp(np.ones(out.shape) if cotangent is None else cotangent)
            if out._grad_fn is None:
                return {out: ct}
            values, partials = self.forward(with_partials=True)
            grads: dict = {(out._grad_fn, out._output_nr): ct}
            leaf_grads: dict[int, np.ndarray] = {}
            for node in reversed(self.view.nodes):
                rule = self.rule(node)
                gouts = [grads.pop((node, nr), None) for nr in range(len(rule.outs))]
                if all(g is None for g in gouts):
                    continue
                in_grads = self._chain(node, rule, gouts, partials[node], values)
                for s, gi in zip(self.view.sources[node], in_grads):
                    if gi is None:
                        continue
                    if s.kind == "node":
                        key = (s.node, s.nr)
                        grads[key] = gi if key not in grads else _add(grads[key], gi)
                    elif s.kind == "leaf":
                        k = id(s.leaf)
                        leaf_grads[k] = gi if k not in leaf_grads else _add(leaf_grads[k], gi)
        result = {}
        for t in self.view.leaves:
            g = leaf_grads.get(id(t))
            result[t] = g if g is not None else to_mp(np.zeros(t.shape))
        return result

    def gradient_verified(self, cotangent: Any = None, digits: int = 17, max_dps: int = 240
                          ) -> tuple[dict[Tensor, np.ndarray], dict[Tensor, np.ndarray]]:
        """Gradients with an error bound: computed at two precisions (``dps`` and ``dps+20``)
        and repeated at doubled precision until they agree to ``digits`` significant digits
        (cancellation in the graph can eat 30 digits). Returns (gradients, absolute error
        estimates) as float64 arrays; the estimate is the two runs' difference."""
        dps = self.dps
        while True:
            self.dps = dps
            low = self.gradient(cotangent)
            self.dps = dps + 20
            high = self.gradient(cotangent)
            grads, errors, worst = {}, {}, 0.0
            for t in high:
                h = np.array(high[t].tolist(), dtype=float).reshape(t.shape)
                diff = np.array(_add(high[t], -low[t]).tolist(), dtype=float).reshape(t.shape)
                err = np.abs(diff)
                grads[t], errors[t] = h, err
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(h), 1e-300))
                worst = max(worst, float(np.max(rel, initial=0.0)))
            if worst <= 10.0 ** -digits or dps * 2 > max_dps:
                self.dps = dps
                return grads, errors
            dps *= 2

    def _chain(self, node: Any, rule: LocalRule, gouts: list, parts: Any, values: dict) -> list:
        srcs = self.view.sources[node]
        in_vals = self.view.input_values(node)
        in_grads: list = [None] * len(srcs)
        if rule.elementwise:
            g = gouts[0]
            for k, i in enumerate(rule.diff_inputs):
                shape = np.shape(in_vals[i])
                in_grads[i] = _sum_to(g * parts[k], shape)
            return in_grads
        zero = mpmath.mpf(0)
        for i in rule.diff_inputs:
            in_grads[i] = np.full(np.shape(in_vals[i]), zero, dtype=object)
        flat_g = [None if g is None else g.reshape(-1) for g in gouts]
        flat_in = {i: in_grads[i].reshape(-1) for i in rule.diff_inputs}
        for (k, j, i, m), p in zip(rule.jac_index, parts):
            gk = flat_g[k]
            if gk is not None:
                flat_in[i][m] += gk[j] * p
        return in_grads


def exact_gradient(output: Tensor, inputs: Sequence[Tensor], dps: int = DEFAULT_DPS
                   ) -> list[np.ndarray]:
    """d output / d input for each input (object arrays of mpf), from the mirror alone."""
    g = ExactGraph(output, dps).gradient()
    return [g.get(t, to_mp(np.zeros(t.shape))) for t in inputs]
