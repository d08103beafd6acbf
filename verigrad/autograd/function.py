"""Custom ops: subclass :class:`Function` with ``forward``/``backward`` staticmethods.

The ctx passed to ``forward`` is the grad_fn node itself (as in PyTorch); its class is
``<Name>Backward``. Unlike PyTorch, a backward that returns a gradient of the wrong shape is
an error naming the Function and the input, never silently summed or broadcast.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from ..errors import BackwardContractError, GraphFreedError, SavedTensorModifiedError
from ..tensor import Tensor, _seq, _vbox, _wrap
from .engine import _OPS, wrap_output
from .grad_mode import _state
from .node import FREED_MESSAGE, Node

__all__ = ["Function", "FunctionCtx", "once_differentiable"]


class FunctionCtx(Node):
    """Context and grad_fn of one ``Function.apply`` call.

    Attributes set in ``forward`` (``ctx.k = 2``) are kept for ``backward``.
    """

    _forward_cls: type = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self._edges: tuple = ()
        self._retain = None
        self._seq = 0
        self._to_save: tuple = ()
        self._saved: tuple = ()
        self._non_differentiable: set[int] = set()
        self._materialize = True
        self._freed = False
        self._inputs: tuple = ()
        self.n_outputs = 1
        self._out_meta: tuple = ()
        self.needs_input_grad: tuple[bool, ...] = ()
        self._returned_dtypes: tuple = ()

    def __repr__(self) -> str:
        return object.__repr__(self)

    # --- the PyTorch ctx API ---------------------------------------------------------
    def save_for_backward(self, *tensors: Any) -> None:
        """Keep tensors (inputs, outputs or intermediates) for ``backward``; ``None`` allowed."""
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save tensors (or None), but "
                                f"argument {i} is {type(t).__name__}; store other values as "
                                f"ctx attributes (ctx.k = k)")
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise GraphFreedError(FREED_MESSAGE)
        out = []
        for item in self._saved:
            if item is None:
                out.append(None)
                continue
            kind, obj, version = item
            if kind == "output":
                nr, data, vbox = obj
                now = vbox[0]
                if now != version:
                    raise SavedTensorModifiedError(self._modified(f"output {nr}", now, version))
                t = wrap_output(data, self, nr) if _state.enabled else _wrap(data)
            else:
                t = obj
                now = 0 if t._vbox is None else t._vbox[0]
                if now != version:
                    raise SavedTensorModifiedError(self._modified(f"a saved tensor of shape "
                                                                  f"{tuple(t.shape)}", now, version))
            out.append(t)
        return tuple(out)

    def _modified(self, what: str, now: int, expected: int) -> str:
        return (f"one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: {what} saved by {self.name()} is at version {now}; "
                f"expected version {expected} instead. Do not modify it in place before backward.")

    def mark_non_differentiable(self, *outputs: Any) -> None:
        """Outputs (e.g. integer indices) that never get a gradient."""
        self._non_differentiable.update(id(o) for o in outputs)

    def set_materialize_grads(self, value: bool) -> None:
        """With False, backward receives None (not zeros) for outputs that got no gradient."""
        self._materialize = bool(value)

    def name(self) -> str:
        return self._name

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """One entry per *tensor* argument of ``forward``, as in PyTorch (non-tensor arguments
        have no edge; ``_edges`` keeps one per argument for the engine and the mirror)."""
        return tuple(e for e, a in zip(Node.next_functions.fget(self), self._inputs)
                     if isinstance(a, Tensor))

    # --- engine interface ------------------------------------------------------------
    def _backward(self, grads: list, create_graph: bool, owned: bool = False) -> list:
        if self._freed:
            raise GraphFreedError(FREED_MESSAGE)
        cls = self._forward_cls
        grad_tensors = []
        for g, (shape, dtype) in zip(grads, self._out_meta):
            if g is None:
                if self._materialize:
                    g = _wrap(np.zeros(shape, dtype))
            elif not isinstance(g, Tensor):
                g = _wrap(g)
            grad_tensors.append(g)
        prev = _state.enabled
        _state.enabled = create_graph
        try:
            result = cls.backward(self, *grad_tensors)
        finally:
            _state.enabled = prev
        return self._validate(result, create_graph)

    def _validate(self, result: Any, create_graph: bool) -> list:
        cls = self._forward_cls
        if not isinstance(result, tuple):
            result = (result,)
        n = len(self._inputs)
        # the checker's tolerance follows the precision the backward returned in
        self._returned_dtypes = tuple(getattr(getattr(r, "_data", None), "dtype", None)
                                      for r in result)
        if len(result) < n or any(r is not None for r in result[n:]):
            raise BackwardContractError(
                f"{cls.__name__}.backward returned {len(result)} gradient(s), but forward took "
                f"{n} input(s) ({', '.join(_input_names(cls, n))}): return exactly one gradient "
                f"per forward input, None for inputs that need none")
        out = []
        for i, (gi, inp) in enumerate(zip(result, self._inputs)):
            label = f"input {i} ({_input_names(cls, n)[i]})"
            if gi is None:
                out.append(None)
                continue
            if not isinstance(inp, Tensor):
                raise BackwardContractError(
                    f"{cls.__name__}.backward returned a gradient for {label}, which is not a "
                    f"tensor ({type(inp).__name__}); return None for it")
            if not isinstance(gi, Tensor):
                raise BackwardContractError(
                    f"{cls.__name__}.backward must return tensors (or None), but returned "
                    f"{type(gi).__name__} for {label}")
            if gi.shape != inp.shape:
                raise BackwardContractError(
                    f"{cls.__name__}.backward returned a gradient of shape {tuple(gi.shape)} for "
                    f"{label} of shape {tuple(inp.shape)}. verigrad never sums or broadcasts a "
                    f"custom gradient to fit: return one of exactly the input's shape.")
            if gi._data.dtype != inp._data.dtype:
                if gi._data.dtype.kind == "c" and inp._data.dtype.kind != "c":
                    raise BackwardContractError(
                        f"{cls.__name__}.backward returned a complex gradient for real {label}")
                gi = _OPS["to"](gi, inp._data.dtype) if create_graph else \
                    _wrap(gi._data.astype(inp._data.dtype))
            if not self.needs_input_grad[i]:
                out.append(None)
                continue
            out.append(gi if create_graph else gi._data)
        return out

    def _free(self) -> None:
        if self._saved:
            self._freed = True

    # --- the node protocol: what symbolic/ and checker/ ask a node (never its kind) -----
    #: non-tensor arguments reach forward and the mirror as values (an op wraps them)
    passes_values = True
    #: forward and backward are the user's code: checked at every point, never cached on disk
    user_code = True
    #: one rule for all elements is not known for a user's forward
    elementwise = False
    uses_out = False
    #: ``mirror_of(ctx, args)``: the SymPy mirror (``symbolic`` staticmethod, else the traced
    #: forward). Filled in by ``symbolic/local.py``, which this layer cannot import
    mirror_of: Any = None

    @property
    def foreign(self) -> str:
        """Whose op and derivative the node runs when they are another library's
        (``"torch's aten::linalg_cholesky_ex.default"``, from the Function class's
        ``foreign`` attribute), else "". Such a derivative may follow that library's
        convention where the forward alone does not fix it (a symmetric gradient for an op
        that reads one triangle), so the whole-graph comparison, not the node's own
        differences, judges it."""
        return getattr(self._forward_cls, "foreign", "")

    def output_differentiable(self, k: int) -> bool:
        """Whether output ``k`` carries a gradient (not marked non-differentiable, a float):
        the backward's incoming gradient for any other output is ignored."""
        return self._differentiable[k]

    def input_names(self) -> list[str]:
        """The forward's parameter names, one per input (``arg3`` beyond them)."""
        return _input_names(self._forward_cls, len(self._inputs))

    def rule_key(self, values: Any = None) -> tuple:
        """What fixes this node's mirror besides input shapes: the Function class (or the
        mirror a class made per call names, ``_rule_key``) and its non-tensor arguments."""
        cls = self._forward_cls
        # the class itself, never its id(): a class made in a factory may land at the
        # address of a freed one (the key keeps it alive until the cache is cleared)
        ident = getattr(cls, "_rule_key", None) or cls
        if values is None:
            return ("fn", ident)
        return ("fn", ident, tuple(v for v in values if not isinstance(v, np.ndarray)))

    def own_mirror(self) -> Callable | None:
        """The class's ``symbolic`` staticmethod, or None (its forward is traced instead)."""
        return getattr(self._forward_cls, "symbolic", None)

    def mirror(self, args: Any) -> tuple:
        """SymPy object arrays of the outputs, given the inputs' (values for non-tensors)."""
        return FunctionCtx.mirror_of(self, args)

    def forward(self, values: Any) -> list:
        """The user's forward on input values (numpy in, numpy out), without recording."""
        from ..tensor import Tensor, _wrap
        from .grad_mode import no_grad

        cls = self._forward_cls
        with no_grad():
            args = [_wrap(np.array(v)) if isinstance(v, np.ndarray) else v for v in values]
            out = cls.forward(cls._backward_cls(), *args)
        outs = out if isinstance(out, tuple) else (out,)
        return [np.asarray(o._data if isinstance(o, Tensor) else o) for o in outs]

    def rerun(self, args: Any) -> Any:
        """The Function applied afresh to ``args`` (tensors or values), recorded."""
        return self._forward_cls.apply(*args)


def _input_names(cls: type, n: int) -> list[str]:
    try:
        params = [p.name for p in list(inspect.signature(cls.forward).parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


class _FunctionMeta(type):
    def __init__(cls, name: str, bases: tuple, ns: dict) -> None:
        super().__init__(name, bases, ns)
        backward_name = f"{name}Backward"
        cls._backward_cls = type(backward_name, (FunctionCtx,), {
            "_forward_cls": cls, "_name": backward_name,
            "__module__": "verigrad.autograd.function"})


class Function(metaclass=_FunctionMeta):
    """Base class of custom differentiable ops.

    >>> import numpy as np, verigrad as vg
    >>> class Cube(vg.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return vg.tensor(x.numpy() ** 3)
    ...     @staticmethod
    ...     def backward(ctx, grad):
    ...         (x,) = ctx.saved_tensors
    ...         return grad * 3 * x * x
    >>> x = vg.tensor(2.0, requires_grad=True)
    >>> y = Cube.apply(x); y.backward(); (y.grad_fn.name(), x.grad)
    ('CubeBackward', tensor(12.))

    An optional ``symbolic(*inputs)`` staticmethod gives the SymPy mirror of ``forward``.
    """

    _backward_cls: type

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any) -> Any:
        raise NotImplementedError("subclasses of vg.Function must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx: FunctionCtx, *grads: Any) -> Any:
        raise NotImplementedError("subclasses of vg.Function must define backward(ctx, grad)")

    def __init__(self) -> None:
        raise RuntimeError(f"call {type(self).__name__}.apply(...) instead of instantiating it")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        ctx = cls._backward_cls()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        prev = _state.enabled
        _state.enabled = False
        try:
            outputs = cls.forward(ctx, *args)
        finally:
            _state.enabled = prev
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else tuple(outputs)
        for k, o in enumerate(outs):
            if o is not None and not isinstance(o, Tensor):
                raise BackwardContractError(
                    f"{cls.__name__}.forward must return tensors, but output {k} is "
                    f"{type(o).__name__}; wrap arrays with vg.tensor(...)")
        if not (prev and any(ctx.needs_input_grad)):
            return outputs
        ids_in = {id(a) for a in args if isinstance(a, Tensor)}
        fresh = []
        for o in outs:
            if o is not None and id(o) in ids_in:  # an input returned as is: alias its data
                alias = _wrap(o._data)
                alias._vbox = _vbox(o)
                o = alias
            fresh.append(o)
        outs = tuple(fresh)
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a._requires_grad:
                edges.append((a._grad_fn, a._output_nr) if a._grad_fn is not None else (a, 0))
            else:
                edges.append((None, 0))
        ctx._edges = tuple(edges)
        ctx._inputs = args
        ctx._seq = next(_seq)
        ctx.n_outputs = len(outs)
        ctx._out_meta = tuple((o.shape, o._data.dtype) if o is not None else ((), np.float64)
                              for o in outs)
        out_index = {id(o): k for k, o in enumerate(outs) if o is not None}
        saved = []
        for t in ctx._to_save:
            if t is None:
                saved.append(None)
            elif id(t) in out_index:  # kept as data: a reference would be a cycle
                saved.append(("output", (out_index[id(t)], t._data, _vbox(t)), _vbox(t)[0]))
            else:
                saved.append(("tensor", t, 0 if t._vbox is None else t._vbox[0]))
        ctx._saved = tuple(saved)
        ctx._to_save = ()
        ctx._differentiable = tuple(
            o is not None and id(o) not in ctx._non_differentiable and o._data.dtype.kind in "fc"
            for o in outs)
        for k, o in enumerate(outs):
            if ctx._differentiable[k]:
                o._grad_fn, o._output_nr, o._requires_grad = ctx, k, True
        return outs[0] if single else outs


def once_differentiable(fn: Callable) -> Callable:
    """Mark a backward as not differentiable twice (accepted for PyTorch compatibility)."""
    return fn
