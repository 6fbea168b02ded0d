"""Which runs a report reads: the command line's selection (experiment, sweep id or parent run,
``--latest``, a filter) resolved against the store, and the selection's job runs fetched.

A bad selection is a ``ReportInputError`` naming the flag (one line, exit code 2 in the CLI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from initsweep.tracking.redaction import redact
from initsweep.tracking.store import StoreCheckFailed, check_store, open_client, tracking_uri
from initsweep.vocab import PARENT_TAG, ROLE_TAG, SWEEP_ID_TAG, SWEEP_ROLE

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_EXPERIMENT = "initsweep"


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


def _search(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
    max_results: int | None = None,
) -> list[Run]:
    """All runs matching, following pagination (``search_runs`` returns pages)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            max_results=min(max_results or 1000, 1000),
            order_by=order_by,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token or (max_results and len(runs) >= max_results):
            return runs[:max_results] if max_results else runs


def _quote(value: str) -> str:
    return "'" + value.replace("'", "") + "'"


def _experiment_ids(client: MlflowClient, experiment: str | None) -> dict[str, str]:
    """``{id: name}`` of the named experiment, or of every active one when ``None``."""
    if experiment is None:
        return {e.experiment_id: e.name for e in client.search_experiments()}
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ReportInputError(
            "--experiment",
            f"{experiment!r}: no such experiment; choose from "
            f"{', '.join(names) or '(none: the store is empty)'}",
        )
    return {exp.experiment_id: exp.name}


def _recent_sweeps(client: MlflowClient, ids: list[str]) -> str:
    recent = (
        _search(
            client,
            ids,
            f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        if ids
        else []
    )
    return ", ".join(r.data.tags.get(SWEEP_ID_TAG, r.info.run_id) for r in recent) or "(none)"


def select(
    client: MlflowClient,
    experiment: str | None = None,
    sweep: str | None = None,
    latest: bool = False,
    filter_string: str | None = None,
) -> Selection:
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
        found = (
            _search(
                client,
                ids,
                f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if ids
            else []
        )
        if not found:
            raise ReportInputError(
                "--latest",
                f"no sweep in {where}; run `python train.py -m "
                "...` first, or select runs with --experiment / --filter",
            )
        parent = found[0]
    elif sweep:
        parent = _find_parent(client, ids, sweep)
        if parent is None:
            jobs = (
                _search(client, ids, f"tags.{SWEEP_ID_TAG} = {_quote(sweep)}", max_results=1)
                if ids
                else []
            )
            if not jobs:
                raise ReportInputError(
                    "--sweep",
                    f"{sweep!r}: no sweep id or parent run id in "
                    f"{where}; recent sweeps: {_recent_sweeps(client, ids)}",
                )
            sweep_id, exp_id = sweep, jobs[0].info.experiment_id
    if parent is not None:
        exp_id = parent.info.experiment_id
    elif sweep_id is None:
        exp_id = ids[0]
    name = experiments.get(exp_id) or client.get_experiment(exp_id).name
    selection = Selection(
        exp_id, name, client.tracking_uri, sweep_id=sweep_id, filter_string=filter_string or None
    )
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
    found = _search(
        client,
        experiment_ids,
        f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}' and tags.{SWEEP_ID_TAG} = {_quote(sweep)}",
        max_results=1,
    )
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
