"""Resumable, idempotent sweeps: skip what is finished, resume what was preempted.

- A job whose config (``config_hash`` tag: everything that decides its result, seeds included)
  already has a FINISHED run in the experiment is skipped; ``force=true`` reruns it.
- While training, a checkpoint is written at every epoch end to
  ``<tracking.checkpoint_dir>/<config_hash>.ckpt`` (a few MB for these MLPs). SIGTERM (what
  SLURM and other schedulers send on preemption or time-out) ends the job after the current step:
  the run is marked KILLED with ``outcome=preempted`` and the checkpoint path as a tag.
- The next launch of the same config finds that run, reopens it, and resumes from the checkpoint
  (model, optimizer, loop counters and the data-order generator), so it reaches the same final
  metrics as an uninterrupted run. The steps of the interrupted epoch are trained and logged again.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

PREEMPTED = "preempted"


class Preempted(BaseException):
    """Raised inside fit when SIGTERM arrived; BaseException so no ``except Exception`` eats it."""


# What a job catches as "preempted". Lightning registers its own SIGTERM handler after the
# callbacks' on_fit_start and composes it with ours, so both see the signal; a SIGTERM that lands
# at an epoch end or in validation reaches Lightning's check first and raises its
# SIGTERMException (a SystemExit with code 0), as does one during test. Both mean the same: the
# last epoch-end checkpoint is there, mark the run preempted and exit 143.
PREEMPTION = (Preempted, SIGTERMException)


def _job_runs(client: MlflowClient, experiment_id: str, filter_string: str,
              max_results: int) -> list[Run]:
    """Job runs matching ``filter_string``, newest first (sweep parents excluded)."""
    runs = client.search_runs([experiment_id], filter_string,
                              order_by=["attributes.start_time DESC"], max_results=max_results)
    return [r for r in runs if r.data.tags.get("initsweep.role") != "sweep"]


def find_runs(client: MlflowClient, experiment_id: str, config_hash: str) -> list[Run]:
    """Runs of this config in the experiment, newest first (sweep parents excluded)."""
    return _job_runs(client, experiment_id, f"tags.config_hash = '{config_hash}'", 50)


def find_runs_of_group(client: MlflowClient, experiment_id: str, group_hash: str,
                       config_hashes: list[str]) -> dict[str, list[Run]]:
    """``find_runs`` for several seeds of one config group (``group_hash`` tag) in one search:
    a batched job asks once, not once per seed (the store has no IN for tags)."""
    runs = _job_runs(client, experiment_id, f"tags.group_hash = '{group_hash}'", 5000)
    return {h: [r for r in runs if r.data.tags.get("config_hash") == h] for h in config_hashes}


def reopen_run(client: MlflowClient, run_id: str) -> None:
    """A preempted run, RUNNING again, to be resumed from its checkpoint."""
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "outcome", "running")


def mark_preempted(client: MlflowClient, run_id: str) -> None:
    """KILLED with ``outcome=preempted``: not FINISHED, so the next launch resumes it."""
    client.set_tag(run_id, "outcome", PREEMPTED)
    client.set_terminated(run_id, "KILLED")


def finished_run(runs: list[Run]) -> Run | None:
    """The newest FINISHED run (ok or diverged: both are results), if any."""
    return next((r for r in runs if r.info.status == "FINISHED"), None)


def preempted_run(runs: list[Run]) -> tuple[Run, Path] | None:
    """The newest preempted run whose checkpoint still exists, if any."""
    for run in runs:
        path = run.data.tags.get("checkpoint")
        if run.data.tags.get("outcome") == PREEMPTED and path and Path(path).exists():
            return run, Path(path)
    return None


def checkpoint_path(tracking_cfg: Any, uri: str, config_hash: str) -> Path:
    """``tracking.checkpoint_dir``, else ``checkpoints/`` beside a sqlite store, else
    ``./mlruns/checkpoints``; one file per config."""
    folder = (tracking_cfg or {}).get("checkpoint_dir")
    if not folder:
        folder = (Path(uri.removeprefix("sqlite:///")).parent / "checkpoints"
                  if uri.startswith("sqlite:///") else Path("mlruns") / "checkpoints")
    return Path(folder).expanduser().resolve() / f"{config_hash}.ckpt"


class PreemptionCheckpoint(L.Callback):
    """Checkpoint at every epoch end; on SIGTERM stop after the current step and checkpoint.

    The checkpoint written on SIGTERM is the last epoch-end one: a mid-epoch state cannot be
    resumed exactly with a shuffling iterable, so the interrupted epoch is simply redone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signalled = False
        self._previous: Any = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._signalled = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._signalled:
            raise Preempted(f"SIGTERM: resume from {self.path}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restore_handler()

    def restore_handler(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
