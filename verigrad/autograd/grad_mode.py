"""Grad modes (thread-local), usable as context managers, decorators and plain calls."""
from __future__ import annotations

import functools
import inspect
import sys
import threading
from typing import Any, Callable, TypeVar

__all__ = ["is_grad_enabled", "set_grad_enabled", "no_grad", "enable_grad"]

F = TypeVar("F", bound=Callable[..., Any])


class _State(threading.local):
    enabled = True  # a fresh thread starts with grad enabled, as in PyTorch


_state = _State()


def is_grad_enabled() -> bool:
    """True when operations record a graph.

    >>> import verigrad as vg
    >>> vg.is_grad_enabled()
    True
    """
    return _state.enabled


class _GradMode:
    """Base: a context manager that is also a decorator (with or without parentheses)."""

    mode: bool

    def __enter__(self) -> None:
        self.prev = _state.enabled
        _state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self.prev

    def __call__(self, func: F) -> F:
        mode = self.mode
        if inspect.isgeneratorfunction(func):
            return _wrap_generator(func, mode)  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            prev = _state.enabled
            _state.enabled = mode
            try:
                return func(*args, **kwargs)
            finally:
                _state.enabled = prev

        return wrapper  # type: ignore[return-value]


def _wrap_generator(func: Callable, mode: bool) -> Callable:
    """A decorated generator runs each step (not just its creation) under ``mode``, as in
    PyTorch; the caller's mode is restored between steps."""

    def step(fn: Callable, *args: Any) -> Any:
        prev = _state.enabled
        _state.enabled = mode
        try:
            return fn(*args)
        finally:
            _state.enabled = prev

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = func(*args, **kwargs)  # runs none of the body yet
        try:
            response = step(gen.send, None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    step(gen.close)
                    raise
                except BaseException:
                    response = step(gen.throw, sys.exc_info()[1])
                else:
                    response = step(gen.send, request)
        except StopIteration as e:
            return e.value

    return wrapper


class _NoParams(_GradMode):
    def __new__(cls, func: Callable | None = None):
        self = super().__new__(cls)
        # `@vg.no_grad` without parentheses decorates directly, like PyTorch 2.x.
        return self(func) if func is not None else self


class no_grad(_NoParams):
    """Disable graph recording: results have ``requires_grad=False`` and ``grad_fn=None``.

    >>> import verigrad as vg
    >>> x = vg.tensor(1.0, requires_grad=True)
    >>> with vg.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    mode = False


class enable_grad(_NoParams):
    """Re-enable graph recording inside a ``no_grad`` block (or as a decorator)."""

    mode = True


class set_grad_enabled(_GradMode):
    """Set grad mode: as a plain call it takes effect at once; as a context manager or
    decorator it is restored afterwards.

    >>> import verigrad as vg
    >>> with vg.set_grad_enabled(False):
    ...     vg.is_grad_enabled()
    False
    >>> vg.is_grad_enabled()
    True
    """

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled expects True or False, got {mode!r}")
        self.mode = mode
        self.prev = _state.enabled
        _state.enabled = mode  # a plain call switches immediately

    def __enter__(self) -> None:
        _state.enabled = self.mode  # prev was captured by __init__

    def __call__(self, func: F) -> F:
        _state.enabled = self.prev  # decorating must not leave the mode switched
        return super().__call__(func)

    def __repr__(self) -> str:
        return f"set_grad_enabled(mode={self.mode})"
