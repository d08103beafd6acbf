"""Which graphs the complex step may differentiate: only holomorphic ones. ``abs``, ``relu``,
``max``, comparisons and the like are not: on complex inputs they drop the imaginary part
(``|30 + ih| = 30``) and the complex step then reports a confident, wrong slope. What is
holomorphic is read from each node's mirror, so no op list is kept here.

>>> import verigrad as vg
>>> x = vg.tensor([1.0, 2.0], requires_grad=True)
>>> non_holomorphic(GraphView.of((vg.exp(x) * x).sum())), non_holomorphic(GraphView.of(vg.abs(x).sum()))
('', 'AbsBackward0')
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._lazy import sp
from ..symbolic.graph import GraphView
from ..symbolic.local import MirrorError, _freeze, rule_for
from ..symbolic.traced import trace_of
from .local import RULE_COST_CAP, rule_cost

__all__ = ["non_holomorphic"]


def _not_analytic() -> tuple:
    return (sp.Abs, sp.Max, sp.Min, sp.Heaviside, sp.sign, sp.Piecewise, sp.floor, sp.ceiling,
            sp.frac, sp.re, sp.im, sp.conjugate, sp.arg, sp.Mod, sp.core.relational.Relational)


def non_holomorphic(view: GraphView) -> str:
    """The grad_fn name of the first node whose mirror is not holomorphic ("" if none is)."""
    bad = _not_analytic()
    # a built-in node's answer depends on its op, parameters and input shapes only: one
    # look per kind (a 1e5-op chain has two), not a rule lookup and a traversal per node
    seen: set = set()
    for node in view.nodes:
        vals = view.input_values(node)
        key = None
        if not node.user_code:
            try:
                key = (_freeze(node.rule_key(vals)), tuple(np.shape(v) for v in vals))
                if key in seen:
                    continue
            except TypeError:  # an unhashable parameter: looked at on its own
                key = None
        if rule_cost(node, vals) > RULE_COST_CAP:
            return node.name()  # too large to read: the real differences decide
        try:
            rule = rule_for(node, vals, [])
        except MirrorError:
            if not node.user_code:
                return node.name()
            # a custom forward without a mirror: read what its trace ran, if it traced at all
            t = trace_of(node)
            if not isinstance(t, str) and t.view is not None and non_holomorphic(t.view):
                return node.name()
            continue
        if any(_has(e, bad) for o in rule.outs for e in o.flat):
            return node.name()
        if key is not None:
            seen.add(key)
    return ""


def _has(e: Any, bad: tuple) -> bool:
    return isinstance(e, sp.Basic) and any(isinstance(a, bad) for a in sp.preorder_traversal(e))
