"""A run's diagnostics artifacts (CSV + plots) and its end: now, or once a worker drew its plots.

Drawing a run's four PNGs costs ~0.4 s of matplotlib, as long as a whole digits run trains. In a
multirun whose jobs run one after another in this process (Hydra's basic launcher), the plots of
a job are drawn by worker processes (``diagnostics.plot_worker``) while the next job trains
(``diagnostics.background_plots``). Such a run stays RUNNING, with all its metrics logged, until
its plots are logged; then it ends exactly as it would have (outcome tag, FINISHED).
``complete_pending`` does that at the next job's end, when a job fails or is preempted, at the end
of the sweep and at exit, so no run is left RUNNING and no plot is lost. If the worker dies, the
plots it still owed are drawn here instead; if drawing fails, the run ends FAILED with the
traceback, as it would have inline.
"""

from __future__ import annotations

import atexit
import contextlib
import pickle
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from initsweep.diagnostics.plot_worker import INPUTS_FILE, PlotWorker, PlotWorkerDied
from initsweep.launch.devices import available_cores
from initsweep.launch.status_files import mark_failed
from initsweep.tracking.ownership import heartbeat
from initsweep.tracking.retries import try_now
from initsweep.tracking.store import end_run
from initsweep.vocab import OUTCOME_TAG, PENDING_TAG, Outcome

if TYPE_CHECKING:  # torch and matplotlib stay out: the sweep callback imports this module
    from initsweep.diagnostics.callback import DiagnosticsCallback
    from initsweep.diagnostics.plots import PlotInputs

ARTIFACT_DIR = "diagnostics"  # the run's artifact folder for the CSV and the PNGs


@dataclass
class PendingRun:
    """A run whose plots a worker is drawing; ended by ``complete_pending``."""

    client: MlflowClient
    run_id: str
    name: str
    outcome: str
    inputs: PlotInputs
    folder: tempfile.TemporaryDirectory
    worker: PlotWorker | None
    ticket: int
    status_file: Path | None  # the job's status file, corrected if the run fails after all


_pending: list[PendingRun] = []
_workers: list[PlotWorker] = []
_shutdown_registered = False


def finish_run(
    client: MlflowClient,
    run_id: str,
    name: str,
    outcome: str,
    callback: DiagnosticsCallback | None,
    inputs: PlotInputs | None,
    background: bool = False,
    status_file: Path | None = None,
) -> None:
    """Log the run's ``diagnostics/`` artifacts and end it with ``outcome``.

    ``callback``: the run's diagnostics (its CSV), None when they are off; ``inputs``: what the
    plots are drawn from (``DiagnosticsCallback.plot_inputs``), None for no plots.
    ``background``: the plots go to the worker process and the run ends in
    ``complete_pending`` (falls back to drawing here if no worker can start).
    """
    if callback is None:
        end_run(client, run_id, outcome)
        return
    # Beside the job's status file when there is one: a folder a relaunch can still find if this
    # process dies before the plots are logged (``launch.adoption`` completes the run from it).
    folder = tempfile.TemporaryDirectory(
        prefix="initsweep-diagnostics-", dir=status_file.parent if status_file else None
    )
    callback.write_csv(Path(folder.name) / "diagnostics.csv")
    if inputs is not None:
        worker = _pick_worker() if background else None
        if worker is not None:
            try:
                ticket = worker.submit(inputs, Path(folder.name))
            except PlotWorkerDied:  # drawn below, as without a worker
                (Path(folder.name) / INPUTS_FILE).unlink(missing_ok=True)  # not an artifact
            else:
                _pending.append(
                    PendingRun(
                        client, run_id, name, outcome, inputs, folder, worker, ticket, status_file
                    )
                )
                # trained, not ended: the outcome is known now, and what the end waits for
                client.log_batch(
                    run_id,
                    tags=[
                        RunTag(OUTCOME_TAG, str(outcome)),
                        RunTag(PENDING_TAG, f"plots:{folder.name}"),
                    ],
                )
                return
        _draw_here(inputs, Path(folder.name))
    _log_and_end(client, run_id, outcome, folder)


def complete_pending() -> None:
    """Wait for every queued run's plots, log them and end the runs (oldest first)."""
    while _pending:
        run = _pending.pop(0)
        try:
            error = _answer(run)
        except BaseException:
            _pending.insert(0, run)  # interrupted while waiting: still owed, at exit
            raise
        if error is None:
            try:
                _log_and_end(run.client, run.run_id, run.outcome, run.folder)
                _forget_pending(run.client, run.run_id)
                continue
            except Exception:  # the store refused the artifacts: never leave the run RUNNING
                error = traceback.format_exc()
        last_line = error.strip().splitlines()[-1]  # "KeyError: 'act_std'"
        try:
            run.client.log_text(run.run_id, error, "traceback.txt")
        finally:
            end_run(run.client, run.run_id, Outcome.FAILED)
            _forget_pending(run.client, run.run_id)
            run.folder.cleanup()
            mark_failed(run.status_file, run.run_id, f"plots: {last_line}")
        print(
            f"{run.name}: FAILED (plots: {last_line}); run {run.run_id} marked FAILED",
            file=sys.stderr,
            flush=True,
        )


def _forget_pending(client: MlflowClient, run_id: str) -> None:
    with contextlib.suppress(MlflowException):  # not there (or deleted by a first attempt)
        client.delete_tag(run_id, PENDING_TAG)


def hand_over() -> list[str]:
    """Leave the plots still owed to the next launch (a second Ctrl-C: stop now): each such run
    ends KILLED, its plot inputs kept in a folder its pending tag names, which the next launch of
    its config (or ``initsweep doctor --fix``) draws and logs (``launch.adoption``); returns
    their names. The workers are stopped."""
    while _workers:
        _workers.pop().process.kill()
    names = []
    while _pending:
        run = _pending.pop(0)
        kept = Path(run.folder.name).with_name(f"plots-{run.run_id}")
        shutil.copytree(run.folder.name, kept, dirs_exist_ok=True)
        (kept / INPUTS_FILE).write_bytes(pickle.dumps(run.inputs))  # drawn again: all of them
        run.folder.cleanup()
        try_now(run.client, "set_tag", run.run_id, PENDING_TAG, f"plots:{kept}")
        try_now(run.client, "set_terminated", run.run_id, "KILLED")
        heartbeat.release([run.run_id])
        names.append(run.name)
    return names


def _answer(run: PendingRun) -> str | None:
    """The worker's answer for ``run``; draws here when its worker is gone."""
    if run.worker is not None:
        try:
            return run.worker.answer(run.ticket)
        except PlotWorkerDied as err:
            print(
                f"warning: {err}; drawing {run.name}'s plots in this process",
                file=sys.stderr,
                flush=True,
            )
    (Path(run.folder.name) / INPUTS_FILE).unlink(missing_ok=True)  # not an artifact
    try:
        _draw_here(run.inputs, Path(run.folder.name))
    except Exception:
        return traceback.format_exc()
    return None


def _pick_worker() -> PlotWorker | None:
    """An idle worker, else a new one (up to one per core), else the least busy one.

    Workers run at the lowest CPU priority, so a few of them cost a training job little; more
    than one matters when several runs' plots are due at once (a ``seeds_per_job`` job).
    """
    global _shutdown_registered
    _workers[:] = [w for w in _workers if w.alive()]  # a dead one's runs are drawn here
    idle = [w for w in _workers if w.outstanding == 0]
    if idle:
        return idle[0]
    if len(_workers) < available_cores():
        try:
            _workers.append(PlotWorker())
        except OSError as err:
            print(
                f"warning: no plot worker ({err}); plots are drawn inline",
                file=sys.stderr,
                flush=True,
            )
        else:
            if not _shutdown_registered:
                atexit.register(shutdown)
                _shutdown_registered = True
            return _workers[-1]
    return min(_workers, key=lambda w: w.outstanding, default=None)


def shutdown() -> None:
    """Complete what is pending and stop the workers (registered with atexit)."""
    try:
        complete_pending()
    finally:
        while _workers:
            _workers.pop().close()


def _draw_here(inputs: PlotInputs, folder: Path) -> None:
    from initsweep.diagnostics import (
        plots as run_plots,  # matplotlib only where plots are drawn in this process
    )

    run_plots.draw_all(inputs, folder)


def _log_and_end(
    client: MlflowClient, run_id: str, outcome: str, folder: tempfile.TemporaryDirectory
) -> None:
    try:
        client.log_artifacts(run_id, folder.name, ARTIFACT_DIR)
    finally:
        folder.cleanup()
    end_run(client, run_id, outcome)
