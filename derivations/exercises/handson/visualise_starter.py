"""Hands-on: look at the trained model's attention (starter: fill in the TODO, then run it)."""

import numpy as np

from derivations.reference.model import forward
from derivations.reference.task import VOCAB, encode_example
from derivations.reference.train import load_or_train


def attention_of(run, expression):
    """The attention weights of ``expression``: one ``[n_heads, T, T]`` array per block."""
    tokens, _ = encode_example(expression)
    _, cache = forward(run.params, tokens[None], run.settings.config, record=True)
    return [A[0] for A in cache["attention"]]


def main():
    run = load_or_train()  # trains once (about half a minute), then reads the cached run
    expression = "Second(4,9,2)"
    weights = attention_of(run, expression)
    labels = [VOCAB[i] for i in encode_example(expression)[0]]
    print("tokens:", labels)
    print("blocks:", len(weights), "| each:", weights[0].shape)
    # TODO: draw one heatmap per block and head (matplotlib's imshow), rows = queries, columns = keys,
    #       labelled with the tokens; then look at the last row of each: the final position's weights.


if __name__ == "__main__":
    main()
