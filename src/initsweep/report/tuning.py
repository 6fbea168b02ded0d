"""The tuning trap: what you lose by choosing a hyper-parameter on one seed.

The S0 study tuned its learning rate on one fixed initialization. Here the grid is tuned value x
seeds (for each other setting, e.g. each init scheme, called a *context*), and the question is how
much the choice depends on the seed it was made on.

Every choice is made on the *select* metric (a validation metric, by default the ``val/``
counterpart of the report's ``test/`` metric) and every score is read on the *score* metric (the
report's metric, e.g. ``test/acc``), as a user who tunes properly would: choosing on the numbers
you then report makes every regret look smaller than it is. When the runs logged no select
metric, choice and score both use the score metric, with a note.

- *winner on the mean*: the value with the best mean select metric over all seeds, the choice
  made with every seed;
- *flip rate*: the share of seeds whose own winner (on that seed's select metric) is not the
  winner on the mean;
- *regret*: per seed, score(winner on the mean) - score(that seed's winner), scores being means
  over all seeds, averaged over seeds: the expected score lost by trusting one seed;
- *optimism*: per seed, its winner's score on that seed minus the same value's mean score on the
  other seeds: how much better a single-seed result looks than what it delivers (winner's curse);
- *Kendall tau* (``scipy.stats.kendalltau``, tau-b) between the rankings of the values (select
  metric) by each pair of seeds: 1 = every seed ranks the values the same way;
- *P(best)*: by bootstrap over seeds (``scipy.stats.bootstrap``), how often each value wins on
  the mean select metric of a resample: the honest uncertainty about which value is best;
- *regret vs k*: choose on k seeds (the best mean select metric over them), score on the
  held-out others (best held-out mean score minus the chosen value's held-out mean score),
  averaged over subsets drawn by a seeded generator (all subsets when there are few): how many
  seeds a tuning decision needs.

A seed on which several values tie counts each of them with equal weight. Seeds missing any value
of the grid (a failed or diverged run) are left out of a context's grid and listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from initsweep.naming import SEED_KEYS
from initsweep.report.stats import is_accuracy, mean_interval, rng_for
from initsweep.report.table import (
    RunTable,
    format_label,
    label_keys_for,
    lower_is_better,
    sort_key,
)

MAX_SUBSETS = 200  # subsets per k for the regret curve; all of them when there are fewer
P_BEST_RESAMPLES = 2000


def seed_label(seeds: tuple[int, ...]) -> str:
    """``s3``, or ``s0-i1-d2`` when the init / data seeds differ from ``seed`` (as run names)."""
    seed, init_seed, data_seed = seeds
    label = f"s{seed}"
    if init_seed != seed:
        label += f"-i{init_seed}"
    if data_seed != seed:
        label += f"-d{data_seed}"
    return label


def fib_ks(n_seeds: int) -> list[int]:
    """1, 2, 3, 5, 8, ... below ``n_seeds`` (at least one seed is held out to evaluate on)."""
    ks, a, b = [], 1, 2
    while a < n_seeds:
        ks.append(a)
        a, b = b, a + b
    return ks


def _winners(scores: np.ndarray) -> np.ndarray:
    """Weights of the winning columns per row (1 for a single winner, 1/m for an m-way tie)."""
    best = np.isclose(scores, scores.max(axis=-1, keepdims=True), rtol=0, atol=1e-12)
    return best / best.sum(axis=-1, keepdims=True)


@dataclass
class TuningResult:
    """The tuning-trap analysis of one context (one setting of the other varying keys)."""

    context: str
    key: str
    values: list[str]
    seeds: list[str]
    grid: pd.DataFrame  # seeds x values, the score metric in its own units
    mean: pd.Series  # per value, the score metric's mean over the seeds of the grid
    best_on_mean: str
    per_seed: pd.DataFrame  # seed, winner, score, winner's mean elsewhere, regret, optimism
    flip_rate: float
    regret: float
    regret_max: float
    optimism: float
    tau: pd.DataFrame  # seeds x seeds Kendall tau
    tau_mean: float
    p_best: pd.Series
    curve: pd.DataFrame  # k, subsets, regret, regret_sem, miss_rate
    ci: pd.DataFrame | None = None  # per value: 95% interval of the mean score
    lower_is_better: bool = False
    dropped_seeds: list[str] = field(default_factory=list)
    score_metric: str = ""
    select_metric: str = ""  # the metric every choice was made on (== score_metric: fallback)
    select_grid: pd.DataFrame | None = None  # seeds x values, the select metric
    select_mean: pd.Series | None = None

    def summary(self) -> dict[str, object]:
        """The headline numbers as one table row."""
        k1 = self.curve[self.curve["k"] == 1]
        return {
            "context": self.context,
            "values": len(self.values),
            "seeds": len(self.seeds),
            "select_metric": self.select_metric,
            "score_metric": self.score_metric,
            "best_on_mean": self.best_on_mean,
            "flip_rate": self.flip_rate,
            "regret": self.regret,
            "regret_max": self.regret_max,
            "optimism": self.optimism,
            "tau_mean": self.tau_mean,
            "heldout_regret_k1": float(k1["regret"].iloc[0]) if len(k1) else math.nan,
            "p_best_of_winner": float(self.p_best.get(self.best_on_mean, math.nan)),
        }


def contexts(table: RunTable, key: str) -> tuple[list[str], pd.Series]:
    """The keys that define contexts, and each usable run's context label.

    Context keys are the group keys other than ``key`` that ``key`` does not determine: tuning
    ``init.scheme`` over he and zeros does not split by ``init.mode`` (only he has it), while
    tuning ``optim.lr`` over two schemes analyses each scheme on its own.
    """
    usable = table.usable
    params = usable[[f"params.{k}" for k in table.group_keys]]
    params.columns = table.group_keys
    keys = []
    for other in table.group_keys:
        if other == key:
            continue
        determined = params.groupby(key)[other].nunique().max() <= 1
        if not determined:
            keys.append(other)
    labels = label_keys_for(params, keys, ["init.scheme", "optim.name"])
    context = (
        params.apply(lambda r: format_label(r.to_dict(), labels), axis=1)
        if len(params)
        else pd.Series(dtype=str)
    )
    return keys, context


def select_counterpart(metric: str) -> str:
    """The validation metric that goes with ``metric``: ``test/acc`` -> ``val/acc``; other names
    are their own counterpart."""
    return "val/" + metric.removeprefix("test/") if metric.startswith("test/") else metric


def analyse(
    table: RunTable, key: str, seed: int = 0, select_metric: str | None = None
) -> tuple[list[TuningResult], list[str]]:
    """The tuning trap for every context; returns the results and notes on what was skipped.

    ``select_metric`` (a metric name; default: ``select_counterpart`` of the table's metric) is
    what the choices are made on; without it in the runs, the table's metric with a note.
    """
    usable = table.usable.copy()
    _, usable["context"] = contexts(table, key)
    results, notes = [], []
    select = select_metric or select_counterpart(table.metric)
    column = f"metrics.{select}"
    if (
        column not in usable
        or not np.isfinite(pd.to_numeric(usable[column], errors="coerce")).any()
    ):
        notes.append(
            f"tuning trap: no `{select}` logged, so the choices are made on "
            f"`{table.metric}` itself: chosen and scored on the same numbers, every "
            "regret below is optimistic"
        )
        select, column = table.metric, "value"
    ordered = sorted(
        usable["context"].unique(),
        key=lambda c: usable.loc[usable["context"] == c, "_group_order"].min(),
    )
    for context in ordered:
        sub = usable[usable["context"] == context]
        result, note = analyse_context(
            sub,
            key,
            context,
            table.lower_is_better,
            seed,
            select_column=column,
            select_lower_is_better=lower_is_better(select),
            bounds=(0.0, 1.0) if is_accuracy(table) else None,
        )
        if result is not None:
            result.score_metric, result.select_metric = table.metric, select
            results.append(result)
        if note:
            notes.append(note)
    return results, notes


def analyse_context(
    runs: pd.DataFrame,
    key: str,
    context: str,
    lower_is_better: bool,
    seed: int = 0,
    select_column: str = "value",
    select_lower_is_better: bool | None = None,
    bounds: tuple[float, float] | None = None,
) -> tuple[TuningResult | None, str | None]:
    """The tuning trap on one context's runs (usable rows of a ``RunTable`` frame): choices on
    ``select_column`` (default: the score itself), scores on ``value``; ``bounds`` are the
    metric's (an accuracy's: [0, 1]), for the per-value intervals."""
    if select_lower_is_better is None:
        select_lower_is_better = lower_is_better
    runs = runs.assign(
        seed_tuple=list(zip(*(runs[k] for k in SEED_KEYS), strict=True)),
        _select=pd.to_numeric(runs[select_column], errors="coerce"),
    )
    values = sorted(runs[f"params.{key}"].unique(), key=sort_key)

    def pivot(column: str) -> pd.DataFrame:
        return runs.pivot_table(
            index="seed_tuple", columns=f"params.{key}", values=column, aggfunc="mean"
        ).reindex(columns=values)

    grid, select_grid = pivot("value"), pivot("_select").reindex(index=pivot("value").index)
    grid, select_grid = grid.sort_index(), select_grid.sort_index()
    incomplete = grid.isna().any(axis=1) | select_grid.isna().any(axis=1)
    dropped = [seed_label(s) for s in grid.index[incomplete]]
    grid, select_grid = grid[~incomplete], select_grid[~incomplete]
    if len(grid) < 2 or len(values) < 2:
        return None, (
            f"{context}: tuning {key} needs 2+ values on 2+ seeds with every value; "
            f"has {len(values)} value(s) on {len(grid)} complete seed(s)"
        )
    grid.index = select_grid.index = [seed_label(s) for s in grid.index]
    seeds = list(grid.index)
    m = grid.to_numpy(dtype=float)
    sign = -1.0 if lower_is_better else 1.0
    score = sign * m  # higher is better
    choose = (-1.0 if select_lower_is_better else 1.0) * select_grid.to_numpy(dtype=float)
    n, v = score.shape
    mean = score.mean(axis=0)
    best = _winners(choose.mean(axis=0)[None, :])[0]  # weights of the winner on the mean
    best_on_mean = values[int(np.argmax(best))]

    wins = _winners(choose)  # per seed, chosen on its select metric
    flips = 1.0 - (wins * (best > 0)).sum(axis=1)
    regret = best @ mean - wins @ mean  # in score units: > 0 means lost
    others = (score.sum(axis=0)[None, :] - score) / (n - 1)  # each value's mean elsewhere
    own = (wins * score).sum(axis=1)
    elsewhere = (wins * others).sum(axis=1)
    optimism = own - elsewhere
    per_seed = pd.DataFrame(
        {
            "seed": seeds,
            "winner": ["=".join(values[j] for j in np.flatnonzero(w)) for w in wins],
            "score": sign * own,
            "winner_elsewhere": sign * elsewhere,
            "flip": flips,
            "regret": regret,
            "optimism": optimism,
        }
    )

    tau = np.full((n, n), np.nan)
    for i in range(n):
        tau[i, i] = 1.0
    for i, j in combinations(range(n), 2):
        with np.errstate(all="ignore"):
            t = stats.kendalltau(choose[i], choose[j]).statistic
        tau[i, j] = tau[j, i] = t
    upper = tau[np.triu_indices(n, 1)]
    tau_mean = float(np.nanmean(upper)) if np.isfinite(upper).any() else math.nan

    p_best = _p_best(choose, rng_for(seed, context, key, "p_best"))
    curve = regret_curve(score, rng_for(seed, context, key, "curve"), choose=choose)
    ci = pd.DataFrame(
        [[float(e) for e in mean_interval(m[:, j], bounds=bounds)] for j in range(len(values))],
        index=values,
        columns=["ci_low", "ci_high"],
    )
    return TuningResult(
        context=context,
        key=key,
        values=values,
        seeds=seeds,
        grid=grid,
        mean=pd.Series(sign * mean, index=values),
        best_on_mean=best_on_mean,
        per_seed=per_seed,
        flip_rate=float(flips.mean()),
        regret=float(regret.mean()),
        regret_max=float(regret.max()),
        optimism=float(optimism.mean()),
        tau=pd.DataFrame(tau, index=seeds, columns=seeds),
        tau_mean=tau_mean,
        p_best=pd.Series(p_best, index=values),
        curve=curve,
        ci=ci,
        lower_is_better=lower_is_better,
        dropped_seeds=dropped,
        select_grid=select_grid,
        select_mean=select_grid.mean(axis=0),
    ), (
        f"{context}: seeds without every value of {key} left out: {', '.join(dropped)}"
        if dropped
        else None
    )


def _p_best(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """P(each value wins on the mean) over bootstrap resamples of the seeds."""

    def best_share(index: np.ndarray, axis: int = -1) -> np.ndarray:
        means = score[np.asarray(index)].mean(axis=-2)
        return np.moveaxis(_winners(means), -1, 0)

    result = stats.bootstrap(
        (np.arange(len(score)),),
        best_share,
        vectorized=True,
        n_resamples=P_BEST_RESAMPLES,
        method="percentile",
        rng=rng,
    )
    return result.bootstrap_distribution.mean(axis=-1)


def regret_curve(
    score: np.ndarray,
    rng: np.random.Generator,
    ks: list[int] | None = None,
    choose: np.ndarray | None = None,
) -> pd.DataFrame:
    """Held-out regret when choosing on k seeds, for k in 1, 2, 3, 5, ... (see module doc).

    ``score`` and ``choose`` (default: ``score``) are seeds x values, higher is better: the
    choice is the best mean of ``choose`` over the k seeds, the regret the best held-out mean of
    ``score`` minus the choice's. ``miss_rate`` is how often the k-seed choice is not the choice
    made on all seeds.
    """
    choose = score if choose is None else choose
    n = len(score)
    overall = _winners(choose.mean(axis=0)[None, :])[0] > 0
    rows = []
    for k in ks or fib_ks(n):
        if math.comb(n, k) <= MAX_SUBSETS:
            subsets = [np.array(s) for s in combinations(range(n), k)]
        else:
            subsets = [np.sort(rng.choice(n, size=k, replace=False)) for _ in range(MAX_SUBSETS)]
        regrets, misses = [], []
        for chosen_on in subsets:
            held = np.setdiff1d(np.arange(n), chosen_on)
            choice = _winners(choose[chosen_on].mean(axis=0)[None, :])[0]
            held_mean = score[held].mean(axis=0)
            regrets.append(held_mean.max() - choice @ held_mean)
            misses.append(1.0 - choice[overall].sum())
        regrets_arr = np.array(regrets)
        rows.append(
            {
                "k": k,
                "subsets": len(subsets),
                "regret": float(regrets_arr.mean()),
                "regret_sem": float(stats.sem(regrets_arr)) if len(regrets_arr) > 1 else math.nan,
                "miss_rate": float(np.mean(misses)),
            }
        )
    return pd.DataFrame(rows, columns=["k", "subsets", "regret", "regret_sem", "miss_rate"])
