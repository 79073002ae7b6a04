"""The attention chapter's shared example and its figures.

The page and the figures draw from ``derivations.experiments.attention``; these tests
pin that module's documented shapes and behaviour, and check that each figure is
deterministic, valid SVG and shows what the page computes.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import derivations
from derivations.figures import FIGURES, render
from derivations.figures.attention import SATURATION_ID, SATURATION_MULTIPLIERS, SCORE_GRADIENT_ID, WEIGHTS_ID
from derivations.reference import attention, softmax, softmax_backward
from derivations.experiments.attention import (
    SATURATION_D_K,
    AttentionExample,
    attention_worked_example,
    softmax_jacobian_norms,
)

SVG = "{http://www.w3.org/2000/svg}"
ATTENTION_FIGURES = ["attention_weights", "softmax_saturation"]


@functools.cache
def rendered(name: str) -> str:
    """One render per figure for the tests that only read the SVG."""
    return render(name)


def worked_example_weights_and_score_gradient():
    Q, K, V, dO = attention_worked_example()
    A = attention(Q, K, V)[1][3]
    return A, softmax_backward(dO @ V.T, (A,))


def group_texts(svg: str, prefix: str) -> dict[str, str]:
    """Text inside every ``<g id="prefix...">``, by id."""
    root = ET.fromstring(svg.encode())
    return {g.get("id"): "".join(g.itertext()).strip() for g in root.iter(f"{SVG}g") if g.get("id", "").startswith(prefix)}


# ----------------------------------------------------------------------------- the worked example


def test_worked_example_has_the_documented_shapes():
    example = attention_worked_example()
    assert isinstance(example, AttentionExample)
    assert [x.shape for x in example] == [(2, 2), (3, 2), (3, 2), (2, 2)]
    assert all(x.dtype == np.float64 for x in example)
    O, cache = attention(example.Q, example.K, example.V)
    assert O.shape == example.dO.shape


def test_worked_example_is_deterministic_and_seeded():
    first, second = attention_worked_example(), attention_worked_example()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    other = attention_worked_example(seed=1)
    assert not np.array_equal(first.Q, other.Q)


def test_worked_example_is_not_degenerate():
    """The page reads a clear favourite key off row 0 and shows non-trivial score gradients."""
    A, dS = worked_example_weights_and_score_gradient()
    assert np.sort(A[0])[-1] - np.sort(A[0])[-2] > 0.1
    assert np.all(np.abs(dS) > 1e-3)
    assert np.allclose(dS.sum(axis=1), 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- saturation data


def test_softmax_jacobian_norms_match_an_explicit_jacobian():
    d_k, n_queries, n_keys, multiplier = 16, 5, 4, 2.5
    norms = softmax_jacobian_norms(d_k, [multiplier], scaled=True, n_queries=n_queries, n_keys=n_keys, seed=3)
    rng = np.random.default_rng([3, d_k])  # the documented draw
    Q, K = rng.standard_normal((n_queries, d_k)), rng.standard_normal((n_keys, d_k))
    A, _ = softmax(multiplier * Q @ K.T / np.sqrt(d_k))
    expected = np.mean([np.linalg.norm(np.diag(a) - np.outer(a, a)) for a in A])
    assert norms.shape == (1,)
    assert norms[0] == pytest.approx(expected, rel=1e-12)


def test_softmax_jacobian_norms_scaling_is_a_change_of_multiplier():
    """Unscaled scores at ``c`` are scaled scores at ``c * sqrt(d_k)``: the same draw, the same norms."""
    d_k = 64
    multipliers = np.array([0.1, 1.0, 3.0])
    unscaled = softmax_jacobian_norms(d_k, multipliers, scaled=False)
    scaled = softmax_jacobian_norms(d_k, multipliers * np.sqrt(d_k), scaled=True)
    np.testing.assert_allclose(unscaled, scaled, rtol=1e-10)


def test_softmax_jacobian_norms_collapse_for_large_scores():
    n_keys = 16
    norms = softmax_jacobian_norms(256, [0.0, 1.0, 1e3], scaled=False, n_keys=n_keys)
    assert norms[0] == pytest.approx(np.sqrt(1 / n_keys - 1 / n_keys**2))  # uniform weights
    assert norms[2] < 1e-6 * norms[1] < norms[1]


# ----------------------------------------------------------------------------- the figures


def test_attention_figures_are_registered():
    assert set(ATTENTION_FIGURES) <= set(FIGURES)


@pytest.mark.parametrize("name", ATTENTION_FIGURES)
def test_figure_is_svg_and_deterministic(name):
    # How long makers take is a budget of the build, measured by scripts/benchmark.py.
    first = render(name)
    assert first.startswith(("<?xml", "<svg"))
    ET.fromstring(first.encode())  # well-formed XML
    assert rendered(name) == first


def test_figures_are_identical_across_processes():
    """Same bytes in a fresh interpreter: no ids, dates or hash seeds leak in."""
    code = "import sys\nfrom derivations.figures import render\n" + "".join(
        f"sys.stdout.write(render({name!r}))\n" for name in ATTENTION_FIGURES
    )
    repo = str(Path(derivations.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONIOENCODING": "utf-8",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=env, cwd=repo,
                           encoding="utf-8")
    assert fresh.stdout == "".join(rendered(name) for name in ATTENTION_FIGURES)


def test_attention_weights_figure_shows_the_worked_example():
    A, dS = worked_example_weights_and_score_gradient()
    svg = rendered("attention_weights")
    for prefix, values in [(WEIGHTS_ID, A), (SCORE_GRADIENT_ID, dS)]:
        cells = group_texts(svg, f"{prefix}-cell-")
        assert len(cells) == values.size  # one annotated cell per entry
        for (i, j), value in np.ndenumerate(values):
            assert cells[f"{prefix}-cell-{i}-{j}"] == f"{value:.3f}"
        assert f'id="{prefix}-heatmap"' in svg


def test_softmax_saturation_figure_has_its_lines_and_labels():
    svg = rendered("softmax_saturation")
    lines = group_texts(svg, f"{SATURATION_ID}-dk")
    assert len(lines) == 2 * len(SATURATION_D_K)
    for d_k in SATURATION_D_K:
        assert {f"{SATURATION_ID}-dk{d_k}-scaled", f"{SATURATION_ID}-dk{d_k}-unscaled"} <= set(lines)
    texts = ["".join(t.itertext()) for t in ET.fromstring(svg.encode()).iter(f"{SVG}text")]
    assert any(t.startswith("score multiplier c") for t in texts)
    assert "mean Frobenius norm of the softmax Jacobian" in texts
    assert [t for t in texts if t.startswith("dₖ = ")] == [f"dₖ = {d_k}" for d_k in SATURATION_D_K]
    assert len(SATURATION_MULTIPLIERS) > 1
