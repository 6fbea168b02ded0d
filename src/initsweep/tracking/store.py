"""The MLflow store: where it is, the experiment, and the life of a run (create, end).

Torch-free: the sweep callback and the report use it without importing Lightning.

Conventions:
- store: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlruns/mlflow.db``
  with artifacts under ``<cwd>/mlruns/artifacts``;
- the store and experiment are created once by the Hydra callback before any job starts
  (several processes creating a fresh sqlite store at once crash);
- a multirun gets a parent run; each job's run is its child (``mlflow.parentRunId``);
- every tag and param passes through redaction before it is written;
- every client retries transient failures within a budget (``initsweep.tracking.retries``), and a
  launch checks the store first (``check_store``): an unreachable or unsupported store is one
  line and exit code 2 before any run exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _tracking_store_registry
from mlflow.utils.uri import get_uri_scheme

from initsweep.errors import ConfigError
from initsweep.tracking.ownership import heartbeat, owner_tags
from initsweep.tracking.redaction import is_secret_key, redact
from initsweep.tracking.retries import RetryingClient, RetryPolicy, reason
from initsweep.tracking.sqlite_template import create_from_template
from initsweep.vocab import OUTCOME_TAG, PARENT_RUN_ENV, PARENT_TAG, Outcome

# MLflow settings for every client this project makes: no telemetry threads (there is no
# network), no "View run at ..." line breaking the one-line-per-job console, and no retries of
# MLflow's own (up to ~4 min per HTTP call): ``initsweep.tracking.retries`` is the one policy. All
# are read when a client is used, so they are set where the first client is made, not on import.
MLFLOW_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
}
# How long the launch-time check waits for a store to answer (connect + first answer).
CHECK_TIMEOUT_S = 5.0
# Schemes that name no tracking store (MLflow's model registry only).
NOT_TRACKING_SCHEMES = ("", "uc", "databricks-uc")


class StoreCheckFailed(ConfigError):
    """The launch-time check (``check_store``) failed: the store a launch would log to cannot be
    used, a user's input to fix before any run exists (one line, exit code 2). Not
    ``retries.StoreUnavailable``: a store lost while runs exist, after the retry budget (exit 1)."""


def tracking_uri(tracking_cfg: Mapping[str, Any] | None = None) -> str:
    """The store URI: config, then $MLFLOW_TRACKING_URI, then the repo-local sqlite store."""
    uri = (tracking_cfg or {}).get("uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return str(uri)
    return f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"


def uri_source(tracking_cfg: Mapping[str, Any] | None = None) -> str:
    """Where ``tracking_uri`` took the URI from, as a user would set it (for error lines)."""
    if (tracking_cfg or {}).get("uri"):
        return "tracking.uri"
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking store"


def artifact_location(
    tracking_cfg: Mapping[str, Any] | None, uri: str, experiment: str
) -> str | None:
    """Where a new experiment keeps artifacts; None lets a remote server decide."""
    configured = (tracking_cfg or {}).get("artifact_location")
    if configured:
        return str(configured)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts" / experiment).resolve().as_uri()
    return None


def ensure_store(uri: str) -> None:
    """Create the sqlite file's folder, and the file from the migrated template
    (``tracking.sqlite_template``) when it is new; other stores create their schema on first use."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        if "?" not in db.name:  # a URI with options: left to MLflow
            create_from_template(db)


def open_client(uri: str, policy: RetryPolicy | None = None) -> RetryingClient:
    """A client for ``uri`` with this project's MLflow settings (``MLFLOW_DEFAULTS``) whose calls
    are retried by ``policy`` (``initsweep.tracking.retries``)."""
    for key, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return RetryingClient(uri, policy)


def supported_schemes() -> list[str]:
    """The URI schemes MLflow has a tracking store for here (plugins included)."""
    return sorted(set(_tracking_store_registry._registry) - set(NOT_TRACKING_SCHEMES))


def check_store(uri: str, source: str = "tracking.uri") -> None:
    """Raise ``StoreCheckFailed`` (one line: ``source=URI``, redacted, and what is wrong) unless
    the store at ``uri`` answers within ``CHECK_TIMEOUT_S``.

    Made once by whoever launches (the sweep callback, ``initsweep report``) before any run is
    created, so a wrong URI or a server that is not running fails in seconds, not after MLflow's
    retries. What is checked: the scheme has a store; a server answers HTTP (any answer: auth or
    a proxy's 404 are the client's business); a database accepts a connection; a sqlite file's
    folder can be made.
    """
    where = f"{source}={redact(uri)}" if source else redact(uri)
    scheme = get_uri_scheme(uri) if uri not in ("databricks", "databricks-uc", "uc") else uri
    if scheme in NOT_TRACKING_SCHEMES or scheme not in supported_schemes():
        raise StoreCheckFailed(
            f"{where}: unsupported scheme {scheme!r}; supported: {', '.join(supported_schemes())}"
        )
    try:
        if scheme in ("http", "https"):
            _check_server(uri)
        elif scheme == "sqlite":
            ensure_store(uri)
        elif scheme in ("postgresql", "mysql", "mssql"):
            _check_database(uri, scheme)
        elif scheme == "file":
            MlflowClient(tracking_uri=uri)  # MLflow 3 refuses a file store unless told to allow it
    except StoreCheckFailed:
        raise
    except Exception as err:
        raise StoreCheckFailed(f"{where}: {_store_error(err)}") from None


def _check_server(uri: str) -> None:
    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=CHECK_TIMEOUT_S)
    except requests.exceptions.Timeout:
        raise TimeoutError(f"no answer in {CHECK_TIMEOUT_S:g} s") from None


def _check_database(uri: str, scheme: str) -> None:
    import sqlalchemy  # SQLAlchemy loads only for a database store (MLflow itself does not need it)

    timeout = int(CHECK_TIMEOUT_S)
    connect_args = {
        "postgresql": {"connect_timeout": timeout},
        "mysql": {"connect_timeout": timeout},
    }.get(scheme, {"timeout": timeout})
    engine = sqlalchemy.create_engine(
        uri, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool
    )
    try:
        engine.connect().close()
    finally:
        engine.dispose()


def _store_error(err: BaseException) -> str:
    """A store's error in a few words: the driver's first line, not SQLAlchemy's wrapping."""
    if isinstance(err, ModuleNotFoundError):
        return f"its driver is not installed ({err.name}; see pyproject's `cluster` extra)"
    cause = getattr(err, "orig", None) or err  # SQLAlchemy's DBAPIError wraps the driver's
    if isinstance(err, TimeoutError) and str(err):
        return str(err)
    return reason(cause)


def ensure_experiment(client: MlflowClient, name: str, location: str | None) -> str:
    """The experiment's id, creating it if needed (tolerates a concurrent creator)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it between our two calls
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_experiment(cfg: Mapping[str, Any]) -> tuple[MlflowClient, str]:
    """Client and experiment id for a composed config (store created if missing)."""
    uri = tracking_uri(cfg.get("tracking"))
    ensure_store(uri)
    client = open_client(uri, RetryPolicy.from_config(cfg.get("tracking")))
    name = cfg.get("experiment_name", "initsweep")
    location = artifact_location(cfg.get("tracking"), uri, name)
    return client, ensure_experiment(client, name, location)


def start_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    tags: Mapping[str, Any],
    params: Mapping[str, str],
) -> str:
    """Create a run with its tags and params (a child of the sweep's run); returns its id."""
    parent = os.environ.get(PARENT_RUN_ENV)
    # Every tag and param passes through redaction: the last line of defence against a
    # credential that reached the config (a URI with user:password@, a ``*_token`` key).
    all_tags = {k: "***" if is_secret_key(k) else redact(str(v)) for k, v in tags.items()}
    if parent:
        all_tags[PARENT_TAG] = parent
    all_tags.update(owner_tags())  # who owns it: the next launch adopts it if this process dies
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    items = [Param(k, "***" if is_secret_key(k) else redact(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


def end_run(client: MlflowClient, run_id: str, outcome: str) -> None:
    """Tag the outcome and close the run: FINISHED unless it failed."""
    client.set_tag(run_id, OUTCOME_TAG, outcome)
    status = RunStatus.FAILED if outcome == Outcome.FAILED else RunStatus.FINISHED
    client.set_terminated(run_id, RunStatus.to_string(status))
    heartbeat.release([run_id])
