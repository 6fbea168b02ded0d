"""How a job's model is trained: one run here (``fit_single``); K stacked seeds in
``training.fit_stacked.fit_stacked``. Both hand ``training.job`` a ``RunResult`` per run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from initsweep.diagnostics.probe import DiagnosticsCallback
from initsweep.training.builders import build_diagnostics, build_trainer
from initsweep.training.data import TensorDataModule
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.module import InitSweepModule
from initsweep.training.preemption import PreemptionCheckpoint


@dataclass
class RunResult:
    """What a fit hands back for one run."""

    outcome: str  # ok | diverged
    metrics: dict[str, float]  # test/*
    diagnostics: DiagnosticsCallback | None
    net: nn.Module  # the trained network (the weight histograms' "end")
    losses: list[float]  # every training step's loss, in order
    step: int  # the global step training ended at
    diverged_at: int | None = None  # the step whose loss diverged (outcome diverged)


def fit_single(cfg: DictConfig, logger: BufferedMlflowLogger, module: InitSweepModule,
               datamodule: TensorDataModule, preemption: PreemptionCheckpoint,
               resume_from: str | None) -> RunResult:
    """Train and test one run's model with Lightning."""
    diagnostics = build_diagnostics(cfg, datamodule)
    trainer = build_trainer(cfg, logger, [preemption, *([diagnostics] if diagnostics else [])])
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    trainer.test(module, datamodule=datamodule, verbose=False)
    losses = torch.stack(module.step_losses).tolist() if module.step_losses else []
    outcome = "ok" if module.diverged_at_step is None else "diverged"
    return RunResult(outcome, dict(module.test_results), diagnostics, module.net, losses,
                     trainer.global_step, module.diverged_at_step)
