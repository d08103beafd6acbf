"""Safe parsing of user-typed expressions such as ``"sin(x)*exp(w*x) + b"``.

The text is parsed with :func:`ast.parse` (which only builds a syntax tree and
never runs anything), then every node is checked against a strict *whitelist*
and copied into a small immutable IR (:class:`Num`, :class:`Var`,
:class:`Const`, :class:`BinOp`, :class:`UnaryOp`, :class:`Compare`,
:class:`Call`).  Nothing from the user's text is ever evaluated, compiled to
code or sympified: turning the IR into a value is a plain fold
(:meth:`Expression.build`) over functions supplied by the caller.

Every refusal is an :class:`ExpressionError` whose message points at the
offending characters with carets.

>>> expr = parse("sin(x)*exp(w*x) + b")
>>> expr.variables
('x', 'w', 'b')
>>> to_string(expr.tree)
'sin(x) * exp(w * x) + b'

This module is a leaf: it imports only the standard library.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import operator
import re
import unicodedata
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

__all__ = [
    "ALIASES",
    "ALLOWED_KEYWORDS",
    "BINARY_OPS",
    "COMPARE_OPS",
    "CONSTANTS",
    "DEFAULT_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "MAX_NODES",
    "UNARY_OPS",
    "BinOp",
    "Call",
    "Compare",
    "Const",
    "Expression",
    "ExpressionError",
    "KwargValue",
    "Node",
    "Num",
    "UnaryOp",
    "Var",
    "parse",
    "to_string",
]

# ---------------------------------------------------------------------------
# Vocabulary and caps
# ---------------------------------------------------------------------------

#: Longest accepted text, in characters.  Keeps ast.parse and every later pass cheap.
MAX_LENGTH = 2000
#: Most IR nodes in one expression (numbers, names, operators and calls each count 1).
MAX_NODES = 500
#: Deepest IR nesting.  Parsing, printing and building are recursive folds; this
#: cap keeps them far below Python's recursion limit (a left-leaning sum of N
#: terms is N levels deep, so 200 still allows 200-term sums).
MAX_DEPTH = 200
#: Largest |b| allowed in ``a ** b`` when b is a constant expression.  Stops
#: ``9**9**9``-style inputs that would hang or exhaust memory when built with ints.
MAX_EXPONENT = 1000

DEFAULT_FUNCTIONS: frozenset[str] = frozenset(
    {
        "exp", "log", "log1p", "expm1", "sqrt", "abs",
        "sin", "cos", "tan", "tanh", "sigmoid", "relu", "softplus",
        "clamp", "maximum", "minimum", "where",
        "sum", "mean", "prod", "max", "min", "logsumexp",
        "softmax", "log_softmax", "matmul",
    }
)
#: Alternative spellings, alias -> canonical function name.  The IR stores the canonical name.
ALIASES: Mapping[str, str] = MappingProxyType({"ln": "log"})
#: Named constants; they are never variables.
CONSTANTS: Mapping[str, float] = MappingProxyType({"pi": math.pi, "e": math.e})
#: The only keyword arguments a call may take (each with a literal value).
ALLOWED_KEYWORDS: frozenset[str] = frozenset({"dim", "keepdim", "min", "max"})

BINARY_OPS: frozenset[str] = frozenset({"+", "-", "*", "/", "**", "@"})
UNARY_OPS: frozenset[str] = frozenset({"-", "+"})
COMPARE_OPS: frozenset[str] = frozenset({"<", "<=", ">", ">="})

#: What a keyword argument's value may be: a number, a bool or a tuple of ints.
KwargValue = Union[int, float, bool, tuple[int, ...]]

_ALLOWED_SUMMARY = "(only numbers, names, + - * / ** @, comparisons and calls to known functions)"

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

# Characters that may appear anywhere: printable ASCII and tab.  Everything else
# is refused before Python sees the text (see _check_characters for why).
_BAD_CHARACTER = r"[^\t -~]"
# Errors on very long texts show a window of the text around the caret.
_WINDOW = 100


class ExpressionError(ValueError):
    """An expression was refused; ``str(err)`` points at the problem.

    Attributes: ``text`` (the source), ``start``/``end`` (0-based character
    offsets of the offending token, end exclusive) and ``reason``.

    >>> try:
    ...     parse("x // 2")
    ... except ExpressionError as err:
    ...     print(err)
    floor division '//' is not allowed (use / for division)
      x // 2
        ^^
    """

    def __init__(self, reason: str, text: str = "", start: int = 0, end: int | None = None) -> None:
        text = str(text)
        start = max(0, min(int(start), len(text)))
        end = start if end is None else max(start, min(int(end), len(text)))
        # args mirror the signature so the error pickles and copies correctly.
        super().__init__(reason, text, start, end)
        self.reason = reason
        self.text = text
        self.start = start
        self.end = end

    def __str__(self) -> str:
        return _render(self.reason, self.text, self.start, self.end)


def _escape(ch: str) -> str:
    """How one character is shown in an error message (one visible token, no line breaks)."""
    if ch == "\t" or " " <= ch <= "~":
        return ch
    # \n, \x00, \u200b, \uff45 ...: line breaks stay out and lookalike letters become unmistakable.
    return ch.encode("unicode_escape").decode("ascii")


def _render(reason: str, text: str, start: int, end: int) -> str:
    """Three lines: reason, the (windowed, escaped) text, carets under [start, end)."""
    lo, hi = 0, len(text)
    if len(text) > _WINDOW:
        lo = max(0, min(start - _WINDOW // 2, len(text) - _WINDOW))
        hi = min(len(text), lo + _WINDOW)
    shown = ["..."] if lo > 0 else []
    columns: dict[int, int] = {}
    width = len(shown[0]) if shown else 0
    for i in range(lo, hi):
        columns[i] = width
        piece = _escape(text[i])
        shown.append(piece)
        width += len(piece)
    columns[hi] = width
    if hi < len(text):
        shown.append("...")
    line = "".join(shown)
    first = columns[min(max(start, lo), hi)]
    last = columns[min(max(end, lo), hi)]
    # Mirror tabs so the carets stay aligned whatever the terminal's tab width.
    pad = "".join("\t" if c == "\t" else " " for c in line[:first])
    carets = "^" * max(1, last - first)
    return f"{reason}\n  {line}\n  {pad}{carets}"


def _describe(ch: str) -> str:
    """'U+FF45 FULLWIDTH LATIN SMALL LETTER E' style name of a character."""
    name = unicodedata.name(ch, None)
    if name is None:
        name = "(control character)" if unicodedata.category(ch) == "Cc" else "(unnamed character)"
    return f"U+{ord(ch):04X} {name}"


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
    """Why ``name=value`` is not an acceptable keyword argument, or None if it is."""
    if name not in ALLOWED_KEYWORDS:
        return f"unknown keyword '{name}'; allowed keywords: {', '.join(sorted(ALLOWED_KEYWORDS))}"
    if name == "keepdim":
        ok = isinstance(value, bool)
        want = "True or False"
    elif name == "dim":
        ok = _is_int(value) or (
            isinstance(value, tuple) and len(value) > 0 and all(_is_int(v) for v in value)
        )
        want = "an integer or a tuple of integers, e.g. dim=0 or dim=(0, 1)"
    else:  # min / max bounds, e.g. clamp(x, min=0)
        ok = _is_real(value)
        want = f"a number, e.g. {name}=0"
    return None if ok else f"keyword '{name}' must be {want}"


@dataclass(frozen=True)
class Node:
    """Base of the IR.  ``start``/``end`` locate the node in the source text.

    Offsets take no part in ``==`` or ``hash``, so trees parsed from
    differently spaced texts compare equal.

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


def _fold(node: Node, env: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]],
          text: str = "") -> Any:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Const):
        return CONSTANTS[node.name]
    if isinstance(node, Var):
        return env[node.name]
    try:
        if isinstance(node, (BinOp, Compare)):
            left = _fold(node.left, env, functions, text)
            right = _fold(node.right, env, functions, text)
            return _BINARY_FUNCS[node.op](left, right)
        if isinstance(node, UnaryOp):
            return _UNARY_FUNCS[node.op](_fold(node.operand, env, functions, text))
        if isinstance(node, Call):
            args = [_fold(arg, env, functions, text) for arg in node.args]
            return functions[node.func](*args, **dict(node.kwargs))
    except ExpressionError:
        raise
    except (TypeError, ValueError, ArithmeticError, IndexError, RuntimeError) as exc:
        # the values refused the operation (wrong shapes, missing dim=...): point at it
        what = f"{node.func}()" if isinstance(node, Call) else f"'{node.op}'"
        raise ExpressionError(f"{what} failed: {exc}", text, node.start, node.end) from None
    raise TypeError(f"not an IR node: {type(node).__name__}")


@dataclass(frozen=True)
class Expression:
    """A validated expression: its source ``text``, IR ``tree`` and free ``variables``.

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
        for node in _walk(self.tree):
            if isinstance(node, Call) and node.func not in functions:
                raise ExpressionError(
                    f"no implementation given for function '{node.func}'; add it to functions",
                    self.text, node.start, node.end,
                )
        return _fold(self.tree, env, functions, self.text)

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_BINOP_NAMES: Mapping[type, str] = MappingProxyType(
    {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@"}
)
_REFUSED_BINOPS: Mapping[type, str] = MappingProxyType(
    {
        ast.FloorDiv: "floor division '//' is not allowed (use / for division)",
        ast.Mod: "the '%' operator is not allowed (use / for division)",
        ast.BitXor: "bitwise operator '^' is not allowed (use ** for powers)",
        ast.BitAnd: "bitwise operator '&' is not allowed",
        ast.BitOr: "bitwise operator '|' is not allowed",
        ast.LShift: "bitwise operator '<<' is not allowed",
        ast.RShift: "bitwise operator '>>' is not allowed",
    }
)
_COMPARE_NAMES: Mapping[type, str] = MappingProxyType({ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="})
_REFUSED_NODES: Mapping[type, str] = MappingProxyType(
    {
        ast.Lambda: "lambda is not allowed " + _ALLOWED_SUMMARY,
        ast.ListComp: "comprehensions are not allowed " + _ALLOWED_SUMMARY,
        ast.SetComp: "comprehensions are not allowed " + _ALLOWED_SUMMARY,
        ast.DictComp: "comprehensions are not allowed " + _ALLOWED_SUMMARY,
        ast.GeneratorExp: "generator expressions are not allowed " + _ALLOWED_SUMMARY,
        ast.IfExp: "conditional expressions (a if c else b) are not allowed; use where(c, a, b)",
        ast.BoolOp: "boolean operators (and, or, not) are not allowed; use where(...) or multiply comparisons",
        ast.NamedExpr: "assignment expressions (:=) are not allowed " + _ALLOWED_SUMMARY,
        ast.JoinedStr: "f-strings are not allowed: strings are not part of expressions",
        ast.FormattedValue: "f-strings are not allowed: strings are not part of expressions",
        ast.List: "list literals are not allowed " + _ALLOWED_SUMMARY,
        ast.Tuple: "tuples are only allowed as keyword values, e.g. sum(x, dim=(0, 1))",
        ast.Set: "set literals are not allowed " + _ALLOWED_SUMMARY,
        ast.Dict: "dict literals are not allowed " + _ALLOWED_SUMMARY,
        ast.Starred: "starred arguments (*x) are not allowed; pass each argument explicitly",
        ast.Yield: "yield is not allowed " + _ALLOWED_SUMMARY,
        ast.YieldFrom: "yield is not allowed " + _ALLOWED_SUMMARY,
        ast.Await: "await is not allowed " + _ALLOWED_SUMMARY,
        ast.Slice: "slices are not allowed " + _ALLOWED_SUMMARY,
    }
)

_NOT_LITERAL = object()  # sentinel: a keyword value that is not a literal


def _check_text(text: str) -> None:
    """Refuse over-long, multi-line, non-ASCII, control-character and empty texts."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(text)} characters; at most {MAX_LENGTH} allowed)",
            text, MAX_LENGTH, MAX_LENGTH + 1,
        )
    bad = re.search(_BAD_CHARACTER, text)
    if bad:
        i, ch = bad.start(), bad.group()
        if ch in "\n\r":
            reason = "expression must be on one line (found a line break); join the lines"
        elif ch < " " or ch == "\x7f":
            reason = f"control character {_describe(ch)} is not allowed"
        else:
            # Python NFKC-normalises identifiers, so a fullwidth or lookalike
            # letter could silently become a different name: refuse them all.
            reason = (
                f"non-ASCII character {_describe(ch)} is not allowed; "
                "type the expression in plain ASCII"
            )
        raise ExpressionError(reason, text, i, i + 1)
    if not text.strip():
        raise ExpressionError("expression is empty; type something like sin(x) + 1", text, 0, len(text))


def _syntax_error(text: str, exc: SyntaxError, delta: int) -> ExpressionError:
    """Turn ast.parse's SyntaxError into an ExpressionError with a caret."""
    msg = (exc.msg or "invalid syntax").strip()
    if len(msg) > 120:
        msg = msg[:117] + "..."
    offset = exc.offset
    body_length = len(text) - delta
    if exc.lineno not in (None, 1) or not offset or offset < 1 or offset > body_length:
        # Python reports offset 0 when the input ended too early ("x +").
        end_of_text = len(text.rstrip())
        reason = (
            "incomplete expression: something is missing at the end"
            if msg == "invalid syntax"
            else f"syntax error: {msg}"
        )
        return ExpressionError(reason, text, end_of_text, end_of_text)
    start = delta + offset - 1
    end_offset = exc.end_offset
    if exc.end_lineno in (None, 1) and end_offset and end_offset > offset:
        end = delta + min(end_offset, body_length + 1) - 1
    else:
        end = start + 1
    word = re.match(r"[A-Za-z_]\w*", text[start:])
    if text[start] == ";":
        reason = "only a single expression is allowed; remove the ';' and what follows"
    elif text[start] == "=" and not text.startswith("==", start):
        reason = "assignment with '=' is not allowed; write just the expression"
    elif word and keyword.iskeyword(word.group()):
        reason = f"syntax error: '{word.group()}' is a Python keyword and is not allowed"
        end = start + len(word.group())
    else:
        reason = f"syntax error: {msg}"
    return ExpressionError(reason, text, start, end)


class _Converter:
    """Checks a Python ast against the whitelist and copies it into the IR."""

    def __init__(self, text: str, functions: frozenset[str], delta: int) -> None:
        self.text = text
        self.functions = functions
        self.delta = delta  # leading whitespace stripped before ast.parse

    # -- positions ----------------------------------------------------------

    def span(self, node: ast.AST) -> tuple[int, int]:
        return node.col_offset + self.delta, node.end_col_offset + self.delta  # type: ignore[attr-defined]

    def between(self, left: ast.AST, right: ast.AST) -> tuple[int, int]:
        """Span of the operator token between two operands (ast does not record it)."""
        lo, hi = self.span(left)[1], self.span(right)[0]
        i, j = lo, hi
        # Between two operands there is only whitespace, parentheses and the operator.
        while i < j and self.text[i] in " \t()":
            i += 1
        while j > i and self.text[j - 1] in " \t()":
            j -= 1
        return (i, j) if j > i else (lo, hi)

    def source(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def fail(self, reason: str, span: tuple[int, int]) -> ExpressionError:
        return ExpressionError(reason, self.text, span[0], span[1])

    # -- size ---------------------------------------------------------------

    def check_size(self, body: ast.expr) -> None:
        """Count IR-to-be nodes and nesting without recursion, before anything recursive runs."""
        count = 0
        too_deep: ast.AST | None = None
        stack: list[tuple[ast.AST, int]] = [(body, 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.expr):
                count += 1
                if depth > MAX_DEPTH and too_deep is None:
                    too_deep = node
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                # The function name and keyword values are not IR nodes.
                children: list[ast.AST] = list(node.args)
            elif isinstance(node, ast.keyword):
                children = []
            else:
                children = list(ast.iter_child_nodes(node))
            stack.extend((child, depth + 1) for child in children)
        if count > MAX_NODES:
            raise self.fail(
                f"expression is too large ({count} nodes; at most {MAX_NODES} allowed); split it up",
                (0, len(self.text)),
            )
        if too_deep is not None:
            raise self.fail(
                f"expression is nested too deeply (more than {MAX_DEPTH} levels); simplify it",
                self.span(too_deep),
            )

    # -- conversion ---------------------------------------------------------

    def canonical(self, name: str) -> str | None:
        """The function a name calls, or None if it is not a function here."""
        if name in self.functions:
            return name
        target = ALIASES.get(name)
        if target is not None and target in self.functions:
            return target
        return None

    def convert(self, node: ast.expr) -> tuple[Node, float | None]:
        """IR for ``node`` plus its float value when it is a constant expression."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            out = self.name(node)
            return out, (CONSTANTS[out.name] if isinstance(out, Const) else None)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unaryop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node), None
        if isinstance(node, ast.Call):
            return self.call(node), None
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            # Report the innermost x.a / x[i] first: convert the value, then refuse.
            self.convert(node.value)
            start, end = self.span(node.value)[1], self.span(node)[1]
            # The value's span excludes its closing parentheses: (1).__class__
            while start < end and self.text[start] in " \t)":
                start += 1
            span = (start, end)
            if isinstance(node, ast.Attribute):
                raise self.fail("attribute access is not allowed " + _ALLOWED_SUMMARY, span)
            raise self.fail("subscripts like x[0] are not allowed " + _ALLOWED_SUMMARY, span)
        if isinstance(node, ast.BoolOp):
            raise self.fail(_REFUSED_NODES[ast.BoolOp], self.between(node.values[0], node.values[1]))
        reason = _REFUSED_NODES.get(type(node), f"{type(node).__name__} syntax is not allowed {_ALLOWED_SUMMARY}")
        raise self.fail(reason, self.span(node))

    def constant(self, node: ast.Constant) -> tuple[Node, float | None]:
        value, span = node.value, self.span(node)
        if isinstance(value, bool):
            raise self.fail("booleans are only allowed as keyword values, e.g. keepdim=True", span)
        if isinstance(value, (int, float)):
            try:
                as_float = float(value)
            except OverflowError:
                as_float = math.inf
            if not math.isfinite(as_float):
                raise self.fail("number is too large (it does not fit in a float)", span)
            return Num(value, start=span[0], end=span[1]), as_float
        if isinstance(value, complex):
            raise self.fail("complex numbers like 1j are not allowed", span)
        if isinstance(value, str):
            raise self.fail("strings are not allowed " + _ALLOWED_SUMMARY, span)
        if isinstance(value, bytes):
            raise self.fail("bytes literals are not allowed " + _ALLOWED_SUMMARY, span)
        if value is None:
            raise self.fail("None is not allowed " + _ALLOWED_SUMMARY, span)
        raise self.fail(f"the literal {value!r} is not allowed {_ALLOWED_SUMMARY}", span)

    def check_private(self, name: str, span: tuple[int, int]) -> None:
        if name.startswith("_"):
            raise self.fail(
                f"names starting with '_' are not allowed ('{name}'); rename it without the underscore",
                span,
            )

    def name(self, node: ast.Name) -> Node:
        name, span = node.id, self.span(node)
        self.check_private(name, span)
        if name in CONSTANTS:
            return Const(name, start=span[0], end=span[1])
        canonical = self.canonical(name)
        if canonical is not None:
            alias = f" (an alias of '{canonical}')" if canonical != name else ""
            raise self.fail(
                f"'{name}' is a function{alias}, not a variable; call it, e.g. {name}(x)", span
            )
        return Var(name, start=span[0], end=span[1])

    def fold_constant(self, op: str, a: float, b: float, node: ast.AST) -> float:
        """Evaluate a constant sub-expression with plain float arithmetic (never eval)."""
        what = self.source(node)
        try:
            if op == "+":
                result = a + b
            elif op == "-":
                result = a - b
            elif op == "*":
                result = a * b
            elif op == "/":
                result = a / b
            else:  # "**"; |b| <= MAX_EXPONENT was checked first, so this is fast
                result = a**b
        except ZeroDivisionError:
            raise self.fail(f"constant {what} divides by zero", self.span(node)) from None
        except OverflowError:
            result = math.inf
        if isinstance(result, complex):
            raise self.fail(f"constant {what} is not a real number", self.span(node))
        if not math.isfinite(result):
            raise self.fail(f"constant {what} is too large (it does not fit in a float)", self.span(node))
        return result

    def binop(self, node: ast.BinOp) -> tuple[Node, float | None]:
        left, left_value = self.convert(node.left)  # left to right, like the text
        op = _BINOP_NAMES.get(type(node.op))
        if op is None:
            reason = _REFUSED_BINOPS.get(type(node.op), "this operator is not allowed " + _ALLOWED_SUMMARY)
            raise self.fail(reason, self.between(node.left, node.right))
        right, right_value = self.convert(node.right)
        start, end = self.span(node)
        out = BinOp(op, left, right, start=start, end=end)
        if op == "**" and right_value is not None and abs(right_value) > MAX_EXPONENT:
            shown = self.source(node.right)
            if not isinstance(right, Num):
                shown += f" = {right_value:.6g}"
            raise self.fail(
                f"constant exponent {shown} is too large "
                f"(|exponent| must be at most {MAX_EXPONENT})",
                self.span(node.right),
            )
        if left_value is None or right_value is None:
            return out, None
        if op == "@":
            raise self.fail("'@' is matrix multiplication; both sides here are plain numbers, use *",
                            self.between(node.left, node.right))
        return out, self.fold_constant(op, left_value, right_value, node)

    def unaryop(self, node: ast.UnaryOp) -> tuple[Node, float | None]:
        start, end = self.span(node)
        if isinstance(node.op, ast.Not):
            raise self.fail(_REFUSED_NODES[ast.BoolOp], (start, start + 3))
        if isinstance(node.op, ast.Invert):
            raise self.fail("bitwise operator '~' is not allowed", (start, start + 1))
        operand, value = self.convert(node.operand)
        op = "-" if isinstance(node.op, ast.USub) else "+"
        out = UnaryOp(op, operand, start=start, end=end)
        return out, (None if value is None else (-value if op == "-" else value))

    def compare(self, node: ast.Compare) -> Node:
        left, _ = self.convert(node.left)
        op = _COMPARE_NAMES.get(type(node.ops[0]))
        if op is None:
            raise self.fail("only the comparisons < <= > >= are allowed",
                            self.between(node.left, node.comparators[0]))
        right, _ = self.convert(node.comparators[0])
        if len(node.ops) > 1:
            raise self.fail(
                "chained comparisons like 0 < x < 1 are not allowed; compare two values at a time, "
                "e.g. (0 < x) * (x < 1)",
                self.between(node.comparators[0], node.comparators[1]),
            )
        start, end = self.span(node)
        return Compare(op, left, right, start=start, end=end)

    def call(self, node: ast.Call) -> Node:
        func = node.func
        if isinstance(func, ast.Name):
            name, span = func.id, self.span(func)
            self.check_private(name, span)
            canonical = self.canonical(name)
            if canonical is None:
                if name in CONSTANTS:
                    raise self.fail(f"'{name}' is a constant, not a function", span)
                raise self.fail(self.unknown_function(name), span)
        else:
            if isinstance(func, ast.Attribute):
                self.convert(func)  # refuses, pointing at the innermost attribute
            raise self.fail("only known functions can be called, e.g. sin(x)", self.span(func))
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(_REFUSED_NODES[ast.Starred], self.span(arg))
            args.append(self.convert(arg)[0])
        kwargs: list[tuple[str, KwargValue]] = []
        seen: set[str] = set()
        for kw in node.keywords:
            kw_start, kw_end = self.span(kw)
            if kw.arg is None:
                raise self.fail("keyword unpacking (**x) is not allowed; pass keywords explicitly",
                                (kw_start, kw_end))
            name_span = (kw_start, kw_start + len(kw.arg))
            if kw.arg not in ALLOWED_KEYWORDS:
                reason = _kwarg_problem(kw.arg, None) or ""
                if kw.arg == "axis":
                    reason += " (use dim instead of axis)"
                raise self.fail(reason, name_span)
            if kw.arg in seen:
                raise self.fail(f"keyword '{kw.arg}' given twice", name_span)
            seen.add(kw.arg)
            value = self.literal(kw.value)
            problem = _kwarg_problem(kw.arg, value)
            if problem:
                raise self.fail(problem, self.span(kw.value))
            kwargs.append((kw.arg, value))
        start, end = self.span(node)
        return Call(canonical, tuple(args), tuple(kwargs), start=start, end=end)

    def literal(self, node: ast.expr) -> Any:
        """A keyword value: a number, a negated number, True/False or a tuple of those."""
        if isinstance(node, ast.Tuple):
            items = tuple(self.scalar(item) for item in node.elts)
            return _NOT_LITERAL if _NOT_LITERAL in items else items
        return self.scalar(node)

    @staticmethod
    def scalar(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value  # bools included: keepdim=True
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)
        ):
            return -node.operand.value
        return _NOT_LITERAL

    def unknown_function(self, name: str) -> str:
        known = sorted(self.functions)
        reason = f"unknown function '{name}'; known functions: {', '.join(known)}"
        aliases = sorted(a for a, target in ALIASES.items() if target in self.functions and a not in self.functions)
        if aliases:
            reason += " (also " + ", ".join(f"{a} for {ALIASES[a]}" for a in aliases) + ")"
        close = difflib.get_close_matches(name, known + aliases, n=2)
        if close:
            reason += "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        return reason


def parse(text: str | Expression, functions: Collection[str] = DEFAULT_FUNCTIONS) -> Expression:
    """Parse and validate ``text`` into an :class:`Expression`; never evaluates it.

    ``functions`` are the callable names (aliases in :data:`ALIASES` resolve to
    them).  An :class:`Expression` is returned unchanged.  Anything outside the
    whitelist raises :class:`ExpressionError`; a non-string raises TypeError.

    >>> parse("where(x > 0, x, 0.5*x)").variables
    ('x',)
    >>> try:
    ...     parse("sinh(x)")
    ... except ExpressionError as err:
    ...     print(err.reason[:24], err.start, err.end)
    unknown function 'sinh'; 0 4
    """
    if isinstance(text, Expression):
        return text
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, got {type(text).__name__}")
    if isinstance(functions, str):
        raise TypeError("functions must be a collection of names, not a single string")
    names = frozenset(functions)
    if not all(isinstance(name, str) for name in names):
        raise TypeError("functions must contain only strings")

    _check_text(text)
    # ast.parse refuses leading indentation in eval mode; strip it and shift offsets.
    stripped = text.lstrip(" \t")
    delta = len(text) - len(stripped)
    try:
        # The tokenizer warns about things like "1if"; such text is refused or
        # harmless anyway, so keep the warning off the user's console.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            body = ast.parse(stripped, mode="eval").body
    except SyntaxError as exc:  # includes IndentationError
        raise _syntax_error(text, exc, delta) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(
            "expression is nested too deeply for Python's parser; simplify it", text, 0, len(text)
        ) from None
    except ValueError as exc:  # e.g. null bytes (already refused above, kept as a safety net)
        raise ExpressionError(f"cannot parse expression: {exc}", text, 0, len(text)) from None

    converter = _Converter(text, names, delta)
    converter.check_size(body)
    try:
        tree, _ = converter.convert(body)
    except RecursionError:  # unreachable with MAX_DEPTH, but never leak a traceback
        raise ExpressionError("expression is nested too deeply; simplify it", text, 0, len(text)) from None
    # Strings were refused above, so any '#' left is a comment.
    hash_at = text.find("#")
    if hash_at >= 0:
        raise ExpressionError("comments (#) are not allowed", text, hash_at, len(text.rstrip()))
    variables = tuple(dict.fromkeys(n.name for n in _walk(tree) if isinstance(n, Var)))
    return Expression(text, tree, variables)
