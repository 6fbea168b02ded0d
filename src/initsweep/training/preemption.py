"""Preemption: a checkpoint at every epoch end, and a stop signal turned into a clean stop.

Schedulers stop a job with SIGTERM (preemption, ``scontrol requeue``, ``scancel``, a time limit);
under submitit on SLURM, SIGUSR2 (``SUBMITIT_PREEMPT_SIGNAL``) comes ``signal_delay_s`` before the
time limit. ``PreemptionCheckpoint`` records either signal (keeping the handlers it replaced, e.g.
submitit's), and stops the job after the current training step by raising ``Preempted``, which
says which signal arrived. What happens next is the job's guard's decision
(``training.guard.JobGuard``): mark the runs KILLED with ``outcome=preempted``; under submitit on
SLURM it then hands the job back to the scheduler (``hand_back_to_slurm``, here: scheduler
policy): submitit's requeue (USR2), or a requeue told from a cancel (SIGTERM). The next launch
of the same config resumes from the last epoch-end checkpoint (``initsweep.tracking.resume``).

The handlers are installed for the whole of the job's guarded work (``install``/``restore``, by
the guard), not only during fit: a signal that arrives while the runs are opened, tested or ended
is recorded rather than acted on by submitit's handler in the middle of an MLflow call. Only
fit stops on it; a signal after fit is outlived (the job is about to end anyway).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from initsweep.launch.pause_points import pause
from initsweep.launch.slurm import requeued as slurm_requeued
from initsweep.launch.slurm import submitit_signal, under_submitit_slurm
from initsweep.launch.slurm import task_id as slurm_task_id
from initsweep.launch.status_files import write_status
from initsweep.vocab import Outcome

PREEMPTED_EXIT = 143  # 128 + SIGTERM, what a scheduler expects of a job it stopped


class Preempted(BaseException):
    """Raised inside fit when a stop signal arrived; BaseException so no ``except Exception``
    eats it. ``signal`` is the signal (SIGTERM, or submitit's SIGUSR2)."""

    def __init__(self, signum: signal.Signals, checkpoint: Path) -> None:
        super().__init__(f"{signum.name}: resume from {checkpoint}")
        self.signal = signum


# What a job catches as "preempted". Lightning registers its own SIGTERM handler after the
# callbacks' on_fit_start and composes it with ours, so both see the signal; a SIGTERM that lands
# at an epoch end or in validation reaches Lightning's check first and raises its
# SIGTERMException (a SystemExit with code 0), as does one during test. Both mean the same: the
# last epoch-end checkpoint is there, mark the run preempted.
PREEMPTION = (Preempted, SIGTERMException)


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGTERM always; submitit's requeue signal too when submitit runs this job on SLURM; SIGINT
    (Ctrl-C) where Python's own handler has it (a background job that ignores it keeps so)."""
    interactive = (
        (signal.SIGINT,) if signal.getsignal(signal.SIGINT) is signal.default_int_handler else ()
    )
    if under_submitit_slurm():
        return (signal.SIGTERM, submitit_signal(), *interactive)
    return (signal.SIGTERM, *interactive)


class PreemptionCheckpoint(L.Callback):
    """Checkpoint at every epoch end; on a stop signal, stop after the current step.

    The checkpoint kept on a stop is the last epoch-end one: a mid-epoch state cannot be resumed
    exactly with a shuffling iterable, so the interrupted epoch is simply redone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signalled: signal.Signals | None = None  # the first stop signal received
        self.replaced: dict[signal.Signals, Any] = {}  # handlers ours replaced (kept after restore)
        self.saved_step: int | None = None  # the global step of the checkpoint there is to resume
        self._installed = False

    def _record(self, signum: int, frame: Any) -> None:
        if self.signalled is None:
            self.signalled = signal.Signals(signum)
        elif signum == signal.SIGINT:  # a second Ctrl-C: stop now, not at the step's end
            raise Preempted(signal.SIGINT, self.path)

    def install(self) -> None:
        """Record the stop signals from now on (idempotent; main thread only, as Python's
        signal handlers are)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        for sig in stop_signals():
            self.replaced[sig] = signal.signal(sig, self._record)
        self._installed = True

    def restore(self) -> None:
        """Put back the handlers ``install`` replaced (``replaced`` keeps them)."""
        if not self._installed:
            return
        for sig, handler in self.replaced.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._installed = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.install()  # already done by the job's guard; here for a fit without one

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.signalled is not None:
            raise Preempted(self.signalled, self.path)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.path.exists():  # resumed: its checkpoint is the one to come back to
            self.saved_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The epoch's rows go to the store first (the module's epoch-end loss rows too: sending
        # them is idempotent), then the checkpoint: a process killed in between resumes one epoch
        # back and its relogged rows are dropped (``resume.logged_steps``): no gap in the history.
        log_train_losses = getattr(pl_module, "log_train_losses", None)
        if log_train_losses is not None:
            log_train_losses()
        for logger in (*trainer.loggers, *getattr(pl_module, "member_loggers", ())):
            write_now = getattr(logger, "write_now", None)
            if write_now is not None:
                write_now()
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step
        pause("checkpoint")


def hand_back_to_slurm(
    signum: signal.Signals,
    preemption: PreemptionCheckpoint,
    statuses: list[dict[str, Any]],
    output_dir: Path | None,
) -> None:
    """A preempted job under submitit on SLURM (its runs already marked): make the launching
    process wait for a task that comes back, and collect the status of one that does not
    (docs/scaling.md, "Run on a cluster").

    - submitit's signal (time limit near): its own handler, kept by ``PreemptionCheckpoint``,
      re-pickles the job, runs ``scontrol requeue`` and raises ``SystemExit``: let it through
      (no result: the launcher waits). Timed out ``max_num_timeout`` times, it raises
      ``UncompletedJobError`` instead: the job is over, outcome ``timeout``.
    - SIGTERM: requeue, preemption and ``scancel`` all send it; slurmctld says which
      (``launch.slurm.requeued``). Requeued: exit 143 with no result; cancelled: return.
    """
    task = slurm_task_id()
    if signum != signal.SIGTERM:
        handler = preemption.replaced.get(signum)
        if not callable(handler):
            return
        try:
            handler(signum, None)  # SystemExit(-1) once requeued: the task ends here
        except Exception as err:  # submitit's UncompletedJobError: no more requeues
            line = str(err).splitlines()[0] if str(err) else type(err).__name__
            for status in statuses:
                if status.get("outcome") == Outcome.PREEMPTED:
                    status.update(outcome="timeout", error=f"SLURM task {task}: {line}")
            write_status(output_dir, statuses)
            print(f"SLURM task {task}: {line}", file=sys.stderr, flush=True)
        return
    comes_back = slurm_requeued()
    if comes_back:
        print(
            f"SLURM task {task} was requeued: it resumes from {preemption.path}; the "
            f"launching process waits for it",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(PREEMPTED_EXIT)
    why = (
        "cancelled (scancel, or preempted without requeue)"
        if comes_back is False
        else "stopped; slurmctld could not say whether it comes back"
    )
    for status in statuses:
        if status.get("outcome") == Outcome.PREEMPTED:
            status["error"] = f"SIGTERM: SLURM task {task} {why}"
    write_status(output_dir, statuses)
