"""The LightningModule: builds the network, applies the configured initializer, trains it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from initsweep.errors import require
from initsweep.init.apply import initialize_
from initsweep.models.build import build_network
from initsweep.tracking.ui import exact_ratio
from initsweep.training.lr_schedules import check_schedule, make_scheduler
from initsweep.training.optimizers import check_optim, make_optimizer


def configure_optimization(module: L.LightningModule, optim_cfg: Mapping[str, Any],
                           schedule_cfg: Mapping[str, Any] | None) -> Any:
    """``configure_optimizers`` of a run alone or stacked: the optimizer, and its learning-rate
    scheduler when ``lr_schedule`` is not ``none`` (stepped by ``training_step``; Lightning saves
    and restores its state with every checkpoint)."""
    optimizer = make_optimizer(module.parameters(), optim_cfg)
    if schedule_cfg is None or schedule_cfg.get("name", "none") == "none":
        return optimizer
    trainer = module.trainer
    scheduler = make_scheduler(optimizer, schedule_cfg, int(trainer.estimated_stepping_batches),
                               trainer.max_epochs if trainer.max_steps == -1 else None)
    return [optimizer], [scheduler]


def step_schedule(module: L.LightningModule) -> None:
    """Advance the learning-rate schedule after an optimizer step (if there is one)."""
    scheduler = module.lr_schedulers()
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):  # one, as configured
        scheduler.step()


class EvaluatedModule(L.LightningModule):
    """The hooks one run and K stacked seeds share: validation and test go through the
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


class InitSweepModule(EvaluatedModule):
    """A classifier (``model._target_``'s network) whose weights come from the ``init`` group.

    The network is built for the data's ``input_shape`` and ``num_classes``; the initializer
    runs in ``__init__`` with its own generators seeded by ``init_seed``, so the starting weights
    are fixed before Lightning, the data order or anything else draws a number.
    """

    def __init__(self, model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any],
                 optim_cfg: Mapping[str, Any], input_shape: Sequence[int] | int,
                 num_classes: int, init_seed: int,
                 draw_batch: Callable[[int], Tensor] | None = None,
                 divergence_threshold: float | None = 1e6,
                 schedule_cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        require(divergence_threshold is None or divergence_threshold > 0,
                "trainer.divergence_threshold", divergence_threshold, "must be null or > 0")
        check_optim(optim_cfg)
        check_schedule(schedule_cfg)
        self.optim_cfg = dict(optim_cfg)
        self.schedule_cfg = dict(schedule_cfg) if schedule_cfg is not None else None
        self.activation = model_cfg.get("activation", "relu")
        self.input_shape = ((input_shape,) if isinstance(input_shape, int)
                            else tuple(input_shape))
        self.net = build_network(model_cfg, self.input_shape, num_classes, init_seed)
        self.model_target = str(self.net.__class__.__module__ + "." + self.net.__class__.__name__
                                if "_target_" not in model_cfg else model_cfg["_target_"])
        self.layer_specs = initialize_(self.net, init_cfg, init_seed, self.activation, draw_batch)
        self.divergence_threshold = divergence_threshold
        self.automatic_optimization = False  # training_step steps the optimizer itself
        self.diverged_at_step: int | None = None
        self.step_losses: list[Tensor] = []  # every training step's loss, kept on device
        self._loss_steps: list[int] = []
        self._logged_losses = 0
        self._eval_sums: list[tuple[Tensor, Tensor, int]] = []  # (correct, loss sum, n) per batch
        self.test_results: dict[str, float] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        # train/loss is kept here and handed to the logger once per epoch (log_train_losses), not
        # through self.log: Lightning's per-step result bookkeeping cost ~30% of a step here.
        self.step_losses.append(loss.detach())
        self._loss_steps.append(self.global_step)
        if self.divergence_threshold is not None and not (loss <= self.divergence_threshold):
            # Non-finite or exploding (S0's all-ones run logs 9,765,948 in epoch 1): stop cleanly,
            # skip this update, keep what was logged; the job still tests and tags the outcome.
            self.diverged_at_step = self.global_step
            self.trainer.should_stop = True
            return None
        # Manual optimization: the same zero_grad / backward / step as Lightning's automatic
        # mode, without its per-step closure and hook machinery (~0.15 ms a step, benchmark.py).
        optimizer = cast(LightningOptimizer, self.optimizers())  # one optimizer
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        step_schedule(self)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_train_losses()

    def log_train_losses(self) -> None:
        """Send the steps' losses not yet logged (one device sync per epoch): every
        ``trainer.log_every_n_steps``-th step's (default 1: all); the loss plot keeps them all."""
        if self.logger is None or self._logged_losses == len(self.step_losses):
            return
        new = torch.stack(self.step_losses[self._logged_losses:]).tolist()
        steps = self._loss_steps[self._logged_losses:]
        self._logged_losses = len(self.step_losses)
        every = cast(Any, self.trainer).log_every_n_steps  # set by Lightning at init
        for step, value in zip(steps, new, strict=True):
            if step % every == 0 or step == self.diverged_at_step:
                self.logger.log_metrics({"train/loss": value}, step=step)
        if self.diverged_at_step is not None and self.diverged_at_step in steps:
            self.logger.log_metrics({"train/diverged_at_step": float(self.diverged_at_step)},
                                    step=self.diverged_at_step)

    def transfer_batch_to_device(self, batch: Any, device: torch.device,
                                 dataloader_idx: int) -> Any:
        if device.type == "cpu":
            return batch  # preloaded CPU tensors: skip Lightning's generic collection walk
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        # Counts, not float32 means: the epoch's accuracy is correct / n exactly (0.1, not
        # 0.10000000149011612), one device sync per epoch, none of self.log's per-batch cost.
        self._eval_sums.append(((logits.argmax(1) == y).sum(),
                                F.cross_entropy(logits, y, reduction="sum"), len(y)))

    def _log_epoch(self, stage: str, step: int) -> dict[str, float]:
        """``<stage>/acc`` and ``<stage>/loss`` over the whole split, logged at ``step``."""
        sums, self._eval_sums = self._eval_sums, []
        n = sum(size for _, _, size in sums)
        correct = int(torch.stack([c for c, _, _ in sums]).sum())
        loss = float(torch.stack([v for _, v, _ in sums]).double().sum())
        values = {f"{stage}/acc": exact_ratio(correct, n), f"{stage}/loss": loss / n}
        if self.logger is not None:
            self.logger.log_metrics(values, step=step)
        return values
