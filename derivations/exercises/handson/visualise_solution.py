"""Hands-on: look at the trained model's attention (reference solution)."""

import numpy as np

from derivations.figures._svg import figure, to_svg  # matplotlib with the site's style, as SVG text
from derivations.reference.model import forward
from derivations.reference.task import OPERATIONS, TOKEN_IDS, VOCAB, encode_example, make_split
from derivations.reference.train import load_or_train


def attention_of(run, expression):
    """The attention weights of ``expression``: one ``[n_heads, T, T]`` array per block."""
    tokens, _ = encode_example(expression)
    _, cache = forward(run.params, tokens[None], run.settings.config, record=True)
    return [A[0] for A in cache["attention"]]


def draw(weights, labels, title):
    """One heatmap per block (rows) and head (columns); rows of a map are queries, columns keys."""
    n_blocks, n_heads = len(weights), weights[0].shape[0]
    fig, axes = figure(n_blocks, n_heads, figsize=(2.1 * n_heads, 2.3 * n_blocks))
    for l in range(n_blocks):
        for h in range(n_heads):
            ax = axes[l, h]
            ax.imshow(weights[l][h], cmap="Blues", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_title(f"block {l}, head {h}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return to_svg(fig)


def final_position_weights(run, operation):
    """Held-out examples of one operation: the final position's weights in the last block, [n_heads, T]."""
    settings = run.settings
    _, held_out = make_split(settings.n_train, settings.n_held_out, settings.data_seed)
    rows = held_out.tokens[held_out.tokens[:, 0] == TOKEN_IDS[operation]]
    _, cache = forward(run.params, rows, settings.config, record=True)
    return cache["attention"][-1][:, :, -1, :].mean(axis=0)


def main():
    run = load_or_train()
    expression = "Second(4,9,2)"
    labels = [VOCAB[i] for i in encode_example(expression)[0]]
    svg = draw(attention_of(run, expression), labels, f"attention weights of the trained model on {expression}")
    digits = [2, 4, 6]  # positions of the three digits in Op ( d , d , d )
    print("last block, final position, mean over held-out examples and heads:")
    print("operation   op     d1     d2     d3")
    measured = {}
    for operation in OPERATIONS:
        w = final_position_weights(run, operation).mean(axis=0)
        print(f"{operation:8} " + " ".join(f"{w[p]:6.2f}" for p in [0] + digits))
        measured[operation] = w
    first, second = measured["First"][2], measured["Second"][4]
    return svg, {"first": first, "second": second, "names_the_digit": min(first, second) > 0.5,
                 "last_on_op": measured["Last"][0], "max_spread": measured["Max"][digits].sum()}


if __name__ == "__main__":
    figure_svg, measured = main()
