"""Local rules: one node's mirror on fresh symbols, its partial derivatives from
``sympy.diff`` (never from the VJP), and mpmath functions evaluating both.

A rule depends only on the op, its parameters and the input shapes, so it is built once and
cached; the numbers of a whole graph come from chaining rules (see ``exact.py``). This is
what makes exact gradients of a 10x10 ``A@B@C`` take milliseconds, not minutes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import math
import os
from fractions import Fraction

import mpmath
import numpy as np

from .._lazy import sp
from ..autograd.function import FunctionCtx
from ..autograd.node import Node
from . import rule_cache
from .vm import Program

__all__ = ["LocalRule", "rule_for", "MirrorError", "apply_mirror", "evaluation_memo",
           "evaluate_full"]


class MirrorError(ValueError):
    """A node has no SymPy mirror (a custom Function without ``symbolic``), or its mirror
    does not match the forward's shape."""


def _freeze(obj: Any) -> Any:
    """A hashable key for op parameters (arrays by content)."""
    if isinstance(obj, np.ndarray):
        return ("nd", obj.shape, obj.dtype.str, obj.tobytes())
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__,) + tuple(_freeze(o) for o in obj)
    if isinstance(obj, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, slice):
        return ("slice", obj.start, obj.stop, obj.step)
    if isinstance(obj, np.dtype):
        return ("dtype", obj.str)
    try:
        hash(obj)
    except TypeError:
        return ("repr", repr(obj))
    return (type(obj).__name__, obj)


def _objects(shape: tuple, make: Callable[[tuple], Any]) -> np.ndarray:
    arr = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        arr[idx] = make(idx)
    return arr


def apply_mirror(node: Node, args: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """Apply a node's mirror to object arrays (or None for absent inputs); returns one object
    array per node output. Used for local rules and for whole-graph expressions alike."""
    try:
        return _apply_mirror(node, args)
    except MirrorError:
        raise
    except (TypeError, ValueError, ArithmeticError) as e:  # SymPy cannot order x and zoo...
        raise MirrorError(f"the mirror of {node.name()} cannot be built: {e} (the graph may be "
                          f"singular everywhere, e.g. a division by x - x)") from None


def _apply_mirror(node: Node, args: Sequence[Any]) -> tuple[np.ndarray, ...]:
    mirror = getattr(node, "mirror", None)  # the node protocol (autograd/node.py)
    if mirror is None:
        raise MirrorError(f"{node.name()} has no mirror")
    return mirror(args)


def _function_mirror(node: FunctionCtx, args: Sequence[Any]) -> tuple[np.ndarray, ...]:
    cls = node._forward_cls
    sym = node.own_mirror()
    if sym is None:
        from .traced import traced_mirror  # traced graphs are mirrored like any graph

        return traced_mirror(node, args)
    shapes = [m[0] for m in node._out_meta]
    call_args = [a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a for a in args]
    try:
        result = sym(*call_args)
        outs = result if isinstance(result, tuple) else (result,)
        outs = tuple(np.asarray(o, dtype=object) for o in outs)
        if len(outs) != len(shapes) or any(o.shape != tuple(s) for o, s in zip(outs, shapes)):
            raise ValueError("shape")
        if any(_holds_array(o.reshape(-1)[0]) for o in outs if o.size):
            # a scalar formula given arrays (sympy.exp(array) makes a SymPy Array inside)
            raise ValueError("elementwise")
        return outs
    except Exception:  # noqa: BLE001 - a scalar-only symbolic: apply it per element
        tensor_slots = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
        if not tensor_slots:
            raise
        arrays = np.broadcast_arrays(*[args[i] for i in tensor_slots])

        def per_element(*vals):
            full = list(call_args)
            for i, v in zip(tensor_slots, vals):
                full[i] = v
            r = sym(*full)
            return r

        f = np.frompyfunc(per_element, len(tensor_slots), 1)
        out = np.asarray(f(*arrays), dtype=object)
        if len(shapes) != 1 or out.shape != tuple(shapes[0]):
            raise MirrorError(
                f"{cls.__name__}.symbolic returned a result that matches neither the output "
                f"shape {tuple(shapes[0]) if shapes else ()} nor an elementwise rule") from None
        return (out,)


def _holds_array(expr: Any) -> bool:
    if not isinstance(expr, sp.Basic):
        return False
    return any(isinstance(e, sp.NDimArray) for e in sp.preorder_traversal(expr))


#: non-elementwise rules with more partials than this get measured rounding bounds only
PARTIAL_MAGNITUDE_CAP = 256
#: ... and when their expressions hold at most this many tree nodes in all (building the
#: bound costs ~10 us per node; larger rules get the measured bound)
PARTIAL_MAGNITUDE_NODES = 5_000


@dataclass
class LocalRule:
    """The mirror of one op at given parameters and input shapes, on fresh symbols."""

    elementwise: bool
    in_syms: list[Any]               # per input: object array of symbols, or None
    outs: list[np.ndarray]           # per output: object array of expressions
    diff_inputs: tuple[int, ...]     # inputs that get partials
    uses_out: bool = False           # the op's VJP reads the forward output
    _forward: Callable | None = None
    _full: Callable | None = None
    _partials_only: Callable | None = None
    _constant: bool | None = None    # every partial is a rational number
    _magnitude: Callable | None = None
    _partial_magnitude: Any = None
    _partials: list[Any] = field(default_factory=list)
    jac_index: list[tuple[int, int, int, int]] = field(default_factory=list)  # (out, oflat, in, iflat)
    _derived: bool = False           # _partials and jac_index hold the partials
    _magnitude_exprs: list | None = None
    _partial_magnitude_exprs: Any = None   # a list, False (none for this rule) or None
    _store: Callable | None = None   # writes the rule to the on-disk cache (registry ops)

    @property
    def flat_syms(self) -> list[Any]:
        return [s for arr in self.in_syms if arr is not None for s in arr.flat]

    def _lambdify(self, exprs: list[Any]) -> Callable:
        return Program(self.flat_syms, exprs)

    def _persist(self) -> None:
        if self._store is not None:
            self._store(self)

    def magnitude_fn(self) -> Callable:
        """``f(*flat_inputs)`` -> rounding-error magnitude of each partial (same order as the
        partials of ``full_fn``), in units of the unit roundoff: how much a correct float
        evaluation of that partial may be off, per eps (see ``rounding_magnitude``). Built
        symbolically, so meant for elementwise rules (non-elementwise ones measure it:
        ``vjp_with_bound``)."""
        if self._magnitude is None:
            if self._magnitude_exprs is None:
                self.derive_partials()
                # only a backward that reads the saved output sees its rounding (our
                # registry knows which do; at cos(0) the term would be huge and is not earned)
                out = self.outs[0].reshape(-1)[0] if self.elementwise and self.uses_out \
                    else None
                self._magnitude_exprs = [
                    rounding_magnitude(d) + input_sensitivity(d) +
                    (output_sensitivity(d, out, self._partials, self._diff_syms())
                     if out is not None else 0) for d in self._partials]
                self._persist()
            self._magnitude = self._lambdify(self._magnitude_exprs)
        return self._magnitude

    def partial_magnitude_fn(self) -> Callable | None:
        """For a small non-elementwise rule, ``f(*flat_inputs)`` -> the rounding magnitude
        of each partial's expression (``rounding_magnitude``, in units of the unit
        roundoff): ``p - 1`` with ``p`` near 1 is made of terms of size 1, however tiny its
        value. None for large rules (their bound is measured: ``vjp_with_bound``)."""
        if self._partial_magnitude is None:
            if self._partial_magnitude_exprs is None:
                self.derive_partials()
                if self.elementwise or len(self._partials) > PARTIAL_MAGNITUDE_CAP or \
                        _larger_than(self._partials, PARTIAL_MAGNITUDE_NODES):
                    self._partial_magnitude_exprs = False
                else:
                    # SymEngine's partials come back with plain (complex) symbols: make
                    # them ours
                    real = {sp.Symbol(t.name): t for t in self.flat_syms}
                    exprs = [d if isinstance(d, sp.Basic) else d._sympy_().xreplace(real)
                             for d in self._partials]
                    self._partial_magnitude_exprs = [rounding_magnitude(d) for d in exprs]
                self._persist()
            self._partial_magnitude = self._lambdify(self._partial_magnitude_exprs) \
                if self._partial_magnitude_exprs is not False else False
        return self._partial_magnitude or None

    def _diff_syms(self) -> list[Any]:
        return [self.in_syms[i].reshape(-1)[0] for i in self.diff_inputs]

    def forward_fn(self) -> Callable:
        if self._forward is None:
            self._forward = self._lambdify([e for o in self.outs for e in o.flat])
        return self._forward

    def derive_partials(self) -> None:
        """The nonzero partials (``_partials``, indexed by ``jac_index``), once."""
        if self._derived:
            return
        # SymEngine differentiates ~100x faster; elementwise rules stay in SymPy, whose
        # partials also feed the symbolic rounding magnitudes
        se = _symengine() if not self.elementwise else None
        memo: dict = {}
        index, partials = [], []
        for k, o in enumerate(self.outs):
            for j, e in enumerate(o.flat):
                terms = _terms_by_symbol(e)
                for i in self.diff_inputs:
                    for m, s in enumerate(self.in_syms[i].flat):
                        if s not in terms:
                            continue
                        partials.append(_diff(e, s, terms[s], se, memo))
                        index.append((k, j, i, m))
        self.jac_index, self._partials, self._derived = index, partials, True
        self._persist()

    def full_fn(self) -> Callable:
        """``f(*flat_inputs)`` -> outputs, then the nonzero partials listed in ``jac_index``."""
        if self._full is None:
            self._full = self._partials_program(with_outputs=True)
        return self._full

    def constant_partials(self) -> bool:
        """Whether every nonzero partial is a rational number (a linear op)."""
        if self._constant is None:
            self.derive_partials()
            self._constant = all(_rational(d) is not None for d in self._partials)
        return self._constant

    def partials_fn(self) -> Callable:
        """``f(*flat_inputs)`` -> the nonzero partials listed in ``jac_index`` alone (the
        same numbers as ``full_fn``'s: each expression node is evaluated the same way)."""
        if self._partials_only is None:
            self._partials_only = self._partials_program(with_outputs=False)
        return self._partials_only

    def _partials_program(self, with_outputs: bool) -> Callable:
        """The outputs (``with_outputs``) and the partials, as one program."""
        self.derive_partials()
        exprs = [e for o in self.outs for e in o.flat] if with_outputs else []
        n_out = len(exprs)
        se = _symengine() if not self.elementwise else None
        syms = self.flat_syms
        position = {t: n for n, t in enumerate(syms)}
        plan = []  # per partial: (0, input position) | (1, (p, q)) | (2, expression slot)
        for d in self._partials:
            # plain symbols and numbers need no code at all
            q = _rational(d)
            if d in position or type(d).__name__ == "Symbol":
                plan.append((0, position[d] if d in position else
                             position[sp.Symbol(d.name, real=True)]))
            elif q is not None:
                plan.append((1, q))
            else:
                plan.append((2, len(exprs)))
                exprs.append(d)
        f = Program([(t, se.Symbol(t.name)) for t in syms] if se else syms, exprs)

        def full(*args: Any) -> list:
            vals = f(*args)
            out = list(vals[:n_out])
            for kind, v in plan:
                out.append(args[v] if kind == 0 else vals[v] if kind == 2
                           else mpmath.mpf(v[0]) / v[1])
            return out

        return full


def _larger_than(exprs: list[Any], cap: int) -> bool:
    """Whether ``exprs`` hold more than ``cap`` tree nodes (stops counting at the cap)."""
    n, stack = 0, list(exprs)
    while stack:  # SymPy and SymEngine expressions alike: both have .args
        n += 1
        if n > cap:
            return True
        stack.extend(getattr(stack.pop(), "args", ()))
    return False


_UNARY: dict[Any, tuple[Any, Any]] = {}


def _unary_derivative(func: Any) -> tuple[Any, Any]:
    """``(z, func'(z))`` with a dummy ``z``, once per function (not once per occurrence)."""
    if func not in _UNARY:
        z = sp.Dummy("z")
        _UNARY[func] = (z, sp.diff(func(z), z))
    return _UNARY[func]


def _abs(e: Any) -> Any:
    # unevaluated: Abs's own simplification (signsimp) dominated the cost of large bounds
    return sp.Abs(e, evaluate=False) if isinstance(e, sp.Basic) and not e.is_number else abs(e)


def rounding_magnitude(expr: Any) -> Any:
    """First-order bound of the rounding error of evaluating ``expr`` in floating point, in
    units of the unit roundoff, as a SymPy expression of the same symbols. Inputs count as
    exact (they are the values the tape used); every operation adds its own rounding and
    scales its operands' errors by its sensitivity. ``1 - tanh(a)**2`` at a=20 gets about 2:
    its true value 2e-17 may legitimately come out as 0."""
    memo: dict[Any, Any] = {}

    def m(e: Any) -> Any:
        if e in memo:
            return memo[e]
        if not isinstance(e, sp.Basic) or e.is_Atom:
            r = _abs(e) if isinstance(e, sp.Rational) and not _dyadic(e) else sp.Integer(0)
        elif isinstance(e, sp.Add):
            r = sp.Add(*[m(a) for a in e.args]) + (len(e.args) - 1) * sp.Add(
                *[_abs(a) for a in e.args])
        elif isinstance(e, sp.Mul):
            terms = []
            for i, a in enumerate(e.args):
                others = sp.Mul(*[_abs(b) for j, b in enumerate(e.args) if j != i])
                terms.append(m(a) * others)
            r = sp.Add(*terms) + (len(e.args) - 1) * _abs(e)
        elif isinstance(e, sp.Pow):
            b, c = e.args
            if c.is_number:
                r = _abs(c * b ** (c - 1)) * m(b) + _abs(e)
            else:
                r = _abs(e) * (_abs(c / b) * m(b) + _abs(sp.log(b)) * m(c)) + _abs(e)
        elif isinstance(e, sp.Piecewise):
            r = sp.Piecewise(*[(m(v), c) for v, c in e.args])
        elif isinstance(e, (sp.Max, sp.Min)):
            r = sp.Add(*[m(a) for a in e.args])
        elif isinstance(e, sp.Abs):
            r = m(e.args[0])
        elif isinstance(e, (sp.sign, sp.Heaviside)) or isinstance(
                e, sp.core.relational.Relational) or e.is_Boolean:
            r = sp.Integer(0)
        elif isinstance(e, sp.Function) and len(e.args) == 1:
            u = e.args[0]
            z, dz = _unary_derivative(e.func)
            deriv = dz.xreplace({z: u})
            r = _abs(deriv) * m(u) + _abs(e)
        else:  # unknown structure: one rounding of the value, plus its arguments' errors
            r = sp.Add(*[m(a) for a in e.args if isinstance(a, sp.Expr)]) + _abs(e)
        memo[e] = r
        return r

    return m(expr)


def input_sensitivity(expr: Any) -> Any:
    """sum_k |d expr / d a_k| |a_k|: how much ``expr`` moves when its inputs move by one
    rounding each. A stable float evaluation is exact for slightly perturbed inputs, so this
    bounds what a different but correct formula may differ by (the tape's logsumexp rule
    forms ``x - out`` with |x| ~ 1000 and loses ~1000 ulps there, legitimately)."""
    if not isinstance(expr, sp.Basic) or expr.is_Atom:
        return sp.Integer(0)
    # steps (sign, Heaviside) are flat almost everywhere: their DiracDelta derivatives drop
    return sp.Add(*[sp.Abs(sp.diff(expr, a).replace(sp.DiracDelta, lambda *_: sp.Integer(0)))
                    * sp.Abs(a) for a in expr.free_symbols])


def output_sensitivity(d: Any, out: Any, partials: list[Any], syms: list[Any]) -> Any:
    """How much ``d`` moves when the forward's output is off by one rounding: VJPs written
    with the saved output (sigmoid's ``out*(1-out)``, tanh's ``1-out**2``) see ``out``
    rounded, which acts like moving input ``a_j`` by ``|out| / |d out/d a_j|``. That ratio
    is capped where ``d out/d a_j`` vanishes (at 1/sqrt(eps))."""
    if not isinstance(d, sp.Basic) or d.is_Atom:
        return sp.Integer(0)
    cap = sp.Float(1.5e-8)
    terms = []
    for p, a in zip(partials, syms):
        dd = sp.Abs(sp.diff(d, a).replace(sp.DiracDelta, lambda *_: sp.Integer(0)))
        terms.append(dd / (sp.Abs(p) + cap * dd) * sp.Abs(out))
    return sp.Add(*terms)


def _dyadic(q: Any) -> bool:
    d = int(q.q)
    return d & (d - 1) == 0


def evaluation_memo(owner: Any) -> dict | None:
    """The memo of rule evaluations shared by everything that works on ``owner`` (a graph
    view: one point of one check, whose node checks and exact chain evaluate the same rules
    at the same values). It lives and dies with ``owner``, so nothing carries over to another
    check; entries are keyed by content (see ``_memo_key``), so no result depends on order."""
    if owner is None:
        return None
    memo = getattr(owner, "_rule_evaluations", None)
    if memo is None:
        memo = {}
        try:
            object.__setattr__(owner, "_rule_evaluations", memo)
        except (AttributeError, TypeError):
            return None
    return memo


def _memo_key(tag: str, rule: LocalRule, flat_inputs: Sequence[Any], *extra: Any) -> Any:
    """A memo key from the exact input values (their mpf tuples) and the precision, or None
    if an input is not a plain mpf. The rule enters by ``id``, but its entry keeps the rule
    itself and is used only if it is the same object (``_memo_get``): an id never outlives
    its object here."""
    vals = []
    for x in flat_inputs:
        if type(x) is not mpmath.mpf:
            return None
        vals.append(x._mpf_)
    return (tag, id(rule), mpmath.mp.prec, tuple(vals)) + extra


#: rules with more nonzero partials than this are evaluated afresh each time: their probes
#: would hold megabytes for the whole check
MEMO_PARTIALS = 10_000


def _memo_get(memo: dict | None, key: Any, rule: LocalRule) -> Any:
    if memo is None or key is None or len(rule.jac_index) > MEMO_PARTIALS:
        return None
    hit = memo.get(key)
    return hit[1] if hit is not None and hit[0] is rule else None


def _memo_put(memo: dict | None, key: Any, rule: LocalRule, value: Any) -> Any:
    if memo is not None and key is not None and len(rule.jac_index) <= MEMO_PARTIALS:
        memo[key] = (rule, value)
    return value


def evaluate_full(rule: LocalRule, flat_inputs: Sequence[Any], memo: dict | None = None
                  ) -> list:
    """``rule.full_fn()(*flat_inputs)`` (outputs, then partials), once per ``memo`` for the
    same exact inputs at the same precision. The list is shared: read it, never change it."""
    key = _memo_key("full", rule, flat_inputs)
    hit = _memo_get(memo, key, rule)
    if hit is not None:
        return hit
    return _memo_put(memo, key, rule, rule.full_fn()(*flat_inputs))


def vjp_with_bound(rule: LocalRule, flat_inputs: list, parts: list, cotangents: list,
                   in_sizes: dict[int, int], eps: float, probes: int = 3,
                   memo: dict | None = None, magnitudes: bool = True,
                   value: dict[int, list] | None = None
                   ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """J^T v of a non-elementwise rule (flat mpf arrays per differentiable input) and a
    bound on how far a correct float VJP may be from it.

    The bound has two parts: accumulation, ``eps * (terms + 1) * sum |v J|`` per entry, and
    the sensitivity to one rounding of every input, ``eps * sum_k |d(J^T v)/d a_k| |a_k|``.
    The second is measured, not derived: ``J^T v`` is re-evaluated at inputs scaled by
    ``1 + delta*s`` for random signs ``s`` (high precision, delta tiny), and the largest
    change, times sqrt(#inputs) to cover the sum of absolute values, is taken. Second
    derivatives in SymPy would cost minutes for a softmax over 100 values.

    The evaluations that do not depend on the cotangent (the partials at the moved inputs,
    the partials' rounding magnitudes) are kept in ``memo`` (``evaluation_memo``): the node
    check and the exact chain ask for them at the same inputs.

    ``probes=0`` and ``magnitudes=False`` leave out the sensitivity and the partials'
    rounding magnitudes: each term left out is >= 0, so the bound is a lower one.
    ``value``: J^T v as the caller chained it already (per input, a flat list of mpf summed
    over ``rule.jac_index`` in its order from 0, as ``chain`` below does): not chained again.
    """
    # plain lists: the same arithmetic in the same order as on arrays, without numpy's
    # per-element overhead (small rules are called a dozen times per check)
    flat_v = [np.asarray(c, dtype=object).reshape(-1).tolist() for c in cotangents]
    abs_v = [[abs(float(x)) for x in c] for c in flat_v]
    index, diff = rule.jac_index, rule.diff_inputs
    zero = mpmath.mpf(0)

    def chain(partials: list) -> dict[int, list]:
        out = {i: [zero] * in_sizes[i] for i in diff}
        for (k, j, i, m), p in zip(index, partials):
            o = out[i]
            o[m] = o[m] + flat_v[k][j] * p
        return out

    q0 = chain(parts) if value is None else value
    acc = {i: [0.0] * in_sizes[i] for i in diff}
    counts = {i: [0] * in_sizes[i] for i in diff}
    for (k, j, i, m), p in zip(index, parts):
        acc[i][m] += abs_v[k][j] * float(abs(p))
        counts[i][m] += 1
    bound = {i: [b * (eps * (c + 1)) for b, c in zip(acc[i], counts[i])] for i in diff}
    # the terms inside each partial (small rules): a partial p - 1 with p ~ 1 rounds
    # against 1, not against its tiny value
    mag = rule.partial_magnitude_fn() if magnitudes else None
    if mag is not None and flat_inputs:
        key = _memo_key("magnitude", rule, flat_inputs)
        pms = _memo_get(memo, key, rule)
        if pms is None:
            pms = _memo_put(memo, key, rule, [float(abs(pm)) for pm in mag(*flat_inputs)])
        for (k, j, i, m), pm in zip(index, pms):
            bound[i][m] += eps * abs_v[k][j] * pm
    result = {i: np.array(bound[i], dtype=float) for i in diff}
    # constant partials (a sum, a reshape) do not move with the inputs: every probe would
    # repeat q0 exactly, so its change is 0 (unless a cotangent is not finite: inf - inf)
    if probes and flat_inputs and index and not (rule.constant_partials() and all(
            mpmath.isfinite(x) for c in flat_v for x in c)):
        delta = mpmath.mpf(10) ** -(mpmath.mp.dps // 2)
        worst = {i: np.zeros(in_sizes[i]) for i in diff}
        for moved_parts in _probe_partials(rule, flat_inputs, delta, probes, memo):
            q = chain(moved_parts)
            for i in diff:
                d = np.abs(np.array([float((a - b) / delta) for a, b in zip(q[i], q0[i])],
                                    dtype=float))
                worst[i] = np.maximum(worst[i], d)
        root = math.sqrt(len(flat_inputs))
        for i in diff:
            result[i] += eps * root * worst[i]
    return {i: _object_array(q0[i]) for i in diff}, result


def _object_array(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _probe_partials(rule: LocalRule, flat_inputs: list, delta: Any, probes: int,
                    memo: dict | None) -> list[list]:
    """The partials at ``probes`` seeded random moves of the inputs by ``1 +- delta``."""
    key = _memo_key("probes", rule, flat_inputs, probes)
    hit = _memo_get(memo, key, rule)
    if hit is not None:
        return hit
    partials = rule.partials_fn()
    rng = np.random.default_rng(len(flat_inputs))
    # 1 + delta*s for s = +-1, formed once (the same numbers as per input)
    factor = {1: 1 + delta * 1, -1: 1 + delta * -1}
    out = []
    for _ in range(probes):
        signs = rng.choice((-1, 1), size=len(flat_inputs)).tolist()
        out.append(partials(*[x * factor[s] for x, s in zip(flat_inputs, signs)]))
    return _memo_put(memo, key, rule, out)


def _unevaluated(d: Any) -> bool:
    stack = [d]
    while stack:
        e = stack.pop()
        if type(e).__name__ in ("Derivative", "Subs"):
            return True
        stack.extend(e.args)
    return False


def _rational(d: Any) -> tuple[int, int] | None:
    if type(d).__name__ in ("Integer", "Rational", "Half", "One", "Zero", "NegativeOne"):
        q = Fraction(str(d))
        return q.numerator, q.denominator
    return None


_BACKEND = {"name": os.environ.get("VERIGRAD_SYMBOLIC_BACKEND", "auto")}


def set_backend(name: str) -> None:
    """Choose who differentiates mirrors: ``"sympy"`` (the reference), ``"symengine"``
    (the ``[fast]`` extra, ~100x faster on large rules) or ``"auto"`` (SymEngine when
    installed). Mirrors are always built in SymPy; only ``diff`` moves. The environment
    variable ``VERIGRAD_SYMBOLIC_BACKEND`` sets the default.

    >>> from verigrad.symbolic import set_backend
    >>> set_backend("sympy"); set_backend("auto")
    """
    if name not in ("sympy", "symengine", "auto"):
        raise ValueError(f"unknown symbolic backend {name!r}: use 'sympy', 'symengine' or 'auto'")
    if name == "symengine" and _import_symengine() is None:
        raise ImportError("the symengine backend needs the [fast] extra: "
                          "pip install 'verigrad[fast]'")
    _BACKEND["name"] = name
    _CACHE.clear()


def backend() -> str:
    """The backend in use: ``"sympy"`` or ``"symengine"``."""
    return "symengine" if _symengine() is not None else "sympy"


def _import_symengine() -> Any:
    try:
        import symengine
    except ImportError:
        return None
    return symengine


def _symengine() -> Any:
    return None if _BACKEND["name"] == "sympy" else _import_symengine()


def _opaque_functions() -> tuple:
    from symengine.lib import symengine_wrapper as w

    return (w.PyFunction, w.FunctionSymbol)


def _to_symengine(expr: Any) -> Any:
    """Convert a SymPy object (our own expressions; never text) to SymEngine."""
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expected a SymPy expression, got {type(expr).__name__}")
    from symengine.lib.symengine_wrapper import sympy2symengine

    return sympy2symengine(expr)


def _terms_by_symbol(expr: Any) -> dict[Any, list[Any]]:
    """For a sum, which terms hold each symbol (one pass instead of one per symbol)."""
    if not isinstance(expr, sp.Basic):
        return {}
    terms = expr.args if isinstance(expr, sp.Add) else (expr,)
    out: dict[Any, list[Any]] = {}
    for t in terms:
        for s in t.free_symbols:
            out.setdefault(s, []).append(t)
    return out


def _diff(expr: Any, s: Any, terms: list[Any], se: Any = None, memo: dict | None = None) -> Any:
    """``d expr / d s``, term by term over the terms that contain ``s`` (the same derivative:
    differentiation is linear; a sum of 16 products in a matmul entry no longer costs 16
    derivatives per symbol). Small terms go to SymPy; large ones (a softmax entry holds all
    100 inputs) to SymEngine when it is the backend (``memo`` keeps each term's conversion),
    with SymPy's answer where SymEngine leaves a derivative unevaluated (Max, Min)."""
    parts = terms if isinstance(expr, sp.Add) else [expr]
    out: list[Any] = []
    for t in parts:
        if se is not None:
            t_se = memo.get(t) if memo is not None else None
            if t_se is None:
                try:
                    t_se = _to_symengine(t)
                    # SymEngine wraps functions it does not know (codegen's log1p) and then
                    # differentiates them as constants: such terms stay in SymPy
                    if t_se.atoms(_opaque_functions()):
                        t_se = False
                except Exception:  # noqa: BLE001 - a function SymEngine does not know
                    t_se = False
                if memo is not None:
                    memo[t] = t_se
            if t_se is not False:
                d = t_se.diff(se.Symbol(s.name))
                if not _unevaluated(d):
                    out.append(d)
                    continue
        out.append(sp.diff(t, s))
    if len(out) == 1:
        return out[0]
    if any(not isinstance(d, sp.Basic) for d in out):
        return se.Add(*[d if not isinstance(d, sp.Basic) else _to_symengine(d) for d in out])
    return sp.Add(*out)


_CACHE: dict[Any, LocalRule] = {}


def _trace_signature(node: Node) -> Any:
    """A traced forward's structure (branches taken), part of its rule's key (None for a
    node with a mirror of its own)."""
    if not node.user_code or node.own_mirror() is not None:
        return None
    from .traced import Trace, trace_of

    t = trace_of(node)
    return t.signature if isinstance(t, Trace) and not t.problem else None
_CACHE_LIMIT = 512


def _symbols(prefix: str, shape: tuple, real: bool) -> np.ndarray:
    return _objects(shape, lambda idx: sp.Symbol(
        f"{prefix}_{'_'.join(map(str, idx))}" if idx else prefix, real=real))


def rule_for(node: Node, input_values: Sequence[Any], diff_inputs: Sequence[int],
             real: bool = True) -> LocalRule:
    """The (cached) local rule of ``node`` for inputs shaped like ``input_values``."""
    if getattr(node, "rule_key", None) is None:
        raise MirrorError(f"{node.name()} has no mirror")
    # the node protocol: op and parameters, or a Function class and its non-tensor arguments;
    # a traced forward's structure (branches taken) too
    ident: Any = (_freeze(node.rule_key(input_values)), _trace_signature(node))
    elementwise = node.elementwise
    shapes = tuple(None if v is None else np.shape(v) for v in input_values)
    key = (ident, shapes if not elementwise else tuple(s is None for s in shapes),
           tuple(diff_inputs), real, backend())
    rule = _CACHE.get(key)
    if rule is not None:
        return rule
    # registry ops (not user code) are the same in every process: kept on disk as well
    disk = None if node.user_code else rule_cache.key_text(key[0][0:1] + key[1:4], key[4])
    rule = _rule_from_disk(disk, real) if disk is not None else None
    if rule is not None:
        _remember(key, rule)
        return rule
    in_syms: list[Any] = []
    for i, (v, s) in enumerate(zip(input_values, shapes)):
        if s is None:
            in_syms.append(None)
        elif elementwise:
            in_syms.append(_symbols(f"a{i}", (), real))
        elif isinstance(v, np.ndarray) or not node.passes_values:
            in_syms.append(_symbols(f"a{i}", s, real))
        else:  # a non-tensor argument of a custom Function: passed through as a value
            in_syms.append(None)
    args: list[Any] = []
    for i, (v, syms) in enumerate(zip(input_values, in_syms)):
        if syms is not None:
            args.append(syms)
        elif node.passes_values:
            args.append(v)
        else:
            args.append(None)
    outs = list(apply_mirror(node, args))
    rule = LocalRule(elementwise=elementwise, in_syms=in_syms, outs=outs,
                     diff_inputs=tuple(i for i in diff_inputs if in_syms[i] is not None),
                     uses_out=node.uses_out)
    if disk is not None and rule_cache.cache_dir() is not None:
        rule._store = _disk_writer(disk)
        rule._persist()
    _remember(key, rule)
    return rule


def _remember(key: Any, rule: LocalRule) -> None:
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = rule


# --- the on-disk copy of registry rules (symbolic/rule_cache.py) ---------------------------

def _texts(exprs: Any, real: dict | None = None) -> list[str] | None:
    """The texts of one rule part, or None when one does not survive the round trip or all
    of them together exceed ``rule_cache.MAX_RECORD`` characters."""
    out, left = [], rule_cache.MAX_RECORD
    for e in exprs:
        if real is not None and not isinstance(e, sp.Basic) and hasattr(e, "_sympy_"):
            e = e._sympy_().xreplace(real)  # SymEngine's symbols carry no assumptions
        t = rule_cache.dumps(e, budget=left)
        if t is None:
            return None
        out.append(t)
        left -= len(t)
    return out


def _disk_writer(disk: str) -> Callable[[LocalRule], None]:
    """Writes a rule's record as it grows (mirror, then partials, then magnitudes); each
    part is turned into text once. A part that does not survive the text round trip is
    left out (the next process derives it)."""
    done: dict[str, Any] = {}

    def store(rule: LocalRule) -> None:
        if "outs" not in done:
            outs = [_texts(o.flat) for o in rule.outs]
            if any(t is None for t in outs):
                rule._store = None  # e.g. a mirror of plain numbers: derived every time
                return
            done["outs"] = [[list(o.shape), t] for o, t in zip(rule.outs, outs)]
        if rule._derived and "partials" not in done:
            real = {sp.Symbol(t.name): t for t in rule.flat_syms}
            texts = _texts(rule._partials, real)
            done["partials"] = None if texts is None else {
                "index": [list(ix) for ix in rule.jac_index], "exprs": texts,
                "symengine": [not isinstance(d, sp.Basic) for d in rule._partials]}
        if rule._magnitude_exprs is not None and "magnitude" not in done:
            done["magnitude"] = _texts(rule._magnitude_exprs)
        if rule._partial_magnitude_exprs is not None and "partial_magnitude" not in done:
            pm = rule._partial_magnitude_exprs
            done["partial_magnitude"] = False if pm is False else _texts(pm)
        rule_cache.save(disk, {
            "elementwise": rule.elementwise, "uses_out": rule.uses_out,
            "diff_inputs": list(rule.diff_inputs),
            "in_syms": [None if a is None else list(a.shape) for a in rule.in_syms],
            **{k: v for k, v in done.items() if v is not None}})

    return store


def _rule_from_disk(disk: str, real: bool) -> LocalRule | None:
    """The rule stored under ``disk``, rebuilt (None on a miss or an unreadable record)."""
    rec = rule_cache.load(disk)
    if rec is None or "outs" not in rec:
        return None
    try:
        in_syms = [None if s is None else _symbols(f"a{i}", tuple(s), real)
                   for i, s in enumerate(rec["in_syms"])]
        outs = []
        for shape, texts in rec["outs"]:
            arr = np.empty(len(texts), dtype=object)
            arr[:] = [rule_cache.loads(t) for t in texts]
            outs.append(arr.reshape(tuple(shape)))
        rule = LocalRule(elementwise=bool(rec["elementwise"]), in_syms=in_syms, outs=outs,
                         diff_inputs=tuple(int(i) for i in rec["diff_inputs"]),
                         uses_out=bool(rec["uses_out"]))
        parts = rec.get("partials")
        if parts is not None:
            exprs = [rule_cache.loads(t) for t in parts["exprs"]]
            if backend() == "symengine":  # as derived: SymEngine's where it answered
                exprs = [_to_symengine(e) if se else e
                         for e, se in zip(exprs, parts["symengine"])]
            rule._partials = exprs
            rule.jac_index = [tuple(int(v) for v in ix) for ix in parts["index"]]
            rule._derived = True
        if rec.get("magnitude") is not None:
            rule._magnitude_exprs = [rule_cache.loads(t) for t in rec["magnitude"]]
        pm = rec.get("partial_magnitude")
        if pm is not None:
            rule._partial_magnitude_exprs = False if pm is False else \
                [rule_cache.loads(t) for t in pm]
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, SyntaxError,
            RecursionError):
        return None  # corrupt or from another layout: derived again and rewritten
    writer = _disk_writer(disk)
    rule._store = writer
    return rule


# the node layer cannot import this one: a custom Function node's mirror comes from here
FunctionCtx.mirror_of = _function_mirror
