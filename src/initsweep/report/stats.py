"""How much of a result is the seed: per-group statistics, paired comparisons, variance split.

- Per group: n, mean, std, min, median, max, interquartile mean (``scipy.stats.trim_mean`` 0.25,
  robust to one bad seed), a 95% bootstrap confidence interval of the mean (``scipy.stats
  .bootstrap``, BCa, seeded: the same store gives the same report), and the test-set noise floor
  ``sqrt(p(1-p)/n_test)`` (Jordan 2024): the seed-to-seed std a model would show from test-set
  sampling alone. A std close to the floor means the seeds barely matter beyond measurement noise.
- Between groups: P(A > B) over paired seeds (Bouthillier et al. 2021), the probability that A
  beats B when both run on the same seeds, ties counted half, with a percentile bootstrap
  interval. They call P >= 0.75 meaningful; the verdict also asks the interval to exclude 0.5
  and, because the bootstrap of a few seeds that all agree is degenerate ([1, 1] at 2 seeds), an
  exact one-sided sign test (``scipy.stats.binomtest``) over the seeds to reach p < 0.05, which
  takes at least 5 seeds.
- Variance split (Dodge et al. 2020): when ``init_seed`` and ``data_seed`` are crossed, the
  two-way ANOVA sums of squares give the share of the seed variance due to the weights' seed, the
  data order's seed, and the rest (their interaction, plus any other randomness).

Failed, diverged and other unusable runs are excluded from every statistic and counted per group.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from initsweep.report.runs import SEED_KEYS, RunTable

MEANINGFUL = 0.75  # Bouthillier et al. 2021: P(A > B) >= 0.75 is a meaningful improvement
ALPHA = 0.05  # the sign test's level
CONFIDENCE = 0.95
N_RESAMPLES = 9999


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by the report seed and a name, so each group's interval is reproducible
    and does not change when other groups are added to the report."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def bootstrap_ci(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray],
                 rng: np.random.Generator, paired: bool = False, method: str = "BCa",
                 n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """95% bootstrap interval of ``statistic`` via ``scipy.stats.bootstrap``.

    Degenerate data (every resample gives the same value, e.g. all seeds equal) has the point
    value as its interval instead of BCa's NaN; fewer than two observations give NaN.
    """
    if min(len(s) for s in samples) < 2:
        return math.nan, math.nan
    point = float(statistic(*samples, axis=-1))
    for how in (method, "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(tuple(samples), statistic, n_resamples=n_resamples,
                                     paired=paired, vectorized=True, method=how,
                                     confidence_level=CONFIDENCE, rng=rng)
        low, high = (float(result.confidence_interval.low),
                     float(result.confidence_interval.high))
        if math.isfinite(low) and math.isfinite(high):
            return low, high
        if np.ptp(result.bootstrap_distribution) == 0:
            return point, point
    return math.nan, math.nan


def mean_statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean along ``axis`` (vectorized, as ``scipy.stats.bootstrap`` calls it)."""
    return np.mean(x, axis=axis)


def is_accuracy(table: RunTable) -> bool:
    """The noise floor only makes sense for a proportion: values in [0, 1], higher is better."""
    values = table.usable["value"]
    return (not table.lower_is_better and len(values) > 0
            and bool(((values >= 0) & (values <= 1)).all()))


# ------------------------------------------------------------------------------- per group
def group_summary(table: RunTable, seed: int = 0) -> pd.DataFrame:
    """One row per group: counts by outcome, then the statistics of the usable runs."""
    frame = table.frame
    accuracy = is_accuracy(table)
    rows = []
    for group in table.groups():
        runs = frame[frame["group"] == group]
        ok = runs[runs["usable"]]
        x = ok["value"].to_numpy(dtype=float)
        outcomes = runs.loc[~runs["usable"], "outcome"].value_counts()
        row: dict[str, object] = {
            "group": group, "n": len(x),
            "failed": int(outcomes.get("failed", 0)),
            "diverged": int(outcomes.get("diverged", 0)),
            "other": int(outcomes.drop(["failed", "diverged"], errors="ignore").sum()),
        }
        row.update(mean=math.nan, std=math.nan, min=math.nan, median=math.nan, max=math.nan,
                   iqm=math.nan, ci_low=math.nan, ci_high=math.nan)
        if len(x):
            row.update(mean=float(np.mean(x)), std=float(np.std(x, ddof=1)) if len(x) > 1
                       else math.nan, min=float(np.min(x)), median=float(np.median(x)),
                       max=float(np.max(x)), iqm=float(stats.trim_mean(x, 0.25)))
            row["ci_low"], row["ci_high"] = bootstrap_ci((x,), mean_statistic, rng_for(seed, group))
        n_test = float(ok["n_test"].median()) if ok["n_test"].notna().any() else math.nan
        row["n_test"] = n_test
        floor = math.nan
        if accuracy and len(x) and math.isfinite(n_test) and n_test > 0:
            p = float(np.mean(x))
            floor = math.sqrt(p * (1 - p) / n_test)
        row["noise_floor"] = floor
        row["std/floor"] = row["std"] / floor if floor and math.isfinite(floor) else math.nan
        row["excluded"] = ", ".join(f"{v} {k}" for k, v in outcomes.items())
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- pairwise
def _p_better(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(A > B) over paired observations, ties counted half."""
    return np.mean(a > b, axis=axis) + 0.5 * np.mean(a == b, axis=axis)


@dataclass
class Comparison:
    """P(A better than B) over the seeds both groups ran, oriented so that A is the better one."""

    a: str
    b: str
    n_pairs: int
    p: float
    ci_low: float
    ci_high: float
    mean_diff: float
    sign_p: float = math.nan  # exact one-sided sign test that A wins more often than B

    @property
    def verdict(self) -> str:
        """A plain sentence: which is better, or that the seeds cannot tell them apart."""
        seeds = f"{self.n_pairs} seed{'s' if self.n_pairs != 1 else ''}"
        if self.n_pairs < 2 or not math.isfinite(self.p):
            return f"{self.a} vs {self.b}: not enough paired seeds ({seeds})"
        significant = self.ci_low > 0.5 and self.sign_p < ALPHA
        if self.p >= MEANINGFUL and self.ci_low > 0.5 and not significant:
            return (f"{self.a} vs {self.b}: P={self.p:.2f} for {self.a}, too few seeds to "
                    f"call ({seeds}, sign test p={self.sign_p:.2f})")
        if self.p >= MEANINGFUL and significant:
            return f"{self.a} > {self.b} (P={self.p:.2f}, {seeds})"
        if significant:
            return (f"{self.a} ≳ {self.b}: P={self.p:.2f} is reliably above 0.5 but below "
                    f"{MEANINGFUL}, a small difference ({seeds})")
        if self.p >= MEANINGFUL:
            return (f"{self.a} vs {self.b}: P={self.p:.2f} but the interval "
                    f"[{self.ci_low:.2f}, {self.ci_high:.2f}] includes 0.5; "
                    f"undecided at {seeds}")
        return f"{self.a} vs {self.b}: indistinguishable at {seeds} (P={self.p:.2f})"


def paired_values(table: RunTable, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The metric of groups ``a`` and ``b`` on the seeds (all three keys) both ran."""
    usable = table.usable
    key = list(SEED_KEYS)
    left = usable[usable["group"] == a].set_index(key)["value"]
    right = usable[usable["group"] == b].set_index(key)["value"]
    common = left.index.intersection(right.index).sort_values()
    return left.loc[common].to_numpy(dtype=float), right.loc[common].to_numpy(dtype=float)


def compare(table: RunTable, a: str, b: str, seed: int = 0) -> Comparison:
    """P(A better than B) over paired seeds with its bootstrap interval, better group first."""
    x, y = paired_values(table, a, b)
    if table.lower_is_better:
        x, y = -x, -y
    if len(x) == 0:
        return Comparison(a, b, 0, math.nan, math.nan, math.nan, math.nan)
    p = float(_p_better(x, y))
    if p < 0.5:
        a, b, x, y, p = b, a, y, x, 1 - p
    low, high = bootstrap_ci((x, y), _p_better, rng_for(seed, a, b), paired=True,
                             method="percentile")
    diff = float(np.mean(x - y)) * (-1 if table.lower_is_better else 1)
    wins, losses = int(np.sum(x > y)), int(np.sum(x < y))
    sign_p = (stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue
              if wins + losses else 1.0)
    return Comparison(a, b, len(x), p, low, high, diff, float(sign_p))


def neighbour_pairs(table: RunTable) -> list[tuple[str, str]]:
    """Pairs of groups whose labels differ in exactly one key (he vs xavier at the same lr, one lr
    vs another for the same scheme): the comparisons people make, without the n² others."""
    labels = table.frame.drop_duplicates("group").set_index("group")
    cols = [f"params.{k}" for k in table.label_keys]
    groups = table.groups()
    pairs = []
    for a, b in combinations(groups, 2):
        differ = sum(labels.at[a, c] != labels.at[b, c] for c in cols)
        if differ == 1 or len(cols) <= 1:
            pairs.append((a, b))
    return pairs


def pairwise(table: RunTable, seed: int = 0,
             pairs: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """P(A > B) for each pair (default: ``neighbour_pairs``), with interval and verdict."""
    rows = []
    for a, b in (pairs if pairs is not None else neighbour_pairs(table)):
        c = compare(table, a, b, seed)
        rows.append({"a": c.a, "b": c.b, "n_pairs": c.n_pairs, "P(A>B)": c.p,
                     "ci_low": c.ci_low, "ci_high": c.ci_high, "mean_diff": c.mean_diff,
                     "sign_p": c.sign_p, "verdict": c.verdict})
    return pd.DataFrame(rows, columns=["a", "b", "n_pairs", "P(A>B)", "ci_low", "ci_high",
                                       "mean_diff", "sign_p", "verdict"])


# ------------------------------------------------------------------------------- variance split
def variance_split(table: RunTable) -> pd.DataFrame:
    """Per group with ``init_seed`` x ``data_seed`` crossed: shares of the sum of squares.

    Two-way ANOVA on a complete, balanced grid (init seeds whose row misses a data seed are
    dropped first): SS_init = J r sum_i (row mean - grand mean)^2, SS_data likewise on columns,
    rest = SS_total - SS_init - SS_data (interaction and anything else). Groups that were not
    crossed (fewer than 2 x 2 levels) get no row.
    """
    rows = []
    for group in table.groups():
        ok = table.usable[table.usable["group"] == group]
        if ok["init_seed"].nunique() < 2 or ok["data_seed"].nunique() < 2:
            continue
        counts = ok.pivot_table(index="init_seed", columns="data_seed", values="value",
                                aggfunc="count").fillna(0)
        complete = counts[(counts > 0).all(axis=1)]
        if len(complete) < 2 or counts.shape[1] < 2:
            continue
        if complete.to_numpy().min() != complete.to_numpy().max():
            continue  # unbalanced replication: the simple sums of squares would not add up
        grid = ok[ok["init_seed"].isin(complete.index)]
        y = grid["value"].to_numpy(dtype=float)
        grand = y.mean()
        ss_total = float(((y - grand) ** 2).sum())
        rows_mean = grid.groupby("init_seed")["value"].agg(["mean", "count"])
        cols_mean = grid.groupby("data_seed")["value"].agg(["mean", "count"])
        ss_init = float((rows_mean["count"] * (rows_mean["mean"] - grand) ** 2).sum())
        ss_data = float((cols_mean["count"] * (cols_mean["mean"] - grand) ** 2).sum())
        ss_rest = max(ss_total - ss_init - ss_data, 0.0)
        shares = [ss / ss_total if ss_total > 0 else math.nan
                  for ss in (ss_init, ss_data, ss_rest)]
        rows.append({
            "group": group, "init_seeds": len(complete), "data_seeds": counts.shape[1],
            "runs": len(y), "std": float(np.std(y, ddof=1)),
            "init_share": shares[0], "data_share": shares[1], "rest_share": shares[2],
            "init_std": float(np.std(rows_mean["mean"], ddof=1)),
            "data_std": float(np.std(cols_mean["mean"], ddof=1)),
            "dropped_init_seeds": len(counts) - len(complete),
        })
    return pd.DataFrame(rows)
