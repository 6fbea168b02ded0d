"""Holm's adjustment: the adjusted p-values give exactly the step-down procedure's rejections."""

from __future__ import annotations

import numpy as np
import pytest

from initsweep.stats.multiple_testing import e_holm, holm, holm_levels


def step_down(p: list[float], alpha: float) -> set[int]:
    """Holm (1979) as written: sort, reject while p_(i) <= alpha / (m - i + 1), stop at the first
    that fails."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected.add(i)
    return rejected


def test_textbook_example():
    # p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05: 0.005 <= 0.05/4, 0.01 <= 0.05/3, then
    # 0.03 > 0.05/2 stops: two rejections; adjusted 0.02, 0.03, max(0.06, ...), 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert set(np.flatnonzero(adjusted <= 0.05)) == {0, 3}


def test_adjusted_p_values_reproduce_the_procedure_at_every_level():
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p = (rng.random(m) ** 3).tolist()  # many small ones
        if rng.random() < 0.3:
            p[int(rng.integers(m))] = p[0]  # ties
        adjusted = holm(p)
        assert (adjusted >= np.array(p) - 1e-15).all() and (adjusted <= 1).all()
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.5):
            assert set(np.flatnonzero(adjusted <= alpha)) == step_down(p, alpha)


def test_nan_is_not_a_hypothesis_and_rows_are_families():
    adjusted = holm([np.nan, 0.01, 0.02])
    assert np.isnan(adjusted[0]) and adjusted[1:].tolist() == pytest.approx([0.02, 0.02])
    rows = holm([[0.01, 0.5], [0.02, 0.01]])
    assert np.allclose(rows, [[0.02, 0.5], [0.02, 0.02]])
    assert holm([]).shape == (0,) and holm(0.3) == pytest.approx(0.3)


def test_family_wise_error_at_most_alpha_under_the_null():
    rng = np.random.default_rng(1)
    p = rng.random((20000, 10))  # 10 true hypotheses, independent
    any_false = (holm(p) <= 0.05).any(axis=1).mean()
    assert 0.04 <= any_false <= 0.055  # exactly 1 - 0.95^... ~ 0.049 for independent tests


def test_holm_levels_make_intervals_that_agree_with_the_calls():
    """A t interval at 1 - holm_levels excludes 0 exactly when holm(p) <= alpha: rejected
    hypotheses at their step's level, the others at the level the next rejection needs."""
    from initsweep.stats.differences import paired_difference

    rng = np.random.default_rng(3)
    for _ in range(200):
        m = int(rng.integers(1, 8))
        a = rng.normal(0, 1, (m, 5)) + rng.choice([0, 0, 2], (m, 1))
        diff = paired_difference(a, np.zeros_like(a))
        p = diff.p_value()
        level = holm_levels(p, 0.05)
        low, high = diff.interval(1 - level)
        excludes = (low > 0) | (high < 0)
        assert (excludes == (holm(p) <= 0.05)).all()
    # 0.001 and 0.02 rejected (steps 1, 2); 0.5 not: the level a third rejection would need
    assert holm_levels([0.001, 0.5, 0.02], 0.05) == pytest.approx([0.05 / 3, 0.05, 0.05 / 2])
    assert np.isnan(holm_levels([np.nan, 0.01], 0.05)[0])


def test_e_holm_is_the_closed_procedure_of_mean_e_values():
    """e-Holm's shortcut equals the closure checked by brute force over every subset."""
    from itertools import combinations

    rng = np.random.default_rng(4)
    for _ in range(50):
        e = rng.exponential(3, int(rng.integers(1, 6)))
        shortcut = e_holm(e)
        for k in range(len(e)):
            closure = min(
                np.mean(e[list(s)])
                for r in range(1, len(e) + 1)
                for s in combinations(range(len(e)), r)
                if k in s
            )
            assert shortcut[k] == pytest.approx(closure)
    assert e_holm([30.0, 0.0])[0] == pytest.approx(15.0)  # the partner's 0 halves it
