"""Learned position embeddings (``TransformerConfig(positions="learned")``): the table ``pos_embed``.

Expected values come from central differences of the loss, from the independent torch model
(``torch_model.py``, the table as an ``nn.Parameter``), from torch's Adam, from the autodiff engine's
graph, or from facts about the model's structure (attention without a mask does not see order).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch_model import TorchTransformer, assert_matches_torch, float64_torch  # noqa: F401 (autouse fixture)

from derivations import autodiff as ad
from derivations.reference import positional_encoding
from derivations.reference.model import (
    TransformerConfig,
    forward,
    forward_backward,
    init_params,
    loss_and_grads,
    model_loss,
    param_shapes,
)

# Small enough that every entry of the table can be checked by central differences.
LEARNED = TransformerConfig(vocab_size=7, d_model=8, n_heads=2, d_ff=16, n_layers=2, seq_len=6,
                            activation="gelu", positions="learned")
FD_STEP = 1e-5
# Central differences with h = 1e-5: truncation ~h^2 |L'''| ~ 1e-10, rounding ~1e-16 / h ~ 1e-11, against
# gradient entries of order 1e-2 to 1e-1: a relative error below 1e-6 leaves room for both and nothing else.
FD_TOL = 1e-6
TORCH_TOL = 1e-10


def perturbed(params, rng, scale=0.1):
    """Away from zero biases and unit LayerNorm scales, so every term of the backward pass matters."""
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in params.items()}


def batch(config, rng, size=3, length=None):
    length = config.seq_len if length is None else length
    return rng.integers(0, config.vocab_size, (size, length)), rng.integers(0, config.vocab_size, size)


def central_differences(params, tokens, targets, config, name):
    """Every entry of ``d loss / d params[name]``, two forward passes per entry."""
    table = params[name]
    numeric = np.zeros_like(table)
    for index in np.ndindex(table.shape):
        losses = []
        for sign in (1, -1):
            moved = table.copy()
            moved[index] += sign * FD_STEP
            losses.append(model_loss({**params, name: moved}, tokens, targets, config))
        numeric[index] = (losses[0] - losses[1]) / (2 * FD_STEP)
    return numeric


# ----------------------------------------------------------------------------- the option


@pytest.mark.parametrize("bad", ["rotary", "Learned", "", None, 1])
def test_an_unknown_position_kind_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match=r"positions must be one of \('sinusoidal', 'learned'\), got "):
        TransformerConfig(positions=bad)


def test_the_default_is_the_sinusoidal_encoding_with_no_parameter():
    assert TransformerConfig().positions == "sinusoidal" and TransformerConfig() == TransformerConfig(
        positions="sinusoidal")
    assert "pos_embed" not in param_shapes(TransformerConfig())
    assert "pos_embed" not in init_params(TransformerConfig(n_layers=1))


def test_the_learned_table_is_a_parameter_after_the_token_table():
    shapes = param_shapes(LEARNED)
    assert list(shapes)[:2] == ["embed", "pos_embed"] and shapes["pos_embed"] == (LEARNED.seq_len, LEARNED.d_model)
    sinusoidal = param_shapes(dataclasses.replace(LEARNED, positions="sinusoidal"))
    assert {k: v for k, v in shapes.items() if k != "pos_embed"} == sinusoidal
    params = init_params(LEARNED)
    assert list(params) == list(shapes)
    with pytest.raises(ValueError, match=r"missing \['pos_embed'\]"):
        loss_and_grads({k: v for k, v in params.items() if k != "pos_embed"}, [[1, 2]], [3], LEARNED)
    with pytest.raises(ValueError, match=r"params\['pos_embed'\] has shape \(5, 8\), the config needs \(6, 8\)"):
        loss_and_grads({**params, "pos_embed": np.zeros((5, 8))}, [[1, 2]], [3], LEARNED)
    with pytest.raises(ValueError, match=r"unexpected \['pos_embed'\]"):
        loss_and_grads(params, [[1, 2]], [3], dataclasses.replace(LEARNED, positions="sinusoidal"))


def test_the_table_starts_at_the_scale_of_the_sinusoidal_encoding():
    """Each row of the sinusoidal table is pairs (sin a, cos a): its mean square is exactly 1/2 for an even
    width. The learned table is drawn N(0, 1/2), seeded like the other parameters."""
    config = TransformerConfig(seq_len=64, d_model=64, positions="learned")
    encoding = positional_encoding(config.seq_len, config.d_model)
    np.testing.assert_allclose(np.mean(encoding**2, axis=1), 0.5, rtol=1e-12)
    table = init_params(config, seed=0)["pos_embed"]
    assert abs(table.std() - np.sqrt(0.5)) < 0.02 and abs(table.mean()) < 0.03  # 4096 draws
    assert np.array_equal(table, init_params(config, seed=0)["pos_embed"])
    assert not np.array_equal(table, init_params(config, seed=1)["pos_embed"])


def test_the_sinusoidal_table_as_a_learned_one_changes_nothing_else():
    """A learned table holding the sinusoidal values computes the very same numbers: the loss and every
    other gradient bit for bit. Its own gradient is the gradient at the embedding sum, summed over the batch."""
    rng = np.random.default_rng(0)
    sinusoidal = dataclasses.replace(LEARNED, positions="sinusoidal")
    params = perturbed(init_params(sinusoidal, seed=1), rng)
    tokens, targets = batch(sinusoidal, rng, size=4)
    loss, grads, trace = forward_backward(params, tokens, targets, sinusoidal, record=True)
    table = positional_encoding(LEARNED.seq_len, LEARNED.d_model)
    learned_loss, learned_grads = loss_and_grads({**params, "pos_embed": table}, tokens, targets, LEARNED)
    assert learned_loss == loss
    for name in grads:
        assert np.array_equal(learned_grads[name], grads[name]), name
    np.testing.assert_allclose(learned_grads["pos_embed"], trace["grads"]["embed.out"].sum(axis=0), rtol=1e-13,
                               atol=1e-17)


# ----------------------------------------------------------------------------- its gradient


@pytest.mark.parametrize("length", [LEARNED.seq_len, 4])
def test_the_table_gradient_matches_central_differences(length):
    rng = np.random.default_rng(length)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    tokens, targets = batch(LEARNED, rng, length=length)
    _, grads = loss_and_grads(params, tokens, targets, LEARNED)
    numeric = central_differences(params, tokens, targets, LEARNED, "pos_embed")
    analytic = grads["pos_embed"]
    scale = np.abs(numeric).max()
    assert scale > 1e-3  # the control: the table does receive gradient
    relative = np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1e-3 * scale)
    assert relative.max() < FD_TOL, f"worst entry {np.unravel_index(relative.argmax(), relative.shape)}: {relative.max():.2e}"


def test_central_differences_catch_a_gradient_that_forgets_the_batch_sum():
    """The control for the check above: the first sequence's share alone fails it."""
    rng = np.random.default_rng(3)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    tokens, targets = batch(LEARNED, rng)
    _, _, trace = forward_backward(params, tokens, targets, LEARNED, record=True)
    wrong = trace["grads"]["embed.out"][0]  # position t of sequence 0 only
    numeric = central_differences(params, tokens, targets, LEARNED, "pos_embed")
    assert np.abs(wrong - numeric).max() > 100 * FD_TOL * np.abs(numeric).max()


def test_rows_beyond_the_batch_length_get_exactly_zero():
    """A batch of T < seq_len tokens never adds rows T.. : their gradient is exactly 0, and moving them does
    not change the loss at all (not even in the last bit)."""
    rng = np.random.default_rng(4)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    T = 3
    tokens, targets = batch(LEARNED, rng, length=T)
    loss, grads = loss_and_grads(params, tokens, targets, LEARNED)
    assert np.all(grads["pos_embed"][T:] == 0.0)
    assert np.all(np.linalg.norm(grads["pos_embed"][:T], axis=1) > 0)
    moved = params["pos_embed"].copy()
    moved[T:] += 1.0
    assert model_loss({**params, "pos_embed": moved}, tokens, targets, LEARNED) == loss


def test_a_row_sums_over_the_batch_where_a_token_row_sums_over_positions():
    """The mean loss of a batch is the mean of the sequences' losses, so each row's gradient is the mean of
    the gradients each sequence gives alone. A token repeated within a sequence adds up over its positions."""
    rng = np.random.default_rng(5)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    tokens = np.array([[1, 2, 1, 1, 3, 4], [5, 5, 6, 0, 2, 1]])
    targets = np.array([3, 6])
    _, grads, trace = forward_backward(params, tokens, targets, LEARNED, record=True)
    alone = [loss_and_grads(params, tokens[b:b + 1], targets[b:b + 1], LEARNED)[1] for b in range(2)]
    np.testing.assert_allclose(grads["pos_embed"], (alone[0]["pos_embed"] + alone[1]["pos_embed"]) / 2,
                               rtol=1e-12, atol=1e-16)
    dx = trace["grads"]["embed.out"]  # the gradient reaching E[tokens] + pos_embed[:T]
    np.testing.assert_allclose(grads["embed"][1], dx[0, [0, 2, 3]].sum(axis=0) + dx[1, 5], rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(grads["pos_embed"][0], dx[0, 0] + dx[1, 0], rtol=1e-12, atol=1e-16)


# ----------------------------------------------------------------------------- order enters only through positions


def test_without_distinct_positions_the_last_position_does_not_see_order():
    """Attention without a mask treats the other positions as a set: with every row of the table equal, a
    permutation of the tokens before the last leaves the logits unchanged (to rounding); with the drawn
    table it changes them."""
    rng = np.random.default_rng(6)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    tokens, _ = batch(LEARNED, rng, size=4)
    order = np.array([3, 0, 4, 1, 2, 5])  # the last position stays last
    flat = {**params, "pos_embed": np.tile(params["pos_embed"][:1], (LEARNED.seq_len, 1))}
    logits, _ = forward(flat, tokens, LEARNED)
    permuted, _ = forward(flat, tokens[:, order], LEARNED)
    np.testing.assert_allclose(permuted, logits, rtol=1e-12, atol=1e-13)
    with_positions, _ = forward(params, tokens, LEARNED)
    assert np.abs(forward(params, tokens[:, order], LEARNED)[0] - with_positions).max() > 1e-3


def test_permuting_tokens_and_table_rows_together_changes_nothing():
    """Order enters only through the table: permute the tokens and the rows they meet the same way and the
    loss is the same; the table's gradient rows are permuted alike, the token table's unchanged."""
    rng = np.random.default_rng(7)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    tokens, targets = batch(LEARNED, rng, size=4)
    order = np.array([2, 4, 0, 1, 3, 5])
    loss, grads = loss_and_grads(params, tokens, targets, LEARNED)
    moved = {**params, "pos_embed": params["pos_embed"][order]}
    moved_loss, moved_grads = loss_and_grads(moved, tokens[:, order], targets, LEARNED)
    assert moved_loss == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(moved_grads["pos_embed"], grads["pos_embed"][order], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(moved_grads["embed"], grads["embed"], rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------------------- PyTorch and the autodiff engine


@pytest.mark.parametrize("config", [
    LEARNED,
    dataclasses.replace(LEARNED, norm="pre", activation="relu", n_layers=3),
    TransformerConfig(positions="learned"),
], ids=["post-norm gelu", "pre-norm relu 3 blocks", "the chapter's sizes"])
@pytest.mark.parametrize("length", [None, 4])
def test_loss_and_gradients_match_pytorch(config, length):
    rng = np.random.default_rng(20 + config.n_layers + (length or 0))
    params = perturbed(init_params(config, seed=5), rng)
    tokens, targets = batch(config, rng, length=length)
    loss, grads = loss_and_grads(params, tokens, targets, config)
    model = assert_matches_torch(loss, grads, params, tokens, targets, config, TORCH_TOL)
    assert "pos_embed" in grads
    assert sum(p.numel() for p in model.parameters()) == sum(p.size for p in params.values())


def test_the_engine_records_the_table_as_a_parameter():
    """Through the engine's graph the table gets the reference's gradient; a sinusoidal table cannot be
    passed in as well."""
    rng = np.random.default_rng(8)
    params = perturbed(init_params(LEARNED, seed=2), rng)
    tokens, targets = batch(LEARNED, rng, length=5)
    _, grads = loss_and_grads(params, tokens, targets, LEARNED)
    _, engine = ad.loss_and_grads(params, tokens, targets, LEARNED)
    np.testing.assert_allclose(engine["pos_embed"], grads["pos_embed"], rtol=1e-12, atol=1e-17)
    variables = {k: ad.Var(v, requires_grad=True) for k, v in params.items()}
    with pytest.raises(ValueError, match="positions must be left out"):
        ad.transformer_loss(variables, tokens, targets, LEARNED, positions=positional_encoding(6, 8))


# ----------------------------------------------------------------------------- training


def test_training_moves_the_table_as_torch_adam_does():
    """A short run with a learned table: the reference loop (``train``) against torch's Adam on the same
    batches. The table is trained, and ends where torch's ends."""
    from derivations.reference.task import make_split
    from derivations.reference.train import TrainingRun, TrainingSettings, cache_path, train

    config = TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1, positions="learned")
    settings = TrainingSettings(config=config, n_train=200, n_held_out=50, batch_size=8, steps=15, lr=3e-3,
                                eval_every=5, probe_size=8, probe_steps=(0, 15), timing_repeats=1, init_seed=4)
    run = train(settings)
    start = init_params(config, settings.init_seed)["pos_embed"]
    assert np.abs(run.params["pos_embed"] - start).max() > 1e-3
    assert run.param_grad_norms["pos_embed"].shape == (2,) and np.all(run.param_grad_norms["pos_embed"] > 0)

    train_set, _ = make_split(settings.n_train, settings.n_held_out, settings.data_seed)
    model = TorchTransformer(config)
    model.load(init_params(config, settings.init_seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    rng = np.random.default_rng(settings.batch_seed)
    for _ in range(settings.steps):
        rows = rng.integers(0, len(train_set), size=settings.batch_size)
        optimizer.zero_grad()
        model(torch.tensor(train_set.tokens[rows]), torch.tensor(train_set.targets[rows])).backward()
        optimizer.step()
    np.testing.assert_allclose(run.params["pos_embed"], model.pos_embed.detach().numpy(), rtol=1e-7, atol=1e-10)

    sinusoidal = dataclasses.replace(settings, config=dataclasses.replace(config, positions="sinusoidal"))
    assert cache_path(settings) != cache_path(sinusoidal)
    assert TrainingSettings.from_dict(settings.as_dict()) == settings
    assert isinstance(run, TrainingRun)
