"""verigrad's modules import downward only (docs/design.md, "Layers").

Every module of the package sits in one layer; a module may import from its own layer and
the layers below it, never from a layer above, whether the import is at the top of the
file or deferred inside a function. Registration calls at the bottom of a layer (a lower
layer exposing a hook that a higher one fills in) are how a lower layer reaches up.
The test reads the source with ``ast``: nothing is imported.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "verigrad"

#: Lowest layer first. A module belongs to the longest prefix listed here.
LAYERS: list[tuple[str, ...]] = [
    # pure data and pure numerics: no tensors, no nodes
    ("errors", "_version", "_dtype", "_format", "_lazy", "parsing", "registry", "checker.finite_diff"),
    ("autograd.grad_mode", "autograd.node", "autograd.pool"),  # nodes (and their array pool)
    ("tensor",),
    ("autograd.engine",),
    ("autograd.function", "autograd"),             # custom Functions: tensors + engine
    ("ops",),
    ("_methods", "creation"),                      # Tensor methods and factories
    ("parse", "expression", "numpy_bridge"),
    ("symbolic",),
    ("checker", "strategies"),
    ("report",),
    ("torch", "scipy_check", "cli", "pytest_plugin", "", "__main__"),  # "" is verigrad itself
]

def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".") or p == "") and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"verigrad.{module} is in no layer: add it to LAYERS"
    return best


def _imported(module: str, node: ast.AST) -> list[str]:
    """The verigrad modules an import statement names, relative to the package."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        is_pkg = MODULES[module].name == "__init__.py"
        here = ["verigrad"] + (module.split(".") if module else [])
        if not is_pkg:
            here = here[:-1]
        if node.level:
            base = here[:len(here) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = []
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            names.append(sub if sub.removeprefix("verigrad.").removeprefix("verigrad") in MODULES
                         and sub.startswith("verigrad.") else target)
    out = []
    for name in names:
        if name == "verigrad" or name.startswith("verigrad."):
            out.append(name.removeprefix("verigrad").removeprefix("."))
    return out


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(module, node):
                    if layer_of(target) > layer_of(module):
                        found.add((module, target))
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_go_downward_only():
    new = sorted(upward_imports())
    assert not new, "upward imports (a lower layer importing a higher one; see docs/design.md, " \
                    "'Layers'): " + ", ".join(f"verigrad.{a} -> verigrad.{b}" for a, b in new)


@pytest.mark.parametrize("source, expected", [
    ("from ..tensor import Tensor", ("symbolic.graph", "tensor")),
    ("from .. import ops", ("symbolic.graph", "ops")),
    ("from ..report import html", ("checker.report", "report.html")),
    ("import verigrad.cli", ("symbolic.graph", "cli")),
])
def test_the_walker_resolves_relative_imports(source, expected):
    module, target = expected
    assert _imported(module, ast.parse(source).body[0]) == [target]
