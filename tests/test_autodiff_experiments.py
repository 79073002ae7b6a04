"""The autodiff chapter's experiments (``derivations.experiments.autodiff``) and its figures.

Expected values come from hand derivations and hand counts written here, from the reference
backward passes, or from the structure of the networks; never from the experiment under test.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from derivations.autodiff import backward
from derivations.experiments import autodiff as ex
from derivations.figures import FIGURES, render
from derivations.reference import lstm_backward, lstm_forward, rnn_backward, rnn_forward

# ----------------------------------------------------------------------------- the transpose


def test_reverse_mode_is_the_transposed_linearisation():
    demo = ex.transpose_demo(seed=3)
    x = demo["x"]
    W1 = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0]])
    W2 = np.array([[0.5, -1.0], [0.0, 1.0], [1.0, 0.5]])
    a, b = x @ W1, x @ W2
    # by hand: d/dx [sin(a) tanh(b)] = cos(a) tanh(b) W1^T + sin(a) (1 - tanh(b)^2) W2^T, row by row
    J = (np.cos(a) * np.tanh(b))[:, None] * W1.T + (np.sin(a) * (1 - np.tanh(b) ** 2))[:, None] * W2.T
    np.testing.assert_allclose(demo["J_forward"], J, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(demo["J_reverse"], J, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(demo["vjp_matrix"], J.T, rtol=1e-14, atol=1e-15)
    assert demo["v_Ju"] == pytest.approx(demo["v"] @ J @ demo["u"], rel=1e-14)
    assert demo["JTv_u"] == pytest.approx(demo["v_Ju"], rel=1e-13)


# ----------------------------------------------------------------------------- cost


def test_one_evaluation_costs_what_its_products_and_tanh_cost():
    # x [1] -> [32] -> [32] -> [4]: products 2*1*32, 2*32*32, 2*32*4, and two tanh of 32 values
    assert ex.jacobian_cost(1, 4)["f"] == 2 * 1 * 32 + 32 + 2 * 32 * 32 + 32 + 2 * 32 * 4


@pytest.mark.parametrize("n, m", [(64, 4), (4, 64), (4, 4), (1, 1)])
def test_jacobian_costs_scale_with_the_number_of_passes(n, m):
    cost = ex.jacobian_cost(n, m)
    assert cost["jvp_rules"] == 5 * n and cost["vjp_rules"] == 5 * m  # 3 products and 2 tanh per pass
    assert cost["max_difference"] < 1e-14
    ratio = (cost["forward"] - cost["f"]) / (cost["reverse"] - cost["f"])
    # a JVP pass and a VJP pass of this function cost the same: the totals differ by n / m
    assert ratio == pytest.approx(n / m, rel=0.05)


def test_cost_sweep_shapes():
    sweep = ex.cost_sweep(sizes=(1, 8, 64), fixed=2)
    assert [row["n"] for row in sweep["wide"]] == [1, 8, 64] and {row["m"] for row in sweep["wide"]} == {2}
    assert [row["m"] for row in sweep["tall"]] == [1, 8, 64] and {row["n"] for row in sweep["tall"]} == {2}
    assert sweep["wide"][-1]["forward"] > 10 * sweep["wide"][-1]["reverse"]
    assert sweep["tall"][-1]["reverse"] > 10 * sweep["tall"][-1]["forward"]


# ----------------------------------------------------------------------------- graph depth


def _loss_gradient_at_last_state(h_last, P):
    """dL/dh_T of the classifier ``softmax(h W_out + b_out)`` with target 0, by hand: (p - onehot) W_out^T."""
    logits = h_last @ P["W_out"] + P["b_out"]
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    p[0, 0] -= 1.0
    return p @ P["W_out"].T


def test_engine_rnn_graph_gets_the_reference_bptt_gradients():
    built = ex.rnn_graph(T=6)
    backward(built["loss"], retain_graph=True)
    P = {k: v.value for k, v in built["params"].items()}
    x = np.stack([v.value for v in built["inputs"]])  # [T, 1, d_in]
    hs, cache = rnn_forward(x, np.zeros((1, P["W_hh"].shape[0])), P["W_xh"], P["W_hh"], P["b"])
    dhs = np.zeros_like(hs)
    dhs[-1] = _loss_gradient_at_last_state(hs[-1], P)
    dx, _, dW_xh, dW_hh, db = rnn_backward(dhs, cache)
    for t, leaf in enumerate(built["inputs"]):
        np.testing.assert_allclose(leaf.grad, dx[t], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(built["params"]["W_hh"].grad, dW_hh, rtol=1e-12)
    np.testing.assert_allclose(built["params"]["b"].grad, db, rtol=1e-12)


def test_engine_lstm_graph_gets_the_reference_lstm_gradients():
    built = ex.lstm_graph(T=5, forget_bias=1.0)
    backward(built["loss"], retain_graph=True)
    P = {k: v.value for k, v in built["params"].items()}
    d_h = P["W_out"].shape[0]
    x = np.stack([v.value for v in built["inputs"]])
    (hs, _), cache = lstm_forward(x, np.zeros((1, d_h)), np.zeros((1, d_h)), P["W"], P["b"])
    dhs = np.zeros_like(hs)
    dhs[-1] = _loss_gradient_at_last_state(hs[-1], P)
    dx, _, _, dW, db = lstm_backward(dhs, cache)
    for t, leaf in enumerate(built["inputs"]):
        np.testing.assert_allclose(leaf.grad, dx[t], rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(built["params"]["W"].grad, dW, rtol=1e-11, atol=1e-15)
    assert len(built["cell_path"]) == 4  # f * c for steps 2..5 (step 1 multiplies the constant c_0)


def test_path_lengths_grow_per_step_as_the_cells_are_built():
    T = 10
    rnn, lstm, hidden, block = (ex.path_lengths(kind, T) for kind in ("rnn", "lstm", "lstm_hidden", "transformer"))
    # one RNN step back: tanh, add b, add, matmul by W_hh
    np.testing.assert_array_equal(np.diff(rnn["ops"]), -4)
    np.testing.assert_array_equal(rnn["matrix_products"], T - np.arange(1, T + 1) + 2)  # W_hh per step, W_xh, head
    # the cell state: c_t = f * c_{t-1} + ..., two ops per step and no matrix product
    np.testing.assert_array_equal(np.diff(lstm["ops"][:-1]), -2)
    np.testing.assert_array_equal(lstm["matrix_products"], 2)  # W at the input's own step, and the head
    # without the cell state: concat, matmul, add b, slice o, sigmoid, o * tanh(c) per step
    np.testing.assert_array_equal(np.diff(hidden["ops"][:-1]), -6)
    # attention: every earlier position is the same distance away; the last one also has the residual path
    assert len(set(block["ops"][:-1])) == 1 and block["ops"][-1] < block["ops"][0]
    assert set(block["matrix_products"][:-1]) == {3} and block["matrix_products"][-1] == 1  # W_v W_o + head / head


def test_path_lengths_reject_an_unknown_network():
    with pytest.raises(ValueError, match="kind must be"):
        ex.path_lengths("gru")


def test_gradients_vanish_along_the_deep_graphs_and_not_through_attention():
    norms = ex.gradient_norms_by_position(T=16)
    assert all(v.shape == (16,) and np.all(v > 0) for v in norms.values())
    first_over_last = {k: v[0] / v[-1] for k, v in norms.items()}
    assert first_over_last["rnn"] < first_over_last["lstm"] < first_over_last["transformer"]
    assert first_over_last["rnn"] < 1e-3
    transformer = norms["transformer"][:-1]
    assert transformer.max() / transformer.min() < 3  # earlier positions: all about equally far


# ----------------------------------------------------------------------------- masks and positions


def test_causal_mask_gives_exactly_zero_gradient_to_the_future():
    result = ex.causal_mask_gradients(n=6)
    reach = result["reach"]
    assert result["zero_above_diagonal"] and np.all(reach[np.triu_indices(6, 1)] == 0.0)
    assert result["smallest_allowed"] > 1e-3 and np.all(reach[np.tril_indices(6)] > 0)


def test_padding_gets_no_gradient_and_changes_nothing_at_real_positions():
    result = ex.padding_mask_gradients(lengths=(4, 2, 1))
    assert result["padding_gradient_max"] == 0.0
    assert result["output_difference"] < 1e-14 and result["gradient_difference"] < 1e-14


def test_causal_mask_equals_deleting_the_future_at_a_fraction_of_the_work():
    T, heads = 12, 2
    result = ex.causal_versus_deleting(T=T, n_heads=heads)
    assert result["max_difference"] < 1e-14
    assert result["calls"] == {"masked": 1, "deleted": T}
    assert result["rows_projected"] == {"masked": T, "deleted": T * (T + 1) // 2}
    squares = sum(i * i for i in range(1, T + 1))
    assert result["weights_computed"] == {"masked": heads * T * T, "deleted": heads * squares}
    assert result["weights_masked"]["masked"] == heads * T * (T - 1) // 2


def test_sinusoidal_values():
    table = ex.sinusoidal_table(positions=(0, 1, 10), d_model=4)
    expected = [[0.0, 1.0, 0.0, 1.0],
                [np.sin(1.0), np.cos(1.0), np.sin(0.01), np.cos(0.01)],
                [np.sin(10.0), np.cos(10.0), np.sin(0.1), np.cos(0.1)]]
    np.testing.assert_allclose(table, expected, rtol=1e-15, atol=1e-16)


def test_learned_positions_get_the_reference_gradient_and_sinusoids_get_none():
    result = ex.position_gradients(batch=3)
    assert result["constant_gradient"] is None
    assert result["difference_from_reference"] <= 1e-15
    assert result["learned_gradient"].shape == (8, 64) and np.all(result["row_norms"] > 0)


# ----------------------------------------------------------------------------- memory


def test_attention_memory_quadratic_term_is_the_weights():
    heads, d_head, batch = 3, 8, 2
    saved = ex.attention_saved_bytes(lengths=(8, 16, 32, 64), d_head=d_head, n_heads=heads, batch=batch)
    a, b, c = ex.quadratic_fit(saved["lengths"], saved["standard"])
    assert a == pytest.approx(8 * heads * batch)  # one float64 per (query, key) pair per head
    assert b == pytest.approx(3 * 8 * heads * batch * d_head)  # Q, K, V
    assert abs(c) < 1e-6
    a, b, _ = ex.quadratic_fit(saved["lengths"], saved["efficient"])
    assert abs(a) < 1e-9 and b == pytest.approx(8 * heads * batch * (4 * d_head + 1))  # Q, K, V, O and lse
    np.testing.assert_array_equal(saved["weights"], 8 * heads * batch * saved["lengths"] ** 2)


# ----------------------------------------------------------------------------- figures

AUTODIFF_FIGURES = {
    "autodiff_graph": ["node-0", "node-20", "visit-0", "visit-20", "edge-1-3", "edge-12-16"],
    "autodiff_cost": ["cost-wide-forward", "cost-wide-reverse", "cost-tall-forward", "cost-tall-reverse"],
    "autodiff_depth": ["depth-rnn", "depth-lstm", "depth-lstm_hidden", "depth-transformer", "gradient-rnn"],
    "autodiff_attention_memory": ["memory-standard", "memory-weights", "memory-efficient"],
}


@pytest.mark.parametrize("name", list(AUTODIFF_FIGURES))
def test_figure_is_registered_deterministic_and_has_its_parts(name):
    assert name in FIGURES
    first, second = render(name), render(name)
    assert first == second
    for gid in AUTODIFF_FIGURES[name]:
        assert f'id="{gid}"' in first, f"{name}: no element {gid}"
    assert "$" not in re.sub(r"<[^>]+>", "", first)  # mathtext is typeset, never left raw


def test_graph_figure_numbers_the_backward_visits_in_reverse():
    svg = render("autodiff_graph")
    labels = {int(k): int(v) for k, v in re.findall(r'<g id="visit-(\d+)">.*?>\s*(\d+)\s*</text>', svg, re.S)}
    assert labels == {k: 21 - k for k in range(21)}
