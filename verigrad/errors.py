"""Error types. Each message says what went wrong and how to fix it."""
from __future__ import annotations

__all__ = ["VerigradError", "GraphFreedError", "NonScalarBackwardError", "DtypeGradError",
           "InplaceOnLeafError", "SavedTensorModifiedError", "NoGradFnError",
           "BackwardContractError", "ShapeError"]


class VerigradError(RuntimeError):
    """Base class of verigrad's runtime errors (RuntimeError, like PyTorch's)."""


class GraphFreedError(VerigradError):
    """Backward through a graph whose saved values were freed by an earlier backward."""


class NonScalarBackwardError(VerigradError):
    """``backward()`` on a non-scalar output without ``gradient=``."""


class DtypeGradError(VerigradError):
    """``requires_grad`` asked of an integer or bool tensor."""


class InplaceOnLeafError(VerigradError):
    """An in-place operation on a leaf that requires grad, outside ``no_grad``."""


class SavedTensorModifiedError(VerigradError):
    """A tensor saved for backward was modified in place before backward ran."""


class NoGradFnError(VerigradError):
    """Backward from a tensor that does not require grad."""


class BackwardContractError(VerigradError):
    """A custom ``Function.backward`` returned the wrong number, shape or dtype of gradients."""


class ShapeError(VerigradError, ValueError):
    """Shapes that cannot be combined by the operation (also a ValueError)."""
