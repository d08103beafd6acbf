"""``vg.autograd``: the engine entry points and custom Functions.

The engine and custom Functions sit above ``verigrad.tensor`` (docs/design.md, "Layers"),
which imports ``grad_mode`` and ``node`` from this package: they load on first access, so
importing this package's lower modules does not import the layers above them.
"""
import importlib as _importlib

from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .node import AccumulateGrad, Node

__all__ = ["backward", "grad", "Function", "FunctionCtx", "once_differentiable", "enable_grad",
           "is_grad_enabled", "no_grad", "set_grad_enabled", "AccumulateGrad", "Node"]

_LATE = {"backward": "engine", "grad": "engine", "Function": "function",
         "FunctionCtx": "function", "once_differentiable": "function"}


def __getattr__(name: str):
    module = _LATE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
