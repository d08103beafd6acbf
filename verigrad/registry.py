"""The op registry: every op is declared exactly once, and everything else reads the declaration.

An :class:`OpDef` holds the numpy forward, the vector-Jacobian product (VJP), the SymPy
mirror of the forward and the input domain the tests sample from. The grad_fn class name
is derived from the op's base name and its overload order, the way PyTorch names them:
the third declared overload of ``pow`` is ``PowBackward2``.

VJP convention: ``vjp(F, g, **wanted) -> gradient or tuple of gradients`` (one per input,
``None`` where an input gets none). ``F`` is a namespace of array functions (numpy for a
first-order backward, recorded tensor ops when ``create_graph=True``). The keyword names
the VJP declares say what it reads and therefore what the node saves: input names, ``out``
(the forward result), ``needs`` (which inputs need a gradient), ``shapes`` (input shapes)
and any op parameter. Gradients are returned at the broadcast output shape; the engine
reduces them to each input's shape in one place.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

__all__ = ["OpDef", "Domain", "defop", "REGISTRY", "grad_fn_name"]

#: name -> OpDef, in declaration order
REGISTRY: dict[str, "OpDef"] = {}
_BASE_COUNT: dict[str, int] = {}


def grad_fn_name(base: str, overload_index: int) -> str:
    """PyTorch's naming: ``log_softmax`` -> ``LogSoftmaxBackward0``, ``log1p`` -> ``Log1PBackward0``.

    >>> grad_fn_name("log1p", 0), grad_fn_name("_unsafe_view", 0), grad_fn_name("pow", 2)
    ('Log1PBackward0', 'UnsafeViewBackward0', 'PowBackward2')
    """
    return base.title().replace("_", "") + f"Backward{overload_index}"


@dataclass(frozen=True)
class Domain:
    """Where the tests sample an op's inputs: a union of open intervals per float input,
    and example shapes/parameters (``cases``: a function of a numpy Generator returning a list
    of ``(input_shapes, params)``)."""

    intervals: Sequence[Sequence[tuple[float, float]]] = ((( -2.0, 2.0),),)
    cases: Callable[[np.random.Generator], list] | None = None

    def sample(self, rng: np.random.Generator, shape: tuple, index: int) -> np.ndarray:
        parts = self.intervals[min(index, len(self.intervals) - 1)]
        which = rng.integers(len(parts), size=shape)
        lo = np.array([p[0] for p in parts])[which]
        hi = np.array([p[1] for p in parts])[which]
        return np.asarray(lo + (hi - lo) * rng.random(shape))


UNARY_CASES = lambda rng: [(((),), {}), (((3,),), {}), (((2, 3),), {})]  # noqa: E731
BINARY_CASES = lambda rng: [(((), ()), {}), (((3,), (3,)), {}), (((2, 3), (3,)), {}),  # noqa: E731
                            (((2, 1), (1, 3)), {}), (((), (2, 3)), {}), (((4, 1, 2), (3, 1)), {})]

_SPECIAL_ARGS = frozenset({"F", "g", "out", "needs", "shapes"})


@dataclass(eq=False)
class OpDef:
    """One op overload. Create with :func:`defop`, never by hand."""

    name: str                      # "pow.Tensor_Scalar"
    base: str                      # "pow"
    inputs: tuple[str, ...]        # tensor inputs by name; "*tensors" for a variadic list
    params: tuple[str, ...]        # non-tensor parameters
    forward: Callable              # numpy: forward(*arrays, **params) -> array
    vjp: Callable | None           # None: not differentiable (comparisons)
    mirror: Callable | None        # SymPy mirror of the forward
    elementwise: bool              # mirror is scalar and applied per element with broadcasting
    domain: Domain
    doc: str
    overload_index: int = 0
    grad_fn_name: str = ""
    # derived from the VJP signature: what the node must save
    saved: tuple[int, ...] = ()
    uses_out: bool = False
    uses_needs: bool = False
    uses_shapes: bool = False
    vjp_params: tuple[str, ...] = ()
    keep: frozenset = frozenset()  # input positions the node keeps (what the VJP reads)
    keep_all: bool = False         # a variadic op whose VJP reads its inputs
    node_cls: type = field(default=None, repr=False)  # type: ignore[assignment]
    numpy: tuple[str, ...] = ()    # the numpy function(s) this op stands for (np.<name>)

    @property
    def variadic(self) -> bool:
        return self.inputs[0].startswith("*")

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def __repr__(self) -> str:
        return f"<op {self.name} -> {self.grad_fn_name}>"


def defop(name: str, *, inputs: Sequence[str] = ("x",), params: Sequence[str] = (),
          forward: Callable, vjp: Callable | None, mirror: Callable | None,
          elementwise: bool = False, domain: Domain | None = None, doc: str = "",
          numpy: str | Sequence[str] | None = None) -> OpDef:
    """Declare an op overload. ``name`` is ``base`` or ``base.overload``; overloads of one
    base are numbered in declaration order, which therefore follows PyTorch's numbering.
    ``numpy`` names the numpy function(s) the op stands for; by default ``np.<base>`` where
    numpy has one (``()``: none).

    >>> op = REGISTRY["mul"]
    >>> op.grad_fn_name, op.inputs
    ('MulBackward0', ('x', 'y'))
    """
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is declared twice")
    base = name.split(".")[0]
    index = _BASE_COUNT.get(base, 0)
    _BASE_COUNT[base] = index + 1
    inputs, params = tuple(inputs), tuple(params)
    saved: list[int] = []
    uses = set()
    if vjp is not None:
        sig = inspect.signature(vjp)
        names = list(sig.parameters)
        if names[:2] != ["F", "g"]:
            raise TypeError(f"VJP of {name} must start with (F, g, ...), got {names}")
        known = _SPECIAL_ARGS | set(inputs) | set(params) | {i.lstrip("*") for i in inputs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise TypeError(f"VJP of {name} asks for unknown values {unknown}; it may use "
                            f"{sorted(known - {'F', 'g'})}")
        uses = set(names[2:])
        saved = [i for i, inp in enumerate(inputs) if inp.lstrip("*") in uses]
    domain = domain or Domain()
    if domain.cases is None:
        domain = replace(domain, cases=UNARY_CASES if len(inputs) == 1 else BINARY_CASES)
    if numpy is None:
        numpy = (base,) if callable(getattr(np, base, None)) else ()
    op = OpDef(name=name, base=base, numpy=(numpy,) if isinstance(numpy, str) else tuple(numpy), inputs=inputs, params=params, forward=forward, vjp=vjp,
               mirror=mirror, elementwise=elementwise, domain=domain,
               doc=doc, overload_index=index, grad_fn_name=grad_fn_name(base, index),
               saved=tuple(saved), uses_out="out" in uses, uses_needs="needs" in uses,
               uses_shapes="shapes" in uses, vjp_params=tuple(p for p in params if p in uses),
               keep=frozenset(saved), keep_all=bool(saved) and inputs[0].startswith("*"))
    from .autograd.node import make_node_class  # late: node imports nothing from here at import

    op.node_cls = make_node_class(op)
    REGISTRY[name] = op
    return op



