"""The MLflow store: where it is, the experiment, and the life of a run (create, end).

Torch-free: the sweep callback and the report use it without importing Lightning.

Conventions:
- store: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlruns/mlflow.db``
  with artifacts under ``<cwd>/mlruns/artifacts``;
- the store and experiment are created once by the Hydra callback before any job starts
  (several processes creating a fresh sqlite store at once crash);
- a multirun gets a parent run; each job's run is its child (``mlflow.parentRunId``);
- every tag and param passes through redaction before it is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient

from initsweep.conventions import PARENT_RUN_ENV
from initsweep.redaction import is_secret_key, redact

# MLflow settings for every client this project makes: no telemetry threads (there is no
# network), and no "View run at ..." line breaking the one-line-per-job console. Both are read
# when a client is used, so they are set where the first client is made, not on import.
MLFLOW_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true",
                   "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def tracking_uri(tracking_cfg: Mapping[str, Any] | None = None) -> str:
    """The store URI: config, then $MLFLOW_TRACKING_URI, then the repo-local sqlite store."""
    uri = (tracking_cfg or {}).get("uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return str(uri)
    return f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"


def artifact_location(tracking_cfg: Mapping[str, Any] | None, uri: str,
                      experiment: str) -> str | None:
    """Where a new experiment keeps artifacts; None lets a remote server decide."""
    configured = (tracking_cfg or {}).get("artifact_location")
    if configured:
        return str(configured)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts" / experiment).resolve().as_uri()
    return None


def ensure_store(uri: str) -> None:
    """Create the sqlite file's folder; the client creates the schema on first use."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def open_client(uri: str) -> MlflowClient:
    """A client for ``uri``, with this project's MLflow settings (``MLFLOW_DEFAULTS``)."""
    for key, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return MlflowClient(tracking_uri=uri)


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
    client = open_client(uri)
    name = cfg.get("experiment_name", "initsweep")
    location = artifact_location(cfg.get("tracking"), uri, name)
    return client, ensure_experiment(client, name, location)


def start_run(client: MlflowClient, experiment_id: str, name: str, tags: Mapping[str, Any],
              params: Mapping[str, str]) -> str:
    """Create a run with its tags and params (a child of the sweep's run); returns its id."""
    parent = os.environ.get(PARENT_RUN_ENV)
    # Every tag and param passes through redaction: the last line of defence against a
    # credential that reached the config (a URI with user:password@, a ``*_token`` key).
    all_tags = {k: "***" if is_secret_key(k) else redact(str(v)) for k, v in tags.items()}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    items = [Param(k, "***" if is_secret_key(k) else redact(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=items[start:start + 100])
    return run.info.run_id


def end_run(client: MlflowClient, run_id: str, outcome: str) -> None:
    """Tag the outcome and close the run: FINISHED unless it failed."""
    client.set_tag(run_id, "outcome", outcome)
    status = RunStatus.FAILED if outcome == "failed" else RunStatus.FINISHED
    client.set_terminated(run_id, RunStatus.to_string(status))
