"""What the MLflow UI shows of a sweep: a saved view, experiment and run notes, run colours,
the parent run's summary metrics, and the deep link that opens it all (issue 13).

Everything here is written with MLflow's own mechanisms, as the 3.17 UI reads them (the formats
were checked against the compiled UI and in a browser; see docs/mlflow_ui.md):

- a **saved view** is an experiment tag ``mlflow.sharedViewState.<key>`` holding an envelope
  ``{"name", "createdAt", "updatedAt", "state"}`` whose ``state`` is the runs page's UI state as
  JSON, deflated and base64-encoded (``"deflate;..."``, what the UI's own "Save view" writes;
  tag values are limited to 20,000 characters). It is listed in the page's "Views" menu and opened
  by the link ``#/experiments/<id>/runs?...&viewStateShareKey=<key>``;
- ``mlflow.note.content`` is the markdown banner above an experiment's runs, and a run's
  "Description"; ``mlflow.runColor`` (``#rrggbb``) a run's colour in tables and charts;
- the GenAI / model-training switch of 3.17 follows the URL's ``workflowType``, so every link
  carries ``workflowType=machine_learning``; ``mlflow.experimentKind`` only matters to older UIs.

No torch and no Lightning here: the sweep callback, the report and the CLI import this module.
"""

from __future__ import annotations

import base64
import colorsys
import json
import math
import os
import re
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from mlflow.entities import Metric, Run, RunTag
from mlflow.tracking import MlflowClient

from initsweep.naming import SEED_KEYS
from initsweep.vocab import (
    EXPERIMENT_KIND_TAG,
    NOTE_TAG,
    PARENT_TAG,
    PRIMARY_METRIC,
    PRIMARY_METRIC_TAG,
    RUN_COLOR_TAG,
    SUMMARY_METRIC_TAG,
    UI_URL_ENV,
    VIEW_KEY_TAG,
    VIEW_TAG_PREFIX,
)

if TYPE_CHECKING:  # pandas, scipy and matplotlib only where a report is summarised
    from initsweep.report.render import Report

EXPERIMENT_KIND = "custom_model_development"  # the UI's "Machine learning" experiment type
DEFAULT_UI_URL = "http://127.0.0.1:5000"  # `make ui` / `mlflow ui` defaults
# Metrics logged once per run, at its end: drawn as bars (one per run), the rest as lines.
END_OF_RUN_PREFIXES = ("test/", "time/")
# Chart sections shown open, in this order; every other section (diag/L0, ...) starts collapsed.
OPEN_SECTIONS = ("test", "val", "train")
MAX_TAG_VALUE = 20_000  # MLflow's limit on an experiment tag's value (mlflow.utils.validation)
MAX_NOTE = 8000  # MLflow's limit on a run tag's value (a run note is a tag)


# ------------------------------------------------------------------------------------ links
def ui_base_url(tracking_uri: str | None = None) -> str:
    """The address of the UI that shows this store: ``$INITSWEEP_UI_URL``; else the tracking
    server itself (an ``http(s)://`` tracking URI serves the UI); else ``make ui``'s default."""
    configured = os.environ.get(UI_URL_ENV)
    if configured:
        return configured.rstrip("/")
    if tracking_uri and re.match(r"^https?://", tracking_uri):
        return re.sub(r"//[^/@]+@", "//", tracking_uri).rstrip("/")  # never print credentials
    return DEFAULT_UI_URL


def runs_page_link(base_url: str, experiment_id: str, key: str | None = None,
                   mode: str = "CHART") -> str:
    """The runs page of an experiment in the model-training view, on saved view ``key``.

    Only ``workflowType``, ``compareRunsMode`` and ``viewStateShareKey`` go in the link: the UI
    ignores a saved view when the link also names a search facet (``searchFilter``, ...).
    ``mode``: ``CHART`` (the charts beside the run list) or ``TABLE`` (the columns).
    """
    query = f"workflowType=machine_learning&compareRunsMode={mode}"
    if key:
        query += f"&viewStateShareKey={key}"
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def run_page_link(base_url: str, experiment_id: str, run_id: str) -> str:
    """A run's overview page (its note, metrics, tags) in the model-training view."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
            "?workflowType=machine_learning")


def artifact_url(base_url: str, run_id: str, path: str) -> str:
    """The server's download URL of a run artifact (what an ``<img>`` in the UI can load)."""
    return f"{base_url.rstrip('/')}/get-artifact?path={path}&run_uuid={run_id}"


def absolute_image_links(markdown: str, base_url: str, run_id: str, artifact_dir: str) -> str:
    """``![alt](plots/x.png)`` -> ``![alt](<server>/get-artifact?path=<dir>/plots/x.png&...)``.

    MLflow 3.17's markdown artifact viewer draws an image only from an absolute ``http(s)`` URL:
    a relative path is shown as the text ``[alt](path)`` and a ``data:`` URI is stripped. The
    copy of report.md logged on a run therefore points at the server; the copy on disk keeps
    relative paths (they render on GitHub and in editors).
    """
    def absolute(match: re.Match) -> str:
        alt, path = match.group(1), match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", path, re.IGNORECASE):
            return match.group(0)  # already absolute
        return f"![{alt}]({artifact_url(base_url, run_id, f'{artifact_dir}/{path}')})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", absolute, markdown)


# ------------------------------------------------------------------------------- the view
def column(kind: str, name: str) -> str:
    """A runs-table column key as the UI writes it: ``metrics.`test/acc```, ``tags.`init```."""
    return f"{kind}.`{name}`"


def group_by_keys(swept_keys: Sequence[str]) -> list[dict[str, str]]:
    """Rows grouped by the init config and every other swept key, never by a seed key.

    ``init`` (a config chosen from the ``init`` group, e.g. ``s1/uniform_0_1``) is the run's
    ``init`` tag; any other key is a param of the same name.
    """
    keys = [{"mode": "tag", "groupByData": "init"}]
    for key in swept_keys:
        if key in SEED_KEYS or key == "init" or not key:
            continue
        keys.append({"mode": "param", "groupByData": key})
    return keys


def view_columns(swept_keys: Sequence[str], primary_metric: str = PRIMARY_METRIC) -> list[str]:
    """Table columns: the primary metric and val/acc, the init config, scale, seed(s), the other
    swept keys and the outcome (instead of the UI's Source, Models, Dataset)."""
    columns = [column("metrics", primary_metric)]
    if primary_metric != "val/acc":
        columns.append(column("metrics", "val/acc"))
    columns += [column("tags", "init"), column("tags", "scale"), column("tags", "seed")]
    columns += [column("tags", k) for k in ("init_seed", "data_seed") if k in swept_keys]
    columns += [column("params", k) for k in swept_keys
                if k not in SEED_KEYS and k not in ("init", "init.scale") and k]
    columns.append(column("tags", "outcome"))
    return columns


def section_of(metric: str) -> str:
    """The chart section the UI puts a metric in: its name up to the last ``/``."""
    return metric.rsplit("/", 1)[0] if "/" in metric else "Model metrics"


def chart_layout(metric_keys: Iterable[str], n_runs: int,
                 primary_metric: str = PRIMARY_METRIC) -> tuple[list[dict], list[dict]]:
    """Chart cards and sections: the primary metric first, then the test, val and train sections
    open, end-of-run metrics as bar charts; every other section (``diag/L0``, the parent's
    summaries, ...) listed folded.

    Every metric's section is listed: for a metric in no listed section the UI would add one,
    open, e.g. the 36 ``diag/*`` charts before ``test/acc``.
    """
    keys = sorted(set(metric_keys) | {primary_metric})
    names = sorted({section_of(k) for k in keys},
                   key=lambda s: (s not in OPEN_SECTIONS,
                                  OPEN_SECTIONS.index(s) if s in OPEN_SECTIONS else 0, s))
    section_ids = {name: str(uuid.uuid4()) for name in names}
    # Horizontal bars: about 22 px a run, so a 100-run sweep is readable too.
    bar_height = min(max(360, 22 * n_runs + 140), 2400)
    sections = []
    for name in names:
        section = {"uuid": section_ids[name], "name": name, "display": name in OPEN_SECTIONS,
                   "isReordered": False, "deleted": False, "isGenerated": False}
        if name == section_of(primary_metric) or name == "test":
            section.update(columns=2, cardHeight=bar_height)
        sections.append(section)
    # The UI keeps "Model metrics" and "System metrics" last; both stay collapsed.
    for name in ("Model metrics", "System metrics"):
        if name not in section_ids:
            sections.append({"uuid": str(uuid.uuid4()), "name": name, "display": False,
                             "isReordered": False, "deleted": False, "isGenerated": False})
    first = [primary_metric, "test/loss", "val/acc", "val/loss", "train/loss"]
    ordered = [k for k in first if k in keys] + [k for k in keys if k not in first]
    # Cards for the open sections only: the UI adds a card for every other metric itself, into
    # the section of that name listed here, folded. (A card each would not fit MLflow's 20,000
    # characters for a deep model's hundreds of diag/* metrics.)
    shown = {section_ids[name] for name in names if name in OPEN_SECTIONS}
    shown.add(section_ids[section_of(primary_metric)])
    charts = []
    for key in ordered:
        if section_ids[section_of(key)] not in shown:
            continue
        card: dict[str, Any] = {"uuid": str(uuid.uuid4()), "metricKey": key,
                                "metricSectionId": section_ids[section_of(key)],
                                "deleted": False, "isGenerated": False, "runsCountToCompare": 10}
        if key == primary_metric or key.startswith(END_OF_RUN_PREFIXES):
            card["type"] = "BAR"
        else:
            card.update(type="LINE", selectedMetricKeys=[key], lineSmoothness=0,
                        xAxisKey="step", xAxisScaleType="linear", scaleType="linear",
                        selectedXAxisMetricKey="", yAxisKey="metric", yAxisExpressions=[],
                        ignoreOutliers=False, useGlobalXaxisKey=True, useGlobalLineSmoothing=True)
        charts.append(card)
    return charts, sections


def view_state(metric_keys: Iterable[str], swept_keys: Sequence[str], n_runs: int,
               search_filter: str = "", primary_metric: str = PRIMARY_METRIC) -> dict[str, Any]:
    """The runs page's state: search facets and UI state, as the UI's "Save view" stores them.

    Rows grouped by init config (mean over seeds), chosen columns wide enough for a full value,
    every run charted (``SHOW_ALL``; the UI's default charts the first 10 only), each run its own
    bar while the table is grouped (``useGroupedValuesInCharts: false``).
    """
    columns = view_columns(swept_keys, primary_metric)
    charts, sections = chart_layout(metric_keys, n_runs, primary_metric)
    return {
        # search facets
        "searchFilter": search_filter, "orderByKey": "attributes.start_time",
        "orderByAsc": False, "startTime": "ALL", "lifecycleFilter": "Active",
        "datasetsFilter": [], "modelVersionFilter": "All Runs",
        # UI state (widths apply only with a column order)
        "selectedColumns": columns, "columnOrder": columns,
        "columnWidths": {c: 190 for c in columns if c.startswith("metrics.")},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts, "compareRunSections": sections,
        "isAccordionReordered": True, "viewMaximized": False, "runListHidden": False,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": group_by_keys(swept_keys)},
        "groupsExpanded": {}, "useGroupedValuesInCharts": False, "hideEmptyCharts": True,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0,
                                  "selectedXAxisMetricKey": ""},
        "chartsSearchFilter": "",
    }


def encode_view(name: str, state: Mapping[str, Any], now_ms: int | None = None) -> str:
    """The tag value of a saved view: the UI's envelope around its compressed state."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    packed = "deflate;" + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    value = json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": packed})
    if len(value) > MAX_TAG_VALUE:
        raise ValueError(f"saved view {name!r}: {len(value)} characters, more than MLflow's "
                         f"{MAX_TAG_VALUE} for a tag value")
    return value


def decode_view(value: str) -> tuple[str, dict[str, Any]]:
    """(name, state) of a saved view's tag value (compressed or plain state)."""
    envelope = json.loads(value)
    state = envelope["state"]
    if state.startswith("deflate;"):
        state = zlib.decompress(base64.b64decode(state.removeprefix("deflate;"))).decode()
    return envelope["name"], json.loads(state)


def write_view(client: MlflowClient, experiment_id: str, key: str, name: str,
               state: Mapping[str, Any]) -> None:
    """Store a saved view on the experiment (replacing one with the same key)."""
    if not re.match(r"^[\w.\-]+$", key):
        raise ValueError(f"view key {key!r}: letters, digits, '_', '.', '-' only")
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, encode_view(name, state))


def sweep_view_key(sweep_id: str) -> str:
    """The saved view of one sweep (one per sweep, listed in the "Views" menu)."""
    return f"sweep-{sweep_id}"


def sweep_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    """The sweep's job runs (children of its parent run), every page."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def swept_keys_of(runs: Sequence[Run]) -> list[str]:
    """The keys a finished sweep varied, read back from its runs: ``init`` when the runs' ``init``
    tags differ (the config chosen from the ``init`` group), and every param that differs and is
    not decided by ``init`` (``init.scale=0.5,1`` on one init, ``optim.lr``, ``seed``), nor equal
    to ``seed`` (``init_seed``, ``data_seed`` by default)."""
    keys: list[str] = []
    inits = [r.data.tags.get("init", "") for r in runs]
    if len(set(inits)) > 1:
        keys.append("init")
    for key in sorted({k for r in runs for k in r.data.params}):
        values = [r.data.params.get(key) for r in runs]
        if len(set(values)) < 2 or key == "experiment_name":
            continue
        by_init: dict[str, set] = {}
        for init, value in zip(inits, values, strict=True):
            by_init.setdefault(init, set()).add(value)
        if "init" in keys and key.startswith("init.") and all(len(v) == 1
                                                                for v in by_init.values()):
            continue  # e.g. init.scheme, init.mode: one value per init config
        if key in ("init_seed", "data_seed") and values == [r.data.params.get("seed")
                                                             for r in runs]:
            continue  # ${seed}, as by default: the seed column says it
        keys.append(key)
    return keys


def write_sweep_view(client: MlflowClient, experiment_id: str, parent_run_id: str,
                     sweep_id: str, swept_keys: Sequence[str] | None = None,
                     primary_metric: str = PRIMARY_METRIC) -> str:
    """Write the sweep's saved view (its runs grouped and charted) and name it on the parent run
    (tag ``initsweep.view``); returns the view's key. ``swept_keys`` default: read back from the
    runs (``swept_keys_of``), as also when one of them is no param (a config group swept, e.g.
    ``optim=adam,sgd``: its params differ instead). Call it once the runs are done: its chart
    sections are those of the metrics the runs (and the parent) logged."""
    runs = sweep_runs(client, experiment_id, parent_run_id)
    params = {k for r in runs for k in r.data.params}
    if swept_keys is None or any(k != "init" and k not in params for k in swept_keys):
        swept = swept_keys_of(runs)
    else:
        swept = list(swept_keys)
    parent = client.get_run(parent_run_id)
    keys = {k for r in [*runs, parent] for k in r.data.metrics}
    varied = ", ".join(k for k in swept if k not in SEED_KEYS) or "seeds only"
    key = sweep_view_key(sweep_id)
    state = view_state(keys, swept, len(runs), f"tags.sweep_id = '{sweep_id}'", primary_metric)
    write_view(client, experiment_id, key, f"sweep {sweep_id}: {varied}", state)
    client.set_tag(parent_run_id, VIEW_KEY_TAG, key)
    return key


# ------------------------------------------------------------------------------- notes
def set_run_note(client: MlflowClient, run_id: str, markdown: str,
                 tags: Mapping[str, str] | None = None) -> None:
    """A run's note (its "Description", markdown): the one writer of ``mlflow.note.content``
    on runs (the parent's summary here, a job's diagnosis in ``diagnostics.findings``). Cut to
    MLflow's limit on a tag value, with a closing line that says so. ``tags``: more tags written
    in the same call (one round trip to the store)."""
    if len(markdown) > MAX_NOTE:
        tail = "\n\n… (cut: the full text is in the run's artifacts)"
        markdown = markdown[:MAX_NOTE - len(tail)] + tail
    if not tags:
        client.set_tag(run_id, NOTE_TAG, markdown)
        return
    client.log_batch(run_id, tags=[RunTag(NOTE_TAG, markdown),
                                   *(RunTag(k, str(v)) for k, v in tags.items())],
                     synchronous=True)


def set_experiment_note(client: MlflowClient, experiment_id: str, markdown: str) -> None:
    """The experiment's note: the banner above its runs (first line shown, the rest unfolds)."""
    client.set_experiment_tag(experiment_id, NOTE_TAG, markdown[:MAX_TAG_VALUE])


def experiment_note(experiment_name: str, experiment_id: str, sweep_id: str, view_key: str,
                    parent_run_id: str, tuned: bool = False) -> str:
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
        lines.append("- Nothing is tuned in this sweep. For the tuning trap (a learning rate "
                     "chosen on one seed) run `python train.py -m experiment=tuning_trap`.")
    return "\n".join(lines)


def write_experiment_tags(client: MlflowClient, experiment_id: str, note: str | None = None,
                          primary_metric: str = PRIMARY_METRIC) -> None:
    """The experiment's banner, primary metric (charted first by the UI's default view) and
    kind (``custom_model_development``: stops older UIs' "choose experiment type" prompt)."""
    client.set_experiment_tag(experiment_id, PRIMARY_METRIC_TAG, primary_metric)
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if note is not None:
        set_experiment_note(client, experiment_id, note)


# ------------------------------------------------------------------------------- run colours
# matplotlib's tab10 without its grey: one hue per init config.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf")


def shade(color: str, position: float) -> str:
    """``color`` darker (``position`` 0) to lighter (1), same hue: lightness 0.28..0.72."""
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    hue, _, saturation = colorsys.rgb_to_hls(r, g, b)
    lightness = 0.28 + 0.44 * min(max(position, 0.0), 1.0)
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#" + "".join(f"{round(c * 255):02x}" for c in (r, g, b))


def _numeric_first(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def run_colors(runs: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """``{run_id: "#rrggbb"}`` for ``(run_id, init, seed)`` triples: a hue per init config (in
    sorted order), a shade per seed (dark = lowest seed)."""
    runs = list(runs)
    inits = sorted({init for _, init, _ in runs})
    seeds = sorted({seed for _, _, seed in runs}, key=_numeric_first)
    span = max(len(seeds) - 1, 1)
    return {run_id: shade(PALETTE[inits.index(init) % len(PALETTE)], seeds.index(seed) / span)
            for run_id, init, seed in runs}


def color_runs(client: MlflowClient, runs: Sequence[Run]) -> dict[str, str]:
    """Set ``mlflow.runColor`` on each run from its ``init`` and ``seed`` tags; returns them."""
    colors = run_colors((r.info.run_id, r.data.tags.get("init", "?"), r.data.tags.get("seed", "0"))
                        for r in runs)
    for run_id, color in colors.items():
        client.set_tag(run_id, RUN_COLOR_TAG, color)
    return colors


# ------------------------------------------------------------------------------- child runs
def exact_ratio(count: float, total: float) -> float:
    """``count / total`` as a Python float from integer counts: accuracy = correct / n exactly
    (``0.1``), not a float32 mean (``0.10000000149011612``). Counts may arrive as floats or
    0-d tensors converted with ``float()``/``int()``; they must be whole numbers."""
    if count != int(count) or total != int(total) or int(total) <= 0:
        raise ValueError(f"exact_ratio({count!r}, {total!r}): needs whole counts and total > 0")
    return int(count) / int(total)


# ------------------------------------------------------------------------------- the parent run
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
    from initsweep.report.render import (
        counts_line,
        group_view,
        md_table,
        pairs_line,
        tuning_view,
        why_markdown,
    )

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
            "held-out seeds.")
    verdicts = list(report.pairs["verdict"]) if not report.pairs.empty else []
    lines += [f"- {v}" for v in verdicts]
    if not verdicts and not report.tuning:
        lines.append("Only one group: nothing to compare.")
    lines += ["", f"{counts_line(t)}; a group is one value of "
                  f"{', '.join(f'`{k}`' for k in t.label_keys) or 'nothing (one group)'}, "
                  f"the seeds vary within it. {pairs_line(report)}."]
    if links:
        lines += ["", " · ".join(f"[{label}]({url})" for label, url in links.items())]
    view = group_view(report)
    keep = [c for c in ("group", "n", "mean", "std", "95% CI", "min", "max", "failed",
                        "diverged") if c in view.columns]
    lines += ["", md_table(view[keep])]
    why = why_markdown(report)  # the diagnosis findings per group (issue 18)
    if why:
        lines += ["", why]
    if report.tuning:
        lines += ["", md_table(tuning_view(report.tuning))]
    elif not report.tune_key:
        lines += ["", "Nothing was tuned in this sweep: for the tuning trap run "
                      "`python train.py -m experiment=tuning_trap`."]
    lines += ["", "The full report (tables, plots, notes): `report/report.html` in this run's "
                  "artifacts."]
    return "\n".join(lines)


def sweep_links(base_url: str, experiment_id: str, sweep_id: str) -> dict[str, str]:
    """The sweep view's links: charts and table."""
    key = sweep_view_key(sweep_id)
    return {"charts": runs_page_link(base_url, experiment_id, key),
            "table": runs_page_link(base_url, experiment_id, key, mode="TABLE")}


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
        client.log_batch(parent, metrics=rows[start:start + 1000], synchronous=True)
    set_run_note(client, parent, summary_note(report, sweep_links(base_url, experiment_id,
                                                                   sweep_id)))
    client.set_tag(parent, SUMMARY_METRIC_TAG, report.table.metric)
    write_sweep_view(client, experiment_id, parent, sweep_id, primary_metric=report.table.metric)
    return parent


# ------------------------------------------------------------------------------- all at once
def finish_sweep_ui(client: MlflowClient, experiment_id: str, parent_run_id: str, sweep_id: str,
                    swept_keys: Sequence[str] | None = None, base_url: str | None = None) -> str:
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
    write_experiment_tags(client, experiment_id,
                          experiment_note(name, experiment_id, sweep_id, key, parent_run_id,
                                          tuned), metric)
    return runs_page_link(base_url, experiment_id, key)


def closing_line(sweep_id: str, link: str, tuned: bool) -> str:
    """The sweep's last line: where to look, and where the tuning trap is when the sweep varied
    nothing but inits and seeds (``tuned`` False: the demo sweep cannot show it)."""
    line = f"sweep {sweep_id}: open {link}"
    if not tuned:
        line += ("\n  nothing tuned here; for the tuning trap: "
                 "python train.py -m experiment=tuning_trap")
    return line


def sweep_link(client: MlflowClient, parent: Run, base_url: str) -> str:
    """The deep link of a sweep; writes its view first when the sweep has none yet (a sweep
    made before views were written, or one whose callback did not finish)."""
    experiment_id = parent.info.experiment_id
    key = parent.data.tags.get(VIEW_KEY_TAG)
    tag = client.get_experiment(experiment_id).tags.get(VIEW_TAG_PREFIX + (key or ""))
    if not key or tag is None:
        sweep_id = parent.data.tags.get("sweep_id", parent.info.run_id)
        key = write_sweep_view(client, experiment_id, parent.info.run_id, sweep_id)
    return runs_page_link(base_url, experiment_id, key)
