"""README's code runs as written (issue 10, item 6): its Python blocks are executed in
order in one namespace, as a reader pasting them into one session would; ``>>>`` blocks are
doctests (``...`` stands for what varies), and ``print(...)  # value`` lines must print
that value; blocks defining ``test_*`` functions run under pytest. (README's first shell
command is run by ``.ci/run``, exactly as written.)"""
from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)

pytest_plugins = ["pytester"]


def _is_test_module(code: str) -> bool:
    return re.search(r"^def test_\w+\(", code, flags=re.M) is not None


def test_readme_has_the_blocks_this_test_runs():
    assert len(BLOCKS) >= 5
    assert sum(b.lstrip().startswith(">>>") for b in BLOCKS) >= 1
    assert sum(_is_test_module(b) for b in BLOCKS) >= 2


def test_readme_python_blocks_run_in_order(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)     # nothing a block writes lands in the repository
    namespace: dict = {"__name__": "readme"}
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for k, code in enumerate(BLOCKS):
        if _is_test_module(code):
            continue                  # run under pytest below
        if "scipy" in code:
            pytest.importorskip("scipy")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), np.errstate(all="ignore"):
            if code.lstrip().startswith(">>>"):
                test = doctest.DocTestParser().get_doctest(code, namespace, f"README[{k}]",
                                                           "README.md", 0)
                runner = doctest.DocTestRunner(optionflags=flags)
                runner.run(test, out=out.write)
                namespace.update(test.globs)
                assert runner.tries > 0 and runner.failures == 0, out.getvalue()
            else:
                exec(compile(code, f"README.md block {k}", "exec"), namespace)
        _check_comments(code, out.getvalue(), k)


def _check_comments(code: str, printed: str, k: int) -> None:
    """``print(...)   # value`` (the comment may go on over the next ``#`` lines): the
    printed line is what the comment says (object addresses, which differ on every run,
    stand as ``0x...``)."""
    expected: list[str] = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("print("):
            continue
        comment = line.split("# ", 1)[1].strip() if re.search(r"\)\s+# ", line) else ""
        for more in lines[i + 1:]:
            if not more.startswith("# "):
                break
            comment = f"{comment} {more[2:].strip()}".strip()
        expected.append(comment)
    printed_lines = printed.splitlines()
    if not any(expected):
        return
    assert len(printed_lines) == len(expected), (k, printed)
    for want, got in zip(expected, printed_lines):
        if not want:
            continue
        got = re.sub(r"0x[0-9a-f]+", "0x...", got)
        want = re.sub(r"0x[0-9a-f]+", "0x...", want)
        assert got == want, f"README block {k}: printed {got!r}, the comment says {want!r}"


@pytest.mark.parametrize("k", [k for k, b in enumerate(BLOCKS) if _is_test_module(b)])
def test_readme_test_blocks_pass_under_pytest(pytester, k):
    code = BLOCKS[k]
    if "hypothesis" in code:
        pytest.importorskip("hypothesis")
        # the reader's default profile draws 100 examples; a few prove the block runs
        pytester.makeconftest("from hypothesis import settings\n"
                              "settings.register_profile('readme', max_examples=5)\n"
                              "settings.load_profile('readme')\n")
    pytester.makepyfile(test_readme_block=code)
    result = pytester.runpytest("-p", "no:cacheprovider")
    n = len(re.findall(r"^def test_\w+\(", code, flags=re.M))
    result.assert_outcomes(passed=n)
