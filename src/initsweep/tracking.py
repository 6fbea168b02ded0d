"""MLflow: the store, the experiment, one run per job, a parent run per sweep, cheap logging.

Conventions (see DESIGN.md):
- store: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlruns/mlflow.db``
  with artifacts under ``<cwd>/mlruns/artifacts``;
- the store and experiment are created once by the Hydra callback before any job starts
  (several processes creating a fresh sqlite store at once crash);
- a multirun gets a parent run; each job's run is its child (``mlflow.parentRunId``);
- metrics are buffered in memory and written with ``log_batch`` (a synchronous ``log_metric``
  to sqlite costs ~4 ms, more than a training step).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from initsweep.redaction import is_secret_key, redact

PARENT_RUN_ENV = "INITSWEEP_PARENT_RUN_ID"
SWEEP_ID_ENV = "INITSWEEP_SWEEP_ID"
SWEPT_KEYS_ENV = "INITSWEEP_SWEPT_KEYS"  # keys the multirun varies: they go into run names
SEED_KEYS = ("seed", "init_seed", "data_seed")
# Config sections that decide a job's result; what is hashed to recognise "the same config".
RESULT_KEYS = ("data", "model", "init", "optim", "trainer", *SEED_KEYS)
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


# ------------------------------------------------------------------------------- store & naming
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
    client = MlflowClient(tracking_uri=uri)
    name = cfg.get("experiment_name", "initsweep")
    location = artifact_location(cfg.get("tracking"), uri, name)
    return client, ensure_experiment(client, name, location)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists stay one value (as the CLI writes them)."""
    if isinstance(tree, Mapping):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    value = json.dumps(tree) if isinstance(tree, (list, tuple)) else str(tree)
    return {prefix[:-1]: value[:MAX_PARAM_LENGTH]}


def config_hash(cfg: Mapping[str, Any], keys: tuple[str, ...] = RESULT_KEYS) -> str:
    """Short stable hash of the result-deciding part of a resolved config."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    part = {k: container.get(k) for k in keys}
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_name(cfg: Mapping[str, Any], extra_overrides: Sequence[str] = (),
             init_choice: str | None = None) -> str:
    """Readable run name: ``<init>-x<scale>-s<seed>``, plus seeds that differ and other overrides.

    ``<init>`` is the ``init`` config chosen (``s4/zeros`` -> ``s4.zeros``), else the scheme.
    ``extra_overrides`` are the job's values of the other keys the sweep varies (see
    ``named_overrides``), so two jobs of one sweep never share a name.
    """
    init = cfg["init"]
    label = (init_choice or init["scheme"]).replace("/", ".")
    name = f"{label}-x{init.get('scale', 1.0):g}-s{cfg['seed']}"
    if cfg["init_seed"] != cfg["seed"]:
        name += f"-i{cfg['init_seed']}"
    if cfg["data_seed"] != cfg["seed"]:
        name += f"-d{cfg['data_seed']}"
    for override in extra_overrides:
        name += f"-{override}"
    return name


NAMED_KEYS = ("init", "init.scheme", "init.scale", *SEED_KEYS)


def swept_keys(task_overrides: Sequence[str],
               sweeper_params: Mapping[str, Any] | None) -> list[str]:
    """Keys a multirun varies: sweep overrides on the command line and ``hydra.sweeper.params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    return keys + [k for k in (sweeper_params or {}) if k not in keys]


def named_overrides(task_overrides: Sequence[str], swept: Sequence[str]) -> list[str]:
    """This job's ``key=value`` for swept keys that the run name does not already show."""
    out = []
    for override in task_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in swept and key not in NAMED_KEYS:
            out.append(override.lstrip("+~"))
    return out


# ------------------------------------------------------------------------------------ a job's run
class BufferedMlflowLogger(Logger):
    """A Lightning logger that buffers metric rows and writes them with ``log_batch``.

    The run is created and ended by ``initsweep.train`` (it owns tags, parent and status); this
    logger only moves metrics. ``flush()`` runs every ``flush_every`` rows and at ``finalize``.
    """

    def __init__(self, client: MlflowClient, run_id: str, flush_every: int = 1000) -> None:
        super().__init__()
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self._rows: list[Metric] = []

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is logged once by the job itself, not by Lightning."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if key != "epoch":
                self._rows.append(Metric(key, float(value), now, step or 0))
        if len(self._rows) >= self.flush_every:
            self.flush()

    def add(self, rows: list[Metric]) -> None:
        """Metric rows made elsewhere (the batched-seeds module logs per seed)."""
        self._rows.extend(rows)
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._rows:
            chunk, self._rows = self._rows[:1000], self._rows[1000:]  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()


def start_run(client: MlflowClient, experiment_id: str, name: str, tags: Mapping[str, Any],
              params: Mapping[str, str]) -> str:
    """Create a run with its tags and params; returns its id."""
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

