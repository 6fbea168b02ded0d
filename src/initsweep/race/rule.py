"""The race's elimination rule: which configurations of a context stop getting seeds.

After each round every live configuration of a context has been trained on the same seeds, so
configurations are compared *paired*, seed by seed: the seed fixes the initial weights and the
data order, which move every configuration's score together, and the paired difference cancels
that shared part.

The rule keeps its error rate however often it looks (anytime-valid), with an indifference
margin. For each configuration c of a context, the hypothesis

    H_c: no other configuration's mean beats c's by more than ``margin``
         (c is the best, or within the margin of the best)

is tested by an e-process E_c, a betting test supermartingale (``initsweep.stats.
confidence_sequences``: I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random
variables by betting", JRSS B 86(1), 2024) on paired differences d = opponent - c of a bounded
metric (an accuracy lies in [0, 1], so d lies in [-1, 1]). The opponent on a seed is fixed
*before* that seed is seen: the configuration with the best mean over the seeds played before it
(other than c), or on the first seeds, when nothing is known yet, the mean of the other live
configurations. Under H_c every opponent's expected difference is at most the margin, whichever
one is picked, so E_c stays a test supermartingale (a predictable choice of bet).

After every round the e-values of all the context's configurations (frozen once dropped) are
adjusted by e-Holm (``initsweep.stats.multiple_testing.e_holm``: Vovk & Wang, "E-values:
calibration, combination and applications", Annals of Statistics 49(3), 2021), and a live
configuration whose adjusted e-value reaches 1 / (1 - confidence) is dropped. Since the mean of
the true hypotheses' e-processes is a test supermartingale, Ville's inequality bounds the chance
that the race *ever* drops a configuration within the margin of the best by 1 - confidence,
over all rounds together, whatever the budget or when the race ends. ``Judgement.p_holm`` is the
matching anytime-valid p-value, min(1, 1 / adjusted e).

What this replaced (docs/race.md): a one-sided paired t-test against the observed leader,
Holm-adjusted per round, with a finite population correction. Its guarantee held for one round
and a fixed leader; a race looks every round, and without a margin it dropped one of five
identical configurations in nearly every race.

The price of assuming only the bound: a seed can move E_c by at most a factor (1 + d) / (1 +
margin), so only large, consistent differences (a learning rate that collapses to chance) are
dropped within tens of seeds; near-ties race on until the seeds or the budget end, and the best
mean then wins. The margin stays a practical-equivalence knob: differences up to it are never
evidence. Pure numpy/scipy, no I/O: the sweeper calls it after each round,
``initsweep.race.engine.replay`` on a table of results (tests, scripts/race_study.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from initsweep.stats.confidence_sequences import BettingEProcess
from initsweep.stats.differences import t_interval
from initsweep.stats.multiple_testing import e_holm


@dataclass(frozen=True)
class Judgement:
    """One round's verdict on the live configurations of one context (rows of the score matrix).

    ``p_holm[i]`` is the anytime-valid p-value min(1, 1 / e-Holm-adjusted e-value) of row i (NaN
    for the leader); ``dropped[i]`` says whether row i stops getting seeds. Means and intervals
    are in the metric's own units (not signed).
    """

    leader: int
    mean: np.ndarray
    low: np.ndarray  # Student t interval of each row's mean at the race's confidence
    high: np.ndarray
    diff: np.ndarray  # mean paired difference leader - row, signed: > 0: the leader is better (NaN:
    # the leader itself)
    p_holm: np.ndarray
    dropped: np.ndarray
    e_value: np.ndarray = field(default_factory=lambda: np.array([]))  # each row's E_c


def mean_and_t_interval(values: ArrayLike, confidence: float) -> tuple[float, float, float]:
    """Mean and Student's t interval of the mean (``initsweep.stats.differences.t_interval``;
    NaN bounds with fewer than 2 values). The race shows it per configuration; it decides
    nothing."""
    x = np.asarray(values, dtype=float)
    low, high = t_interval(x, confidence)
    return float(x.mean()), float(low), float(high)


@dataclass
class Elimination:
    """One context's e-processes, one per configuration (module docstring); fed seed by seed."""

    n_configs: int
    maximize: bool = True
    confidence: float = 0.9
    margin: float = 0.0
    bounds: tuple[float, float] = (0.0, 1.0)  # the metric's range; values are clipped to it
    processes: list[BettingEProcess] = field(default_factory=list)
    dropped: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        bound = self.bounds[1] - self.bounds[0]  # |difference| <= bound
        self.processes = [BettingEProcess(self.margin, bound) for _ in range(self.n_configs)]

    def observe(self, values: ArrayLike, past_means: ArrayLike) -> None:
        """One seed: ``values[i]`` of every configuration (NaN: not live), and each one's mean
        over the seeds played before this one (NaN: none yet), both in the metric's units."""
        sign = 1.0 if self.maximize else -1.0
        x = sign * np.clip(np.asarray(values, dtype=float), *self.bounds)
        past = sign * np.asarray(past_means, dtype=float)
        live = np.flatnonzero(np.isfinite(x))
        if len(live) < 2:
            return
        for c in live:
            others = live[live != c]
            known = others[np.isfinite(past[others])]
            opponent = x[known[np.argmax(past[known])]] if len(known) else float(np.mean(x[others]))
            self.processes[c].update(float(opponent - x[c]))

    def judge(self, live: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """e-values and e-Holm-adjusted e-values of ``live`` (indices); the adjustment is over
        every configuration of the context, the dropped ones with their frozen e-values."""
        e = np.array([p.e for p in self.processes])
        adjusted = e_holm(e)
        return e[list(live)], adjusted[list(live)]


def judge(
    scores: ArrayLike,
    maximize: bool,
    confidence: float,
    margin: float = 0.0,
    bounds: tuple[float, float] = (0.0, 1.0),
    elimination: Elimination | None = None,
    rows: Sequence[int] | None = None,
    new_seeds: int | None = None,
) -> Judgement:
    """Judge one context's live configurations on the seeds they all played.

    ``scores`` is (configurations x seeds), same seeds in the same columns. Without
    ``elimination`` the e-processes are built here from all the columns (every row live
    throughout); a race passes its context's ``Elimination``, ``rows`` (the live
    configurations' indices in it, in the order of ``scores``) and ``new_seeds``, the last
    columns, not fed to it yet.
    The leader is the best mean (the first in row order on a tie); it is never dropped.
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"scores must be (configurations x seeds), got shape {x.shape}")
    rule = elimination or Elimination(len(x), maximize, confidence, margin, bounds)
    rows = list(range(len(x))) if rows is None else list(rows)
    start = 0 if new_seeds is None else x.shape[1] - new_seeds
    for t in range(start, x.shape[1]):
        values = np.full(rule.n_configs, np.nan)
        past = np.full(rule.n_configs, np.nan)
        values[rows] = x[:, t]
        if t:
            past[rows] = x[:, :t].mean(axis=1)
        rule.observe(values, past)
    signed = x if maximize else -x
    means = signed.mean(axis=1)
    leader = int(np.argmax(means))  # argmax: the first of equal means
    e, adjusted = rule.judge(rows)
    with np.errstate(divide="ignore"):
        p_holm = np.minimum(1.0, 1.0 / adjusted)
    p_holm[leader] = math.nan
    alpha = 1.0 - confidence
    dropped = np.where(np.isnan(p_holm), False, adjusted >= 1.0 / alpha)
    intervals = [mean_and_t_interval(row, confidence) for row in x]
    mean_diff = (signed[leader] - signed).mean(axis=1)
    mean_diff[leader] = math.nan
    return Judgement(
        leader,
        x.mean(axis=1),
        np.array([i[1] for i in intervals]),
        np.array([i[2] for i in intervals]),
        mean_diff,
        p_holm,
        dropped.astype(bool),
        e,
    )


def best_mean(scores: Sequence[float] | np.ndarray, maximize: bool) -> int:
    """Index of the best mean of a 1-D sequence of means (the first of equal means)."""
    x = np.asarray(scores, dtype=float)
    return int(np.argmax(x if maximize else -x))
