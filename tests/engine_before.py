"""Run a script against verigrad as it was at an earlier commit (taken from git), for the
engine's bitwise tests: the script prints JSON, returned parsed; None without the history."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_at(commit: str, script: Path, args: list[str], tmp: Path, timeout: int) -> Any | None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    try:
        blob = subprocess.run([git, "-C", str(ROOT), "archive", commit, "verigrad"],
                              capture_output=True, check=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(tmp, filter="data")
    env = dict(os.environ, PYTHONPATH=str(tmp))
    run = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                         text=True, timeout=timeout, cwd=str(tmp))
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)
