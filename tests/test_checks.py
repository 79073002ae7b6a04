"""The shared helpers of ``derivations.reference._checks``: the overflow-free norm and the argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from derivations.reference._checks import as_int, as_mask, as_real, l2_norm


def test_l2_norm_in_the_ordinary_range_is_the_plain_formula_to_the_last_bit():
    rng = np.random.default_rng(0)
    for scale in (1e-3, 0.3, 1.0, 1e5):
        a = scale * rng.standard_normal(50)
        assert l2_norm([a]) == math.sqrt(float(np.sum(a * a)))  # what clip_grad_norm computed before


def test_l2_norm_at_the_edges():
    assert l2_norm([]) == 0.0 and l2_norm([np.zeros(0)]) == 0.0 and l2_norm([np.zeros(3), np.zeros(0)]) == 0.0
    assert l2_norm([np.array([3e200]), np.array([4e200])]) == pytest.approx(5e200, rel=1e-15)
    assert l2_norm([np.array([3e-200, 4e-200])]) == pytest.approx(5e-200, rel=1e-15)
    assert l2_norm([np.array([3_000_000_000, 4_000_000_000])]) == 5e9  # integers: no int64 overflow
    assert math.isnan(l2_norm([np.array([1.0, math.inf]), np.array([math.nan])]))
    assert l2_norm([np.array([1.0, -math.inf])]) == math.inf


def test_argument_checks_name_the_argument():
    assert as_int(np.int64(3), "n", minimum=3) == 3
    with pytest.raises(ValueError, match=r"^n must be >= 4, got 3$"):
        as_int(3, "n", minimum=4)
    assert as_real(np.float32(0.5), "r", low=0.0, high=1.0) == 0.5
    with pytest.raises(ValueError, match=r"^r must be < 1.0, got 1.0$"):
        as_real(1.0, "r", high=1.0, high_open=True)
    with pytest.raises(ValueError, match=r"^r must be > 0.0, got 0.0$"):
        as_real(0.0, "r", low=0.0, low_open=True)
    with pytest.raises(ValueError, match=r"^r must be finite, got inf$"):
        as_real(math.inf, "r")
    assert as_real(math.inf, "r", low=0.0, finite=False) == math.inf
    with pytest.raises(ValueError, match=r"^r must be a number, got nan$"):
        as_real(math.nan, "r", finite=False)
    with pytest.raises(ValueError, match=r"^my_mask must be a boolean array .* converts with `my_mask == 0`$"):
        as_mask([1.0], "my_mask")


def test_closed_bounds_include_the_bound():
    assert as_real(1.0, "r", high=1.0) == 1.0 and as_real(0.0, "r", low=0.0) == 0.0
    with pytest.raises(ValueError, match=r"^r must be <= 1.0, got 1.5$"):
        as_real(1.5, "r", high=1.0)
