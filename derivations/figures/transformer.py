"""Figures of the whole-transformer chapter.

- ``transformer_backward_diagram``: the structure of the backward pass (no numbers).
- ``transformer_training_curves``: training and held-out loss, held-out accuracy.
- ``transformer_attention``: attention weights of the chapter's example before and after training.
- ``transformer_gradient_norms``: per-stage and per-parameter-group gradient norms, early and late.

The last three read the cached training run (:func:`~derivations.reference.train.load_or_train`),
the same run the page reads, so the figures and the page's numbers come from one computation.
Each is a registered maker around a ``draw_*`` function that takes the run, so tests can draw
them from a small run.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..reference.model import stage_names
from ..reference.task import VOCAB, tokenize
from ..reference.train import TrainingRun, load_or_train
from . import register
from ._svg import figure, to_svg

FORWARD_COLOR = "0.45"
BACKWARD_COLOR = "#c0392b"
STEP_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")


# ----------------------------------------------------------------------------- the diagram


def _box(ax, x, y, w, h, text, face="#eef1fb", fontsize=9.5, gid=None):
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=face, edgecolor="0.35", linewidth=1.0)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    if gid:
        patch.set_gid(gid)


def _arrow(ax, start, end, color, label=None, label_side="right", style="-|>", rad=0.0, fontsize=8.5, gid=None):
    arrow = FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=color, linewidth=1.3,
                            connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0)
    ax.add_patch(arrow)
    if gid:
        arrow.set_gid(gid)
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        dx = 0.08 if label_side == "right" else -0.08
        ax.text(mx + dx, my, label, ha="left" if label_side == "right" else "right", va="center",
                fontsize=fontsize, color=color)


def _stack(ax):
    """Left panel: the model as a stack; forward up (grey, left), backward down (red, right)."""
    x, w, h = 1.75, 2.75, 0.52
    rows = [
        (0.6, "tokens   Max ( 1 , 6 , 2 )", "#ffffff"),
        (1.6, "embedding   E[tokens] + PE", "#eef1fb"),
        (2.6, "block 0", "#dfe6f7"),
        (3.6, "block 1", "#dfe6f7"),
        (4.6, "last position   h = x[:, −1]", "#eef1fb"),
        (5.6, "output head   z = h W_out + b_out", "#eef1fb"),
        (6.6, "softmax + cross-entropy → L", "#fbeeee"),
    ]
    for y, text, face in rows:
        _box(ax, x, y, w, h, text, face=face)
    grads = ["", "dE: scatter-add (PE gets none)", "dx [T × d]", "dx [T × d]",
             "zeros except the last position", "dh = (p − y) W_outᵀ", "p − y"]
    for (y0, _, _), (y1, _, _), label in zip(rows[:-1], rows[1:], grads[1:]):
        _arrow(ax, (x - 0.55, y0 + h / 2), (x - 0.55, y1 - h / 2), FORWARD_COLOR)
        _arrow(ax, (x + 0.55, y1 - h / 2), (x + 0.55, y0 + h / 2), BACKWARD_COLOR, label=label)
    ax.text(x, 7.3, "the model", ha="center", fontsize=11, weight="bold")


def _block(ax):
    """Right panel: one post-norm block; forward up the left column, backward down the right one."""
    x, w = 6.65, 2.3
    fwd, bwd = x - 0.5, x + 0.5  # the two arrow columns
    skip_f, skip_b = x - 1.55, x + 1.55  # the residual paths, forward and backward
    label_x = skip_b + 0.15
    y_in, y_attn, y_add1, y_ln1, y_ffn, y_add2, y_ln2, y_out = 0.55, 1.55, 2.45, 3.25, 4.3, 5.3, 6.1, 6.9
    boxes = [  # (y, height, text, face)
        (y_attn, 0.55, "multi-head attention\nW_q, W_k, W_v, W_o", "#eef1fb"),
        (y_add1, 0.34, "+", "#ffffff"),
        (y_ln1, 0.42, "LayerNorm 1   γ₁, β₁", "#eef1fb"),
        (y_ffn, 0.75, "FFN\nW1, b1 → ReLU → W2, b2", "#eef1fb"),
        (y_add2, 0.34, "+", "#ffffff"),
        (y_ln2, 0.42, "LayerNorm 2   γ₂, β₂", "#eef1fb"),
    ]
    ax.text(x, y_in - 0.1, "x  (block input)", ha="center", va="center", fontsize=9.5)
    ax.text(x, y_out + 0.1, "x  (block output)", ha="center", va="center", fontsize=9.5)
    for y, height, text, face in boxes:
        _box(ax, x, y, w if text != "+" else 1.5, height, text, face=face, fontsize=12 if text == "+" else 9.5)
    edges = [y_in + 0.05] + [v for y, height, _, _ in boxes for v in (y - height / 2, y + height / 2)] + [y_out - 0.05]
    for lo, hi in zip(edges[0::2], edges[1::2]):
        _arrow(ax, (fwd, lo), (fwd, hi), FORWARD_COLOR)
        _arrow(ax, (bwd, hi), (bwd, lo), BACKWARD_COLOR)
    # residual paths: forward from the fork below each branch to the "+"; backward the other way
    for fork, add in ((y_in + 0.3, y_add1), (y_ln1 + 0.36, y_add2)):
        ax.plot([fwd, skip_f, skip_f], [fork, fork, add], color=FORWARD_COLOR, linewidth=1.3)
        _arrow(ax, (skip_f, add), (x - 0.75, add), FORWARD_COLOR)
        ax.plot([fwd], [fork], "o", color=FORWARD_COLOR, markersize=4)
        ax.plot([x + 0.75, skip_b, skip_b], [add, add, fork], color=BACKWARD_COLOR, linewidth=1.3)
        _arrow(ax, (skip_b, fork), (bwd, fork), BACKWARD_COLOR)
        ax.plot([bwd], [fork], "o", color=BACKWARD_COLOR, markersize=4)
        ax.text(skip_f - 0.1, (fork + add) / 2, "residual", rotation=90, ha="right", va="center", fontsize=8.5,
                color=FORWARD_COLOR)
    notes = [
        (y_ln2, "LayerNorm backward: dx, dγ₂, dβ₂"),
        (y_add2, "+ copies the gradient to both inputs"),
        (y_ffn, "FFN backward: ReLU zeroes it where z ≤ 0"),
        (y_ln1 + 0.36, "the two paths add"),
        (y_ln1 - 0.02, "LayerNorm backward: dx, dγ₁, dβ₁"),
        (y_add1, "+ copies the gradient to both inputs"),
        (y_attn, "per head; dX sums the Q, K, V paths"),
        (y_in + 0.3, "the two paths add"),
    ]
    for y, text in notes:
        ax.text(label_x, y, text, ha="left", va="center", fontsize=8.5, color=BACKWARD_COLOR)
    ax.text(x, 7.3, "one block (post-norm)", ha="center", fontsize=11, weight="bold")


@register("transformer_backward_diagram")
def transformer_backward_diagram() -> str:
    """The model and one block, forward in grey and backward in red."""
    fig, ax = figure(figsize=(11.5, 6.6))
    _stack(ax)
    _block(ax)
    ax.plot([4.1, 4.1], [0.3, 7.0], color="0.85", linewidth=1.0)
    ax.set_xlim(0.3, 11.3)
    ax.set_ylim(0.2, 7.5)
    ax.axis("off")
    handles = [ax.plot([], [], color=FORWARD_COLOR, linewidth=1.5)[0],
               ax.plot([], [], color=BACKWARD_COLOR, linewidth=1.5)[0]]
    ax.legend(handles, ["forward", "backward (gradients)"], loc="lower right", frameon=False, fontsize=9)
    return to_svg(fig)


# ----------------------------------------------------------------------------- from the training run


def draw_training_curves(run: TrainingRun) -> str:
    """Training-batch loss per step, held-out loss and held-out accuracy at the evaluation steps."""
    fig, (left, right) = figure(1, 2, figsize=(9.0, 3.6))
    steps = np.arange(len(run.losses))
    line, = left.plot(steps, run.losses, color="#9fb3d9", linewidth=0.9, label="training batch")
    line.set_gid("training-loss")
    line, = left.plot(run.eval_steps, run.held_out_loss, "o-", color="#1f3f8f", markersize=3, linewidth=1.4,
                      label="held-out set")
    line.set_gid("held-out-loss")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("mean cross-entropy (log scale)")
    left.set_title("loss")
    left.legend(frameon=False)
    line, = right.plot(run.eval_steps, 100 * run.held_out_accuracy, "o-", color="#1b9e77", markersize=3,
                       linewidth=1.4)
    line.set_gid("held-out-accuracy")
    right.axhline(100 / 10, color="0.6", linewidth=0.8, linestyle=":")
    right.text(run.eval_steps[-1], 100 / 10 + 2, "guessing a digit (10 %)", ha="right", va="bottom", fontsize=8.5,
               color="0.4")
    right.set_ylim(0, 102)
    right.set_xlabel("step")
    right.set_ylabel("held-out accuracy (%)")
    right.set_title(f"accuracy on {run.settings.n_held_out} unseen inputs")
    return to_svg(fig)


def draw_attention(run: TrainingRun) -> str:
    """Attention weights of the example, every block and head, before and after training."""
    labels = [VOCAB[t] for t in tokenize(run.settings.example)]
    n_layers, n_heads = run.attention_before.shape[:2]
    rows = [("before", run.attention_before), ("after", run.attention_after)]
    fig, axes = figure(2 * n_layers, n_heads, figsize=(2.0 * n_heads + 1.2, 2.05 * 2 * n_layers + 0.4),
                       squeeze=False)
    image = None
    for r, (when, weights) in enumerate(rows):
        for l in range(n_layers):
            for h in range(n_heads):
                ax = axes[r * n_layers + l, h]
                image = ax.imshow(weights[l, h], cmap="Blues", vmin=0.0, vmax=1.0)
                image.set_gid(f"attention-{when}-block{l}-head{h}")
                ax.set_xticks(range(len(labels)), labels, fontsize=8)
                ax.set_yticks(range(len(labels)), labels, fontsize=8)
                ax.tick_params(length=0)
                if r * n_layers + l == 0:
                    ax.set_title(f"head {h}", fontsize=10)
                if h == 0:
                    ax.set_ylabel(f"{when} training\nblock {l}   (query)", fontsize=9)
                if r * n_layers + l == 2 * n_layers - 1:
                    ax.set_xlabel("key", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.5, label="attention weight")
    return to_svg(fig)


def _param_group(name: str) -> str:
    if name in ("W_out", "b_out"):
        return "head"
    if name.startswith("block"):
        block, part = name.split(".")[:2]
        return f"{block}.{part}"
    return name.split(".")[0]


def param_group_norms(run: TrainingRun) -> dict[str, np.ndarray]:
    """Gradient norm of each parameter group (``embed``, ``block{l}.attn``, ``block{l}.ln1``, ..., ``head``)
    at the probe steps: the square root of the summed squares of its parameters' norms."""
    groups: dict[str, np.ndarray] = {}
    for name, norms in run.param_grad_norms.items():
        group = _param_group(name)
        groups[group] = groups.get(group, 0.0) + norms**2
    return {g: np.sqrt(v) for g, v in groups.items()}


def draw_gradient_norms(run: TrainingRun) -> str:
    """Per-stage activation-gradient norms and per-group parameter-gradient norms at the probe steps."""
    stages = stage_names(run.settings.config)[::-1]  # backward order, top to bottom
    groups = param_group_norms(run)
    group_names = list(groups)[::-1]
    heights = (len(stages), len(group_names))
    fig, (left, right) = figure(1, 2, figsize=(10.0, 0.24 * max(heights) + 1.6),
                                gridspec_kw={"width_ratios": [1.25, 1.0]})
    for k, step in enumerate(run.probe_steps):
        color = STEP_COLORS[k % len(STEP_COLORS)]
        values = [run.stage_grad_norms[s][k] for s in stages]
        line, = left.plot(values, range(len(stages)), "o-", color=color, markersize=4, linewidth=1.0,
                          label=f"step {step}")
        line.set_gid(f"stage-norms-step{step}")
        values = [groups[g][k] for g in group_names]
        line, = right.plot(values, range(len(group_names)), "s-", color=color, markersize=4, linewidth=1.0,
                           label=f"step {step}")
        line.set_gid(f"param-norms-step{step}")
    left.set_yticks(range(len(stages)), [f"dL/d {s}" for s in stages], fontsize=8)
    right.set_yticks(range(len(group_names)), group_names, fontsize=8)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.grid(axis="x", color="0.9", linewidth=0.6)
    left.set_xlabel("norm of the gradient (log scale)")
    right.set_xlabel("norm of the parameter gradient (log scale)")
    left.set_title("activations, in backward order", fontsize=10)
    right.set_title("parameter groups", fontsize=10)
    left.legend(frameon=False, loc="center", fontsize=8.5, title="parameters at")
    return to_svg(fig)


@register("transformer_training_curves")
def transformer_training_curves() -> str:
    return draw_training_curves(load_or_train())


@register("transformer_attention")
def transformer_attention() -> str:
    return draw_attention(load_or_train())


@register("transformer_gradient_norms")
def transformer_gradient_norms() -> str:
    return draw_gradient_norms(load_or_train())
