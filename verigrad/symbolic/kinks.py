"""Non-differentiable points near the evaluation point, found in the mirror.

Every node's local mirror is scanned for SymPy functions that switch (``Abs``, ``Max``,
``Min``, ``Heaviside``, ``sign``, ``Piecewise`` conditions) and for domain edges (``log`` and
fractional or negative powers at 0, poles of ``tan``, the branch cut of ``atan2``): a table
keyed by SymPy function class (:func:`switches`). Each gives a switching function ``s`` of
the node's inputs; its value at the high-precision forward point and its gradient give the
distance ``|s| / |grad s|`` to the kink. Nothing here knows about particular ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import mpmath
import numpy as np

from .._lazy import sp
from ..tensor import Tensor
from .exact import ExactGraph, to_mp
from .local import LocalRule
from .vm import Program

__all__ = ["Kink", "find_kinks", "one_sided_derivatives", "register_switch", "switches"]


@dataclass
class Kink:
    """A switching point of one node-output element near the evaluation point."""

    node: Any                 # the grad_fn
    path: str                 # "SumBackward0 <- ReluBackward0"
    element: tuple            # index into the node's output
    function: str             # the SymPy function: Abs, Max, Heaviside, Piecewise, log, pow, tan
    kind: str                 # "kink" (derivative jumps) or "singularity" (domain edge / pole)
    switch: float             # value of the switching function
    distance: float           # |s| / |grad s| in the node's input space
    at_point: bool            # the point sits on it

    def describe(self) -> str:
        where = f"{self.node.name()}" + (f"[{', '.join(map(str, self.element))}]"
                                         if self.element else "")
        what = "at" if self.at_point else f"{self.distance:.3g} from"
        return f"{where}: {what} a {self.kind} of {self.function}"


@dataclass
class _Switch:
    function: str
    kind: str
    exprs: list[Any]          # one switching function, or a Max/Min's arguments


def _switches(rule: LocalRule) -> list[tuple[int, _Switch]]:
    """(flat output index, switch) pairs for a rule, found by walking its expressions."""
    found = []
    seen: set = set()  # a softmax's 100 outputs share one denominator: one switch
    flat = [e for o in rule.outs for e in o.flat]
    for j, expr in enumerate(flat):
        if not isinstance(expr, sp.Basic):
            continue
        for sub in sp.preorder_traversal(expr):
            if sub in seen:
                continue
            sw = _switch_of(sub)
            if sw is not None:
                seen.add(sub)
                found.append((j, sw))
    return found


def _switch_of(e: Any) -> _Switch | None:
    """The switch of one subexpression: the entry of its SymPy class (or a base class) in
    :func:`switches`."""
    table = switches()
    for cls in type(e).__mro__:
        describe = table.get(cls)
        if describe is not None:
            return describe(e)
    return None


def _pow_switch(e: Any) -> _Switch | None:
    base, exp = e.args
    # x**-1, x**0.5 and x**y (its derivative has log(x)) are singular where x = 0
    if base.free_symbols and (not exp.is_number or not exp.is_integer or exp.is_negative):
        return _Switch("pow", "singularity", [base])
    return None


def _piecewise_switch(e: Any) -> _Switch | None:
    rels = [r for _, c in e.args for r in sp.preorder_traversal(c)
            if isinstance(r, sp.core.relational.Relational)]
    return _Switch("Piecewise", "kink", [r.lhs - r.rhs for r in rels]) if rels else None


def _atan2_switch(e: Any) -> _Switch:
    # SymPy's atan2(y, x) jumps by 2 pi across its branch cut y = 0, x < 0: the switch is y
    # there and constant (never near zero, no gradient) elsewhere
    y, x = e.args
    return _Switch("atan2", "singularity", [sp.Piecewise((y, x < 0), (1, True))])


_SWITCHES: dict[type, Callable[[Any], _Switch | None]] = {}


def switches() -> dict[type, Callable[[Any], _Switch | None]]:
    """Where each SymPy function stops being smooth: its class -> a function of one of its
    expressions giving the switch (the function, its kind and the switching expressions
    whose zeros are the kinks, domain edges, poles or branch cuts), or None where that
    expression is smooth (``x**2``). A mirror built from a SymPy function missing here is
    taken as smooth; :func:`register_switch` adds one.

    >>> import sympy as sp
    >>> x = sp.Symbol("x", real=True)
    >>> _switch_of(sp.Abs(x - 1)).exprs, _switch_of(sp.sqrt(x)).kind, _switch_of(x**2)
    ([x - 1], 'singularity', None)
    """
    if not _SWITCHES:
        from sympy.codegen.cfunctions import log1p  # the mirrors' log1p (sympy has none)

        def on_arg(name: str, kind: str, edge: Callable[[Any], Any] = lambda a: a
                   ) -> Callable[[Any], _Switch]:
            return lambda e: _Switch(name, kind, [edge(e.args[0])])

        _SWITCHES.update({
            sp.Abs: on_arg("Abs", "kink"), sp.sign: on_arg("sign", "kink"),
            sp.Heaviside: on_arg("Heaviside", "kink"),
            sp.Max: lambda e: _Switch("Max", "kink", list(e.args)),
            sp.Min: lambda e: _Switch("Min", "kink", list(e.args)),
            sp.Piecewise: _piecewise_switch,
            sp.log: on_arg("log", "singularity"),
            log1p: on_arg("log1p", "singularity", lambda a: 1 + a),
            sp.Pow: _pow_switch,
            sp.tan: on_arg("tan", "singularity", sp.cos),
            # derivatives infinite at the domain's edges
            sp.asin: on_arg("asin", "singularity", lambda a: (1 - a) * (1 + a)),
            sp.acos: on_arg("acos", "singularity", lambda a: (1 - a) * (1 + a)),
            sp.atanh: on_arg("atanh", "singularity", lambda a: (1 - a) * (1 + a)),
            sp.acosh: on_arg("acosh", "singularity", lambda a: a - 1),
            sp.atan2: _atan2_switch,
        })
    return _SWITCHES


def register_switch(function: type, describe: Callable[[Any], Any]) -> None:
    """Declare where a SymPy function a mirror uses is not smooth (see :func:`switches`):
    ``describe(expr)`` returns ``(kind, [switching expressions])`` with kind ``"kink"``
    (the derivative jumps) or ``"singularity"`` (a domain edge, pole or branch cut), or None
    where ``expr`` is smooth.

    >>> import sympy as sp
    >>> class ramp(sp.Function): pass
    >>> register_switch(ramp, lambda e: ("kink", [e.args[0]]))
    >>> _switch_of(ramp(sp.Symbol("t") - 2)).exprs
    [t - 2]
    >>> del _SWITCHES[ramp]
    """
    name = function.__name__

    def switch(e: Any) -> _Switch | None:
        found = describe(e)
        return None if found is None else _Switch(name, found[0], list(found[1]))

    switches()[function] = switch


class _Evaluator:
    """Switch values and gradients for one rule, lambdified once."""

    def __init__(self, rule: LocalRule, sw: _Switch) -> None:
        syms = [s for i in rule.diff_inputs for s in rule.in_syms[i].flat]
        exprs = []
        for s in sw.exprs:
            free = s.free_symbols
            exprs.append(s)
            exprs.extend(sp.diff(s, v) if v in free else 0 for v in syms)
        self.width = 1 + len(syms)
        self.fn: Callable = Program(rule.flat_syms, exprs)


def _evaluators(rule: LocalRule) -> list:
    """(output element, switch, evaluator) of each switch of ``rule``, made once per rule."""
    switches = getattr(rule, "_switch_cache", None)
    if switches is None:
        switches = rule._switch_cache = [(j, sw, _Evaluator(rule, sw))
                                         for j, sw in _switches(rule)]
    return switches


def rule_switches(rule: LocalRule, sym_args: list, radius: float, dps: int
                  ) -> list[tuple[tuple, str, str, float, float, bool]]:
    """Switches of one rule near a point given as high-precision input arrays:
    (output element, function, kind, switch value, distance, at the point)."""
    switches = _evaluators(rule)
    if not switches:
        return []
    sym_args = [np.asarray(a, dtype=object) for a in sym_args]
    if rule.elementwise:
        arrays = np.broadcast_arrays(*sym_args)
        points = [(idx, [a[idx] for a in arrays]) for idx in np.ndindex(arrays[0].shape)]
    else:
        points = [((), [v for a in sym_args for v in a.reshape(-1)])]
    tiny = mpmath.mpf(10) ** (-(dps - 6))
    found = []
    with mpmath.workdps(dps):
        for j, sw, ev in switches:
            for idx, flat in points:
                res = ev.fn(*flat)
                scale = 1 + max((abs(v) for v in flat), default=0)
                dist, s_val = _distance(res, ev.width, sw.function)
                if dist is None or dist > radius * scale:
                    continue
                element = idx if rule.elementwise else _unflat(rule, j)
                found.append((element, sw.function, sw.kind, float(s_val), float(dist),
                              bool(dist <= tiny * scale)))
    return found


def find_kinks(graph: ExactGraph, radius: float = 1e-6) -> list[Kink]:
    """Switches within ``radius`` (relative to the size of the node's inputs) of the point.

    >>> import verigrad as vg
    >>> from verigrad.symbolic import ExactGraph
    >>> from verigrad.symbolic.kinks import find_kinks
    >>> x = vg.tensor([0.0, 2.0], requires_grad=True, dtype=vg.float64)
    >>> [k.describe() for k in find_kinks(ExactGraph(vg.relu(x).sum()))]
    ['ReluBackward0[0]: at a kink of Max']
    """
    nodes = [n for n in graph.view.nodes if graph.rule(n).diff_inputs]
    if not any(_evaluators(graph.rule(n)) for n in nodes):
        return []   # no switch anywhere: the high-precision forward is not needed
    values, _ = graph.forward()
    kinks = []
    for node in nodes:
        rule = graph.rule(node)
        args = graph._inputs_mp(node, values, graph._leaf_mp)
        sym_args = [a for a, s in zip(args, rule.in_syms) if s is not None]
        found = rule_switches(rule, sym_args, radius, graph.dps)
        if found:
            path = " <- ".join(n.name() for n in graph.view.path_to_output(node))
            kinks += [Kink(node, path, *f) for f in found]
    return kinks


def _unflat(rule: LocalRule, j: int) -> tuple:
    shape = rule.outs[0].shape
    return tuple(int(i) for i in np.unravel_index(j, shape)) if shape else ()


def _distance(res: list, width: int, function: str) -> tuple[Any, Any]:
    """Distance to the nearest switch among the values in ``res``."""
    groups = [res[i:i + width] for i in range(0, len(res), width)]
    if function in ("Max", "Min"):
        # the kink is where the two leading arguments tie
        vals = [g[0] for g in groups]
        order = sorted(range(len(vals)), key=lambda i: vals[i], reverse=function == "Max")
        if len(order) < 2:
            return None, None
        a, b = groups[order[0]], groups[order[1]]
        s = a[0] - b[0]
        grad = [x - y for x, y in zip(a[1:], b[1:])]
        norm = mpmath.sqrt(sum(g * g for g in grad))
        return (abs(s) / norm if norm else None), s
    best = (None, None)
    for g in groups:
        s = g[0]
        norm = mpmath.sqrt(sum(d * d for d in g[1:]))
        if not norm:
            continue
        d = abs(s) / norm
        if best[0] is None or d < best[0]:
            best = (d, s)
    return best


def one_sided_derivatives(graph: ExactGraph, leaf: Tensor, index: tuple,
                          h: float | None = None) -> tuple[float, float]:
    """Left and right derivatives of a scalar output along one leaf coordinate, from the
    high-precision forward (Richardson over steps h and h/2, so the error is O(h^2))."""
    h = mpmath.mpf(h) if h is not None else mpmath.mpf(10) ** (-(graph.dps // 3))
    base = to_mp(leaf._data)
    with mpmath.workdps(graph.dps):
        f0 = graph.value()[()]

        def at(delta: Any) -> Any:
            v = base.copy()
            v[index] = v[index] + delta
            return graph.value({leaf: v})[()]

        size = [abs(f0)]

        def one_side(sign: int) -> Any:
            f1, f2 = at(sign * h), at(sign * h / 2)
            size.extend((abs(f1), abs(f2)))
            d1 = (f1 - f0) / (sign * h)
            d2 = (f2 - f0) / (sign * h / 2)
            return 2 * d2 - d1

        left, right = one_side(-1), one_side(1)
        # each difference quotient carries the forward's rounding at this precision over h:
        # sides closer than that are one derivative (relu(x)*x at 0: 0 and -2e-21)
        noise = 1000 * mpmath.mpf(10) ** (-graph.dps) * max(size) / h
        if abs(left - right) <= noise:
            right = left
        return float(left), float(right)
