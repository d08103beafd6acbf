"""Shared pieces of the benchmark scripts (engine.py, symbolic.py, checker.py).

Importing this module pins numpy's BLAS/OpenMP pools to one thread (before numpy is imported;
worker processes inherit the environment), so import it before numpy.

- ``import_verigrad`` / ``import_torch``: the package under test (``--src``) and torch pinned to
  one thread, or None with a note for the header.
- ``time_calls`` / ``alternate`` / ``paired_ratio``: timing in alternating rounds, the order
  flipping every round, and the median of per-round ratios against a baseline with its IQR.
- ``Worker``: a spawned worker process (a clean interpreter) that runs one setup function and
  then module-level functions on the state it returned, one message at a time, with an
  optional timeout (the process is killed when it is exceeded) and extra environment.
- ``print_table``, ``cpu_name``, ``median``: the report.
"""
from __future__ import annotations

import os

# pin every BLAS/OpenMP pool to one thread; must happen before numpy/torch are imported
# (worker processes inherit the environment)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

try:
    import resource  # noqa: E402
except ImportError:  # not on Windows
    resource = None

ROOT = Path(__file__).resolve().parent.parent


def import_verigrad(src: str | None):
    """verigrad from ``src`` (a directory holding the package), default this checkout."""
    path = str(Path(src).resolve() if src else ROOT)
    if path not in sys.path:
        sys.path.insert(0, path)
    import verigrad

    return verigrad


def import_torch(enabled: bool = True):
    """(torch or None, a note for the header)."""
    if not enabled:
        return None, "disabled (--no-torch)"
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch column"
        return None, f"not importable ({type(e).__name__}: {e})"
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (only allowed once per process)
    return torch, torch.__version__


# ---------------------------------------------------------------------------------------
# timing


def minflt() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def time_calls(fn: Callable, inner: int, settle: int) -> tuple[float, float]:
    """Seconds per call and minor page faults per call over ``inner`` calls, after
    ``settle`` untimed ones."""
    for _ in range(settle):
        fn()
    clock = time.perf_counter
    f0 = minflt()
    t0 = clock()
    for _ in range(inner):
        fn()
    t = clock() - t0
    return t / inner, (minflt() - f0) / inner


def alternate(runners: dict[str, Any], rounds: int, inner: int, settle: int = 1
              ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One sample per contender per round, the order flipping every round. A runner has
    ``run(inner, settle) -> (seconds per call, page faults per call)``."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t, f = runners[name].run(inner, settle)
            times[name].append(t)
            faults[name].append(f)
    return times, faults


def paired_ratio(times: dict[str, list[float]], name: str, base: str
                 ) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile) of the per-round ratios name / base."""
    ratios = sorted(a / b for a, b in zip(times[name], times[base]))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# ---------------------------------------------------------------------------------------
# worker processes


class WorkerTimeout(RuntimeError):
    """A worker did not answer within its timeout; it has been killed."""


class WorkerError(RuntimeError):
    """A worker raised; the message holds the exception (and its last traceback line)."""


def _serve(conn: Any, setup: Callable, args: tuple) -> None:
    """A worker's main loop: ``state = setup(*args)``, then for each message ``(fn, args)``
    answer ``fn(state, *args)``; ``None`` stops."""
    try:
        state = setup(*args)
        conn.send(("ok", None))
    except BaseException as e:  # noqa: BLE001 - hand the failure to the parent
        conn.send(("error", _describe(e)))
        return
    while True:
        msg = conn.recv()
        if msg is None:
            conn.send(("ok", None))
            return
        fn, fargs = msg
        try:
            conn.send(("ok", fn(state, *fargs)))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", _describe(e)))


def _describe(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


class Worker:
    """A spawned process (a clean interpreter: no inherited heap, threads or imports) that
    runs ``setup(*args)`` once, then ``call(fn, *args)`` -> ``fn(state, *args)``.

    ``setup`` and every ``fn`` must be module-level functions (they are sent by reference).
    ``env`` is added to the environment the process starts with (e.g. a backend setting
    read at import time). ``timeout`` (seconds) applies to setup and to each call unless
    the call gives its own; on a timeout the process is killed and ``WorkerTimeout`` raised.
    """

    def __init__(self, setup: Callable, *args: Any, env: dict[str, str] | None = None,
                 timeout: float | None = None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, setup, args), daemon=True)
        self.timeout = timeout
        saved = {k: os.environ.get(k) for k in (env or {})}
        try:
            os.environ.update(env or {})
            self.proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self._answer(timeout)

    def _answer(self, timeout: float | None) -> Any:
        if timeout is not None and not self.conn.poll(timeout):
            self.kill()
            raise WorkerTimeout(f"no answer within {timeout:g} s")
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.kill()
            raise WorkerError(f"worker exited (code {self.proc.exitcode})") from None
        if status != "ok":
            raise WorkerError(value)
        return value

    def call(self, fn: Callable, *args: Any, timeout: float | None = None) -> Any:
        self.conn.send((fn, args))
        return self._answer(timeout if timeout is not None else self.timeout)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
                if self.conn.poll(5):
                    self.conn.recv()
            except (OSError, EOFError):
                pass
            self.proc.join(timeout=5)
        self.kill()


# ---------------------------------------------------------------------------------------
# report


def print_table(head: Sequence[str], rows: Sequence[Sequence[str]], group: int | None = 0
                ) -> None:
    """A plain-text table; a blank line wherever column ``group`` changes value."""
    data = [tuple(head)] + [tuple(r) for r in rows]
    widths = [max(len(row[i]) for row in data) for i in range(len(head))]

    def line(row: tuple) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    print(line(data[0]))
    print("  ".join("-" * w for w in widths))
    last = None
    for row in data[1:]:
        if group is not None and last is not None and row[group] != last:
            print()
        print(line(row))
        last = row[group] if group is not None else None


def cpu_name() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
