"""Hypothesis strategies for gradient tests: random expressions, good points, tensors.

``expressions()`` draws random expression trees made of verigrad's own elementwise ops (read
from the op registry, so a new op is tested as soon as it is declared and the parser accepts
it). Each draw comes in three forms: the text (``vg.check`` takes it), the SymPy expression
(the mirror of its tape graph, never by sympifying text) and a tape graph.
``points(expr)`` draws values for its variables inside every op's domain and away from kinks
and singularities, found by the same kink detector the checker uses. ``tensors()`` draws
``vg.Tensor`` objects.

>>> from hypothesis import given, settings, strategies as st
>>> import verigrad as vg
>>> from verigrad.strategies import expressions, points
>>> @settings(max_examples=5, deadline=None)
... @given(st.data())
... def test_three_opinions_agree(data):
...     expr = data.draw(expressions(max_depth=2))
...     values = data.draw(points(expr))
...     assert vg.check(expr.text, **values).verdict == "pass"
>>> test_three_opinions_agree()

This module imports hypothesis, so import it from tests only (``import verigrad`` does not).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ._dtype import dtype as _vg_dtype
from ._dtype import to_numpy_dtype
from .expression import FUNCTIONS, build_graph
from .parse import BinOp, Call, Expression, Node, Num, UnaryOp, Var, parse, to_string
from .autograd.engine import grad
from .registry import REGISTRY, OpDef
from .symbolic import ExactGraph, MirrorError, symbolic
from .symbolic.kinks import find_kinks
from .tensor import Tensor, tensor

__all__ = ["expressions", "points", "tensors", "RandomExpression", "OPS", "available_ops"]

# --- which registry ops an expression can spell ---------------------------------------------

#: how the parser's operators are recorded on the tape (``**`` is refined by its operands)
_OPERATOR_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}


def _spellable(op: OpDef) -> bool:
    # an op a random expression may use: elementwise, differentiable, with a mirror (so the
    # SymPy form exists) and a name the expression parser accepts
    return (op.elementwise and op.differentiable and op.mirror is not None
            and op.name == op.base and op.base in FUNCTIONS)


def _classify() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    unary, binary, bounded = [], [], []
    for op in REGISTRY.values():
        if not _spellable(op):
            continue
        if len(op.inputs) == 2:
            binary.append(op.base)
        elif len(op.inputs) == 1 and {"min", "max"} <= set(op.params):
            bounded.append(op.base)       # clamp(x, min=a, max=b): bounds are literals
        elif len(op.inputs) == 1:
            unary.append(op.base)         # other parameters (softplus's beta) keep defaults
    return tuple(unary), tuple(binary), tuple(bounded)


_UNARY_CALLS, _BINARY_CALLS, _BOUNDED_CALLS = _classify()
# operators exist as long as their registry ops do (they always should: checked, not assumed)
_BASES_DECLARED = {op.base for op in REGISTRY.values() if op.elementwise and op.differentiable}
_OPERATORS = tuple(o for o, name in _OPERATOR_OPS.items() if name in _BASES_DECLARED)
_NEG = ("neg",) if "neg" in _BASES_DECLARED else ()

#: every op name ``expressions(ops=...)`` understands, registry base names
OPS: tuple[str, ...] = (tuple(_OPERATOR_OPS[o] for o in _OPERATORS) + _NEG + _UNARY_CALLS
                        + _BINARY_CALLS + _BOUNDED_CALLS)


def available_ops() -> tuple[str, ...]:
    """The op names ``expressions(ops=...)`` accepts (registry base names; ``+ - * / **``
    are accepted as aliases of ``add sub mul div pow``).

    >>> "sin" in available_ops() and "add" in available_ops()
    True
    """
    return OPS


# --- the drawn object -----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RandomExpression:
    """A drawn expression in all its forms.

    >>> from verigrad.parse import BinOp, Call, Var, Num
    >>> e = RandomExpression.from_tree(BinOp("*", Call("sin", (Var("x"),)), Num(2)))
    >>> e.text, e.variables, e.sympy
    ('sin(x) * 2', ('x',), 2*sin(x))
    >>> y, leaves = e.build({"x": 0.0}); y.backward(); leaves["x"].grad.item()
    2.0
    """

    tree: Node
    expression: Expression = field(repr=False)

    @classmethod
    def from_tree(cls, tree: Node) -> "RandomExpression":
        text = to_string(tree)
        # round trip through the real parser: a draw is only useful if users could type it
        expression = parse(text, functions=FUNCTIONS.keys())
        if expression.tree != tree:  # pragma: no cover - a printer/parser disagreement
            raise AssertionError(f"{text!r} does not parse back to the drawn tree")
        return cls(tree, expression)

    @property
    def text(self) -> str:
        """The expression as ``vg.check`` and the command line take it."""
        return self.expression.text

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables used, in order of first appearance."""
        return self.expression.variables

    @cached_property
    def sympy(self) -> Any:
        """The SymPy form (real symbols): the mirror of the recorded graph, so each op's
        registered mirror, of the overload the tape chose (``x**2``, ``2**x`` and ``x**y``
        are three rows), as ``vg.symbolic`` gives it. Recorded at 0.5 everywhere: a
        recording does not depend on the values."""
        with np.errstate(all="ignore"):
            out, _ = self.build({v: 0.5 for v in self.variables}, dtype=np.float64)
        return symbolic(out, cap=None, depth_cap=None)

    @cached_property
    def ops(self) -> tuple[str, ...]:
        """Registry op base names used, in first-use order (handy for ``hypothesis.event``)."""
        return tuple(dict.fromkeys(_op_names(self.tree)))

    def build(self, values: Mapping[str, Any], dtype: Any = None,
              requires_grad: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """Record the expression on the tape: ``(output, leaves by name)``."""
        return build_graph(self.expression, values, dtype=dtype, requires_grad=requires_grad)

    def __repr__(self) -> str:
        # hypothesis prints draws with repr: the text is the readable counterexample
        return f"RandomExpression({self.text!r})"

    def __str__(self) -> str:
        return self.text


def _is_constant(node: Node) -> bool:
    return isinstance(node, Num) or (isinstance(node, UnaryOp) and _is_constant(node.operand))


def _op_names(node: Node) -> Iterable[str]:
    if isinstance(node, UnaryOp):
        if node.op == "-" and not _is_constant(node):
            yield "neg"
        yield from _op_names(node.operand)
    elif isinstance(node, BinOp):
        yield _OPERATOR_OPS[node.op]
        yield from _op_names(node.left)
        yield from _op_names(node.right)
    elif isinstance(node, Call):
        yield node.func
        for a in node.args:
            yield from _op_names(a)


# --- expressions ----------------------------------------------------------------------------

# small dyadic constants: exact in binary, so the tape, the mirror and FD see the same number
_CONSTANTS = (2, 0.5, 3, 1.5, 1, 0.25)
_EXPONENTS = (2, 3, -1, 0.5, -2, 1.5)
_BASES = (2, 0.5, 3)


def _number(value: float) -> Node:
    return UnaryOp("-", Num(-value)) if value < 0 else Num(value)


def _unary_node(f: str, a: Node) -> Node:
    return UnaryOp("-", a) if f == "-" else Call(f, (a,))


def _resolve_ops(ops: Sequence[str] | None) -> set[str]:
    if ops is None:
        return set(OPS)
    if isinstance(ops, str):
        raise TypeError("ops must be a collection of op names, e.g. ops=['sin', 'mul']")
    chosen = {_OPERATOR_OPS.get(o, o) for o in ops}
    unknown = sorted(chosen - set(OPS))
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; available: {', '.join(OPS)}")
    return chosen


def expressions(variables: Sequence[str] = ("x", "y"), ops: Sequence[str] | None = None,
                max_depth: int = 3) -> st.SearchStrategy[RandomExpression]:
    """Random expressions over ``variables`` using registry ops (``ops``: a subset of
    :data:`OPS`; ``None`` for all), at most ``max_depth`` ops deep.

    Shrinks towards a bare variable, then towards smaller subtrees and earlier ops, so a
    failure is reported as the smallest expression that still fails.

    >>> from hypothesis import find
    >>> find(expressions(ops=["sin", "mul"]), lambda e: "sin" in e.text).text
    'sin(x)'
    """
    if isinstance(variables, str):
        variables = (variables,)
    variables = tuple(variables)
    if not variables:
        raise ValueError("expressions() needs at least one variable name")
    for v in variables:
        Var(v)  # raises ValueError on a name the parser would refuse (keywords, pi, _x)
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    chosen = _resolve_ops(ops)
    return _trees(variables, tuple(o for o in OPS if o in chosen), max_depth).map(
        RandomExpression.from_tree)


@st.composite
def _trees(draw: st.DrawFn, variables: tuple[str, ...], ops: tuple[str, ...],
           max_depth: int) -> Node:
    """A tree at most ``max_depth`` ops deep. One composite rather than nested ``one_of``s:
    the choices shrink the same way, and the strategy's repr stays one line (hypothesis
    prints it in messages)."""
    chosen = set(ops)
    unary = [f for f in _UNARY_CALLS if f in chosen] + (["-"] if "neg" in chosen else [])
    arith = [o for o in _OPERATORS if _OPERATOR_OPS[o] in chosen and o != "**"]
    binary = [f for f in _BINARY_CALLS if f in chosen]
    bounded = [f for f in _BOUNDED_CALLS if f in chosen]
    # the leaf comes first: sampled_from shrinks towards its first entry, so failures shrink
    # to a bare variable, then to the fewest ops; negation counts as one more unary function
    kinds = ["leaf"] + (["unary"] if unary else [])
    if arith:
        kinds += ["arith", "arith-constant", "constant-arith"]
    if "pow" in chosen:
        kinds += ["power", "exponential", "pow"]
    kinds += (["binary"] if binary else []) + (["bounded"] if bounded else [])

    def constant() -> Node:
        return _number(draw(st.sampled_from(_CONSTANTS)) * draw(st.sampled_from((1, -1))))

    def tree(depth: int) -> Node:
        kind = draw(st.sampled_from(kinds)) if depth > 0 else "leaf"
        if kind == "leaf":
            return Var(draw(st.sampled_from(variables)))
        if kind == "unary":
            return _unary_node(draw(st.sampled_from(unary)), tree(depth - 1))
        if kind == "arith":
            return BinOp(draw(st.sampled_from(arith)), tree(depth - 1), tree(depth - 1))
        if kind == "arith-constant":
            return BinOp(draw(st.sampled_from(arith)), tree(depth - 1), constant())
        if kind == "constant-arith":
            return BinOp(draw(st.sampled_from(arith)), constant(), tree(depth - 1))
        if kind == "power":
            return BinOp("**", tree(depth - 1), _number(draw(st.sampled_from(_EXPONENTS))))
        if kind == "exponential":
            return BinOp("**", Num(draw(st.sampled_from(_BASES))), tree(depth - 1))
        if kind == "pow":
            return BinOp("**", tree(depth - 1), tree(depth - 1))
        if kind == "binary":
            return Call(draw(st.sampled_from(binary)), (tree(depth - 1), tree(depth - 1)))
        lo = draw(st.sampled_from((-1.5, -1, -0.5, 0)))
        hi = draw(st.sampled_from((0.5, 1, 2)))
        return Call(draw(st.sampled_from(bounded)), (tree(depth - 1),),
                    (("min", lo), ("max", hi)))

    return tree(max_depth)


# --- points ---------------------------------------------------------------------------------

def _as_expression(expr: RandomExpression | Expression | str) -> Expression:
    if isinstance(expr, RandomExpression):
        return expr.expression
    return parse(expr, functions=FUNCTIONS.keys())


def _np_dtype(dtype: Any) -> np.dtype:
    return to_numpy_dtype(dtype) if isinstance(dtype, _vg_dtype) else np.dtype(dtype)


def points(expr: RandomExpression | Expression | str, dtype: Any = np.float64, *,
           shape: tuple[int, ...] = (), min_value: float = -3.0, max_value: float = 3.0,
           min_magnitude: float = 0.0, radius: float = 1e-3, max_magnitude: float = 1e6,
           tries: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """Values for ``expr``'s variables (a dict by name) where its gradient is well defined.

    Each value is a ``dtype`` (float64 or float32) number, or an array of ``shape``, in
    ``[min_value, max_value]``, never subnormal, and zero or at least ``min_magnitude`` in
    size (the default 0 lets hypothesis try values like 1e-200). A point is kept only if, in
    ``dtype``, the output and every gradient are finite, at most ``max_magnitude`` and not
    subnormal, and the mirror's kink detector finds no kink or singularity (``abs``,
    ``relu``, ``max``, ``clamp`` switches; ``log``, ``sqrt``, division and ``tan`` edges; the
    base of ``a**b``) within ``radius`` (relative to the size of each op's inputs). Up to
    ``tries`` candidates are drawn per example before it is rejected.

    >>> from hypothesis import find
    >>> p = find(points("log(x) + relu(x - 1)"), lambda p: True)
    >>> bool(p["x"] > 0 and abs(p["x"] - 1) > 1e-3)
    True
    """
    expression = _as_expression(expr)
    np_dtype = _np_dtype(dtype)
    if np_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"points() draws float32 or float64 values, not {np_dtype}")
    if not min_value < max_value:
        raise ValueError(f"need min_value < max_value, got {min_value} and {max_value}")
    # no subnormals: they carry a few bits only, so no opinion can be accurate there
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                         allow_subnormal=False, width=8 * np_dtype.itemsize)
    if min_magnitude > 0:
        elements = elements.filter(lambda v: v == 0 or abs(v) >= min_magnitude)
    shape = tuple(shape)

    def value() -> st.SearchStrategy[Any]:
        # 0-d draws become numpy scalars: vg.check keeps their dtype, as for arrays
        return hnp.arrays(np_dtype, shape, elements=elements).map(
            lambda a: a[()] if a.ndim == 0 else a)

    one = st.fixed_dictionaries({name: value() for name in expression.variables})

    @st.composite
    def draw_point(draw: st.DrawFn) -> dict[str, Any]:
        # several candidates per example: narrow domains (log(log(x))) then rarely need
        # hypothesis to throw the example away, and each candidate still shrinks on its own
        for _ in range(max(1, tries)):
            candidate = draw(one)
            if _admissible(expression, candidate, np_dtype, radius, max_magnitude):
                return candidate
        reject()  # hypothesis throws this example away and tries another

    return draw_point()


def _admissible(expression: Expression, values: dict[str, Any], np_dtype: np.dtype,
                radius: float, max_magnitude: float) -> bool:
    """Finite, moderate output and gradients in ``np_dtype``, and no kink near the point."""
    def finite_run(dt: np.dtype) -> Tensor | None:
        with np.errstate(all="ignore"):
            try:
                out, leaves = build_graph(expression, values, dtype=dt)
            except (ArithmeticError, ValueError):
                return None
            data = np.asarray(out.numpy(), dtype=np.float64)
            if not _moderate(data, dt, max_magnitude):
                return None
            if not out.requires_grad:
                return out
            names = list(leaves)
            # one backward (of the sum for array outputs) finds infinite or huge gradients
            gs = grad([out if out.ndim == 0 else out.sum()], [leaves[n] for n in names],
                      allow_unused=True)
            for g in gs:
                if g is None:
                    continue
                if not _moderate(np.asarray(g.numpy(), dtype=np.float64), dt, max_magnitude):
                    return None
            return out

    if np_dtype != np.float64 and finite_run(np_dtype) is None:
        return False
    out = finite_run(np.dtype(np.float64))  # the checker works in float64: kinks there
    if out is None:
        return False
    if not out.requires_grad:
        return True
    try:
        graph = ExactGraph(out)
        kinks = find_kinks(graph, radius=radius)
    except MirrorError:
        return False
    return not kinks and _inside_derivative_domains(graph.view, radius)


def _moderate(a: np.ndarray, dt: np.dtype, max_magnitude: float) -> bool:
    """Finite, at most ``max_magnitude``, and not underflowed into ``dt``'s subnormals."""
    mag = np.abs(a)
    tiny = np.finfo(dt).tiny
    return bool(np.all(np.isfinite(a)) and np.all(mag <= max_magnitude)
                and not np.any((mag > 0) & (mag < tiny)))


def _inside_derivative_domains(view: Any, radius: float) -> bool:
    """Inputs stay inside each op's declared derivative domain (``Domain.defined``, e.g. the
    base of ``a ** b`` with a tensor exponent is > 0), with the kink detector's relative
    radius: edges the mirror's kink detector cannot see because it treats them as smooth."""
    for node in view.nodes:
        op = getattr(node, "op", None)
        if op is None or not op.domain.defined:
            continue
        for k, value in enumerate(view.input_values(node)):
            bounds = op.domain.defined_on(k)
            if bounds is None:
                continue
            v = np.asarray(value, dtype=np.float64)
            margin = radius * (1 + np.abs(v))
            if np.any(v <= bounds[0] + margin) or np.any(v >= bounds[1] - margin):
                return False
    return True


# --- tensors --------------------------------------------------------------------------------

def tensors(shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
            dtype: Any = np.float64, elements: st.SearchStrategy[Any] | None = None, *,
            requires_grad: bool = False) -> st.SearchStrategy[Tensor]:
    """``vg.Tensor`` draws on top of ``hypothesis.extra.numpy.arrays``.

    ``shape``: a tuple or a strategy (default: up to 3 dims of up to 4); ``dtype``: a numpy
    or verigrad dtype, kept by the tensor; ``elements``: defaults to finite values in
    [-1e3, 1e3] for floats.

    >>> from hypothesis import find
    >>> t = find(tensors(shape=(2, 3), requires_grad=True), lambda t: True)
    >>> t.shape, t.dtype, t.requires_grad
    ((2, 3), verigrad.float64, True)
    """
    np_dtype = _np_dtype(dtype)
    if shape is None:
        shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
    if elements is None and np_dtype.kind == "f":
        # bounded by default: gradient tests want values whose squares and products stay finite
        elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False,
                             width=8 * np_dtype.itemsize)
    if requires_grad and np_dtype.kind not in "fc":
        raise ValueError(f"requires_grad needs a floating dtype, not {np_dtype}")
    return hnp.arrays(np_dtype, shape, elements=elements).map(
        lambda a: tensor(a, requires_grad=requires_grad))
