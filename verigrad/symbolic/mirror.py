"""``vg.symbolic`` and ``vg.symbolic_grad``: whole-graph SymPy expressions over named leaves."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._lazy import sp
from ..tensor import Tensor
from .graph import GraphView
from .local import apply_mirror

__all__ = ["symbolic", "symbolic_grad", "leaf_symbols", "SizeCapExceeded", "to_sympy_number"]

#: whole-graph expressions larger than this many tree nodes are refused (reports say so)
DEFAULT_SIZE_CAP = 20_000


class SizeCapExceeded(ValueError):
    """The closed-form expression would be larger than the cap."""


def to_sympy_number(v: Any) -> Any:
    """An exact SymPy number for a float/int/bool (integers print as integers)."""
    if isinstance(v, (bool, np.bool_)):
        return sp.true if v else sp.false
    if isinstance(v, (int, np.integer)):
        return sp.Integer(int(v))
    v = float(v)
    if v.is_integer():
        return sp.Integer(int(v))
    return sp.Float(v)  # the exact binary value, 53 bits


def _const(value: Any) -> Any:
    if value is None:
        return None
    arr = np.asarray(value)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = to_sympy_number(arr[idx])
    return out


def _names(leaves: Sequence[Tensor]) -> list[str]:
    """Leaf names: ``name=`` if given (made unique), else x0, x1, ... avoiding taken names."""
    taken = {t.name for t in leaves if t.name}
    names, used, auto = [], set(), 0
    for t in leaves:
        if t.name:
            base, n = t.name, t.name
            k = 2
            while n in used:
                n = f"{base}_{k}"
                k += 1
        else:
            while f"x{auto}" in taken or f"x{auto}" in used:
                auto += 1
            n = f"x{auto}"
            auto += 1
        used.add(n)
        names.append(n)
    return names


def leaf_symbols(leaves: Sequence[Tensor]) -> dict[int, np.ndarray]:
    """One real SymPy symbol per element: ``x`` for a 0-d leaf, ``W[0, 1]`` for arrays."""
    out = {}
    for t, name in zip(leaves, _names(leaves)):
        real = t._data.dtype.kind != "c"
        arr = np.empty(t.shape, dtype=object)
        for idx in np.ndindex(t.shape):
            label = name if not idx else f"{name}[{', '.join(map(str, idx))}]"
            arr[idx] = sp.Symbol(label, real=real) if real else sp.Symbol(label)
        out[id(t)] = arr
    return out


def _replay(view: GraphView, syms: dict[int, np.ndarray], cap: int | None) -> dict:
    values: dict = {}
    for node in view.nodes:
        args = []
        for s in view.sources[node]:
            if s.kind == "node":
                args.append(values[(s.node, s.nr)])
            elif s.kind == "leaf":
                args.append(syms[id(s.leaf)])
            elif hasattr(node, "_forward_cls") and not isinstance(s.value, np.ndarray):
                args.append(s.value)  # non-tensor argument of a custom Function
            else:
                args.append(_const(s.value))
        for nr, o in enumerate(apply_mirror(node, args)):
            values[(node, nr)] = o
        if cap is not None:
            size = sum(_size(e) for o in apply_outs(values, node) for e in o.flat)
            if size > cap:
                raise SizeCapExceeded(
                    f"the closed-form expression passed {cap} nodes at {node.name()}; exact "
                    f"numbers are still available (vg.check uses them), only the printed "
                    f"formula is skipped")
    return values


def apply_outs(values: dict, node: Any) -> list[np.ndarray]:
    return [v for (n, _), v in values.items() if n is node]


def _size(expr: Any) -> int:
    return sum(1 for _ in sp.preorder_traversal(expr)) if isinstance(expr, sp.Basic) else 1


def _to_sympy(arr: np.ndarray) -> Any:
    if arr.ndim == 0:
        v = arr[()]
        return v if isinstance(v, sp.Basic) else to_sympy_number(v)
    return sp.Array(arr.tolist(), arr.shape)


def symbolic(t: Tensor, cap: int | None = DEFAULT_SIZE_CAP) -> Any:
    """The SymPy expression of a tensor's graph: a scalar ``Expr`` or an ``Array``.

    >>> import verigrad as vg
    >>> x = vg.tensor(2.0, requires_grad=True, name="x")
    >>> w = vg.tensor(3.0, requires_grad=True, name="w")
    >>> vg.symbolic(vg.sin(x) * vg.exp(w * x))
    exp(w*x)*sin(x)
    """
    view = GraphView.of(t)
    syms = leaf_symbols(view.leaves)
    if t._grad_fn is None:
        return _to_sympy(syms[id(t)] if id(t) in syms else _const(t._data))
    values = _replay(view, syms, cap)
    return _to_sympy(values[(t._grad_fn, t._output_nr)])


def symbolic_grad(output: Tensor, inputs: Tensor | Sequence[Tensor],
                  cap: int | None = DEFAULT_SIZE_CAP) -> Any:
    """Closed-form derivatives of a scalar output, from ``sympy.diff`` of its mirror.

    Returns one entry per input: an ``Expr`` for a 0-d input, else an ``Array`` of its shape
    (a single input gives its entry directly).

    >>> import verigrad as vg
    >>> x = vg.tensor(2.0, requires_grad=True, name="x")
    >>> w = vg.tensor(3.0, requires_grad=True, name="w")
    >>> b = vg.tensor(1.0, requires_grad=True, name="b")
    >>> vg.symbolic_grad(w * x + b, [x, w, b])
    [w, x, 1]
    """
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if output.numel() != 1:
        raise ValueError(f"symbolic_grad needs a scalar output, got shape {tuple(output.shape)}; "
                         f"reduce it first (e.g. .sum())")
    view = GraphView.of(output)
    syms = leaf_symbols(view.leaves)
    if output._grad_fn is None:
        expr_arr = syms.get(id(output), _const(output._data))
    else:
        expr_arr = _replay(view, syms, cap)[(output._grad_fn, output._output_nr)]
    expr = expr_arr.reshape(())[()]
    result = []
    for t in inputs:
        if id(t) not in syms:
            raise ValueError("every input must be a leaf tensor with requires_grad=True that the "
                             "output depends on (or a leaf of its graph)")
        d = np.empty(t.shape, dtype=object)
        for idx in np.ndindex(t.shape):
            d[idx] = sp.diff(expr, syms[id(t)][idx])
        result.append(_to_sympy(d))
    return result[0] if single else result
