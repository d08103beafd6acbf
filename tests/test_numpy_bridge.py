"""numpy's protocols on Tensor: every mapped numpy function, recorded, against numpy's result."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import verigrad as vg
from verigrad.numpy_bridge import Unrecordable, mapped, numpy_table, recording
from verigrad.numpy_bridge import _numpy_function
from verigrad.registry import NUMPY_FORMS, REGISTRY

RNG = np.random.default_rng(0)
A = RNG.uniform(0.5, 2.0, (2, 3))
B = RNG.uniform(0.5, 2.0, (2, 3))
C = RNG.uniform(0.5, 2.0, (3, 2))
# how to call each numpy name on arrays (arguments only; which names exist comes from the registry)
CALLS = {
    "broadcast_to": lambda f, a, b: f(a[0], (2, 3)), "clip": lambda f, a, b: f(a, 0.8, 1.5),
    "concatenate": lambda f, a, b: f([a, b], axis=1), "stack": lambda f, a, b: f([a, b], axis=0),
    "dot": lambda f, a, b: f(a, C), "matmul": lambda f, a, b: f(a, C),
    "expand_dims": lambda f, a, b: f(a, 0), "reshape": lambda f, a, b: f(a, (3, 2)),
    "squeeze": lambda f, a, b: f(np.expand_dims(a, 0) if isinstance(a, np.ndarray) else a[None]),
    "swapaxes": lambda f, a, b: f(a, 0, 1), "transpose": lambda f, a, b: f(a),
    "where": lambda f, a, b: f(A > 1, a, b), "sum": lambda f, a, b: f(a, axis=1, keepdims=True),
    "mean": lambda f, a, b: f(a, axis=0), "prod": lambda f, a, b: f(a, axis=1),
    "max": lambda f, a, b: f(a, axis=1), "min": lambda f, a, b: f(a),
    "amax": lambda f, a, b: f(a, axis=0), "amin": lambda f, a, b: f(a, axis=1, keepdims=True),
    "cumsum": lambda f, a, b: f(a), "var": lambda f, a, b: f(a, axis=0, ddof=1),
    "std": lambda f, a, b: f(a, axis=1, keepdims=True), "diag": lambda f, a, b: f(a, 1),
    "trace": lambda f, a, b: f(a, 1), "outer": lambda f, a, b: f(a, b),
    "einsum": lambda f, a, b: f("ij,kj->ik", a, b),
    "sort": lambda f, a, b: f(a, axis=0), "linalg.det": lambda f, a, b: f(a[:, :2]), "linalg.inv": lambda f, a, b: f(a[:, 1:]),
    "linalg.solve": lambda f, a, b: f(a[:, :2], b[:, 0]),
    "linalg.norm": lambda f, a, b: f(a, axis=1), "ravel": lambda f, a, b: f(a), "full_like": lambda f, a, b: f(a, 2.5),
    "roll": lambda f, a, b: f(a, (1, -4), axis=(0, 1)) + f(a, 2), "diff": lambda f, a, b: f(a, 2),
    "linalg.slogdet": lambda f, a, b: f(a[:, :2])[1], "polyval": lambda f, a, b: f([2.0, -1.0, 0.5], a),
    "tile": lambda f, a, b: f(a, (2, 1, 3)), "kron": lambda f, a, b: f(a, b),
    "linalg.cholesky": lambda f, a, b: f(a[:, :2] @ a[:, :2].T + np.eye(2)),
    "diagonal": lambda f, a, b: f(a, 1) + f(a[None], 0, 1, 2)[0, :2],
}


def _call(name, a, b):
    fn = _numpy_function(name)
    if name in CALLS:
        return CALLS[name](fn, a, b)
    return fn(a, b) if isinstance(fn, np.ufunc) and fn.nin == 2 else fn(a)


@pytest.mark.parametrize("name", mapped())
def test_recorded_call_matches_numpy(name):
    x = vg.tensor(A, dtype=vg.float64, requires_grad=True)
    y = vg.tensor(B, dtype=vg.float64)
    with recording():
        got = _call(name, x, y)
    if name in ("shape", "ndim", "size"):  # metadata: numpy's plain values
        assert got == _call(name, A, B)
        return
    assert isinstance(got, vg.Tensor)
    np.testing.assert_allclose(got.detach().numpy(), _call(name, A, B), rtol=1e-15)
    if got.detach().numpy().dtype.kind == "f" and not name.endswith("_like"):
        assert got.grad_fn is not None  # comparisons give bools, constants no graph


def test_table_comes_from_the_registry():
    names = {n for op in REGISTRY.values() for n in op.numpy} | set(NUMPY_FORMS)
    # scipy's ufuncs are in the table once the program imported scipy.special
    scipy_names = {n for n in names if n.startswith("scipy.special.")}
    assert scipy_names and set(mapped()) == names - scipy_names | (
        scipy_names if "scipy.special" in sys.modules else set())
    assert numpy_table()[np.negative].public is vg.neg


@pytest.mark.parametrize("call", [lambda x: np.floor(x), lambda x: np.asarray(x),
                                  lambda x: np.sum(x, dtype=np.float32), lambda x: float(x[0])])
def test_unrecordable_is_named(call):
    x = vg.tensor([0.5, 1.0], dtype=vg.float64, requires_grad=True)
    with recording(), pytest.raises(Unrecordable):
        call(x)


def test_unmapped_without_grad_is_numpy():
    x = vg.tensor([4.0, 3.0], dtype=vg.float64)
    assert np.sort(x).tolist() == [3.0, 4.0]


# --- hand-written jac code: each call recorded, the exact reference used -----------------

X3 = np.array([0.3, -1.2, 2.0])
X6 = np.array([0.3, -1.2, 2.0, 0.7, 1.1, -0.4])
X9 = np.array([0.3, -1.2, 2.0, 0.7, 1.1, -0.4, 1.6, -0.9, 0.5])
W = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [-0.5, 1.0, 0.3]])
C = np.array([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.75]])


def _sinc_der(x):
    return (np.cos(np.pi * x) - np.sinc(x)) / x


def _onehot(n, i, value=1.0):
    g = np.zeros(n)
    g[i] = value
    return g


def _norm1_matrix_jac(x):
    m = x.reshape(2, 3)
    j = int(np.argmax(np.abs(m).sum(axis=0)))
    g = np.zeros((2, 3))
    g[:, j] = np.sign(m[:, j])
    return g.ravel()


def _cumsum_jac(x):
    return np.cumsum((2 * np.cumsum(x))[::-1])[::-1].copy()


# name -> (fun, the exact jac, x0): scipy's convention (J[i, j] = d fun_i / d x_j)
JAC_CASES = {
    "norm": (lambda x: np.linalg.norm(x), lambda x: x / np.sqrt(np.sum(x * x)), X3),
    "norm-1": (lambda x: np.linalg.norm(x, 1), lambda x: np.sign(x), X3),
    "norm-inf": (lambda x: np.linalg.norm(x, np.inf), lambda x: _onehot(3, 2), X3),
    "norm-p3": (lambda x: np.linalg.norm(x, ord=3),
                lambda x: np.sign(x) * x ** 2 / np.sum(np.abs(x) ** 3) ** (2 / 3), X3),
    "norm-fro": (lambda x: np.linalg.norm(x.reshape(2, 3), "fro"),
                 lambda x: x / np.sqrt(np.sum(x * x)), X6),
    "norm-matrix-1": (lambda x: np.linalg.norm(x.reshape(2, 3), 1), _norm1_matrix_jac, X6),
    "norm-axis": (lambda x: np.linalg.norm(x.reshape(2, 3), axis=1),
                  lambda x: np.kron(np.eye(2), np.ones((1, 3))) * x
                  / np.repeat(np.sqrt(np.sum(x.reshape(2, 3) ** 2, axis=1)), 3)[None, :]
                  * np.kron(np.eye(2), np.ones((1, 3))).sum(0), X6),
    "outer": (lambda x: np.sum(np.outer(x, x) * W), lambda x: (W + W.T) @ x, X3),
    "diag-1d": (lambda x: np.sum(np.diag(x) @ W), lambda x: W.sum(axis=1), X3),
    "diag-2d": (lambda x: np.sum(np.diag(x.reshape(3, 3)) ** 2),
                lambda x: 2 * x * np.eye(3).ravel(), X9),
    "trace": (lambda x: np.trace(x.reshape(3, 3) @ x.reshape(3, 3)),
              lambda x: 2 * x.reshape(3, 3).T.ravel(), X9),
    "square": (lambda x: np.sum(np.square(x)), lambda x: 2 * x, X3),
    "hypot": (lambda x: np.sum(np.hypot(x, 2.0)), lambda x: x / np.hypot(x, 2.0), X3),
    "arctan2": (lambda x: np.sum(np.arctan2(x, 1.5)), lambda x: 1.5 / (x * x + 2.25), X3),
    "logaddexp": (lambda x: np.sum(np.logaddexp(x, 0.5 * x)),
                  lambda x: (np.exp(x) + 0.5 * np.exp(0.5 * x)) / (np.exp(x) + np.exp(0.5 * x)),
                  X3),
    "sign": (lambda x: np.sum(np.sign(x) * x ** 2), lambda x: 2 * np.abs(x), X3),
    "var": (lambda x: np.var(x), lambda x: 2 * (x - x.mean()) / x.size, X3),
    "var-ddof-axis": (lambda x: np.sum(np.var(x.reshape(2, 3), axis=0, ddof=1, keepdims=True)),
                      lambda x: (2 * (x.reshape(2, 3) - x.reshape(2, 3).mean(0))).ravel(), X6),
    "std": (lambda x: np.std(x), lambda x: (x - x.mean()) / (x.size * np.std(x)), X3),
    "cumsum": (lambda x: np.sum(np.cumsum(x.reshape(2, 3)) ** 2), _cumsum_jac, X6),
    "cumsum-axis": (lambda x: np.cumsum(x, axis=0), lambda x: np.tril(np.ones((3, 3))), X3),
    "amax": (lambda x: np.amax(x), lambda x: _onehot(3, 2), X3),
    "amin": (lambda x: np.amin(x, axis=0), lambda x: _onehot(3, 1), X3),
    "sinc": (lambda x: np.sum(np.sinc(x)), _sinc_der, X3),
    "ones_like": (lambda x: np.sum(x * np.ones_like(x) * 2.0), lambda x: np.full(3, 2.0), X3),
    "shape-size-ndim": (lambda x: np.sum(x * (np.size(x) + np.ndim(x) + np.shape(x)[0])),
                        lambda x: np.full(3, 7.0), X3),
    "zeros_like": (lambda x: np.sum(x * x + np.zeros_like(x)), lambda x: 2 * x, X3),
    "full_like": (lambda x: np.sum(x * np.full_like(x, 3.0)), lambda x: np.full(3, 3.0), X3),
    "einsum-ij,j->i": (lambda x: np.einsum("ij,j->i", W, x), lambda x: W, X3),
    "einsum-i,i->": (lambda x: np.einsum("i,i->", x, x), lambda x: 2 * x, X3),
    "einsum-ij,ij->": (lambda x: np.einsum("ij,ij->", x.reshape(2, 3), x.reshape(2, 3)),
                       lambda x: 2 * x, X6),
    "einsum-ij,jk->ik": (lambda x: np.einsum("ij,jk->ik", x.reshape(2, 3), C).reshape(-1),
                         lambda x: np.kron(np.eye(2), C.T), X6),
    "einsum-bij,bjk->bik": (lambda x: np.sum(np.einsum("bij,bjk->bik", x.reshape(2, 1, 3),
                                                       np.stack([C, 2 * C]))),
                            lambda x: np.concatenate([C.sum(1), 2 * C.sum(1)]), X6),
    "einsum-implicit": (lambda x: np.einsum("i,i", x, x), lambda x: 2 * x, X3),
    "einsum-ii->": (lambda x: np.einsum("ii->", x.reshape(3, 3)), lambda x: np.eye(3).ravel(),
                    X9),
    "einsum-ij,jj->i": (lambda x: np.einsum("ij,jj->i", W, x.reshape(3, 3)),
                        lambda x: np.stack([np.diag(W[i]).ravel() for i in range(3)]), X9),
    "einsum-...ij,...j->...i": (lambda x: np.einsum("...ij,...j->...i", np.stack([W, 2 * W]),
                                                    x).reshape(-1),
                                lambda x: np.concatenate([W, 2 * W]), X3),
    "ravel": (lambda x: np.ravel(np.outer(x, x)) @ W.ravel(), lambda x: (W + W.T) @ x, X3),
    "det": (lambda x: np.linalg.det(x.reshape(3, 3)),
            lambda x: (np.linalg.det(x.reshape(3, 3)) * np.linalg.inv(x.reshape(3, 3)).T).ravel(),
            X9),
    "inv": (lambda x: np.ones(3) @ np.linalg.inv(x.reshape(3, 3)) @ X3,
            lambda x: -np.outer(np.linalg.inv(x.reshape(3, 3)).T @ np.ones(3),
                                np.linalg.inv(x.reshape(3, 3)) @ X3).ravel(), X9),
    "solve-b": (lambda x: np.linalg.solve(W, x), lambda x: np.linalg.inv(W), X3),
    "solve-a": (lambda x: np.linalg.solve(x.reshape(3, 3), X3),
                lambda x: -np.einsum("ik,l->ikl", np.linalg.inv(x.reshape(3, 3)),
                                     np.linalg.solve(x.reshape(3, 3), X3)).reshape(3, 9), X9),
    "sort": (lambda x: np.sort(x) * np.arange(1.0, 4.0),
             lambda x: np.eye(3)[np.argsort(x)] * [[1], [2], [3]], X3),
    "sort-axis": (lambda x: np.sum(np.sort(x.reshape(2, 3), axis=0)[0] * X3),
                  lambda x: np.where(x.reshape(2, 3) == x.reshape(2, 3).min(0), X3, 0).ravel(), X6),
    "reversed": (lambda x: x[::-1] * np.arange(1.0, 4.0), lambda x: np.eye(3)[::-1] * [[1], [2], [3]],
                 X3),
    "flip": (lambda x: np.sum(np.flip(x.reshape(2, 3), axis=1)[0] * x[:3]),
             lambda x: np.concatenate([x[:3][::-1] + x[:3][::-1], np.zeros(3)]), X6),
}


def _wrong(jac):
    def bad(x):
        j = np.array(jac(x), dtype=float)
        j.flat[0] += 1e-4 * (1 + abs(j.flat[0]))
        return j

    return bad


@pytest.mark.parametrize("name", JAC_CASES)
def test_numpy_jac_code_is_recorded_and_checked_exactly(name):
    fun, jac, x0 = JAC_CASES[name]
    x = vg.tensor(x0, dtype=vg.float64, requires_grad=True)
    with recording():  # recorded: no Unrecordable, a graph to the output
        y = fun(x)
    assert isinstance(y, vg.Tensor) and y.grad_fn is not None
    np.testing.assert_allclose(y.detach().numpy(), fun(x0), rtol=1e-13, atol=1e-15)
    r = vg.check_grad(fun, jac, x0, nearby=1)
    assert r.verdict == "pass", (r.notes, [(e.label, e.status) for e in r.entries])
    assert not any("not recorded" in n for n in r.notes), r.notes
    assert r.entries and all(e.symbolic is not None for e in r.entries)  # the mirror decided
    bad = vg.check_grad(fun, _wrong(jac), x0, nearby=0)
    assert bad.verdict == "fail"
    assert bad.entries[0].status == "fail" if np.ndim(fun(x0)) == 0 else any(
        e.status == "fail" for e in bad.entries)


@pytest.mark.parametrize("call", [lambda x: np.linalg.norm(x.reshape(2, 3), 2),
                                  lambda x: np.einsum(x, [0], x, [0]),  # interleaved form
                                  lambda x: np.cumsum(x, dtype=np.float32)])
def test_forms_the_tape_cannot_record_are_named(call):
    x = vg.tensor(X6, dtype=vg.float64, requires_grad=True)
    with recording(), pytest.raises(Unrecordable):
        call(x)


def test_an_unrecorded_form_falls_back_with_a_note():
    r = vg.check_grad(lambda x: np.linalg.norm(x.reshape(2, 3), 2), lambda x: np.zeros(6), X6,
                      nearby=0)
    assert r.verdict == "fail"
    assert any("np.linalg.norm" in n and "SVD" in n for n in r.notes), r.notes


def test_constants_have_no_gradient():
    x = vg.tensor(X3, dtype=vg.float64, requires_grad=True)
    for c in (np.ones_like(x), np.zeros_like(x), np.full_like(x, 2.0)):
        assert not c.requires_grad and c.grad_fn is None and c.shape == x.shape


# torch parity of the rows numpy code is recorded through: values, gradients, grad_fn names
TORCH_ROWS = {
    "hypot": (lambda m, a, b: m.hypot(a, b), 2), "atan2": (lambda m, a, b: m.atan2(a, b), 2),
    "logaddexp": (lambda m, a, b: m.logaddexp(a, b), 2), "sign": (lambda m, a: m.sign(a), 1),
    "sinc": (lambda m, a: m.sinc(a), 1), "var": (lambda m, a: m.var(a, 1, correction=0), 1),
    "std": (lambda m, a: m.std(a, keepdim=True), 1), "trace": (lambda m, a: m.trace(a), 1),
    "diagonal": (lambda m, a: m.diagonal(a, 1), 1), "diag_embed": (lambda m, a: m.diag_embed(a), 1),
    "flip": (lambda m, a: m.flip(a, (1,)), 1),
    "sort": (lambda m, a: m.sort(a, 0, descending=True).values, 1),
    "det": (lambda m, a: (m.det if m is vg else m.linalg.det)(a), 1),
    "inv": (lambda m, a: (m.inv if m is vg else m.linalg.inv)(a), 1),
    "solve": (lambda m, a, b: (m.solve if m is vg else m.linalg.solve)(a, b), 2),
    "vector_norm": (lambda m, a: (m.linalg.vector_norm if m is not vg else m.vector_norm)(
        a, 3, 1), 1),
}


@pytest.mark.parametrize("name", TORCH_ROWS)
def test_new_rows_match_torch(name):
    torch = pytest.importorskip("torch")
    fn, n = TORCH_ROWS[name]
    rng = np.random.default_rng(3)
    arrays = [rng.uniform(0.3, 2.0, (3, 3)) * np.sign(rng.uniform(-1, 1, (3, 3)))
              for _ in range(n)]
    if name == "atan2":
        arrays[1] = np.abs(arrays[1])
    vs = [vg.tensor(a, dtype=vg.float64, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    vy, ty = fn(vg, *vs), fn(torch, *ts)
    assert vy.grad_fn.name() == ty.grad_fn.name().removesuffix("_copy")
    np.testing.assert_allclose(vy.detach().numpy(), ty.detach().numpy(), rtol=1e-13)
    cot = rng.standard_normal(ty.shape)
    vy.backward(vg.tensor(cot))
    ty.backward(torch.tensor(cot))
    for v, t in zip(vs, ts):
        np.testing.assert_allclose(v.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-14)


A3 = np.arange(24.0).reshape(2, 3, 4)


@pytest.mark.parametrize("key", [np.s_[::-1], np.s_[:, ::-2], np.s_[..., 3:0:-1],
                                 np.s_[1, None, ::-1, 2], np.s_[::-1, ::-1, ::-3],
                                 np.s_[0:0:-1], np.s_[..., -1::-2]], ids=repr)
def test_negative_steps_follow_numpy_while_recording(key):
    x = vg.tensor(A3, dtype=vg.float64, requires_grad=True)
    with recording():
        y = x[key]
    np.testing.assert_array_equal(y.detach().numpy(), A3[key])
    assert y.grad_fn.name() == "FlipBackward0"
    y.backward(vg.tensor(np.ones(y.shape)))
    expected = np.zeros_like(A3)
    np.add.at(expected, key, 1.0)
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    with pytest.raises(ValueError, match="step must be greater than zero"):
        x[key]  # outside recording: PyTorch's refusal


@st.composite
def _einsum_specs(draw):
    letters = "ijkl"
    a = "".join(draw(st.permutations(letters))[:draw(st.integers(1, 3))])
    b = "".join(draw(st.permutations(letters))[:draw(st.integers(1, 3))])
    used = sorted(set(a + b))
    out = "".join(draw(st.permutations(used))[:draw(st.integers(0, len(used)))])
    sizes = {c: draw(st.integers(1, 3)) for c in used}
    return a, b, out, sizes


@settings(max_examples=30, deadline=None)
@given(_einsum_specs())
def test_einsum_decomposition_matches_numpy(spec):
    """Any explicit two-operand einsum of distinct labels: numpy's values, and the
    gradient of each operand is the einsum numpy writes for it."""
    a, b, out, sizes = spec
    rng = np.random.default_rng(len(a) * 7 + len(b))
    A_, B_ = (rng.standard_normal([sizes[c] for c in t]) for t in (a, b))
    ta = vg.tensor(A_, dtype=vg.float64, requires_grad=True)
    tb = vg.tensor(B_, dtype=vg.float64, requires_grad=True)
    subscripts = f"{a},{b}->{out}"
    with recording():
        y = np.einsum(subscripts, ta, tb)
    want = np.einsum(subscripts, A_, B_)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    v = rng.standard_normal(want.shape)
    y.backward(vg.tensor(v))
    for t, mine, other, arr in ((ta, a, b, B_), (tb, b, a, A_)):
        # labels of this operand in neither the output nor the other operand are summed
        # away, so its gradient is constant along them
        free = [c for c in mine if c not in out and c not in other]
        kept = "".join(c for c in mine if c not in free)
        g = np.einsum(f"{out},{other}->{kept}", v, arr)
        for pos, c in enumerate(mine):
            if c in free:
                g = np.expand_dims(g, pos)
        np.testing.assert_allclose(t.grad.numpy(), np.broadcast_to(g, t.shape), rtol=1e-12,
                                   atol=1e-12)


def test_scipy_special_ufuncs_are_recorded_like_numpys():
    """scipy.special's ufuncs reach __array_ufunc__ as numpy's do: expit and erf are rows'
    numpy names, found once the program imported scipy.special (verigrad never does)."""
    ss = pytest.importorskip("scipy.special")
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = (X[:, 0] > 0).astype(float)

    def nll(w):
        p = ss.expit(X @ w)
        return -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) + np.sum(ss.erf(w))

    def grad(w):
        return X.T @ (ss.expit(X @ w) - y) + 2 / np.sqrt(np.pi) * np.exp(-w * w)

    w0 = np.array([0.1, -0.2, 0.3])
    report = vg.check_grad(nll, grad, w0)
    assert report.verdict == "pass" and all(e.symbolic is not None for e in report.entries)
    assert vg.check_grad(nll, lambda w: grad(w) * 1.001, w0).verdict == "fail"


def test_astype_is_recorded():
    x = vg.tensor([0.5, 2.0], dtype=vg.float64, requires_grad=True)
    assert x.astype(np.float32).grad_fn.name() == "ToCopyBackward0"
    assert vg.check(lambda a: np.sum(a.astype(float) ** 2), np.array([0.3, 0.5])).verdict == "pass"



def test_gaussian_process_likelihood_gets_the_exact_reference():
    """A GP's negative log-likelihood as numpy code writes it (slogdet, solve, exp of a
    distance matrix) with its hand-written gradient: every entry against the mirror."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, 4)
    y = np.sin(3 * X)
    D = (X[:, None] - X[None, :]) ** 2

    def nll(theta):
        K = np.exp(theta[0]) * np.exp(-D / np.exp(theta[1])) + 1e-2 * np.eye(4)
        return 0.5 * np.linalg.slogdet(K)[1] + 0.5 * y @ np.linalg.solve(K, y)

    def grad(theta, wrong=1.0):
        E = np.exp(-D / np.exp(theta[1]))
        K = np.exp(theta[0]) * E + 1e-2 * np.eye(4)
        alpha = np.linalg.solve(K, y)
        Kinv = np.linalg.inv(K)
        dKs = [np.exp(theta[0]) * E, wrong * np.exp(theta[0]) * E * D / np.exp(theta[1])]
        return np.array([0.5 * np.trace(Kinv @ dK) - 0.5 * alpha @ dK @ alpha for dK in dKs])

    theta = np.array([0.2, -0.5])
    report = vg.check_grad(nll, grad, theta)
    assert report.verdict == "pass" and all(e.symbolic is not None for e in report.entries)
    assert vg.check_grad(nll, lambda t: grad(t, wrong=1.01), theta).verdict == "fail"


def test_gaussian_process_through_cholesky_gets_the_exact_reference():
    """The textbook GP code: L = cholesky(K), alpha by two triangular solves, log det as
    2 sum(log(diag(L)))."""
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, 4)
    y = np.cos(2 * X)
    D = (X[:, None] - X[None, :]) ** 2

    def nll(theta):
        K = np.exp(theta[0]) * np.exp(-D / np.exp(theta[1])) + 1e-2 * np.eye(4)
        L = np.linalg.cholesky(K)
        alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
        return 0.5 * y @ alpha + np.sum(np.log(np.diagonal(L)))

    def grad(theta, wrong=1.0):
        E = np.exp(-D / np.exp(theta[1]))
        K = np.exp(theta[0]) * E + 1e-2 * np.eye(4)
        alpha = np.linalg.solve(K, y)
        Kinv = np.linalg.inv(K)
        dKs = [np.exp(theta[0]) * E, np.exp(theta[0]) * E * D / np.exp(theta[1])]
        return np.array([0.5 * np.trace(Kinv @ dK) - 0.5 * wrong * alpha @ dK @ alpha
                         for dK in dKs])

    theta = np.array([0.1, -0.3])
    report = vg.check_grad(nll, grad, theta)
    assert report.verdict == "pass" and all(e.symbolic is not None for e in report.entries), \
        str(report)
    assert vg.check_grad(nll, lambda t: grad(t, wrong=1.001), theta).verdict == "fail"


def test_cholesky_reads_the_lower_triangle_as_numpy_does():
    """numpy's Cholesky ignores the upper triangle: its derivative there is zero."""
    a = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    x = vg.tensor(a, requires_grad=True)
    (np.linalg.cholesky(x) * vg.tensor(np.arange(9.0).reshape(3, 3))).sum().backward()
    g = x.grad.numpy()
    assert np.all(np.triu(g, 1) == 0) and np.all(g[np.tril_indices(3)] != 0)
    assert vg.check(lambda m: np.sum(np.linalg.cholesky(m) ** 3), a).verdict == "pass"
