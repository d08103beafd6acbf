"""How ``vg.check`` recognises torch code without importing torch: torch is only looked at
if the caller already imported it."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from ..checker.core import register_frontend

__all__ = ["wanted", "dispatch"]


def wanted(fn: Any, inputs: Sequence[Any]) -> bool:
    """True when ``fn`` or an input belongs to torch (a torch tensor input, an nn.Module,
    or ``apply`` of a ``torch.autograd.Function``)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "Tensor"):
        return False
    if any(isinstance(a, torch.Tensor) for a in inputs):
        return True
    if isinstance(fn, torch.nn.Module):
        return True
    owner = getattr(fn, "__self__", None)
    return isinstance(owner, type) and issubclass(owner, torch.autograd.Function)


def dispatch(scope: dict) -> Any:
    """Run ``verigrad.torch.check`` with ``vg.check``'s own arguments (its ``locals()``)."""
    from ._bridge import check

    opts = {k: v for k, v in scope.items() if k not in ("fn", "inputs", "named", "wanted", "dispatch")}
    return check(scope["fn"], *scope["inputs"], **opts, **scope.get("named", {}))


register_frontend(wanted, dispatch)  # vg.check asks this module about every fn it gets
