"""What a run trained alone (``training.fit_single``) and K members trained as one stacked model
(``training.fit_stacked``) share, written once so that the two cannot drift apart.

- ``training.data.shuffled_order`` (beside the batches it orders): the data order of an epoch,
  drawn the same way by both fits from a member's own generator, so a member of a stacked model
  sees exactly the batches its run alone sees.
- ``is_diverged`` and ``outcome_of``: when a loss ends training, and what the run is tagged.
- ``optimizer_step``: the manual update (zero_grad, backward, step, the schedule's step).
- ``LossLog``: every step's train loss, kept on the device and written once per epoch, thinned
  to every ``trainer.log_every_n_steps``-th row plus the diverged step's.
- ``epoch_metrics`` and ``exact_ratio``: a split's accuracy and mean loss from its counts.
- ``RunResult``: what a fit hands ``training.job`` for each run it trained.

Everything here takes a member index or a list over members rather than "K seeds of one
config": a stacked model's members may differ in their configs (issue 26, packed sweeps).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from mlflow.entities import Metric
from torch import Tensor, nn

from initsweep.vocab import TRAIN_LOSS, Outcome

if TYPE_CHECKING:
    from initsweep.diagnostics.callback import DiagnosticsCallback

DIVERGED_AT = "train/diverged_at_step"


@dataclass
class RunResult:
    """What a fit hands back for one run."""

    outcome: Outcome  # ok | diverged
    metrics: dict[str, float]  # test/*
    diagnostics: DiagnosticsCallback | None
    net: nn.Module  # the trained network (the weight histograms' "end")
    losses: list[float]  # every training step's loss, in order
    step: int  # the global step training ended at
    diverged_at: int | None = None  # the step whose loss diverged (outcome diverged)


class MetricSink(Protocol):
    """Where a member's metric rows go (``training.logger.BufferedMlflowLogger``)."""

    def add(self, rows: list[Metric]) -> None: ...


def exact_ratio(count: float, total: float) -> float:
    """``count / total`` as a Python float from integer counts: accuracy = correct / n exactly
    (``0.1``), not a float32 mean (``0.10000000149011612``). Counts may arrive as floats or
    0-d tensors converted with ``float()``/``int()``; they must be whole numbers."""
    if count != int(count) or total != int(total) or int(total) <= 0:
        raise ValueError(f"exact_ratio({count!r}, {total!r}): needs whole counts and total > 0")
    return int(count) / int(total)


def is_diverged(loss: Tensor, threshold: float | None) -> Tensor:
    """Whether each loss ends training: non-finite or above ``threshold`` (None: never).
    Written ``not (loss <= threshold)`` so that NaN counts as diverged."""
    if threshold is None:
        return torch.zeros_like(loss, dtype=torch.bool)
    return ~(loss <= threshold)


def outcome_of(diverged_at: int | None) -> Outcome:
    """A trained run's outcome: diverged if its loss crossed the threshold, else ok."""
    return Outcome.OK if diverged_at is None else Outcome.DIVERGED


def optimizer_step(module: L.LightningModule, loss: Tensor) -> None:
    """One manual update: the same zero_grad / backward / step as Lightning's automatic mode,
    without its per-step closure and hook machinery; then the learning-rate schedule's step."""
    optimizer = cast(LightningOptimizer, module.optimizers())  # one optimizer
    optimizer.zero_grad(set_to_none=True)
    module.manual_backward(loss)
    optimizer.step()
    scheduler = module.lr_schedulers()
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):  # one, as configured
        scheduler.step()


def epoch_metrics(stage: str, correct: int, loss_sum: float, n: int) -> dict[str, float]:
    """``<stage>/acc`` (correct / n, exact) and ``<stage>/loss`` (the mean) over a whole split."""
    return {f"{stage}/acc": exact_ratio(correct, n), f"{stage}/loss": loss_sum / n}


class LossLog:
    """The train losses of ``members`` models trained in one loop.

    ``append`` keeps each step's losses on the device, with which members trained that step;
    ``flush`` syncs them once (an epoch's worth), keeps each member's values in ``history`` (what
    the loss plot draws; a non-finite loss included) and sends each member's sink the rows
    MLflow keeps: every ``every``-th step's, the step it diverged at, and
    ``train/diverged_at_step`` once.
    """

    def __init__(self, members: int) -> None:
        self.members = members
        self.history: list[list[float]] = [[] for _ in range(members)]
        self._steps: list[int] = []
        self._losses: list[Tensor] = []
        self._trained: list[Tensor | None] = []

    def append(self, step: int, losses: Tensor, trained: Tensor | None = None) -> None:
        """The losses of ``step``: a scalar (one member) or one per member; ``trained`` (a CPU
        bool per member, None: all) says whose loss counts (a frozen member's does not)."""
        self._steps.append(step)
        self._losses.append(losses.detach())
        self._trained.append(trained)

    def flush(
        self, sinks: Sequence[MetricSink | None], every: int, diverged_at: Sequence[int | None]
    ) -> None:
        if not self._losses:
            return
        steps = self._steps
        values = torch.stack(self._losses).reshape(len(steps), self.members).cpu().tolist()
        trained = [[True] * self.members if t is None else t.tolist() for t in self._trained]
        self._steps, self._losses, self._trained = [], [], []
        now = int(time.time() * 1000)
        for k, sink in enumerate(sinks):
            rows = [
                (step, row[k])
                for step, row, alive in zip(steps, values, trained, strict=True)
                if alive[k]
            ]
            self.history[k].extend(v for _, v in rows)
            if sink is None:
                continue
            at = diverged_at[k]
            metrics = [
                Metric(TRAIN_LOSS, v, now, step)
                for step, v in rows
                if step % every == 0 or step == at
            ]
            if at is not None and at in steps:
                metrics.append(Metric(DIVERGED_AT, float(at), now, at))
            sink.add(metrics)


def log_every_n_steps(module: L.LightningModule) -> int:
    """``trainer.log_every_n_steps`` of the module's trainer (set by Lightning at init)."""
    return int(cast(Any, module.trainer).log_every_n_steps)
