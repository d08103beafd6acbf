"""Issue 13's command line and fixture: ``verigrad check file.py:fun --jac file.py:jac`` and
``gradcheck.jac(fun, jac, x0)`` check a hand-written scipy-style derivative of plain numpy
code against the exact one, naming the wrong entry."""
from __future__ import annotations

import json
import shlex

import pytest

from verigrad.cli import main

pytest_plugins = ["pytester"]

MODEL = '''
import numpy as np


def rosen(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0, axis=0)


def rosen_der(x):
    der = np.zeros_like(x)
    xm, xm_m1, xm_p1 = x[1:-1], x[:-2], x[2:]
    der[1:-1] = 200 * (xm - xm_m1 ** 2) - 400 * (xm_p1 - xm ** 2) * xm - 2 * (1 - xm)
    der[0] = -400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0])
    der[-1] = 200 * (x[-1] - x[-2] ** 2)
    return der


def bad_der(x):
    g = rosen_der(x)
    g[2] += 1e-7            # one entry off by 1e-7 (scipy's check_grad cannot see it)
    return g


def rosen_hess(x):
    H = np.diag(-400 * x[:-1], 1) - np.diag(400 * x[:-1], -1)
    diagonal = np.zeros_like(x)
    diagonal[0] = 1200 * x[0] ** 2 - 400 * x[1] + 2
    diagonal[-1] = 200
    diagonal[1:-1] = 202 + 1200 * x[1:-1] ** 2 - 400 * x[2:]
    return H + np.diag(diagonal)


def scaled(x, a):
    return a * np.sum(np.sin(x))


def scaled_der(x, a):
    return a * np.cos(x)
'''
X0 = "x=[1.3,0.7,0.8,1.9,1.2]"


@pytest.fixture
def model(tmp_path, monkeypatch):
    (tmp_path / "model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv, code", [
    (["model.py:rosen", "--jac", "model.py:rosen_der"], 0),
    (["model.py:rosen", "--jac", "rosen_der", "--hess", "rosen_hess"], 0),
    (["model.py:scaled", "--jac", "scaled_der", "--at", "a=[2.5]"], 0),
])
def test_a_right_jac_passes(model, capsys, argv, code):
    at = [] if "--at" in argv else ["--at", X0]
    if "--at" in argv:
        argv = argv[:argv.index("--at")] + ["--at", "x=[0.3,-1.2]"] + argv[argv.index("--at") + 1:]
    assert main(["check", *argv, *at, "--nearby", "1"]) == code, capsys.readouterr()


def test_a_wrong_entry_is_named_and_the_report_reruns(model, capsys):
    assert main(["report", "model.py:rosen", "--jac", "bad_der", "--at", X0, "--nearby", "0",
                 "--out", "r", "--format", "json"]) == 1
    doc = json.loads((model / "r" / "report.json").read_text())
    assert [e["label"] for e in doc["entries"] if e["status"] == "fail"] == ["x[2]"]
    assert "jac is wrong at 1 entry (x[2])" in doc["culprit"]["message"]
    cmd = doc["reproduce"]
    assert cmd.startswith("verigrad check model.py:rosen --at ") and cmd.endswith(
        "--jac bad_der")
    capsys.readouterr()
    assert main(shlex.split(cmd)[1:]) == 1
    assert "x[2]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["x*y", "--jac", "j", "--at", "x=1", "y=2"], "--jac checks a function in a file"),
    (["model.py:rosen", "--hess", "rosen_hess", "--at", X0], "--hess needs --jac"),
    (["model.py:rosen", "--jac", "nope", "--at", X0], "has no function 'nope'"),
    (["model.py:rosen", "--jac", "a b", "--at", X0], "expected FILE.py:FUNCTION"),
    (["model.py:rosen", "--jac", "rosen_der", "--at", "y=1"], "missing --at value for x"),
])
def test_bad_jac_input_is_one_line_and_exit_2(model, capsys, argv, message):
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_fixture_checks_a_jac(pytester):
    pytester.makepyfile(model=MODEL)
    pytester.makepyfile(test_model='''
import numpy as np
from model import bad_der, rosen, rosen_der, rosen_hess, scaled, scaled_der

X0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])


def test_right(gradcheck):
    report = gradcheck.jac(rosen, rosen_der, X0, hess=rosen_hess, nearby=0)
    assert report.verdict == "pass"
    assert gradcheck.jac(scaled, scaled_der, [0.3, -1.2], 2.5).verdict == "pass"
    assert len(gradcheck.reports) == 2


def test_wrong(gradcheck):
    gradcheck.jac(rosen, bad_der, X0, nearby=0)


def test_bad_option(gradcheck):
    gradcheck.jac(rosen, rosen_der, X0, colour="red")


def test_wrong_from_a_lambda(gradcheck):
    gradcheck.jac(rosen, lambda x: -rosen_der(x), X0, nearby=0)
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*gradcheck 1 found a wrong gradient*",
                                 "*culprit: jac is wrong at 1 entry (x?2?)*",
                                 "*reproduce:",
                                 "    verigrad check model.py:rosen --at *x=?1.3,0.7,0.8,1.9,1.2?* "
                                 "--nearby 0 --jac bad_der"])
    assert "gradcheck 1: " in out and "colour" in out
    assert "pytest_plugin.py" not in out
    # no command reruns a lambda: the call is named instead
    assert "reproduce: verigrad.check_grad(fun, jac, x0, nearby=0)" in out
    # the printed command reruns with the same verdict
    import subprocess
    import sys

    cmd = next(line.strip() for line in out.splitlines()
               if line.strip().startswith("verigrad check model.py:rosen"))
    run = subprocess.run([sys.executable, "-m", "verigrad", *shlex.split(cmd)[1:]],
                         cwd=pytester.path, capture_output=True, text=True)
    assert run.returncode == 1 and "x[2]" in run.stdout
