"""Every bad input gets one clear line (exit 2 on the command line), never a traceback."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import verigrad as vg
from verigrad.checker import CheckInputError
from verigrad.checker.options import MAX_NEARBY, backend_warning, validate_options
from verigrad.cli import MAX_DEPTH, main

pytest_plugins = ["pytester"]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("verigrad: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- the command line ----------------------------------------------------------------------

@pytest.mark.parametrize("value, says", [
    ("1" * 401, "too large for float64"),
    ("1" * 5000, "too large for float64"),
    ("[" * 900 + "1" + "]" * 900, f"at most {MAX_DEPTH} levels"),
    ("[" * (MAX_DEPTH + 1) + "1" + "]" * (MAX_DEPTH + 1), f"at most {MAX_DEPTH} levels"),
    ("1e999", "finite"),
    ("NaN", "not a JSON number"),
    ("[1, [2]]", "rectangular"),
])
def test_bad_at_values_are_one_line(capsys: pytest.CaptureFixture, value: str, says: str) -> None:
    code, out, err = run_cli(capsys, "check", "x*x", "--at", f"x={value}")
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert says in line
    assert len(line) < 300      # the 401-digit number is not echoed in full


def test_float32_overflow_is_refused_without_a_numpy_warning(capsys: pytest.CaptureFixture
                                                             ) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, err = run_cli(capsys, "check", "x", "--at", "x=1e39", "--dtype", "float32")
    assert code == 2 and "finite in float32" in one_line_error(err)


@pytest.mark.parametrize("argv, says", [
    (["--seed", "-1"], "--seed: '-1' is out of range"),
    (["--seed", "1.5"], "--seed: '1.5' is not a whole number"),
    (["--nearby", str(MAX_NEARBY + 1)], f"use 0 to {MAX_NEARBY}"),
    (["--nearby", "-1"], "--nearby"),
    (["--rtol", "-1"], "--rtol"),
])
def test_bad_options_are_one_line(capsys: pytest.CaptureFixture, argv: list[str], says: str
                                  ) -> None:
    code, _, err = run_cli(capsys, "check", "x*x", "--at", "x=1", *argv)
    assert code == 2 and says in one_line_error(err)


def test_the_nearby_cap_is_documented_in_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert f"0 to {MAX_NEARBY}" in " ".join(capsys.readouterr().out.split())


USER_FILE = '''\
import numpy as np
import verigrad as vg


def empty(x):
    return ()


def boom(x):
    return x / 0.0 + {}["missing"]


class Bad(vg.Function):
    @staticmethod
    def forward(ctx, x):
        return vg.tensor(np.sin(x.numpy()))

    @staticmethod
    def backward(ctx, grad):
        raise KeyError("oops")


def bad_backward(x):
    return Bad.apply(x).sum()
'''


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_code.py"
    path.write_text(USER_FILE)
    return path


def test_a_function_returning_nothing(capsys: pytest.CaptureFixture, user_file: Path) -> None:
    code, _, err = run_cli(capsys, "check", f"{user_file}:empty", "--at", "x=1")
    assert code == 2 and "returned an empty tuple" in one_line_error(err)


@pytest.mark.parametrize("function, line", [("boom", 10), ("bad_backward", 20)])
def test_user_errors_say_where_in_the_users_file(capsys: pytest.CaptureFixture,
                                                  user_file: Path, function: str, line: int
                                                  ) -> None:
    code, _, err = run_cli(capsys, "check", f"{user_file}:{function}", "--at", "x=[1,2]")
    assert code == 2
    assert f"{user_file}:{line}" in one_line_error(err)


def test_unknown_backend_is_a_warning_and_falls_back(capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIGRAD_SYMBOLIC_BACKEND", "sympi")
    code, out, err = run_cli(capsys, "check", "sin(x)", "--at", "x=1", "--nearby", "0")
    assert code == 0 and "PASS" in out
    assert err.splitlines() == ["verigrad: warning: VERIGRAD_SYMBOLIC_BACKEND='sympi' is not "
                                "one of auto, sympy, symengine; using auto"]
    with pytest.warns(RuntimeWarning, match="VERIGRAD_SYMBOLIC_BACKEND='sympi'"):
        assert vg.check("sin(x)", x=1.0, nearby=0).verdict == "pass"


@pytest.mark.parametrize("value", ["auto", "sympy", "symengine"])
def test_known_backends_do_not_warn(value: str) -> None:
    assert backend_warning({"VERIGRAD_SYMBOLIC_BACKEND": value}) is None
    assert backend_warning({}) is None


def test_no_runtime_warning_reaches_stderr(tmp_path: Path) -> None:
    # a subprocess, so the interpreter's own warning filters decide (as for a user)
    script = tmp_path / "warny.py"
    script.write_text("import numpy as np\n\ndef f(x):\n    np.log(np.zeros(1))\n"
                      "    return x * x\n")
    for argv in (["check", "log(x) + 1/x", "--at", "x=0"],
                 ["check", f"{script}:f", "--at", "x=2"],
                 ["check", "x", "--at", "x=1e39", "--dtype", "float32"]):
        res = subprocess.run([sys.executable, "-m", "verigrad", *argv, "--nearby", "1"],
                             capture_output=True, text=True, timeout=300)
        assert "RuntimeWarning" not in res.stderr, (argv, res.stderr)
        assert "Traceback" not in res.stderr, (argv, res.stderr)


# --- the API ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options, says", [
    (dict(rtol=-1), "rtol=-1"),
    (dict(atol=math.nan), "atol=nan"),
    (dict(atol=math.inf), "atol=inf"),
    (dict(eps=0.0), "eps=0.0"),
    (dict(nearby=-1), "nearby=-1"),
    (dict(nearby=MAX_NEARBY + 1), f"use 0 to {MAX_NEARBY}"),
    (dict(max_rows=0), "max_rows=0"),
    (dict(seed=1.5), "seed=1.5"),
    (dict(seed=-1), "seed=-1"),
    (dict(seed=True), "seed=True"),
    (dict(rtol="1e-3"), "rtol='1e-3'"),
    (dict(progress=3), "progress=3"),
])
def test_check_refuses_options_out_of_range(options: dict, says: str) -> None:
    with pytest.raises(CheckInputError) as info:
        vg.check("x*x", x=1.0, **options)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert says in message and "\n" not in message


def test_validate_options_accepts_the_defaults_and_numpy_integers() -> None:
    validate_options()
    validate_options(seed=np.int64(7), nearby=np.int32(2), rtol=np.float32(1e-3), atol=0)
    assert vg.check("x*x", x=1.0, seed=np.int64(3), nearby=1).verdict == "pass"


def test_duplicate_input_names_are_refused() -> None:
    with pytest.raises(CheckInputError, match="'x' is used twice"):
        vg.check(lambda a, b: a * b, 1.0, 2.0, names=["x", "x"])
    with pytest.raises(CheckInputError, match="1 name"):
        vg.check(lambda a, b: a * b, 1.0, 2.0, names=["x"])
    with pytest.raises(CheckInputError, match="list of strings"):
        vg.check(lambda a: a * 2, 1.0, names="x")


def test_a_function_returning_an_empty_tuple_is_refused() -> None:
    with pytest.raises(CheckInputError, match="returned an empty tuple"):
        vg.check(lambda a: (), 1.0)


def test_api_errors_from_user_code_say_file_and_line() -> None:
    def user(x):
        return x * {}["key"]

    line = user.__code__.co_firstlineno + 1
    with pytest.raises(CheckInputError, match=rf"test_bad_input\.py:{line} in user\)"):
        vg.check(user, 1.0)


def test_markdown_formulas_escape_odd_input_names() -> None:
    md = vg.check(lambda a, b: a * b, 1.0, 2.0, names=["a$b", "c\n\n$$ d"],
                  nearby=0).to_markdown()
    formulas = [line for line in md.splitlines() if line.startswith("$$")]
    assert len(formulas) == 2
    for line in formulas:
        assert line.endswith(" $$")
        inner = line[2:-2]
        assert "$" not in inner.replace(r"\$", "")    # no unescaped dollar inside


# --- the pytest fixture ----------------------------------------------------------------------

def test_fixture_errors_are_one_line_without_verigrads_frames(pytester: pytest.Pytester
                                                              ) -> None:
    pytester.makepyfile(test_user=USER_FILE + textwrap.dedent('''

        def test_option(gradcheck):
            gradcheck("x*x", x=1.0, rtol=-1)

        def test_empty(gradcheck):
            gradcheck(empty, 1.0)

        def test_backward(gradcheck):
            gradcheck(bad_backward, [1.0, 2.0])
    '''))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    assert "verigrad/checker" not in text and "Traceback" not in text
    result.stdout.fnmatch_lines([
        "gradcheck 1: rtol=-1 must be a finite number >= 0*",
        "gradcheck 1: empty returned an empty tuple*",
        "gradcheck 1: the check could not run: KeyError: 'oops' (at *test_user.py:20 in "
        "backward)",
    ])
