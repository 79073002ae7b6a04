"""NaN and infinity in, NaN (or the documented value) out: never a finite wrong number.

Each reference function's docstring says what it returns for non-finite input; these tests
hold it to that, against PyTorch (float64) wherever the reference follows PyTorch, and against
closed forms where it deliberately does better (norms and LayerNorm of huge finite values).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_model import float64_torch  # noqa: F401 (autouse fixture: torch in float64)

from derivations.reference import (
    attention,
    attention_backward,
    clip_grad_norm,
    cross_entropy,
    cross_entropy_backward,
    embedding,
    gelu,
    gelu_backward,
    gradcheck,
    layer_norm,
    layer_norm_backward,
    linear,
    multi_head_attention,
    relative_error,
    relu,
    relu_backward,
    rnn_forward,
    sgd_step,
    softmax,
    softmax_backward,
    adam_init,
    adam_step,
    momentum_init,
    momentum_step,
)
from derivations.reference.model import TransformerConfig, forward_backward, init_params, loss_and_grads
from derivations.reference.monitor import gradient_report

NAN, INF = math.nan, math.inf
# The documented non-finite paths are quiet: no RuntimeWarning from the arithmetic inside.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def same(actual, expected, rtol=1e-12):
    """Equal up to ``rtol``, with NaN where the other has NaN and infinities of the same sign."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0, equal_nan=True)


# ----------------------------------------------------------------------------- softmax and attention


def test_softmax_follows_torch_on_nan_and_infinity():
    x = np.array([
        [NAN, 1.0, 2.0],      # the example: torch gives NaN, the old reference [0, 0, 0]
        [INF, 1.0, 2.0],      # +inf: undefined, NaN
        [-INF, 1.0, 2.0],     # -inf: weight 0, the rest as if it were not there
        [-INF, -INF, -INF],   # nothing but -inf: NaN, as torch (only the mask gives zeros)
        [1.0, 2.0, 3.0],      # an ordinary row next to them is untouched
    ])
    y, cache = softmax(x)
    same(y, torch.softmax(torch.tensor(x), dim=-1))
    assert np.array_equal(y[2], [0.0, *(np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum())]) or \
        np.allclose(y[2], [0.0, 1 / (1 + math.e), math.e / (1 + math.e)], rtol=1e-15, atol=0)
    dx = softmax_backward(np.ones_like(x), cache)
    assert np.all(np.isnan(dx[[0, 1, 3]])) and np.all(np.isfinite(dx[[2, 4]]))


def test_masked_softmax_of_large_scores_does_not_overflow():
    """With a mask the general path runs; it must still shift by the row maximum (exp(1000) overflows)."""
    scores = np.array([[1000.0, 999.0, 5.0], [-1000.0, -1001.0, 0.0]])
    mask = np.array([[True, True, False], [True, True, False]])
    y, _ = softmax(scores, mask)
    expected = np.array([1.0, math.exp(-1.0), 0.0]) / (1.0 + math.exp(-1.0))
    np.testing.assert_allclose(y, [expected, expected], rtol=1e-14, atol=0)


def test_softmax_mask_hides_nan_and_only_the_mask_gives_zero_rows():
    x = np.array([[NAN, 1.0, 2.0], [INF, 0.0, 0.0], [3.0, NAN, INF]])
    mask = np.array([[False, True, True], [False, True, True], [False, False, False]])
    y, _ = softmax(x, mask)
    expected = torch.softmax(torch.tensor(x).masked_fill(~torch.tensor(mask), -INF), dim=-1)
    same(y[:2], expected[:2])  # masked entries are never read, as with torch's masked_fill
    assert np.array_equal(y[2], [0.0, 0.0, 0.0])  # fully masked: zeros (torch: NaN), the documented convention


def torch_attention(Q, K, V, mask=None):
    q, k, v = (torch.tensor(a) for a in (Q, K, V))
    scores = q @ k.transpose(-1, -2) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~torch.tensor(mask), -INF)
    return torch.softmax(scores, dim=-1) @ v


def test_attention_rows_that_see_a_nan_score_are_nan_not_zero():
    rng = np.random.default_rng(0)
    Q, K, V = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    K[2, 1] = NAN
    mask = np.ones((3, 5), dtype=bool)
    mask[0, 2] = False  # query 0 never sees key 2, so its row stays finite
    O, cache = attention(Q, K, V, mask)
    same(O, torch_attention(Q, K, V, mask))
    assert np.all(np.isfinite(O[0])) and np.all(np.isnan(O[1:]))
    assert np.all(np.isnan(cache.A[1:])) and cache.A[0, 2] == 0.0
    leaves = [torch.tensor(a, requires_grad=True) for a in (Q, K, V)]
    scores = leaves[0] @ leaves[1].T / 2.0
    (torch.softmax(scores.masked_fill(~torch.tensor(mask), -INF), dim=-1) @ leaves[2]).sum().backward()
    for mine, leaf in zip(attention_backward(np.ones_like(O), cache), leaves):
        same(mine, leaf.grad)  # dQ[0] reads K[2] with weight 0: 0 * NaN is NaN in both


def test_attention_nan_value_row_reaches_the_output_even_when_masked():
    rng = np.random.default_rng(1)
    Q, K, V = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    V[3, 0] = NAN
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    O, _ = attention(Q, K, V, mask)
    same(O, torch_attention(Q, K, V, mask))  # 0 * NaN is NaN, in the product A V as in torch
    assert np.all(np.isnan(O[:, 0])) and np.all(np.isfinite(O[:, 1]))


def test_attention_scores_that_overflow_give_nan_rows():
    Q = np.array([[1e200, 0.0]])
    K = np.array([[1e200, 0.0], [0.0, 1.0]])
    O, _ = attention(Q, K, np.eye(2))
    assert np.all(np.isnan(O))


def test_one_nan_in_a_key_weight_gives_the_model_a_nan_loss():
    """The issue's example: one NaN in W_k used to give a finite, plausible loss."""
    config = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32)
    params = init_params(config)
    tokens, targets = [[15, 17, 3, 19, 8, 19, 4, 18]], [8]
    clean_loss, _ = loss_and_grads(params, tokens, targets, config)
    assert math.isfinite(clean_loss)
    params["block0.attn.W_k"][3, 5] = NAN
    loss, grads = loss_and_grads(params, tokens, targets, config)
    assert math.isnan(loss)
    assert np.all(np.isnan(grads["W_out"])) and np.all(np.isnan(grads["block0.attn.W_k"]))


def test_an_infinite_embedding_row_that_is_read_gives_a_nan_loss_and_one_that_is_not_read_does_not():
    config = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_ff=16)
    params = init_params(config)
    params["embed"][0] = INF  # token 0 (padding) never occurs below
    loss, _ = loss_and_grads(params, [[15, 17, 3, 19, 8, 19, 4, 18]], [8], config)
    assert math.isfinite(loss)
    params["embed"][15] = INF
    loss, _, trace = forward_backward(params, [[15, 17, 3, 19, 8, 19, 4, 18]], [8], config, record=True)
    assert math.isnan(loss) and np.all(np.isinf(trace["activations"]["embed.out"][0, 0]))


# ----------------------------------------------------------------------------- the other layers


def test_relu_follows_torch_on_nan_and_infinity():
    x = np.array([NAN, -1.0, 0.0, -0.0, 2.0, INF, -INF])
    y, cache = relu(x)
    dy = np.arange(1.0, 8.0)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.relu(tx)
    ty.backward(torch.tensor(dy))
    same(y, ty)
    same(relu_backward(dy, cache), tx.grad)  # torch lets the gradient through at NaN
    assert cache.passes.tolist() == [True, False, False, False, True, True, False]


def test_relu_blocks_an_infinite_gradient_without_making_nan():
    """Where ReLU blocks, the gradient is 0 even when the incoming one is infinite (a product with the
    mask would give inf * 0 = NaN there), as PyTorch's; where it passes, NaN and infinity go through."""
    x = np.array([-1.0, 2.0, -3.0, 4.0, 5.0])
    _, cache = relu(x)
    dy = np.array([INF, NAN, -INF, 5.0, -INF])
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(dy))
    dx = relu_backward(dy, cache)
    same(dx, tx.grad)
    assert dx[0] == 0.0 and dx[2] == 0.0 and np.isnan(dx[1]) and dx[3] == 5.0 and dx[4] == -INF


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_follows_torch_on_nan_and_infinity(approximate):
    x = np.array([NAN, INF, -INF, 1.5])
    y, cache = gelu(x, approximate)
    same(y, F.gelu(torch.tensor(x), approximate=approximate))
    dx = gelu_backward(np.ones(4), cache)
    assert np.all(np.isnan(dx[:3])) and np.isfinite(dx[3])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_derivative_is_finite_for_every_finite_input(approximate):
    # x^2 overflows beyond 1e154; the derivative there is 1 (x > 0) or 0 (x < 0) to float64 precision.
    x = np.array([1e200, -1e200, 1e160, -1e160, 1e300])
    y, cache = gelu(x, approximate)
    np.testing.assert_array_equal(y, [1e200, -0.0, 1e160, -0.0, 1e300])
    np.testing.assert_array_equal(gelu_backward(np.ones(5), cache), [1.0, 0.0, 1.0, 0.0, 1.0])


def test_layer_norm_nan_or_infinite_rows_are_nan_and_other_rows_are_untouched():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5))
    x[1, 2], x[3, 0] = NAN, INF
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    y, cache = layer_norm(x, gamma, beta)
    same(y, F.layer_norm(torch.tensor(x), (5,), torch.tensor(gamma), torch.tensor(beta), 1e-5), rtol=1e-10)
    assert np.all(np.isnan(y[[1, 3]])) and np.all(np.isfinite(y[[0, 2]]))
    dx, dgamma, dbeta = layer_norm_backward(np.ones_like(x), cache)
    assert np.all(np.isnan(dx[[1, 3]])) and np.all(np.isfinite(dx[[0, 2]]))


@pytest.mark.parametrize("scale", [1e200, 1e300, 1e-200])
def test_layer_norm_of_huge_or_tiny_finite_rows_is_the_normalised_row(scale):
    """LN(c x) = LN(x) whenever eps is negligible beside the variance; torch returns beta at 1e200."""
    base = np.array([[1.0, -2.0, 0.5, 3.0], [4.0, 4.0, 4.0, 4.5]])
    gamma, beta = np.array([1.0, 2.0, -1.0, 0.5]), np.array([0.0, 1.0, 2.0, 3.0])
    y, cache = layer_norm(scale * base, gamma, beta)
    centred = base - base.mean(axis=1, keepdims=True)
    x_hat = centred / np.sqrt((centred**2).mean(axis=1, keepdims=True))
    if scale < 1:  # tiny rows: the variance is far below eps, so x_hat is x / sqrt(eps) ~ 0, y ~ beta
        x_hat = scale * centred / math.sqrt(1e-5)
    np.testing.assert_allclose(y, gamma * x_hat + beta, rtol=1e-12, atol=1e-300)
    dx, _, _ = layer_norm_backward(np.ones_like(base), cache)
    assert np.all(np.isfinite(dx))


def test_cross_entropy_follows_torch_on_nan_and_infinity():
    cases = [
        ([[NAN, 0.0, 1.0]], [1]),
        ([[INF, 0.0, 1.0]], [0]),
        ([[-INF, 0.0, 1.0]], [0]),   # the target has probability 0: +inf
        ([[-INF, 0.0, 1.0]], [2]),   # a -inf elsewhere is a probability of 0: finite
        ([[-INF, -INF, -INF]], [1]),
    ]
    for logits, targets in cases:
        loss, cache = cross_entropy(logits, targets)
        expected = F.cross_entropy(torch.tensor(logits), torch.tensor(targets)).item()
        assert (math.isnan(loss) and math.isnan(expected)) or loss == pytest.approx(expected, rel=1e-14), logits
    dlogits = cross_entropy_backward(NAN, cross_entropy([[0.0, 1.0]], [0])[1])
    assert np.all(np.isnan(dlogits))


def test_linear_and_embedding_carry_nan_exactly_where_it_is_read():
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    x[1, 0] = NAN
    y, _ = linear(x, W)
    same(y, torch.tensor(x) @ torch.tensor(W))
    assert np.all(np.isnan(y[1])) and np.all(np.isfinite(y[[0, 2]]))
    E = rng.standard_normal((5, 3))
    E[2, 1] = NAN
    out, _ = embedding([[2, 0, 2, 4]], E)
    same(out, F.embedding(torch.tensor([[2, 0, 2, 4]]), torch.tensor(E)))
    assert np.isnan(out[0, [0, 2], 1]).all() and np.isfinite(out[0, [1, 3]]).all()


def test_multi_head_attention_with_a_nan_key_weight_is_nan_everywhere():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3, 4))
    Ws = [rng.standard_normal((4, 4)) for _ in range(4)]
    Ws[1][0, 0] = NAN  # head 0's keys: every score of head 0 is NaN, and W_o mixes head 0 into every output
    out, cache = multi_head_attention(X, *Ws, n_heads=2)
    assert np.all(np.isnan(out))
    assert np.all(np.isnan(cache.attention.A[0])) and np.all(np.isfinite(cache.attention.A[1]))


def test_rnn_nan_input_poisons_its_sequence_from_that_step_on_and_nothing_else():
    rng = np.random.default_rng(5)
    x, h0 = rng.standard_normal((4, 2, 3)), np.zeros((2, 5))
    W_xh, W_hh, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 5)), np.zeros(5)
    x[1, 0, 2] = NAN
    hs, _ = rnn_forward(x, h0, W_xh, W_hh, b)
    assert np.all(np.isfinite(hs[0])) and np.all(np.isnan(hs[1:, 0])) and np.all(np.isfinite(hs[:, 1]))


# ----------------------------------------------------------------------------- norms, monitor, gradcheck


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e-320])
def test_clip_grad_norm_of_huge_or_tiny_finite_gradients(scale):
    grads = {"a": np.array([3.0 * scale]), "b": np.array([[0.0, 4.0 * scale]])}
    clipped, total = clip_grad_norm(grads, max_norm=1.0)
    expected = 5.0 * scale if scale > 1e-300 else math.hypot(3 * scale, 4 * scale)  # subnormals round
    assert total == pytest.approx(expected, rel=1e-15)
    if scale > 1:  # clipped to norm 1 in the same direction: [0.6, 0.8] up to the 1e-6 guard
        np.testing.assert_allclose(clipped["a"], [0.6], rtol=1e-14)
        np.testing.assert_allclose(clipped["b"], [[0.0, 0.8]], rtol=1e-14)
    else:  # far below the threshold: untouched
        np.testing.assert_array_equal(clipped["b"], grads["b"])


@pytest.mark.parametrize("bad, norm_is", [(NAN, "nan"), (INF, "inf"), (-INF, "inf")])
def test_clip_grad_norm_with_a_nonfinite_gradient_returns_nan_or_raises(bad, norm_is):
    grads = [np.array([1.0, bad]), np.array([2.0])]
    clipped, total = clip_grad_norm(grads, max_norm=1.0)
    assert math.isnan(total) if norm_is == "nan" else total == INF
    assert all(np.all(np.isnan(g)) for g in clipped) and isinstance(clipped, list)
    clipped, _ = clip_grad_norm({"w": grads[0], "b": grads[1]}, max_norm=1e9)
    assert list(clipped) == ["w", "b"] and np.all(np.isnan(clipped["b"]))
    with pytest.raises(ValueError, match=r"grads\['w'\] hold NaN or infinity"):
        clip_grad_norm({"w": grads[0], "b": grads[1]}, max_norm=1.0, error_if_nonfinite=True)


def test_gradient_report_statistics_do_not_overflow():
    g = np.array([1e308, 1e308, -1e308, NAN])
    (row,) = gradient_report({"w": g})
    finite = np.array([1.0, 1.0, -1.0])  # the finite entries, divided by 1e308
    assert row.mean == pytest.approx(1e308 * finite.mean(), rel=1e-14)
    assert row.std == pytest.approx(1e308 * math.sqrt(8 / 9), rel=1e-14)
    assert row.norm == pytest.approx(1e308 * math.sqrt(3), rel=1e-14)
    assert row.max_abs == 1e308 and row.nonfinite == 1 and row.flags == ("huge", "nonfinite")
    (empty,) = gradient_report({"e": np.array([NAN, INF])})
    assert math.isnan(empty.norm) and empty.flags == ("nonfinite",)


def test_gradcheck_never_passes_a_nan_gradient():
    x = np.array([1.0, 2.0])
    errors = gradcheck(lambda x: float(np.sum(x**2)), [x], [np.array([2.0, NAN])])
    assert errors == [INF] and not max(errors) < 1e-6
    with pytest.raises(ValueError, match="f is nan"), np.errstate(invalid="ignore"):
        gradcheck(lambda x: float(np.sum(np.sqrt(x - 5))), [x], [np.ones(2)])
    np.testing.assert_array_equal(relative_error([NAN, INF, 1.0], [NAN, INF, 1.0]), [INF, INF, 0.0])


# ----------------------------------------------------------------------------- optimisers


def test_optimiser_steps_carry_a_nan_gradient_into_that_entry_only_as_torch_does():
    params = {"w": np.array([1.0, 2.0, 3.0])}
    grads = {"w": np.array([0.5, NAN, -1.0])}
    tensor = torch.tensor(params["w"], requires_grad=True)
    for step, options in ((sgd_step, {}), (momentum_step, {"momentum": 0.9}), (adam_step, {})):
        tensor = torch.tensor(params["w"], requires_grad=True)
        optimizer = {sgd_step: torch.optim.SGD, momentum_step: torch.optim.SGD, adam_step: torch.optim.Adam}[step](
            [tensor], lr=0.1, **options)
        tensor.grad = torch.tensor(grads["w"])
        optimizer.step()
        if step is sgd_step:
            new = step(params, grads, lr=0.1)
        elif step is momentum_step:
            new, _ = step(params, grads, momentum_init(params), lr=0.1, **options)
        else:
            new, _ = step(params, grads, adam_init(params), lr=0.1)
        same(new["w"], tensor.detach())
        assert np.isnan(new["w"][1]) and np.all(np.isfinite(new["w"][[0, 2]]))


def test_layer_norm_of_huge_rows_in_any_layout_and_its_gradient():
    """Rows of 1e200 next to a NaN row, in a 3-D batch: each huge row is normalised on its own, and the
    gradient scales as 1/c (LN(c x) = LN(x) for eps negligible, so d/dx LN(c x) = (1/c) LN'(x))."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((2, 3, 4))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    huge = 1e200 * base
    huge[1, 2] = [1.0, NAN, 2.0, 3.0]
    y, cache = layer_norm(huge, gamma, beta)
    reference, reference_cache = layer_norm(base, gamma, beta, eps=1e-300)  # eps negligible, as for 1e200 rows
    np.testing.assert_allclose(y[0], reference[0], rtol=1e-12)
    np.testing.assert_allclose(y[1, :2], reference[1, :2], rtol=1e-12)
    assert np.all(np.isnan(y[1, 2]))
    dy = rng.standard_normal(base.shape)
    dx, _, _ = layer_norm_backward(dy, cache)
    dx_reference, _, _ = layer_norm_backward(dy, reference_cache)
    np.testing.assert_allclose(dx[0] * 1e200, dx_reference[0], rtol=1e-10)
    assert np.all(np.isnan(dx[1, 2]))


def test_infinity_times_zero_inside_products_is_a_quiet_nan_and_overflow_a_quiet_inf():
    Q = np.array([[INF, 1.0]])
    K = np.array([[0.0, 1.0], [1.0, 0.0]])  # the score with key 0 is inf * 0 + 1 = NaN
    O, _ = attention(Q, K, np.eye(2))
    assert np.all(np.isnan(O))
    y, _ = linear([[1e200, 1.0]], [[1e200], [0.0]])
    assert y.tolist() == [[INF]]
