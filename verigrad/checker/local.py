"""Node-level checks: every node's backward against its own mirror (or, without one, against
finite differences of its own forward), at the values the tape recorded.

Local checks are well conditioned even where the whole function is not, and a failing one
names the faulty op directly. Contract checks (linearity in the incoming gradient,
determinism) run here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from ..autograd.function import FunctionCtx, _input_names
from ..autograd.node import Node, OpNode
from ..errors import BackwardContractError, VerigradError
from ..symbolic.exact import EPS64, SAFETY, to_mp
from ..symbolic.graph import GraphView, node_forward
from ..symbolic.kinks import rule_switches
from ..symbolic.local import MirrorError, rule_for, vjp_with_bound
from . import finite_diff as fd

#: FD error estimates are spreads of extrapolations, not bounds: where f cancels (a sum of
#: terms that nearly vanishes) its rounding noise reaches them. Tolerances use this multiple.
FD_SAFETY = 4.0

__all__ = ["LocalFinding", "check_nodes", "RULE_COST_CAP"]

#: local rules larger than this (output entries x input entries of one node) are not built;
#: such nodes are checked by finite differences of their forward instead
RULE_COST_CAP = 250_000


@dataclass
class LocalFinding:
    node: Node
    path: str
    method: str                     # "symbolic" | "finite-differences" | "skipped"
    ok: bool
    input_index: int = -1
    input_name: str = ""
    element: tuple = ()
    expected: float = 0.0
    got: float = 0.0
    max_abs_error: float = 0.0
    tolerance: float = 0.0
    note: str = ""
    contract: str = ""              # a contract violation, if any


def _input_name(node: Node, i: int) -> str:
    if isinstance(node, OpNode):
        names = node.op.inputs
        return names[0].lstrip("*") + f"[{i}]" if node.op.variadic else names[i]
    if isinstance(node, FunctionCtx):
        return _input_names(node._forward_cls, len(node._inputs))[i]
    return f"input {i}"


def rule_cost(node: Node, in_vals: list) -> int:
    sizes = [int(np.size(v)) for v in in_vals if isinstance(v, np.ndarray)] or [1]
    if isinstance(node, OpNode) and node.op.elementwise:
        return max(sizes)
    out = sum(int(np.prod(s)) for s, _ in node._out_meta) if isinstance(node, FunctionCtx) \
        else int(np.size(node_forward(node, in_vals)[0]))
    return out * max(sizes)


def _vjp(node: Node, cotangents: list[np.ndarray]) -> list[Any]:
    with np.errstate(all="ignore"):
        res = node._backward([c.copy() for c in cotangents], False)
    return [None if r is None else np.asarray(getattr(r, "_data", r), dtype=float) for r in res]


def _contract(node: Node, v: list[np.ndarray], got: list[Any]) -> str:
    """Linearity in the incoming gradient, and determinism."""
    zero = _vjp(node, [np.zeros_like(c) for c in v])
    for i, z in enumerate(zero):
        # 0 * inf is nan at a singularity (1/x at 0): only finite nonzeros are evidence
        if z is not None and np.any(np.isfinite(z) & (z != 0)):
            return (f"{node.name()}: a zero incoming gradient gave a nonzero gradient for input "
                    f"{i} ({_input_name(node, i)}), max {float(np.max(np.abs(z))):.3g}: backward "
                    f"adds a constant, so it is not a vector-Jacobian product")
    # doubling is exact in floating point, so a linear backward doubles exactly
    scaled = _vjp(node, [2.0 * c for c in v])
    again = _vjp(node, v)
    for i, (g, s, a) in enumerate(zip(got, scaled, again)):
        if g is None:
            continue
        if not np.array_equal(g, a, equal_nan=True):
            return (f"{node.name()}: two backward calls with the same incoming gradient gave "
                    f"different numbers for input {i} ({_input_name(node, i)}): backward is "
                    f"not deterministic")
        with np.errstate(all="ignore"):
            finite = np.isfinite(g) & np.isfinite(s)
            scale = float(np.max(np.abs(g[finite]), initial=0.0))
            # below the normal range products lose bits, so doubling is no longer exact
            bad = finite & (np.abs(s - 2 * g) > 1e-12 * scale + 4 * np.finfo(float).tiny)
        if np.any(bad):
            return (f"{node.name()}: doubling the incoming gradient did not double the "
                    f"gradient of input {i} ({_input_name(node, i)}): backward is not linear "
                    f"in the incoming gradient")
    return ""


def check_nodes(view: GraphView, seed: int, use_mirror: bool = True,
                functions_only: bool = False, override: tuple | None = None
                ) -> list[LocalFinding]:
    """Check every node of ``view`` (or only the custom Functions); results in backward order
    (output first). ``override`` = (rtol, atol) replaces the derived tolerances."""
    rng = np.random.default_rng(seed)
    findings = []
    for node in reversed(view.nodes):
        if functions_only and not isinstance(node, FunctionCtx):
            continue
        finding = _check_node(view, node, rng, use_mirror)
        if override is not None and not finding.contract and finding.input_index >= 0:
            rtol, atol = override
            tol = (atol or 0.0) + (rtol or 0.0) * abs(finding.expected)
            finding.tolerance, finding.ok = tol, finding.max_abs_error <= tol
        findings.append(finding)
    return findings


def _path(view: GraphView, node: Node) -> str:
    return " <- ".join(n.name() for n in view.path_to_output(node))


def _check_node(view: GraphView, node: Node, rng: np.random.Generator,
                use_mirror: bool) -> LocalFinding:
    path = _path(view, node)
    in_vals = view.input_values(node)
    srcs = view.sources[node]
    diff = [i for i, s in enumerate(srcs) if s.kind in ("node", "leaf")]
    try:
        outs = node_forward(node, in_vals)
    except Exception as e:  # noqa: BLE001 - the user's forward, re-run on its own inputs
        return LocalFinding(node, path, "skipped", True, note=f"forward could not be re-run: {e}")
    v = [rng.standard_normal(o.shape) for o in outs]
    try:
        got = _vjp(node, v)
        contract = _contract(node, v, got)
    except (BackwardContractError, VerigradError) as e:
        return LocalFinding(node, path, "contract", False, note=str(e), contract=str(e))
    except Exception as e:  # noqa: BLE001 - a user backward that raises is a finding
        msg = f"{node.name()}.backward raised {type(e).__name__}: {e}"
        return LocalFinding(node, path, "contract", False, note=msg, contract=msg)
    if contract:
        return LocalFinding(node, path, "contract", False, note=contract, contract=contract)
    note = ""
    if isinstance(node, FunctionCtx) and getattr(node._forward_cls, "symbolic", None) is None:
        note = f"{node._forward_cls.__name__} has no symbolic staticmethod"
    elif use_mirror and rule_cost(node, in_vals) <= RULE_COST_CAP:
        try:
            return _symbolic(node, path, in_vals, diff, outs, v, got, rng)
        except MirrorError as e:
            note = str(e).split(".")[0]
        except _MirrorMismatch as e:
            note = str(e)
    elif use_mirror:
        note = "local rule too large to build symbolically"
    finding = _finite_differences(node, path, in_vals, diff, v, got, rng)
    finding.note = "; ".join(x for x in (note, finding.note) if x)
    return finding


class _MirrorMismatch(ValueError):
    pass


#: elementwise registry ops are checked on a seeded sample of this many elements (their rule
#: is the same for every element; custom Functions are always checked in full)
LOCAL_SAMPLE = 256


def _symbolic(node: Node, path: str, in_vals: list, diff: list[int], outs: list[np.ndarray],
              v: list[np.ndarray], got: list[Any], rng: np.random.Generator) -> LocalFinding:
    shape = outs[0].shape
    if isinstance(node, OpNode) and node.op.elementwise and outs[0].size > LOCAL_SAMPLE and all(
            np.shape(x) == shape for x in in_vals if isinstance(x, np.ndarray)):
        idx = np.sort(rng.choice(outs[0].size, LOCAL_SAMPLE, replace=False))
        pick = lambda a: None if a is None else (  # noqa: E731
            a.reshape(-1)[idx] if isinstance(a, np.ndarray) else a)
        finding = _symbolic(node, path, [pick(x) for x in in_vals], diff,
                            [pick(o) for o in outs], [pick(c) for c in v],
                            [pick(g) for g in got], rng)
        if finding.element:
            finding.element = tuple(int(i) for i in np.unravel_index(
                int(idx[finding.element[0]]), shape))
        finding.note = (finding.note + "; " if finding.note else "") + \
            f"checked on a seeded sample of {LOCAL_SAMPLE} of {outs[0].size} elements"
        return finding
    rule = rule_for(node, in_vals, diff)
    args = [None if x is None else (x if isinstance(node, FunctionCtx) and
                                    not isinstance(x, np.ndarray) else to_mp(x))
            for x in in_vals]
    sym = [a for a, s in zip(args, rule.in_syms) if s is not None]
    with mpmath.workdps(30):
        values, partials, mags = _evaluate(rule, sym)
        sens = _sensitivity(rule, sym, partials, [o.shape for o in outs])
        # the mirror must describe this forward, or its derivatives mean nothing here; a
        # forward that cancels (a sum that is exactly 0) is only as exact as its terms
        for k, (mo, fo) in enumerate(zip(values, outs)):
            m = np.array(mo.tolist(), dtype=float).reshape(fo.shape)
            with np.errstate(all="ignore"):
                bad = ~(np.abs(m - fo) <= 1e-8 * (np.abs(fo) + sens[k]) + 1e-300) & ~(
                    np.isnan(m) & np.isnan(fo)) & ~(m == fo)
            if np.any(bad):
                j = tuple(int(i) for i in np.argwhere(bad)[0])
                raise _MirrorMismatch(
                    f"the symbolic mirror of {node.name()} does not match its forward (output "
                    f"{k}{list(j)}: mirror {m[j]:.12g}, forward {fo[j]:.12g}); checked by "
                    f"finite differences instead")
        expected, bound = _jvp_t(rule, v, partials, mags, in_vals, sym)
        kinks = [k for k in rule_switches(rule, sym, 0.0, 30) if k[5]]
    worst = LocalFinding(node, path, "symbolic", True)
    if kinks:
        # at a kink any one-sided value is defensible: compare only where the rule is smooth
        if not rule.elementwise:
            worst.note = f"at a kink of {kinks[0][1]}: not compared"
            return worst
        worst.note = f"{len(kinks)} element(s) at a kink of {kinks[0][1]}: not compared"
        at = np.zeros(np.broadcast_shapes(*[np.shape(a) for a in sym]), bool)
        for k in kinks:
            at[k[0]] = True
    for i in rule.diff_inputs:
        e = np.array(expected[i].tolist(), dtype=float).reshape(np.shape(in_vals[i]))
        g = got[i]
        if g is None:
            g = np.zeros_like(e)
        if g.shape != e.shape:
            return LocalFinding(node, path, "symbolic", False, i, _input_name(node, i),
                                note=f"gradient of shape {g.shape} for an input of shape "
                                     f"{e.shape}")
        if kinks and e.shape == at.shape:
            e, g = np.where(at, 0.0, e), np.where(at, 0.0, g)
        elif kinks:  # broadcast input: its entries mix kinked and smooth elements
            continue
        _compare(worst, node, i, e, g, bound[i])
    return worst


def _sensitivity(rule: Any, sym: list, parts: list, shapes: list) -> list[np.ndarray]:
    """sum_k |d out / d a_k| |a_k| per output element: the scale a forward's rounding is
    measured against."""
    def absf(x: Any) -> np.ndarray:
        return np.abs(np.array(np.asarray(x, dtype=object).tolist(), dtype=float))

    # ``sym`` holds the inputs that have symbols, in order; map rule input index -> slot
    slot = {i: k for k, i in enumerate(i for i, s in enumerate(rule.in_syms) if s is not None)}
    if rule.elementwise:
        total = np.zeros(shapes[0])
        for p, i in zip(parts, rule.diff_inputs):
            total = total + absf(p) * absf(sym[slot[i]])
        return [total]
    flat_in = [absf(a).reshape(-1) for a in sym]
    out = [np.zeros(int(np.prod(s))) for s in shapes]
    for (k, j, i, m), p in zip(rule.jac_index, parts):
        out[k][j] += float(abs(p)) * flat_in[slot[i]][m]
    return [o.reshape(s) for o, s in zip(out, shapes)]


def _evaluate(rule: Any, sym: list) -> tuple[list, list, list]:
    """Outputs, partials and (elementwise rules) rounding magnitudes at high-precision
    inputs."""
    full = rule.full_fn()
    if rule.elementwise:
        mag = rule.magnitude_fn()
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=object) for a in sym])
        shape = arrays[0].shape
        flat = [a.reshape(-1) for a in arrays]
        out = np.empty(shape, dtype=object)
        parts = [np.empty(shape, dtype=object) for _ in rule.diff_inputs]
        mags = [np.empty(shape) for _ in rule.diff_inputs]
        for j in range(out.size):
            point = [a[j] for a in flat]
            res = full(*point)
            mres = mag(*point)
            out.reshape(-1)[j] = res[0]
            for k in range(len(rule.diff_inputs)):
                parts[k].reshape(-1)[j] = res[1 + k]
                mags[k].reshape(-1)[j] = float(abs(mres[k]))
        return [out], parts, mags
    flat = [x for a in sym for x in np.asarray(a, dtype=object).reshape(-1)]
    res = full(*flat)
    values, pos = [], 0
    for o in rule.outs:
        arr = np.empty(o.shape, dtype=object)
        arr.reshape(-1)[:] = list(res[pos:pos + o.size])
        values.append(arr)
        pos += o.size
    return values, list(res[pos:]), []


def _jvp_t(rule: Any, v: list[np.ndarray], parts: list, mags: list, in_vals: list,
           sym_args: list) -> tuple[dict, dict]:
    """J^T v per input in high precision, and a rounding bound for a correct float VJP."""
    eps = EPS64 * SAFETY
    expected, bound = {}, {}
    if rule.elementwise:
        from ..symbolic.exact import _sum_to, _sum_to_float

        g = to_mp(v[0])
        ag = np.abs(v[0])
        for k, i in enumerate(rule.diff_inputs):
            shape = np.shape(in_vals[i])
            expected[i] = _sum_to(g * parts[k], shape)
            p = np.abs(np.array(np.asarray(parts[k], dtype=object).tolist(), dtype=float))
            bound[i] = _sum_to_float(eps * (ag * mags[k] + 2 * ag * p), shape) + \
                eps * _sum_to_float(ag * p, shape) * (np.prod(ag.shape) / max(np.prod(shape), 1))
        return expected, bound
    sym_flat = [x for i, a in enumerate(sym_args) for x in np.asarray(a, dtype=object).reshape(-1)]
    sizes = {i: int(np.size(in_vals[i])) for i in rule.diff_inputs}
    q, b = vjp_with_bound(rule, sym_flat, parts, [to_mp(c) for c in v], sizes, eps)
    for i in rule.diff_inputs:
        expected[i] = q[i].reshape(np.shape(in_vals[i]))
        bound[i] = b[i].reshape(np.shape(in_vals[i]))
    return expected, bound


def _compare(worst: LocalFinding, node: Node, i: int, expected: np.ndarray, got: np.ndarray,
             tol: np.ndarray) -> None:
    with np.errstate(all="ignore"):
        err = np.abs(got - expected)
        both_inf = np.isinf(got) & np.isinf(expected) & (np.sign(got) == np.sign(expected))
        err = np.where(both_inf, 0.0, err)
        err = np.where(np.isnan(err), np.inf, err)
        excess = err - tol
    j = tuple(int(x) for x in np.unravel_index(int(np.argmax(excess)), err.shape)) \
        if err.size else ()
    bad = bool(err.size) and excess[j] > 0
    if bad and (worst.ok or excess[j] > worst.max_abs_error - worst.tolerance):
        worst.ok = False
    if err.size and (bad or worst.ok) and (excess[j] > worst.max_abs_error - worst.tolerance
                                           or worst.input_index < 0):
        worst.input_index, worst.input_name = i, _input_name(node, i)
        worst.element = j
        worst.expected, worst.got = float(expected[j]), float(got[j])
        worst.max_abs_error, worst.tolerance = float(err[j]), float(tol[j])


def _finite_differences(node: Node, path: str, in_vals: list, diff: list[int],
                        v: list[np.ndarray], got: list[Any], rng: np.random.Generator
                        ) -> LocalFinding:
    """``v . forward(inputs)`` differentiated along each coordinate (small inputs) or along
    random directions with bisection down to the wrong coordinates (large ones)."""
    worst = LocalFinding(node, path, "finite-differences", True)
    for i in diff:
        x0 = np.asarray(in_vals[i], dtype=float)

        def s(x: np.ndarray, i: int = i, shape: tuple = x0.shape) -> np.ndarray:
            vals = list(in_vals)
            vals[i] = x.reshape(shape)
            outs = node_forward(node, vals)
            return np.array([sum(float(np.sum(c * o)) for c, o in zip(v, outs))])

        g = got[i] if got[i] is not None else np.zeros(x0.shape)
        flat = x0.reshape(-1)
        gflat = g.reshape(-1)
        if flat.size <= 32:
            ests = fd.partials(s, flat, range(flat.size))
            exp = np.array([e.value[0] for e in ests])
            tol = FD_SAFETY * np.array([e.error[0] for e in ests]) + \
                EPS64 * SAFETY * (np.abs(exp) + 1e-300)
            _compare(worst, node, i, exp.reshape(x0.shape), g, tol.reshape(x0.shape))
            continue
        bad = _bisect(s, flat, gflat, np.arange(flat.size), rng, depth=0)
        if bad:
            j, exp_j, err_j, tol_j = bad
            idx = tuple(int(k) for k in np.unravel_index(j, x0.shape))
            worst.ok = False
            worst.input_index, worst.input_name, worst.element = i, _input_name(node, i), idx
            worst.expected, worst.got = exp_j, float(g[idx])
            worst.max_abs_error, worst.tolerance = err_j, tol_j
    return worst


def _bisect(s: Any, x: np.ndarray, g: np.ndarray, coords: np.ndarray,
            rng: np.random.Generator, depth: int) -> tuple | None:
    """Find a coordinate where the tape gradient disagrees with FD, projecting on random
    directions supported on ``coords`` and halving: a single wrong entry among 10,000 is
    found in ~14 rounds, never diluted by the others."""
    if coords.size == 1:
        j = int(coords[0])
        d = np.zeros_like(x)
        d[j] = 1.0
        est = fd.derivative(s, x, d)
        err = abs(float(est.value[0]) - g[j])
        tol = FD_SAFETY * float(est.error[0]) + EPS64 * SAFETY * abs(g[j])
        return (j, float(est.value[0]), err, tol) if err > tol else None
    u = np.zeros_like(x)
    u[coords] = rng.standard_normal(coords.size)
    est = fd.derivative(s, x, u)
    tape = float(np.dot(g[coords], u[coords]))
    rounding = coords.size * float(np.dot(np.abs(g[coords]), np.abs(u[coords])))
    tol = FD_SAFETY * float(est.error[0]) + EPS64 * SAFETY * rounding
    if abs(float(est.value[0]) - tape) <= tol:  # this part agrees: nothing to localise here
        return None
    half = coords.size // 2
    for part in (coords[:half], coords[half:]):
        found = _bisect(s, x, g, part, rng, depth + 1)
        if found:
            return found
    return None
