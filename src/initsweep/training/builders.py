"""From a composed config to the objects a job trains with: data, model, diagnostics, Trainer.

Every check a user can fail is made here, before ``training.job`` creates an MLflow run, so bad
input leaves no run behind: each raises ``ConfigError`` with one line naming the field.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any, cast

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from initsweep.diagnostics.callback import DiagnosticsCallback
from initsweep.errors import ConfigError, require
from initsweep.launch.slurm import in_slurm_task
from initsweep.naming import SEED_KEYS, as_dict
from initsweep.training.data import TensorDataModule
from initsweep.training.module import RunModule, check_divergence_threshold
from initsweep.training.optimizers import check_fused

# Trainer arguments the job sets itself (``build_trainer``): not for ``trainer.*`` overrides.
SET_BY_JOB = (
    "logger",
    "callbacks",
    "enable_progress_bar",
    "enable_model_summary",
    "enable_checkpointing",
    "num_sanity_val_steps",
)


def check_top_level(cfg: Mapping[str, Any]) -> None:
    """The seeds and ``seeds_per_job``: integers, >= 0 (>= 1 for ``seeds_per_job``)."""
    for key in (*SEED_KEYS, "seeds_per_job"):
        value = cfg.get(key, 1)
        least = 1 if key == "seeds_per_job" else 0
        require(
            isinstance(value, int) and not isinstance(value, bool) and value >= least,
            key,
            value,
            f"must be an integer >= {least}",
        )


def check_trainer(trainer_cfg: Mapping[str, Any]) -> None:
    """Only Lightning's own Trainer arguments; the ones a user typically shrinks, in range (the
    rest Lightning checks itself)."""
    known = [
        name
        for name in inspect.signature(L.Trainer.__init__).parameters
        if name != "self" and name not in SET_BY_JOB
    ]
    for key in trainer_cfg:
        require(
            key in known,
            f"trainer.{key}",
            trainer_cfg[key],
            f"not an argument of lightning.Trainer; valid: {', '.join(sorted(known))}",
        )
    epochs = trainer_cfg.get("max_epochs")
    require(
        isinstance(epochs, int) and epochs >= 1,
        "trainer.max_epochs",
        epochs,
        "must be an integer >= 1",
    )
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer_cfg.get(key)
        require(
            value is None or (isinstance(value, (int, float)) and value > 0),
            f"trainer.{key}",
            value,
            "must be null, an int >= 1 or a fraction in (0, 1]",
        )


def build_data(cfg: DictConfig) -> TensorDataModule:
    """The datamodule of ``cfg.data``, loaded (its split fixed by ``data.split_seed``)."""
    try:
        datamodule: TensorDataModule = instantiate(cfg.data, data_seed=cfg.data_seed)
    except Exception as err:  # Hydra wraps what the constructor raised
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"data: {str(cause).splitlines()[0]}") from None  # e.g. unknown key
    datamodule.setup()
    return datamodule


def build_module(cfg: DictConfig, datamodule: TensorDataModule) -> RunModule:
    """The LightningModule of one seed: network, initialized from ``cfg.init`` by ``init_seed``."""
    init = as_dict(cfg.init)
    schedule = cfg.get("lr_schedule")
    return RunModule(
        cfg.model,
        init,
        cfg.optim,
        datamodule.input_shape,
        datamodule.num_classes,
        cfg.init_seed,
        cfg.job.divergence_threshold,
        draw_batch=lambda size: datamodule.probe_batch(size, cfg.init_seed)[0],
        schedule_cfg=(
            cast(dict[str, Any], OmegaConf.to_container(schedule, resolve=True))
            if schedule is not None
            else None
        ),
    )


def build(cfg: DictConfig) -> tuple[TensorDataModule, RunModule]:
    """Data and model from config; raises ConfigError before anything is tracked."""
    check_top_level(cfg)
    check_trainer(cfg.trainer)
    check_divergence_threshold(cfg.job.divergence_threshold)
    check_fused(cfg.optim, training_device(cfg.trainer))
    L.seed_everything(cfg.seed, workers=False, verbose=False)  # `is not None` semantics: 0 seeds
    datamodule = build_data(cfg)
    return datamodule, build_module(cfg, datamodule)


def plots_in_background(cfg: DictConfig) -> bool:
    """Whether this job's plots are drawn by a worker process while the next job trains.

    ``diagnostics.background_plots: auto`` means yes in a multirun whose jobs run one after another
    in this process (Hydra's basic launcher): there is a next job to overlap with. A single run, or
    jobs in their own processes (joblib, SLURM), draw inline: nothing would overlap.
    """
    choice = cfg.diagnostics.background_plots
    require(
        choice in ("auto", True, False),
        "diagnostics.background_plots",
        choice,
        "must be auto, true or false",
    )
    if choice != "auto":
        return choice
    if not HydraConfig.initialized():
        return False
    hydra_cfg = HydraConfig.get()
    return (
        hydra_cfg.mode == RunMode.MULTIRUN
        and hydra_cfg.launcher._target_.rsplit(".", 1)[-1] == "BasicLauncher"
    )


def check_diagnostics(cfg: DictConfig) -> None:
    """The ``diagnostics`` config, checked without building anything (before any run exists)."""
    diag = cfg.diagnostics
    if not diag.enabled:
        return
    require(
        diag.every_n_steps >= 0,
        "diagnostics.every_n_steps",
        diag.every_n_steps,
        "must be an integer >= 0 (0: at init only)",
    )
    require(
        diag.probe_size >= 2, "diagnostics.probe_size", diag.probe_size, "must be an integer >= 2"
    )
    plots_in_background(cfg)  # validates diagnostics.background_plots


def build_diagnostics(
    cfg: DictConfig, datamodule: TensorDataModule, member: int = 0
) -> DiagnosticsCallback | None:
    """The diagnostics callback of a run (member ``member`` of a stacked model), or None."""
    check_diagnostics(cfg)
    diag = cfg.diagnostics
    if not diag.enabled:
        return None
    # The probe is the same for every run of a sweep (its own seed), so runs compare directly.
    probe = datamodule.probe_batch(diag.probe_size, diag.probe_seed)
    return DiagnosticsCallback(
        probe, diag.every_n_steps, diag.saturation_eps, diag.distinct_tol, member
    )


def training_device(trainer_cfg: Mapping[str, Any]) -> str:
    """The device type Lightning's ``trainer.accelerator`` picks in this process (cuda where a GPU
    is visible under ``auto``/``gpu``/``cuda``, mps likewise, else cpu): what the optimizer's
    kernels must exist for."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cluster_environment() -> Any:
    """Where a job runs, told to Lightning rather than left to its detection: inside a SLURM task
    its SLURM environment *without* its own requeue (submitit requeues, on USR2: two requeuers
    and Lightning's ``hpc_ckpt`` auto-resume would fight over the job), elsewhere the plain one
    (one process per job). Passing it also spares every job outside SLURM Lightning's "srun is
    available but not used" check on a machine where SLURM is installed (a login node)."""
    # the cluster environments only when a job runs under SLURM
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    if in_slurm_task():
        return SLURMEnvironment(auto_requeue=False)
    return LightningEnvironment()


def build_trainer(cfg: DictConfig, logger: Any, callbacks: list[L.Callback]) -> L.Trainer:
    """Lightning's Trainer from ``cfg.trainer`` (Lightning's own keys) and ``cfg.job``; the
    cluster environment is ours (``cluster_environment``) unless ``trainer.plugins`` is set."""
    progress_bar = cfg.job.progress_bar
    if progress_bar is None:
        progress_bar = sys.stdout.isatty()
    resolved = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(resolved, dict)
    trainer_cfg = {str(k): v for k, v in resolved.items() if v is not None}
    trainer_cfg.setdefault("plugins", [cluster_environment()])
    return L.Trainer(
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **trainer_cfg,
    )
