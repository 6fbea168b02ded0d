"""The report's answer where a user reads it: its folder logged on the sweep's parent run (the
logged report.md's images pointed at the UI's server), and the answer in the UI's own terms:
per-group summary metrics, the verdicts as the run's description, the sweep's saved view.

``make_report`` builds (``report.render``), writes and publishes; ``report_for_sweep`` is the
end-of-sweep hook. pandas, scipy and matplotlib come with ``render``: the sweep callback imports
this module only when it makes a report.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from initsweep.report.compute import Report, build
from initsweep.report.document import md_table
from initsweep.report.options import ReportOptions, report_options
from initsweep.report.render import ARTIFACT_PATH, terminal, why_markdown, write
from initsweep.report.select import Selection, open_existing_store, select
from initsweep.report.views import counts_line, group_view, pairs_line, tuning_view
from initsweep.tracking.links import absolute_image_links, runs_page_link, ui_base_url
from initsweep.tracking.notes import set_run_note
from initsweep.tracking.views import sweep_view_key, write_sweep_view
from initsweep.vocab import PRIMARY_METRIC, SUMMARY_METRIC_TAG


def metric_name(*parts: str) -> str:
    """A valid MLflow metric name from readable parts (``he optim.lr=0.1`` ->
    ``he optim.lr 0.1``; ``s1/uniform`` -> ``s1.uniform``): ``/`` separates the parts only, so
    the UI's chart sections are ``<metric>/<group>``."""

    def clean(part: str) -> str:
        part = part.replace("/", ".").replace("=", " ")
        return re.sub(r"[^\w.\- ]", "_", part).strip() or "_"

    return "/".join(clean(p) for p in parts)


def summary_metrics(report: Report) -> dict[str, float]:
    """The parent run's answer as metrics: per group ``<metric>/<group>/{n, mean, std, min, max,
    ci_low, ci_high}``; per tuning context ``<metric>/tuning <key>/<context>/{flip_rate, regret,
    heldout_regret_k1}``. Taken from the report's tables (nothing recomputed); NaN (a CI of one
    seed) is left out."""
    metric = report.table.metric.replace("/", "_")
    out: dict[str, float] = {}
    for _, row in report.summary.iterrows():
        for stat in ("n", "mean", "std", "min", "max", "ci_low", "ci_high"):
            value = float(row[stat])
            if math.isfinite(value):
                out[metric_name(metric, str(row["group"]), stat)] = value
    for result in report.tuning:
        summary = result.summary()
        for stat in ("flip_rate", "regret", "heldout_regret_k1"):
            value = float(cast(float, summary[stat]))
            if math.isfinite(value):
                out[metric_name(metric, f"tuning {report.tune_key}", result.context, stat)] = value
    return out


def summary_note(report: Report, links: Mapping[str, str] | None = None) -> str:
    """The parent run's description: the group table and the verdicts in words (markdown)."""
    t = report.table
    direction = "lower is better" if t.lower_is_better else "higher is better"
    # The UI shows the first lines and folds the rest: the verdicts come first, the tuning trap's
    # before the pairwise ones.
    lines = [f"## Seed sensitivity of `{t.metric}` ({direction})", ""]
    for result in report.tuning:
        s = result.summary()
        lines.append(
            f"- **Tuning `{report.tune_key}`, {result.context}**: chosen on "
            f"`{result.select_metric}`, the best on the mean of {s['seeds']} seeds is "
            f"`{s['best_on_mean']}`; {s['flip_rate']:.0%} of the seeds pick another value on "
            f"their own (flip rate); trusting one seed costs {s['regret']:.4f} "
            f"`{result.score_metric}` on average (regret), {s['heldout_regret_k1']:.4f} on "
            "held-out seeds."
        )
    verdicts = list(report.pairs["verdict"]) if not report.pairs.empty else []
    lines += [f"- {v}" for v in verdicts]
    if not verdicts and not report.tuning:
        lines.append("Only one group: nothing to compare.")
    lines += [
        "",
        f"{counts_line(t)}; a group is one value of "
        f"{', '.join(f'`{k}`' for k in t.label_keys) or 'nothing (one group)'}, "
        f"the seeds vary within it. {pairs_line(report)}.",
    ]
    if links:
        lines += ["", " · ".join(f"[{label}]({url})" for label, url in links.items())]
    view = group_view(report)
    keep = [
        c
        for c in ("group", "n", "mean", "std", "95% CI", "min", "max", "failed", "diverged")
        if c in view.columns
    ]
    lines += ["", md_table(view[keep])]
    why = why_markdown(report)  # the diagnosis findings per group
    if why:
        lines += ["", why]
    if report.tuning:
        lines += ["", md_table(tuning_view(report.tuning))]
    elif not report.tune_key:
        lines += [
            "",
            "Nothing was tuned in this sweep: for the tuning trap run "
            "`python train.py -m experiment=tuning_trap`.",
        ]
    lines += [
        "",
        "The full report (tables, plots, notes): `report/report.html` in this run's artifacts.",
    ]
    return "\n".join(lines)


def sweep_links(base_url: str, experiment_id: str, sweep_id: str) -> dict[str, str]:
    """The sweep view's links: charts and table."""
    key = sweep_view_key(sweep_id)
    return {
        "charts": runs_page_link(base_url, experiment_id, key),
        "table": runs_page_link(base_url, experiment_id, key, mode="TABLE"),
    }


def log_summary(client: MlflowClient, report: Report, base_url: str | None = None) -> str | None:
    """The report's answer on its sweep's parent run: summary metrics, the note (with links to
    the sweep's view) and the view itself (rewritten: its charts list the new metrics, collapsed).
    Returns the parent run's id; None when the report has no parent run (nothing logged)."""
    parent = report.selection.parent_run_id
    if not parent:
        return None
    base_url = base_url or ui_base_url(client.tracking_uri)
    experiment_id = report.selection.experiment_id
    sweep_id = report.selection.sweep_id or parent
    now = int(time.time() * 1000)
    rows = [Metric(k, v, now, 0) for k, v in summary_metrics(report).items()]
    for start in range(0, len(rows), 1000):  # MLflow's batch limit
        client.log_batch(parent, metrics=rows[start : start + 1000], synchronous=True)
    set_run_note(
        client, parent, summary_note(report, sweep_links(base_url, experiment_id, sweep_id))
    )
    client.set_tag(parent, SUMMARY_METRIC_TAG, report.table.metric)
    write_sweep_view(client, experiment_id, parent, sweep_id, primary_metric=report.table.metric)
    return parent


def log_artifacts(client: MlflowClient, report: Report, out: Path) -> str | None:
    """Log the folder under ``report/`` on the sweep's parent run, and the answer in the UI's own
    terms (``log_summary``: per-group metrics, the verdicts as the run's
    description, the sweep's saved view); returns the run's id (None: no parent run).

    The logged report.md points its images at the UI's server (``tracking.links.ui_base_url``):
    MLflow's markdown viewer draws no relative or ``data:`` image. The copy in ``out`` keeps
    relative paths.
    """
    parent = report.selection.parent_run_id
    if not parent:
        return None
    client.log_artifacts(parent, str(out), artifact_path=ARTIFACT_PATH)
    base_url = ui_base_url(client.tracking_uri)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    client.log_text(
        parent,
        absolute_image_links(markdown, base_url, parent, ARTIFACT_PATH),
        f"{ARTIFACT_PATH}/report.md",
    )
    client.set_tag(parent, "report", f"{ARTIFACT_PATH}/report.html")
    log_summary(client, report, base_url)
    return parent


def default_out(selection: Selection) -> Path:
    """``<sweep dir>/report`` when the sweep's folder is here, else ``outputs/report-<label>``."""
    if selection.sweep_dir and Path(selection.sweep_dir).is_dir():
        return Path(selection.sweep_dir) / "report"
    return Path("outputs") / f"report-{selection.label}"


def make_report(
    client: MlflowClient,
    selection: Selection,
    out: Path | None = None,
    metric: str = PRIMARY_METRIC,
    tune: str | None = None,
    n_test: int | None = None,
    seed: int = 0,
    log: bool = True,
    select_metric: str | None = None,
    all_pairs: bool = False,
) -> tuple[Report, list[Path], Path, str | None]:
    """Build, write and (when a parent run is known) log: (report, files, folder, run id)."""
    report = build(client, selection, metric, tune, n_test, seed, select_metric, all_pairs)
    folder = out or default_out(selection)
    files = write(report, folder)
    logged = log_artifacts(client, report, folder) if log else None
    return report, files, folder, logged


def report_for_sweep(
    tracking_uri: str, experiment: str, parent_run_id: str, out: Path, options: Any = None
) -> str:
    """The end-of-sweep hook (`report=true`, the default): report one sweep into ``out``;
    returns the terminal text.

    ``options`` is the config's ``report`` value (``report.options.report_options``): ``true``, or
    a mapping with any of ``ReportOptions``'s fields.
    """
    opts = options if isinstance(options, ReportOptions) else report_options(options)
    opts = opts or ReportOptions()
    client = open_existing_store(tracking_uri)
    selection = select(client, experiment, sweep=parent_run_id)
    report, files, folder, logged = make_report(
        client,
        selection,
        out,
        metric=opts.metric,
        tune=opts.tune,
        n_test=opts.n_test,
        seed=opts.seed,
        select_metric=opts.select_metric,
        all_pairs=opts.all_pairs,
    )
    where = f"; logged under {ARTIFACT_PATH}/ on run {logged}" if logged else ""
    return terminal(report) + f"\n\nwrote {len(files)} files to {folder}{where}"
