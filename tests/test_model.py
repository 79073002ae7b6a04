"""The whole model of ``derivations.reference.model`` against central differences and an independent
PyTorch model built from ``torch.nn`` modules (its own attention, LayerNorm, GELU and loss).

Expected values never come from the code under test: they come from finite differences of the
loss, from torch autograd, from torch's own parameter count, or from hand-known facts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_model import TorchTransformer, assert_matches_torch, float64_torch  # noqa: F401 (autouse fixture)

from derivations.reference.model import (
    TransformerConfig,
    backward,
    cache_nbytes,
    count_params,
    forward,
    forward_backward,
    init_params,
    loss_and_grads,
    matmul_flops,
    model_loss,
    param_shapes,
    stage_names,
)

VARIANTS = {
    "default": TransformerConfig(),
    "pre-norm": TransformerConfig(norm="pre"),
    "gelu": TransformerConfig(activation="gelu"),
    "gelu_tanh": TransformerConfig(activation="gelu_tanh"),
    "4 blocks": TransformerConfig(n_layers=4),
    "4 blocks pre-norm gelu": TransformerConfig(n_layers=4, norm="pre", activation="gelu"),
    "learned positions": TransformerConfig(positions="learned"),
    "learned positions pre-norm gelu": TransformerConfig(norm="pre", activation="gelu", positions="learned"),
}
FD_TOL = 1e-7
TORCH_TOL = 1e-10


def random_batch(config, rng, batch=4, length=None):
    length = config.seq_len if length is None else length
    return rng.integers(0, config.vocab_size, (batch, length)), rng.integers(0, config.vocab_size, batch)


def perturbed(params, rng, scale=0.1):
    """Move away from the structured initialisation (zero biases, unit gains) so every term matters."""
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in params.items()}


# ----------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradient_matches_central_differences_along_random_directions(variant):
    config = VARIANTS[variant]
    rng = np.random.default_rng(sum(map(ord, variant)))
    params = perturbed(init_params(config, seed=3), rng)
    tokens, targets = random_batch(config, rng)
    _, grads = loss_and_grads(params, tokens, targets, config)
    h = 1e-4  # a unit direction: the step moves all parameters together by 1e-4 in norm
    for _ in range(3):
        direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        norm = math.sqrt(sum(float(np.sum(d * d)) for d in direction.values()))
        direction = {k: d / norm for k, d in direction.items()}
        plus = model_loss({k: params[k] + h * direction[k] for k in params}, tokens, targets, config)
        minus = model_loss({k: params[k] - h * direction[k] for k in params}, tokens, targets, config)
        numeric = (plus - minus) / (2 * h)
        analytic = sum(float(np.sum(grads[k] * direction[k])) for k in params)
        assert abs(numeric - analytic) <= FD_TOL * abs(analytic), (variant, numeric, analytic)


def test_finite_difference_check_catches_a_wrong_gradient():
    """The control: a gradient with one parameter's gradient scaled by 1.01 fails the same check."""
    config = TransformerConfig(n_layers=1)
    rng = np.random.default_rng(7)
    params = perturbed(init_params(config), rng)
    tokens, targets = random_batch(config, rng)
    _, grads = loss_and_grads(params, tokens, targets, config)
    grads["block0.ffn.W1"] = grads["block0.ffn.W1"] * 1.01
    direction = {k: (g / np.linalg.norm(g) if k == "block0.ffn.W1" else np.zeros_like(g)) for k, g in grads.items()}
    h = 1e-4
    plus = model_loss({k: params[k] + h * direction[k] for k in params}, tokens, targets, config)
    minus = model_loss({k: params[k] - h * direction[k] for k in params}, tokens, targets, config)
    analytic = sum(float(np.sum(grads[k] * direction[k])) for k in params)
    assert abs((plus - minus) / (2 * h) - analytic) > FD_TOL * abs(analytic)


# ----------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_and_gradients_match_pytorch(variant):
    config = VARIANTS[variant]
    rng = np.random.default_rng(100 + len(variant))
    params = perturbed(init_params(config, seed=5), rng)
    tokens, targets = random_batch(config, rng, batch=3)
    loss, grads = loss_and_grads(params, tokens, targets, config)
    assert_matches_torch(loss, grads, params, tokens, targets, config, TORCH_TOL)


def test_shorter_sequences_match_pytorch():
    config = TransformerConfig()
    rng = np.random.default_rng(11)
    params = perturbed(init_params(config), rng)
    tokens, targets = random_batch(config, rng, batch=2, length=5)
    loss, grads = loss_and_grads(params, tokens, targets, config)
    model = TorchTransformer(config)
    model.load(params)
    torch_loss = model(torch.tensor(tokens), torch.tensor(targets))
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= TORCH_TOL * abs(torch_loss.item())
    np.testing.assert_allclose(grads["embed"], model.grads()["embed"], rtol=TORCH_TOL, atol=1e-14)


@pytest.mark.parametrize("variant", ["default", "pre-norm", "4 blocks", "learned positions"])
def test_parameter_count_matches_torch(variant):
    config = VARIANTS[variant]
    params = init_params(config)
    torch_count = sum(p.numel() for p in TorchTransformer(config).parameters())
    assert count_params(params) == torch_count
    assert count_params(params) == sum(a.size for a in params.values())


# ----------------------------------------------------------------------------- structure and validation


def test_names_shapes_and_init_scheme():
    config = TransformerConfig()
    params = init_params(config, seed=0)
    assert list(params) == list(param_shapes(config))
    assert {"embed", "block0.attn.W_q", "block1.ln2.gamma", "block0.ffn.b1", "W_out", "b_out"} <= set(params)
    assert "ln_final.gamma" not in params and "ln_final.gamma" in init_params(TransformerConfig(norm="pre"))
    assert params["W_out"].shape == (64, 20) and params["b_out"].shape == (20,)
    assert all(a.dtype == np.float64 for a in params.values())
    # N(0, 1/d_in): the sample standard deviation of a 64 x 256 matrix is within a few % of 1/8
    assert abs(params["block0.ffn.W1"].std() - 1 / 8) < 0.01
    assert abs(params["block0.ffn.W2"].std() - 1 / 16) < 0.005
    other_seed = init_params(config, seed=1)
    assert not np.array_equal(params["embed"], other_seed["embed"])


def test_record_gives_every_stage_and_the_same_gradients():
    config = TransformerConfig(norm="pre", n_layers=3)
    rng = np.random.default_rng(1)
    params = init_params(config)
    tokens, targets = random_batch(config, rng)
    loss, grads = loss_and_grads(params, tokens, targets, config)
    loss_r, grads_r, trace = forward_backward(params, tokens, targets, config, record=True)
    assert loss == loss_r and all(np.array_equal(grads[k], grads_r[k]) for k in grads)
    assert list(trace["activations"]) == list(trace["grads"]) == stage_names(config)
    for name in stage_names(config):
        assert trace["grads"][name].shape == trace["activations"][name].shape, name
    assert trace["grads"]["logits"].shape == (4, 20)
    assert len(trace["attention"]) == 3 and trace["attention"][0].shape == (4, 4, 8, 8)


def test_stage_gradient_is_the_gradient_of_that_activation():
    """Perturb one recorded activation by adding eps * u to the FFN output of block 0 (post-norm)."""
    config = TransformerConfig(n_layers=2)
    rng = np.random.default_rng(2)
    params = perturbed(init_params(config), rng)
    tokens, targets = random_batch(config, rng, batch=2)
    _, _, trace = forward_backward(params, tokens, targets, config, record=True)
    u = rng.standard_normal((64,))
    # b2 is added to every position's FFN output: dL/db2 . u = sum over positions of dL/d(ffn.out) . u
    expected = float(np.sum(trace["grads"]["block0.ffn.out"] @ u))
    h = 1e-5
    plus = dict(params, **{"block0.ffn.b2": params["block0.ffn.b2"] + h * u})
    minus = dict(params, **{"block0.ffn.b2": params["block0.ffn.b2"] - h * u})
    numeric = (model_loss(plus, tokens, targets, config) - model_loss(minus, tokens, targets, config)) / (2 * h)
    assert abs(numeric - expected) < 1e-7 * max(abs(expected), 1e-3)


def test_only_the_final_position_gets_gradient_above_the_last_attention():
    config = TransformerConfig()
    _, _, trace = forward_backward(init_params(config), [[15, 17, 3, 19, 8, 19, 4, 18]], [8], config, record=True)
    top = trace["grads"]["block1.ffn.out"][0]
    assert np.all(top[:-1] == 0) and np.any(top[-1] != 0)
    assert np.all(trace["grads"]["block1.in"][0, :-1] != 0)  # attention spreads it to every position


@pytest.mark.parametrize(
    "tokens, targets, message",
    [
        ([15, 17, 3, 19, 8, 19, 4, 18], [8], "must be a non-empty [batch, seq_len]"),
        ([[15, 17, 3, 19, 8, 19, 4, 20]], [8], "id 20 at (0, 7) is outside [0, 20)"),
        ([[15, 17, 3, 19, 8, 19, 4, -1]], [8], "id -1 at (0, 7)"),
        ([[1.0] * 8], [8], "must be integer token ids"),
        ([[1] * 9], [8], "longer than seq_len = 8"),
        ([[1] * 8], [8, 8], "targets (2,) must have shape (1,)"),
        ([[1] * 8], [20], "targets must lie in [0, 20)"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_them(tokens, targets, message):
    config = TransformerConfig()
    with pytest.raises(ValueError) as info:
        loss_and_grads(init_params(config), tokens, targets, config)
    assert message in str(info.value)


def test_bad_params_and_configs_raise():
    config = TransformerConfig()
    params = init_params(config)
    with pytest.raises(ValueError, match="missing \\['W_out'\\]"):
        loss_and_grads({k: v for k, v in params.items() if k != "W_out"}, [[1] * 8], [2], config)
    with pytest.raises(ValueError, match=r"params\['b_out'\] has shape \(21,\), the config needs \(20,\)"):
        loss_and_grads(dict(params, b_out=np.zeros(21)), [[1] * 8], [2], config)
    for bad in ({"norm": "middle"}, {"activation": "tanh"}, {"n_layers": 0}, {"d_model": 2.5}, {"positions": "rope"}):
        with pytest.raises(ValueError):
            TransformerConfig(**bad)


# ----------------------------------------------------------------------------- cost accounting


def test_matmul_flops_by_hand():
    """Count the products of a 1-block model by hand: 2 m n k each."""
    config = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_ff=16, vocab_size=5, seq_len=3)
    B, T, d, H, F_, V = 2, 3, 8, 2, 16, 5
    _, cache = forward(init_params(config), np.zeros((B, T), dtype=int), config)
    flops = matmul_flops(cache)
    assert flops["attention projections"]["forward"] == 4 * 2 * (B * T) * d * d
    assert flops["attention scores and mixing"]["forward"] == B * H * (2 * T * T * (d // H)) * 2
    assert flops["FFN"]["forward"] == 2 * 2 * (B * T) * d * F_
    assert flops["output head"]["forward"] == 2 * B * d * V  # the head reads one position
    for stage in flops.values():
        assert stage["backward"] == 2 * stage["forward"]


def test_cache_nbytes_counts_shared_buffers_once_and_skips_params():
    config = TransformerConfig(n_layers=1)
    params = init_params(config)
    _, cache = forward(params, np.zeros((2, 8), dtype=int), config)
    with_params = cache_nbytes(cache)
    without = cache_nbytes(cache, params)
    # the caches refer to the weight matrices (linear maps) and the LayerNorm scales, nothing else
    referenced = [k for k in params if k.rsplit(".", 1)[-1] in ("W_q", "W_k", "W_v", "W_o", "W1", "W2", "W_out",
                                                                   "gamma")]
    assert with_params - without == sum(params[k].nbytes for k in referenced)
    # the record adds references to arrays already in the cache, or new ones; neither counts
    _, recorded = forward(params, np.zeros((2, 8), dtype=int), config, record=True)
    assert cache_nbytes(recorded, params) == without


def test_backward_without_record_returns_only_grads():
    config = TransformerConfig(n_layers=1)
    params = init_params(config)
    logits, cache = forward(params, [[1] * 8], config)
    grads = backward(np.ones_like(logits), cache)
    assert isinstance(grads, dict) and list(grads) == list(params)


# ----------------------------------------------------------------------------- the recorded trace


@pytest.mark.parametrize("variant", ["default", "pre-norm", "gelu_tanh", "4 blocks pre-norm gelu",
                                     "learned positions pre-norm gelu"])
def test_every_recorded_stage_and_its_gradient_match_pytorch(variant):
    """Each activation and stage gradient of ``record=True`` is torch's, stage by stage, for both norms."""
    config = VARIANTS[variant]
    rng = np.random.default_rng(40 + len(variant))
    params = perturbed(init_params(config, seed=2), rng)
    tokens, targets = random_batch(config, rng, batch=2, length=6)
    loss, _, trace = forward_backward(params, tokens, targets, config, record=True)

    model = TorchTransformer(config)
    model.load(params)
    torch_loss, stages, weights = model(torch.tensor(tokens), torch.tensor(targets), record=True)
    torch_loss.backward()
    assert list(stages) == stage_names(config) == list(trace["activations"]) == list(trace["grads"])
    for name, tensor in stages.items():
        for mine, theirs, what in ((trace["activations"][name], tensor.detach(), "activation"),
                                   (trace["grads"][name], tensor.grad, "gradient")):
            theirs = theirs.numpy()
            scale = float(np.max(np.abs(theirs)))
            np.testing.assert_allclose(mine, theirs, rtol=TORCH_TOL, atol=TORCH_TOL * scale, err_msg=f"{name} {what}")
    for mine, theirs in zip(trace["attention"], weights, strict=True):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=TORCH_TOL, atol=1e-14)
    probs = torch.softmax(stages["logits"].detach(), dim=-1).numpy()
    np.testing.assert_allclose(trace["probs"], probs, rtol=TORCH_TOL, atol=1e-15)
    np.testing.assert_allclose(trace["dlogits"], stages["logits"].grad.numpy(), rtol=TORCH_TOL, atol=1e-15)
    assert loss == pytest.approx(torch_loss.item(), rel=TORCH_TOL)


def test_default_layer_norm_eps_is_pytorchs():
    """A changed default would move every LayerNorm slightly; torch's own default is the independent value."""
    from derivations.reference import layer_norm

    assert TransformerConfig().ln_eps == nn.LayerNorm(4).eps
    x = np.array([[1.0, 1.001, 0.999, 1.0005]])  # variance ~5e-7, so eps = 1e-5 dominates sigma
    expected = F.layer_norm(torch.tensor(x), (4,)).numpy()  # torch's default eps
    np.testing.assert_allclose(layer_norm(x, np.ones(4), np.zeros(4))[0], expected, rtol=1e-12)


def test_predict_is_the_argmax_of_torchs_logits():
    from derivations.reference.model import predict

    config = TransformerConfig(n_layers=1)
    rng = np.random.default_rng(8)
    params = perturbed(init_params(config), rng, scale=0.5)
    tokens, targets = random_batch(config, rng, batch=6)
    model = TorchTransformer(config)
    model.load(params)
    _, stages, _ = model(torch.tensor(tokens), torch.tensor(targets), record=True)
    expected = stages["logits"].detach().numpy().argmax(axis=1)
    assert predict(params, tokens, config).tolist() == expected.tolist()
    assert len(set(expected.tolist())) > 1  # the control: not one class for every sequence


def test_matmul_flops_add_up_over_blocks_and_are_integers():
    """Two blocks cost twice one block in every stage but the output head (hand count as above, doubled)."""
    sizes = dict(d_model=8, n_heads=2, d_ff=16, vocab_size=5, seq_len=3)
    B, T, d, H, F_, V = 2, 3, 8, 2, 16, 5
    config = TransformerConfig(n_layers=2, **sizes)
    _, cache = forward(init_params(config), np.zeros((B, T), dtype=int), config)
    flops = matmul_flops(cache)
    assert flops["attention projections"]["forward"] == 2 * 4 * 2 * (B * T) * d * d
    assert flops["attention scores and mixing"]["forward"] == 2 * B * H * (2 * T * T * (d // H)) * 2
    assert flops["attention scores and mixing"]["backward"] == 2 * 2 * B * H * (2 * T * T * (d // H)) * 2
    assert flops["FFN"]["forward"] == 2 * 2 * 2 * (B * T) * d * F_
    assert flops["output head"]["forward"] == 2 * B * d * V
    assert all(type(n) is int for stage in flops.values() for n in stage.values())


def test_backward_with_record_returns_the_stage_gradients_in_backward_order():
    config = TransformerConfig(n_layers=2, norm="pre")
    params = init_params(config)
    logits, cache = forward(params, [[1, 2, 3]], config, record=True)
    grads, stage_grads = backward(np.ones_like(logits), cache)
    assert list(stage_grads) == stage_names(config)[::-1]
    assert list(grads) == list(params)


def test_embedding_is_initialised_at_the_scale_of_the_positional_encoding():
    """N(0, 1): 20 x 64 draws have a sample standard deviation within a few % of 1."""
    params = init_params(TransformerConfig())
    assert abs(params["embed"].std() - 1.0) < 0.06
    assert abs(params["block0.attn.W_q"].std() - 1 / 8) < 0.01  # the other matrices: N(0, 1/d_in)
    assert np.array_equal(init_params(TransformerConfig())["embed"], init_params(TransformerConfig(), seed=0)["embed"])


def test_a_non_default_layer_norm_eps_reaches_every_layer_norm():
    config = TransformerConfig(n_layers=1, norm="pre", ln_eps=0.5, d_model=8, n_heads=2, d_ff=8)
    rng = np.random.default_rng(9)
    params = perturbed(init_params(config), rng, scale=0.3)
    tokens, targets = random_batch(config, rng, batch=2)
    loss, grads = loss_and_grads(params, tokens, targets, config)
    model = TorchTransformer(config)
    model.load(params)
    torch_loss = model(torch.tensor(tokens), torch.tensor(targets))
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=TORCH_TOL)
    np.testing.assert_allclose(grads["embed"], model.grads()["embed"], rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("tokens, targets, message", [
    (np.zeros((1, 0), dtype=int), [1],
     "tokens (1, 0) must be a non-empty [batch, seq_len] array (one sequence: tokens[None])"),
    ([[1] * 8], [20], "targets must lie in [0, 20) (vocab_size); got min 20, max 20"),
    ([[1] * 8], [-1], "targets must lie in [0, 20) (vocab_size); got min -1, max -1"),
    ([[1] * 8], [1.0], "targets must be integer token ids, got dtype float64"),
])
def test_token_and_target_messages(tokens, targets, message):
    config = TransformerConfig()
    with pytest.raises(ValueError) as info:
        loss_and_grads(init_params(config), tokens, targets, config)
    assert str(info.value) == message


def test_a_single_token_is_a_sequence():
    config = TransformerConfig(n_layers=1)
    params = init_params(config)
    loss, _ = loss_and_grads(params, [[5]], [3], config)
    model = TorchTransformer(config)
    model.load(params)
    assert loss == pytest.approx(model(torch.tensor([[5]]), torch.tensor([3])).item(), rel=TORCH_TOL)


@pytest.mark.parametrize("config", [
    TransformerConfig(),
    TransformerConfig(norm="pre"),
    TransformerConfig(n_layers=1, activation="gelu"),
    TransformerConfig(n_layers=3, norm="pre", activation="gelu_tanh", positions="learned"),
], ids=["post", "pre", "one-block-gelu", "three-blocks-pre-learned"])
def test_final_logits_are_the_forward_passs_logits(config):
    """The cheaper evaluation path skips work, not information: its logits are forward's."""
    from derivations.reference.model import final_logits

    rng = np.random.default_rng(11)
    params = perturbed(init_params(config, seed=2), rng, scale=0.3)  # biases and LN parameters not at 0 and 1
    tokens, _ = random_batch(config, rng, batch=64, length=config.seq_len - 1)
    expected, _ = forward(params, tokens, config)
    np.testing.assert_allclose(final_logits(params, tokens, config), expected, rtol=1e-12, atol=1e-13)
    assert len(set(expected.argmax(axis=1).tolist())) > 1  # the control: the logits depend on the input
    one_token, _ = random_batch(config, rng, batch=8, length=1)  # the final position is the only one
    np.testing.assert_allclose(final_logits(params, one_token, config), forward(params, one_token, config)[0],
                               rtol=1e-12, atol=1e-13)


def test_final_logits_refuse_what_forward_refuses():
    from derivations.reference.model import final_logits

    config = TransformerConfig(n_layers=1)
    params = init_params(config)
    for tokens in ([[config.vocab_size]], [[1.5, 2.0]], [[1] * (config.seq_len + 1)]):
        with pytest.raises(ValueError) as expected:
            forward(params, tokens, config)
        with pytest.raises(ValueError) as got:
            final_logits(params, tokens, config)
        assert str(got.value) == str(expected.value)
    for not_a_config in ({"n_layers": 1}, None):
        with pytest.raises(ValueError) as expected:
            forward(params, [[1, 2]], not_a_config)
        with pytest.raises(ValueError) as got:
            final_logits(params, [[1, 2]], not_a_config)
        assert str(got.value) == str(expected.value) and type(not_a_config).__name__ in str(got.value)
