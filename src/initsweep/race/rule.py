"""The race's elimination rule: which configurations of a context stop getting seeds.

After each round every live configuration of a context has been trained on the same seeds, so
configurations are compared *paired*, seed by seed: the seed fixes the initial weights and the
data order, which move every configuration's score together, and the paired difference cancels
that shared part.

The rule, a "t-race" with Holm's correction (irace's ``testType = "t-test-holm"``,
Lopez-Ibanez et al. 2016; racing: Maron & Moore 1994, Birattari et al. 2002), with an
indifference margin and a finite population of seeds:

1. the leader is the live configuration with the best mean over the k seeds played;
2. for every other live configuration c, the paired differences d_s = leader_s - c_s (signed:
   > 0 means the leader did better) give a one-sided paired t-test of H0: mean(d) <= margin,
   "c is within ``margin`` of the leader, or better";
3. the race's reference is the full grid over its N seeds (``seeds``), i.e. the mean over those
   N seeds, not over infinitely many: k of N seeds are a sample drawn without replacement, and
   the standard error of what is still unknown carries the finite population correction
   sqrt((N - k) / N) (Cochran, Sampling Techniques, 1977, ch. 2). At k = N it is 0 and the
   race's choice is exactly the grid's;
4. the m p-values of the m challengers are adjusted with Holm's step-down procedure
   (``initsweep.report.multiple_comparisons.holm``), which keeps the chance of dropping any
   configuration for which H0 holds at or below alpha = 1 - confidence in the round, whatever
   the dependence between the comparisons (they share the leader);
5. every challenger whose adjusted p-value is <= alpha is dropped.

Why the margin (measured in docs/race.md, scripts/race_study.py): a configuration that fails on
a few seeds (a learning rate at the edge of stability) is slightly *better* than its neighbours
on the seeds where it does not fail, with a small spread. If the first seeds hold no failure,
the plain test (margin 0) drops the neighbour, which is the best on the mean over all seeds, on
3 or 4 seeds; on the tuning-trap workload that is most of the races that pick wrongly. A margin
says: a difference this small is not worth an early drop; it can be undone by one bad seed.
Configurations within the margin of each other race on until the seeds or the budget run out,
and then the best mean wins.

A challenger whose differences are all equal (zero spread, e.g. a learning rate that diverges to
chance on every seed) is dropped when the leader beat it by more than the margin on every seed.
Pure numpy/scipy, no I/O: the sweeper calls it after each round, ``initsweep.race.engine.replay``
on a table of results (tests, scripts/race_study.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from initsweep.report.multiple_comparisons import holm


@dataclass(frozen=True)
class Judgement:
    """One round's verdict on the live configurations of one context (rows of the score matrix).

    ``p_holm[i]`` is NaN for the leader; ``dropped[i]`` says whether row i stops getting seeds.
    Means and intervals are in the metric's own units (not signed).
    """

    leader: int
    mean: np.ndarray
    low: np.ndarray  # t-interval of each row's mean at the race's confidence
    high: np.ndarray
    diff: np.ndarray  # mean paired difference leader - row, signed: > 0: the leader is better (NaN:
    # the leader itself)
    p_holm: np.ndarray
    dropped: np.ndarray


def mean_interval(values: ArrayLike, confidence: float) -> tuple[float, float, float]:
    """Mean and two-sided Student t-interval of the mean (NaN bounds with fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def paired_p_value(diff: ArrayLike, margin: float = 0.0, population: int | None = None
                   ) -> float:
    """One-sided paired t-test p-value of H0: mean(diff) <= margin against mean(diff) > margin.

    ``population``: the N seeds the race may play (finite population correction, module doc);
    None: an unbounded population (the textbook test). Degenerate cases: no spread, or every
    seed played: 0 when the mean difference exceeds the margin, else 1; fewer than 2
    differences: 1 (nothing is called on one seed).
    """
    d = np.asarray(diff, dtype=float)
    if len(d) < 2:
        return 1.0
    spread = d.std(ddof=1)
    complete = population is not None and len(d) >= population
    if spread == 0 or not math.isfinite(spread) or complete:
        return 0.0 if d.mean() > margin else 1.0
    se = spread / math.sqrt(len(d))
    if population is not None:
        se *= math.sqrt((population - len(d)) / population)
    return float(stats.t.sf((d.mean() - margin) / se, len(d) - 1))


def judge(scores: ArrayLike, maximize: bool, confidence: float, margin: float = 0.0,
          population: int | None = None) -> Judgement:
    """Judge one context's live configurations on the seeds they all played.

    ``scores`` is (configurations x seeds), same seeds in the same columns. The leader is the
    best mean (the first in row order on a tie); the others are tested against it (module doc).
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"scores must be (configurations x seeds), got shape {x.shape}")
    signed = x if maximize else -x
    means = signed.mean(axis=1)
    leader = int(np.argmax(means))  # argmax: the first of equal means
    diff = signed[leader] - signed  # (configurations x seeds), > 0: the leader did better
    p = np.array([math.nan if i == leader else paired_p_value(diff[i], margin, population)
                  for i in range(len(x))])
    p_holm = holm(p) if len(x) > 1 else p
    alpha = 1.0 - confidence
    dropped = np.where(np.isnan(p_holm), False, p_holm <= alpha)
    intervals = [mean_interval(row, confidence) for row in x]
    mean_diff = diff.mean(axis=1)
    mean_diff[leader] = math.nan
    return Judgement(leader, x.mean(axis=1), np.array([i[1] for i in intervals]),
                     np.array([i[2] for i in intervals]), mean_diff, p_holm,
                     dropped.astype(bool))


def best_mean(scores: Sequence[float] | np.ndarray, maximize: bool) -> int:
    """Index of the best mean of a 1-D sequence of means (the first of equal means)."""
    x = np.asarray(scores, dtype=float)
    return int(np.argmax(x if maximize else -x))
