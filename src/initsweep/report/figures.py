"""The report's figures, drawn with matplotlib's Agg backend (no display needed).

Each function takes what the statistics modules computed and writes one PNG; none computes a
statistic itself, so a figure always shows the same numbers as the tables beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from initsweep.report.table import RunTable  # noqa: E402
from initsweep.report.tuning import TuningResult  # noqa: E402

DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _panels(
    n: int, width: float = 4.2, height: float = 3.4, max_cols: int = 3
) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def zoom_groups(summary: pd.DataFrame, lower_is_better: bool = False) -> list[str] | None:
    """The groups worth a zoomed panel: those on the better side of the widest gap between
    groups' [min, max] ranges, when that gap is wider than each of them spans (a collapsed
    group such as ``zeros`` at chance level next to 0.92-0.94 ones). None when no group is that
    far apart: one axis already shows every spread."""
    rows = summary.dropna(subset=["min", "max"])
    if len(rows) < 2:
        return None
    rows = rows.sort_values("mean", ascending=lower_is_better)  # best first
    best: list[str] = []
    low, high = math.inf, -math.inf
    chosen: list[str] | None = None
    widest = 0.0
    for i in range(len(rows) - 1):
        row = rows.iloc[i]
        best.append(row["group"])
        low, high = min(low, row["min"]), max(high, row["max"])
        rest = rows.iloc[i + 1 :]
        gap = (low - rest["max"].max()) if not lower_is_better else (rest["min"].min() - high)
        if gap > max(high - low, 0.0) and gap > widest:
            widest, chosen = gap, list(best)
    return chosen


def _groups_panel(
    ax: plt.Axes, table: RunTable, summary: pd.DataFrame, groups: list[str], seed: int
) -> None:
    """Box per group, every seed a jittered dot, excluded runs named in the labels."""
    rows = summary.set_index("group").loc[groups].reset_index()
    data = [table.usable.loc[table.usable["group"] == g, "value"].to_numpy() for g in groups]
    positions = np.arange(1, len(groups) + 1)
    nonempty = [i for i, d in enumerate(data) if len(d)]
    if nonempty:
        ax.boxplot(
            [data[i] for i in nonempty],
            positions=positions[nonempty],
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
        )
    jitter = np.random.default_rng(seed)
    for pos, values in zip(positions, data, strict=True):
        ax.scatter(
            pos + jitter.uniform(-0.15, 0.15, len(values)),
            values,
            s=14,
            alpha=0.7,
            color="tab:blue",
            zorder=3,
        )
    labels = []
    for _, row in rows.iterrows():
        label = f"{row['group']} (n={row['n']})"
        if row["failed"] or row["diverged"] or row["other"]:
            label += "\n" + row["excluded"]
        labels.append(label)
    ax.set_xticks(
        positions,
        labels,
        rotation=30 if len(groups) > 6 else 0,
        ha="right" if len(groups) > 6 else "center",
        fontsize=8,
    )
    ax.set_ylabel(table.metric)
    ax.grid(axis="y", alpha=0.3)


def groups_plot(table: RunTable, summary: pd.DataFrame, path: Path, seed: int = 0) -> Path:
    """Box plot per group with every seed as a jittered dot; excluded runs named in the labels.

    When some groups sit far from the others (``zoom_groups``), a second panel shows only the
    better ones on their own axis, so a 0.956-0.972 spread is not a flat line next to a
    collapsed group at 0.10.
    """
    groups = list(summary["group"])
    zoom = zoom_groups(summary, table.lower_is_better)
    width = max(5.0, 0.75 * len(groups) + 2)
    if zoom is None:
        fig, ax = plt.subplots(figsize=(width, 4.2))
        _groups_panel(ax, table, summary, groups, seed)
        ax.set_title(f"{table.metric} per group across seeds")
        return _save(fig, path)
    fig, (ax, zoomed) = plt.subplots(
        1,
        2,
        figsize=(width + max(4.0, 0.75 * len(zoom) + 2), 4.2),
        gridspec_kw={"width_ratios": [len(groups), len(zoom)]},
    )
    _groups_panel(ax, table, summary, groups, seed)
    ax.set_title(f"{table.metric} per group across seeds")
    _groups_panel(zoomed, table, summary, [g for g in groups if g in zoom], seed)
    left_out = ", ".join(g for g in groups if g not in zoom)
    zoomed.set_title(f"zoomed: without {left_out}", fontsize=10)
    return _save(fig, path)


def _x_positions(values: Sequence[str]) -> tuple[np.ndarray, bool]:
    """Numeric x for numeric values (log scale when positive and spanning 10x), else 0..n-1."""
    try:
        x = np.array([float(v) for v in values])
    except ValueError:
        return np.arange(len(values), dtype=float), False
    log = bool((x > 0).all() and x.max() / x.min() >= 10)
    return x, log


def tuning_curve_plot(results: Sequence[TuningResult], metric: str, path: Path) -> Path:
    """Metric vs tuned value: one thin line per seed, the mean and its 95% bootstrap band."""
    fig, axes = _panels(len(results))
    for ax, r in zip(axes, results, strict=True):
        x, log = _x_positions(r.values)
        for seed in r.seeds:
            ax.plot(x, r.grid.loc[seed].to_numpy(), color="tab:gray", lw=0.7, alpha=0.5)
        assert r.ci is not None  # tuning_results sets it
        ax.fill_between(
            x,
            r.ci["ci_low"].to_numpy(),
            r.ci["ci_high"].to_numpy(),
            color="tab:orange",
            alpha=0.25,
            label="95% CI of mean",
        )
        ax.plot(x, r.mean.to_numpy(), color="tab:orange", lw=2.2, marker="o", label="mean")
        best = r.values.index(r.best_on_mean)
        ax.scatter(
            [x[best]],
            [r.mean.iloc[best]],
            s=120,
            facecolor="none",
            edgecolor="black",
            zorder=4,
            label=f"best on mean: {r.best_on_mean}",
        )
        if log:
            ax.set_xscale("log")
        ax.set_xticks(x, r.values, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(r.key)
        ax.set_ylabel(metric)
        ax.set_title(f"{r.context}: {len(r.seeds)} seeds (thin lines)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def rank_heatmap_plot(results: Sequence[TuningResult], path: Path) -> Path:
    """Seed x value rank of the metric every choice is made on (1 = best on that seed): do the
    seeds agree?"""
    fig, axes = _panels(
        len(results), height=max(3.0, 0.28 * max(len(r.seeds) for r in results) + 1.6)
    )
    for ax, r in zip(axes, results, strict=True):
        chosen_on = r.select_grid if r.select_grid is not None else r.grid
        scores = chosen_on.to_numpy(dtype=float) * (1 if r.lower_is_better else -1)
        ranks = stats.rankdata(scores, axis=1, method="min")
        image = ax.imshow(ranks, cmap="viridis_r", aspect="auto", vmin=1, vmax=len(r.values))
        for (i, j), rank in np.ndenumerate(ranks):
            ax.text(
                j,
                i,
                f"{rank:g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rank <= len(r.values) / 2 else "black",
            )
        ax.set_xticks(range(len(r.values)), r.values, fontsize=8)
        ax.set_yticks(range(len(r.seeds)), r.seeds, fontsize=7)
        ax.set_xlabel(r.key)
        ax.set_title(
            f"{r.context}: rank on {r.select_metric or r.score_metric} per seed (1 = best)",
            fontsize=10,
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=range(1, len(r.values) + 1))
    return _save(fig, path)


def kendall_plot(results: Sequence[TuningResult], path: Path) -> Path:
    """Kendall tau between the value rankings of each pair of seeds."""
    fig, axes = _panels(
        len(results), height=max(3.2, 0.25 * max(len(r.seeds) for r in results) + 1.8)
    )
    for ax, r in zip(axes, results, strict=True):
        image = ax.imshow(r.tau.to_numpy(dtype=float), cmap="coolwarm_r", vmin=-1, vmax=1)
        ax.set_xticks(range(len(r.seeds)), r.seeds, rotation=90, fontsize=7)
        ax.set_yticks(range(len(r.seeds)), r.seeds, fontsize=7)
        ax.set_title(f"{r.context}: Kendall τ (mean {r.tau_mean:.2f})", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def regret_plot(results: Sequence[TuningResult], metric: str, path: Path) -> Path:
    """Held-out regret vs the number of seeds the choice was made on, one line per context."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for r in results:
        curve = r.curve
        ax.errorbar(
            curve["k"],
            curve["regret"],
            yerr=curve["regret_sem"].fillna(0),
            marker="o",
            capsize=3,
            label=r.context,
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("seeds used to choose (k)")
    ax.set_ylabel(f"held-out regret ({metric})")
    ax.set_title("Regret of choosing on k seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def variance_plot(split: pd.DataFrame, path: Path) -> Path:
    """Each source's share of the seed variance (init seed, data seed, rest) per group, with its
    bootstrap interval: on a small grid the intervals show how little the shares are known."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(split) + 2.5), 3.6))
    sources = (
        ("init", "init seed", "tab:blue"),
        ("data", "data seed", "tab:green"),
        ("rest", "rest", "tab:gray"),
    )
    x = np.arange(len(split))
    width = 0.8 / len(sources)
    for i, (source, label, color) in enumerate(sources):
        share = split[f"{source}_share"].to_numpy(dtype=float)
        low = split.get(f"{source}_low", split[f"{source}_share"]).to_numpy(dtype=float)
        high = split.get(f"{source}_high", split[f"{source}_share"]).to_numpy(dtype=float)
        errors = np.nan_to_num(np.vstack([share - low, high - share]).clip(min=0))
        ax.bar(
            x + (i - 1) * width,
            np.nan_to_num(share),
            width,
            yerr=errors,
            capsize=3,
            label=label,
            color=color,
        )
    ax.set_xticks(x, split["group"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of variance (95% interval)")
    ax.set_title("Where the seed variance comes from")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    return _save(fig, path)
