"""The whole transformer: forward and backward of a small encoder that reads its answer at the end.

The model of the chapter "The whole transformer, backward", built only from the
reference operations of :mod:`.layers` and :mod:`.multi_head`::

    x = E[tokens] + P[:T]                   token embedding + positions (see below)
    repeat n_layers times:
        post-norm (default)                 pre-norm
        x = LN1(x + MHA(x))                 x = x + MHA(LN1(x))
        x = LN2(x + FFN(x))                 x = x + FFN(LN2(x))
                                            x = LN_final(x)        (pre-norm only)
    h = x[:, -1]                            the final position's representation
    logits = h W_out + b_out
    L = mean cross-entropy(logits, targets)

``MHA`` is :func:`~.multi_head.multi_head_attention` (no biases, no mask: every
position sees every position); ``FFN(x) = act(x W1 + b1) W2 + b2`` with
``act`` ReLU, exact GELU or tanh GELU. Pre-norm needs the final LayerNorm
because its residual stream is never normalised otherwise: the sum of all
branches would reach the output head at whatever scale it has grown to.

``P`` is the fixed sinusoidal encoding (``positions="sinusoidal"``, the
default: a constant, no parameter, no gradient) or a learned table ``pos_embed``
(``positions="learned"``: a parameter like the others). A learned row ``t`` is
added at position ``t`` of every sequence of the batch, so its gradient is the
gradient reaching the sum ``x`` at position ``t``, summed over the batch; rows
``t >= T`` of a shorter batch take no part and get exactly zero.

Parameters are a flat dict of float64 arrays with stable names, in this order
(``param_shapes`` lists them)::

    embed                      [vocab, d_model]
    pos_embed                  [seq_len, d_model]  (positions="learned" only)
    block{l}.attn.W_q/W_k/W_v/W_o  [d_model, d_model]
    block{l}.ln1.gamma/beta    [d_model]
    block{l}.ffn.W1            [d_model, d_ff]     block{l}.ffn.b1  [d_ff]
    block{l}.ffn.W2            [d_ff, d_model]     block{l}.ffn.b2  [d_model]
    block{l}.ln2.gamma/beta    [d_model]
    ln_final.gamma/beta        [d_model]           (pre-norm only)
    W_out                      [d_model, vocab]    b_out            [vocab]

The pair is :func:`forward` ``(params, tokens, config) -> (logits, cache)`` and
:func:`backward` ``(dlogits, cache) -> grads``; :func:`loss_and_grads` and
:func:`forward_backward` compose them with the loss. With ``record=True`` the
pair also keeps every intermediate activation and its gradient under a stage
name (see :data:`STAGES_DOC`), which is what the chapter prints.

Nothing non-finite is hidden: a NaN or infinite parameter reaches the loss as
NaN (or the loss is ``+inf``) through the rules of the operations it passes
(see their "Notes"); no step replaces it by a finite number.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._checks import as_float64, as_int, as_real, require
from .layers import (
    cross_entropy,
    cross_entropy_backward,
    embedding,
    embedding_backward,
    gelu,
    gelu_backward,
    layer_norm,
    layer_norm_backward,
    LayerNormCache,
    LinearCache,
    linear,
    linear_backward,
    positional_encoding,
    relu,
    relu_backward,
)
from .multi_head import MultiHeadCache, multi_head_attention, multi_head_attention_backward

__all__ = [
    "FFNCache",
    "BlockCache",
    "TransformerConfig",
    "param_shapes",
    "init_params",
    "count_params",
    "forward",
    "backward",
    "forward_backward",
    "loss_and_grads",
    "model_loss",
    "predict",
    "final_logits",
    "stage_names",
    "cache_nbytes",
    "matmul_flops",
]

NORMS = ("post", "pre")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
POSITIONS = ("sinusoidal", "learned")

STAGES_DOC = """\
Stage names of a recorded pass, in forward order (``l`` the block index):

- ``embed.out``: ``E[tokens]``, ``[B, T, d_model]``.
- ``block{l}.in``: the block's input (for block 0: ``E[tokens] + P[:T]``, ``P`` the
  sinusoidal encoding or the learned ``pos_embed``).
- post-norm: ``block{l}.attn.out``, ``block{l}.add1`` (``in + attn.out``),
  ``block{l}.ln1.out``, ``block{l}.ffn.pre`` (``ln1.out W1 + b1``),
  ``block{l}.ffn.act``, ``block{l}.ffn.out``, ``block{l}.add2``, ``block{l}.out`` (``LN2(add2)``).
- pre-norm: ``block{l}.ln1.out``, ``block{l}.attn.out``, ``block{l}.add1``,
  ``block{l}.ln2.out``, ``block{l}.ffn.pre``, ``block{l}.ffn.act``, ``block{l}.ffn.out``,
  ``block{l}.out`` (``add1 + ffn.out``), then ``ln_final.out``.
- ``final``: the last position's representation ``[B, d_model]``; ``logits`` ``[B, vocab]``.
"""


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and variants of the model; the defaults are the chapter's model.

    Attributes
    ----------
    vocab_size : int
        Number of token ids (20 for the digits task of :mod:`.task`).
    d_model : int
        Width of the residual stream.
    n_heads : int
        Attention heads; must divide ``d_model``.
    d_ff : int
        Width of the FFN's hidden layer.
    n_layers : int
        Number of blocks, ``>= 1``.
    seq_len : int
        Longest input; the positional encoding (or table) has this many rows.
    norm : {"post", "pre"}
        Where the LayerNorms sit (module docstring).
    activation : {"relu", "gelu", "gelu_tanh"}
        The FFN's non-linearity.
    ln_eps : float
        LayerNorm's variance floor, positive and finite (PyTorch's default).
    positions : {"sinusoidal", "learned"}
        What is added to the token embeddings: the fixed sinusoidal encoding
        (a constant) or a learned ``[seq_len, d_model]`` parameter ``pos_embed``.

    Examples
    --------
    >>> TransformerConfig().d_model, TransformerConfig(norm="pre").norm
    (64, 'pre')
    >>> TransformerConfig(n_heads=5)
    Traceback (most recent call last):
    ...
    ValueError: n_heads = 5 must be positive and divide d_model = 64
    >>> TransformerConfig(positions="rotary")
    Traceback (most recent call last):
    ...
    ValueError: positions must be one of ('sinusoidal', 'learned'), got 'rotary'
    """

    vocab_size: int = 20
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    seq_len: int = 8
    norm: str = "post"
    activation: str = "relu"
    ln_eps: float = 1e-5
    positions: str = "sinusoidal"

    def __post_init__(self):
        for field in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "seq_len"):
            as_int(getattr(self, field), field, minimum=1)
        require(self.d_model % self.n_heads == 0,
                f"n_heads = {self.n_heads} must be positive and divide d_model = {self.d_model}")
        require(isinstance(self.norm, str) and self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}")
        require(isinstance(self.activation, str) and self.activation in ACTIVATIONS,
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        as_real(self.ln_eps, "ln_eps", low=0.0, low_open=True)
        require(isinstance(self.positions, str) and self.positions in POSITIONS,
                f"positions must be one of {POSITIONS}, got {self.positions!r}")

    def as_dict(self) -> dict:
        """The fields as a plain dict (for hashing and storing)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- parameters


def param_shapes(config: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in the canonical order.

    Examples
    --------
    >>> shapes = param_shapes(TransformerConfig(n_layers=1))
    >>> list(shapes)[:3], shapes["block0.ffn.W1"], shapes["W_out"]
    (['embed', 'block0.attn.W_q', 'block0.attn.W_k'], (64, 256), (64, 20))
    >>> list(param_shapes(TransformerConfig(positions="learned", seq_len=5)).items())[:2]
    [('embed', (20, 64)), ('pos_embed', (5, 64))]
    """
    d, V, F = config.d_model, config.vocab_size, config.d_ff
    shapes = {"embed": (V, d)}
    if config.positions == "learned":
        shapes["pos_embed"] = (config.seq_len, d)
    for l in range(config.n_layers):
        p = f"block{l}."
        for W in ("W_q", "W_k", "W_v", "W_o"):
            shapes[p + "attn." + W] = (d, d)
        shapes[p + "ln1.gamma"] = shapes[p + "ln1.beta"] = (d,)
        shapes[p + "ffn.W1"], shapes[p + "ffn.b1"] = (d, F), (F,)
        shapes[p + "ffn.W2"], shapes[p + "ffn.b2"] = (F, d), (d,)
        shapes[p + "ln2.gamma"] = shapes[p + "ln2.beta"] = (d,)
    if config.norm == "pre":
        shapes["ln_final.gamma"] = shapes["ln_final.beta"] = (d,)
    shapes["W_out"], shapes["b_out"] = (d, V), (V,)
    return shapes


def init_params(config: TransformerConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded initial parameters.

    The scheme: every weight matrix ``[d_in, d_out]`` (attention maps, FFN,
    output head) is drawn from ``N(0, 1/d_in)``, so a map keeps the variance
    of unit-variance inputs (LeCun's scaling); the embedding is ``N(0, 1)``,
    the scale of the positional encoding it is added to; biases and LayerNorm
    shifts are 0, LayerNorm scales 1. A learned position table ``pos_embed``
    is ``N(0, 1/2)``: every row of the sinusoidal encoding has mean square
    exactly 1/2 (each pair of columns is a sine and a cosine of one angle, and
    ``sin^2 + cos^2 = 1``), so the learned table starts at the scale of the
    encoding it replaces and the sum reaching the first block keeps its scale.
    Draws come from ``np.random.default_rng(seed)`` in :func:`param_shapes`
    order (so a learned table, drawn second, changes the draws of the
    parameters after it).

    Examples
    --------
    >>> params = init_params(TransformerConfig())
    >>> float(params["block0.ln1.gamma"].min()), float(params["b_out"].max())
    (1.0, 0.0)
    >>> bool(np.array_equal(init_params(TransformerConfig())["embed"], params["embed"]))
    True
    """
    rng = np.random.default_rng(as_int(seed, "seed", minimum=0))
    params = {}
    for name, shape in param_shapes(config).items():
        leaf = name.rsplit(".", 1)[-1]
        if name == "embed":
            params[name] = rng.standard_normal(shape)
        elif name == "pos_embed":
            params[name] = rng.standard_normal(shape) * np.sqrt(0.5)
        elif len(shape) == 2:
            params[name] = rng.standard_normal(shape) / np.sqrt(shape[0])
        elif leaf == "gamma":
            params[name] = np.ones(shape)
        else:  # biases and LayerNorm shifts
            params[name] = np.zeros(shape)
    return params


def count_params(params) -> int:
    """Total number of scalars in a parameter (or gradient) dict.

    Examples
    --------
    >>> count_params({"a": np.zeros((2, 3)), "b": np.zeros(4)})
    10
    """
    return int(sum(np.asarray(p).size for p in params.values()))


def _check_params(params, config):
    require(isinstance(params, dict), lambda: f"params must be a dict of arrays, got {type(params).__name__}")
    shapes = param_shapes(config)
    missing, extra = [k for k in shapes if k not in params], [k for k in params if k not in shapes]
    require(not missing and not extra,
            lambda: f"params do not match the config: missing {missing}, unexpected {extra}")
    checked = {}
    for name, shape in shapes.items():
        p = as_float64(params[name], f"params[{name!r}]")
        require(p.shape == shape, lambda: f"params[{name!r}] has shape {p.shape}, the config needs {shape}")
        checked[name] = p
    return checked


def _check_tokens(tokens, config):
    tokens = np.asarray(tokens)
    require(tokens.ndim == 2 and tokens.size > 0,
            f"tokens {tokens.shape} must be a non-empty [batch, seq_len] array (one sequence: tokens[None])")
    require(np.issubdtype(tokens.dtype, np.integer),
            f"tokens {tokens.shape} must be integer token ids, got dtype {tokens.dtype}")
    require(tokens.shape[1] <= config.seq_len,
            f"tokens {tokens.shape} are longer than seq_len = {config.seq_len}")
    bad = (tokens < 0) | (tokens >= config.vocab_size)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"tokens {tokens.shape}: id {int(tokens[where])} at {where} is outside "
                         f"[0, {config.vocab_size}) (vocab_size)")
    return tokens


def _check_targets(targets, batch, config):
    targets = np.asarray(targets)
    require(targets.shape == (batch,), f"targets {targets.shape} must have shape ({batch},), one per sequence")
    require(np.issubdtype(targets.dtype, np.integer), f"targets must be integer token ids, got dtype {targets.dtype}")
    require(bool(np.all((targets >= 0) & (targets < config.vocab_size))),
            f"targets must lie in [0, {config.vocab_size}) (vocab_size); got min {targets.min()}, max {targets.max()}")
    return targets


# ----------------------------------------------------------------------------- one block


class FFNCache(NamedTuple):
    """The caches of the FFN's three steps ``act(x W1 + b1) W2 + b2``."""

    linear1: LinearCache
    activation: tuple  # ReluCache or GeluCache, by config.activation
    linear2: LinearCache


class BlockCache(NamedTuple):
    """Everything the backward pass of block ``layer`` needs."""

    layer: int
    attn: MultiHeadCache
    ln1: LayerNormCache
    ffn: FFNCache
    ln2: LayerNormCache


def _activation(z, config):
    if config.activation == "relu":
        return relu(z)
    return gelu(z, approximate="tanh" if config.activation == "gelu_tanh" else "none")


def _activation_backward(da, cache, config):
    return relu_backward(da, cache) if config.activation == "relu" else gelu_backward(da, cache)


def _ffn(x, params, p, config):
    z, cache1 = linear(x, params[p + "ffn.W1"], params[p + "ffn.b1"])
    a, cache_act = _activation(z, config)
    out, cache2 = linear(a, params[p + "ffn.W2"], params[p + "ffn.b2"])
    return out, FFNCache(cache1, cache_act, cache2), {"ffn.pre": z, "ffn.act": a, "ffn.out": out}


def _ffn_backward(dout, cache, p, config, grads, stage_grads):
    cache1, cache_act, cache2 = cache
    stage_grads["ffn.out"] = dout
    da, grads[p + "ffn.W2"], grads[p + "ffn.b2"] = linear_backward(dout, cache2)
    stage_grads["ffn.act"] = da
    dz = _activation_backward(da, cache_act, config)
    stage_grads["ffn.pre"] = dz
    dx, grads[p + "ffn.W1"], grads[p + "ffn.b1"] = linear_backward(dz, cache1)
    return dx


def _attn(x, params, p, config):
    out, cache = multi_head_attention(x, params[p + "attn.W_q"], params[p + "attn.W_k"], params[p + "attn.W_v"],
                                      params[p + "attn.W_o"], config.n_heads)
    return out, cache


def _attn_backward(dout, cache, p, grads):
    dx, *dWs = multi_head_attention_backward(dout, cache)
    for W, dW in zip(("W_q", "W_k", "W_v", "W_o"), dWs):
        grads[p + "attn." + W] = dW
    return dx


def _ln(x, params, name, config):
    return layer_norm(x, params[name + ".gamma"], params[name + ".beta"], config.ln_eps)


def _ln_backward(dy, cache, name, grads):
    dx, grads[name + ".gamma"], grads[name + ".beta"] = layer_norm_backward(dy, cache)
    return dx


def _block_forward(x, params, l, config):
    """One block; returns ``(out, cache, activations)`` with activation names relative to the block."""
    p = f"block{l}."
    acts = {"in": x}
    if config.norm == "post":
        a, cache_attn = _attn(x, params, p, config)
        r1 = x + a
        x1, cache_ln1 = _ln(r1, params, p + "ln1", config)
        f, cache_ffn, ffn_acts = _ffn(x1, params, p, config)
        r2 = x1 + f
        out, cache_ln2 = _ln(r2, params, p + "ln2", config)
        acts.update({"attn.out": a, "add1": r1, "ln1.out": x1, **ffn_acts, "add2": r2, "out": out})
    else:
        n1, cache_ln1 = _ln(x, params, p + "ln1", config)
        a, cache_attn = _attn(n1, params, p, config)
        x1 = x + a
        n2, cache_ln2 = _ln(x1, params, p + "ln2", config)
        f, cache_ffn, ffn_acts = _ffn(n2, params, p, config)
        out = x1 + f
        acts.update({"ln1.out": n1, "attn.out": a, "add1": x1, "ln2.out": n2, **ffn_acts, "out": out})
    return out, BlockCache(l, cache_attn, cache_ln1, cache_ffn, cache_ln2), acts


def _block_backward(dout, cache, config, grads):
    """Backward through one block; returns ``(dx, stage gradients relative to the block)``."""
    l, cache_attn, cache_ln1, cache_ffn, cache_ln2 = cache
    p = f"block{l}."
    g = {"out": dout}
    if config.norm == "post":
        dr2 = _ln_backward(dout, cache_ln2, p + "ln2", grads)
        g["add2"] = dr2
        # x1 feeds both the FFN and the residual sum: its gradient is the sum of both paths.
        dx1 = dr2 + _ffn_backward(dr2, cache_ffn, p, config, grads, g)
        g["ln1.out"] = dx1
        dr1 = _ln_backward(dx1, cache_ln1, p + "ln1", grads)
        g["add1"] = g["attn.out"] = dr1
        dx = dr1 + _attn_backward(dr1, cache_attn, p, grads)
    else:
        dn2 = _ffn_backward(dout, cache_ffn, p, config, grads, g)
        g["ln2.out"] = dn2
        dx1 = dout + _ln_backward(dn2, cache_ln2, p + "ln2", grads)
        g["add1"] = g["attn.out"] = dx1
        dn1 = _attn_backward(dx1, cache_attn, p, grads)
        g["ln1.out"] = dn1
        dx = dx1 + _ln_backward(dn1, cache_ln1, p + "ln1", grads)
    g["in"] = dx
    return dx, g


# ----------------------------------------------------------------------------- the model


def _embed(params, tokens, config):
    """``(E[tokens], E[tokens] + P[:T], embedding cache)``: what enters the first block."""
    T = tokens.shape[1]
    e, cache_embed = embedding(tokens, params["embed"])
    if config.positions == "learned":
        x = e + params["pos_embed"][:T]
    else:
        x = e + positional_encoding(config.seq_len, config.d_model)[:T]
    return e, x, cache_embed


def forward(params, tokens, config: TransformerConfig, record: bool = False):
    """Logits of the final position for a batch of token sequences.

    Parameters
    ----------
    params : dict of str to array_like
        Names and shapes as in :func:`param_shapes`.
    tokens : array_like of int, shape ``[batch, T]``
        ``1 <= T <= config.seq_len``, ids in ``[0, vocab_size)``.
    config : TransformerConfig
    record : bool
        Also keep every intermediate activation (see :data:`STAGES_DOC`).

    Returns
    -------
    logits : ndarray, shape ``[batch, vocab_size]``
    cache : dict
        Everything :func:`backward` needs (``cache["blocks"]`` holds one
        :class:`BlockCache` per block); with ``record`` also
        ``cache["activations"]``, ``{stage: array}`` in forward order, and
        ``cache["attention"]``, one ``[batch, n_heads, T, T]`` weight array per block.

    Raises
    ------
    ValueError
        If params do not match the config (names, shapes) or tokens are not
        integer ids of shape ``[batch, T]`` inside the vocabulary.
    """
    require(isinstance(config, TransformerConfig), f"config must be a TransformerConfig, got {type(config).__name__}")
    require(isinstance(record, bool), f"record must be True or False, got {record!r}")
    params = _check_params(params, config)
    tokens = _check_tokens(tokens, config)
    e, x, cache_embed = _embed(params, tokens, config)
    acts = {"embed.out": e}
    block_caches = []
    for l in range(config.n_layers):
        x, cache, block_acts = _block_forward(x, params, l, config)
        block_caches.append(cache)
        acts.update({f"block{l}.{k}": v for k, v in block_acts.items()})
    cache_final_ln = None
    if config.norm == "pre":
        x, cache_final_ln = _ln(x, params, "ln_final", config)
        acts["ln_final.out"] = x
    h = x[:, -1, :]
    logits, cache_out = linear(h, params["W_out"], params["b_out"])
    acts.update({"final": h, "logits": logits})
    cache = {"config": config, "x_shape": x.shape, "embed": cache_embed, "blocks": block_caches,
             "ln_final": cache_final_ln, "out": cache_out, "record": record}
    if record:
        cache["activations"] = acts
        cache["attention"] = [block.attn.attention.A for block in block_caches]
    return logits, cache


def backward(dlogits, cache):
    """Gradients of every parameter, given the gradient of the loss with respect to the logits.

    Parameters
    ----------
    dlogits : array_like, shape ``[batch, vocab_size]``
    cache : dict
        From :func:`forward`.

    Returns
    -------
    grads : dict of str to ndarray
        Same names and shapes as the parameters, in :func:`param_shapes` order.
    stage_grads : dict of str to ndarray, only when the forward pass recorded
        The gradient of the loss with respect to every recorded activation,
        same keys as ``cache["activations"]``, in backward order.
    """
    require(isinstance(cache, dict) and "blocks" in cache, "cache must be the dict that forward returns")
    config = cache["config"]
    dlogits = as_float64(dlogits, "dlogits")
    grads, stages = {}, {"logits": dlogits}
    dh, grads["W_out"], grads["b_out"] = linear_backward(dlogits, cache["out"])
    stages["final"] = dh
    # Only the final position feeds the head: every other position starts with zero gradient.
    dx = np.zeros(cache["x_shape"])
    dx[:, -1, :] = dh
    if config.norm == "pre":
        stages["ln_final.out"] = dx
        dx = _ln_backward(dx, cache["ln_final"], "ln_final", grads)
    for cache_block in reversed(cache["blocks"]):
        l = cache_block.layer
        dx, block_stages = _block_backward(dx, cache_block, config, grads)
        stages.update({f"block{l}.{k}": v for k, v in block_stages.items()})
    stages["embed.out"] = dx  # x = E[tokens] + P[:T]: the sum passes dx on unchanged to both terms
    grads["embed"] = embedding_backward(dx, cache["embed"])
    if config.positions == "learned":
        # Row t of the table is added at position t of every sequence: its gradient sums dx over the
        # batch. A shorter batch (T < seq_len) never used rows T.., which get exactly zero.
        grads["pos_embed"] = np.zeros((config.seq_len, config.d_model))
        grads["pos_embed"][: dx.shape[1]] = dx.sum(axis=0)
    grads = {name: grads[name] for name in param_shapes(config)}
    if cache["record"]:
        order = list(cache["activations"])[::-1]
        return grads, {name: stages[name] for name in order}
    return grads


def forward_backward(params, tokens, targets, config: TransformerConfig, record: bool = False):
    """Loss and parameter gradients; with ``record``, also a trace of the whole pass.

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
    trace : dict, only with ``record``
        ``"activations"`` and ``"grads"`` (``{stage: array}``, forward order, see
        :data:`STAGES_DOC`), ``"attention"`` (per block ``[batch, n_heads, T, T]``),
        ``"probs"`` (softmax of the logits) and ``"dlogits"`` (``(p - onehot) / batch``).

    Examples
    --------
    >>> config = TransformerConfig(n_layers=1)
    >>> loss, grads, trace = forward_backward(init_params(config), [[15, 17, 3, 19, 8, 19, 4, 18]], [8],
    ...                                       config, record=True)
    >>> trace["grads"]["final"].shape, grads["embed"].shape, list(trace["grads"])[:2]
    ((1, 64), (20, 64), ['embed.out', 'block0.in'])
    """
    logits, cache = forward(params, tokens, config, record=record)
    targets = _check_targets(targets, logits.shape[0], config)
    loss, cache_loss = cross_entropy(logits, targets)
    dlogits = cross_entropy_backward(1.0, cache_loss)
    if not record:
        return loss, backward(dlogits, cache)
    grads, stage_grads = backward(dlogits, cache)
    acts = cache["activations"]
    trace = {
        "activations": acts,
        "grads": {name: stage_grads[name] for name in acts},
        "attention": cache["attention"],
        "probs": cache_loss[0],
        "dlogits": dlogits,
    }
    return loss, grads, trace


def loss_and_grads(params, tokens, targets, config: TransformerConfig):
    """Mean cross-entropy of the final position's prediction, and its gradient for every parameter.

    Parameters
    ----------
    params : dict of str to array_like
        As :func:`init_params` returns.
    tokens : array_like of int, shape ``[batch, T]``
    targets : array_like of int, shape ``[batch]``
    config : TransformerConfig

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
        Same keys and shapes as ``params``.

    Raises
    ------
    ValueError
        If a parameter is missing, extra or misshapen, or the tokens or targets
        are not integer ids of the right shapes inside the vocabulary.

    Notes
    -----
    A NaN anywhere in the parameters gives a NaN loss: one NaN in a block's
    ``W_k`` makes the scores of its head NaN, that head's weights NaN, and
    from there every position and the logits. An infinite parameter gives NaN
    (or ``+inf``) the same way. The gradients are then NaN too; nothing is
    replaced by a finite value.

    Examples
    --------
    An untrained model is close to a uniform guess over the 20 tokens:

    >>> config = TransformerConfig()
    >>> loss, grads = loss_and_grads(init_params(config), [[15, 17, 3, 19, 8, 19, 4, 18]], [8], config)
    >>> bool(abs(loss - np.log(20)) < 2), set(grads) == set(init_params(config))
    (True, True)
    """
    return forward_backward(params, tokens, targets, config)


def model_loss(params, tokens, targets, config: TransformerConfig) -> float:
    """The loss alone (a forward pass): what finite differences evaluate."""
    logits, _ = forward(params, tokens, config)
    return cross_entropy(logits, _check_targets(targets, logits.shape[0], config))[0]


def predict(params, tokens, config: TransformerConfig) -> np.ndarray:
    """The most likely next token for every sequence, ``[batch]``."""
    return np.argmax(final_logits(params, tokens, config), axis=1)


def final_logits(params, tokens, config: TransformerConfig) -> np.ndarray:
    """:func:`forward`'s logits ``[batch, vocab_size]``, without what they do not depend on; no cache.

    The head reads the final position only, and positions meet only in attention: after the last
    block's attention, its residual sum, LayerNorms and FFN are computed at the final position
    alone (a third of the chapter's model's matrix products). For evaluation and prediction, where
    no backward pass follows. The values are :func:`forward`'s, up to the order in which BLAS adds
    a product's terms; the errors for bad input are the same.

    Examples
    --------
    >>> config = TransformerConfig(n_layers=1)
    >>> params, tokens = init_params(config), [[15, 17, 3, 19, 8, 19, 4, 18]]
    >>> bool(np.allclose(final_logits(params, tokens, config), forward(params, tokens, config)[0], atol=1e-12))
    True
    """
    require(isinstance(config, TransformerConfig),
            lambda: f"config must be a TransformerConfig, got {type(config).__name__}")
    params = _check_params(params, config)
    tokens = _check_tokens(tokens, config)
    _, x, _ = _embed(params, tokens, config)
    for l in range(config.n_layers - 1):
        x, _, _ = _block_forward(x, params, l, config)
    p = f"block{config.n_layers - 1}."
    if config.norm == "post":  # as _block_forward, from the residual sum on at the final position only
        a, _ = _attn(x, params, p, config)
        x1, _ = _ln((x + a)[:, -1:], params, p + "ln1", config)
        f, _, _ = _ffn(x1, params, p, config)
        x, _ = _ln(x1 + f, params, p + "ln2", config)
    else:
        n1, _ = _ln(x, params, p + "ln1", config)
        a, _ = _attn(n1, params, p, config)
        x1 = (x + a)[:, -1:]
        f, _, _ = _ffn(_ln(x1, params, p + "ln2", config)[0], params, p, config)
        x, _ = _ln(x1 + f, params, "ln_final", config)
    logits, _ = linear(x[:, -1, :], params["W_out"], params["b_out"])
    return logits


def stage_names(config: TransformerConfig) -> list[str]:
    """The stage names of a recorded pass, in forward order (:data:`STAGES_DOC`).

    Examples
    --------
    >>> stage_names(TransformerConfig(n_layers=1))[:4]
    ['embed.out', 'block0.in', 'block0.attn.out', 'block0.add1']
    """
    if config.norm == "post":
        block = ["in", "attn.out", "add1", "ln1.out", "ffn.pre", "ffn.act", "ffn.out", "add2", "out"]
    else:
        block = ["in", "ln1.out", "attn.out", "add1", "ln2.out", "ffn.pre", "ffn.act", "ffn.out", "out"]
    names = ["embed.out"] + [f"block{l}.{s}" for l in range(config.n_layers) for s in block]
    return names + (["ln_final.out"] if config.norm == "pre" else []) + ["final", "logits"]


# ----------------------------------------------------------------------------- cost


def _arrays(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _arrays(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _arrays(item)


def _owner(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def cache_nbytes(cache, params=None) -> int:
    """Bytes of the arrays a forward cache keeps for the backward pass.

    Arrays that share memory (views, such as the per-head split of ``Q``) are
    counted once, through the array that owns the buffer. Parameters the cache
    merely refers to are not activations and are left out when ``params`` is
    given. Only the arrays :func:`backward` needs are counted: a recorded
    cache's extra ``"activations"`` are skipped.
    """
    skip = {id(_owner(p)) for p in (params or {}).values() if isinstance(p, np.ndarray)}
    needed = {k: v for k, v in cache.items() if k not in ("activations", "attention")}
    owners = {}
    for array in _arrays(needed):
        owner = _owner(array)
        if id(owner) not in skip:
            owners[id(owner)] = owner
    return int(sum(a.nbytes for a in owners.values()))


def matmul_flops(cache) -> dict[str, dict[str, int]]:
    """Floating-point operations of every matrix product, forward and backward, read from a forward cache.

    A product of ``[m, n]`` and ``[n, k]`` matrices takes ``m k`` dot products
    of length ``n``: ``n`` multiplications and ``n - 1`` additions each, counted
    as ``2 m n k``. The shapes come from the arrays in the cache:

    - a linear map ``Y = X W`` (``rows`` rows of ``X``) costs ``2 rows d_in d_out``
      forward; backward it needs ``dX = dY W^T`` and ``dW = X^T dY``, two
      products of the same size;
    - attention costs ``Q K^T`` and ``A V`` forward; backward it needs
      ``dA = dO V^T``, ``dV = A^T dO``, ``dQ = dS K`` and ``dK = dS^T Q``;
    - elementwise work (softmax, LayerNorm, activations, the loss) is left out.

    Returns
    -------
    dict
        ``{stage: {"forward": flops, "backward": flops}}`` with stages
        ``"attention projections"``, ``"attention scores and mixing"``,
        ``"FFN"`` and ``"output head"``, summed over blocks.
    """
    totals = {s: {"forward": 0, "backward": 0} for s in
              ("attention projections", "attention scores and mixing", "FFN", "output head")}

    def add_linear(stage, linear_cache):
        x, W, _ = linear_cache
        rows = x.size // W.shape[0]
        product = 2 * rows * W.shape[0] * W.shape[1]
        totals[stage]["forward"] += product
        totals[stage]["backward"] += 2 * product  # dX = dY W^T and dW = X^T dY

    for block in cache["blocks"]:
        mha = block.attn
        Q, K, V, A = mha.attention
        for linear_cache in (mha.linear_q, mha.linear_k, mha.linear_v, mha.linear_o):
            add_linear("attention projections", linear_cache)
        pairs = A.size // (A.shape[-1] * A.shape[-2])  # batch * heads
        n_q, n_k, d_k, d_v = Q.shape[-2], K.shape[-2], Q.shape[-1], V.shape[-1]
        scores, mixing = 2 * n_q * d_k * n_k, 2 * n_q * n_k * d_v  # Q K^T, A V
        totals["attention scores and mixing"]["forward"] += pairs * (scores + mixing)
        # dA = dO V^T and dV = A^T dO are the size of A V; dQ = dS K and dK = dS^T Q that of Q K^T.
        totals["attention scores and mixing"]["backward"] += pairs * (2 * mixing + 2 * scores)
        add_linear("FFN", block.ffn.linear1)
        add_linear("FFN", block.ffn.linear2)
    add_linear("output head", cache["out"])
    return totals
