"""Node-level checks: every node's backward against its own mirror (or, without one, against
finite differences of its own forward), at the values the tape recorded.

Local checks are well conditioned even where the whole function is not, and a failing one
names the faulty op directly. Contract checks (linearity in the incoming gradient,
determinism) run here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import math

import mpmath
import numpy as np

from ..autograd.node import Node
from ..errors import BackwardContractError, VerigradError
from ..autograd.grad_mode import enable_grad
from ..symbolic.exact import EPS64, SAFETY, to_mp
from ..symbolic.graph import GraphView, node_forward
from ..symbolic.kinks import rule_switches
from ..symbolic.local import (MirrorError, _freeze, evaluate_full, evaluation_memo,
                              rule_for, vjp_with_bound)
from ..symbolic.traced import mirror_missing, trace_of
from . import finite_diff as fd
from .compare import (PROBE_SPREAD, PROBES, ROUNDING_FACTOR, digits_lost,
                      lost_digits_or_wrong, tolerance, unit_roundoff, working_precision)

#: FD error estimates are spreads of extrapolations, not bounds: where f cancels (a sum of
#: terms that nearly vanishes) its rounding noise reaches them. Tolerances use this multiple.
FD_SAFETY = 4.0

__all__ = ["LocalFinding", "check_nodes", "RULE_COST_CAP", "restricted"]

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
    dtype: str = "float64"          # the precision the node works in (its tolerance's unit)
    precision: str = ""             # lost digits of a right formula (a warning, not a failure)
    slack: float = 1.0              # multiple of the rounding bound its error was measured at
    #: expected/got above are v . J for a seeded random cotangent v (a projection on a random
    #: direction of the output); ``own`` is the element's own derivative d out[k] / d in[j]
    #: as (k, expected, got, tolerance; k None for a scalar output), when it was found
    projected: bool = False
    own: tuple | None = None
    #: not checked on its own: a seeded sample of its rule's nodes was (``check_nodes``)
    sampled: bool = False


def _input_name(node: Node, i: int) -> str:
    names = getattr(node, "input_names", None)  # the node protocol (autograd/node.py)
    return names()[i] if names is not None else f"input {i}"


def rule_cost(node: Node, in_vals: list) -> int:
    sizes = [int(np.size(v)) for v in in_vals if isinstance(v, np.ndarray)] or [1]
    if node.elementwise:
        return max(sizes)
    if getattr(node, "moves_data", False):  # a slice: one partial per output entry
        return max(sizes + [int(np.size(node_forward(node, in_vals)[0]))])
    # a custom Function knows its outputs' shapes; an op's output is one forward away
    meta = getattr(node, "_out_meta", None)
    out = sum(int(np.prod(s)) for s, _ in meta) if meta is not None \
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


#: graphs with more nodes than this check their built-in nodes on a bounded sample per rule
#: (the checks of a 1e5-op chain were half its time, each node's the same as its neighbours')
SAMPLE_FROM = 2000
#: built-in nodes checked on their own per rule in such graphs (op, parameters, input shapes
#: and dtypes, differentiated inputs): a rule wrong at 5% of its nodes is missed by a seeded
#: sample of 256 with probability 0.95**256 < 2e-6, and the whole-graph comparison covers
#: every node whatever the sample (a check that does not pass is redone with every node)
NODES_PER_RULE = 256


def check_nodes(view: GraphView, seed: int, use_mirror: bool = True,
                functions_only: bool = False, override: tuple | None = None,
                skip: frozenset = frozenset(), sample: bool = True) -> list[LocalFinding]:
    """Check every node of ``view`` (or only the custom Functions, and none named in
    ``skip``); results in backward order (output first). ``override`` = (rtol, atol)
    replaces the derived tolerances.

    ``sample``: in graphs over ``SAMPLE_FROM`` nodes, built-in nodes that share one rule
    with more than ``NODES_PER_RULE`` others are checked on a seeded sample of that many;
    the rest get a finding with ``sampled=True`` that claims nothing (ok, the least rounding
    allowance a check could have given it: its precision's, slack 1, so the chained bounds
    of the whole graph are as tight as they can be). If any node of the sample is not a
    clean pass of its mirror (a failure, lost digits, finite differences, a contract), the
    whole rule is checked node by node. Custom Functions are checked at every node."""
    rng = np.random.default_rng(seed)
    memo = evaluation_memo(view)  # the exact chain on this view evaluates the same rules
    todo = [node for node in reversed(view.nodes)
            if not (functions_only and not node.user_code or node.name() in skip)]
    groups = _rule_samples(view, todo, seed) if sample and not functions_only and \
        len(view.nodes) > SAMPLE_FROM else []
    later = {node for _, rest in groups for node in rest}
    done: dict = {}

    def run(node: Node) -> None:
        finding = _check_node(view, node, rng, use_mirror, memo)
        if override is not None and not finding.contract and finding.input_index >= 0:
            rtol, atol = override
            tol = (atol or 0.0) + (rtol or 0.0) * abs(finding.expected)
            finding.tolerance, finding.ok = tol, finding.max_abs_error <= tol
        done[node] = finding

    for node in todo:
        if node not in later:
            run(node)
    for chosen, rest in groups:
        first = done[chosen[0]]
        if not all(_clean(done[n], first.dtype) for n in chosen):
            for node in rest:   # (backward order)
                run(node)
            continue
        note = (f"not checked on its own: one of {len(chosen) + len(rest)} nodes of the same "
                f"built-in rule, of which a seeded sample of {len(chosen)} was (a graph of "
                f"{len(view.nodes)} nodes); the whole-graph comparison covers it")
        for node in rest:
            done[node] = LocalFinding(node, _path(view, node), "symbolic", True,
                                      dtype=first.dtype, note=note, sampled=True)
    return [done[node] for node in todo]


def _clean(f: LocalFinding, dtype: str) -> bool:
    """A node check that speaks for the other nodes of its rule: its mirror agreed within
    plain rounding, in the group's precision."""
    return f.ok and f.method == "symbolic" and not f.contract and not f.precision and \
        f.slack <= 1.0 and f.dtype == dtype


def _rule_samples(view: GraphView, nodes: list[Node], seed: int) -> list[tuple[list, list]]:
    """(sampled, left out) per group of built-in nodes that share a rule and have more than
    ``NODES_PER_RULE`` members, both in the order of ``nodes``."""
    groups: dict = {}
    for node in nodes:
        if node.user_code:
            continue  # the user's code: checked at every node
        vals = view.input_values(node)
        diff = tuple(i for i, s in enumerate(view.sources[node]) if s.kind in ("node", "leaf"))
        try:
            key = (_freeze(node.rule_key(vals)), diff, tuple(
                (np.shape(v), v.dtype.str if isinstance(v, np.ndarray) else type(v).__name__)
                for v in vals))
            hash(key)
        except Exception:  # noqa: BLE001 - a key that cannot be made: the node is checked
            continue
        groups.setdefault(key, []).append(node)
    rng = np.random.default_rng(seed + 101)
    out = []
    for members in groups.values():
        if len(members) <= NODES_PER_RULE:
            continue
        pick = np.zeros(len(members), bool)
        pick[rng.choice(len(members), NODES_PER_RULE, replace=False)] = True
        out.append(([n for n, p in zip(members, pick) if p],
                    [n for n, p in zip(members, pick) if not p]))
    return out


def _path(view: GraphView, node: Node) -> str:
    return " <- ".join(n.name() for n in view.path_to_output(node))


def _check_node(view: GraphView, node: Node, rng: np.random.Generator,
                use_mirror: bool, memo: dict | None = None) -> LocalFinding:
    path = _path(view, node)
    in_vals = view.input_values(node)
    srcs = view.sources[node]
    diff = [i for i, s in enumerate(srcs) if s.kind in ("node", "leaf")]
    try:
        outs = node_forward(node, in_vals)
    except Exception as e:  # noqa: BLE001 - the user's forward, re-run on its own inputs
        return LocalFinding(node, path, "skipped", True, note=f"forward could not be re-run: {e}")
    if any(np.iscomplexobj(a) for a in (*in_vals, *outs)):
        # the local comparisons are of real partials; a complex node (torch's fft,
        # view_as_complex, abs of a complex) is judged by the whole graph's real entries
        return LocalFinding(node, path, "skipped", True, note="complex values: judged by "
                            "the whole graph's comparison, not on their own")
    # no cotangent on outputs that carry no gradient (a layer norm's saved mean): a
    # backward rightly ignores them, while differences of v . forward would not
    v = [rng.standard_normal(o.shape) if node.output_differentiable(k) else np.zeros(o.shape)
         for k, o in enumerate(outs)]
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
    small = not use_mirror or rule_cost(node, in_vals) <= RULE_COST_CAP
    if not small:
        # (a traced forward would not be used: no trace of a large Function's forward)
        note = "local rule too large to build symbolically"
    elif missing := mirror_missing(node):
        note = missing
    elif use_mirror:
        try:
            return _symbolic(node, path, in_vals, diff, outs, v, got, rng, memo)
        except MirrorError as e:
            note = str(e).split(".")[0]
        except _MirrorMismatch as e:
            note = str(e)
    finding = _finite_differences(node, path, in_vals, diff, v, got, rng, outs)
    finding.note = "; ".join(x for x in (note, finding.note) if x)
    if not finding.ok and node.foreign and not finding.contract:
        # another library's derivative, by its convention: the whole graph judges it
        finding.ok = True
        finding.note = "; ".join(x for x in (finding.note, (
            f"{node.foreign}'s derivative differs from differences of its forward alone "
            f"(at {finding.input_name}{list(finding.element)}: {finding.got:.6g} against "
            f"{finding.expected:.6g}), as a convention may (a symmetric gradient for an op "
            f"reading one triangle); the whole-graph comparison decides")) if x)
        return finding
    if not finding.ok and finding.input_index >= 0 and not finding.contract:
        _own_derivative(finding, node, in_vals, diff, v, outs, None, np.dtype(np.float64))
    return finding


class _MirrorMismatch(ValueError):
    pass


#: elementwise registry ops are checked on a seeded sample of this many elements (their rule
#: is the same for every element; custom Functions are always checked in full)
LOCAL_SAMPLE = 256


def _symbolic(node: Node, path: str, in_vals: list, diff: list[int], outs: list[np.ndarray],
              v: list[np.ndarray], got: list[Any], rng: np.random.Generator,
              memo: dict | None = None) -> LocalFinding:
    shape = outs[0].shape
    if not node.user_code and node.elementwise and outs[0].size > LOCAL_SAMPLE and all(
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
    dtype = _working_dtype(node, in_vals, outs)
    try:
        ref = _reference(node, rule, in_vals, v, [o.shape for o in outs], memo)
    except (TypeError, ValueError, ArithmeticError, AttributeError) as e:
        if isinstance(e, MirrorError):
            raise
        raise MirrorError(f"the mirror of {node.name()} cannot be differentiated or "
                          f"evaluated: {type(e).__name__}: {e}") from None
    _check_mirror(node, ref, outs, dtype)
    kinks = ref.kinks
    worst = LocalFinding(node, path, "symbolic", True, dtype=str(dtype))
    if kinks:
        # at a kink any one-sided value is defensible: compare only where the rule is smooth
        if not rule.elementwise:
            worst.note = f"at a kink of {kinks[0][1]}: not compared"
            return worst
        worst.note = f"{len(kinks)} element(s) at a kink of {kinks[0][1]}: not compared"
        at = np.zeros(np.broadcast_shapes(*[np.shape(a) for a in ref.sym]), bool)
        for k in kinks:
            at[k[0]] = True
    for i in rule.diff_inputs:
        e = ref.expected_float(i, in_vals)
        g = got[i]
        if g is None:
            g = np.zeros_like(e)
        if g.shape != e.shape:
            return LocalFinding(node, path, "symbolic", False, i, _input_name(node, i),
                                note=f"gradient of shape {g.shape} for an input of shape "
                                     f"{e.shape}")
        tol = tolerance(dtype, ref.scale[i], ref.terms[i])
        if kinks and e.shape == at.shape:
            e, g = np.where(at, 0.0, e), np.where(at, 0.0, g)
        elif kinks:  # broadcast input: its entries mix kinked and smooth elements
            continue
        _compare(worst, node, i, e, g, tol)
    if not worst.ok:
        _classify(worst, node, rule, in_vals, diff, v, dtype, rng)
    if not worst.ok and worst.input_index >= 0:
        _own_derivative(worst, node, in_vals, diff, v, outs, rule, dtype)
    return worst


class _Reference:
    """The mirror's J^T v at one point, with the magnitudes a correct float VJP rounds
    against: ``scale`` = |J|^T |v|, ``terms`` = rounding magnitudes of the partials'
    expressions, accumulation and input sensitivity (see checker/compare.py)."""

    def __init__(self, rule: Any, sym: list, values: list, expected: dict, scale: dict,
                 terms: dict, sens: list, kinks: list) -> None:
        self.rule, self.sym, self.values, self.expected = rule, sym, values, expected
        self.scale, self.terms, self.sens, self.kinks = scale, terms, sens, kinks

    def expected_float(self, i: int, in_vals: list) -> np.ndarray:
        return np.array(self.expected[i].tolist(), dtype=float).reshape(np.shape(in_vals[i]))


def _reference(node: Node, rule: Any, in_vals: list, v: list[np.ndarray],
               out_shapes: list, memo: dict | None = None) -> _Reference:
    args = [None if x is None else (x if node.passes_values and
                                    not isinstance(x, np.ndarray) else to_mp(x))
            for x in in_vals]
    sym = [a for a, s in zip(args, rule.in_syms) if s is not None]
    with mpmath.workdps(30):
        values, partials, mags = _evaluate(rule, sym, memo)
        sens = _sensitivity(rule, sym, partials, out_shapes)
        expected, scale, terms = _jvp_t(rule, v, partials, mags, in_vals, sym, memo)
        kinks = [k for k in rule_switches(rule, sym, 0.0, 30) if k[5]]
    return _Reference(rule, sym, values, expected, scale, terms, sens, kinks)


def _working_dtype(node: Node, in_vals: list, outs: list[np.ndarray]) -> np.dtype:
    """The precision this node's forward and backward work in: the least precise of its
    inputs, outputs and (custom Functions) the gradients its backward returned."""
    dts = [x.dtype for x in in_vals if isinstance(x, np.ndarray) and x.dtype.kind in "fc"]
    dts += [o.dtype for o in outs if o.dtype.kind in "fc"]
    dts += [d for d in getattr(node, "_returned_dtypes", ()) if d is not None]
    return working_precision(dts)


def _check_mirror(node: Node, ref: _Reference, outs: list[np.ndarray], dtype: np.dtype) -> None:
    """The mirror must describe this forward, or its derivatives mean nothing here. A
    forward is only as exact as its dtype and its terms: a sum of float32 values that is 0
    exactly comes out as 6e-8, a log-softmax entry 40 - 40 as 0 instead of 5e-17."""
    u = unit_roundoff(dtype)
    for k, (mo, fo) in enumerate(zip(ref.values, outs)):
        m = np.array(mo.tolist(), dtype=float).reshape(fo.shape)
        big = max((float(np.max(np.abs(np.array(np.asarray(x, dtype=object).tolist(),
                                                   dtype=float)), initial=0.0))
                   for x in ref.sym), default=0.0)
        n = max(1, sum(int(np.size(x)) for x in ref.sym))
        with np.errstate(all="ignore"):
            tol = 1e-8 * (np.abs(fo) + ref.sens[k]) + \
                ROUNDING_FACTOR * u * (ref.sens[k] + big * math.sqrt(n) + np.abs(fo))
            bad = ~(np.abs(m - fo) <= tol + 1e-300) & ~(np.isnan(m) & np.isnan(fo)) & ~(m == fo)
        if np.any(bad):
            j = tuple(int(i) for i in np.argwhere(bad)[0])
            raise _MirrorMismatch(
                f"the symbolic mirror of {node.name()} does not match its forward (output "
                f"{k}{list(j)}: mirror {m[j]:.12g}, forward {fo[j]:.12g}); checked by "
                f"finite differences instead")


def _node_at(node: Node, in_vals: list, diff: list[int]) -> Node | None:
    """A fresh node of the same op (or custom Function) recorded at other input values."""
    from ..tensor import Tensor, _wrap, tensor

    args = []
    for i, x in enumerate(in_vals):
        if isinstance(x, np.ndarray):
            args.append(tensor(x, requires_grad=True) if i in diff and x.dtype.kind in "fc"
                        else _wrap(np.array(x)))
        else:
            args.append(x)
    with np.errstate(all="ignore"), enable_grad():
        out = node.rerun(args)
    outs = out if isinstance(out, tuple) else (out,)
    return next((o._grad_fn for o in outs if isinstance(o, Tensor) and o._grad_fn is not None),
                None)


def _classify(worst: LocalFinding, node: Node, rule: Any, in_vals: list, diff: list[int],
              v: list[np.ndarray], dtype: np.dtype, rng: np.random.Generator) -> None:
    """An error beyond the rounding bound is a wrong formula when it is the same function of
    the point at nearby points, and lost digits of a right formula when it scatters (see
    ``compare.lost_digits_or_wrong``). Measured at PROBES points ~1e-7 relative away."""
    i, j = worst.input_index, worst.element
    if i < 0 or worst.contract or not math.isfinite(worst.got - worst.expected):
        return
    errors = [(worst.got - worst.expected) / worst.tolerance]
    spread = PROBE_SPREAD.get(np.dtype(dtype), 1e-7)
    prng = np.random.default_rng(int(rng.integers(2**31)))
    for _ in range(PROBES):
        vals = []
        for k, x in enumerate(in_vals):
            if k in diff and isinstance(x, np.ndarray) and x.dtype.kind == "f":
                size = float(np.max(np.abs(x), initial=0.0)) or 1.0
                step = spread * np.where(x != 0, np.abs(x), size)
                vals.append((x + step * prng.standard_normal(x.shape)).astype(x.dtype))
            else:
                vals.append(x)
        try:
            fresh = _node_at(node, vals, diff)
            if fresh is None:
                return
            got = _vjp(fresh, v)
            outs = node_forward(node, vals)
            ref = _reference(node, rule, vals, v, [o.shape for o in outs])
        except Exception:  # noqa: BLE001 - a probe that cannot be run decides nothing
            return
        if ref.kinks or got[i] is None:
            return
        e = ref.expected_float(i, vals)[j]
        t = tolerance(dtype, np.asarray(ref.scale[i])[j], np.asarray(ref.terms[i])[j])
        errors.append((float(got[i][j]) - float(e)) / float(t))
    if lost_digits_or_wrong(errors) == "precision":
        lost = digits_lost(worst.max_abs_error, worst.expected or worst.tolerance, dtype)
        worst.ok = True
        at = np.asarray(in_vals[i])[j] if np.shape(in_vals[i]) == np.shape(ref.scale[i]) \
            and np.ndim(in_vals[i]) == len(j) else None
        worst.precision = (f"{node.name()}: a correct formula that loses {lost:.0f} digits at "
                           f"input {i} ({worst.input_name})"
                           f"{'[' + ', '.join(map(str, j)) + ']' if j else ''}"
                           f"{f' = {float(at):.6g}' if at is not None else ''}: its error "
                           f"{worst.max_abs_error:.3g} exceeds rounding ({worst.tolerance:.3g}) "
                           f"but scatters in sign and size between nearby points")
        worst.slack = max(max(abs(x) for x in errors), worst.slack) * 2.0
    else:
        worst.note = "; ".join(x for x in (worst.note, (
            f"the error is the same at {len(errors) - 1} points within {spread:g} relative: "
            f"a wrong formula, not rounding")) if x)


#: a failing element's own derivative is looked for among at most this many output elements
OWN_CANDIDATES = 16


def _own_derivative(worst: LocalFinding, node: Node, in_vals: list, diff: list[int],
                    v: list[np.ndarray], outs: list[np.ndarray], rule: Any,
                    dtype: np.dtype) -> None:
    """The failing element's own derivative, for the message: the local check compares
    ``v . J`` for a random cotangent ``v`` (one pass finds any wrong entry), which is not a
    number the user can look up. Each output element k (a few) is tried with a one-hot
    cotangent; the one where the backward is most wrong is reported."""
    i, j = worst.input_index, worst.element
    sizes = [int(np.size(o)) for o in outs]
    total = sum(sizes)
    worst.projected = True
    if total == 1:
        c = float(np.asarray(v[0]).reshape(-1)[0])
        if c:
            worst.own = (None, worst.expected / c, worst.got / c, worst.tolerance / abs(c))
        return
    same = len(outs) == 1 and np.shape(outs[0]) == np.shape(in_vals[i])
    flat_j = int(np.ravel_multi_index(j, np.shape(in_vals[i]))) if j else 0
    candidates = [flat_j] if same else list(range(total)) if total <= OWN_CANDIDATES else []
    bounds = np.cumsum([0] + sizes)
    best = None
    for k in candidates:
        o = int(np.searchsorted(bounds, k, side="right") - 1)
        onehot = [np.zeros(np.shape(x)) for x in outs]
        onehot[o].reshape(-1)[k - bounds[o]] = 1.0
        try:
            got = _vjp(node, onehot)[i]
            g = 0.0 if got is None else float(np.asarray(got)[j])
            if rule is not None:
                ref = _reference(node, rule, in_vals, onehot, [np.shape(x) for x in outs])
                e = float(ref.expected_float(i, in_vals)[j])
                t = float(tolerance(dtype, np.asarray(ref.scale[i])[j],
                                    np.asarray(ref.terms[i])[j]))
            else:
                e, t = _fd_element(node, in_vals, i, j, onehot)
        except Exception:  # noqa: BLE001 - the message then shows the projection only
            return
        ratio = abs(g - e) / max(t, 1e-300)
        if best is None or ratio > best[0]:
            label = tuple(j) if same else (
                (o,) if len(outs) > 1 else ()) + tuple(
                int(x) for x in np.unravel_index(k - bounds[o], np.shape(outs[o])))
            best = (ratio, label, e, g, t)
    if best is not None and best[0] > 1:
        worst.own = best[1:]


def _fd_element(node: Node, in_vals: list, i: int, j: tuple, onehot: list[np.ndarray]
                ) -> tuple[float, float]:
    x0 = np.asarray(in_vals[i], dtype=float).reshape(-1)
    # differences along one entry: of s restricted to it (the same numbers, FD's own work
    # on one entry instead of all of them)
    one = np.array([int(np.ravel_multi_index(j, np.shape(in_vals[i]))) if j else 0])
    est = fd.derivative(restricted(_projected(node, in_vals, i, onehot), x0, one), x0[one],
                        np.ones(1))
    e = float(est.value[0])
    return e, FD_SAFETY * float(est.error[0]) + EPS64 * SAFETY * abs(e)


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


def _evaluate(rule: Any, sym: list, memo: dict | None = None) -> tuple[list, list, list]:
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
    res = evaluate_full(rule, flat, memo)
    values, pos = [], 0
    for o in rule.outs:
        arr = np.empty(o.shape, dtype=object)
        arr.reshape(-1)[:] = list(res[pos:pos + o.size])
        values.append(arr)
        pos += o.size
    return values, list(res[pos:]), []


def _jvp_t(rule: Any, v: list[np.ndarray], parts: list, mags: list, in_vals: list,
           sym_args: list, memo: dict | None = None) -> tuple[dict, dict, dict]:
    """J^T v per input in high precision, ``|J|^T |v|`` and the other rounding magnitudes
    (``terms``, same units) a correct float VJP may be off by, per unit roundoff."""
    expected, scale, terms = {}, {}, {}
    if rule.elementwise:
        from ..symbolic.exact import _sum_to, _sum_to_float

        g = to_mp(v[0])
        ag = np.abs(v[0])
        for k, i in enumerate(rule.diff_inputs):
            shape = np.shape(in_vals[i])
            expected[i] = _sum_to(g * parts[k], shape)
            p = np.abs(np.array(np.asarray(parts[k], dtype=object).tolist(), dtype=float))
            scale[i] = _sum_to_float(ag * p, shape)
            # a broadcast input sums many products: one rounding per term
            fan_in = np.prod(ag.shape) / max(np.prod(shape), 1)
            terms[i] = _sum_to_float(ag * mags[k] + ag * p, shape) + scale[i] * fan_in
        return expected, scale, terms
    sym_flat = [x for i, a in enumerate(sym_args) for x in np.asarray(a, dtype=object).reshape(-1)]
    sizes = {i: int(np.size(in_vals[i])) for i in rule.diff_inputs}
    q, b = vjp_with_bound(rule, sym_flat, parts, [to_mp(c) for c in v], sizes, 1.0, memo=memo)
    flat_v = [np.abs(np.asarray(c, dtype=float)).reshape(-1) for c in v]
    for i in rule.diff_inputs:
        scale[i] = np.zeros(sizes[i])
    for (k, j, i, m), p in zip(rule.jac_index, parts):
        scale[i][m] += flat_v[k][j] * float(abs(p))
    for i in rule.diff_inputs:
        shape = np.shape(in_vals[i])
        expected[i] = q[i].reshape(shape)
        terms[i] = np.maximum(b[i] - scale[i], 0.0).reshape(shape)
        scale[i] = scale[i].reshape(shape)
    return expected, scale, terms


def _compare(worst: LocalFinding, node: Node, i: int, expected: np.ndarray, got: np.ndarray,
             tol: np.ndarray) -> None:
    with np.errstate(all="ignore"):
        err = np.abs(got - expected)
        both_inf = np.isinf(got) & np.isinf(expected) & (np.sign(got) == np.sign(expected))
        err = np.where(both_inf, 0.0, err)
        err = np.where(np.isnan(err), np.inf, err)
        excess = err - tol
        ratio = float(np.max(err / np.maximum(tol, 1e-300), initial=0.0))
    if math.isfinite(ratio):
        worst.slack = max(worst.slack, ratio)
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


def _node_magnitude(node: Node, in_vals: list, outs: list | None = None) -> float:
    """The largest value a node's forward is made of: its inputs and outputs (``outs``, the
    forward's at ``in_vals``, when known), and for a traced custom forward its intermediates
    too."""
    big = 0.0
    vals = list(in_vals)
    try:
        vals += node_forward(node, in_vals) if outs is None else list(outs)
    except Exception:  # noqa: BLE001 - the forward's failure is reported elsewhere
        pass
    for v in vals:
        if isinstance(v, (np.ndarray, float, int, np.floating)) and np.size(v) and \
                np.asarray(v).dtype.kind in "fiu":
            a = np.abs(np.asarray(v, dtype=float))
            big = max(big, float(np.max(a[np.isfinite(a)], initial=0.0)))
    t = trace_of(node) if node.user_code else None
    if t is not None and not isinstance(t, str) and t.view is not None:
        big = max(big, graph_magnitude(t.view))
    return big


def _finite_differences(node: Node, path: str, in_vals: list, diff: list[int],
                        v: list[np.ndarray], got: list[Any], rng: np.random.Generator,
                        outs: list[np.ndarray] | None = None) -> LocalFinding:
    """``v . forward(inputs)`` differentiated along each coordinate (small inputs) or along
    random directions with bisection down to the wrong coordinates (large ones)."""
    worst = LocalFinding(node, path, "finite-differences", True)
    rounding = None
    for i in diff:
        x0 = np.asarray(in_vals[i], dtype=float)
        s = _projected(node, in_vals, i, v)
        g = got[i] if got[i] is not None else np.zeros(x0.shape)
        flat = x0.reshape(-1)
        gflat = g.reshape(-1)
        if flat.size <= 32:
            if rounding is None:
                # each evaluation of v . forward rounds against the magnitudes it is made
                # of, which a confident-looking difference of a flat function does not show
                rounding = ROUNDING_FACTOR * EPS64 * _node_magnitude(node, in_vals, outs) * \
                    sum(float(np.sum(np.abs(c))) for c in v)
            ests = fd.partials(s, flat, range(flat.size))
            exp = np.array([e.value[0] for e in ests])
            steps = np.array([e.step for e in ests])
            with np.errstate(divide="ignore"):
                seen = np.where(steps > 0, rounding / np.where(steps > 0, steps, 1.0), 0.0)
            tol = FD_SAFETY * np.array([e.error[0] for e in ests]) + seen + \
                EPS64 * SAFETY * (np.abs(exp) + 1e-300)
            kinked = _kinks_by_fd(s, flat, gflat, exp, tol)
            if kinked:
                exp = exp.copy()
                for j, (left, right) in kinked.items():
                    exp[j] = gflat[j]  # any value between the sides is a valid subgradient
                worst.note = "; ".join(x for x in (worst.note, (
                    f"{len(kinked)} element(s) of input {i} at a kink (one-sided differences "
                    f"{', '.join(f'{l:.6g}..{r:.6g}' for l, r in list(kinked.values())[:3])}): "
                    f"not compared")) if x)
            _compare(worst, node, i, exp.reshape(x0.shape), g, tol.reshape(x0.shape))
            continue
        bad = _locate(s, flat, gflat, rng, _entrywise(node, in_vals, i, v, outs))
        if bad:
            j, exp_j, err_j, tol_j = bad
            idx = tuple(int(k) for k in np.unravel_index(j, x0.shape))
            worst.ok = False
            worst.input_index, worst.input_name, worst.element = i, _input_name(node, i), idx
            worst.expected, worst.got = exp_j, float(g[idx])
            worst.max_abs_error, worst.tolerance = err_j, tol_j
    return worst


def _projected(node: Node, in_vals: list, i: int, v: list[np.ndarray]) -> Any:
    """``x -> [v . forward(inputs with input i = x)]`` on flat float vectors. Each product
    ``c * o`` is formed in one buffer made once (the same numbers as ``np.sum(c * o)``, without
    a fresh array per evaluation: at 1e6 entries the kernel's page faults for it cost as
    much as the product)."""
    shape = np.shape(in_vals[i])
    bufs: dict = {}

    def s(x: np.ndarray) -> np.ndarray:
        vals = list(in_vals)
        vals[i] = x.reshape(shape)
        total = 0.0
        for k, (c, o) in enumerate(zip(v, node_forward(node, vals))):
            o = np.asarray(o)
            if o.shape == c.shape and o.size > 4096 and o.dtype.kind in "fiu":
                buf = bufs.get(k)
                if buf is None:
                    buf = bufs[k] = np.empty(c.shape)
                total += float(np.sum(np.multiply(c, o, out=buf)))
            else:
                total += float(np.sum(c * o))
        return np.array([total])

    return s


def _entrywise(node: Node, in_vals: list, i: int, v: list[np.ndarray],
               outs: list[np.ndarray] | None) -> Any:
    """For a built-in elementwise node without broadcasting (each array input the output's
    shape, or 0-d), ``coords -> s_B``: ``v . forward`` over the entries ``coords`` alone,
    as a function of input i there, run on those entries only. The op declares that output
    entry k depends on input entries k alone, so a block's differences need no forward of
    the other entries (which cancel exactly in them); a custom Function declares no such
    thing and is run in full. None where it does not apply."""
    if node.user_code or not node.elementwise or outs is None or len(outs) != 1 or \
            len(v) != 1:
        return None
    shape = outs[0].shape
    if not all(not isinstance(a, np.ndarray) or a.shape == shape or a.ndim == 0
               for a in in_vals):
        return None
    flat_in = [a.reshape(-1) if isinstance(a, np.ndarray) and a.ndim else a for a in in_vals]
    c = v[0].reshape(-1)

    def on(coords: np.ndarray) -> Any:
        part = [a[coords] if isinstance(a, np.ndarray) and a.ndim else a for a in flat_in]
        cb = c[coords]

        def sb(z: np.ndarray) -> np.ndarray:
            vals = list(part)
            vals[i] = z
            o = np.asarray(node_forward(node, vals)[0]).reshape(-1)
            return np.array([float(np.sum(cb * o))])
        return sb
    return on


def restricted(s: Any, x: np.ndarray, coords: np.ndarray) -> Any:
    """``s`` as a function of ``x[coords]`` alone, the other entries held at ``x``: the same
    values of ``s`` along a direction supported on ``coords``, while FD's own work (the
    points, the realized steps, the scale) is proportional to ``coords``, not to ``x``.
    The full point is written into one buffer, made once (a fresh copy of a 1e6-entry ``x``
    per evaluation cost page faults like a forward's): ``s`` must neither keep nor change
    its argument, as the node checks' (a Function's forward runs on a copy; a built-in op
    reads its inputs) and the checker's (``Problem.flat`` makes fresh tensors) do not."""
    full = x.copy()

    def sb(z: np.ndarray) -> np.ndarray:
        full[coords] = z
        return s(full)
    return sb


def graph_magnitude(view: GraphView) -> float:
    """The largest finite value the forward is made of (leaves, constants, intermediates):
    ``lse(z) - z[3]`` at z[3] = 40 rounds against 40, though its value is 1e-17."""
    big = 0.0
    for node in view.nodes:
        for v in view.input_values(node):
            big = _largest(v, big)
    for o in view.outputs:
        big = _largest(o._data, big)
    return big


def _largest(v: Any, big: float) -> float:
    """max(big, the largest finite |entry| of a real value v); a 0-d value (each of a deep
    scalar chain's) without numpy's reductions."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "fiu" or not v.size:
            return big
        if v.ndim == 0:
            a = abs(float(v))
            return a if big < a < math.inf else big
        a = np.abs(np.asarray(v, dtype=float))
        return max(big, float(np.max(a[np.isfinite(a)], initial=0.0)))
    if isinstance(v, (float, int, np.floating)) and np.asarray(v).dtype.kind in "fiu":
        a = abs(float(np.asarray(v, dtype=float)))
        return a if big < a < math.inf else big
    return big


def _kinks_by_fd(s: Any, x: np.ndarray, g: np.ndarray, exp: np.ndarray, tol: np.ndarray
                 ) -> dict[int, tuple[float, float]]:
    """Elements where the backward disagrees with central differences because the forward
    has a kink there: left and right one-sided differences disagree beyond their errors,
    and the backward's value lies between them (a subgradient). Without a mirror this is
    the only way to see a kink; a value outside both sides is still wrong."""
    found = {}
    with np.errstate(all="ignore"):
        bad = np.flatnonzero(~(np.abs(g - exp) <= tol))
    for j in bad[:32]:
        d = np.zeros_like(x)
        d[j] = 1.0
        left, right = fd.one_sided(s, x, d)
        if not fd.is_kink(left, right, FD_SAFETY)[0]:
            continue
        lv, rv = float(left.value[0]), float(right.value[0])
        allow = FD_SAFETY * float(left.error[0] + right.error[0]) + \
            EPS64 * SAFETY * (abs(lv) + abs(rv))
        if min(lv, rv) - allow <= g[j] <= max(lv, rv) + allow:
            found[int(j)] = (lv, rv)
    return found


#: a large input's entries are first split into this many seeded random blocks, each held
#: against FD on its own, so one wrong entry among 1e6 is not lost in the allowance for the
#: others (as the whole-graph comparison does, checker/core.py's GROUP_BLOCKS)
LOCAL_BLOCKS = 8


def _locate(s: Any, x: np.ndarray, g: np.ndarray, rng: np.random.Generator,
            entrywise: Any = None) -> tuple | None:
    """A coordinate where the tape gradient disagrees with FD of ``s``: seeded random
    blocks, each projected on a +-1 direction and halved while it disagrees. ``s``'s
    rounding is measured (every input nudged by one ulp, four times), not bounded: the
    bound grows with the number of terms, the real rounding of a sum of a million terms
    far less.

    Every difference is taken on ``s`` restricted to the entries its direction moves
    (``restricted``), from the one ``s(x)`` computed here: each evaluation is one forward
    of the node, and FD's own work on a block (and on each half of a bisection) is
    proportional to the block. ``entrywise`` (``_entrywise``): a built-in elementwise
    node's blocks are run on their own entries alone, so all of its work is."""
    s0 = np.asarray(s(x), dtype=float).reshape(-1)
    noise = float(fd.rounding_noise(s, x, rng, base=s0)[0])
    if entrywise is None:
        def sub(c: np.ndarray) -> tuple:
            return restricted(s, x, c), s0
    else:
        def sub(c: np.ndarray) -> tuple:
            sb = entrywise(c)
            return sb, np.asarray(sb(x[c]), dtype=float).reshape(-1)
    order = rng.permutation(x.size)
    step: list = [None]  # the first block's step serves the others (alike: random blocks)
    mark = np.zeros(x.size, bool)
    for block in np.array_split(order, min(LOCAL_BLOCKS, x.size)):
        # the block's entries ascending, by a mask (a sort of 1e5 indices cost 10x more)
        mark[block] = True
        coords = np.flatnonzero(mark)
        mark[block] = False
        found = _bisect(sub, x, g, coords, rng, 8 * noise, step)
        if found:
            return found
    return None


def _bisect(sub: Any, x: np.ndarray, g: np.ndarray, coords: np.ndarray,
            rng: np.random.Generator, rounding: float, first_step: list) -> tuple | None:
    """Find a coordinate where the tape gradient disagrees with FD, projecting on a random
    +-1 direction supported on ``coords`` and halving: a single wrong entry among 1e6 is
    found in ~20 rounds, never diluted by the others. With +-1 signs the tape's side of a
    projection is an exact sum (fsum), so the allowance is FD's: its error estimate and
    ``s``'s ``rounding`` over the step. A half is differenced at its block's step (no new
    step search), and the other half's disagreement is the block's minus the first's (the
    derivative is linear in the direction). ``first_step``: [the step of an earlier block
    of the same input, or None], filled in by the first block. ``sub(c)``: (s as a
    function of the entries ``c`` alone, its value at x)."""
    signs = rng.choice((-1.0, 1.0), coords.size)

    def project(part: slice, eps: float | None) -> tuple[float, float, float] | None:
        """(FD minus tape, allowance, step) along the signs on ``coords[part]``."""
        c = coords[part]
        sc, s0 = sub(c)
        est = fd.derivative(sc, x[c], signs[part], eps=eps, fx=s0)
        if not est.step > 0 or not np.isfinite(est.value[0]):
            return None
        value = float(est.value[0])
        tape = math.fsum((g[c] * signs[part]).tolist())
        tol = FD_SAFETY * (float(est.error[0]) + rounding / est.step) + EPS64 * SAFETY * (
            float(np.sum(np.abs(g[c]))) + abs(value))
        return value - tape, tol, est.step

    whole = project(slice(None), first_step[0])
    if whole is not None and first_step[0] is None:
        first_step[0] = whole[2]
    if whole is None or abs(whole[0]) <= whole[1]:  # this block agrees: nothing to find
        return None
    lo, hi = 0, coords.size
    gap, tol, step = whole
    while hi - lo > 1:
        mid = (lo + hi) // 2
        first = project(slice(lo, mid), step)
        if first is None:
            return None
        rest = (gap - first[0], tol + first[1])
        if abs(first[0]) > first[1]:
            hi, (gap, tol) = mid, first[:2]
        elif abs(rest[0]) > rest[1]:
            lo, (gap, tol) = mid, rest
        else:
            return None  # spread over both halves: no single entry to name
    j = int(coords[lo])
    one = np.array([j])
    sj, s0 = sub(one)
    est = fd.derivative(sj, x[one], np.ones(1), fx=s0)
    err = abs(float(est.value[0]) - g[j])
    tol_j = FD_SAFETY * float(est.error[0]) + EPS64 * SAFETY * abs(g[j])
    if err > tol_j and _kinks_by_fd(sj, x[one], g[one], np.array([est.value[0]]),
                                    np.array([tol_j])):
        return None  # a kink, and the backward gives a subgradient there
    return (j, float(est.value[0]), err, tol_j) if err > tol_j else None
