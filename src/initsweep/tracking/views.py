"""A sweep's saved view in the MLflow UI: its runs grouped by init config, its columns and charts,
encoded as the 3.17 UI's own "Save view" writes it (checked against the compiled UI and in a
browser; docs/mlflow_ui.md).

A saved view is an experiment tag ``mlflow.sharedViewState.<key>`` holding an envelope
``{"name", "createdAt", "updatedAt", "state"}`` whose ``state`` is the runs page's UI state as
JSON, deflated and base64-encoded (``"deflate;..."``; tag values are limited to 20,000
characters). It is listed in the page's "Views" menu and opened by the link
``#/experiments/<id>/runs?...&viewStateShareKey=<key>`` (``tracking.links``). Torch-free.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from initsweep.naming import SEED_KEYS
from initsweep.tracking.notes import MAX_TAG_VALUE
from initsweep.tracking.rounded import ROUNDED_KEYS, ROUNDED_SUFFIX
from initsweep.vocab import (
    OUTCOME_TAG,
    PARENT_TAG,
    PRIMARY_METRIC,
    SWEEP_ID_TAG,
    TEST_LOSS,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    VIEW_KEY_TAG,
    VIEW_TAG_PREFIX,
)

# Metrics logged once per run, at its end: drawn as bars (one per run), the rest as lines.
END_OF_RUN_PREFIXES = ("test/", "time/")
# Chart sections shown open, in this order; every other section (diag/L0, ...) starts collapsed.
OPEN_SECTIONS = ("test", "val", "train")


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


DATASET_COLUMN = "attributes.`Dataset`"  # the UI's own column of a run's logged inputs


def view_columns(swept_keys: Sequence[str], primary_metric: str = PRIMARY_METRIC) -> list[str]:
    """Table columns: the primary metric and val/acc, the init config, scale, seed(s), the other
    swept keys, the outcome and the datasets the run trained and was tested on (name and digest,
    from its logged inputs), instead of the UI's Source and Models."""
    columns = [column("metrics", primary_metric)]
    if primary_metric in ROUNDED_KEYS:  # "0.9630 = 347/360" beside the exact float
        columns.append(column("tags", primary_metric + ROUNDED_SUFFIX))
    if primary_metric != VAL_ACC:
        columns.append(column("metrics", VAL_ACC))
    columns += [column("tags", "init"), column("tags", "scale"), column("tags", "seed")]
    columns += [column("tags", k) for k in ("init_seed", "data_seed") if k in swept_keys]
    columns += [
        column("params", k)
        for k in swept_keys
        if k not in SEED_KEYS and k not in ("init", "init.scale") and k
    ]
    columns.append(column("tags", OUTCOME_TAG))
    columns.append(DATASET_COLUMN)
    return columns


def section_of(metric: str) -> str:
    """The chart section the UI puts a metric in: its name up to the last ``/``."""
    return metric.rsplit("/", 1)[0] if "/" in metric else "Model metrics"


def chart_layout(
    metric_keys: Iterable[str], n_runs: int, primary_metric: str = PRIMARY_METRIC
) -> tuple[list[dict], list[dict]]:
    """Chart cards and sections: the primary metric first, then the test, val and train sections
    open, end-of-run metrics as bar charts; every other section (``diag/L0``, the parent's
    summaries, ...) listed folded.

    Every metric's section is listed: for a metric in no listed section the UI would add one,
    open, e.g. the 36 ``diag/*`` charts before ``test/acc``.
    """
    keys = sorted(set(metric_keys) | {primary_metric})
    names = sorted(
        {section_of(k) for k in keys},
        key=lambda s: (
            s not in OPEN_SECTIONS,
            OPEN_SECTIONS.index(s) if s in OPEN_SECTIONS else 0,
            s,
        ),
    )
    section_ids = {name: str(uuid.uuid4()) for name in names}
    # Horizontal bars: about 22 px a run, so a 100-run sweep is readable too.
    bar_height = min(max(360, 22 * n_runs + 140), 2400)
    sections = []
    for name in names:
        section = {
            "uuid": section_ids[name],
            "name": name,
            "display": name in OPEN_SECTIONS,
            "isReordered": False,
            "deleted": False,
            "isGenerated": False,
        }
        if name == section_of(primary_metric) or name == "test":
            section.update(columns=2, cardHeight=bar_height)
        sections.append(section)
    # The UI keeps "Model metrics" and "System metrics" last; both stay collapsed.
    for name in ("Model metrics", "System metrics"):
        if name not in section_ids:
            sections.append(
                {
                    "uuid": str(uuid.uuid4()),
                    "name": name,
                    "display": False,
                    "isReordered": False,
                    "deleted": False,
                    "isGenerated": False,
                }
            )
    first = [primary_metric, TEST_LOSS, VAL_ACC, VAL_LOSS, TRAIN_LOSS]
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
        card: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "metricKey": key,
            "metricSectionId": section_ids[section_of(key)],
            "deleted": False,
            "isGenerated": False,
            "runsCountToCompare": 10,
        }
        if key == primary_metric or key.startswith(END_OF_RUN_PREFIXES):
            card["type"] = "BAR"
        else:
            card.update(
                type="LINE",
                selectedMetricKeys=[key],
                lineSmoothness=0,
                xAxisKey="step",
                xAxisScaleType="linear",
                scaleType="linear",
                selectedXAxisMetricKey="",
                yAxisKey="metric",
                yAxisExpressions=[],
                ignoreOutliers=False,
                useGlobalXaxisKey=True,
                useGlobalLineSmoothing=True,
            )
        charts.append(card)
    return charts, sections


def view_state(
    metric_keys: Iterable[str],
    swept_keys: Sequence[str],
    n_runs: int,
    search_filter: str = "",
    primary_metric: str = PRIMARY_METRIC,
) -> dict[str, Any]:
    """The runs page's state: search facets and UI state, as the UI's "Save view" stores them.

    Rows grouped by init config (mean over seeds), chosen columns wide enough for a full value,
    every run charted (``SHOW_ALL``; the UI's default charts the first 10 only), each run its own
    bar while the table is grouped (``useGroupedValuesInCharts: false``).
    """
    columns = view_columns(swept_keys, primary_metric)
    charts, sections = chart_layout(metric_keys, n_runs, primary_metric)
    return {
        # search facets
        "searchFilter": search_filter,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        # UI state (widths apply only with a column order)
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {c: 190 for c in columns if c.startswith("metrics.")},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": sections,
        "isAccordionReordered": True,
        "viewMaximized": False,
        "runListHidden": False,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": group_by_keys(swept_keys)},
        "groupsExpanded": {},
        "useGroupedValuesInCharts": False,
        "hideEmptyCharts": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
        "chartsSearchFilter": "",
    }


def encode_view(name: str, state: Mapping[str, Any], now_ms: int | None = None) -> str:
    """The tag value of a saved view: the UI's envelope around its compressed state."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    packed = "deflate;" + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    value = json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": packed})
    if len(value) > MAX_TAG_VALUE:
        raise ValueError(
            f"saved view {name!r}: {len(value)} characters, more than MLflow's "
            f"{MAX_TAG_VALUE} for a tag value"
        )
    return value


def decode_view(value: str) -> tuple[str, dict[str, Any]]:
    """(name, state) of a saved view's tag value (compressed or plain state)."""
    envelope = json.loads(value)
    state = envelope["state"]
    if state.startswith("deflate;"):
        state = zlib.decompress(base64.b64decode(state.removeprefix("deflate;"))).decode()
    return envelope["name"], json.loads(state)


def write_view(
    client: MlflowClient, experiment_id: str, key: str, name: str, state: Mapping[str, Any]
) -> None:
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
        page = client.search_runs(
            [experiment_id],
            f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
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
        if (
            "init" in keys
            and key.startswith("init.")
            and all(len(v) == 1 for v in by_init.values())
        ):
            continue  # e.g. init.scheme, init.mode: one value per init config
        if key in ("init_seed", "data_seed") and values == [
            r.data.params.get("seed") for r in runs
        ]:
            continue  # ${seed}, as by default: the seed column says it
        keys.append(key)
    return keys


def write_sweep_view(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    sweep_id: str,
    swept_keys: Sequence[str] | None = None,
    primary_metric: str = PRIMARY_METRIC,
) -> str:
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
    state = view_state(
        keys, swept, len(runs), f"tags.{SWEEP_ID_TAG} = '{sweep_id}'", primary_metric
    )
    write_view(client, experiment_id, key, f"sweep {sweep_id}: {varied}", state)
    client.set_tag(parent_run_id, VIEW_KEY_TAG, key)
    return key
