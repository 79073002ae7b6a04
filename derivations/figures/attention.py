"""Figures of the attention-gradients chapter.

- ``attention_weights``: the chapter's worked example, its weights ``A`` and its
  score gradient ``dS``, as annotated heatmaps.
- ``softmax_saturation``: how the softmax Jacobian collapses as scores grow, with
  and without the ``1/sqrt(d_k)`` factor: the median over the experiment's seeds as
  a line, their range as a band.

Both draw their numbers from ``derivations.experiments.attention``, the functions the
page calls, so the figures show exactly what the page computes. Titles and labels use
matplotlib's mathtext for their symbols; tick labels stay plain text (Unicode
superscripts), because mathtext on every tick would triple the drawing time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ..reference import attention, softmax_backward
from ..experiments.attention import attention_worked_example, saturation_curves
from . import register
from ._svg import figure, is_narrow, to_svg

# Ids of the figures' elements in the SVG (``<g id=...>``): stable names a test can count.
WEIGHTS_ID = "attention-weights"
SCORE_GRADIENT_ID = "score-gradient"
SATURATION_ID = "saturation"

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
    ax.set_xlabel(r"key $j$")
    ax.set_ylabel(r"query $i$")
    ax.invert_yaxis()  # query 0 on top, as the matrix is printed
    ax.set_aspect("equal")
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title)
    return mesh


@register("attention_weights", narrow=True)
def attention_weights() -> str:
    """Weights ``A`` and score gradient ``dS`` of the chapter's worked example, side by side."""
    Q, K, V, dO = attention_worked_example()
    _, cache = attention(Q, K, V)
    _, _, _, A = cache  # attention's cache is (Q, K, V, A)
    dS = softmax_backward(dO @ V.T, (A,))  # softmax's cache is its output

    fig, (left, right) = figure(1, 2, figsize=(8.0, 2.9), narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 5.6)})
    mesh = _heatmap(left, A, WEIGHTS_ID, r"attention weights $A$ (rows sum to 1)", diverging=False)
    fig.colorbar(mesh, ax=left, shrink=0.8)
    mesh = _heatmap(right, dS, SCORE_GRADIENT_ID, r"score gradient $\partial L / \partial S$ (rows sum to 0)",
                    diverging=True)
    fig.colorbar(mesh, ax=right, shrink=0.8)
    return to_svg(fig)


@register("softmax_saturation", narrow=True)
def softmax_saturation() -> str:
    """Mean softmax-Jacobian norm against a score multiplier, per ``d_k``, scaled and unscaled, over seeds.

    Each width and style is a line (the median over the seeds, ``gid``
    ``saturation-dk{d_k}-scaled`` or ``-unscaled``) over a band (the range, ``...-band``).
    """
    curves = saturation_curves()  # shared: computed once per build, for the page and both layouts
    c = curves.multipliers
    fig, ax = figure(figsize=(6.8, 4.4), narrow={"figsize": (4.6, 5.2)})
    colors = ("#1b9e77", "#d95f02", "#7570b3")
    for w, (d_k, color) in enumerate(zip(curves.d_k, colors)):
        for norms, style, kind in ((curves.scaled, "-", "scaled"), (curves.unscaled, "--", "unscaled")):
            # Norms that underflow to 0 would vanish from a log axis; floor them so the line leaves the plot.
            per_seed = np.maximum(norms[:, w, :], 1e-300)  # [seed, multiplier]
            band = ax.fill_between(c, per_seed.min(axis=0), per_seed.max(axis=0), color=color, alpha=0.18,
                                   linewidth=0)
            band.set_gid(f"{SATURATION_ID}-dk{d_k}-{kind}-band")
            line, = ax.plot(c, np.median(per_seed, axis=0), style, color=color, linewidth=1.8)
            line.set_gid(f"{SATURATION_ID}-dk{d_k}-{kind}")
    ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle=":")
    ax.annotate(r"standard attention, $c = 1$", xy=(1.0, 0.75), xytext=(4, 0), textcoords="offset points",
                ha="left", va="center", color="0.35", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(SATURATION_FLOOR, 1.0)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(_power_of_ten))
    ax.set_xlim(c[0], c[-1])
    line_break = "\n" if is_narrow() else " "
    ax.set_xlabel(rf"score multiplier $c$: scores $c\,QK^{{\top}}/√d_k$,{line_break}or $c\,QK^{{\top}}$ without the scale")
    ax.set_ylabel(f"mean Frobenius norm of{line_break}the softmax Jacobian")
    ax.set_title(f"The softmax gradient collapses{line_break}as scores grow")

    width_handles = [ax.plot([], [], color=color, linewidth=1.8)[0] for color in colors]
    width_legend = ax.legend(width_handles, [rf"$d_k = {d_k}$" for d_k in curves.d_k], loc="lower left",
                             frameon=False, title="key width", alignment="left")
    ax.add_artist(width_legend)
    style_handles = [ax.plot([], [], style, color="0.3", linewidth=1.8)[0] for style in ("-", "--")]
    style_handles.append(Patch(color="0.3", alpha=0.18, linewidth=0))
    # Side by side under the curves; stacked on a phone, where the empty corner is narrow and tall.
    ax.legend(style_handles, ["with $1/√d_k$", "without", "range"], loc="lower left",
              bbox_to_anchor=(0.0, 0.3) if is_narrow() else (0.2, 0.0), frameon=False, alignment="left",
              title=f"scores: median and range\nover {len(curves.seeds)} seeds")
    return to_svg(fig)
