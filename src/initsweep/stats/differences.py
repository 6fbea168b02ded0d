"""The difference of two groups' means, with its t interval: paired when the seeds pair, Welch's
when they do not. Vectorized along the last axis (simulation replicates in the leading axes).

- Paired (Student 1908): the per-seed differences d = a - b; estimate mean(d), standard error
  sd(d) / sqrt(n), n - 1 degrees of freedom. The seed's shared effect (initial weights, data
  order) cancels in d, which is where its power comes from.
- Welch (1947): a and b unpaired; estimate mean(a) - mean(b), standard error
  sqrt(s_a^2 / n_a + s_b^2 / n_b), Welch-Satterthwaite degrees of freedom.

**A point.** A group whose seeds all give one value (a constant init at chance: 0.1000 on every
seed) has s = 0; that is data, not a failure: Welch's standard error is then the other group's
alone, and a paired difference keeps the other group's spread. When *every* spread is 0 the
difference would be known exactly, which an accuracy measured on a finite test set cannot
promise: ``resolution`` (the metric's step, 1 / n_test for an accuracy; 0 for a continuous
metric) is the least spread a standard deviation is given, sd -> max(sd, resolution). Without
it, two equal configurations whose accuracies on 360 test images happen to differ by the same
one image on 3 seeds would be "called" with p = 0 (about 1% of such pairs; docs/report.md).
With ``resolution = 0`` and no spread at all, the interval is the point and p is 0 (1 when the
difference is 0).

``t_interval`` is Student's interval of one mean (the race prints it for each configuration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


@dataclass(frozen=True)
class Difference:
    """Estimate, standard error and degrees of freedom of a difference of means (arrays over the
    leading axes; scalars as 0-d arrays). NaN where a group has fewer than 2 values."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    paired: bool

    def p_value(self) -> np.ndarray:
        """Two-sided p-value of "the means are equal"."""
        return t_p_value(self.estimate, self.se, self.df)

    def interval(self, confidence: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided interval of the difference at ``confidence`` (may differ per entry)."""
        return t_bounds(self.estimate, self.se, self.df, confidence)


def paired_difference(a: ArrayLike, b: ArrayLike, resolution: float = 0.0) -> Difference:
    """Paired t: a and b on the same seeds, in the same order along the last axis."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = d.shape[-1]
    if n < 2:
        nan = np.full(d.shape[:-1], np.nan)
        return Difference(d.mean(axis=-1) if n else nan, nan, nan.copy(), True)
    sd = np.maximum(d.std(axis=-1, ddof=1), resolution)
    return Difference(d.mean(axis=-1), sd / math.sqrt(n), np.full(sd.shape, n - 1.0), True)


def welch_difference(a: ArrayLike, b: ArrayLike, resolution: float = 0.0) -> Difference:
    """Welch's unequal-variance t: a and b unpaired (their last axes may differ in length)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = a.shape[-1], b.shape[-1]
    if na == 0 or nb == 0:
        nan = np.full(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), np.nan)
        return Difference(nan, nan.copy(), nan.copy(), False)
    estimate = a.mean(axis=-1) - b.mean(axis=-1)
    if na < 2 or nb < 2:
        nan = np.full(np.shape(estimate), np.nan)
        return Difference(np.asarray(estimate), nan, nan.copy(), False)
    va = np.maximum(a.var(axis=-1, ddof=1), resolution**2) / na
    vb = np.maximum(b.var(axis=-1, ddof=1), resolution**2) / nb
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    df = np.where(va + vb > 0, df, na + nb - 2.0)
    return Difference(np.asarray(estimate), np.sqrt(va + vb), df, False)


def t_p_value(estimate: ArrayLike, se: ArrayLike, df: ArrayLike) -> np.ndarray:
    """Two-sided t p-value of estimate / se on df degrees of freedom; with se = 0 (a known
    difference), 0 unless the estimate is 0 (then 1); NaN where se is NaN."""
    est, se, df = (np.asarray(v, dtype=float) for v in (estimate, se, df))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * stats.t.sf(np.abs(est) / np.where(se > 0, se, 1.0), np.where(df > 0, df, 1.0))
    return np.where(np.isnan(se), np.nan, np.where(se > 0, p, np.where(est == 0, 1.0, 0.0)))


def t_bounds(
    estimate: ArrayLike, se: ArrayLike, df: ArrayLike, confidence: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """estimate -+ t_{df, (1 + confidence) / 2} se."""
    est, se, df = (np.asarray(v, dtype=float) for v in (estimate, se, df))
    with np.errstate(invalid="ignore"):
        q = stats.t.ppf(0.5 + np.asarray(confidence, dtype=float) / 2, np.where(df > 0, df, 1.0))
    half = np.where(se > 0, q * se, 0.0 * se)
    return est - half, est + half


def t_interval(x: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval of one mean along the last axis: mean -+ t_{n-1} s / sqrt(n) (NaN
    with fewer than 2 values)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    if n < 2:
        nan = np.full(np.shape(mean), np.nan)
        return nan, nan.copy()
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def t_power(effect: ArrayLike, n: ArrayLike, level: float, paired: bool = True) -> np.ndarray:
    """Power of the two-sided t-test at ``level`` for a standardized effect (mean difference over
    the sd of a paired difference, or over the per-group sd for Welch with n seeds a group),
    from the noncentral t distribution (exact for normal scores; Welch approximated by the
    pooled test on 2n - 2 degrees of freedom)."""
    effect, n = np.abs(np.asarray(effect, dtype=float)), np.asarray(n, dtype=float)
    df = n - 1 if paired else 2 * n - 2
    nc = effect * np.sqrt(n) if paired else effect * np.sqrt(n / 2)
    with np.errstate(invalid="ignore"):
        q = stats.t.ppf(1 - level / 2, df)
        power = stats.nct.sf(q, df, nc) + stats.nct.cdf(-q, df, nc)
    return np.where(n >= 2, power, 0.0)


def t_seeds_needed(
    effect: float, level: float, power: float = 0.8, paired: bool = True, max_seeds: int = 1000
) -> float:
    """Fewest seeds (per group) at which the two-sided t-test at ``level`` calls a standardized
    ``effect`` with probability ``power``; inf when none up to ``max_seeds`` (or no effect)."""
    if not math.isfinite(effect) or effect == 0:
        return math.inf
    n = np.arange(2, max_seeds + 1)
    enough = np.flatnonzero(t_power(effect, n, level, paired) >= power)
    return float(n[enough[0]]) if len(enough) else math.inf
