"""The pytest plugin, exercised the way users meet it: through pytester runs.

Most runs are in-process (fast); the ones that must prove something about a separate
interpreter (the entry point with no conftest, xdist workers, import cost) run in a
subprocess.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import verigrad.pytest_plugin as plugin_module
from verigrad.pytest_plugin import VerigradInconclusiveWarning, report_name

pytest_plugins = ["pytester"]

# A custom Function with a correct forward and a sign-flipped backward, written as a user
# would write it in their own test file.
WRONG_FUNCTION = '''
import numpy as np
import sympy
import verigrad as vg


class Wobble(vg.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return vg.tensor(np.sin(x.numpy()))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * vg.tensor(-np.cos(x.numpy()))   # wrong: the sign

    @staticmethod
    def symbolic(x):
        return sympy.sin(x)
'''

SETTINGS_TEST = '''
import pytest

def test_settings(gradcheck):
    r = gradcheck("x*y", x=0.5, y=2.0)
    print("SETTINGS", r.settings["rtol"], r.settings["atol"], r.settings["seed"])
'''


@pytest.fixture(autouse=True, scope="module")
def _imports_outside_pytester(tmp_path_factory: pytest.TempPathFactory) -> None:
    """pytester restores ``sys.modules`` after each in-process run, dropping what was first
    imported inside it; SymPy (or SymEngine) re-imported by the next run would no longer
    match the classes verigrad cached from the first. So everything the checker and the
    report writer import lazily is imported once, out here."""
    import numpy as np

    import verigrad as vg

    namespace: dict = {}
    exec(WRONG_FUNCTION, namespace)
    vg.check(lambda x: namespace["Wobble"].apply(x).sum(), np.array([0.3]))
    vg.check("relu(x) * sin(y)", x=0.0, y=0.5).save(str(tmp_path_factory.mktemp("warm")))


@pytest.fixture(autouse=True)
def _quiet_inner_runs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-benchmark warns in every inner run when the outer one uses xdist: noise here.
    # Set after pytester exists, since pytester clears PYTEST_ADDOPTS when it starts.
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
        monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:benchmark")


def summary_line(result: pytest.RunResult) -> str:
    """The plugin's one terminal summary line (``str(report)`` also starts "verigrad: ")."""
    lines = [line for line in result.outlines if re.match(r"verigrad: \d+ checks?, ", line)]
    assert len(lines) == 1, result.outlines
    return lines[0]


def settings_seen(result: pytest.RunResult) -> list[str]:
    return [line.split("SETTINGS ", 1)[1] for line in result.outlines if "SETTINGS " in line]


# --- the fixture ------------------------------------------------------------------------------

def test_passing_check_returns_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
        def test_ok(gradcheck):
            report = gradcheck("sin(x) * exp(w*x) + b", x=0.5, w=-1.0, b=2.0)
            assert report.verdict == "pass"
            assert gradcheck.reports == [report]
    ''')
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert summary_line(result) == "verigrad: 1 check, 1 pass, 0 fail, 0 inconclusive"


def test_failing_custom_function_names_its_culprit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(WRONG_FUNCTION + '''

def test_wobble(gradcheck):
    gradcheck(lambda x: Wobble.apply(x).sum(), np.array([0.3, 1.2]))
''')
    result = pytester.runpytest("-ra")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    # the message names the wrong op and its path, then the readable summary
    result.stdout.fnmatch_lines([
        "gradcheck 1 found a wrong gradient: WobbleBackward (path SumBackward0 <- WobbleBackward)",
        "verigrad: FAIL*",
        "*culprit: WobbleBackward returns a wrong gradient*",
        "*verigrad checks*",
        "*WRONG WobbleBackward*",
    ])
    # pytrace=False: no traceback through the plugin's internals
    assert "pytest_plugin.py" not in out and "def __call__" not in out
    result.stdout.fnmatch_lines(["FAILED *test_wobble - *"])
    assert summary_line(result) == "verigrad: 1 check, 0 pass, 1 fail, 0 inconclusive"


KINKS = '''
def test_kink(gradcheck):
    report = gradcheck("relu(x)", x=0.0)
    assert report.verdict == "inconclusive"

def test_kink_under_warns(gradcheck):
    with pytest.warns(VerigradInconclusiveWarning, match="kink"):
        gradcheck("abs(x) * y", x=0.0, y=2.0)
'''
KINK_TESTS = '''
import pytest
from verigrad.pytest_plugin import VerigradInconclusiveWarning
''' + KINKS


def test_inconclusive_kink_passes_with_a_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(KINK_TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*VerigradInconclusiveWarning: gradcheck 1 of relu(x) is inconclusive: kink*"
        "--verigrad-strict*",
    ])
    assert summary_line(result) == "verigrad: 2 checks, 0 pass, 0 fail, 2 inconclusive"


def test_strict_fails_inconclusive_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(KINK_TESTS)
    result = pytester.runpytest("--verigrad-strict")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*gradcheck 1 is inconclusive and strict mode is on*kink*"])


def test_inconclusive_warning_is_a_user_warning() -> None:
    assert issubclass(VerigradInconclusiveWarning, UserWarning)


# --- options, ini, marker ---------------------------------------------------------------------

def test_command_line_options_reach_the_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SETTINGS_TEST)
    result = pytester.runpytest("-s", "--verigrad-rtol=0.25", "--verigrad-atol=1e-9",
                                "--verigrad-seed=7")
    result.assert_outcomes(passed=1)
    assert settings_seen(result) == ["0.25 1e-09 7"]
    result = pytester.runpytest("-s")  # unset: the checker's own defaults
    assert settings_seen(result) == ["None None 0"]


def test_tolerance_options_change_the_verdict(pytester: pytest.Pytester) -> None:
    # sin(1000 x): float64 rounding of about 1e-13 that the derived tolerance forgives
    pytester.makepyfile('''
        def test_steep(gradcheck):
            gradcheck("sin(1000*x)", x=1.0)
    ''')
    pytester.runpytest().assert_outcomes(passed=1)
    strict_tol = pytester.runpytest("--verigrad-rtol=0", "--verigrad-atol=1e-300")
    strict_tol.assert_outcomes(failed=1)
    pytester.runpytest("--verigrad-rtol=0", "--verigrad-atol=1e-6").assert_outcomes(passed=1)


def test_seed_option_is_recorded_in_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
        def test_seeded(gradcheck):
            report = gradcheck("tanh(x) * y", x=0.3, y=-0.7)
            assert [p.seed for p in report.points[1:]] == [12, 13, 14]
    ''')
    pytester.runpytest("--verigrad-seed=11").assert_outcomes(passed=1)


def test_ini_settings(pytester: pytest.Pytester) -> None:
    pytester.makeini('''
        [pytest]
        verigrad_rtol = 0.125
        verigrad_atol = 0.5
        verigrad_seed = 3
        verigrad_strict = true
    ''')
    pytester.makepyfile(KINK_TESTS + SETTINGS_TEST)
    result = pytester.runpytest("-s")
    assert settings_seen(result) == ["0.125 0.5 3"]
    result.assert_outcomes(passed=1, failed=2)   # verigrad_strict: the kinks fail
    # the command line beats the ini file, in both directions
    result = pytester.runpytest("-s", "--verigrad-rtol=0.25", "--verigrad-no-strict")
    assert settings_seen(result) == ["0.25 0.5 3"]
    result.assert_outcomes(passed=3)


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nverigrad_rtol = tight\n")
    pytester.makepyfile(SETTINGS_TEST)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*verigrad_rtol = 'tight' is not a valid number*"])


def test_marker_precedence(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nverigrad_rtol = 0.125\nverigrad_seed = 3\n")
    pytester.makepyfile('''
        import pytest

        def show(gradcheck, **kw):
            r = gradcheck("x*y", x=0.5, y=2.0, **kw)
            print("SETTINGS", r.settings["rtol"], r.settings["seed"])

        def test_plain(gradcheck):
            show(gradcheck)

        @pytest.mark.gradcheck(rtol=1e-3)
        def test_marked(gradcheck):
            show(gradcheck)

        @pytest.mark.gradcheck(rtol=1e-3, seed=5)
        def test_call_beats_marker(gradcheck):
            show(gradcheck, rtol=1e-4)

        @pytest.mark.gradcheck(rtol=1e-1, seed=9)
        class TestClass:
            @pytest.mark.gradcheck(rtol=1e-2)
            def test_closest_marker_wins(self, gradcheck):
                show(gradcheck)

        @pytest.mark.gradcheck(strict=False)
        def test_marker_turns_strict_off(gradcheck):
            gradcheck("relu(x)", x=0.0)

        @pytest.mark.gradcheck(strict=True)
        def test_marker_turns_strict_on(gradcheck):
            gradcheck("relu(x)", x=0.0)
    ''')
    # ini only: markers beat it
    result = pytester.runpytest("-s", "--strict-markers")
    assert settings_seen(result) == ["0.125 3", "0.001 3", "0.0001 5", "0.01 9"]
    result.assert_outcomes(passed=5, failed=1, warnings=1)
    # command line over ini, markers over the command line
    result = pytester.runpytest("-s", "--verigrad-rtol=0.5", "--verigrad-seed=4",
                                "--verigrad-strict")
    assert settings_seen(result) == ["0.5 4", "0.001 4", "0.0001 5", "0.01 9"]
    result.assert_outcomes(passed=5, failed=1, warnings=1)


def test_marker_with_positional_arguments_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
        import pytest

        @pytest.mark.gradcheck(1e-3)
        def test_bad(gradcheck):
            gradcheck("x*x", x=1.0)
    ''')
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*@pytest.mark.gradcheck takes keyword arguments only*"])


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gradcheck(rtol=None, atol=None, seed=None, *"])


def test_help_lists_the_option_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["verigrad gradient checks*", "*--verigrad-report-dir=DIR*",
                                 "*--verigrad-strict*", "*--verigrad-rtol=RTOL*",
                                 "*--verigrad-atol=ATOL*", "*--verigrad-seed=SEED*",
                                 "*verigrad_report_dir*"])


# --- where results go -------------------------------------------------------------------------

def test_junit_xml_carries_the_results(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(WRONG_FUNCTION + '''

def test_two_calls(gradcheck):
    gradcheck("x*x", x=1.5)
    gradcheck(lambda x: Wobble.apply(x).sum(), np.array([0.3]))

def test_kink(gradcheck):
    gradcheck("relu(x)", x=0.0)
''')
    result = pytester.runpytest("--junitxml=out.xml")
    result.assert_outcomes(passed=1, failed=1, warnings=1)
    root = ET.parse(pytester.path / "out.xml").getroot()
    props = {case.get("name"): {p.get("name"): p.get("value")
                                for p in case.iter("property")}
             for case in root.iter("testcase")}
    two = props["test_two_calls"]
    assert two["verigrad[1].verdict"] == "pass" and two["verigrad[1].expression"] == "x*x"
    assert two["verigrad[2].verdict"] == "fail"
    assert two["verigrad[2].culprit"] == "WobbleBackward"
    assert two["verigrad[2].culprit_path"] == "SumBackward0 <- WobbleBackward"
    assert float(two["verigrad[2].seconds"]) >= 0
    assert props["test_kink"]["verigrad[1].verdict"] == "inconclusive"
    assert props["test_kink"]["verigrad[1].reasons"] == "kink"
    assert summary_line(result) == "verigrad: 3 checks, 1 pass, 1 fail, 1 inconclusive"


def test_report_dir_writes_one_report_per_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reports=WRONG_FUNCTION + '''
import pytest

@pytest.mark.gradcheck(report_format="json")
@pytest.mark.parametrize("x", [0.5, 2.0])
def test_param(gradcheck, x):
    gradcheck("log(x)", x=x)
    gradcheck("x**3", x=x)

def test_wrong(gradcheck):
    gradcheck(lambda x: Wobble.apply(x).sum(), np.array([0.3]))

def test_unknown_format(gradcheck):
    gradcheck("x*x", x=1.0, report_format="pdf")
''')
    result = pytester.runpytest("--verigrad-report-dir=out")
    result.assert_outcomes(passed=2, failed=2)
    out = pytester.path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "test_reports.py__test_param[0.5]-1", "test_reports.py__test_param[0.5]-2",
        "test_reports.py__test_param[2.0]-1", "test_reports.py__test_param[2.0]-2",
        "test_reports.py__test_wrong-1"]
    data = json.loads((out / "test_reports.py__test_param[2.0]-2" / "report.json").read_text())
    assert data["verdict"] == "pass" and data["expression"] == "x**3"
    assert [p.name for p in (out / "test_reports.py__test_param[2.0]-2").iterdir()] == \
        ["report.json"]
    # all three formats by default
    assert sorted(p.name for p in (out / "test_reports.py__test_wrong-1").iterdir()) == [
        "report.html", "report.json", "report.md"]
    # the failure message and the section point at the saved report
    result.stdout.fnmatch_lines(["report: */out/test_reports.py__test_wrong-1"])
    result.stdout.fnmatch_lines(["*verigrad report format: *pdf*"])
    assert "During handling" not in result.stdout.str()


def test_report_dir_from_ini_is_relative_to_the_rootdir(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nverigrad_report_dir = reports/grad\n")
    sub = pytester.mkpydir("sub")
    (sub / "test_in_sub.py").write_text("def test_a(gradcheck):\n    gradcheck('x*x', x=2.0)\n")
    result = pytester.runpytest("sub", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    target = pytester.path / "reports" / "grad" / "sub_test_in_sub.py__test_a-1"
    assert (target / "report.json").is_file()
    assert str(target) in (pytester.path / "out.xml").read_text()


def test_report_names_never_collide() -> None:
    ids = ["tests/test_a.py::test_b", "tests/test_a.py::test_b[a b]", "tests/test_a.py::test_b[a/b]",
           "tests/test_a.py::test_b[a_b]", "tests/test_a.py::TestX::test_b",
           "tests/test_a.py::test_" + "x" * 300, "tests/test_a.py::test_" + "x" * 301]
    names = [report_name(i, 1) for i in ids]
    assert len(set(names)) == len(names)
    assert all(len(n) < 130 and "/" not in n and " " not in n for n in names)
    assert report_name("tests/test_a.py::test_b", 2) == "tests_test_a.py__test_b-2"


# --- separate interpreters --------------------------------------------------------------------

# plugins these runs do not need: each subprocess (and xdist worker) starts faster without them
LEAN = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")

def test_xdist_workers_report_to_the_controller(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_many=WRONG_FUNCTION + '''
import pytest

@pytest.mark.parametrize("x", [0.25, 0.5, 1.0, 1.5, 2.0, 2.5])
def test_ok(gradcheck, x):
    gradcheck("sin(x) * x", x=x)
    gradcheck("exp(x)", x=x)

def test_kink(gradcheck):
    gradcheck("relu(x)", x=0.0)

def test_wrong(gradcheck):
    gradcheck(lambda x: Wobble.apply(x).sum(), np.array([0.3]))
''')
    result = pytester.runpytest_subprocess("-n", "2", "--verigrad-report-dir=out",
                                           "--verigrad-report-format=json",
                                           "--junitxml=out.xml", *LEAN)
    result.assert_outcomes(passed=7, failed=1, warnings=1)
    assert summary_line(result) == "verigrad: 14 checks, 12 pass, 1 fail, 1 inconclusive"
    reports = sorted((pytester.path / "out").glob("*/report.json"))
    assert len(reports) == 14
    assert len({json.loads(p.read_text())["inputs"]["x"]["value"] for p in reports
                if "test_ok" in p.parent.name}) == 6


def test_fixture_comes_from_the_entry_point_without_conftest(pytester: pytest.Pytester) -> None:
    # a fresh directory, no conftest, no pytest_plugins: what a new user has
    assert not list(pytester.path.glob("**/conftest.py"))
    pytester.makepyfile(WRONG_FUNCTION + '''

def test_user(gradcheck):
    gradcheck(lambda x: Wobble.apply(x).sum(), np.array([0.3, 1.2]))
''')
    result = pytester.runpytest_subprocess(*LEAN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*found a wrong gradient: WobbleBackward*"])
    # and it is the entry point that provides it
    result = pytester.runpytest_subprocess("-p", "no:verigrad", *LEAN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'gradcheck' not found*"])


def test_plugin_module_is_cheap_to_import() -> None:
    # statically: the module imports nothing from verigrad or any heavy library at the top
    tree = ast.parse(Path(plugin_module.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert top <= {"__future__", "hashlib", "re", "warnings", "collections", "dataclasses",
                   "pathlib", "typing", "pytest"}, top
    # dynamically: loading the plugin pulls in neither SymPy nor matplotlib
    code = textwrap.dedent('''
        import sys
        import verigrad.pytest_plugin
        print(sorted(m for m in ("sympy", "matplotlib") if m in sys.modules))
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docstring_examples_run() -> None:
    import doctest

    result = doctest.testmod(plugin_module)
    assert result.failed == 0 and result.attempted >= 2
