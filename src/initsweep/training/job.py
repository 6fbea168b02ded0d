"""One job's life, for one run or K seeds trained together (``seeds_per_job=K``).

Over 400 lines on purpose: the job's life reads top to bottom in one file (the guard, the fits
and adoption are elsewhere); splitting its steps would scatter the order that the steps below
depend on.

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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
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
    finished_run,
    forget_checkpoint,
    job_checkpoint,
    logged_steps,
    previous_runs,
    reopen_run,
    resumable,
)
from initsweep.tracking.retries import StoreUnavailable
from initsweep.tracking.rounded import log_rounded
from initsweep.tracking.store import open_experiment, start_run, tracking_uri
from initsweep.training.builders import (
    build,
    build_diagnostics,
    build_module,
    check_diagnostics,
    check_top_level,
    plots_in_background,
)
from initsweep.training.data import TensorDataModule
from initsweep.training.dataset_inputs import log_datasets
from initsweep.training.fit_single import fit_single
from initsweep.training.guard import JobGuard
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.module import RunModule
from initsweep.training.preemption import PreemptionCheckpoint
from initsweep.training.steps import RunResult
from initsweep.training.system_metrics import start_system_metrics, stop_system_metrics
from initsweep.vocab import PARENT_RUN_ENV, SWEEP_ID_ENV, SWEPT_KEYS_ENV


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
        return cls(
            multirun,
            list(hc.overrides.task),
            Path(hc.runtime.output_dir),
            hc.runtime.choices.get("init"),
            swept,
        )


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
    def opened_logger(self) -> BufferedMlflowLogger:
        """The logger of a run this job has opened (``open_runs`` made it)."""
        if self.logger is None:
            raise RuntimeError(f"{self.name}: run not opened")
        return self.logger


def run_metadata(
    cfg: DictConfig, init_choice: str | None, datamodule: TensorDataModule
) -> tuple[dict[str, Any], dict[str, str]]:
    """The tags and params of a job's MLflow run (docs: "What a run holds")."""
    tags = {
        "scheme": cfg.init.scheme,
        "init": init_choice or cfg.init.scheme,
        "scale": cfg.init.scale,
        "seed": cfg.seed,
        "init_seed": cfg.init_seed,
        "data_seed": cfg.data_seed,
        "sweep_id": os.environ.get(SWEEP_ID_ENV, "none"),
        "config_hash": config_hash(cfg),
        "group_hash": group_hash(cfg),
        "dataset": datamodule.name,
        "n_test": len(datamodule.splits()[2][1]),
        "outcome": "running",
        **{f"user.{k}": v for k, v in as_dict(cfg.get("tags") or {}).items()},
    }
    return tags, flatten({k: v for k, v in as_dict(cfg).items() if k not in NOT_PARAMS})


def plan_runs(cfg: DictConfig, ctx: JobContext) -> tuple[list[JobRun], TensorDataModule, RunModule]:
    """The job's runs (one per seed), its data and the first seed's model; raises ConfigError.

    Building the first seed's model checks the model, init and optim config; the diagnostics
    config is checked too (built later, per run that trains), so nothing a user can get wrong is
    left for after a run exists.
    """
    check_top_level(cfg)
    configs = seed_configs(cfg, cfg.get("seeds_per_job", 1))
    datamodule, first = build(configs[0])
    if len(configs) > 1:  # a model vmap cannot run is refused now, before any run exists
        from initsweep.training.fit_stacked import check_stackable  # torch.func only when asked

        check_stackable(first, datamodule.probe_batch(2, 0)[0], len(configs))
    check_diagnostics(configs[0])
    named = named_overrides(ctx.overrides, ctx.swept)
    sweep_id = os.environ.get(SWEEP_ID_ENV)
    runs = []
    for one in configs:
        name = run_name(one, named, ctx.init_choice)
        tags, params = run_metadata(one, ctx.init_choice, datamodule)
        runs.append(
            JobRun(
                one,
                name,
                tags,
                params,
                seed_overrides(ctx.overrides, one, cfg.seed),
                {"sweep_id": sweep_id, "name": name, "seed": one.seed, "outcome": "failed"},
            )
        )
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
        return _not_started(
            ctx, [{"sweep_id": os.environ.get(SWEEP_ID_ENV), "outcome": "failed"}], err, exit_code=2
        )

    started = time.perf_counter()
    force = bool(cfg.get("force", False))
    statuses = [run.status for run in runs]
    try:
        client, experiment_id = open_experiment(cfg)
        todo = skip_finished(client, experiment_id, runs, force)
    except StoreUnavailable as err:  # nothing created: a relaunch starts these runs afresh
        return _not_started(ctx, statuses, err, exit_code=1)
    if todo:
        checkpoint = job_checkpoint(
            cfg.tracking, tracking_uri(cfg.tracking), [run.tags["config_hash"] for run in todo]
        )
        preemption = PreemptionCheckpoint(checkpoint)
        with JobGuard(
            client, todo, checkpoint, preemption, ctx.output_dir, ctx.multirun, statuses
        ) as guard:
            # What trains decides the fit and the tag: in a seeds_per_job=3 job whose other two
            # seeds are FINISHED, the last one trains alone, bit for bit as a run of its own.
            stacked = len(todo) > 1
            resume_from = open_runs(client, experiment_id, todo, checkpoint, force, stacked)
            heartbeat.watch(client, [run.run_id for run in todo])
            for run in todo:  # a job that dies from here on is told apart by this status
                run.status["outcome"] = RUNNING
            write_status(ctx.output_dir, statuses)
            tick = time.perf_counter()
            for run in todo:
                if run.new:
                    log_inputs(client, run)
            log_datasets(client, [run.run_id for run in todo if run.new], datamodule)
            monitors = start_system_metrics(
                cfg.tracking, tracking_uri(cfg.tracking), [run.run_id for run in todo]
            )
            modules = [
                first if run is runs[0] else build_module(run.cfg, datamodule) for run in todo
            ]
            configs, loggers = [run.cfg for run in todo], [run.opened_logger for run in todo]
            diagnostics = [
                build_diagnostics(run.cfg, datamodule, member=k) for k, run in enumerate(todo)
            ]
            fit = fit_single
            if stacked:
                from initsweep.training.fit_stacked import fit_stacked  # torch.func only when asked

                fit = fit_stacked
            results = fit(
                configs, loggers, modules, datamodule, diagnostics, preemption, resume_from
            )
            stop_system_metrics(monitors)
            fit_test_s = time.perf_counter() - tick
            diagnosis_s = end_runs(client, todo, results, cfg, ctx, started)
            checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
            timing = {
                "fit_test_s": fit_test_s,
                "diagnostics_s": sum(
                    r.diagnostics.seconds for r in results if r.diagnostics is not None
                ),
                "diagnostics_cpu_s": sum(
                    r.diagnostics.cpu_seconds for r in results if r.diagnostics is not None
                ),
                "diagnosis_s": diagnosis_s,  # part of artifacts_s
                "artifacts_s": time.perf_counter() - tick - fit_test_s,
                "run_s": time.perf_counter() - started,
            }
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


def _not_started(
    ctx: JobContext, statuses: list[dict[str, Any]], err: Exception, exit_code: int
) -> dict[str, Any]:
    """A job that ends before any run exists: its statuses say why, one line says it on the
    console; outside a multirun the process exits with ``exit_code``."""
    for status in statuses:
        status["error"] = str(err)
    write_status(ctx.output_dir, statuses)
    print_error(str(err))
    if not ctx.multirun:
        sys.exit(exit_code)
    return {**statuses[0], "seeds": statuses}


def skip_finished(
    client: MlflowClient, experiment_id: str, runs: list[JobRun], force: bool
) -> list[JobRun]:
    """The runs still to train: those whose config has no FINISHED run (all, with ``force``)."""
    previous = adopt_previous(
        client,
        previous_runs(  # orphans first: resumed, completed, closed
            client,
            experiment_id,
            runs[0].tags["group_hash"],
            [run.tags["config_hash"] for run in runs],
        ),
    )
    todo = []
    for run in runs:
        run.previous = previous[run.tags["config_hash"]]
        done = None if force else finished_run(run.previous)
        if done is None:
            todo.append(run)
            continue
        run.status.update(
            outcome="skipped", run_id=done.info.run_id, **reported_metrics(done.data.metrics)
        )
        print(
            f"{run.name}: skipped, finished as run {done.info.run_id} (force=true reruns it)",
            flush=True,
        )
    return todo


def open_runs(
    client: MlflowClient,
    experiment_id: str,
    runs: list[JobRun],
    checkpoint: Path,
    force: bool,
    stacked: bool,
) -> str | None:
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
            run.run_id = start_run(
                client,
                experiment_id,
                run.name,
                {**run.tags, **extra, CHECKPOINT_TAG: checkpoint},
                run.params,
            )
        run.status.update(run_id=run.run_id, parent_run_id=os.environ.get(PARENT_RUN_ENV))
        run.logger = BufferedMlflowLogger(client, run.run_id, run.cfg.tracking.flush_every)
        if found is not None:  # resumed: the redone epoch's rows the store has are not sent twice
            run.logger.logged_through = logged_steps(client, run.run_id)
    return None if found is None else str(found[1])


def log_inputs(client: MlflowClient, run: JobRun) -> None:
    """``config.yaml`` (resolved) and ``overrides.txt``, both redacted."""
    client.log_text(run.run_id, OmegaConf.to_yaml(redact_config(as_dict(run.cfg))), "config.yaml")
    client.log_text(
        run.run_id, "\n".join(map(redact_override, run.overrides)) + "\n", "overrides.txt"
    )


def end_runs(
    client: MlflowClient,
    runs: list[JobRun],
    results: list[RunResult],
    cfg: DictConfig,
    ctx: JobContext,
    started: float,
) -> float:
    """Log each run's last rows, diagnosis and artifacts and end it with its outcome (FINISHED);
    returns the seconds the diagnoses took (computed and logged)."""
    elapsed = time.perf_counter() - started
    diagnosis_s = 0.0
    complete_pending()  # the previous job's plots, drawn while this one trained
    background = plots_in_background(cfg)
    for run, result in zip(runs, results, strict=True):
        run.opened_logger.log_metrics({"time/run_s": elapsed / len(runs)}, step=0)  # once: a bar
        run.opened_logger.flush()
        # The run's last value of each val/* metric (a resumed run's too): what a sweeper selects on
        final = reported_metrics(client.get_run(run.run_id).data.metrics)
        run.status.update(outcome=result.outcome, **{**final, **result.metrics})
        forget_checkpoint(client, run.run_id)
        log_rounded(client, run.run_id, run.status, run.tags["n_test"])  # 0.9630 = 347/360
        if result.diagnostics is not None:  # diagnostics off: nothing measured, no diagnosis
            tick = time.perf_counter()
            run.status["diagnosis"] = log_diagnosis(
                client,
                run.run_id,
                diagnose(
                    result.diagnostics.records,
                    result.outcome,
                    result.diverged_at,
                    result.losses,
                    run.cfg.model.get("activation"),
                    run.cfg.diagnostics.saturation_eps,
                    run.cfg.job.divergence_threshold,
                ),
            )
            diagnosis_s += time.perf_counter() - tick
        inputs = (
            result.diagnostics.plot_inputs(run.name, result.net, result.losses)
            if result.diagnostics is not None and cfg.diagnostics.plots
            else None
        )
        finish_run(
            client,
            run.run_id,
            run.name,
            result.outcome,
            result.diagnostics,
            inputs,
            background,
            status_file(ctx.output_dir),
        )
        run.ended = True
    return diagnosis_s
