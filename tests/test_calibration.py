"""Calibration: the report's statistics keep their stated coverage and error rates.

Seeded numpy simulations with a known truth, run through the same functions the report calls
(``stats.mean_interval``; the verdicts' paired t + ``holm`` + ``stats.calls`` and the second
line's ``stats.sign_test``; the variance split's
estimates and intervals, ``aso``). Scores are accuracy-like, at three shapes:

- ``normal``: 0.90 + 0.02 z;
- ``skewed``: 0.95 - Exponential(0.02) (a ceiling and a long lower tail, skewness -2);
- ``collapse``: like normal, but each seed collapses to chance (0.10) with probability 0.1.

Monte-Carlo error: a rate near 0.95 estimated from R replicates has standard deviation
sqrt(0.95 * 0.05 / R), 0.005 at R = 2000; a rate near 0.05 likewise; the bands below leave at
least 3 of them (stated next to each). The measured values are in docs/report.md.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from numpy.typing import ArrayLike

from initsweep.report import stats as st
from initsweep.report import variance_split as vs
from initsweep.report.aso import THRESHOLD, aso
from initsweep.stats.differences import paired_difference, t_power, welch_difference
from initsweep.stats.multiple_testing import holm

SEEDS = (3, 5, 10, 20)
KINDS = ("normal", "skewed", "collapse")
TRUE_MEAN = {"normal": 0.90, "skewed": 0.95 - 0.02, "collapse": 0.9 * 0.90 + 0.1 * 0.10}
COLLAPSE = 0.1


def scores(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    z = 0.90 + 0.02 * rng.standard_normal(shape)
    if kind == "normal":
        return z
    if kind == "skewed":
        return 0.95 - rng.exponential(0.02, shape)
    return np.where(rng.random(shape) < COLLAPSE, 0.10 + 0.003 * rng.standard_normal(shape), z)


def rng_of(*names: object) -> np.random.Generator:
    return np.random.default_rng([20260519, *(hash(str(n)) % 2**32 for n in names)])


# ------------------------------------------------------------------------------ intervals
# Coverage bands of the 95% interval of a group's mean (R = 2000: +- 0.015 is 3 MC sd).
# Normal scores: nominal at every n. Skewed (skewness -2): measured 0.90 / 0.91 / 0.93 / 0.945
# at 3 / 5 / 10 / 20 seeds (Student's t: 0.88 / 0.89 / 0.90 / 0.92, below every band but the
# first). Collapse: no interval covers the mean when none of the n seeds collapsed (with 3
# seeds, 73% of samples); the promise is coverage when the seeds do show a collapse, with an
# interval of sane width (the studentized bootstrap's median width there, 2.4 accuracy units at
# 10 seeds, is what ruled it out).
COVERAGE_BAND = {("normal", n): (0.93, 0.97) for n in SEEDS}
COVERAGE_BAND |= {
    ("skewed", 3): (0.875, 0.97),
    ("skewed", 5): (0.89, 0.97),
    ("skewed", 10): (0.91, 0.97),
    ("skewed", 20): (0.925, 0.97),
}
COVERAGE_BAND |= {("collapse", n): (0.93, 1.0) for n in SEEDS}  # given >= 1 collapse seen
COLLAPSE_WIDTH = {3: 4.0, 5: 3.0, 10: 1.0, 20: 0.5}  # median width when a collapse was seen


@pytest.mark.parametrize("n", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_mean_interval_covers_at_its_stated_rate(kind, n):
    rng = rng_of("interval", kind, n)
    x = scores(kind, (2000, n), rng)
    low, high = st.mean_interval(x)
    covered = (low <= TRUE_MEAN[kind]) & (TRUE_MEAN[kind] <= high)
    if kind == "collapse":
        seen = (x < 0.5).any(axis=-1)
        # what no interval can fix: when no seed collapsed, the truth is below every seed's score
        assert covered[~seen].mean() < 0.25
        covered = covered[seen]
        assert np.median((high - low)[seen]) <= COLLAPSE_WIDTH[n]
    low_band, high_band = COVERAGE_BAND[kind, n]
    assert low_band <= covered.mean() <= high_band, (kind, n, covered.mean())


def test_no_interval_below_three_seeds_and_the_interval_s_shape():
    for n in (1, 2):
        low, high = st.mean_interval(np.array([0.9, 0.8][:n]))
        assert np.isnan(low) and np.isnan(high)
    assert st.ci_method(2) == "none" and st.ci_method(3) == "hall-t"
    low, high = st.mean_interval(np.full(6, 0.9))  # all seeds equal: a point
    assert low == high == pytest.approx(0.9)
    symmetric = np.array([0.88, 0.89, 0.90, 0.91, 0.92])  # no skew: Student's t exactly
    assert np.allclose(st.mean_interval(symmetric), st.t_interval(symmetric))
    tail = np.array([0.93, 0.93, 0.92, 0.93, 0.80])  # a long lower tail: the interval moves down
    low, high = st.mean_interval(tail)
    t_low, t_high = st.t_interval(tail)
    assert low < t_low and high < t_high
    assert st.mean_interval(np.array([0.1, 0.9, 0.9]), bounds=(0, 1))[1] == 1.0  # cut at 1


# ------------------------------------------------------------------------------ verdicts
N_TEST = 360  # the "ties" kind: accuracies on 360 test images, multiples of 1/360
VERDICT_KINDS = (*KINDS, "ties")


def null_groups(
    kind: str,
    n_groups: int,
    n: int,
    replicates: int,
    rng: np.random.Generator,
    shift: ArrayLike = 0.0,
) -> np.ndarray:
    """``replicates`` x groups x seeds, every group alike (plus ``shift`` per group); a shared
    per-seed effect makes the groups' scores on one seed correlated, as configurations run on the
    same seed are. ``ties``: normal scores with sd 0.006 (near the noise floor of 360 images)
    rounded to multiples of 1/360, so that seeds tie."""
    seed_effect = 0.01 * rng.standard_normal((replicates, 1, n))
    shift = np.asarray(shift, dtype=float).reshape(-1, 1) if np.ndim(shift) else shift
    if kind == "ties":
        x = 0.90 + shift + 0.006 * rng.standard_normal((replicates, n_groups, n)) + seed_effect
        return np.round(x * N_TEST) / N_TEST
    return scores(kind, (replicates, n_groups, n), rng) + seed_effect + shift


def resolution_of(kind: str) -> float:
    return 1 / N_TEST if kind == "ties" else 0.0


def t_verdicts(
    x: np.ndarray, first: np.ndarray, second: np.ndarray, resolution: float = 0.0
) -> np.ndarray:
    """The report's verdicts on pairs (first[k], second[k]) of groups (axis -2) over paired seeds
    (axis -1): paired t on the difference of means, Holm over the pairs, called at 5%."""
    diff = paired_difference(x[..., first, :], x[..., second, :], resolution)
    return st.calls(holm(diff.p_value()))


@pytest.mark.parametrize("n", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_sign_test_names_false_winners_at_most_at_its_level(kind, n):
    """The second line (sign test, Holm on its own): 10 equal configurations, all 45 pairs: the
    chance of any false winner (family-wise error) and the expected number of false winners stay
    at or below 0.05 (R = 2000: + 0.015 is 3 MC sd); one pair alone, over 20,000 replicates,
    at or below 0.05 (+ 0.005, 3 MC sd)."""
    rng = rng_of("fwer", kind, n)
    x = null_groups(kind, 10, n, 2000, rng)
    first, second = np.array(list(combinations(range(10), 2))).T
    called = st.calls(holm(st.sign_test(x[:, first], x[:, second])))
    assert called.any(axis=-1).mean() <= 0.065, called.any(axis=-1).mean()
    assert called.sum(axis=-1).mean() <= 0.065
    pair = null_groups(kind, 2, n, 20000, rng)
    single = st.calls(holm(st.sign_test(pair[:, 0], pair[:, 1])[:, None]))
    assert single.mean() <= 0.055, single.mean()


@pytest.mark.parametrize("n", SEEDS)
@pytest.mark.parametrize("kind", VERDICT_KINDS)
def test_t_verdicts_name_false_winners_at_most_at_their_level(kind, n):
    """The verdict (paired t, Holm): 10 equal configurations, all 45 pairs; the chance of any
    false winner stays at or below 0.05 (R = 2000: + 0.015 is 3 MC sd), ties included (the
    resolution floor); collapsing seeds make it conservative, not liberal."""
    rng = rng_of("t-fwer", kind, n)
    x = null_groups(kind, 10, n, 2000, rng)
    first, second = np.array(list(combinations(range(10), 2))).T
    called = t_verdicts(x, first, second, resolution_of(kind))
    assert called.any(axis=-1).mean() <= 0.065, called.any(axis=-1).mean()


@pytest.mark.parametrize(("groups", "n"), ((2, 3), (2, 20), (20, 3), (20, 20)))
@pytest.mark.parametrize("kind", ("normal", "skewed"))
def test_t_verdicts_hold_their_level_from_2_to_20_groups(kind, groups, n):
    """The corners of the issue's range (2..20 groups x 3..20 seeds, all pairs): any false
    winner <= 0.05 (R = 2000, + 0.015); scripts/calibrate_report.py prints the whole grid."""
    rng = rng_of("t-fwer-range", kind, groups, n)
    x = null_groups(kind, groups, n, 2000, rng)
    first, second = np.array(list(combinations(range(groups), 2))).T
    assert t_verdicts(x, first, second).any(axis=-1).mean() <= 0.065


def test_without_the_resolution_floor_ties_make_false_winners():
    """Why the floor: on 360 test images, equal configurations at 3 seeds often differ by the same
    whole images on every seed; with sd 0 that is a "certain" difference. Without the floor the
    false-winner rate is several times the level; with it, at most the level."""
    rng = rng_of("ties-floor")
    x = null_groups("ties", 10, 3, 2000, rng)
    first, second = np.array(list(combinations(range(10), 2))).T
    assert t_verdicts(x, first, second, 0.0).any(axis=-1).mean() >= 0.15
    assert t_verdicts(x, first, second, 1 / N_TEST).any(axis=-1).mean() <= 0.065


def test_the_demo_gap_is_called_at_three_seeds_every_time():
    """make sweep's he (0.963 +- 0.007), xavier (the same) and zeros (0.100 +- 0.001), 3 seeds,
    3 pairs, Holm: he vs zeros called in all 2000 replicates."""
    rng = rng_of("demo")
    r, n = 2000, 3
    he = 0.963 + 0.007 * rng.standard_normal((r, 1, n))
    xavier = 0.963 + 0.007 * rng.standard_normal((r, 1, n))
    zeros = 0.100 + 0.001 * rng.standard_normal((r, 1, n))
    x = np.concatenate([he, xavier, zeros], axis=1)
    called = t_verdicts(x, np.array([0, 0, 1]), np.array([1, 2, 2]))
    assert called[:, 1].all() and called[:, 2].all()
    point = np.concatenate([he, np.full((r, 1, n), 0.1)], axis=1)  # zeros exactly 0.1000
    assert t_verdicts(point, np.array([0]), np.array([1]), 1 / N_TEST).all()


def test_four_seed_spreads_are_called_at_five_seeds():
    """0.98 vs 0.90, sd 0.02 (4 spreads), 5 seeds, one pair: called in >= 95% (R = 2000)."""
    rng = rng_of("four-spreads")
    x = np.stack(
        [
            0.98 + 0.02 * rng.standard_normal((2000, 5)),
            0.90 + 0.02 * rng.standard_normal((2000, 5)),
        ],
        axis=1,
    )
    assert t_verdicts(x, np.array([0]), np.array([1])).mean() >= 0.95
    welch = welch_difference(x[:, 0], x[:, 1]).p_value() <= st.ALPHA
    assert welch.mean() >= 0.95  # unpaired seeds: Welch, too


@pytest.mark.parametrize("effect", (0.5, 1.0))
def test_seeds_that_would_settle_it_are_the_t_test_s(effect):
    """ "Seeds that would settle it" uses the verdict's test: at the seeds ``t_seeds_needed``
    names, the simulated paired t calls a normal difference with standardized effect ``effect``
    at least 4 times in 5 (R = 4000: - 0.02 is 3 MC sd), and the power one seed fewer is below
    0.8; the report's ``seeds_needed`` from 10 observed seeds lands within a factor of 2."""
    rng = rng_of("t-needed", effect)
    from initsweep.stats.differences import t_seeds_needed

    need = int(t_seeds_needed(effect, st.ALPHA))
    assert float(t_power(effect, need - 1, st.ALPHA)) < 0.8
    d = effect + rng.standard_normal((4000, need))
    assert (paired_difference(d, 0 * d).p_value() <= st.ALPHA).mean() >= 0.78
    estimates = []
    for _ in range(200):
        diff = paired_difference(effect + rng.standard_normal(10), np.zeros(10))
        estimates.append(st.seeds_needed(diff, 10, st.ALPHA))
    assert need / 2 <= float(np.median(estimates)) <= need * 2


def pair_with_win_probability(
    p_win: float, n: int, replicates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two normal groups (sd 0.02) whose paired difference is positive with probability p_win."""
    shift = 0.02 * np.sqrt(2) * float(st.stats.norm.ppf(p_win))
    return (
        0.90 + shift + 0.02 * rng.standard_normal((replicates, n)),
        0.90 + 0.02 * rng.standard_normal((replicates, n)),
    )


@pytest.mark.parametrize("n", (10, 20))
def test_sign_test_calls_real_differences_at_the_predicted_power(n):
    """Not vacuous: a pair where A wins a seed with probability 0.85 is called as often as
    ``sign_test_power`` says (R = 4000: +- 0.025 is 3 MC sd); at the seeds that
    ``seeds_for_win_probability`` names, the call rate reaches 0.8 and one seed fewer does not."""
    rng = rng_of("power", n)
    a, b = pair_with_win_probability(0.85, n, 4000, rng)
    called = st.calls(holm(st.sign_test(a, b)[:, None]))
    expected = float(st.sign_test_power(n, 0.85, st.ALPHA))
    assert abs(called.mean() - expected) <= 0.025, (called.mean(), expected)
    need = int(st.seeds_for_win_probability(0.85, st.ALPHA))
    assert float(st.sign_test_power(need - 1, 0.85, st.ALPHA)) < 0.8
    a, b = pair_with_win_probability(0.85, need, 4000, rng)
    assert st.calls(holm(st.sign_test(a, b)[:, None])).mean() >= 0.8 - 0.02


def test_sign_seeds_needed_from_observed_seeds_is_roughly_right():
    """From 10 observed seeds of a pair with P(win) = 0.75, the median estimate lands within a
    factor of 2 of the seeds the true effect needs (the estimate is rough by design)."""
    rng = rng_of("needed")
    d_true = 0.6745  # Phi(0.6745) = 0.75
    truth = st.seeds_for_win_probability(0.75, 0.05)
    estimates = [st.sign_seeds_needed(d_true + rng.standard_normal(10), 0.05) for _ in range(300)]
    median = float(np.median(estimates))
    assert truth / 2 <= median <= truth * 2, (truth, median)


@pytest.mark.parametrize("n", SEEDS)
def test_p_better_interval_covers_with_ties(n):
    """Accuracy on 360 test images is a multiple of 1/360, so seeds tie; the exact interval of
    P(A > B) (ties half) still covers at least 95% (R = 2000: - 0.015 is 3 MC sd)."""
    rng = rng_of("p-interval", n)

    def draw(size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        a = np.round((0.905 + 0.006 * rng.standard_normal(size)) * 360) / 360
        b = np.round((0.900 + 0.006 * rng.standard_normal(size)) * 360) / 360
        return a, b

    big_a, big_b = draw((1_000_000,))
    truth = float(st.p_better(big_a, big_b))
    a, b = draw((2000, n))
    low, high = st.p_better_interval(a, b)
    assert ((low <= truth) & (truth <= high)).mean() >= 0.935


def test_aso_false_dominance_rate_is_what_the_docs_say():
    """ASO is shown as a second opinion, never a verdict, because with equal configurations its
    "A dominates" reading (eps_min < 0.2, A being the better-looking one as in the report) is
    wrong more often than 5% at few seeds: measured 0.17 at 3 seeds, 0.09 at 5, 0.05-0.07 at
    10-20 (normal); bands from R = 1000 (+- 0.035 at 3 MC sd)."""
    rng = rng_of("aso")
    measured = {}
    for n in (3, 10):
        a, b = scores("normal", (1000, n), rng), scores("normal", (1000, n), rng)
        flip = (st.p_better(a, b) < 0.5)[:, None]
        a, b = np.where(flip, b, a), np.where(flip, a, b)
        measured[n] = float((aso(a, b, rng) < THRESHOLD).mean())
    assert 0.13 <= measured[3] <= 0.21, measured
    assert 0.03 <= measured[10] <= 0.10, measured
    # and a real difference is seen: A = B + 2 sd dominates almost always at 10 seeds
    a, b = scores("normal", (300, 10), rng) + 0.04, scores("normal", (300, 10), rng)
    assert (aso(a, b, rng) < THRESHOLD).mean() >= 0.95


# ------------------------------------------------------------------------------ variance split
def crossed_grids(
    true_shares: tuple[float, float, float], k: int, replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """``replicates`` k x k grids (one run per cell) with the given variance shares."""
    s_init, s_data, s_rest = np.sqrt(true_shares)
    return (
        s_init * rng.standard_normal((replicates, k, 1, 1))
        + s_data * rng.standard_normal((replicates, 1, k, 1))
        + s_rest * rng.standard_normal((replicates, k, k, 1))
    )


@pytest.mark.parametrize("k", (4, 8))
@pytest.mark.parametrize("true_shares", ((0.6, 0.2, 0.2), (0.1, 0.1, 0.8)))
def test_variance_split_bias_and_interval_coverage(true_shares, k):
    """The shares' bias (mean estimate - truth) is at most 0.09 on 4 x 4 grids and 0.04 on
    8 x 8 (R = 2000: MC sd of a mean share <= 0.006), and each 95% interval (the three shares
    and init - data) covers 0.93-0.995 of the time (R = 1000: 3 MC sd = 0.02)."""
    rng = rng_of("variance", true_shares, k)
    truth = np.array(true_shares)
    y = crossed_grids(true_shares, k, 2000, rng)
    bias = np.abs(vs.shares(vs.variance_components(y)).mean(axis=0) - truth)
    assert bias.max() <= (0.09 if k == 4 else 0.04), bias
    low, high = vs.share_intervals(vs.pivotal_shares(y[:1000], rng))
    target = np.append(truth, truth[0] - truth[1])
    coverage = ((low <= target) & (target <= high)).mean(axis=0)
    assert ((coverage >= 0.93) & (coverage <= 0.995)).all(), coverage


def test_grid_to_separate_names_a_grid_that_separates():
    """The grid size the warning names separates init from data 4 times in 5, checked on grids
    drawn cell by cell (the function itself simulates sums of squares), and the size below it
    in the list does not (R = 400: 3 MC sd = 0.06)."""
    rng = rng_of("grid")
    components = np.array([0.6, 0.2, 0.2])
    k = vs.grid_to_separate(components, rng)
    assert k is not None and k in vs.GRID_SIZES and k > 4

    def separated(size: int) -> float:
        y = crossed_grids(tuple(components), size, 400, rng)
        low, high = vs.share_intervals(vs.pivotal_shares(y, rng, 1000))
        return float(((low[:, 3] > 0) | (high[:, 3] < 0)).mean())

    assert separated(k) >= 0.74
    assert separated(vs.GRID_SIZES[vs.GRID_SIZES.index(k) - 1]) <= 0.86
    assert vs.grid_to_separate(np.array([0.3, 0.3, 0.4]), rng) is None  # equal: never
