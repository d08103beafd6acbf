"""A seeded corpus of random scalar graphs (the ``tanh(z*w + b)`` kind, and wider), run
through the tape; each graph gives the bits of its output, of every gradient, and its reprs.

The engine's 0-d fast path must leave every one of these unchanged: the tests run the corpus
here and against the engine as it was before the fast path (from git, when available), and
compare the records for equality. Run as a script it prints the records as JSON::

    python tests/engine_scalar_corpus.py [N]
"""
from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

UNARY = ("tanh", "sin", "cos", "exp", "sigmoid", "relu", "neg", "abs", "log_abs", "sqrt_sq",
         "square", "reciprocal_safe", "expm1", "log1p_sq", "softplus", "clamp")
BINARY = ("add", "sub", "mul", "div_safe", "maximum", "minimum", "pow_scalar", "scalar_mul",
          "scalar_radd", "scalar_rsub", "scalar_rdiv", "scalar_sub", "where")


def _unary(vg: Any, name: str, a: Any) -> Any:
    if name == "log_abs":
        return vg.log(vg.abs(a) + 0.5)
    if name == "sqrt_sq":
        return vg.sqrt(a * a + 0.25)
    if name == "square":
        return a ** 2
    if name == "reciprocal_safe":
        return 1.0 / (a * a + 1.0)
    if name == "log1p_sq":
        return vg.log1p(a * a)
    if name == "exp":
        return vg.exp(vg.tanh(a))
    if name == "expm1":
        return vg.expm1(vg.tanh(a))
    if name == "clamp":
        return vg.clamp(a, min=-0.5, max=0.75)
    if name == "neg":
        return -a
    return getattr(vg, name)(a)


def _binary(vg: Any, name: str, a: Any, b: Any, c: float) -> Any:
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div_safe":
        return a / (b * b + 0.5)
    if name == "maximum":
        return vg.maximum(a, b)
    if name == "minimum":
        return vg.minimum(a, b)
    if name == "pow_scalar":
        return (a * a + 0.5) ** c
    if name == "scalar_mul":
        return c * a
    if name == "scalar_radd":
        return c + a
    if name == "scalar_rsub":
        return c - a
    if name == "scalar_rdiv":
        return c / (a * a + 1.0)
    if name == "scalar_sub":
        return a - c
    if name == "where":
        return vg.where(a > b, a, b * c)
    raise KeyError(name)


def _bits(x: Any) -> Any:
    if x is None:
        return None
    arr = np.asarray(x._data if hasattr(x, "_data") else x)
    return [str(arr.dtype), list(arr.shape), arr.tobytes().hex()]


def build(vg: Any, rng: np.random.Generator) -> tuple[list, list, Any]:
    """One random graph: (leaves, the leaves that require grad, output)."""
    dtype = (vg.float64, vg.float32)[int(rng.integers(2))]
    np_dtype = np.float64 if dtype is vg.float64 else np.float32
    shapes = [()] * 4
    if rng.random() < 0.2:  # some graphs mix in arrays: the fast path must hand over cleanly
        shapes[int(rng.integers(4))] = ((1,), (3,), (2, 1))[int(rng.integers(3))]
    leaves, wanted = [], []
    for k in range(int(rng.integers(1, 5))):
        v = rng.uniform(-1.5, 1.5, size=shapes[k]).astype(np_dtype)
        req = k == 0 or rng.random() < 0.7
        t = vg.tensor(v, dtype=dtype, requires_grad=req)
        leaves.append(t)
        if req:
            wanted.append(t)
    pool = list(leaves)
    for _ in range(int(rng.integers(3, 40))):
        recent = pool[-int(rng.integers(1, min(len(pool), 4) + 1)):]
        a = recent[int(rng.integers(len(recent)))]
        if rng.random() < 0.5:
            pool.append(_unary(vg, UNARY[int(rng.integers(len(UNARY)))], a))
        else:
            b = pool[int(rng.integers(len(pool)))]
            c = float(np.round(rng.uniform(-2.0, 2.0), 3)) or 1.5
            pool.append(_binary(vg, BINARY[int(rng.integers(len(BINARY)))], a, b, c))
    out = pool[-1]
    if not out.requires_grad:
        out = out + leaves[0]
    if out.ndim:
        out = out.sum()
    return leaves, wanted, out


def record(vg: Any, seed: int) -> dict:
    """Build graph ``seed``, run backward the way its seed says, return what must not change."""
    rng = np.random.default_rng(seed)
    leaves, wanted, out = build(vg, rng)
    mode = int(rng.integers(4))
    rec = {"out": _bits(out), "repr": repr(out), "fn": out.grad_fn.name(), "mode": mode}
    if mode == 0:
        out.backward()
    elif mode == 1:  # twice: the second backward accumulates onto the first's .grad
        out.backward(retain_graph=True)
        out.backward()
    elif mode == 2:
        grads = vg.autograd.grad(out, wanted, allow_unused=True)
        rec["autograd_grad"] = [_bits(g) for g in grads]
    else:  # .grad already set before backward, and an explicit output gradient
        for t in wanted:
            t.grad = vg.ones_like(t) * 0.375
        out.backward(vg.tensor(np.asarray(1.25, dtype=out._data.dtype)))
    rec["grads"] = [_bits(t.grad) for t in leaves]
    rec["grad_reprs"] = [repr(t.grad) for t in leaves]
    return rec


def corpus(vg: Any, n: int, start: int = 0) -> list[dict]:
    with np.errstate(all="ignore"):
        return [record(vg, s) for s in range(start, start + n)]


if __name__ == "__main__":
    import verigrad as _vg

    print(json.dumps(corpus(_vg, int(sys.argv[1]) if len(sys.argv) > 1 else 300)))
    sys.stdout.flush()
