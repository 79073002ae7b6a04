"""Hands-on: a tiny causal (decoder-only) character language model (starter: fill in the TODOs).

Write the forward pass (``logits``) and the backward pass (``loss_and_grads``) of a one-block,
pre-norm transformer that predicts the next character at every position, using only the
reference operations and their backward passes::

    x = E[tokens] + PE
    x = x + MHA(LN1(x), mask = lower triangle)      position t may attend to 0..t only
    x = x + FFN(LN2(x))                             FFN(h) = relu(h W1 + b1) W2 + b2
    logits = LN_final(x) W_out + b_out              [batch, T, vocab]
    L = mean cross-entropy of logits[:, t] against tokens[:, t + 1]

``main`` first checks your model (causality and central differences), then trains it on the
site's short text and samples from it.
"""

from pathlib import Path

import numpy as np

import derivations.exercises
from derivations.reference.layers import (  # noqa: F401 - what you will need
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
from derivations.reference.multi_head import multi_head_attention, multi_head_attention_backward  # noqa: F401
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


def logits(params, tokens, config: TransformerConfig) -> np.ndarray:
    """Next-character logits at every position, ``[batch, T, vocab]``, for ``tokens`` ``[batch, T]``.

    ``params`` has the names of ``init_params(config)``: ``embed``, ``block0.ln1.gamma`` and
    ``.beta``, ``block0.attn.W_q`` ``W_k`` ``W_v`` ``W_o``, ``block0.ln2.*``, ``block0.ffn.W1`` ``b1``
    ``W2`` ``b2``, ``ln_final.*``, ``W_out``, ``b_out``.
    """
    # TODO: the forward pass above; multi_head_attention(..., config.n_heads, mask=causal_mask(T))
    raise NotImplementedError("logits is not written yet")


def loss_and_grads(params, tokens, config: TransformerConfig):
    """Mean next-character cross-entropy over every position of ``tokens`` ``[batch, T + 1]``, and the
    gradient of every parameter (a dict with the names and shapes of ``params``)."""
    # TODO: the forward pass keeping every cache, cross_entropy on [batch * T, vocab] rows, then the
    #       backward passes in reverse order; a residual sum passes its gradient to both of its inputs
    raise NotImplementedError("loss_and_grads is not written yet")


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
    try:
        gradient_error = check(logits, loss_and_grads)
    except NotImplementedError as error:
        print("not yet:", error)
        return
    if gradient_error > 1e-6:
        print("fix the model before training it")
        return
    text = CORPUS.read_text(encoding="utf-8")
    vocabulary = Vocabulary(text)
    config = language_config(vocabulary.size)
    data = windows(vocabulary.encode(text), config.seq_len + 1)
    params, losses = train(init_params(config, seed=0), config, data)
    print(f"training loss: first 10 steps {losses[:10].mean():.3f}, last 10 steps {losses[-10:].mean():.3f}")
    print("greedy:", repr(greedy(params, config, vocabulary, "The miller ", 60)))


if __name__ == "__main__":
    main()
