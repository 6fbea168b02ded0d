"""A job's failure policy once its runs exist (``JobGuard``): preemption, the store gone, any
other exception. Each ends the runs resumable or FAILED, writes the status file and one console
line per run; nothing is left RUNNING. What a preempted job then tells SLURM is scheduler
policy, ``training.preemption.hand_back_to_slurm``.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from mlflow.tracking import MlflowClient

from initsweep.diagnostics.pending import complete_pending
from initsweep.launch.interrupt import interrupted, shield, stop_if_interrupted
from initsweep.launch.slurm import under_submitit_slurm
from initsweep.launch.status_files import write_status
from initsweep.tracking.ownership import heartbeat
from initsweep.tracking.resume import PREEMPTED, mark_preempted, save_unsent, unsent_file
from initsweep.tracking.retries import StoreUnavailable, try_now
from initsweep.tracking.store import end_run
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.preemption import (
    PREEMPTED_EXIT,
    PREEMPTION,
    PreemptionCheckpoint,
    hand_back_to_slurm,
)


class GuardedRun(Protocol):
    """What the guard reads and updates of a job's run (``training.job.JobRun``)."""

    name: str
    run_id: str  # "" until the run is opened
    logger: BufferedMlflowLogger | None
    status: dict[str, Any]  # what the status file says of it
    ended: bool


class JobGuard:
    """A job's failure policy, in one place (lightning-hydra-template's ``task_wrapper``).

    Around everything a job does once its runs exist (its stop-signal handlers are installed for
    all of it, ``PreemptionCheckpoint.install``):
    - preemption (``Preempted`` from our handler, or Lightning's ``SIGTERMException``): write what
      was logged, mark the runs KILLED with ``outcome=preempted`` (the next launch resumes them
      from the checkpoint), exit code 143. Under submitit on SLURM the job then hands itself back
      to the scheduler (``training.preemption.hand_back_to_slurm``);
    - the store gone for longer than the retry budget (``StoreUnavailable``): the runs cannot be
      ended; their unwritten rows are kept beside the checkpoint and the runs stay resumable
      (``initsweep.tracking.resume``); exit code 1;
    - any other exception: flush, ``traceback.txt``, the runs FAILED, exit code 1.
    Either way the status file is written and the console gets one line per run. In a multirun
    the exception is swallowed (``exit_code`` says what happened) so the sweep goes on; a single
    run re-raises a failure (Hydra reports it) and leaves preemption to the caller's exit.
    KeyboardInterrupt and other non-``Exception`` errors always propagate, after the same
    bookkeeping, so no run is left RUNNING.
    """

    def __init__(
        self,
        client: MlflowClient,
        runs: Sequence[GuardedRun],
        checkpoint: Path,
        preemption: PreemptionCheckpoint,
        output_dir: Path | None,
        multirun: bool,
        statuses: list[dict[str, Any]],
    ) -> None:
        self.client, self.runs, self.checkpoint = client, runs, checkpoint
        self.preemption, self.statuses = preemption, statuses
        self.output_dir, self.multirun = output_dir, multirun
        self.exit_code: int | None = None

    def __enter__(self) -> JobGuard:
        self.preemption.install()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.preemption.restore()
        if err is None:
            stop_if_interrupted(self.preemption.signalled)  # Ctrl-C after training: stop the sweep
            return False
        open_runs = [run for run in self.runs if run.run_id and not run.ended]
        heartbeat.release(run.run_id for run in open_runs)
        if isinstance(err, PREEMPTION):
            return self._preempted(open_runs)
        self.exit_code = 1
        if isinstance(err, StoreUnavailable):  # one line said it all: no traceback
            self._store_lost(err, open_runs)
            return True
        self._failed(kind, err, tb, open_runs)
        return self.multirun and isinstance(err, Exception)

    def _preempted(self, open_runs: list[GuardedRun]) -> bool:
        """Nothing here waits for the store: a stopped job has KillWait (SLURM: 30 s) before
        SIGKILL. What the store does not take at once is kept beside the checkpoint, so the next
        attempt still resumes these runs and writes their rows."""
        signum = self.preemption.signalled or signal.SIGTERM
        if signum == signal.SIGINT:
            shield()
        for run in open_runs:
            if run.logger is not None:
                run.logger.write_now()
            unsent = run.logger.unsent() if run.logger is not None else []
            marked = all(
                try_now(self.client, *call)
                for call in (
                    ("set_tag", run.run_id, "outcome", PREEMPTED),
                    ("set_terminated", run.run_id, "KILLED"),
                )
            )
            if unsent or not marked:  # the next attempt writes them (resume.reopen_run)
                save_unsent(
                    self.checkpoint,
                    {run.run_id: unsent},
                    "preempted while the store did not answer",
                )
            run.status.update(outcome=PREEMPTED, error=signum.name)
        self._close(store=False)
        if signum == signal.SIGINT:  # Ctrl-C: one line, and the sweep stops (launch.interrupt)
            interrupted(
                [run.name for run in open_runs], self.preemption.saved_step, self.checkpoint
            )
        for run in open_runs:
            print(
                f"{run.name}: preempted ({signum.name}); run {run.run_id} KILLED, the next "
                f"launch resumes it from {self.checkpoint}",
                file=sys.stderr,
                flush=True,
            )
        self.exit_code = PREEMPTED_EXIT
        if under_submitit_slurm():
            hand_back_to_slurm(signum, self.preemption, self.statuses, self.output_dir)
        return True

    def _store_lost(self, err: StoreUnavailable, open_runs: list[GuardedRun]) -> None:
        """The store did not come back within the retry budget: each run gets one more try at
        its rows and a resumable end (KILLED, ``outcome=preempted``); what the store does not
        take is kept beside the checkpoint, which also tells the sweep's end and the next launch
        that nobody trains these runs any more (``initsweep.tracking.resume.preempted_run``)."""
        error = str(err)
        left = []
        for run in open_runs:
            run.status.update(outcome="failed", error=error)
            try:
                self._flush(run)
                mark_preempted(self.client, run.run_id)
                self.client.set_tag(run.run_id, "error", error)
            except StoreUnavailable:
                left.append(run)
                save_unsent(
                    self.checkpoint, {run.run_id: run.logger.unsent() if run.logger else []}, error
                )
        self._close(store=False)
        for run in open_runs:
            then = (
                f"run {run.run_id} left RUNNING (rows kept in {unsent_file(self.checkpoint)})"
                if run in left
                else f"run {run.run_id} KILLED"
            )
            print(
                f"{run.name}: FAILED ({error}); {then}; the next launch resumes it from "
                f"{self.checkpoint}",
                file=sys.stderr,
                flush=True,
            )

    def _failed(
        self,
        kind: type[BaseException] | None,
        err: BaseException,
        tb: TracebackType | None,
        open_runs: list[GuardedRun],
    ) -> None:
        trace = "".join(traceback.format_exception(kind, err, tb))
        error = f"{type(err).__name__}: {err}"
        for run in open_runs:
            run.status["error"] = error
            run.status["outcome"] = "failed"
            try:
                try:
                    self._flush(run)  # nothing that was logged is lost
                    self.client.log_text(run.run_id, trace, "traceback.txt")
                finally:
                    end_run(self.client, run.run_id, "failed")
            except StoreUnavailable as lost:  # the run stays RUNNING, resumable
                save_unsent(
                    self.checkpoint,
                    {run.run_id: run.logger.unsent() if run.logger else []},
                    str(lost),
                )
        self._close()
        for run in open_runs:
            print(
                f"{run.name}: FAILED ({error.splitlines()[0]}); run {run.run_id} marked FAILED",
                file=sys.stderr,
                flush=True,
            )

    @staticmethod
    def _flush(run: GuardedRun) -> None:
        if run.logger is not None:
            run.logger.flush()

    def _close(self, store: bool = True) -> None:
        """The status file; the plots still owed by earlier jobs (they talk to the store: not
        when it is gone, nor while a stopped job's seconds run out; the sweep's end does it)."""
        write_status(self.output_dir, self.statuses)
        if store:
            try:
                complete_pending()
            except StoreUnavailable as lost:
                print(
                    f"warning: plots of earlier runs not logged: {lost}",
                    file=sys.stderr,
                    flush=True,
                )
