"""verigrad: proves gradients right, or shows exactly where they are wrong.

A PyTorch-compatible tape (``vg.tensor``, ``backward``, ``grad_fn``), a SymPy mirror of every
graph, and finite differences, compared by a checker that names the faulty op.

>>> import verigrad as vg
>>> x = vg.tensor(2.0, requires_grad=True)
>>> y = x * x + 1
>>> y.backward(); x.grad
tensor(4.)
"""
import sys as _sys

from . import autograd
from ._dtype import (bool, complex64, complex128, dtype, float16, float32, float64,  # noqa: A004
                     get_default_dtype, int8, int16, int32, int64, set_default_dtype, uint8)
from .autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (Generator, arange, empty, eye, from_numpy, full, full_like, linspace,
                       manual_seed, ones, ones_like, rand, randn, zeros, zeros_like)
from .errors import (BackwardContractError, DtypeGradError, GraphFreedError, InplaceOnLeafError,
                     NoGradFnError, NonScalarBackwardError, SavedTensorModifiedError, ShapeError,
                     VerigradError)
from . import ops
# vg.exp, vg.sum, ...: every public op function, from the registry's faces (and kept in step
# with them: an op declared later appears here too)
ops.bind(_sys.modules[__name__], "function")
from . import _methods  # noqa: F401  (binds Tensor methods and operators)
from . import numpy_bridge  # noqa: F401  (numpy's __array_ufunc__/__array_function__ on Tensor)
from .tensor import Tensor, as_tensor, tensor
from .parse import Expression, ExpressionError
from .expression import build_graph, parse_expression
# imported eagerly: the function must shadow the subpackage of the same name (mpmath, not
# SymPy, comes with it: SymPy loads on first use)
from .symbolic import symbolic, symbolic_grad

from ._version import __version__  # noqa: E402 - one place for the version

# These names resolve on first access (the checker itself is loaded by verigrad.report,
# imported at the bottom: its renderers register into the checker).
_LAZY = {"check": "checker", "gradcheck": "checker", "gradgradcheck": "checker",
         "CheckReport": "checker", "GradcheckError": "checker",
         "check_grad": "scipy_check", "check_jacobian": "scipy_check"}


def __getattr__(name: str):
    import importlib

    if name == "torch":  # vg.torch.check_module without `import verigrad.torch` first
        try:
            return importlib.import_module(f"{__name__}.torch")
        except ImportError as e:  # hasattr(vg, "torch") stays False without torch
            raise AttributeError(f"verigrad.torch needs PyTorch ({e})") from None
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'verigrad' has no attribute {name!r}")

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    if module == "checker":
        # vg.check recognises torch code through a front end the torch layer registers
        # (the checker sits below it and cannot import it); importing it imports no torch
        from .torch import _hook  # noqa: F401
        # and scipy's jac=/hess= through the scipy layer's option handlers (imports no scipy)
        from . import scipy_check  # noqa: F401
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
# the report layer registers CheckReport's renderers (str(report), to_json, save...) into
# the checker, which sits below it and cannot import it: see docs/design.md, "Layers"
from . import report as _report  # noqa: E402,F401

float = float32  # noqa: A001 - PyTorch aliases
double = float64
long = int64
