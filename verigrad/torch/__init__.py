"""Check PyTorch code with verigrad's three opinions (needs the ``torch`` extra).

``vg.check(fn, *torch_tensors)`` dispatches here: the torch function is traced at the aten
level, each aten op becomes the verigrad op declared for it (so its mirror, domain and kinks
come from the registry), and each custom ``torch.autograd.Function`` becomes a node whose
backward is the user's own torch ``backward``. Importing this package does not import torch;
its functions do, on first call.

>>> import torch, verigrad as vg                                    # doctest: +SKIP
>>> vg.check(lambda x: torch.tanh(x).sum(), torch.randn(3, dtype=torch.float64,
...          requires_grad=True)).verdict                           # doctest: +SKIP
'pass'
"""
from __future__ import annotations

from typing import Any

__all__ = ["check", "check_module", "gradcheck", "gradgradcheck", "GradcheckError"]


def check(fn: Any, *inputs: Any, **options: Any) -> Any:
    """``vg.check`` for a torch callable (a function, ``MyFn.apply`` or an ``nn.Module``)."""
    from ._bridge import check as _check

    return _check(fn, *inputs, **options)


def check_module(module: Any, *inputs: Any, **options: Any) -> Any:
    """Check an ``nn.Module``'s gradients with respect to its parameters (named as in
    ``module.named_parameters()``) and to the inputs that require grad."""
    from ._bridge import check_module as _check_module

    return _check_module(module, *inputs, **options)


def gradcheck(func: Any, inputs: Any, **kwargs: Any) -> bool:
    """Drop-in for ``torch.autograd.gradcheck`` (keyword mapping: :mod:`verigrad.torch._gradcheck`)."""
    from ._gradcheck import gradcheck as _gc

    return _gc(func, inputs, **kwargs)


def gradgradcheck(func: Any, inputs: Any, grad_outputs: Any = None, **kwargs: Any) -> bool:
    """Drop-in for ``torch.autograd.gradgradcheck``."""
    from ._gradcheck import gradgradcheck as _ggc

    return _ggc(func, inputs, grad_outputs, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "GradcheckError":  # a subclass of torch's, carrying verigrad's report
        from ._gradcheck import GradcheckError

        return GradcheckError
    raise AttributeError(f"module 'verigrad.torch' has no attribute {name!r}")
