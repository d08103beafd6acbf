"""Report files are written atomically and never through a symlink (issue 10, item 4): a
failure in the middle of a write (a full disk, an interrupt) leaves the previous report set
or nothing, never a half file or a mixed set."""
from __future__ import annotations

import errno
import os

import pytest

import verigrad as vg
from verigrad import report as report_pkg
from verigrad.cli import main
from verigrad.report import FORMATS, UnsafeReportPath, save


@pytest.fixture(scope="module")
def two_reports():
    return (vg.check("w*x + b", x=2.0, w=3.0, b=1.0, nearby=0),
            vg.check("x**3", x=2.0, nearby=0))


def _contents(directory):
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def test_save_writes_the_set_and_leaves_no_temporary_files(tmp_path, two_reports):
    paths = save(two_reports[0], tmp_path / "r", ("json", "md"))
    assert sorted(os.listdir(tmp_path / "r")) == ["report.json", "report.md"]
    assert [os.path.basename(p) for p in paths] == ["report.json", "report.md"]
    # the mode a plain open() gives (umask applied), not mkstemp's private 0600
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(paths[0]).st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_a_full_disk_mid_write_leaves_the_previous_set(tmp_path, two_reports, monkeypatch,
                                                       fail_at):
    first, second = two_reports
    save(first, tmp_path, ("json", "md", "html"))
    before = _contents(tmp_path)
    real = report_pkg._write_temp
    calls = []

    def flaky(directory, name, text, mode):
        calls.append(name)
        if len(calls) == fail_at + 1:
            # half the text reaches the temporary file, then the disk is full
            path = real(directory, name, text[: len(text) // 2], mode)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(directory, name, text, mode)

    monkeypatch.setattr(report_pkg, "_write_temp", flaky)
    with pytest.raises(OSError, match="No space left"):
        save(second, tmp_path, ("json", "md", "html"))
    after = _contents(tmp_path)
    # a temporary file a real crash would leave is still never a report file; here even
    # the half-written one is gone, since _write_temp's caller cleans up what it made
    assert {k: v for k, v in after.items() if k in FORMATS.values()} == before
    assert set(after) - set(before) <= {n for n in after if n.startswith(".")}


def test_a_failed_move_puts_back_the_files_already_moved(tmp_path, two_reports, monkeypatch):
    first, second = two_reports
    save(first, tmp_path, ("json", "md", "html"))
    before = _contents(tmp_path)
    real = os.replace
    moves = []

    def replace(src, dst):
        if str(dst).endswith(("report.json", "report.md", "report.html")):
            moves.append(dst)
            if len(moves) == 2:    # the second file of the new set cannot be moved
                raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save(second, tmp_path, ("json", "md", "html"))
    monkeypatch.undo()
    assert _contents(tmp_path) == before      # the first file was put back; no leftovers


def test_a_failed_first_write_leaves_nothing(tmp_path, two_reports, monkeypatch):
    def broken(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_pkg, "_write_temp", broken)
    with pytest.raises(OSError):
        save(two_reports[0], tmp_path / "new", ("json", "md"))
    assert os.listdir(tmp_path / "new") == []


def test_a_symlink_in_a_report_files_place_is_refused(tmp_path, two_reports):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.md").symlink_to(victim)
    with pytest.raises(UnsafeReportPath, match="report.md is a symlink"):
        save(two_reports[0], out, ("json", "md"))
    assert victim.read_text() == "precious\n"
    assert os.path.islink(out / "report.md")
    assert not (out / "report.json").exists()     # refused before anything was written


def test_a_symlinked_report_directory_is_refused(tmp_path, two_reports):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "r").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeReportPath, match="is a symlink"):
        save(two_reports[0], tmp_path / "r", "json")
    assert os.listdir(elsewhere) == []


def test_the_cli_refuses_a_symlink_in_one_line_with_exit_2(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.json").symlink_to(victim)
    code = main(["report", "x*y", "--at", "x=2", "y=3", "--nearby", "0", "--out", str(out),
                 "--format", "json"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("verigrad: error: cannot write the report")
    assert "symlink" in err and "Traceback" not in err
    assert victim.read_text() == "precious\n"


def test_the_cli_replaces_its_own_previous_report(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "x*y", "--at", "x=2", "y=3", "--nearby", "0", "--out", str(out),
                 "--format", "json"]) == 0
    first = (out / "report.json").read_text()
    assert main(["report", "x*y", "--at", "x=5", "y=3", "--nearby", "0", "--out", str(out),
                 "--format", "json"]) == 0
    second = (out / "report.json").read_text()
    assert first != second and '"value": 5.0' in second
    assert sorted(os.listdir(out)) == ["report.json"]
