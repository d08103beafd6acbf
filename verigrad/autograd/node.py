"""grad_fn objects: one node per recorded operation, with PyTorch's names and reprs."""
from __future__ import annotations

import operator
import weakref
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .. import registry as _registry
from .pool import MIN_BYTES as _POOL_MIN, give_if_sole as _give, sole as _sole
from ..errors import BackwardContractError, GraphFreedError, SavedTensorModifiedError

if TYPE_CHECKING:
    from ..registry import OpDef

__all__ = ["Node", "OpNode", "AccumulateGrad", "make_node_class", "register_namespaces",
           "register_output_wrapper"]

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


class Node:
    """Base of every grad_fn. The engine reads ``_edges`` and calls ``_backward``."""

    __slots__ = ("_edges", "_retain", "_seq", "__weakref__")
    _name = "Node"
    n_outputs = 1
    _guard = True  # the engine calls _free after the node ran (op nodes that save nothing: no)
    _shapes = None  # op nodes: their inputs' shapes (a slot of OpNode)

    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name} object at {id(self):#x}>"

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """((grad_fn or AccumulateGrad or None, output_nr), ...) per input, as in PyTorch."""
        out = []
        for target, nr in self._edges:
            if target is not None and not isinstance(target, Node):
                target = AccumulateGrad.of(target)
            out.append((target, nr))
        return tuple(out)

    def _backward(self, grads: list, create_graph: bool, owned: bool = False) -> Sequence[Any]:
        raise NotImplementedError

    def _free(self) -> None:
        pass


class AccumulateGrad:
    """The node that writes a leaf's ``.grad``; one per leaf, as in PyTorch."""

    __slots__ = ("variable", "__weakref__")

    def __init__(self, variable: Any) -> None:
        self.variable = variable

    @classmethod
    def of(cls, leaf: Any) -> "AccumulateGrad":
        # cached weakly on the leaf: a strong reference would be a cycle leaf -> acc -> leaf
        acc = leaf._accumulator() if leaf._accumulator is not None else None
        if acc is None:
            acc = cls(leaf)
            leaf._accumulator = weakref.ref(acc)
        return acc

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    next_functions: tuple = ()

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


class OpNode(Node):
    """A node of a registered op; its class (``AddBackward0`` ...) is made per OpDef."""

    __slots__ = ("_inputs", "_versions", "_out", "_out_vbox", "_shapes", "_dtypes", "_params",
                 "_freed")
    op: "OpDef"

    def _check_saved(self) -> None:
        if self._freed:
            raise GraphFreedError(FREED_MESSAGE)
        for i, v in zip(self.op.saved, self._versions):
            t = self._inputs[i]
            if getattr(t, "_vbox", None) is not None and t._vbox[0] != v:
                raise SavedTensorModifiedError(_modified_message(t, self, t._vbox[0], v))
        if self._out_vbox is not None and self._out_vbox[0] != 0:
            raise SavedTensorModifiedError(
                f"one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: the output of {self._name} is at version "
                f"{self._out_vbox[0]}; expected version 0 instead. Do not modify it in place "
                f"(use an out-of-place op) before calling backward.")

    # per-op constants, set on each generated class by make_node_class
    _guard = False       # saves inputs or output: check versions / freed before use
    _single = True       # one tensor input: the VJP returns a bare gradient
    _saved_names: tuple = ()  # ((input index, VJP keyword), ...) for non-variadic ops
    _keep0 = False       # the node keeps input 0 (1) even when it requires grad
    _keep1 = False

    def _backward(self, grads: list, create_graph: bool, owned: bool = False) -> Sequence[Any]:
        """Gradients for the inputs. ``owned``: nothing but the engine holds ``grads[0]``, so
        the VJP may write into it (its ``F.g_*`` forms)."""
        if create_graph:
            if self._guard:
                self._check_saved()
            return self._backward_graph(grads)
        op = self.op
        vjp_params = op.vjp_params
        if vjp_params:
            params = self._params
            kwargs = {p: params[p] for p in vjp_params}
        else:
            kwargs = {}
        if self._guard:
            # _check_saved inlined for the plain ops (scalar graphs pay per node)
            if self._freed:
                raise GraphFreedError(FREED_MESSAGE)
            saved_names = self._saved_names
            if saved_names:
                inputs = self._inputs
                for (i, name), v in zip(saved_names, self._versions):
                    t = inputs[i]
                    vb = getattr(t, "_vbox", None)
                    if vb is not None and vb[0] != v:
                        raise SavedTensorModifiedError(_modified_message(t, self, vb[0], v))
                    d = getattr(t, "_data", t)
                    # numpy scalars: arithmetic on 0-d arrays costs several times more
                    kwargs[name] = d[()] if type(d) is np.ndarray and not d.ndim else d
            elif op.saved:  # variadic
                self._check_saved()
                kwargs[op.inputs[0].lstrip("*")] = [_unpack(t, False) for t in self._inputs]
            if op.uses_out:
                vb = self._out_vbox
                if vb is not None and vb[0] != 0:
                    self._check_saved()  # raises
                kwargs["out"] = self._out
        if op.uses_needs:
            kwargs["needs"] = tuple(t is not None for t, _ in self._edges)
        if op.uses_shapes:
            kwargs["shapes"] = self._shapes
        F = _NS[2 if owned else 0]
        result = op.vjp(F, grads[0], **kwargs)
        if self._single:
            gi = result
            if gi is None or self._edges[0][0] is None:
                return [None]
            shape = self._shapes[0]
            dtype = self._dtypes[0]
            if type(gi) is dtype.type and shape == ():
                return [gi]  # a numpy scalar of the input's dtype: nothing to reduce or cast
            try:
                gshape = gi.shape
            except AttributeError:  # a tuple (or anything but an array) for one input
                raise _count_error(self, result) from None
            if gshape != shape:
                gi = _reduce(self, F, gi, 0)
            if gi.dtype != dtype:
                gi = gi.astype(dtype)
            return [gi]
        # the contract costs two cheap checks here; the shape is checked only where it
        # differs from the input's (where the engine has to reduce it anyway)
        if type(result) not in _SEQUENCES or len(result) != len(self._edges):
            raise _count_error(self, result)
        out = []
        i = 0
        for gi, shape, dtype, edge in zip(result, self._shapes, self._dtypes, self._edges):
            if gi is None or edge[0] is None:
                out.append(None)
            elif type(gi) is dtype.type and shape == ():
                out.append(gi)
            else:
                if gi.shape != shape:
                    gi = _reduce(self, F, gi, i)
                if gi.dtype != dtype:  # inputs promoted in forward get gradients in their own dtype
                    gi = gi.astype(dtype)
                out.append(gi)
            i += 1
        return out

    def _backward_graph(self, grads: list) -> Sequence[Any]:
        """create_graph=True: the VJP runs on recorded tensor ops."""
        op = self.op
        F = _NS[1]
        params = self._params
        kwargs = {p: params[p] for p in op.vjp_params}
        if op.saved:
            if op.variadic:
                kwargs[op.inputs[0].lstrip("*")] = [_unpack(t, True) for t in self._inputs]
            else:
                for i in op.saved:
                    kwargs[op.inputs[i]] = _unpack(self._inputs[i], True)
        if op.uses_out:
            kwargs["out"] = _WRAP_OUTPUT[0](self._out, self, 0)
        if op.uses_needs:
            kwargs["needs"] = tuple(t is not None for t, _ in self._edges)
        if op.uses_shapes:
            kwargs["shapes"] = self._shapes
        result = op.vjp(F, grads[0], **kwargs)
        if self._single:
            if type(result) in _SEQUENCES:
                raise _count_error(self, result)
            result = (result,)
        elif type(result) not in _SEQUENCES or len(result) != len(self._edges):
            raise _count_error(self, result)
        out = []
        for i, (gi, shape, dtype, (target, _)) in enumerate(
                zip(result, self._shapes, self._dtypes, self._edges)):
            if gi is None or target is None:
                out.append(None)
                continue
            if tuple(gi.shape) != shape:
                gi = _reduce(self, F, gi, i)
            if getattr(gi, "_data", gi).dtype != dtype:  # inputs promoted in forward get gradients in their own dtype
                gi = F.astype(gi, dtype)
            out.append(gi)
        return out

    def _free(self) -> None:
        # the flag gives PyTorch's error on a re-run. Saved intermediate arrays go as soon as
        # the node has run, so the next VJPs reuse their memory instead of asking the kernel
        # for fresh pages; the symbolic mirror replays a dropped input from the leaves (the
        # same forward on the same values: the same bits). Leaves and constants stay; 0-d
        # inputs stay too (nothing to gain, and it keeps scalar graphs cheap).
        # Big arrays nothing else holds once dropped go to the pool (autograd/pool.py).
        if self._guard:
            out = self._out
            self._out = None
            self._freed = True
            if type(out) is np.ndarray and out.nbytes >= _POOL_MIN:
                _give(out)
            out = None
            shapes = self._shapes
            if (self._saved_names and shapes is not S2 and shapes is not S1
                    and any(shapes)):  # (the shared all-0-d records need no look)
                edges = self._edges
                inputs = self._inputs
                if len(inputs) == 2:  # (most ops: written out, no generator)
                    t0, t1 = inputs
                    drop0 = t0 is not None and shapes[0] and isinstance(edges[0][0], Node)
                    drop1 = t1 is not None and shapes[1] and isinstance(edges[1][0], Node)
                    self._inputs = (None if drop0 else t0, None if drop1 else t1)
                    inputs = None
                    if drop0 and drop1:
                        if t0 is not t1:  # (x * x: one tensor twice, not the pool's)
                            _give_data(t0)
                            _give_data(t1)
                    elif drop0:
                        _give_data(t0)
                    elif drop1:
                        _give_data(t1)
                else:
                    self._inputs = tuple(
                        None if t is not None and isinstance(edges[i][0], Node) and shape else t
                        for i, (t, shape) in enumerate(zip(inputs, shapes)))

    @property
    def metadata(self) -> dict:
        return {}

    # --- the node protocol: what symbolic/ and checker/ ask a node (never its kind) -----
    #: non-tensor inputs of an op are wrapped constants (a custom Function passes its own
    #: through to forward and mirror as values)
    passes_values = False
    #: the node runs verigrad's registry code, not the user's: its rules may be cached on
    #: disk, nearby points cover it through the whole-graph comparison
    user_code = False
    #: ``replay(node, values, record)``: the op re-run on tensors. Filled in by
    #: ``symbolic/graph.py`` (this layer sits below the tensor and cannot import it)
    replay: Any = None

    @property
    def elementwise(self) -> bool:
        """Whether one rule on scalars describes every output element."""
        return self.op.elementwise

    @property
    def moves_data(self) -> bool:
        """Whether the op only moves entries (a slice, a reshape): see ``OpDef.moves_data``."""
        return self.op.moves_data

    @property
    def uses_out(self) -> bool:
        """Whether the op's VJP reads the forward output (its rounding reaches the VJP)."""
        return self.op.uses_out

    def output_differentiable(self, k: int) -> bool:
        """Whether output ``k`` carries a gradient: an op's outputs all do."""
        return True

    #: a registry op is verigrad's own (see FunctionCtx.foreign)
    foreign = ""

    def input_names(self) -> list[str]:
        """The op's name for each input (``input[2]`` for variadic ones)."""
        return _input_labels(self)

    def rule_key(self, values: Sequence[Any] | None = None) -> tuple:
        """What fixes this node's mirror besides input shapes: op and parameters."""
        return ("op", self.op.name, self._params)

    def mirror(self, args: Sequence[Any]) -> tuple:
        """The op's SymPy mirror applied to object arrays (None for absent inputs): one
        object array per output."""
        op, params = self.op, self._params
        if not op.elementwise:
            return (np.asarray(op.mirror(*args, **params), dtype=object),)
        present = [a for a in args if a is not None]
        if len(present) == len(args):
            f = np.frompyfunc(lambda *a: op.mirror(*a, **params), len(args), 1)
        else:  # absent optional inputs (clamp bounds)
            slots = [i for i, a in enumerate(args) if a is not None]

            def g(*vals: Any, _slots: list = slots, _n: int = len(args)) -> Any:
                full: list[Any] = [None] * _n
                for i, v in zip(_slots, vals):
                    full[i] = v
                return op.mirror(*full, **params)

            f = np.frompyfunc(g, len(present), 1)
        return (np.asarray(f(*present), dtype=object),)

    def forward(self, values: Sequence[Any]) -> list:
        """The op's forward on input values (numpy in, numpy out), with the tape's dtype
        promotion."""
        return [OpNode.replay(self, values, False)._data]

    def rerun(self, args: Sequence[Any]) -> Any:
        """The op recorded afresh on ``args`` (tensors or values); its output tensor."""
        return OpNode.replay(self, args, True)


def _give_data(t: Any) -> None:
    """Pool the data of a dropped input tensor ``t`` if nothing but the caller's local
    variable holds ``t``, nothing holds its array but ``t``, and no weak reference can reach
    ``t`` again: ``t`` dies when the caller returns, leaving the array to the pool."""
    d = t._data
    # (t: the caller's local and this frame's argument, one more than a sole local)
    if (type(d) is np.ndarray and d.nbytes >= _POOL_MIN and _sole(t, 1)
            and not weakref.getweakrefcount(t)):
        _give(d, 1)  # (``t._data`` holds one reference more)


#: the shape records of all-0-d nodes, shared (tensor.apply uses these very tuples)
S1 = ((),)
S2 = ((), ())
#: (numpy, tensor, numpy-owned, numpy-scalar) VJP namespaces: see register_namespaces
_NS: list = []
_WRAP_OUTPUT: list = []  # [wrap_output], see register_output_wrapper
_SEQUENCES = (tuple, list)


def _input_labels(node: "OpNode") -> list[str]:
    op = node.op
    if op.variadic:
        return [f"{op.inputs[0].lstrip('*')}[{i}]" for i in range(len(node._edges))]
    return list(op.inputs)


def _count_error(node: "OpNode", result: Any) -> BackwardContractError:
    """A registered VJP that returned the wrong number of gradients (a ``zip`` would
    silently drop the missing ones and leave an input's ``.grad`` None)."""
    labels = _input_labels(node)
    if type(result) in _SEQUENCES:
        got = f"{len(result)} gradient(s)"
    else:
        got = f"a single {type(result).__name__}"
    return BackwardContractError(
        f"the VJP of registered op {node.op.name!r} ({node._name}) returned {got} for "
        f"{len(labels)} input(s) ({', '.join(labels)}): return "
        + ("one gradient (not a tuple)" if node._single else
           "a tuple with exactly one gradient per input, None for inputs that get none"))


_BROADCASTS: dict = {}  # (gradient shape, input shape) -> whether the input broadcasts to it


def _reduce(node: "OpNode", F: Any, gi: Any, i: int) -> Any:
    """Sum a broadcast gradient back to input ``i``'s shape, after checking that it is one:
    a gradient of any other shape is a wrong VJP (a reshape would silently hide it)."""
    shape = node._shapes[i]
    gshape = tuple(gi.shape)
    ok = _BROADCASTS.get((gshape, shape))
    if ok is None:
        lead = len(gshape) - len(shape)
        # shape broadcasts to gshape (np.broadcast_shapes costs more than the VJP of a bias)
        ok = lead >= 0 and all(s == 1 or s == d for s, d in zip(shape, gshape[lead:]))
        if len(_BROADCASTS) > 4096:  # (a bound: programs use a handful of shapes)
            _BROADCASTS.clear()
        _BROADCASTS[(gshape, shape)] = ok
    if not ok and [d for d in gshape if d != 1] != [d for d in shape if d != 1]:
        # (only unit axes differ: the same elements, a reshape is exact)
        raise BackwardContractError(
            f"the VJP of registered op {node.op.name!r} ({node._name}) returned a gradient of "
            f"shape {gshape} for input {i} ({_input_labels(node)[i]}) of shape {shape}: return "
            f"the input's shape, or a shape that broadcasts to it (the engine sums it back)")
    return F.sum_to(gi, shape)


def register_namespaces(numpy: Any, tensor: Any, numpy_owned: Any) -> None:
    """Give the nodes the array namespaces their VJPs run on (``F``): ``numpy`` for a
    first-order backward, ``tensor`` (recorded ops) for ``create_graph=True``,
    ``numpy_owned`` where the incoming gradient is a buffer only the engine holds. Called by
    ``verigrad.ops.namespaces``, which sits above this layer.

    >>> import verigrad  # its ops layer has registered them
    >>> len(_NS)
    4
    """
    # 4th: for 0-d nodes on numpy scalars, where the in-place forms can never write into
    # anything: the plain operators they fall back to, without the test
    # (operator's C functions: the same operators, no Python frame per call)
    plain = dict(
        imul=operator.mul, mul_into=operator.mul, iadd=operator.add, isub=operator.sub,
        irsub=lambda a, b: b - a, idiv=operator.truediv, ineg=operator.neg,
        times=operator.mul, g_times=operator.mul, g_mul=operator.mul, g_div=operator.truediv,
        g_neg=operator.neg)
    scalar = SimpleNamespace(**dict(vars(numpy), **plain))
    # in place: the generated backwards (make_node_class) hold this very list
    _NS[:] = [numpy, tensor, numpy_owned, scalar]


def register_output_wrapper(wrap: Any) -> None:
    """``wrap(data, node, nr) -> tensor``: a saved output re-attached to its node (for
    create_graph backward); registered by ``verigrad.autograd.engine``.

    >>> import verigrad
    >>> _WRAP_OUTPUT[0].__name__
    'wrap_output'
    """
    _WRAP_OUTPUT[:] = [wrap]


def _unpack(t: Any, create_graph: bool) -> Any:
    data = getattr(t, "_data", None)
    if data is None:
        return t  # a Python scalar input
    return t if create_graph else data


def _modified_message(t: Any, node: Node, now: int, expected: int) -> str:
    return (f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{t.dtype!r} {list(t.shape)}], which is saved by "
            f"{node.name()}, is at version {now}; expected version {expected} instead. Do not "
            f"modify it in place (use an out-of-place op, or clone it first) before calling "
            f"backward.")


def make_node_class(op: "OpDef") -> type:
    """The grad_fn class of an op: ``type(y.grad_fn).__name__ == "AddBackward0"``."""
    variadic = op.inputs[0].startswith("*")
    ns = {
        "__slots__": (), "op": op, "_name": op.grad_fn_name, "__module__": "verigrad.autograd.node",
        "_guard": bool(op.saved or op.uses_out), "_single": len(op.inputs) == 1 and not variadic,
        "_saved_names": () if variadic else tuple((i, op.inputs[i]) for i in op.saved),
        "_keep0": bool(op.keep_all or 0 in op.keep), "_keep1": bool(op.keep_all or 1 in op.keep)}
    fast = _compile_backward(op) if op.vjp is not None and not variadic else None
    if fast is not None:
        ns["_backward"] = fast
    return type(op.grad_fn_name, (OpNode,), ns)


def _fix(node: "OpNode", F: Any, gi: Any, i: int) -> Any:
    """The general tail of a first-order gradient: sum a broadcast gradient back to input
    ``i``'s shape, cast it to the input's dtype."""
    if gi.shape != node._shapes[i]:
        gi = _reduce(node, F, gi, i)
    if gi.dtype != node._dtypes[i]:  # inputs promoted in forward get gradients in their own dtype
        gi = gi.astype(node._dtypes[i])
    return gi


def _positional(vjp: Any, kw: list) -> list | None:
    """The values of the keyword arguments ``kw`` (``"name=value"``) in the order of
    ``vjp``'s parameters after ``F, g``, when those are exactly these names, all plain
    positional-or-keyword parameters; else None."""
    import inspect

    try:
        params = list(inspect.signature(vjp).parameters.values())[2:]
    except (TypeError, ValueError):
        return None
    given = dict(k.split("=", 1) for k in kw)
    if (len(params) != len(given) or any(p.kind is not p.POSITIONAL_OR_KEYWORD
                                         or p.name not in given for p in params)):
        return None
    return [given[p.name] for p in params]


def _compile_backward(op: "OpDef") -> Any:
    """``OpNode._backward`` written out for one op: its saved inputs, VJP keywords and
    gradient count known in advance, so a first-order backward runs no loops over the
    declaration and calls the VJP with plain keywords. It does exactly what the generic
    method does (which create_graph backward still uses); None where an op's names are not
    plain identifiers."""
    import keyword

    names = [op.inputs[i] for i in op.saved] + list(op.vjp_params)
    if any(not n.isidentifier() or keyword.iskeyword(n) for n in names):
        return None
    n_in = len(op.inputs)
    lines = ["def _backward(self, grads, create_graph, owned=False):",
             "    if create_graph:",
             "        return _GENERIC(self, grads, create_graph, owned)"]
    kw = []
    if op.saved or op.uses_out:
        lines += ["    if self._freed:", "        raise GraphFreedError(FREED_MESSAGE)"]
    if op.saved:
        lines += ["    inputs = self._inputs", "    versions = self._versions"]
        for k, i in enumerate(op.saved):
            lines += [f"    t{k} = inputs[{i}]",
                      f"    vb = getattr(t{k}, '_vbox', None)",
                      f"    if vb is not None and vb[0] != versions[{k}]:",
                      f"        raise SavedTensorModifiedError(_modified_message(t{k}, self, "
                      f"vb[0], versions[{k}]))"]
    if op.uses_out:
        lines += ["    vb = self._out_vbox",
                  "    if vb is not None and vb[0] != 0:",
                  "        self._check_saved()  # raises"]
        kw.append("out=self._out")
    for k, i in enumerate(op.saved):
        # numpy scalars: arithmetic on 0-d arrays costs several times more
        lines += [f"    d{k} = getattr(t{k}, '_data', t{k})",
                  f"    if type(d{k}) is ndarray and not d{k}.ndim:",
                  f"        d{k} = d{k}[()]"]
        kw.append(f"{op.inputs[i]}=d{k}")
    if op.vjp_params:
        lines.append("    params = self._params")
        kw += [f"{p}=params[{p!r}]" for p in op.vjp_params]
    if op.uses_needs:
        kw.append("needs=(" + "".join(f"self._edges[{i}][0] is not None, "
                                      for i in range(n_in)) + ")")
    if op.uses_shapes:
        kw.append("shapes=self._shapes")
    zero_d = repr(((),) * n_in)
    lines += ["    g = grads[0]",
              f"    if type(g) is not ndarray and self._shapes == {zero_d}:",
              "        F = _NS[3]  # numpy scalars throughout",
              "    else:",
              "        F = _NS[2 if owned else 0]",
              # read at call time: the declaration's VJP may be swapped (tests patch it)
              "    vjp = OP.vjp"]
    positional = _positional(op.vjp, kw)
    if positional is not None:
        # the declared VJP takes its arguments by position (a keyword call costs more);
        # any other (a patched one) gets keywords
        lines += ["    if vjp is VJP0:",
                  f"        result = vjp(F, g{''.join(', ' + a for a in positional)})",
                  "    else:",
                  f"        result = vjp(F, g{''.join(', ' + k for k in kw)})"]
    else:
        lines.append(f"    result = vjp(F, g{''.join(', ' + k for k in kw)})")
    if n_in == 1:
        lines += ["    if result is None or self._edges[0][0] is None:",
                  "        return [None]",
                  "    if type(result) is self._dtypes[0].type and self._shapes[0] == ():",
                  "        return [result]  # a numpy scalar of the input's dtype",
                  "    try:",
                  "        rshape = result.shape",
                  "    except AttributeError:  # a tuple (or anything but an array) for one input",
                  "        raise _count_error(self, result) from None",
                  "    if rshape != self._shapes[0] or result.dtype != self._dtypes[0]:",
                  "        result = _fix(self, F, result, 0)  # (the checks inlined: no call)",
                  "    return [result]"]
    else:
        lines += [f"    if type(result) not in _SEQUENCES or len(result) != {n_in}:",
                  "        raise _count_error(self, result)",
                  "    edges = self._edges",
                  "    dtypes = self._dtypes",
                  "    shapes = self._shapes"]
        for i in range(n_in):
            lines += [f"    g{i} = result[{i}]",
                      f"    if g{i} is not None:",
                      f"        if edges[{i}][0] is None:",
                      f"            g{i} = None",
                      f"        elif ((type(g{i}) is not dtypes[{i}].type or shapes[{i}] != ())",
                      f"              and (g{i}.shape != shapes[{i}]",
                      f"                   or g{i}.dtype != dtypes[{i}])):",
                      f"            g{i} = _fix(self, F, g{i}, {i})"]
        lines.append(f"    return [{', '.join(f'g{i}' for i in range(n_in))}]")
    scope = dict(globals(), OP=op, VJP0=op.vjp, _GENERIC=OpNode._backward, ndarray=np.ndarray)
    exec("\n".join(lines), scope)  # noqa: S102 - source built above from identifiers only
    fn = scope["_backward"]
    fn.__doc__ = OpNode._backward.__doc__
    return fn


# the registry (pure data, below this layer) makes every row's grad_fn class through this
_registry.register_node_factory(make_node_class)
