"""How ``vg.check`` recognises torch code without importing torch: torch is only looked at
if the caller already imported it."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from ..checker.core import register_frontend

__all__ = ["wanted", "dispatch"]


def wanted(fn: Any, inputs: Sequence[Any]) -> bool:
    """True when ``fn`` or an input belongs to torch (a torch tensor input, an nn.Module,
    ``apply`` of a ``torch.autograd.Function``) or ``fn``'s code calls torch: numbers given
    to ``def f(x): return MyFn.apply(x)`` (``verigrad check model.py:f --at x=1``) must
    reach MyFn's backward through torch, not be recorded on verigrad's tape around it."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "Tensor") or getattr(fn, "_verigrad_internal", False):
        return False
    if any(isinstance(a, torch.Tensor) for a in inputs):
        return True
    return _is_torch(fn, torch) or _calls_torch(fn, torch, set())


def _is_torch(obj: Any, torch: Any) -> bool:
    if obj is torch or isinstance(obj, torch.nn.Module):
        return True
    if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
        return True
    owner = getattr(obj, "__self__", None)
    return isinstance(owner, type) and issubclass(owner, torch.autograd.Function)


def _calls_torch(fn: Any, torch: Any, seen: set, depth: int = 3) -> bool:
    """Whether the names ``fn``'s code reads (globals, in nested lambdas and comprehensions
    too, and closure cells; and those of the plain functions it calls, ``depth`` levels
    down) include torch, a torch Function class or a module: what its code calls, not what
    its file imports."""
    code = getattr(fn, "__code__", None)
    if code is None or id(fn) in seen or depth < 0:
        return False
    seen.add(id(fn))
    scope = getattr(fn, "__globals__", {})
    values = [scope[n] for n in _names(code) if n in scope] + _cells(fn)
    return any(_is_torch(v, torch) or (callable(v) and _calls_torch(v, torch, seen, depth - 1))
               for v in values)


def _names(code: Any) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def _cells(fn: Any) -> list:
    out = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:  # an empty cell: a name assigned after the closure was made
            pass
    return out


def dispatch(scope: dict) -> Any:
    """Run ``verigrad.torch.check`` with ``vg.check``'s own arguments (its ``locals()``)."""
    from ._bridge import check

    opts = {k: v for k, v in scope.items() if k not in ("fn", "inputs", "named", "wanted", "dispatch")}
    return check(scope["fn"], *scope["inputs"], **opts, **scope.get("named", {}))


register_frontend(wanted, dispatch)  # vg.check asks this module about every fn it gets
