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

Over 400 lines on purpose: this is the one place where a verdict is assembled from its
statistics (``Comparison`` and ``pairwise``), and tests/test_calibration.py measures every
number a verdict quotes through this module; the generic statistics live in ``initsweep.stats``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from initsweep.naming import SEED_KEYS
from initsweep.report.aso import THRESHOLD as ASO_THRESHOLD
from initsweep.report.aso import aso
from initsweep.report.table import MISSING, RunTable, sort_key
from initsweep.stats.differences import (
    Difference,
    paired_difference,
    t_seeds_needed,
    welch_difference,
)
from initsweep.stats.differences import t_interval as _t_interval
from initsweep.stats.intervals import skew_corrected_t_interval
from initsweep.stats.multiple_testing import holm, holm_levels
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


# ------------------------------------------------------------------------------- pairs
def seed_matrix(table: RunTable) -> pd.DataFrame:
    """Usable values as seeds (all three keys) x groups, oriented so that higher is better;
    NaN where a group has no usable run on that seed."""
    usable = table.usable
    matrix = usable.pivot_table(
        index=list(SEED_KEYS), columns="group", values="value", aggfunc="mean"
    )
    return -matrix if table.lower_is_better else matrix


def paired_values(table: RunTable, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The metric of groups ``a`` and ``b`` on the seeds (all three keys) both ran."""
    matrix = seed_matrix(table)
    sign = -1.0 if table.lower_is_better else 1.0
    both = matrix[[a, b]].dropna()
    return sign * both[a].to_numpy(), sign * both[b].to_numpy()


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def neighbour_pairs(table: RunTable) -> list[tuple[str, str]]:
    """The comparisons fixed by the sweep's design: groups that differ in exactly one key, and in
    that key only next to each other when its values are numbers (lr 0.1 vs 0.2, not 0.1 vs 1.0;
    he vs xavier at each lr: every pair of a key whose values are names).

    Fixed before looking at the scores, so Holm's guarantee holds (choosing the pairs from the
    data, e.g. everything against the observed best, does not: see docs/report.md); about two
    pairs per group per numeric key, so the family stays small and the report fast.
    """
    labels = table.frame.drop_duplicates("group").set_index("group")
    keys = list(table.label_keys)
    groups = table.groups()
    if not keys:
        return []
    values = labels.loc[groups, [f"params.{k}" for k in keys]].astype(str)
    values.columns = keys
    pairs: list[tuple[str, str]] = []
    for key in keys:
        others = [k for k in keys if k != key]
        numeric = all(_is_number(v) for v in values[key] if v != MISSING)
        blocks = values.groupby(others, sort=False) if others else [((), values)]
        for _, block in blocks:
            column = values[key]
            members = sorted(block.index, key=lambda g: sort_key(column[g]))
            if numeric:
                pairs += list(zip(members, members[1:], strict=False))
            else:
                pairs += list(combinations(members, 2))
    order = {g: i for i, g in enumerate(groups)}
    ordered = {(a, b) if order[a] <= order[b] else (b, a) for a, b in pairs}
    return sorted(ordered, key=lambda p: (order[p[0]], order[p[1]]))


def all_pairs(table: RunTable) -> list[tuple[str, str]]:
    """Every pair of groups (``--all-pairs``)."""
    return list(combinations(table.groups(), 2))


def _digits(width: float) -> int:
    """Decimals that show an interval of this width with two significant digits (3 to 6)."""
    if not math.isfinite(width) or width <= 0:
        return 4
    return int(min(6, max(3, 1 - math.floor(math.log10(width)))))


@dataclass
class Comparison:
    """The difference of A's and B's means (A the better on the mean), with the verdict's test,
    and P(A > B) with the sign test as the distribution-free second line."""

    a: str
    b: str
    n_pairs: int  # seeds both ran (the paired test's n); Welch: the smaller group's n
    p: float  # P(A > B) over the paired seeds, ties half (NaN: no paired seeds)
    ci_low: float  # its exact interval
    ci_high: float
    mean_diff: float  # mean(A) - mean(B), metric units
    diff_low: float = math.nan  # interval at the level Holm tests this pair at
    diff_high: float = math.nan
    test: str = "paired t"  # or "Welch"
    test_p: float = math.nan  # the verdict's test, two-sided
    holm_p: float = math.nan  # test_p adjusted over the pairs compared (Holm)
    sign_p: float = math.nan  # exact two-sided sign test
    sign_holm_p: float = math.nan  # sign_p adjusted over the pairs compared (Holm)
    sign_for_a: bool = True  # the sign test's direction: more seeds favour A than B
    aso_eps: float = math.nan  # almost stochastic order eps_min of A over B
    seeds_needed: float = math.nan  # seeds at which the verdict's test would call it
    level: float = ALPHA  # the Holm level of this pair (its interval is at 1 - level)
    n_a: int = 0
    n_b: int = 0

    @property
    def called(self) -> bool:
        return bool(calls(self.holm_p))

    @property
    def sign_called(self) -> bool:
        return bool(calls(self.sign_holm_p))

    def settle(self) -> str:
        """How many seeds would settle an uncalled pair, as a phrase."""
        need = self.seeds_needed
        if not math.isfinite(need):
            return (
                "no difference seen to chase"
                if need == math.inf and self.mean_diff == 0
                else f"more than {MAX_SEEDS} seeds would be needed"
                if need == math.inf
                else ""
            )
        more = int(need) - self.n_pairs
        return f"about {int(need)} seeds would settle it" + (f" ({more} more)" if more > 0 else "")

    def disagreement(self) -> str:
        """When the second line (P(A > B), sign test) reads the pair otherwise: empty if not."""
        if not math.isfinite(self.p):
            return ""
        if self.sign_called and not (self.called and self.sign_for_a):
            winner, loser = (self.a, self.b) if self.sign_for_a else (self.b, self.a)
            return (
                f"the sign test disagrees: {winner} wins on most seeds (P({winner}>{loser})"
                f"={max(self.p, 1 - self.p):.2f}, Holm p={self.sign_holm_p:.3f}), so a few "
                "seeds decide the means"
            )
        if self.called and self.p < 0.5:
            return (
                f"the sign test disagrees: {self.b} wins on most seeds (P({self.a}>{self.b})"
                f"={self.p:.2f}): {self.a}'s mean rests on a few seeds"
            )
        return ""

    @property
    def verdict(self) -> str:
        """The difference with its adjusted interval, the call, the second line."""
        seeds = (
            f"{self.n_pairs} seed{'s' if self.n_pairs != 1 else ''}"
            if self.test != "Welch"
            else f"{self.n_a} and {self.n_b} seeds, unpaired"
        )
        if not math.isfinite(self.holm_p):
            return f"{self.a} vs {self.b}: not enough seeds ({seeds}; a difference needs 2+)"
        d = _digits(self.diff_high - self.diff_low if math.isfinite(self.diff_low) else 0.0)
        diff = (
            f"{self.a} − {self.b} = {self.mean_diff:+.{d}f} "
            f"[{self.diff_low:+.{d}f}, {self.diff_high:+.{d}f}], {seeds}"
        )
        second = f"P(A>B)={self.p:.2f}" if math.isfinite(self.p) else ""
        other = self.disagreement()
        holm_p = "p<0.001" if self.holm_p < 0.001 else f"p={self.holm_p:.3f}"
        if self.called:
            text = f"{self.a} > {self.b}: {diff} (Holm {holm_p})"
        else:
            settle = self.settle()
            text = f"{self.a} vs {self.b}: {diff}, not called (Holm {holm_p})" + (
                f"; {settle}" if settle else ""
            )
        if second:
            text += f"; {second}"
        return text + (f"; {other}" if other else "")


def _resolution(table: RunTable, a: str, b: str, accuracy: bool) -> float:
    """The metric's step for the pair (``initsweep.stats.differences``): 1 / n_test for an
    accuracy measured on n_test examples, 0 otherwise."""
    if not accuracy:
        return 0.0
    n_test = table.usable.loc[table.usable["group"].isin([a, b]), "n_test"]
    n_test = n_test[np.isfinite(n_test.to_numpy(dtype=float))]
    return 1.0 / float(n_test.min()) if len(n_test) and float(n_test.min()) > 0 else 0.0


def pairwise(
    table: RunTable,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
    every_pair: bool = False,
) -> pd.DataFrame:
    """The verdict of each pair (default: ``neighbour_pairs``; ``every_pair``: ``all_pairs``):
    the difference of means by the paired t-test over the seeds both ran (Welch's when fewer
    than 2 pair), Holm-adjusted over these pairs, with each interval at its Holm level; P(A > B)
    with its interval and the sign test (Holm-adjusted on its own) as the second line; ASO. Each
    pair oriented so that A has the better mean.
    """
    if pairs is None:
        pairs = all_pairs(table) if every_pair else neighbour_pairs(table)
    columns = [
        "a",
        "b",
        "n_pairs",
        "test",
        "mean_diff",
        "diff_low",
        "diff_high",
        "test_p",
        "holm_p",
        "called",
        "P(A>B)",
        "ci_low",
        "ci_high",
        "sign_p",
        "sign_holm_p",
        "aso_eps_min",
        "seeds_needed",
        "verdict",
    ]
    if not pairs:
        return pd.DataFrame(columns=columns)
    matrix = seed_matrix(table)  # higher is better
    accuracy = is_accuracy(table)
    unit = -1.0 if table.lower_is_better else 1.0
    found: list[Comparison] = []
    diffs: list[Difference] = []
    samples: list[tuple[np.ndarray, np.ndarray]] = []
    for a, b in pairs:
        x = matrix[a].to_numpy(dtype=float) if a in matrix else np.array([])
        y = matrix[b].to_numpy(dtype=float) if b in matrix else np.array([])
        both = np.isfinite(x) & np.isfinite(y) if len(x) and len(y) else np.array([], bool)
        resolution = _resolution(table, a, b, accuracy)
        xa, yb = x[np.isfinite(x)] if len(x) else x, y[np.isfinite(y)] if len(y) else y
        if both.sum() >= 2:
            sa, sb = x[both], y[both]
            diff = paired_difference(sa, sb, resolution)
        else:
            sa, sb = (x[both], y[both]) if len(both) else (np.array([]), np.array([]))
            diff = welch_difference(xa, yb, resolution)
        flip = float(diff.estimate) < 0 if np.isfinite(diff.estimate) else False
        if flip:
            a, b, sa, sb, xa, yb = b, a, sb, sa, yb, xa
            diff = Difference(-diff.estimate, diff.se, diff.df, diff.paired)
        n = len(sa)
        wins, losses = int(np.sum(sa > sb)), int(np.sum(sa < sb))
        low, high = interval_from_counts(wins, n - wins - losses, n)
        c = Comparison(
            a,
            b,
            n,
            (wins + (n - wins - losses) / 2) / n if n else math.nan,
            float(low),
            float(high),
            float(diff.estimate) * unit,
            test="paired t" if diff.paired else "Welch",
            test_p=float(diff.p_value()),
            sign_p=float(sign_p_from_counts(wins, losses)) if n else math.nan,
            sign_for_a=wins >= losses,
            n_a=len(xa),
            n_b=len(yb),
        )
        found.append(c)
        diffs.append(diff)
        samples.append((sa, sb))
    m = len(found)
    test_p = np.array([c.test_p for c in found])
    adjusted, levels = holm(test_p), holm_levels(test_p, ALPHA)
    sign_adjusted = holm(np.array([c.sign_p for c in found]))
    rows = []
    for k, c in enumerate(found):
        c.holm_p, c.level, c.sign_holm_p = (
            float(adjusted[k]),
            float(levels[k]),
            float(sign_adjusted[k]),
        )
        diff = diffs[k]
        if math.isfinite(c.level):
            bounds = diff.interval(1 - c.level)
            ends = sorted((float(bounds[0]) * unit, float(bounds[1]) * unit))
            c.diff_low, c.diff_high = ends
        sa, sb = samples[k]
        if len(sa):
            c.aso_eps = float(aso(sa, sb, rng_for(seed, *sorted((c.a, c.b))), n_comparisons=m))
        if not c.called:
            c.seeds_needed = seeds_needed(
                diff, c.n_pairs if diff.paired else min(c.n_a, c.n_b), c.level
            )
        rows.append(
            {
                "a": c.a,
                "b": c.b,
                "n_pairs": c.n_pairs,
                "test": c.test,
                "mean_diff": c.mean_diff,
                "diff_low": c.diff_low,
                "diff_high": c.diff_high,
                "test_p": c.test_p,
                "holm_p": c.holm_p,
                "called": c.called,
                "P(A>B)": c.p,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "sign_p": c.sign_p,
                "sign_holm_p": c.sign_holm_p,
                "aso_eps_min": c.aso_eps,
                "seeds_needed": c.seeds_needed,
                "verdict": c.verdict,
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("holm_p", kind="stable", na_position="last").reset_index(drop=True)
