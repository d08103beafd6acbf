"""The ``verigrad`` command through a real process: exit codes, every bad input, the report
files, the progress bar on a terminal, and the committed example reports."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = Path(__file__).resolve().parent / "report_examples.py"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    e.pop("VERIGRAD_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "verigrad", *args], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# --- exit codes ------------------------------------------------------------------------------

def test_check_pass_prints_the_summary():
    p = run("check", "w*x + b", "--at", "x=2", "w=3", "b=1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("verigrad: PASS  w*x + b\n")
    assert "\033[" not in p.stdout            # not a terminal: no colour
    assert re.search(r"^  x +3 +3 ", p.stdout, flags=re.M)


def test_check_fail_names_the_culprit():
    p = run("check", f"{EXAMPLES}:softplus_wrong", "--at", "x=[-1,0,2]", "--nearby", "0")
    assert p.returncode == 1, p.stderr
    assert "FAIL" in p.stdout and "culprit: SoftplusBackward" in p.stdout


def test_check_json_prints_the_report_for_scripts():
    p = run("check", f"{EXAMPLES}:softplus_wrong", "--at", "x=[-1,0,2]", "--nearby", "0",
            "--json")
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    assert report["schema"] == "verigrad-report" and report["verdict"] == "fail"
    assert report["culprit"]["grad_fn"] == "SoftplusBackward"


def test_values_may_be_given_as_one_comma_separated_list():
    from verigrad.cli import parse_values

    got = parse_values(["x=[1,2],w=3", "b=-1"])
    assert list(got) == ["x", "w", "b"] and got["x"].tolist() == [1.0, 2.0]
    assert parse_values(["x=[[1,2],[3,4]]"])["x"].shape == (2, 2)
    p = run("check", "w*x + b", "--at", "x=2,w=3,b=1", "--nearby", "0")
    assert p.returncode == 0 and re.search(r"^  x +3 +3 ", p.stdout, flags=re.M), p.stdout


def test_an_expression_may_start_with_a_minus():
    p = run("check", "-x*y", "--at", "x=1", "y=2", "--nearby", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("verigrad: PASS  -x*y\n")


def test_check_inconclusive_at_a_kink():
    p = run("check", "abs(x)", "--at", "x=0", "--nearby", "0")
    assert p.returncode == 3, p.stderr
    assert "INCONCLUSIVE" in p.stdout and "kink" in p.stdout


# --- bad input: one clear line (or a caret block), exit 2, never a traceback -------------------

BAD = {
    "unparseable expression": (["check", "sin(x", "--at", "x=1"],
                                "syntax error: '(' was never closed\n  sin(x\n     ^"),
    "unknown function": (["check", "foo(x)", "--at", "x=1"], "unknown function 'foo'"),
    "missing value": (["check", "w*x", "--at", "x=1"], "missing --at value for w"),
    "extra value": (["check", "x*2", "--at", "x=1", "z=2"], "--at z is not in the expression"),
    "no value at all": (["check", "x*2"], "missing --at value for x"),
    "wrong shape": (["check", "x @ y", "--at", "x=[1,2]", "y=[1,2,3]"],
                    "shapes cannot be multiplied"),
    "non-JSON value": (["check", "x*2", "--at", "x=abc"], "not a JSON number"),
    "NaN value": (["check", "x*2", "--at", "x=NaN"], "not a JSON number"),
    "string value": (["check", "x*2", "--at", 'x="1"'], "only numbers"),
    "ragged array": (["check", "sum(x)", "--at", "x=[[1,2],[3]]"], "not a rectangular array"),
    "no equals sign": (["check", "x*2", "--at", "x"], "expected NAME=VALUE"),
    "value twice": (["check", "x*2", "--at", "x=1", "x=2"], "x is given twice"),
    "missing file": (["check", "no/such/file.py:f", "--at", "x=1"], "no such file"),
    "missing function": (["check", f"{EXAMPLES}:nope", "--at", "x=1"],
                         "has no function 'nope'"),
    "not a function": (["check", f"{EXAMPLES}:NOT_A_FUNCTION", "--at", "x=1"],
                       "is not a function"),
    "missing parameter": (["check", f"{EXAMPLES}:layer", "--at", "x=[1,2]"],
                          "missing --at value for A"),
    "function fails": (["check", f"{EXAMPLES}:raises", "--at", "x=1"], "ZeroDivisionError"),
    "no subcommand": ([], "required"),
    "unknown option": (["check", "x", "--at", "x=1", "--frobnicate"], "unrecognized"),
    "bad format": (["report", "x*2", "--at", "x=1", "--format", "json,pdf"], "--format"),
    "bad dtype": (["check", "x*2", "--at", "x=1", "--dtype", "int8"], "invalid choice"),
    "negative tolerance": (["check", "x*2", "--at", "x=1", "--rtol", "-1"], "must be"),
}


@pytest.fixture(scope="module")
def bad_results():
    """Every bad-input run, a few at a time (each is mostly interpreter start-up)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(subprocess.run, [sys.executable, "-m", "verigrad", *args],
                                     cwd=ROOT, capture_output=True, text=True, timeout=120)
                   for case, (args, _) in BAD.items()}
        return {case: f.result() for case, f in futures.items()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_error(case, bad_results):
    args, message = BAD[case]
    p = bad_results[case]
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr
    assert p.stderr.startswith("verigrad: error: ")
    assert p.stdout == ""
    # one line, or the parser's caret block (3 lines) for expression errors
    assert len(p.stderr.strip().splitlines()) in (1, 3), p.stderr


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    p = run("report", "x*2", "--at", "x=1", "--out", str(blocker / "sub"))
    assert p.returncode == 2
    assert p.stderr.startswith("verigrad: error: --out ") and len(p.stderr.splitlines()) == 1


# --- report files ---------------------------------------------------------------------------

def test_report_default_directory_and_formats(tmp_path):
    p = run("report", "w*x + b", "--at", "x=2", "w=3", "b=1", "--format", "json,md",
            "--nearby", "0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [os.path.join("reports", "w-x-b", "report.json"),
                                     os.path.join("reports", "w-x-b", "report.md")]
    assert "PASS" in p.stderr
    doc = json.loads((tmp_path / "reports/w-x-b/report.json").read_text())
    assert [e["tape"] for e in doc["entries"]] == [3.0, 2.0, 1.0]
    assert not (tmp_path / "reports/w-x-b/report.html").exists()


def test_report_options_are_recorded(tmp_path):
    out = tmp_path / "out"
    p = run("report", "sin(x)*y", "--at", "x=0.7", "y=2", "--dtype", "float32", "--seed", "5",
            "--nearby", "1", "--rtol", "1e-6", "--atol", "1e-9", "--out", str(out),
            "--format", "json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out / "report.json")
    doc = json.loads((out / "report.json").read_text())
    assert doc["inputs"]["x"]["dtype"] == "float32"
    assert doc["settings"]["seed"] == 5 and doc["points"][1]["seed"] == 6
    assert doc["settings"]["rtol"] == 1e-6 and doc["settings"]["atol"] == 1e-9
    assert any("float32" in n for n in doc["notes"])
    assert "--dtype float32 --seed 5 --nearby 1 --rtol 1e-06 --atol 1e-09" in doc["reproduce"]


def test_help_shows_usage():
    p = run("--help")
    assert p.returncode == 0 and "{check,report}" in p.stdout
    p = run("report", "--help")
    assert p.returncode == 0 and "--format" in p.stdout and "exit codes" in p.stdout


# --- the progress bar: on a terminal only, for checks over a second ---------------------------

def test_progress_bar_only_on_a_terminal(tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import time\n"
                    "calls = []\n"
                    "def f(x):\n"
                    "    if not calls:\n"
                    "        calls.append(1)\n"
                    "        time.sleep(1.6)\n"
                    "    return (x * x).sum()\n")
    args = [sys.executable, "-m", "verigrad", "check", f"{slow}:f", "--at", "x=2",
            "--nearby", "0"]
    piped = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "verigrad [" not in piped.stderr
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, timeout=60,
                              env=dict(os.environ, TERM="xterm"))
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"verigrad [" in seen and b"%" in seen
    assert seen.endswith(b"\r\x1b[K")      # the bar is cleared at the end


# --- the committed example reports ----------------------------------------------------------

#: the committed examples (a user's own reports under reports/ are not examples)
EXAMPLE_NAMES = ("linear", "tanh-layer", "abs-kink", "softplus-wrong")
#: any number in a rendered report: compared within a tolerance, since the last digit of a
#: float computation may differ between machines (BLAS, libm)
SVG = re.compile(r"<svg\b.*?</svg>", re.S)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _close(a, b, path="") -> None:
    """Assert two JSON values are equal, numbers within 1e-9 relative."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) \
            or not isinstance(b, (int, float)):
        if isinstance(a, dict) and isinstance(b, dict):
            assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
            for k in a:
                _close(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list):
            assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
            for i, (x, y) in enumerate(zip(a, b)):
                _close(x, y, f"{path}[{i}]")
        elif isinstance(a, str) and isinstance(b, str):
            assert _numbers_close(a, b), f"{path}: {a!r} != {b!r}"
        else:
            assert a == b, f"{path}: {a!r} != {b!r}"
        return
    if path.rsplit(".", 1)[-1] in _ROUNDING_LEVEL and max(abs(a), abs(b)) < 1e-12:
        return  # errors of a few ulps: their exact value depends on the CPU's BLAS kernels
    assert a == pytest.approx(b, rel=1e-9, abs=1e-300), f"{path}: {a!r} != {b!r}"


#: fields that measure a difference: on another CPU, rounding-level ones differ in value
_ROUNDING_LEVEL = {"abs_error", "rel_error", "max_abs_error", "symbolic_error"}


def _numbers_close(a: str, b: str) -> bool:
    """Same text with numbers masked, and the numbers equal within 1e-6 relative (printed
    numbers are rounded, so one ulp can move the last printed digit)."""
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    xs, ys = NUMBER.findall(a), NUMBER.findall(b)
    return all(float(x) == pytest.approx(float(y), rel=1e-6, abs=1e-12) for x, y in zip(xs, ys))


def test_examples_regenerate_within_rounding(tmp_path):
    committed = ROOT / "reports"
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    p = subprocess.run(["sh", str(committed / "generate.sh"), str(tmp_path)], cwd=ROOT,
                       env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    versions = json.loads((tmp_path / "linear/report.json").read_text())["versions"]
    old = json.loads((committed / "linear/report.json").read_text())["versions"]
    if versions != old:
        pytest.skip(f"the committed reports were made with {old}, this is {versions}: "
                    f"run sh reports/generate.sh")
    for name in EXAMPLE_NAMES:
        new = json.loads(TIMESTAMP.sub("T", (tmp_path / name / "report.json").read_text()))
        ref = json.loads(TIMESTAMP.sub("T", (committed / name / "report.json").read_text()))
        _close(new, ref, f"reports/{name}/report.json")
        for fmt in ("md", "html"):
            # the figures plot the JSON's numbers (compared above) on log axes, where a
            # rounding-level error that differs between CPUs moves a marker visibly
            new = SVG.sub("<svg/>", TIMESTAMP.sub("T", (tmp_path / name / f"report.{fmt}").read_text()))
            ref = SVG.sub("<svg/>", TIMESTAMP.sub("T", (committed / name / f"report.{fmt}").read_text()))
            assert _numbers_close(new, ref), \
                f"reports/{name}/report.{fmt} differs: run sh reports/generate.sh"
    linear = json.loads((tmp_path / "linear/report.json").read_text())
    assert [e["tape"] for e in linear["entries"]] == [3.0, 2.0, 1.0]
    wrong = json.loads((tmp_path / "softplus-wrong/report.json").read_text())
    assert wrong["verdict"] == "fail" and wrong["culprit"]["grad_fn"] == "SoftplusBackward"
    assert json.loads((tmp_path / "abs-kink/report.json").read_text())["verdict"] == \
        "inconclusive"
