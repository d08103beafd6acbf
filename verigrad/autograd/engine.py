"""The backward engine: iterative topological traversal, so graph depth is unlimited.

First-order backward works on raw numpy arrays (the fast path); ``create_graph=True`` runs
the same VJPs on tensors with grad mode on, which records the backward itself.
"""
from __future__ import annotations

import operator
import sys
from typing import Any, Sequence

import numpy as np

from ..errors import NoGradFnError, NonScalarBackwardError, ShapeError
from ..tensor import Tensor, _wrap, register_backward
from . import node as _node
from .pool import MIN_BYTES as _POOL_MIN, give_if_sole as _give
from .grad_mode import _state
from .node import S1, S2, Node, OpNode

__all__ = ["backward", "grad", "vjp_namespace", "wrap_output"]


def vjp_namespace(create_graph: bool) -> Any:
    """The ``F`` a VJP runs on: recorded tensor ops (``create_graph``) or numpy."""
    return _node._NS[1] if create_graph else _node._NS[0]


def wrap_output(data: np.ndarray, node: Node, nr: int) -> Any:
    """A saved output re-attached to the node that made it (for create_graph backward)."""
    t = _wrap(data)
    t._grad_fn, t._output_nr, t._requires_grad = node, nr, True
    return t


def _make_root_grads(tensors: Sequence[Any], grad_tensors: Sequence[Any] | None,
                     create_graph: bool) -> list[Any]:
    out = []
    for i, t in enumerate(tensors):
        g = None if grad_tensors is None else grad_tensors[i]
        if g is None:
            if t._data.size != 1:
                raise NonScalarBackwardError(
                    f"grad can be implicitly created only for scalar outputs; this output has "
                    f"shape {tuple(t.shape)}. Pass gradient= (a tensor of that shape, e.g. "
                    f"vg.ones_like(y)) or reduce it first (y.sum().backward()).")
            d = t._data
            if not d.ndim and not create_graph:
                # numpy scalars make 0-d VJP arithmetic several times cheaper (the one
                # np.ones_like(d)[()] gives, without its Python frames)
                g = d.dtype.type(1)
            else:
                g = np.ones_like(d)
        elif isinstance(g, Tensor):
            if g.shape != t.shape:
                raise ShapeError(f"gradient has shape {tuple(g.shape)} but the output has shape "
                                 f"{tuple(t.shape)}; they must match")
            g = g if create_graph else g._data
        else:
            g = np.asarray(g, dtype=t._data.dtype)
            if g.shape != t.shape:
                raise ShapeError(f"gradient has shape {g.shape} but the output has shape "
                                 f"{tuple(t.shape)}; they must match")
        if create_graph and not isinstance(g, Tensor):
            g = _wrap(g)
        out.append(g)
    return out


def _check_roots(tensors: Sequence[Any]) -> None:
    for i, t in enumerate(tensors):
        if not t._requires_grad:
            raise NoGradFnError(
                f"element {i} of tensors does not require grad and does not have a grad_fn. "
                f"Make the inputs with requires_grad=True and compute the output outside "
                f"vg.no_grad().")


def backward(tensors: Sequence[Any], grad_tensors: Sequence[Any] | None = None,
             retain_graph: bool | None = None, create_graph: bool = False,
             inputs: Sequence[Any] | None = None) -> None:
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves they depend on.

    >>> import verigrad as vg
    >>> x = vg.tensor(3.0, requires_grad=True)
    >>> vg.autograd.backward([x * x])
    >>> x.grad
    tensor(6.)
    """
    if isinstance(tensors, Tensor):
        tensors = (tensors,)
    if isinstance(grad_tensors, Tensor):
        grad_tensors = (grad_tensors,)
    tensors = tuple(tensors)
    _check_roots(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    roots = _make_root_grads(tensors, grad_tensors, create_graph)
    only = None if inputs is None else {id(t) for t in inputs}
    _run(tensors, roots, retain_graph, create_graph, capture=None, only=only)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Any, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned instead of accumulated.

    With ``create_graph=True`` the results have a graph of their own (higher derivatives).

    >>> import verigrad as vg
    >>> x = vg.tensor(3.0, requires_grad=True)
    >>> (g,) = vg.autograd.grad(x ** 3, x, create_graph=True)
    >>> g, vg.autograd.grad(g, x)[0]
    (tensor(27., grad_fn=<MulBackward0>), tensor(18.))
    """
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if isinstance(grad_outputs, Tensor):
        grad_outputs = (grad_outputs,)
    _check_roots(outputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t._requires_grad:
            raise NoGradFnError(f"input {i} of autograd.grad does not require grad; only tensors "
                                f"with requires_grad=True can be differentiated against")
    if retain_graph is None:
        retain_graph = create_graph
    roots = _make_root_grads(outputs, grad_outputs, create_graph)
    # where each requested gradient is collected: at the leaf, or at the node producing it
    capture: dict[Any, int] = {}
    for i, t in enumerate(inputs):
        key = id(t) if t._grad_fn is None else (t._grad_fn, t._output_nr)
        capture[key] = i
    results: list[Any] = [None] * len(inputs)
    _run(outputs, roots, retain_graph, create_graph, capture=(capture, results), only=None)
    for i, r in enumerate(results):
        if r is None:
            if not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (input {i}) appears to not have been "
                    f"used in the graph. Set allow_unused=True if this is the desired behavior.")
            continue
        if not isinstance(r, Tensor):
            results[i] = _wrap(r)
    return tuple(results)


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a + b


def _run(tensors: Sequence[Any], roots: list[Any], retain_graph: bool, create_graph: bool,
         capture: tuple[dict, list] | None, only: set | None) -> None:
    # 1. the nodes reachable from the roots. Every node is created after the nodes it points
    # to, so decreasing creation number (_seq) is a topological order: running nodes in that
    # order runs each one after all its consumers, with no dependency counts or ready queue.
    buffers: dict[Node, list] = {}
    stack: list[Node] = []
    leaf_roots = []
    seen: set = set()
    for t, g in zip(tensors, roots):
        node = t._grad_fn
        if node is None:  # backward() called on a leaf itself
            leaf_roots.append((t, g))
            continue
        buf = buffers.setdefault(node, [None] * node.n_outputs)
        buf[t._output_nr] = _add(buf[t._output_nr], g)
        if node not in seen:
            seen.add(node)
            stack.append(node)
    order = []
    add_seen = seen.add
    push = stack.append
    pop = stack.pop
    while stack:
        node = pop()
        order.append(node)
        for target, _ in node._edges:
            # leaves (tensors: the exact type first, the common case) and missing edges
            if target not in seen and type(target) is not Tensor and isinstance(target, Node):
                add_seen(target)
                push(target)
    order.sort(key=_SEQ, reverse=True)

    cap, results = capture if capture is not None else (None, None)
    prev_mode = _state.enabled
    _state.enabled = create_graph
    pop_buf = buffers.pop
    get_buf = buffers.get
    owned: set = set()  # nodes whose output-0 gradient buffer only the engine references
    # 0-d gradients for leaves, summed here (numpy scalars: a fraction of the cost of an
    # in-place add into a 0-d array) and written into .grad once at the end. Each sum starts
    # from the leaf's .grad and adds in delivery order, so the bits are those of ``+=``.
    pending: dict = {}
    plain = cap is None and only is None and not create_graph
    ndarray = np.ndarray
    big = False  # a big array was handed on in this node's delivery loop
    try:
        with np.errstate(all="ignore"):  # VJPs evaluate both branches of where()
            for leaf, g in leaf_roots:
                _deliver_leaf(leaf, g, cap, results, create_graph, only, Tensor, _wrap)
            # 2. run nodes, latest-created first
            for node in order:
                grads = pop_buf(node, None)
                if grads is None:
                    continue  # no gradient flows here: nothing to pass on
                if node._retain:
                    _retain(node, grads, create_graph, Tensor, _wrap)
                if cap:
                    for nr, g in enumerate(grads):
                        i = cap.get((node, nr))
                        if i is not None and g is not None:
                            results[i] = _add(results[i], g)
                # the incoming gradient, when it is big enough for the pool: recycled below
                # if nothing holds it once this node has passed its gradients on
                g_in = grads[0]
                if type(g_in) is not ndarray or g_in.nbytes < _POOL_MIN:
                    g_in = None
                if owned and node in owned:
                    owned.discard(node)
                    # the VJP may overwrite its incoming gradient: nothing else holds it
                    # (captured or retained gradients were copied or stored above: not owned)
                    in_grads = node._backward(grads, False, not cap and not node._retain)
                else:
                    in_grads = node._backward(grads, create_graph)
                # drop this loop's stale references (the buffer list just popped may still be
                # bound to ``buf``): they would count against ownership below
                del grads
                buf = prev = None
                if not retain_graph and node._guard:
                    shapes = node._shapes
                    if shapes is S1 or shapes is S2:
                        # an all-0-d op node: nothing to drop (its saved output is a numpy
                        # scalar), only the flag that refuses a second run (OpNode._free)
                        node._freed = True
                    else:
                        node._free()
                if not in_grads:
                    continue
                for (target, nr), gi in zip(node._edges, in_grads):
                    if gi is None or target is None:
                        continue
                    if type(gi) is not ndarray:
                        # a numpy scalar (0-d gradients: the scalar graphs' path) or a tensor
                        # (create_graph): never the engine's to reuse
                        if isinstance(target, Node):
                            buf = get_buf(target)
                            if buf is None:
                                if nr == 0 and target.n_outputs == 1:
                                    buffers[target] = [gi]
                                else:
                                    buf = buffers[target] = [None] * target.n_outputs
                                    buf[nr] = gi
                                continue
                            prev = buf[nr]
                            if prev is None:
                                buf[nr] = gi
                                continue
                            if type(prev) is not ndarray:  # (then never an owned buffer)
                                buf[nr] = prev + gi
                                continue
                        elif plain:
                            acc = pending.get(target)
                            if acc is not None:
                                if type(gi) is type(acc):  # numpy scalars of one dtype
                                    pending[target] = acc + gi
                                    continue
                                _flush_leaf(target, pending.pop(target))
                            elif _start_pending(target, gi, pending, _wrap):
                                continue
                        mine = False
                    else:
                        # a gradient nothing but this loop references (not the incoming
                        # gradient passed through, not one array handed to two inputs as add
                        # does, not a view, not saved data) is the engine's to reuse
                        mine = (gi.base is None and not create_graph
                                and _refcount(gi) == _FRESH_REFS)
                        if gi.nbytes >= _POOL_MIN:
                            big = True
                        if plain and not isinstance(target, Node):
                            acc = pending.get(target)
                            if acc is not None:  # a 0-d array after numpy scalars
                                _flush_leaf(target, pending.pop(target))
                    if isinstance(target, Node):
                        buf = get_buf(target)
                        if buf is None:
                            buf = buffers[target] = [None] * target.n_outputs
                            buf[nr] = gi
                            if mine and nr == 0:
                                owned.add(target)
                        else:
                            prev = buf[nr]
                            if prev is None:
                                buf[nr] = gi
                                if mine and nr == 0:
                                    owned.add(target)
                            elif (nr == 0 and target in owned and prev.shape == gi.shape
                                  and prev.dtype == gi.dtype):
                                np.add(prev, gi, out=prev)  # bitwise prev + gi, no new buffer
                            else:
                                buf[nr] = prev = prev + gi
                                if nr == 0 and type(prev) is ndarray and not create_graph:
                                    owned.add(target)
                    elif (plain and target._grad is not None
                            and not target._grad._requires_grad):
                        target._grad._data += gi  # the common case of _deliver_leaf, inline
                    else:
                        # a gradient the engine owns becomes the leaf's .grad without a copy
                        _deliver_leaf(target, gi, cap, results, create_graph, only, Tensor, _wrap,
                                      mine and gi.flags.writeable)
                if g_in is not None or big:
                    # big arrays that died here (added into a buffer or a .grad, or an
                    # incoming gradient not passed on) go to the pool for the next step
                    gi = prev = buf = None
                    cands = [g_in]
                    cands.extend(in_grads)
                    in_grads = g_in = None
                    _recycle(cands)
                    cands = None
                    big = False
    finally:
        _state.enabled = prev_mode
        for leaf, acc in pending.items():
            _flush_leaf(leaf, acc)


def _recycle(cands: list) -> None:
    """Give the distinct big arrays of ``cands`` (the caller's only reference to the list) to
    the pool, each one only if nothing else holds it."""
    unique: list = []
    for c in cands:
        if (type(c) is np.ndarray and c.nbytes >= _POOL_MIN
                and not any(c is u for u in unique)):
            unique.append(c)
    cands.clear()
    c = None
    for a in unique:
        _give(a, 1)  # (``unique`` holds one reference more)


def _start_pending(leaf: Any, g: Any, pending: dict, _wrap: Any) -> bool:
    """Begin summing the 0-d numpy-scalar gradients of ``leaf`` in ``pending`` (False: the
    leaf's .grad is not a plain 0-d array of ``g``'s dtype; deliver it the usual way)."""
    dtype = leaf._data.dtype
    if g.dtype != dtype or leaf._data.ndim:
        return False
    grad = leaf._grad
    if grad is None:
        # what _deliver_leaf makes: the leaf's own copy (later sums are written into it)
        leaf._grad = _wrap(np.array(g, dtype=dtype, copy=True))
        pending[leaf] = g
        return True
    data = grad._data
    if (grad._requires_grad or type(data) is not np.ndarray or data.ndim
            or data.dtype != dtype or not data.flags.writeable):
        return False
    pending[leaf] = data[()] + g  # == data += g
    return True


def _flush_leaf(leaf: Any, acc: Any) -> None:
    leaf._grad._data[...] = acc


_SEQ = operator.attrgetter("_seq")


#: called directly in the delivery loop (no wrapper frame per gradient); an interpreter
#: without reference counts reports -2, which never equals _FRESH_REFS
_refcount = getattr(sys, "getrefcount", lambda x: -2)


def _fresh_refs() -> int:
    """What ``_refcount`` reports, inside the delivery loop of ``_run``, for an array nothing
    else references (measured, not assumed: interpreters differ in borrowed references).
    Where the interpreter has no reference counts, nothing is ever treated as owned."""
    if not hasattr(sys, "getrefcount"):
        return -1
    for _, gi in zip(((None, 0),), [np.empty(1)]):
        return _refcount(gi)
    return -1


_FRESH_REFS = _fresh_refs()


def _retain(node: Node, grads: list, create_graph: bool, Tensor: type, _wrap: Any) -> None:
    for nr, ref in node._retain:
        t = ref()
        g = grads[nr]
        if t is None or g is None:
            continue
        if not isinstance(g, Tensor):
            g = _wrap(np.array(g, copy=True))
        elif t._grad is None:
            g = _own(g) if create_graph else _wrap(np.array(g._data, copy=True))
        t._grad = g if t._grad is None else _wrap(t._grad._data + g._data) \
            if not create_graph else t._grad + g


#: public ops the engine calls, registered by ``verigrad.ops`` (a higher layer)
_OPS: dict[str, Any] = {}


def register_ops(**ops: Any) -> None:
    """Give the engine (and custom Functions) the public ops they record with:
    ``clone(t)`` and ``to(t, dtype)``.

    >>> import verigrad  # its ops layer has registered them
    >>> sorted(_OPS)
    ['clone', 'to']
    """
    _OPS.update(ops)


def _own(g: Any) -> Any:
    """A copy of a gradient tensor that stays in its graph (create_graph=True)."""
    return _OPS["clone"](g)


def _deliver_leaf(leaf: Any, g: Any, cap: dict | None, results: list | None, create_graph: bool,
                  only: set | None, Tensor: type, _wrap: Any, owned: bool = False) -> None:
    if cap is not None:
        i = cap.get(id(leaf))
        if i is not None:
            results[i] = _add(results[i], g)
        return
    if only is not None and id(leaf) not in only:
        return
    if create_graph:
        if not isinstance(g, Tensor):
            g = _wrap(g)
        # a clone, as PyTorch: a VJP may hand one tensor to several inputs (add) or a
        # read-only broadcast view (sum); .grad must be the leaf's own, writable tensor
        leaf._grad = _own(g) if leaf._grad is None else leaf._grad + g
        return
    if isinstance(g, Tensor):
        g = g._data
    if leaf._grad is None:
        # a VJP may hand the same array to several inputs (add): own a copy
        if owned and g.dtype == leaf._data.dtype:
            leaf._grad = _wrap(g)
        else:
            leaf._grad = _wrap(np.array(g, dtype=leaf._data.dtype, copy=True))
    elif leaf._grad._requires_grad:
        leaf._grad = _wrap(leaf._grad._data + g)
    else:
        leaf._grad._data += g


# the layers below reach the engine through these
_node.register_output_wrapper(wrap_output)
register_backward(backward)
