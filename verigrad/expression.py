"""Expression strings to tape graphs, through the safe parser (never ``eval``)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import ops
from .parse import DEFAULT_FUNCTIONS, Expression, ExpressionError, parse
from .tensor import Tensor, tensor

__all__ = ["FUNCTIONS", "parse_expression", "build_graph"]


def _extremum(reduce: Any, pairwise: Any) -> Any:
    # in an expression, max(a, b) means the elementwise maximum; max(x) the largest element
    def fn(x: Any, other: Any = None, dim: Any = None, keepdim: bool = False) -> Any:
        if other is not None:
            return pairwise(x, other)
        if dim is not None:
            return reduce(x, dim, keepdim).values
        return reduce(x)

    return fn


#: the functions an expression may call, by name (the parser refuses any other)
FUNCTIONS: dict[str, Any] = {name: getattr(ops, name) for name in DEFAULT_FUNCTIONS
                             if name not in ("max", "min")}
FUNCTIONS["max"] = _extremum(ops.max, ops.maximum)
FUNCTIONS["min"] = _extremum(ops.min, ops.minimum)


def parse_expression(text: str | Expression) -> Expression:
    """Parse and validate an expression (see :mod:`verigrad.parse` for what is allowed).

    >>> import verigrad as vg
    >>> vg.parse_expression("sin(x)*exp(w*x) + b").variables
    ('x', 'w', 'b')
    """
    return parse(text, functions=FUNCTIONS.keys())


def build_graph(expr: str | Expression, values: Mapping[str, Any], dtype: Any = None,
                requires_grad: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """Record an expression on the tape over named leaves made from ``values``.

    Returns the output and the leaves by name (``name=`` set, so the mirror uses them).

    >>> import verigrad as vg
    >>> y, leaves = vg.build_graph("w*x + b", {"x": 2.0, "w": 3.0, "b": 1.0})
    >>> y.backward(); [leaves[n].grad.item() for n in "xwb"]
    [3.0, 2.0, 1.0]
    """
    expr = parse_expression(expr)
    extra = sorted(set(values) - set(expr.variables))
    if extra:
        raise ExpressionError(f"values given for {', '.join(map(repr, extra))}, which the "
                              f"expression does not use (it uses {', '.join(expr.variables)})",
                              expr.text, 0, len(expr.text))
    leaves = {}
    for name in expr.variables:
        if name not in values:
            continue  # build() reports every missing name with a caret
        v = values[name]
        if isinstance(v, Tensor):
            t = v.detach()
            t = tensor(t, dtype=dtype) if dtype is not None else t
        else:
            arr = np.asarray(v)
            if arr.dtype == object or arr.dtype.kind not in "biuf":
                raise ExpressionError(f"value of {name!r} must be numbers, got {v!r}",
                                      expr.text, 0, 0)
            t = tensor(arr.astype(np.float64) if dtype is None else arr, dtype=dtype)
        t.requires_grad_(requires_grad)
        t.name = name
        leaves[name] = t
    out = expr.build(leaves, FUNCTIONS)
    if not isinstance(out, Tensor):
        raise ExpressionError("the expression does not depend on any variable", expr.text, 0,
                              len(expr.text))
    return out, leaves
