"""A tiny causal (decoder-only) character language model, built only on the reference operations.

The reference solution of the hands-on exercise "a tiny causal language model". The chapter's
model (:mod:`derivations.reference.model`) reads one prediction from the last position; a
language model predicts the next character at *every* position in one pass, and the causal mask
is what makes that honest: position ``t`` may attend to positions ``0..t`` only, so its
prediction cannot see the character it is asked to predict. Pre-norm blocks::

    x = E[tokens] + PE
    repeat n_layers times:
        x = x + MHA(LN1(x), mask = lower triangle)
        x = x + FFN(LN2(x))
    logits = LN_final(x) W_out + b_out          [B, T, vocab]
    L = mean over every position of cross-entropy(logits[b, t], tokens[b, t + 1])

The parameters have the names and shapes of :func:`derivations.reference.model.param_shapes` for a
pre-norm configuration (so :func:`~derivations.reference.model.init_params` draws them); only the
mask and the head read at every position differ. :func:`loss_and_grads` is the forward/backward
pair, built from the reference backward passes (nothing here differentiates by hand).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..reference._checks import require
from ..reference.layers import (
    cross_entropy,
    cross_entropy_backward,
    embedding,
    embedding_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    positional_encoding,
    relu,
    relu_backward,
)
from ..reference.model import TransformerConfig, init_params
from ..reference.multi_head import multi_head_attention, multi_head_attention_backward
from ..reference.optim import adam_init, adam_step

__all__ = ["CORPUS", "Vocabulary", "causal_mask", "language_config", "logits", "loss_and_grads", "train",
           "greedy", "windows"]

CORPUS = Path(__file__).resolve().parent / "data" / "mill.txt"


class Vocabulary:
    """The characters of a text, sorted, as token ids ``0..size-1``.

    Examples
    --------
    >>> v = Vocabulary("abba")
    >>> v.size, v.encode("ab").tolist(), v.decode([1, 0])
    (2, [0, 1], 'ba')
    """

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.chars)}

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.ids))
        require(not unknown, f"characters {unknown} are not in the vocabulary")
        return np.array([self.ids[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def causal_mask(T: int) -> np.ndarray:
    """``[T, T]`` booleans, True where query ``i`` may attend to key ``j``, that is ``j <= i``.

    >>> causal_mask(3).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return np.tril(np.ones((T, T), dtype=bool))


def language_config(vocab_size: int, seq_len: int = 32, d_model: int = 32, n_heads: int = 2, d_ff: int = 64,
                    n_layers: int = 1) -> TransformerConfig:
    """A pre-norm, ReLU configuration of the reference model's parameter layout."""
    return TransformerConfig(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                             n_layers=n_layers, seq_len=seq_len, norm="pre", activation="relu")


def _ln(x, params, name, config):
    return layer_norm(x, params[name + ".gamma"], params[name + ".beta"], config.ln_eps)


def _forward(params, tokens, config):
    tokens = np.asarray(tokens)
    require(tokens.ndim == 2 and tokens.shape[1] <= config.seq_len,
            f"tokens {tokens.shape} must be [batch, T] with T <= seq_len = {config.seq_len}")
    B, T = tokens.shape
    e, cache_embed = embedding(tokens, params["embed"])
    # Position-wise steps run on [B * T, d] rows (one matrix product instead of B small ones);
    # attention needs the [B, T, d] view to keep the sequences apart.
    x = (e + positional_encoding(config.seq_len, config.d_model)[:T]).reshape(B * T, config.d_model)
    mask = causal_mask(T)
    caches = []
    for l in range(config.n_layers):
        p = f"block{l}."
        n1, c_ln1 = _ln(x, params, p + "ln1", config)
        a, c_attn = multi_head_attention(n1.reshape(B, T, -1), params[p + "attn.W_q"], params[p + "attn.W_k"],
                                         params[p + "attn.W_v"], params[p + "attn.W_o"], config.n_heads, mask=mask)
        x = x + a.reshape(B * T, -1)
        n2, c_ln2 = _ln(x, params, p + "ln2", config)
        z, c_w1 = linear(n2, params[p + "ffn.W1"], params[p + "ffn.b1"])
        r, c_act = relu(z)
        f, c_w2 = linear(r, params[p + "ffn.W2"], params[p + "ffn.b2"])
        x = x + f
        caches.append((c_ln1, c_attn, c_ln2, c_w1, c_act, c_w2))
    h, c_final = _ln(x, params, "ln_final", config)
    out, c_out = linear(h, params["W_out"], params["b_out"])
    return out.reshape(B, T, -1), (cache_embed, caches, c_final, c_out)


def logits(params, tokens, config: TransformerConfig) -> np.ndarray:
    """Next-character logits at every position, ``[batch, T, vocab]``."""
    return _forward(params, tokens, config)[0]


def loss_and_grads(params, tokens, config: TransformerConfig):
    """Mean next-character cross-entropy over every position of ``tokens`` ``[batch, T + 1]``, and its gradients.

    The model reads ``tokens[:, :-1]`` and is scored on ``tokens[:, 1:]``.

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
        Same names and shapes as ``params``.
    """
    tokens = np.asarray(tokens)
    require(tokens.ndim == 2 and tokens.shape[1] >= 2, f"tokens {tokens.shape} must be [batch, T + 1] with T >= 1")
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    out, (cache_embed, caches, c_final, c_out) = _forward(params, inputs, config)
    B, T, V = out.shape
    loss, cache_loss = cross_entropy(out.reshape(B * T, V), targets.reshape(-1))
    dout = cross_entropy_backward(1.0, cache_loss)  # [B * T, V], the rows of the position-wise steps
    grads = {}
    dh, grads["W_out"], grads["b_out"] = linear_backward(dout, c_out)
    dx, grads["ln_final.gamma"], grads["ln_final.beta"] = layer_norm_backward(dh, c_final)
    for l in reversed(range(config.n_layers)):
        p = f"block{l}."
        c_ln1, c_attn, c_ln2, c_w1, c_act, c_w2 = caches[l]
        # x = x + f: the residual passes dx on unchanged and the FFN branch adds its own share.
        dr, grads[p + "ffn.W2"], grads[p + "ffn.b2"] = linear_backward(dx, c_w2)
        dz = relu_backward(dr, c_act)
        dn2, grads[p + "ffn.W1"], grads[p + "ffn.b1"] = linear_backward(dz, c_w1)
        dn2_x, grads[p + "ln2.gamma"], grads[p + "ln2.beta"] = layer_norm_backward(dn2, c_ln2)
        dx = dx + dn2_x
        dn1, *dWs = multi_head_attention_backward(dx.reshape(B, T, -1), c_attn)
        dn1 = dn1.reshape(B * T, -1)
        for name, dW in zip(("W_q", "W_k", "W_v", "W_o"), dWs):
            grads[p + "attn." + name] = dW
        dn1_x, grads[p + "ln1.gamma"], grads[p + "ln1.beta"] = layer_norm_backward(dn1, c_ln1)
        dx = dx + dn1_x
    grads["embed"] = embedding_backward(dx.reshape(B, T, -1), cache_embed)  # the positional encoding is a constant
    return loss, {name: grads[name] for name in params}


def windows(ids: np.ndarray, length: int) -> np.ndarray:
    """Every run of ``length`` consecutive ids, ``[len(ids) - length + 1, length]``."""
    require(len(ids) >= length, f"{len(ids)} ids are fewer than one window of {length}")
    return np.lib.stride_tricks.sliding_window_view(ids, length).copy()


def train(text: str, steps: int = 300, batch: int = 16, lr: float = 1e-2, seed: int = 0, **sizes):
    """Train on ``text`` with Adam; return ``(params, config, vocabulary, losses)``.

    Each step draws ``batch`` windows of ``seq_len + 1`` characters (seeded) and takes one Adam
    step on :func:`loss_and_grads`.
    """
    vocabulary = Vocabulary(text)
    config = language_config(vocabulary.size, **sizes)
    data = windows(vocabulary.encode(text), config.seq_len + 1)
    params = init_params(config, seed)
    state = adam_init(params)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        loss, grads = loss_and_grads(params, data[rng.integers(0, len(data), size=batch)], config)
        params, state = adam_step(params, grads, state, lr=lr)
        losses.append(loss)
    return params, config, vocabulary, np.array(losses)


def greedy(params, config: TransformerConfig, vocabulary: Vocabulary, prompt: str, n: int) -> str:
    """``prompt`` followed by ``n`` characters, each the most likely next one (the last ``seq_len`` as context)."""
    ids = list(vocabulary.encode(prompt))
    for _ in range(n):
        context = np.array(ids[-config.seq_len:])[None]
        ids.append(int(np.argmax(logits(params, context, config)[0, -1])))
    return vocabulary.decode(ids)
