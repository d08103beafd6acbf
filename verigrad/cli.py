"""The ``verigrad`` command: check gradients and write reports from a shell.

::

    verigrad check  'w*x + b' --at x=2 w=3 b=1          # terminal summary
    verigrad report 'sum(tanh(A @ x))' --at 'A=[[1,2],[3,4]]' 'x=[1,-1]' --out reports/mlp
    verigrad report path/to/file.py:function --at 'x=[1,2]'
    python -m verigrad ...                               # the same

Exit codes: 0 pass, 1 fail, 2 usage error or bad input, 3 inconclusive.

Nothing typed on the command line is evaluated: expressions go through the safe parser
(:mod:`verigrad.parse`) and values through :func:`json.loads`. A ``file.py:function``
target imports that file (the user's own code), like ``python file.py`` would.

>>> main(["check", "w*x + b", "--at", "x=2", "w=3", "b=1", "--nearby", "0"])
verigrad: PASS  w*x + b
  3 entries: 3 pass
  entry  tape  reference  abs error  status
  x         3          3          0    pass
  w         2          2          0    pass
  b         1          1          0    pass
0
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import re
import sys
import threading
import warnings
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from .checker.options import MAX_NEARBY, MAX_SEED, backend_warning

__all__ = ["main", "parse_values", "slug", "EXIT_CODES", "UsageError"]

#: verdict -> exit status (2 is a usage error or bad input)
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}
USAGE = 2

_EPILOG = """\
values:
  --at takes NAME=VALUE pairs, each VALUE a JSON number or (nested) array:
  x=2  x=-1.5e-3  x=[1,2,3]  'A=[[1,2],[3,4]]'   (quote brackets for your shell)
  several pairs: --at x=2 w=3, or --at x=2,w=3

targets:
  an expression such as 'sin(x)*exp(w*x) + b' (functions: sin cos tan exp log sqrt abs
  tanh sigmoid relu softplus sum mean prod max min logsumexp softmax ...; @ is matmul),
  or PATH.py:FUNCTION, a function of tensors in your own file (its parameters are named
  by --at). With --jac, FUNCTION is plain numpy code fun(x, *args) and --jac names its
  hand-written derivative (scipy's jac=):
  verigrad check model.py:fun --jac model.py:grad --at 'x=[1.3,0.7,0.8]'

exit codes:
  0 pass, 1 fail, 2 usage error or bad input, 3 inconclusive
"""


class UsageError(Exception):
    """Bad command line or input: printed as one line (or a caret block) with exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not argparse's usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- values ------------------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number here")


def _numbers_only(v: Any) -> bool:
    if isinstance(v, list):
        return all(_numbers_only(x) for x in v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: at most this many nested levels of brackets in one --at value (numpy's arrays stop at 64
#: dimensions; deeper text is a typo, and would only exhaust Python's recursion limit)
MAX_DEPTH = 32


def _depth(text: str) -> int:
    """How deeply the brackets of ``text`` nest (counted without parsing it)."""
    depth = deepest = 0
    for c in text:
        if c == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif c == "]":
            depth -= 1
    return deepest


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit - 12]}...{text[-6:]} " \
        f"({len(text)} characters)"


def _split_pairs(item: str) -> list[str]:
    """``"x=0,y=2"`` -> ``["x=0", "y=2"]``: commas outside brackets that start another
    ``NAME=`` separate pairs (``x=[1,2]`` stays whole)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(item):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            name, sep, _ = item[i + 1:].partition("=")
            if sep and name.strip().isidentifier():
                parts.append(item[start:i])
                start = i + 1
    return parts + [item[start:]]


def parse_values(items: Sequence[str], dtype: str = "float64") -> dict[str, Any]:
    """``["x=2", "A=[[1,2],[3,4]]"]`` -> ``{"x": array(2.), "A": array(...)}`` (JSON values,
    never evaluated), in ``dtype``.

    >>> parse_values(["x=2", "v=[1,-1.5e-3]"])
    {'x': array(2.), 'v': array([ 1.    , -0.0015])}
    """
    import numpy as np

    examples = "e.g. x=2, x=-1.5e-3, x=[1,2,3] or x=[[1,2],[3,4]]"
    values: dict[str, Any] = {}
    for item in [part for item in items for part in _split_pairs(item)]:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--at {_shorten(item)!r}: expected NAME=VALUE, {examples}")
        if not name.isidentifier():
            raise UsageError(f"--at {_shorten(item)!r}: {_shorten(name)!r} is not a valid "
                             f"input name")
        if name in values:
            raise UsageError(f"--at: {name} is given twice")
        shown = f"--at {name}={_shorten(text)}"
        if _depth(text) > MAX_DEPTH:
            raise UsageError(f"{shown}: the brackets nest {_depth(text)} deep; at most "
                             f"{MAX_DEPTH} levels ({examples})")
        try:
            raw = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            if "digits" in str(e):   # Python refuses integers of over 4300 digits
                raise UsageError(f"{shown}: the number is too large for {dtype} (at most "
                                 f"{float(np.finfo(dtype).max):.4g})") from None
            raise UsageError(f"{shown}: not a JSON number or array of numbers "
                             f"({examples})") from None
        if not _numbers_only(raw):
            raise UsageError(f"{shown}: only numbers and arrays of numbers are "
                             f"values ({examples})")
        try:
            with np.errstate(all="ignore"):   # an overflow is refused below, in one line
                arr = np.array(raw, dtype=dtype)
        except OverflowError:
            raise UsageError(f"{shown}: the number is too large for {dtype} (at most "
                             f"{float(np.finfo(dtype).max):.4g})") from None
        except ValueError:
            raise UsageError(f"{shown}: the nested lists are not a rectangular "
                             f"array (every row needs the same length)") from None
        if arr.size == 0:
            raise UsageError(f"{shown}: the array is empty")
        if not np.all(np.isfinite(arr)):
            raise UsageError(f"{shown}: values must be finite in {dtype} (at most "
                             f"{float(np.finfo(dtype).max):.4g} in magnitude)")
        values[name] = arr
    return values


def slug(text: str) -> str:
    """A directory name for a target: ``"w*x + b"`` -> ``"w-x-b"``.

    >>> slug("sum(tanh(A @ x))"), slug("***")
    ('sum-tanh-a-x', 'report')
    """
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:60].strip("-") or "report"


# --- targets -----------------------------------------------------------------------------

_FILE_TARGET = re.compile(r"(?P<file>.+\.py):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


def _load_function(file: str, attr: str) -> Callable:
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"{file}: no such file")
    modname = "verigrad_target_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{file}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module          # dataclasses and pickling look modules up here
    sys.path.insert(0, str(path.resolve().parent))   # its sibling imports, as `python file.py`
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's file, reported in a line
        from .checker.problem import _where

        raise UsageError(f"{file}: importing it raised {type(e).__name__}: {e}"
                         f"{_where(e)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == modname)
            hint = f" (it defines {', '.join(known)})" if known else ""
            raise UsageError(f"{file} has no function {attr!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{file}:{attr} is not a function (it is {type(obj).__name__})")
    return obj


def _derivative(target_file: str, spec: str, flag: str) -> Callable:
    """The function ``--jac``/``--hess`` names: ``FILE.py:FUNCTION``, or ``FUNCTION`` in the
    target's own file."""
    m = _FILE_TARGET.fullmatch(spec.strip())
    if m:
        return _load_function(m["file"], m["attr"])
    if re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", spec.strip()):
        return _load_function(target_file, spec.strip())
    raise UsageError(f"{flag} {_shorten(spec)!r}: expected FILE.py:FUNCTION or FUNCTION (a "
                     f"function in the target's file)")


def _parameters(fn: Callable) -> tuple[list[str], set[str]]:
    """Positional parameter names of ``fn`` (of ``forward`` after ``ctx`` for a
    ``Function.apply``) and those that are required."""
    target, skip = fn, 0
    owner = getattr(fn, "__self__", None)
    if inspect.isclass(owner) and hasattr(owner, "forward") and \
            getattr(fn, "__name__", "") == "apply":
        target, skip = owner.forward, 1
    try:
        params = [p for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][skip:]
    except (TypeError, ValueError):
        params = []
    return [p.name for p in params], {p.name for p in params if p.default is p.empty}


def _function_args(fn: Callable, target: str, values: dict[str, Any]) -> tuple[list, list]:
    names, required = _parameters(fn)
    if not names:
        raise UsageError(f"{target} has no named positional parameters to give --at values "
                         f"for")
    extra = [n for n in values if n not in names]
    missing = [n for n in names if n in required and n not in values]
    if extra or missing:
        parts = ([f"missing --at value for {', '.join(missing)}"] if missing else []) + \
            ([f"{', '.join(extra)} is not a parameter"] if extra else [])
        raise UsageError(f"{'; '.join(parts)} ({target} takes {', '.join(names)})")
    given = [n for n in names if n in values]
    if given != names[:len(given)]:
        gap = next(n for n in names if n not in values)
        raise UsageError(f"give a value for {gap} too: it comes before "
                         f"{given[-1]} in {target}'s parameters")
    return [values[n] for n in given], given


# --- progress ------------------------------------------------------------------------------

class _Progress:
    """A progress bar on ``stream`` for checks that take over ``delay`` seconds, drawn only
    on a terminal (a thread redraws it, since one stage can take a while)."""

    def __init__(self, stream: TextIO, delay: float = 1.0) -> None:
        self.stream, self.delay = stream, delay
        try:
            self.enabled = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.enabled = False
        self.stage, self.fraction = "starting", 0.0
        self.drawn = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, stage: str, fraction: float) -> None:
        self.stage, self.fraction = stage, fraction

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        t0 = time.monotonic()
        while not self._stop.is_set():
            filled = int(round(24 * min(max(self.fraction, 0.0), 1.0)))
            bar = "#" * filled + "-" * (24 - filled)
            line = (f"\rverigrad [{bar}] {100 * self.fraction:3.0f}%  {self.stage}  "
                    f"({time.monotonic() - t0 + self.delay:.0f} s)")
            self.stream.write(line[:110] + "\033[K")
            self.stream.flush()
            self.drawn = True
            self._stop.wait(0.2)

    def __enter__(self) -> "_Progress":
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- the command ---------------------------------------------------------------------------

#: the subcommands' options (abbreviations are off, so these are all the spellings)
_OPTIONS = {"-h", "--help", "--at", "--seed", "--dtype", "--rtol", "--atol", "--nearby",
            "--out", "--format", "--jac", "--hess"}


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="verigrad", description="Check gradients three ways (tape, exact "
                     "symbolic mirror, finite differences) and report what disagrees.",
                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"verigrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{check,report}")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("target", metavar="EXPR|FILE.py:FUNCTION",
                       help="an expression, or a function of tensors in a Python file")
        p.add_argument("--at", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                       help="the point: a JSON number or array per input")
        p.add_argument("--seed", type=_seed, default=0, help="seed of every random choice, "
                       "a whole number >= 0 (default 0)")
        p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="dtype the inputs are built in (default float64)")
        p.add_argument("--rtol", type=_nonneg, default=None, help="relative tolerance, "
                       "replacing the derived one (tape vs reference: atol + rtol*|ref|)")
        p.add_argument("--atol", type=_nonneg, default=None, help="absolute tolerance, "
                       "replacing the derived one")
        p.add_argument("--nearby", type=_nearby, default=3, help="seeded nearby points also "
                       f"checked, 0 to {MAX_NEARBY} (default 3)")
        p.add_argument("--jac", metavar="[FILE.py:]FUNCTION", default=None,
                       help="a hand-written gradient/Jacobian jac(x, *args) of the target "
                       "FILE.py:FUNCTION, in scipy's convention, checked against the exact "
                       "derivative (vg.check_grad); FUNCTION alone: in the target's file")
        p.add_argument("--hess", metavar="[FILE.py:]FUNCTION", default=None,
                       help="with --jac: a hand-written Hessian hess(x, *args), checked too")

    check = sub.add_parser("check", help="check and print a summary", epilog=_EPILOG,
                           allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Check the gradients of EXPR (or FILE.py:FUNCTION) at "
                           "a point and print a summary.")
    common(check)
    check.add_argument("--json", action="store_true",
                       help="print the JSON report (report.json's schema) instead of the "
                       "summary, for scripts; the exit code is the same")
    report = sub.add_parser("report", help="check and write report files", epilog=_EPILOG,
                            allow_abbrev=False,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Check the gradients and write report.json, report.md "
                            "and report.html; print their paths.")
    common(report)
    report.add_argument("--out", metavar="DIR", default=None,
                        help="directory for the files (default reports/<slug of the target>)")
    report.add_argument("--format", default="json,md,html", metavar="LIST",
                        help="comma-separated formats among json, md, html (default all)")
    return parser


def _nonneg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return v


def _whole(text: str, high: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shorten(text)!r} is not a whole number") from None
    if not 0 <= v <= high:
        raise argparse.ArgumentTypeError(f"{_shorten(text)!r} is out of range: use 0 to {high}")
    return v


def _seed(text: str) -> int:
    return _whole(text, MAX_SEED)


def _nearby(text: str) -> int:
    return _whole(text, MAX_NEARBY)


def _run_check(args: argparse.Namespace, progress: Callable) -> tuple[Any, str]:
    """The check asked for; returns the report and the default output directory name."""
    import verigrad as vg
    from .checker.problem import CheckInputError
    from .errors import VerigradError
    from .expression import FUNCTIONS, parse_expression
    from .parse import ExpressionError

    values = parse_values(args.at, args.dtype)
    options = dict(seed=args.seed, nearby=args.nearby, rtol=args.rtol, atol=args.atol,
                   progress=progress)
    m = _FILE_TARGET.fullmatch(args.target.strip())
    if args.hess is not None and args.jac is None:
        raise UsageError("--hess needs --jac too (the Hessian is checked with the gradient)")
    if args.jac is not None:
        if not m:
            raise UsageError(f"--jac checks a function in a file: give the target as "
                             f"FILE.py:FUNCTION, not {_shorten(args.target)!r}")
        fun = _load_function(m["file"], m["attr"])
        jac, hess = (_derivative(m["file"], d, flag) if d is not None else None
                     for d, flag in ((args.jac, "--jac"), (args.hess, "--hess")))
        positional, _ = _function_args(fun, args.target, values)
        opts = {k: v for k, v in options.items() if k != "progress"}
        call = lambda: vg.check_grad(fun, jac, positional[0], *positional[1:],  # noqa: E731
                                     hess=hess, **opts)
        name = slug(f"{Path(m['file']).stem}-{m['attr']}-jac")
    elif m:
        fn = _load_function(m["file"], m["attr"])
        positional, names = _function_args(fn, args.target, values)
        call: Callable[[], Any] = lambda: vg.check(fn, *positional, names=names, **options)
        name = slug(f"{Path(m['file']).stem}-{m['attr']}")
    else:
        try:
            expr = parse_expression(args.target)
        except ExpressionError as e:
            raise UsageError(str(e)) from None
        missing = [v for v in expr.variables if v not in values]
        extra = [v for v in values if v not in expr.variables]
        if missing or extra:
            parts = ([f"missing --at value for {', '.join(missing)}"] if missing else []) + \
                ([f"--at {', '.join(extra)} is not in the expression"] if extra else [])
            uses = ", ".join(expr.variables) or "no variables"
            raise UsageError(f"{'; '.join(parts)} (it uses {uses}): {expr.text}")
        clash = [v for v in values if v in inspect.signature(vg.check).parameters]
        if clash:
            # a variable named like an option of vg.check (seed, eps, names...): pass the
            # values positionally to a function of the same expression instead
            order = list(values)

            def fn(*leaves: Any) -> Any:
                return expr.build(dict(zip(order, leaves)), FUNCTIONS)

            fn.__qualname__ = fn.__name__ = expr.text
            call = lambda: vg.check(fn, *values.values(), names=order, **options)  # noqa: E731
        else:
            call = lambda: vg.check(expr.text, **values, **options)  # noqa: E731
        name = slug(expr.text)
    try:
        return call(), name
    except (CheckInputError, ExpressionError, VerigradError) as e:
        # a shape error inside an expression: its own caret block says it best
        cause = e.__cause__ if isinstance(e.__cause__, ExpressionError) else e
        raise UsageError(str(cause)) from None
    except Exception as e:  # noqa: BLE001 - the user's code failed: one line, exit 2
        if os.environ.get("VERIGRAD_DEBUG"):
            raise
        from .checker.problem import _where

        raise UsageError(f"the check could not run: {type(e).__name__}: {e}{_where(e)} (set "
                         f"VERIGRAD_DEBUG=1 for the traceback)") from None


def _main(argv: Sequence[str] | None) -> int:
    from .report import FORMATS, save
    from .report.terminal import render_text, render_terminal, use_color

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] in ("check", "report") and argv[1].startswith("-") and \
            argv[1].split("=")[0] not in _OPTIONS:
        # an expression such as '-x*y' is not an option: a leading space tells argparse
        argv[1] = " " + argv[1]
    args = _parser().parse_args(argv)
    args.target = args.target.strip()
    if args.command == "report":
        formats = [f.strip() for f in args.format.split(",") if f.strip()]
        bad = [f for f in formats if f not in FORMATS]
        if bad or not formats:
            raise UsageError(f"--format {args.format!r}: choose from {', '.join(FORMATS)} "
                             f"(comma-separated)")
        if args.out is not None:
            _writable(args.out)   # before a long check, not after
    warning = backend_warning()
    if warning:
        print(f"verigrad: warning: {warning}", file=sys.stderr)
    with _Progress(sys.stderr) as progress, warnings.catch_warnings():
        # said once above; the check would warn again
        warnings.filterwarnings("ignore", message=re.escape(warning or "") + "$")
        report, name = _run_check(args, progress)
    from .report.document import shell_command

    # the target as typed: a file.py:function reruns as that, never as its bare name
    report.reproduce = (_typed_command(args) if args.jac is not None else
                        shell_command(args.target, report)) or report.reproduce
    code = EXIT_CODES.get(report.verdict, USAGE)
    if args.command == "check":
        print(report.to_json() if args.json else render_terminal(report, sys.stdout))
        return code
    out = args.out if args.out is not None else os.path.join("reports", name)
    _writable(out)
    try:
        paths = save(report, out, formats)
    except OSError as e:
        raise UsageError(f"cannot write the report to {out}: {e.strerror or e}") from None
    print(render_text(report, color=use_color(sys.stderr)).splitlines()[0], file=sys.stderr)
    for p in paths:
        print(p)
    return code


def _typed_command(args: argparse.Namespace) -> str:
    """``verigrad check`` with the target, values and options as typed (the derivative
    checks' reports hold no input values to rebuild them from)."""
    import shlex

    parts = ["verigrad", "check", args.target, "--at", *args.at]
    defaults = {"dtype": "float64", "seed": 0, "nearby": 3, "rtol": None, "atol": None,
                "jac": None, "hess": None}
    for key, default in defaults.items():
        v = getattr(args, key)
        if v != default:
            parts += [f"--{key}", repr(v) if isinstance(v, float) else str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def _writable(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {directory}: cannot create the directory: "
                         f"{e.strerror or e}") from None
    if not os.access(directory, os.W_OK):
        raise UsageError(f"--out {directory}: the directory is not writable")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``verigrad`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status: 0 pass, 1 fail, 2 usage error or bad input, 3 inconclusive."""
    import numpy as np

    try:
        # the check reports overflow, nan and division by zero in its own words; numpy's
        # RuntimeWarnings (from the user's function at probe points) would only repeat them
        with np.errstate(all="ignore"):
            return _main(argv)
    except UsageError as e:
        print(f"verigrad: error: {e}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("verigrad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `verigrad check ... | head`
        return 0
