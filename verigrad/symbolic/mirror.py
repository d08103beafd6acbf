"""``vg.symbolic`` and ``vg.symbolic_grad``: whole-graph SymPy expressions over named leaves."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._lazy import sp
from ..tensor import Tensor
from .graph import GraphView
from .local import apply_mirror

__all__ = ["symbolic", "symbolic_grad", "leaf_symbols", "SizeCapExceeded", "to_sympy_number",
           "size_and_depth", "closed_forms", "DEFAULT_DEPTH_CAP"]

#: whole-graph expressions larger than this many tree nodes are refused (reports say so)
DEFAULT_SIZE_CAP = 20_000
#: ... and so are expressions nested deeper than this: SymPy's printers and ``diff`` recurse
#: about 7 Python frames per level, so deeper trees hit Python's recursion limit (1000)
DEFAULT_DEPTH_CAP = 100


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


def _replay(view: GraphView, syms: dict[int, np.ndarray], cap: int | None,
            depth_cap: int | None = DEFAULT_DEPTH_CAP) -> dict:
    values: dict = {}
    stats = _Stats()
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
        try:
            outs = apply_mirror(node, args)
        except RecursionError:
            raise SizeCapExceeded(_too_deep(node)) from None
        size = depth = 0
        for nr, o in enumerate(outs):
            values[(node, nr)] = o
            for e in np.asarray(o, dtype=object).flat:
                n, d = stats.of(e)
                size, depth = size + n, max(depth, d)
        if cap is not None and size > cap:
            raise SizeCapExceeded(
                f"closed form omitted: {size} nodes at {node.name()}, the expression passed "
                f"{cap} nodes; exact numbers are still available (vg.check uses them), only "
                f"the printed formula is skipped")
        if depth_cap and depth > depth_cap:
            raise SizeCapExceeded(
                f"closed form omitted: {size} nodes nested {depth} deep at {node.name()}, "
                f"deeper than {depth_cap} (SymPy's printing and differentiation recurse once "
                f"per level); exact numbers are still available (vg.check uses them), only "
                f"the printed formula is skipped")
    return values


def replay_outputs(view: GraphView | None, table: dict[int, np.ndarray],
                   tensors: Sequence[Tensor]) -> list[np.ndarray]:
    """The SymPy object arrays of ``tensors`` of a recorded graph whose leaves ``table``
    sets (``id(leaf)`` -> array); a tensor off the graph is a leaf or a constant."""
    values = _replay(view, table, None) if view is not None else {}
    return [values[(t._grad_fn, t._output_nr)] if t._grad_fn is not None else
            table[id(t)] if id(t) in table else _const(t._data) for t in tensors]


def _too_deep(node: Any) -> str:
    return (f"closed form omitted: the expression at {node.name()} is nested too deep for "
            f"SymPy (RecursionError); exact numbers are still available (vg.check uses "
            f"them), only the printed formula is skipped")


class _Stats:
    """Tree size and depth of SymPy expressions, memoized over the shared DAG and computed
    without recursion (SymPy's own traversals recurse once per level)."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[int, int]] = {}
        self._keep: list = []  # keeps memoized objects alive, so their ids stay theirs

    def of(self, expr: Any) -> tuple[int, int]:
        memo = self._memo
        if not isinstance(expr, sp.Basic):
            return 1, 1
        if id(expr) in memo:
            return memo[id(expr)]
        stack = [(expr, False)]
        while stack:
            e, ready = stack.pop()
            if id(e) in memo:
                continue
            args = e.args
            if not ready and args:
                stack.append((e, True))
                stack.extend((a, False) for a in args if id(a) not in memo)
                continue
            n, d = 1, 0
            for a in args:
                an, ad = memo[id(a)]
                n, d = n + an, max(d, ad)
            memo[id(e)] = (n, d + 1)
            self._keep.append(e)
        return memo[id(expr)]


def size_and_depth(expr: Any) -> tuple[int, int]:
    """(tree nodes, nesting depth) of a SymPy expression, without recursion.

    >>> import sympy
    >>> size_and_depth(sympy.sin(sympy.Symbol("x")) + 1)
    (4, 3)
    """
    if isinstance(expr, (sp.Array, np.ndarray)):
        stats, n, d = _Stats(), 0, 0
        for e in (expr.flat if isinstance(expr, np.ndarray) else expr):
            en, ed = stats.of(e)
            n, d = n + en, max(d, ed)
        return n, d
    return _Stats().of(expr)


def _to_sympy(arr: np.ndarray) -> Any:
    if arr.ndim == 0:
        v = arr[()]
        return v if isinstance(v, sp.Basic) else to_sympy_number(v)
    return sp.Array(arr.tolist(), arr.shape)


def symbolic(t: Tensor, cap: int | None = DEFAULT_SIZE_CAP,
             depth_cap: int | None = DEFAULT_DEPTH_CAP) -> Any:
    """The SymPy expression of a tensor's graph: a scalar ``Expr`` or an ``Array``.

    Expressions over ``cap`` tree nodes or nested deeper than ``depth_cap`` raise
    :class:`SizeCapExceeded` (``0`` or ``None`` lifts a cap; SymPy itself then may still
    give up on deep trees, which is reported the same way, never as a RecursionError).

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
    values = _replay(view, syms, cap, depth_cap)
    try:
        return _to_sympy(values[(t._grad_fn, t._output_nr)])
    except RecursionError:
        raise SizeCapExceeded(_too_deep(t._grad_fn)) from None


def symbolic_grad(output: Tensor, inputs: Tensor | Sequence[Tensor],
                  cap: int | None = DEFAULT_SIZE_CAP,
                  depth_cap: int | None = DEFAULT_DEPTH_CAP) -> Any:
    """Closed-form derivatives of a scalar output, from ``sympy.diff`` of its mirror.

    The caps are those of :func:`symbolic` (a :class:`SizeCapExceeded` says which).

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
        expr_arr = _replay(view, syms, cap, depth_cap)[(output._grad_fn, output._output_nr)]
    expr = expr_arr.reshape(())[()]
    result = []
    for t in inputs:
        if id(t) not in syms:
            raise ValueError("every input must be a leaf tensor with requires_grad=True that the "
                             "output depends on (or a leaf of its graph)")
        d = np.empty(t.shape, dtype=object)
        for idx in np.ndindex(t.shape):
            try:
                d[idx] = sp.diff(expr, syms[id(t)][idx])
            except RecursionError:
                raise SizeCapExceeded(_too_deep(output._grad_fn)) from None
        result.append(_to_sympy(d))
    return result[0] if single else result


#: closed forms in reports: at most this many tree nodes (the expression and each
#: derivative), and :data:`DEFAULT_DEPTH_CAP` levels
REPORT_SIZE_CAP = 2000


def closed_forms(output: Tensor, leaves: Sequence[Tensor], cap: int = REPORT_SIZE_CAP,
                 with_expressions: bool = False) -> tuple:
    """LaTeX of d output / d leaf by entry name, or ({}, why none is shown); with
    ``with_expressions`` a third item holds the SymPy expressions by the same names.

    Over the caps the note says ``closed form omitted: N nodes ...``; a RecursionError
    from SymPy (a last resort: the depth cap is meant to prevent it) is reported the same
    way instead of escaping.

    >>> import verigrad as vg
    >>> x = vg.tensor(2.0, requires_grad=True, name="x")
    >>> w = vg.tensor(3.0, requires_grad=True, name="w")
    >>> closed_forms(w * x * x, [x, w])
    ({'x': '2 w x', 'w': 'x^{2}'}, '')
    """
    try:
        grads = symbolic_grad(output, list(leaves), cap=cap)
    except SizeCapExceeded as e:
        return {}, str(e)
    out: dict[str, str] = {}
    exprs: dict[str, Any] = {}
    for t, g in zip(leaves, grads):
        entries = [(f"{t.name}[{', '.join(map(str, idx))}]", g[idx]) for idx in
                   np.ndindex(t.shape)] if isinstance(g, sp.Array) else [(t.name, g)]
        for name, e in entries:
            n, d = size_and_depth(e)
            if n > cap or d > DEFAULT_DEPTH_CAP:
                return {}, (f"closed form omitted: the derivative for {name} has {n} nodes "
                            f"nested {d} deep (caps: {cap} nodes, {DEFAULT_DEPTH_CAP} levels)")
            exprs[name] = e
            try:
                out[name] = sp.latex(e)
            except RecursionError:
                return {}, (f"closed form omitted: printing the derivative for {name} "
                            f"({n} nodes) hit Python's recursion limit inside SymPy")
    return (out, "", exprs) if with_expressions else (out, "")
