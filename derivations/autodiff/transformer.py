"""The whole transformer of :mod:`derivations.reference.model`, written once, forward only.

:func:`transformer_loss` is the model's forward pass expressed with the
engine's ops; nothing here computes a derivative. The engine records it and
its backward pass gives every parameter's gradient, which must equal the
hand-written backward pass of :func:`derivations.reference.model.loss_and_grads`.
"""

from __future__ import annotations

import numpy as np

from ..reference._checks import require
from ..reference.layers import positional_encoding
from ..reference.model import TransformerConfig, param_shapes
from . import ops
from .engine import Graph, Var, backward

__all__ = ["transformer_loss", "record_transformer", "loss_and_grads"]


def _activation(x, config):
    if config.activation == "relu":
        return ops.relu(x)
    return ops.gelu(x, approximate="tanh" if config.activation == "gelu_tanh" else "none")


def transformer_loss(params: dict, tokens, targets, config: TransformerConfig, positions=None) -> Var:
    """Mean cross-entropy of the final position's prediction, as a recorded Var.

    Parameters
    ----------
    params : dict of str to Var
        Names and shapes as :func:`~derivations.reference.model.param_shapes` lists them.
    tokens : array_like of int, shape ``[batch, T]``
    targets : array_like of int, shape ``[batch]``
    config : TransformerConfig
    positions : Var or array_like, shape ``[seq_len, d_model]``, optional
        What is added to the token embeddings at each position, for a config
        with ``positions="sinusoidal"``. By default the model's fixed
        sinusoidal encoding, as a constant; a Var that requires a gradient
        makes it a learned position embedding. With ``positions="learned"``
        the table is the parameter ``params["pos_embed"]`` and this argument
        must be left out.

    Returns
    -------
    Var
        The loss, a single number.

    Raises
    ------
    ValueError
        If the parameter names or shapes do not match the config, the tokens
        do not fit it, or ``positions`` is given for a learned table.
    """
    shapes = param_shapes(config)
    require(isinstance(params, dict) and set(params) == set(shapes),
            f"params must have exactly the names of param_shapes(config); missing "
            f"{sorted(set(shapes) - set(params or {}))}, unexpected {sorted(set(params or {}) - set(shapes))}")
    for name, shape in shapes.items():
        require(params[name].shape == shape,
                f"params[{name!r}] has shape {params[name].shape}, the config needs {shape}")
    tokens = np.asarray(tokens)
    require(tokens.ndim == 2 and 1 <= tokens.shape[1] <= config.seq_len,
            f"tokens {tokens.shape} must be [batch, T] with 1 <= T <= seq_len = {config.seq_len}")
    if config.positions == "learned":  # a parameter like the others: the graph gives it a gradient
        require(positions is None, "positions must be left out when config.positions is 'learned': "
                                   "the table is params['pos_embed']")
        positions = params["pos_embed"]
    elif positions is None:  # the sinusoidal encoding, a constant: the graph gives it no gradient
        positions = positional_encoding(config.seq_len, config.d_model)
    require(positions.shape == (config.seq_len, config.d_model),
            f"positions {positions.shape} must be [seq_len, d_model] = {(config.seq_len, config.d_model)}")
    P = params
    x = ops.embedding(tokens, P["embed"]) + positions[:tokens.shape[1]]
    for l in range(config.n_layers):
        p = f"block{l}."

        def attn(h):
            return ops.multi_head_attention(h, P[p + "attn.W_q"], P[p + "attn.W_k"], P[p + "attn.W_v"],
                                            P[p + "attn.W_o"], config.n_heads)

        def ffn(h):
            hidden = _activation(ops.linear(h, P[p + "ffn.W1"], P[p + "ffn.b1"]), config)
            return ops.linear(hidden, P[p + "ffn.W2"], P[p + "ffn.b2"])

        def ln(h, which):
            return ops.layer_norm(h, P[p + which + ".gamma"], P[p + which + ".beta"], config.ln_eps)

        if config.norm == "post":
            x = ln(x + attn(x), "ln1")
            x = ln(x + ffn(x), "ln2")
        else:
            x = x + attn(ln(x, "ln1"))
            x = x + ffn(ln(x, "ln2"))
    if config.norm == "pre":
        x = ops.layer_norm(x, P["ln_final.gamma"], P["ln_final.beta"], config.ln_eps)
    logits = ops.linear(x[:, -1, :], P["W_out"], P["b_out"])
    return ops.cross_entropy(logits, targets)


def record_transformer(params, tokens, targets, config: TransformerConfig):
    """Record the loss for NumPy parameters: ``(loss Var, parameter Vars, Graph)``.

    The parameters become leaves that require a gradient, named as in the dict;
    the graph is read before any backward pass, so every saved tensor is there.
    """
    variables = {name: Var(value, requires_grad=True, name=name) for name, value in params.items()}
    loss = transformer_loss(variables, tokens, targets, config)
    return loss, variables, Graph(loss, names=variables)


def loss_and_grads(params, tokens, targets, config: TransformerConfig):
    """The engine's answer to :func:`derivations.reference.model.loss_and_grads`.

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
        Every parameter's gradient, in the order of ``params``.
    """
    variables = {name: Var(value, requires_grad=True, name=name) for name, value in params.items()}
    loss = transformer_loss(variables, tokens, targets, config)
    backward(loss)
    return float(loss.value), {name: var.grad for name, var in variables.items()}
