"""The attention chapter's experiments and figures.

The page and the figures draw from ``derivations.experiments.attention``; these tests
check that module against independent computations (explicit Jacobians, closed forms,
the reference ``gradcheck``), and that each figure is deterministic, valid SVG, shows
what the page computes and shows the spread over seeds where the experiment is random.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import derivations
from derivations.experiments.attention import (
    GRADCHECK_SEEDS,
    SATURATION_D_K,
    SATURATION_KEYS,
    SATURATION_MULTIPLIERS,
    SATURATION_QUERIES,
    SATURATION_SEEDS,
    AttentionExample,
    attention_gradcheck,
    attention_worked_example,
    gradcheck_case,
    half_point,
    saturation_curves,
    saturation_draw,
    softmax_jacobian_norms,
)
from derivations.figures import FIGURES, render
from derivations.figures.attention import SATURATION_ID, SCORE_GRADIENT_ID, WEIGHTS_ID
from derivations.reference import attention, attention_backward, gradcheck, softmax, softmax_backward

SVG = "{http://www.w3.org/2000/svg}"
ATTENTION_FIGURES = ["attention_weights", "softmax_saturation"]


@functools.cache
def rendered(name: str) -> str:
    """One render per figure for the tests that only read the SVG."""
    return render(name)


def worked_example_weights_and_score_gradient():
    Q, K, V, dO = attention_worked_example()
    _, (_, _, _, A) = attention(Q, K, V)  # attention's cache is (Q, K, V, A)
    return A, softmax_backward(dO @ V.T, (A,))


def explicit_jacobian_norm(weights: np.ndarray) -> float:
    """Frobenius norm of diag(a) - a a^T: the softmax Jacobian written out, not via softmax_backward."""
    return float(np.linalg.norm(np.diag(weights) - np.outer(weights, weights)))


def group_texts(svg: str, prefix: str) -> dict[str, str]:
    """Text inside every ``<g id="prefix...">``, by id."""
    root = ET.fromstring(svg.encode())
    return {g.get("id"): "".join(g.itertext()).strip() for g in root.iter(f"{SVG}g") if g.get("id", "").startswith(prefix)}


def group_ids(svg: str, prefix: str) -> set[str]:
    return {g.get("id") for g in ET.fromstring(svg.encode()).iter(f"{SVG}g") if g.get("id", "").startswith(prefix)}


def label_sources(svg: str) -> list[str]:
    """Every label as written: plain ``<text>`` content, and the source matplotlib leaves in a comment
    before each mathtext label (whose glyphs are placed one by one)."""
    plain = [t.text.strip() for t in ET.fromstring(svg.encode()).iter(f"{SVG}text") if t.text and t.text.strip()]
    return plain + [c.strip() for c in re.findall(r"<!--(.*?)-->", svg, flags=re.S)]


# ----------------------------------------------------------------------------- the worked example


def test_worked_example_has_the_documented_shapes():
    example = attention_worked_example()
    assert isinstance(example, AttentionExample)
    assert [x.shape for x in example] == [(2, 2), (3, 2), (3, 2), (2, 2)]
    assert all(x.dtype == np.float64 for x in example)
    O, _ = attention(example.Q, example.K, example.V)
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


def test_saturation_draw_is_seeded_by_seed_and_width():
    Q, K = saturation_draw(16, seed=2)
    assert (Q.shape, K.shape) == ((SATURATION_QUERIES, 16), (SATURATION_KEYS, 16))
    rng = np.random.default_rng([2, 16])  # the documented generator, queries drawn first
    np.testing.assert_array_equal(Q, rng.standard_normal((SATURATION_QUERIES, 16)))
    np.testing.assert_array_equal(K, rng.standard_normal((SATURATION_KEYS, 16)))
    assert not np.array_equal(saturation_draw(16, seed=3)[0], Q)
    with pytest.raises(ValueError, match="positive"):
        saturation_draw(0)


def test_softmax_jacobian_norms_match_an_explicit_jacobian():
    """Several multipliers, as many queries as keys would hide a wrong averaging axis: use 5 and 4."""
    d_k, n_queries, n_keys, multipliers = 16, 5, 4, [0.5, 2.5, 7.0]
    norms = softmax_jacobian_norms(d_k, multipliers, scaled=True, n_queries=n_queries, n_keys=n_keys, seed=3)
    rng = np.random.default_rng([3, d_k])  # the documented draw
    Q, K = rng.standard_normal((n_queries, d_k)), rng.standard_normal((n_keys, d_k))
    expected = [np.mean([explicit_jacobian_norm(a) for a in softmax(c * Q @ K.T / np.sqrt(d_k))[0]])
                for c in multipliers]
    assert norms.shape == (3,)
    np.testing.assert_allclose(norms, expected, rtol=1e-12)


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


def test_saturation_curves_index_seeds_widths_and_scale_as_documented():
    """Entry [s, w] of each array is seed s and width w: swapped axes or swapped scaled/unscaled fail here."""
    seeds, widths, multipliers = (4, 7), (3, 8, 32), np.array([0.5, 1.0, 4.0])
    curves = saturation_curves(seeds=seeds, d_ks=widths, multipliers=multipliers, n_queries=6, n_keys=5)
    assert curves.scaled.shape == curves.unscaled.shape == (2, 3, 3)
    assert curves.seeds == seeds and curves.d_k == widths
    for s, seed in enumerate(seeds):
        for w, d_k in enumerate(widths):
            Q, K = saturation_draw(d_k, seed, n_queries=6, n_keys=5)
            for scale, norms in ((np.sqrt(d_k), curves.scaled), (1.0, curves.unscaled)):
                expected = [np.mean([explicit_jacobian_norm(a) for a in softmax(c * Q @ K.T / scale)[0]])
                            for c in multipliers]
                np.testing.assert_allclose(norms[s, w], expected, rtol=1e-12)


def test_saturation_curves_reject_widths_out_of_order():
    with pytest.raises(ValueError, match="increasing"):
        saturation_curves(seeds=(0,), d_ks=(64, 16), multipliers=[1.0])


def test_saturation_constants_fit_the_page():
    """The page reads c = 1 off the grid, calls the widths increasing and states a spread over >= 10 seeds."""
    assert np.count_nonzero(SATURATION_MULTIPLIERS == 1.0) == 1
    assert np.all(np.diff(SATURATION_MULTIPLIERS) > 0)
    assert list(SATURATION_D_K) == sorted(set(SATURATION_D_K))
    assert len(set(SATURATION_SEEDS)) >= 10 and len(set(GRADCHECK_SEEDS)) >= 10


def test_half_point_is_the_first_multiplier_strictly_below_half():
    assert half_point([1, 2, 3, 4], [1.0, 0.6, 0.5, 0.4]) == 4.0  # 0.5 is not below half of 1.0
    assert half_point([1, 2, 3], [0.2, 0.3, 0.05]) == 3.0  # a curve that rises first
    assert half_point([0.1, 1.0], [2.0, 0.9]) == 1.0
    with pytest.raises(ValueError, match="never fall"):
        half_point([1, 2], [1.0, 0.9])
    with pytest.raises(ValueError, match="increasing"):
        half_point([2, 1, 3], [1.0, 0.9, 0.1])
    with pytest.raises(ValueError, match="same shape"):
        half_point([1, 2], [1.0])


# ----------------------------------------------------------------------------- the numerical check


def test_gradcheck_case_sizes_differ_and_follow_the_documented_draw():
    case = gradcheck_case(seed=11)
    shapes = [x.shape for x in case]
    assert shapes == [(4, 3), (5, 3), (5, 2), (4, 2)]
    assert len({4, 5, 3, 2}) == 4
    rng = np.random.default_rng(11)
    for x, shape in zip(case, shapes):  # drawn in the order Q, K, V, G
        np.testing.assert_array_equal(x, rng.standard_normal(shape))
    with pytest.raises(ValueError, match="positive"):
        gradcheck_case(d_k=0)


def test_attention_gradcheck_agrees_with_the_reference_gradcheck():
    """The same relative errors as reference.gradcheck on the same loss, and loss/entries as documented."""
    seed = 4
    case = gradcheck_case(seed)
    result = attention_gradcheck(seed)

    def loss_and_grads(Q, K, V):
        O, cache = attention(Q, K, V)
        return float(np.sum(case.G * O)), attention_backward(case.G, cache)

    loss, grads = loss_and_grads(case.Q, case.K, case.V)
    np.testing.assert_allclose(result.relative, gradcheck(loss_and_grads, [case.Q, case.K, case.V]), rtol=1e-12)
    assert result.loss == pytest.approx(loss, rel=1e-15)
    np.testing.assert_array_equal(result.smallest, [np.abs(g).min() for g in grads])
    np.testing.assert_array_equal(result.largest, [np.abs(g).max() for g in grads])
    assert np.all(result.relative < 1e-6) and np.all(result.absolute < 1e-8)


def test_attention_gradcheck_measures_a_known_error_exactly():
    """dV off by 10%: its relative error is 0.1 / 1.1 in every entry and its absolute error 0.1 max|dV|."""
    def ten_percent_too_much_dV(dO, cache):
        dQ, dK, dV = attention_backward(dO, cache)
        return dQ, dK, 1.1 * dV

    right, wrong = attention_gradcheck(2), attention_gradcheck(2, backward=ten_percent_too_much_dV)
    assert wrong.relative[2] == pytest.approx(0.1 / 1.1, rel=1e-6)
    assert wrong.absolute[2] == pytest.approx(0.1 * right.largest[2], rel=1e-6)
    np.testing.assert_array_equal(wrong.relative[:2], right.relative[:2])  # dQ and dK untouched


def test_attention_gradcheck_catches_the_page_s_wrong_backward_on_every_seed():
    """Dropping the row sum breaks dQ and dK, not dV, whatever the draw."""
    def forgot_the_rowsum(dO, cache):
        Q, K, V, A = cache
        dS = A * (dO @ V.T)
        scale = 1 / np.sqrt(Q.shape[-1])
        return dS @ K * scale, dS.T @ Q * scale, A.T @ dO

    for seed in GRADCHECK_SEEDS:
        result = attention_gradcheck(seed, backward=forgot_the_rowsum)
        assert result.relative[0] > 0.1 and result.relative[1] > 0.1, seed
        assert result.relative[2] < 1e-6, seed


def test_attention_gradcheck_rejects_a_backward_of_the_wrong_shape():
    def transposed_dK(dO, cache):
        dQ, dK, dV = attention_backward(dO, cache)
        return dQ, dK.T, dV

    with pytest.raises(ValueError, match=r"dK has shape \(3, 5\), K has shape \(5, 3\)"):
        attention_gradcheck(0, backward=transposed_dK)
    with pytest.raises(ValueError, match="dQ, dK, dV"):
        attention_gradcheck(0, backward=lambda dO, cache: attention_backward(dO, cache)[:2])


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
    labels = label_sources(svg)
    assert r"score gradient $\partial L / \partial S$ (rows sum to 0)" in labels
    assert {r"key $j$", r"query $i$"} <= set(labels)


def test_softmax_saturation_figure_shows_median_and_range_of_every_curve():
    svg = rendered("softmax_saturation")
    expected = {f"{SATURATION_ID}-dk{d_k}-{kind}{part}" for d_k in SATURATION_D_K
                for kind in ("scaled", "unscaled") for part in ("", "-band")}
    assert group_ids(svg, f"{SATURATION_ID}-dk") == expected
    labels = label_sources(svg)
    assert [t for t in labels if t.startswith("$d_k = ")] == [f"$d_k = {d_k}$" for d_k in SATURATION_D_K]
    assert "with $1/\u221ad_k$" in labels  # the radical as a DejaVu glyph: mathtext's \sqrt needs a STIX font
    assert any(f"over {len(SATURATION_SEEDS)} seeds" in t for t in labels)
    assert any(t.startswith("score multiplier $c$") for t in labels)
    assert "mean Frobenius norm of the softmax Jacobian" in labels


@pytest.mark.parametrize("name", ATTENTION_FIGURES)
def test_figure_labels_write_math_as_mathtext(name):
    """No ASCII math (dS, d_k, sqrt, QK^T) outside ``$...$`` in any label."""
    for label in label_sources(rendered(name)):
        outside_math = re.sub(r"\$[^$]*\$", "", label)
        assert not re.search(r"\bdS\b|d_k|sqrt|\^|QK", outside_math), label
