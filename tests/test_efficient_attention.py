"""Memory-efficient attention (``derivations.reference.efficient_attention``) against the reference attention.

Its forward pass must give the reference output and its backward pass the gradients of
``attention_backward`` (which are themselves checked against PyTorch elsewhere), for masks,
broadcast leading axes and every block size, while saving nothing of size ``n_q x n_k``.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from derivations.reference import (
    attention,
    attention_backward,
    memory_efficient_attention,
    memory_efficient_attention_backward,
)

TOLERANCE = 1e-13
NAN, INF = math.nan, math.inf


def same(actual, expected, tol=1e-12):
    """Equal up to ``tol``, with NaN exactly where the other has NaN."""
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, equal_nan=True)


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


@pytest.mark.parametrize("batched", ["Q", "K", "V"])
def test_any_one_input_may_carry_the_batch_axis(batched):
    """The leading axes of the output are those of Q, K and V broadcast together, whichever holds them."""
    rng = np.random.default_rng(ord(batched))
    shapes = {"Q": (3, 2), "K": (4, 2), "V": (4, 3)}
    shapes[batched] = (2, *shapes[batched])
    Q, K, V = (rng.standard_normal(shapes[name]) for name in "QKV")
    O, cache = attention(Q, K, V)
    dO = rng.standard_normal(O.shape)
    O_efficient, cache_efficient = memory_efficient_attention(Q, K, V, block_size=2)
    same(O_efficient, O)
    for mine, expected in zip(memory_efficient_attention_backward(dO, cache_efficient), attention_backward(dO, cache)):
        same(mine, expected)


def test_each_query_row_is_shifted_by_its_own_maximum():
    """Scores 1131 above and below 0 in two rows: one shift shared by both rows would underflow
    one row to nothing, no shift at all would overflow the other. By hand: each row's weight is
    on one key (the other has weight e^-1131, below float64), so O = V of that key, lse = that
    score, dV = dO sent to that key, and dQ = dK = 0 (a one-hot softmax has zero derivative)."""
    Q = np.array([[40.0, 0.0], [-40.0, 0.0]])
    K = np.array([[40.0, 0.0], [0.0, 1.0]])
    V = np.array([[1.0, 2.0], [3.0, 4.0]])
    for block_size in (None, 1):
        O, cache = memory_efficient_attention(Q, K, V, block_size=block_size)
        np.testing.assert_array_equal(O, [[1.0, 2.0], [3.0, 4.0]])
        np.testing.assert_allclose(cache.lse, [1600.0 / math.sqrt(2.0), 0.0], rtol=1e-15, atol=0)
        dO = np.array([[1.0, -1.0], [0.5, 2.0]])
        dQ, dK, dV = memory_efficient_attention_backward(dO, cache)
        np.testing.assert_array_equal(dV, dO)
        np.testing.assert_array_equal(dQ, np.zeros((2, 2)))
        np.testing.assert_array_equal(dK, np.zeros((2, 2)))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("block_size", [None, 1])
def test_non_finite_scores_give_nan_rows_as_the_reference_does(block_size):
    """A query that may see a NaN or +inf score, or only -inf scores, is NaN (output, lse, and what it
    sends back), as in attention; a NaN behind the mask is never read; a fully masked query gives 0."""
    rng = np.random.default_rng(4)
    Q, K, V = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    K[[0, 1], 0] = 0.0  # so that queries 3 and 4 score 0 with keys 0 and 1
    K[2, 0] = NAN  # every score with key 2 is NaN
    K[3] = [1e200, 0.0, 0.0]
    K[4] = [-1e200, 0.0, 0.0]
    Q[3] = Q[4] = [1e200, 0.0, 0.0]  # query 3 scores +inf with key 3 (overflow), query 4 -inf with key 4
    Q[1, 1] = INF  # and inf * 0 = NaN with key 4: quietly, as every non-finite path here
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, [0, 1]] = True  # finite: key 2's NaN is masked out
    mask[1, [0, 1, 2]] = True  # sees the NaN
    # query 2 is fully masked
    mask[3, [0, 1, 3]] = True  # sees +inf
    mask[4, 4] = True  # sees nothing but -inf
    O, cache = attention(Q, K, V, mask)
    O_efficient, cache_efficient = memory_efficient_attention(Q, K, V, mask, block_size)
    same(O_efficient, O)
    assert np.all(np.isfinite(O_efficient[0])) and np.all(O_efficient[2] == 0.0)
    assert np.all(np.isnan(O_efficient[[1, 3, 4]]))
    lse = cache_efficient.lse
    assert np.isfinite(lse[0]) and lse[2] == -INF and np.all(np.isnan(lse[[1, 3, 4]]))
    dO = rng.standard_normal(O.shape)
    for mine, expected in zip(memory_efficient_attention_backward(dO, cache_efficient), attention_backward(dO, cache)):
        same(mine, expected)


@pytest.mark.parametrize("n_q", [0, 1, 5])
def test_the_default_block_is_every_query_row(n_q):
    rng = np.random.default_rng(n_q)
    Q, K, V = rng.standard_normal((2, n_q, 2)), rng.standard_normal((3, 2)), rng.standard_normal((3, 4))
    O, cache = memory_efficient_attention(Q, K, V)
    if n_q:
        assert cache.block_size == n_q  # "default: all at once"
    O_reference, cache_reference = attention(Q, K, V)
    same(O, O_reference)
    dO = rng.standard_normal(O.shape)
    for mine, expected in zip(memory_efficient_attention_backward(dO, cache), attention_backward(dO, cache_reference)):
        same(mine, expected)


def test_one_key_and_one_feature_are_enough():
    """n_k = d_k = 1: the one key has weight 1 for every query, so O = V for each query, dV = the sum
    of dO, and dQ = dK = 0 (weights that are constant do not move)."""
    Q, K, V = np.array([[0.5], [-2.0], [3.0]]), np.array([[1.5]]), np.array([[2.0, -1.0]])
    O, cache = memory_efficient_attention(Q, K, V, block_size=2)
    np.testing.assert_array_equal(O, np.repeat(V, 3, axis=0))
    dO = np.arange(6.0).reshape(3, 2)
    dQ, dK, dV = memory_efficient_attention_backward(dO, cache)
    np.testing.assert_array_equal(dV, [[6.0, 9.0]])
    np.testing.assert_array_equal(dQ, np.zeros((3, 1)))
    np.testing.assert_array_equal(dK, np.zeros((1, 1)))


def test_a_block_of_rows_bounds_the_peak_memory():
    """block_size = 8 of 256 query rows: neither pass ever allocates as much as half of one n_q x n_k
    array (what the reference attention keeps), though a pass over all rows at once does."""
    rng = np.random.default_rng(6)
    n = 256
    Q, K, V = (rng.standard_normal((n, 4)) for _ in range(3))
    dO = rng.standard_normal((n, 4))
    quadratic = n * n * 8  # bytes of one n x n float64 array
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _, cache = memory_efficient_attention(Q, K, V, block_size=8)
        forward_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        memory_efficient_attention_backward(dO, cache)
        backward_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        memory_efficient_attention(Q, K, V)  # one block: the check can see an n x n array
        one_block_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert one_block_peak >= quadratic
    assert forward_peak < quadratic / 2 and backward_peak < quadratic / 2, (forward_peak, backward_peak)


@pytest.mark.parametrize("shapes, message", [
    (((3,), (4, 3), (4, 2)), r"^Q \(3,\), K \(4, 3\), V \(4, 2\) need at least 2 axes$"),
    (((2, 3), (3,), (4, 2)), r"^Q \(2, 3\), K \(3,\), V \(4, 2\) need at least 2 axes$"),
    (((2, 3), (4, 3), (4,)), r"^Q \(2, 3\), K \(4, 3\), V \(4,\) need at least 2 axes$"),
    (((2, 3), (4, 2), (4, 2)), r"^Q \(2, 3\) and K \(4, 2\) differ in d_k \(last axis\)$"),
    (((2, 3), (4, 3), (5, 2)), r"^K \(4, 3\) and V \(5, 2\) differ in n_k \(second-to-last axis\)$"),
    (((2, 0), (4, 0), (4, 2)), r"^Q \(2, 0\) and K \(4, 0\) have d_k = 0"),
    (((2, 3), (0, 3), (0, 2)), r"^K \(0, 3\) and V \(0, 2\) have n_k = 0"),
    (((2, 2, 3), (3, 4, 3), (4, 2)), r"^leading axes of Q \(2, 2, 3\), K \(3, 4, 3\), V \(4, 2\) do not broadcast$"),
])
def test_bad_shapes_are_named(shapes, message):
    with pytest.raises(ValueError, match=message):
        memory_efficient_attention(*(np.zeros(shape) for shape in shapes))


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
