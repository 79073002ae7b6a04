"""Figures of the whole-transformer chapter.

- ``transformer_backward_diagram``: the structure of the backward pass (no numbers).
- ``transformer_training_curves``: training and held-out loss, held-out accuracy.
- ``transformer_attention``: attention weights of the chapter's example before and after training.
- ``transformer_gradient_norms``: per-stage and per-parameter-group gradient norms at three steps of
  the run, with the spread over initialisations at step 0.

The last three read the cached training run (:func:`~derivations.reference.train.load_or_train`),
the same run the page reads, so the figures and the page's numbers come from one computation.
Each is a registered maker around a ``draw_*`` function that takes the run, so tests can draw
them from a small run.

Text is set in matplotlib's mathtext where it is math (``$\\partial L/\\partial h$``), never as
ASCII stand-ins. The diagram is drawn 5 inches wide with text of at least 11 points, so that on a
phone, where the page shows it about 360 pixels wide, its text stays about 11 pixels tall (its
sub- and superscripts about 8).
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..experiments.transformer import SEEDS, parameter_group, probe_gradient_norms
from ..reference.model import stage_names
from ..reference.task import VOCAB, tokenize
from ..reference.train import TrainingRun, load_or_train
from . import register
from ._svg import figure, is_narrow, to_svg

FORWARD_COLOR = "0.45"
BACKWARD_COLOR = "#c0392b"
STEP_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
SPREAD_COLOR = "0.82"

#: Width of the diagram in inches, and its smallest text in points (see the module docstring).
DIAGRAM_WIDTH = 5.0
DIAGRAM_TEXT = 11.0


# ----------------------------------------------------------------------------- the diagram


def _box(ax, x, y, w, h, text, face="#eef1fb", fontsize=DIAGRAM_TEXT + 0.5, gid=None):
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=face, edgecolor="0.35", linewidth=1.0)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, linespacing=1.35)
    if gid:
        patch.set_gid(gid)


def _arrow(ax, start, end, color, gid=None):
    arrow = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, linewidth=1.4,
                            shrinkA=0, shrinkB=0)
    ax.add_patch(arrow)
    if gid:
        arrow.set_gid(gid)


# Rows of the diagram, bottom to top: (y, height, text, face, width, backward note).
_ROWS = [
    (0.45, 0.42, "Max ( 1 , 6 , 2 )", "#ffffff", 2.2, None),
    (1.35, 0.66, "embedding\n$x_0 = E[\\mathrm{tokens}] + P$", "#eef1fb", 2.2,
     "scatter-add into the\nrows of $E$; $P$ gets none"),
    (2.35, 0.62, "block 0\n(the same as block 1)", "#dfe6f7", 2.2, "the same steps again"),
    (3.75, 0.66, "multi-head attention\n$W_q, W_k, W_v, W_o$", "#eef1fb", 2.2,
     "per head; $\\partial L/\\partial X$ sums\nthe $Q$, $K$, $V$ paths"),
    (4.55, 0.34, "+", "#ffffff", 1.5, "copies it to both inputs"),
    (5.25, 0.62, "LayerNorm 1\n$\\gamma_1, \\beta_1$", "#eef1fb", 2.2, "LayerNorm backward"),
    (6.55, 0.66, "FFN: $W_1, b_1$,\nReLU, $W_2, b_2$", "#eef1fb", 2.2, "ReLU zeroes it\nwhere $u \\leq 0$"),
    (7.35, 0.34, "+", "#ffffff", 1.5, "copies it to both inputs"),
    (8.05, 0.62, "LayerNorm 2\n$\\gamma_2, \\beta_2$", "#eef1fb", 2.2, "LayerNorm backward"),
    (9.15, 0.62, "last position\n$h$ (one row of $x$)", "#eef1fb", 2.2, "zero at every\nother position"),
    (10.05, 0.66, "output head\n$z = h\\,W_{\\mathrm{out}} + b_{\\mathrm{out}}$", "#eef1fb", 2.2,
     "$\\partial L/\\partial h = (p - y)\\,W_{\\mathrm{out}}^{\\top}$"),
    (10.95, 0.62, "softmax, cross-entropy\n$L = -\\log p^{y}$", "#fbeeee", 2.2, "$\\partial L/\\partial z = p - y$"),
]
_FORKS = ((3.05, 4.55), (5.9, 7.35))  # (where x feeds a branch and the skip, the "+" the skip joins)


@register("transformer_backward_diagram")
def transformer_backward_diagram() -> str:
    """The model, with its last block opened up: forward upward in grey, backward downward in red."""
    top = 11.95
    fig, ax = figure(figsize=(DIAGRAM_WIDTH, top * 0.93))
    x, fwd, bwd = 1.45, 0.95, 1.95  # column centre; forward and backward arrows
    skip_f, skip_b, note_x = 0.12, 2.78, 2.92
    frame = FancyBboxPatch((0.02, 2.82), 2.86, 5.93, boxstyle="round,pad=0.0,rounding_size=0.1",
                           facecolor="none", edgecolor="0.7", linewidth=1.0, linestyle="--")
    ax.add_patch(frame)
    ax.text(0.1, 8.69, "block 1", ha="left", va="top", fontsize=DIAGRAM_TEXT, color="0.35")
    for y, height, text, face, width, note in _ROWS:
        _box(ax, x, y, width, height, text, face=face, fontsize=DIAGRAM_TEXT + (3 if text == "+" else 0.5))
        if note:
            ax.text(note_x, y, note, ha="left", va="center", fontsize=DIAGRAM_TEXT, color=BACKWARD_COLOR,
                    linespacing=1.3)
    for k, ((y0, h0, *_), (y1, h1, *_)) in enumerate(zip(_ROWS[:-1], _ROWS[1:])):
        _arrow(ax, (fwd, y0 + h0 / 2), (fwd, y1 - h1 / 2), FORWARD_COLOR)
        if k > 0:  # token ids are integers: the gradient stops at the embedding table
            _arrow(ax, (bwd, y1 - h1 / 2), (bwd, y0 + h0 / 2), BACKWARD_COLOR)
    for fork, join in _FORKS:  # residual paths: forward around the left, backward around the right
        ax.plot([fwd, skip_f, skip_f], [fork, fork, join], color=FORWARD_COLOR, linewidth=1.4)
        _arrow(ax, (skip_f, join), (x - 0.75, join), FORWARD_COLOR)
        ax.plot([fwd], [fork], "o", color=FORWARD_COLOR, markersize=5)
        ax.plot([x + 0.75, skip_b, skip_b], [join, join, fork], color=BACKWARD_COLOR, linewidth=1.4)
        _arrow(ax, (skip_b, fork), (bwd, fork), BACKWARD_COLOR)
        ax.plot([bwd], [fork], "o", color=BACKWARD_COLOR, markersize=5)
        ax.text(note_x, fork, "the two paths add", ha="left", va="center", fontsize=DIAGRAM_TEXT,
                color=BACKWARD_COLOR)
    handles = [ax.plot([], [], color=FORWARD_COLOR, linewidth=2)[0],
               ax.plot([], [], color=BACKWARD_COLOR, linewidth=2)[0]]
    ax.legend(handles, ["forward", "backward (the gradient)"], loc="upper center", bbox_to_anchor=(0.5, 1.0),
              ncols=2, frameon=False, fontsize=DIAGRAM_TEXT)
    ax.set_xlim(0, DIAGRAM_WIDTH)
    ax.set_ylim(0.1, top)
    ax.axis("off")
    return to_svg(fig)


# ----------------------------------------------------------------------------- from the training run


def draw_training_curves(run: TrainingRun) -> str:
    """Training-batch loss per step, held-out loss and held-out accuracy at the evaluation steps."""
    fig, (left, right) = figure(1, 2, figsize=(9.0, 3.8), narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 7.2)})
    steps = np.arange(len(run.losses))
    line, = left.plot(steps, run.losses, color="#9fb3d9", linewidth=0.9, label="training batch (every step)")
    line.set_gid("training-loss")
    line, = left.plot(run.eval_steps, run.held_out_loss, "o-", color="#1f3f8f", markersize=3, linewidth=1.4,
                      label="held-out set")
    line.set_gid("held-out-loss")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("mean cross-entropy $L$ (log scale)")
    left.set_title("loss")
    left.legend(frameon=False)
    line, = right.plot(run.eval_steps, 100 * run.held_out_accuracy, "o-", color="#1b9e77", markersize=3,
                       linewidth=1.4)
    line.set_gid("held-out-accuracy")
    right.axhline(100 / 10, color="0.6", linewidth=0.8, linestyle=":")
    right.text(run.eval_steps[-1], 100 / 10 + 2, "guessing a digit (10%)", ha="right", va="bottom", color="0.4")
    right.set_ylim(0, 102)
    right.set_xlabel("step")
    right.set_ylabel("held-out accuracy (%)")
    right.set_title(f"accuracy on {run.settings.n_held_out:,} unseen inputs")
    s = run.settings
    fig.suptitle(f"one training run (seeds: initialisation {s.init_seed},{chr(10) if is_narrow() else ' '}"
                 f"split {s.data_seed}, batches {s.batch_seed})", fontsize=10, color="0.35")
    return to_svg(fig)


def draw_attention(run: TrainingRun) -> str:
    """Attention weights of the example, every block and head, before and after training."""
    labels = [VOCAB[t] for t in tokenize(run.settings.example)]
    n_layers, n_heads = run.attention_before.shape[:2]
    rows = [("before", run.attention_before), ("after", run.attention_after)]
    # On a phone, two heads side by side: each (training state, block) takes n_heads / 2 rows.
    per_row = 2 if is_narrow() and n_heads % 2 == 0 else n_heads
    fold = n_heads // per_row
    fig, axes = figure(2 * n_layers * fold, per_row, figsize=(1.9 * per_row + 1.6, 1.9 * 2 * n_layers * fold + 0.6),
                       squeeze=False, sharex=True, sharey=True)
    image = None
    for r, (when, weights) in enumerate(rows):
        for l in range(n_layers):
            for head in range(n_heads):
                ax = axes[(r * n_layers + l) * fold + head // per_row, head % per_row]
                image = ax.imshow(weights[l, head], cmap="Blues", vmin=0.0, vmax=1.0)
                image.set_gid(f"attention-{when}-block{l}-head{head}")
                ax.set_xticks(range(len(labels)), labels, fontsize=10)
                ax.set_yticks(range(len(labels)), labels, fontsize=10)
                ax.tick_params(length=0)
                if r * n_layers + l == 0 or fold > 1:
                    ax.set_title(f"head {head}", fontsize=11)
                if head % per_row == 0:
                    ax.set_ylabel(f"{when} training\nblock {l}: query", fontsize=11)
                if (r * n_layers + l) * fold + head // per_row == 2 * n_layers * fold - 1:
                    ax.set_xlabel("key", fontsize=11)
    fig.colorbar(image, ax=axes, shrink=0.5 / fold, label="attention weight")
    return to_svg(fig)


def param_group_norms(run: TrainingRun) -> dict[str, np.ndarray]:
    """Gradient norm of each parameter group (``embed``, ``block{l}.attn``, ``block{l}.ln1``, ..., ``head``)
    at the probe steps: the square root of the summed squares of its parameters' norms."""
    groups: dict[str, np.ndarray] = {}
    for name, norms in run.param_grad_norms.items():
        group = parameter_group(name)
        groups[group] = groups.get(group, 0.0) + norms**2
    return {g: np.sqrt(v) for g, v in groups.items()}


def draw_gradient_norms(run: TrainingRun, spread: tuple[dict, dict] | None = None) -> str:
    """Per-stage activation-gradient norms and per-group parameter-gradient norms at the probe steps.

    ``spread``, from :func:`~derivations.experiments.transformer.probe_gradient_norms`, is the same
    measurement at initialisation for several seeds, drawn as a grey band (smallest to largest).
    """
    stages = stage_names(run.settings.config)[::-1]  # backward order, top to bottom
    groups = param_group_norms(run)
    group_names = list(groups)[::-1]
    heights = (len(stages), len(group_names))
    fig, (left, right) = figure(1, 2, figsize=(10.0, 0.26 * max(heights) + 1.9),
                                gridspec_kw={"width_ratios": [1.25, 1.0]},
                                narrow={"nrows": 2, "ncols": 1, "figsize": (4.6, 0.24 * sum(heights) + 3.2),
                                        "gridspec_kw": {"height_ratios": list(heights)}})
    if spread is not None:
        for ax, names, values, gid in ((left, stages, spread[0], "stage-norms-spread"),
                                       (right, group_names, spread[1], "param-norms-spread")):
            lo = [np.min(values[n]) for n in names]
            hi = [np.max(values[n]) for n in names]
            band = ax.fill_betweenx(range(len(names)), lo, hi, color=SPREAD_COLOR, linewidth=0,
                                    label=f"step 0, {len(values[names[0]])} seeds")
            band.set_gid(gid)
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
    left.set_yticks(range(len(stages)), stages, fontsize=9)
    right.set_yticks(range(len(group_names)), group_names, fontsize=9)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.grid(axis="x", color="0.9", linewidth=0.6)
    left.set_xlabel("$\\Vert\\partial L/\\partial x\\Vert$ at each stage $x$ (log scale)")
    right.set_xlabel("$\\Vert\\partial L/\\partial \\theta\\Vert$ of each group $\\theta$ (log scale)")
    left.set_title("activations, in backward order", fontsize=10)
    right.set_title("parameter groups", fontsize=10)
    left.legend(frameon=False, loc="center", bbox_to_anchor=(0.5, 0.5), fontsize=9, title="parameters at")
    return to_svg(fig)


@register("transformer_training_curves", narrow=True)
def transformer_training_curves() -> str:
    return draw_training_curves(load_or_train())


@register("transformer_attention", narrow=True)
def transformer_attention() -> str:
    return draw_attention(load_or_train())


@register("transformer_gradient_norms", narrow=True)
def transformer_gradient_norms() -> str:
    run = load_or_train()
    return draw_gradient_norms(run, _spread_at_initialisation(run.settings))


@functools.cache  # once per process: both layouts draw the same spread
def _spread_at_initialisation(settings) -> tuple[dict, dict]:
    return probe_gradient_norms(settings, SEEDS)
