"""initsweep.stats.differences: the verdict's tests agree with scipy, and a point is defined."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from initsweep.stats.differences import (
    paired_difference,
    t_interval,
    t_power,
    t_seeds_needed,
    welch_difference,
)


def test_paired_and_welch_are_scipy_s_tests():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.02, 7), rng.normal(0.88, 0.03, 7)
    assert paired_difference(a, b).p_value() == pytest.approx(stats.ttest_rel(a, b).pvalue)
    c = rng.normal(0.88, 0.03, 5)
    assert welch_difference(a, c).p_value() == pytest.approx(
        stats.ttest_ind(a, c, equal_var=False).pvalue
    )
    low, high = paired_difference(a, b).interval(0.95)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert t_interval(a, 0.9) == pytest.approx(stats.t.interval(0.9, 6, a.mean(), stats.sem(a)))


def test_a_point_group_has_a_defined_interval():
    he, zeros = np.array([0.9639, 0.9556, 0.9694]), np.full(3, 0.1)
    for diff in (paired_difference(he, zeros), welch_difference(he, zeros)):
        low, high = diff.interval(0.95)
        assert np.isfinite(low) and 0.8 < low < 0.863 < high < 0.93
    two_points = paired_difference(np.full(3, 0.2), np.full(3, 0.1))
    assert two_points.p_value() < 1e-12 and two_points.interval(0.95)[0] == pytest.approx(0.1)
    floored = paired_difference(np.full(3, 0.1 + 1 / 360), np.full(3, 0.1), 1 / 360)
    assert floored.p_value() > 0.05  # one test image on 3 seeds: not a certainty
    assert np.isnan(paired_difference([0.9], [0.1]).se)


def test_power_and_seeds_needed_agree():
    need = t_seeds_needed(1.0, 0.05)
    assert t_power(1.0, need, 0.05) >= 0.8 > t_power(1.0, need - 1, 0.05)
    assert t_seeds_needed(0.0, 0.05) == np.inf
