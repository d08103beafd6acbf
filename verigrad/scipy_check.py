"""Hand-written derivatives for scipy, checked against an exact reference.

``vg.check_grad(fun, jac, x0, *args)`` takes scipy's calling convention (``fun(x, *args)``
returns a float or a vector, ``jac(x, *args)`` an array) and returns a :class:`CheckReport`:
the user's ``jac`` is the claimed derivative, compared entry by entry with the exact values of
the SymPy mirror of ``fun`` (run on verigrad tensors through numpy's protocols, see
:mod:`verigrad.numpy_bridge`), with finite differences as the witness, under the checker's
tolerance model. ``hess=`` is compared with the mirror's second derivatives of ``fun`` (never
with differences of ``jac``), and the report says which of the two is wrong.

Where ``fun`` cannot be recorded (it calls a numpy function without a verigrad op, converts
its input with ``np.asarray``, calls a C extension ...), the report says which call and finite
differences of ``fun`` as a whole are the reference.

>>> import numpy as np, verigrad as vg
>>> fun = lambda x: np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
>>> def jac(x):
...     g = np.zeros_like(x)
...     g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
...     g[1:] += 200 * (x[1:] - x[:-1] ** 2)
...     return g
>>> vg.check_grad(fun, jac, [1.3, 0.7, 0.8], nearby=0).verdict
'pass'
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .autograd import enable_grad
from .autograd.engine import grad as autograd_grad
from .checker.core import DEFAULTS, check
from .checker.problem import CheckInputError, Problem, _as_float_array, register_option
from .checker.report import CheckReport, Culprit, Entry
from .numpy_bridge import Unrecordable, recording
from .tensor import Tensor, tensor

__all__ = ["check_grad", "check_jacobian"]


class _JacEntry(Entry):
    """An entry of ``jac``: ``x[1]`` for a scalar ``fun``, ``d fun[0] / d x[1]`` for a vector."""

    @property
    def label(self) -> str:
        idx = f"[{', '.join(map(str, self.index))}]" if self.index else ""
        if not self.output or self.output[0] == "v":
            return Entry.label.fget(self)
        return f"d fun[{', '.join(map(str, self.output))}] / d {self.input}{idx}"


class _HessEntry(Entry):
    """An entry of ``hess``: ``H[i, j] = d2 fun / d x[i] d x[j]`` (flat input indices)."""

    flat_col: int = 0

    @property
    def label(self) -> str:
        if not self.output or self.output[0] == "v":
            return "H " + Entry.label.fget(self)
        return f"H[{self.output[0]}, {self.flat_col}]"


@dataclass
class _Setup:
    fun: Callable
    values: list[Any]          # the call's arguments: x0, *args (wrt ones as float64 arrays)
    wrt: tuple[int, ...]
    names: list[str]
    recorded: bool
    why: str                   # why fun is not recorded ("" when it is)
    m: int                     # number of output entries
    out_shape: tuple

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(np.shape(self.values[i]))) for i in self.wrt]

    @property
    def n(self) -> int:
        return sum(self.sizes)


def _display(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _arg_names(fun: Callable, count: int) -> list[str]:
    """Names of fun's positional arguments (``fit(x, *params)``: x, params[0], params[1])."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    star = None
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            star = p.name
            break
    out = names[:count]
    k = 0
    while len(out) < count:
        out.append(f"{star}[{k}]" if star else ("x" if not out else f"args[{len(out) - 1}]"))
        k += 1
    return out


def _as_output(out: Any) -> Any:
    """fun's result on tensors: one tensor (a list of 0-d tensors is stacked, as np.array
    would)."""
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, Tensor) for o in out):
        from . import ops as O

        if len({o.shape for o in out}) == 1:
            return O.stack(list(out))
    return out


def _plain_call(fun: Callable, values: list[Any]) -> np.ndarray:
    out = fun(*[np.array(v) if isinstance(v, np.ndarray) else v for v in values])
    return np.asarray(out)


def _setup(fun: Callable, x0: Any, args: tuple, wrt: Any) -> _Setup:
    if not callable(fun):
        raise CheckInputError(f"fun must be callable, got {type(fun).__name__}")
    count = 1 + len(args)
    wrt_t = (wrt,) if isinstance(wrt, (int, np.integer)) else tuple(int(w) for w in wrt)
    if not wrt_t or any(not 0 <= w < count for w in wrt_t) or len(set(wrt_t)) != len(wrt_t):
        raise CheckInputError(f"wrt={wrt!r} must name distinct argument positions among 0..."
                              f"{count - 1} (0 is x0, k is args[k-1])")
    names = _arg_names(fun, count)
    values: list[Any] = [x0, *args]
    for w in wrt_t:
        values[w] = _as_float_array(names[w], values[w])[0]
        if values[w].size == 0:
            raise CheckInputError(f"{names[w]} is empty (shape {values[w].shape}): there is no "
                                  f"derivative to check")
    # fun on plain arrays: the values the tape must reproduce
    try:
        with np.errstate(all="ignore"):
            plain = _plain_call(fun, values)
    except Exception as e:  # the user's function fails on its own inputs: say so
        raise CheckInputError(f"{_display(fun)} raised {type(e).__name__} at x0: {e}") from e
    if plain.dtype == object or plain.dtype.kind not in "biuf":
        raise CheckInputError(f"{_display(fun)} must return a float or an array of floats, got "
                              f"{plain.dtype}")
    setup = _Setup(fun, values, wrt_t, names, True, "", int(plain.size), plain.shape)
    setup.why = _probe(setup, plain)
    setup.recorded = not setup.why
    return setup


def _leaves(setup: _Setup, arrays: Sequence[np.ndarray] | None = None) -> list[Any]:
    vals = list(setup.values)
    for k, w in enumerate(setup.wrt):
        a = setup.values[w] if arrays is None else arrays[k]
        t = tensor(np.asarray(a, dtype=np.float64), name=setup.names[w])
        t.requires_grad_(True)
        vals[w] = t
    return vals


def _mismatch(got: np.ndarray, want: np.ndarray) -> str:
    """How fun's values on tensors (``got``) differ from those on numpy arrays (``want``);
    "" when they agree to rounding. Equal non-finite values agree (nan and nan, inf and inf
    of one sign: a function outside its domain is the checker's to report, not a
    difference), and only finite values set the scale (one inf would excuse everything)."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    finite = np.isfinite(got) & np.isfinite(want)
    scale = np.max(np.abs(want[finite]), initial=0.0)
    with np.errstate(all="ignore"):
        diff = np.where(finite, np.abs(got - want), 0.0)
    # the same float64 arithmetic in the same order: rounding-level differences at most
    far = finite & (diff > 1e-12 * np.maximum(np.abs(want), scale) + 1e-300)
    odd = ~same & ~finite   # nan on one side only, inf against a number or the other inf
    if odd.any():
        k = int(np.flatnonzero(odd)[0])
        where = f" at output entry {k}" if got.size > 1 else ""
        return f"{got.flat[k]:.6g} on tensors, {want.flat[k]:.6g} on arrays{where}"
    if far.any():
        return f"up to {float(diff[far].max()):.3g} apart"
    return ""


def _probe(setup: _Setup, plain: np.ndarray) -> str:
    """Why ``fun`` cannot be recorded on verigrad tensors ("" when it can and reproduces
    numpy's values)."""
    name = _display(setup.fun)
    try:
        with recording(), np.errstate(all="ignore"):
            out = _as_output(setup.fun(*_leaves(setup)))
    except Unrecordable as e:
        return f"{name} calls {e}"
    except Exception as e:  # noqa: BLE001 - numpy code on a tensor: .astype, .size, ...
        return f"{name} raised {type(e).__name__} on verigrad tensors ({e})"
    if not isinstance(out, Tensor):
        return (f"{name} returned {type(out).__name__}, not a tensor: its result left the tape "
                f"(a C extension, or a conversion to float)")
    if out._data.dtype.kind not in "f":
        return f"{name} returned {out.dtype} on tensors, not floats"
    got = np.asarray(out._data, dtype=float)
    if got.size != plain.size:
        return f"{name} returned {got.size} values on tensors but {plain.size} on numpy arrays"
    want = plain.astype(float).reshape(got.shape)
    bad = _mismatch(got, want)
    if bad:
        return (f"{name} gives other values on verigrad tensors than on numpy arrays ({bad}): "
                f"numpy's and verigrad's semantics differ somewhere in it")
    if not out.requires_grad:
        return f"{name}'s result does not depend on its inputs on the tape"
    return ""


def _problem(setup: _Setup, label: str, output: Callable[[list[Any]], Any],
             claimed: Callable[[list[Any]], np.ndarray], m: int) -> Problem:
    """A checker Problem whose differentiable inputs are fun's ``wrt`` arguments."""
    kinds = ["diff" if i in setup.wrt else "const" for i in range(len(setup.values))]

    def call(argv: list[Any]) -> Any:
        return output(list(argv))

    def claimed_rows(argv: list[Any], rows: np.ndarray) -> np.ndarray:
        vals = [np.array(a._data) if isinstance(a, Tensor) else a for a in argv]
        raw = claimed(*vals)
        J = _claimed_matrix(raw, m, setup)
        # keep the precision the user's derivative came in: float32 is judged as float32
        low = [np.asarray(p).dtype for p in (raw if isinstance(raw, (list, tuple)) else [raw])]
        low = [d for d in low if d.kind == "f" and d.itemsize < 8]
        return (rows @ J).astype(min(low, key=lambda d: d.itemsize)) if low else rows @ J

    return Problem(expression=label, names=list(setup.names), kinds=kinds,
                   values=list(setup.values),
                   user_dtypes=[np.dtype(np.float64) if k == "diff" else None for k in kinds],
                   call=call, claimed=claimed_rows)


def _claimed_matrix(raw: Any, m: int, setup: _Setup) -> np.ndarray:
    """The user's derivative as J[i, j] = d out_i / d (flat inputs)_j, in scipy's layout."""
    sizes, n = setup.sizes, setup.n
    if isinstance(raw, (list, tuple)) and len(sizes) > 1 and len(raw) == len(sizes):
        # fit_deriv's layout: one array per parameter
        try:
            parts = [np.asarray(p, dtype=float).reshape(m, s) for p, s in zip(raw, sizes)]
        except ValueError as e:
            raise CheckInputError(f"the derivative returned one array per argument, of the "
                                  f"wrong sizes ({e})") from None
        return np.concatenate(parts, axis=1)
    try:
        a = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as e:
        raise CheckInputError(f"the derivative must return an array of floats ({e})") from None
    if a.size != m * n:
        raise CheckInputError(f"the derivative returned shape {a.shape} ({a.size} values); "
                              f"expected {m * n} = {m} output(s) x {n} input entries, "
                              f"J[i, j] = d fun_i / d x_j")
    if a.ndim == 2 and a.shape == (n, m) and n != m and m > 1:
        raise CheckInputError(f"the derivative returned shape {a.shape}, the transpose of "
                              f"scipy's ({m}, {n}): J[i, j] = d fun_i / d x_j, one row per "
                              f"output")
    return a.reshape(m, n)


def _fun_output(setup: _Setup) -> Callable[[list[Any]], Any]:
    """fun on the checker's arguments: on tensors when it records, else on plain arrays."""
    fun = setup.fun

    def recorded(argv: list[Any]) -> Any:
        with recording():
            return _as_output(fun(*argv))

    def plain(argv: list[Any]) -> Any:
        vals = [np.array(a._data) if isinstance(a, Tensor) else a for a in argv]
        out = np.asarray(fun(*vals))
        return tensor(out if out.dtype.kind in "fc" else out.astype(np.float64))

    return recorded if setup.recorded else plain


def _grad_output(setup: _Setup) -> Callable[[list[Any]], Any]:
    """The recorded gradient of a scalar fun (create_graph): its mirror's derivatives are the
    exact second derivatives of fun."""
    fun = setup.fun

    def call(argv: list[Any]) -> Any:
        from . import ops as O

        leaves = [argv[w] for w in setup.wrt]
        if not all(isinstance(t, Tensor) and t.requires_grad for t in leaves):
            # finite differences run without a graph: differentiate on a fresh one
            fresh = list(argv)
            for w in setup.wrt:
                t = tensor(np.array(argv[w]._data), name=setup.names[w])
                t.requires_grad_(True)
                fresh[w] = t
            with enable_grad():
                g = call(fresh)
            return tensor(np.array(g._data))
        with recording():
            y = _as_output(fun(*argv))
        grads = autograd_grad([O.reshape(y, ())], leaves, create_graph=True, allow_unused=True)
        flat = [O.reshape(g, (-1,)) if g is not None else tensor(np.zeros(t.numel()))
                for g, t in zip(grads, leaves)]
        return flat[0] if len(flat) == 1 else O.cat(flat)

    return call


def _hess_fd_output(setup: _Setup) -> Callable[[list[Any]], Any]:
    """Without a recorded fun: the gradient by central differences of fun (so the Hessian's
    reference is differences of fun alone, never of the user's jac)."""
    from .checker import finite_diff as fd

    def call(argv: list[Any]) -> Any:
        vals = [np.array(a._data) if isinstance(a, Tensor) else a for a in argv]
        x = np.concatenate([np.asarray(vals[w], dtype=float).reshape(-1) for w in setup.wrt])
        bounds = np.cumsum([0] + setup.sizes)

        def f(v: np.ndarray) -> np.ndarray:
            args = list(vals)
            for k, w in enumerate(setup.wrt):
                args[w] = v[bounds[k]:bounds[k + 1]].reshape(np.shape(setup.values[w]))
            return np.asarray(setup.fun(*args), dtype=float).reshape(-1)

        ests = fd.partials(f, x, list(range(x.size)))
        return tensor(np.array([float(np.asarray(e.value).reshape(-1)[0]) for e in ests]))

    return call


# --- the public functions ------------------------------------------------------------------

def check_grad(fun: Callable, jac: Callable, x0: Any, *args: Any, hess: Callable | None = None,
               wrt: int | Sequence[int] = 0, seed: int = 0, nearby: int = 3,
               rtol: float | None = None, atol: float | None = None, eps: float | None = None,
               max_rows: int | None = None) -> CheckReport:
    """Check a hand-written gradient (``jac``) and optionally Hessian (``hess``) of ``fun``, in
    scipy's convention: ``fun(x, *args)``, ``jac(x, *args)``, ``hess(x, *args)``.

    For a vector ``fun`` this checks the full Jacobian ``J[i, j] = d fun_i / d x_j`` (see
    :func:`check_jacobian`). ``wrt`` picks the differentiated arguments (0 is ``x0``, k is
    ``args[k-1]``: ``wrt=(1, 2)`` for ``fit_deriv(x, a, b)``); the derivative is then
    ``(m, n)`` over the flattened ``wrt`` arguments, or one array per argument. Wrong entries
    are named (``x[2]``, ``d fun[1] / d x[0]``, ``H[0, 1]``); ``report.culprit`` says whether
    ``jac`` or ``hess`` is wrong. ``rtol``/``atol`` replace the derived tolerances.

    >>> import numpy as np, verigrad as vg
    >>> r = vg.check_grad(lambda x: np.sum(np.sin(x)), lambda x: np.cos(x) + [0, 1e-6],
    ...                   [0.5, 1.0], nearby=0)
    >>> r.verdict, [e.label for e in r.entries if e.status == "fail"]
    ('fail', ['x[1]'])
    """
    _check_derivative("jac", jac)
    if hess is not None:
        _check_derivative("hess", hess)
    setup = _setup(fun, x0, args, wrt)
    opts = dict(seed=seed, nearby=nearby, rtol=rtol, atol=atol, eps=eps)
    jac_report = _check_part(setup, "jac", jac, setup.m, _fun_output(setup), opts, max_rows)
    if hess is None:
        return jac_report
    if setup.m != 1:
        raise CheckInputError(f"hess= needs a scalar fun; {_display(fun)} returns {setup.m} "
                              f"values (check each component's Hessian separately)")
    out = _grad_output(setup) if setup.recorded else _hess_fd_output(setup)
    hess_report = _check_part(setup, "hess", hess, setup.n, out, opts, max_rows)
    return _merge(jac_report, hess_report)


def _check_derivative(what: str, d: Any) -> None:
    """A hand-written derivative is a function; scipy's other jac= values are not checkable."""
    if callable(d):
        return
    text = repr(d) if len(repr(d)) <= 40 else repr(d)[:37] + "..."
    if d is True:
        why = ("fun returning (f, g), as scipy.optimize.minimize takes, is not supported: pass "
               "fun=lambda x: f(x)[0] and jac=lambda x: f(x)[1]")
    elif isinstance(d, str):
        why = "that is scipy's finite-difference scheme; there is no hand-written derivative"
    else:
        why = f"it must be a function {what}(x, *args) returning an array, got {type(d).__name__}"
    raise CheckInputError(f"{what}={text}: {why}")


def check_jacobian(fun: Callable, jac: Callable, x0: Any, *args: Any,
                   wrt: int | Sequence[int] = 0, seed: int = 0, nearby: int = 3,
                   rtol: float | None = None, atol: float | None = None,
                   eps: float | None = None, max_rows: int | None = None) -> CheckReport:
    """Check the Jacobian of a vector function (``least_squares``, ``root``, ODE right-hand
    sides) in scipy's convention ``J[i, j] = d fun_i / d x_j``; the report says so when
    ``jac`` matches the transpose instead, or a row has the wrong sign.

    >>> import numpy as np, verigrad as vg
    >>> fun = lambda x: np.stack([x[0] ** 2 + x[1], np.sin(x[0]) * x[1]])
    >>> jac = lambda x: np.array([[2 * x[0], 1.0], [np.cos(x[0]) * x[1], np.sin(x[0])]])
    >>> vg.check_jacobian(fun, jac, [0.3, 2.0], nearby=0).verdict
    'pass'
    """
    return check_grad(fun, jac, x0, *args, wrt=wrt, seed=seed, nearby=nearby, rtol=rtol,
                      atol=atol, eps=eps, max_rows=max_rows)


def _check_part(setup: _Setup, what: str, claimed: Callable, m: int,
                output: Callable[[list[Any]], Any], opts: dict, max_rows: int | None
                ) -> CheckReport:
    label = f"{_display(setup.fun)} ({what}={_display(claimed)})"
    problem = _problem(setup, label, output, claimed, m)
    rows = max_rows if max_rows is not None else (m if m <= 64 else 16)
    report = check(problem, use_symbolic=setup.recorded, max_rows=rows, **opts)
    _relabel(report, what, problem)
    report.notes = [n for n in report.notes if "graph's wiring" not in n]
    if not setup.recorded:
        ref = ("finite differences of fun are the reference" if what == "jac" else
               "differences of fun's finite-difference gradient are the reference (never "
               "differences of jac)")
        report.notes.insert(0, f"not recorded on the tape: {setup.why}; {ref}")
    J = _claimed_matrix(claimed(*[np.array(v) if isinstance(v, np.ndarray) else v
                                  for v in setup.values]), m, setup)
    _blame(report, what, J, problem)
    return report


def _relabel(report: CheckReport, what: str, problem: Problem) -> None:
    for e in report.entries:
        if what == "hess":
            e.__class__ = _HessEntry
            names = problem.diff_names
            bounds = np.cumsum([0] + problem.sizes)
            k = names.index(e.input)
            local = int(np.ravel_multi_index(e.index, problem.diff_shapes[k])) if e.index else 0
            e.flat_col = int(bounds[k]) + local
        else:
            e.__class__ = _JacEntry


def _reference(report: CheckReport, m: int, n: int, problem: Problem
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference Jacobian and tolerances at the given point (full rows only)."""
    R, T = np.full((m, n), np.nan), np.full((m, n), np.nan)
    bounds = np.cumsum([0] + problem.sizes)
    for e in report.entries:
        if e.point != 0 or e.reference is None or e.tolerance is None:
            continue
        if e.output is not None and (not e.output or e.output[0] == "v"):
            return None
        i = 0 if e.output is None else int(np.ravel_multi_index(e.output, (m,))) \
            if len(e.output) == 1 else None
        if i is None:
            return None
        k = problem.diff_names.index(e.input)
        j = int(bounds[k]) + (int(np.ravel_multi_index(e.index, problem.diff_shapes[k]))
                              if e.index else 0)
        R[i, j], T[i, j] = e.reference, e.tolerance
    return R, T


def _blame(report: CheckReport, what: str, J: np.ndarray, problem: Problem) -> None:
    """Name what is wrong: the worst entry, and a transposed matrix or a sign-flipped row."""
    bad = [e for e in report.entries if e.status == "fail"]
    if not bad:
        return
    m, n = J.shape
    here = [e for e in bad if e.point == 0] or bad
    worst = max(here, key=lambda e: (e.rel_error if e.rel_error is not None
                                     and math.isfinite(e.rel_error) else math.inf))
    source = "exact, from the symbolic mirror" if worst.symbolic is not None else \
        "finite differences"
    where = "" if worst.point == 0 else f" at nearby point {worst.point}"
    labels = ", ".join(e.label for e in here[:6]) + (", ..." if len(here) > 6 else "")
    ref = worst.reference
    rel = f"; relative error {worst.rel_error:.2g}" if worst.rel_error is not None else ""
    msg = (f"{what} is wrong at {len(here)} entr{'y' if len(here) == 1 else 'ies'}{where} "
           f"({labels}); worst {worst.label}: expected {ref:.10g} ({source}), got "
           f"{worst.tape:.10g}{rel}" if ref is not None else
           f"{what} is wrong at {worst.label}{where}: got {worst.tape:.10g}")
    ref_tol = _reference(report, m, n, problem)
    if ref_tol is not None and not np.isnan(ref_tol[0]).any():
        R, T = ref_tol
        ok = np.abs(J - R) <= T
        if m == n and m > 1 and not ok.all() and (np.abs(J.T - R) <= T).all():
            report.notes.insert(0, f"{what} returns the transpose: scipy's convention is "
                                   f"J[i, j] = d fun_i / d x_j (a row per output); yours matches "
                                   f"d fun_j / d x_i")
            msg += "; it is the transpose of the right matrix"
        elif m > 1:
            flipped = [i for i in range(m) if not ok[i].all()
                       and (np.abs(-J[i] - R[i]) <= T[i]).all()]
            if flipped:
                report.notes.insert(0, f"row(s) {flipped} of {what} have the wrong sign")
                msg += f"; row(s) {flipped} have the wrong sign"
    idx = worst.index
    report.culprit = Culprit(what, problem.names.index(worst.input), worst.input, what,
                             idx, ref if ref is not None else math.nan, worst.tape,
                             "symbolic" if worst.symbolic is not None else "finite-differences",
                             msg)
    report.culprits = [report.culprit]


def _merge(jac_report: CheckReport, hess_report: CheckReport) -> CheckReport:
    """One report for jac and hess: entries of both, the verdict of the worse, and a note on
    each."""
    rank = {"pass": 0, "inconclusive": 1, "fail": 2}
    r = jac_report
    r.verdict = max(jac_report.verdict, hess_report.verdict, key=rank.__getitem__)
    r.entries = jac_report.entries + hess_report.entries
    r.culprits = jac_report.culprits + hess_report.culprits
    r.culprit = r.culprits[0] if r.culprits else None
    parts = [f"jac: {jac_report.verdict}", f"hess: {hess_report.verdict}"]
    wrong = [c.grad_fn for c in r.culprits]
    r.notes = [f"{'; '.join(parts)}" + (f" ({' and '.join(wrong)} wrong)" if wrong else "")] + \
        jac_report.notes + [f"hess: {n}" for n in hess_report.notes]
    r.contract = sorted(set(jac_report.contract + hess_report.contract))
    r.expression = jac_report.expression[:-1] + f", hess={hess_report.expression.split('hess=')[-1]}"
    r.seconds = jac_report.seconds + hess_report.seconds
    r.hess_report = hess_report  # the Hessian's own report, with its points and nodes
    r.recount()  # counts are counted once, at construction: these are now both parts' entries
    return r


# --- vg.check(fun, x0, *args, jac=..., hess=...): scipy's convention through vg.check -------

#: vg.check's options that check_grad has no use for, with the values that mean "not given"
_NOT_FOR_CHECK_GRAD = {"use_symbolic": True, "names": None, "progress": None, "values": None,
                       "order": 1}


def _from_check(scope: dict) -> CheckReport:
    """``vg.check(fun, x0, *args, jac=jac, hess=hess, wrt=...)`` (its ``locals()``) run as
    ``check_grad(fun, jac, x0, *args, ...)``: a scipy user's first guess does what they
    meant."""
    named = dict(scope["named"])
    if "jac" not in named:
        raise CheckInputError("hess= needs jac= as well: vg.check(fun, x0, jac=jac, hess=hess) "
                              "or vg.check_grad(fun, jac, x0, hess=hess)")
    jac, hess, wrt = named.pop("jac"), named.pop("hess", None), named.pop("wrt", 0)
    given = [k for k, unset in _NOT_FOR_CHECK_GRAD.items()
             if not (scope[k] is unset or (unset is not None and scope[k] == unset))]
    if named or given:
        raise CheckInputError(f"{', '.join(sorted(named) + given)}: not an option of "
                              f"vg.check(fun, x0, jac=...), which is vg.check_grad (options: "
                              f"hess, wrt, seed, nearby, rtol, atol, eps, max_rows)")
    if not scope["inputs"]:
        raise CheckInputError("vg.check(fun, x0, *args, jac=jac) needs x0")
    x0, *args = scope["inputs"]
    # check's default row count is its own; check_grad's (every row up to 64) is meant here
    rows = None if scope["max_rows"] == DEFAULTS["max_rows"] else scope["max_rows"]
    return check_grad(scope["fn"], jac, x0, *args, hess=hess, wrt=wrt, seed=scope["seed"],
                      nearby=scope["nearby"], rtol=scope["rtol"], atol=scope["atol"],
                      eps=scope["eps"], max_rows=rows)


register_option("jac", _from_check)   # vg.check routes a callable's jac=/hess= here
register_option("hess", _from_check)
