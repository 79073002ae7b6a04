"""``derivations.reference.gradcheck`` against functions whose gradients are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from derivations.reference import gradcheck, numerical_gradient, relative_error

NAN, INF = math.nan, math.inf


def cubic(x, y):
    """f = sum(x^3) + sum(x) * y, with df/dx = 3 x^2 + y and df/dy = sum(x)."""
    return float(np.sum(x**3) + np.sum(x) * y)


def test_numerical_gradient_of_a_cubic_is_its_derivative():
    x, y = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array(0.7)
    for h in (1e-6, 1e-4):
        grad = numerical_gradient(cubic, [x, y], 0, h=h)
        # central differences of a cubic are exact up to h^2 (f''' = 6) and rounding
        np.testing.assert_allclose(grad, 3 * x**2 + 0.7, rtol=0, atol=h**2 + 1e-8)
    assert numerical_gradient(cubic, [x, y], 1) == pytest.approx(np.sum(x), abs=1e-8)


def test_the_step_size_matters_as_the_truncation_error_says():
    x = np.array([2.0])
    f = lambda x: float(np.sum(x**3))  # noqa: E731
    coarse = numerical_gradient(f, [x], 0, h=0.1)[0]
    assert coarse == pytest.approx(12.0 + 0.1**2, rel=1e-12)  # (x+h)^3 - (x-h)^3 = 6 x^2 h + 2 h^3


def test_numerical_gradient_restricted_to_entries_leaves_the_others_nan():
    x = np.arange(5.0)
    grad = numerical_gradient(lambda x: float(np.sum(x**2)), [x], 0, entries=[1, 3])
    assert np.isnan(grad[[0, 2, 4]]).all()
    np.testing.assert_allclose(grad[[1, 3]], [2.0, 6.0], atol=1e-8)


def test_numerical_gradient_does_not_modify_its_inputs():
    x = np.array([1.0, 2.0])
    numerical_gradient(lambda x: float(np.sum(x**2)), [x], 0)
    assert x.tolist() == [1.0, 2.0]


def test_relative_error_by_hand():
    np.testing.assert_allclose(relative_error([1.0, -2.0, 0.0, 1e-13], [1.1, -2.0, 0.0, 0.0]),
                               [0.1 / 1.1, 0.0, 0.0, 0.1], rtol=1e-12)
    np.testing.assert_allclose(relative_error([1e-6], [0.0], floor=1e-3), [1e-3], rtol=1e-12)
    np.testing.assert_allclose(relative_error([2.0], [-2.0]), [2.0])


def test_gradcheck_returns_the_largest_error_per_input():
    x, y = np.array([1.0, -2.0, 0.5]), np.array(0.7)
    right = [3 * x**2 + 0.7, np.array(np.sum(x))]
    errors = gradcheck(cubic, [x, y], right)
    assert len(errors) == 2 and max(errors) < 1e-8
    wrong = [right[0] * np.array([1.0, 1.0, 1.5]), right[1]]
    errors = gradcheck(cubic, [x, y], wrong)
    assert errors[0] == pytest.approx(0.5 / 1.5, rel=1e-6) and errors[1] < 1e-8


def test_gradcheck_with_a_function_that_returns_its_gradients():
    def f(x):
        return float(np.sum(np.sin(x))), [np.cos(x)]

    assert gradcheck(f, [np.linspace(-1, 1, 7)])[0] < 1e-8
    assert gradcheck(lambda x: (float(np.sum(np.sin(x))), [np.sin(x)]), [np.linspace(0.1, 1, 3)])[0] > 0.1


def test_gradcheck_skips_none_and_checks_shapes_and_counts():
    x, y = np.array([1.0]), np.array(2.0)
    errors = gradcheck(cubic, [x, y], [None, np.array(1.0)])
    assert math.isnan(errors[0]) and errors[1] < 1e-8
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(2,\), input has shape \(1,\)"):
        gradcheck(cubic, [x, y], [np.ones(2), np.array(1.0)])
    with pytest.raises(ValueError, match="1 gradients for 2 inputs"):
        gradcheck(cubic, [x, y], [np.ones(1)])


def test_gradcheck_max_entries_samples_that_many_entries_reproducibly():
    x = np.linspace(-1, 1, 50)
    calls = []

    def f(x):
        calls.append(1)
        return float(np.sum(x**3))

    wrong = 3 * x**2
    wrong[::2] *= 2  # every other entry is wrong: a sample of 10 entries is almost surely caught
    first = gradcheck(f, [x], [wrong], max_entries=10, seed=3)
    assert len(calls) == 1 + 2 * 10  # the value once, then two evaluations per sampled entry
    assert first == gradcheck(f, [x], [wrong], max_entries=10, seed=3) and first[0] > 0.4
    assert gradcheck(f, [x], [3 * x**2], max_entries=10)[0] < 1e-7
    calls.clear()
    gradcheck(f, [x], [wrong], max_entries=100)  # more than there are: every entry once
    assert len(calls) == 1 + 2 * 50


def test_gradcheck_copies_its_inputs():
    x = np.array([1.0, 2.0])
    gradcheck(lambda x: float(np.sum(x**2)), [x], [2 * x])
    assert x.tolist() == [1.0, 2.0]


def test_gradcheck_counts_a_nonfinite_numerical_gradient_as_a_failure():
    def f(x):
        return float(np.sum(x**2)) if abs(x[0] - 1.0) < 1e-9 else NAN  # finite only at the point itself

    with np.errstate(invalid="ignore"):
        assert gradcheck(f, [np.array([1.0])], [np.array([2.0])]) == [INF]


def test_relative_error_does_not_overflow():
    np.testing.assert_allclose(relative_error([1e308, 3.0], [-1e308, 3.0]), [2.0, 0.0], rtol=1e-15)


def test_gradcheck_and_numerical_gradient_name_their_bad_arguments():
    f = lambda x: float(np.sum(x**2))  # noqa: E731
    x = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match=r"^h must be > 0.0, got 0.0$"):
        gradcheck(f, [x], [None], h=0.0)  # checked even when no input is differentiated
    with pytest.raises(ValueError, match=r"^h must be > 0.0, got -1e-06$"):
        numerical_gradient(f, [x], 0, h=-1e-6)
    with pytest.raises(ValueError, match=r"^h must be > 0.0, got 0.0$"):
        numerical_gradient(f, [x], 0, h=0.0)
    with pytest.raises(ValueError, match=r"^index must be an integer, got 0.5$"):
        numerical_gradient(f, [x], 0.5)
    with pytest.raises(ValueError, match=r"^max_entries must be >= 1, got 0$"):
        gradcheck(f, [x], [2 * x], max_entries=0)
    with pytest.raises(ValueError, match=r"^seed must be >= 0, got -1$"):
        gradcheck(f, [x], [2 * x], seed=-1)
    with pytest.raises(ValueError, match=r"^floor must be > 0.0, got 0.0$"):
        relative_error([1.0], [1.0], floor=0.0)
    assert gradcheck(f, [x], [2 * x], max_entries=1)[0] < 1e-8  # one entry is enough


def test_gradcheck_of_an_empty_input_has_no_error():
    def f(empty, x):
        return float(np.sum(x**2) + np.sum(empty))

    assert gradcheck(f, [np.zeros(0), np.array([1.0])], [np.zeros(0), np.array([2.0])]) == [0.0, pytest.approx(0.0,
                                                                                                               abs=1e-8)]


def test_the_default_step_is_small():
    """The default h (1e-6) leaves the cubic's truncation error, h^2, far below 1e-8."""
    x = np.array([1.0, -2.0])
    np.testing.assert_allclose(numerical_gradient(lambda x: float(np.sum(x**3)), [x], 0), 3 * x**2, rtol=0, atol=1e-8)
