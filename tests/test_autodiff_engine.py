"""The autodiff engine (``derivations.autodiff``): its gradients, its graph, its two modes.

Expected values come from the hand-written reference backward passes (``loss_and_grads``),
from central differences, from hand counts, or from the model's structure as the chapter
describes it; never from the engine itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from derivations import autodiff as ad
from derivations.autodiff import Graph, Var, backward, grad, no_grad, ops, zero_grad
from derivations.autodiff.ops import OPS
from derivations.reference.model import TransformerConfig, cache_nbytes, forward, init_params, loss_and_grads
from derivations.reference.task import answer, tokenize

TOLERANCE = 1e-12


def assert_gradients_equal(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        scale = max(float(np.max(np.abs(expected[name]))), 1e-300)
        difference = float(np.max(np.abs(actual[name] - expected[name])))
        assert difference <= TOLERANCE * scale, f"{name}: differs by {difference:.3e} (scale {scale:.3e})"


# ----------------------------------------------------------------------------- the whole transformer

CONFIGS = {
    "post-norm relu": TransformerConfig(),
    "pre-norm relu": TransformerConfig(norm="pre"),
    "post-norm gelu": TransformerConfig(activation="gelu"),
    "pre-norm gelu_tanh, 3 blocks": TransformerConfig(norm="pre", activation="gelu_tanh", n_layers=3),
    "post-norm, 1 block, narrow": TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32),
    "pre-norm gelu, 4 blocks": TransformerConfig(norm="pre", activation="gelu", n_layers=4, d_model=32, d_ff=64),
}


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch, T", [(1, 8), (6, 8), (3, 5)])
def test_engine_gradients_equal_the_reference_backward(name, batch, T, positions):
    """Every parameter, the learned position table included (rows beyond T: zero both ways)."""
    config = dataclasses.replace(CONFIGS[name], positions=positions)
    rng = np.random.default_rng(batch * 10 + T)
    params = init_params(config, seed=batch)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}  # LayerNorm scales != 1
    tokens = rng.integers(0, config.vocab_size, (batch, T))
    targets = rng.integers(0, config.vocab_size, batch)
    loss, grads = loss_and_grads(params, tokens, targets, config)
    engine_loss, engine_grads = ad.loss_and_grads(params, tokens, targets, config)
    assert abs(engine_loss - loss) <= TOLERANCE * abs(loss)
    assert_gradients_equal(engine_grads, grads)


def test_repeated_tokens_accumulate_in_the_embedding_gradient():
    """``Max(1,1,1)`` repeats a digit and a comma: their embedding rows must collect every use."""
    config = TransformerConfig(n_layers=1)
    tokens = np.array([tokenize("Max(1,1,1)")])
    params = init_params(config, seed=4)
    _, grads = loss_and_grads(params, tokens, [answer("Max(1,1,1)")], config)
    _, engine = ad.loss_and_grads(params, tokens, [answer("Max(1,1,1)")], config)
    assert_gradients_equal(engine, grads)


def test_engine_rejects_parameters_that_do_not_fit():
    config = TransformerConfig(n_layers=1)
    params = init_params(config)
    del params["b_out"]
    with pytest.raises(ValueError, match="b_out"):
        ad.loss_and_grads(params, [[1, 2]], [3], config)


# ----------------------------------------------------------------------------- the recorded graph of Max(1,6,2)

# The chapter's model as its page describes it: embedding, + PE, then per post-norm block
# x = LN1(x + MHA(x)), x = LN2(x + W2 relu(W1 x + b1) + b2); the last position; the head; the loss.
BLOCK = ["multi_head_attention", "add", "layer_norm", "linear", "relu", "linear", "add", "layer_norm"]
EXPECTED_OPS = ["embedding", "add"] + BLOCK + BLOCK + ["getitem", "linear", "cross_entropy"]


@pytest.fixture(scope="module")
def max_graph():
    config = TransformerConfig()
    params = init_params(config)
    loss, variables, graph = record_transformer_example(params, config)
    return config, params, loss, variables, graph


def record_transformer_example(params, config):
    return ad.record_transformer(params, [tokenize("Max(1,6,2)")], [answer("Max(1,6,2)")], config)


def test_graph_of_the_example_has_the_model_s_ops_in_order(max_graph):
    _, _, _, _, graph = max_graph
    assert [row["op"] for row in graph.rows()] == EXPECTED_OPS


def test_residual_connections_appear_as_values_used_twice(max_graph):
    _, _, _, _, graph = max_graph
    rows = graph.rows()
    adds = [row for row in rows if row["op"] == "add"][1:]  # the first add is E[tokens] + PE
    # each residual add takes the block's running value and the branch's output
    assert all(len(row["inputs"]) == 2 and all(name.startswith("#") for name in row["inputs"]) for row in adds)
    assert rows[1]["inputs"] == ["#0", "const"]  # the positional encoding: a constant, no gradient


def test_saved_tensors_of_attention_are_named_and_sized(max_graph):
    config, _, _, _, graph = max_graph
    attention = graph.nodes[EXPECTED_OPS.index("multi_head_attention")]
    saved = {s.name: s for s in attention.saved_tensors()}
    d_head = config.d_model // config.n_heads
    assert saved["attention.A"].shape == (1, config.n_heads, 8, 8)
    assert saved["attention.A"].nbytes == 8 * config.n_heads * 8 * 8 and not saved["attention.A"].is_input
    assert saved["attention.Q"].shape == (1, config.n_heads, 8, d_head)
    assert saved["linear_q.x"].is_input and saved["linear_q.W"].is_input  # kept by reference: no copy
    relu = graph.nodes[EXPECTED_OPS.index("relu")]
    (mask,) = relu.saved_tensors()
    assert mask.dtype == "bool" and mask.nbytes == 8 * config.d_ff  # one byte per entry of [1, 8, d_ff]


def test_saved_bytes_match_the_reference_cache_plus_the_loss(max_graph):
    """The engine's graph keeps what the reference's forward cache keeps, and the loss's softmax."""
    config, params, _, variables, graph = max_graph
    _, cache = forward(params, np.array([tokenize("Max(1,6,2)")]), config)
    loss_cache = 8 * config.vocab_size + 8  # p [1, vocab] and the int64 target
    assert graph.saved_bytes(exclude=variables.values()) == cache_nbytes(cache, params) + loss_cache


def test_backward_visits_every_node_once_in_reverse_creation_order():
    config = TransformerConfig()
    loss, _, graph = record_transformer_example(init_params(config), config)
    visited = backward(loss)
    assert len(visited) == len(EXPECTED_OPS)
    assert [node.op.name for node in visited] == EXPECTED_OPS[::-1]
    assert [graph.index(node) for node in visited] == graph.backward_order()
    assert all(node.freed for node in visited)  # saved tensors released as the pass goes


# ----------------------------------------------------------------------------- reverse-mode behaviour


def test_gradients_accumulate_across_backward_calls_until_zero_grad():
    x = Var([1.0, -2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    backward(y, retain_graph=True)
    np.testing.assert_array_equal(x.grad, [2.0, -4.0, 6.0])
    backward(y)
    np.testing.assert_array_equal(x.grad, [4.0, -8.0, 12.0])
    zero_grad([x])
    assert x.grad is None


def test_a_second_backward_through_a_freed_graph_is_refused():
    x = Var([0.5, 1.5], requires_grad=True)
    y = ops.tanh(x).sum()
    backward(y)
    with pytest.raises(RuntimeError, match=r"node #\d+ \(sum\).*retain_graph=True"):
        backward(y)


def test_no_grad_records_nothing_and_detach_stops_the_gradient():
    x = Var([2.0, 3.0], requires_grad=True)
    with no_grad():
        y = x * x
    assert y.node is None and not y.requires_grad
    z = (x.detach() * x).sum()  # d/dx of c * x with c = x held constant is c, not 2x
    backward(z)
    np.testing.assert_array_equal(x.grad, [2.0, 3.0])


def test_grad_returns_none_for_unwatched_and_disconnected_values_and_leaves_dot_grad_alone():
    x = Var([1.0, 2.0], requires_grad=True)
    unwatched = Var([3.0, 4.0])
    disconnected = Var([5.0], requires_grad=True)
    y = (x * unwatched).sum()
    gx, gu, gd = grad(y, [x, unwatched, disconnected])
    np.testing.assert_array_equal(gx, [3.0, 4.0])
    assert gu is None and gd is None and x.grad is None


def test_grad_of_an_intermediate_value():
    x = Var([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    y = (h * h).sum()
    gh, gx = grad(y, [h, x])
    np.testing.assert_array_equal(gh, [6.0, 12.0])
    np.testing.assert_array_equal(gx, [18.0, 36.0])


def test_a_vector_output_needs_its_cotangent():
    x = Var([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="needs its cotangent"):
        backward(x * x)
    with pytest.raises(ValueError, match=r"grad \(3,\) does not match"):
        backward(x * x, grad=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="requires a gradient"):
        backward(Var([1.0]))


def test_broadcasting_sums_the_gradient_back():
    a = Var([1.0, 2.0, 3.0], requires_grad=True)
    b = Var(np.ones((2, 3)), requires_grad=True)
    backward((a * b + a).sum())
    # a * b: a meets the two rows of b (ones); + a: a is broadcast over the same two rows again
    np.testing.assert_array_equal(a.grad, [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(b.grad, [[1.0, 2.0, 3.0]] * 2)


def test_repeated_indices_add_up():
    x = Var([1.0, 1.0, 1.0], requires_grad=True)
    backward(x[np.array([0, 0, 2])].sum())
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0])


def test_a_value_used_twice_by_one_op_gets_both_contributions():
    x = Var([3.0], requires_grad=True)
    backward((x * x).sum())
    np.testing.assert_array_equal(x.grad, [6.0])


# ----------------------------------------------------------------------------- every op's two rules


def _inputs(rng, *shapes):
    return [rng.standard_normal(s) for s in shapes]


CAUSAL = np.tril(np.ones((5, 5), dtype=bool))
# op name -> (function of arrays/Vars, input shapes, positive inputs only)
OP_CASES = {
    "add": (lambda a, b: a + b, [(3, 1), (1, 4)]),
    "sub": (lambda a, b: a - b, [(2, 3), (3,)]),
    "mul": (lambda a, b: a * b, [(3, 1), (1, 4)]),
    "div": (lambda a, b: a / (b * b + 1.0), [(2, 3), (3,)]),
    "neg": (lambda a: -a, [(4,)]),
    "matmul": (lambda x, W: ops.matmul(x, W), [(2, 3, 4), (4, 5)]),
    "tanh": (lambda x: ops.tanh(x), [(3, 4)]),
    "sigmoid": (lambda x: ops.sigmoid(x), [(3, 4)]),
    "exp": (lambda x: ops.exp(x), [(3, 4)]),
    "log": (lambda x: ops.log(x * x + 1.0), [(3, 4)]),
    "sin": (lambda x: ops.sin(x), [(3, 4)]),
    "cos": (lambda x: ops.cos(x), [(3, 4)]),
    "sum": (lambda x: ops.sum(x, axis=1), [(3, 4, 2)]),
    "getitem": (lambda x: x[:, np.array([0, 2, 2])], [(3, 4)]),
    "reshape": (lambda x: x.reshape(4, 3), [(3, 4)]),
    "concat": (lambda a, b: ops.concat([a, b], axis=0), [(2, 3), (1, 3)]),
    "linear": (lambda x, W, b: ops.linear(x, W, b), [(2, 3, 4), (4, 5), (5,)]),
    "relu": (lambda x: ops.relu(x), [(3, 4)]),
    "gelu": (lambda x: ops.gelu(x, "tanh") + ops.gelu(x), [(3, 4)]),
    "layer_norm": (lambda x, g, b: ops.layer_norm(x, g, b), [(2, 3, 6), (6,), (6,)]),
    "softmax": (lambda x: ops.softmax(x, mask=CAUSAL), [(2, 5, 5)]),
    "attention": (lambda q, k, v: ops.attention(q, k, v, mask=CAUSAL), [(2, 5, 3), (2, 5, 3), (2, 5, 4)]),
    "multi_head_attention": (lambda X, a, b, c, d: ops.multi_head_attention(X, a, b, c, d, 2, mask=CAUSAL),
                             [(2, 5, 4), (4, 4), (4, 4), (4, 4), (4, 4)]),
    "embedding": (lambda E: ops.embedding(np.array([[1, 1, 0], [3, 1, 3]]), E), [(4, 3)]),
    "cross_entropy": (lambda z: ops.cross_entropy(z, np.array([1, 0, 2])), [(3, 4)]),
    "lstm_cell": (lambda x, h, c, W, b: ops.concat(list(ops.lstm_cell(x, h, c, W, b)), axis=-1),
                  [(2, 3), (2, 4), (2, 4), (7, 16), (16,)]),
    "patch_embed": (lambda im, W, b: ops.patch_embed(im, W, b, 2), [(2, 3, 4, 6), (12, 5), (5,)]),
}


def test_every_op_has_a_test_case():
    assert set(OP_CASES) == set(OPS)


@pytest.mark.parametrize("name", list(OP_CASES))
def test_jvp_matches_central_differences_and_transposes_to_the_vjp(name):
    f, shapes = OP_CASES[name]
    rng = np.random.default_rng(sorted(OP_CASES).index(name))
    xs = _inputs(rng, *shapes)
    us = _inputs(rng, *shapes)
    value, jvp_fn = ad.linearize(f, *xs)
    _, vjp_fn = ad.vjp(f, *xs)
    Ju = jvp_fn(*us)
    h = 1e-6
    plus = ad.linearize(f, *[x + h * u for x, u in zip(xs, us)])[0]
    minus = ad.linearize(f, *[x - h * u for x, u in zip(xs, us)])[0]
    numeric = (plus - minus) / (2 * h)
    scale = float(np.max(np.abs(numeric)))
    assert scale > 1e-3, "the case must exercise the op"
    assert float(np.max(np.abs(Ju - numeric))) < 1e-7 * max(scale, 1.0)
    v = rng.standard_normal(np.shape(value))
    v_Ju = float(np.sum(v * Ju))
    JTv_u = float(sum(np.sum(g * u) for g, u in zip(vjp_fn(v), us)))
    assert abs(v_Ju - JTv_u) <= 1e-12 * max(abs(v_Ju), float(np.sum(np.abs(v) * np.abs(Ju))))


def test_jacobians_both_ways_agree_with_central_differences():
    W = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 1.0]])

    def f(x):
        return ops.sin(ops.matmul(x, W)) * ops.exp(ops.matmul(x, W))

    x = np.array([0.3, -0.7, 1.1])
    numeric = np.stack([(ad.linearize(f, x + 1e-6 * e)[0] - ad.linearize(f, x - 1e-6 * e)[0]) / 2e-6
                        for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(ad.jacfwd(f, x), numeric, atol=1e-8)
    np.testing.assert_allclose(ad.jacrev(f, x), numeric, atol=1e-8)
    assert ad.jacfwd(f, x).shape == ad.jacrev(f, x).shape == (2, 3)


def test_vjp_gives_zeros_for_an_unused_input_and_can_be_called_again():
    value, vjp_fn = ad.vjp(lambda a, b: a * 2.0, np.array([1.0, 2.0]), np.array([5.0]))
    first, second = vjp_fn(np.array([1.0, 1.0])), vjp_fn(np.array([1.0, 0.0]))
    np.testing.assert_array_equal(first[0], [2.0, 2.0])
    np.testing.assert_array_equal(first[1], [0.0])
    np.testing.assert_array_equal(second[0], [2.0, 0.0])


# ----------------------------------------------------------------------------- counting


def test_flop_counts_of_one_matrix_product():
    """[3, 4] @ [4, 5]: 15 dot products of 4 multiplications and 3 additions, counted 2 * 60 = 120."""
    x, W = np.ones((3, 4)), np.ones((4, 5))
    with ad.count_flops() as tally:
        ad.linearize(lambda v: ops.matmul(v, W), x)[1](x)
    assert tally["forward"] == 120 and tally["jvp"] == 120
    with ad.count_flops() as tally:
        ad.vjp(lambda v: ops.matmul(v, W), x)[1](np.ones((3, 5)))
    assert tally["vjp"] == 120  # dx = g W^T only: W is a constant
    with ad.count_flops() as tally:
        ad.vjp(lambda v, w: ops.matmul(v, w), x, W)[1](np.ones((3, 5)))
    assert tally["vjp"] == 240  # dx and dW


def test_ops_without_a_cost_are_counted_as_uncounted():
    with ad.count_flops() as tally:
        ops.relu(Var([1.0, -1.0], requires_grad=True))
    assert tally["forward calls"] == 1 and tally["uncounted"] == 1 and tally["forward"] == 0


def test_distances_count_ops_on_the_shortest_path():
    x = Var([0.1, 0.2], requires_grad=True)
    y = Var([0.3], requires_grad=True)
    h = ops.tanh(ops.tanh(x))
    out = (h.sum() + y).sum()
    graph = Graph(out)
    assert graph.distances([x, y, h]) == [5, 2, 3]  # tanh, tanh, sum, add, sum / add, sum / sum, add, sum
    assert graph.distances([Var([1.0], requires_grad=True)]) == [float("inf")]


def test_saved_tensors_are_gone_after_backward():
    x = Var([1.0, 2.0], requires_grad=True)
    y = ops.tanh(x).sum()
    node = y.node.parents()[0]
    np.testing.assert_array_equal(node.saved("y"), np.tanh([1.0, 2.0]))
    with pytest.raises(ValueError, match="saves \\['y'\\], not 'A'"):
        node.saved("A")
    backward(y)
    with pytest.raises(ValueError, match="freed"):
        node.saved_tensors()
