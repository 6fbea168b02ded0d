"""Assemble the report: compute, then write report.md, report.html, CSVs and plots, and log them.

The report is built once as a list of blocks (headings, paragraphs, tables of preformatted
strings, images); the Markdown and HTML writers render the same blocks, so the two never
disagree. The HTML embeds its images (base64), so it reads on its own, e.g. in the MLflow UI's
artifact view, where relative image links would not resolve; the copy of report.md logged on the
parent run links its images to the UI's server (``report.publish``).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from initsweep.diagnostics.findings import pct
from initsweep.report import figures, why
from initsweep.report.select import ReportInputError, Selection
from initsweep.report.stats import (
    ALPHA,
    ASO_THRESHOLD,
    MIN_SEEDS_CI,
    group_summary,
    is_accuracy,
    pairwise,
)
from initsweep.report.table import RunTable, load, resolve_param
from initsweep.report.tuning import TuningResult, analyse
from initsweep.report.variance_split import variance_split
from initsweep.vocab import PRIMARY_METRIC, Outcome

ARTIFACT_PATH = "report"
TERMINAL_PAIRS = 12  # pairwise verdicts printed in the terminal; all of them go to report.md
Block = tuple[Any, ...]


@dataclass
class Report:
    """Everything the report shows, computed from one selection of runs."""

    selection: Selection
    table: RunTable
    seed: int
    summary: pd.DataFrame
    pairs: pd.DataFrame
    variance: pd.DataFrame
    tune_key: str | None = None
    tuning: list[TuningResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    all_pairs: bool = False  # every pair compared (--all-pairs), else ``neighbour_pairs``

    @property
    def accuracy(self) -> bool:
        return is_accuracy(self.table)


def logged_metrics(table: RunTable) -> list[str]:
    """Metric names in the table, ``test/`` and ``val/`` first (for error messages)."""
    names = [c.removeprefix("metrics.") for c in table.frame.columns if c.startswith("metrics.")]
    return sorted(names, key=lambda k: (not k.startswith("test/"), not k.startswith("val/"),
                                        k.startswith("diag/"), k))


def build(client: MlflowClient, selection: Selection, metric: str = PRIMARY_METRIC,
          tune: str | None = None, n_test: int | None = None, seed: int = 0,
          select_metric: str | None = None, all_pairs: bool = False) -> Report:
    """Load the runs and compute every statistic (no files written).

    ``select_metric``: what the tuning trap chooses on (default: the ``val/`` counterpart of
    ``metric``, falling back to ``metric`` with a note); ``all_pairs``: compare every pair of
    groups instead of the design's neighbours.
    """
    table = load(client, selection, metric, n_test)
    tune_key = resolve_param(table, tune) if tune else None
    if select_metric and f"metrics.{select_metric}" not in table.frame:
        names = logged_metrics(table)
        raise ReportInputError("--select-metric", f"{select_metric!r}: not logged by these runs; "
                               f"choose from {', '.join(names[:10]) or '(no metrics)'}"
                               + (f" (+{len(names) - 10} more)" if len(names) > 10 else ""))
    summary = group_summary(table, seed)
    report = Report(selection, table, seed, summary, pairwise(table, seed, every_pair=all_pairs),
                    variance_split(table, seed), tune_key, notes=list(table.notes),
                    all_pairs=all_pairs)
    if tune_key:
        report.tuning, notes = analyse(table, tune_key, seed, select_metric)
        report.notes += notes
    if report.accuracy and summary["n_test"].isna().all():
        report.notes.append("test-set noise floor not shown: no run logged `n_test` (tag, param "
                            "or metric); pass --n-test N")
    return report


# ------------------------------------------------------------------------------- formatting
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
        row = {"group": r["group"], "n": str(r["n"]), "failed": str(r["failed"]),
               "diverged": str(r["diverged"]), "other": str(r["other"]),
               "mean": fmt(r["mean"]), "std": fmt(r["std"]),
               "95% CI": (f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
                          if math.isfinite(r["ci_low"]) else "–"),
               "median": fmt(r["median"]), "IQM": fmt(r["iqm"]), "min": fmt(r["min"]),
               "max": fmt(r["max"])}
        if report.accuracy:
            row["noise floor"] = fmt(r["noise_floor"])
            row["std/floor"] = fmt(r["std/floor"], 2)
        rows.append(row)
    return pd.DataFrame(rows)


def pair_view(pairs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "A": r["a"], "B": r["b"], "seeds": str(r["n_pairs"]), "test": r["test"],
        "A − B": fmt(r["mean_diff"]),
        "adjusted CI": f"[{fmt(r['diff_low'])}, {fmt(r['diff_high'])}]",
        "Holm p": fmt(r["holm_p"], 3), "P(A>B)": fmt(r["P(A>B)"], 2),
        "95% CI of P": f"[{fmt(r['ci_low'], 2)}, {fmt(r['ci_high'], 2)}]",
        "sign test Holm p": fmt(r["sign_holm_p"], 3), "ASO ε_min": fmt(r["aso_eps_min"], 2),
        "verdict": r["verdict"]} for _, r in pairs.iterrows()])


def share_cell(r: pd.Series, source: str) -> str:
    return f"{pct(r[f'{source}_share'])} {pct_interval(r[f'{source}_low'], r[f'{source}_high'])}"


def variance_view(split: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "group": r["group"], "grid": f"{r['init_seeds']}x{r['data_seeds']}"
                                     + (f"x{r['runs_per_cell']}" if r["runs_per_cell"] > 1
                                        else ""),
        "runs": str(r["runs"]), "std": fmt(r["std"]), "init seed": share_cell(r, "init"),
        "data seed": share_cell(r, "data"), "rest": share_cell(r, "rest"),
        "init - data": points_interval(r["init_minus_data_low"], r["init_minus_data_high"]),
        "std of init means": fmt(r["init_std"]), "std of data means": fmt(r["data_std"]),
    } for _, r in split.iterrows()])


def variance_warnings(split: pd.DataFrame) -> list[str]:
    """One line per group whose grid cannot tell init from data, with the grid that would."""
    lines = []
    for _, r in split.iterrows():
        if r["separated"]:
            continue
        grid = f"{r['init_seeds']}x{r['data_seeds']}"
        line = (f"{r['group']}: the {grid} grid cannot tell whether the init seed or the data "
                f"seed matters more (init - data share: "
                f"{points_interval(r['init_minus_data_low'], r['init_minus_data_high'])})")
        if math.isfinite(r["grid_to_separate"]):
            k = int(r["grid_to_separate"])
            line += (f"; if the shares are what this grid estimates, a {k}x{k} grid (one run per "
                     "cell) would tell them apart 4 times in 5")
        else:
            line += ("; at this grid's estimates the two shares are too close for even a 64x64 "
                     "grid to tell apart")
        lines.append(line)
    return lines


def pairs_line(report: Report) -> str:
    """The verdicts' method in one line (docs/report.md has the rest)."""
    m = len(report.pairs)
    family = "every pair" if report.all_pairs else "design neighbours"
    return (f"{m} comparison{'s' if m != 1 else ''} ({family}): difference of means, paired t "
            f"(Welch when seeds do not pair), Holm-adjusted intervals, at most {ALPHA:.0%} chance "
            "of any false winner; second line P(A>B) and the sign test; docs/report.md")


def tuning_view(results: Sequence[TuningResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        s = r.summary()
        rows.append({
            "context": s["context"], "values": str(s["values"]), "seeds": str(s["seeds"]),
            "best on mean": s["best_on_mean"], "P(best)": fmt(s["p_best_of_winner"], 2),
            "flip rate": fmt(s["flip_rate"], 2), "regret": fmt(s["regret"]),
            "worst regret": fmt(s["regret_max"]), "optimism": fmt(s["optimism"]),
            "Kendall τ": fmt(s["tau_mean"], 2), "held-out regret k=1": fmt(s["heldout_regret_k1"]),
        })
    return pd.DataFrame(rows)


def winners_view(r: TuningResult) -> pd.DataFrame:
    """Per seed: its winner and what it costs; the last row is the winner on the mean."""
    rows = [{"seed": p["seed"], "winner": p["winner"], "score on seed": fmt(p["score"]),
             "mean on other seeds": fmt(p["winner_elsewhere"]), "regret": fmt(p["regret"]),
             "optimism": fmt(p["optimism"])} for _, p in r.per_seed.iterrows()]
    rows.append({"seed": "mean", "winner": r.best_on_mean,
                 "score on seed": fmt(float(r.mean[r.best_on_mean])),
                 "mean on other seeds": "", "regret": "0", "optimism": ""})
    return pd.DataFrame(rows)


def values_view(r: TuningResult) -> pd.DataFrame:
    """Per value: its mean score with the interval, its mean select metric (what the choice
    saw) when that is another metric, the seeds it wins and P(best)."""
    rows = []
    for v in r.values:
        row = {r.key: v, f"mean {r.score_metric}".strip(): fmt(float(r.mean[v])),
               "95% CI": (f"[{fmt(r.ci.at[v, 'ci_low'])}, {fmt(r.ci.at[v, 'ci_high'])}]"
                          if r.ci is not None else "–")}
        if r.select_metric != r.score_metric and r.select_mean is not None:
            row[f"mean {r.select_metric}"] = fmt(float(r.select_mean[v]))
        wins = r.per_seed["winner"].str.split("=").map(lambda w, v=v: v in w).sum()
        row.update({"seeds it wins": f"{wins}/{len(r.seeds)}",
                    "P(best)": fmt(float(r.p_best[v]), 2)})
        rows.append(row)
    return pd.DataFrame(rows)


def curve_view(results: Sequence[TuningResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        for _, c in r.curve.iterrows():
            rows.append({"context": r.context, "k seeds": str(int(c["k"])),
                         "subsets": str(int(c["subsets"])), "held-out regret": fmt(c["regret"]),
                         "± sem": fmt(c["regret_sem"]), "choice ≠ best on mean":
                         fmt(c["miss_rate"], 2)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- the document
def counts_line(table: RunTable) -> str:
    outcomes = table.frame["outcome"].value_counts()
    usable = int(table.frame["usable"].sum())
    rest = ", ".join(f"{v} {k}" for k, v in outcomes.items() if k != Outcome.OK)
    return f"{len(table.frame)} runs, {usable} usable" + (f" ({rest} excluded)" if rest else "")


def blocks(report: Report, plot_files: dict[str, str]) -> list[Block]:
    """The report as blocks: ("h1"|"h2"|"h3"|"p", text), ("table", frame), ("img", path, alt),
    ("list", items). Text may use `code` and **bold**."""
    t, sel = report.table, report.selection
    direction = "lower is better" if t.lower_is_better else "higher is better"
    out: list[Block] = [("h1", f"Seed-sensitivity report: {sel.label}")]
    out.append(("p", f"Runs: {sel.describe()}. Metric `{t.metric}` ({direction}). "
                     f"{counts_line(t)}."))
    parent = sel.parent_tags
    if "n_jobs" in parent:
        jobs = ", ".join(f"{k}={v}" for k, v in sorted(parent.items()) if k.startswith("n_"))
        out.append(("p", f"The sweep's parent run counts {jobs} (a job rejected before it "
                         "created a run appears there only)."))
    if sel.overrides:
        out.append(("p", f"Sweep command line: `{sel.overrides}`"))
    out.append(("p", "Statistics are reproducible: every bootstrap and simulation is seeded by "
                     f"`--seed {report.seed}`. Failed, diverged and other unusable runs are "
                     "counted per group and left out of every statistic. Each method, its "
                     "measured coverage or error rate and its assumptions: `docs/report.md`."))
    if report.notes:
        out.append(("list", report.notes))

    out.append(("h2", "Groups"))
    keys = ", ".join(f"`{k}`" for k in t.group_keys) or "nothing (one group)"
    out.append(("p", f"A group is every run with the same config except the seed keys (`seed`, "
                     f"`init_seed`, `data_seed`). What varies between groups here: {keys}."))
    out.append(("table", group_view(report)))
    out.append(("p", "IQM: interquartile mean (mean of the middle 50% of seeds). 95% CI of the "
                     "mean over seeds: Hall's (1992) skewness-corrected t interval, chosen for "
                     "its coverage measured on simulated seeds: 95% for normal scores at 3 to 20 "
                     "seeds, 90-95% for strongly skewed ones (Student's t: 88-92%), without the "
                     "bootstrap's very wide intervals when a seed collapsed; cut to [0, 1] for "
                     f"an accuracy. No interval below {MIN_SEEDS_CI} seeds (with 2, a t "
                     "interval is mean +- 9 std). When a few seeds collapse (the `min` far below "
                     "the median), no interval covers the mean unless some of these seeds "
                     "collapsed."
                + (" Noise floor: sqrt(p(1-p)/n_test), the std that test-set sampling alone "
                   "gives (Jordan 2024); std/floor near 1 means the seeds differ no more than "
                   "measuring on a finite test set would explain." if report.accuracy else "")))
    if "groups" in plot_files:
        out.append(("img", plot_files["groups"], f"{t.metric} per group"))
    out.extend(why_blocks(report))

    out.append(("h2", "Verdicts: differences of means over seeds"))
    if report.pairs.empty:
        out.append(("p", "Only one group: nothing to compare."))
    else:
        out.extend(("p", f"- {v}") for v in report.pairs["verdict"])
        out.append(("p", f"*{pairs_line(report)}.*"))
        out.append(("table", pair_view(report.pairs)))

    out.append(("h2", "Variance split: init seed vs data-order seed"))
    if report.variance.empty:
        out.append(("p", "Not available: `init_seed` and `data_seed` were not crossed in these "
                         "runs. Cross them to see which source of randomness matters (Dodge et "
                         "al. 2020), e.g. `python train.py -m experiment=crossed_seeds` or "
                         "`python train.py -m init=he init_seed=0,1,2,3 data_seed=0,1,2,3`."))
    else:
        out.append(("p", "The share of a new run's variance due to the weights' seed, the data "
                         "order's seed, and the rest (their interaction and any other noise): "
                         "variance components of the two-way random-effects ANOVA over the "
                         "init-seed x data-seed grid (method of moments), with 95% generalized "
                         "confidence intervals (coverage 0.95-0.99 measured on simulated normal "
                         "grids). `init - data`: the interval of the difference of the two "
                         "shares; when it contains 0, the grid cannot tell which matters more."))
        out.append(("table", variance_view(report.variance)))
        warnings = variance_warnings(report.variance)
        if warnings:
            out.append(("list", warnings))
        if "variance" in plot_files:
            out.append(("img", plot_files["variance"], "variance split"))

    if report.tune_key:
        out.extend(tuning_blocks(report, plot_files))
    return out


def why_blocks(report: Report) -> list[Block]:
    """The "why" section: each group's diagnosis findings over its seeds (``report.why``)."""
    groups = why.why(report.table)
    out: list[Block] = [("h2", "Why: what the diagnostics found, per group")]
    if not any(g.diagnosed for g in groups):
        out.append(("p", "No run here has a diagnosis (`diagnosis` tag): diagnostics were off "
                         "(`diagnostics.enabled=false`), or the runs predate diagnoses."))
        return out
    out.append(("p", "Each run's diagnosis of its init (its `diagnosis` tag; the sentences are "
                     "the run's description in the MLflow UI), counted over the group's seeds: "
                     "3/3 means every diagnosed seed carries that finding. A finding names a "
                     "mechanism; the score says whether it cost anything. Findings and their "
                     "thresholds: docs/diagnostics.md."))
    out.append(("table", why.why_frame(groups, report.table.metric)))
    disagree = why.disagreement_lines(groups)
    out.append(("list", disagree) if disagree else
               ("p", "The seeds of every group agree on every finding."))
    evidence = [f"**{g.group}** (seed {seed}): {'; '.join(said)}"
                for g in groups for seed, said in g.examples]
    if evidence:
        out.append(("h3", "The evidence: a run per group and set of findings"))
        out.append(("list", evidence))
    return out


def why_markdown(report: Report) -> str:
    """The why section for the parent run's note: the table and the disagreements."""
    groups = why.why(report.table)
    if not any(g.diagnosed for g in groups):
        return ""
    lines = ["### Why: what the diagnostics found, per group", "",
             md_table(why.why_frame(groups, report.table.metric))]
    lines += [""] + [f"- {line}" for line in why.disagreement_lines(groups)]
    return "\n".join(lines).rstrip()


def why_terminal(report: Report) -> list[str]:
    """The why section for the terminal: one line per group, then the disagreements."""
    groups = why.why(report.table)
    if not any(g.diagnosed for g in groups):
        return []
    lines = ["", "why (diagnosis findings per group, seeds carrying each):"]
    lines += [f"  {why.summary_line(g)}  ({report.table.metric} {why.score(g)})" for g in groups]
    lines += [f"  {line.replace('**', '')}" for line in why.disagreement_lines(groups)]
    return lines


def tuning_blocks(report: Report, plot_files: dict[str, str]) -> list[Block]:
    key, results = report.tune_key, report.tuning
    out: list[Block] = [("h2", f"The tuning trap: choosing `{key}` on one seed")]
    if not results:
        out.append(("p", f"No context has a complete `{key}` x seed grid; see the notes."))
        return out
    select, score = results[0].select_metric, results[0].score_metric
    out.append(("p", f"**Chosen on `{select}`, scored on `{score}`**"
                + (" (the choice is made on a validation metric and judged on the test metric, "
                   "never chosen on test)." if select != score else
                   " (no validation metric: chosen and scored on the same numbers, so every "
                   "regret here is optimistic).")))
    out.append(("p", f"Per context (the other settings that vary), the grid `{key}` x seeds. "
                     "**Best on mean**: the value with the best mean "
                     f"`{select}` over all seeds. **Flip rate**: share of seeds whose own best "
                     "value is not the best on the mean. **Regret**: mean over seeds of "
                     f"`{score}` of the best on mean minus that of the seed's own best (means "
                     "over all seeds), i.e. what trusting one seed costs. **Optimism**: a seed's "
                     f"best `{score}` on that seed minus that value's mean on the other seeds "
                     "(winner's curse). **Kendall τ**: mean rank agreement of the values between "
                     "pairs of seeds (1 = same order). **P(best)**: how often the value wins on "
                     "the mean of a bootstrap resample of the seeds. **Held-out regret**: choose "
                     f"on k seeds' `{select}`, score on the others' `{score}`."))
    out.append(("table", tuning_view(results)))
    for name, alt in (("tuning_curve", f"{report.table.metric} vs {key}"),
                      ("rank_heatmap", "rank heatmap"), ("kendall_tau", "Kendall tau"),
                      ("regret", "regret vs seeds")):
        if name in plot_files:
            out.append(("img", plot_files[name], alt))
    for r in results:
        out.append(("h3", f"{r.context}: winners per seed"))
        out.append(("table", winners_view(r)))
        out.append(("table", values_view(r)))
    out.append(("h3", "Regret vs number of seeds used to choose"))
    out.append(("table", curve_view(results)))
    return out


# ------------------------------------------------------------------------------- renderers
def md_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table from a frame of strings (pipes escaped)."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(doc: Sequence[Block]) -> str:
    parts = []
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "list":
            parts.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            parts.append(md_table(block[1]))
        elif kind == "img":
            parts.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(parts) + "\n"


def inline_html(text: str) -> str:
    """Escape, then the two inline Markdown forms the report uses: `code` and **bold**."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}code{background:#f3f3f3;padding:0 3px}"
    "img{max-width:100%;margin:0.5em 0}"
)


def to_html(doc: Sequence[Block], root: Path) -> str:
    """A standalone HTML page; images from ``root`` embedded as base64."""
    title = next((b[1] for b in doc if b[0] == "h1"), "initsweep report")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body>"]
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{inline_html(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{inline_html(block[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{inline_html(i)}</li>" for i in block[1])
            parts.append(f"<ul>{items}</ul>")
        elif kind == "table":
            parts.append(block[1].to_html(index=False, escape=True, border=0))
        elif kind == "img":
            data = base64.b64encode((root / block[1]).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def terminal(report: Report, max_pairs: int = TERMINAL_PAIRS) -> str:
    """What the command prints: the group table, verdicts, variance split, tuning headline."""
    t, sel = report.table, report.selection
    lines = [f"initsweep report: {sel.describe()}",
             f"metric {t.metric} ({'lower' if t.lower_is_better else 'higher'} is better); "
             f"{counts_line(t)}", ""]
    view = group_view(report).drop(columns=["median", "min", "max"])
    lines.append(view.to_string(index=False))
    lines += why_terminal(report)
    if not report.pairs.empty:
        verdicts = [f"{r['verdict']} [ASO ε_min {fmt(r['aso_eps_min'], 2)}]"
                    for _, r in report.pairs.iterrows()]
        lines += ["", "verdicts:"] + [f"  {v}" for v in verdicts[:max_pairs]]
        if len(verdicts) > max_pairs:
            lines.append(f"  ... {len(verdicts) - max_pairs} more in report.md")
        lines.append(f"  ({pairs_line(report)}; ASO ε_min < {ASO_THRESHOLD}: A almost "
                     "stochastically larger)")
    if not report.variance.empty:
        lines += ["", "variance split (init seed x data seed), shares with 95% intervals:",
                  variance_view(report.variance).drop(
                      columns=["std of init means", "std of data means"]).to_string(index=False)]
        lines += [f"  {w}" for w in variance_warnings(report.variance)]
    if report.tune_key and report.tuning:
        first = report.tuning[0]
        lines += ["", f"tuning trap on {report.tune_key} (chosen on {first.select_metric}, "
                      f"scored on {first.score_metric}):",
                  tuning_view(report.tuning).to_string(index=False)]
        for r in report.tuning:
            picks = ", ".join(f"{p['seed']}:{p['winner']}" for _, p in r.per_seed.iterrows())
            curve = ", ".join(f"k={int(c['k'])}: {c['regret']:.4f}" for _, c in
                              r.curve.iterrows())
            lines += [f"  {r.context}: winner per seed {picks}",
                      f"  {r.context}: held-out regret {curve}"]
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- files
def runs_csv(table: RunTable) -> pd.DataFrame:
    """The per-run rows, leading with what the report uses."""
    frame = table.frame.drop(columns=["_group_order"])
    first = ["run_id", "run_name", "group", "status", "outcome", "usable", "value", "seed",
             "init_seed", "data_seed", "n_test"]
    rest = sorted(c for c in frame.columns if c not in first)
    return frame[first + rest].rename(columns={"value": table.metric})


def write(report: Report, out: Path) -> list[Path]:
    """Write every file of the report into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    plot_dir = out / "plots"
    t = report.table
    files: dict[str, str] = {}
    written: list[Path] = []

    def plot(name: str, path: Path) -> None:
        files[name] = str(path.relative_to(out))
        written.append(path)

    if not report.summary.empty:
        plot("groups", figures.groups_plot(t, report.summary, plot_dir / "groups.png",
                                         report.seed))
    if not report.variance.empty:
        plot("variance", figures.variance_plot(report.variance, plot_dir / "variance_split.png"))
    if report.tuning:
        plot("tuning_curve", figures.tuning_curve_plot(report.tuning, t.metric,
                                                     plot_dir / "tuning_curve.png"))
        plot("rank_heatmap", figures.rank_heatmap_plot(report.tuning,
                                                       plot_dir / "rank_heatmap.png"))
        plot("kendall_tau", figures.kendall_plot(report.tuning, plot_dir / "kendall_tau.png"))
        plot("regret", figures.regret_plot(report.tuning, t.metric,
                                         plot_dir / "regret_vs_seeds.png"))
    csvs = {"runs.csv": runs_csv(t), "groups.csv": report.summary, "pairs.csv": report.pairs}
    if not report.variance.empty:
        csvs["variance.csv"] = report.variance
    if report.tuning:
        csvs["tuning.csv"] = pd.DataFrame([r.summary() for r in report.tuning])
        csvs["tuning_seeds.csv"] = pd.concat(
            [r.per_seed.assign(context=r.context) for r in report.tuning], ignore_index=True)
        csvs["regret_curve.csv"] = pd.concat(
            [r.curve.assign(context=r.context) for r in report.tuning], ignore_index=True)
    for name, frame in csvs.items():
        frame.to_csv(out / name, index=False)
        written.append(out / name)
    doc = blocks(report, files)
    (out / "report.md").write_text(to_markdown(doc), encoding="utf-8")
    (out / "report.html").write_text(to_html(doc, out), encoding="utf-8")
    written += [out / "report.md", out / "report.html"]
    return written
