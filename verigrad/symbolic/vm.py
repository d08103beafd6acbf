"""Evaluate SymPy (or SymEngine) expressions in mpmath without generating code.

A :class:`Program` flattens a list of expressions into one straight-line sequence of
instructions over the expression DAG (shared subexpressions are evaluated once, as with
``cse``), then runs it on mpmath numbers. Unlike ``lambdify`` it never calls ``exec``,
has no recursion limit (a sum of 10,000 terms is fine) and costs nothing to "compile"
beyond one walk of the tree. Nodes are dispatched by type name, so SymPy and SymEngine
trees (the optional fast backend) run on the same machine, even mixed in one program.
"""
from __future__ import annotations

import operator
from fractions import Fraction
from typing import Any, Callable, Sequence

import mpmath

__all__ = ["Program", "UnsupportedExpression", "MAGNITUDE_CAP_BITS", "saturate"]

#: Magnitudes are kept within 2**-CAP .. 2**CAP (CAP = 4096 bits, about 1e+-1233, far outside
#: float64's 1e+-308): a result beyond is replaced by +-2**+-CAP. Without the cap an exp
#: tower grows the *exponent* of an mpf without bound: exp(exp(exp(10))) has a 9,566-digit
#: exponent, formatting it took minutes and one more exp raised OverflowError inside
#: mpmath. Saturated values are beyond float64 either way; ``ExactGraph`` reports values
#: outside float64's range so the checker can call such entries inconclusive (overflow).
MAGNITUDE_CAP_BITS = 4096
_HUGE = (0, 1, MAGNITUDE_CAP_BITS, 1)
_TINY = (0, 1, -MAGNITUDE_CAP_BITS, 1)


def saturate(r: Any) -> Any:
    """``r`` with its magnitude clamped to 2**+-MAGNITUDE_CAP_BITS (sign kept; zero, inf and
    nan untouched)."""
    m = r._mpf_
    if not m[1]:
        return r
    mag = m[2] + m[3]
    if mag > MAGNITUDE_CAP_BITS:
        return mpmath.mpf((m[0],) + _HUGE[1:])
    if mag < -MAGNITUDE_CAP_BITS:
        return mpmath.mpf((m[0],) + _TINY[1:])
    return r


class UnsupportedExpression(ValueError):
    """An expression uses a function with no mpmath counterpart here."""


_NAN = mpmath.mpf("nan")
_BINARY: dict[str, Callable] = {"Add": operator.add, "Mul": operator.mul}


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


def _log(x: Any, base: Any = None) -> Any:
    return mpmath.log(x) if base is None else mpmath.log(x, base)


_FUNCTIONS: dict[str, Callable] = {
    "Add": lambda *a: mpmath.fsum(a), "Mul": lambda *a: mpmath.fprod(a),
    "Pow": lambda b, e: b ** e, "exp": mpmath.exp, "log": _log, "sin": mpmath.sin,
    "cos": mpmath.cos, "tan": mpmath.tan, "tanh": mpmath.tanh, "sinh": mpmath.sinh,
    "cosh": mpmath.cosh, "asin": mpmath.asin, "acos": mpmath.acos, "atan": mpmath.atan,
    "sec": mpmath.sec, "csc": mpmath.csc, "cot": mpmath.cot, "sech": mpmath.sech,
    "Abs": mpmath.fabs, "sign": mpmath.sign, "Heaviside": _heaviside, "Max": max, "Min": min,
    "Piecewise": _piecewise,
    "StrictGreaterThan": lambda a, b: a > b, "GreaterThan": lambda a, b: a >= b,
    "StrictLessThan": lambda a, b: a < b, "LessThan": lambda a, b: a <= b,
    "Equality": lambda a, b: a == b, "Unequality": lambda a, b: a != b,
    "And": lambda *a: all(a), "Or": lambda *a: any(a), "Not": lambda a: not a,
}

_NAMED_CONSTANTS: dict[str, Callable[[], Any]] = {
    "Pi": lambda: +mpmath.pi, "Exp1": lambda: +mpmath.e, "Infinity": lambda: mpmath.inf,
    "NegativeInfinity": lambda: -mpmath.inf, "NaN": lambda: mpmath.nan,
    "BooleanTrue": lambda: True, "BooleanFalse": lambda: False,
}


def _constant(e: Any) -> Callable[[], Any]:
    """A number, converted at call time (a Rational's value depends on the precision)."""
    name = type(e).__name__
    if name in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[name]
    if name == "Float":  # SymPy: keep every bit of its mantissa
        m = e._mpf_
        return lambda: mpmath.mpf(m)
    if name == "RealDouble":
        f = float(e)
        return lambda: mpmath.mpf(f)
    try:
        q = Fraction(str(e))  # Integer, Rational, Half, One, Zero, NegativeOne in either library
    except (ValueError, ZeroDivisionError):
        raise UnsupportedExpression(f"cannot evaluate the constant {e!r}") from None
    p, d = q.numerator, q.denominator
    return (lambda: mpmath.mpf(p)) if d == 1 else (lambda: mpmath.mpf(p) / d)


def _is_symbol(e: Any) -> bool:
    return type(e).__name__ in ("Symbol", "Dummy")


class Program:
    """Straight-line mpmath evaluation of ``outputs`` as functions of ``inputs``.

    ``inputs`` may list a symbol once per library (a SymPy symbol and its SymEngine twin
    share a slot when given as a pair ``(sympy_symbol, symengine_symbol)``).

    >>> import sympy, mpmath
    >>> x = sympy.Symbol("x")
    >>> Program([x], [sympy.sin(x) ** 2 + sympy.Rational(1, 3)])(mpmath.mpf(0))
    [mpf('0.33333333333333331')]
    """

    def __init__(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        slots: dict[Any, int] = {}
        for i, s in enumerate(inputs):
            for twin in (s if isinstance(s, tuple) else (s,)):
                slots[twin] = i
        self.n_inputs = len(inputs)
        self.constants: list[tuple[int, Callable[[], Any]]] = []
        self.code: list[tuple[int, Callable, tuple[int, ...]]] = []
        n = self.n_inputs
        roots = []
        for root in outputs:
            if isinstance(root, (int, float)):  # a plain number: exact (Fraction of a float is)
                key = ("number", len(roots))
                slots[key] = n
                self.constants.append((n, _constant(Fraction(root))))
                roots.append(key)
                n += 1
                continue
            roots.append(root)
            stack = [(root, False)]
            while stack:
                e, ready = stack.pop()
                if e in slots:
                    continue
                args = e.args
                if not args:
                    if _is_symbol(e):
                        raise UnsupportedExpression(f"free symbol {e} is not an input")
                    slots[e] = n
                    self.constants.append((n, _constant(e)))
                    n += 1
                    continue
                name = type(e).__name__
                if name == "Piecewise" and type(args[0]).__name__ == "ExprCondPair":
                    args = tuple(x for pair in args for x in pair)  # SymPy's (expr, cond) pairs
                if not ready:
                    stack.append((e, True))
                    stack.extend((a, False) for a in args if a not in slots)
                    continue
                fn = _FUNCTIONS.get(name) or getattr(mpmath, name.lower(), None)
                if name in _BINARY and len(args) == 2:
                    fn = _BINARY[name]  # one rounding, like fsum/fprod, without their setup
                if fn is None:
                    raise UnsupportedExpression(f"no mpmath evaluation for {name}")
                slots[e] = n
                self.code.append((n, fn, tuple(slots[a] for a in args)))
                n += 1
        self.size = n
        self.outputs = [slots[r] for r in roots]

    def _template(self) -> list[Any]:
        """The non-input slots with the constants filled in, at the current precision (a
        Rational's value depends on it; mpf values are immutable, so they are shared)."""
        prec = mpmath.mp.prec
        cache = self.__dict__.setdefault("_templates", {})
        t = cache.get(prec)
        if t is None:
            t = [None] * (self.size - self.n_inputs)
            for slot, make in self.constants:
                t[slot - self.n_inputs] = make()
            cache[prec] = t
        return t

    def __call__(self, *values: Any) -> list[Any]:
        mem: list[Any] = [*values, *self._template()]
        nan = _NAN
        mpf, mpc, cap = mpmath.mpf, mpmath.mpc, MAGNITUDE_CAP_BITS
        for slot, fn, args in self.code:
            try:
                if len(args) == 1:
                    r = fn(mem[args[0]])
                elif len(args) == 2:
                    r = fn(mem[args[0]], mem[args[1]])
                else:
                    r = fn(*[mem[a] for a in args])
            except ZeroDivisionError:
                r = mpmath.inf
            except (ValueError, TypeError):  # comparisons with nan, log of 0 and the like
                r = nan
            tr = type(r)
            if tr is mpf:
                m = r._mpf_
                if m[1] and not -cap <= m[2] + m[3] <= cap:
                    r = saturate(r)
            elif tr is mpc:  # outside a real function's domain
                r = r.real if not r.imag else nan
                if type(r) is mpf:
                    r = saturate(r)
            mem[slot] = r
        return [mem[o] for o in self.outputs]
