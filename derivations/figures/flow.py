"""Figures of the gradient-flow chapter.

- ``deep_chain``: gradient norm per layer of a plain 50-layer stack, for
  several weight scales, linear and tanh.
- ``rnn_horizon``: the fraction of a gradient that crosses ``T`` steps of a
  tanh RNN, for recurrent matrices with different spectral radii and norms.
- ``gradient_flow``: per-block gradient norm of the reference transformer at
  initialisation, post-norm against pre-norm, for depths from 2 to 48.

Each draws exactly what :mod:`derivations.experiments.flow` computes for the page.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator

from ..experiments.flow import (
    CHAIN_DEPTH,
    CHAIN_SCALES,
    PLACEMENT,
    RNN_HORIZONS,
    RNN_WIDTH,
    deep_chain_gradient_norms,
    geometric_mean,
    norm_placement_profiles,
    recurrent_examples,
    rnn_gradient_horizon,
)
from . import register
from ._svg import figure, to_svg

# Line ids in the SVG (``<g id=...>``), so tests can find the curves.
CHAIN_ID = "chain"
HORIZON_ID = "horizon"
PLACEMENT_ID = "placement"

FLOOR = 1e-30  # bottom of the RNN plot: smaller ratios (and exact zeros) leave it downwards

_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _power_of_ten(value, _position) -> str:
    """``10⁻²`` as plain text: mathtext tick labels would triple the drawing time."""
    return "10" + str(round(np.log10(value))).translate(_SUPERSCRIPT)


def _log_y(ax):
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(numticks=8))
    ax.yaxis.set_minor_locator(LogLocator(subs=(), numticks=8))
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))


@register("deep_chain")
def deep_chain() -> str:
    """``||dL/dh_l|| / ||dL/dh_50||`` against layer ``l``, one line per weight scale, linear and tanh."""
    fig, axes = figure(1, 2, figsize=(8.4, 3.6), sharey=True)
    colors = ("#2166ac", "#67a9cf", "#636363", "#ef8a62", "#b2182b")
    layers = np.arange(CHAIN_DEPTH + 1)
    for ax, activation in zip(axes, ("linear", "tanh")):
        for scale, color in zip(CHAIN_SCALES, colors):
            norms = deep_chain_gradient_norms(CHAIN_DEPTH, scale, activation)
            line, = ax.plot(layers, norms / norms[-1], color=color, linewidth=1.8, label=f"σ = {scale:g}")
            line.set_gid(f"{CHAIN_ID}-{activation}-{scale:g}")
        _log_y(ax)
        ax.set_xlim(0, CHAIN_DEPTH)
        ax.set_xlabel("layer l (0 = input, 50 = where the loss is)")
        ax.set_title(f"h_l = {'h_(l-1) W_l' if activation == 'linear' else 'tanh(h_(l-1) W_l)'}")
    axes[0].set_ylabel("‖dL/dh_l‖ / ‖dL/dh_50‖")
    axes[1].legend(title="W ~ N(0, σ²/width)", frameon=False, loc="upper right")
    return to_svg(fig)


@register("rnn_horizon")
def rnn_horizon() -> str:
    """``||dL/dh_0|| / ||dL/dh_T||`` against ``T``: at the fixed point (no input) and driven by inputs."""
    fig, axes = figure(1, 2, figsize=(8.4, 3.8), sharey=True)
    colors = ("#1b9e77", "#7570b3", "#e7298a", "#d95f02", "#666666")
    horizons = np.array(RNN_HORIZONS)
    for ax, input_scale, title in zip(axes, (0.0, 1.0), ("no input: tanh′ = 1 at every step",
                                                        "standard normal inputs")):
        for (label, W), color in zip(recurrent_examples(RNN_WIDTH).items(), colors):
            ratios = rnn_gradient_horizon(W, RNN_HORIZONS, input_scale)
            line, = ax.plot(horizons, np.maximum(ratios, 1e-300), color=color, linewidth=1.8, label=label)
            line.set_gid(f"{HORIZON_ID}-{input_scale:g}-{label.split()[0]}")
        ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
        _log_y(ax)
        ax.set_ylim(FLOOR, 1e30)
        ax.set_xlim(0, horizons[-1])
        ax.set_xlabel("horizon T (steps back)")
        ax.set_title(title)
    axes[0].set_ylabel("‖dL/dh_0‖ / ‖dL/dh_T‖")
    axes[1].legend(frameon=False, loc="upper right", fontsize=8.5)
    return to_svg(fig)


@register("gradient_flow")
def gradient_flow() -> str:
    """Per-block parameter-gradient norm at initialisation (geometric mean over seeds), post- and pre-norm."""
    profiles = norm_placement_profiles()
    depths = PLACEMENT["depths"]
    fig, axes = figure(1, 2, figsize=(8.4, 3.8), sharey=True)
    colors = ("#fdae61", "#f46d43", "#d73027", "#a50026", "#4d0013")
    for ax, norm in zip(axes, ("post", "pre")):
        for depth, color in zip(depths, colors):
            profile = geometric_mean(profiles[(norm, depth)])
            line, = ax.plot(np.arange(depth), profile, "o-" if depth <= 6 else "-", color=color, linewidth=1.6,
                            markersize=3.5, label=f"{depth} blocks")
            line.set_gid(f"{PLACEMENT_ID}-{norm}-{depth}")
        _log_y(ax)
        ax.set_xlim(-0.5, max(depths) - 0.5)
        ax.set_xlabel("block l (0 = next to the embedding)")
        ax.set_title("post-norm: x = LN(x + f(x))" if norm == "post" else "pre-norm: x = x + f(LN(x))")
    means = [geometric_mean(p) for p in profiles.values()]
    low, high = min(float(m.min()) for m in means) / 1.5, max(float(m.max()) for m in means) * 1.5
    axes[0].set_ylim(low, high)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    axes[0].set_yticks(ticks, [f"{t:g}" for t in ticks])
    axes[0].set_ylabel("‖gradient of block l's parameters‖")
    axes[1].legend(frameon=False, loc="upper right", fontsize=8.5)
    return to_svg(fig)
