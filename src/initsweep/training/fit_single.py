"""A job's one run trained alone (``fit_single``); K members trained as one stacked model are
``training.fit_stacked.fit_stacked``. Both take the same arguments, one entry per run, and hand
``training.job`` a ``RunResult`` per run."""

from __future__ import annotations

from omegaconf import DictConfig

from initsweep.diagnostics.callback import DiagnosticsCallback
from initsweep.training.builders import build_trainer
from initsweep.training.data import TensorDataModule
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.module import RunModule
from initsweep.training.preemption import PreemptionCheckpoint
from initsweep.training.steps import RunResult, outcome_of


def fit_single(
    configs: list[DictConfig],
    loggers: list[BufferedMlflowLogger],
    modules: list[RunModule],
    datamodule: TensorDataModule,
    diagnostics: list[DiagnosticsCallback | None],
    preemption: PreemptionCheckpoint,
    resume_from: str | None,
) -> list[RunResult]:
    """Train and test one run's model with Lightning (each list holds that one run's entry)."""
    (cfg,), (logger,), (module,), (probe,) = configs, loggers, modules, diagnostics
    datamodule.seed_order(cfg.data_seed)  # as a run of its own: its own data order
    trainer = build_trainer(cfg, logger, [preemption, *([probe] if probe else [])])
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    module.log_train_losses()
    trainer.test(module, datamodule=datamodule, verbose=False)
    return [
        RunResult(
            outcome_of(module.diverged_at_step),
            dict(module.test_results),
            probe,
            module.net,
            module.losses.history[0],
            trainer.global_step,
            module.diverged_at_step,
        )
    ]
