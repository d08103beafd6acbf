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

from ..ops.namespaces import sum_to
from ..tensor import Tensor
from .graph import GraphView
from .local import (LocalRule, MirrorError, evaluate_full, evaluation_memo, rule_for,
                    vjp_with_bound)
from .vm import MAGNITUDE_CAP_BITS

__all__ = ["ExactGraph", "to_mp", "DEFAULT_DPS", "beyond_float64"]

DEFAULT_DPS = 30


def to_mp(value: Any) -> np.ndarray:
    """A numpy array (or number) as an object array of exact mpmath numbers."""
    arr = np.asarray(value)
    if arr.ndim == 0 and arr.dtype.kind == "f":  # the common case in deep scalar graphs
        out = np.empty((), dtype=object)
        out[()] = mpmath.mpf(float(arr))
        return out
    if arr.dtype.kind == "c":
        raise MirrorError("complex tensors have no symbolic reference in verigrad yet; "
                          "the check uses finite differences for them")
    out = np.empty(arr.shape, dtype=object)
    flat = arr.reshape(-1).tolist()
    conv = mpmath.mpf
    out.reshape(-1)[:] = [conv(v) if not isinstance(v, bool) else conv(int(v)) for v in flat]
    return out


#: binary exponent past which a value overflows float64
FLOAT64_MAX_EXP = 1024


def beyond_float64(arr: Any) -> bool:
    """Whether any entry of an object array of mpf is finite but too large for float64."""
    for v in np.asarray(arr, dtype=object).flat:
        m = getattr(v, "_mpf_", None)
        if m is not None and m[1] and m[2] + m[3] > FLOAT64_MAX_EXP:
            return True
    return False


def digits(v: Any, n: int = 25) -> str:
    """``n`` significant digits of an mpf, or ``"overflow"`` past the magnitude cap (where
    the value is saturated, see ``vm.MAGNITUDE_CAP_BITS``, and formatting a huge exponent is
    costly)."""
    m = getattr(v, "_mpf_", None)
    if m is not None and m[1] and abs(m[2] + m[3]) >= MAGNITUDE_CAP_BITS:
        return "overflow" if m[2] + m[3] > 0 else "underflow"
    return mpmath.nstr(v, n)


def _mpf(v: Any) -> Any:
    return v if isinstance(v, (mpmath.mpf, mpmath.mpc)) else mpmath.mpf(v)


def _sum_to(g: Any, shape: tuple) -> np.ndarray:
    # 0-d object arithmetic yields bare mpf scalars: make it an array again
    return sum_to(np.asarray(g, dtype=object), shape)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a + b, dtype=object)


class ExactGraph:
    """The mirror of a recorded graph, evaluated in mpmath at ``dps`` significant digits.

    >>> import verigrad as vg
    >>> from verigrad.symbolic.exact import ExactGraph
    >>> x = vg.tensor(0.5, requires_grad=True, dtype=vg.float64)
    >>> g = ExactGraph(vg.sin(x) * x)
    >>> float(g.gradient()[x][()])   # cos(x)*x + sin(x)
    0.9182168195493894
    """

    def __init__(self, output: Tensor, dps: int = DEFAULT_DPS,
                 view: GraphView | None = None) -> None:
        self.output = output
        self.view = view or GraphView.of(output)
        self.dps = dps
        self._rules: dict[Any, LocalRule] = {}
        self._cache: dict = {}
        self._consts: dict = {}
        self._recorded: dict = {}
        #: names of nodes whose high-precision values left float64's range (|v| > 2**1024,
        #: saturated at 2**MAGNITUDE_CAP_BITS): a non-finite reference there is an overflow,
        #: not a singularity
        self.overflow: list[str] = []
        #: per node, the rounding allowance of its backward (multiple of the unit roundoff of
        #: the precision it works in); the checker sets it from its local checks
        self.node_eps: dict[Any, float] = {}
        for node in self.view.nodes:
            self._check_real(node)
        self._leaf_base = {id(t): to_mp(t._data) for t in self.view.leaves}
        self._leaf_mp = self._leaf_base

    def at_dps(self, dps: int) -> "ExactGraph":
        """This graph set to work at ``dps`` digits (cached evaluations are kept per dps)."""
        self.dps = dps
        return self

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
            elif node.passes_values and not isinstance(raw, np.ndarray):
                args.append(s.value)  # a non-tensor argument of a custom Function
            else:
                # floats convert exactly at any dps >= 16, so one conversion serves all
                key = (node, id(s))
                mp = self._consts.get(key)
                if mp is None:
                    mp = self._consts[key] = to_mp(s.value)
                args.append(mp)
        return args

    def forward(self, leaf_values: Mapping[Tensor, Any] | None = None, with_partials: bool = False,
                recorded: bool = False) -> tuple[dict, dict]:
        """Evaluate every node in high precision. Returns (values, partials) keyed by
        ``(node, output_nr)`` and by node.

        ``leaf_values`` overrides leaf data (floats are taken exactly). With ``recorded=True``
        each node's partials are evaluated at the float values the tape recorded for its
        inputs, not at exact forward values: chaining those gives the gradient the tape
        should have produced from its own forward pass (see :meth:`gradient`).
        """
        key = (self.dps, with_partials, recorded)
        if leaf_values is None:
            # values alone: those computed with the partials are the same numbers
            hit = self._cache.get(key) or (None if with_partials else
                                           self._cache.get((self.dps, True, recorded)))
            if hit is not None:
                self._leaf_mp = self._leaf_base
                return hit
        lv = dict(self._leaf_base)
        if leaf_values:
            for t, v in leaf_values.items():
                lv[id(t)] = v if isinstance(v, np.ndarray) and v.dtype == object else to_mp(v)
        values: dict = {}
        partials: dict = {}
        with mpmath.workdps(self.dps):
            for node in self.view.nodes:
                rule = self.rule(node)
                if recorded:  # the tape's floats: exact at any dps, converted once
                    args = self._recorded.get(node)
                    if args is None:
                        args = self._recorded[node] = [
                            self._recorded_arg(node, raw) for raw in self.view.input_values(node)]
                else:
                    args = self._inputs_mp(node, values, lv)
                outs, parts = self._eval(rule, args, with_partials)
                for nr, o in enumerate(outs):
                    values[(node, nr)] = o
                    if beyond_float64(o) and node.name() not in self.overflow:
                        self.overflow.append(node.name())
                if with_partials:
                    partials[node] = (parts, args)
        if leaf_values is None:
            self._cache[key] = (values, partials)
        self._leaf_mp = lv
        return values, partials

    @staticmethod
    def _recorded_arg(node: Any, raw: Any) -> Any:
        if raw is None or node.passes_values and not isinstance(raw, np.ndarray):
            return raw
        return to_mp(raw)

    def _eval(self, rule: LocalRule, args: list, with_partials: bool) -> tuple[list, Any]:
        sym_args = [a for a, s in zip(args, rule.in_syms) if s is not None]
        if rule.elementwise and all(isinstance(a, np.ndarray) and a.shape == ()
                                    for a in sym_args):
            fn = rule.full_fn() if with_partials else rule.forward_fn()
            res = fn(*[a[()] for a in sym_args])
            cols = [np.empty((), dtype=object)
                    for _ in range(1 + (len(rule.diff_inputs) if with_partials else 0))]
            for c, a in enumerate(cols):
                a[()] = _mpf(res[c])
            return [cols[0]], (cols[1:] if with_partials else None)
        if rule.elementwise:
            arrays = [np.asarray(a, dtype=object) for a in sym_args]
            shape = np.broadcast_shapes(*[a.shape for a in arrays]) if arrays else ()
            flat_args = [a.reshape(-1).tolist() if a.shape == shape else
                         np.broadcast_to(a, shape).reshape(-1).tolist() for a in arrays]
            fn = rule.full_fn() if with_partials else rule.forward_fn()
            k = len(rule.diff_inputs) if with_partials else 0
            cols: list[list] = [[] for _ in range(1 + k)]
            for vals in zip(*flat_args) if flat_args else [()] * int(np.prod(shape)):
                res = fn(*vals)
                for c in range(1 + k):
                    cols[c].append(_mpf(res[c]))
            arrs = []
            for col in cols:
                a = np.empty(len(col), dtype=object)
                a[:] = col
                arrs.append(a.reshape(shape))
            return [arrs[0]], (arrs[1:] if with_partials else None)
        flat = [v for a in sym_args for v in np.asarray(a, dtype=object).reshape(-1)]
        # the node checks evaluate the same partials at the recorded values: shared
        res = evaluate_full(rule, flat, evaluation_memo(self.view)) if with_partials else \
            rule.forward_fn()(*flat)
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
    def gradient(self, cotangent: Any = None, recorded: bool = False,
                 bounds: bool | str = False) -> Any:
        """d(output . cotangent)/d(leaf) for every leaf, as object arrays of mpf.

        The cotangent defaults to 1 (a scalar output). With ``recorded=True`` the partials
        are taken at the tape's recorded values (the gradient a correct tape computes up to
        backward rounding). With ``bounds=True`` also returns, per leaf, a float bound on
        that backward rounding: local bounds from ``rounding_magnitude`` pushed through |J|.
        ``bounds="lower"`` leaves out the measured input sensitivity of non-elementwise
        rules (``vjp_with_bound``'s probes, most of the cost): every term of the bound is
        >= 0 and IEEE rounding is monotone, so that bound is <= the full one entry by entry,
        and a VJP within it is within the full bound (see ``checker.core._analyze``).
        """
        out = self.output
        with mpmath.workdps(self.dps):
            ct = to_mp(np.ones(out.shape) if cotangent is None else cotangent)
            if out._grad_fn is None:
                zero = {out: np.zeros(out.shape)}
                return ({out: ct}, zero) if bounds else {out: ct}
            values, partials = self.forward(with_partials=True, recorded=recorded)
            grads: dict = {(out._grad_fn, out._output_nr): ct}
            bnd: dict = {(out._grad_fn, out._output_nr): np.zeros(out.shape)}
            leaf_grads: dict[int, np.ndarray] = {}
            leaf_bnd: dict[int, np.ndarray] = {}
            for node in reversed(self.view.nodes):
                rule = self.rule(node)
                gouts = [grads.pop((node, nr), None) for nr in range(len(rule.outs))]
                bouts = [bnd.pop((node, nr), None) for nr in range(len(rule.outs))]
                if all(g is None for g in gouts):
                    continue
                parts, args = partials[node]
                in_grads = self._chain(node, rule, gouts, parts)
                in_bnds = self._chain_bounds(node, rule, gouts, bouts, parts, args,
                                             lower=bounds == "lower", chained=in_grads) \
                    if bounds else [None] * len(in_grads)
                for s, gi, bi in zip(self.view.sources[node], in_grads, in_bnds):
                    if gi is None:
                        continue
                    if s.kind == "node":
                        key = (s.node, s.nr)
                        grads[key] = gi if key not in grads else _add(grads[key], gi)
                        if bounds:
                            bnd[key] = bi if key not in bnd else bnd[key] + bi
                    elif s.kind == "leaf":
                        k = id(s.leaf)
                        leaf_grads[k] = gi if k not in leaf_grads else _add(leaf_grads[k], gi)
                        if bounds:
                            leaf_bnd[k] = bi if k not in leaf_bnd else leaf_bnd[k] + bi
        result, result_bnd = {}, {}
        for t in self.view.leaves:
            g = leaf_grads.get(id(t))
            result[t] = g if g is not None else to_mp(np.zeros(t.shape))
            result_bnd[t] = leaf_bnd.get(id(t), np.zeros(t.shape))
        return (result, result_bnd) if bounds else result

    def gradient_verified(self, cotangent: Any = None, digits: int = 17, max_dps: int = 240
                          ) -> tuple[dict[Tensor, np.ndarray], dict[Tensor, np.ndarray]]:
        """Gradients with an error bound: computed at two precisions (``dps`` and ``dps+20``)
        and repeated at doubled precision until they agree to ``digits`` significant digits
        (cancellation in the graph can eat 30 digits). Returns (gradients, absolute error
        estimates) as float64 arrays; the estimate is the two runs' difference. The
        high-precision values themselves are left in ``self.last_mp`` (leaf -> mpf array)."""
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
                self.last_mp = high
                return grads, errors
            dps *= 2

    def _chain(self, node: Any, rule: LocalRule, gouts: list, parts: Any) -> list:
        in_vals = self.view.input_values(node)
        in_grads: list = [None] * len(in_vals)
        if rule.elementwise:
            g = gouts[0]
            for k, i in enumerate(rule.diff_inputs):
                shape = np.shape(in_vals[i])
                if not shape and not np.shape(g) and not np.shape(parts[k]):
                    r = np.empty((), dtype=object)
                    r[()] = g[()] * parts[k][()]
                    in_grads[i] = r
                else:
                    in_grads[i] = _sum_to(g * parts[k], shape)
            return in_grads
        # on plain lists (the same mpf operations in the same order as on object arrays,
        # without numpy's per-element indexing: a 16x8 @ 8x16 product has 2048 partials)
        zero = mpmath.mpf(0)
        flat_g = [None if g is None else g.reshape(-1).tolist() for g in gouts]
        flat_in = {i: [zero] * int(np.size(in_vals[i])) for i in rule.diff_inputs}
        for (k, j, i, m), p in zip(rule.jac_index, parts):
            gk = flat_g[k]
            if gk is not None:
                o = flat_in[i]
                o[m] = o[m] + gk[j] * p
        for i in rule.diff_inputs:
            arr = np.empty(len(flat_in[i]), dtype=object)
            arr[:] = flat_in[i]
            in_grads[i] = arr.reshape(np.shape(in_vals[i]))
        return in_grads

    def _chain_bounds(self, node: Any, rule: LocalRule, gouts: list, bouts: list, parts: Any,
                      args: list, lower: bool = False, chained: list | None = None
                      ) -> list:
        """Rounding bound of a correct float VJP at this node plus the incoming bounds pushed
        through |J|: elementwise c*eps*(|g| M + 2|g J|) + |J|^T B; otherwise
        ``vjp_with_bound`` + |J|^T B. ``lower``: without the terms evaluated in high
        precision for the bound alone (M of elementwise rules, the probes and partial
        magnitudes of the others), each >= 0: a lower bound of the full one."""
        eps = self.node_eps.get(node, EPS64 * SAFETY)
        in_vals = self.view.input_values(node)
        out: list = [None] * len(in_vals)
        sym_args = [a for a, s in zip(args, rule.in_syms) if s is not None]
        if rule.elementwise and _all_scalar(sym_args, gouts[0]):
            # one element (deep scalar chains): the same formula in plain floats
            mvals = [0.0] * len(rule.diff_inputs) if lower else \
                rule.magnitude_fn()(*[a[()] for a in sym_args])
            g = abs(float(gouts[0][()]))
            b = float(bouts[0]) if bouts[0] is not None else 0.0
            for k, i in enumerate(rule.diff_inputs):
                p = abs(float(parts[k][()]))
                local = eps * (g * abs(float(mvals[k])) + 2 * g * p) + g * UNDERFLOW
                out[i] = _sum_to_float(np.asarray(p * b + local), np.shape(in_vals[i]))
            return out
        if rule.elementwise:
            mag = None if lower else rule.magnitude_fn()
            g = np.abs(np.array(np.asarray(gouts[0], dtype=object).tolist(), dtype=float))
            b = bouts[0] if bouts[0] is not None else 0.0
            arrays = np.broadcast_arrays(*[np.asarray(a, dtype=object) for a in sym_args])
            flat = [a.reshape(-1) for a in arrays]
            shape = arrays[0].shape if arrays else ()
            m = None if not rule.diff_inputs else \
                np.zeros(shape + (len(rule.diff_inputs),)) if lower else \
                np.array([[float(abs(v)) for v in mag(*[a[j] for a in flat])]
                          for j in range(int(np.prod(shape)))]).reshape(shape + (-1,))
            for k, i in enumerate(rule.diff_inputs):
                p = np.abs(np.array(np.asarray(parts[k], dtype=object).tolist(), dtype=float))
                local = eps * (g * m[..., k] + 2 * g * p) + g * UNDERFLOW
                out[i] = _sum_to_float(p * b + local, np.shape(in_vals[i]))
            return out
        flat = [v for a in sym_args for v in np.asarray(a, dtype=object).reshape(-1)]
        sizes = {i: int(np.size(in_vals[i])) for i in rule.diff_inputs}
        cts = [np.zeros(o.size, dtype=object) if g is None else g for g, o in
               zip(gouts, rule.outs)]
        # J^T v as _chain made it (the same sums in the same order), when it chained every
        # cotangent (a missing one is zeros there, a skipped term in _chain)
        value = None if chained is None or any(g is None for g in gouts) else \
            {i: chained[i].reshape(-1).tolist() for i in rule.diff_inputs}
        _, acc = vjp_with_bound(rule, flat, parts, cts, sizes, eps, probes=0 if lower else 3,
                                memo=evaluation_memo(self.view), magnitudes=not lower,
                                value=value)
        flat_b = [None if b is None else np.asarray(b, dtype=float).reshape(-1) for b in bouts]
        for (k, j, i, m), p in zip(rule.jac_index, parts):
            if flat_b[k] is not None:
                acc[i][m] += float(abs(p)) * flat_b[k][j]
        for i in rule.diff_inputs:
            out[i] = acc[i].reshape(np.shape(in_vals[i]))
        return out


#: float64 unit roundoff, and the factor allowed over first-order rounding bounds (VJP
#: formulas may legitimately take a different route than the mirror's derivative)
EPS64 = float(np.finfo(np.float64).eps) / 2
SAFETY = 8.0
#: the absolute error of a value that underflowed (exp(-1070) is 0 in float64): relative
#: bounds miss it, and a huge cotangent (1 / exp(-700) in log-sum-exp) amplifies it
UNDERFLOW = float(np.finfo(np.float64).smallest_subnormal)


def _all_scalar(sym_args: list, g: Any) -> bool:
    return all(isinstance(a, np.ndarray) and a.shape == () for a in sym_args) and \
        isinstance(g, np.ndarray) and g.shape == ()


def _sum_to_float(g: np.ndarray, shape: tuple) -> np.ndarray:
    return sum_to(np.asarray(g, dtype=float), shape)


def exact_gradient(output: Tensor, inputs: Sequence[Tensor], dps: int = DEFAULT_DPS
                   ) -> list[np.ndarray]:
    """d output / d input for each input (object arrays of mpf), from the mirror alone."""
    g = ExactGraph(output, dps).gradient()
    return [g.get(t, to_mp(np.zeros(t.shape))) for t in inputs]
