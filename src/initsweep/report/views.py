"""The report's tables and lines as strings: each statistic formatted the way a reader reads it
(percent points for accuracies, en dashes for what is not defined). Shared by report.md, the
terminal and the parent run's note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from initsweep.diagnostics.findings import pct
from initsweep.report.compute import Report
from initsweep.report.stats import ALPHA
from initsweep.report.table import RunTable
from initsweep.report.tuning import TuningResult
from initsweep.vocab import Outcome


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` decimals, NaN as an en dash, everything else as str."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def pct_interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) or math.isnan(high) else f"[{pct(low)}, {pct(high)}]"


def points_interval(low: float, high: float) -> str:
    """A difference of shares in percentage points, ``[-31, +84]``."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"[{100 * low:+.0f}, {100 * high:+.0f}] points"


def group_view(report: Report) -> pd.DataFrame:
    """The per-group table as strings (what the terminal, Markdown and HTML show)."""
    rows = []
    for _, r in report.summary.iterrows():
        row = {
            "group": r["group"],
            "n": str(r["n"]),
            "failed": str(r["failed"]),
            "diverged": str(r["diverged"]),
            "other": str(r["other"]),
            "mean": fmt(r["mean"]),
            "std": fmt(r["std"]),
            "95% CI": (
                f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if math.isfinite(r["ci_low"]) else "–"
            ),
            "median": fmt(r["median"]),
            "IQM": fmt(r["iqm"]),
            "min": fmt(r["min"]),
            "max": fmt(r["max"]),
        }
        if report.accuracy:
            row["noise floor"] = fmt(r["noise_floor"])
            row["std/floor"] = fmt(r["std/floor"], 2)
        rows.append(row)
    return pd.DataFrame(rows)


def pair_view(pairs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "A": r["a"],
                "B": r["b"],
                "seeds": str(r["n_pairs"]),
                "test": r["test"],
                "A − B": fmt(r["mean_diff"]),
                "adjusted CI": f"[{fmt(r['diff_low'])}, {fmt(r['diff_high'])}]",
                "Holm p": fmt(r["holm_p"], 3),
                "P(A>B)": fmt(r["P(A>B)"], 2),
                "95% CI of P": f"[{fmt(r['ci_low'], 2)}, {fmt(r['ci_high'], 2)}]",
                "sign test Holm p": fmt(r["sign_holm_p"], 3),
                "ASO ε_min": fmt(r["aso_eps_min"], 2),
                "verdict": r["verdict"],
            }
            for _, r in pairs.iterrows()
        ]
    )


def share_cell(r: pd.Series, source: str) -> str:
    return f"{pct(r[f'{source}_share'])} {pct_interval(r[f'{source}_low'], r[f'{source}_high'])}"


def variance_view(split: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "group": r["group"],
                "grid": f"{r['init_seeds']}x{r['data_seeds']}"
                + (f"x{r['runs_per_cell']}" if r["runs_per_cell"] > 1 else ""),
                "runs": str(r["runs"]),
                "std": fmt(r["std"]),
                "init seed": share_cell(r, "init"),
                "data seed": share_cell(r, "data"),
                "rest": share_cell(r, "rest"),
                "init - data": points_interval(r["init_minus_data_low"], r["init_minus_data_high"]),
                "std of init means": fmt(r["init_std"]),
                "std of data means": fmt(r["data_std"]),
            }
            for _, r in split.iterrows()
        ]
    )


def variance_warnings(split: pd.DataFrame) -> list[str]:
    """One line per group whose grid cannot tell init from data, with the grid that would."""
    lines = []
    for _, r in split.iterrows():
        if r["separated"]:
            continue
        grid = f"{r['init_seeds']}x{r['data_seeds']}"
        line = (
            f"{r['group']}: the {grid} grid cannot tell whether the init seed or the data "
            f"seed matters more (init - data share: "
            f"{points_interval(r['init_minus_data_low'], r['init_minus_data_high'])})"
        )
        if math.isfinite(r["grid_to_separate"]):
            k = int(r["grid_to_separate"])
            line += (
                f"; if the shares are what this grid estimates, a {k}x{k} grid (one run per "
                "cell) would tell them apart 4 times in 5"
            )
        else:
            line += (
                "; at this grid's estimates the two shares are too close for even a 64x64 "
                "grid to tell apart"
            )
        lines.append(line)
    return lines


def pairs_line(report: Report) -> str:
    """The verdicts' method in one line (docs/report.md has the rest)."""
    m = len(report.pairs)
    family = "every pair" if report.all_pairs else "design neighbours"
    return (
        f"{m} comparison{'s' if m != 1 else ''} ({family}): difference of means, paired t "
        f"(Welch when seeds do not pair), Holm-adjusted intervals, at most {ALPHA:.0%} chance "
        "of any false winner; second line P(A>B) and the sign test; docs/report.md"
    )


def tuning_view(results: Sequence[TuningResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        s = r.summary()
        rows.append(
            {
                "context": s["context"],
                "values": str(s["values"]),
                "seeds": str(s["seeds"]),
                "best on mean": s["best_on_mean"],
                "P(best)": fmt(s["p_best_of_winner"], 2),
                "flip rate": fmt(s["flip_rate"], 2),
                "regret": fmt(s["regret"]),
                "worst regret": fmt(s["regret_max"]),
                "optimism": fmt(s["optimism"]),
                "Kendall τ": fmt(s["tau_mean"], 2),
                "held-out regret k=1": fmt(s["heldout_regret_k1"]),
            }
        )
    return pd.DataFrame(rows)


def winners_view(r: TuningResult) -> pd.DataFrame:
    """Per seed: its winner and what it costs; the last row is the winner on the mean."""
    rows = [
        {
            "seed": p["seed"],
            "winner": p["winner"],
            "score on seed": fmt(p["score"]),
            "mean on other seeds": fmt(p["winner_elsewhere"]),
            "regret": fmt(p["regret"]),
            "optimism": fmt(p["optimism"]),
        }
        for _, p in r.per_seed.iterrows()
    ]
    rows.append(
        {
            "seed": "mean",
            "winner": r.best_on_mean,
            "score on seed": fmt(float(r.mean[r.best_on_mean])),
            "mean on other seeds": "",
            "regret": "0",
            "optimism": "",
        }
    )
    return pd.DataFrame(rows)


def values_view(r: TuningResult) -> pd.DataFrame:
    """Per value: its mean score with the interval, its mean select metric (what the choice
    saw) when that is another metric, the seeds it wins and P(best)."""
    rows = []
    for v in r.values:
        row = {
            r.key: v,
            f"mean {r.score_metric}".strip(): fmt(float(r.mean[v])),
            "95% CI": (
                f"[{fmt(r.ci.at[v, 'ci_low'])}, {fmt(r.ci.at[v, 'ci_high'])}]"
                if r.ci is not None
                else "–"
            ),
        }
        if r.select_metric != r.score_metric and r.select_mean is not None:
            row[f"mean {r.select_metric}"] = fmt(float(r.select_mean[v]))
        wins = r.per_seed["winner"].str.split("=").map(lambda w, v=v: v in w).sum()
        row.update(
            {"seeds it wins": f"{wins}/{len(r.seeds)}", "P(best)": fmt(float(r.p_best[v]), 2)}
        )
        rows.append(row)
    return pd.DataFrame(rows)


def curve_view(results: Sequence[TuningResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        for _, c in r.curve.iterrows():
            rows.append(
                {
                    "context": r.context,
                    "k seeds": str(int(c["k"])),
                    "subsets": str(int(c["subsets"])),
                    "held-out regret": fmt(c["regret"]),
                    "± sem": fmt(c["regret_sem"]),
                    "choice ≠ best on mean": fmt(c["miss_rate"], 2),
                }
            )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- the document
def counts_line(table: RunTable) -> str:
    outcomes = table.frame["outcome"].value_counts()
    usable = int(table.frame["usable"].sum())
    rest = ", ".join(f"{v} {k}" for k, v in outcomes.items() if k != Outcome.OK)
    return f"{len(table.frame)} runs, {usable} usable" + (f" ({rest} excluded)" if rest else "")
