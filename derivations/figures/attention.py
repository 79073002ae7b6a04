"""Figures of the attention-gradients chapter.

- ``attention_weights``: the chapter's worked example, its weights ``A`` and its
  score gradient ``dS``, as annotated heatmaps.
- ``softmax_saturation``: how the softmax Jacobian collapses as scores grow, with
  and without the ``1/sqrt(d_k)`` factor.

Both draw their numbers from ``derivations.reference`` and its shared examples,
so the figures show exactly what the page computes.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter

from ..reference import attention, softmax_backward
from ..experiments.attention import SATURATION_D_K, attention_worked_example, softmax_jacobian_norms
from . import register
from ._svg import figure, to_svg

# Ids of the heatmap elements in the SVG (``<g id=...>``): stable names a test can count.
WEIGHTS_ID = "attention-weights"
SCORE_GRADIENT_ID = "score-gradient"
SATURATION_ID = "saturation"

SATURATION_MULTIPLIERS = np.logspace(-2, 2, 49)
SATURATION_FLOOR = 1e-6  # bottom of the log axis; smaller norms leave the plot downwards

_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _power_of_ten(value, _position) -> str:
    """``10⁻²`` as plain text: mathtext tick labels would triple the drawing time."""
    return "10" + str(round(np.log10(value))).translate(_SUPERSCRIPT)


def _heatmap(ax, values, gid: str, title: str, diverging: bool):
    """Annotated heatmap, rows = queries, columns = keys; cell ``(i, j)`` text has gid ``{gid}-cell-i-j``.

    Sequential maps run from 0 to 1 (weights); diverging ones are centred on 0
    (gradients), so a cell's colour says its sign.
    """
    n_rows, n_cols = values.shape
    limit = float(np.max(np.abs(values)))
    cmap, vmin, vmax = ("RdBu_r", -limit, limit) if diverging else ("Blues", 0.0, 1.0)
    mesh = ax.pcolormesh(values, cmap=cmap, vmin=vmin, vmax=vmax, edgecolors="white", linewidth=1.5)
    mesh.set_gid(f"{gid}-heatmap")
    strength = np.abs(values) / limit if diverging else values  # how dark the cell is, 0..1
    for i in range(n_rows):
        for j in range(n_cols):
            text = ax.text(j + 0.5, i + 0.5, f"{values[i, j]:.3f}", ha="center", va="center",
                           color="white" if strength[i, j] > 0.6 else "black")
            text.set_gid(f"{gid}-cell-{i}-{j}")
    ax.set_xticks(np.arange(n_cols) + 0.5, [str(j) for j in range(n_cols)])
    ax.set_yticks(np.arange(n_rows) + 0.5, [str(i) for i in range(n_rows)])
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
    ax.invert_yaxis()  # query 0 on top, as the matrix is printed
    ax.set_aspect("equal")
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title)
    return mesh


@register("attention_weights")
def attention_weights() -> str:
    """Weights ``A`` and score gradient ``dS`` of the chapter's worked example, side by side."""
    Q, K, V, dO = attention_worked_example()
    _, cache = attention(Q, K, V)
    A = cache[3]
    dS = softmax_backward(dO @ V.T, (A,))

    fig, (left, right) = figure(1, 2, figsize=(8.0, 2.9))
    mesh = _heatmap(left, A, WEIGHTS_ID, "attention weights A (rows sum to 1)", diverging=False)
    fig.colorbar(mesh, ax=left, shrink=0.8)
    mesh = _heatmap(right, dS, SCORE_GRADIENT_ID, "score gradient dS (rows sum to 0)", diverging=True)
    fig.colorbar(mesh, ax=right, shrink=0.8)
    return to_svg(fig)


@register("softmax_saturation")
def softmax_saturation() -> str:
    """Mean softmax-Jacobian norm against a score multiplier, for several ``d_k``, scaled and unscaled."""
    fig, ax = figure(figsize=(6.8, 4.2))
    colors = ("#1b9e77", "#d95f02", "#7570b3")
    for d_k, color in zip(SATURATION_D_K, colors):
        for scaled, style in ((True, "-"), (False, "--")):
            norms = softmax_jacobian_norms(d_k, SATURATION_MULTIPLIERS, scaled)
            # Norms that underflow to 0 would vanish from a log axis; floor them so the line leaves the plot.
            line, = ax.plot(SATURATION_MULTIPLIERS, np.maximum(norms, 1e-300), style, color=color, linewidth=1.8)
            line.set_gid(f"{SATURATION_ID}-dk{d_k}-{'scaled' if scaled else 'unscaled'}")
    ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.annotate("standard attention (c = 1)", xy=(1.0, 2 * SATURATION_FLOOR), xytext=(-3, 0),
                textcoords="offset points", rotation=90, ha="right", va="bottom", color="0.35", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(SATURATION_FLOOR, 1.0)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(_power_of_ten))
    ax.set_xlim(SATURATION_MULTIPLIERS[0], SATURATION_MULTIPLIERS[-1])
    # Unicode, not mathtext: with text kept as text, mathtext would split labels into one element per glyph.
    ax.set_xlabel("score multiplier c   (scores = c·QKᵀ/√dₖ, or c·QKᵀ unscaled)")
    ax.set_ylabel("mean Frobenius norm of the softmax Jacobian")
    ax.set_title("The softmax gradient collapses as scores grow")

    width_handles = [ax.plot([], [], color=color, linewidth=1.8)[0] for color in colors]
    width_legend = ax.legend(width_handles, [f"dₖ = {d_k}" for d_k in SATURATION_D_K], loc="lower left",
                             frameon=False, title="key width", alignment="left")
    ax.add_artist(width_legend)
    style_handles = [ax.plot([], [], style, color="0.3", linewidth=1.8)[0] for style in ("-", "--")]
    ax.legend(style_handles, ["with 1/√dₖ", "without"], loc="lower left", bbox_to_anchor=(0.2, 0.0),
              frameon=False, title="scores", alignment="left")
    return to_svg(fig)
