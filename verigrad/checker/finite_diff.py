"""Finite differences with an honest error estimate: the checker's independent opinion.

This module is self-contained (numpy only): it knows nothing about
tensors or tapes. It answers one question, *what is d/dt f(x + t*direction) at t = 0, and
how wrong might that number be*, for a plain function ``f(x_flat) -> y_flat``.

How the estimate is made
------------------------
* **Steps relative to the scale.** Steps are ``h = scale * c`` with ``scale`` the size of the
  perturbed coordinates (``max|x_j|`` over the direction's support, at least 1e-8; 1 at
  ``x = 0``), so ``x**2`` at 1e10 gets a step far above one ulp and ``x**2`` at 1e-8 one far
  below ``x``. ``x + h*d`` is rounded to ``dtype`` and the step actually taken is used.
* **A geometric ladder, walked adaptively** (ratio 3.7, not a power of two: dyadic ladders
  line up with the binary rounding grid and make rounding errors agree with each other).
  It starts at ``(256 u)**(1/5) * scale`` (u = unit roundoff of ``dtype``: 2e-3 in
  float64, 0.11 in float32), where 6th-order central Richardson over three rungs balances
  truncation against rounding, and takes three rungs (7 evaluations with ``f(x)``). The
  finest three rungs are then classified per output:

  - *asymptotic* (successive differences shrink as ``h**2`` predicts): one rung down
    while the finest rung is the best one (two when far from the target);
  - *garbage* (the step is far above the function's own scale, ``sin(1e6 x)`` with
    ``h = 1e-4``): a jump of 3.7**3 = 51x down; those rungs are never used for the value;
  - *noise* (rounding dominates, e.g. ``(1 - cos x)/x**2`` at small x): the observed
    noise becomes part of the error model and the ladder steps 14x up, to at most 16x
    the scale.

  It stops when the error estimate reaches the target (``u**0.55`` relative: 1.8e-9 in
  float64), when the bottom of the V-shaped error curve is bracketed, or at 17
  evaluations of ``f``. Smooth functions take 7-9 evaluations.
* **Richardson extrapolation as a Neville tableau** in ``z = h**2`` (central) or ``z = h``
  (one-sided, whose expansion has odd powers too), up to 6th order (central) / 4th order
  (one-sided). The error of each entry is twice the largest distance to its neighbours
  (one order lower on the same rungs, same order one rung coarser and one rung finer; the
  Ridders / numdifftools heuristic), each widened by that neighbour's rounding bound, plus
  its own propagated rounding bound ``2u(|f| + |x||f'|)/h`` (or the observed noise). The
  entry with the smallest error wins, per output.
* **One-sided near a domain edge.** When ``f`` gives nan/inf (or raises ``ValueError`` /
  ``ArithmeticError``) on one side, the ladder continues with forward or backward
  differences on the finite side and says so in ``method`` and ``reason``.
* **Complex step** (``f_complex``) is accepted only when it agrees with a reliable real
  estimate within that estimate's error (``abs``, ``relu`` are not holomorphic and give
  wrong numbers silently); then the error is a few ulps.
Known limit: when rounding inside ``f`` is amplified beyond ``u**(1/4)`` relative (condition
numbers above ~1e12, e.g. ``(1 - cos x)/x**2`` at x < 1e-5), rounding noise cannot be told
from a function varying on a tiny scale; the estimate then says ``reliable=False`` (or,
rarely, differentiates the rounding staircase of ``f``). The symbolic opinion is the
reference there.

Nothing here warns or raises for nan/inf values of ``f``: such cases come back with
``reliable=False`` and a reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["FDEstimate", "derivative", "partials", "one_sided", "is_kink", "unit_roundoff",
           "rounding_noise", "MAX_EVALS"]

#: ratio between neighbouring rungs of the ladder
RATIO = 3.7
#: factor of a jump down when the finest rungs are not yet asymptotic
JUMP_DOWN = RATIO ** 3
#: factor of a step up when every rung is rounding-dominated
JUMP_UP = RATIO ** 2
#: cap on evaluations of ``f`` per direction for the adaptive walk (1 at x + 8 central rungs)
MAX_EVALS = 17
#: highest Richardson level (number of eliminated error terms) per method
_KMAX = {"central": 2, "forward": 3, "backward": 3}
#: steps above this multiple of the scale are never tried
_MAX_REL_STEP = 16.0
#: an error below ``_RELIABLE_REL * magnitude`` (one correct digit) counts as settled
_RELIABLE_REL = 0.1
#: the guard on the default scale of tiny nonzero coordinates
_SCALE_FLOOR = 1e-8
#: safety factor on the difference-based part of an error estimate
_SAFETY = 2.0

_BAD_EVAL = (ArithmeticError, ValueError)  # FloatingPointError, ZeroDivisionError, OverflowError


@dataclass
class FDEstimate:
    """A finite-difference derivative with its error estimate.

    ``value`` and ``error`` have one entry per output of ``f``; ``error`` is an absolute
    error estimate (>= 0, never nan, inf when unknown). ``ladder`` holds ``(step, raw
    estimate)`` for every step tried, largest step first (plot ``|raw - value|`` against
    ``step`` for the V-shaped curve). ``n_evals`` counts evaluations of ``f`` (not of
    ``f_complex``).
    """

    value: np.ndarray
    error: np.ndarray
    step: float
    method: str
    ladder: list[tuple[float, np.ndarray]] = field(default_factory=list)
    reliable: bool = True
    reason: str = ""
    n_evals: int = 0
    #: per output: the finest central rungs look like a kink (the forward and backward
    #: differences they contain stay apart as the step shrinks instead of closing like h);
    #: a screen only, confirm with :func:`one_sided`
    kink_suspect: np.ndarray | None = None
    #: the step of the best *real* difference (the complex step replaces
    #: ``step``): rounding inside ``f`` limits what differences at this step can resolve
    real_step: float = 0.0


def rounding_noise(f: Callable[[np.ndarray], Any], x: np.ndarray, rng: np.random.Generator,
                   probes: int = 4, base: np.ndarray | None = None) -> np.ndarray:
    """The rounding noise of ``f`` near ``x``, measured: nudging every input by one ulp
    (random directions) reshuffles the rounding of every intermediate, so the spread of
    ``f`` shows how noisy it is (a sum of 150 terms that cancels to 0 is as noisy as the
    terms, not as its value; a sum of a million terms far less than its worst-case bound).

    >>> import numpy as np
    >>> x = np.linspace(0.1, 1.0, 1000)
    >>> float(rounding_noise(np.sum, x, np.random.default_rng(0))) < 1e-12
    True
    """
    base = np.asarray(f(x), dtype=float) if base is None else base
    worst = np.zeros_like(base, dtype=float)
    for _ in range(probes):
        moved = np.nextafter(x, np.where(rng.random(x.shape) < 0.5, -np.inf, np.inf))
        with np.errstate(all="ignore"):
            worst = np.fmax(worst, np.abs(np.asarray(f(moved), dtype=float) - base))
    return np.nan_to_num(worst, nan=0.0, posinf=0.0)


def unit_roundoff(dtype: Any = np.float64) -> float:
    """Unit roundoff ``u = eps / 2`` of a floating dtype (complex: of its real part).

    >>> unit_roundoff(np.float64)
    1.1102230246251565e-16
    >>> unit_roundoff("float32")
    5.960464477539063e-08
    """
    dt = np.dtype(getattr(dtype, "np", dtype))  # also accepts objects carrying a numpy dtype
    if dt.kind not in "fc":
        raise TypeError(f"unit_roundoff needs a floating dtype, got {dt}")
    return float(np.finfo(dt).eps) / 2.0


# --------------------------------------------------------------------------- evaluation

class _Fun:
    """``g(t) = f(x + t d)`` with realized steps, counting and nan/exception capture."""

    def __init__(self, f: Callable, x0: np.ndarray, d: np.ndarray, dtype: np.dtype) -> None:
        self.f = f
        self.dtype = dtype
        self.x0 = x0                      # in dtype
        self.x64 = x0.astype(np.float64)
        self.d = d                        # float64
        self.dd = float(d @ d)
        self.n_evals = 0
        self.m: int | None = None
        # a direction on few of many coordinates (a partial of a 1e6-entry input) moves only
        # those: the rest of x + t*d is x + (+-0.0), the same for every step of one sign
        self.support = np.flatnonzero(d) if d.size > 64 else None
        if self.support is not None and (self.support.size > d.size // 4
                                         or not np.isfinite(self.x64).all()):
            self.support = None   # dense, or x + t*0 is nan somewhere: the general path
        self._base: dict[bool, np.ndarray] = {}

    def point(self, t: float) -> tuple[np.ndarray, float]:
        if self.support is None:
            xp = (self.x64 + t * self.d).astype(self.dtype, copy=False)
            realized = float((xp.astype(np.float64) - self.x64) @ self.d) / self.dd
            return xp, realized
        s, neg = self.support, t < 0
        if neg not in self._base:  # x + t*0 is x + -0.0 for t < 0 (signed zeros kept)
            self._base[neg] = (self.x64 + (-0.0 if neg else 0.0)).astype(self.dtype)
        xp = self._base[neg].copy()
        xp[s] = (self.x64[s] + t * self.d[s]).astype(self.dtype)
        realized = float((xp[s].astype(np.float64) - self.x64[s]) @ self.d[s]) / self.dd
        return xp, realized

    def __call__(self, xp: np.ndarray, fresh: bool = False) -> np.ndarray | None:
        """f at ``xp`` (copied first unless ``fresh``: made for this call alone)."""
        self.n_evals += 1
        try:
            y = np.asarray(self.f(xp if fresh else xp.copy()))
            if y.dtype.kind == "c":   # a real function leaving its domain (np.emath)
                y = np.where(y.imag == 0, y.real, np.nan)
            y = y.astype(np.float64).reshape(-1)
        except _BAD_EVAL:
            return None
        if self.m is None:
            self.m = y.size
        elif y.size != self.m:
            raise ValueError(f"f returned {y.size} values at one point and {self.m} at another")
        return y


@dataclass
class _Side:
    t: float                   # realized step (> 0 means a usable displacement)
    y: np.ndarray | None       # None when f raised
    ok: bool = False           # usable: moved, and finite wherever f(x) is


@dataclass
class _Rung:
    h: float                   # nominal step
    plus: _Side | None = None
    minus: _Side | None = None
    # (method, has plus, has minus) -> its usable row or None: the walk asks for the rows
    # after every rung, and the rows of the other rungs do not change
    rows: dict = field(default_factory=dict, repr=False)


class _Ladder:
    """Rungs and their Richardson tableau for one method."""

    def __init__(self, fun: _Fun, f0: np.ndarray, mask: np.ndarray, u: float, s_in: float) -> None:
        self.fun, self.f0, self.mask, self.u, self.s_in = fun, f0, mask, u, s_in
        self.rungs: list[_Rung] = []
        self.version = 0   # bumped whenever a side is added: tableaus of one version agree

    def _ok(self, side: _Side | None) -> bool:
        return side is not None and side.ok

    def _side(self, t: float, xp: np.ndarray) -> _Side:
        y = self.fun(xp, fresh=True) if t > 0 else None
        ok = y is not None and bool(np.isfinite(y[self.mask]).all())
        return _Side(t, y, ok)

    def evaluate(self, h: float, sides: str) -> _Rung:
        """Evaluate f at x + h d ('+'), x - h d ('-'), reusing a rung at the same h."""
        rung = next((r for r in self.rungs if r.h == h), None)
        if rung is None:
            rung = _Rung(h)
            self.rungs.append(rung)
        if "+" in sides and rung.plus is None:
            xp, t = self.fun.point(h)
            rung.plus = self._side(t, xp)
            self.version += 1
        if "-" in sides and rung.minus is None:
            xm, t = self.fun.point(-h)
            rung.minus = self._side(-t, xm)
            self.version += 1
        return rung

    def usable(self, method: str) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray, _Rung]]:
        """(step, raw estimate, |f| bound, second difference or nan, rung) per usable rung,
        largest step first."""
        out = []
        for r in sorted(self.rungs, key=lambda r: -r.h):
            key = (method, r.plus is not None, r.minus is not None)
            if key not in r.rows:
                r.rows[key] = self._row(r, method)
            if r.rows[key] is not None:
                out.append(r.rows[key])
        return out

    def _row(self, r: _Rung, method: str) -> tuple | None:
        p_ok, m_ok = self._ok(r.plus), self._ok(r.minus)
        f0 = self.f0
        if method == "central" and p_ok and m_ok:
            w = 0.5 * (r.plus.t + r.minus.t)
            dv = (r.plus.y - r.minus.y) / (2.0 * w)
            big = np.maximum(abs(r.plus.y), abs(r.minus.y))   # f(x) is not used
            d2 = (r.plus.y - 2.0 * f0 + r.minus.y) / (r.plus.t * r.minus.t)
            return (w, dv, big, d2, r)
        if method == "forward" and p_ok:
            w = r.plus.t
            dv = (r.plus.y - f0) / w
            return (w, dv, np.maximum(abs(r.plus.y), abs(f0)), np.full_like(f0, np.nan), r)
        if method == "backward" and m_ok:
            w = r.minus.t
            dv = (f0 - r.minus.y) / w
            return (w, dv, np.maximum(abs(r.minus.y), abs(f0)), np.full_like(f0, np.nan),
                    r)
        return None


@dataclass
class _Tableau:
    steps: np.ndarray          # (n,) realized steps, decreasing
    z: np.ndarray              # (n,) extrapolation variable: steps**2 (central) or steps
    raw: np.ndarray            # (n, m) raw estimates
    big: np.ndarray            # (n, m) |f| bounds
    d2: np.ndarray             # (n, m) second differences (central) or nan
    T: np.ndarray              # (n, K, m) extrapolations; T[b, k] uses rungs b-k..b
    E: np.ndarray              # (n, K, m) error estimates (inf where undefined)
    noise: np.ndarray          # (n, m) rounding bound of each raw estimate
    value: np.ndarray          # (m,) best value per output
    error: np.ndarray          # (m,) its error
    best_b: np.ndarray         # (m,) finest rung of the best entry
    best_k: np.ndarray         # (m,) level of the best entry
    usable: np.ndarray         # (n, m) rungs below the floor (not found too coarse)


def _tableau(rows: list, method: str, u: float, s_in: float, m: int,
             g_noise: np.ndarray | None = None, floor: np.ndarray | None = None
             ) -> _Tableau | None:
    """Neville tableau of the rungs, error estimates, and the best entry per output.

    ``g_noise`` is an empirical size of the rounding noise in ``f`` (per output), used when
    it exceeds the model ``u * (|f| + |x| |f'|)``. Entries using a rung at or above
    ``floor`` (per output: steps found too large for the function) are never selected.
    """
    n = len(rows)
    if n == 0:
        return None
    if m == 1:
        return _tableau1(rows, method, u, s_in, g_noise, floor)
    return _tableau_np(rows, method, u, s_in, m, g_noise, floor)


def _tableau_np(rows: list, method: str, u: float, s_in: float, m: int,
                g_noise: np.ndarray | None = None, floor: np.ndarray | None = None
                ) -> _Tableau:
    """:func:`_tableau` on arrays, for any number of outputs."""
    n = len(rows)
    K = _KMAX[method] + 1
    steps = np.array([r[0] for r in rows])
    raw = np.array([r[1] for r in rows]).reshape(n, m)
    big = np.array([r[2] for r in rows]).reshape(n, m)
    d2 = np.array([r[3] for r in rows]).reshape(n, m)
    z = steps ** 2 if method == "central" else steps.copy()
    c_noise = 1.0 if method == "central" else 2.0
    noise = 2 * c_noise * u * (big + s_in * abs(raw)) / steps[:, None]
    if g_noise is not None:
        noise = np.maximum(noise, c_noise * g_noise / steps[:, None])
    T = np.full((n, K, m), np.nan)
    N = np.full((n, K, m), np.inf)
    E = np.full((n, K, m), np.inf)
    T[:, 0] = raw
    N[:, 0] = noise
    # one level at a time, all rungs at once (the same operations entry by entry as a
    # loop over rungs: FD runs ~2 tableaus per partial, and numpy calls on tiny arrays
    # were most of its cost)
    for k in range(1, min(n - 1, K - 1) + 1):
        za, zb = z[:n - k, None], z[k:, None]
        den = za - zb
        good = (den > 0)[:, 0]
        t = (za * T[k:, k - 1] - zb * T[k - 1:n - 1, k - 1]) / den
        nk = (za * N[k:, k - 1] + zb * N[k - 1:n - 1, k - 1]) / den
        T[k:, k] = np.where(good[:, None], t, np.nan)
        N[k:, k] = np.where(good[:, None], nk, np.inf)
    tiny = 4.0 * np.finfo(np.float64).eps
    for k in range(0, min(n - 1, K - 1) + 1):
        # distances to other estimates, each widened by that estimate's rounding
        # bound (a truncation difference can hide under the other one's noise):
        # one order lower on the same rungs, the same order one rung coarser, and
        # the finer neighbour (less truncation, more rounding); rungs b = k..n-1
        here = T[k:, k]
        diff = np.zeros((n - k, m))
        if k:
            diff = np.maximum(diff, abs(here - T[k:, k - 1]) + N[k:, k - 1])
            # coarser: (b-1, k) where b-1 >= k, else (b-1, k-1)
            ct = T[k - 1:n - 1, k].copy()
            cn = N[k - 1:n - 1, k].copy()
            ct[0], cn[0] = T[k - 1, k - 1], N[k - 1, k - 1]
            diff = np.maximum(diff, abs(here - ct) + cn)
        elif n > 1:
            c = np.maximum(diff[1:], abs(here[1:] - T[:n - 1, 0]) + N[:n - 1, 0])
            diff = np.concatenate([diff[:1], c])
        if n - k > 1:   # finer: (b+1, k)
            f = np.maximum(diff[:-1], abs(here[:-1] - T[k + 1:, k]) + N[k + 1:, k])
            diff = np.concatenate([f, diff[-1:]])
        err = _SAFETY * diff + N[k:, k] + tiny * abs(here)
        ok = np.isfinite(err)
        if floor is not None:
            ok &= steps[:n - k, None] < floor[None, :]
        E[k:, k] = np.where(ok, err, np.inf)
    flat = E.reshape(n * K, m)
    idx = np.argmin(flat, axis=0)
    cols = np.arange(m)
    value = T.reshape(n * K, m)[idx, cols]
    error = flat[idx, cols]
    if n == 1:   # a lone rung: no second opinion
        value, error = raw[0].copy(), np.full(m, np.inf)
        idx = np.zeros(m, dtype=int)
    usable = np.ones((n, m), bool) if floor is None else steps[:, None] < floor[None, :]
    return _Tableau(steps, z, raw, big, d2, T, E, noise, value, error, idx // K, idx % K,
                    usable)


def _nmax(a: float, b: float) -> float:
    """``np.maximum`` of two floats: nan if either is nan."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


def _tableau1(rows: list, method: str, u: float, s_in: float,
              g_noise: np.ndarray | None, floor: np.ndarray | None) -> _Tableau:
    """:func:`_tableau` for one output, in Python floats: the same IEEE operations in the
    same order, entry by entry (a scalar loss is the common case, and ~60 numpy calls on
    1-element arrays were most of a partial's cost). Divisions happen only where the numpy
    version keeps their result (``den > 0``; steps are positive), so none divides by 0.
    ``tests/test_finite_diff.py`` holds the two against each other field by field."""
    n = len(rows)
    K = _KMAX[method] + 1
    steps = [float(r[0]) for r in rows]
    raw = [float(r[1][0]) for r in rows]
    big = [float(r[2][0]) for r in rows]
    d2 = [float(r[3][0]) for r in rows]
    central = method == "central"
    z = [s * s for s in steps] if central else list(steps)
    c_noise = 1.0 if central else 2.0
    scale = 2 * c_noise * u
    noise = [scale * (bg + s_in * abs(rw)) / s for bg, rw, s in zip(big, raw, steps)]
    if g_noise is not None:
        g = float(g_noise[0])
        noise = [_nmax(nz, c_noise * g / s) for nz, s in zip(noise, steps)]
    nan, inf = math.nan, math.inf
    T = [[nan] * K for _ in range(n)]
    N = [[inf] * K for _ in range(n)]
    E = [[inf] * K for _ in range(n)]
    for b in range(n):
        T[b][0] = raw[b]
        N[b][0] = noise[b]
    top = min(n - 1, K - 1)
    for k in range(1, top + 1):
        for b in range(k, n):
            za, zb = z[b - k], z[b]
            den = za - zb
            if den > 0:
                T[b][k] = (za * T[b][k - 1] - zb * T[b - 1][k - 1]) / den
                N[b][k] = (za * N[b][k - 1] + zb * N[b - 1][k - 1]) / den
    tiny = 4.0 * float(np.finfo(np.float64).eps)
    fl = None if floor is None else float(floor[0])
    for k in range(0, top + 1):
        for b in range(k, n):
            here = T[b][k]
            diff = 0.0
            if k:
                diff = _nmax(diff, abs(here - T[b][k - 1]) + N[b][k - 1])
                if b == k:
                    ct, cn = T[k - 1][k - 1], N[k - 1][k - 1]
                else:
                    ct, cn = T[b - 1][k], N[b - 1][k]
                diff = _nmax(diff, abs(here - ct) + cn)
            elif n > 1 and b > 0:
                diff = _nmax(diff, abs(here - T[b - 1][0]) + N[b - 1][0])
            if n - k > 1 and b < n - 1:
                diff = _nmax(diff, abs(here - T[b + 1][k]) + N[b + 1][k])
            err = _SAFETY * diff + N[b][k] + tiny * abs(here)
            ok = math.isfinite(err) and (fl is None or steps[b - k] < fl)
            E[b][k] = err if ok else inf
    best, idx = inf, 0
    for b in range(n):
        for k in range(K):
            if E[b][k] < best:
                best, idx = E[b][k], b * K + k
    value, error = T[idx // K][idx % K], E[idx // K][idx % K]
    if n == 1:   # a lone rung: no second opinion
        value, error, idx = raw[0], inf, 0
    usable = np.ones((n, 1), bool) if fl is None else \
        np.array([[s < fl] for s in steps], dtype=bool)
    return _Tableau(np.array(steps), np.array(z), np.array(raw).reshape(n, 1),
                    np.array(big).reshape(n, 1), np.array(d2).reshape(n, 1),
                    np.array(T).reshape(n, K, 1), np.array(E).reshape(n, K, 1),
                    np.array(noise).reshape(n, 1), np.array([value]), np.array([error]),
                    np.array([idx // K]), np.array([idx % K]), usable)


_NOISE, _ASYMPTOTIC, _GARBAGE, _UNKNOWN = 0, 1, 2, 3


def _regimes(tab: _Tableau, u: float, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regime of the finest three rungs per output, and an empirical noise size of f.

    Asymptotic: successive differences shrink as the error expansion predicts. Noise: the
    differences are rounding (within the model, or implying changes of f below
    u**(1/4) |f|, as in ``(1 - cos x) / x**2``). Garbage: the step is too large for the
    function's own scale (``sin(1e6 x)`` with h = 1e-4).
    """
    m = tab.raw.shape[1]
    if len(tab.steps) < 3:
        return np.full(m, _UNKNOWN), np.zeros(m)
    if m == 1:
        return _regimes1(tab, u, float(floor[0]))
    return _regimes_np(tab, u, floor)


def _regimes_np(tab: _Tableau, u: float, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_regimes` on arrays, for any number of outputs."""
    m = tab.raw.shape[1]
    if len(tab.steps) < 3:
        return np.full(m, _UNKNOWN), np.zeros(m)
    below = np.count_nonzero(tab.steps[:, None] < floor[None, :], axis=0)
    z = tab.z[-3:]
    d0, d1, d2 = tab.raw[-3:]
    nz = tab.noise[-3:]
    a, b = d0 - d1, d1 - d2
    model = (abs(b) <= 4 * (nz[1] + nz[2])) & (abs(a) <= 4 * (nz[0] + nz[1]))
    expected = (z[0] - z[1]) / (z[1] - z[2])
    q = a / b
    asym = (b == 0) | ((a != 0) & (q >= expected / 2) & (q <= 2 * expected ** 3))
    # (a wrong call of 'garbage' walks down into the rounding staircase of f and
    # returns a confident wrong number; a wrong 'noise' only costs accuracy)
    implied = np.maximum(abs(a) * tab.steps[-2], abs(b) * tab.steps[-1])
    small = implied <= u ** 0.25 * tab.big[-1]
    regime = np.where(model, _NOISE, np.where(asym, _ASYMPTOTIC,
                                              np.where(small, _NOISE, _GARBAGE)))
    regime = np.where(below < 3, _UNKNOWN, regime)   # rungs above a jump are not used
    g_noise = np.where((regime == _NOISE) & ~model & np.isfinite(implied), implied, 0.0)
    return regime, g_noise


def _div(a: float, b: float) -> float:
    """``a / b`` as numpy divides (inf or nan for b = 0, signs kept)."""
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _regimes1(tab: _Tableau, u: float, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_regimes` for one output, in Python floats (the same operations in the same
    order; ``tests/test_finite_diff.py`` holds the two against each other)."""
    steps = tab.steps.tolist()
    below = sum(1 for s in steps if s < floor)
    z0, z1, z2 = tab.z[-3:].tolist()
    d0, d1, d2 = tab.raw[-3:, 0].tolist()
    n0, n1, n2 = tab.noise[-3:, 0].tolist()
    a, b = d0 - d1, d1 - d2
    model = abs(b) <= 4 * (n1 + n2) and abs(a) <= 4 * (n0 + n1)
    expected = _div(z0 - z1, z1 - z2)
    q = _div(a, b)
    cube = float(np.float64(expected) ** 3)   # numpy's power: inf past the range, no raise
    asym = b == 0 or (a != 0 and q >= expected / 2 and q <= 2 * cube)
    implied = _nmax(abs(a) * steps[-2], abs(b) * steps[-1])
    small = implied <= u ** 0.25 * float(tab.big[-1, 0])
    regime = _NOISE if model else _ASYMPTOTIC if asym else _NOISE if small else _GARBAGE
    if below < 3:
        regime = _UNKNOWN   # rungs above a jump are not used
    seen = implied if regime == _NOISE and not model and math.isfinite(implied) else 0.0
    return np.array([regime]), np.array([seen])


def _magnitude(tab: _Tableau, s_t: float, floor_factor: float) -> np.ndarray:
    """The size a derivative error is measured against: |value|, but for a derivative that
    is ~0 at least ``floor_factor`` times |f| / scale or the slopes seen by the usable
    rungs (tanh at 30; x**3 at 0)."""
    seen = np.where(tab.usable, np.maximum(tab.big / s_t, abs(tab.raw)), 0.0)
    seen = np.where(np.isfinite(seen), seen, 0.0).max(axis=0)
    return np.maximum(abs(tab.value), floor_factor * seen)


def _walk(lad: _Ladder, method: str, h0: float, s_t: float, u: float, m: int,
          target: float, notes: list[str]) -> tuple[str, _Tableau | None]:
    """Adaptive ladder search; may switch ``method`` to one-sided. Returns (method, tableau)."""
    fun = lad.fun
    going_up_blocked = False
    h_cap = _MAX_REL_STEP * s_t
    next_h, direction = h0, "down"
    g_noise = np.zeros(m)
    floor = np.full(m, np.inf)   # per output: rungs at or above it were too coarse
    mask_all = lad.mask
    # the loop's last tableau and regimes, with what they were made from: the final pass
    # below recomputes exactly these unless a rung, the method, g_noise or floor changed
    last: tuple | None = None
    for _ in range(64):
        if fun.n_evals >= MAX_EVALS:
            break
        sides = "+-" if method == "central" else ("+" if method == "forward" else "-")
        before = fun.n_evals
        rung = lad.evaluate(next_h, sides)
        if fun.n_evals == before and _ > 0:   # that step was tried already: nothing new
            break
        if method == "central":
            p_ok, m_ok = lad._ok(rung.plus), lad._ok(rung.minus)
            if not (p_ok and m_ok):
                if direction == "up":
                    going_up_blocked = True
                elif p_ok or m_ok:
                    method = "forward" if p_ok else "backward"
                    bad = "x-h" if p_ok else "x+h"
                    notes.append(f"non-finite value at {bad} (h={rung.h:.3g}); "
                                 f"used {method} differences")
                    g_noise, floor = np.zeros(m), np.full(m, np.inf)
        elif direction == "up" and not lad._ok(rung.plus if method == "forward" else rung.minus):
            going_up_blocked = True
        rows = lad.usable(method)
        n = len(rows)
        if n < 3:
            smallest = min([r[4].h for r in rows] + [next_h])
            next_h, direction = smallest / RATIO, "down"
            continue
        tab = _tableau(rows, method, u, lad.s_in, m, g_noise, floor)
        regime, seen = _regimes(tab, u, floor)
        last = (lad.version, method, g_noise, floor, rows, tab, regime, seen)
        garbage = mask_all & (regime == _GARBAGE)
        if garbage.any():
            floor = np.where(garbage, min(r[0] for r in rows) * (1 - 1e-9), floor)
        if (seen > g_noise).any() or garbage.any():
            g_noise = np.maximum(g_noise, seen)
            tab = _tableau(rows, method, u, lad.s_in, m, g_noise, floor)
            last = (lad.version, method, g_noise, floor, rows, tab, None, None)
        mask = lad.mask
        mag = _magnitude(tab, s_t, u ** 0.25)   # a ~0 derivative is settled sooner
        ratio = np.where(mask, tab.error / (target * mag), 0.0)
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        # an estimate at the finest rung outside the asymptotic regime needs a finer rung
        # to confirm it (rounding noise can agree with itself by chance)
        unconfirmed = mask & (tab.best_b == n - 1) & (regime != _ASYMPTOTIC)
        ratio = np.where(unconfirmed, np.maximum(ratio, 1.0 + 1e-9), ratio)
        if not (ratio > 1.0).any():
            break
        c = int(np.argmax(ratio))
        b, k = int(tab.best_b[c]), int(tab.best_k[c])
        h_min = min(r[4].h for r in rows)
        # walking up stays below the rungs found too coarse for this output
        ceiling = min(h_cap, floor[c])
        below = [r[4].h for r in rows if r[0] < floor[c]]
        h_top = max(below) if below else h_min
        up_h = min(h_top * JUMP_UP, ceiling / RATIO) if math.isfinite(floor[c]) else \
            min(h_top * JUMP_UP, h_cap)
        can_up = not going_up_blocked and up_h > h_top * 1.5
        if regime[c] == _GARBAGE:
            next_h, direction = h_min / JUMP_DOWN, "down"
        elif regime[c] == _NOISE:
            if b - k == 0 and can_up:
                next_h, direction = up_h, "up"
            else:
                break
        elif regime[c] == _UNKNOWN:       # fewer than three rungs below a jump
            next_h, direction = h_min / RATIO, "down"
        elif b >= n - 2:
            # far from the target with rounding far below it: a double step down
            quiet = tab.noise[-1, c] * RATIO ** 2 < target * mag[c]
            fast = regime[c] == _ASYMPTOTIC and ratio[c] > RATIO ** 4 and quiet
            next_h, direction = h_min / (RATIO ** 2 if fast else RATIO), "down"
        elif b - k == 0 and can_up:
            next_h, direction = up_h, "up"
        else:
            break
        if next_h <= 0 or not math.isfinite(next_h):
            break
    if last is not None and last[0] == lad.version and last[1] == method and \
            last[2] is g_noise and last[3] is floor:
        rows, tab = last[4], last[5]
    else:
        rows = lad.usable(method)
        tab = _tableau(rows, method, u, lad.s_in, m, g_noise, floor)
        last = None
    if tab is not None and len(rows) >= 3:
        regime, seen = (last[6], last[7]) if last is not None and last[6] is not None else \
            _regimes(tab, u, floor)
        garbage = mask_all & (regime == _GARBAGE)
        floor = np.where(garbage, min(r[0] for r in rows) * (1 - 1e-9), floor)
        if (seen > g_noise).any() or garbage.any():
            tab = _tableau(rows, method, u, lad.s_in, m, np.maximum(g_noise, seen), floor)
    return method, tab


# --------------------------------------------------------------------------- helpers

def _vector(a: Any, dtype: np.dtype | type, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(dtype).reshape(-1)


def _default_scale(x0: np.ndarray, d: np.ndarray) -> float:
    involved = np.abs(x0[d != 0].astype(np.float64))
    involved = involved[np.isfinite(involved)]
    if involved.size == 0 or not (involved > 0).any():
        return 1.0
    return max(float(involved.max()), _SCALE_FLOOR)


def _complex_step(f_complex: Callable, x64: np.ndarray, d: np.ndarray, dtype: np.dtype,
                  s_t: float, m: int, expect: np.ndarray
                  ) -> tuple[np.ndarray | None, float, str]:
    """(Im f(x + i h d) / h, h, "") or (None, 0, why not). h = scale * tiny**0.6 (1e-185 in
    float64), or tiny**0.3 when the imaginary part of an expected nonzero slope would
    fall out of the normal range."""
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    finfo = np.finfo(dtype)
    tiny, u = float(finfo.tiny), float(finfo.eps) / 2
    dd = float(d @ d)
    last, last_h = None, 0.0
    for power in (0.6, 0.3):
        h = s_t * tiny ** power
        z = (x64 + 1j * (h * d)).astype(cdtype)
        realized = float(z.imag.astype(np.float64) @ d) / dd
        if not realized > 0:
            continue
        try:
            y = np.asarray(f_complex(z.copy()))
            imag = (y.imag if y.dtype.kind == "c" else np.zeros(y.shape)).astype(np.float64)
            imag = imag.reshape(-1)
            v = imag / realized
        except Exception as exc:  # noqa: BLE001 - any failure means "not complex-safe"
            return None, 0.0, f"f_complex raised {type(exc).__name__}"
        if v.size != m:
            return None, 0.0, f"f_complex returned {v.size} values, f returned {m}"
        if not np.isfinite(v).all():
            return None, 0.0, "f_complex gave non-finite values"
        last, last_h = v, realized
        # Underflow: an imaginary part far below the normal range has lost its digits.
        lost = (abs(expect) * realized < tiny / u) & (expect != 0) & np.isfinite(expect)
        if not lost.any():
            return v, realized, ""
    if last is None:
        return None, 0.0, "complex step underflows"
    return last, last_h, ""


# --------------------------------------------------------------------------- public API

def derivative(f: Callable[[np.ndarray], Any], x: Any, direction: Any, *,
               scale: float | None = None, eps: float | None = None, dtype: Any = np.float64,
               f_complex: Callable | None = None,
               record_ladder: bool = False, side: str = "central",
               fx: np.ndarray | None = None) -> FDEstimate:
    """Directional derivative d/dt f(x + t*direction) at t=0, for f: R^n -> R^m
    (flat float vectors in and out).

    ``scale``: typical size of the perturbed coordinates (steps are relative to it; by default
    ``max|x_j|`` over the direction's support, at least 1e-8, and 1 at x = 0). ``eps``: a
    fixed step (in units of t); no search, the error comes from a second step eps/2.
    ``dtype``: the precision ``f`` computes in (sets the unit roundoff; ``x`` is rounded to
    it). ``f_complex``: the same function on complex vectors, for the complex step.
    ``record_ladder``: also sweep steps ``scale * 10**(-j/2)`` down to about
    ``u * scale`` into ``ladder`` (for the V plot; the estimate itself is unchanged).
    ``side``: ``"forward"`` or ``"backward"`` for a one-sided derivative (right or left;
    see :func:`one_sided`). ``fx``: ``f(x)`` flattened to float64, when already known (the
    partials of one point share it; not counted in ``n_evals``).

    >>> import numpy as np
    >>> est = derivative(lambda v: np.sin(1e3 * v), np.array([1.0]), np.array([1.0]))
    >>> exact = 1e3 * np.cos(1e3)
    >>> bool(abs(est.value[0] - exact) <= est.error[0] <= 1e-9 * abs(exact)), est.method
    (True, 'central')
    >>> est = derivative(np.log, np.array([1e-12]), np.array([1.0]))   # x - h < 0: one-sided
    >>> est.method, bool(abs(est.value[0] - 1e12) <= est.error[0])
    ('forward', True)
    """
    # one errstate for the whole estimate: the helpers below run inside it (entering one per
    # helper call was a tenth of the cost of a partial)
    with np.errstate(all="ignore"):
        return _derivative(f, x, direction, scale, eps, dtype, f_complex, record_ladder, side,
                           fx)


def _derivative(f: Callable, x: Any, direction: Any, scale: float | None, eps: float | None,
                dtype: Any, f_complex: Callable | None, record_ladder: bool, side: str,
                fx: np.ndarray | None) -> FDEstimate:
    dt = np.dtype(getattr(dtype, "np", dtype))
    if dt.kind != "f":
        raise TypeError(f"dtype must be a real floating dtype, got {dt}")
    if side not in _KMAX:
        raise ValueError(f"side must be one of {sorted(_KMAX)}, got {side!r}")
    u = unit_roundoff(dt)
    x0 = _vector(x, dt, "x")
    d = _vector(direction, np.float64, "direction")
    if d.shape != x0.shape:
        raise ValueError(f"direction has {d.size} entries, x has {x0.size}")
    if not np.isfinite(d).all():
        raise ValueError("direction must be finite")
    fun = _Fun(f, x0, d, dt)
    f0 = fun(x0) if fx is None else np.asarray(fx, dtype=np.float64).reshape(-1)
    if f0 is None:
        return FDEstimate(np.full(1, np.nan), np.full(1, np.inf), 0.0, "central", [], False,
                          "f raised at x", fun.n_evals)
    m = f0.size
    if m == 0:
        return FDEstimate(np.zeros(0), np.zeros(0), 0.0, "central", [], True, "", fun.n_evals)
    mask = np.isfinite(f0)
    dnorm = float(np.abs(d).max()) if d.size else 0.0
    if dnorm == 0.0:
        val = np.where(mask, 0.0, np.nan)
        return FDEstimate(val, np.where(mask, 0.0, np.inf), 0.0, "central", [], bool(mask.all()),
                          "" if mask.all() else "non-finite value at x", fun.n_evals)
    s_x = float(scale) if scale is not None else _default_scale(x0, d)
    if not (s_x > 0 and math.isfinite(s_x)):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    s_t = s_x / dnorm                            # the scale in units of t
    sup = np.abs(x0[d != 0].astype(np.float64))
    s_in = float(sup[np.isfinite(sup)].max(initial=0.0)) / dnorm   # input-rounding lever
    notes: list[str] = []
    if not mask.any():
        return FDEstimate(np.full(m, np.nan), np.full(m, np.inf), 0.0, "central", [], False,
                          "non-finite value at x", fun.n_evals)
    if not mask.all():
        notes.append(f"non-finite value at x for output(s) {np.flatnonzero(~mask).tolist()[:8]}")
    lad = _Ladder(fun, np.where(mask, f0, 0.0), mask, u, s_in)
    target = u ** 0.55                          # 1.8e-9 in float64, 1.1e-4 in float32

    if eps is not None:
        method, tab = _fixed_step(lad, float(eps), m, u, notes)
    else:
        h0 = (256.0 * u) ** 0.2 * s_t
        method, tab = _walk(lad, side, h0, s_t, u, m, target, notes)

    tab_method = method
    if tab is None:
        value, error = np.full(m, np.nan), np.full(m, np.inf)
        step, ladder = 0.0, []
        reliable = False
        notes.append("non-finite values of f on both sides of x for every step tried")
        mag = np.full(m, np.inf)
    else:
        value, error = tab.value.copy(), tab.error.copy()
        mag = _magnitude(tab, s_t, math.sqrt(u))
        worst = int(np.argmax(np.where(mask, error / np.maximum(mag, 1e-300), -1.0)))
        step = float(tab.steps[tab.best_b[worst]])
        ladder = [(float(s), r.copy()) for s, r in zip(tab.steps, tab.raw)]
        settled = error <= _RELIABLE_REL * mag
        reliable = bool(settled[mask].all())
        if not reliable:
            notes.append("estimates disagree: the error estimate stays large at every step")
            # an unsettled estimate that does not even fix the sign: its error is unknown
            error = np.where(~settled & (error >= abs(value)), np.inf, error)
    value = np.where(mask, value, np.nan)
    error = np.where(mask & np.isfinite(error), error, np.inf)

    if f_complex is not None and tab is not None and not reliable:
        notes.append("complex step not used: the real differences it must agree with are "
                     "unreliable")
    elif f_complex is not None and tab is not None:
        cs, cs_h, why = _complex_step(f_complex, fun.x64, d, dt, s_t, m, value)
        if cs is None:
            notes.append(f"complex step not used: {why}")
        else:
            agree = abs(cs - value) <= error + 4 * u * abs(cs)
            if agree[mask].all():
                g2 = np.zeros(m)
                if method == "central":
                    g2 = abs(tab.d2[tab.best_b, np.arange(m)])
                    g2 = np.where(np.isfinite(g2), g2, 0.0)
                value = np.where(mask, cs, np.nan)
                error = np.where(mask, 4 * u * abs(cs) + 2 * u * s_in * g2, np.inf)
                method, step = "complex-step", cs_h
            else:
                notes.append("complex step disagrees with the real differences "
                             "(f_complex is not complex-safe here); not used")

    real_step = step if tab is None else float(tab.steps[tab.best_b[worst]])
    reliable = reliable and bool(mask.all())
    # a central tableau has central rows (no second look at the rungs)
    suspect = _kink_screen(tab) if tab is not None and side == "central" and (
        tab_method == "central" or lad.usable("central")) else np.zeros(m, bool)
    if record_ladder and tab is not None:
        ladder = _sweep(lad, method if method in _KMAX else "central", s_t, u, ladder)
    return FDEstimate(value, error, step, method, ladder, reliable, "; ".join(notes),
                      fun.n_evals, suspect & mask, real_step)


def _kink_screen(tab: _Tableau) -> np.ndarray:
    """Per output: do the two finest central rungs look like a kink? Each holds a forward
    and a backward difference; their gap ``(f(x+h) - 2 f(x) + f(x-h)) / h`` closes like
    ``h f''`` on a smooth function (by 3.7x per rung) and stays at ``right - left`` at a
    kink. Rounding (``~4 u |f| / h``) must not explain it."""
    if len(tab.steps) < 2 or not np.isfinite(tab.d2[-2:]).all():
        return np.zeros(tab.raw.shape[1], bool)
    a, b = tab.d2[-2] * tab.steps[-2], tab.d2[-1] * tab.steps[-1]
    quiet = (abs(a) > 8 * tab.noise[-2]) & (abs(b) > 8 * tab.noise[-1])
    return quiet & (np.sign(a) == np.sign(b)) & (abs(b) >= 0.6 * abs(a))


def one_sided(f: Callable[[np.ndarray], Any], x: Any, direction: Any,
              **options: Any) -> tuple[FDEstimate, FDEstimate]:
    """Left (backward) and right (forward) derivatives along ``direction``, each with its
    own ladder and error estimate (options as :func:`derivative`). At a kink they differ:

    >>> import numpy as np
    >>> left, right = one_sided(lambda v: np.maximum(v, 0), np.array([0.0]), np.array([1.0]))
    >>> float(left.value[0]), float(right.value[0])
    (0.0, 1.0)
    """
    return (derivative(f, x, direction, side="backward", **options),
            derivative(f, x, direction, side="forward", **options))


def is_kink(left: FDEstimate, right: FDEstimate, safety: float = 4.0) -> np.ndarray:
    """Per output: the one-sided derivatives disagree beyond ``safety`` times their error
    estimates (both must be finite)."""
    with np.errstate(all="ignore"):
        gap = abs(right.value - left.value)
        allowed = safety * (left.error + right.error) + \
            8 * np.finfo(np.float64).eps * (abs(left.value) + abs(right.value))
        return np.isfinite(gap) & np.isfinite(allowed) & (gap > allowed)


def _fixed_step(lad: _Ladder, eps: float, m: int, u: float,
                notes: list[str]) -> tuple[str, _Tableau | None]:
    """User-fixed step: central at eps and eps/2 (one-sided if needed), Richardson once."""
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be positive and finite, got {eps!r}")
    method = "central"
    for h in (eps, eps / 2):
        rung = lad.evaluate(h, "+-")
        if method == "central" and not (lad._ok(rung.plus) and lad._ok(rung.minus)):
            if lad._ok(rung.plus) or lad._ok(rung.minus):
                method = "forward" if lad._ok(rung.plus) else "backward"
                notes.append(f"non-finite value at {'x-h' if method == 'forward' else 'x+h'} "
                             f"(h={h:.3g}); used {method} differences")
    rows = lad.usable(method)
    tab = _tableau(rows, method, u, lad.s_in, m)
    if tab is not None and len(rows) == 2:   # value: Richardson; error: vs the finer raw one
        err = abs(tab.T[1, 1] - tab.raw[1]) + tab.noise[1] + tab.noise[0]
        tab.value, tab.error = tab.T[1, 1].copy(), np.where(np.isfinite(err), err, np.inf)
        tab.best_b[:], tab.best_k[:] = 0, 1   # report the user's step
    return method, tab


def _sweep(lad: _Ladder, method: str, s_t: float, u: float,
           ladder: list[tuple[float, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
    """Dense raw estimates from 0.1*scale down to about u*scale, merged into the ladder."""
    sides = "+-" if method == "central" else ("+" if method == "forward" else "-")
    j_max = int(math.ceil(-2 * math.log10(u))) + 1
    for j in range(2, j_max + 1):
        lad.evaluate(s_t * 10.0 ** (-j / 2), sides)
    rows = lad.usable(method)
    return [(float(r[0]), r[1].copy()) for r in rows]


def partials(f: Callable[[np.ndarray], Any], x: Any, indices: Iterable[int] | None = None,
             **same_options: Any) -> list[FDEstimate]:
    """One estimate per coordinate index (direction = unit vector e_j), i.e. Jacobian columns.

    ``indices`` are flat indices into ``x`` (None: all). Options are those of ``derivative``
    (``fx``, f(x) when known, is shared by two or more partials; by default f(x) is then
    evaluated once).

    >>> import numpy as np
    >>> cols = partials(lambda v: np.array([v[0] * v[1], np.exp(v[1])]), [2.0, 0.5], [0, 1])
    >>> np.round(np.stack([c.value for c in cols], axis=1), 10)   # the Jacobian
    array([[0.5       , 2.        ],
           [0.        , 1.64872127]])
    """
    dt = np.dtype(getattr(same_options.get("dtype", np.float64), "np",
                          same_options.get("dtype", np.float64)))
    x0 = _vector(x, dt, "x")
    idx = list(range(x0.size)) if indices is None else [int(i) for i in np.atleast_1d(indices)]
    out = []
    for j in idx:
        if not -x0.size <= j < x0.size:
            raise IndexError(f"index {j} out of range for x with {x0.size} entries")
    # f(x) once, shared by every partial (None if f raises there: each then says so)
    fx = same_options.pop("fx", None)
    if len(idx) <= 1:
        fx = None   # a lone partial evaluates f(x) itself, within its evaluation budget
    elif fx is None:
        with np.errstate(all="ignore"):
            fx = _Fun(f, x0, np.zeros(x0.size), dt)(x0)
    for j in idx:
        e = np.zeros(x0.size)
        e[j] = 1.0
        out.append(derivative(f, x0, e, fx=fx, **same_options))
    return out
