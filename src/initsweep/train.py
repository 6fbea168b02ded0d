"""One job, start to end: config -> seeds -> data -> model + init -> MLflow run -> fit -> test.

Everything a user can get wrong is checked before the MLflow run is created, so bad input leaves
no run behind. Once the run exists, any exception marks it FAILED (traceback as an artifact) and
flushes what was logged; in a multirun the sweep goes on to the next job.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from initsweep.artifacts import complete_pending, finish_run
from initsweep.data import TensorDataModule
from initsweep.devices import bind_job
from initsweep.diagnostics import DiagnosticsCallback
from initsweep.errors import ConfigError, require
from initsweep.module import InitSweepModule
from initsweep.redaction import redact_config, redact_override
from initsweep.resume import (
    PREEMPTED,
    PREEMPTION,
    PreemptionCheckpoint,
    checkpoint_path,
    find_runs,
    finished_run,
    mark_preempted,
    preempted_run,
    reopen_run,
)
from initsweep.tracking import (
    PARENT_RUN_ENV,
    SEED_KEYS,
    SWEEP_ID_ENV,
    SWEPT_KEYS_ENV,
    BufferedMlflowLogger,
    config_hash,
    end_run,
    flatten,
    named_overrides,
    open_experiment,
    run_name,
    start_run,
    tracking_uri,
)

log = logging.getLogger("initsweep")
STATUS_FILE = "initsweep_job.json"  # one per job, read by the sweep callback's summary


def quiet_third_parties() -> None:
    """Keep the console to one line per job: silence known, harmless third-party chatter."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*is deprecated.*",
                    ".*GPU available but not used.*", ".*Checkpoint directory.*",
                    ".*smaller than the logging interval.*", ".*returned `None`.*",
                    ".*Precision.*is not supported.*", ".*overridden `transfer_batch_to_device`.*",
                    ".*`isinstance\\(treespec, LeafSpec\\)`.*"):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def check_top_level(cfg: Mapping[str, Any]) -> None:
    for key in (*SEED_KEYS, "seeds_per_job"):
        value = cfg.get(key, 1)
        least = 1 if key == "seeds_per_job" else 0
        require(isinstance(value, int) and not isinstance(value, bool) and value >= least, key,
                value, f"must be an integer >= {least}")


def check_trainer(trainer_cfg: Mapping[str, Any]) -> None:
    epochs = trainer_cfg.get("max_epochs")
    require(isinstance(epochs, int) and epochs >= 1, "trainer.max_epochs", epochs,
            "must be an integer >= 1")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer_cfg.get(key)
        require(value is None or (isinstance(value, (int, float)) and value > 0),
                f"trainer.{key}", value, "must be null, an int >= 1 or a fraction in (0, 1]")


def build_trainer(trainer_cfg: Mapping[str, Any], logger: BufferedMlflowLogger | bool,
                  callbacks: list[L.Callback]) -> L.Trainer:
    cfg = dict(trainer_cfg)
    cfg.pop("divergence_threshold", None)  # the module's, not Lightning's
    progress_bar = cfg.pop("progress_bar", None)
    if progress_bar is None:
        progress_bar = sys.stdout.isatty()
    return L.Trainer(
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **{k: v for k, v in cfg.items() if v is not None},
    )


def build(cfg: DictConfig) -> tuple[TensorDataModule, InitSweepModule]:
    """Data and model from config; raises ConfigError before anything is tracked."""
    check_top_level(cfg)
    check_trainer(cfg.trainer)
    L.seed_everything(cfg.seed, workers=False, verbose=False)  # `is not None` semantics: 0 seeds
    try:
        datamodule: TensorDataModule = instantiate(cfg.data, data_seed=cfg.data_seed)
    except Exception as err:  # Hydra wraps what the constructor raised
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"data: {str(cause).splitlines()[0]}") from None  # e.g. unknown key
    datamodule.setup()
    init = OmegaConf.to_container(cfg.init, resolve=True)
    module = InitSweepModule(cfg.model, init, cfg.optim, datamodule.in_features,
                             datamodule.num_classes, cfg.init_seed,
                             draw_batch=lambda size: datamodule.probe_batch(size, cfg.init_seed)[0],
                             divergence_threshold=cfg.trainer.get("divergence_threshold"))
    return datamodule, module


def plots_in_background(cfg: DictConfig) -> bool:
    """Whether this job's plots are drawn by a worker process while the next job trains.

    ``diagnostics.background_plots: auto`` means yes in a multirun whose jobs run one after another
    in this process (Hydra's basic launcher): there is a next job to overlap with. A single run, or
    jobs in their own processes (joblib, SLURM), draw inline: nothing would overlap.
    """
    choice = (cfg.get("diagnostics") or {}).get("background_plots", "auto")
    require(choice in ("auto", True, False), "diagnostics.background_plots", choice,
            "must be auto, true or false")
    if choice != "auto":
        return choice
    if not HydraConfig.initialized():
        return False
    hydra_cfg = HydraConfig.get()
    return (hydra_cfg.mode == RunMode.MULTIRUN
            and hydra_cfg.launcher._target_.rsplit(".", 1)[-1] == "BasicLauncher")


def build_diagnostics(cfg: DictConfig, datamodule: TensorDataModule,
                      seed_index: int | None = None) -> DiagnosticsCallback | None:
    """The diagnostics callback of a job (of seed ``seed_index`` of a batched job), or None."""
    diag = cfg.get("diagnostics") or {}
    if not diag.get("enabled", True):
        return None
    every = diag.get("every_n_steps", 50)
    require(isinstance(every, int) and every >= 0, "diagnostics.every_n_steps", every,
            "must be an integer >= 0 (0: at init only)")
    size = diag.get("probe_size", 256)
    require(isinstance(size, int) and size >= 2, "diagnostics.probe_size", size,
            "must be an integer >= 2")
    plots_in_background(cfg)  # validates diagnostics.background_plots
    # The probe is the same for every run of a sweep (its own seed), so runs compare directly.
    probe = datamodule.probe_batch(size, diag.get("probe_seed", 0))
    return DiagnosticsCallback(probe, every, diag.get("saturation_eps", 0.01),
                               diag.get("distinct_tol", 1e-6), seed_index)


# Top-level keys that are not part of a run's recorded config: where it is logged, free-form tags,
# how jobs are batched and placed (a seed trained in a batch or on another GPU must look the same).
NOT_PARAMS = ("tracking", "tags", "seeds_per_job", "devices", "force")


def run_metadata(cfg: DictConfig, init_choice: str | None,
                 datamodule: TensorDataModule) -> tuple[dict[str, Any], dict[str, str]]:
    """The tags and params of a job's MLflow run (README: "Look at the results in MLflow")."""
    tags = {
        "scheme": cfg.init.scheme, "init": init_choice or cfg.init.scheme,
        "scale": cfg.init.scale, "seed": cfg.seed,
        "init_seed": cfg.init_seed, "data_seed": cfg.data_seed,
        "sweep_id": os.environ.get(SWEEP_ID_ENV, "none"),
        "config_hash": config_hash(cfg),
        "group_hash": config_hash(cfg, keys=("data", "model", "init", "optim", "trainer")),
        "dataset": datamodule.name, "n_test": len(datamodule.test[1]), "outcome": "running",
        **{f"user.{k}": v for k, v in (cfg.get("tags") or {}).items()},
    }
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return tags, flatten({k: v for k, v in resolved.items() if k not in NOT_PARAMS})


def _hydra_context() -> tuple[bool, list[str], Path | None, str | None]:
    """(is multirun, task overrides, job output dir, init choice); defaults outside Hydra."""
    if not HydraConfig.initialized():
        return False, [], None, None
    hc = HydraConfig.get()
    return (hc.mode == RunMode.MULTIRUN, list(hc.overrides.task),
            Path(hc.runtime.output_dir), hc.runtime.choices.get("init"))


def status_file(output_dir: Path | None) -> Path | None:
    """Where a job's status file goes (None outside Hydra: no output folder)."""
    return None if output_dir is None else output_dir / STATUS_FILE


def write_status(output_dir: Path | None, status: Mapping[str, Any] | list) -> None:
    """The job's status file (a list for a batched job: one status per seed)."""
    path = status_file(output_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(status))


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job; returns its status (name, outcome, test metrics)."""
    bind_job(cfg)  # GPU / torch threads for parallel launchers: before any CUDA call
    quiet_third_parties()
    multirun, overrides, output_dir, init_choice = _hydra_context()
    status: dict[str, Any] = {"sweep_id": os.environ.get(SWEEP_ID_ENV), "outcome": "failed"}
    swept = os.environ.get(SWEPT_KEYS_ENV, "").split(",") if multirun else []
    if cfg.get("seeds_per_job", 1) != 1:
        from initsweep.vectorized import train_batched  # torch.func only when asked for

        return train_batched(cfg, overrides, named_overrides(overrides, swept), init_choice,
                             multirun, output_dir)
    try:
        status["name"] = name = run_name(cfg, named_overrides(overrides, swept), init_choice)
        datamodule, module = build(cfg)
        diagnostics = build_diagnostics(cfg, datamodule)
    except ConfigError as err:
        status["error"] = str(err)
        write_status(output_dir, status)
        print(f"error: {err}", file=sys.stderr, flush=True)
        if multirun:
            return status
        sys.exit(2)

    client, experiment_id = open_experiment(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags, params = run_metadata(cfg, init_choice, datamodule)
    started = time.perf_counter()
    previous = find_runs(client, experiment_id, tags["config_hash"])
    done = None if cfg.get("force", False) else finished_run(previous)
    if done is not None:  # idempotent sweeps: the same config's result is already there
        status.update(outcome="skipped", run_id=done.info.run_id,
                      **{k: v for k, v in done.data.metrics.items() if k.startswith("test/")})
        write_status(output_dir, status)
        print(f"{name}: skipped, finished as run {done.info.run_id} (force=true reruns it)",
              flush=True)
        return status
    checkpoint = checkpoint_path(cfg.tracking, tracking_uri(cfg.tracking), tags["config_hash"])
    interrupted = None if cfg.get("force", False) else preempted_run(previous)
    if interrupted is not None:  # preempted before: reopen its run and resume its checkpoint
        run_id, resume_from = interrupted[0].info.run_id, str(interrupted[1])
        reopen_run(client, run_id)
        client.set_tag(run_id, "checkpoint", str(checkpoint))
        print(f"{name}: resuming run {run_id} from {resume_from}", flush=True)
    else:
        run_id = start_run(client, experiment_id, name, {**tags, "checkpoint": checkpoint}, params)
        resume_from = None
    preemption = PreemptionCheckpoint(checkpoint)
    status.update(run_id=run_id, parent_run_id=os.environ.get(PARENT_RUN_ENV))
    logger = BufferedMlflowLogger(client, run_id, cfg.tracking.get("flush_every", 1000))
    # Where a run's time goes (scripts/benchmark.py reads these): fit + test, diagnostics
    # measurements (inside fit), artifacts (CSV + plots, or their hand-off, and the run's end).
    timing = {}
    try:
        client.log_text(run_id, OmegaConf.to_yaml(redact_config(resolved)), "config.yaml")
        client.log_text(run_id, "\n".join(map(redact_override, overrides)) + "\n", "overrides.txt")
        tick = time.perf_counter()
        callbacks = [preemption, *([diagnostics] if diagnostics else [])]
        trainer = build_trainer(cfg.trainer, logger, callbacks)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
        timing["fit_test_s"] = time.perf_counter() - tick
        timing["diagnostics_s"] = diagnostics.seconds if diagnostics is not None else 0.0
        logger.log_metrics({"time/run_s": time.perf_counter() - started},
                           step=trainer.global_step)
        logger.flush()
        outcome = "ok" if module.diverged_at_step is None else "diverged"
        status.update(outcome=outcome, **{k: float(v) for k, v in results.items()})
        tick = time.perf_counter()
        complete_pending()  # the previous job's plots, drawn while this one trained
        losses = torch.stack(module.step_losses).tolist() if module.step_losses else []
        # diagnostics.csv, the plots (or their hand-off to the worker) and end_run
        finish_run(client, run_id, name, outcome, diagnostics, module.net, losses,
                   cfg.diagnostics.get("plots", True), plots_in_background(cfg),
                   status_file(output_dir))
        timing["artifacts_s"] = time.perf_counter() - tick
        timing["run_s"] = time.perf_counter() - started
        status["timing"] = timing
        checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    except PREEMPTION as err:
        preemption.restore_handler()
        logger.flush()
        mark_preempted(client, run_id)
        complete_pending()
        status.update(outcome=PREEMPTED, error=str(err) or "SIGTERM")
        write_status(output_dir, status)
        print(f"{name}: preempted; run {run_id} KILLED, the next launch resumes it from "
              f"{checkpoint}", file=sys.stderr, flush=True)
        if multirun:
            return status
        sys.exit(143)  # 128 + SIGTERM, what a scheduler expects
    except BaseException as err:
        status["error"] = f"{type(err).__name__}: {err}"
        try:
            logger.flush()  # nothing that was logged is lost
            client.log_text(run_id, traceback.format_exc(), "traceback.txt")
        finally:
            end_run(client, run_id, "failed")
            write_status(output_dir, status)
            complete_pending()
        print(f"{name}: FAILED ({status['error'].splitlines()[0]}); run {run_id} marked FAILED",
              file=sys.stderr, flush=True)
        if multirun and isinstance(err, Exception):
            return status
        raise
    write_status(output_dir, status)
    print(f"{name}: test/acc={status['test/acc']:.4f} test/loss={status['test/loss']:.4f} "
          f"[{status['outcome']}] {time.perf_counter() - started:.1f}s", flush=True)
    return status
