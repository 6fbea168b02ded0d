"""P(A > B) over paired seeds and the exact sign test: the distribution-free comparison
(numpy and scipy only).

- ``p_better`` (Bouthillier et al. 2021): the share of seeds on which A beats B, ties counted half,
  with an exact interval (``p_better_interval``, Clopper-Pearson on wins and on wins + ties);
- ``sign_test``: the exact two-sided sign test of P(A > B) = P(B > A);
- its power and the seeds it needs (``sign_test_power``, ``seeds_for_win_probability``,
  ``sign_seeds_needed``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

CONFIDENCE = 0.95
POWER = 0.8  # "seeds that would settle it": the test calls the pair 4 times in 5
MAX_SEEDS = 1000  # beyond this, "seeds needed" is reported as more than MAX_SEEDS


def p_better(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """P(A > B) over paired observations (along the last axis), ties counted half."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.mean(a > b, axis=-1) + 0.5 * np.mean(a == b, axis=-1)


def _binom_cdf(k: ArrayLike, n: ArrayLike, p: float) -> np.ndarray:
    """P(Bin(n, p) <= k) for integer arrays, with the ends (k < 0, k >= n) exact; the ufunc
    ``scipy.special.bdtr`` is ~10x faster per call than ``scipy.stats.binom`` (1,000s of pairs)."""
    k, n = np.asarray(k), np.asarray(n)
    inside = np.clip(k, 0, np.maximum(n, 0))
    with np.errstate(invalid="ignore"):
        value = special.bdtr(inside, np.maximum(n, 1), p)
    return np.where(k < 0, 0.0, np.where(k >= n, 1.0, value))


def interval_from_counts(
    wins: ArrayLike, ties: ArrayLike, n: ArrayLike, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """``p_better_interval`` from the counts of wins and ties among n paired seeds."""
    wins, up, n = np.asarray(wins), np.asarray(wins) + np.asarray(ties), np.asarray(n)
    tail = (1 - confidence) / 2
    with np.errstate(all="ignore"):
        low = np.where(wins > 0, special.betaincinv(np.maximum(wins, 1), n - wins + 1, tail), 0.0)
        high = np.where(up < n, special.betaincinv(up + 1, np.maximum(n - up, 1), 1 - tail), 1.0)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def p_better_interval(
    a: ArrayLike, b: ArrayLike, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval of P(A > B) = P(win) + P(tie) / 2, at least ``confidence`` for any n.

    P(win) <= P(A > B) <= P(win) + P(tie): the lower end is the Clopper-Pearson lower bound of
    P(win) from the wins, the upper end the Clopper-Pearson upper bound of P(win) + P(tie) from
    wins + ties, each one-sided at (1 - confidence) / 2. Without ties this is the Clopper-Pearson
    interval, the one the two-sided sign test inverts.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return interval_from_counts(
        np.sum(a > b, axis=-1), np.sum(a == b, axis=-1), a.shape[-1], confidence
    )


def sign_p_from_counts(wins: ArrayLike, losses: ArrayLike) -> np.ndarray:
    """``sign_test`` from the counts of wins and losses (ties left out)."""
    wins, untied = np.asarray(wins), np.asarray(wins) + np.asarray(losses)
    p = np.minimum(1.0, 2 * _binom_cdf(np.minimum(wins, untied - wins), untied, 0.5))
    return np.where(untied > 0, p, 1.0)


def sign_test(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Exact two-sided sign test of P(A > B) = P(B > A) over paired observations (last axis).

    Ties carry no sign and are left out (the usual conditional test); with no untied pair the
    p-value is 1. Doubling the smaller binomial tail is the exact two-sided test for p = 1/2
    (``scipy.stats.binomtest`` gives the same p-values).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return sign_p_from_counts(np.sum(a > b, axis=-1), np.sum(a < b, axis=-1))


def min_seeds_for(level: float) -> int:
    """Fewest untied seeds with which the two-sided sign test can reach ``level`` at all (every
    seed agreeing gives p = 2 / 2^n): 6 at 0.05, 9 at 0.05 / 9 pairs."""
    return max(1, math.ceil(math.log2(2 / level)))


@lru_cache(maxsize=64)
def _critical_counts(level: float, max_seeds: int) -> np.ndarray:
    """For n = 0..max_seeds, the fewest wins c with 2 P(Bin(n, 1/2) >= c) <= level (the sign
    test rejects when the wins are >= c or <= n - c); n + 1 where no count is enough."""
    n = np.arange(max_seeds + 1)
    c = stats.binom.isf(level / 2, n, 0.5) + 1
    c = np.where(2 * stats.binom.sf(c - 1, n, 0.5) <= level, c, c + 1)
    c = np.maximum(c, np.floor(n / 2) + 1)  # the two tails must not overlap
    c.setflags(write=False)
    return c


def sign_test_power(n: ArrayLike, p_win: float, level: float) -> np.ndarray:
    """Power of the exact two-sided sign test at ``level`` with ``n`` untied seeds on which A
    wins with probability ``p_win``."""
    n = np.asarray(n, dtype=int)
    c = _critical_counts(float(level), max(MAX_SEEDS, int(np.max(n, initial=0))))[n]
    return 1.0 - _binom_cdf(c - 1, n, p_win) + _binom_cdf(n - c, n, p_win)


def sign_seeds_needed(
    diffs: ArrayLike, level: float, power: float = POWER, max_seeds: int = MAX_SEEDS
) -> float:
    """Roughly how many seeds the sign test at ``level`` needs to call this pair with ``power``.

    From the observed paired differences d: if they keep their mean and spread, a new seed
    favours A with probability Phi(mean(d) / std(d)) (normal differences); the answer is the
    fewest seeds at which the exact sign test then rejects with probability ``power``. inf when
    no difference was seen (or none below ``max_seeds``), NaN with fewer than 2 seeds. It is
    rough: with few seeds, mean(d) / std(d) is itself uncertain, and a pair that just missed is
    more likely than not to have looked better than it is.
    """
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return math.nan
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    if mean == 0:
        return math.inf
    p_win = 1.0 if sd == 0 else NormalDist().cdf(abs(mean) / sd)
    return seeds_for_win_probability(p_win, level, power, max_seeds)


def seeds_for_win_probability(
    p_win: float, level: float, power: float = POWER, max_seeds: int = MAX_SEEDS
) -> float:
    """The fewest seeds at which the exact two-sided sign test at ``level`` rejects with
    probability ``power`` when one side wins a seed with probability ``p_win``; inf if none up
    to ``max_seeds``."""
    p_win = max(p_win, 1 - p_win)
    first = min_seeds_for(level)
    if p_win == 0.5:
        return math.inf
    # Search near the normal approximation (saves most of the work at 1,000 pairs): when 0.6 of
    # it is not yet enough, no smaller n is (the power's saw teeth are much smaller than that).
    normal = NormalDist()
    z = normal.inv_cdf(1 - level / 2) * 0.5 + normal.inv_cdf(power) * math.sqrt(p_win * (1 - p_win))
    low = min(max(first, int(0.6 * (z / (p_win - 0.5)) ** 2)), max_seeds)
    if sign_test_power(low, p_win, level) >= power:
        windows = [(first, low)]
    else:
        high = min(max_seeds, 3 * low + 10)
        windows = [(low, high), (high, max_seeds)]
    for start, stop in windows:
        n = np.arange(start, stop + 1)
        enough = np.flatnonzero(sign_test_power(n, p_win, level) >= power)
        if len(enough):
            return float(n[enough[0]])
    return math.inf
