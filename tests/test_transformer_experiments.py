"""The whole-transformer chapter's experiments (``derivations.experiments.transformer``).

Each experiment is compared with an independent computation (a closed form, a count from the
sizes, NumPy written out here) or with a property its bug would break; a few tests corrupt the
gradient on purpose and require the experiment to notice. The models are small so the file runs
in seconds.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from derivations.experiments import transformer as ex
from derivations.reference.model import TransformerConfig, count_params, forward_backward, init_params
from derivations.reference.task import Dataset, make_split
from derivations.reference.train import TrainingSettings, train

SMALL = TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2)
TOKENS, TARGETS = ex.example_batch()


@pytest.fixture(scope="module")
def params():
    return init_params(SMALL, seed=3)


@pytest.fixture(scope="module")
def data():
    train_set, _ = make_split(64, 16, seed=2)
    return train_set


# ----------------------------------------------------------------------------- helpers


def test_example_batch_is_the_tokenised_expression():
    tokens, targets = ex.example_batch("Min(7,0,4)")
    assert tokens.shape == (1, 8) and targets.tolist() == [2]  # the digit 0 is id 2
    assert tokens[0, 2] == 9 and tokens[0, 6] == 6  # 7 -> 9, 4 -> 6


def test_flatten_follows_the_given_order():
    arrays = {"a": np.array([[1.0, 2.0]]), "b": np.array([3.0])}
    assert ex.flatten(arrays).tolist() == [1.0, 2.0, 3.0]
    assert ex.flatten(arrays, ["b", "a"]).tolist() == [3.0, 1.0, 2.0]


def test_random_directions_are_unit_and_differ(params):
    u = ex.random_direction(params, np.random.default_rng(0))
    v = ex.random_direction(params, np.random.default_rng(1))
    assert all(u[k].shape == params[k].shape for k in params)
    assert np.isclose(np.linalg.norm(ex.flatten(u)), 1.0, rtol=1e-14)
    assert abs(ex.flatten(u) @ ex.flatten(v)) < 0.05  # two random directions in ~20k dimensions


def test_directional_derivative_matches_the_gradient_and_rejects_bad_input(params):
    loss, grads = forward_backward(params, TOKENS, TARGETS, SMALL)
    u = ex.random_direction(params, np.random.default_rng(0))
    numeric = ex.directional_derivative(params, TOKENS, TARGETS, SMALL, u, 1e-4)
    assert numeric == pytest.approx(ex.flatten(grads) @ ex.flatten(u), rel=1e-7)
    one = {"W_out": np.zeros_like(params["W_out"])}
    one["W_out"][0, 0] = 1.0  # a direction along a single parameter, the others untouched
    assert ex.directional_derivative(params, TOKENS, TARGETS, SMALL, one, 1e-5) == pytest.approx(
        grads["W_out"][0, 0], rel=1e-6, abs=1e-10)
    with pytest.raises(ValueError, match="step"):
        ex.directional_derivative(params, TOKENS, TARGETS, SMALL, u, 0.0)
    with pytest.raises(ValueError, match="not_a_parameter"):
        ex.directional_derivative(params, TOKENS, TARGETS, SMALL, {"not_a_parameter": 1.0}, 1e-4)


def test_parameter_groups_cover_every_parameter_once():
    names = list(init_params(TransformerConfig(norm="pre"), 0))
    groups = {ex.parameter_group(n) for n in names}
    assert groups == {"embed", "head", "ln_final"} | {f"block{l}.{p}" for l in (0, 1)
                                                      for p in ("attn", "ln1", "ffn", "ln2")}


# ----------------------------------------------------------------------------- at initialisation


def test_initial_losses_are_cross_entropies_written_out(data):
    example_loss, data_loss = ex.initial_losses((0, 5), data, SMALL)
    for k, seed in enumerate((0, 5)):
        trace = forward_backward(init_params(SMALL, seed), TOKENS, TARGETS, SMALL, record=True)[2]
        logits = trace["activations"]["logits"]
        z = logits[0] - logits[0].max()
        assert example_loss[k] == pytest.approx(-(z[TARGETS[0]] - np.log(np.exp(z).sum())), rel=1e-12)
    assert data_loss.shape == (2,) and data_loss[0] != data_loss[1]


def test_zeroed_fraction_counts_only_gradients_that_arrive(params, data):
    _, _, trace = forward_backward(params, TOKENS, TARGETS, SMALL, record=True)
    last = SMALL.n_layers - 1
    # independently, for ReLU: a unit blocks where its input is <= 0; only the last row reaches the loss
    pre = trace["activations"][f"block{last}.ffn.pre"][0, -1]
    arriving = trace["grads"][f"block{last}.ffn.act"][0, -1] != 0
    assert ex.zeroed_fraction(trace, last) == pytest.approx(np.sum(arriving & (pre <= 0)) / np.sum(arriving))
    fractions = ex.zeroed_fractions(params, data, SMALL)
    assert fractions.shape == (SMALL.n_layers,) and np.all((fractions > 0.2) & (fractions < 0.8))


def test_gelu_zeroes_no_gradient(params, data):
    gelu = dataclasses.replace(SMALL, activation="gelu")
    assert np.all(ex.zeroed_fractions(params, data, gelu) == 0.0)


def test_layer_norm_rescaling_is_the_share_the_projections_keep(params):
    ratios = ex.layer_norm_rescaling(params, TOKENS, TARGETS, SMALL)
    assert set(ratios) == {f"block{l}.ln{k}" for l in (0, 1) for k in (1, 2)}
    assert ratios["block1.ln2"].shape == (1,) and ratios["block0.ln1"].shape == (8,)  # rows with gradient
    # written out for the last LayerNorm's one row: dx = (gamma / sigma) (g - mean g - x_hat mean(g x_hat)) holds
    # up to eps, so the ratio is |g - mean g - x_hat mean(g x_hat)| / |g| with g = gamma * dy
    _, _, trace = forward_backward(params, TOKENS, TARGETS, SMALL, record=True)
    x = trace["activations"]["block1.add2"][0, -1]
    g = params["block1.ln2.gamma"] * trace["grads"]["block1.out"][0, -1]
    x_hat = (x - x.mean()) / np.sqrt(x.var() + SMALL.ln_eps)
    kept = np.linalg.norm(g - g.mean() - x_hat * np.mean(g * x_hat)) / np.linalg.norm(g)
    assert ratios["block1.ln2"][0] == pytest.approx(kept, rel=1e-4)
    assert all(np.all(r <= 1 + 1e-12) for r in ratios.values())  # projections never lengthen


def test_the_two_gelus_differ_by_little_but_a_check_tells_them_apart(params):
    gap, right, wrong = ex.gelu_gradient_gap(params, TOKENS, TARGETS, SMALL)
    assert 1e-6 < gap < 1e-2
    assert right < 1e-7 and wrong > 1e3 * right


def test_stage_norms_run_backward_and_start_with_the_closed_form(params):
    norms = ex.stage_gradient_norms(params, TOKENS, TARGETS, SMALL)
    assert list(norms)[:2] == ["logits", "final"] and list(norms)[-1] == "embed.out"
    _, _, trace = forward_backward(params, TOKENS, TARGETS, SMALL, record=True)
    p = trace["probs"][0]
    p_minus_y = p - np.eye(SMALL.vocab_size)[TARGETS[0]]
    assert norms["logits"] == pytest.approx(np.linalg.norm(p_minus_y), rel=1e-12)
    assert norms["final"] == pytest.approx(np.linalg.norm(p_minus_y @ params["W_out"].T), rel=1e-12)


# ----------------------------------------------------------------------------- updating the parameters


def test_first_steps_follow_the_update_rules_written_out(params):
    _, grads = forward_backward(params, TOKENS, TARGETS, SMALL)
    steps = ex.first_steps(params, grads, lr=1e-3)
    g, p = ex.flatten(grads, params), ex.flatten(params)
    rounding = 4 * np.finfo(float).eps * np.abs(p)  # (p + step) - p is the step up to the rounding of p
    assert np.all(np.abs(steps.sgd + 1e-3 * g) <= rounding)
    # Adam's first step: m_hat = g, v_hat = g^2, so the step is -lr g / (|g| + eps)
    assert np.all(np.abs(steps.adam + 1e-3 * g / (np.abs(g) + 1e-8)) <= rounding + 1e-12 * 1e-3)
    assert steps.eps == 1e-8 and np.array_equal(steps.moved, g != 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("text", ["Max(1,6,2)", "First(3,3,3)"])
def test_zero_gradients_are_all_accounted_for(seed, text):
    config = TransformerConfig()
    tokens, targets = ex.example_batch(text)
    params = init_params(config, seed)
    _, grads, trace = forward_backward(params, tokens, targets, config, record=True)
    zeros = ex.zero_gradient_sources(grads, trace, tokens, config)
    assert zeros["absent_tokens"] == {"Max(1,6,2)": 20 - 7, "First(3,3,3)": 20 - 5}[text]  # distinct symbols, by hand
    assert zeros["zeros"] == sum(int(np.sum(g == 0)) for g in grads.values())
    assert zeros["accounted"] == zeros["zeros"]


def test_zero_accounting_rejects_what_it_does_not_model(params):
    _, grads, trace = forward_backward(params, TOKENS, TARGETS, SMALL, record=True)
    with pytest.raises(ValueError, match="one sequence"):
        ex.zero_gradient_sources(grads, trace, np.vstack([TOKENS, TOKENS]), SMALL)
    with pytest.raises(ValueError, match="ReLU"):
        ex.zero_gradient_sources(grads, trace, TOKENS, dataclasses.replace(SMALL, activation="gelu"))


# ----------------------------------------------------------------------------- checking the gradient


def test_gradient_check_passes_a_right_gradient(params, data):
    check = ex.gradient_check(params, data.tokens[:4], data.targets[:4], SMALL, n_directions=4, entries_per_array=1)
    assert check.direction_errors.shape == (4,) and len(check.entry_names) == len(params)
    assert check.direction_errors.max() < 1e-6
    assert check.n_params == count_params(params)


def test_gradient_check_fails_a_wrong_gradient(params, data, monkeypatch):
    """A gradient 1 % off in one array must show: the check reads the gradient it is given."""
    right = forward_backward

    def one_array_scaled(*args, **kwargs):
        loss, grads = right(*args, **kwargs)
        return loss, {**grads, "block0.ffn.W1": 1.01 * grads["block0.ffn.W1"]}

    monkeypatch.setattr(ex, "forward_backward", one_array_scaled)
    check = ex.gradient_check(params, data.tokens[:4], data.targets[:4], SMALL, n_directions=4, entries_per_array=3)
    assert check.direction_errors.max() > 1e-4
    wrong_entries = [e for name, e in zip(check.entry_names, check.entry_errors) if name == "block0.ffn.W1"]
    assert min(wrong_entries) > 1e-3


def test_truncation_estimate_grows_like_the_step_squared(params):
    smooth = dataclasses.replace(SMALL, activation="gelu")  # no kinks for the steps to cross
    small, large = (ex.truncation_estimate(params, TOKENS, TARGETS, smooth, step=s) for s in (1e-3, 1e-2))
    assert large / small == pytest.approx(100, rel=0.05)  # (1e-2 / 1e-3)^2


def test_kinks_are_crossed_only_by_large_steps(params):
    assert ex.kinks_crossed(params, TOKENS, SMALL, step=1e-7, n_directions=3) == 0
    assert ex.kinks_crossed(params, TOKENS, SMALL, step=1.0, n_directions=3) > 0


# ----------------------------------------------------------------------------- cost


def test_training_memory_counts_bytes_from_the_sizes(params, data):
    memory = ex.training_memory(params, SMALL, data.tokens[:4])
    n = count_params(params)
    assert memory["parameters"] == memory["gradients"] == 8 * n
    assert memory["Adam moments"] == 16 * n
    assert memory["activations"] == 4 * ex.training_memory(params, SMALL, data.tokens[:1])["activations"]
    # a view into a large array must not count the array it views
    big = np.tile(data.tokens, (50, 1))
    assert ex.training_memory(params, SMALL, big[:4])["activations"] == memory["activations"]


def test_attention_bytes_are_h_t_squared_and_the_rest_is_linear(params):
    lengths = [4, 8, 16, 24]
    total, attention = ex.activation_bytes_by_length(params, SMALL, TOKENS, lengths)
    np.testing.assert_array_equal(attention, [SMALL.n_layers * SMALL.n_heads * T * T * 8 for T in lengths])
    rest = (total - attention) / np.array(lengths)
    assert np.all(rest == rest[0])  # bytes per position, whatever the length
    with pytest.raises(ValueError, match="one sequence"):
        ex.activation_bytes_by_length(params, SMALL, np.vstack([TOKENS, TOKENS]), lengths)


def test_elementwise_bound_is_the_count_from_the_sizes(params, data):
    B, T, d, f, H, V = 4, 8, SMALL.d_model, SMALL.d_ff, SMALL.n_heads, SMALL.vocab_size
    per_block = B * T * (d + d + f + d + d) + B * H * T * T  # add1, ln1.out, ffn.act, add2, out; weights
    biased = SMALL.n_layers * B * T * (f + d) + B * V  # ffn.pre, ffn.out, logits
    expected = 10 * SMALL.n_layers * per_block + biased
    assert ex.elementwise_operations_bound(params, data.tokens[:B], SMALL) == expected


# ----------------------------------------------------------------------------- batches


def test_batches_of_one_repeated_input_have_the_pool_gradient(params, data):
    single = Dataset(data.tokens[:1], data.targets[:1])
    deviation = ex.batch_gradient_deviation(params, single, SMALL, (1, 3), draws=2)
    assert deviation.shape == (2, 2) and deviation.max() < 1e-12  # a mean, not a sum, over the batch


def test_batch_deviation_shrinks_with_the_batch(params, data):
    deviation = ex.batch_gradient_deviation(params, data, SMALL, (1, 16), draws=6, seed=1)
    assert np.median(deviation[1]) < np.median(deviation[0]) / 2
    with pytest.raises(ValueError):
        ex.batch_gradient_deviation(params, data, SMALL, (0,), draws=1)


# ----------------------------------------------------------------------------- training


def test_first_evaluation_reaching():
    run = SimpleNamespace(eval_steps=np.array([0, 50, 100, 150]), held_out_accuracy=np.array([0.1, 0.995, 0.98, 1.0]))
    assert ex.first_evaluation_reaching(run, 0.99) == 50
    assert ex.first_evaluation_reaching(run, 1.0) == 150
    assert ex.first_evaluation_reaching(run, 1.01) is None


def test_answer_attention_share_reads_the_last_query(params, data):
    shares = ex.answer_attention_share(params, data, SMALL)
    _, _, trace = forward_backward(params, data.tokens, data.targets, SMALL, record=True)
    for block, weights in enumerate(trace["attention"]):
        for head in range(SMALL.n_heads):
            hits = [data.tokens[n, int(np.argmax(weights[n, head, -1]))] == data.targets[n] for n in range(len(data))]
            assert shares[block, head] == pytest.approx(np.mean(hits))


def test_probe_norms_match_what_training_records():
    settings = TrainingSettings(config=SMALL, n_train=64, n_held_out=16, batch_size=8, steps=2, eval_every=2,
                                probe_size=8, probe_steps=(0,), timing_repeats=1, init_seed=4)
    run = train(settings)
    stages, groups = ex.probe_gradient_norms(settings, seeds=(2, 4))
    for stage, norms in run.stage_grad_norms.items():
        assert stages[stage][1] == pytest.approx(norms[0], rel=1e-12) and stages[stage][0] != norms[0]
    total = np.sqrt(sum(v[0] ** 2 for v in run.param_grad_norms.values()))
    assert np.sqrt(sum(v[1] ** 2 for v in groups.values())) == pytest.approx(total, rel=1e-12)


# ----------------------------------------------------------------------------- pitfalls


def test_dropping_the_skip_copy_removes_its_share_of_dgamma(params):
    _, grads, trace = forward_backward(params, TOKENS, TARGETS, SMALL, record=True)
    right, wrong = ex.gamma_gradient_without_skip(params, trace, SMALL, block=1)
    np.testing.assert_allclose(right, grads["block1.ln1.gamma"], rtol=1e-12, atol=1e-15)
    # dgamma = sum over rows of dy * x_hat is linear in dy: the skip copy's share is its own sum
    x = trace["activations"]["block1.add1"][0]
    x_hat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + SMALL.ln_eps)
    skip_share = np.sum(trace["grads"]["block1.add2"][0] * x_hat, axis=0)
    np.testing.assert_allclose(right - wrong, skip_share, rtol=1e-9, atol=1e-14)
