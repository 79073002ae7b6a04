"""Hands-on: a tiny causal (decoder-only) character language model (reference solution).

Built only on the reference operations and their backward passes. The chapter's
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

from pathlib import Path

import numpy as np

import derivations.exercises
from derivations.reference.layers import (
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
from derivations.reference.model import TransformerConfig, init_params
from derivations.reference.multi_head import multi_head_attention, multi_head_attention_backward
from derivations.reference.optim import adam_init, adam_step

# A short original text that ships with the site (about 4 KB).
CORPUS = Path(derivations.exercises.__file__).resolve().parent / "data" / "mill.txt"


def require(condition, message):
    if not condition:
        raise ValueError(message)


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


def train(params, config, data, steps=300, batch=16, lr=1e-2, seed=0):
    """Adam on batches of ``batch`` windows drawn (seeded) from ``data``; the parameters and the losses."""
    state, rng, losses = adam_init(params), np.random.default_rng(seed), []
    for _ in range(steps):
        loss, grads = loss_and_grads(params, data[rng.integers(0, len(data), size=batch)], config)
        params, state = adam_step(params, grads, state, lr=lr)
        losses.append(loss)
    return params, np.array(losses)


def greedy(params, config, vocabulary, prompt, n):
    """``prompt`` and ``n`` more characters, each the most likely next one (the last ``seq_len`` as context)."""
    ids = list(vocabulary.encode(prompt))
    for _ in range(n):
        context = np.array(ids[-config.seq_len:])[None]
        ids.append(int(np.argmax(logits(params, context, config)[0, -1])))
    return vocabulary.decode(ids)


def check(logits_fn, loss_and_grads_fn):
    """Two checks on a tiny model: the future cannot change the past, and the gradients match central
    differences. Returns the largest relative gradient error (``inf`` if the model is not causal)."""
    config = language_config(vocab_size=5, seq_len=6, d_model=4, n_heads=2, d_ff=8)
    rng = np.random.default_rng(1)
    params = {name: p + 0.1 * rng.normal(size=p.shape) for name, p in init_params(config, 0).items()}
    tokens = rng.integers(0, 5, size=(2, 7))
    changed = tokens.copy()
    changed[:, 4] = (changed[:, 4] + 1) % 5                  # change the token at position 4
    before, after = logits_fn(params, tokens[:, :-1], config), logits_fn(params, changed[:, :-1], config)
    if not np.array_equal(before[:, :4], after[:, :4]):
        print("not causal: changing position 4 changed the logits of earlier positions")
        return np.inf
    _, grads = loss_and_grads_fn(params, tokens, config)
    worst, h = 0.0, 1e-6
    for name in ("embed", "block0.attn.W_q", "block0.ffn.W1", "ln_final.gamma", "W_out"):
        for index in list(np.ndindex(params[name].shape))[:6]:
            moved = {k: v.copy() for k, v in params.items()}
            moved[name][index] += h
            plus = loss_and_grads_fn(moved, tokens, config)[0]
            moved[name][index] -= 2 * h
            minus = loss_and_grads_fn(moved, tokens, config)[0]
            numeric = (plus - minus) / (2 * h)
            worst = max(worst, abs(numeric - grads[name][index]) / max(abs(numeric), abs(grads[name][index]), 1e-8))
    print(f"causal: yes; largest relative gradient error against central differences: {worst:.1e}")
    return worst


def main():
    """Check the model, train it on 90 % of the text, measure the other 10 % and sample from it."""
    text = CORPUS.read_text(encoding="utf-8")
    vocabulary = Vocabulary(text)
    config = language_config(vocabulary.size)
    gradient_error = check(logits, loss_and_grads)
    split = int(0.9 * len(text))
    training = windows(vocabulary.encode(text[:split]), config.seq_len + 1)
    held_out = windows(vocabulary.encode(text[split:]), config.seq_len + 1)[:: config.seq_len]

    def held_out_loss(params):
        return loss_and_grads(params, held_out, config)[0]

    params = init_params(config, seed=0)
    before = held_out_loss(params)
    params, losses = train(params, config, training)
    after = held_out_loss(params)
    print(f"{vocabulary.size} characters, {len(text):,} of text; {len(losses)} Adam steps of 16 windows")
    print(f"training loss: first 10 steps {losses[:10].mean():.3f}, last 10 steps {losses[-10:].mean():.3f}")
    print(f"held-out loss: {before:.3f} before training, {after:.3f} after (uniform guessing: "
          f"{np.log(vocabulary.size):.3f})")
    for prompt in ("The miller ", "The river "):
        print("greedy:", repr(greedy(params, config, vocabulary, prompt, 60)))
    return {"gradient_error": gradient_error, "before": before, "after": after,
            "uniform": np.log(vocabulary.size), "vocabulary": vocabulary.size,
            "loss_fell": after < 0.7 * before and gradient_error < 1e-6}


if __name__ == "__main__":
    measured = main()
