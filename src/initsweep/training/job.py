"""One job's life, for one run or K seeds trained together (``seeds_per_job=K``).

    run_job(cfg)                                 the Hydra task (train.py's main)
      1. check the config, build the data and the first model
                                                 bad input: one line, exit 2, no run created
      2. skip the runs already FINISHED          "<name>: skipped, finished as run <id>"
      3. open the others, or reopen preempted    preempted runs resume from the job's checkpoint
      4. inside one guard (JobGuard):            SIGTERM: runs KILLED/preempted, exit 143
         log the inputs, fit + test, end runs    (under SLURM: requeued, or the status returned);
                                                 the store gone: runs kept resumable, exit 1;
                                                 an exception: runs FAILED with traceback.txt
      5. result lines and the status file

Only the fit differs between one run (``training.fit_single.fit_single``) and K stacked seeds
(``training.fit_stacked.fit_stacked``); each returns a ``RunResult`` per run, and everything
around it is this module's, written once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from initsweep.diagnostics.findings import diagnose, log_diagnosis
from initsweep.diagnostics.pending import complete_pending, finish_run
from initsweep.errors import ConfigError
from initsweep.launch.adoption import adopt_previous
from initsweep.launch.console import print_error, quiet_third_parties, result_line
from initsweep.launch.devices import bind_job
from initsweep.launch.interrupt import interrupted, shield, stop_if_interrupted
from initsweep.launch.slurm import requeued as slurm_requeued
from initsweep.launch.slurm import task_id as slurm_task_id
from initsweep.launch.slurm import under_submitit_slurm
from initsweep.launch.status_files import RUNNING, reported_metrics, status_file, write_status
from initsweep.naming import (
    NOT_PARAMS,
    as_dict,
    config_hash,
    flatten,
    group_hash,
    named_overrides,
    run_name,
    seed_configs,
    seed_overrides,
)
from initsweep.tracking.ownership import heartbeat
from initsweep.tracking.redaction import redact_config, redact_override
from initsweep.tracking.resume import (
    CHECKPOINT_TAG,
    PREEMPTED,
    finished_run,
    forget_checkpoint,
    job_checkpoint,
    logged_steps,
    mark_preempted,
    previous_runs,
    reopen_run,
    resumable,
    save_unsent,
    unsent_file,
)
from initsweep.tracking.retries import StoreUnavailable, try_now
from initsweep.tracking.store import end_run, open_experiment, start_run, tracking_uri
from initsweep.training.builders import (
    build,
    build_diagnostics,
    build_module,
    check_top_level,
    plots_in_background,
)
from initsweep.training.data import TensorDataModule
from initsweep.training.fit_single import RunResult, fit_single
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.module import InitSweepModule
from initsweep.training.preemption import PREEMPTION, PreemptionCheckpoint
from initsweep.vocab import PARENT_RUN_ENV, SWEEP_ID_ENV, SWEPT_KEYS_ENV

PREEMPTED_EXIT = 143  # 128 + SIGTERM, what a scheduler expects of a job it stopped


@dataclass
class JobContext:
    """Where a job runs: from Hydra when it launched the job, defaults for a direct call."""

    multirun: bool = False
    overrides: list[str] = field(default_factory=list)  # the job's task overrides
    output_dir: Path | None = None
    init_choice: str | None = None  # the ``init`` config chosen, e.g. ``s4/zeros``
    swept: list[str] = field(default_factory=list)  # keys the multirun varies

    @classmethod
    def from_hydra(cls) -> JobContext:
        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        swept = os.environ.get(SWEPT_KEYS_ENV, "").split(",") if multirun else []
        return cls(multirun, list(hc.overrides.task), Path(hc.runtime.output_dir),
                   hc.runtime.choices.get("init"), swept)


@dataclass
class JobRun:
    """One MLflow run of a job: a seed's config, its name and metadata, and once open, its id."""

    cfg: DictConfig
    name: str
    tags: dict[str, Any]
    params: dict[str, str]
    overrides: list[str]  # what overrides.txt records: the command line of this seed alone
    status: dict[str, Any]  # what the status file says of it
    previous: list[Run] = field(default_factory=list)  # runs of this config already in the store
    run_id: str = ""
    logger: BufferedMlflowLogger | None = None
    new: bool = True  # created by this job (False: a preempted run reopened)
    ended: bool = False

    @property
    def open_logger(self) -> BufferedMlflowLogger:
        """The logger of a run this job has opened (``open_runs`` made it)."""
        if self.logger is None:
            raise RuntimeError(f"{self.name}: run not opened")
        return self.logger


def run_metadata(cfg: DictConfig, init_choice: str | None,
                 datamodule: TensorDataModule) -> tuple[dict[str, Any], dict[str, str]]:
    """The tags and params of a job's MLflow run (docs: "What a run holds")."""
    tags = {
        "scheme": cfg.init.scheme, "init": init_choice or cfg.init.scheme,
        "scale": cfg.init.scale, "seed": cfg.seed,
        "init_seed": cfg.init_seed, "data_seed": cfg.data_seed,
        "sweep_id": os.environ.get(SWEEP_ID_ENV, "none"),
        "config_hash": config_hash(cfg), "group_hash": group_hash(cfg),
        "dataset": datamodule.name, "n_test": len(datamodule.splits()[2][1]), "outcome": "running",
        **{f"user.{k}": v for k, v in as_dict(cfg.get("tags") or {}).items()},
    }
    return tags, flatten({k: v for k, v in as_dict(cfg).items() if k not in NOT_PARAMS})


def plan_runs(cfg: DictConfig, ctx: JobContext
              ) -> tuple[list[JobRun], TensorDataModule, InitSweepModule]:
    """The job's runs (one per seed), its data and the first seed's model; raises ConfigError.

    Building the first seed's model checks the model, init and optim config; the diagnostics
    config is checked too, so nothing a user can get wrong is left for after a run exists.
    """
    check_top_level(cfg)
    configs = seed_configs(cfg, cfg.get("seeds_per_job", 1))
    datamodule, first = build(configs[0])
    if len(configs) > 1:  # a model vmap cannot run is refused now, before any run exists
        from initsweep.training.fit_stacked import check_stackable  # torch.func only when asked

        check_stackable(first, datamodule.probe_batch(2, 0)[0], len(configs))
    build_diagnostics(configs[0], datamodule)
    named = named_overrides(ctx.overrides, ctx.swept)
    sweep_id = os.environ.get(SWEEP_ID_ENV)
    runs = []
    for one in configs:
        name = run_name(one, named, ctx.init_choice)
        tags, params = run_metadata(one, ctx.init_choice, datamodule)
        runs.append(JobRun(one, name, tags, params, seed_overrides(ctx.overrides, one, cfg.seed),
                           {"sweep_id": sweep_id, "name": name, "seed": one.seed,
                            "outcome": "failed"}))
    return runs, datamodule, first


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Run one job (1..K runs); returns the first run's status with every run's under "seeds".

    Outside a multirun, bad input exits with code 2 and a preempted job with 143; in a multirun
    the job returns, so the sweep goes on to the next job.
    """
    bind_job(cfg)  # GPU / torch threads for parallel launchers: before any CUDA call
    quiet_third_parties()
    ctx = JobContext.from_hydra()
    try:
        runs, datamodule, first = plan_runs(cfg, ctx)
    except ConfigError as err:
        return _not_started(ctx, [{"sweep_id": os.environ.get(SWEEP_ID_ENV),
                                   "outcome": "failed"}], err, exit_code=2)

    started = time.perf_counter()
    force = bool(cfg.get("force", False))
    statuses = [run.status for run in runs]
    try:
        client, experiment_id = open_experiment(cfg)
        todo = skip_finished(client, experiment_id, runs, force)
    except StoreUnavailable as err:  # nothing created: a relaunch starts these runs afresh
        return _not_started(ctx, statuses, err, exit_code=1)
    if todo:
        checkpoint = job_checkpoint(cfg.tracking, tracking_uri(cfg.tracking),
                                    [run.tags["config_hash"] for run in todo])
        preemption = PreemptionCheckpoint(checkpoint)
        with JobGuard(client, todo, checkpoint, preemption, ctx, statuses) as guard:
            resume_from = open_runs(client, experiment_id, todo, checkpoint, force,
                                    stacked=len(runs) > 1)
            heartbeat.watch(client, [run.run_id for run in todo])
            for run in todo:  # a job that dies from here on is told apart by this status
                run.status["outcome"] = RUNNING
            write_status(ctx.output_dir, statuses)
            tick = time.perf_counter()
            for run in todo:
                if run.new:
                    log_inputs(client, run)
            modules = [first if run is runs[0] else build_module(run.cfg, datamodule)
                       for run in todo]
            configs, loggers = [run.cfg for run in todo], [run.open_logger for run in todo]
            if len(runs) == 1:
                results = [fit_single(configs[0], loggers[0], modules[0], datamodule, preemption,
                                      resume_from)]
            else:
                from initsweep.training.fit_stacked import fit_stacked  # torch.func only when asked

                results = fit_stacked(configs, loggers, modules, datamodule, preemption,
                                      resume_from)
            fit_test_s = time.perf_counter() - tick
            diagnosis_s = end_runs(client, todo, results, cfg, ctx, started)
            checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
            timing = {"fit_test_s": fit_test_s,
                      "diagnostics_s": sum(r.diagnostics.seconds for r in results
                                           if r.diagnostics is not None),
                      "diagnostics_cpu_s": sum(r.diagnostics.cpu_seconds for r in results
                                               if r.diagnostics is not None),
                      "diagnosis_s": diagnosis_s,  # part of artifacts_s
                      "artifacts_s": time.perf_counter() - tick - fit_test_s,
                      "run_s": time.perf_counter() - started}
        if guard.exit_code is not None:
            if not ctx.multirun:  # preempted (143) or the store gone (1)
                sys.exit(guard.exit_code)
            return {**statuses[0], "seeds": statuses}
        for run in todo:
            run.status["timing"] = timing
    write_status(ctx.output_dir, statuses)
    for run in todo:
        print(result_line(run.status, (time.perf_counter() - started) / len(todo)), flush=True)
    return {**statuses[0], "seeds": statuses}


def _not_started(ctx: JobContext, statuses: list[dict[str, Any]], err: Exception,
                 exit_code: int) -> dict[str, Any]:
    """A job that ends before any run exists: its statuses say why, one line says it on the
    console; outside a multirun the process exits with ``exit_code``."""
    for status in statuses:
        status["error"] = str(err)
    write_status(ctx.output_dir, statuses)
    print_error(str(err))
    if not ctx.multirun:
        sys.exit(exit_code)
    return {**statuses[0], "seeds": statuses}


def skip_finished(client: MlflowClient, experiment_id: str, runs: list[JobRun],
                  force: bool) -> list[JobRun]:
    """The runs still to train: those whose config has no FINISHED run (all, with ``force``)."""
    previous = adopt_previous(client, previous_runs(  # orphans first: resumed, completed, closed
        client, experiment_id, runs[0].tags["group_hash"],
        [run.tags["config_hash"] for run in runs]))
    todo = []
    for run in runs:
        run.previous = previous[run.tags["config_hash"]]
        done = None if force else finished_run(run.previous)
        if done is None:
            todo.append(run)
            continue
        run.status.update(outcome="skipped", run_id=done.info.run_id,
                          **reported_metrics(done.data.metrics))
        print(f"{run.name}: skipped, finished as run {done.info.run_id} (force=true reruns it)",
              flush=True)
    return todo


def open_runs(client: MlflowClient, experiment_id: str, runs: list[JobRun], checkpoint: Path,
              force: bool, stacked: bool) -> str | None:
    """Create the runs, or reopen them when they were preempted together; returns the
    checkpoint to resume from (None: a fresh start). Each run gets its metric logger."""
    found = None if force else resumable([run.previous for run in runs])
    for position, run in enumerate(runs):
        if found is not None:
            run.run_id, run.new = found[0][position].info.run_id, False
            reopen_run(client, run.run_id, checkpoint, found[1])
            print(f"{run.name}: resuming run {run.run_id} from {found[1]}", flush=True)
        else:
            extra = {"trained_together": len(runs)} if stacked else {}
            run.run_id = start_run(client, experiment_id, run.name,
                                   {**run.tags, **extra, CHECKPOINT_TAG: checkpoint}, run.params)
        run.status.update(run_id=run.run_id, parent_run_id=os.environ.get(PARENT_RUN_ENV))
        run.logger = BufferedMlflowLogger(client, run.run_id, run.cfg.tracking.flush_every)
        if found is not None:  # resumed: the redone epoch's rows the store has are not sent twice
            run.logger.logged_through = logged_steps(client, run.run_id)
    return None if found is None else str(found[1])


def log_inputs(client: MlflowClient, run: JobRun) -> None:
    """``config.yaml`` (resolved) and ``overrides.txt``, both redacted."""
    client.log_text(run.run_id, OmegaConf.to_yaml(redact_config(as_dict(run.cfg))),
                    "config.yaml")
    client.log_text(run.run_id, "\n".join(map(redact_override, run.overrides)) + "\n",
                    "overrides.txt")


def end_runs(client: MlflowClient, runs: list[JobRun], results: list[RunResult],
             cfg: DictConfig, ctx: JobContext, started: float) -> float:
    """Log each run's last rows, diagnosis and artifacts and end it with its outcome (FINISHED);
    returns the seconds the diagnoses took (computed and logged)."""
    elapsed = time.perf_counter() - started
    diagnosis_s = 0.0
    complete_pending()  # the previous job's plots, drawn while this one trained
    background = plots_in_background(cfg)
    for run, result in zip(runs, results, strict=True):
        run.open_logger.log_metrics({"time/run_s": elapsed / len(runs)}, step=0)  # once: a bar
        run.open_logger.flush()
        # The run's last value of each val/* metric (a resumed run's too): what a sweeper selects on
        final = reported_metrics(client.get_run(run.run_id).data.metrics)
        run.status.update(outcome=result.outcome, **{**final, **result.metrics})
        forget_checkpoint(client, run.run_id)
        if result.diagnostics is not None:  # diagnostics off: nothing measured, no diagnosis
            tick = time.perf_counter()
            run.status["diagnosis"] = log_diagnosis(client, run.run_id, diagnose(
                result.diagnostics.records, result.outcome, result.diverged_at, result.losses,
                run.cfg.model.get("activation"), run.cfg.diagnostics.saturation_eps,
                run.cfg.job.divergence_threshold))
            diagnosis_s += time.perf_counter() - tick
        inputs = (result.diagnostics.plot_inputs(run.name, result.net, result.losses)
                  if result.diagnostics is not None and cfg.diagnostics.plots else None)
        finish_run(client, run.run_id, run.name, result.outcome, result.diagnostics, inputs,
                   background, status_file(ctx.output_dir))
        run.ended = True
    return diagnosis_s


class JobGuard:
    """A job's failure policy, in one place (lightning-hydra-template's ``task_wrapper``).

    Around everything a job does once its runs exist (its stop-signal handlers are installed for
    all of it, ``PreemptionCheckpoint.install``):
    - preemption (``Preempted`` from our handler, or Lightning's ``SIGTERMException``): write what
      was logged, mark the runs KILLED with ``outcome=preempted`` (the next launch resumes them
      from the checkpoint), exit code 143. Under submitit on SLURM the job then hands itself back
      to the scheduler (``_back_to_slurm``): the launching process keeps waiting for a task that
      comes back, and gets the status of one that does not;
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

    def __init__(self, client: MlflowClient, runs: list[JobRun], checkpoint: Path,
                 preemption: PreemptionCheckpoint, ctx: JobContext,
                 statuses: list[dict[str, Any]]) -> None:
        self.client, self.runs, self.checkpoint = client, runs, checkpoint
        self.preemption, self.ctx, self.statuses = preemption, ctx, statuses
        self.exit_code: int | None = None

    def __enter__(self) -> JobGuard:
        self.preemption.install()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> bool:
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
        return self.ctx.multirun and isinstance(err, Exception)

    def _preempted(self, open_runs: list[JobRun]) -> bool:
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
            marked = all(try_now(self.client, *call) for call in
                         (("set_tag", run.run_id, "outcome", PREEMPTED),
                          ("set_terminated", run.run_id, "KILLED")))
            if unsent or not marked:  # the next attempt writes them (resume.reopen_run)
                save_unsent(self.checkpoint, {run.run_id: unsent},
                            "preempted while the store did not answer")
            run.status.update(outcome=PREEMPTED, error=signum.name)
        self._close(store=False)
        if signum == signal.SIGINT:  # Ctrl-C: one line, and the sweep stops (launch.interrupt)
            interrupted([run.name for run in open_runs], self.preemption.saved_step,
                        self.checkpoint)
        for run in open_runs:
            print(f"{run.name}: preempted ({signum.name}); run {run.run_id} KILLED, the next "
                  f"launch resumes it from {self.checkpoint}", file=sys.stderr, flush=True)
        self.exit_code = PREEMPTED_EXIT
        if under_submitit_slurm():
            self._back_to_slurm(signum)
        return True

    def _back_to_slurm(self, signum: signal.Signals) -> None:
        """Under submitit on SLURM: make the launching process wait for a task that comes back,
        and collect the status of one that does not (docs/scaling.md, "Run on a cluster").

        - submitit's signal (time limit near): its own handler, kept by ``PreemptionCheckpoint``,
          re-pickles the job, runs ``scontrol requeue`` and raises ``SystemExit``: let it through
          (no result: the launcher waits). Timed out ``max_num_timeout`` times, it raises
          ``UncompletedJobError`` instead: the job is over, outcome ``timeout``.
        - SIGTERM: requeue, preemption and ``scancel`` all send it; slurmctld says which
          (``launch.slurm.requeued``). Requeued: exit 143 with no result; cancelled: return.
        """
        task = slurm_task_id()
        if signum != signal.SIGTERM:
            handler = self.preemption.replaced.get(signum)
            if not callable(handler):
                return
            try:
                handler(signum, None)  # SystemExit(-1) once requeued: the task ends here
            except Exception as err:  # submitit's UncompletedJobError: no more requeues
                line = str(err).splitlines()[0] if str(err) else type(err).__name__
                for status in self.statuses:
                    if status.get("outcome") == PREEMPTED:
                        status.update(outcome="timeout", error=f"SLURM task {task}: {line}")
                write_status(self.ctx.output_dir, self.statuses)
                print(f"SLURM task {task}: {line}", file=sys.stderr, flush=True)
            return
        comes_back = slurm_requeued()
        if comes_back:
            print(f"SLURM task {task} was requeued: it resumes from {self.checkpoint}; the "
                  f"launching process waits for it", file=sys.stderr, flush=True)
            raise SystemExit(PREEMPTED_EXIT)
        why = ("cancelled (scancel, or preempted without requeue)" if comes_back is False else
               "stopped; slurmctld could not say whether it comes back")
        for status in self.statuses:
            if status.get("outcome") == PREEMPTED:
                status["error"] = f"SIGTERM: SLURM task {task} {why}"
        write_status(self.ctx.output_dir, self.statuses)

    def _store_lost(self, err: StoreUnavailable, open_runs: list[JobRun]) -> None:
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
                save_unsent(self.checkpoint, {run.run_id: run.logger.unsent() if run.logger
                                              else []}, error)
        self._close(store=False)
        for run in open_runs:
            then = (f"run {run.run_id} left RUNNING (rows kept in {unsent_file(self.checkpoint)})"
                    if run in left else f"run {run.run_id} KILLED")
            print(f"{run.name}: FAILED ({error}); {then}; the next launch resumes it from "
                  f"{self.checkpoint}", file=sys.stderr, flush=True)

    def _failed(self, kind: type[BaseException] | None, err: BaseException,
                tb: TracebackType | None, open_runs: list[JobRun]) -> None:
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
                save_unsent(self.checkpoint, {run.run_id: run.logger.unsent() if run.logger
                                              else []}, str(lost))
        self._close()
        for run in open_runs:
            print(f"{run.name}: FAILED ({error.splitlines()[0]}); run {run.run_id} marked FAILED",
                  file=sys.stderr, flush=True)

    @staticmethod
    def _flush(run: JobRun) -> None:
        if run.logger is not None:
            run.logger.flush()

    def _close(self, store: bool = True) -> None:
        """The status file; the plots still owed by earlier jobs (they talk to the store: not
        when it is gone, nor while a stopped job's seconds run out; the sweep's end does it)."""
        write_status(self.ctx.output_dir, self.statuses)
        if store:
            try:
                complete_pending()
            except StoreUnavailable as lost:
                print(f"warning: plots of earlier runs not logged: {lost}", file=sys.stderr,
                      flush=True)
