"""Read a sweep back from MLflow into one pandas row per job run.

Why a table of our own: every statistic downstream needs the same few things per run (its group,
its seeds, its outcome, the metric), and the group is not a tag: it is every param that varies in
the selection except the seed keys (``seed``, ``init_seed``, ``data_seed``), so two runs that
differ only in their seeds land in one group, and anything else that differs splits them. Runs
that failed or diverged stay in the table (``usable`` is False) so that every count is shown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from initsweep.naming import SEED_KEYS, hashed_target
from initsweep.tracking.redaction import redact
from initsweep.tracking.store import StoreCheckFailed, check_store, open_client, tracking_uri
from initsweep.vocab import (
    DIAGNOSIS_TAG,
    OUTCOME_TAG,
    PARENT_TAG,
    PRIMARY_METRIC,
    ROLE_TAG,
    SWEEP_ID_TAG,
    SWEEP_ROLE,
    Outcome,
)

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MISSING = "∅"  # a param a run does not have (e.g. ``init.mode`` on a ``zeros`` run)
# Logged values that carry the test-set size, in the order they are looked for.
N_TEST_KEYS = ("n_test", "test/n", "data.n_test")
# Params that never decide a result: excluded from the group key even when they vary.
NON_RESULT_PARAMS = ("experiment_name", "job.progress_bar")  # not result-deciding
# A run without an outcome tag (made before outcomes were tagged, or left RUNNING): its status
# says it; "killed" is the report's own word (no job writes it).
STATUS_OUTCOME = {"FINISHED": Outcome.OK.value, "FAILED": Outcome.FAILED.value, "KILLED": "killed",
                  "RUNNING": Outcome.RUNNING.value, "SCHEDULED": Outcome.RUNNING.value}


class ReportInputError(ValueError):
    """Bad report input; ``flag`` names the command-line option, ``str(err)`` says what is wrong.

    The CLI prints ``error: <flag> <message>`` on one line and exits 2.
    """

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag


@dataclass
class Selection:
    """Which runs a report covers, and where its artifacts go (``parent_run_id``)."""

    experiment_id: str
    experiment_name: str
    tracking_uri: str
    sweep_id: str | None = None
    parent_run_id: str | None = None
    filter_string: str | None = None
    sweep_dir: str | None = None
    overrides: str | None = None
    parent_tags: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short name for titles and default folders: the sweep id, else the experiment."""
        return self.sweep_id or self.parent_run_id or self.experiment_name

    def describe(self) -> str:
        """One line for the report header."""
        parts = [f"experiment `{self.experiment_name}`"]
        if self.sweep_id:
            parts.append(f"sweep `{self.sweep_id}`")
        if self.parent_run_id:
            parts.append(f"parent run `{self.parent_run_id}`")
        if self.filter_string:
            parts.append(f"filter `{self.filter_string}`")
        return ", ".join(parts) + f" in `{redact(self.tracking_uri)}`"


@dataclass
class RunTable:
    """The loaded runs and how they group.

    ``frame`` has one row per job run: ``run_id``, ``run_name``, ``status``, ``outcome``,
    ``usable``, ``value`` (the chosen metric), the seed keys as ints, ``n_test``, ``diagnosis``
    (the run's diagnosis codes, None without one), ``group`` (a short readable label),
    ``start_time``, then ``params.*``, ``metrics.*`` and ``tags.*`` columns.
    ``group_keys`` are the params that define the groups; ``label_keys`` the fewest of them that
    still tell every group apart (they make the labels).
    """

    frame: pd.DataFrame
    metric: str
    group_keys: list[str]
    label_keys: list[str]
    lower_is_better: bool = False
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> pd.DataFrame:
        """Rows that count in the statistics: outcome ok and a finite metric."""
        return self.frame[self.frame["usable"]]

    def groups(self) -> list[str]:
        """Group labels in a stable, readable order (by their label values)."""
        order = self.frame.drop_duplicates("group").sort_values("_group_order")
        return order["group"].tolist()


# ------------------------------------------------------------------------------- selecting runs
def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the repo-local store, as jobs decide (``store``)."""
    return tracking_uri()


def open_existing_store(uri: str) -> MlflowClient:
    """A client for an existing store at ``uri`` (``store.open_client`` after the checks): a
    missing sqlite file, an unsupported scheme or a store that does not answer is an input error
    (the report never creates a store; ``store.check_store``)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ReportInputError("--tracking-uri", f"{redact(uri)}: no MLflow store at {path}")
    try:
        check_store(uri, "")
    except StoreCheckFailed as err:
        raise ReportInputError("--tracking-uri", str(err)) from None
    return open_client(uri)


def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str = "",
            order_by: list[str] | None = None, max_results: int | None = None) -> list[Run]:
    """All runs matching, following pagination (``search_runs`` returns pages)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  max_results=min(max_results or 1000, 1000),
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or (max_results and len(runs) >= max_results):
            return runs[:max_results] if max_results else runs


def _quote(value: str) -> str:
    return "'" + value.replace("'", "") + "'"


DEFAULT_EXPERIMENT = "initsweep"


def _experiment_ids(client: MlflowClient, experiment: str | None) -> dict[str, str]:
    """``{id: name}`` of the named experiment, or of every active one when ``None``."""
    if experiment is None:
        return {e.experiment_id: e.name for e in client.search_experiments()}
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ReportInputError("--experiment", f"{experiment!r}: no such experiment; choose from "
                               f"{', '.join(names) or '(none: the store is empty)'}")
    return {exp.experiment_id: exp.name}


def _recent_sweeps(client: MlflowClient, ids: list[str]) -> str:
    recent = _search(client, ids, f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
                     order_by=["attributes.start_time DESC"], max_results=5) if ids else []
    return ", ".join(r.data.tags.get(SWEEP_ID_TAG, r.info.run_id) for r in recent) or "(none)"


def select(client: MlflowClient, experiment: str | None = None, sweep: str | None = None,
           latest: bool = False, filter_string: str | None = None) -> Selection:
    """Resolve the command line's selection to an experiment and, when known, a parent run.

    ``sweep`` is a sweep id (tag ``sweep_id``) or a parent run id; ``latest`` picks the newest
    sweep parent. Both look in every experiment unless ``experiment`` is given (presets log to
    their own experiment, e.g. ``tuning_trap``). With neither, every job run of ``experiment``
    (default ``initsweep``), narrowed by ``filter_string``, is selected and no parent is known.
    """
    if not sweep and not latest:
        experiment = experiment or DEFAULT_EXPERIMENT
    experiments = _experiment_ids(client, experiment)
    ids = list(experiments)
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    parent: Run | None = None
    sweep_id: str | None = None
    if latest:
        found = _search(client, ids, f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
                        order_by=["attributes.start_time DESC"], max_results=1) if ids else []
        if not found:
            raise ReportInputError("--latest", f"no sweep in {where}; run `python train.py -m "
                                   "...` first, or select runs with --experiment / --filter")
        parent = found[0]
    elif sweep:
        parent = _find_parent(client, ids, sweep)
        if parent is None:
            jobs = _search(client, ids, f"tags.{SWEEP_ID_TAG} = {_quote(sweep)}", max_results=1) \
                if ids else []
            if not jobs:
                raise ReportInputError("--sweep", f"{sweep!r}: no sweep id or parent run id in "
                                       f"{where}; recent sweeps: {_recent_sweeps(client, ids)}")
            sweep_id, exp_id = sweep, jobs[0].info.experiment_id
    if parent is not None:
        exp_id = parent.info.experiment_id
    elif sweep_id is None:
        exp_id = ids[0]
    name = experiments.get(exp_id) or client.get_experiment(exp_id).name
    selection = Selection(exp_id, name, client.tracking_uri, sweep_id=sweep_id,
                          filter_string=filter_string or None)
    if parent is not None:
        tags = parent.data.tags
        selection.parent_run_id = parent.info.run_id
        selection.sweep_id = tags.get(SWEEP_ID_TAG)
        selection.sweep_dir = tags.get("sweep_dir")
        selection.overrides = tags.get("overrides")
        selection.parent_tags = dict(tags)
    return selection


def _find_parent(client: MlflowClient, experiment_ids: list[str], sweep: str) -> Run | None:
    """The sweep's parent run, from a run id or a ``sweep_id`` tag."""
    if RUN_ID.match(sweep):
        try:
            run = client.get_run(sweep)
        except MlflowException:
            run = None
        if run is not None and run.info.experiment_id in experiment_ids:
            return run
    if not experiment_ids:
        return None
    found = _search(client, experiment_ids,
                    f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}' and tags.{SWEEP_ID_TAG} = {_quote(sweep)}",
                    max_results=1)
    return found[0] if found else None


def fetch_runs(client: MlflowClient, selection: Selection) -> list[Run]:
    """The selection's job runs (never the sweep parents)."""
    clauses = []
    if selection.sweep_id:
        clauses.append(f"tags.{SWEEP_ID_TAG} = {_quote(selection.sweep_id)}")
    elif selection.parent_run_id:
        clauses.append(f"tags.`{PARENT_TAG}` = {_quote(selection.parent_run_id)}")
    if selection.filter_string:
        clauses.append(selection.filter_string)
    try:
        runs = _search(client, [selection.experiment_id], " and ".join(clauses))
    except MlflowException as err:
        message = str(err.message if hasattr(err, "message") else err).splitlines()[0]
        raise ReportInputError("--filter", f"{selection.filter_string!r}: {message}") from None
    return [r for r in runs if r.data.tags.get(ROLE_TAG) != SWEEP_ROLE]


# ------------------------------------------------------------------------------------ the table
def _seed_value(run: Run, key: str) -> int | None:
    raw = run.data.params.get(key, run.data.tags.get(key))
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _n_test(run: Run) -> float:
    for key in N_TEST_KEYS:
        for source in (run.data.metrics, run.data.tags, run.data.params):
            if key in source:
                try:
                    return float(source[key])
                except (TypeError, ValueError):
                    continue
    return math.nan


def outcome_of(run: Run) -> str:
    """``outcome`` tag (``ok``/``failed``/``diverged``/...), else derived from the run status."""
    outcome = run.data.tags.get(OUTCOME_TAG)
    if outcome and outcome != Outcome.RUNNING:
        return outcome
    return STATUS_OUTCOME.get(run.info.status, run.info.status.lower())


def lower_is_better(metric: str) -> bool:
    """Losses and error rates are minimised; everything else (accuracy) is maximised."""
    name = metric.lower()
    return any(word in name for word in ("loss", "err", "nll", "perplexity", "time"))


def available_metrics(runs: Iterable[Run], limit: int = 10) -> str:
    """Metric names the runs logged, for error messages: ``test/`` and ``val/`` first, then the
    rest, cut at ``limit`` names (the per-layer ``diag/*`` metrics number in the dozens)."""
    names = sorted({k for r in runs for k in r.data.metrics},
                   key=lambda k: (not k.startswith("test/"), not k.startswith("val/"),
                                  k.startswith("diag/"), k))
    shown = ", ".join(names[:limit]) or "(no metrics)"
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def sort_key(value: str) -> tuple:
    """Numbers sort numerically, before strings; ``∅`` last."""
    if value == MISSING:
        return (2, 0.0, value)
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def varying_keys(params: pd.DataFrame) -> list[str]:
    """Param columns that take more than one value (missing counts as a value)."""
    return [c for c in params.columns if params[c].nunique(dropna=False) > 1]


def label_keys_for(params: pd.DataFrame, keys: Sequence[str],
                   priority: Sequence[str] = ()) -> list[str]:
    """The fewest of ``keys`` (greedy, in priority order) that still tell all groups apart.

    A sweep over ``init=he,zeros`` varies ``init.scheme`` but also ``init.mode`` (he has it,
    zeros does not); the label only needs ``init.scheme``.
    """
    if not keys:
        return []
    def distinct(subset: list[str]) -> int:
        return len(params.drop_duplicates(subset=subset)) if subset else 1

    target = distinct(list(keys))
    ordered = sorted(keys, key=lambda k: (k not in priority,
                                          priority.index(k) if k in priority else 0,
                                          -params[k].nunique(), k))
    chosen: list[str] = []
    for key in ordered:
        if distinct(chosen) == target:
            break
        if distinct([*chosen, key]) > distinct(chosen):
            chosen.append(key)
    return chosen


def format_label(values: dict[str, str], keys: Sequence[str]) -> str:
    """``he`` for the scheme alone, ``he optim.lr=0.1`` with more keys, ``all`` with none."""
    if not keys:
        return "all"
    parts = []
    for key in keys:
        value = values[key]
        parts.append(value if key in ("init", "init.scheme") else f"{key}={value}")
    return " ".join(parts)


def _override_keys(overrides: str | None) -> list[str]:
    """Keys named on the sweep's command line, for label priority (``init`` -> ``init.scheme``)."""
    keys = []
    for token in (overrides or "").split():
        key = token.split("=", 1)[0].lstrip("+~")
        keys.append("init.scheme" if key == "init" else key)
    return keys


def build_table(runs: Sequence[Run], metric: str, n_test: int | None = None,
                selection: Selection | None = None) -> RunTable:
    """One row per run, grouped by every varying param except the seed keys.

    Duplicates (the same group and seeds twice, e.g. a sweep re-run in the same experiment)
    would count one seed twice: the newest usable run is kept and the others are marked
    ``duplicate`` (not usable) and counted.
    """
    rows = []
    for run in runs:
        value = run.data.metrics.get(metric, math.nan)
        outcome = outcome_of(run)
        row = {
            "run_id": run.info.run_id, "run_name": run.info.run_name,
            "status": run.info.status, "outcome": outcome,
            "value": float(value), "start_time": run.info.start_time or 0,
            **{k: _seed_value(run, k) for k in SEED_KEYS},
            "n_test": _n_test(run),
            "diagnosis": run.data.tags.get(DIAGNOSIS_TAG),  # diagnostics.findings: codes or None
        }
        # a built-in model or data module reads as one value across package versions, as the
        # config hash reads it: a sweep resumed after an upgrade stays one group
        row.update({f"params.{k}": hashed_target(v) if k.endswith("._target_") else v
                    for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return RunTable(frame, metric, [], [], lower_is_better(metric))
    if n_test is not None:
        frame["n_test"] = frame["n_test"].fillna(float(n_test))
    finite = frame["value"].map(math.isfinite)
    frame.loc[(frame["outcome"] == Outcome.OK) & ~finite, "outcome"] = "no_metric"
    frame["usable"] = frame["outcome"] == Outcome.OK

    param_cols = [c for c in frame.columns if c.startswith("params.")]
    params = frame[param_cols].fillna(MISSING).astype(str)
    params.columns = [c.removeprefix("params.") for c in param_cols]
    for col in params.columns:
        frame[f"params.{col}"] = params[col]
    excluded = set(SEED_KEYS) | set(NON_RESULT_PARAMS)
    group_keys = [k for k in varying_keys(params) if k not in excluded]
    priority = _override_keys(selection.overrides if selection else None)
    priority += ["init.scheme", "optim.name", "optim.lr"]
    # The `init` tag (the config chosen, e.g. s1/uniform_0_1) names a group better than its
    # params do; use it for labels when it never splits a group.
    labels = params.copy()
    if "tags.init" in frame and group_keys:
        labels["init"] = frame["tags.init"].fillna(MISSING).astype(str)
        if len(labels.drop_duplicates(subset=["init", *group_keys])) == \
                len(labels.drop_duplicates(subset=group_keys)):
            priority = ["init", *priority]
            group_keys_for_labels = ["init", *group_keys]
            frame["params.init"] = labels["init"]  # label column only: not a group key
        else:
            group_keys_for_labels = group_keys
    else:
        group_keys_for_labels = group_keys
    label_keys = label_keys_for(labels, group_keys_for_labels, priority)
    frame["group"] = [format_label(dict(zip(labels.columns, values, strict=True)), label_keys)
                      for values in labels.itertuples(index=False)]
    order = labels[label_keys].apply(lambda r: tuple(sort_key(v) for v in r), axis=1) \
        if label_keys else pd.Series([()] * len(frame))
    ranked = {g: i for i, g in enumerate(sorted(set(order)))}
    frame["_group_order"] = [ranked[o] for o in order]

    duplicates = 0
    key = ["group", *SEED_KEYS]
    usable = frame[frame["usable"]].sort_values("start_time", ascending=False)
    dup_ids = usable[usable.duplicated(subset=key, keep="first")]["run_id"]
    if len(dup_ids):
        duplicates = len(dup_ids)
        frame.loc[frame["run_id"].isin(dup_ids), ["usable", "outcome"]] = [False, "duplicate"]
    frame = frame.sort_values(["_group_order", *SEED_KEYS, "start_time"]).reset_index(drop=True)
    notes = []
    if duplicates:
        notes.append(f"{duplicates} run(s) repeat a group and seeds already present: the newest "
                     "is used, the older ones are counted as `duplicate`.")
    return RunTable(frame, metric, group_keys, label_keys, lower_is_better(metric), duplicates,
                    notes)


def load(client: MlflowClient, selection: Selection, metric: str = PRIMARY_METRIC,
         n_test: int | None = None) -> RunTable:
    """Fetch the selection's job runs and build the table; checks that the metric exists."""
    runs = fetch_runs(client, selection)
    if not runs:
        raise ReportInputError("--sweep" if selection.sweep_id else "--filter",
                               f"no job runs match {selection.describe()}")
    if not any(metric in r.data.metrics for r in runs):
        raise ReportInputError("--metric", f"{metric!r}: not logged by these runs; choose from "
                               f"{available_metrics(runs)}")
    return build_table(runs, metric, n_test, selection)


def resolve_param(table: RunTable, key: str, flag: str = "--tune") -> str:
    """A param name the runs have (``init`` -> ``init.scheme``, ``optim`` -> ``optim.name``)."""
    columns = [c.removeprefix("params.") for c in table.frame.columns if c.startswith("params.")]
    for candidate in (key, f"{key}.scheme", f"{key}.name"):
        if candidate in columns:
            if candidate in SEED_KEYS:
                break
            values = table.usable[f"params.{candidate}"].nunique()
            if values < 2:
                raise ReportInputError(flag, f"{key!r}: takes {values} value(s) in the usable "
                                       f"runs, needs 2 or more; varying: "
                                       f"{', '.join(table.group_keys) or '(none)'}")
            return candidate
    raise ReportInputError(flag, f"{key!r}: not a param that varies (seed keys are not tuned); "
                           f"choose from {', '.join(table.group_keys) or '(none)'}")
