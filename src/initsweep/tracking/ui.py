"""What the MLflow UI shows of a finished sweep, written at once (``finish_sweep_ui``): run colours
(``tracking.colors``), the sweep's saved view (``tracking.views``), the experiment's banner,
primary metric and kind, and the deep link that opens it all (``tracking.links``).

Written with MLflow's own mechanisms, as the 3.17 UI reads them (docs/mlflow_ui.md):
``mlflow.note.content`` is the markdown banner above an experiment's runs
(``tracking.notes``); ``mlflow.experimentKind`` only matters to older UIs.

No torch and no Lightning here: the sweep callback and the CLI import this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from initsweep.tracking.colors import color_runs
from initsweep.tracking.links import run_page_link, runs_page_link, ui_base_url
from initsweep.tracking.notes import set_experiment_note
from initsweep.tracking.views import sweep_runs, write_sweep_view
from initsweep.vocab import (
    EXPERIMENT_KIND_TAG,
    PRIMARY_METRIC,
    PRIMARY_METRIC_TAG,
    SUMMARY_METRIC_TAG,
    SWEEP_ID_TAG,
    VIEW_KEY_TAG,
    VIEW_TAG_PREFIX,
)

EXPERIMENT_KIND = "custom_model_development"  # the UI's "Machine learning" experiment type


def experiment_note(
    experiment_name: str,
    experiment_id: str,
    sweep_id: str,
    view_key: str,
    parent_run_id: str,
    tuned: bool = False,
) -> str:
    """The banner: what the experiment holds, what to look at, the links (relative ``#/``
    links: they work on whatever host serves the UI)."""
    chart = runs_page_link("", experiment_id, view_key).lstrip("/")
    table = runs_page_link("", experiment_id, view_key, mode="TABLE").lstrip("/")
    parent = run_page_link("", experiment_id, parent_run_id).lstrip("/")
    # The first line is all the folded banner shows: keep it short.
    lines = [
        f"**{experiment_name}**, latest sweep: [charts]({chart}) · [table]({table}) · "
        f"[answer]({parent})",
        "",
        f"Weight-initialization sweeps: one parent run per sweep, one child run per config and "
        f"seed. Latest sweep `{sweep_id}`:",
        "",
        f"- [Charts]({chart}): `{PRIMARY_METRIC}` per run as bars, one colour per init and a "
        "shade per seed: the spread of a colour is the seed's effect.",
        f"- [Table]({table}): runs grouped by init config with the mean over seeds.",
        f"- [The sweep's parent run]({parent}): n, mean, std, min, max and 95% CI per group as "
        "metrics, the verdicts in its description, `report/report.html` in its artifacts.",
        "- Every sweep has its own view in the **Views** menu (top right).",
    ]
    if not tuned:
        lines.append(
            "- Nothing is tuned in this sweep. For the tuning trap (a learning rate "
            "chosen on one seed) run `python train.py -m experiment=tuning_trap`."
        )
    return "\n".join(lines)


def write_experiment_tags(
    client: MlflowClient,
    experiment_id: str,
    note: str | None = None,
    primary_metric: str = PRIMARY_METRIC,
) -> None:
    """The experiment's banner, primary metric (charted first by the UI's default view) and
    kind (``custom_model_development``: stops older UIs' "choose experiment type" prompt)."""
    client.set_experiment_tag(experiment_id, PRIMARY_METRIC_TAG, primary_metric)
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if note is not None:
        set_experiment_note(client, experiment_id, note)


def finish_sweep_ui(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    sweep_id: str,
    swept_keys: Sequence[str] | None = None,
    base_url: str | None = None,
) -> str:
    """What the UI shows of a finished sweep, after its report (if any) was logged: run colours,
    the sweep's saved view, the experiment's banner, primary metric and kind. Returns the deep
    link to print. ``swept_keys``: see ``write_sweep_view`` (default: read back from the runs)."""
    base_url = base_url or ui_base_url(client.tracking_uri)
    color_runs(client, sweep_runs(client, experiment_id, parent_run_id))
    parent = client.get_run(parent_run_id)
    metric = parent.data.tags.get(SUMMARY_METRIC_TAG, PRIMARY_METRIC)
    key = write_sweep_view(client, experiment_id, parent_run_id, sweep_id, swept_keys, metric)
    tuned = any("/tuning " in k for k in parent.data.metrics)  # logged by log_summary
    name = client.get_experiment(experiment_id).name
    write_experiment_tags(
        client,
        experiment_id,
        experiment_note(name, experiment_id, sweep_id, key, parent_run_id, tuned),
        metric,
    )
    return runs_page_link(base_url, experiment_id, key)


def closing_line(sweep_id: str, link: str, tuned: bool) -> str:
    """The sweep's last line: where to look, and where the tuning trap is when the sweep varied
    nothing but inits and seeds (``tuned`` False: the demo sweep cannot show it)."""
    line = f"sweep {sweep_id}: open {link}"
    if not tuned:
        line += (
            "\n  nothing tuned here; for the tuning trap: python train.py -m experiment=tuning_trap"
        )
    return line


def sweep_link(client: MlflowClient, parent: Run, base_url: str) -> str:
    """The deep link of a sweep; writes its view first when the sweep has none yet (a sweep
    made before views were written, or one whose callback did not finish)."""
    experiment_id = parent.info.experiment_id
    key = parent.data.tags.get(VIEW_KEY_TAG)
    tag = client.get_experiment(experiment_id).tags.get(VIEW_TAG_PREFIX + (key or ""))
    if not key or tag is None:
        sweep_id = parent.data.tags.get(SWEEP_ID_TAG, parent.info.run_id)
        key = write_sweep_view(client, experiment_id, parent.info.run_id, sweep_id)
    return runs_page_link(base_url, experiment_id, key)
