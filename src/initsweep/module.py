"""The LightningModule: builds the network, applies the configured initializer, trains it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from initsweep.errors import ConfigError, require
from initsweep.initializers import initialize_
from initsweep.models import build_mlp

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def check_optim(optim_cfg: Mapping[str, Any]) -> None:
    """Validate an ``optim`` config before anything is built (one-line errors)."""
    name = optim_cfg.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={name!r}: must be one of {', '.join(sorted(OPTIMIZERS))}")
    lr = optim_cfg.get("lr")
    require(isinstance(lr, (int, float)) and lr > 0, "optim.lr", lr, "must be a number > 0")
    momentum = optim_cfg.get("momentum", 0.0)
    require(0 <= momentum < 1, "optim.momentum", momentum, "must be in [0, 1)")
    require(optim_cfg.get("weight_decay", 0.0) >= 0, "optim.weight_decay",
            optim_cfg.get("weight_decay"), "must be >= 0")
    fused = optim_cfg.get("fused", "auto")
    require(fused in ("auto", True, False), "optim.fused", fused, "must be auto, true or false")


def make_optimizer(params: Iterable[Tensor], optim_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The configured optimizer over ``params`` (a run alone, stacked seeds, the benchmark).

    ``fused: auto`` takes torch's fused kernel (one pass over each parameter per step) where this
    torch has it for the parameters' device: the same update rule as the default per-op loop,
    ~3x faster for Adam on these small MLPs on CPU and ~6x on K stacked seeds (the per-op loop
    walks a (K, 256, 784) tensor ten times). Its last bits differ from the per-op loop, so
    ``fused: false`` reproduces runs made without it.
    """
    cfg = dict(optim_cfg)
    cls = OPTIMIZERS[cfg.pop("name")]
    params = list(params)
    fused = cfg.pop("fused", "auto")
    if fused == "auto":
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        try:
            fused = params[0].device.type in _get_fused_kernels_supported_devices()
        except Exception:  # a private helper: if it moves, fall back to the default loop
            fused = False
    return cls(params, fused=True, **cfg) if fused else cls(params, **cfg)


def hidden_sizes(model_cfg: Mapping[str, Any]) -> list[int]:
    """``hidden_sizes``, or ``depth`` hidden layers of ``width`` units when depth is set (S3)."""
    depth = model_cfg.get("depth")
    if depth is None:
        return list(model_cfg.get("hidden_sizes", []))
    require(isinstance(depth, int) and depth >= 0, "model.depth", depth,
            "must be null or an integer >= 0")
    return [model_cfg.get("width", 256)] * depth


class InitSweepModule(L.LightningModule):
    """An MLP classifier whose weights come from the Hydra ``init`` group.

    The initializer runs in ``__init__`` with its own generators seeded by ``init_seed``, so the
    starting weights are fixed before Lightning, the data order or anything else draws a number.
    """

    def __init__(self, model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any],
                 optim_cfg: Mapping[str, Any], in_features: int, num_classes: int,
                 init_seed: int,
                 draw_batch: Callable[[int], Tensor] | None = None,
                 divergence_threshold: float | None = 1e6) -> None:
        super().__init__()
        require(divergence_threshold is None or divergence_threshold > 0,
                "trainer.divergence_threshold", divergence_threshold, "must be null or > 0")
        check_optim(optim_cfg)
        self.optim_cfg = dict(optim_cfg)
        self.activation = model_cfg.get("activation", "relu")
        self.net = build_mlp(in_features, num_classes, hidden_sizes(model_cfg), self.activation,
                             model_cfg.get("bias", True))
        self.layer_specs = initialize_(self.net, init_cfg, init_seed, self.activation, draw_batch)
        self.divergence_threshold = divergence_threshold
        self.automatic_optimization = False  # training_step steps the optimizer itself
        self.diverged_at_step: int | None = None
        self.step_losses: list[Tensor] = []  # every training step's loss, kept on device
        self._loss_steps: list[int] = []
        self._logged_losses = 0

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
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
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
        every = self.trainer.log_every_n_steps
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
        # batch_size weights the epoch mean, so val/acc is the exact accuracy over the split.
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log(f"{stage}/acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(self.parameters(), self.optim_cfg)
