"""Assemble the report: compute, then write report.md, report.html, CSVs and plots, and log them.

The report is built once as a list of blocks (headings, paragraphs, tables of preformatted
strings, images); the Markdown and HTML writers render the same blocks, so the two never
disagree. The HTML embeds its images (base64), so it reads on its own, e.g. in the MLflow UI's
artifact view, where relative image links would not resolve; the copy of report.md logged on the
parent run links its images to the UI's server (``report.publish``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from initsweep.report import figures, why
from initsweep.report.compute import Report
from initsweep.report.document import Block, md_table, to_html, to_markdown
from initsweep.report.stats import (
    ASO_THRESHOLD,
    MIN_SEEDS_CI,
)
from initsweep.report.table import RunTable
from initsweep.report.views import (
    counts_line,
    curve_view,
    fmt,
    group_view,
    pair_view,
    pairs_line,
    tuning_view,
    values_view,
    variance_view,
    variance_warnings,
    winners_view,
)

ARTIFACT_PATH = "report"
TERMINAL_PAIRS = 12  # pairwise verdicts printed in the terminal; all of them go to report.md


def blocks(report: Report, plot_files: dict[str, str]) -> list[Block]:
    """The report as blocks: ("h1"|"h2"|"h3"|"p", text), ("table", frame), ("img", path, alt),
    ("list", items). Text may use `code` and **bold**."""
    t, sel = report.table, report.selection
    direction = "lower is better" if t.lower_is_better else "higher is better"
    out: list[Block] = [("h1", f"Seed-sensitivity report: {sel.label}")]
    out.append(
        ("p", f"Runs: {sel.describe()}. Metric `{t.metric}` ({direction}). {counts_line(t)}.")
    )
    parent = sel.parent_tags
    if "n_jobs" in parent:
        jobs = ", ".join(f"{k}={v}" for k, v in sorted(parent.items()) if k.startswith("n_"))
        out.append(
            (
                "p",
                f"The sweep's parent run counts {jobs} (a job rejected before it "
                "created a run appears there only).",
            )
        )
    if sel.overrides:
        out.append(("p", f"Sweep command line: `{sel.overrides}`"))
    out.append(
        (
            "p",
            "Statistics are reproducible: every bootstrap and simulation is seeded by "
            f"`--seed {report.seed}`. Failed, diverged and other unusable runs are "
            "counted per group and left out of every statistic. Each method, its "
            "measured coverage or error rate and its assumptions: `docs/report.md`.",
        )
    )
    if report.notes:
        out.append(("list", report.notes))

    out.append(("h2", "Groups"))
    keys = ", ".join(f"`{k}`" for k in t.group_keys) or "nothing (one group)"
    out.append(
        (
            "p",
            f"A group is every run with the same config except the seed keys (`seed`, "
            f"`init_seed`, `data_seed`). What varies between groups here: {keys}.",
        )
    )
    out.append(("table", group_view(report)))
    out.append(
        (
            "p",
            "IQM: interquartile mean (mean of the middle 50% of seeds). 95% CI of the "
            "mean over seeds: Hall's (1992) skewness-corrected t interval, chosen for "
            "its coverage measured on simulated seeds: 95% for normal scores at 3 to 20 "
            "seeds, 90-95% for strongly skewed ones (Student's t: 88-92%), without the "
            "bootstrap's very wide intervals when a seed collapsed; cut to [0, 1] for "
            f"an accuracy. No interval below {MIN_SEEDS_CI} seeds (with 2, a t "
            "interval is mean +- 9 std). When a few seeds collapse (the `min` far below "
            "the median), no interval covers the mean unless some of these seeds "
            "collapsed."
            + (
                " Noise floor: sqrt(p(1-p)/n_test), the std that test-set sampling alone "
                "gives (Jordan 2024); std/floor near 1 means the seeds differ no more than "
                "measuring on a finite test set would explain."
                if report.accuracy
                else ""
            ),
        )
    )
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
        out.append(
            (
                "p",
                "Not available: `init_seed` and `data_seed` were not crossed in these "
                "runs. Cross them to see which source of randomness matters (Dodge et "
                "al. 2020), e.g. `python train.py -m experiment=crossed_seeds` or "
                "`python train.py -m init=he init_seed=0,1,2,3 data_seed=0,1,2,3`.",
            )
        )
    else:
        out.append(
            (
                "p",
                "The share of a new run's variance due to the weights' seed, the data "
                "order's seed, and the rest (their interaction and any other noise): "
                "variance components of the two-way random-effects ANOVA over the "
                "init-seed x data-seed grid (method of moments), with 95% generalized "
                "confidence intervals (coverage 0.95-0.99 measured on simulated normal "
                "grids). `init - data`: the interval of the difference of the two "
                "shares; when it contains 0, the grid cannot tell which matters more.",
            )
        )
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
        out.append(
            (
                "p",
                "No run here has a diagnosis (`diagnosis` tag): diagnostics were off "
                "(`diagnostics.enabled=false`), or the runs predate diagnoses.",
            )
        )
        return out
    out.append(
        (
            "p",
            "Each run's diagnosis of its init (its `diagnosis` tag; the sentences are "
            "the run's description in the MLflow UI), counted over the group's seeds: "
            "3/3 means every diagnosed seed carries that finding. A finding names a "
            "mechanism; the score says whether it cost anything. Findings and their "
            "thresholds: docs/diagnostics.md.",
        )
    )
    out.append(("table", why.why_frame(groups, report.table.metric)))
    disagree = why.disagreement_lines(groups)
    out.append(
        ("list", disagree)
        if disagree
        else ("p", "The seeds of every group agree on every finding.")
    )
    evidence = [
        f"**{g.group}** (seed {seed}): {'; '.join(said)}"
        for g in groups
        for seed, said in g.examples
    ]
    if evidence:
        out.append(("h3", "The evidence: a run per group and set of findings"))
        out.append(("list", evidence))
    return out


def why_markdown(report: Report) -> str:
    """The why section for the parent run's note: the table and the disagreements."""
    groups = why.why(report.table)
    if not any(g.diagnosed for g in groups):
        return ""
    lines = [
        "### Why: what the diagnostics found, per group",
        "",
        md_table(why.why_frame(groups, report.table.metric)),
    ]
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
    out.append(
        (
            "p",
            f"**Chosen on `{select}`, scored on `{score}`**"
            + (
                " (the choice is made on a validation metric and judged on the test metric, "
                "never chosen on test)."
                if select != score
                else " (no validation metric: chosen and scored on the same numbers, so every "
                "regret here is optimistic)."
            ),
        )
    )
    out.append(
        (
            "p",
            f"Per context (the other settings that vary), the grid `{key}` x seeds. "
            "**Best on mean**: the value with the best mean "
            f"`{select}` over all seeds. **Flip rate**: share of seeds whose own best "
            "value is not the best on the mean. **Regret**: mean over seeds of "
            f"`{score}` of the best on mean minus that of the seed's own best (means "
            "over all seeds), i.e. what trusting one seed costs. **Optimism**: a seed's "
            f"best `{score}` on that seed minus that value's mean on the other seeds "
            "(winner's curse). **Kendall τ**: mean rank agreement of the values between "
            "pairs of seeds (1 = same order). **P(best)**: how often the value wins on "
            "the mean of a bootstrap resample of the seeds. **Held-out regret**: choose "
            f"on k seeds' `{select}`, score on the others' `{score}`.",
        )
    )
    out.append(("table", tuning_view(results)))
    for name, alt in (
        ("tuning_curve", f"{report.table.metric} vs {key}"),
        ("rank_heatmap", "rank heatmap"),
        ("kendall_tau", "Kendall tau"),
        ("regret", "regret vs seeds"),
    ):
        if name in plot_files:
            out.append(("img", plot_files[name], alt))
    for r in results:
        out.append(("h3", f"{r.context}: winners per seed"))
        out.append(("table", winners_view(r)))
        out.append(("table", values_view(r)))
    out.append(("h3", "Regret vs number of seeds used to choose"))
    out.append(("table", curve_view(results)))
    return out


def terminal(report: Report, max_pairs: int = TERMINAL_PAIRS) -> str:
    """What the command prints: the group table, verdicts, variance split, tuning headline."""
    t, sel = report.table, report.selection
    lines = [
        f"initsweep report: {sel.describe()}",
        f"metric {t.metric} ({'lower' if t.lower_is_better else 'higher'} is better); "
        f"{counts_line(t)}",
        "",
    ]
    view = group_view(report).drop(columns=["median", "min", "max"])
    lines.append(view.to_string(index=False))
    lines += why_terminal(report)
    if not report.pairs.empty:
        verdicts = [
            f"{r['verdict']} [ASO ε_min {fmt(r['aso_eps_min'], 2)}]"
            for _, r in report.pairs.iterrows()
        ]
        lines += ["", "verdicts:"] + [f"  {v}" for v in verdicts[:max_pairs]]
        if len(verdicts) > max_pairs:
            lines.append(f"  ... {len(verdicts) - max_pairs} more in report.md")
        lines.append(
            f"  ({pairs_line(report)}; ASO ε_min < {ASO_THRESHOLD}: A almost stochastically larger)"
        )
    if not report.variance.empty:
        lines += [
            "",
            "variance split (init seed x data seed), shares with 95% intervals:",
            variance_view(report.variance)
            .drop(columns=["std of init means", "std of data means"])
            .to_string(index=False),
        ]
        lines += [f"  {w}" for w in variance_warnings(report.variance)]
    if report.tune_key and report.tuning:
        first = report.tuning[0]
        lines += [
            "",
            f"tuning trap on {report.tune_key} (chosen on {first.select_metric}, "
            f"scored on {first.score_metric}):",
            tuning_view(report.tuning).to_string(index=False),
        ]
        for r in report.tuning:
            picks = ", ".join(f"{p['seed']}:{p['winner']}" for _, p in r.per_seed.iterrows())
            curve = ", ".join(f"k={int(c['k'])}: {c['regret']:.4f}" for _, c in r.curve.iterrows())
            lines += [
                f"  {r.context}: winner per seed {picks}",
                f"  {r.context}: held-out regret {curve}",
            ]
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- files
def runs_csv(table: RunTable) -> pd.DataFrame:
    """The per-run rows, leading with what the report uses."""
    frame = table.frame.drop(columns=["_group_order"])
    first = [
        "run_id",
        "run_name",
        "group",
        "status",
        "outcome",
        "usable",
        "value",
        "seed",
        "init_seed",
        "data_seed",
        "n_test",
    ]
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
        plot("groups", figures.groups_plot(t, report.summary, plot_dir / "groups.png", report.seed))
    if not report.variance.empty:
        plot("variance", figures.variance_plot(report.variance, plot_dir / "variance_split.png"))
    if report.tuning:
        plot(
            "tuning_curve",
            figures.tuning_curve_plot(report.tuning, t.metric, plot_dir / "tuning_curve.png"),
        )
        plot(
            "rank_heatmap", figures.rank_heatmap_plot(report.tuning, plot_dir / "rank_heatmap.png")
        )
        plot("kendall_tau", figures.kendall_plot(report.tuning, plot_dir / "kendall_tau.png"))
        plot(
            "regret", figures.regret_plot(report.tuning, t.metric, plot_dir / "regret_vs_seeds.png")
        )
    csvs = {"runs.csv": runs_csv(t), "groups.csv": report.summary, "pairs.csv": report.pairs}
    if not report.variance.empty:
        csvs["variance.csv"] = report.variance
    if report.tuning:
        csvs["tuning.csv"] = pd.DataFrame([r.summary() for r in report.tuning])
        csvs["tuning_seeds.csv"] = pd.concat(
            [r.per_seed.assign(context=r.context) for r in report.tuning], ignore_index=True
        )
        csvs["regret_curve.csv"] = pd.concat(
            [r.curve.assign(context=r.context) for r in report.tuning], ignore_index=True
        )
    for name, frame in csvs.items():
        frame.to_csv(out / name, index=False)
        written.append(out / name)
    doc = blocks(report, files)
    (out / "report.md").write_text(to_markdown(doc), encoding="utf-8")
    (out / "report.html").write_text(to_html(doc, out), encoding="utf-8")
    written += [out / "report.md", out / "report.html"]
    return written
