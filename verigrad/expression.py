"""Expression strings to tape graphs, through the safe parser (never ``eval``)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Mapping

import numpy as np

from . import ops
from .parse import Expression, ExpressionError, parse
from .registry import FACES, on_change
from .tensor import Tensor, tensor

__all__ = ["FUNCTIONS", "parse_expression", "build_graph"]

_TABLE: dict[str, Any] = {}


@on_change
def _forget() -> None:
    _TABLE.clear()


class _Functions(Mapping):
    """The functions an expression may call, by name (the parser refuses any other): the
    registry's faces on the ``expression`` surface, each with its expression form (``max(a,
    b)`` is the elementwise maximum there), always as the registry is now."""

    def _table(self) -> dict[str, Any]:
        if not _TABLE:
            for face in FACES.values():
                if face.on("expression"):
                    form = face.expression
                    _TABLE[face.name] = form if callable(form) else ops.callable_of(face)
        return _TABLE

    def __getitem__(self, name: str) -> Any:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"<expression functions: {', '.join(self)}>"


#: the functions an expression may call, by name (the parser refuses any other)
FUNCTIONS: Mapping[str, Any] = _Functions()


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
