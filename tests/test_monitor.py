"""The gradient monitor of ``derivations.reference.monitor``: statistics against NumPy computed
directly from the definitions, flags against hand-made gradients, and the printed table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from derivations.reference.monitor import FLAGS, GradientStats, format_report, gradient_report

NAN, INF = math.nan, math.inf
# The documented non-finite paths are quiet: no RuntimeWarning from the arithmetic inside.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def test_statistics_follow_their_definitions():
    rng = np.random.default_rng(0)
    grads = {"W": rng.standard_normal((4, 5)) * 3, "b": rng.standard_normal(7) - 2, "s": np.array(2.5)}
    rows = gradient_report(grads)
    assert [r.name for r in rows] == ["W", "b", "s"] and all(isinstance(r, GradientStats) for r in rows)
    for row, g in zip(rows, grads.values()):
        values = [float(v) for v in np.ravel(g)]
        n = len(values)
        mean = math.fsum(values) / n
        assert row.size == n and isinstance(row.size, int)
        assert row.mean == pytest.approx(mean, rel=1e-13)
        assert row.std == pytest.approx(math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n), rel=1e-12, abs=1e-15)
        assert row.max_abs == max(abs(v) for v in values)
        assert row.norm == pytest.approx(math.sqrt(math.fsum(v * v for v in values)), rel=1e-14)
        assert row.nonfinite == 0 and row.flags == ()


def test_statistics_skip_the_nonfinite_entries_and_count_them():
    (row,) = gradient_report({"g": [3.0, NAN, -4.0, INF, -INF, 1.0]})
    finite = [3.0, -4.0, 1.0]
    assert row.size == 6 and row.nonfinite == 3
    assert row.mean == pytest.approx(0.0, abs=1e-15)
    assert row.std == pytest.approx(math.sqrt(26 / 3), rel=1e-14)
    assert row.max_abs == 4.0 and row.norm == pytest.approx(math.sqrt(26), rel=1e-15)
    assert row.flags == ("nonfinite",) and sum(map(abs, finite)) == 8.0


@pytest.mark.parametrize(
    "g, flags",
    [
        ([0.0, 0.0, -0.0], ("zero",)),
        ([0.0, NAN], ("nonfinite",)),         # not "zero": a NaN is not nothing
        ([], ()),                             # an empty gradient is neither zero nor anything else
        ([100.0, -100.0], ()),                # the threshold itself is not huge
        ([0.0, -100.5], ("huge",)),
        ([1e3, INF], ("huge", "nonfinite")),  # flags come in FLAGS order
        ([1e-300], ()),
    ],
)
def test_flags(g, flags):
    (row,) = gradient_report({"g": np.array(g, dtype=float)})
    assert row.flags == flags
    assert set(row.flags) <= set(FLAGS) and FLAGS == ("zero", "huge", "nonfinite")


def test_the_huge_threshold_is_a_parameter():
    assert gradient_report({"g": [5.0]}, huge=4.0)[0].flags == ("huge",)
    assert gradient_report({"g": [5.0]}, huge=5.0)[0].flags == ()


def test_a_gradient_with_no_finite_entry_has_nan_statistics():
    for g in ([NAN, INF], []):
        (row,) = gradient_report({"g": np.array(g, dtype=float)})
        assert all(math.isnan(v) for v in (row.mean, row.std, row.max_abs, row.norm))
        assert row.nonfinite == len(g)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"grads must be a dict of arrays, got list"):
        gradient_report([np.ones(2)])
    with pytest.raises(ValueError, match=r"grads\['w'\] must be an array of real numbers"):
        gradient_report({"w": ["a"]})


REPORT = {"w": [3.0, -4.0], "dead": [0.0, 0.0], "bad": [1.0, NAN], "longer_name": [200.0]}


def test_the_table_by_hand():
    lines = format_report(gradient_report(REPORT)).split("\n")
    assert lines == [
        "parameter    size       mean        std     max|g|       norm  flags",
        "w               2  -5.00e-01   3.50e+00   4.00e+00   5.00e+00  -",
        "dead            2   0.00e+00   0.00e+00   0.00e+00   0.00e+00  zero",
        "bad             2   1.00e+00   0.00e+00   1.00e+00   1.00e+00  nonfinite (1)",
        "longer_name     1   2.00e+02   0.00e+00   2.00e+02   2.00e+02  huge",
    ]


def test_the_flagged_table_by_hand():
    grads = {"weights_of_layer": np.zeros(12345), **REPORT}
    grads["weights_of_layer"][0] = 1.0  # unflagged, and the longest name: must not set the width
    lines = format_report(gradient_report(grads), only_flagged=True).split("\n")
    assert lines == [
        "parameter    size       mean        std     max|g|       norm  flags",
        "dead            2   0.00e+00   0.00e+00   0.00e+00   0.00e+00  zero",
        "bad             2   1.00e+00   0.00e+00   1.00e+00   1.00e+00  nonfinite (1)",
        "longer_name     1   2.00e+02   0.00e+00   2.00e+02   2.00e+02  huge",
        "(2 parameters without a flag not shown)",
    ]
    wide = format_report(gradient_report({"g": np.zeros(123456)})).split("\n")
    assert wide[0] == "parameter    size       mean        std     max|g|       norm  flags"  # 'size' widened by 2
    assert wide[1].startswith("g          123456   0.00e+00")
    assert format_report(gradient_report({"g": [1.0, INF, NAN]})).endswith("nonfinite (2)")
    assert format_report(gradient_report({"g": [1e3, NAN]})).endswith("huge, nonfinite (1)")


def test_a_standard_deviation_that_would_overflow_is_rescaled():
    (row,) = gradient_report({"g": [1e308, -1e308]})  # the mean is 0, the mean square overflows
    assert row.mean == 0.0 and row.std == 1e308 and row.norm == pytest.approx(math.sqrt(2) * 1e308, rel=1e-15)


def test_the_threshold_messages():
    with pytest.raises(ValueError, match=r"^huge must be > 0.0, got 0.0$"):
        gradient_report({"g": [1.0]}, huge=0.0)
    assert gradient_report({"g": [0.7]}, huge=0.5)[0].flags == ("huge",)  # any positive threshold
