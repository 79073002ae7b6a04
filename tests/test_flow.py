"""The gradient-flow chapter: its experiments, monitor, figures and claims.

The experiments are checked against what theory says independently of the code (an
orthogonal matrix scales every vector by exactly its radius, a nilpotent product is zero, a
ReLU network with Xavier weights halves the second moment per layer, ...) and against the
qualitative statements the page makes, with margins wide enough that only a real mistake fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from derivations.figures import render
from derivations.experiments import flow
from derivations.reference import clip_grad_norm
from derivations.reference.monitor import format_report, gradient_report

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
        tanh = flow.deep_chain_gradient_norms(30, scale, "tanh")
        assert tanh[0] / tanh[-1] < linear[0] / linear[-1]


# ----------------------------------------------------------------------------- recurrent networks


def test_orthogonal_recurrence_without_input_scales_by_radius_to_the_T():
    """At h = 0 every tanh' is 1, and an orthogonal matrix times r scales every vector by exactly r."""
    horizons = [1, 5, 20, 60]
    for radius in (0.9, 1.5):
        W = flow.scaled_orthogonal(8, radius, seed=3)
        np.testing.assert_allclose(W @ W.T, radius**2 * np.eye(8), atol=1e-12)
        ratios = flow.rnn_gradient_horizon(W, horizons, input_scale=0.0)
        np.testing.assert_allclose(ratios, [radius**T for T in horizons], rtol=1e-9)


def test_counter_example_has_large_norm_small_spectral_radius_and_vanishing_gradient():
    examples = flow.recurrent_examples(16)
    W = examples["0.5·I + 3·shift"]
    assert np.all(np.tril(W, -1) == 0)  # upper triangular: the eigenvalues are the diagonal
    exact = sp.Matrix(16, 16, lambda r, c: sp.Rational(W[r, c]).limit_denominator(10))
    assert max(abs(e) for e in exact.eigenvals()) < 1  # exact eigenvalues, no rounding
    assert np.linalg.svd(W, compute_uv=False)[0] > 3  # the norm the "||W|| > 1 explodes" rule looks at
    ratios = flow.rnn_gradient_horizon(W, [5, 20, 200], input_scale=0.0)
    assert ratios[1] > 1e3  # a transient from the non-normal part ...
    assert ratios[2] < 1e-20  # ... and then the spectral radius wins
    with_inputs = flow.rnn_gradient_horizon(W, [200], input_scale=1.0)
    assert with_inputs[0] < 1e-20


def test_nilpotent_recurrence_kills_the_gradient_exactly_after_d_h_steps():
    W = flow.recurrent_examples(16)["10·shift (nilpotent)"]
    assert np.linalg.svd(W, compute_uv=False)[0] == pytest.approx(10.0)
    before, at, after = flow.rnn_gradient_horizon(W, [15, 16, 40], input_scale=0.0)
    assert before > 1.0 and at == 0.0 and after == 0.0
    assert flow.rnn_gradient_horizon(W, [16], input_scale=1.0)[0] == 0.0  # whatever the tanh slopes


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


# ----------------------------------------------------------------------------- attention


def test_peaked_attention_value_gradient_follows_the_weights_and_score_gradient_vanishes():
    multipliers = [0.5, 4.0, 64.0]
    result = flow.peaked_attention(multipliers, n_keys=6, d_k=4, d_v=4, seed=0)
    rng = np.random.default_rng(0)  # the same draws, in the same order, as the experiment documents
    q, K, V, dO = (rng.standard_normal(shape) for shape in [(1, 4), (6, 4), (6, 4), (1, 4)])
    assert result.top_key == int(np.argmax(q @ K.T))
    for A, dV_norms in zip(result.weights, result.dV_norms):
        np.testing.assert_allclose(dV_norms, A * np.linalg.norm(dO), rtol=1e-12)  # dV_j = A_j dO
    assert result.weights[-1][result.top_key] > 0.999
    assert result.dS_norms[-1] < 1e-4 * result.dS_norms[0]


def test_unscaled_scores_have_variance_d_k_and_saturate():
    for d_k in (64, 1024):
        scaled, unscaled = flow.score_statistics(d_k, True), flow.score_statistics(d_k, False)
        assert abs(unscaled.raw_variance / d_k - 1) < 0.15
        assert scaled.saturated == 0.0
    wide_scaled, wide_unscaled = flow.score_statistics(1024, True), flow.score_statistics(1024, False)
    assert wide_unscaled.saturated > 0.5
    assert wide_unscaled.dS_median < 1e-2 * wide_scaled.dS_median


def test_scaled_operating_point_does_not_depend_on_the_key_width():
    multipliers = [0.25, 1.0, 4.0]
    _, narrow = flow.score_scale_sweep(16, multipliers)
    _, wide = flow.score_scale_sweep(256, multipliers)
    np.testing.assert_allclose(narrow, wide, rtol=0.3)


# ----------------------------------------------------------------------------- pre-norm and post-norm


def test_placement_profiles_do_not_collapse_and_pre_norm_favours_early_blocks():
    profiles = flow.norm_placement_profiles()
    for (norm, depth), per_seed in profiles.items():
        assert per_seed.shape == (len(flow.PLACEMENT["seeds"]), depth)
        assert np.all(np.isfinite(per_seed)) and np.all(per_seed > 0)
        assert np.all(per_seed.max(axis=1) / per_seed.min(axis=1) < 100)  # no geometric collapse
    deep_pre = profiles["pre", max(flow.PLACEMENT["depths"])]
    assert np.all(deep_pre[:, 0] > 2 * deep_pre[:, -1])
    assert not deep_pre.flags.writeable  # shared between page and figure: must not be edited
    recomputed = flow.norm_placement_profiles.__wrapped__()  # bypass the per-process cache
    assert all(np.array_equal(recomputed[key], profiles[key]) for key in profiles)  # seeded: same numbers


def test_gpt2_scaling_stops_the_stream_from_growing():
    stream_plain, grads_plain = flow.residual_scaling_profile(24, scaled=False)
    stream_scaled, grads_scaled = flow.residual_scaling_profile(24, scaled=True)
    assert stream_plain[-1] > 10 * stream_plain[0]
    assert stream_scaled[-1] < 2 * stream_scaled[0]
    assert grads_scaled[0] / grads_scaled[-1] < grads_plain[0] / grads_plain[-1]


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


def test_clipping_turns_a_diverging_rnn_run_into_a_converging_one():
    unclipped = flow.train_rnn_memory(None, lr=1.0, steps=60)
    clipped = flow.train_rnn_memory(0.5, lr=1.0, steps=60)
    assert unclipped.losses[0] == clipped.losses[0]  # the same start
    assert not np.all(np.isfinite(unclipped.losses)) or unclipped.losses[-1] > 1e6
    assert np.all(np.isfinite(clipped.losses)) and clipped.losses.max() <= clipped.losses[0] * 1.5
    assert clipped.losses[-1] < 0.5 * clipped.losses[0]


# ----------------------------------------------------------------------------- initialisation


def test_he_keeps_relu_networks_in_range_and_xavier_halves_them():
    xavier_act, xavier_grad = flow.init_profile("xavier", "relu", depth=30, width=128, batch=16)
    he_act, he_grad = flow.init_profile("he", "relu", depth=30, width=128, batch=16)
    # Square layers: Xavier's variance is 1/n, half of He's 2/n, and ReLU halves the second moment.
    assert 0.5**30 / 30 < xavier_act[-1] / xavier_act[0] < 0.5**30 * 30
    assert 0.5**30 / 30 < xavier_grad[0] / xavier_grad[-1] < 0.5**30 * 30
    assert np.all((he_act > 0.1) & (he_act < 10)) and np.all((he_grad > 0.1) & (he_grad < 10))


# ----------------------------------------------------------------------------- debugging miniatures


def test_debugging_miniatures_show_the_symptom_and_the_fix():
    zero, he = flow.train_mlp("zero", lr=0.1, steps=100), flow.train_mlp("he", lr=0.1, steps=100)
    assert abs(zero.losses[-1] - zero.losses[0]) < 1e-3 * zero.losses[0]  # flat
    assert he.losses[-1] < 0.5 * he.losses[0]
    fast = flow.train_mlp("he", lr=1.0, steps=15)
    assert np.isnan(fast.losses[-1])
    unscaled, scaled = flow.train_attention_selector(False), flow.train_attention_selector(True)
    assert unscaled.losses[-1] < unscaled.losses[0]  # it does learn a little ...
    assert unscaled.losses[-1] > 10 * scaled.losses[-1]  # ... then stalls far above the fixed run
    assert unscaled.saturated > 0.2 and scaled.saturated == 0.0


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


@pytest.mark.parametrize(("name", "line_ids"), [
    ("deep_chain", ["chain-linear-0.5", "chain-tanh-3"]),
    ("rnn_horizon", ["horizon-0-10·shift", "horizon-1-orthogonal"]),
    ("gradient_flow", ["placement-post-48", "placement-pre-2"]),
])
def test_figures_are_deterministic_and_draw_their_lines(name, line_ids):
    first, second = render(name), render(name)
    assert first == second
    for line_id in line_ids:
        assert f'id="{line_id}' in first
