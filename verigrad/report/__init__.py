"""Renderers of a CheckReport: plain data in, text out.

``terminal`` (``str(report)``), ``json_report`` (versioned, schema in ``schema/``),
``markdown`` and ``html`` (self-contained, figures from ``plots``). :func:`save` writes
several formats at once with one shared timestamp.

>>> import tempfile, verigrad as vg
>>> paths = vg.check("w*x + b", x=2.0, w=3.0, b=1.0).save(tempfile.mkdtemp(), ("json", "md"))
>>> [p.rsplit("/", 1)[-1] for p in paths]
['report.json', 'report.md']
"""
from __future__ import annotations

import os
from typing import Any, Iterable

__all__ = ["save", "FORMATS", "render"]

#: format name -> file name
FORMATS = {"json": "report.json", "md": "report.md", "html": "report.html"}


def render(report: Any, fmt: str, created: str | None = None) -> str:
    """One format of the report as text (``fmt`` one of :data:`FORMATS`)."""
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


def save(report: Any, directory: str | os.PathLike, formats: Iterable[str] | str = (
        "json", "md", "html")) -> list[str]:
    """Write ``report.json``/``report.md``/``report.html`` (those in ``formats``, a sequence
    or a comma-separated string) into ``directory``, created if needed; returns the paths.

    Every file gets the same ``created`` timestamp. Raises ``ValueError`` for an unknown
    format (before writing anything) and ``OSError`` when the directory is not writable.
    """
    from .markdown import created_now

    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown report format(s) {', '.join(map(repr, unknown)) or '(none)'};"
                         f" choose from {', '.join(FORMATS)}")
    created = created_now()
    texts = {f: render(report, f, created) for f in formats}   # render all before writing
    os.makedirs(directory, exist_ok=True)
    paths = []
    for f in formats:
        path = os.path.join(os.fspath(directory), FORMATS[f])
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(texts[f])
        paths.append(path)
    return paths
