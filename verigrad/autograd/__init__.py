"""``vg.autograd``: the engine entry points and custom Functions."""
from .engine import backward, grad
from .function import Function, FunctionCtx, once_differentiable
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .node import AccumulateGrad, Node

__all__ = ["backward", "grad", "Function", "FunctionCtx", "once_differentiable", "enable_grad",
           "is_grad_enabled", "no_grad", "set_grad_enabled", "AccumulateGrad", "Node"]
