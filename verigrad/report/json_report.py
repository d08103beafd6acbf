"""The JSON report: every field of a CheckReport, versioned and schema-checked.

The schema ships with the package (``verigrad/report/schema/report.schema.json``; see
:func:`schema`). Strict JSON: non-finite floats are written as the strings ``"nan"``,
``"inf"`` and ``"-inf"`` (``float(v)`` reads every number field back), never as ``NaN``.
The one field that changes between two runs of the same check is ``created``.

>>> import json, verigrad as vg
>>> doc = json.loads(vg.check("w*x + b", x=2.0, w=3.0, b=1.0).to_json())
>>> doc["schema_version"], doc["verdict"], [e["tape"] for e in doc["entries"]]
('1.1', 'pass', [3.0, 2.0, 1.0])
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .document import created_now, plain, reproduce_command

__all__ = ["render_json", "report_dict", "plain", "schema", "SCHEMA_VERSION"]

#: bump the minor version for added fields, the major one for changed or removed ones
#: (1.1: counts.nearby)
SCHEMA_VERSION = "1.1"


def _entry(e: Any) -> dict[str, Any]:
    return {
        "input": e.input, "index": list(e.index),
        "output": None if e.output is None else list(e.output),
        "label": e.label, "point": e.point,
        "tape": e.tape, "symbolic": e.symbolic, "symbolic_digits": e.symbolic_digits,
        "symbolic_error": e.symbolic_error, "replayed": e.replayed,
        "finite_diff": e.finite_diff, "fd_error": e.fd_error, "fd_method": e.fd_method,
        "abs_error": e.abs_error, "rel_error": e.rel_error, "tolerance": e.tolerance,
        "status": e.status, "reason": e.reason, "left": e.left, "right": e.right,
    }


def _culprit(c: Any) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"grad_fn": c.grad_fn, "input_index": c.input_index, "input_name": c.input_name,
            "path": c.path, "element": list(c.element), "expected": c.expected, "got": c.got,
            "method": c.method, "message": c.message}


def report_dict(report: Any, created: str | None = None) -> dict[str, Any]:
    """The report as plain JSON data (what :func:`render_json` writes)."""
    entries = report.entries
    doc = {
        "schema": "verigrad-report",
        "schema_version": SCHEMA_VERSION,
        "created": created or created_now(),
        "verdict": report.verdict,
        "ok": report.ok,
        "expression": report.expression,
        "reproduce": reproduce_command(report),
        "inputs": report.inputs,
        "counts": report.counts,
        "culprit": _culprit(report.culprit),
        "culprits": [_culprit(c) for c in report.culprits],
        "contract": list(report.contract),
        "kinks": list(report.kinks),
        "reasons": report.reasons,
        "notes": list(report.notes),
        "derivatives": dict(report.derivatives),
        "derivatives_note": report.derivatives_note,
        "entries": [_entry(e) for e in entries],
        "nodes": [{"grad_fn": n.grad_fn, "path": n.path, "method": n.method, "ok": n.ok,
                   "max_abs_error": n.max_abs_error, "tolerance": n.tolerance, "note": n.note}
                  for n in report.nodes],
        "points": [{"index": p.index, "seed": p.seed, "verdict": p.verdict,
                    "summary": p.summary, "values": p.values} for p in report.points],
        "fd_traces": [{"input": t.input, "index": list(t.index), "method": t.method,
                       "chosen": t.chosen, "steps": t.steps, "errors": t.errors}
                      for t in report.fd_traces],
        "settings": report.settings,
        "versions": report.versions,
    }
    # report.seconds is left out on purpose: it differs on every run, and `created` is the
    # only field allowed to
    return plain(doc)


def _dump(v: Any, indent: int) -> str:
    """Indented JSON, with arrays of numbers/strings kept on one line (the FD ladders)."""
    pad = "  " * indent
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {_dump(x, indent + 1)}' for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v):
            return "[" + ", ".join(json.dumps(x, allow_nan=False) for x in v) + "]"
        if all(isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x)
               for x in v):
            return "[" + ", ".join(_dump(x, indent + 1) for x in v) + "]"
        return "[\n" + ",\n".join(f"{pad}  {_dump(x, indent + 1)}" for x in v) + "\n" + pad + "]"
    return json.dumps(v, allow_nan=False)


def render_json(report: Any, created: str | None = None) -> str:
    """The report as strict JSON text (schema :data:`SCHEMA_VERSION`).

    >>> import verigrad as vg
    >>> '"schema_version": "1.1"' in vg.check("x**2", x=3.0).to_json()
    True
    """
    return _dump(report_dict(report, created), 0) + "\n"


def schema() -> dict[str, Any]:
    """The JSON Schema of the report, as shipped in the package.

    >>> schema()["properties"]["schema_version"]["const"]
    '1.1'
    """
    text = resources.files("verigrad.report").joinpath("schema/report.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)
