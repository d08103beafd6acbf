"""Error rendering for the expression parser: :class:`ExpressionError` points at the
offending characters with carets (long texts are windowed, invisible characters escaped).

A leaf: it imports only the standard library.
"""

from __future__ import annotations

import unicodedata

__all__ = ["ExpressionError"]

# Characters that may appear anywhere: printable ASCII and tab.  Everything else
# is refused before Python sees the text (see _check_characters for why).
_BAD_CHARACTER = r"[^\t -~]"
# Errors on very long texts show a window of the text around the caret.
_WINDOW = 100


class ExpressionError(ValueError):
    """An expression was refused; ``str(err)`` points at the problem.

    Attributes: ``text`` (the source), ``start``/``end`` (0-based character
    offsets of the offending token, end exclusive) and ``reason``.

    >>> from verigrad.parse import parse
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

