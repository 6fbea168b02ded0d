"""The diagnostics during training: a Lightning callback that measures the network
(``diagnostics.probe.measure``) at init, every ``every_n_steps`` steps and at the end, logs the
metrics and keeps every record for the plots and ``diagnostics.csv``.

It reads the module it is attached to through ``Members`` (the run alone's and the stacked
module's common view), so a renamed attribute fails type checking, not a fit.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import lightning as L
from torch import Tensor, nn

from initsweep.diagnostics.probe import LAYER_METRICS, RECORD_FIELDS, measure, probe_mode
from initsweep.models.layers import weight_layers, weight_of

if TYPE_CHECKING:  # matplotlib only where plots are drawn
    from initsweep.diagnostics.plots import PlotInputs


@runtime_checkable
class Members(Protocol):
    """What the callback reads of a module that trains one model or several (its members):
    ``training.module.RunModule`` (one member) and ``training.fit_stacked.StackedModule``."""

    def net_for(self, k: int) -> nn.Module:
        """Member k's network, with its current weights."""
        ...

    def logger_for(self, k: int) -> Any:
        """Member k's run's logger (``log_metrics``), or None."""
        ...

    def stopped_at(self, k: int) -> int | None:
        """The step member k stopped training at while the fit goes on; None while it trains
        (and for a module whose fit stops with it)."""
        ...


def members(pl_module: L.LightningModule) -> Members:
    if not isinstance(pl_module, Members):
        raise TypeError(
            f"DiagnosticsCallback needs a module with net_for, logger_for and "
            f"stopped_at; got {type(pl_module).__name__}"
        )
    return pl_module


class DiagnosticsCallback(L.Callback):
    """Measures the network at init and every ``every_n_steps`` steps; keeps every number.

    ``records`` (one dict per step and layer) are what the plots and the CSV artifact are made
    from; the metrics also go to the run's logger.

    It measures member ``member`` of the module it is attached to (a ``Members``): 0 for a run
    alone, k for the k-th model of a stacked one (``seeds_per_job``): its weights, its own run's
    logger, and nothing after the step that member stopped at, where a run trained alone would
    have stopped.
    """

    def __init__(
        self,
        probe: tuple[Tensor, Tensor],
        every_n_steps: int = 50,
        saturation_eps: float = 0.01,
        distinct_tol: float = 1e-6,
        member: int = 0,
    ) -> None:
        self.probe = probe
        self.every_n_steps = every_n_steps
        self.saturation_eps, self.distinct_tol = saturation_eps, distinct_tol
        self.member = member
        self._checked: Members | None = None
        self.records: list[dict[str, Any]] = []
        self.weights_at_init: list[Tensor] = []
        self._before_step: list[Tensor] | None = None
        self.seconds = 0.0  # time spent measuring (what diagnostics cost a run)
        self.cpu_seconds = 0.0  # the process's CPU time over the same spans

    @staticmethod
    def _tick() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def _tock(self, tick: tuple[float, float]) -> None:
        self.seconds += time.perf_counter() - tick[0]
        self.cpu_seconds += time.process_time() - tick[1]

    def _due(self, step: int) -> bool:
        return self.every_n_steps > 0 and step % self.every_n_steps == 0

    def _members(self, pl_module: L.LightningModule) -> Members:
        """The module's ``Members`` view, checked once per module (not on every batch)."""
        if self._checked is None or self._checked is not pl_module:
            self._checked = members(pl_module)
        return self._checked

    def _net(self, pl_module: L.LightningModule) -> nn.Module:
        return self._members(pl_module).net_for(self.member)

    def _stopped_at(self, pl_module: L.LightningModule) -> int | None:
        return self._members(pl_module).stopped_at(self.member)

    def _record(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        step: int,
        update_ratios: list[float] | None = None,
    ) -> None:
        tick = self._tick()
        x, y = (t.to(pl_module.device) for t in self.probe)
        net = self._net(pl_module)
        with probe_mode(net):
            rows = measure(net, x, y, self.saturation_eps, self.distinct_tol)
        metrics = {}
        for i, row in enumerate(rows):
            row["update_ratio"] = update_ratios[i] if update_ratios else math.nan
            self.records.append(
                {field: ({"step": step, "layer": i} | row)[field] for field in RECORD_FIELDS}
            )
            metrics.update(
                {f"diag/L{i}/{k}": row[k] for k in LAYER_METRICS if not math.isnan(row[k])}
            )
        # Timed before the rows go to the logger: a write of the logger's full buffer that these
        # rows trigger is MLflow's time, not the measurements' (docs/performance.md).
        self._tock(tick)
        logger = self._members(pl_module).logger_for(self.member)
        if logger is not None:
            logger.log_metrics(metrics, step=step)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.weights_at_init = [
            weight_of(w).detach().cpu().clone() for _, w in weight_layers(self._net(pl_module))
        ]
        self._record(trainer, pl_module, step=trainer.global_step)  # > 0 when resumed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # the step about to run is global_step + 1; keep its starting weights if it is measured
        if self._due(trainer.global_step + 1) and self._stopped_at(pl_module) is None:
            tick = self._tick()
            self._before_step = [
                weight_of(w).detach().clone() for _, w in weight_layers(self._net(pl_module))
            ]
            self._tock(tick)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if (
            self._before_step is None
            or not self._due(trainer.global_step)
            or self._stopped_at(pl_module) is not None
        ):
            return
        tick = self._tick()
        ratios = []
        for before, (_, layer) in zip(
            self._before_step, weight_layers(self._net(pl_module)), strict=True
        ):
            norm = float(before.norm())
            ratios.append(
                float((weight_of(layer).detach() - before).norm()) / norm if norm > 0 else math.nan
            )
        self._before_step = None
        self._tock(tick)
        self._record(trainer, pl_module, trainer.global_step, ratios)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the state training ended in is always measured, whatever the cadence
        stopped_at = self._stopped_at(pl_module)
        final_step = trainer.global_step if stopped_at is None else stopped_at
        if not self.records or self.records[-1]["step"] != final_step:
            self._record(trainer, pl_module, final_step)

    def plot_inputs(self, name: str, net: nn.Module, losses: Sequence[float]) -> PlotInputs:
        """What ``initsweep.diagnostics.plots.draw_all`` needs, as picklable lists and numpy arrays:
        ``net`` is the trained network (its weights are the histograms' "end"), ``losses`` every
        training step's loss, in order."""
        named = weight_layers(net)
        return {
            "name": name,
            "losses": list(losses),
            "records": list(self.records),
            "weights_at_init": [w.numpy() for w in self.weights_at_init],
            "weights_at_end": [weight_of(layer).detach().cpu().numpy() for _, layer in named],
            "layer_paths": [path for path, _ in named],
        }

    def write_csv(self, path: Path) -> Path:
        """``diagnostics.csv``: one row per step and weight layer, columns ``RECORD_FIELDS``."""
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(RECORD_FIELDS))
            writer.writeheader()
            writer.writerows(self.records)
        return path
