"""Why an init fails: per-layer signal, gradient and symmetry measurements on a fixed probe batch.

Measured at init (before the first step), every ``every_n_steps`` steps and at the end of training,
per weight layer i:

  diag/L{i}/weight_norm               ||W|| (S4: zero layers turn non-zero from the output back)
  diag/L{i}/preact_mean, preact_std   Linear output on the probe batch
  diag/L{i}/act_mean, act_std         after the activation (the logits for the last layer)
  diag/L{i}/std_ratio                 act_std / input std (S3: >1 explodes, <1 vanishes)
  diag/L{i}/grad_norm                 ||dL/dW|| on the probe batch (backward signal)
  diag/L{i}/update_ratio              ||W_after - W_before|| / ||W_before|| for that step
  diag/L{i}/dead_frac                 ReLU units never active on the probe batch
  diag/L{i}/saturated_frac            tanh |a| > 1 - eps, sigmoid a < eps or a > 1 - eps (entries)
  diag/L{i}/distinct_units            rows of W distinct up to a tolerance (S0, S4: 1 = symmetric)
  diag/L{i}/effective_rank            exp(entropy of normalized singular values) of the activations

The same numbers go to ``diagnostics.csv`` (one row per step and layer) for analysis without plots.
Everything here runs under ``torch.no_grad`` except the probe gradient, which uses
``torch.autograd.grad`` so the training gradients are never touched.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initsweep.networks import linear_layers

if TYPE_CHECKING:  # matplotlib only where plots are drawn
    from initsweep.run_plots import PlotInputs

LAYER_METRICS = ("weight_norm", "preact_mean", "preact_std", "act_mean", "act_std", "std_ratio",
                 "grad_norm", "update_ratio", "dead_frac", "saturated_frac", "distinct_units",
                 "effective_rank")


def distinct_rows(weight: Tensor, tol: float = 1e-6) -> int:
    """Rows of ``weight`` not within ``tol`` (relative to the row norms) of an earlier row."""
    w = weight.detach().float().reshape(weight.shape[0], -1)
    dist = torch.cdist(w, w)
    scale = w.norm(dim=1).max().clamp_min(1e-12)
    close_to_earlier = torch.triu(dist <= tol * scale, diagonal=1).any(dim=0)
    return int((~close_to_earlier).sum())


def effective_rank(activations: Tensor) -> float:
    """Roy & Vetterli 2007: exp(H(p)), p = singular values / their sum; 1 for rank 1, 0 for 0."""
    a = activations.detach().float()
    if not torch.isfinite(a).all():
        return math.nan
    s = torch.linalg.svdvals(a)
    if float(s.sum()) <= 0:
        return 0.0  # all-zero activations: no direction at all
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _activation_of(net: nn.Sequential, layer_index: int,
                   layers: list[nn.Linear]) -> nn.Module | None:
    """The module right after weight layer ``layer_index`` if it is an activation."""
    modules = list(net)
    position = modules.index(layers[layer_index])
    follower = modules[position + 1] if position + 1 < len(modules) else None
    return None if follower is None or isinstance(follower, nn.Linear) else follower


def measure(net: nn.Sequential, x: Tensor, y: Tensor, saturation_eps: float = 0.01,
            distinct_tol: float = 1e-6) -> list[dict[str, float]]:
    """Forward/backward statistics of every weight layer on the probe batch ``(x, y)``."""
    layers = linear_layers(net)
    outputs: dict[nn.Module, Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: outputs.__setitem__(mod, out))
             for m in net]
    try:
        with torch.enable_grad():
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            finite = bool(torch.isfinite(loss))
            grads = torch.autograd.grad(loss, [layer.weight for layer in layers],
                                        allow_unused=True) if finite else [None] * len(layers)
    finally:
        for hook in hooks:
            hook.remove()
    rows: list[dict[str, float]] = []
    previous_std = float(x.float().std())
    for i, layer in enumerate(layers):
        pre = outputs[layer].detach()
        activation = _activation_of(net, i, layers)
        act = outputs[activation].detach() if activation is not None else pre
        act_std = float(act.std())
        row = {
            "weight_norm": float(layer.weight.detach().norm()),
            "preact_mean": float(pre.mean()), "preact_std": float(pre.std()),
            "act_mean": float(act.mean()), "act_std": act_std,
            "std_ratio": act_std / previous_std if previous_std > 0 else math.nan,
            "grad_norm": float(grads[i].norm()) if grads[i] is not None else math.nan,
            "dead_frac": float((act <= 0).all(dim=0).float().mean())
            if isinstance(activation, nn.ReLU) else 0.0,
            "saturated_frac": _saturated_frac(activation, act, saturation_eps),
            "distinct_units": float(distinct_rows(layer.weight, distinct_tol)),
            "effective_rank": effective_rank(act),
        }
        rows.append(row)
        previous_std = act_std
    return rows


def _saturated_frac(activation: nn.Module | None, act: Tensor, eps: float) -> float:
    if isinstance(activation, nn.Tanh):
        return float((act.abs() > 1 - eps).float().mean())
    if isinstance(activation, nn.Sigmoid):
        return float(((act < eps) | (act > 1 - eps)).float().mean())
    return 0.0


class DiagnosticsCallback(L.Callback):
    """Measures the network at init and every ``every_n_steps`` steps; keeps every number.

    ``records`` (one dict per step and layer) are what the plots and the CSV artifact are made
    from; the metrics also go to the run's logger.

    ``seed_index=k`` measures seed k of a ``StackedSeedsModule`` (``seeds_per_job``) instead of
    the module's ``net``: its weights, its own run's logger, and nothing after the step that seed
    diverged at, where a run trained alone would have stopped.
    """

    def __init__(self, probe: tuple[Tensor, Tensor], every_n_steps: int = 50,
                 saturation_eps: float = 0.01, distinct_tol: float = 1e-6,
                 seed_index: int | None = None) -> None:
        self.probe = probe
        self.every_n_steps = every_n_steps
        self.saturation_eps, self.distinct_tol = saturation_eps, distinct_tol
        self.seed_index = seed_index
        self.records: list[dict[str, float]] = []
        self.weights_at_init: list[Tensor] = []
        self._before_step: list[Tensor] | None = None
        self.seconds = 0.0  # time spent measuring (what diagnostics cost a run)

    def _due(self, step: int) -> bool:
        return self.every_n_steps > 0 and step % self.every_n_steps == 0

    def _net(self, pl_module: L.LightningModule) -> nn.Sequential:
        return pl_module.net if self.seed_index is None else pl_module.seed_net(self.seed_index)

    def _stopped_at(self, pl_module: L.LightningModule) -> int | None:
        """The step a stacked seed diverged at (it trains no more); None while it trains."""
        return None if self.seed_index is None else pl_module.diverged_at_step[self.seed_index]

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int,
                update_ratios: list[float] | None = None) -> None:
        tick = time.perf_counter()
        x, y = (t.to(pl_module.device) for t in self.probe)
        net = self._net(pl_module)
        was_training = net.training
        net.eval()
        rows = measure(net, x, y, self.saturation_eps, self.distinct_tol)
        net.train(was_training)
        metrics = {}
        for i, row in enumerate(rows):
            row["update_ratio"] = update_ratios[i] if update_ratios else math.nan
            self.records.append({"step": step, "layer": i, **row})
            metrics.update({f"diag/L{i}/{k}": v for k, v in row.items() if not math.isnan(v)})
        logger = (trainer.logger if self.seed_index is None
                  else pl_module.loggers_per_seed[self.seed_index])
        if logger is not None:
            logger.log_metrics(metrics, step=step)
        self.seconds += time.perf_counter() - tick

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.weights_at_init = [w.weight.detach().cpu().clone()
                                for w in linear_layers(self._net(pl_module))]
        self._record(trainer, pl_module, step=trainer.global_step)  # > 0 when resumed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        # the step about to run is global_step + 1; keep its starting weights if it is measured
        if self._due(trainer.global_step + 1) and self._stopped_at(pl_module) is None:
            self._before_step = [w.weight.detach().clone()
                                 for w in linear_layers(self._net(pl_module))]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if (self._before_step is None or not self._due(trainer.global_step)
                or self._stopped_at(pl_module) is not None):
            return
        ratios = []
        for before, layer in zip(self._before_step, linear_layers(self._net(pl_module)),
                                 strict=True):
            norm = float(before.norm())
            ratios.append(float((layer.weight.detach() - before).norm()) / norm
                          if norm > 0 else math.nan)
        self._before_step = None
        self._record(trainer, pl_module, trainer.global_step, ratios)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the state training ended in is always measured, whatever the cadence
        stopped_at = self._stopped_at(pl_module)
        final_step = trainer.global_step if stopped_at is None else stopped_at
        if not self.records or self.records[-1]["step"] != final_step:
            self._record(trainer, pl_module, final_step)

    def plot_inputs(self, name: str, net: nn.Module, losses: Sequence[float]) -> PlotInputs:
        """What ``initsweep.run_plots.draw_all`` needs, as picklable lists and numpy arrays:
        ``net`` is the trained network (its weights are the histograms' "end"), ``losses`` every
        training step's loss, in order."""
        return {"name": name, "losses": list(losses), "records": list(self.records),
                "weights_at_init": [w.numpy() for w in self.weights_at_init],
                "weights_at_end": [layer.weight.detach().cpu().numpy()
                                   for layer in linear_layers(net)]}

    def write_csv(self, path: Path) -> Path:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "layer", *LAYER_METRICS])
            writer.writeheader()
            writer.writerows(self.records)
        return path
