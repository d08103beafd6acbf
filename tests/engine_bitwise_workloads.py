"""The engine benchmark's three workloads (benchmarks/engine.py), run several steps in a row
(so the array pool, autograd/pool.py, hands the later steps the earlier steps' arrays); each
step gives a SHA-1 of its loss and gradients' bytes.

``tests/test_engine_bitwise.py`` runs this here and with the engine as it was before issue
15's second round (from git), and compares the digests. Run as a script it prints them as
JSON::

    python tests/engine_bitwise_workloads.py
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

STEPS = 4


def _digest(loss: Any, grads: Any) -> str:
    h = hashlib.sha1(np.float64(loss).tobytes())
    for g in grads:
        g = np.ascontiguousarray(g)
        h.update(str((g.dtype, g.shape)).encode())
        h.update(g.tobytes())
    return h.hexdigest()


def mlp(vg: Any) -> list[str]:
    rng = np.random.default_rng(0)
    X = vg.tensor(rng.standard_normal((64, 256)), dtype=vg.float64)
    Y = vg.tensor(rng.standard_normal((64, 10)), dtype=vg.float64)
    params = [vg.tensor(rng.standard_normal(s) / 16, dtype=vg.float64, requires_grad=True)
              for s in ((256, 512), (512,), (512, 10), (10,))]
    W1, b1, W2, b2 = params
    out = []
    for _ in range(STEPS):
        for p in params:
            p.grad = None
        h = vg.tanh(X @ W1 + b1)
        loss = ((h @ W2 + b2 - Y) ** 2).mean()
        loss.backward()
        out.append(_digest(loss.item(), [p.grad.numpy() for p in params]))
    return out


def elementwise(vg: Any, n: int = 200_000) -> list[str]:
    x = vg.tensor(np.random.default_rng(1).standard_normal(n), dtype=vg.float64,
                  requires_grad=True)
    out = []
    for _ in range(STEPS):
        x.grad = None
        y = (vg.sin(x) * vg.exp(-x * x)).sum()
        y.backward()
        out.append(_digest(y.item(), [x.grad.numpy()]))
    return out


def chain(vg: Any, steps: int = 300) -> list[str]:
    leaves = [vg.tensor(np.float64(v), dtype=vg.float64, requires_grad=True)
              for v in (0.3, 0.9, 0.1)]
    out = []
    for _ in range(STEPS):
        for p in leaves:
            p.grad = None
        z, w, b = leaves
        for _ in range(steps):
            z = vg.tanh(z * w + b)
        z.backward()
        out.append(_digest(z.item(), [p.grad.numpy() for p in leaves]))
    return out


def workloads(vg: Any) -> dict[str, list[str]]:
    return {"mlp": mlp(vg), "elementwise": elementwise(vg), "chain": chain(vg)}


if __name__ == "__main__":
    import verigrad

    print(json.dumps(workloads(verigrad)))
