"""Preemption: a checkpoint at every epoch end, and SIGTERM turned into a clean stop.

SIGTERM is what SLURM and other schedulers send on preemption or time-out. ``PreemptionCheckpoint``
stops the job after the current step by raising ``Preempted`` inside fit; the job's guard
(``initsweep.job``) marks its runs KILLED with ``outcome=preempted``, and the next launch of the
same config resumes from the last epoch-end checkpoint (``initsweep.resume``).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class Preempted(BaseException):
    """Raised inside fit when SIGTERM arrived; BaseException so no ``except Exception`` eats it."""


# What a job catches as "preempted". Lightning registers its own SIGTERM handler after the
# callbacks' on_fit_start and composes it with ours, so both see the signal; a SIGTERM that lands
# at an epoch end or in validation reaches Lightning's check first and raises its
# SIGTERMException (a SystemExit with code 0), as does one during test. Both mean the same: the
# last epoch-end checkpoint is there, mark the run preempted and exit 143.
PREEMPTION = (Preempted, SIGTERMException)


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
