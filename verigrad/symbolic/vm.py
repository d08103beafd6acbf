"""Evaluate SymPy expressions in mpmath without generating code.

A :class:`Program` flattens a list of expressions into one straight-line sequence of
instructions over the expression DAG (shared subexpressions are evaluated once, as with
``cse``), then runs it on mpmath numbers. Unlike ``lambdify`` it never calls ``exec``,
has no recursion limit (a sum of 10,000 terms is fine) and costs nothing to "compile"
beyond one walk of the tree.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import mpmath

from .._lazy import sp

__all__ = ["Program", "UnsupportedExpression"]


class UnsupportedExpression(ValueError):
    """An expression uses a SymPy function with no mpmath counterpart here."""


def _heaviside(x: Any, h0: Any = None) -> Any:
    if x < 0:
        return mpmath.mpf(0)
    if x > 0:
        return mpmath.mpf(1)
    return mpmath.mpf(0.5) if h0 is None else h0


def _piecewise(*args: Any) -> Any:
    for k in range(0, len(args), 2):
        if args[k + 1]:
            return args[k]
    return mpmath.mpf("nan")


def _pow(b: Any, e: Any) -> Any:
    return b ** e


def _log(x: Any, base: Any = None) -> Any:
    return mpmath.log(x) if base is None else mpmath.log(x, base)


def _functions() -> dict[Any, Callable]:
    rel = sp.core.relational
    return {
        sp.exp: mpmath.exp, sp.log: _log, sp.sin: mpmath.sin, sp.cos: mpmath.cos,
        sp.tan: mpmath.tan, sp.tanh: mpmath.tanh, sp.sinh: mpmath.sinh, sp.cosh: mpmath.cosh,
        sp.asin: mpmath.asin, sp.acos: mpmath.acos, sp.atan: mpmath.atan,
        sp.Abs: mpmath.fabs, sp.sign: mpmath.sign, sp.Heaviside: _heaviside,
        sp.Max: max, sp.Min: min, sp.Piecewise: _piecewise, sp.Pow: _pow,
        sp.Add: lambda *a: mpmath.fsum(a), sp.Mul: lambda *a: mpmath.fprod(a),
        rel.StrictGreaterThan: lambda a, b: a > b, rel.GreaterThan: lambda a, b: a >= b,
        rel.StrictLessThan: lambda a, b: a < b, rel.LessThan: lambda a, b: a <= b,
        rel.Equality: lambda a, b: a == b, rel.Unequality: lambda a, b: a != b,
        sp.And: lambda *a: all(a), sp.Or: lambda *a: any(a), sp.Not: lambda a: not a,
        sp.ITE: lambda c, a, b: a if c else b,
    }


_FUNCS: dict[Any, Callable] | None = None


def _constant(e: Any) -> Callable[[], Any]:
    """A constant, converted at call time (a Rational's value depends on the precision)."""
    if e is sp.true or e is sp.false:
        v = bool(e)
        return lambda: v
    if isinstance(e, sp.Integer):
        i = int(e)
        return lambda: mpmath.mpf(i)
    if isinstance(e, sp.Rational):
        p, q = int(e.p), int(e.q)
        return lambda: mpmath.mpf(p) / q
    if isinstance(e, sp.Float):
        m = e._mpf_
        return lambda: mpmath.mpf(m)
    if e is sp.pi:
        return lambda: +mpmath.pi
    if e is sp.E:
        return lambda: +mpmath.e
    if e is sp.oo:
        return lambda: mpmath.inf
    if e is sp.S.NegativeInfinity:
        return lambda: -mpmath.inf
    if e is sp.nan:
        return lambda: mpmath.nan
    raise UnsupportedExpression(f"cannot evaluate the constant {e!r}")


class Program:
    """Straight-line mpmath evaluation of ``outputs`` as functions of ``inputs``.

    >>> import sympy, mpmath
    >>> x = sympy.Symbol("x")
    >>> Program([x], [sympy.sin(x) ** 2 + sympy.Rational(1, 3)])(mpmath.mpf(0))
    [mpf('0.33333333333333331')]
    """

    def __init__(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        global _FUNCS
        if _FUNCS is None:
            _FUNCS = _functions()
        slots: dict[Any, int] = {s: i for i, s in enumerate(inputs)}
        self.n_inputs = len(inputs)
        self.constants: list[tuple[int, Callable[[], Any]]] = []
        self.code: list[tuple[int, Callable, tuple[int, ...]]] = []
        n = len(inputs)
        for root in outputs:
            if not isinstance(root, sp.Basic):
                root = sp.sympify(root)  # numbers only: outputs are our own expressions
            stack = [(root, False)]
            while stack:
                e, ready = stack.pop()
                if e in slots:
                    continue
                if not e.args or e.is_Atom:
                    if isinstance(e, sp.Symbol):
                        raise UnsupportedExpression(f"free symbol {e} is not an input")
                    slots[e] = n
                    self.constants.append((n, _constant(e)))
                    n += 1
                    continue
                args = e.args
                if isinstance(e, sp.Piecewise):
                    args = tuple(x for pair in e.args for x in pair)
                if not ready:
                    stack.append((e, True))
                    stack.extend((a, False) for a in args if a not in slots)
                    continue
                fn = _FUNCS.get(e.func)
                if fn is None:
                    name = type(e).__name__.lower()
                    fn = getattr(mpmath, name, None)
                    if fn is None:
                        raise UnsupportedExpression(f"no mpmath evaluation for {type(e).__name__}")
                slots[e] = n
                self.code.append((n, fn, tuple(slots[a] for a in args)))
                n += 1
        self.size = n
        self.outputs = [slots[o if isinstance(o, sp.Basic) else sp.sympify(o)] for o in outputs]

    def __call__(self, *values: Any) -> list[Any]:
        mem: list[Any] = list(values) + [None] * (self.size - self.n_inputs)
        for slot, make in self.constants:
            mem[slot] = make()
        nan = mpmath.mpf("nan")
        for slot, fn, args in self.code:
            try:
                r = fn(*[mem[a] for a in args])
            except ZeroDivisionError:
                r = mpmath.inf
            except (ValueError, TypeError):  # comparisons with nan, log of 0 and the like
                r = nan
            if type(r) is mpmath.mpc:  # outside a real function's domain
                r = r.real if not r.imag else nan
            mem[slot] = r
        return [mem[o] for o in self.outputs]
