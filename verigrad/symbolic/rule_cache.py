"""A persistent on-disk cache of derived local rules, so a second process does not re-derive.

A registry op's local rule (its mirror on fresh symbols, the partials ``sympy.diff`` gives,
their rounding magnitudes) depends only on the op, its parameters, the input shapes and the
backend that differentiated it, so it is the same in every process. ``local.rule_for`` keeps
rules in memory; this module keeps them on disk too, one small JSON file per rule:

- **where**: ``$VERIGRAD_CACHE_DIR`` if set (``off``, ``0``, ``none`` or an empty value
  disable the cache), else ``$XDG_CACHE_HOME/verigrad``, else ``~/.cache/verigrad``;
  files live under ``rules-<FORMAT>/``;
- **key**: op name, parameters, input shapes, differentiated inputs, symbol assumptions,
  backend, and the versions of verigrad, SymPy (and SymEngine). The key text is stored in
  the file and compared on load, so a hash collision or a stale file is a miss;
- **safe to delete**: a missing, corrupt or stale file is ignored and rewritten; writes go
  to a temporary file renamed over the old one (atomic), and any OS error is ignored;
- **no code**: expressions are stored as SymPy ``srepr`` text and rebuilt by walking the
  text's syntax tree, calling only SymPy classes from a whitelist with literal arguments
  (never ``eval``, never pickle). An expression is stored only if its text rebuilds to an
  equal expression. Custom Functions (user code) are never stored.

Nothing decides a verdict differently with the cache: a hit yields the same expressions a
derivation would (checked at write time), and a miss derives them.

>>> from verigrad.symbolic.rule_cache import dumps, loads
>>> import sympy
>>> x = sympy.Symbol("a0", real=True)
>>> e = sympy.exp(-x**2) / 2
>>> loads(dumps(e)) == e
True
>>> loads("__import__('os').system('true')")
Traceback (most recent call last):
ValueError: not a whitelisted SymPy expression: Call of Attribute
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .._lazy import sp
from .._version import __version__

__all__ = ["cache_dir", "load", "save", "dumps", "loads", "ENV", "FORMAT"]

#: the environment variable naming the cache directory (or disabling the cache)
ENV = "VERIGRAD_CACHE_DIR"
#: bumped when the file layout or what a rule holds changes: old files are never read
FORMAT = "2"
_OFF = ("", "0", "off", "no", "none", "false", "disable", "disabled")
#: the longest expression text stored: reading text back (parse, whitelist, rebuild) costs
#: about 0.7 ms per thousand characters here, while large rules (a 5x5 determinant's
#: partials, megabytes of text) derive in well under a second; storing those made one
#: Gaussian-process check take 184 s instead of 11
MAX_TEXT = 20_000
#: the most text one rule part (its mirror, partials, magnitudes) is stored with, by the
#: same measure: a 100-wide softmax's 10,000 partials took 131 s to turn into text and
#: verify, against 2 s to derive; such a part is derived again by the next process
MAX_RECORD = 200_000
#: the largest file a record of at most four parts of MAX_RECORD can make, with JSON's quotes
MAX_FILE = 4 * MAX_RECORD + 200_000


def cache_dir() -> Path | None:
    """The directory rules are kept in, or None when the cache is off."""
    value = os.environ.get(ENV)
    if value is not None:
        if value.strip().lower() in _OFF:
            return None
        return Path(value).expanduser() / f"rules-{FORMAT}"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "verigrad" / f"rules-{FORMAT}"


def _versions(backend: str) -> str:
    out = f"verigrad {__version__}, sympy {sp.__version__}"
    if backend == "symengine":
        import symengine

        out += f", symengine {symengine.__version__}"
    return out


def key_text(parts: tuple, backend: str) -> str | None:
    """The key of a rule as text, or None if it would not be the same in another process
    (a parameter whose repr holds a memory address)."""
    text = repr(parts) + " | " + backend + " | " + _versions(backend)
    return None if " at 0x" in text else text


def _path(directory: Path, key: str) -> Path:
    return directory / (hashlib.sha256(key.encode()).hexdigest()[:40] + ".json")


def load(key: str) -> dict | None:
    """The record stored under ``key``, or None (no cache, no file, unreadable, stale)."""
    directory = cache_dir()
    if directory is None:
        return None
    path = _path(directory, key)
    try:
        if path.stat().st_size > MAX_FILE:  # written before MAX_RECORD: derived and replaced
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None  # a collision of hashes or a file of another layout: a miss
    return record


def save(key: str, record: dict) -> None:
    """Store ``record`` under ``key`` atomically; errors (read-only disk...) are ignored."""
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".rule-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(dict(record, key=key), f)
            os.replace(tmp, _path(directory, key))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except (OSError, TypeError, ValueError):
        pass


# --- expressions as data -------------------------------------------------------------------

def _whitelist() -> dict[str, Any]:
    """SymPy's expression classes and named constants (``srepr`` prints them by name), and
    the codegen functions verigrad's mirrors use (log1p, expm1)."""
    import sympy
    import sympy.codegen.cfunctions as cf
    from sympy.functions.elementary.piecewise import ExprCondPair

    names: dict[str, Any] = {}
    for mod in (sympy, cf):
        for name in dir(mod):
            obj = getattr(mod, name)
            if isinstance(obj, type) and issubclass(obj, sp.Basic) or isinstance(obj, sp.Basic):
                names.setdefault(name, obj)
    names["ExprCondPair"] = ExprCondPair
    return names


_NAMES: dict[str, Any] = {}


def dumps(expr: Any, budget: int = MAX_TEXT) -> str | None:
    """``expr`` as text that :func:`loads` rebuilds to an equal expression, or None when it
    does not, or is longer than ``budget`` (then it is not stored). SymEngine expressions
    are stored as their SymPy form."""
    if not isinstance(expr, sp.Basic) and hasattr(expr, "_sympy_"):
        expr = expr._sympy_()
    if not isinstance(expr, sp.Basic):
        return None
    text = _text(expr)
    if "Dummy(" in text or len(text) > min(MAX_TEXT, budget):  # a dummy's index is only
        return None          # unique in one process; a long text: see MAX_TEXT, MAX_RECORD
    try:
        return text if loads(text) == expr else None
    except (ValueError, TypeError, ArithmeticError, AttributeError):
        return None


def _text(expr: Any) -> str:
    """``srepr``'s notation, but with every node's arguments in ``.args`` order (``srepr``
    prints sums and products sorted, which an unevaluated rebuild would keep); iterative."""
    done: dict[int, str] = {}
    stack: list[tuple[Any, bool]] = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if id(e) in done and not ready:
            continue
        if not e.args:
            done[id(e)] = sp.srepr(e)
        elif not ready:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args)
        else:
            done[id(e)] = f"{type(e).__name__}({', '.join(done[id(a)] for a in e.args)})"
    return done[id(expr)]


def _unevaluated() -> tuple:
    from sympy.core.function import Application
    from sympy.core.operations import AssocOp
    from sympy.core.relational import Relational

    return (AssocOp, sp.Pow, Application, Relational)


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?inf|nan")


def _check_literals(cls: type, args: list, kwargs: dict) -> None:
    """Text reaches SymPy only as a symbol's name or a float's digits: many SymPy classes
    sympify their arguments, and sympify parses (evaluates) strings."""
    named = cls in (sp.Symbol, sp.Dummy)
    for i, a in enumerate(args):
        if isinstance(a, str):
            if i == 0 and named:
                continue
            if i == 0 and cls is sp.Float and _FLOAT_TEXT.fullmatch(a):
                continue
            raise ValueError(f"not a whitelisted SymPy expression: text given to {cls.__name__}")
        stack = [a]
        while stack:
            t = stack.pop()
            if isinstance(t, tuple):
                stack.extend(t)
            elif isinstance(t, str):
                raise ValueError(f"not a whitelisted SymPy expression: text in a tuple given "
                                 f"to {cls.__name__}")
    for k, v in kwargs.items():
        if not isinstance(v, (bool, int)) or isinstance(v, float):
            raise ValueError(f"not a whitelisted SymPy expression: {k}={v!r}")


def loads(text: str) -> Any:
    """Rebuild an expression from :func:`dumps` text: the text's syntax tree may hold only
    calls of whitelisted SymPy classes (by bare name), literal numbers, strings, booleans
    and tuples, and named SymPy constants. Anything else raises ValueError. Iterative: no
    recursion on the expression's depth."""
    if len(text) > MAX_TEXT:  # never written (see MAX_TEXT): a record from elsewhere
        raise ValueError(f"expression text over {MAX_TEXT} characters")
    if not _NAMES:
        _NAMES.update(_whitelist())
    tree = ast.parse(text, mode="eval").body
    done: dict[int, Any] = {}
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    lazy = _unevaluated()
    while stack:
        node, ready = stack.pop()
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool,
                                                                       type(None))):
            done[id(node)] = node.value
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
                isinstance(node.operand, ast.Constant) and \
                isinstance(node.operand.value, (int, float)):
            done[id(node)] = -node.operand.value
        elif isinstance(node, ast.Name):
            obj = _NAMES.get(node.id)
            if not isinstance(obj, sp.Basic):
                raise ValueError(f"not a whitelisted SymPy constant: {node.id}")
            done[id(node)] = obj
        elif isinstance(node, (ast.Tuple, ast.List)):
            if not ready:
                stack.append((node, True))
                stack.extend((e, False) for e in node.elts)
            else:
                done[id(node)] = tuple(done.pop(id(e)) for e in node.elts)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            cls = _NAMES.get(node.func.id)
            if not isinstance(cls, type):
                raise ValueError(f"not a whitelisted SymPy class: {node.func.id}")
            if not ready:
                stack.append((node, True))
                stack.extend((a, False) for a in node.args)
                stack.extend((k.value, False) for k in node.keywords)
                continue
            args = [done.pop(id(a)) for a in node.args]
            kwargs = {}
            for k in node.keywords:
                if k.arg is None:
                    raise ValueError("not a whitelisted SymPy expression: ** arguments")
                kwargs[k.arg] = done.pop(id(k.value))
            _check_literals(cls, args, kwargs)
            if issubclass(cls, lazy):
                # the args are stored as they were (dumps() checks the rebuilt expression)
                kwargs.setdefault("evaluate", False)
            done[id(node)] = cls(*args, **kwargs)
        else:
            what = type(node).__name__
            inner = f" of {type(node.func).__name__}" if isinstance(node, ast.Call) else ""
            raise ValueError(f"not a whitelisted SymPy expression: {what}{inner}")
    return done[id(tree)]
