"""The reproduce command reproduces (issue 10, item 3): run as printed, it gives the same
verdict; a file.py:function target reruns as that file target; the pytest fixture prints a
command or Python snippet; a function named like one of its own inputs is never rerun as
an expression of that name."""
from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import verigrad as vg
from verigrad.cli import EXIT_CODES, main
from verigrad.report.document import reproduce_command

pytest_plugins = ["pytester"]

CUBE = '''
import verigrad as vg


def x(x):
    """A function named like its own input: `verigrad check x` would check the identity."""
    return x * x * x


class Cube(vg.Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a * a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * 2 * a * a        # wrong: 3 a^2

    @staticmethod
    def symbolic(a):
        return a ** 3


def cube_sum(a):
    return Cube.apply(a).sum()
'''


def _rerun(cmd: str, cwd) -> int:
    """Run a printed ``verigrad check ...`` command; its exit status."""
    args = shlex.split(cmd)
    assert args[:2] == ["verigrad", "check"], cmd
    return subprocess.run([sys.executable, "-m", "verigrad", *args[1:]], cwd=cwd,
                          capture_output=True, text=True).returncode


def _exec(snippet: str, cwd, monkeypatch) -> str:
    monkeypatch.chdir(cwd)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), np.errstate(all="ignore"):
        exec(compile(snippet, "<reproduce>", "exec"), {})
    return out.getvalue().strip()


@pytest.fixture
def user_file(tmp_path):
    (tmp_path / "mine.py").write_text(CUBE)
    return tmp_path


@pytest.mark.parametrize("target, at, verdict", [
    ("mine.py:x", ["x=2"], "pass"),
    ("mine.py:cube_sum", ["a=[1,-2]"], "fail"),
    ("mine.py:Cube.apply", ["a=[0.5,3]"], "fail"),
])
def test_a_file_targets_command_names_the_file_and_reruns(user_file, monkeypatch, capsys,
                                                          target, at, verdict):
    monkeypatch.chdir(user_file)
    code = main(["report", target, "--at", *at, "--nearby", "1", "--out", "r", "--format",
                 "json"])
    capsys.readouterr()
    assert code == EXIT_CODES[verdict]
    cmd = json.loads((user_file / "r" / "report.json").read_text())["reproduce"]
    assert cmd.startswith(f"verigrad check {target} --at ") and "--nearby 1" in cmd
    assert _rerun(cmd, user_file) == code


def test_a_function_named_like_its_input_is_not_rerun_as_an_expression(user_file,
                                                                        monkeypatch):
    monkeypatch.syspath_prepend(str(user_file))
    import mine

    report = vg.check(mine.x, 2.0, nearby=0)
    assert report.expression == "x" and report.verdict == "pass"
    # `verigrad check x --at x=2.0` would check the identity, not x**3
    assert reproduce_command(report) is None
    assert json.loads(report.to_json())["reproduce"] is None
    assert "Rerun this check" not in report.to_markdown()


def test_an_expression_with_options_the_cli_lacks_gets_python(monkeypatch, tmp_path):
    report = vg.check("x * exp(y)", x=1.5, y=-0.5, use_symbolic=False, nearby=0)
    snippet = reproduce_command(report)
    assert snippet.startswith("import numpy as np\nimport verigrad as vg\n")
    assert "use_symbolic=False" in snippet
    assert _exec(snippet, tmp_path, monkeypatch) == report.verdict
    assert "```python" in report.to_markdown()


def test_an_expressions_command_reruns_with_the_same_verdict(tmp_path):
    with np.errstate(all="ignore"):
        report = vg.check("abs(x) + y", x=0.0, y=1.0, nearby=2, seed=4)
    cmd = reproduce_command(report)
    assert cmd == "verigrad check 'abs(x) + y' --at x=0.0 y=1.0 --seed 4 --nearby 2"
    assert _rerun(cmd, tmp_path) == EXIT_CODES[report.verdict] == 3


FIXTURE_TESTS = CUBE + '''

import numpy as np


def test_file_function(gradcheck):
    gradcheck(cube_sum, np.array([1.0, -2.0]), nearby=0)


def test_apply(gradcheck):
    gradcheck(Cube.apply, np.array([0.5]), max_rows=4, nearby=0)


def test_lambda(gradcheck):
    gradcheck(lambda a: Cube.apply(a).sum(), np.array([2.0]), nearby=0)
'''


def _printed(text: str, test: str) -> str:
    """The reproduce block of one failed test's message."""
    block = text.split(f"_ {test} _", 1)[1]
    lines = block.split("reproduce:\n", 1)[1].splitlines()
    body = []
    for line in lines:
        if not line.startswith("    "):
            break
        body.append(line[4:])
    return "\n".join(body)


def test_the_fixture_prints_what_reruns_the_check(pytester, monkeypatch):
    pytester.makepyfile(test_cube=FIXTURE_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()

    # a module-level function: the command line, naming the test file
    cmd = _printed(out, "test_file_function")
    assert cmd == "verigrad check test_cube.py:cube_sum --at 'a=[1.0,-2.0]' --nearby 0"
    assert _rerun(cmd, pytester.path) == EXIT_CODES["fail"]

    # an option the command line has no flag for: Python that loads the file
    snippet = _printed(out, "test_apply")
    assert "runpy.run_path('test_cube.py')['Cube'].apply" in snippet and "max_rows=4" in snippet
    assert _exec(snippet, pytester.path, monkeypatch) == "fail"

    # a lambda has no name to import: the call, with fn to define, and where it is
    snippet = _printed(out, "test_lambda")
    assert snippet.splitlines()[2].startswith("fn = ...  # test_lambda.<locals>.<lambda>")
    assert "test_cube.py:" in snippet.splitlines()[2]
    assert snippet.splitlines()[3] == ("print(vg.check(fn, np.array([2.0], dtype='float64'), "
                                       "names=['a'], nearby=0).verdict)")
