"""The reference softmax and attention against PyTorch's autograd, finite differences and edge cases.

PyTorch runs in float64 here and is an independent implementation: agreement to
1e-10 relative is only possible if both compute the same function and gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derivations.reference import attention, attention_backward, gradcheck, softmax, softmax_backward

torch.set_default_dtype(torch.float64)
RTOL = 1e-10  # float64 agreement between two correct implementations; observed errors are ~1e-15


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def torch_attention(Q, K, V, mask, dO):
    """Attention written independently in PyTorch, differentiated by autograd."""
    q, k, v = (torch.tensor(x, requires_grad=True) for x in (Q, K, V))
    scores = q @ k.transpose(-1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~torch.tensor(np.broadcast_to(mask, scores.shape)), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # torch gives NaN on fully masked rows; ours gives 0
    out = weights @ v
    out.backward(torch.tensor(dO))
    return out.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()


CASES = [
    # (leading axes, n_q, n_k, d_k, d_v, mask kind, score scale)
    ((), 1, 1, 1, 1, None, 1.0),
    ((), 3, 5, 4, 2, None, 1.0),
    ((2,), 4, 4, 8, 3, "causal", 1.0),
    ((2, 3), 5, 7, 4, 6, "random", 1.0),
    ((), 6, 6, 16, 4, "causal", 30.0),  # very peaked softmax
    ((3,), 2, 9, 5, 5, "random", 0.01),  # nearly uniform
]


def make_mask(kind, lead, n_q, n_k, rng):
    if kind is None:
        return None
    if kind == "causal":
        return np.tril(np.ones((n_q, n_k), dtype=bool))
    mask = rng.random(lead + (n_q, n_k)) < 0.6
    mask[..., 0] = True  # keep at least one key per row; fully masked rows are tested separately
    return mask


@pytest.mark.parametrize("number", range(len(CASES)), ids=[f"case{i}" for i in range(len(CASES))])
def test_attention_matches_torch(number: int) -> None:
    lead, n_q, n_k, d_k, d_v, mask_kind, scale = CASES[number]
    rng = np.random.default_rng(number)
    Q = rng.standard_normal(lead + (n_q, d_k)) * scale
    K = rng.standard_normal(lead + (n_k, d_k))
    V = rng.standard_normal(lead + (n_k, d_v))
    dO = rng.standard_normal(lead + (n_q, d_v))
    mask = make_mask(mask_kind, lead, n_q, n_k, rng)
    O, cache = attention(Q, K, V, mask)
    grads = attention_backward(dO, cache)
    expected = torch_attention(Q, K, V, mask, dO)
    assert rel_err(O, expected[0]) < RTOL
    for name, mine, theirs in zip("QKV", grads, expected[1:]):
        assert mine.shape == theirs.shape
        assert rel_err(mine, theirs) < RTOL, f"d{name}"


def test_softmax_backward_matches_torch() -> None:
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((3, 4, 7)) * 5, rng.standard_normal((3, 4, 7))
    y, cache = softmax(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.softmax(xt, dim=-1)
    yt.backward(torch.tensor(dy))
    assert rel_err(y, yt.detach().numpy()) < RTOL
    assert rel_err(softmax_backward(dy, cache), xt.grad.numpy()) < RTOL


def test_broadcast_leading_axes_sum_back() -> None:
    """K and V shared by every head (no head axis) get the gradient summed over heads."""
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((4, 3, 2))
    K, V = rng.standard_normal((5, 2)), rng.standard_normal((5, 3))
    O, cache = attention(Q, K, V)
    dQ, dK, dV = attention_backward(np.ones_like(O), cache)
    assert dK.shape == K.shape and dV.shape == V.shape
    per_head = [attention_backward(np.ones((3, 3)), attention(Q[h], K, V)[1]) for h in range(4)]
    assert np.allclose(dK, sum(g[1] for g in per_head), rtol=1e-12, atol=0)


def test_gradcheck_attention_with_mask() -> None:
    rng = np.random.default_rng(3)
    Q, K, V = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    G = rng.standard_normal((3, 2))
    mask = rng.random((3, 5)) < 0.5
    mask[:, 1] = True

    def loss(Q, K, V):
        O, cache = attention(Q, K, V, mask)
        return float(np.sum(G * O)), attention_backward(G, cache)

    # 1e-6: central differences with h = 1e-6 are accurate to ~1e-9 relative here (see gradcheck).
    assert max(gradcheck(loss, [Q, K, V])) < 1e-6


def test_gradcheck_detects_a_wrong_gradient() -> None:
    rng = np.random.default_rng(4)
    Q, K, V = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 2))

    def wrong(Q, K, V):
        O, cache = attention(Q, K, V)
        dQ, dK, dV = attention_backward(np.ones_like(O), cache)
        return float(O.sum()), [dQ * np.sqrt(3), dK, dV]  # scale applied twice

    errors = gradcheck(wrong, [Q, K, V])
    assert errors[0] > 0.1 and errors[1] < 1e-6


def test_fully_masked_row_gives_zero_output_and_gradient() -> None:
    rng = np.random.default_rng(5)
    Q, K, V = rng.standard_normal((3, 2)), rng.standard_normal((4, 2)), rng.standard_normal((4, 3))
    mask = np.ones((3, 4), dtype=bool)
    mask[1] = False
    O, cache = attention(Q, K, V, mask)
    dQ, dK, dV = attention_backward(np.ones_like(O), cache)
    assert np.all(np.isfinite(O)) and np.all(O[1] == 0.0)
    assert np.all(dQ[1] == 0.0)
    for g in (dQ, dK, dV):
        assert np.all(np.isfinite(g))


def test_masked_positions_get_exactly_zero_weight_and_score_gradient() -> None:
    rng = np.random.default_rng(6)
    n = 5
    Q, K, V = rng.standard_normal((n, 3)), rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    causal = np.tril(np.ones((n, n), dtype=bool))
    O, cache = attention(Q, K, V, causal)
    A = cache[3]
    assert np.all(A[~causal] == 0.0)
    # The last key is visible only to the last query, so only that query's gradient reaches its value.
    dO = np.zeros_like(O)
    dO[:-1] = 1.0
    _, dK, dV = attention_backward(dO, cache)
    assert np.all(dV[-1] == 0.0) and np.all(dK[-1] == 0.0)


@pytest.mark.parametrize("magnitude", [1e3, -1e3, 1e300])
def test_extreme_scores_stay_finite(magnitude: float) -> None:
    x = np.array([[magnitude, 0.0, -magnitude], [magnitude, magnitude, magnitude]])
    y, cache = softmax(x)
    assert np.all(np.isfinite(y)) and np.allclose(y.sum(axis=-1), 1.0)
    assert np.all(np.isfinite(softmax_backward(np.ones_like(y), cache)))
    Q = np.array([[np.sqrt(abs(magnitude)) if abs(magnitude) < 1e10 else 1e5, 0.0]])
    K = np.array([[np.sign(magnitude) * 1e3, 0.0], [-1e3, 0.0]])
    O, cache = attention(Q, K, np.eye(2))
    assert np.all(np.isfinite(O)) and np.all(np.isfinite(attention_backward(np.ones_like(O), cache)[0]))


@pytest.mark.parametrize(
    ("shapes", "fragment"),
    [
        (((2, 3), (4, 5), (4, 2)), "(2, 3) and K (4, 5)"),
        (((2, 3), (4, 3), (5, 2)), "K (4, 3) and V (5, 2)"),
        (((2, 2, 3), (3, 4, 3), (3, 4, 2)), "do not broadcast"),
        (((3,), (4, 3), (4, 2)), "need at least 2 axes"),
    ],
)
def test_shape_errors_name_the_shapes(shapes, fragment: str) -> None:
    Q, K, V = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        attention(Q, K, V)


def test_mask_and_upstream_shape_errors() -> None:
    Q, K, V = np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"mask \(3, 4\)"):
        attention(Q, K, V, np.ones((3, 4), dtype=bool))
    _, cache = attention(Q, K, V)
    with pytest.raises(ValueError, match=r"dO \(2, 3\)"):
        attention_backward(np.zeros((2, 3)), cache)


@pytest.mark.parametrize(
    "q_shape, k_shape, v_shape",
    [
        ((2, 3, 4, 5), (2, 1, 6, 5), (1, 3, 6, 2)),  # K shared by every head, V by every batch entry
        ((1, 4, 5), (3, 6, 5), (3, 6, 2)),           # Q shared by the batch
        ((2, 3, 4, 5), (6, 5), (1, 1, 6, 2)),        # K without leading axes, V with size-1 ones
        ((4, 5), (6, 5), (2, 6, 2)),                 # only V has a batch axis: A has none, O has V's
    ],
)
def test_size_one_leading_axes_receive_the_summed_gradient(q_shape, k_shape, v_shape) -> None:
    """Broadcasting a size-1 axis is copying; its adjoint sums. Each gradient has its input's shape."""
    rng = np.random.default_rng(sum(q_shape + k_shape))
    Q, K, V = rng.standard_normal(q_shape), rng.standard_normal(k_shape), rng.standard_normal(v_shape)
    O, cache = attention(Q, K, V)
    dO = rng.standard_normal(O.shape)
    expected = torch_attention(Q, K, V, None, dO)
    assert rel_err(O, expected[0]) < RTOL
    for name, mine, theirs, shape in zip("QKV", attention_backward(dO, cache), expected[1:], (q_shape, k_shape, v_shape)):
        assert mine.shape == shape, f"d{name}"
        assert rel_err(mine, theirs) < RTOL, f"d{name}"


@pytest.mark.parametrize(
    "shapes",
    [((2, 2, 3), (3, 4, 3), (1, 4, 2)),   # only K disagrees with the others
     ((2, 2, 3), (1, 4, 3), (3, 4, 2))],  # only V does
)
def test_leading_axes_of_each_input_are_checked(shapes) -> None:
    Q, K, V = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=r"^leading axes of Q .* do not broadcast$"):
        attention(Q, K, V)


def test_softmax_and_attention_messages() -> None:
    with pytest.raises(ValueError, match=r"^dy \(2,\) does not match softmax output \(3,\)$"):
        softmax_backward(np.ones(2), softmax(np.ones(3))[1])
    with pytest.raises(ValueError, match=r"^mask \(3,\) does not broadcast to x \(2, 2\)$"):
        softmax(np.zeros((2, 2)), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match=r"^mask \(2, 5\) does not broadcast to scores \(2, 4\)$"):
        attention(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 2)), np.ones((2, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"^cache must be the SoftmaxCache\('y',\) that softmax returns, got tuple of "
                                         r"length 2$"):
        softmax_backward(np.ones(2), (np.ones(2), np.ones(2)))
    with pytest.raises(ValueError, match=r"that attention returns, got SoftmaxCache of length 1$"):
        attention_backward(np.ones((1, 1)), softmax([1.0])[1])
    with pytest.raises(ValueError, match=r"that attention returns, got NoneType$"):
        attention_backward(np.ones((1, 1)), None)
