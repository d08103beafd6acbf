"""The checker: ``vg.check`` (a full report) and ``vg.gradcheck`` (PyTorch's drop-in)."""
from __future__ import annotations

from typing import Any, Sequence

from .core import DEFAULTS, check
from .problem import CheckInputError
from .report import CheckReport, Culprit, Entry, FDTrace, NodeResult, PointResult

__all__ = ["check", "gradcheck", "gradgradcheck", "GradcheckError", "CheckReport", "Culprit", "Entry",
           "NodeResult", "PointResult", "FDTrace", "CheckInputError", "DEFAULTS"]


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck`` on a failure; ``.report`` holds the full CheckReport."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(str(report))
        self.report = report


def gradcheck(fn: Any, inputs: Any, *, eps: float | None = None, atol: float | None = None,
              rtol: float | None = None, raise_exception: bool = True, **options: Any) -> bool:
    """A drop-in for ``torch.autograd.gradcheck``: True if the gradients are right.

    ``inputs`` is a tensor or a tuple of them (numbers, lists and arrays work too). On a
    failure it raises :class:`GradcheckError` whose message is the readable summary (or
    returns False with ``raise_exception=False``). Inconclusive checks (a kink at the point)
    return True, as they are not evidence of a wrong gradient.

    >>> import verigrad as vg
    >>> vg.gradcheck(vg.sin, (vg.tensor([0.1, 0.2], dtype=vg.float64, requires_grad=True),))
    True
    """
    args: Sequence[Any] = inputs if isinstance(inputs, (tuple, list)) and not _is_number_list(
        inputs) else (inputs,)
    report = check(fn, *args, eps=eps, atol=atol, rtol=rtol, **options)
    if report.verdict == "fail":
        if raise_exception:
            raise GradcheckError(report)
        return False
    return True


def gradgradcheck(fn: Any, inputs: Any, *, eps: float | None = None, atol: float | None = None,
                  rtol: float | None = None, raise_exception: bool = True,
                  **options: Any) -> bool:
    """A drop-in for ``torch.autograd.gradgradcheck``: True if first and second derivatives
    are right. Every custom Function's double backward (``create_graph=True`` through its
    backward) is compared with its mirror's second derivatives along seeded directions
    (finite differences of its backward without a mirror); a failure names the Function.

    >>> import verigrad as vg
    >>> vg.gradgradcheck(vg.sin, (vg.tensor([0.1, 0.2], dtype=vg.float64, requires_grad=True),))
    True
    """
    return gradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, **dict(options, order=2))


def _is_number_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(v, (int, float)) for v in x)
