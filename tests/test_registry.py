"""The registry's public faces: every surface (``vg.<name>``, ``Tensor.<name>``, expressions,
``vg.check``) is derived from the rows, so a new op is one row."""
from __future__ import annotations

import inspect

import pytest

import verigrad as vg
from verigrad import ops
from verigrad.expression import FUNCTIONS
from verigrad.parse import ALLOWED_KEYWORDS, DEFAULT_FUNCTIONS, ExpressionError, parse
from verigrad.registry import FACES, REGISTRY, defop, public, scratch
from verigrad.tensor import Tensor

# API.md's op list ("methods and vg. functions") and what was a Tensor method before the
# surfaces were derived: names are a contract
API_FUNCTIONS = """add sub mul div neg pow exp log log1p expm1 sqrt abs sin cos tan tanh sigmoid
relu softplus clamp maximum minimum where sum mean prod max min logsumexp softmax log_softmax
matmul reshape view transpose permute unsqueeze squeeze expand cat stack getitem""".split()
METHODS = """neg exp log log1p expm1 sqrt abs sin cos tan tanh sigmoid relu reciprocal pow clamp
clip add sub mul div maximum minimum sum mean prod max min logsumexp softmax log_softmax matmul
mm mv dot bmm reshape view transpose permute unsqueeze squeeze expand flatten clone to gt ge lt
le eq ne softplus""".split()


def _cube_row(name, vjp):
    return defop(name, params=("scale",), forward=lambda x, scale=1.0: scale * x ** 3, vjp=vjp,
                 mirror=lambda x, scale=1.0: scale * x ** 3, elementwise=True, expression=True)


def test_a_new_op_is_one_row():
    with scratch():
        _cube_row("cube", lambda F, g, x, scale: g * 3 * scale * x * x)
        assert vg.cube(vg.tensor(2.0), scale=2.0).item() == 16.0
        assert str(inspect.signature(vg.cube)) == "(input, scale=1.0)"
        assert "cube" in ops.__all__ and vg.cube is ops.cube
        x = vg.tensor(2.0, requires_grad=True)
        y = x.cube()
        assert Tensor.cube is vg.cube and y.grad_fn.name() == "CubeBackward0"
        y.backward()
        assert x.grad.item() == 12.0
        # in expressions, with its parameter as a keyword, through the symbolic mirror
        assert "cube" in DEFAULT_FUNCTIONS and "scale" in ALLOWED_KEYWORDS and "cube" in FUNCTIONS
        report = vg.check("cube(x, scale=0.5) + x", x=1.5)
        assert report.verdict == "pass"
        assert str(vg.symbolic(vg.cube(vg.tensor(2.0, requires_grad=True, name="x"), 2))) == "2*x**3"


def test_a_wrong_row_is_caught_by_the_checker():
    with scratch():
        _cube_row("cube_wrong", lambda F, g, x, scale: g * 2 * scale * x * x)  # 2, not 3
        report = vg.check("cube_wrong(x)", x=1.5)
        assert report.verdict == "fail"
        assert "CubeWrongBackward0" in str(report.culprit)


def test_scratch_leaves_nothing_behind():
    before = (list(REGISTRY), list(FACES), list(ops.__all__), set(DEFAULT_FUNCTIONS),
              set(ALLOWED_KEYWORDS), list(FUNCTIONS))
    with scratch():
        _cube_row("cube", lambda F, g, x, scale: g * 3 * scale * x * x)
        assert hasattr(vg, "cube")
    assert (list(REGISTRY), list(FACES), list(ops.__all__), set(DEFAULT_FUNCTIONS),
            set(ALLOWED_KEYWORDS), list(FUNCTIONS)) == before
    assert not hasattr(vg, "cube") and not hasattr(ops, "cube") and not hasattr(Tensor, "cube")
    with pytest.raises(ExpressionError, match="unknown function 'cube'"):
        parse("cube(x)")


def test_api_names_are_functions_and_methods():
    for name in API_FUNCTIONS:
        assert callable(getattr(vg, name)), name
        assert name in ops.__all__, name
    for name in METHODS:
        assert callable(getattr(Tensor, name)), name
    assert vg.clip is vg.clamp and Tensor.clip is vg.clamp
    assert not hasattr(vg, "to") and not hasattr(vg, "select")  # a method only; internal


def test_softplus_keywords_reach_expressions():
    assert vg.check("softplus(x, beta=2.0)", x=1.0).verdict == "pass"
    assert vg.check("softplus(x, beta=2.0, threshold=1.0)", x=1.0).verdict == "pass"


def test_every_face_has_its_function():
    for face in FACES.values():
        fn = ops.callable_of(face)
        assert fn.__name__ == face.name, face
        for row in face.rows:
            assert row.public == face.name


def test_a_face_is_declared_once():
    with scratch():
        _cube_row("cube", lambda F, g, x, scale: g * 3 * scale * x * x)
        with pytest.raises(ValueError, match="declared twice"):
            defop("cube.other", forward=lambda x: x, vjp=lambda F, g: g, mirror=lambda x: x,
                  expression=False)
    with scratch():
        # two overloads and no dispatcher: nothing to generate the function from
        defop("twin", forward=lambda x: x, vjp=lambda F, g: g, mirror=lambda x: x)
        with pytest.raises(TypeError, match="no dispatcher"):
            defop("twin.other", forward=lambda x: x, vjp=lambda F, g: g, mirror=lambda x: x)
    with scratch():
        defop("twin", forward=lambda x: x, vjp=lambda F, g: g, mirror=lambda x: x)

        @public()
        def twin(input):  # noqa: ANN001 - a dispatcher attached later replaces nothing twice
            return input

        assert vg.twin is twin
        with pytest.raises(ValueError, match="two dispatchers"):
            public("twin")(lambda input: input)
    assert not hasattr(vg, "twin")


def test_internal_rows_have_no_face():
    for name in ("select", "slice", "index", "alias", "_unsafe_view", "_to_copy"):
        assert REGISTRY[name].public is None and name not in FACES
    with pytest.raises(TypeError, match="internal"):
        defop("_hidden", forward=lambda x: x, vjp=lambda F, g: g, mirror=lambda x: x,
              expression=True)
    assert "_hidden" not in REGISTRY


@pytest.mark.parametrize("op", [op for op in REGISTRY.values() if op.moves_data],
                         ids=lambda op: op.name)
def test_moves_data_rows_only_move_entries(op):
    """``moves_data`` makes a rule cost one partial per output entry: hold every such
    row's mirror to it on each of its cases (each output entry one input symbol or 0)."""
    import numpy as np
    import sympy as sp

    for shapes, params in op.domain.cases(np.random.default_rng(0)):
        names = iter(sp.symbols(f"a0:{sum(int(np.prod(s)) for s in shapes)}"))
        args = [np.array([next(names) for _ in range(int(np.prod(s)))], dtype=object)
                .reshape(s) for s in shapes]
        out = np.asarray(op.mirror(*args, **params), dtype=object)
        for e in out.reshape(-1):
            assert e == 0 or isinstance(sp.sympify(e), sp.Symbol), (op.name, e)
