"""Read a sweep back from MLflow into one pandas row per job run.

Why a table of our own: every statistic downstream needs the same few things per run (its group,
its seeds, its outcome, the metric), and the group is not a tag: it is every param that varies in
the selection except the seed keys (``seed``, ``init_seed``, ``data_seed``), so two runs that
differ only in their seeds land in one group, and anything else that differs splits them. Runs
that failed or diverged stay in the table (``usable`` is False) so that every count is shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from initsweep.naming import SEED_KEYS, hashed_target
from initsweep.report.select import ReportInputError, Selection, fetch_runs
from initsweep.vocab import DIAGNOSIS_TAG, OUTCOME_TAG, PRIMARY_METRIC, Outcome

MISSING = "∅"  # a param a run does not have (e.g. ``init.mode`` on a ``zeros`` run)
# Logged values that carry the test-set size, in the order they are looked for.
N_TEST_KEYS = ("n_test", "test/n", "data.n_test")
# Params that never decide a result: excluded from the group key even when they vary.
NON_RESULT_PARAMS = ("experiment_name", "job.progress_bar")  # not result-deciding
# A run without an outcome tag (made before outcomes were tagged, or left RUNNING): its status
# says it; "killed" is the report's own word (no job writes it).
STATUS_OUTCOME = {
    "FINISHED": Outcome.OK.value,
    "FAILED": Outcome.FAILED.value,
    "KILLED": "killed",
    "RUNNING": Outcome.RUNNING.value,
    "SCHEDULED": Outcome.RUNNING.value,
}


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
    names = sorted(
        {k for r in runs for k in r.data.metrics},
        key=lambda k: (
            not k.startswith("test/"),
            not k.startswith("val/"),
            k.startswith("diag/"),
            k,
        ),
    )
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


def label_keys_for(
    params: pd.DataFrame, keys: Sequence[str], priority: Sequence[str] = ()
) -> list[str]:
    """The fewest of ``keys`` (greedy, in priority order) that still tell all groups apart.

    A sweep over ``init=he,zeros`` varies ``init.scheme`` but also ``init.mode`` (he has it,
    zeros does not); the label only needs ``init.scheme``.
    """
    if not keys:
        return []

    def distinct(subset: list[str]) -> int:
        return len(params.drop_duplicates(subset=subset)) if subset else 1

    target = distinct(list(keys))
    ordered = sorted(
        keys,
        key=lambda k: (
            k not in priority,
            priority.index(k) if k in priority else 0,
            -params[k].nunique(),
            k,
        ),
    )
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


def build_table(
    runs: Sequence[Run], metric: str, n_test: int | None = None, selection: Selection | None = None
) -> RunTable:
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
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "outcome": outcome,
            "value": float(value),
            "start_time": run.info.start_time or 0,
            **{k: _seed_value(run, k) for k in SEED_KEYS},
            "n_test": _n_test(run),
            "diagnosis": run.data.tags.get(DIAGNOSIS_TAG),  # diagnostics.findings: codes or None
        }
        # a built-in model or data module reads as one value across package versions, as the
        # config hash reads it: a sweep resumed after an upgrade stays one group
        row.update(
            {
                f"params.{k}": hashed_target(v) if k.endswith("._target_") else v
                for k, v in run.data.params.items()
            }
        )
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
        if len(labels.drop_duplicates(subset=["init", *group_keys])) == len(
            labels.drop_duplicates(subset=group_keys)
        ):
            priority = ["init", *priority]
            group_keys_for_labels = ["init", *group_keys]
            frame["params.init"] = labels["init"]  # label column only: not a group key
        else:
            group_keys_for_labels = group_keys
    else:
        group_keys_for_labels = group_keys
    label_keys = label_keys_for(labels, group_keys_for_labels, priority)
    frame["group"] = [
        format_label(dict(zip(labels.columns, values, strict=True)), label_keys)
        for values in labels.itertuples(index=False)
    ]
    order = (
        labels[label_keys].apply(lambda r: tuple(sort_key(v) for v in r), axis=1)
        if label_keys
        else pd.Series([()] * len(frame))
    )
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
        notes.append(
            f"{duplicates} run(s) repeat a group and seeds already present: the newest "
            "is used, the older ones are counted as `duplicate`."
        )
    return RunTable(
        frame, metric, group_keys, label_keys, lower_is_better(metric), duplicates, notes
    )


def load(
    client: MlflowClient,
    selection: Selection,
    metric: str = PRIMARY_METRIC,
    n_test: int | None = None,
) -> RunTable:
    """Fetch the selection's job runs and build the table; checks that the metric exists."""
    runs = fetch_runs(client, selection)
    if not runs:
        raise ReportInputError(
            "--sweep" if selection.sweep_id else "--filter",
            f"no job runs match {selection.describe()}",
        )
    if not any(metric in r.data.metrics for r in runs):
        raise ReportInputError(
            "--metric",
            f"{metric!r}: not logged by these runs; choose from {available_metrics(runs)}",
        )
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
                raise ReportInputError(
                    flag,
                    f"{key!r}: takes {values} value(s) in the usable "
                    f"runs, needs 2 or more; varying: "
                    f"{', '.join(table.group_keys) or '(none)'}",
                )
            return candidate
    raise ReportInputError(
        flag,
        f"{key!r}: not a param that varies (seed keys are not tuned); "
        f"choose from {', '.join(table.group_keys) or '(none)'}",
    )
