"""The gradient-flow chapter: its experiments, monitor, figures and claims.

The experiments are checked against what theory says independently of the code (an
orthogonal matrix scales every vector by exactly its radius, a nilpotent product is zero, a
ReLU network with Xavier weights halves the second moment per layer, ...), against gradients
taken by central differences of forward passes written here with plain NumPy (so an experiment
wired to the wrong backward pass fails), for the use of their seeds (each seed its own draw, the
seed axis first) and against the qualitative statements the page makes, with margins wide enough
that only a real mistake fails.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
import sympy as sp

from derivations.figures import render
from derivations.experiments import flow
from derivations.reference import clip_grad_norm
from derivations.reference.gradcheck import numerical_gradient
from derivations.reference.tanh import tanh, tanh_backward
from derivations.reference.monitor import format_report, gradient_report

# ----------------------------------------------------------------------------- the tanh reference pair


def test_tanh_backward_matches_central_differences_and_checks_shapes():
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((3, 5)) * 2, rng.standard_normal((3, 5))
    _, cache = tanh(x)
    numeric = numerical_gradient(lambda x: float(np.sum(dy * np.tanh(x))), [x], 0)
    np.testing.assert_allclose(tanh_backward(dy, cache), numeric, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="dy"):
        tanh_backward(dy[:, :4], cache)


# ----------------------------------------------------------------------------- evidence over seeds


def test_over_seeds_puts_each_seed_in_its_own_row():
    def experiment(scale, seed):
        return np.random.default_rng(seed).standard_normal(3) * scale

    stacked = flow.over_seeds(experiment, seeds=(5, 2, 7), scale=2.0)
    assert stacked.shape == (3, 3)
    for row, seed in zip(stacked, (5, 2, 7)):
        np.testing.assert_array_equal(row, experiment(2.0, seed))
    with pytest.raises(ValueError, match="repeat"):
        flow.over_seeds(experiment, seeds=(1, 1), scale=1.0)
    with pytest.raises(ValueError, match="at least one"):
        flow.over_seeds(experiment, seeds=(), scale=1.0)


def test_spread_summarises_the_seed_axis_entry_by_entry():
    per_seed = np.array([[1.0, 9.0, -3.0], [4.0, 2.0, -1.0], [2.0, 5.0, -8.0], [3.0, 7.0, 0.0]])  # [seed, entry]
    s = flow.spread(per_seed)
    assert s["low"].shape == s["median"].shape == s["high"].shape == (3,)
    for k in range(3):
        column = sorted(per_seed[:, k])
        assert (s["low"][k], s["high"][k]) == (column[0], column[-1])
        assert s["median"][k] == (column[1] + column[2]) / 2


# Each random experiment, with arguments small enough to run quickly: its output must depend on the seed.
SEEDED = {
    "deep_chain_gradient_norms": dict(depth=4, weight_scale=1.0, activation="tanh", width=8, batch=2),
    "residual_gradient_norms": dict(depths=(3,), residual=True, width=8, batch=2),
    "peaked_attention": dict(multipliers=(1.0, 4.0)),
    "score_statistics": dict(d_k=8, scaled=True, n_queries=16),
    "score_scale_sweep": dict(d_k=8, multipliers=(1.0,), n_queries=16),
    "train_rnn_memory": dict(max_norm=0.5, steps=3, T=4),
    "init_profile": dict(init="he", activation="relu", depth=4, width=8, batch=2),
    "residual_scaling_profile": dict(n_layers=2, scaled=True),
    "train_mlp": dict(init="he", lr=0.1, steps=3),
    "train_attention_selector": dict(scaled=False, steps=3, n=8, d=8, n_keys=3),
}


def _leaves(result):
    if isinstance(result, dict):
        return [leaf for value in result.values() for leaf in _leaves(value)]
    if isinstance(result, tuple):
        return [leaf for value in result for leaf in _leaves(value)]
    return [np.asarray(result, dtype=np.float64)]


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_every_random_experiment_uses_its_seed(name):
    experiment = getattr(flow, name)
    experiment = getattr(experiment, "__wrapped__", experiment)  # a shared one would answer "again" from its memo
    first, again, other = (_leaves(experiment(**SEEDED[name], seed=s)) for s in (1, 1, 2))
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, again))  # seeded: reproducible
    assert not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, other))  # and the seed matters


def test_rnn_horizon_gives_each_seed_its_own_draw():
    W = flow.scaled_orthogonal(4, 1.2, seed=1)
    together = flow.rnn_gradient_horizon(W, [2, 5], input_scale=1.0, seeds=(0, 3, 8))
    assert together.shape == (3, 2)
    for row, seed in zip(together, (0, 3, 8)):
        np.testing.assert_allclose(row, flow.rnn_gradient_horizon(W, [2, 5], 1.0, seeds=(seed,))[0], rtol=1e-12)
    assert len({tuple(row) for row in together}) == 3


def test_placement_profiles_differ_between_initialisations():
    profiles = flow.norm_placement_profiles()
    for (norm, depth), per_seed in profiles.items():
        assert per_seed.shape == (len(flow.PLACEMENT["seeds"]), depth)
        assert len({tuple(row) for row in per_seed}) == per_seed.shape[0], (norm, depth)
    assert len(flow.PLACEMENT["seeds"]) >= 10


# ----------------------------------------------------------------------------- chains


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_linear_chain_multiplies_by_the_weight_scale_per_layer(scale):
    """E||g W^T||^2 = scale^2 ||g||^2 for W ~ N(0, scale^2 / width): the per-layer factor is ``scale``."""
    norms = flow.deep_chain_gradient_norms(40, scale, "linear", width=64, batch=16)
    per_layer = (norms[0] / norms[-1]) ** (1 / 40)
    assert abs(per_layer / scale - 1) < 0.1


def test_tanh_loses_more_than_linear_at_every_scale():
    for scale in (0.9, 1.0, 3.0):
        linear = flow.deep_chain_gradient_norms(30, scale, "linear")
        tanh_chain = flow.deep_chain_gradient_norms(30, scale, "tanh")
        assert tanh_chain[0] / tanh_chain[-1] < linear[0] / linear[-1]


@pytest.mark.parametrize("activation", ["linear", "tanh", "relu"])
def test_chain_gradient_at_the_input_matches_central_differences(activation):
    """The draws, in the documented order (input, weights, top gradient), and a forward pass written
    independently with NumPy: the gradient of sum(G * h_depth) with respect to h_0 by differences."""
    depth, scale, width, batch, seed = 3, 1.3, 5, 2, 4
    rng = np.random.default_rng(seed)
    h0 = rng.standard_normal((batch, width))
    weights = [rng.standard_normal((width, width)) * scale / math.sqrt(width) for _ in range(depth)]
    f = {"linear": lambda z: z, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[activation]
    G_shape = (batch, width)
    G = rng.standard_normal(G_shape)

    def loss(h):
        for W in weights:
            h = f(h @ W)
        return float(np.sum(G * h))

    numeric = numerical_gradient(loss, [h0], 0)
    norms = flow.deep_chain_gradient_norms(depth, scale, activation, width=width, batch=batch, seed=seed)
    assert norms[-1] == pytest.approx(np.linalg.norm(G), rel=1e-12)
    assert norms[0] == pytest.approx(np.linalg.norm(numeric), rel=1e-6)


def test_init_profile_gradient_moment_matches_central_differences():
    depth, width, batch, seed = 3, 6, 2, 9
    rng = np.random.default_rng(seed)
    h0 = rng.standard_normal((batch, width))
    weights = [rng.standard_normal((width, width)) * math.sqrt(2.0 / width) for _ in range(depth)]  # He
    G = rng.standard_normal((batch, width))

    def loss(h):
        for W in weights:
            h = np.maximum(h @ W, 0.0)
        return float(np.sum(G * h))

    acts, grads_var = flow.init_profile("he", "relu", depth=depth, width=width, batch=batch, seed=seed)
    assert acts[0] == pytest.approx(np.mean(h0**2), rel=1e-12)
    assert grads_var[0] == pytest.approx(np.mean(numerical_gradient(loss, [h0], 0) ** 2), rel=1e-6)
    assert grads_var[-1] == pytest.approx(np.mean(G**2), rel=1e-12)


# ----------------------------------------------------------------------------- recurrent networks


def test_orthogonal_recurrence_without_input_scales_by_radius_to_the_T():
    """At h = 0 every tanh' is 1, and an orthogonal matrix times r scales every vector by exactly r."""
    horizons = [1, 5, 20, 60]
    for radius in (0.9, 1.5):
        W = flow.scaled_orthogonal(8, radius, seed=3)
        np.testing.assert_allclose(W @ W.T, radius**2 * np.eye(8), atol=1e-12)
        ratios = flow.rnn_gradient_horizon(W, horizons, input_scale=0.0, seeds=(0, 1, 2))
        np.testing.assert_allclose(ratios, np.tile([radius**T for T in horizons], (3, 1)), rtol=1e-9)


def test_rnn_horizon_with_inputs_matches_central_differences():
    """Seed s draws the inputs, then G; W_xh is the identity. An independent NumPy RNN, differenced."""
    W = np.array([[0.4, -1.1, 0.3], [0.8, 0.2, -0.5], [-0.3, 0.9, 0.6]])
    T, batch, seed, scale = 4, 2, 6, 0.7
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, batch, 3)) * scale
    G = rng.standard_normal((batch, 3))

    def loss(h):
        for t in range(T):
            h = np.tanh(x[t] + h @ W)
        return float(np.sum(G * h))

    numeric = numerical_gradient(loss, [np.zeros((batch, 3))], 0)
    ratio = flow.rnn_gradient_horizon(W, [T], scale, seeds=(seed,), batch=batch)[0, 0]
    assert ratio == pytest.approx(np.linalg.norm(numeric) / np.linalg.norm(G), rel=1e-6)


def test_measured_horizons_respect_the_norm_bound():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 6))
    horizons = [1, 3, 10]
    ratios = flow.rnn_gradient_horizon(W, horizons, input_scale=1.0, seeds=(0, 1))
    assert np.all(ratios <= np.linalg.norm(W, 2) ** np.array(horizons) * (1 + 1e-12))
    with pytest.raises(ValueError, match="horizons"):
        flow.rnn_gradient_horizon(W, [0, 3], 1.0)


def test_counter_example_has_large_norm_small_spectral_radius_and_vanishing_gradient():
    examples = flow.recurrent_examples(16)
    W = examples["0.5·I + 3·shift"]
    assert np.all(np.tril(W, -1) == 0)  # upper triangular: the eigenvalues are the diagonal
    exact = sp.Matrix(16, 16, lambda r, c: sp.Rational(W[r, c]).limit_denominator(10))
    assert max(abs(e) for e in exact.eigenvals()) < 1  # exact eigenvalues, no rounding
    assert np.linalg.svd(W, compute_uv=False)[0] > 3  # the norm the "||W|| > 1 explodes" rule looks at
    ratios = flow.rnn_gradient_horizon(W, [5, 20, 200], input_scale=0.0, seeds=(0, 1))
    assert np.all(ratios[:, 1] > 1e3)  # a transient from the non-normal part ...
    assert np.all(ratios[:, 2] < 1e-20)  # ... and then the spectral radius wins
    assert np.all(flow.rnn_gradient_horizon(W, [200], input_scale=1.0, seeds=(0, 1)) < 1e-20)


def test_nilpotent_recurrence_kills_the_gradient_exactly_after_d_h_steps():
    W = flow.recurrent_examples(16)["10·shift (nilpotent)"]
    assert np.linalg.svd(W, compute_uv=False)[0] == pytest.approx(10.0)
    ratios = flow.rnn_gradient_horizon(W, [15, 16, 40], input_scale=0.0, seeds=(0, 1))
    assert np.all(ratios[:, 0] > 1.0) and np.all(ratios[:, 1:] == 0.0)
    assert np.all(flow.rnn_gradient_horizon(W, [16], input_scale=1.0, seeds=(0, 1)) == 0.0)  # whatever the slopes


def test_growth_per_step_recovers_a_geometric_rate():
    horizons = (10, 20, 50)
    ratios = np.array([[0.8**T for T in horizons], [1.3**T for T in horizons], [1.0, 0.5, 0.0]])
    np.testing.assert_allclose(flow.growth_per_step(ratios, horizons, start=20), [0.8, 1.3, 0.0], rtol=1e-12)
    with pytest.raises(ValueError, match="start"):
        flow.growth_per_step(ratios, horizons, start=50)


def test_spectral_radius_uses_the_diagonal_of_triangular_matrices():
    assert flow.spectral_radius(np.array([[0.25, 100.0], [0.0, -0.75]])) == 0.75
    rotation = np.array([[0.0, -2.0], [2.0, 0.0]])  # eigenvalues +-2i
    assert flow.spectral_radius(rotation) == pytest.approx(2.0)


# ----------------------------------------------------------------------------- residual connections


def test_residual_connections_keep_the_gradient_and_plain_stacks_lose_it():
    depths = (2, 8, 32, 64)
    plain = flow.residual_gradient_norms(depths, residual=False)
    residual = flow.residual_gradient_norms(depths, residual=True)
    scaled = flow.residual_gradient_norms(depths, residual=True, branch_scale="1/sqrt(L)")
    assert plain[-1] < 1e-10 * plain[0]  # collapses by orders of magnitude
    assert np.all(residual >= 1.0)  # the identity path: never below the top gradient
    assert scaled.max() / scaled.min() < 2.0  # bounded across a 32-fold range of depths


@pytest.mark.parametrize(("residual", "branch_scale"), [(False, "1"), (True, "1"), (True, "1/sqrt(L)")])
def test_residual_stack_gradient_matches_central_differences(residual, branch_scale):
    L, scale, width, batch, seed = 3, 0.8, 5, 2, 2
    rng = np.random.default_rng(seed)
    h0 = rng.standard_normal((batch, width))
    weights = [rng.standard_normal((width, width)) * scale / math.sqrt(width) for _ in range(L)]
    G = rng.standard_normal((batch, width))
    c = 1.0 if branch_scale == "1" else 1 / math.sqrt(L)

    def loss(h):
        for W in weights:
            h = h + c * np.tanh(h @ W) if residual else c * np.tanh(h @ W)
        return float(np.sum(G * h))

    expected = np.linalg.norm(numerical_gradient(loss, [h0], 0)) / np.linalg.norm(G)
    measured = flow.residual_gradient_norms([L], residual, branch_scale, scale, width, batch, seed)[0]
    assert measured == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- attention


def test_peaked_attention_value_gradient_follows_the_weights_and_score_gradient_vanishes():
    multipliers = [0.5, 4.0, 64.0]
    result = flow.peaked_attention(multipliers, n_keys=6, d_k=4, d_v=4, seed=0)
    rng = np.random.default_rng(0)  # the same draws, in the same order, as the experiment documents
    q, K, V, dO = (rng.standard_normal(shape) for shape in [(1, 4), (6, 4), (6, 4), (1, 4)])
    assert result.top_key == int(np.argmax(q @ K.T))
    for c, A, dV_norms, dS_norm in zip(multipliers, result.weights, result.dV_norms, result.dS_norms):
        s = c * (q @ K.T)[0] / 2.0
        expected = np.exp(s - s.max()) / np.sum(np.exp(s - s.max()))
        np.testing.assert_allclose(A, expected, rtol=1e-12)
        np.testing.assert_allclose(dV_norms, A * np.linalg.norm(dO), rtol=1e-12)  # dV_j = A_j dO
        dA = (dO @ V.T)[0]
        assert dS_norm == pytest.approx(np.linalg.norm(A * (dA - A @ dA)), rel=1e-12)
    assert result.weights[-1][result.top_key] > 0.999
    assert result.dS_norms[-1] < 1e-4 * result.dS_norms[0]


def test_unscaled_scores_have_variance_d_k_and_saturate():
    for d_k in (64, 1024):
        scaled, unscaled = flow.score_statistics(d_k, True), flow.score_statistics(d_k, False)
        assert abs(unscaled.raw_variance / d_k - 1) < 0.15
        assert abs(unscaled.raw_mean) < 0.1 * math.sqrt(d_k)  # zero mean, in units of the standard deviation
        assert scaled.saturated == 0.0
    wide_scaled, wide_unscaled = flow.score_statistics(1024, True), flow.score_statistics(1024, False)
    assert wide_unscaled.saturated > 0.5
    assert wide_unscaled.dS_median < 1e-2 * wide_scaled.dS_median


def test_query_gradient_of_the_score_experiments_matches_central_differences():
    """dQ is taken with respect to the unmultiplied queries: the chain rule through c must be there."""
    rng = np.random.default_rng(1)
    Q, K, V, dO = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2)), \
        rng.standard_normal((3, 2))
    c = 3.0

    def loss(Q):
        s = c * Q @ K.T / 2.0
        A = np.exp(s - s.max(axis=1, keepdims=True))
        A /= A.sum(axis=1, keepdims=True)
        return float(np.sum(dO * (A @ V)))

    _, _, dQ = flow._scores_and_gradients(Q, K, V, dO, c)
    np.testing.assert_allclose(dQ, numerical_gradient(loss, [Q], 0), rtol=1e-6, atol=1e-9)


def test_scaled_operating_point_does_not_depend_on_the_key_width():
    multipliers = [0.25, 1.0, 4.0]
    _, narrow = flow.score_scale_sweep(16, multipliers)
    _, wide = flow.score_scale_sweep(256, multipliers)
    np.testing.assert_allclose(narrow, wide, rtol=0.3)


# ----------------------------------------------------------------------------- pre-norm and post-norm


def test_placement_profiles_do_not_collapse_and_pre_norm_favours_early_blocks():
    profiles = flow.norm_placement_profiles()
    for (norm, depth), per_seed in profiles.items():
        assert np.all(np.isfinite(per_seed)) and np.all(per_seed > 0)
        assert np.all(per_seed.max(axis=1) / per_seed.min(axis=1) < 100)  # no geometric collapse
    deep_pre = profiles["pre", max(flow.PLACEMENT["depths"])]
    assert np.all(deep_pre[:, 0] > 2 * deep_pre[:, -1])
    assert not deep_pre.flags.writeable  # shared between page and figure: must not be edited
    recomputed = flow.norm_placement_profiles.__wrapped__()  # bypass the per-process cache
    assert all(np.array_equal(recomputed[key], profiles[key]) for key in profiles)  # seeded: same numbers


def test_placement_profile_rows_are_the_models_own_block_gradients():
    """Row k of a profile is seed k's initialisation, and entry l the norm of block l's parameter gradient."""
    from derivations.reference.model import TransformerConfig, init_params, loss_and_grads

    depth, k = flow.PLACEMENT["depths"][0], 3
    config = TransformerConfig(d_model=flow.PLACEMENT["d_model"], n_heads=flow.PLACEMENT["n_heads"],
                               d_ff=flow.PLACEMENT["d_ff"], n_layers=depth, norm="post")
    tokens, targets = flow._placement_batch(flow.PLACEMENT["batch"])
    _, grads = loss_and_grads(init_params(config, flow.PLACEMENT["seeds"][k]), tokens, targets, config)
    for l in range(depth):
        expected = math.sqrt(sum(float(np.sum(g**2)) for name, g in grads.items() if name.startswith(f"block{l}.")))
        assert flow.norm_placement_profiles()["post", depth][k, l] == pytest.approx(expected, rel=1e-12)


def test_gpt2_scaling_stops_the_stream_from_growing():
    stream_plain, grads_plain = flow.residual_scaling_profile(24, scaled=False)
    stream_scaled, grads_scaled = flow.residual_scaling_profile(24, scaled=True)
    assert stream_plain[-1] > 10 * stream_plain[0]
    assert stream_scaled[-1] < 2 * stream_scaled[0]
    assert grads_scaled[0] / grads_scaled[-1] < grads_plain[0] / grads_plain[-1]
    np.testing.assert_array_equal(grads_plain, flow.norm_placement_profiles()["pre", 24][0])  # same model, seed 0


# ----------------------------------------------------------------------------- monitoring: scores per head


def test_head_scores_are_the_scores_whose_softmax_the_model_uses():
    from derivations.reference import softmax
    from derivations.reference.model import TransformerConfig, forward_backward, init_params

    config = TransformerConfig(d_model=16, n_heads=4, d_ff=32, n_layers=1)
    params = init_params(config, seed=1)
    _, _, trace = forward_backward(params, [[15, 17, 3, 19, 8], [2, 4, 6, 8, 10]], [8, 3], config, record=True)
    scores = flow.head_scores(trace["activations"]["block0.in"], params["block0.attn.W_q"],
                              params["block0.attn.W_k"], config.n_heads)
    assert scores.shape == (2, 4, 5, 5)
    np.testing.assert_allclose(softmax(scores)[0], trace["attention"][0], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="n_heads"):
        flow.head_scores(trace["activations"]["block0.in"], params["block0.attn.W_q"], params["block0.attn.W_k"], 3)


# ----------------------------------------------------------------------------- clipping


def test_global_norm_clipping_keeps_direction_and_bounds_the_norm():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)) * 10, "b": rng.standard_normal(5) * 10}
    clipped, total = clip_grad_norm(grads, max_norm=1.0)
    flat, flat_clipped = (np.concatenate([g.ravel() for g in d.values()]) for d in (grads, clipped))
    assert total == pytest.approx(np.linalg.norm(flat))
    assert np.linalg.norm(flat_clipped) <= 1.0
    cosine = flat @ flat_clipped / np.linalg.norm(flat) / np.linalg.norm(flat_clipped)
    assert cosine == pytest.approx(1.0, abs=1e-12)
    by_value = np.clip(flat, -1.0, 1.0)
    assert by_value @ flat / np.linalg.norm(by_value) / np.linalg.norm(flat) < 0.99  # per-entry clipping turns it


@pytest.mark.parametrize("max_norm", [None, 0.05])
def test_rnn_memory_first_step_follows_the_true_gradient(max_norm):
    """One SGD step recomputed independently: the draws in the documented order, a NumPy RNN, the
    gradient by central differences, PyTorch's clipping coefficient, and the loss after the step."""
    T, batch, d_in, d_h, lr, radius, seed = 3, 4, 2, 3, 0.3, 2.0, 5
    rng = np.random.default_rng(seed)
    W_xh = rng.standard_normal((d_in, d_h)) / math.sqrt(d_in)
    W_hh = flow.scaled_orthogonal(d_h, radius, seed)
    W_hy = rng.standard_normal((d_h, 1)) / math.sqrt(d_h)
    x = rng.standard_normal((T, batch, d_in))
    y = np.sign(x[0, :, :1])

    def loss(W_xh, W_hh, b, W_hy):
        h = np.zeros((batch, d_h))
        for t in range(T):
            h = np.tanh(x[t] @ W_xh + h @ W_hh + b)
        return 0.5 * float(np.mean((h @ W_hy - y) ** 2))

    params = [W_xh, W_hh, np.zeros(d_h), W_hy]
    grads = [numerical_gradient(loss, params, i) for i in range(4)]
    norm = math.sqrt(sum(float(np.sum(g**2)) for g in grads))
    factor = max_norm / (norm + 1e-6) if max_norm is not None and norm > max_norm else 1.0
    run = flow.train_rnn_memory(max_norm, steps=2, lr=lr, radius=radius, T=T, batch=batch, d_in=d_in, d_h=d_h,
                                seed=seed)
    assert run.losses[0] == pytest.approx(loss(*params), rel=1e-12)
    assert run.grad_norms[0] == pytest.approx(norm, rel=1e-6)
    assert max_norm is None or factor < 1  # the clipped case really clips
    stepped = [p - lr * factor * g for p, g in zip(params, grads)]
    assert run.losses[1] == pytest.approx(loss(*stepped), rel=1e-8)


def test_clipping_turns_diverging_rnn_runs_into_converging_ones():
    seeds = (0, 1, 2)
    unclipped = flow.over_seeds(flow.train_rnn_memory, seeds, max_norm=None)
    clipped = flow.over_seeds(flow.train_rnn_memory, seeds, max_norm=0.5)
    np.testing.assert_array_equal(unclipped.losses[:, 0], clipped.losses[:, 0])  # the same start
    for losses in unclipped.losses:
        assert not np.all(losses <= 10 * losses[0])  # passes 10 x its start (or NaN) somewhere
    assert np.all(np.isfinite(clipped.losses)) and np.all(clipped.losses.max(axis=1) <= clipped.losses[:, 0] * 1.5)
    assert np.all(clipped.losses[:, -1] < 0.5 * clipped.losses[:, 0])


# ----------------------------------------------------------------------------- initialisation


def test_he_keeps_relu_networks_in_range_and_xavier_halves_them():
    xavier_act, xavier_grad = flow.init_profile("xavier", "relu", depth=30, width=128, batch=16)
    he_act, he_grad = flow.init_profile("he", "relu", depth=30, width=128, batch=16)
    # Square layers: Xavier's variance is 1/n, half of He's 2/n, and ReLU halves the second moment.
    assert 0.5**30 / 30 < xavier_act[-1] / xavier_act[0] < 0.5**30 * 30
    assert 0.5**30 / 30 < xavier_grad[0] / xavier_grad[-1] < 0.5**30 * 30
    assert np.all((he_act > 0.1) & (he_act < 10)) and np.all((he_grad > 0.1) & (he_grad < 10))


def test_expectation_operator_uses_only_the_stated_moments():
    """The variance claims (attention.score-variance, init.linear-variance) are proven with this E: they
    hold for every distribution with the stated moments only if E assumes nothing else (no Gaussian)."""
    from derivations.symbolic import flow as flow_claims

    q0, k0 = flow_claims.q[0, 0], flow_claims.k[0, 0]
    moments = {"q": {1: 0, 2: 1}, "k": {1: 0, 2: 1}}  # mean 0 and variance 1, nothing more

    def E(expr):
        return flow_claims.expectation(expr, moments)

    assert E(q0**2) == 1 and E(q0 * k0) == 0 and E(q0**2 * k0**2) == 1 and E(3 + q0) == 3
    assert E(5 * q0**2 - 2 * k0 + 1) == 6  # linear: constants pass through, coefficients stay
    fourth = E(q0**4)
    assert not fourth.is_number and fourth != 3  # a Gaussian's 3 would be an assumption the claims do not make
    assert E(q0**4 * k0**2) == fourth  # an unknown moment, multiplied like a known one


# ----------------------------------------------------------------------------- debugging miniatures


def test_debugging_miniatures_show_the_symptom_and_the_fix():
    zero, he = flow.train_mlp("zero", lr=0.1, steps=100), flow.train_mlp("he", lr=0.1, steps=100)
    assert abs(zero.losses[-1] - zero.losses[0]) < 0.05 * zero.losses[0]  # only the mean is fitted
    assert he.losses[-1] < 0.5 * he.losses[0]
    fast = flow.train_mlp("he", lr=1.0, steps=15)
    assert np.isnan(fast.losses[-1])
    unscaled, scaled = flow.train_attention_selector(False), flow.train_attention_selector(True)
    assert unscaled.losses[-1] < unscaled.losses[0]  # it does learn a little ...
    assert unscaled.losses[-1] > 5 * scaled.losses[-1]  # ... then stalls far above the fixed run
    assert unscaled.saturated > 0.2 and scaled.saturated == 0.0


def test_mlp_first_step_follows_the_true_gradient():
    seed, lr = 3, 0.2
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 8))
    y = np.sin(X @ rng.standard_normal((8, 1)))
    init = np.random.default_rng([seed, 1])
    params = [init.standard_normal((8, 32)) * 0.5, np.zeros(32), init.standard_normal((32, 1)) / math.sqrt(32),
              np.zeros(1)]

    def loss(W1, b1, W2, b2):
        return 0.5 * float(np.mean((np.maximum(X @ W1 + b1, 0.0) @ W2 + b2 - y) ** 2))

    grads = [numerical_gradient(loss, params, i) for i in range(4)]
    run = flow.train_mlp("he", lr=lr, steps=2, seed=seed)
    np.testing.assert_allclose(run.first_grads["W1"], grads[0], rtol=1e-5, atol=1e-9)
    assert run.losses[1] == pytest.approx(loss(*[p - lr * g for p, g in zip(params, grads)]), rel=1e-8)


@pytest.mark.parametrize("scaled", [False, True])
def test_attention_selector_first_step_follows_the_true_gradient(scaled):
    """Without the factor the queries are multiplied by sqrt(d) before the reference attention divides by it:
    a backward pass that forgets that factor (or the linear map's) fails here."""
    n, d, n_keys, seed, lr = 6, 5, 3, 2, 0.7
    rng = np.random.default_rng(seed)
    X, K = rng.standard_normal((n, d)), rng.standard_normal((n_keys, d))
    Y = np.eye(n_keys)[rng.integers(0, n_keys, n)]
    W = rng.standard_normal((d, d)) / math.sqrt(d)
    factor = 1 / math.sqrt(d) if scaled else 1.0

    def loss(W):
        s = X @ W @ K.T * factor
        A = np.exp(s - s.max(axis=1, keepdims=True))
        A /= A.sum(axis=1, keepdims=True)
        return 0.5 * float(np.sum((A - Y) ** 2)) / n

    grad = numerical_gradient(loss, [W], 0)
    run = flow.train_attention_selector(scaled, steps=2, lr=lr, n=n, d=d, n_keys=n_keys, seed=seed)
    assert run.losses[0] == pytest.approx(loss(W), rel=1e-12)
    assert run.losses[1] == pytest.approx(loss(W - lr * grad), rel=1e-8)


# ----------------------------------------------------------------------------- monitor


def test_monitor_statistics_and_each_flag():
    healthy = np.array([3.0, -4.0, 0.0, 1.0])
    rows = {r.name: r for r in gradient_report({
        "healthy": healthy,
        "zeros": np.zeros((2, 3)),
        "huge": np.array([1.0, -5e3]),
        "nan": np.array([1.0, np.nan, 2.0]),
        "inf": np.array([np.inf, 0.0]),
    })}
    row = rows["healthy"]
    assert (row.mean, row.std, row.max_abs, row.norm) == pytest.approx(
        (healthy.mean(), healthy.std(), 4.0, math.sqrt(26.0)))
    assert row.flags == ()
    assert rows["zeros"].flags == ("zero",)
    assert rows["huge"].flags == ("huge",)
    assert rows["nan"].flags == ("nonfinite",) and rows["nan"].nonfinite == 1
    assert rows["nan"].norm == pytest.approx(math.sqrt(5.0))  # statistics over the finite entries
    assert rows["inf"].flags == ("nonfinite",)  # a finite zero next to an inf is not "zero"
    assert "huge" in gradient_report({"g": [50.0]}, huge=10.0)[0].flags
    with pytest.raises(ValueError):
        gradient_report([np.zeros(2)])
    text = format_report(list(rows.values()), only_flagged=True)
    assert "healthy" not in text and "nonfinite (1)" in text


def test_monitor_flags_each_warning_sign_on_the_model():
    from derivations.reference.model import TransformerConfig, init_params, loss_and_grads

    config = TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2)
    params = init_params(config, seed=0)
    tokens, targets = np.array([[15, 17, 3, 19, 8, 19, 4, 18]] * 2), np.array([8, 8])

    def flags(p):
        with np.errstate(all="ignore"):
            return {r.name: r.flags for r in gradient_report(loss_and_grads(p, tokens, targets, config)[1])}

    assert not any(flags(params).values())
    dead = dict(params, **{f"block{l}.ffn.b1": np.full(config.d_ff, -1e3) for l in range(config.n_layers)})
    zero = {name for name, f in flags(dead).items() if "zero" in f}
    assert zero == {f"block{l}.ffn.{p}" for l in range(config.n_layers) for p in ("W1", "b1", "W2")}
    assert "huge" in flags(dict(params, W_out=params["W_out"] * 1e4))["block0.attn.W_v"]
    assert "nonfinite" in flags(dict(params, embed=params["embed"] * 1e200))["W_out"]


# ----------------------------------------------------------------------------- figures


@functools.lru_cache(maxsize=None)
def rendered(name: str) -> str:
    """One drawing of a figure, shared by the tests that only read it (drawing one takes seconds)."""
    return render(name)


@pytest.mark.parametrize(("name", "line_ids"), [
    ("deep_chain", ["chain-linear-0.5", "chain-tanh-3", "chain-tanh-3-band"]),
    ("rnn_horizon", ["horizon-0-10·shift", "horizon-1-orthogonal", "horizon-1-orthogonal-band"]),
    ("gradient_flow", ["placement-post-48", "placement-pre-2", "placement-post-48-band", "placement-ratio-pre"]),
])
def test_figures_are_deterministic_and_draw_their_lines(name, line_ids):
    first, second = rendered(name), render(name)  # the shared drawing and a fresh one
    assert first == second
    for line_id in line_ids:
        assert f'id="{line_id}' in first


def test_placement_figure_draws_one_point_per_initialisation_and_depth():
    svg = rendered("gradient_flow")
    n_points = len(flow.PLACEMENT["seeds"]) * len(flow.PLACEMENT["depths"])
    for norm in ("post", "pre"):
        group = svg[svg.index(f'id="placement-ratio-{norm}"'):]
        group = group[:group.index("</g>")]
        assert group.count("<use ") == n_points


def test_figure_text_typesets_its_formulas():
    """Matplotlib writes every text's source into the SVG as a comment. Outside ``$...$`` (mathtext) no
    source may carry ASCII math such as ``h_(l-1)`` or ``sigma^2``."""
    for name in ("deep_chain", "rnn_horizon", "gradient_flow"):
        sources = re.findall(r"<!-- (.*?) -->", rendered(name))
        assert any("$" in text for text in sources), name  # the titles and labels are mathtext
        outside_math = [re.sub(r"\$[^$]*\$", "", text) for text in sources]
        assert not [text for text in outside_math if re.search(r"[_^]", text)], name


def test_bands_span_the_seeds_at_every_point():
    """The band of a curve runs from the smallest to the largest seed at each x: the seed axis, not the x axis."""
    import matplotlib.pyplot as plt
    from derivations.figures import flow as flow_figures
    from derivations.figures._svg import figure

    per_seed = np.array([[1.0, 5.0, 2.0], [3.0, 1.0, 4.0]])  # [seed, x]
    fig, ax = figure()
    flow_figures._line_and_band(ax, np.arange(3), per_seed, np.median(per_seed, axis=0), "k", "test")
    band = ax.collections[0].get_paths()[0].vertices
    plt.close(fig)
    for x in range(3):
        ys = band[np.isclose(band[:, 0], x), 1]
        assert ys.min() == per_seed[:, x].min() and ys.max() == per_seed[:, x].max()
