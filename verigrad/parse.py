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

The parser's parts live in :mod:`verigrad.parsing` by concern (``errors``: refusals
rendered with carets; ``ir``: the tree, its printer and builder; ``convert``: text to IR
through the whitelist), all standard-library leaves. This module adds the vocabulary: the
functions, aliases and keywords an expression may use are the op registry's faces on the
``expression`` surface (:class:`verigrad.registry.Face`), so an op declared with
``expression=True`` is callable here at once, with its parameters as keywords.
"""


from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Set

from .parsing.convert import MAX_DEPTH, MAX_EXPONENT, MAX_LENGTH, MAX_NODES, parse_with
from .parsing.errors import ExpressionError
from .parsing.ir import (BINARY_OPS, COMPARE_OPS, CONSTANTS, UNARY_OPS, BinOp, Call, Compare,
                         Const, Expression, KwargValue, Node, Num, UnaryOp, Var, to_string)
from .registry import FACES, on_change

__all__ = [
    "ALIASES", "ALLOWED_KEYWORDS", "BINARY_OPS", "COMPARE_OPS", "CONSTANTS", "DEFAULT_FUNCTIONS",
    "MAX_DEPTH", "MAX_EXPONENT", "MAX_LENGTH", "MAX_NODES", "UNARY_OPS", "BinOp", "Call",
    "Compare", "Const", "Expression", "ExpressionError", "KwargValue", "Node", "Num", "UnaryOp",
    "Var", "parse", "to_string",
]

# ---------------------------------------------------------------------------
# The vocabulary, read from the registry (recomputed after any registry change)
# ---------------------------------------------------------------------------

_TABLES: dict[str, object] = {}


@on_change
def _forget() -> None:
    _TABLES.clear()


def _table(key: str) -> object:
    if not _TABLES:
        faces = [f for f in FACES.values() if f.on("expression")]
        _TABLES["functions"] = frozenset(f.name for f in faces)
        _TABLES["aliases"] = {a: f.name for f in faces for a in f.names("expression")[1:]}
        _TABLES["keywords"] = frozenset(k for f in faces for k in f.keywords)
        _TABLES["keywords_of"] = {f.name: f.keywords for f in faces}
    return _TABLES[key]


class _NameSet(Set):
    """A read-only set that always shows the registry's current vocabulary."""

    def __init__(self, key: str) -> None:
        self._key = key

    @classmethod
    def _from_iterable(cls, it: object) -> frozenset:  # set algebra gives plain frozensets
        return frozenset(it)  # type: ignore[arg-type]

    def __contains__(self, name: object) -> bool:
        return name in _table(self._key)  # type: ignore[operator]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(_table(self._key)))  # type: ignore[call-overload]

    def __len__(self) -> int:
        return len(_table(self._key))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"frozenset({sorted(self)!r})"


class _NameMap(Mapping):
    """A read-only mapping that always shows the registry's current aliases."""

    def __getitem__(self, name: str) -> str:
        return _table("aliases")[name]  # type: ignore[index]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(_table("aliases")))  # type: ignore[call-overload]

    def __len__(self) -> int:
        return len(_table("aliases"))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return repr(dict(self))


#: The functions an expression may call: ops declared with ``expression=True``.
DEFAULT_FUNCTIONS: Set[str] = _NameSet("functions")
#: Alternative spellings, alias -> canonical function name.  The IR stores the canonical name.
ALIASES: Mapping[str, str] = _NameMap()
#: Every keyword argument some call may take (each with a literal value): the params of the
#: expression functions' rows (``dim``, ``keepdim``, ``min``, ``max``, ``beta``...). Each
#: function takes only its own (``Face.keywords``): ``sin(x, beta=2)`` is refused.
ALLOWED_KEYWORDS: Set[str] = _NameSet("keywords")


def parse(text: str | Expression, functions: Collection[str] = DEFAULT_FUNCTIONS) -> Expression:
    """Parse and validate ``text`` into an :class:`Expression`; never evaluates it.

    ``functions`` are the callable names (aliases in :data:`ALIASES` resolve to
    them).  An :class:`Expression` is returned unchanged.  Anything outside the
    whitelist raises :class:`ExpressionError`; a non-string raises TypeError.

    >>> parse("where(x > 0, x, 0.5*x)").variables
    ('x',)
    >>> parse("softplus(x, beta=2.0)").tree.kwargs
    (('beta', 2.0),)
    >>> try:
    ...     parse("sinh(x)")
    ... except ExpressionError as err:
    ...     print(err.reason[:24], err.start, err.end)
    unknown function 'sinh'; 0 4
    """
    return parse_with(text, functions, ALIASES, ALLOWED_KEYWORDS, _table("keywords_of"))
