"""A read-only view of a recorded tape graph: nodes in topological order, their input
sources and the leaves, shared by the symbolic mirror and the checker."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..autograd.node import Node, OpNode
from ..tensor import Tensor

__all__ = ["GraphView", "Source", "node_forward"]


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

    def path_to_output(self, node: Node) -> list[Node]:
        """The chain of nodes from the output down to ``node`` (output first)."""
        roots = {id(t._grad_fn) for t in self.outputs if t._grad_fn is not None}
        prev: dict[int, Node | None] = {id(node): None}
        frontier = [node]
        found = node if id(node) in roots else None
        while frontier and found is None:
            nxt = []
            for n in frontier:
                for c in self.consumers.get(n, []):
                    if id(c) not in prev:
                        prev[id(c)] = n
                        if id(c) in roots:
                            found = c
                            break
                        nxt.append(c)
                if found is not None:
                    break
            frontier = nxt
        path = []
        cur = found
        while cur is not None:
            path.append(cur)
            cur = prev[id(cur)]
        return path

    def input_values(self, node: Node) -> list[Any]:
        """The tape's forward values of a node's inputs (arrays, Python numbers or None).

        Nodes keep only the inputs their backward reads, and constants; an input they
        dropped is replayed: its producer's forward re-run on its own inputs, from the leaves
        up, in the same float arithmetic (so the same bits)."""
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
    from ..tensor import _wrap, apply

    with no_grad(), np.errstate(all="ignore"):
        if isinstance(node, OpNode):
            args = tuple(_wrap(np.asarray(v)) if isinstance(v, np.ndarray) else v
                         for v in in_vals)
            return [apply(node.op, args, node._params)._data]
        cls = node._forward_cls
        args = [_wrap(np.array(v)) if isinstance(v, np.ndarray) else v for v in in_vals]
        out = cls.forward(cls._backward_cls(), *args)
        outs = out if isinstance(out, tuple) else (out,)
        return [np.asarray(o._data if isinstance(o, Tensor) else o) for o in outs]


