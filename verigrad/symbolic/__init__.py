"""The symbolic opinion: a SymPy mirror of recorded graphs, exact high-precision numbers,
and kink detection."""
from .exact import DEFAULT_DPS, ExactGraph, exact_gradient
from .graph import GraphView
from .local import MirrorError, backend, set_backend
from .mirror import SizeCapExceeded, symbolic, symbolic_grad

__all__ = ["symbolic", "symbolic_grad", "ExactGraph", "exact_gradient", "GraphView",
           "MirrorError", "SizeCapExceeded", "DEFAULT_DPS", "set_backend", "backend"]
