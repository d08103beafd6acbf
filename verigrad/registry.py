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
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["OpDef", "Domain", "Face", "defop", "public", "numpy_form", "scratch", "on_change",
           "REGISTRY", "FACES", "NUMPY_FORMS", "grad_fn_name", "register_node_factory"]

#: name -> OpDef, in declaration order
REGISTRY: dict[str, "OpDef"] = {}
_BASE_COUNT: dict[str, int] = {}
#: public name -> Face, in declaration order (what ``vg.<name>``, ``Tensor.<name>`` and the
#: expression parser are built from)
FACES: dict[str, "Face"] = {}
_LISTENERS: list[Callable[[], None]] = []
#: numpy name -> a function with numpy's signature that calls public ops (see numpy_form)
NUMPY_FORMS: dict[str, Callable] = {}
#: makes an op's grad_fn class (``AddBackward0``); filled in by ``verigrad.autograd.node``,
#: which sits above this pure-data layer (see register_node_factory)
_NODE_FACTORY: Callable[["OpDef"], type] | None = None


def register_node_factory(factory: Callable[["OpDef"], type]) -> None:
    """Let the node layer make each op's grad_fn class: ``factory(op) -> class``. Rows
    declared before the node layer was imported get theirs now.

    >>> import verigrad  # its node layer has registered the factory
    >>> REGISTRY["mul"].node_cls.__name__
    'MulBackward0'
    """
    global _NODE_FACTORY
    _NODE_FACTORY = factory
    for op in REGISTRY.values():
        if op.node_cls is None:
            op.node_cls = factory(op)


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
    #: per input, the open interval ``(lo, hi)`` where the derivative exists, or ``None`` for
    #: everywhere; for edges the SymPy mirror does not show as a kink (``a ** b`` with a tensor
    #: exponent needs ``a > 0``), so point pickers can stay clear of them
    defined: Sequence[tuple[float, float] | None] = ()

    def defined_on(self, index: int) -> tuple[float, float] | None:
        """The interval input ``index`` must stay in for a derivative, or ``None``."""
        return self.defined[index] if index < len(self.defined) else None

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
    public: str | None = None      # the Face this overload belongs to (None: internal)
    arguments: tuple[str, ...] = ()  # inputs and params in the public function's order
    #: the forward on numpy scalars, bitwise the forward's on 0-d arrays (a one-input ufunc
    #: is its own; ``operator.mul`` for ``np.multiply``): 0-d inputs take it, several times
    #: cheaper than a ufunc call on 0-d arrays. None: 0-d inputs run ``forward``.
    scalar: Callable | None = field(default=None, repr=False)
    #: the mirror only moves entries (each output entry is one input entry or a constant):
    #: its rule costs one partial per output entry, however large the input
    moves_data: bool = False

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
          numpy: str | Sequence[str] | None = None,
          public: str | bool = True, method: bool | None = None,
          expression: bool | None = None, aliases: Sequence[str] | Mapping[str, Any] = (),
          arguments: Sequence[str] | None = None, scalar: Callable | None = None,
          moves_data: bool = False) -> OpDef:
    """Declare an op overload. ``name`` is ``base`` or ``base.overload``; overloads of one
    base are numbered in declaration order, which therefore follows PyTorch's numbering.
    ``numpy`` names the numpy function(s) the op stands for; by default ``np.<base>`` where
    numpy has one (``()``: none).

    The public face: the overload belongs to the function ``public`` (default: the base name;
    ``False``, or a base starting with ``_``, keeps it internal). Overloads of one function
    share a :class:`Face`; a face with one overload and no :func:`public` dispatcher gets a
    generated function taking ``arguments`` (default: inputs, then params, with the forward's
    defaults). ``scalar``: the forward on numpy scalars when that is cheaper and bitwise
    equal (default: ``forward`` itself when it is a one-input ufunc and the op has no
    params). ``method`` (default: not variadic), ``expression`` (default: no) and
    ``aliases`` (names on every surface, or a mapping name -> surfaces) say where it appears;
    see :class:`Face`.

    >>> op = REGISTRY["mul"]
    >>> op.grad_fn_name, op.inputs, op.public
    ('MulBackward0', ('x', 'y'), 'mul')
    """
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is declared twice")
    base = name.split(".")[0]
    index = _BASE_COUNT.get(base, 0)
    inputs, params = tuple(inputs), tuple(params)
    plain = tuple(i.lstrip("*") for i in inputs) + params
    arguments = plain if arguments is None else tuple(arguments)
    if sorted(arguments) != sorted(plain):
        raise TypeError(f"{name}: arguments {arguments} must order the inputs and params "
                        f"{plain}")
    if public is True:
        public = None if base.startswith("_") else base
    elif public is False:
        public = None
    if public is None and (method is not None or expression is not None or aliases):
        raise TypeError(f"{name} is internal (public=False): it has no method, expression or "
                        f"aliases to declare")
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
    numpy = (numpy,) if isinstance(numpy, str) else tuple(numpy)
    if scalar is None and isinstance(forward, np.ufunc) and forward.nin == 1 and not params:
        scalar = forward  # a ufunc runs the same loop on a numpy scalar as on a 0-d array
    op = OpDef(name=name, base=base, numpy=numpy, inputs=inputs, params=params, forward=forward, vjp=vjp,
               mirror=mirror, elementwise=elementwise, domain=domain,
               doc=doc, overload_index=index, grad_fn_name=grad_fn_name(base, index),
               saved=tuple(saved), uses_out="out" in uses, uses_needs="needs" in uses,
               uses_shapes="shapes" in uses, vjp_params=tuple(p for p in params if p in uses),
               keep=frozenset(saved), keep_all=bool(saved) and inputs[0].startswith("*"),
               public=public, arguments=arguments, scalar=scalar, moves_data=moves_data)
    face = None
    if public is not None:  # checked before anything is registered: a refused row leaves no trace
        face = FACES.get(public) or Face(public)
        _declare(face, method=method, expression=expression, aliases=aliases)
    if _NODE_FACTORY is not None:  # else register_node_factory makes it
        op.node_cls = _NODE_FACTORY(op)
    REGISTRY[name] = op
    _BASE_COUNT[base] = index + 1
    if face is not None:
        FACES.setdefault(public, face).rows.append(op)
    _changed()
    return op


# --- the public face ----------------------------------------------------------------------

SURFACES = frozenset({"function", "method", "expression"})


@dataclass(eq=False)
class Face:
    """One public function name and where it appears: ``vg.<name>`` (``function``),
    ``Tensor.<name>`` (``method``) and the expression parser (``expression``).

    Everything is declared once, on a row (:func:`defop`) or on the dispatcher
    (:func:`public`); what is not declared has a default. The keywords an expression may pass
    are derived: the parameters of the (expression) function that are params of its rows.

    >>> f = FACES["softplus"]
    >>> f.on("function"), f.on("method"), f.on("expression"), f.keywords
    (True, True, True, ('beta', 'threshold'))
    """

    name: str
    rows: list = field(default_factory=list)    # the OpDefs this function records
    fn: Callable | None = None                  # hand-written dispatcher (see public())
    generated: Callable | None = None           # built by verigrad.ops from a single row
    method: bool | None = None
    function: bool | None = None
    expression: bool | Callable | None = None   # a callable: the form expressions call
    aliases: dict = field(default_factory=dict)  # alias -> frozenset of surfaces
    declared_keywords: tuple | None = None

    @property
    def callable(self) -> Callable | None:
        """The public function (the dispatcher, else the generated one)."""
        return self.fn or (self.generated if len(self.rows) == 1 else None)

    @property
    def expression_callable(self) -> Callable | None:
        """What an expression's call runs (an expression-specific form, or the function)."""
        return self.expression if callable(self.expression) else self.callable

    def on(self, surface: str) -> bool:
        """Whether the function appears on ``surface`` (function, method or expression)."""
        if surface == "function":
            return self.function is not False
        if surface == "method":
            if self.method is not None:
                return self.method
            return not any(op.variadic for op in self.rows)
        if surface == "expression":
            return bool(self.expression)
        raise ValueError(f"unknown surface {surface!r}; one of {sorted(SURFACES)}")

    def names(self, surface: str) -> tuple[str, ...]:
        """The name and the aliases under which the function appears on ``surface``."""
        if not self.on(surface):
            return ()
        return (self.name,) + tuple(a for a, where in self.aliases.items() if surface in where)

    @property
    def keywords(self) -> tuple[str, ...]:
        """Keyword arguments an expression may pass (literals): declared, or the parameters
        of the expression's function that are params of this function's rows."""
        if self.declared_keywords is not None:
            return self.declared_keywords
        fn = self.expression_callable
        if fn is None:
            return ()
        params = {p for op in self.rows for p in op.params}
        return tuple(p for p in inspect.signature(fn).parameters if p in params)

    def __repr__(self) -> str:
        return f"<face {self.name}: {', '.join(op.name for op in self.rows) or 'no rows'}>"


def _face(name: str) -> Face:
    face = FACES.get(name)
    if face is None:
        face = FACES[name] = Face(name)
    return face


def _declare(face: Face, **values: Any) -> None:
    """Set face attributes; each may be declared once (or again with the same value). All
    are checked before any is set."""
    aliases = values.pop("aliases", ())
    if isinstance(aliases, str):
        aliases = (aliases,)
    if not isinstance(aliases, Mapping):
        aliases = {a: SURFACES for a in aliases}
    aliases = {a: frozenset((w,) if isinstance(w, str) else w) for a, w in aliases.items()}
    for alias, where in aliases.items():
        if not where <= SURFACES:
            raise ValueError(f"alias {alias!r} of {face.name}: surfaces {sorted(where)} are not "
                             f"among {sorted(SURFACES)}")
        if face.aliases.get(alias, where) != where:
            raise ValueError(f"alias {alias!r} of {face.name} is declared twice")
    values = {k: v for k, v in values.items() if v is not None}
    for attr, value in values.items():
        current = getattr(face, attr)
        if current is not None and current is not value and current != value:
            raise ValueError(f"{face.name}: {attr} is declared twice ({current!r} and "
                             f"{value!r}); declare it once, on one row or on the dispatcher")
    face.aliases.update(aliases)
    for attr, value in values.items():
        setattr(face, attr, value)


def public(name: str | None = None, *, method: bool | None = None,
           function: bool | None = None, expression: bool | Callable | None = None,
           aliases: Sequence[str] | Mapping[str, Any] = (),
           keywords: Sequence[str] | None = None) -> Callable[[Callable], Callable]:
    """Attach a hand-written dispatcher (argument normalisation, overload choice) to the face
    ``name`` (default: the function's name), with the face attributes not declared on rows.

    >>> FACES["pow"].fn.__name__, [op.name for op in FACES["pow"].rows][:1]
    ('pow', ['pow.Tensor_Scalar'])
    """
    def attach(fn: Callable) -> Callable:
        face = _face(name or fn.__name__)
        if face.fn is not None and face.fn is not fn:
            raise ValueError(f"{face.name!r} has two dispatchers: {face.fn} and {fn}")
        face.fn = fn
        _declare(face, method=method, function=function, expression=expression,
                 aliases=aliases,
                 declared_keywords=None if keywords is None else tuple(keywords))
        _changed()
        return fn

    return attach


def numpy_form(name: str) -> Callable[[Callable], Callable]:
    """Declare how the numpy function ``np.<name>`` (dotted: ``"linalg.norm"``) is recorded
    when its signature is not the op's with numpy's argument names (``np.var``'s ``ddof``,
    ``np.cumsum`` flattening without an axis, ``np.square`` as ``pow(x, 2)``): a function
    taking numpy's arguments and calling public ops. It raises ``TypeError`` for a form of
    the call it cannot record, which then falls back as any unmapped call.

    >>> NUMPY_FORMS["square"].__name__
    'square'
    """
    def attach(fn: Callable) -> Callable:
        if NUMPY_FORMS.get(name, fn) is not fn:
            raise ValueError(f"np.{name} has two numpy forms: {NUMPY_FORMS[name]} and {fn}")
        NUMPY_FORMS[name] = fn
        _changed()
        return fn

    return attach


def on_change(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener()`` after every change of the registry (the surfaces re-sync)."""
    _LISTENERS.append(listener)
    return listener


def _changed() -> None:
    for listener in list(_LISTENERS):
        listener()


@contextmanager
def scratch() -> Iterator[None]:
    """Ops declared inside are gone afterwards, from the registry and every surface: for
    tests that declare an op.

    >>> import verigrad as vg
    >>> with scratch():
    ...     _ = defop("twice", forward=lambda x: 2 * x, vjp=lambda F, g: 2 * g,
    ...               mirror=lambda x: 2 * x, elementwise=True)
    ...     vg.twice(vg.tensor(3.0)).item()
    6.0
    >>> hasattr(vg, "twice"), "twice" in REGISTRY
    (False, False)
    """
    registry, counts, forms = dict(REGISTRY), dict(_BASE_COUNT), dict(NUMPY_FORMS)
    faces = {n: (f, {**vars(f), "rows": list(f.rows), "aliases": dict(f.aliases)})
             for n, f in FACES.items()}
    try:
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(registry)
        _BASE_COUNT.clear()
        _BASE_COUNT.update(counts)
        NUMPY_FORMS.clear()
        NUMPY_FORMS.update(forms)
        FACES.clear()
        for n, (f, state) in faces.items():
            vars(f).update(state)
            FACES[n] = f
        _changed()



