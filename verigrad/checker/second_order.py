"""Second order: every node's double backward (``create_graph=True`` through its backward)
against the second derivatives of its own mirror, like ``torch.autograd.gradgradcheck``.

For one node with inputs ``x`` and a seeded cotangent ``v``, its backward is the function
``G(x, v) = J(x)^T v``. Differentiating ``w . G`` along a seeded direction ``w`` gives two
things the double backward must get right: ``d/dx = sum_k v_k H_k w`` (a Hessian-vector
product) and ``d/dv = J w``. The tape's numbers come from running the node's forward on fresh
leaves and calling ``vg.autograd.grad`` twice; the references from the node's local rule
(``sympy.diff`` partials of its mirror, never a VJP): ``J w`` exactly, and ``H w`` as a
central difference of the exact ``J^T v`` at twice the working precision, whose truncation
error (``h**2``) and cancellation (``10**-dps / h``) are both far below float64's rounding.
A node without a mirror is checked against finite differences of its own float backward.

Checking node by node names the culprit: a custom Function whose backward is right but
whose backward is not differentiable (numpy inside, or a wrong formula on the second pass)
fails here with its grad_fn name, input and element.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from ..autograd.engine import grad as autograd_grad
from ..autograd.grad_mode import enable_grad
from ..autograd.node import Node
from ..errors import VerigradError
from ..symbolic.exact import EPS64, SAFETY, to_mp
from ..symbolic.graph import GraphView
from ..symbolic.kinks import rule_switches
from ..symbolic.local import MirrorError, _freeze, rule_for
from ..tensor import Tensor, tensor
from . import finite_diff as fd
from .local import FD_SAFETY, RULE_COST_CAP, LocalFinding, _input_name, _path, rule_cost
from .problem import CheckInputError
from .report import CheckReport, Culprit, NodeResult

__all__ = ["check_second_order", "extend_report", "SecondOrderFinding", "ORDERS"]

#: the derivative orders ``vg.check(order=...)`` knows
ORDERS = (1, 2)


@dataclass
class SecondOrderFinding(LocalFinding):
    """A node's double backward against its reference; ``wrt`` says which part failed:
    ``"input"`` (d/dx: the Hessian-vector product) or ``"grad_output"`` (d/dv: ``J w``)."""

    wrt: str = "input"


def _rerun(node: Node, in_vals: list, diff: list[int]) -> tuple[list, list]:
    """The node's forward on fresh float64 leaves for its differentiable inputs, with grad
    on; returns (arguments, live outputs)."""
    args: list[Any] = []
    inputs = getattr(node, "_inputs", ())
    for i, v in enumerate(in_vals):
        if i in diff:
            args.append(tensor(np.array(v, dtype=np.float64), requires_grad=True))
        elif node.passes_values and not isinstance(inputs[i], Tensor):
            args.append(v)  # a non-tensor argument of a custom Function
        elif v is None or not isinstance(v, np.ndarray):
            args.append(v)
        else:
            args.append(tensor(v))
    with enable_grad(), np.errstate(all="ignore"):
        out = node.rerun(args)
    outs = list(out) if isinstance(out, tuple) else [out]
    return args, [o for o in outs if isinstance(o, Tensor) and o.requires_grad]


def _tape_second(node: Node, in_vals: list, diff: list[int], v: list[np.ndarray],
                 w: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """(d(w.G)/dx per diff input, d(w.G)/dv per output, whether backward built a graph)."""
    args, outs = _rerun(node, in_vals, diff)
    xs = [args[i] for i in diff]
    vs = [tensor(c, requires_grad=True) for c in v]
    with enable_grad(), np.errstate(all="ignore"):
        g = autograd_grad(outs, xs, vs, create_graph=True, allow_unused=True)
        terms = [(gi * tensor(wi)).sum() for gi, wi in zip(g, w)
                 if gi is not None and gi.requires_grad]
        if not terms:
            return [np.zeros(np.shape(x._data)) for x in xs], \
                [np.zeros(c.shape) for c in v], False
        s = terms[0]
        for t in terms[1:]:
            s = s + t
        d = autograd_grad(s, xs + vs, allow_unused=True)
    flat = [np.zeros(np.shape(t._data)) if r is None else np.asarray(r._data, dtype=float)
            for t, r in zip(xs + vs, d)]
    return flat[:len(xs)], flat[len(xs):], True


def _mirror_second(node: Node, in_vals: list, diff: list[int], v: list[np.ndarray],
                   w: list[np.ndarray], dps: int, rng: np.random.Generator
                   ) -> tuple[list, list, list, list]:
    """References (H w per input, J w per output) and their rounding bounds."""
    rule = rule_for(node, in_vals, diff)
    if rule.elementwise:
        # elementwise rules broadcast entry by entry: those ops go to finite differences
        raise MirrorError("elementwise")
    full = rule.full_fn()
    n_out = sum(o.size for o in rule.outs)
    sizes = {i: int(np.size(in_vals[i])) for i in rule.diff_inputs}
    flat_v = [[mpmath.mpf(float(c)) for c in np.asarray(ck).reshape(-1)] for ck in v]
    w_of = {i: np.asarray(w[diff.index(i)], dtype=float).reshape(-1) for i in rule.diff_inputs}
    sym_pos = [i for i, s in enumerate(rule.in_syms) if s is not None]
    eps = EPS64 * SAFETY
    with mpmath.workdps(2 * dps + 10):
        x_mp = {i: list(to_mp(in_vals[i]).reshape(-1)) for i in sym_pos}
        n_in = sum(len(x_mp[i]) for i in sym_pos)
        scale = max([abs(float(a)) for i in sym_pos for a in x_mp[i]] + [1.0])
        h = mpmath.mpf(10) ** -dps * scale

        def parts_at(shift: Any, direction: dict, rel: Any = None) -> list:
            flat = []
            for i in sym_pos:
                for m, a in enumerate(x_mp[i]):
                    b = a if rel is None else a * (1 + rel[len(flat)])
                    flat.append(b + shift * mpmath.mpf(direction[i][m]) if i in direction else b)
            return full(*flat)[n_out:]

        def dparts(direction: dict, rel: Any = None) -> list:
            """Directional derivatives of every nonzero partial, by a central difference."""
            up, down = parts_at(h, direction, rel), parts_at(-h, direction, rel)
            return [(a - b) / (2 * h) for a, b in zip(up, down)]

        def chain(dp: list, absolute: bool = False) -> dict:
            out = {i: np.zeros(sizes[i]) if absolute else
                   np.full(sizes[i], mpmath.mpf(0), dtype=object) for i in rule.diff_inputs}
            for (k, j, i, m), d in zip(rule.jac_index, dp):
                if absolute:
                    out[i][m] += abs(float(flat_v[k][j])) * abs(float(d))
                else:
                    out[i][m] += flat_v[k][j] * d
            return out

        ref = chain(dparts(w_of))
        # rounding bound of a correct float double backward: accumulation over its terms
        # (their size sampled along |w| with random signs, times sqrt(n) as in
        # ``vjp_with_bound``), and the sensitivity to one rounding of every input
        mag = {i: np.zeros(sizes[i]) for i in ref}
        sens = {i: np.zeros(sizes[i]) for i in ref}
        delta = mpmath.mpf(10) ** -(dps // 2)
        for _ in range(2):
            signed = {i: np.abs(wi) * rng.choice((-1.0, 1.0), size=wi.size)
                      for i, wi in w_of.items()}
            a = chain(dparts(signed), absolute=True)
            rel = [delta * int(s) for s in rng.choice((-1, 1), size=n_in)]
            moved = chain(dparts(w_of, rel))
            for i in ref:
                mag[i] = np.maximum(mag[i], a[i])
                sens[i] = np.maximum(sens[i], [abs(float((p - q) / delta))
                                               for p, q in zip(moved[i], ref[i])])
        parts = full(*[a for i in sym_pos for a in x_mp[i]])[n_out:]
        jw = [np.full(o.size, mpmath.mpf(0), dtype=object) for o in rule.outs]
        jw_mag = [np.zeros(o.size) for o in rule.outs]
        counts = {i: np.zeros(sizes[i]) for i in rule.diff_inputs}
        out_counts = [np.zeros(o.size) for o in rule.outs]
        # a VJP formula may take a route through terms the mirror's partial does not have
        # (prod's out/x at one entry: its second derivative cancels to 0 only in exact
        # arithmetic); such terms scale like |v| |J| |w| / |x|
        route = {i: np.zeros(sizes[i]) for i in rule.diff_inputs}
        for (k, j, i, m), p in zip(rule.jac_index, parts):
            jw[k][j] += p * mpmath.mpf(w_of[i][m])
            jw_mag[k][j] += abs(float(p)) * abs(w_of[i][m])
            counts[i][m] += 1
            out_counts[k][j] += 1
            route[i][m] += abs(float(flat_v[k][j])) * abs(float(p))
        for i in route:
            x_abs = np.abs(np.array([float(a) for a in x_mp[i]]))
            route[i] *= float(np.max(np.abs(w_of[i]), initial=0.0)) / np.maximum(
                x_abs, math.sqrt(EPS64) * scale)
    root = math.sqrt(n_in)
    hx, hx_tol = [], []
    for i in diff:
        if i not in ref:
            hx.append(np.zeros(np.shape(in_vals[i])))
            hx_tol.append(np.zeros(np.shape(in_vals[i])))
            continue
        r = np.array([float(a) for a in ref[i]])
        tol = eps * ((counts[i] + 2) * (np.abs(r) + root * mag[i] + route[i]) + root * sens[i])
        hx.append(r.reshape(np.shape(in_vals[i])))
        hx_tol.append(tol.reshape(np.shape(in_vals[i])))
    jv, jv_tol = [], []
    for k, o in enumerate(rule.outs):
        r = np.array([float(a) for a in jw[k]])
        jv.append(r.reshape(o.shape))
        jv_tol.append((eps * (out_counts[k] + 2) * (np.abs(r) + jw_mag[k])).reshape(o.shape))
    return hx, hx_tol, jv, jv_tol


def _fd_second(node: Node, in_vals: list, diff: list[int], v: list[np.ndarray],
               w: list[np.ndarray]) -> tuple[list, list, list, list]:
    """References from finite differences of the node's own float backward (H w) and forward
    (J w) along ``w``: torch's gradgradcheck, for nodes without a mirror."""
    shapes = [np.shape(in_vals[i]) for i in diff]
    sizes = [int(np.prod(s)) for s in shapes]
    x0 = np.concatenate([np.asarray(in_vals[i], dtype=float).reshape(-1) for i in diff])
    d = np.concatenate([np.asarray(wi, dtype=float).reshape(-1) for wi in w])

    def split(z: np.ndarray) -> list:
        vals = list(in_vals)
        pos = 0
        for i, s, n in zip(diff, shapes, sizes):
            vals[i] = z[pos:pos + n].reshape(s)
            pos += n
        return vals

    def backward(z: np.ndarray) -> np.ndarray:
        args, outs = _rerun(node, split(z), diff)
        g = autograd_grad(outs, [args[i] for i in diff], [tensor(c) for c in v],
                          allow_unused=True)
        return np.concatenate([np.zeros(n) if r is None else np.asarray(r._data, float)
                               .reshape(-1) for r, n in zip(g, sizes)])

    def forward(z: np.ndarray) -> np.ndarray:
        _, outs = _rerun(node, split(z), diff)
        return np.concatenate([np.asarray(o._data, float).reshape(-1) for o in outs])

    hb = fd.derivative(backward, x0, d)
    fw = fd.derivative(forward, x0, d)
    hx, hx_tol, pos = [], [], 0
    for s, n in zip(shapes, sizes):
        hx.append(hb.value[pos:pos + n].reshape(s))
        hx_tol.append(FD_SAFETY * hb.error[pos:pos + n].reshape(s))
        pos += n
    jv, jv_tol, pos = [], [], 0
    for c in v:
        jv.append(fw.value[pos:pos + c.size].reshape(c.shape))
        jv_tol.append(FD_SAFETY * fw.error[pos:pos + c.size].reshape(c.shape))
        pos += c.size
    return hx, hx_tol, jv, jv_tol


def _check_node(view: GraphView, node: Node, rng: np.random.Generator, dps: int,
                use_mirror: bool) -> SecondOrderFinding | None:
    in_vals = view.input_values(node)
    srcs = view.sources[node]
    diff = [i for i, s in enumerate(srcs) if s.kind in ("node", "leaf")
            and isinstance(in_vals[i], np.ndarray) and in_vals[i].dtype.kind == "f"]
    path = _path(view, node)
    if not diff:
        return None
    try:
        _, outs = _rerun(node, in_vals, diff)
    except Exception as e:  # noqa: BLE001 - the user's forward, re-run on its own inputs
        return SecondOrderFinding(node, path, "skipped", True,
                                  note=f"forward could not be re-run: {e}")
    switch = _near_switch(node, in_vals, diff, dps)
    if switch:  # second derivatives of relu at 0 are not a number to compare
        return SecondOrderFinding(node, path, "skipped", True,
                                  note=f"at a kink of {switch}: not compared")
    v = [rng.standard_normal(o.shape) for o in outs]
    w = [rng.standard_normal(np.shape(in_vals[i])) for i in diff]
    try:
        hx_t, jv_t, graphed = _tape_second(node, in_vals, diff, v, w)
    except VerigradError as e:
        return SecondOrderFinding(node, path, "second-order", False, contract=(
            f"{node.name()}: backward with create_graph=True failed: {e}"))
    method, note = "second-order symbolic", ""
    try:
        if not use_mirror or rule_cost(node, in_vals) > RULE_COST_CAP:
            raise MirrorError("no mirror used")
        hx_r, hx_tol, jv_r, jv_tol = _mirror_second(node, in_vals, diff, v, w, dps, rng)
    except (MirrorError, ValueError, ArithmeticError):
        method = "second-order finite-differences"
        note = "no symbolic mirror: finite differences of its own backward"
        hx_r, hx_tol, jv_r, jv_tol = _fd_second(node, in_vals, diff, v, w)
    finding = SecondOrderFinding(node, path, method, True, note=note)
    worst = -1.0
    candidates = [("input", diff[k], t, r, tol) for k, (t, r, tol) in
                  enumerate(zip(hx_t, hx_r, hx_tol))]
    candidates += [("grad_output", k, t, r, tol) for k, (t, r, tol) in
                   enumerate(zip(jv_t, jv_r, jv_tol))]
    for wrt, i, t, r, tol in candidates:
        with np.errstate(all="ignore"):
            err = np.abs(t - r)
            tol = tol + 1e-300
            ratio = np.where(np.isfinite(r), err / tol, 0.0)
            ratio = np.where(np.isfinite(r) & ~np.isfinite(t), np.inf, ratio)
        if not ratio.size:
            continue
        j = int(np.argmax(ratio))
        score = float(ratio.reshape(-1)[j])
        if score > worst:
            worst = score
            idx = np.unravel_index(j, np.shape(t)) if np.ndim(t) else ()
            finding.wrt, finding.input_index = wrt, i
            finding.input_name = _input_name(node, i) if wrt == "input" else f"grad_output {i}"
            finding.element = tuple(int(a) for a in idx)
            finding.expected = float(np.asarray(r).reshape(-1)[j])
            finding.got = float(np.asarray(t).reshape(-1)[j])
            finding.max_abs_error = float(err.reshape(-1)[j])
            finding.tolerance = float(np.asarray(tol).reshape(-1)[j])
            finding.ok = score <= 1.0
    if not finding.ok and finding.wrt == "input" and (not graphed or not np.any(
            hx_t[diff.index(finding.input_index)])):
        finding.note = ("its double backward is exactly zero: backward computes through numpy "
                        "(.numpy(), vg.tensor(...)) or detached tensors, which the tape cannot "
                        "differentiate; write backward with verigrad ops")
    return finding


def _near_switch(node: Node, in_vals: list, diff: list[int], dps: int) -> str | None:
    """The switch (Max, Abs, ...) of the node's first-order rule within the first-order
    check's radius of the point, or None (also for a node without a mirror)."""
    try:
        rule = rule_for(node, in_vals, diff)
        args = [to_mp(x) if isinstance(x, np.ndarray) else x for x in in_vals]
        sym_args = [a for a, sym in zip(args, rule.in_syms) if sym is not None]
        found = rule_switches(rule, sym_args, 1e-6, dps)
    except (MirrorError, ValueError, TypeError, ArithmeticError):
        return None
    return found[0][1] if found else None


def check_second_order(view: GraphView, seed: int = 0, dps: int = 30,
                       use_mirror: bool = True, functions_only: bool = False
                       ) -> list[SecondOrderFinding]:
    """Check the double backward of the nodes of ``view``; results in backward order (output
    first). Every custom Function node is checked; a built-in op once per (op, parameters,
    input shapes), as its double backward is the registry's one code path for all of them
    (``functions_only=True``: custom Functions alone)."""
    rng = np.random.default_rng(seed + 104729)
    out = []
    seen: set = set()
    for node in reversed(view.nodes):
        if not node.user_code:
            if functions_only:
                continue
            key = (_freeze(node.rule_key()), tuple(np.shape(v) for v in view.input_values(node)))
            if key in seen:
                continue
            seen.add(key)
        f = _check_node(view, node, rng, dps, use_mirror)
        if f is not None:
            out.append(f)
    return out


def _message(f: SecondOrderFinding) -> str:
    if f.contract:
        return f.contract
    where = f" at [{', '.join(map(str, f.element))}]" if f.element else ""
    against = "the second derivatives of its symbolic mirror" if "symbolic" in f.method \
        else "finite differences of its own backward"
    what = (f"d(w . backward)/d input {f.input_index} ({f.input_name}), a Hessian-vector "
            f"product" if f.wrt == "input" else
            f"d(w . backward)/d {f.input_name}, i.e. J w")
    rel = abs(f.got - f.expected) / abs(f.expected) if f.expected else math.inf
    msg = (f"{f.node.name()}'s double backward (create_graph=True through its backward) is "
           f"wrong: {what}{where}: expected {f.expected:.10g} from {against}, got "
           f"{f.got:.10g} (relative error {rel:.2g}; path {f.path})")
    return msg + (f"; {f.note}" if f.note else "")


def extend_report(report: CheckReport, problem: Any, order: int, seed: int = 0,
                  use_symbolic: bool = True, dps: int = 30) -> CheckReport:
    """Add the second-order check to a first-order ``report`` (``vg.check(order=2)``)."""
    if order not in ORDERS:
        raise CheckInputError(f"order must be 1 or 2, got {order!r}")
    report.settings["order"] = order
    if order == 1:
        return report
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        args = problem.leaves()
        outs = problem.run(args)
        view = GraphView.of(outs)
        findings = check_second_order(view, seed, dps, use_symbolic)
    for f in findings:
        report.nodes.append(NodeResult(f.node.name(), f.path, f.method, f.ok, f.max_abs_error,
                                       f.tolerance, f.note or f"double backward ({f.wrt})"))
    bad = [f for f in findings if not f.ok]
    seen = {c.grad_fn for c in report.culprits}
    for f in bad:
        c = Culprit(f.node.name(), f.input_index, f.input_name, f.path, f.element, f.expected,
                    f.got, f.method, _message(f))
        if (c.grad_fn, "second") not in seen:
            seen.add((c.grad_fn, "second"))
            report.culprits.append(c)
    if report.culprit is None and report.culprits:
        report.culprit = report.culprits[0]
    if bad:
        report.verdict = "fail"
    kinked = [f for f in findings if f.method == "skipped" and f.note.startswith("at a kink")]
    if kinked and report.verdict == "pass":
        # relu(x)*x at 0 is C1 (first order passes) but has no second derivative there
        report.verdict = "inconclusive"
        report.notes.append(f"second order: {kinked[0].node.name()} is {kinked[0].note}: "
                            f"the second derivative does not exist at this point")
    n_fn = sum(f.node.user_code for f in findings)
    report.notes.append(
        f"second order: the double backward (create_graph=True) of {n_fn} custom Function "
        f"node(s) and of {len(findings) - n_fn} built-in op(s) (one node per op, parameters "
        f"and shapes) checked along seeded directions against their mirrors' second "
        f"derivatives (finite differences of their backward without one): {len(bad)} wrong")
    report.seconds += time.perf_counter() - t0
    return report
