"""Resumable, idempotent sweeps: skip what is finished, resume what was preempted.

Torch-free: queries and updates of the MLflow store only (the Lightning side, the checkpoint
callback and SIGTERM, is ``initsweep.training.preemption``).

- A run whose config (``config_hash`` tag: everything that decides its result, seeds included)
  already has a FINISHED run in the experiment is skipped; ``force=true`` reruns it.
- While a job trains, a checkpoint is written at every epoch end to ``job_checkpoint(...)``: one
  file per job, named by its runs' config hashes. SIGTERM ends the job after the current step;
  its runs are marked KILLED with ``outcome=preempted`` and the checkpoint path as a tag.
- The next launch of the same config finds those runs, reopens them, and resumes from the
  checkpoint (model, optimizer, loop counters and the data-order generators), so it reaches the
  same final metrics as an uninterrupted job. The steps of the interrupted epoch are trained
  again; the rows the store already has are not logged twice (``logged_steps``).
- A job that gave up on the store (``initsweep.tracking.retries``) cannot end its runs: they stay
  RUNNING, and the rows it could not write are kept beside the checkpoint
  (``<checkpoint>.unsent.json``, naming the runs). That file is what says "nobody trains this run
  any more": the sweep callback (``close_abandoned``) or the next launch (``reopen_run``) writes
  the rows, and the run resumes like a preempted one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from initsweep.tracking.ownership import owner_tags
from initsweep.vocab import (
    CHECKPOINT_TAG,
    CONFIG_HASH_TAG,
    ERROR_TAG,
    GROUP_HASH_TAG,
    OUTCOME_TAG,
    PARENT_RUN_ENV,
    PARENT_TAG,
    ROLE_TAG,
    SWEEP_ID_ENV,
    SWEEP_ID_TAG,
    SWEEP_ROLE,
    Outcome,
)

MAX_BATCH = 1000  # MLflow's limit on metric rows per log_batch call

PREEMPTED = Outcome.PREEMPTED  # training/job.py imports this name (same value)


def _job_runs(
    client: MlflowClient, experiment_id: str, filter_string: str, max_results: int
) -> list[Run]:
    """Job runs matching ``filter_string``, newest first (sweep parents excluded)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string,
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    return [r for r in runs if r.data.tags.get(ROLE_TAG) != SWEEP_ROLE]


def previous_runs(
    client: MlflowClient, experiment_id: str, group_hash: str, config_hashes: Sequence[str]
) -> dict[str, list[Run]]:
    """The runs each config already has in the experiment, newest first, in one search.

    One config: searched by its ``config_hash`` tag. Several seeds of one config (a stacked
    job): searched once by their shared ``group_hash`` (the store has no IN for tags).
    """
    if len(config_hashes) == 1:
        runs = _job_runs(
            client, experiment_id, f"tags.{CONFIG_HASH_TAG} = '{config_hashes[0]}'", 50
        )
    else:
        runs = _job_runs(client, experiment_id, f"tags.{GROUP_HASH_TAG} = '{group_hash}'", 5000)
    return {h: [r for r in runs if r.data.tags.get(CONFIG_HASH_TAG) == h] for h in config_hashes}


def finished_run(runs: list[Run]) -> Run | None:
    """The newest FINISHED run (ok or diverged: both are results), if any."""
    return next((r for r in runs if r.info.status == "FINISHED"), None)


def preempted_run(runs: list[Run]) -> tuple[Run, Path] | None:
    """The newest preempted run whose checkpoint still exists, if any; a run left RUNNING by a
    job that gave up on the store counts too (its checkpoint's unsent file names it)."""
    for run in runs:
        path = run.data.tags.get(CHECKPOINT_TAG)
        if not path or not Path(path).exists():
            continue
        if run.data.tags.get(OUTCOME_TAG) == Outcome.PREEMPTED or (
            run.info.status == "RUNNING" and run.info.run_id in unsent_runs(Path(path))
        ):
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


def reopen_run(
    client: MlflowClient, run_id: str, checkpoint: Path, previous: Path | None = None
) -> None:
    """A preempted run, RUNNING again, to be resumed; ``checkpoint`` is where it now saves.
    Rows an earlier attempt could not write (``previous``'s unsent file) are written first.
    The process and the sweep that resume it own it from now on (its parent: this sweep's)."""
    write_unsent(client, run_id, previous or checkpoint)
    client.update_run(run_id, status="RUNNING")
    sweep = (
        {PARENT_TAG: os.environ[PARENT_RUN_ENV], SWEEP_ID_TAG: os.environ[SWEEP_ID_ENV]}
        if os.environ.get(PARENT_RUN_ENV) and os.environ.get(SWEEP_ID_ENV)
        else {}
    )
    client.log_batch(
        run_id,
        tags=[
            RunTag(k, str(v))
            for k, v in {
                OUTCOME_TAG: Outcome.RUNNING.value,
                CHECKPOINT_TAG: str(checkpoint),
                **owner_tags(),
                **sweep,
            }.items()
        ],
    )


def logged_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """Metric key -> the last step the store has of it: a resumed run redoes the epoch it was
    stopped in, and its logger drops the rows the store already has (a history without
    duplicate steps; on CPU the redone values are the same)."""
    return {m.key: m.step for m in client.get_run(run_id).data._metric_objs}


def mark_preempted(client: MlflowClient, run_id: str) -> None:
    """KILLED with ``outcome=preempted``: not FINISHED, so the next launch resumes it."""
    client.set_tag(run_id, OUTCOME_TAG, Outcome.PREEMPTED)
    client.set_terminated(run_id, "KILLED")


def forget_checkpoint(client: MlflowClient, run_id: str) -> None:
    """A finished run has nothing to resume: its checkpoint tag would name a deleted file."""
    try:
        client.delete_tag(run_id, CHECKPOINT_TAG)
    except MlflowException as err:  # no tag (or a retried delete whose first attempt went through)
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise


def unsent_file(checkpoint: Path) -> Path:
    """Where a job that gave up on the store keeps the rows it could not write."""
    return checkpoint.with_name(checkpoint.name + ".unsent.json")


def unsent_runs(checkpoint: Path) -> dict[str, list[list[Any]]]:
    """Run id -> rows ``[key, value, timestamp, step]`` not yet in the store ({} if none)."""
    path = unsent_file(checkpoint)
    try:
        return dict(json.loads(path.read_text())["runs"])
    except (OSError, ValueError, KeyError):
        return {}


def save_unsent(checkpoint: Path, rows: Mapping[str, Sequence[Metric]], error: str) -> Path:
    """Keep the rows of runs whose job gave up on the store (merged with what is there)."""
    runs = unsent_runs(checkpoint)
    for run_id, metrics in rows.items():
        runs[run_id] = [
            *runs.get(run_id, []),
            *([m.key, m.value, m.timestamp, m.step] for m in metrics),
        ]
    return _write_unsent_file(checkpoint, runs, error)


def _write_unsent_file(checkpoint: Path, runs: Mapping[str, list[list[Any]]], error: str) -> Path:
    path = unsent_file(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.write_text(json.dumps({"error": error, "runs": dict(runs)}))
    tmp.replace(path)  # atomic: a reader sees the old file or the new one
    return path


def write_unsent(client: MlflowClient, run_id: str, checkpoint: Path) -> int:
    """Write the run's unsent rows (if any) and drop them from the file; returns how many."""
    runs = unsent_runs(checkpoint)
    rows = [
        Metric(key, value, timestamp, step) for key, value, timestamp, step in runs.pop(run_id, [])
    ]
    for start in range(0, len(rows), MAX_BATCH):
        client.log_batch(run_id, metrics=rows[start : start + MAX_BATCH], synchronous=True)
    path = unsent_file(checkpoint)
    if not runs:
        path.unlink(missing_ok=True)
    elif rows:
        _write_unsent_file(checkpoint, runs, json.loads(path.read_text()).get("error", ""))
    return len(rows)


def close_abandoned(client: MlflowClient, run: Run, error: str) -> str:
    """End a run its job left RUNNING (the job died, or gave up on the store); returns how.

    With its checkpoint still there it ends KILLED with ``outcome=preempted`` (its unsent rows
    written first), so the next launch resumes it; without one it ends FAILED. ``error`` goes
    in the ``error`` tag.
    """
    path = run.data.tags.get(CHECKPOINT_TAG)
    client.set_tag(run.info.run_id, ERROR_TAG, error[:5000])
    if path and Path(path).exists():
        write_unsent(client, run.info.run_id, Path(path))
        mark_preempted(client, run.info.run_id)
        return f"KILLED, resumable from {path}"
    client.set_tag(run.info.run_id, OUTCOME_TAG, Outcome.FAILED)
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    return "FAILED"


def job_checkpoint(
    tracking_cfg: Mapping[str, Any] | None, uri: str, config_hashes: Sequence[str]
) -> Path:
    """The checkpoint file of a job: ``<config_hash>.ckpt`` for one run, ``batch-<hash>.ckpt``
    for seeds trained together, in ``tracking.checkpoint_dir``, else ``checkpoints/`` beside a
    sqlite store, else ``./mlruns/checkpoints``."""
    folder = (tracking_cfg or {}).get("checkpoint_dir")
    if not folder:
        folder = (
            Path(uri.removeprefix("sqlite:///")).parent / "checkpoints"
            if uri.startswith("sqlite:///")
            else Path("mlruns") / "checkpoints"
        )
    if len(config_hashes) == 1:
        stem = config_hashes[0]
    else:
        stem = "batch-" + hashlib.sha256(",".join(config_hashes).encode()).hexdigest()[:12]
    return Path(folder).expanduser().resolve() / f"{stem}.ckpt"
