"""How much of the seed spread is the weights' seed, how much the data order's: with intervals.

When ``init_seed`` and ``data_seed`` are crossed (every init seed with every data seed, Dodge et
al. 2020), a score is modelled as the two-way random-effects model

    y_ijk = mu + a_i + b_j + (ab)_ij + e_ijk,   a ~ N(0, s2_init), b ~ N(0, s2_data), ...

and the *share* of each source is its variance component over their sum: the part of a new
run's variance (new init seed, new data seed) each source explains, "rest" being the
interaction plus any other noise (with one run per cell the two cannot be told apart).

- Point estimates: the ANOVA (method-of-moments) estimators of the components from the mean
  squares of a balanced grid (Searle, Casella & McCulloch 1992, ch. 4), negative ones set to 0.
  Each component is unbiased before that truncation; the shares of sums of squares this replaced
  are not (on a 4 x 4 grid with true shares 10/10/80 they read 24/24/51).
- Intervals: generalized confidence intervals from generalized pivotal quantities (Weerahandi
  1993; for variance components, e.g. Burdick, Borror & Montgomery 2005): each mean square's
  expectation is drawn as SS / chi2_df, the components and shares are computed from the draws as
  above, and the 2.5% and 97.5% percentiles of the draws are the interval. Measured coverage on
  normal grids 0.95-0.99 at 4 x 4 and 8 x 8 (docs/report.md).
- Separation: the grid tells which source matters more when the interval of init share minus
  data share excludes 0. When it does not, the smallest k x k grid that would, 4 times in 5, at
  the estimated components, comes from simulating such grids (normal model).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from initsweep.report.stats import CONFIDENCE, rng_for
from initsweep.report.table import RunTable

N_DRAWS = 4000  # generalized pivotal draws per interval
POWER = 0.8
GRID_SIZES = (4, 6, 8, 12, 16, 24, 32, 48, 64)  # k x k grids tried for "the grid that would"
GRID_SIMULATIONS = 500  # simulated grids per size
GRID_DRAWS = 500  # pivotal draws per simulated grid
SOURCES = ("init", "data", "rest")


SumsOfSquares = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int, int]]


def sums_of_squares(y: np.ndarray) -> SumsOfSquares:
    """SS and df of init, data, interaction and error for balanced grids ``(..., I, J, r)``."""
    n_init, n_data, reps = y.shape[-3:]
    grand = y.mean(axis=(-3, -2, -1), keepdims=True)
    cell = y.mean(axis=-1, keepdims=True)
    row = cell.mean(axis=-2, keepdims=True)
    col = cell.mean(axis=-3, keepdims=True)
    ss_init = n_data * reps * ((row - grand) ** 2).sum(axis=(-3, -2, -1))
    ss_data = n_init * reps * ((col - grand) ** 2).sum(axis=(-3, -2, -1))
    ss_inter = reps * ((cell - row - col + grand) ** 2).sum(axis=(-3, -2, -1))
    ss_error = ((y - cell) ** 2).sum(axis=(-3, -2, -1))
    df = (n_init - 1, n_data - 1, (n_init - 1) * (n_data - 1), n_init * n_data * (reps - 1))
    return ss_init, ss_data, ss_inter, ss_error, df


def components_from_mean_squares(
    ms_init: np.ndarray,
    ms_data: np.ndarray,
    ms_inter: np.ndarray,
    ms_error: np.ndarray | None,
    shape: tuple[int, int, int],
) -> np.ndarray:
    """Variance components (init, data, rest), stacked on a last axis, from the mean squares
    (or from draws of their expectations): E[MS_init] = s2_e + r s2_ab + J r s2_init, E[MS_data]
    likewise with I, E[MS_inter] = s2_e + r s2_ab, E[MS_error] = s2_e; rest = s2_ab + s2_e.
    Negative estimates are set to 0."""
    n_init, n_data, reps = shape
    s2_init = np.maximum((ms_init - ms_inter) / (n_data * reps), 0.0)
    s2_data = np.maximum((ms_data - ms_inter) / (n_init * reps), 0.0)
    if ms_error is None:  # one run per cell: interaction and error are one term
        rest = ms_inter
    else:
        rest = np.maximum((ms_inter - ms_error) / reps, 0.0) + ms_error
    return np.stack(np.broadcast_arrays(s2_init, s2_data, rest), axis=-1)


def shares(components: np.ndarray) -> np.ndarray:
    """Components over their sum (last axis); NaN when all are 0."""
    total = components.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, components / np.where(total > 0, total, 1.0), np.nan)


def variance_components(y: np.ndarray) -> np.ndarray:
    """ANOVA estimates of (s2_init, s2_data, s2_rest) for balanced grids ``(..., I, J, r)``."""
    ss_init, ss_data, ss_inter, ss_error, df = sums_of_squares(y)
    return components_from_mean_squares(
        ss_init / df[0],
        ss_data / df[1],
        ss_inter / df[2],
        ss_error / df[3] if df[3] else None,
        y.shape[-3:],
    )


def pivotal_shares(y: np.ndarray, rng: np.random.Generator, n_draws: int = N_DRAWS) -> np.ndarray:
    """Generalized pivotal draws of the shares: ``(..., n_draws, 3)`` for grids ``(..., I, J, r)``.

    Each mean square's expectation is drawn as SS / chi2_df (its distribution under the normal
    model, with the observed SS plugged in), then turned into shares like the estimates are.
    """
    ss_init, ss_data, ss_inter, ss_error, df = sums_of_squares(y)
    return _pivotal_from_ss([ss_init, ss_data, ss_inter, ss_error], df, y.shape[-3:], rng, n_draws)


def _pivotal_from_ss(
    ss: list[np.ndarray],
    df: tuple[int, ...],
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    n_draws: int,
) -> np.ndarray:
    lead = np.shape(ss[0])

    def draw(value: np.ndarray, dof: int) -> np.ndarray:
        return np.asarray(value)[..., None] / rng.chisquare(dof, size=(*lead, n_draws))

    error = draw(ss[3], df[3]) if df[3] else None
    return shares(
        components_from_mean_squares(
            draw(ss[0], df[0]), draw(ss[1], df[1]), draw(ss[2], df[2]), error, shape
        )
    )


def share_intervals(
    draws: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the draws' axis (-2) of each share and of init - data share:
    ``low, high`` with 4 values on the last axis (init, data, rest, init - data)."""
    with_diff = np.concatenate([draws, draws[..., :1] - draws[..., 1:2]], axis=-1)
    tail = (1 - confidence) / 2
    low = np.quantile(with_diff, tail, axis=-2)
    high = np.quantile(with_diff, 1 - tail, axis=-2)
    return low, high


def grid_to_separate(
    components: np.ndarray,
    rng: np.random.Generator,
    sizes: tuple[int, ...] = GRID_SIZES,
    power: float = POWER,
) -> int | None:
    """The smallest k x k grid (one run per cell) whose interval of init - data share would
    exclude 0 with probability ``power`` if the components were ``components`` (normal model,
    simulated); None when no size in ``sizes`` gets there."""
    s2_init, s2_data, s2_rest = (float(c) for c in components)
    if s2_init == s2_data:
        return None
    for k in sizes:
        # Under the normal model a balanced k x k grid's sums of squares are independent scaled
        # chi-squares, so the grids need not be drawn cell by cell.
        df = (k - 1, k - 1, (k - 1) ** 2, 0)
        expected = (s2_rest + k * s2_init, s2_rest + k * s2_data, s2_rest)
        ss = [e * rng.chisquare(d, GRID_SIMULATIONS) for e, d in zip(expected, df, strict=False)]
        ss.append(np.zeros(GRID_SIMULATIONS))
        low, high = share_intervals(_pivotal_from_ss(ss, df, (k, k, 1), rng, GRID_DRAWS))
        separated = (low[:, 3] > 0) | (high[:, 3] < 0)
        if separated.mean() >= power:
            return k
    return None


def variance_split(table: RunTable, seed: int = 0) -> pd.DataFrame:
    """Per group with ``init_seed`` x ``data_seed`` crossed: each source's share with its 95%
    interval, whether the grid separates init from data, and else the grid size that would.

    Init seeds whose row misses a data seed are dropped first, so the grid is complete; groups
    with fewer than 2 x 2 levels, or unequal runs per cell, get no row.
    """
    rows = []
    usable = table.usable[["group", "init_seed", "data_seed", "value"]]
    by_group = dict(list(usable.groupby("group", sort=False)))
    for group in table.groups():
        ok = by_group.get(group, usable.iloc[:0])
        n_init, n_data = ok["init_seed"].nunique(), ok["data_seed"].nunique()
        pairs = len(ok[["init_seed", "data_seed"]].drop_duplicates())
        # a complete 2 x 2 sub-grid needs more seed pairs than either key has seeds (seed =
        # init_seed = data_seed, the usual sweep, has exactly as many): skip those cheaply
        if n_init < 2 or n_data < 2 or pairs <= max(n_init, n_data):
            continue
        counts = ok.pivot_table(
            index="init_seed", columns="data_seed", values="value", aggfunc="count"
        ).fillna(0)
        complete = counts[(counts > 0).all(axis=1)]
        if len(complete) < 2 or counts.shape[1] < 2:
            continue
        if complete.to_numpy().min() != complete.to_numpy().max():
            continue  # unbalanced replication: the mean squares would not have their expectations
        reps = int(complete.to_numpy().min())
        grid = ok[ok["init_seed"].isin(complete.index)].sort_values(["init_seed", "data_seed"])
        n_init, n_data = len(complete), counts.shape[1]
        y = grid["value"].to_numpy(dtype=float).reshape(n_init, n_data, reps)
        estimate = variance_components(y)
        share = shares(estimate)
        rng = rng_for(seed, group, "variance")
        low, high = share_intervals(pivotal_shares(y, rng))
        separated = bool(low[3] > 0 or high[3] < 0)
        needed = None if separated else grid_to_separate(estimate, rng)
        row: dict[str, object] = {
            "group": group,
            "init_seeds": n_init,
            "data_seeds": n_data,
            "runs_per_cell": reps,
            "runs": y.size,
            "std": float(np.std(y, ddof=1)),
        }
        for i, source in enumerate(SOURCES):
            row[f"{source}_share"] = float(share[i])
            row[f"{source}_low"], row[f"{source}_high"] = float(low[i]), float(high[i])
        row.update(
            {
                "init_minus_data_low": float(low[3]),
                "init_minus_data_high": float(high[3]),
                "separated": separated,
                "grid_to_separate": float(needed) if needed else math.nan,
                "init_std": float(np.std(y.mean(axis=(1, 2)), ddof=1)),
                "data_std": float(np.std(y.mean(axis=(0, 2)), ddof=1)),
                "dropped_init_seeds": len(counts) - len(complete),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)
