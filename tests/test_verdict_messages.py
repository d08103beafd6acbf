"""Issue 9, item 9: messages a user can act on. The tolerance stands next to the error,
expected and got are printed with the digits at which they differ, and numbers that are a
projection on a random cotangent say so and come with the element's own derivative."""
from __future__ import annotations

import doctest
import re

import numpy as np
import sympy

import verigrad as vg
from corpus import MUTANTS, function
from test_verdict import SqrtGap
from verigrad.checker import compare, finite_diff, precision


def _numbers(text: str, after: str) -> str:
    return re.search(re.escape(after) + r" (-?[0-9.e+-]+)", text).group(1)


def test_expected_and_got_differ_visibly_at_a_tiny_relative_error():
    Bad = function("Scaled12", np.sin, lambda g, x: g * np.cos(x) * (1 + 1e-12), sympy.sin)
    report = vg.check(lambda x: Bad.apply(x).sum(), np.array([0.3, 1.2]), nearby=0)
    msg = report.culprit.message
    assert _numbers(msg, "is") != _numbers(msg, "got"), msg
    assert "> tolerance" in msg


def test_a_projection_gives_the_elements_own_derivative_instead():
    fn, inputs, _ = MUTANTS["one wrong element"]   # tanh' + 1e-3 at x[4] = 0
    msg = vg.check(fn, *inputs).culprit.message
    assert "random cotangent" not in msg, msg  # the element's own numbers replace v . J
    assert re.search(r"d out\[4\] / d \w+\[4\] is", msg), msg
    assert float(_numbers(msg, "is")) == 1.0
    assert abs(float(_numbers(msg, "got")) - 1.001) < 1e-9


def test_the_own_derivative_of_a_matrix_op_names_its_output_element():
    fn, inputs, _ = MUTANTS["transposed matmul at a symmetric matrix"]
    msg = vg.check(fn, *inputs).culprit.message
    assert re.search(r"d out\[\d\] / d \w+\[\d, \d\] is", msg), msg


def test_random_output_rows_are_explained():
    report = vg.check(lambda x: vg.tanh(3 * x), np.linspace(-1, 1, 20), nearby=0)
    assert any("projection on a random direction" in n for n in report.notes)


def test_failing_rows_show_their_tolerance_and_statuses_are_not_doubled():
    fn, inputs, _ = MUTANTS["scale 1+1e-7"]
    assert "(tol " in str(vg.check(fn, *inputs, nearby=0))
    text = str(vg.check(lambda x: SqrtGap.apply(x).sum(), np.array([1e4, 2.5e3, 0.5])))
    assert "precision (lost digits)" in text and "precision (precision)" not in text


def test_the_modules_examples_run():
    for module in (compare, finite_diff, precision):
        assert doctest.testmod(module).failed == 0
