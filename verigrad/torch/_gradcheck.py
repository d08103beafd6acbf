"""``verigrad.torch.gradcheck`` / ``gradgradcheck``: ``torch.autograd.gradcheck``'s signature
and return contract, backed by verigrad's checker (symbolic reference, named culprit).

Replacing ``from torch.autograd import gradcheck`` by ``from verigrad.torch import gradcheck``
keeps every call working. How torch's keywords map:

- ``atol``, ``rtol``: torch's test ``|analytical - numerical| <= atol + rtol * |numerical|`` is
  verigrad's ``atol + rtol * |reference|`` with the exact reference in place of the finite
  difference. Not given (``None``), verigrad derives the tolerance from the precision the code
  runs in, which is tighter than torch's defaults (1e-5, 1e-3) for float64 and still free of
  false alarms for float32. Given, they replace the derived ones, as in torch.
- ``eps``: torch's finite-difference step. Given, it is the step of verigrad's own
  finite-difference opinion; not given, verigrad picks the step per input.
- ``raise_exception``: as torch: raise :class:`GradcheckError` (a subclass of torch's, so
  ``except torch.autograd.gradcheck.GradcheckError`` still catches it) or return False.
- ``fast_mode``: torch's cheaper check; here, only the given point is checked (no nearby
  points).
- ``nondet_tol``: the backward is run twice on the same vector; the results may differ by at
  most this much (torch's reentrancy test). verigrad's own check still reports a custom
  backward that gives different numbers on two calls as a contract failure.
- ``check_undefined_grad``, ``check_grad_dtypes``: torch's own tests of those properties, run
  on the user's tensors (they are not about the values of the gradient).
- ``check_forward_ad``, ``check_batched_grad``, ``check_batched_forward_grad`` (and
  ``check_fwd_over_rev`` in ``gradgradcheck``): verigrad checks reverse mode only; these
  are delegated to ``torch.autograd.gradcheck`` with the same tolerances when asked (torch
  tests batched gradients only alongside its own finite-difference check, so
  ``check_batched_grad=True`` also runs that).
- ``check_backward_ad=False`` (``check_rev_over_rev=False``): verigrad's check is skipped.
- ``masked``: sparse inputs are not supported; ``masked=True`` raises a one-line error.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.autograd.gradcheck import GradcheckError as _TorchGradcheckError

from verigrad.checker import GradcheckError as _VgGradcheckError

from ._bridge import check as _check

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(_TorchGradcheckError, _VgGradcheckError):
    """torch's ``GradcheckError`` whose message is verigrad's readable summary (``.report``
    holds the full report)."""


def _as_tuple(inputs: Any) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _fail(msg: str, raise_exception: bool) -> bool:
    if raise_exception:
        raise _TorchGradcheckError(msg)
    return False


def _torch_only(func: Callable, inputs: tuple, raise_exception: bool, **flags: Any) -> bool:
    """Run torch's own gradcheck for the properties verigrad does not check."""
    try:
        # torch tests batched gradients only together with its own backward check
        return torch.autograd.gradcheck(func, inputs, raise_exception=raise_exception,
                                        check_backward_ad=bool(flags.get("check_batched_grad")),
                                        check_undefined_grad=False, **flags)
    except _TorchGradcheckError as e:
        asked = ", ".join(k for k, v in flags.items() if v is True)
        raise _TorchGradcheckError(f"torch.autograd.gradcheck ({asked}): {e}") from None


def _outputs(func: Callable, inputs: tuple) -> tuple[list, list]:
    out = func(*inputs)
    outs = [o for o in _as_tuple(out) if isinstance(o, torch.Tensor) and o.requires_grad]
    diff = [a for a in inputs if isinstance(a, torch.Tensor) and a.requires_grad]
    return outs, diff


def _nondet(func: Callable, inputs: tuple, nondet_tol: float) -> str | None:
    """torch's reentrancy test: the backward twice on one vector gives the same result."""
    outs, diff = _outputs(func, inputs)
    if not outs or not diff:
        return None
    gen = torch.Generator().manual_seed(0)  # a fixed vector: no dependence on global RNG
    vs = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in outs]
    a = torch.autograd.grad(outs, diff, vs, retain_graph=True, allow_unused=True)
    b = torch.autograd.grad(outs, diff, vs, allow_unused=True)
    for k, (x, y) in enumerate(zip(a, b)):
        if x is None or y is None:
            continue
        err = float((x - y).abs().max()) if x.numel() else 0.0
        if err > nondet_tol:
            return (f"backward is not reentrant: run twice on the same vector its gradient "
                    f"for input {k} differs by {err:.3g} > nondet_tol={nondet_tol}")
    return None


def _grad_dtypes(func: Callable, inputs: tuple) -> str | None:
    outs, diff = _outputs(func, inputs)
    if not outs or not diff:
        return None
    gs = torch.autograd.grad(outs, diff, [torch.ones_like(o) for o in outs], allow_unused=True)
    for k, (x, g) in enumerate(zip(diff, gs)):
        if g is not None and (g.dtype != x.dtype or g.device != x.device):
            return (f"the gradient of input {k} is {g.dtype} on {g.device}, the input "
                    f"{x.dtype} on {x.device} (check_grad_dtypes=True)")
    return None


def _undefined(func: Callable, inputs: tuple) -> str | None:
    """torch's test that backward accepts undefined (None) output gradients."""
    from torch.autograd import gradcheck as _gc

    test = getattr(_gc, "_test_undefined_backward_mode", None)
    if test is None:  # not in this torch version: nothing to delegate to
        return None
    diff = tuple(a for a in inputs if isinstance(a, torch.Tensor) and a.requires_grad)
    try:
        outs = _as_tuple(func(*inputs))
        test(func, tuple(o for o in outs if isinstance(o, torch.Tensor)), diff)
    except _TorchGradcheckError as e:
        return f"check_undefined_grad: {str(e).splitlines()[0]}"
    return None


def gradcheck(func: Callable[..., Any], inputs: Any, *, eps: float | None = None,
              atol: float | None = None, rtol: float | None = None,
              raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
              check_batched_grad: bool = False, check_batched_forward_grad: bool = False,
              check_forward_ad: bool = False, check_backward_ad: bool = True,
              fast_mode: bool = False, masked: bool | None = None,
              **options: Any) -> bool:
    """Drop-in for ``torch.autograd.gradcheck``: True, or raise :class:`GradcheckError` (or
    return False with ``raise_exception=False``) naming the op whose backward is wrong.
    Keyword mapping: see :mod:`verigrad.torch._gradcheck`. Extra keywords go to ``vg.check``.

    >>> import torch, verigrad.torch as vgt                            # doctest: +SKIP
    >>> x = torch.randn(3, dtype=torch.float64, requires_grad=True)   # doctest: +SKIP
    >>> vgt.gradcheck(torch.sigmoid, (x,))                            # doctest: +SKIP
    True
    """
    if masked:
        raise ValueError("verigrad.torch.gradcheck: masked=True (sparse inputs) is not "
                         "supported; use torch.autograd.gradcheck for sparse tensors")
    args = _as_tuple(inputs)
    if check_backward_ad:
        if fast_mode:
            options.setdefault("nearby", 0)
        report = _check(func, *args, eps=eps, atol=atol, rtol=rtol, **options)
        if report.verdict == "fail":
            if raise_exception:
                raise GradcheckError(report)
            return False
        for test in ([lambda: _nondet(func, args, nondet_tol)]
                     + ([lambda: _grad_dtypes(func, args)] if check_grad_dtypes else [])
                     + ([lambda: _undefined(func, args)] if check_undefined_grad else [])):
            msg = test()
            if msg is not None:
                return _fail(f"verigrad: FAIL  {report.expression}: {msg}", raise_exception)
    flags = {"check_forward_ad": check_forward_ad, "check_batched_grad": check_batched_grad,
             "check_batched_forward_grad": check_batched_forward_grad}
    if any(flags.values()):
        tol = {k: v for k, v in (("eps", eps), ("atol", atol), ("rtol", rtol)) if v is not None}
        return _torch_only(func, args, raise_exception, fast_mode=fast_mode,
                           nondet_tol=nondet_tol, **tol, **flags)
    return True


def gradgradcheck(func: Callable[..., Any], inputs: Any, grad_outputs: Any = None, *,
                  eps: float | None = None, atol: float | None = None,
                  rtol: float | None = None, gen_non_contig_grad_outputs: bool = False,
                  raise_exception: bool = True, nondet_tol: float = 0.0,
                  check_undefined_grad: bool = True, check_grad_dtypes: bool = False,
                  check_batched_grad: bool = False, check_fwd_over_rev: bool = False,
                  check_rev_over_rev: bool = True, fast_mode: bool = False,
                  masked: bool = False, **options: Any) -> bool:
    """Drop-in for ``torch.autograd.gradgradcheck``: first and second derivatives. Every
    custom Function's double backward (torch differentiating the user's ``backward``) is
    compared with the second derivatives of the mirror of its traced forward, and every
    aten op's with its registry row's.

    ``grad_outputs`` is accepted for compatibility: verigrad checks second derivatives
    along its own seeded directions at every node rather than along one given vector.
    ``gen_non_contig_grad_outputs`` has no effect (memory layout does not change values).
    """
    if masked:
        raise ValueError("verigrad.torch.gradgradcheck: masked=True (sparse inputs) is not "
                         "supported; use torch.autograd.gradgradcheck for sparse tensors")
    args = _as_tuple(inputs)
    if check_rev_over_rev:
        if fast_mode:
            options.setdefault("nearby", 0)
        report = _check(func, *args, eps=eps, atol=atol, rtol=rtol, order=2, **options)
        if report.verdict == "fail":
            if raise_exception:
                raise GradcheckError(report)
            return False
    if check_fwd_over_rev or check_batched_grad:
        tol = {k: v for k, v in (("eps", eps), ("atol", atol), ("rtol", rtol)) if v is not None}
        try:
            return torch.autograd.gradgradcheck(
                func, args, grad_outputs, raise_exception=raise_exception,
                check_rev_over_rev=False, check_fwd_over_rev=check_fwd_over_rev,
                check_batched_grad=False if not check_rev_over_rev else check_batched_grad,
                check_undefined_grad=False, fast_mode=fast_mode, nondet_tol=nondet_tol, **tol)
        except _TorchGradcheckError as e:
            raise _TorchGradcheckError(f"torch.autograd.gradgradcheck: {e}") from None
    return True
