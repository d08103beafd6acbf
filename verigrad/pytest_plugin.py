"""The pytest plugin: a ``gradcheck`` fixture, ``--verigrad-*`` options, a ``gradcheck`` marker.

Installed through the ``pytest11`` entry point, so ``pip install verigrad`` is all it takes::

    def test_softplus(gradcheck):
        report = gradcheck(Softplus.apply, np.linspace(-3, 3, 7))
        assert report.culprit is None

``gradcheck(fn, *inputs, **options)`` runs ``verigrad.check`` and returns its report. A
``fail`` fails the test with the readable summary (culprit op and its path, worst entries);
an ``inconclusive`` check (a kink at the point, say) passes with a
:class:`VerigradInconclusiveWarning`, or fails under ``--verigrad-strict``.

Options, most specific first: keyword arguments of the call, then
``@pytest.mark.gradcheck(rtol=..., atol=..., seed=..., strict=..., report_dir=...,
report_format=...)`` (closest
marker wins; any other keyword goes to ``verigrad.check``), then the command line
(``--verigrad-rtol`` ...), then ini settings (``verigrad_rtol`` ...). Reports go to
``--verigrad-report-dir`` (formats: ``--verigrad-report-format=json,md,html``).

This module is loaded by every pytest run in an environment with verigrad installed, so it
imports only pytest and the standard library; ``verigrad.check`` (and with it mpmath and,
on first use, SymPy) is imported when the fixture is first called.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:  # pragma: no cover - annotations only, never imported at run time
    from verigrad.checker.report import CheckReport

__all__ = ["VerigradInconclusiveWarning", "GradcheckFixture", "gradcheck"]


class VerigradInconclusiveWarning(UserWarning):
    """A ``gradcheck`` could not decide (a kink or singularity at the point, unreliable
    finite differences ...): the test passes, with this warning saying why."""


# settings the plugin handles itself; any other option goes to verigrad.check unchanged
_SETTINGS = ("report_dir", "report_format", "strict", "rtol", "atol", "seed")
_VERDICT_PROPERTY = re.compile(r"^verigrad\[\d+\]\.verdict$")

_defaults_key = pytest.StashKey[dict]()
_records_key = pytest.StashKey[list]()


@dataclass
class _Record:
    """One fixture call, kept on the test item until its phase's report is made."""

    number: int
    verdict: str
    text: str
    shown: bool = False


# --- options ---------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("verigrad", "verigrad gradient checks (the gradcheck fixture)")
    group.addoption("--verigrad-report-dir", metavar="DIR", default=None,
                    help="write a report (JSON, Markdown, HTML) per gradcheck call into "
                         "DIR/<test id>-<n>/")
    group.addoption("--verigrad-report-format", metavar="FORMATS", default=None,
                    help="comma-separated formats of those reports: json, md, html "
                         "(default: all three; html draws plots and is the slowest)")
    group.addoption("--verigrad-strict", action="store_true", default=None,
                    dest="verigrad_strict", help="fail tests whose gradient check is "
                                                 "inconclusive (default: pass with a warning)")
    group.addoption("--verigrad-no-strict", action="store_false", dest="verigrad_strict",
                    help="pass inconclusive checks with a warning even if the ini file sets "
                         "verigrad_strict")
    group.addoption("--verigrad-rtol", type=float, default=None, metavar="RTOL",
                    help="relative tolerance of every check (default: derived per entry)")
    group.addoption("--verigrad-atol", type=float, default=None, metavar="ATOL",
                    help="absolute tolerance of every check (default: derived per entry)")
    group.addoption("--verigrad-seed", type=int, default=None, metavar="SEED",
                    help="seed of every check's random choices (default: 0)")
    parser.addini("verigrad_report_dir", "directory for a report per gradcheck call "
                  "(relative to the rootdir)", default="")
    parser.addini("verigrad_report_format", "formats of the reports: json, md, html",
                  default="")
    parser.addini("verigrad_strict", "fail inconclusive gradient checks", type="bool",
                  default=False)
    parser.addini("verigrad_rtol", "relative tolerance of every gradient check", default="")
    parser.addini("verigrad_atol", "absolute tolerance of every gradient check", default="")
    parser.addini("verigrad_seed", "seed of every gradient check", default="")


def _ini_number(config: pytest.Config, name: str, kind: Callable[[str], Any]) -> Any:
    raw = str(config.getini(name)).strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise pytest.UsageError(f"ini setting {name} = {raw!r} is not a valid "
                                f"{'integer' if kind is int else 'number'}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gradcheck(rtol=None, atol=None, seed=None, strict=None, report_dir=None, "
        "report_format=None, **options): "
        "per-test options of the verigrad gradcheck fixture (they override the command line "
        "and ini settings; other keywords go to verigrad.check)")
    # command line over ini; the fixture puts markers and call keywords on top
    defaults: dict[str, Any] = {
        "rtol": _ini_number(config, "verigrad_rtol", float),
        "atol": _ini_number(config, "verigrad_atol", float),
        "seed": _ini_number(config, "verigrad_seed", int),
        "strict": bool(config.getini("verigrad_strict")),
        "report_dir": None,
        "report_format": str(config.getini("verigrad_report_format")).strip() or None,
    }
    ini_dir = str(config.getini("verigrad_report_dir")).strip()
    if ini_dir:
        defaults["report_dir"] = (config.rootpath / ini_dir).resolve()
    for name in ("rtol", "atol", "seed", "strict", "report_format"):
        value = config.getoption(f"verigrad_{name}")
        if value is not None:
            defaults[name] = value
    cli_dir = config.getoption("verigrad_report_dir")
    if cli_dir:
        # resolved now: xdist workers and tests that chdir must write to the same place
        defaults["report_dir"] = (config.invocation_params.dir / cli_dir).resolve()
    config.stash[_defaults_key] = defaults
    config.pluginmanager.register(_Summary(config), "verigrad-summary")


# --- the fixture -----------------------------------------------------------------------------

class GradcheckFixture:
    """What the ``gradcheck`` fixture returns: call it like ``verigrad.check``.

    ``reports`` holds this test's reports, in call order.
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._item = request.node
        self.reports: list[CheckReport] = []

    def options(self, **call_options: Any) -> dict[str, Any]:
        """The effective options: call keywords > closest marker > command line > ini."""
        config = self._request.config
        merged = dict(config.stash.get(_defaults_key, {}))
        # iter_markers yields the closest first: apply the farthest first so closer wins
        for mark in reversed(list(self._item.iter_markers("gradcheck"))):
            if mark.args:
                pytest.fail(f"@pytest.mark.gradcheck takes keyword arguments only (e.g. "
                            f"rtol=1e-6, strict=True), got {mark.args!r}", pytrace=False)
            merged.update(mark.kwargs)
        merged.update(call_options)
        if merged.get("report_dir") is not None:
            merged["report_dir"] = Path(merged["report_dir"])
        return merged

    def __call__(self, fn: Any, *inputs: Any, **options: Any) -> CheckReport:
        """Check ``fn`` at ``inputs``; fail the test on a wrong gradient; return the report."""
        __tracebackhide__ = True
        return self._check(lambda vg, opts: vg.check(fn, *inputs, **opts), options,
                           lambda report, opts: _reproduce(fn, inputs, report),
                           "verigrad.check(fn, *inputs")

    def jac(self, fun: Any, jac: Any, x0: Any, *args: Any, **options: Any) -> CheckReport:
        """Check a hand-written derivative ``jac(x, *args)`` of plain numpy ``fun(x, *args)``
        in scipy's convention (``verigrad.check_grad``; ``hess=``, ``wrt=`` go there too);
        fail the test on a wrong entry, naming it; return the report.

        ``def test_grad(gradcheck): gradcheck.jac(rosen, rosen_der, [1.3, 0.7, 0.8])``
        """
        __tracebackhide__ = True
        return self._check(lambda vg, opts: vg.check_grad(fun, jac, x0, *args, **opts),
                           options, lambda report, opts: _reproduce_jac(
                               fun, jac, (x0, *args), report, opts),
                           "verigrad.check_grad(fun, jac, x0" + ", *args" * bool(args))

    def _check(self, run: Callable[[Any, dict], Any], options: dict[str, Any],
               reproduce: Callable[[Any, dict], str | None], call: str) -> CheckReport:
        __tracebackhide__ = True
        import verigrad  # here, not at import: keeps pytest startup free of the checker

        opts = self.options(**options)
        strict = bool(opts.pop("strict", False))
        report_dir = opts.pop("report_dir", None)
        report_format = opts.pop("report_format", None)
        check_opts = {k: v for k, v in opts.items() if v is not None or k not in _SETTINGS}

        number = len(self.reports) + 1
        report, problem = _run(lambda: run(verigrad, check_opts))
        if problem:  # failed outside the except block: no chained traceback in the message
            pytest.fail(f"gradcheck {number}: {problem}", pytrace=False)
        report.reproduce = reproduce(report, check_opts)
        self.reports.append(report)
        saved = _save(report, report_dir, report_format, self._item.nodeid, number) \
            if report_dir else None

        self._record(report, number, check_opts, saved, call)
        if report.verdict == "fail":
            pytest.fail(_fail_message(report, number, saved), pytrace=False)
        if report.verdict == "inconclusive":
            why = _why_inconclusive(report)
            if strict:
                pytest.fail(f"gradcheck {number} is inconclusive and strict mode is on "
                            f"(--verigrad-strict / verigrad_strict / "
                            f"@pytest.mark.gradcheck(strict=True)): {why}\n\n{report}"
                            + (f"\n\nreport: {saved}" if saved else ""), pytrace=False)
            # stacklevel=3: the warning points at the test line that called the fixture
            # (through __call__ or jac)
            warnings.warn(VerigradInconclusiveWarning(
                f"gradcheck {number} of {report.expression} is inconclusive: {why}. It passes; "
                f"use --verigrad-strict or @pytest.mark.gradcheck(strict=True) to fail "
                f"instead"), stacklevel=3)
        return report

    def _record(self, report: CheckReport, number: int, check_opts: dict[str, Any],
                saved: Path | None, call: str) -> None:
        props = self._item.user_properties
        key = f"verigrad[{number}]"
        props.append((f"{key}.verdict", report.verdict))
        props.append((f"{key}.expression", str(report.expression)))
        if report.culprit is not None:
            props.append((f"{key}.culprit", report.culprit.grad_fn))
            props.append((f"{key}.culprit_path", report.culprit.path))
        if report.verdict == "inconclusive":
            props.append((f"{key}.reasons", ", ".join(report.reasons) or "unknown"))
        if saved is not None:
            props.append((f"{key}.report", str(saved)))
        props.append((f"{key}.seconds", round(float(report.seconds), 4)))
        records = self._item.stash.setdefault(_records_key, [])
        records.append(_Record(number, report.verdict, _details(report, number, check_opts,
                                                                saved, call)))


def _run(check: Callable[[], Any]) -> tuple[Any, str | None]:
    """``verigrad.check``, and the one line that says why it could not run (bad input, or
    the user's code raising: then where in the user's file)."""
    from verigrad.checker.problem import _where
    from verigrad.errors import VerigradError
    from verigrad.parse import ExpressionError

    try:
        return check(), None
    except (ValueError, TypeError, ExpressionError, VerigradError) as e:
        # CheckInputError is a ValueError; an ExpressionError's caret block is its message
        return None, f"{e}{_where(e)}"
    except Exception as e:  # noqa: BLE001 - the user's code (a backward, say) raised
        return None, f"the check could not run: {type(e).__name__}: {e}{_where(e)}"


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> GradcheckFixture:
    """Check gradients inside a test: ``gradcheck(fn, *inputs, **options)`` runs
    ``verigrad.check``, fails the test on a wrong gradient (naming the culprit op), warns on
    an inconclusive check and returns the report."""
    return GradcheckFixture(request)


# --- messages --------------------------------------------------------------------------------

def _why_inconclusive(report: CheckReport) -> str:
    reasons = ", ".join(report.reasons) or "no entry could be decided"
    where = "; ".join(report.kinks[:3])
    return f"{reasons}" + (f" ({where})" if where else "")


def _fail_message(report: CheckReport, number: int, saved: Path | None) -> str:
    head = f"gradcheck {number} found a wrong gradient"
    if report.culprit is not None:
        head += f": {report.culprit.grad_fn} (path {report.culprit.path})"
    return f"{head}\n\n{report}" + _reproduce_text(report) + \
        (f"\n\nreport: {saved}" if saved else "")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _reproduce_text(report: CheckReport) -> str:
    from verigrad.report.document import reproduce_command

    cmd = reproduce_command(report)
    return f"\n\nreproduce:\n{_indent(cmd)}" if cmd else ""


def _file_target(fn: Any) -> tuple[str, str] | None:
    """``(file, qualified name)`` when ``fn`` is reachable by name from its module's file
    (a module-level function, a ``Function``'s ``apply``), else None (a lambda, a closure)."""
    import inspect
    import sys

    owner = getattr(fn, "__self__", None)
    if inspect.isclass(owner):          # Softplus.apply: found through the class
        holder, tail = owner, "." + getattr(fn, "__name__", "")
    else:
        holder, tail = fn, ""
    qualname = getattr(holder, "__qualname__", "")
    module = sys.modules.get(getattr(holder, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if not qualname or "<" in qualname or not file or not file.endswith(".py"):
        return None
    obj: Any = module
    for part in (qualname + tail).split("."):
        obj = getattr(obj, part, None)
    if obj is None or obj != fn:        # a name rebound to something else: not this fn
        return None
    return file, qualname + tail


def _reproduce_jac(fun: Any, jac: Any, values: tuple, report: CheckReport,
                   options: dict[str, Any]) -> str | None:
    """``verigrad check file.py:fun --jac name --at ...`` when ``fun`` and ``jac`` live in
    one file, the values are numbers or arrays and every option has a flag; else None."""
    import json
    import os
    import shlex

    import numpy as np

    from verigrad.cli import _parameters

    flagged = {"seed", "nearby", "rtol", "atol"}
    if any(v is not None for k, v in options.items() if k not in flagged):
        return None                      # hess=, wrt=, eps=...: Python, not this command
    targets = [_file_target(f) for f in (fun, jac)]
    if None in targets or targets[0][0] != targets[1][0]:
        return None
    names, _ = _parameters(fun)
    if len(names) < len(values):
        return None
    try:
        arrays = [np.asarray(v, dtype=float) for v in values]
    except (TypeError, ValueError):
        return None
    rel = os.path.relpath(targets[0][0])
    path = targets[0][0] if rel.startswith("..") else rel
    parts = ["verigrad", "check", f"{path}:{targets[0][1]}", "--at"]
    parts += [f"{n}={json.dumps(a.tolist(), separators=(',', ':'))}"
              for n, a in zip(names, arrays)]
    for key, default in (("seed", 0), ("nearby", 3), ("rtol", None), ("atol", None)):
        v = report.settings.get(key, default)
        if v != default:
            parts += [f"--{key}", repr(v) if isinstance(v, float) else str(v)]
    parts += ["--jac", targets[1][1]]
    return " ".join(shlex.quote(p) for p in parts)


def _reproduce(fn: Any, inputs: tuple, report: CheckReport) -> str | None:
    """What reruns this check outside pytest: ``verigrad check file.py:fn --at ...`` when
    the command line can (fn found by name in its file, array inputs named as its
    parameters), else Python that loads the file and calls ``verigrad.check``; for a
    lambda or closure, the call with ``fn`` to define."""
    import os

    from verigrad.report.document import python_snippet, shell_command

    if isinstance(fn, str):
        return None                      # an expression: its text reruns it
    if len(report.inputs) != len(inputs):   # constant inputs: values not in the report
        return None
    target = _file_target(fn)
    if target is None:
        where = getattr(getattr(fn, "__code__", None), "co_filename", None)
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", None)
        at = f" (defined at {where}:{line})" if where and line else ""
        return python_snippet("fn", report, (f"fn = ...  # {getattr(fn, '__qualname__', fn)}"
                                             f"{at}",))
    file, qualname = target
    rel = os.path.relpath(file)
    path = file if rel.startswith("..") else rel
    from verigrad.cli import _parameters

    names, _ = _parameters(fn)
    if list(report.inputs) == names[:len(report.inputs)]:
        cmd = shell_command(f"{path}:{qualname}", report)
        if cmd:
            return cmd
    top, _, rest = qualname.partition(".")
    callee = f"runpy.run_path({path!r})[{top!r}]" + (f".{rest}" if rest else "")
    return python_snippet(callee, report, ("import runpy",))


def _details(report: CheckReport, number: int, check_opts: dict[str, Any],
             saved: Path | None, call: str = "verigrad.check(fn, *inputs") -> str:
    """The failure-report section: what the summary leaves out (per-node results, the
    settings that reproduce the check, where the report went)."""
    lines = [f"gradcheck {number}: {report.verdict} {report.expression} "
             f"({report.seconds:.2f}s)"]
    if report.verdict == "pass":
        return lines[0]
    # nodes found wrong at nearby points repeat: one line per node, its worst error
    worst: dict[tuple[str, str], Any] = {}
    for node in report.nodes:
        seen = worst.get((node.grad_fn, node.path))
        if seen is None or (seen.ok, seen.max_abs_error) > (node.ok, node.max_abs_error) \
                or (seen.ok == node.ok and node.max_abs_error > seen.max_abs_error):
            worst[(node.grad_fn, node.path)] = node
    for node in worst.values():
        status = "ok" if node.ok else "WRONG"
        lines.append(f"  {status:5} {node.grad_fn} (by {node.method}): max error "
                     f"{node.max_abs_error:.3g}, tolerance {node.tolerance:.3g}; path {node.path}")
    for kink in report.kinks:
        lines.append(f"  kink: {kink}")
    from verigrad.report.document import reproduce_command

    cmd = reproduce_command(report)
    if cmd:
        lines.append("  reproduce:\n" + _indent(cmd))
    else:
        shown = {k: v for k, v in check_opts.items() if v is not None}
        lines.append(f"  reproduce: {call}"
                     + "".join(f", {k}={v!r}" for k, v in sorted(shown.items())) + ")")
    if saved is not None:
        lines.append(f"  report: {saved}")
    return "\n".join(lines)


# --- report files ----------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9_.\-\[\]]")


def report_name(nodeid: str, number: int) -> str:
    """A file-system-safe directory name for call ``number`` of test ``nodeid``.

    Path separators become ``_`` and ``::`` becomes ``__``; if anything else had to be
    replaced (or the id is long), a hash of the full id keeps two tests apart.

    >>> report_name("tests/test_a.py::TestX::test_b[1-2]", 3)
    'tests_test_a.py__TestX__test_b[1-2]-3'
    >>> report_name("tests/test_a.py::test_b[a b]", 1)
    'tests_test_a.py__test_b[a_b]-6a44c3b1-1'
    """
    # "/" is a separator in the file part only; inside a test id it must count as unsafe
    path, sep, rest = nodeid.partition("::")
    plain = path.replace("/", "_").replace("\\", "_") + ("__" if sep else "") \
        + rest.replace("::", "__")
    safe = _SAFE.sub("_", plain)
    if safe != plain or len(safe) > 120:
        digest = hashlib.sha1(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[:110]}-{digest}"
    return f"{safe}-{number}"


def _save(report: CheckReport, directory: Path, formats: Any, nodeid: str,
          number: int) -> Path:
    target = Path(directory) / report_name(nodeid, number)
    problem = None
    try:
        if formats:
            report.save(str(target), formats=_formats(formats))
        else:
            report.save(str(target))
    except ValueError as exc:  # an unknown format, refused before anything is written
        problem = f"verigrad report format: {exc}"
    except OSError as exc:   # not writable, a full disk, a symlink in the report's place
        problem = f"cannot write the verigrad report to {target}: {exc.strerror or exc}"
    except ImportError as exc:
        # the renderers live in verigrad.report; an install without them cannot write files
        problem = (f"--verigrad-report-dir / verigrad_report_dir: this verigrad cannot write "
                   f"reports ({exc}); upgrade verigrad or drop the option")
    if problem:  # failed outside the except block: no chained traceback in the message
        pytest.fail(problem, pytrace=False)
    return target


def _formats(formats: Any) -> tuple[str, ...]:
    if isinstance(formats, str):
        return tuple(f.strip() for f in formats.split(",") if f.strip())
    return tuple(formats)


# --- reporting hooks -------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)  # old-style wrapper: works on every pytest >= 7
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    # the checks made during this phase go into its report, as a section shown on failure
    records = item.stash.get(_records_key, None)
    if records:
        fresh = [r for r in records if not r.shown]
        if fresh:
            for r in fresh:
                r.shown = True
            report.sections.append(("verigrad checks", "\n".join(r.text for r in fresh)))


class _Summary:
    """Counts verdicts for the terminal summary line. One per pytest config (an object, not
    module state, so in-process pytester runs do not share counts)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.counts: Counter = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # runs in-process and, under xdist, on the controller for every worker's report; the
        # teardown report carries every property the test recorded, so it is counted once
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if _VERDICT_PROPERTY.match(str(name)):
                self.counts[str(value)] += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller prints
            return
        total = sum(self.counts.values())
        if not total:
            return
        c = self.counts
        terminalreporter.write_line(
            f"verigrad: {total} check{'s' if total != 1 else ''}, {c['pass']} pass, "
            f"{c['fail']} fail, {c['inconclusive']} inconclusive")
