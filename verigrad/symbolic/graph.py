"""A read-only view of a recorded tape graph: nodes in topological order, their input
sources and the leaves, shared by the symbolic mirror and the checker."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..autograd.node import Node, OpNode
from ..tensor import Tensor, _wrap, apply

__all__ = ["GraphView", "Source", "Elided", "node_forward", "PATH_LIMIT"]

#: paths to the output (in findings and kinks) longer than this many nodes are shortened
PATH_LIMIT = 12


class Elided:
    """Stands in a shortened path for the ``count`` nodes left out."""

    def __init__(self, count: int) -> None:
        self.count = count

    def name(self) -> str:
        return f"... {self.count} more ..."

    def __repr__(self) -> str:
        return f"<Elided {self.count}>"


@dataclass(frozen=True)
class Source:
    """Where one input of a node comes from."""

    kind: str                # "node" (output ``nr`` of ``node``), "leaf" or "const"
    node: Any = None
    nr: int = 0
    leaf: Tensor | None = None
    value: Any = None        # for consts: the numpy array / Python number / None



@dataclass
class GraphView:
    """Nodes from the inputs to ``outputs`` in topological order (producers first)."""

    outputs: tuple[Tensor, ...]
    nodes: list[Node] = field(default_factory=list)
    sources: dict[Node, list[Source]] = field(default_factory=dict)
    leaves: list[Tensor] = field(default_factory=list)
    consumers: dict[Node, list[Node]] = field(default_factory=dict)
    _replay: dict | None = None
    _toward: dict | None = None
    _inputs: dict = field(default_factory=dict)
    _root_of: dict = field(default_factory=dict)

    @classmethod
    def of(cls, outputs: Tensor | Sequence[Tensor]) -> "GraphView":
        outs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
        view = cls(outs)
        seen_leaf: set[int] = set()
        order: list[Node] = []
        visited: set[int] = set()
        roots = [t._grad_fn for t in outs if t._grad_fn is not None]
        for t in outs:
            if t._grad_fn is None and t._requires_grad and id(t) not in seen_leaf:
                seen_leaf.add(id(t))
                view.leaves.append(t)
        # iterative post-order DFS: producers before consumers, inputs in argument order
        stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(roots)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            srcs = view._sources_of(node)
            view.sources[node] = srcs
            for s in reversed(srcs):
                if s.kind == "node" and id(s.node) not in visited:
                    stack.append((s.node, False))
            for s in srcs:
                if s.kind == "leaf" and id(s.leaf) not in seen_leaf:
                    seen_leaf.add(id(s.leaf))
                    view.leaves.append(s.leaf)
        view.nodes = order
        for node in order:
            for s in view.sources[node]:
                if s.kind == "node":
                    view.consumers.setdefault(s.node, []).append(node)
        # leaves in first-use order along the forward computation
        first_use: dict[int, int] = {}
        for k, node in enumerate(order):
            for s in view.sources[node]:
                if s.kind == "leaf":
                    first_use.setdefault(id(s.leaf), k)
        view.leaves.sort(key=lambda t: first_use.get(id(t), -1))
        return view

    @staticmethod
    def _sources_of(node: Node) -> list[Source]:
        inputs = getattr(node, "_inputs", ())
        out = []
        for (target, nr), inp in zip(node._edges, inputs):
            if isinstance(target, Node):
                out.append(Source("node", node=target, nr=nr))
            elif target is not None:
                out.append(Source("leaf", leaf=target))
            elif isinstance(inp, Tensor):
                out.append(Source("const", value=inp._data))
            else:
                out.append(Source("const", value=inp))
        return out

    def path_to_output(self, node: Node, limit: int | None = None) -> list[Any]:
        """A shortest chain of nodes from an output down to ``node`` (output first).

        Paths longer than ``limit`` nodes (default :data:`PATH_LIMIT`) keep the output and
        the ``limit - 1`` nodes nearest ``node``, with an :class:`Elided` marker (it has a
        ``name()`` too) for the nodes left out: every node of a deep chain asks for its
        path, and spelling out all of them would cost time and memory quadratic in depth.
        One walk of the graph (cached) serves every node, so a path costs O(limit)."""
        limit = PATH_LIMIT if limit is None else max(int(limit), 2)
        toward = self._toward_output()
        if node not in toward:
            return [node]
        _, depth = toward[node]
        near = []
        cur = node
        while cur is not None and len(near) < (depth + 1 if depth < limit else limit - 1):
            near.append(cur)
            cur = toward[cur][0]
        if cur is None:
            return near[::-1]
        return [self._root_of[node], Elided(depth + 1 - len(near) - 1)] + near[::-1]

    def _toward_output(self) -> dict:
        """Per node: (its consumer on a shortest path to an output, that path's length),
        from one breadth-first walk from the outputs (iterative, O(nodes + edges))."""
        if self._toward is None:
            toward: dict = {}
            root_of: dict = {}
            frontier = []
            for t in self.outputs:
                r = t._grad_fn
                if r is not None and r not in toward:
                    toward[r] = (None, 0)
                    root_of[r] = r
                    frontier.append(r)
            depth = 0
            while frontier:
                depth += 1
                nxt = []
                for c in frontier:
                    for s in self.sources.get(c, ()):
                        if s.kind == "node" and s.node not in toward:
                            toward[s.node] = (c, depth)
                            root_of[s.node] = root_of[c]
                            nxt.append(s.node)
                frontier = nxt
            self._toward, self._root_of = toward, root_of
        return self._toward

    def input_values(self, node: Node) -> list[Any]:
        """The tape's forward values of a node's inputs (arrays, Python numbers or None).

        Nodes keep only the inputs their backward reads, and constants; an input they
        dropped is replayed: its producer's forward re-run on its own inputs, from the leaves
        up, in the same float arithmetic (so the same bits). Computed once per node (every
        stage of a check asks again)."""
        vals = self._inputs.get(node)
        if vals is not None:
            return vals
        vals = []
        for (target, nr), inp in zip(node._edges, getattr(node, "_inputs", ())):
            if isinstance(inp, Tensor):
                vals.append(inp._data)
            elif target is None:
                vals.append(inp)
            elif isinstance(target, Node):
                vals.append(self._replayed(target)[nr])
            else:
                vals.append(target._data)  # a leaf
        self._inputs[node] = vals
        return vals

    def _replayed(self, node: Node) -> list[np.ndarray]:
        if self._replay is None:
            self._replay = {}
            for n in self.nodes:  # producers first, so no recursion
                self._replay[n] = node_forward(n, self.input_values(n))
        return self._replay[node]


def node_forward(node: Node, in_vals: Sequence[Any]) -> list[np.ndarray]:
    """A node's own forward on given input values (numpy in, numpy out), with the dtype
    promotion the tape applied."""
    from ..autograd.grad_mode import no_grad

    with no_grad(), np.errstate(all="ignore"):
        return node.forward(in_vals)


def _replay_op(node: OpNode, values: Sequence[Any], record: bool) -> Tensor:
    """An op node's forward re-run through ``tensor.apply``: on wrapped input values
    (``record=False``, the node protocol's ``forward``) or on the caller's tensors, recorded
    (``rerun``: a fresh node of the same op at other values)."""
    if record:
        return apply(node.op, tuple(values), node._params)
    args = tuple(_wrap(np.asarray(v)) if isinstance(v, np.ndarray) else v for v in values)
    return apply(node.op, args, node._params)


# the node layer cannot import the tensor layer: its protocol's replays come from here
OpNode.replay = _replay_op
