"""Figures of the autodiff-engines chapter.

- ``autodiff_graph``: the graph the engine records for the chapter's model on
  ``Max(1,6,2)``: every node, what it saves for the backward pass, and the
  order in which the backward pass visits it.
- ``autodiff_cost``: flops of a full Jacobian built by forward mode (one JVP per
  input) and by reverse mode (one VJP per output), counted by the engine.
- ``autodiff_depth``: path lengths from the loss back to each input position in
  an RNN, an LSTM and a transformer block, and the gradient that arrives there
  (median and range over the seeds ``DEPTH_SEEDS``, the ten the page states).
- ``autodiff_attention_memory``: bytes attention saves for its backward pass as
  the sequence grows, with ``A`` and with the row statistics instead.

Each draws exactly what :mod:`derivations.experiments.autodiff` and the engine
compute for the page.
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..autodiff import Graph, backward, record_transformer
from ..experiments.autodiff import (
    COST_FIXED,
    COST_SIZES,
    DEPTH_STEPS,
    MEMORY_LENGTHS,
    attention_saved_bytes,
    cost_sweep,
    gradient_norms_by_position,
    path_lengths,
)
from ..reference.model import TransformerConfig, init_params
from ..reference.task import answer, tokenize
from . import register
from ._svg import figure, is_narrow, to_svg

EXAMPLE = "Max(1,6,2)"
FORWARD_COLOR = "0.45"
BACKWARD_COLOR = "#c0392b"
NODE_ID = "node"  # ``<g id="node-k">`` for node k; ``visit-k`` for its backward-order label

_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _power_of_ten(value, _position) -> str:
    """``10⁻²`` as plain text: mathtext tick labels would triple the drawing time."""
    return "10" + str(round(np.log10(value))).translate(_SUPERSCRIPT)


def _log_axis(axis):
    axis.set_major_locator(LogLocator(numticks=10))
    axis.set_minor_locator(LogLocator(subs=(), numticks=10))
    axis.set_major_formatter(FuncFormatter(_power_of_ten))
    axis.set_minor_formatter(NullFormatter())


def _bytes(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.3g} KiB"


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else "scalar"


# ----------------------------------------------------------------------------- the recorded graph


def _saved_summary(node) -> tuple[str, str]:
    """Two lines: the arrays a node saves that are new (names and their total size; the table under
    the figure on the page gives every shape), and the inputs it keeps (by reference)."""
    new, kept, nbytes = [], [], 0
    for saved in node.saved_tensors():
        label = saved.name.split(".")[-1]
        if not saved.is_input:
            new.append(label)
            nbytes += saved.nbytes
        elif label not in kept:
            kept.append(label)
    saves = f"saves {', '.join(new)} ({_bytes(nbytes)})" if new else "saves no array"
    return saves, ("keeps " + ", ".join(kept)) if kept else ""


def _input_label(graph: Graph, x) -> str:
    name = graph.name(x)
    return name.rsplit(".", 1)[-1] if name.startswith("block") else name


def draw_graph(graph: Graph, visited, title: str) -> str:
    """Nodes bottom (first created) to top; backward-visit numbers on the left; saved tensors on the right.

    The phone layout keeps every node and label, in a narrower column with the title on two lines.
    """
    n = len(graph.nodes)
    order = {graph.index(node): k + 1 for k, node in enumerate(visited)}
    narrow = is_narrow()
    text = 8.5  # the smallest text: at least 8 CSS px where the page shows the figure (see _svg)
    if narrow:
        fig, ax = figure(figsize=(4.6, 0.5 * n + 1.3))
        box_x, box_w, box_h, visit_x, x_max = 2.15, 2.8, 0.78, 0.3, 7.0
    else:
        fig, ax = figure(figsize=(8.6, 0.42 * n + 1.0))
        box_x, box_w, box_h, visit_x, x_max = 3.0, 3.4, 0.74, 0.45, 9.9
    left, right = box_x - box_w / 2, box_x + box_w / 2
    for k, node in enumerate(graph.nodes):
        y = float(k)
        patch = FancyBboxPatch((left, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02,rounding_size=0.12",
                               facecolor="#eef1fb", edgecolor="0.35", linewidth=0.9)
        patch.set_gid(f"{NODE_ID}-{k}")
        ax.add_patch(patch)
        ax.text(left + 0.08, y + 0.15, f"#{k} {node.op.name}", ha="left", va="center", fontsize=text + (-0.5 if narrow else 0.5),
                weight="bold")
        inputs = "in: " + ", ".join(_input_label(graph, x) for x in node.inputs)
        ax.text(left + 0.08, y - 0.19, inputs, ha="left", va="center", fontsize=text, color="0.3")
        if not narrow:  # no room beside the inputs on a phone; the page's table gives every shape
            ax.text(right - 0.08, y - 0.19, _shape(node.outputs[0].shape), ha="right", va="center", fontsize=text,
                    color="0.3")
        saves, keeps = _saved_summary(node)
        ax.text(right + 0.12, y + (0.15 if keeps else 0.0), saves, ha="left", va="center", fontsize=text)
        if keeps:
            ax.text(right + 0.12, y - 0.19, keeps, ha="left", va="center", fontsize=text, color="0.4")
        label = ax.text(visit_x, y, str(order[k]), ha="center", va="center", fontsize=text, color="white",
                        weight="bold", bbox={"boxstyle": "circle,pad=0.25", "facecolor": BACKWARD_COLOR,
                                             "edgecolor": "none"})
        label.set_gid(f"visit-{k}")
    for k, node in enumerate(graph.nodes):
        for x in node.inputs:
            if getattr(x, "node", None) is None:
                continue
            j = graph.index(x.node)
            if j == k - 1:
                arrow = FancyArrowPatch((box_x, j + box_h / 2), (box_x, k - box_h / 2), arrowstyle="-|>",
                                        mutation_scale=9, color=FORWARD_COLOR, linewidth=1.0, shrinkA=0, shrinkB=0)
            else:  # a value used again further up: a residual connection, drawn to the left of the boxes
                arrow = FancyArrowPatch((left, j), (left, k), arrowstyle="-|>", mutation_scale=9,
                                        color=FORWARD_COLOR, linewidth=1.0, connectionstyle="arc3,rad=-0.35",
                                        shrinkA=0, shrinkB=0)
            arrow.set_gid(f"edge-{j}-{k}")
            ax.add_patch(arrow)
    ax.text(visit_x, n - 0.3, "backward\nvisits", ha="center", va="bottom", fontsize=text, color=BACKWARD_COLOR)
    ax.text(box_x, n - 0.3, "node (forward: up)" if narrow else "node, in creation order (forward: up)",
            ha="center", va="bottom", fontsize=text, color=FORWARD_COLOR)
    ax.text(right + 0.12, n - 0.3, "kept for its\nbackward rule" if narrow else "what it keeps for its backward rule",
            ha="left", va="bottom", fontsize=text)
    ax.set_title(title.replace(": ", ":\n") if narrow else title, fontsize=10.5)
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(-0.7, n + 0.9)
    ax.axis("off")
    return to_svg(fig)


@register("autodiff_graph", narrow=True)
def autodiff_graph() -> str:
    """The recorded graph of the chapter's model (untrained, seed 0) on ``Max(1,6,2)``."""
    config = TransformerConfig()
    loss, _, graph = record_transformer(init_params(config), [tokenize(EXAMPLE)], [answer(EXAMPLE)], config)
    visited = backward(loss, retain_graph=True)  # retained: the drawing reads the saved tensors afterwards
    return draw_graph(graph, visited, f"{EXAMPLE} through the chapter's model: the graph the engine records")


# ----------------------------------------------------------------------------- the cost of a Jacobian


def draw_cost(sweep: dict, fixed: int) -> str:
    """Two log-log panels: wide Jacobians (``m`` fixed, ``n`` grows) and tall ones (``n`` fixed, ``m`` grows)."""
    fig, axes = figure(1, 2, figsize=(8.4, 3.7), sharey=True, narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 7.0)})
    panels = (("wide", "n", rf"inputs $n$ (outputs $m = {fixed}$)", rf"$m = {fixed}$ outputs, $n$ inputs"),
              ("tall", "m", rf"outputs $m$ (inputs $n = {fixed}$)", rf"$n = {fixed}$ inputs, $m$ outputs"))
    for ax, (key, size, xlabel, title) in zip(axes, panels):
        rows = sweep[key]
        sizes = np.array([row[size] for row in rows])
        for mode, color, label in (("forward", "#2166ac", r"forward mode: $n$ JVPs"),
                                   ("reverse", "#b2182b", r"reverse mode: $m$ VJPs")):
            line, = ax.plot(sizes, [row[mode] for row in rows], "o-", color=color, markersize=3.5, linewidth=1.6,
                            label=label)
            line.set_gid(f"cost-{key}-{mode}")
        line, = ax.plot(sizes, [row["f"] for row in rows], ":", color="0.5", linewidth=1.2,
                        label=r"one evaluation of $f$")
        line.set_gid(f"cost-{key}-f")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        ax.set_xticks(sizes, [str(s) for s in sizes], fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
    for ax in axes if is_narrow() else axes[:1]:
        ax.set_ylabel(r"flops to build the Jacobian $J \in ℝ^{m \times n}$")
    axes[0].legend(frameon=False, fontsize=9, loc="upper left")
    return to_svg(fig)


@register("autodiff_cost", narrow=True)
def autodiff_cost() -> str:
    """Engine-counted flops of ``jacfwd`` and ``jacrev`` of the chapter's small network."""
    return draw_cost(_cost_sweep(), COST_FIXED)


@functools.cache  # once per process: both layouts draw the same sweep
def _cost_sweep() -> dict:
    return cost_sweep(COST_SIZES, COST_FIXED)


# ----------------------------------------------------------------------------- graph depth


DEPTH_STYLES = (
    ("rnn", "tanh RNN", "#d95f02", "o-"),
    ("lstm", "LSTM, through the cell state", "#1b9e77", "s-"),
    ("lstm_hidden", "LSTM, hidden state only", "#66c2a5", "s--"),
    ("transformer", "transformer block", "#7570b3", "^-"),
)


DEPTH_SEEDS = range(10)  # the seeds the page measures the gradients over


def draw_depth(paths: dict, norms: list[dict]) -> str:
    """Left: ops on the shortest path from the loss to ``x_t``. Right: ``||dL/dx_t||`` relative to the
    last position, one dict of ``[T]`` arrays per seed: the median as a line, the range as a band."""
    fig, (left, right) = figure(1, 2, figsize=(8.8, 3.8), narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 7.4)})
    for key, label, color, style in DEPTH_STYLES:
        ops_count = paths[key]["ops"]
        positions = np.arange(1, len(ops_count) + 1)
        line, = left.plot(positions, ops_count, style, color=color, markersize=3, linewidth=1.4, label=label)
        line.set_gid(f"depth-{key}")
        if key in norms[0]:
            relative = np.array([seed[key] / seed[key][-1] for seed in norms])  # [seed, position]
            band = right.fill_between(positions, relative.min(axis=0), relative.max(axis=0), color=color, alpha=0.2,
                                      linewidth=0)
            band.set_gid(f"gradient-{key}-band")
            line, = right.plot(positions, np.median(relative, axis=0), style, color=color, markersize=3,
                               linewidth=1.4, label=label)
            line.set_gid(f"gradient-{key}")
    left.set_xlabel(r"input position $t$ (the loss reads position $T$)")
    left.set_ylabel("operations on the shortest path")
    left.set_title("path length from the loss back to $x_t$")
    left.set_ylim(bottom=0)
    left.legend(frameon=False, fontsize=9, loc="upper right")
    right.set_yscale("log")
    _log_axis(right.yaxis)
    right.set_xlabel(r"input position $t$")
    right.set_ylabel(r"$\|\partial L / \partial x_t\| \;/\; \|\partial L / \partial x_T\|$")
    right.set_title(f"gradient reaching $x_t$ at initialisation:\nmedian and range over {len(norms)} seeds")
    return to_svg(fig)


@register("autodiff_depth", narrow=True)
def autodiff_depth() -> str:
    """Path lengths in recorded graphs and measured gradient norms, over ``DEPTH_STEPS`` positions and
    the seeds ``DEPTH_SEEDS``."""
    return draw_depth(*_depth_data())


@functools.cache  # once per process: both layouts draw the same measurements
def _depth_data() -> tuple[dict, list[dict]]:
    paths = {key: path_lengths(key, DEPTH_STEPS) for key, *_ in DEPTH_STYLES}
    return paths, [gradient_norms_by_position(DEPTH_STEPS, seed=seed) for seed in DEPTH_SEEDS]


# ----------------------------------------------------------------------------- memory of attention


MEMORY_HEADS, MEMORY_HEAD_WIDTH = 4, 16


def draw_memory(saved: dict, n_heads: int, d_head: int) -> str:
    """Bytes saved for backward against sequence length, log-log."""
    fig, ax = figure(figsize=(5.8, 3.9), narrow={"figsize": (4.6, 4.2)})
    n = saved["lengths"]
    for key, label, color, style in (
            ("standard", r"attention: saves $Q, K, V, A$", "#b2182b", "o-"),
            ("weights", r"of which $A$ ($n \times n$ per head)", "#ef8a62", "o--"),
            ("efficient", r"memory-efficient: saves $Q, K, V, O, \mathrm{lse}$", "#2166ac", "s-")):
        line, = ax.plot(n, saved[key], style, color=color, markersize=3.5, linewidth=1.6, label=label)
        line.set_gid(f"memory-{key}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _log_axis(ax.yaxis)
    ax.set_xticks(n, [str(v) for v in n], fontsize=9)
    ax.set_xlabel(r"sequence length $n$")
    ax.set_ylabel("bytes saved for the backward pass")
    ax.set_title(f"one attention layer, {n_heads} heads of width {d_head},{chr(10) if is_narrow() else ' '}float64")
    ax.legend(frameon=False, fontsize=9, loc="upper left")
    return to_svg(fig)


@register("autodiff_attention_memory", narrow=True)
def autodiff_attention_memory() -> str:
    """:func:`~derivations.experiments.autodiff.attention_saved_bytes` over ``MEMORY_LENGTHS``."""
    saved = attention_saved_bytes(MEMORY_LENGTHS, d_head=MEMORY_HEAD_WIDTH, n_heads=MEMORY_HEADS)
    return draw_memory(saved, MEMORY_HEADS, MEMORY_HEAD_WIDTH)
