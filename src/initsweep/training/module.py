"""The LightningModule of a run alone: builds the network, applies the configured initializer,
trains it. ``ClassifierModule`` holds the hooks it shares with
``training.fit_stacked.StackedModule``; the step-level bookkeeping both share is
``training.steps``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initsweep.errors import require
from initsweep.init.apply import initialize_
from initsweep.models.build import build_network
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.lr_schedules import check_schedule, make_scheduler
from initsweep.training.optimizers import check_optim, make_optimizer
from initsweep.training.steps import (
    LossLog,
    epoch_metrics,
    is_diverged,
    log_every_n_steps,
    optimizer_step,
)


def configure_optimization(
    module: L.LightningModule, optim_cfg: Mapping[str, Any], schedule_cfg: Mapping[str, Any] | None
) -> Any:
    """``configure_optimizers`` of a run alone or stacked: the optimizer, and its learning-rate
    scheduler when ``lr_schedule`` is not ``none`` (stepped by ``training_step``; Lightning saves
    and restores its state with every checkpoint)."""
    optimizer = make_optimizer(module.parameters(), optim_cfg)
    if schedule_cfg is None or schedule_cfg.get("name", "none") == "none":
        return optimizer
    trainer = module.trainer
    scheduler = make_scheduler(
        optimizer,
        schedule_cfg,
        int(trainer.estimated_stepping_batches),
        trainer.max_epochs if trainer.max_steps == -1 else None,
    )
    return [optimizer], [scheduler]


class ClassifierModule(L.LightningModule):
    """The hooks a run alone and K stacked members share: validation and test go through the
    subclass's ``_evaluate`` (per batch) and ``_log_epoch`` (per split), the optimizer and
    schedule come from ``optim_cfg`` and ``schedule_cfg``."""

    optim_cfg: Mapping[str, Any]
    schedule_cfg: Mapping[str, Any] | None
    test_results: Any

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        raise NotImplementedError

    def _log_epoch(self, stage: str, step: int) -> Any:
        raise NotImplementedError

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.global_step - 1)  # the last step trained before it

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        # measured once, at the run's end: step 0, so the MLflow UI draws one bar per run
        self.test_results = self._log_epoch("test", 0)

    def configure_optimizers(self) -> Any:
        return configure_optimization(self, self.optim_cfg, self.schedule_cfg)


class RunModule(ClassifierModule):
    """One run's classifier (``model._target_``'s network), its weights from the ``init`` group.

    The network is built for the data's ``input_shape`` and ``num_classes``; the initializer
    runs in ``__init__`` with its own generators seeded by ``init_seed``, so the starting weights
    are fixed before Lightning, the data order or anything else draws a number.
    """

    def __init__(
        self,
        model_cfg: Mapping[str, Any],
        init_cfg: Mapping[str, Any],
        optim_cfg: Mapping[str, Any],
        input_shape: Sequence[int] | int,
        num_classes: int,
        init_seed: int,
        divergence_threshold: float | None,
        draw_batch: Callable[[int], Tensor] | None = None,
        schedule_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_divergence_threshold(divergence_threshold)
        check_optim(optim_cfg)
        check_schedule(schedule_cfg)
        self.optim_cfg = dict(optim_cfg)
        self.schedule_cfg = dict(schedule_cfg) if schedule_cfg is not None else None
        self.activation = model_cfg.get("activation", "relu")
        self.input_shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        self.net = build_network(model_cfg, self.input_shape, num_classes, init_seed)
        self.model_target = str(
            self.net.__class__.__module__ + "." + self.net.__class__.__name__
            if "_target_" not in model_cfg
            else model_cfg["_target_"]
        )
        self.layer_specs = initialize_(self.net, init_cfg, init_seed, self.activation, draw_batch)
        self.divergence_threshold = divergence_threshold
        self.automatic_optimization = False  # training_step steps the optimizer itself
        self.diverged_at_step: int | None = None
        self.losses = LossLog(1)  # every training step's loss, kept on device until epoch end
        self._eval_sums: list[tuple[Tensor, Tensor, int]] = []  # (correct, loss sum, n) per batch
        self.test_results: dict[str, float] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        # train/loss goes to the logger once per epoch (LossLog), not through self.log, whose
        # per-step result bookkeeping is a large part of a small network's step
        # (docs/performance.md).
        self.losses.append(self.global_step, loss)
        if self.divergence_threshold is not None and is_diverged(loss, self.divergence_threshold):
            # Non-finite or exploding: stop cleanly, skip this update, keep what was logged; the
            # job still tests and tags the outcome.
            self.diverged_at_step = self.global_step
            self.trainer.should_stop = True
            return None
        optimizer_step(self, loss)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_train_losses()

    def log_train_losses(self) -> None:
        """Send the steps' losses not yet logged (one device sync per epoch)."""
        sink = self.logger if isinstance(self.logger, BufferedMlflowLogger) else None
        self.losses.flush([sink], log_every_n_steps(self), [self.diverged_at_step])

    # The diagnostics callback's view of the module (``diagnostics.callback.Members``): one
    # member, which stops with the fit.
    def net_for(self, k: int) -> nn.Module:
        return self.net

    def logger_for(self, k: int) -> Any:
        return self.logger

    def stopped_at(self, k: int) -> int | None:
        return None

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if device.type == "cpu":
            return batch  # preloaded CPU tensors: skip Lightning's generic collection walk
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        # Counts, not float32 means: the epoch's accuracy is correct / n exactly (0.1, not
        # 0.10000000149011612), one device sync per epoch, none of self.log's per-batch cost.
        self._eval_sums.append(
            ((logits.argmax(1) == y).sum(), F.cross_entropy(logits, y, reduction="sum"), len(y))
        )

    def _log_epoch(self, stage: str, step: int) -> dict[str, float]:
        """``<stage>/acc`` and ``<stage>/loss`` over the whole split, logged at ``step``."""
        sums, self._eval_sums = self._eval_sums, []
        n = sum(size for _, _, size in sums)
        correct = int(torch.stack([c for c, _, _ in sums]).sum())
        loss = float(torch.stack([v for _, v, _ in sums]).double().sum())
        values = epoch_metrics(stage, correct, loss, n)
        if self.logger is not None:
            self.logger.log_metrics(values, step=step)
        return values


def check_divergence_threshold(threshold: Any) -> None:
    """``job.divergence_threshold``: null (never stop) or a number > 0."""
    require(
        threshold is None
        or (
            isinstance(threshold, (int, float))
            and not isinstance(threshold, bool)
            and threshold > 0
        ),
        "job.divergence_threshold",
        threshold,
        "must be null or a number > 0",
    )
