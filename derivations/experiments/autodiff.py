"""The experiments of the autodiff-engines chapter, shared by its page and its figures.

Every function is seeded, float64 and deterministic, and returns plain values
(numbers, arrays, dicts of them). Gradients come from the reference backward
passes, directly or as the VJP rules of the engine (:mod:`derivations.autodiff`);
the forward mode from the engine's JVP rules. The sections follow the chapter:

- the recorded graph, one row per kind of op: :func:`graph_summary`
- the linearised function and its transpose: :func:`transpose_demo`
- the cost of a Jacobian, forward or reverse: :func:`jacobian_cost`, :func:`cost_sweep`,
  :func:`xla_jacobian_flops` (JAX, imported only when called)
- graph depth: :func:`rnn_graph`, :func:`lstm_graph`, :func:`transformer_block_graph`,
  :func:`path_lengths`, :func:`gradient_norms_by_position`
- masks and positions: :func:`causal_mask_gradients`, :func:`padding_mask_gradients`,
  :func:`causal_versus_deleting`, :func:`sinusoidal_table`, :func:`position_gradients`
- memory of attention: :func:`attention_saved_bytes`, :func:`quadratic_fit`
- a common mistake measured over seeds: :func:`forgotten_scale`
"""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import Graph, Var, count_flops, grad, jacfwd, jacrev, linearize, ops, vjp
from ..autodiff.transformer import transformer_loss
from ..reference import (
    attention,
    attention_backward,
    cross_entropy,
    cross_entropy_backward,
    linear,
    linear_backward,
    lstm_backward,
    lstm_forward,
    memory_efficient_attention,
    multi_head_attention,
    multi_head_attention_backward,
    positional_encoding,
    rnn_backward,
    rnn_forward,
)
from ..reference._checks import require
from ..reference.model import TransformerConfig, forward_backward, init_params
from .memo import shared

__all__ = [
    "COST_SIZES",
    "COST_FIXED",
    "DEPTH_STEPS",
    "MEMORY_LENGTHS",
    "small_function",
    "transpose_demo",
    "mlp_function",
    "jacobian_cost",
    "cost_sweep",
    "xla_jacobian_flops",
    "rnn_graph",
    "lstm_graph",
    "transformer_block_graph",
    "MATRIX_PRODUCTS",
    "path_lengths",
    "gradient_norms_by_position",
    "causal_mask_gradients",
    "padding_mask_gradients",
    "causal_versus_deleting",
    "sinusoidal_table",
    "position_gradients",
    "attention_saved_bytes",
    "quadratic_fit",
    "graph_summary",
    "forgotten_scale",
]

#: Sizes the page and the figures share.
COST_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
COST_FIXED = 4
DEPTH_STEPS = 24
MEMORY_LENGTHS = (16, 32, 64, 128, 256, 512, 1024)


# ----------------------------------------------------------------------------- the linearised function transposed


def small_function(x):
    """``f(x) = sin(x W1) * tanh(x W2)``, from R^3 to R^2, written with the engine's ops.

    ``W1 = [[1, 0], [2, 1], [0, -1]]`` and ``W2 = [[0.5, -1], [0, 1], [1, 0.5]]``.
    """
    W1 = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0]])
    W2 = np.array([[0.5, -1.0], [0.0, 1.0], [1.0, 0.5]])
    return ops.sin(ops.matmul(x, W1)) * ops.tanh(ops.matmul(x, W2))


def transpose_demo(seed: int = 0) -> dict:
    """Reverse mode is the linearised function transposed, checked on :func:`small_function`.

    At a seeded point ``x``, with seeded directions ``u`` (input side) and ``v``
    (output side): ``<v, J u>`` from one JVP and ``<J^T v, u>`` from one VJP; the
    whole Jacobian built column by column (JVPs) and row by row (VJPs); and the
    Jacobian of the VJP map itself, which is ``J^T``.

    Returns
    -------
    dict
        ``x``, ``u``, ``v``, ``J_forward`` ``[2, 3]``, ``J_reverse`` ``[2, 3]``,
        ``v_Ju``, ``JTv_u`` (floats), ``max_difference`` (between the two
        Jacobians), ``vjp_matrix`` ``[3, 2]`` (the VJP applied to the unit vectors).
    """
    rng = np.random.default_rng(seed)
    x, u, v = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(2)
    _, jvp_fn = linearize(small_function, x)
    _, vjp_fn = vjp(small_function, x)
    J_forward, J_reverse = jacfwd(small_function, x), jacrev(small_function, x)
    vjp_matrix = np.stack([vjp_fn(e)[0] for e in np.eye(2)], axis=1)
    return {
        "x": x, "u": u, "v": v,
        "J_forward": J_forward, "J_reverse": J_reverse,
        "v_Ju": float(v @ jvp_fn(u)), "JTv_u": float(vjp_fn(v)[0] @ u),
        "max_difference": float(np.max(np.abs(J_forward - J_reverse))),
        "vjp_matrix": vjp_matrix,
    }


# ----------------------------------------------------------------------------- the cost of a Jacobian


def mlp_function(n: int, m: int, width: int = 32, seed: int = 0):
    """A function from R^n to R^m: ``tanh(tanh(x W0) W1) W2`` with seeded ``N(0, 1/fan_in)`` weights.

    Returns ``(f, weights)``; ``f`` takes a Var of shape ``[n]`` and uses the
    engine's ops, the weights are constants (no gradient is asked for them).
    """
    require(n >= 1 and m >= 1 and width >= 1, f"n = {n}, m = {m}, width = {width} must be >= 1")
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(shape) / math.sqrt(shape[0]) for shape in ((n, width), (width, width), (width, m))]

    def f(x):
        return ops.matmul(ops.tanh(ops.matmul(ops.tanh(ops.matmul(x, weights[0])), weights[1])), weights[2])

    return f, weights


def jacobian_cost(n: int, m: int, width: int = 32, seed: int = 0) -> dict:
    """Build the ``[m, n]`` Jacobian of :func:`mlp_function` both ways and count the engine's flops.

    Forward mode records ``f`` once and runs ``n`` JVPs (one per column);
    reverse mode records ``f`` once and runs ``m`` VJPs (one per row). The flops
    are what the rules report (:func:`derivations.autodiff.count_flops`).

    Returns
    -------
    dict
        ``n``, ``m``, ``f`` (flops of one evaluation), ``forward`` and ``reverse``
        (total flops of each Jacobian, the evaluation included), ``jvp_rules`` and
        ``vjp_rules`` (rule applications), ``max_difference`` between the two Jacobians.
    """
    f, _ = mlp_function(n, m, width, seed)
    x = np.random.default_rng(seed + 1).standard_normal(n)
    with count_flops() as once:
        f(Var(x, requires_grad=True))
    with count_flops() as fwd:
        J_forward = jacfwd(f, x)
    with count_flops() as rev:
        J_reverse = jacrev(f, x)
    require(fwd["uncounted"] == 0 and rev["uncounted"] == 0, "every op of mlp_function has a cost")
    return {
        "n": n, "m": m, "f": once["forward"],
        "forward": fwd["forward"] + fwd["jvp"], "reverse": rev["forward"] + rev["vjp"],
        "jvp_rules": fwd["jvp calls"], "vjp_rules": rev["vjp calls"],
        "max_difference": float(np.max(np.abs(J_forward - J_reverse))),
    }


def cost_sweep(sizes=COST_SIZES, fixed: int = COST_FIXED, width: int = 32) -> dict:
    """:func:`jacobian_cost` with ``m = fixed`` over ``n`` in ``sizes``, and ``n = fixed`` over ``m``.

    Returns ``{"wide": [...], "tall": [...]}``: lists of the dicts of
    :func:`jacobian_cost` for wide Jacobians (many inputs) and tall ones (many outputs).

    Not shared between processes (:func:`~.memo.shared`), although the page and its figure both
    run it: it records graphs on the engine, whose node numbers count up per process, and the page
    prints node numbers after it; reading the sweep from another process would change them.
    """
    return {"wide": [jacobian_cost(n, fixed, width) for n in sizes],
            "tall": [jacobian_cost(fixed, m, width) for m in sizes]}


def xla_jacobian_flops(n: int, m: int, width: int = 32, seed: int = 0) -> dict:
    """XLA's own count: ``cost_analysis()`` flops of ``jax.jacfwd`` and ``jax.jacrev`` of :func:`mlp_function`.

    The same weights as the engine's; compiled with float64 enabled. Imports
    JAX only when called.

    Returns
    -------
    dict
        ``n``, ``m``, ``forward`` and ``reverse`` (flops XLA reports for the
        compiled Jacobian programs), ``max_difference`` between their Jacobians.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    _, weights = mlp_function(n, m, width, seed)
    W0, W1, W2 = (jnp.asarray(w) for w in weights)

    def f(x):
        return jnp.tanh(jnp.tanh(x @ W0) @ W1) @ W2

    x = jnp.asarray(np.random.default_rng(seed + 1).standard_normal(n))
    result = {"n": n, "m": m}
    jacobians = {}
    for name, transform in (("forward", jax.jacfwd), ("reverse", jax.jacrev)):
        compiled = jax.jit(transform(f)).lower(x).compile()
        analysis = compiled.cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        result[name] = int(analysis["flops"])
        jacobians[name] = np.asarray(compiled(x))
    result["max_difference"] = float(np.max(np.abs(jacobians["forward"] - jacobians["reverse"])))
    return result


# ----------------------------------------------------------------------------- graph depth

#: Weight matrices a gradient is multiplied by when it crosses an op from its output to an input
#: (attention: W_o, then W_v or W_q/W_k); what :func:`path_lengths` counts as matrix products.
MATRIX_PRODUCTS = {"matmul": 1, "linear": 1, "multi_head_attention": 2}


def _leaf(rng, shape, name, scale=1.0):
    return Var(rng.standard_normal(shape) * scale, requires_grad=True, name=name)


def rnn_graph(T: int, d_in: int = 8, d_h: int = 16, n_classes: int = 5, seed: int = 0) -> dict:
    """Record a tanh RNN over ``T`` steps and a classifier on its last state, from the engine's elementary ops.

    ``h_t = tanh(x_t W_xh + h_{t-1} W_hh + b)`` as in :mod:`derivations.reference.rnn`;
    every input ``x_t`` (``[1, d_in]``) is a leaf of its own.

    Returns
    -------
    dict
        ``loss`` (Var), ``inputs`` (list of Var, ``x_1 .. x_T``), ``params``
        (dict of Var), ``graph`` (Graph).
    """
    rng = np.random.default_rng(seed)
    params = {"W_xh": _leaf(rng, (d_in, d_h), "W_xh", 1 / math.sqrt(d_in)),
              "W_hh": _leaf(rng, (d_h, d_h), "W_hh", 1 / math.sqrt(d_h)),
              "b": _leaf(rng, (d_h,), "b", 0.1),
              "W_out": _leaf(rng, (d_h, n_classes), "W_out", 1 / math.sqrt(d_h)),
              "b_out": _leaf(rng, (n_classes,), "b_out", 0.0)}
    inputs = [_leaf(rng, (1, d_in), f"x{t + 1}") for t in range(T)]
    h = np.zeros((1, d_h))
    for x in inputs:
        h = ops.tanh(ops.matmul(x, params["W_xh"]) + ops.matmul(h, params["W_hh"]) + params["b"])
    loss = ops.cross_entropy(ops.linear(h, params["W_out"], params["b_out"]), np.array([0]))
    return {"loss": loss, "inputs": inputs, "params": params, "graph": Graph(loss, names={**params})}


def lstm_graph(T: int, d_in: int = 8, d_h: int = 16, n_classes: int = 5, forget_bias: float = 0.0,
               seed: int = 0) -> dict:
    """Record an LSTM over ``T`` steps from the engine's elementary ops (gates sliced from one product).

    The cell of :mod:`derivations.reference.lstm`: ``z = [x, h] W + b``;
    ``c' = sigmoid(z_f) * c + sigmoid(z_i) * tanh(z_g)``; ``h' = sigmoid(z_o) * tanh(c')``.
    ``forget_bias`` is added to the forget gate's bias.

    Returns
    -------
    dict
        As :func:`rnn_graph`, plus ``cell_path``: the nodes ``f * c`` that carry
        the cell state from one step to the next (to measure paths without them).
    """
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(4 * d_h) * 0.1
    b[d_h:2 * d_h] += forget_bias
    params = {"W": _leaf(rng, (d_in + d_h, 4 * d_h), "W", 1 / math.sqrt(d_in + d_h)),
              "b": Var(b, requires_grad=True, name="b"),
              "W_out": _leaf(rng, (d_h, n_classes), "W_out", 1 / math.sqrt(d_h)),
              "b_out": _leaf(rng, (n_classes,), "b_out", 0.0)}
    inputs = [_leaf(rng, (1, d_in), f"x{t + 1}") for t in range(T)]
    h, c = np.zeros((1, d_h)), np.zeros((1, d_h))
    cell_path = []
    for x in inputs:
        z = ops.matmul(ops.concat([x, h], axis=-1), params["W"]) + params["b"]
        i, f = ops.sigmoid(z[:, :d_h]), ops.sigmoid(z[:, d_h:2 * d_h])
        g, o = ops.tanh(z[:, 2 * d_h:3 * d_h]), ops.sigmoid(z[:, 3 * d_h:])
        kept = f * c
        if isinstance(kept, Var) and kept.node is not None and isinstance(c, Var):
            cell_path.append(kept.node)
        c = kept + i * g
        h = o * ops.tanh(c)
    loss = ops.cross_entropy(ops.linear(h, params["W_out"], params["b_out"]), np.array([0]))
    return {"loss": loss, "inputs": inputs, "params": params, "graph": Graph(loss, names={**params}),
            "cell_path": cell_path}


def transformer_block_graph(T: int, config: TransformerConfig | None = None, seed: int = 0) -> dict:
    """Record one post-norm block of the reference transformer on ``T`` input vectors, and its classifier.

    Each input position is a leaf ``[1, 1, d_model]``; they are concatenated
    into the block's input ``[1, T, d_model]``; the loss reads the last position,
    as in :mod:`derivations.reference.model`.

    Returns
    -------
    dict
        As :func:`rnn_graph`, plus ``attention``: the attention output Var.
    """
    config = config or TransformerConfig(n_layers=1, seq_len=T)
    rng = np.random.default_rng(seed)
    P = {k: Var(v, requires_grad=True, name=k) for k, v in init_params(config, seed).items() if k != "embed"}
    inputs = [_leaf(rng, (1, 1, config.d_model), f"x{t + 1}") for t in range(T)]
    x = ops.concat(inputs, axis=1)
    a = ops.multi_head_attention(x, P["block0.attn.W_q"], P["block0.attn.W_k"], P["block0.attn.W_v"],
                                 P["block0.attn.W_o"], config.n_heads)
    x = ops.layer_norm(x + a, P["block0.ln1.gamma"], P["block0.ln1.beta"], config.ln_eps)
    f = ops.linear(ops.relu(ops.linear(x, P["block0.ffn.W1"], P["block0.ffn.b1"])), P["block0.ffn.W2"],
                   P["block0.ffn.b2"])
    x = ops.layer_norm(x + f, P["block0.ln2.gamma"], P["block0.ln2.beta"], config.ln_eps)
    loss = ops.cross_entropy(ops.linear(x[:, -1, :], P["W_out"], P["b_out"]), np.array([0]))
    return {"loss": loss, "inputs": inputs, "params": P, "graph": Graph(loss, names=P), "attention": a}


def path_lengths(kind: str, T: int = DEPTH_STEPS) -> dict:
    """Shortest paths in the recorded graph from the loss back to each input position.

    For the RNN and the LSTM every input ``x_t`` is its own leaf. In the
    transformer block all positions enter one tensor, and every op except
    attention acts on each position separately, while the loss reads only the
    last position: so a path from the loss to any other position must cross
    the attention node, and is counted through it.

    Parameters
    ----------
    kind : {"rnn", "lstm", "lstm_hidden", "transformer"}
        ``"lstm_hidden"`` is the LSTM with its cell-state path (the ``f * c``
        nodes) excluded: the way back through the hidden state only.
    T : int
        Number of input positions.

    Returns
    -------
    dict
        ``ops`` and ``matrix_products``: arrays ``[T]``, for position ``t = 1 .. T``,
        the fewest ops, and the fewest weight-matrix products
        (:data:`MATRIX_PRODUCTS`), on a path from the loss to ``x_t``.
    """
    require(kind in ("rnn", "lstm", "lstm_hidden", "transformer"),
            f"kind must be 'rnn', 'lstm', 'lstm_hidden' or 'transformer', got {kind!r}")
    if kind == "rnn":
        built = rnn_graph(T)
    elif kind.startswith("lstm"):
        built = lstm_graph(T)
    else:
        built = transformer_block_graph(T)
    graph, inputs = built["graph"], built["inputs"]
    excluded = {id(node) for node in built.get("cell_path", ())} if kind == "lstm_hidden" else set()

    def weights(count):
        def weight(node):
            return math.inf if id(node) in excluded else count(node)
        return weight

    result = {}
    counts = {"ops": lambda node: 1, "matrix_products": lambda node: MATRIX_PRODUCTS.get(node.op.name, 0)}
    for name, count in counts.items():
        weight = weights(count)
        direct = np.array(graph.distances(inputs, weight), dtype=float)
        if kind == "transformer":
            a = built["attention"]
            to_attention = graph.distances([a], weight)[0]  # from the loss down to the consumers of a
            through = to_attention + np.array(graph.distances(inputs, weight, start=a), dtype=float)
            direct = np.concatenate([through[:-1], [min(direct[-1], through[-1])]])
        result[name] = direct
    return result


def gradient_norms_by_position(T: int = DEPTH_STEPS, d: int = 16, n_classes: int = 5, batch: int = 8,
                               forget_bias: float = 1.0, seed: int = 0) -> dict:
    """``||dL/dx_t||`` for every input position, measured with the reference backward passes.

    - RNN (:func:`~derivations.reference.rnn_forward`): ``W_hh ~ N(0, 1/d)``, inputs ``N(0, 1)``.
    - LSTM (:func:`~derivations.reference.lstm_forward`): ``W ~ N(0, 1/(d_in + d))``,
      forget-gate bias ``forget_bias``.
    - transformer: the reference model (2 post-norm blocks, ``seq_len = T``) at
      its initialisation, random tokens; ``x_t`` is ``E[token_t] + PE_t``.

    The RNN and LSTM read their last state with a linear classifier; all three
    losses are the mean cross-entropy over ``batch`` sequences. Norms are over
    the features and the batch.

    Returns
    -------
    dict
        ``"rnn"``, ``"lstm"``, ``"transformer"``: arrays ``[T]``, position 1 first.
    """
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, n_classes, batch)
    x = rng.standard_normal((T, batch, d))
    W_out = rng.standard_normal((d, n_classes)) / math.sqrt(d)

    def head_gradient(h_last):
        logits, cache_out = linear(h_last, W_out, np.zeros(n_classes))
        _, cache_loss = cross_entropy(logits, targets)
        dh, _, _ = linear_backward(cross_entropy_backward(1.0, cache_loss), cache_out)
        return dh

    W_xh, W_hh = rng.standard_normal((d, d)) / math.sqrt(d), rng.standard_normal((d, d)) / math.sqrt(d)
    hs, cache = rnn_forward(x, np.zeros((batch, d)), W_xh, W_hh, np.zeros(d))
    dhs = np.zeros_like(hs)
    dhs[-1] = head_gradient(hs[-1])
    dx_rnn = rnn_backward(dhs, cache)[0]

    W = rng.standard_normal((2 * d, 4 * d)) / math.sqrt(2 * d)
    b = np.zeros(4 * d)
    b[d:2 * d] = forget_bias
    (hs, _), cache = lstm_forward(x, np.zeros((batch, d)), np.zeros((batch, d)), W, b)
    dhs = np.zeros_like(hs)
    dhs[-1] = head_gradient(hs[-1])
    dx_lstm = lstm_backward(dhs, cache)[0]

    config = TransformerConfig(seq_len=T)
    tokens = rng.integers(0, config.vocab_size, (batch, T))
    _, _, trace = forward_backward(init_params(config, seed), tokens, rng.integers(0, config.vocab_size, batch),
                                   config, record=True)
    dx_transformer = trace["grads"]["embed.out"]  # [batch, T, d_model]

    def norms(g, time_axis):
        return np.sqrt(np.sum(np.moveaxis(g, time_axis, 0).reshape(T, -1) ** 2, axis=1))

    return {"rnn": norms(dx_rnn, 0), "lstm": norms(dx_lstm, 0), "transformer": norms(dx_transformer, 1)}


# ----------------------------------------------------------------------------- masks and positions


def _mha_weights(rng, d):
    return [rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(4)]


def causal_mask_gradients(n: int = 6, d_model: int = 8, n_heads: int = 2, seed: int = 0) -> dict:
    """How much of the loss on output ``i`` reaches input ``j`` through causal multi-head attention.

    For each query position ``i``, the loss ``L_i = <r, O_i>`` (``r`` seeded)
    reads output ``i`` only; :func:`~derivations.reference.multi_head_attention_backward`
    gives ``dL_i/dX``.

    Returns
    -------
    dict
        ``reach``: ``[n, n]`` array, ``reach[i, j] = ||dL_i/dX_j||``;
        ``zero_above_diagonal``: whether every entry with ``j > i`` is exactly 0.0;
        ``smallest_allowed``: the smallest ``reach[i, j]`` with ``j <= i``.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_model))
    weights = _mha_weights(rng, d_model)
    r = rng.standard_normal(d_model)
    causal = np.tril(np.ones((n, n), dtype=bool))
    _, cache = multi_head_attention(X, *weights, n_heads, mask=causal)
    reach = np.zeros((n, n))
    for i in range(n):
        dO = np.zeros((n, d_model))
        dO[i] = r
        dX = multi_head_attention_backward(dO, cache)[0]
        reach[i] = np.sqrt(np.sum(dX**2, axis=1))
    above = np.triu(np.ones((n, n), dtype=bool), 1)
    return {"reach": reach, "zero_above_diagonal": bool(np.all(reach[above] == 0.0)),
            "smallest_allowed": float(reach[~above].min())}


def padding_mask_gradients(lengths=(5, 3, 1), d_model: int = 8, n_heads: int = 2, seed: int = 0) -> dict:
    """A padded batch through multi-head attention with a padding mask, against each sequence alone.

    Sequences of the given lengths are padded to the longest; keys at padding
    positions are masked, and the loss sums ``<r, O_i>`` over real positions
    only. The same sequences are also run one at a time, unpadded.

    Returns
    -------
    dict
        ``padding_gradient_max``: the largest ``|dL/dX|`` at a padding position
        (0.0 when padding gets exactly no gradient); ``output_difference`` and
        ``gradient_difference``: largest differences at real positions between
        the padded batch and the sequences run alone.
    """
    rng = np.random.default_rng(seed)
    n = max(lengths)
    X = rng.standard_normal((len(lengths), n, d_model))
    weights = _mha_weights(rng, d_model)
    r = rng.standard_normal(d_model)
    real = np.arange(n)[None, :] < np.array(lengths)[:, None]  # [batch, n]
    keys = real[:, None, :]  # [batch, 1 query axis, n keys]: no query attends to a padding key
    O, cache = multi_head_attention(X, *weights, n_heads, mask=keys)
    dX = multi_head_attention_backward(real[..., None] * r, cache)[0]
    output_difference = gradient_difference = 0.0
    for b, length in enumerate(lengths):
        O_alone, cache_alone = multi_head_attention(X[b, :length], *weights, n_heads)
        dX_alone = multi_head_attention_backward(np.broadcast_to(r, (length, d_model)), cache_alone)[0]
        output_difference = max(output_difference, float(np.max(np.abs(O[b, :length] - O_alone))))
        gradient_difference = max(gradient_difference, float(np.max(np.abs(dX[b, :length] - dX_alone))))
    return {"padding_gradient_max": float(np.max(np.abs(dX[~real]), initial=0.0)),
            "output_difference": output_difference, "gradient_difference": gradient_difference}


def causal_versus_deleting(T: int = 16, d_model: int = 16, n_heads: int = 2, seed: int = 0) -> dict:
    """One pass with a causal mask against ``T`` passes on prefixes (the future tokens deleted).

    A decoder predicts a token at every position of a sequence. With the causal
    mask, one call of :func:`~derivations.reference.multi_head_attention` on the
    whole sequence gives every position's output; deleting the future instead
    takes one call per prefix ``x_1 .. x_i``, keeping its last output.

    Returns
    -------
    dict
        ``max_difference`` between the two ways' outputs; ``calls`` (1 and ``T``);
        ``rows_projected`` (rows that went through the input maps); ``weights_computed``
        (attention weights computed, the sizes of the ``A`` in the caches) and
        ``weights_masked`` (those the mask set to zero), each for ``"masked"`` and ``"deleted"``.
    """
    rng = np.random.default_rng(seed)
    X = Var(rng.standard_normal((T, d_model)), requires_grad=True)  # recorded, so the saved A can be read by name
    weights = _mha_weights(rng, d_model)
    O = ops.multi_head_attention(X, *weights, n_heads, mask=np.tril(np.ones((T, T), dtype=bool)))
    A = O.node.saved("attention.A")
    outputs, computed, rows = [], 0, 0
    for i in range(1, T + 1):
        O_prefix = ops.multi_head_attention(X[:i], *weights, n_heads)
        outputs.append(O_prefix.value[-1])
        computed += O_prefix.node.saved("attention.A").size
        rows += i
    return {"max_difference": float(np.max(np.abs(O.value - np.stack(outputs)))),
            "calls": {"masked": 1, "deleted": T},
            "rows_projected": {"masked": T, "deleted": rows},
            "weights_computed": {"masked": int(A.size), "deleted": int(computed)},
            "weights_masked": {"masked": int(np.sum(A == 0.0)), "deleted": 0}}


def sinusoidal_table(positions=(0, 1, 2, 10), d_model: int = 8) -> np.ndarray:
    """Rows of the reference sinusoidal encoding, ``[len(positions), d_model]``."""
    positions = list(positions)
    return positional_encoding(max(positions) + 1, d_model)[positions]


def position_gradients(config: TransformerConfig | None = None, batch: int = 4, seed: int = 0) -> dict:
    """Sinusoidal encodings (a constant) against learned position embeddings (a parameter), in the engine.

    The reference model adds the constant ``PE[:T]``; the engine records it as a
    constant, so no gradient exists for it. Replacing it by a learned table
    ``E_pos`` initialised to the same values (the forward pass unchanged), the
    engine gives ``E_pos`` a gradient row per position. Because ``x = E[tokens] + E_pos``,
    that row is the gradient reaching position ``t`` summed over the batch: it
    must equal the reference's own recorded stage gradient ``embed.out``.

    Returns
    -------
    dict
        ``constant_gradient`` (None: what the engine gives the sinusoidal table
        when asked), ``learned_gradient`` ``[T, d_model]``, ``row_norms`` ``[T]``,
        ``difference_from_reference`` (largest entry of the difference).
    """
    config = config or TransformerConfig()
    rng = np.random.default_rng(seed)
    params = init_params(config, seed)
    T = config.seq_len
    tokens = rng.integers(0, config.vocab_size, (batch, T))
    targets = rng.integers(0, config.vocab_size, batch)
    pe = positional_encoding(T, config.d_model)

    variables = {k: Var(v, requires_grad=True, name=k) for k, v in params.items()}
    constant = Var(pe, name="PE")  # requires no gradient: a buffer, not a parameter
    learned = Var(pe.copy(), requires_grad=True, name="E_pos")
    loss_constant = transformer_loss(variables, tokens, targets, config, positions=constant)
    loss_learned = transformer_loss(variables, tokens, targets, config, positions=learned)
    (constant_gradient,) = grad(loss_constant, [constant])
    (learned_gradient,) = grad(loss_learned, [learned])
    _, _, trace = forward_backward(params, tokens, targets, config, record=True)
    reference = trace["grads"]["embed.out"].sum(axis=0)
    return {"constant_gradient": constant_gradient, "learned_gradient": learned_gradient,
            "row_norms": np.sqrt(np.sum(learned_gradient**2, axis=1)),
            "difference_from_reference": float(np.max(np.abs(learned_gradient - reference)))}


# ----------------------------------------------------------------------------- memory of attention


def _distinct_bytes(arrays) -> int:
    owners = {}
    for array in arrays:
        while isinstance(array.base, np.ndarray):
            array = array.base
        owners[id(array)] = array
    return int(sum(a.nbytes for a in owners.values()))


@shared  # the page and the figure run in separate processes: computed once, read by both
def attention_saved_bytes(lengths=MEMORY_LENGTHS, d_head: int = 16, n_heads: int = 4, batch: int = 1,
                          seed: int = 0) -> dict:
    """Bytes that attention keeps for its backward pass as the sequence grows, both ways.

    Runs :func:`~derivations.reference.attention` and
    :func:`~derivations.reference.memory_efficient_attention` on seeded
    ``[batch, n_heads, n, d_head]`` inputs and adds up the distinct arrays in
    their caches.

    Returns
    -------
    dict
        ``lengths``, ``standard`` (Q, K, V, A), ``weights`` (A alone),
        ``efficient`` (Q, K, V, O, lse): integer arrays of bytes, read-only (:func:`~.memo.shared`).
    """
    rng = np.random.default_rng(seed)
    standard, weights, efficient = [], [], []
    for n in lengths:
        Q, K, V = (rng.standard_normal((batch, n_heads, n, d_head)) for _ in range(3))
        _, cache = attention(Q, K, V)
        _, cache_efficient = memory_efficient_attention(Q, K, V)
        standard.append(_distinct_bytes(cache))
        weights.append(cache[3].nbytes)
        efficient.append(_distinct_bytes(a for a in cache_efficient if isinstance(a, np.ndarray)))
    return {"lengths": np.array(lengths), "standard": np.array(standard), "weights": np.array(weights),
            "efficient": np.array(efficient)}


def quadratic_fit(lengths, values) -> tuple[float, float, float]:
    """``(a, b, c)`` of the least-squares fit ``values ~ a n^2 + b n + c``: isolates the quadratic term."""
    a, b, c = np.polyfit(np.asarray(lengths, dtype=float), np.asarray(values, dtype=float), 2)
    return float(a), float(b), float(c)


# ----------------------------------------------------------------------------- the recorded graph, summarised


def graph_summary(graph: Graph, visited) -> list[dict]:
    """The nodes of a recorded graph grouped by op, in the order each op first appears.

    Parameters
    ----------
    graph : Graph
        Read before the saved tensors are freed (record, or run the backward
        pass with ``retain_graph=True``).
    visited : list of Node
        The nodes in the order a backward pass visited them (what :func:`~derivations.autodiff.backward`
        returns).

    Returns
    -------
    list of dict
        One per op: ``op``; ``nodes`` (indices in creation order); ``visits``
        (the 1-based position of each of those nodes in the backward order);
        ``new`` (``(name, shape)`` of the arrays each node of the first kind computes
        and saves, its inputs excluded); ``new_bytes`` (those arrays' bytes, summed
        over all the op's nodes); ``kept`` (names of the inputs a node keeps by
        reference, not copied).
    """
    order = {graph.index(node): k + 1 for k, node in enumerate(visited)}
    rows: dict[str, dict] = {}
    for k, node in enumerate(graph.nodes):
        saved = node.saved_tensors()
        row = rows.setdefault(node.op.name, {
            "op": node.op.name, "nodes": [], "visits": [],
            "new": [(s.name.split(".")[-1], s.shape) for s in saved if not s.is_input],
            "new_bytes": 0,
            "kept": list(dict.fromkeys(s.name.split(".")[-1] for s in saved if s.is_input)),
        })
        row["nodes"].append(k)
        row["visits"].append(order[k])
        row["new_bytes"] += sum(s.nbytes for s in saved if not s.is_input)
    return list(rows.values())


# ----------------------------------------------------------------------------- a common mistake: the scale forgotten


def forgotten_scale(d_k: int = 256, n: int = 8, d_v: int = 4, seeds=range(20), saturated: float = 0.99) -> dict:
    """Attention with and without the ``1/sqrt(d_k)`` of its scores, over seeded draws.

    Per seed: ``Q``, ``K`` ``[n, d_k]``, ``V`` and an upstream gradient ``dO``
    ``[n, d_v]``, all ``N(0, 1)``. The forgotten scale is the reference
    :func:`~derivations.reference.attention` run on ``sqrt(d_k) Q`` (its scores are
    then ``Q K^T``); gradients with respect to the original ``Q`` and ``K`` come
    from :func:`~derivations.reference.attention_backward` (``dQ`` scaled back by
    the chain rule through ``sqrt(d_k) Q``).

    Returns
    -------
    dict
        Arrays over seeds: ``largest_weight`` and ``largest_weight_unscaled`` (the
        largest weight of a row, averaged over rows), ``saturated_rows`` (fraction of
        the unscaled rows whose largest weight exceeds ``saturated``), ``dK_ratio``
        and ``dQ_ratio`` (Frobenius norms, unscaled over scaled). Arrays over all
        rows of all seeds: ``row_largest`` (the unscaled row's largest weight) and
        ``row_ratio`` (``||dQ_i||``, unscaled over scaled).
    """
    require(d_k >= 1 and n >= 1 and d_v >= 1, f"d_k = {d_k}, n = {n}, d_v = {d_v} must be >= 1")
    seeds = list(seeds)
    require(len(seeds) >= 1, "at least one seed")
    out = {key: [] for key in ("largest_weight", "largest_weight_unscaled", "saturated_rows", "dK_ratio",
                               "dQ_ratio", "row_largest", "row_ratio")}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        Q, K = rng.standard_normal((n, d_k)), rng.standard_normal((n, d_k))
        V, dO = rng.standard_normal((n, d_v)), rng.standard_normal((n, d_v))
        runs = []
        for factor in (1.0, math.sqrt(d_k)):
            _, cache = attention(factor * Q, K, V)
            dq, dK, _ = attention_backward(dO, cache)
            runs.append((cache[3].max(axis=-1), factor * dq, dK))  # d/dQ of f(c Q) is c f'(c Q)
        (largest, dQ, dK), (largest_unscaled, dQ_unscaled, dK_unscaled) = runs
        out["largest_weight"].append(largest.mean())
        out["largest_weight_unscaled"].append(largest_unscaled.mean())
        out["saturated_rows"].append(np.mean(largest_unscaled > saturated))
        out["dK_ratio"].append(np.linalg.norm(dK_unscaled) / np.linalg.norm(dK))
        out["dQ_ratio"].append(np.linalg.norm(dQ_unscaled) / np.linalg.norm(dQ))
        out["row_largest"].extend(largest_unscaled)
        out["row_ratio"].extend(np.linalg.norm(dQ_unscaled, axis=1) / np.linalg.norm(dQ, axis=1))
    return {key: np.array(value, dtype=float) for key, value in out.items()}
