"""The committed HTML examples, opened in a real headless browser (Chromium from the system's
packages) where one is installed: each page loads without console errors and the DOM the
browser builds holds the verdict, the entries table and the derivatives as MathML."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the committed examples (reports/README.md lists them), by directory and verdict
EXAMPLES = {"linear": "pass", "tanh-layer": "pass", "abs-kink": "inconclusive",
            "softplus-wrong": "fail"}
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get "
                                "install chromium)")


def _open(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM Chromium builds for ``page`` and what it logged (console messages too)."""
    try:
        run = subprocess.run(
            [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("Chromium did not finish within 120 s on this machine")
    if run.returncode != 0 and not run.stdout:
        pytest.skip(f"Chromium could not start here: {run.stderr.strip()[-200:]}")
    return run.stdout, run.stderr


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_renders_in_chromium(name, tmp_path):
    page = ROOT / "reports" / name / "report.html"
    dom, log = _open(page, tmp_path)
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    verdict = EXAMPLES[name]
    assert re.search(rf'<section class="verdict {verdict}">', dom), dom[:500]
    assert "<table>" in dom and "<th>status</th>" in dom
    # the derivatives are MathML elements the browser parsed, not LaTeX source
    assert dom.count('<math display="block">') >= 1
    assert "\\frac" not in dom and "<mfrac>" in dom
    # figures are inline SVG, and every grid cell holds one (no grid without a figure)
    figures = dom.split("<h2>Figures</h2>", 1)[1].split("<h2>", 1)[0]
    if '<div class="figs">' in figures:
        grid = figures.split('<div class="figs">', 1)[1].split("</div>", 1)[0]
        assert grid.count("<figure>") == grid.count("<svg") >= 1
    else:
        assert '<p class="skipped">' in figures and "<svg" not in figures
