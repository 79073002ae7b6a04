"""The transformer layers of ``derivations.reference`` against PyTorch autograd, central differences
and independent formulas (the claims' own tests are in test_claims.py and test_claim_ties.py).

Nothing here compares with numbers produced by the code under test: expected values come from
torch (an independent autodiff), from finite differences, from mpmath, or from hand-known facts.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from derivations.reference import (
    cross_entropy,
    cross_entropy_backward,
    embedding,
    embedding_backward,
    gelu,
    gelu_backward,
    gelu_derivative_max_difference,
    gradcheck,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    multi_head_attention,
    multi_head_attention_backward,
    positional_encoding,
    relu,
    relu_backward,
)

RTOL = 1e-10
GRADCHECK_TOL = 1e-6  # central differences are good to ~1e-9 here; a wrong gradient is off by >1e-2


def assert_close(actual, expected, rtol=RTOL):
    """Entrywise ``rtol``, with an absolute floor of ``rtol`` times the largest expected entry
    (so entries that should be 0 are judged against the scale of the whole array)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def leaf(array):
    return torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def check_gradients(forward, backward, inputs, rng):
    """Gradcheck ``sum(R * forward(*inputs))`` with a random ``R``; ``backward(R, cache)`` returns the grads."""
    out, cache = forward(*inputs)
    R = rng.standard_normal(np.shape(out))
    grads = backward(R, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    errors = gradcheck(lambda *xs: float(np.sum(R * forward(*xs)[0])), inputs, grads, max_entries=40)
    assert max(errors) < GRADCHECK_TOL, errors


# ----------------------------------------------------------------------------- linear


@pytest.mark.parametrize("x_shape", [(3,), (5, 3), (2, 4, 3), (2, 1, 3, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(rng, x_shape, with_bias):
    x, W, b = rng.standard_normal(x_shape), rng.standard_normal((3, 4)), rng.standard_normal(4)
    y, cache = linear(x, W, b if with_bias else None)
    dy = rng.standard_normal(y.shape)
    dx, dW, db = linear_backward(dy, cache)

    tx, tW, tb = leaf(x), leaf(W), leaf(b)
    ty = tx @ tW + (tb if with_bias else 0)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty)
    assert_close(dx, tx.grad)
    assert_close(dW, tW.grad)
    if with_bias:
        assert_close(db, tb.grad)
    else:
        assert db is None


def test_linear_gradcheck(rng):
    inputs = [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)]
    check_gradients(linear, linear_backward, inputs, rng)


def test_linear_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        linear(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(4,\).*\(3, 5\)"):
        linear(np.ones((2, 3)), np.ones((3, 5)), np.ones(4))
    _, cache = linear(np.ones((2, 3)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 5\)"):
        linear_backward(np.ones((2, 4)), cache)


# ----------------------------------------------------------------------------- activations


def test_relu_matches_torch_including_zero(rng):
    x = rng.standard_normal((3, 4, 5))
    x[0, 0, :3] = 0.0  # torch and the reference both take the derivative at 0 to be 0
    y, cache = relu(x)
    dy = rng.standard_normal(x.shape)
    tx = leaf(x)
    ty = torch.relu(tx)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty)
    assert_close(relu_backward(dy, cache), tx.grad)


def test_relu_gradcheck_away_from_zero(rng):
    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 1e-3] = 0.5  # the kink: central differences straddling 0 are meaningless
    check_gradients(relu, relu_backward, [x], rng)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
def test_gelu_matches_torch(rng, approximate, shape):
    x = 3 * rng.standard_normal(shape)
    y, cache = gelu(x, approximate=approximate)
    dy = rng.standard_normal(shape)
    tx = leaf(x)
    ty = F.gelu(tx, approximate=approximate)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty)
    assert_close(gelu_backward(dy, cache), tx.grad)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck(rng, approximate):
    check_gradients(lambda x: gelu(x, approximate), gelu_backward, [2 * rng.standard_normal((3, 5))], rng)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_extreme_inputs_are_finite(approximate):
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    y, cache = gelu(x, approximate)
    dx = gelu_backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.0, 40.0, 1000.0])
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.5, 1.0, 1.0])


def _mp_gelu(x, approximate):
    x = mpmath.mpf(x)
    if approximate == "none":
        return x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2
    return x / 2 * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf("0.044715") * x**3)))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("x", [-8.0, -5.0, -2.5, 0.3, 3.0])
def test_gelu_keeps_relative_accuracy_in_the_negative_tail(approximate, x):
    # 1 + erf and 1 + tanh cancel for x << 0; the reference avoids that, so it is accurate
    # to a few ulp where the naive formula loses up to 8 digits.
    with mpmath.workdps(50):
        value = _mp_gelu(x, approximate)
        slope = mpmath.diff(lambda t: _mp_gelu(t, approximate), x)
        y, cache = gelu([x], approximate)
        assert abs((y[0] - value) / value) < 1e-13
        dx = gelu_backward([1.0], cache)[0]
        assert abs((dx - slope) / slope) < 1e-13


def test_gelu_rejects_unknown_mode():
    with pytest.raises(ValueError, match="approximate"):
        gelu([1.0], approximate="erf")


def test_gelu_derivative_max_difference_against_torch():
    x_at_max, value = gelu_derivative_max_difference()
    grid = torch.linspace(-10, 10, 400_001, dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(F.gelu(grid).sum(), grid)
    (approx,) = torch.autograd.grad(F.gelu(grid, approximate="tanh").sum(), grid)
    gap = (exact - approx).abs().numpy()
    k = int(np.argmax(gap))
    assert gap[k] <= value * (1 + 1e-9)  # nothing on the dense grid beats the reported peak
    assert gap[k] >= value * (1 - 1e-6)  # and the grid's best comes within its resolution
    assert abs(abs(float(grid.detach()[k])) - x_at_max) < 1e-4  # two symmetric peaks, at +-x_at_max
    point = torch.tensor([x_at_max], dtype=torch.float64, requires_grad=True)
    (e,) = torch.autograd.grad(F.gelu(point).sum(), point)
    (a,) = torch.autograd.grad(F.gelu(point, approximate="tanh").sum(), point)
    assert abs(abs(float(e - a)) - value) < 1e-15


# ----------------------------------------------------------------------------- layer norm


@pytest.mark.parametrize("shape", [(6,), (4, 5), (2, 3, 7)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layer_norm_matches_torch(rng, shape, eps):
    D = shape[-1]
    x, gamma, beta = 3 * rng.standard_normal(shape) + 1, rng.standard_normal(D), rng.standard_normal(D)
    y, cache = layer_norm(x, gamma, beta, eps)
    dy = rng.standard_normal(shape)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    tx, tg, tb = leaf(x), leaf(gamma), leaf(beta)
    ty = F.layer_norm(tx, (D,), tg, tb, eps)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty)
    assert_close(dx, tx.grad)
    assert_close(dgamma, tg.grad)
    assert_close(dbeta, tb.grad)


def test_layer_norm_gradcheck(rng):
    inputs = [rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5)]
    check_gradients(layer_norm, layer_norm_backward, inputs, rng)


def test_layer_norm_constant_row_is_finite():
    y, cache = layer_norm(np.full((2, 4), 1e3), np.ones(4), np.arange(4.0))
    dx, _, _ = layer_norm_backward(np.ones((2, 4)), cache)
    np.testing.assert_array_equal(y, np.tile(np.arange(4.0), (2, 1)))
    assert np.all(np.isfinite(dx))


def test_layer_norm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"gamma \(4,\).*\(3, 5\)"):
        layer_norm(np.ones((3, 5)), np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match=r"beta \(5, 1\).*\(3, 5\)"):
        layer_norm(np.ones((3, 5)), np.ones(5), np.ones((5, 1)))


# ----------------------------------------------------------------------------- cross-entropy


def test_cross_entropy_matches_torch(rng):
    logits = 4 * rng.standard_normal((6, 5))
    targets = np.array([0, 4, 4, 2, 0, 1])
    loss, cache = cross_entropy(logits, targets)
    dlogits = cross_entropy_backward(0.7, cache)
    t = leaf(logits)
    tloss = F.cross_entropy(t, torch.tensor(targets))
    (0.7 * tloss).backward()
    assert abs(loss - tloss.item()) <= RTOL * abs(tloss.item())
    assert_close(dlogits, t.grad)


def test_cross_entropy_gradcheck(rng):
    targets = np.array([2, 0, 2, 1])
    loss_fn = lambda z: cross_entropy(z, targets)  # noqa: E731
    check_gradients(loss_fn, cross_entropy_backward, [rng.standard_normal((4, 3))], rng)


def test_cross_entropy_extreme_logits_are_finite_and_match_torch():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, -1000.0]])
    targets = np.array([1, 2, 0])
    loss, cache = cross_entropy(logits, targets)
    dlogits = cross_entropy_backward(1.0, cache)
    assert math.isfinite(loss) and np.all(np.isfinite(dlogits))
    t = leaf(logits)
    tloss = F.cross_entropy(t, torch.tensor(targets))
    tloss.backward()
    # row 0: -log softmax = 2000; row 1: log 3; row 2: log 2
    assert loss == pytest.approx((2000 + math.log(3) + math.log(2)) / 3, rel=1e-15)
    assert loss == pytest.approx(tloss.item(), rel=1e-15)
    assert_close(dlogits, t.grad)


def test_cross_entropy_rejects_bad_targets():
    logits = np.zeros((3, 4))
    for bad in ([0, 1, 4], [0, -1, 2]):
        with pytest.raises(ValueError, match=r"\[0, 4\).*\(3, 4\)"):
            cross_entropy(logits, bad)
    with pytest.raises(ValueError, match=r"targets \(2,\).*\(3, 4\)"):
        cross_entropy(logits, [0, 1])
    with pytest.raises(ValueError, match="integer"):
        cross_entropy(logits, [0.0, 1.0, 2.0])


# ----------------------------------------------------------------------------- embedding


def test_embedding_matches_torch_with_repeated_tokens(rng):
    E = rng.standard_normal((7, 4))
    tokens = np.array([[3, 1, 3, 3, 6], [0, 1, 1, 3, 5]])  # 3 four times, 1 three times, 2 and 4 unused
    out, cache = embedding(tokens, E)
    dout = rng.standard_normal(out.shape)
    dE = embedding_backward(dout, cache)
    tE = leaf(E)
    tout = F.embedding(torch.tensor(tokens), tE)
    tout.backward(torch.tensor(dout))
    assert_close(out, tout)
    assert_close(dE, tE.grad)
    np.testing.assert_array_equal(dE[[2, 4]], 0.0)


def test_embedding_repeats_accumulate():
    _, cache = embedding([2, 2, 2, 0], np.zeros((3, 2)))
    dE = embedding_backward(np.ones((4, 2)), cache)
    np.testing.assert_array_equal(dE, [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]])


def test_embedding_gradcheck(rng):
    tokens = np.array([1, 0, 1, 2, 1])
    check_gradients(lambda E: embedding(tokens, E), embedding_backward, [rng.standard_normal((4, 3))], rng)


def test_embedding_rejects_bad_tokens_and_shapes():
    with pytest.raises(ValueError, match=r"\[0, 3\).*\(3, 2\)"):
        embedding([0, 3], np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        embedding([[-1]], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="integer"):
        embedding([0.5], np.zeros((3, 2)))
    _, cache = embedding([0, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        embedding_backward(np.zeros((2, 3)), cache)


# ----------------------------------------------------------------------------- positional encoding


@pytest.mark.parametrize("d_model", [1, 4, 5, 8])
def test_positional_encoding_follows_the_paper(d_model):
    seq_len = 9
    PE = positional_encoding(seq_len, d_model)
    assert PE.shape == (seq_len, d_model)
    for pos in range(seq_len):
        for i in range(d_model):
            angle = pos / 10000 ** (2 * (i // 2) / d_model)
            assert PE[pos, i] == pytest.approx(math.sin(angle) if i % 2 == 0 else math.cos(angle), abs=1e-15)
    np.testing.assert_array_equal(PE[0], [0.0 if i % 2 == 0 else 1.0 for i in range(d_model)])


def test_positional_encoding_rejects_bad_sizes():
    with pytest.raises(ValueError, match="d_model"):
        positional_encoding(4, 0)
    with pytest.raises(ValueError, match="seq_len must be an integer"):
        positional_encoding(4.5, 2)


# ----------------------------------------------------------------------------- multi-head attention


def torch_multi_head(X, W_q, W_k, W_v, W_o, n_heads, mask):
    *lead, n, d = X.shape

    def split(M):
        return M.reshape(*lead, n, n_heads, d // n_heads).transpose(-2, -3)

    heads = F.scaled_dot_product_attention(
        split(X @ W_q), split(X @ W_k), split(X @ W_v),
        attn_mask=None if mask is None else torch.tensor(mask)[..., None, :, :],
    )
    return heads.transpose(-2, -3).reshape(*lead, n, d) @ W_o


@pytest.mark.parametrize("x_shape, n_heads", [((5, 6), 2), ((2, 4, 6), 3), ((2, 3, 4, 8), 4), ((3, 6), 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_torch(rng, x_shape, n_heads, causal):
    n, d = x_shape[-2:]
    X = rng.standard_normal(x_shape)
    Ws = [rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(4)]
    mask = np.tril(np.ones((n, n), dtype=bool)) if causal else None
    out, cache = multi_head_attention(X, *Ws, n_heads=n_heads, mask=mask)
    dout = rng.standard_normal(out.shape)
    grads = multi_head_attention_backward(dout, cache)

    tensors = [leaf(X)] + [leaf(W) for W in Ws]
    tout = torch_multi_head(*tensors, n_heads, mask)
    tout.backward(torch.tensor(dout))
    assert_close(out, tout)
    for grad, tensor in zip(grads, tensors):
        assert_close(grad, tensor.grad)


def test_multi_head_attention_causal_mask_blocks_the_future(rng):
    X = rng.standard_normal((4, 6))
    Ws = [rng.standard_normal((6, 6)) for _ in range(4)]
    mask = np.tril(np.ones((4, 4), dtype=bool))
    out, _ = multi_head_attention(X, *Ws, n_heads=2, mask=mask)
    X_changed = X.copy()
    X_changed[3] += 1.0  # the last token: no earlier output may depend on it
    out_changed, _ = multi_head_attention(X_changed, *Ws, n_heads=2, mask=mask)
    np.testing.assert_array_equal(out[:3], out_changed[:3])
    assert not np.allclose(out[3], out_changed[3])


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_gradcheck(rng, causal):
    X = rng.standard_normal((2, 3, 4))
    Ws = [rng.standard_normal((4, 4)) for _ in range(4)]
    mask = np.tril(np.ones((3, 3), dtype=bool)) if causal else None
    forward = lambda X, W_q, W_k, W_v, W_o: multi_head_attention(X, W_q, W_k, W_v, W_o, 2, mask)  # noqa: E731
    check_gradients(forward, multi_head_attention_backward, [X, *Ws], rng)


def test_multi_head_attention_rejects_bad_shapes():
    I6 = np.eye(6)
    with pytest.raises(ValueError, match=r"n_heads = 4.*d_model = 6.*\(5, 6\)"):
        multi_head_attention(np.ones((5, 6)), I6, I6, I6, I6, n_heads=4)
    with pytest.raises(ValueError, match=r"W_k \(6, 5\).*\(6, 6\).*\(5, 6\)"):
        multi_head_attention(np.ones((5, 6)), I6, np.ones((6, 5)), I6, I6, n_heads=2)
    with pytest.raises(ValueError, match=r"mask \(4, 4\).*\(5, 5\)"):
        multi_head_attention(np.ones((5, 6)), I6, I6, I6, I6, n_heads=2, mask=np.ones((4, 4), dtype=bool))



# ----------------------------------------------------------------------------- edges and messages


def test_gelu_default_is_the_exact_gelu_as_in_torch(rng):
    x = 3 * rng.standard_normal(9)
    assert_close(gelu(x)[0], F.gelu(torch.tensor(x)))


def test_layer_norm_of_one_feature_is_beta_as_in_torch():
    x, gamma, beta = np.array([[3.0], [-1.0]]), np.array([2.0]), np.array([0.5])
    y, cache = layer_norm(x, gamma, beta)
    expected = F.layer_norm(torch.tensor(x), (1,), torch.tensor(gamma), torch.tensor(beta))
    np.testing.assert_array_equal(y, expected.numpy())
    dx, _, _ = layer_norm_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, [[0.0], [0.0]])


def test_layer_norm_needs_a_feature_axis():
    for x in (np.float64(1.0), np.zeros((2, 0))):
        with pytest.raises(ValueError, match=r"needs a non-empty last axis$"):
            layer_norm(x, np.ones(0), np.zeros(0))


def test_cross_entropy_of_one_class_is_zero_as_in_torch():
    loss, cache = cross_entropy([[5.0], [-2.0]], [0, 0])
    assert loss == F.cross_entropy(torch.tensor([[5.0], [-2.0]]), torch.tensor([0, 0])).item() == 0.0
    assert cross_entropy_backward(1.0, cache).tolist() == [[0.0], [0.0]]


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (3,), (1, 2, 3)])
def test_cross_entropy_needs_a_non_empty_matrix(shape):
    with pytest.raises(ValueError, match=rf"^logits \({', '.join(map(str, shape))},?\) must be \[N, C\] with N, C >= 1$"):
        cross_entropy(np.zeros(shape), np.zeros(shape[:1], dtype=int))


def test_loss_and_index_messages():
    with pytest.raises(ValueError, match=r"^dloss \(2,\) must be a scalar"):
        cross_entropy_backward(np.ones(2), cross_entropy([[0.0, 1.0]], [0])[1])
    with pytest.raises(ValueError, match=r"^targets must be an integer array, got dtype float64 with shape \(2,\)$"):
        cross_entropy(np.zeros((2, 3)), [0.0, 1.0])
    with pytest.raises(ValueError, match=r"^tokens \(2,\) must lie in \[0, 3\) for E \(3, 2\); got min 3, max 5$"):
        embedding([3, 5], np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"^tokens \(2,\) must lie in \[0, 3\) for E \(3, 2\); got min -2, max -1$"):
        embedding([-2, -1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"^E \(3,\) must be a matrix \[vocab, d\]$"):
        embedding([0], np.zeros(3))
    out, cache = embedding(np.zeros((2, 0), dtype=int), np.zeros((3, 2)))  # no tokens: nothing to look up
    assert out.shape == (2, 0, 2) and embedding_backward(np.zeros((2, 0, 2)), cache).shape == (3, 2)
    with pytest.raises(ValueError, match=r"^x \(2, 3\) does not end in d_in = 4 of W \(4, 5\)$"):
        linear(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^W \(4,\) must be a matrix \[d_in, d_out\]$"):
        linear(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"^dy \(3,\) does not match x \(2,\)$"):
        relu_backward(np.ones(3), relu(np.ones(2))[1])
    with pytest.raises(ValueError, match=r"^dy \(3,\) does not match x \(2,\)$"):
        gelu_backward(np.ones(3), gelu(np.ones(2))[1])
    with pytest.raises(ValueError, match=r"^dy \(3,\) does not match x \(2,\)$"):
        layer_norm_backward(np.ones(3), layer_norm(np.ones(2), np.ones(2), np.zeros(2))[1])


def test_positional_encoding_of_no_positions_is_empty():
    assert positional_encoding(0, 4).shape == (0, 4)


def test_integer_inputs_are_computed_in_float64():
    y, _ = linear([[1, 2]], [[1], [1]], [1])
    assert y.dtype == np.float64 and y.tolist() == [[4.0]]
    assert relu([3, -2])[0].dtype == np.float64
    half, _ = layer_norm([[1, 3]], [1, 1], [0, 0])
    assert half.dtype == np.float64 and abs(half[0, 1] - 1.0) < 1e-5


@pytest.mark.parametrize("x_max, step", [(0.5, 0.01), (1.5, 0.1), (10.0, 0.25)])
def test_gelu_derivative_max_difference_on_other_ranges(x_max, step):
    """On [0, 0.5] the gap still grows (the peak is the right end); on [0, 1.5] it peaks near 0.96."""
    x_at_max, value = gelu_derivative_max_difference(x_max=x_max, step=step)
    grid = torch.linspace(0, x_max, 200_001, dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(F.gelu(grid).sum(), grid)
    (approx,) = torch.autograd.grad(F.gelu(grid, approximate="tanh").sum(), grid)
    gap = (exact - approx).abs().numpy()
    k = int(np.argmax(gap))
    assert abs(float(grid.detach()[k]) - x_at_max) < 2 * x_max / 200_000
    assert value == pytest.approx(float(gap[k]), rel=1e-6)
    assert 0 <= x_at_max <= x_max


def test_multi_head_attention_with_one_feature_matches_torch(rng):
    X, Ws = rng.standard_normal((3, 1)), [rng.standard_normal((1, 1)) for _ in range(4)]
    out, cache = multi_head_attention(X, *Ws, n_heads=1)
    dout = rng.standard_normal(out.shape)
    grads = multi_head_attention_backward(dout, cache)
    tensors = [leaf(X)] + [leaf(W) for W in Ws]
    tout = torch_multi_head(*tensors, 1, None)
    tout.backward(torch.tensor(dout))
    assert_close(out, tout)
    for grad, tensor in zip(grads, tensors):
        assert_close(grad, tensor.grad)
