"""Memory-efficient attention (``derivations.reference.efficient_attention``) against the reference attention.

Its forward pass must give the reference output and its backward pass the gradients of
``attention_backward`` (which are themselves checked against PyTorch elsewhere), for masks,
broadcast leading axes and every block size, while saving nothing of size ``n_q x n_k``.
"""

from __future__ import annotations

import numpy as np
import pytest

from derivations.reference import (
    attention,
    attention_backward,
    memory_efficient_attention,
    memory_efficient_attention_backward,
)

TOLERANCE = 1e-13


def case(seed, q_shape=(2, 3, 7, 4), k_shape=(2, 1, 9, 4), v_shape=(1, 3, 9, 5), mask_density=None):
    rng = np.random.default_rng(seed)
    Q, K, V = rng.standard_normal(q_shape), rng.standard_normal(k_shape), rng.standard_normal(v_shape)
    mask = None if mask_density is None else rng.random((q_shape[-2], k_shape[-2])) < mask_density
    return rng, Q, K, V, mask


@pytest.mark.parametrize("block_size", [None, 1, 2, 3, 7, 50])
@pytest.mark.parametrize("mask_density", [None, 0.6])
def test_equals_the_reference_forward_and_backward(block_size, mask_density):
    rng, Q, K, V, mask = case(block_size or 0, mask_density=mask_density)
    if mask is not None:
        mask[3] = False  # a query that may attend to nothing
    O, cache = attention(Q, K, V, mask)
    dO = rng.standard_normal(O.shape)
    O_efficient, cache_efficient = memory_efficient_attention(Q, K, V, mask, block_size)
    np.testing.assert_allclose(O_efficient, O, rtol=TOLERANCE, atol=TOLERANCE)
    for mine, expected in zip(memory_efficient_attention_backward(dO, cache_efficient), attention_backward(dO, cache)):
        assert mine.shape == expected.shape
        np.testing.assert_allclose(mine, expected, rtol=1e-12, atol=1e-12)


def test_a_fully_masked_query_gives_zeros_and_no_gradient():
    rng, Q, K, V, _ = case(1, (5, 3), (4, 3), (4, 2))
    mask = np.ones((5, 4), dtype=bool)
    mask[2] = False
    O, cache = memory_efficient_attention(Q, K, V, mask, block_size=2)
    assert np.all(O[2] == 0.0) and cache.lse[2] == -np.inf
    dQ, dK, dV = memory_efficient_attention_backward(np.ones_like(O), cache)
    assert np.all(dQ[2] == 0.0) and np.all(np.isfinite(dK)) and np.all(np.isfinite(dV))


def test_large_scores_stay_finite():
    Q = np.array([[30.0, 0.0], [0.0, -30.0]])
    K = np.array([[30.0, 0.0], [-30.0, 0.0], [0.0, 30.0]])
    V = np.eye(3)
    mask = np.array([[False, True, True], [True, True, True]])  # the masked score is the largest one
    O, cache = attention(Q, K, V, mask)
    O_efficient, cache_efficient = memory_efficient_attention(Q, K, V, mask)
    np.testing.assert_allclose(O_efficient, O, atol=1e-15)
    grads = memory_efficient_attention_backward(np.ones_like(O), cache_efficient)
    for mine, expected in zip(grads, attention_backward(np.ones_like(O), cache)):
        np.testing.assert_allclose(mine, expected, atol=1e-12)


def test_the_cache_holds_nothing_quadratic():
    _, Q, K, V, _ = case(2, (1, 2, 64, 8), (1, 2, 64, 8), (1, 2, 64, 8))
    _, cache = memory_efficient_attention(Q, K, V)
    sizes = {name: getattr(cache, name).size for name in ("Q", "K", "V", "O", "lse")}
    assert sizes == {"Q": 1024, "K": 1024, "V": 1024, "O": 1024, "lse": 128}  # lse: one number per query row
    _, standard = attention(Q, K, V)
    assert standard[3].size == 2 * 64 * 64  # what the reference saves instead: A


@pytest.mark.parametrize("kwargs, message", [
    (dict(block_size=0), "block_size must be >= 1, got 0"),
    (dict(block_size=1.5), "block_size must be an integer"),
    (dict(mask=np.ones((3, 3), dtype=bool)), r"mask \(3, 3\) does not broadcast to scores \(2, 4\)"),
])
def test_bad_arguments_are_named(kwargs, message):
    Q, K, V = np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match=message):
        memory_efficient_attention(Q, K, V, **kwargs)


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    _, cache = memory_efficient_attention(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"dO \(2, 3\) does not match the output shape \(2, 2\)"):
        memory_efficient_attention_backward(np.zeros((2, 3)), cache)
