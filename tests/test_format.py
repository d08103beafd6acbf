"""format_tensor must reproduce repr(torch.Tensor) byte for byte."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verigrad._format import format_tensor

torch = pytest.importorskip("torch")

nan, inf = math.nan, math.inf

# torch hides the dtype of non-empty tensors with these dtypes.
_HIDDEN_DTYPES = {torch.float32, torch.complex64, torch.int64, torch.bool}


def caller_suffixes(t):
    """The suffixes a caller passes, following torch's rule for non-empty tensors
    (format_tensor itself adds size=... and the always-shown dtype of empties)."""
    out = []
    if t.dtype not in _HIDDEN_DTYPES:
        out.append("dtype=" + str(t.dtype))
    if t.grad_fn is not None:
        out.append(f"grad_fn=<{type(t.grad_fn).__name__}>")
    elif t.requires_grad:
        out.append("requires_grad=True")
    return [s.replace("torch.", "verigrad.") for s in out]


def assert_same(t, suffixes=None):
    expected = repr(t).replace("torch.", "verigrad.")
    got = format_tensor(t.detach().numpy(), caller_suffixes(t) if suffixes is None else suffixes)
    assert got == expected, f"\nexpected:\n{expected}\ngot:\n{got}"


def T(data, dtype=None, requires_grad=False):
    return lambda: torch.tensor(data, dtype=dtype, requires_grad=requires_grad)


def R(*shape, dtype=torch.float32, scale=1.0, seed=0):
    """Deterministic random tensor."""

    def make():
        g = torch.Generator().manual_seed(seed)
        if dtype.is_floating_point or dtype.is_complex:
            return torch.randn(*shape, generator=g, dtype=dtype) * scale
        if dtype == torch.bool:
            return torch.randint(0, 2, shape, generator=g).bool()
        info = torch.iinfo(dtype)
        return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=g, dtype=dtype)

    return make


f64, f16, c64, c128 = torch.float64, torch.float16, torch.complex64, torch.complex128
i64, i32, i8, u8 = torch.int64, torch.int32, torch.int8, torch.uint8

CASES = {
    # 0-d
    "0d-float": T(1.0),
    "0d-fixed": T(3.14159),
    "0d-neg": T(-2.5),
    "0d-sci-tiny": T(1e-5),
    "0d-sci-huge": T(1e10, f64),
    "0d-nan": T(nan),
    "0d-inf": T(-inf),
    "0d-int": T(7),
    "0d-bool": T(True),
    "0d-complex": T(1 + 2j),
    "0d-complex-neg-imag": T(1.5 - 2.25j, c128),
    "0d-zero": T(0.0),
    "0d-neg-zero": T(-0.0),
    # integer-valued floats, fixed point, scientific
    "int-valued": T([1.0, 2.0]),
    "int-valued-neg": T([-1.0, 20.0, 300.0]),
    "int-valued-1e8": T([1e8, 1.0e6], f64),
    "fixed": T([1.5, 2.25]),
    "fixed-neg-align": T([-1.5, 22.25, 0.0, -333.125]),
    "sci-ratio": T([1e10, 1.0]),
    "sci-tiny": T([1e-5, 1.0e-6]),
    "sci-ratio-fixed-vals": T([1001.5, 0.5]),
    "sci-neg": T([-1e-7, 3.0, 2e5], f64),
    "not-sci-ratio-1000": T([1000.0, 1.0]),
    "float32-rounding": T([0.1, 0.2, 0.3]),
    "float32-vs-64": T([1.00005, 2.00015]),
    "float64-precision": T([0.1, 0.2, 0.3], f64),
    # non-finite mixed in
    "nan-inf-int": T([1.0, nan, -inf, inf, -3.0]),
    "nan-inf-fixed": T([1.5, nan, -inf, inf]),
    "nan-inf-sci": T([1e-8, nan, -inf, 1e9]),
    "all-nonfinite": T([nan, inf, -inf]),
    "zeros": T([0.0, -0.0, 0.0]),
    "zeros-and-nan": T([[0.0, nan], [inf, -0.0]], f64),
    # dtypes
    "float16": R(3, 7, dtype=f16),
    "float16-large": T([65504.0, -1.0, 0.001], f16),
    "float16-int": T([1.0, 2048.0], f16),
    "int64": T([1, -20, 300]),
    "int32": R(4, 6, dtype=i32),
    "int8": T([-128, 0, 127], i8),
    "uint8": T([0, 255, 7], u8),
    "bool": T([[True, False], [False, True]]),
    "complex64": R(2, 3, dtype=c64),
    "complex128": R(5, dtype=c128, scale=1e-6),
    "complex-int-valued": T([1 + 2j, -3 - 4j]),
    "complex-nan": T([complex(nan, 1.0), complex(1.0, inf), complex(-0.0, -0.0)]),
    "complex-sci-imag": T([1 + 1e-6j, 2 + 3e5j], c128),
    # shapes, alignment, wrapping
    "1d-random": R(30),
    "1d-wrap-int": T(list(range(-5, 60))),
    "1d-wrap-bool": R(40, dtype=torch.bool),
    "2d": R(4, 5, scale=100),
    "2d-wrap": R(3, 25, dtype=f64),
    "3d": R(2, 3, 4),
    "4d": R(2, 2, 2, 3, dtype=i64),
    "3d-wrap-complex": R(2, 2, 9, dtype=c128),
    "column": R(6, 1),
    # summarization (> 1000 elements)
    "sum-1d": R(1001),
    "sum-1d-int": lambda: torch.arange(5000),
    "sum-2d": R(40, 30),
    "sum-2d-wide": lambda: torch.arange(2000.0).reshape(2, 1000),
    "sum-2d-tall": R(1200, 2, dtype=f64),
    "sum-3d": R(11, 10, 12, scale=1e5),
    "sum-4d": R(7, 2, 8, 10, dtype=i8),
    "sum-complex": R(3, 400, dtype=c64),
    "sum-hidden-extremes": lambda: torch.cat([torch.tensor([1e-9]), torch.ones(1000), torch.tensor([1e9])]),
    # empty tensors (size suffix, dtype always shown)
    "empty-1d": T([]),
    "empty-2d": lambda: torch.zeros(2, 0),
    "empty-3d": lambda: torch.zeros(0, 3, 2),
    "empty-int64": lambda: torch.zeros(0, dtype=i64),
    "empty-bool-2d": lambda: torch.zeros(3, 0, dtype=torch.bool),
    "empty-complex64": lambda: torch.zeros(1, 0, dtype=c64),
    "empty-f64-grad": lambda: torch.zeros(2, 0, dtype=f64, requires_grad=True),
    # suffixes and their wrapping onto new lines
    "grad": T([1.0, 2.0], requires_grad=True),
    "grad-f64": T([1.0, 2.5], f64, requires_grad=True),
    "grad-fn": lambda: torch.tensor([-1.5, 2.0], requires_grad=True).exp(),
    "grad-fn-0d": lambda: torch.tensor([1.0, 2.0], requires_grad=True).sum(),
    "grad-complex128": T([1 + 1j], c128, requires_grad=True),
    "wrap-both": T([0.1] * 8, f64, requires_grad=True),
    "wrap-second-only": T([0.1] * 6, f64, requires_grad=True),
    "wrap-grad-fn": lambda: torch.tensor([0.1] * 7, dtype=f64, requires_grad=True) * 2,
    "wrap-multiline": lambda: torch.ones(2, 14, dtype=f16, requires_grad=True),
    "wrap-2d-last-line": R(2, 9, dtype=f64, scale=1e3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name):
    assert_same(CASES[name]())


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 0, 1)])
@pytest.mark.parametrize("dtype", [i64, torch.bool, c64, f64, i8])
def test_empty_dtype_not_duplicated(shape, dtype):
    # A caller that already passes the dtype of an empty tensor must not get it twice.
    t = torch.zeros(shape, dtype=dtype)
    assert_same(t, ["dtype=" + str(dtype).replace("torch.", "verigrad.")])


def test_without_suffixes():
    assert format_tensor(np.array([1.5, 2.25], dtype=np.float32)) == "tensor([1.5000, 2.2500])"
    assert format_tensor(np.zeros((2, 0), np.float32)) == "tensor([], size=(2, 0))"


# --------------------------------------------------------------------------
# Property test

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_,
          np.complex64, np.complex128]
SPECIAL = [0.0, -0.0, nan, inf, -inf, 1.0, -1.0, 0.5, 1e-4, 9.9e-5, 1e-5, 1e8, 1.5e8, 1e10, -1e10,
           123456.0, 1e-30, 3.0e38, 65504.0, 1e300, 5e-324, 2.0**53, 1000.0, 0.001]
real_values = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(),  # anything, including huge/tiny/nan/inf
    st.integers(-(10**6), 10**6).map(float),
    st.floats(-1000, 1000),
    st.floats(-1e-3, 1e-3),
)


def values_for(dtype):
    if dtype == np.bool_:
        return st.booleans()
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    if np.issubdtype(dtype, np.complexfloating):
        return st.builds(complex, real_values, real_values)
    return real_values


BIG_SHAPES = [(1001,), (1500,), (2, 700), (7, 150), (1, 1001), (11, 10, 10), (3, 4, 100), (1200, 1)]


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.integers(0, 9)) == 0:
        shape = draw(st.sampled_from(BIG_SHAPES))
    else:
        ndim = draw(st.integers(0, 3))
        max_dim = {0: 0, 1: 40, 2: 12, 3: 6}[ndim]
        shape = tuple(draw(st.lists(st.integers(0, max_dim), min_size=ndim, max_size=ndim)))
    # A small pool of drawn values scattered over the array keeps it cheap for large
    # shapes while mixing magnitudes, signs and non-finite values everywhere.
    with np.errstate(over="ignore", invalid="ignore"):
        pool = np.array(draw(st.lists(values_for(dtype), min_size=1, max_size=8))).astype(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arr = np.asarray(pool[rng.integers(0, len(pool), size=shape)])
    grad = draw(st.booleans()) and arr.dtype.kind in "fc"
    return arr, grad


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays())
def test_property_matches_torch(case):
    arr, grad = case
    t = torch.from_numpy(arr.copy())
    if grad:
        t.requires_grad_(True)
    assert_same(t)
