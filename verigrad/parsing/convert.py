"""From text to IR: :func:`parse_with` checks the text, runs :func:`ast.parse` (which only
builds a syntax tree and never runs anything), checks every node against a strict
whitelist and copies it into the IR of :mod:`verigrad.parsing.ir`. The vocabulary (function
names, aliases, keywords) is an argument: :func:`verigrad.parse.parse` passes the registry's.

A leaf: it imports only the standard library (and its siblings).
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
import warnings
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from .errors import ExpressionError, _BAD_CHARACTER, _describe
from .ir import (CONSTANTS, BinOp, Call, Compare, Const, Expression, KwargValue, Node, Num,
                 UnaryOp, Var, _kwarg_problem, _walk)

__all__ = ["MAX_DEPTH", "MAX_EXPONENT", "MAX_LENGTH", "MAX_NODES", "parse_with"]

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

_ALLOWED_SUMMARY = "(only numbers, names, + - * / ** @, comparisons and calls to known functions)"

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

    def __init__(self, text: str, functions: frozenset[str], delta: int,
                 aliases: Mapping[str, str], keywords: frozenset[str],
                 keywords_of: Mapping[str, frozenset[str]]) -> None:
        self.text = text
        self.functions = functions
        self.aliases = aliases
        self.keywords = keywords
        self.keywords_of = keywords_of  # per function; a function not in it takes `keywords`
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
        target = self.aliases.get(name)
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
            allowed = self.keywords_of.get(canonical, self.keywords)
            if kw.arg not in allowed:
                raise self.fail(_unknown_keyword(kw.arg, canonical, allowed,
                                                 canonical in self.keywords_of), name_span)
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
        aliases = sorted(a for a, target in self.aliases.items()
                         if target in self.functions and a not in self.functions)
        if aliases:
            reason += " (also " + ", ".join(f"{a} for {self.aliases[a]}" for a in aliases) + ")"
        close = difflib.get_close_matches(name, known + aliases, n=2)
        if close:
            reason += "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        return reason


def _unknown_keyword(word: str, function: str, allowed: Collection[str], own: bool) -> str:
    """The refusal of ``function(..., word=...)``: which keywords the function does take."""
    if not own:  # a caller's function with no keyword table of its own: the shared list
        reason = f"unknown keyword '{word}'; allowed keywords: {', '.join(sorted(allowed))}"
    elif allowed:
        reason = (f"unknown keyword '{word}' for {function}(); it takes "
                  f"{', '.join(sorted(allowed))}")
    else:
        reason = f"unknown keyword '{word}' for {function}(), which takes no keywords"
    if word == "axis" and "dim" in allowed:
        reason += " (use dim instead of axis)"
    return reason


def parse_with(text: str | Expression, functions: Collection[str], aliases: Mapping[str, str],
               keywords: Collection[str],
               keywords_of: Mapping[str, Collection[str]] | None = None) -> Expression:
    """Parse and validate ``text`` with an explicit vocabulary: ``functions`` (callable
    names), ``aliases`` (alias -> function name), ``keywords`` (the keyword arguments a
    call may pass, each with a literal value) and ``keywords_of`` (function -> its own
    keywords, narrower than ``keywords``). :func:`verigrad.parse.parse` is this with the
    registry's vocabulary.

    >>> parse_with("twice(x, k=2)", {"twice"}, {}, {"k"}).tree
    Call(func='twice', args=(Var(name='x'),), kwargs=(('k', 2),))
    >>> parse_with("once(x, k=2)", {"once", "twice"}, {}, {"k"}, {"once": ()})
    Traceback (most recent call last):
    ...
    verigrad.parsing.errors.ExpressionError: unknown keyword 'k' for once(), which takes no keywords
      once(x, k=2)
              ^
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

    converter = _Converter(text, names, delta, MappingProxyType(dict(aliases)),
                           frozenset(keywords),
                           {f: frozenset(k) for f, k in (keywords_of or {}).items()})
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

