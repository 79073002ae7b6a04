"""Figures of the gradient-flow chapter.

- ``deep_chain``: gradient norm per layer of a plain 50-layer stack, for
  several weight scales, linear and tanh.
- ``rnn_horizon``: the fraction of a gradient that crosses ``T`` steps of a
  tanh RNN, for recurrent matrices with different spectral radii and norms.
- ``gradient_flow``: per-block gradient norm of the reference transformer at
  initialisation, post-norm against pre-norm, for depths from 2 to 48, and the
  ratio of block 0 to the last block for every initialisation.

Each draws exactly what :mod:`derivations.experiments.flow` computes for the
page, over the same seeds (:data:`~derivations.experiments.flow.SEEDS`): a line
is the median (the geometric mean for the transformer profiles), a band the
range over the seeds, a point one seed. Formulas in titles and labels are
matplotlib mathtext.
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator

from ..experiments.flow import (
    CHAIN_DEPTH,
    CHAIN_SCALES,
    PLACEMENT,
    RNN_HORIZONS,
    RNN_WIDTH,
    SEEDS,
    deep_chain_gradient_norms,
    geometric_mean,
    norm_placement_profiles,
    over_seeds,
    recurrent_examples,
    rnn_gradient_horizon,
)
from . import register
from ._svg import figure, is_narrow, to_svg

# Ids in the SVG (``<g id=...>``), so tests can find the curves: ``<id>-...`` for a line,
# ``<id>-...-band`` for the band of the same curve, ``<id>-ratio-<norm>`` for points.
CHAIN_ID = "chain"
HORIZON_ID = "horizon"
PLACEMENT_ID = "placement"

FLOOR = 1e-30  # bottom of the RNN plot: smaller ratios (and exact zeros) leave it downwards
BAND_ALPHA = 0.2

_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _power_of_ten(value, _position) -> str:
    """``10⁻²`` as plain text: mathtext tick labels would triple the drawing time."""
    return "10" + str(round(np.log10(value))).translate(_SUPERSCRIPT)


def _log_y(ax):
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(numticks=8))
    ax.yaxis.set_minor_locator(LogLocator(subs=(), numticks=8))
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))


def _line_and_band(ax, x, per_seed, centre, color, gid, **line_options):
    """``centre`` of ``per_seed`` (``[seed, x]``) as a line, its range over the seeds as a band."""
    line, = ax.plot(x, centre, color=color, **line_options)
    line.set_gid(gid)
    band = ax.fill_between(x, per_seed.min(axis=0), per_seed.max(axis=0), color=color, alpha=BAND_ALPHA,
                           linewidth=0)
    band.set_gid(f"{gid}-band")
    return line


# The experiments' numbers, computed once per process: both layouts of a figure draw the same ones.
@functools.cache
def _chain_norms(activation: str, scale: float) -> np.ndarray:
    return over_seeds(deep_chain_gradient_norms, SEEDS, depth=CHAIN_DEPTH, weight_scale=scale, activation=activation)


@functools.cache
def _horizon(label: str, input_scale: float) -> np.ndarray:
    return rnn_gradient_horizon(recurrent_examples(RNN_WIDTH)[label], RNN_HORIZONS, input_scale, SEEDS)


@register("deep_chain", narrow=True)
def deep_chain() -> str:
    """``||dL/dh_l|| / ||dL/dh_50||`` against layer ``l``, one curve per weight scale, linear and tanh."""
    fig, axes = figure(1, 2, figsize=(8.4, 3.6), sharey=True, narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 6.8)})
    colors = ("#2166ac", "#67a9cf", "#636363", "#ef8a62", "#b2182b")
    layers = np.arange(CHAIN_DEPTH + 1)
    titles = {"linear": r"linear: $h_l = h_{l-1} W_l$", "tanh": r"$\tanh$: $h_l = \tanh(h_{l-1} W_l)$"}
    for ax, activation in zip(axes, ("linear", "tanh")):
        for scale, color in zip(CHAIN_SCALES, colors):
            norms = _chain_norms(activation, scale)
            relative = norms / norms[:, -1:]  # [seed, layer], 1 at the top
            _line_and_band(ax, layers, relative, np.median(relative, axis=0), color,
                           f"{CHAIN_ID}-{activation}-{scale:g}", linewidth=1.8, label=rf"$\sigma = {scale:g}$")
        _log_y(ax)
        ax.set_xlim(0, CHAIN_DEPTH)
        ax.set_xlabel(rf"layer $l$ (0 = input, {CHAIN_DEPTH} = where the loss is)")
        ax.set_title(titles[activation])
    for ax in axes if is_narrow() else axes[:1]:  # stacked panels each carry their label
        ax.set_ylabel(rf"$\Vert \partial L / \partial h_l \Vert \;/\; \Vert \partial L / \partial h_{{{CHAIN_DEPTH}}} \Vert$")
    axes[1].legend(title=r"$W \sim \mathrm{N}(0,\, \sigma^2 / \mathrm{width})$", frameon=False, loc="upper right")
    return to_svg(fig)


@register("rnn_horizon", narrow=True)
def rnn_horizon() -> str:
    """``||dL/dh_0|| / ||dL/dh_T||`` against ``T``: at the fixed point (no input) and driven by inputs."""
    fig, axes = figure(1, 2, figsize=(8.4, 3.8), sharey=True, narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 7.4)})
    colors = ("#1b9e77", "#7570b3", "#e7298a", "#d95f02", "#666666")
    horizons = np.array(RNN_HORIZONS)
    titles = (r"no input: $\tanh′ = 1$ at every step", "standard normal inputs")
    for ax, input_scale, title in zip(axes, (0.0, 1.0), titles):
        for (label, W), color in zip(recurrent_examples(RNN_WIDTH).items(), colors):
            ratios = np.maximum(_horizon(label, input_scale), 1e-300)  # [seed, T]
            _line_and_band(ax, horizons, ratios, np.median(ratios, axis=0), color,
                           f"{HORIZON_ID}-{input_scale:g}-{label.split()[0]}", linewidth=1.8, label=label)
        ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
        _log_y(ax)
        ax.set_ylim(FLOOR, 1e30)
        ax.set_xlim(0, horizons[-1])
        ax.set_xlabel(r"horizon $T$ (steps back)")
        ax.set_title(title)
    for ax in axes if is_narrow() else axes[:1]:
        ax.set_ylabel(r"$\Vert \partial L / \partial h_0 \Vert \;/\; \Vert \partial L / \partial h_T \Vert$")
    axes[1].legend(frameon=False, loc="upper right", fontsize=9)
    return to_svg(fig)


@register("gradient_flow", narrow=True)
def gradient_flow() -> str:
    """Per-block parameter-gradient norm at initialisation, post- and pre-norm, and block 0 over the last block."""
    profiles = norm_placement_profiles()
    depths = PLACEMENT["depths"]
    fig, axes = figure(1, 3, figsize=(11.0, 4.3), width_ratios=(1.0, 1.0, 0.8),
                       narrow={"nrows": 3, "ncols": 1, "figsize": (4.6, 10.4), "width_ratios": None})
    colors = ("#fdae61", "#f46d43", "#d73027", "#a50026", "#4d0013")
    titles = {"post": r"post-norm: $x \leftarrow \mathrm{LN}(x + f(x))$",
              "pre": r"pre-norm: $x \leftarrow x + f(\mathrm{LN}(x))$"}
    for ax, norm in zip(axes[:2], ("post", "pre")):
        for depth, color in zip(depths, colors):
            per_seed = profiles[(norm, depth)]
            _line_and_band(ax, np.arange(depth), per_seed, geometric_mean(per_seed), color,
                           f"{PLACEMENT_ID}-{norm}-{depth}", marker="o" if depth <= 6 else None,
                           linewidth=1.6, markersize=3.5, label=f"{depth} blocks")
        _log_y(ax)
        ax.set_xlim(-0.5, max(depths) - 0.5)
        ax.set_xlabel(r"block $l$ (0 = next to the embedding)")
        ax.set_title(titles[norm])
    low = min(float(p.min()) for p in profiles.values()) / 1.2
    high = max(float(p.max()) for p in profiles.values()) * 1.2
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    for ax in axes[:2]:
        ax.set_ylim(low, high)
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    if not is_narrow():  # side by side, the middle panel reads the left one's scale
        axes[1].set_yticklabels([])
    for ax in axes[:2] if is_narrow() else axes[:1]:
        ax.set_ylabel(r"$\Vert$gradient of block $l$'s parameters$\Vert$")
    axes[1].legend(frameon=False, loc="upper right", fontsize=9.5)

    ax = axes[2]
    positions = np.arange(len(depths))
    for offset, norm, color in ((-0.15, "post", "#d73027"), (0.15, "pre", "#4575b4")):
        ratios = np.array([profiles[(norm, d)][:, 0] / profiles[(norm, d)][:, -1] for d in depths])  # [depth, seed]
        x = np.repeat(positions + offset, ratios.shape[1])
        points = ax.scatter(x, ratios.ravel(), s=12, color=color, alpha=0.7, linewidths=0, label=f"{norm}-norm")
        points.set_gid(f"{PLACEMENT_ID}-ratio-{norm}")
        means = ax.scatter(positions + offset, geometric_mean(ratios, axis=1), marker="_", s=160, color=color,
                           linewidths=2)
        means.set_gid(f"{PLACEMENT_ID}-ratio-{norm}-mean")
    ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ratio_ticks = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
    ax.set_yticks(ratio_ticks, [f"{t:g}" for t in ratio_ticks])
    ax.minorticks_off()
    ax.set_xticks(positions, [str(d) for d in depths])
    ax.set_xlabel("blocks")
    ax.set_title("block 0 / last block")
    ax.legend(frameon=False, loc="upper left", fontsize=9.5, title=f"{len(PLACEMENT['seeds'])} seeds; bar: geom. mean",
              title_fontsize=9.5)
    return to_svg(fig)
