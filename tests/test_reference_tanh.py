"""The tanh forward/backward pair against PyTorch float64, central differences and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derivations.reference import gradcheck, relu
from derivations.reference.tanh import TanhCache, tanh, tanh_backward


def test_forward_and_backward_agree_with_torch():
    rng = np.random.default_rng(11)
    x, dy = rng.standard_normal((4, 7)) * 3, rng.standard_normal((4, 7))
    y, cache = tanh(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tanh(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(tanh_backward(dy, cache), xt.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_backward_matches_central_differences():
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    errors = gradcheck(lambda x: float(np.sum(dy * tanh(x)[0])), [x], [tanh_backward(dy, tanh(x)[1])])
    assert max(errors) < 1e-7


def test_cache_is_named_and_holds_the_output():
    y, cache = tanh([0.5, -2.0])
    assert isinstance(cache, TanhCache) and cache.y is y
    assert tanh_backward([1.0, 1.0], (y,)).tolist() == tanh_backward([1.0, 1.0], cache).tolist()


def test_nan_and_infinity():
    y, cache = tanh([np.nan, np.inf, -np.inf, 0.0])
    assert np.isnan(y[0]) and y[1] == 1.0 and y[2] == -1.0 and y[3] == 0.0
    dx = tanh_backward([1.0, 1.0, 1.0, 1.0], cache)
    assert np.isnan(dx[0]) and dx[1] == 0.0 and dx[2] == 0.0 and dx[3] == 1.0


def test_bad_input_is_named():
    _, cache = tanh(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"dy \(2, 2\) does not match x \(2, 3\)"):
        tanh_backward(np.zeros((2, 2)), cache)
    with pytest.raises(ValueError, match=r"must be the TanhCache\('y',\) that tanh returns, got ReluCache"):
        tanh_backward(np.zeros((2, 3)), relu(np.zeros((2, 3)))[1])
    with pytest.raises(ValueError, match="x"):
        tanh(["a"])
