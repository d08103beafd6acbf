"""Renderers of a CheckReport: plain data in, text out.

``terminal`` (``str(report)``), ``json_report`` (versioned, schema in ``schema/``),
``markdown`` and ``html`` (self-contained, figures from ``plots``). :func:`save` writes
several formats at once with one shared timestamp, after the report's details (closed
forms, FD step sweeps: ``CheckReport.add_details``) are made; the renderers only read.

Importing this package registers the renderers with
:data:`verigrad.checker.report.RENDERERS`, which ``str(report)``, ``report.to_json()`` and
the other methods call: the checker sits below this layer and never imports it.

>>> import tempfile, verigrad as vg
>>> paths = vg.check("w*x + b", x=2.0, w=3.0, b=1.0).save(tempfile.mkdtemp(), ("json", "md"))
>>> [p.rsplit("/", 1)[-1] for p in paths]
['report.json', 'report.md']
"""
from __future__ import annotations

import os
from typing import Any, Iterable

__all__ = ["save", "FORMATS", "render", "UnsafeReportPath"]

#: format name -> file name
FORMATS = {"json": "report.json", "md": "report.md", "html": "report.html"}


def render(report: Any, fmt: str, created: str | None = None) -> str:
    """One format of the report as text (``fmt`` one of :data:`FORMATS`), from what the
    report holds (a report whose details were not made says so where they would be)."""
    if fmt == "json":
        from .json_report import render_json

        return render_json(report, created)
    if fmt == "md":
        from .markdown import render_markdown

        return render_markdown(report, created)
    if fmt == "html":
        from .html import render_html

        return render_html(report, created)
    raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")


class UnsafeReportPath(OSError):
    """A report file's place is a symlink (or another non-file) verigrad did not create:
    nothing is written there."""


def _umask() -> int:
    # the mode a plain open() would give a new file; /proc avoids os.umask's set-and-restore
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _refuse_unsafe(directory: str, paths: list[str]) -> None:
    """Never write through (or replace) a symlink: verigrad creates none, so one in a report's
    place was put there by someone else (a link to ~/.bashrc, say)."""
    if os.path.islink(directory):
        raise UnsafeReportPath(f"{directory} is a symlink; verigrad writes reports only into "
                               f"a real directory (remove the link or choose another one)")
    for path in paths:
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            what = "a symlink" if os.path.islink(path) else "not a regular file"
            raise UnsafeReportPath(f"{path} is {what}; verigrad replaces only report files it "
                                   f"wrote (remove it or choose another directory)")


def _write_temp(directory: str, name: str, text: str, mode: int) -> str:
    """``text`` in a new temporary file next to ``name`` (flushed to disk); its path."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def save(report: Any, directory: str | os.PathLike, formats: Iterable[str] | str = (
        "json", "md", "html")) -> list[str]:
    """Write ``report.json``/``report.md``/``report.html`` (those in ``formats``, a sequence
    or a comma-separated string) into ``directory``, created if needed; returns the paths.

    The report's details are made first (``report.add_details()``: closed forms, FD step
    sweeps). Every file gets the same ``created`` timestamp. Writes are atomic: each file is written
    to a temporary file in ``directory`` and moved into place with :func:`os.replace`, and
    the files are moved only once all of them are written, so a full disk or an
    interrupted write leaves the previous report (or nothing), never a half file; if a move
    fails, the files already moved are put back. Raises ``ValueError`` for an unknown
    format (before writing anything), :class:`UnsafeReportPath` (an ``OSError``) when a
    report file or the directory is a symlink, and ``OSError`` when the directory is not
    writable.
    """
    from .document import created_now

    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown report format(s) {', '.join(map(repr, unknown)) or '(none)'};"
                         f" choose from {', '.join(FORMATS)}")
    if hasattr(report, "add_details"):
        report.add_details()
    created = created_now()
    texts = {f: render(report, f, created) for f in formats}   # render all before writing
    directory = os.fspath(directory)
    paths = [os.path.join(directory, FORMATS[f]) for f in formats]
    _refuse_unsafe(directory, paths)
    os.makedirs(directory, exist_ok=True)
    _refuse_unsafe(directory, paths)     # again: the directory may have been made just now
    mode = 0o666 & ~_umask()
    temps: dict[str, str] = {}
    backups: dict[str, str] = {}
    done: list[str] = []
    try:
        for f, path in zip(formats, paths):
            temps[path] = _write_temp(directory, FORMATS[f], texts[f], mode)
        _refuse_unsafe(directory, paths)  # nothing swapped in while we wrote
        for path in paths:
            if os.path.exists(path):
                # a hard link keeps the previous file, to put back if a later move fails
                backup = temps[path] + ".old"
                try:
                    os.link(path, backup)
                    backups[path] = backup
                except OSError:
                    pass
        for path in paths:
            os.replace(temps[path], path)
            del temps[path]
            done.append(path)
    except BaseException:
        for path in reversed(done):       # the set is complete or not written
            if path in backups:
                try:
                    os.replace(backups.pop(path), path)
                except OSError:
                    pass
            else:
                _remove(path)
        raise
    finally:
        for tmp in list(temps.values()) + list(backups.values()):
            _remove(tmp)
    return paths


def _register() -> None:
    # the checker's CheckReport renders through this table (it cannot import this layer)
    from ..checker.report import register_renderer
    from .terminal import render_text

    register_renderer("text", render_text)
    for fmt in FORMATS:
        register_renderer(fmt, lambda report, created=None, _fmt=fmt: render(report, _fmt,
                                                                             created))
    register_renderer("save", save)


_register()
