"""What is being checked: a callable or an expression, its named inputs, and ways to run it
(on the tape in float64, on flat vectors for finite differences, on complex vectors)."""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..autograd.grad_mode import no_grad
from ..expression import parse_expression
from ..parse import Expression
from ..tensor import Tensor, tensor

__all__ = ["Problem", "make_problem", "CheckInputError", "OPTION_HANDLERS", "register_option",
           "option_handler"]


class CheckInputError(ValueError):
    """The function or its inputs cannot be checked as given (the message says why)."""


#: keyword options of ``vg.check`` for a callable that a higher layer serves: option name ->
#: handler(check's arguments, its ``locals()``) returning the report. verigrad.scipy_check
#: registers ``jac``/``hess`` (scipy's ``vg.check(fun, x0, jac=...)``); this layer cannot
#: import it
OPTION_HANDLERS: dict[str, Callable[[dict], Any]] = {}


def register_option(name: str, handler: Callable[[dict], Any]) -> None:
    """Let ``vg.check(fn, *inputs, name=...)`` on a callable ``fn`` return ``handler(check's
    arguments)`` (an expression's variable of that name stays a variable).

    >>> register_option("never_an_option", lambda scope: "handled")
    >>> option_handler(print, {"never_an_option": 1})({})
    'handled'
    >>> option_handler("never_an_option * 2", {"never_an_option": 1}) is None
    True
    >>> del OPTION_HANDLERS["never_an_option"]
    """
    OPTION_HANDLERS[name] = handler


def option_handler(fn: Any, named: dict[str, Any]) -> Callable[[dict], Any] | None:
    """The registered handler of the first of ``named`` that has one, for a callable ``fn``
    (None for an expression or a Problem, whose keywords are values)."""
    if isinstance(fn, (str, Expression, Problem)) or not callable(fn):
        return None
    return next((OPTION_HANDLERS[k] for k in named if k in OPTION_HANDLERS), None)


@dataclass
class Problem:
    """A function of named inputs. Differentiable inputs are float arrays; the others
    (constant tensors, Python values) are passed through unchanged."""

    expression: str
    names: list[str]                    # one per argument
    kinds: list[str]                    # "diff" | "const"
    values: list[Any]                   # float64 arrays for "diff", the object for "const"
    user_dtypes: list[Any]              # numpy dtype the user gave for each "diff" input
    call: Callable[[list[Any]], Any]    # tensors/values in argument order -> output(s)
    expr: Expression | None = None
    notes: list[str] = field(default_factory=list)
    # a claimed derivative to check instead of the tape's: (arguments, cotangent rows) ->
    # rows @ J, J the claimed Jacobian over the flat differentiable inputs (vg.check_grad)
    claimed: Callable[[list[Any], np.ndarray], np.ndarray] | None = None

    @property
    def diff_index(self) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == "diff"]

    @property
    def diff_names(self) -> list[str]:
        return [self.names[i] for i in self.diff_index]

    @property
    def diff_shapes(self) -> list[tuple]:
        return [self.values[i].shape for i in self.diff_index]

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.diff_shapes]  # not np.prod: ~10x its cost here

    @property
    def n(self) -> int:
        return sum(self.sizes)

    def leaves(self, arrays: Sequence[np.ndarray] | None = None, dtype: Any = np.float64,
               requires_grad: bool = True) -> list[Any]:
        """Arguments for one run: fresh named leaves for the differentiable inputs."""
        arrays = arrays if arrays is not None else [self.values[i] for i in self.diff_index]
        it = iter(arrays)
        args = []
        for name, kind, v in zip(self.names, self.kinds, self.values):
            if kind == "diff":
                t = tensor(np.asarray(next(it), dtype=dtype), name=name)
                t.requires_grad_(requires_grad)
                args.append(t)
            else:
                args.append(v)
        return args

    def run(self, args: list[Any]) -> list[Tensor]:
        """Call the function; returns its outputs as a list of tensors."""
        try:
            out = self.call(args)
        except CheckInputError:
            raise
        except Exception as e:  # the user's function failed at this point: say where
            raise CheckInputError(f"{self.expression} raised {type(e).__name__}: {e}"
                                  f"{_where(e)}") from e
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if not outs:
            raise CheckInputError(f"{self.expression} returned an empty "
                                  f"{type(out).__name__}: return the tensor(s) to check")
        for k, o in enumerate(outs):
            if not isinstance(o, Tensor):
                raise CheckInputError(f"{self.expression} must return tensors, but output {k} "
                                      f"is {type(o).__name__}")
        floats = [o for o in outs if o._data.dtype.kind in "fc"]
        if not floats:
            raise CheckInputError(f"{self.expression} returned no float output (output 0 has "
                                  f"dtype {outs[0].dtype!r}); only float outputs have gradients")
        # integer outputs (an argmax, sort indices) have no gradient: torch's convention
        return floats

    def flat(self, dtype: Any = np.float64) -> Callable[[np.ndarray], np.ndarray]:
        """``f(x_flat) -> y_flat`` without recording a graph (for finite differences)."""
        # FD calls f ~10 times per partial: the slicing plan is made once
        bounds = np.cumsum([0] + self.sizes).tolist()
        spans = [(bounds[k], bounds[k + 1], s) for k, s in enumerate(self.diff_shapes)]

        def f(x: np.ndarray) -> np.ndarray:
            arrays = [x[a:b].reshape(s) for a, b, s in spans]
            with no_grad():
                outs = self.run(self.leaves(arrays, dtype=dtype, requires_grad=False))
            if len(outs) == 1:
                return np.array(outs[0]._data, dtype=outs[0]._data.dtype).reshape(-1)
            return np.concatenate([o._data.reshape(-1) for o in outs])

        return f

    def flat_values(self) -> np.ndarray:
        return np.concatenate([self.values[i].reshape(-1) for i in self.diff_index]) \
            if self.diff_index else np.zeros(0)

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        bounds = np.cumsum([0] + self.sizes)
        return [flat[bounds[k]:bounds[k + 1]].reshape(s)
                for k, s in enumerate(self.diff_shapes)]

    def locate(self, j: int) -> tuple[str, tuple]:
        """Flat coordinate -> (input name, index)."""
        return self.locate_many([j])[0]

    def locate_many(self, js: Sequence[int] | np.ndarray) -> list[tuple[str, tuple]]:
        """Flat coordinates -> (input name, index) each, vectorized: a check of 1e6 entries
        must not pay a numpy call per entry.

        >>> p = make_problem(lambda a, b: a, [[1.0, 2.0], [[3.0, 4.0], [5.0, 6.0]]], {})
        >>> p.locate_many([1, 4])
        [('a', (1,)), ('b', (1, 0))]
        """
        js = np.asarray(js, dtype=np.int64).reshape(-1)
        names, shapes = self.diff_names, self.diff_shapes
        if all(shape == () for shape in shapes):  # scalars only: coordinate j is input j
            return [(names[j], ()) for j in js.tolist()]
        bounds = np.cumsum([0] + self.sizes)
        which = np.searchsorted(bounds, js, side="right") - 1
        out: list[tuple[str, tuple]] = [("", ())] * js.size
        for k in np.unique(which).tolist():
            pos = np.flatnonzero(which == k)
            shape = shapes[k]
            if not shape:
                for p in pos.tolist():
                    out[p] = (names[k], ())
                continue
            # one unravel for all of this input's coordinates, then plain Python ints
            idx = np.stack(np.unravel_index(js[pos] - bounds[k], shape), axis=1).tolist()
            for p, i in zip(pos.tolist(), idx):
                out[p] = (names[k], tuple(i))
        return out


def _as_float_array(name: str, v: Any) -> tuple[np.ndarray, Any]:
    if isinstance(v, Tensor):
        arr = v._data
    else:
        try:
            arr = np.asarray(v)
        except Exception as e:  # noqa: BLE001 - ragged lists and the like
            raise CheckInputError(f"input {name!r} is not an array of numbers: {e}") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise CheckInputError(f"input {name!r} must be numbers (a float, list, numpy array or "
                              f"tensor), got {type(v).__name__}: {v!r}"[:300])
    user = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    return np.array(arr, dtype=np.float64), user


def _nonempty(name: str, arr: np.ndarray) -> np.ndarray:
    """A differentiated input needs an entry: a size-0 array has no derivative to check."""
    if arr.size == 0:
        raise CheckInputError(f"input {name!r} is empty (shape {tuple(arr.shape)}): there is "
                              f"no derivative to check; give it at least one entry")
    return arr


def _param_names(fn: Callable, n: int) -> list[str]:
    target = fn
    owner = getattr(fn, "__self__", None)
    if inspect.isclass(owner) and hasattr(owner, "forward") and getattr(fn, "__name__", "") == "apply":
        target = owner.forward  # Function.apply: name the inputs after forward(ctx, ...)
        skip = 1
    else:
        skip = 0
    try:
        params = [p for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][skip:]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:n]]
    return names + [f"x{i}" for i in range(len(names), n)]


def _display_name(fn: Callable) -> str:
    owner = getattr(fn, "__self__", None)
    if inspect.isclass(owner) and getattr(fn, "__name__", "") == "apply":
        return f"{owner.__name__}.apply"
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def make_problem(fn: Any, inputs: Sequence[Any], values: dict[str, Any],
                 names: Sequence[str] | None = None) -> Problem:
    """Normalise ``vg.check``'s arguments (a ready Problem is used as it is)."""
    if isinstance(fn, Problem):
        return fn
    if isinstance(fn, (str, Expression)):
        expr = _parse(fn, frozenset(_functions())) if isinstance(fn, str) else \
            parse_expression(fn)
        if inputs:
            raise CheckInputError(f"give the values of an expression by name, e.g. "
                                  f"vg.check({expr.text!r}, "
                                  f"{', '.join(f'{v}=...' for v in expr.variables)})")
        missing = [v for v in expr.variables if v not in values]
        extra = [k for k in values if k not in expr.variables]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing value(s) for {', '.join(missing)}")
            if extra:
                parts.append(f"{', '.join(extra)} not in the expression (it uses "
                             f"{', '.join(expr.variables) or 'no variables'})")
            raise CheckInputError(f"{'; '.join(parts)}: {expr.text}")
        arrays, dtypes = [], []
        variables = list(values)  # the caller's order: vg.check("w*x", x=.., w=..) -> x, w
        for v in variables:
            a, d = _as_float_array(v, values[v])
            arrays.append(_nonempty(v, a))
            dtypes.append(d)

        def call(args: list[Any]) -> Any:
            leaves = {name: t for name, t in zip(variables, args)}
            return expr.build(leaves, _functions())

        return Problem(expression=expr.text, names=variables, kinds=["diff"] * len(variables),
                       values=arrays, user_dtypes=dtypes, call=call, expr=expr)
    if not callable(fn):
        raise CheckInputError(f"vg.check needs a callable on tensors or an expression string, "
                              f"got {type(fn).__name__}")
    if values and {"jac", "hess"} & set(values):  # scipy's convention, not registered
        raise CheckInputError("a hand-written jac= (or hess=) is checked by "
                              "vg.check_grad(fun, jac, x0, hess=hess) (verigrad.scipy_check)")
    if values:
        raise CheckInputError(f"unknown option(s) {', '.join(sorted(values))} for vg.check; "
                              f"pass a callable's inputs positionally")
    if not inputs:
        raise CheckInputError("vg.check(fn, *inputs) needs at least one input")
    arg_names = list(names) if names is not None else _param_names(fn, len(inputs))
    _check_names(arg_names, len(inputs), names is not None)
    kinds, vals, dtypes = [], [], []
    for name, v in zip(arg_names, inputs):
        # tensors keep their requires_grad (as in torch's gradcheck); numbers, lists and
        # arrays are differentiated
        if isinstance(v, Tensor) and not v.requires_grad:
            kinds.append("const")
            vals.append(v)
            dtypes.append(None)
        elif isinstance(v, (Tensor, np.ndarray, list, tuple, float, int, np.floating,
                            np.integer)) and not isinstance(v, bool):
            a, d = _as_float_array(name, v)
            kinds.append("diff")
            vals.append(_nonempty(name, a))
            dtypes.append(d)
        else:
            kinds.append("const")
            vals.append(v)
            dtypes.append(None)
    if "diff" not in kinds:
        raise CheckInputError("none of the inputs is differentiated: pass numbers, lists or "
                              "arrays, or tensors with requires_grad=True")
    return Problem(expression=_display_name(fn), names=arg_names, kinds=kinds, values=vals,
                   user_dtypes=dtypes, call=lambda args: fn(*args))


def _check_names(names: list[str], n: int, given: bool) -> None:
    """One name per input, no name twice (the report keys entries by name)."""
    if given and len(names) != n:
        raise CheckInputError(f"names={names!r} has {len(names)} name(s) for {n} input(s): "
                              f"give one name per input")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CheckInputError(f"input name {name!r} is used twice in names={names!r}: "
                                  f"give each input its own name")
        seen.add(name)


def _where(e: BaseException) -> str:
    """`` (at file.py:12 in f)``: the deepest frame of the user's own code in ``e``'s
    traceback (not verigrad's, not an installed library's), or ``""`` if there is none."""
    import os
    import sysconfig
    import traceback

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    libraries = tuple({os.path.abspath(p) + os.sep for key in ("stdlib", "platstdlib",
                                                              "purelib", "platlib")
                       if (p := sysconfig.get_paths().get(key))})
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not os.path.abspath(f.filename).startswith(package)
              and not os.path.abspath(f.filename).startswith(libraries)
              and not f.filename.startswith("<frozen")]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename}:{f.lineno} in {f.name})"


@functools.lru_cache(maxsize=512)
def _parse(text: str, names: frozenset) -> Expression:
    """A parsed expression, once per text and set of known functions (a test suite checks
    one expression at many points; parsing was a tenth of a small check). ``Expression`` is
    immutable, and a registry change changes ``names``."""
    return parse_expression(text)


_FUNCTIONS: list[Any] = []


def _functions() -> Any:
    """The expression functions: a live view of the registry (imported on first use; FD
    builds an expression ~30 times per check, so the import is not repeated)."""
    if not _FUNCTIONS:
        from ..expression import FUNCTIONS

        _FUNCTIONS.append(FUNCTIONS)
    return _FUNCTIONS[0]
