"""How much of a result is the seed: per-group statistics and paired comparisons.

Every method here was chosen by its measured coverage or error rate on simulated seeds with a
known truth (``tests/test_calibration.py``; the numbers and assumptions are in docs/report.md):

- Per group: n, mean, std, min, median, max, interquartile mean (``scipy.stats.trim_mean`` 0.25,
  robust to one bad seed), a 95% confidence interval of the mean, and the test-set noise floor
  ``sqrt(p(1-p)/n_test)`` (Jordan 2024). The interval is Hall's (1992) skewness-corrected t
  (``mean_interval``): 0.95 coverage of normal scores at 3 to 20 seeds, 0.90-0.95 of strongly
  skewed ones; the BCa bootstrap it replaced covered 0.72 at 3 seeds. Below 3 seeds there is no
  interval (with 2, a t interval is mean +- 9 std).
- Between groups, the verdict: the difference of means in the metric's units with its interval,
  by the paired t-test over the seeds both ran (same ``seed``, ``init_seed``, ``data_seed``),
  or Welch's when fewer than 2 seeds pair (``initsweep.stats.differences``); the p-values of all
  the pairs compared Holm-adjusted (``initsweep.stats.multiple_testing``) so that the chance of
  any false winner stays at 5%, and each interval at the level Holm tests its pair at, so that it
  excludes 0 exactly when the pair is called; for a pair not called, how many seeds would call it
  (the same t-test's power). The distribution-free second line: P(A > B) (Bouthillier et al.
  2021), the share of seeds on which A beats B, ties counted half, with an exact
  (Clopper-Pearson) interval, and the exact sign test of P(A > B) = 1/2, Holm-adjusted on its
  own; the verdict says when the two disagree. Almost stochastic order (``aso``) is a third
  opinion that compares the two score distributions without assuming their shape.

Failed, diverged and other unusable runs are excluded from every statistic and counted per group.

The comparisons between groups (``Comparison``, ``pairwise``) are in ``report.pairs``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from initsweep.report.aso import THRESHOLD as ASO_THRESHOLD
from initsweep.report.table import RunTable
from initsweep.stats.differences import (
    Difference,
    t_seeds_needed,
)
from initsweep.stats.differences import t_interval as _t_interval
from initsweep.stats.intervals import skew_corrected_t_interval
from initsweep.stats.multiple_testing import holm
from initsweep.stats.sign_test import (
    MAX_SEEDS,
    POWER,
    interval_from_counts,
    p_better,
    p_better_interval,
    seeds_for_win_probability,
    sign_p_from_counts,
    sign_seeds_needed,
    sign_test,
    sign_test_power,
)

MEANINGFUL = 0.75  # Bouthillier et al. 2021: P(A > B) >= 0.75 is a meaningful improvement
ALPHA = 0.05  # family-wise level of the verdicts (Holm over the pairs compared)
CONFIDENCE = 0.95
MIN_SEEDS_CI = 3  # no interval below this many seeds

# Re-exported: the report's text and the calibration (tests/test_calibration.py,
# scripts/calibrate_report.py) read every statistic of a verdict from this one module.
__all__ = [
    "ASO_THRESHOLD",
    "MAX_SEEDS",
    "POWER",
    "holm",
    "interval_from_counts",
    "p_better",
    "p_better_interval",
    "seeds_for_win_probability",
    "sign_p_from_counts",
    "sign_seeds_needed",
    "sign_test",
    "sign_test_power",
    "skew_corrected_t_interval",
]


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by the report seed and a name, so each group's interval is reproducible
    and does not change when other groups are added to the report."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def is_accuracy(table: RunTable) -> bool:
    """The noise floor only makes sense for a proportion: values in [0, 1], higher is better."""
    values = table.usable["value"]
    return (
        not table.lower_is_better
        and len(values) > 0
        and bool(((values >= 0) & (values <= 1)).all())
    )


# ------------------------------------------------------------------------------- intervals
def ci_method(n: int) -> str:
    """The interval used for ``n`` seeds: ``hall-t`` (see ``mean_interval``) or ``none``."""
    return "none" if n < MIN_SEEDS_CI else "hall-t"


def t_interval(x: ArrayLike, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval of the mean along the last axis (``initsweep.stats.differences``;
    the race shows this one): what ``mean_interval`` was chosen against."""
    return _t_interval(x, confidence)


def mean_interval(
    x: ArrayLike, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The report's interval of the mean along the last axis: Hall's skewness-corrected t
    interval (``skew_corrected_t_interval``), cut to ``bounds`` when the metric cannot leave
    them (an accuracy's mean lies in [0, 1]: cutting there never loses coverage); NaN below
    ``MIN_SEEDS_CI`` seeds.

    Chosen by coverage and width measured on simulated seeds (docs/report.md): Student's t
    covers normal scores exactly but 0.88-0.92 of strongly skewed ones; the studentized bootstrap
    covers skewed ones best from 5 seeds on but, when a seed collapsed, gives intervals 4-10 times
    as wide as t (mean +- several whole accuracy units); Hall's interval covers skewed scores
    0.90-0.95 and stays within about twice t's width there.
    """
    x = np.asarray(x, dtype=float)
    if ci_method(x.shape[-1]) == "none":
        nan = np.full(x.shape[:-1], np.nan)
        return nan, nan.copy()
    low, high = skew_corrected_t_interval(x, confidence)
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return low, high


# ------------------------------------------------------------------------------- per group
def group_summary(table: RunTable, seed: int = 0) -> pd.DataFrame:
    """One row per group: counts by outcome, then the statistics of the usable runs."""
    # a slim copy: filtering the full frame (every param, metric and tag) per group is slow
    frame = table.frame[["group", "usable", "value", "outcome", "n_test"]]
    by_group = dict(list(frame.groupby("group", sort=False)))
    accuracy = is_accuracy(table)
    rows = []
    for group in table.groups():
        runs = by_group[group]
        ok = runs[runs["usable"]]
        x = ok["value"].to_numpy(dtype=float)
        outcomes = runs.loc[~runs["usable"], "outcome"].value_counts()
        row: dict[str, object] = {
            "group": group,
            "n": len(x),
            "failed": int(outcomes.get("failed", 0)),
            "diverged": int(outcomes.get("diverged", 0)),
            "other": int(outcomes.drop(["failed", "diverged"], errors="ignore").sum()),
        }
        row.update(
            mean=math.nan,
            std=math.nan,
            min=math.nan,
            median=math.nan,
            max=math.nan,
            iqm=math.nan,
            ci_low=math.nan,
            ci_high=math.nan,
        )
        if len(x):
            row.update(
                mean=float(np.mean(x)),
                std=float(np.std(x, ddof=1)) if len(x) > 1 else math.nan,
                min=float(np.min(x)),
                median=float(np.median(x)),
                max=float(np.max(x)),
                iqm=float(stats.trim_mean(x, 0.25)),
            )
            low, high = mean_interval(x, bounds=(0.0, 1.0) if accuracy else None)
            row["ci_low"], row["ci_high"] = float(low), float(high)
        row["ci_method"] = ci_method(len(x))
        n_test = float(ok["n_test"].median()) if ok["n_test"].notna().any() else math.nan
        row["n_test"] = n_test
        floor = math.nan
        if accuracy and len(x) and math.isfinite(n_test) and n_test > 0:
            p = float(np.mean(x))
            floor = math.sqrt(p * (1 - p) / n_test)
        row["noise_floor"] = floor
        std = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
        row["std/floor"] = std / floor if floor and math.isfinite(floor) else math.nan
        row["excluded"] = ", ".join(f"{v} {k}" for k, v in outcomes.items())
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_needed(
    diff: Difference, n: int, level: float, power: float = POWER, max_seeds: int = MAX_SEEDS
) -> float:
    """Roughly how many seeds (per group) the verdict's t-test at ``level`` needs to call this
    pair with ``power``, if the difference and its spread stayed what ``diff`` (on ``n`` seeds)
    measured: the noncentral t power of the standardized effect mean / sd, sd = se sqrt(n) for a
    paired difference, se sqrt(n / 2) per group for Welch. inf when no difference was seen or
    none below ``max_seeds``; NaN without a standard error. Rough: with few seeds the effect is
    itself uncertain, and a pair that just missed is more likely than not to have looked better
    than it is."""
    est, se = float(diff.estimate), float(diff.se)
    if not math.isfinite(se):
        return math.nan
    if est == 0:
        return math.inf
    if se == 0:
        return float(n)
    sd = se * math.sqrt(n) if diff.paired else se * math.sqrt(n / 2)
    return t_seeds_needed(est / sd, level, power, diff.paired, max_seeds)


def calls(holm_p: ArrayLike) -> np.ndarray:
    """Which Holm-adjusted p-values name a winner: p <= ALPHA (the verdicts' rule)."""
    p = np.asarray(holm_p, dtype=float)
    return np.isfinite(p) & (p <= ALPHA)
