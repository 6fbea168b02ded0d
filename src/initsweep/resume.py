"""Resumable, idempotent sweeps: skip what is finished, resume what was preempted.

Torch-free: queries and updates of the MLflow store only (the Lightning side, the checkpoint
callback and SIGTERM, is ``initsweep.preemption``).

- A run whose config (``config_hash`` tag: everything that decides its result, seeds included)
  already has a FINISHED run in the experiment is skipped; ``force=true`` reruns it.
- While a job trains, a checkpoint is written at every epoch end to ``job_checkpoint(...)``: one
  file per job, named by its runs' config hashes. SIGTERM ends the job after the current step;
  its runs are marked KILLED with ``outcome=preempted`` and the checkpoint path as a tag.
- The next launch of the same config finds those runs, reopens them, and resumes from the
  checkpoint (model, optimizer, loop counters and the data-order generators), so it reaches the
  same final metrics as an uninterrupted job. The steps of the interrupted epoch are trained and
  logged again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

PREEMPTED = "preempted"
CHECKPOINT_TAG = "checkpoint"  # the file a preempted run resumes from; deleted once it finished


def _job_runs(client: MlflowClient, experiment_id: str, filter_string: str,
              max_results: int) -> list[Run]:
    """Job runs matching ``filter_string``, newest first (sweep parents excluded)."""
    runs = client.search_runs([experiment_id], filter_string,
                              order_by=["attributes.start_time DESC"], max_results=max_results)
    return [r for r in runs if r.data.tags.get("initsweep.role") != "sweep"]


def previous_runs(client: MlflowClient, experiment_id: str, group_hash: str,
                  config_hashes: Sequence[str]) -> dict[str, list[Run]]:
    """The runs each config already has in the experiment, newest first, in one search.

    One config: searched by its ``config_hash`` tag. Several seeds of one config (a stacked
    job): searched once by their shared ``group_hash`` (the store has no IN for tags).
    """
    if len(config_hashes) == 1:
        runs = _job_runs(client, experiment_id, f"tags.config_hash = '{config_hashes[0]}'", 50)
    else:
        runs = _job_runs(client, experiment_id, f"tags.group_hash = '{group_hash}'", 5000)
    return {h: [r for r in runs if r.data.tags.get("config_hash") == h] for h in config_hashes}


def finished_run(runs: list[Run]) -> Run | None:
    """The newest FINISHED run (ok or diverged: both are results), if any."""
    return next((r for r in runs if r.info.status == "FINISHED"), None)


def preempted_run(runs: list[Run]) -> tuple[Run, Path] | None:
    """The newest preempted run whose checkpoint still exists, if any."""
    for run in runs:
        path = run.data.tags.get(CHECKPOINT_TAG)
        if run.data.tags.get("outcome") == PREEMPTED and path and Path(path).exists():
            return run, Path(path)
    return None


def resumable(previous: Sequence[list[Run]]) -> tuple[list[Run], Path] | None:
    """The preempted runs of a job and the checkpoint they resume from, if all of them have one.

    Runs trained together resume together: only when every run of the job was preempted with
    the same checkpoint (the runs of an interrupted stacked job share one file).
    """
    found = [f for f in (preempted_run(runs) for runs in previous) if f is not None]
    if not found or len(found) < len(previous) or len({path for _, path in found}) != 1:
        return None
    return [run for run, _ in found], found[0][1]


def reopen_run(client: MlflowClient, run_id: str, checkpoint: Path) -> None:
    """A preempted run, RUNNING again, to be resumed; ``checkpoint`` is where it now saves."""
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "outcome", "running")
    client.set_tag(run_id, CHECKPOINT_TAG, str(checkpoint))


def mark_preempted(client: MlflowClient, run_id: str) -> None:
    """KILLED with ``outcome=preempted``: not FINISHED, so the next launch resumes it."""
    client.set_tag(run_id, "outcome", PREEMPTED)
    client.set_terminated(run_id, "KILLED")


def forget_checkpoint(client: MlflowClient, run_id: str) -> None:
    """A finished run has nothing to resume: its checkpoint tag would name a deleted file."""
    try:
        client.delete_tag(run_id, CHECKPOINT_TAG)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):  # no tag: nothing to do
            raise


def job_checkpoint(tracking_cfg: Mapping[str, Any] | None, uri: str,
                   config_hashes: Sequence[str]) -> Path:
    """The checkpoint file of a job: ``<config_hash>.ckpt`` for one run, ``batch-<hash>.ckpt``
    for seeds trained together, in ``tracking.checkpoint_dir``, else ``checkpoints/`` beside a
    sqlite store, else ``./mlruns/checkpoints``."""
    folder = (tracking_cfg or {}).get("checkpoint_dir")
    if not folder:
        folder = (Path(uri.removeprefix("sqlite:///")).parent / "checkpoints"
                  if uri.startswith("sqlite:///") else Path("mlruns") / "checkpoints")
    if len(config_hashes) == 1:
        stem = config_hashes[0]
    else:
        stem = "batch-" + hashlib.sha256(",".join(config_hashes).encode()).hexdigest()[:12]
    return Path(folder).expanduser().resolve() / f"{stem}.ckpt"
