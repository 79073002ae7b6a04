"""The whole-transformer chapter's figures: deterministic, complete, legible on a phone, math set as math.

Drawn from a tiny training run; the chapter's full run is never started here.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from derivations.experiments.transformer import probe_gradient_norms
from derivations.figures import FIGURES
from derivations.figures import transformer as figures
from derivations.reference.model import TransformerConfig
from derivations.reference.train import TrainingRun, TrainingSettings, train

TINY = TrainingSettings(
    config=TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1),
    n_train=400, n_held_out=100, batch_size=16, steps=60, lr=3e-3, eval_every=20, probe_size=16,
    probe_steps=(0, 30, 60), timing_repeats=2,
)
PHONE_WIDTH = 360  # CSS pixels a phone gives a figure that spans the page


@pytest.fixture(scope="module")
def tiny_run() -> TrainingRun:
    return train(TINY)


@pytest.fixture(scope="module")
def tiny_spread():
    return probe_gradient_norms(TINY, seeds=(0, 1, 2))


def texts(svg: str) -> list[str]:
    """The text of every ``<text>`` element (mathtext writes one ``<tspan>`` per glyph)."""
    return [re.sub(r"<[^>]+>", "", t) for t in re.findall(r"<text\b.*?</text>", svg, re.S)]


def font_sizes_on_a_phone(svg: str) -> list[float]:
    """Every font size of ``svg`` in pixels when the figure is shown ``PHONE_WIDTH`` pixels wide."""
    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))
    return [float(size) * PHONE_WIDTH / width for size in re.findall(r"font-size: ([\d.]+)px", svg)]


def test_every_chapter_figure_is_registered():
    for name in ("transformer_backward_diagram", "transformer_training_curves", "transformer_attention",
                 "transformer_gradient_norms"):
        assert name in FIGURES


@pytest.fixture(scope="module")
def retrained() -> TrainingRun:
    """The tiny run trained a second time: its figures must be the same bytes."""
    return train(TINY)


@pytest.fixture(scope="module")
def drawn(tiny_run) -> dict[str, str]:
    """Each figure of the run drawn once, for the tests that only read it (a drawing takes seconds)."""
    return {draw.__name__: draw(tiny_run) for draw in (figures.draw_training_curves, figures.draw_attention,
                                                      figures.draw_gradient_norms)}


@pytest.mark.parametrize("draw", [figures.draw_training_curves, figures.draw_attention, figures.draw_gradient_norms])
def test_figures_from_a_run_are_deterministic(draw, drawn, retrained):
    first = drawn[draw.__name__]
    assert first == draw(retrained)  # drawn again, from the same settings trained again
    assert first.lstrip().startswith("<?xml")


def test_figure_contents(tiny_run, drawn):
    curves = drawn["draw_training_curves"]
    for gid in ("training-loss", "held-out-loss", "held-out-accuracy"):
        assert f'id="{gid}"' in curves
    attention_svg = drawn["draw_attention"]
    assert attention_svg.count('id="attention-before-block0-head') == 2
    assert attention_svg.count('id="attention-after-block0-head') == 2
    norms = drawn["draw_gradient_norms"]
    assert all(f'id="stage-norms-step{s}"' in norms for s in (0, 30, 60))
    assert 'id="stage-norms-spread"' not in norms
    groups = figures.param_group_norms(tiny_run)
    assert list(groups) == ["embed", "block0.attn", "block0.ln1", "block0.ffn", "block0.ln2", "head"]
    total = np.sqrt(sum(v**2 for v in tiny_run.param_grad_norms.values()))
    np.testing.assert_allclose(np.sqrt(sum(v**2 for v in groups.values())), total, rtol=1e-12)


def test_the_spread_over_seeds_is_drawn_and_contains_the_runs_start(tiny_run, tiny_spread):
    svg = figures.draw_gradient_norms(tiny_run, tiny_spread)
    assert 'id="stage-norms-spread"' in svg and 'id="param-norms-spread"' in svg
    assert svg == figures.draw_gradient_norms(tiny_run, probe_gradient_norms(TINY, seeds=(0, 1, 2)))
    stages, groups = tiny_spread
    # seed 0 is the run's initialisation: its step 0 lies inside the band, at one of its edges or within
    for stage, norms in tiny_run.stage_grad_norms.items():
        assert stages[stage].min() <= norms[0] <= stages[stage].max()
    for group, norms in figures.param_group_norms(tiny_run).items():
        assert groups[group].min() <= norms[0] * (1 + 1e-12) and norms[0] <= groups[group].max() * (1 + 1e-12)


def test_the_diagram_is_deterministic_and_legible_on_a_phone():
    svg = figures.transformer_backward_diagram()
    assert svg == figures.transformer_backward_diagram()
    sizes = font_sizes_on_a_phone(svg)
    assert min(sizes) >= 7.5, min(sizes)  # sub- and superscripts
    assert np.median(sizes) >= 10, np.median(sizes)  # the text itself
    words = " ".join(texts(svg))
    assert "scatter-add" in words and "the two paths add" in words  # text stays text


@pytest.mark.parametrize("draw", ["diagram", "curves", "norms"])
def test_math_is_set_as_math_not_ascii(draw, drawn):
    svg = {"diagram": figures.transformer_backward_diagram, "curves": lambda: drawn["draw_training_curves"],
           "norms": lambda: drawn["draw_gradient_norms"]}[draw]()
    shown = texts(svg)
    ascii_math = [t for t in shown if re.search(r"dL/d|\w_\{?\w|\^|W_out|->", t)]
    assert not ascii_math, ascii_math
    if draw != "curves":
        assert any("∂" in t for t in shown)  # a partial derivative, set by mathtext
