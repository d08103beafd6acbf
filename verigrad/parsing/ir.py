"""The expression IR (:class:`Num`, :class:`Var`, :class:`Const`, :class:`BinOp`,
:class:`UnaryOp`, :class:`Compare`, :class:`Call`), its canonical printer
(:func:`to_string`) and :class:`Expression`, whose :meth:`~Expression.build` folds a tree
over functions the caller supplies. Nodes are immutable and validate themselves; which
function names and keywords exist is the parser's business (:mod:`verigrad.parse`).

A leaf: it imports only the standard library (and its sibling ``errors``).
"""

from __future__ import annotations

import functools
import keyword
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

from .errors import ExpressionError

__all__ = ["BINARY_OPS", "COMPARE_OPS", "CONSTANTS", "UNARY_OPS", "BinOp", "Call", "Compare",
           "Const", "Expression", "KwargValue", "Node", "Num", "UnaryOp", "Var", "to_string"]

#: Named constants; they are never variables.
CONSTANTS: Mapping[str, float] = MappingProxyType({"pi": math.pi, "e": math.e})

BINARY_OPS: frozenset[str] = frozenset({"+", "-", "*", "/", "**", "@"})
UNARY_OPS: frozenset[str] = frozenset({"-", "+"})
COMPARE_OPS: frozenset[str] = frozenset({"<", "<=", ">", ">="})

#: What a keyword argument's value may be: a number, a bool or a tuple of ints.
KwargValue = Union[int, float, bool, tuple[int, ...]]

# ---------------------------------------------------------------------------
# The IR
# ---------------------------------------------------------------------------


def _is_plain_name(name: object) -> bool:
    """An ASCII identifier that is not a Python keyword and not private/dunder."""
    return (
        isinstance(name, str)
        and name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
    )


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kwarg_problem(name: str, value: object) -> str | None:
    """Why ``value`` is not an acceptable value for keyword ``name``, or None if it is.

    The kind follows PyTorch's naming: ``keepdim`` is a bool, ``dim`` an int or a tuple of
    ints, anything else (``min``, ``beta``) a number. Which keywords exist is the parser's
    vocabulary, not the IR's."""
    if not _is_plain_name(name):
        return f"invalid keyword name {name!r}"
    if name == "keepdim":
        ok = isinstance(value, bool)
        want = "True or False"
    elif name == "dim":
        ok = _is_int(value) or (
            isinstance(value, tuple) and len(value) > 0 and all(_is_int(v) for v in value)
        )
        want = "an integer or a tuple of integers, e.g. dim=0 or dim=(0, 1)"
    else:  # bounds and coefficients, e.g. clamp(x, min=0), softplus(x, beta=2)
        ok = _is_real(value)
        want = f"a number, e.g. {name}=0"
    return None if ok else f"keyword '{name}' must be {want}"


@dataclass(frozen=True)
class Node:
    """Base of the IR.  ``start``/``end`` locate the node in the source text.

    Offsets take no part in ``==`` or ``hash``, so trees parsed from
    differently spaced texts compare equal.

    >>> from verigrad.parse import parse

    >>> parse("x + 1").tree == parse("x+1").tree
    True
    """

    start: int = field(default=0, compare=False, repr=False, kw_only=True)
    end: int = field(default=0, compare=False, repr=False, kw_only=True)

    def __str__(self) -> str:
        return to_string(self)


@dataclass(frozen=True)
class Num(Node):
    """A non-negative finite int or float literal (``-2`` is ``UnaryOp('-', Num(2))``)."""

    value: int | float

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"Num value must be an int or float, got {type(v).__name__}")
        # Normalise int/float subclasses (e.g. numpy scalars) so repr() stays plain.
        v = int(v) if isinstance(v, int) else float(v)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"Num value must be finite, got {v!r}")
        if v < 0 or math.copysign(1.0, v) < 0:
            raise ValueError(f"Num value must be non-negative (negate with UnaryOp), got {v!r}")
        object.__setattr__(self, "value", v)


@dataclass(frozen=True)
class Var(Node):
    """A free variable, looked up in ``env`` by :meth:`Expression.build`."""

    name: str

    def __post_init__(self) -> None:
        if not _is_plain_name(self.name) or self.name in CONSTANTS:
            raise ValueError(f"invalid variable name {self.name!r}")


@dataclass(frozen=True)
class Const(Node):
    """A named constant from :data:`CONSTANTS` (``pi``, ``e``)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in CONSTANTS:
            raise ValueError(f"unknown constant {self.name!r}; known: {', '.join(sorted(CONSTANTS))}")


def _check_node(value: object, what: str) -> None:
    if not isinstance(value, Node):
        raise TypeError(f"{what} must be a Node, got {type(value).__name__}")


@dataclass(frozen=True)
class BinOp(Node):
    """``left op right`` with op in ``+ - * / ** @``."""

    op: str
    left: Node
    right: Node

    def __post_init__(self) -> None:
        if self.op not in BINARY_OPS:
            raise ValueError(f"unknown binary operator {self.op!r}")
        _check_node(self.left, "BinOp.left")
        _check_node(self.right, "BinOp.right")


@dataclass(frozen=True)
class UnaryOp(Node):
    """``op operand`` with op in ``- +``."""

    op: str
    operand: Node

    def __post_init__(self) -> None:
        if self.op not in UNARY_OPS:
            raise ValueError(f"unknown unary operator {self.op!r}")
        _check_node(self.operand, "UnaryOp.operand")


@dataclass(frozen=True)
class Compare(Node):
    """A single comparison ``left op right`` with op in ``< <= > >=``."""

    op: str
    left: Node
    right: Node

    def __post_init__(self) -> None:
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison {self.op!r}")
        _check_node(self.left, "Compare.left")
        _check_node(self.right, "Compare.right")


@dataclass(frozen=True)
class Call(Node):
    """``func(*args, **dict(kwargs))``; ``func`` is the canonical name (aliases resolved).

    ``kwargs`` is a tuple of ``(name, value)`` pairs in source order; values are
    plain Python literals (:data:`KwargValue`), not nodes, because only
    literals are allowed there.
    """

    func: str
    args: tuple[Node, ...] = ()
    kwargs: tuple[tuple[str, KwargValue], ...] = ()

    def __post_init__(self) -> None:
        if not _is_plain_name(self.func):
            raise ValueError(f"invalid function name {self.func!r}")
        args = tuple(self.args)
        for arg in args:
            _check_node(arg, "Call argument")
        pairs = []
        seen = set()
        for pair in self.kwargs:
            name, value = pair
            if isinstance(value, list):
                value = tuple(value)
            problem = _kwarg_problem(name, value)
            if problem:
                raise ValueError(problem)
            if name in seen:
                raise ValueError(f"keyword '{name}' given twice")
            seen.add(name)
            pairs.append((name, value))
        # Coerce lists to tuples so nodes stay hashable and immutable.
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", tuple(pairs))


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (BinOp, Compare)):
        return (node.left, node.right)
    if isinstance(node, UnaryOp):
        return (node.operand,)
    if isinstance(node, Call):
        return node.args
    return ()


def _walk(node: Node) -> Iterator[Node]:
    """Pre-order, left to right (= source order), without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(_children(current)))


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------

# Python's binding strength, weakest first.  Atoms (numbers, names, calls) bind tightest.
_PREC_COMPARE, _PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5, 6
_BINARY_PREC = {"+": _PREC_ADD, "-": _PREC_ADD, "*": _PREC_MUL, "/": _PREC_MUL, "@": _PREC_MUL, "**": _PREC_POW}


def _precedence(node: Node) -> int:
    if isinstance(node, Compare):
        return _PREC_COMPARE
    if isinstance(node, BinOp):
        return _BINARY_PREC[node.op]
    if isinstance(node, UnaryOp):
        return _PREC_UNARY
    return _PREC_ATOM


def _format_number(value: int | float) -> str:
    # repr round-trips floats exactly (1e-05, 1e+16, 0.1); str(int) is exact.
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def _format_kwarg(value: KwargValue) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, tuple):
        inner = ", ".join(_format_number(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return _format_number(value)


def _wrap(node: Node, parens: bool) -> str:
    text = to_string(node)
    return f"({text})" if parens else text


def to_string(node: Node) -> str:
    """Print an IR tree canonically, with the fewest parentheses that keep its shape.

    ``parse(to_string(tree)).tree == tree`` for any tree that parse accepts.

    >>> from verigrad.parse import parse

    >>> to_string(parse("((x+1))**2 - -y*(a@b)").tree)
    '(x + 1)**2 - -y * (a @ b)'
    >>> to_string(parse("ln(x) + sum(v, dim=(0,), keepdim=True)").tree)
    'log(x) + sum(v, dim=(0,), keepdim=True)'
    """
    if isinstance(node, Num):
        return _format_number(node.value)
    if isinstance(node, (Var, Const)):
        return node.name
    if isinstance(node, UnaryOp):
        # `-x**2` is -(x**2), so powers and other unaries need no parentheses.
        return node.op + _wrap(node.operand, _precedence(node.operand) < _PREC_UNARY)
    if isinstance(node, BinOp):
        if node.op == "**":
            # Right-associative and tighter than unary minus on its left:
            # (-x)**2 and (a**b)**c need parentheses, a**-b and a**b**c do not.
            left = _wrap(node.left, _precedence(node.left) <= _PREC_POW)
            right = _wrap(node.right, _precedence(node.right) < _PREC_UNARY)
            return f"{left}**{right}"
        prec = _BINARY_PREC[node.op]
        left = _wrap(node.left, _precedence(node.left) < prec)
        right = _wrap(node.right, _precedence(node.right) <= prec)  # left-associative
        return f"{left} {node.op} {right}"
    if isinstance(node, Compare):
        # Comparisons are never chained in the IR, so both sides of a nested one get parentheses.
        left = _wrap(node.left, _precedence(node.left) <= _PREC_COMPARE)
        right = _wrap(node.right, _precedence(node.right) <= _PREC_COMPARE)
        return f"{left} {node.op} {right}"
    if isinstance(node, Call):
        parts = [to_string(arg) for arg in node.args]
        parts += [f"{name}={_format_kwarg(value)}" for name, value in node.kwargs]
        return f"{node.func}({', '.join(parts)})"
    raise TypeError(f"not an IR node: {type(node).__name__}")


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------

_BINARY_FUNCS: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType(
    {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
        "/": operator.truediv,
        "**": operator.pow,
        "@": operator.matmul,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }
)
_UNARY_FUNCS: Mapping[str, Callable[[Any], Any]] = MappingProxyType({"-": operator.neg, "+": operator.pos})


#: instruction kinds of a compiled tree (see ``_compile``)
_NUM, _CONST, _VAR, _BIN, _UN, _CALL = range(6)


def _compile(tree: Node) -> tuple[tuple[int, Any, Node], ...]:
    """The tree as post-order instructions, left to right (children before their node, in
    source order), made once per expression and run by ``_run`` on a value stack: FD builds
    one expression ~30 times per check, and no recursion limits the tree's depth."""
    out: list[tuple[int, Any, Node]] = []
    stack: list[tuple[Node, bool]] = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        children = _children(node)
        if children and not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(children))
            continue
        if isinstance(node, Num):
            out.append((_NUM, node.value, node))
        elif isinstance(node, Const):
            out.append((_CONST, node.name, node))
        elif isinstance(node, Var):
            out.append((_VAR, node.name, node))
        elif isinstance(node, (BinOp, Compare)):
            out.append((_BIN, _BINARY_FUNCS[node.op], node))
        elif isinstance(node, UnaryOp):
            out.append((_UN, _UNARY_FUNCS[node.op], node))
        elif isinstance(node, Call):
            out.append((_CALL, (node.func, len(node.args), dict(node.kwargs)), node))
        else:
            raise TypeError(f"not an IR node: {type(node).__name__}")
    return tuple(out)


def _run(code: tuple[tuple[int, Any, Node], ...], env: Mapping[str, Any],
         functions: Mapping[str, Callable[..., Any]], text: str = "") -> Any:
    """Run ``_compile``'s instructions. Operators go through :mod:`operator` on the values
    themselves; a node whose operation the values refuse raises an ``ExpressionError``
    pointing at that node."""
    values: list[Any] = []
    push, pop = values.append, values.pop
    for kind, what, node in code:
        if kind == _NUM:
            push(what)
        elif kind == _VAR:
            push(env[what])
        elif kind == _CONST:
            push(CONSTANTS[what])
        else:
            try:
                if kind == _BIN:
                    right = pop()
                    push(what(pop(), right))
                elif kind == _UN:
                    push(what(pop()))
                else:
                    func, n, kwargs = what
                    args = values[len(values) - n:]
                    del values[len(values) - n:]
                    push(functions[func](*args, **kwargs))
            except ExpressionError:
                raise
            except (TypeError, ValueError, ArithmeticError, IndexError, RuntimeError) as exc:
                # the values refused the operation (wrong shapes, missing dim=...): point at it
                shown = f"{node.func}()" if isinstance(node, Call) else f"'{node.op}'"
                raise ExpressionError(f"{shown} failed: {exc}", text, node.start,
                                      node.end) from None
    return values[0]


@dataclass(frozen=True)
class Expression:
    """A validated expression: its source ``text``, IR ``tree`` and free ``variables``.

    >>> from verigrad.parse import parse

    >>> import math
    >>> expr = parse("ln(x) + pi*e")
    >>> expr.variables
    ('x',)
    >>> round(expr.build({"x": 1.0}, {"log": math.log}), 6)
    8.539734
    """

    text: str
    tree: Node
    variables: tuple[str, ...]

    def build(self, env: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
        """Fold the tree bottom-up over ``env`` (variable values) and ``functions``.

        Operators go through the :mod:`operator` module, so the values' own
        dunders run: floats, numpy arrays, sympy expressions and tensors all
        work.  Calls are ``functions[canonical_name](*args, **kwargs)``.
        Missing variables or functions raise :class:`ExpressionError` before
        anything is computed; errors raised by the values or functions
        themselves propagate unchanged.

        >>> from verigrad.parse import parse

        >>> parse("x**2 - 3/y").build({"x": 2, "y": 4}, {})
        3.25
        """
        missing = [name for name in self.variables if name not in env]
        if missing:
            first = next(n for n in _walk(self.tree) if isinstance(n, Var) and n.name == missing[0])
            names = ", ".join(f"'{name}'" for name in missing)
            raise ExpressionError(
                f"no value given for variable(s) {names}; every variable must be given in env",
                self.text, first.start, first.end,
            )
        for node in self._calls:
            if node.func not in functions:
                raise ExpressionError(
                    f"no implementation given for function '{node.func}'; add it to functions",
                    self.text, node.start, node.end,
                )
        return _run(self._code, env, functions, self.text)

    @functools.cached_property
    def _code(self) -> tuple[tuple[int, Any, Node], ...]:
        return _compile(self.tree)

    @functools.cached_property
    def _calls(self) -> tuple[Call, ...]:
        """The calls in source order (the first missing function is the one reported)."""
        return tuple(n for n in _walk(self.tree) if isinstance(n, Call))

    def __str__(self) -> str:
        return self.text
