"""K init seeds of one config trained as one batched model: ``seeds_per_job=K``.

A sweep over seeds repeats the same small network K times; its cost is mostly per-step overhead,
not arithmetic. Here a job with ``seed=s`` trains seeds s, s+1, ..., s+K-1 at once:

- each model starts from exactly the weights its own ``init_seed`` gives alone (the same
  ``initialize_`` call), and sees exactly its own data order (its own ``data_seed`` generator);
- the K parameter sets are stacked (``torch.func.stack_module_state``) and the forward pass is
  ``vmap`` over them, so one step runs K models in a few batched matmuls;
- the loss is the sum of the K per-model mean losses, so each model's gradient is its own; SGD and
  Adam update element-wise, so each model's update is its own too;
- a model that diverges is frozen at its last good weights (its run is tagged ``diverged``) while
  the others go on; training stops when all have diverged.

Each seed is logged as an ordinary MLflow run (same name, params, tags, config hash and metrics as
when trained alone) plus the tag ``trained_together=<K>``. Per-layer diagnostics are not measured
in this mode. Batched matmuls sum in another order than single ones, so metrics match a sequential
run to float tolerance, not bit for bit (see tests/test_vectorized.py).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from mlflow.entities import Metric
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from initsweep.data import TensorDataModule
from initsweep.errors import ConfigError
from initsweep.module import OPTIMIZERS, InitSweepModule
from initsweep.redaction import redact_config
from initsweep.tracking import (
    SWEEP_ID_ENV,
    BufferedMlflowLogger,
    end_run,
    open_experiment,
    run_name,
    start_run,
)
from initsweep.train import (
    build,
    build_trainer,
    check_top_level,
    run_metadata,
    write_status,
)


def seed_configs(cfg: DictConfig, k: int) -> list[DictConfig]:
    """The K per-seed configs of a batched job: seed, init_seed and data_seed shifted by 0..K-1."""
    configs = []
    for offset in range(k):
        one = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        one.seed, one.init_seed, one.data_seed = (cfg.seed + offset, cfg.init_seed + offset,
                                                  cfg.data_seed + offset)
        one.seeds_per_job = 1
        configs.append(one)
    return configs


class StackedBatches:
    """Per-model mini-batches ``(K, B, ...)``: model k follows its own shuffling generator."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int,
                 generators: list[torch.Generator]) -> None:
        self.x, self.y, self.batch_size, self.generators = x, y, batch_size, generators

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # the same randperm draws as TensorBatches makes for each model alone
        orders = torch.stack([torch.randperm(len(self.y), generator=g) for g in self.generators])
        for start in range(0, len(self.y), self.batch_size):
            index = orders[:, start:start + self.batch_size]
            yield self.x[index], self.y[index]


class StackedSeedsModule(L.LightningModule):
    """K copies of one network, stacked; trains and evaluates them as one vmapped model."""

    def __init__(self, modules: list[InitSweepModule], optim_cfg: dict[str, Any],
                 loggers: list[BufferedMlflowLogger]) -> None:
        super().__init__()
        self.k = len(modules)
        self.optim_cfg = dict(optim_cfg)
        self.loggers_per_seed = loggers
        self.divergence_threshold = modules[0].divergence_threshold
        params, _ = stack_module_state([m.net for m in modules])
        self.names = list(params)
        # ParameterDict keys cannot hold dots; keep the stacked tensors as real Parameters so that
        # Lightning moves them to the device and the optimizer sees them.
        self.stacked = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(p.detach().clone())
                                         for n, p in params.items()})
        # The network's shape only (weights come through vmap); kept out of the module tree so
        # that Lightning's device moves never touch its meta tensors.
        object.__setattr__(self, "base", copy.deepcopy(modules[0].net).to("meta"))
        self.alive = torch.ones(self.k, dtype=torch.bool)
        self.diverged_at_step: list[int | None] = [None] * self.k
        self._frozen: dict[str, Tensor] = {}
        self._step_losses: list[tuple[int, Tensor]] = []  # (step, K losses), synced per epoch
        self._sums: dict[str, Tensor] = {}
        self._epoch_start_step = 0

    def _params(self) -> dict[str, Tensor]:
        return {n: self.stacked[n.replace(".", "__")] for n in self.names}

    def forward(self, x: Tensor, shared_input: bool = False) -> Tensor:
        def one(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return functional_call(self.base, params, (inputs,))

        return vmap(one, in_dims=(0, None if shared_input else 0))(self._params(), x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch  # (K, B, D), (K, B)
        logits = self(x)
        per_model = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        losses = per_model.view(self.k, -1).mean(dim=1)
        self._step_losses.append((self.global_step, torch.where(
            self.alive.to(losses.device), losses.detach(), torch.nan)))
        if self.divergence_threshold is not None:
            exploding = ~(losses.detach() <= self.divergence_threshold).cpu() & self.alive
            for k in exploding.nonzero().flatten().tolist():
                # frozen at the weights before this update, as a run alone stops there
                self.diverged_at_step[k] = self.global_step
                for name, p in self.stacked.items():
                    self._frozen.setdefault(name, p.detach().clone())[k] = p.detach()[k]
            self.alive &= ~exploding
        if not bool(self.alive.any()):
            self.trainer.should_stop = True
            return None
        return torch.where(self.alive.to(losses.device), losses, 0.0).sum()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._frozen:
            dead = ~self.alive
            with torch.no_grad():
                for name, p in self.stacked.items():
                    p[dead] = self._frozen[name][dead].to(p.device)

    def on_train_epoch_end(self) -> None:
        self._flush_losses()

    def _flush_losses(self) -> None:
        if not self._step_losses:
            return
        steps = [step for step, _ in self._step_losses]
        losses = torch.stack([loss for _, loss in self._step_losses]).cpu()  # one sync per epoch
        self._step_losses = []
        now = int(time.time() * 1000)
        for k, logger in enumerate(self.loggers_per_seed):
            logger.add([Metric("train/loss", v, now, step)
                        for step, v in zip(steps, losses[:, k].tolist(), strict=True)
                        if not math.isnan(v)])
            at = self.diverged_at_step[k]
            if at is not None and at in steps:
                logger.add([Metric("train/diverged_at_step", float(at), now, at)])

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x, shared_input=True)  # (K, B, C)
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(self.k), reduction="none")
        sums = {"loss": loss.view(self.k, -1).sum(dim=1),
                "acc": (logits.argmax(dim=2) == y).float().sum(dim=1),
                "n": torch.full((self.k,), float(len(y)), device=logits.device)}
        for key, value in sums.items():
            self._sums[key] = self._sums.get(key, 0) + value

    def _log_epoch(self, stage: str, step: int) -> dict[str, Tensor]:
        means = {f"{stage}/{key}": (self._sums[key] / self._sums["n"]).cpu()
                 for key in ("loss", "acc")}
        self._sums = {}
        now = int(time.time() * 1000)
        for k, logger in enumerate(self.loggers_per_seed):
            at = self.diverged_at_step[k]
            if stage == "val" and at is not None and at < self._epoch_start_step:
                continue  # a run alone stopped in an earlier epoch: no more validation
            model_step = step if at is None else min(step, at - (stage == "val"))
            logger.add([Metric(key, float(v[k]), now, model_step) for key, v in means.items()])
        return means

    def on_train_epoch_start(self) -> None:
        self._epoch_start_step = self.global_step

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.global_step - 1)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_epoch("test", self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = dict(self.optim_cfg)
        return OPTIMIZERS[cfg.pop("name")](self.parameters(), **cfg)


def stacked_loaders(datamodules: list[TensorDataModule]) -> StackedBatches:
    first = datamodules[0]
    return StackedBatches(*first.train, first.batch_size,
                          [dm.shuffle_generator for dm in datamodules])


def train_batched(cfg: DictConfig, named: list[str], init_choice: str | None, multirun: bool,
                  output_dir: Any) -> dict[str, Any]:
    """The job for ``seeds_per_job=K``: K runs, one batched fit. Returns the first seed's status
    with every seed's under ``"seeds"``; the status file lists them all for the sweep summary."""
    sweep_id = os.environ.get(SWEEP_ID_ENV)
    try:
        check_top_level(cfg)
        configs = seed_configs(cfg, cfg.seeds_per_job)
        names = [run_name(c, named, init_choice) for c in configs]
        datamodule, first = build(configs[0])
        modules, datamodules = [first], [datamodule]
        for one in configs[1:]:
            dm = copy.copy(datamodule)  # same tensors, its own data-order generator
            dm.shuffle_generator = torch.Generator().manual_seed(one.data_seed)
            init = OmegaConf.to_container(one.init, resolve=True)
            modules.append(InitSweepModule(
                one.model, init, one.optim, datamodule.in_features, datamodule.num_classes,
                one.init_seed,
                draw_batch=lambda n, s=one.init_seed: datamodule.probe_batch(n, s)[0],
                divergence_threshold=one.trainer.get("divergence_threshold")))
            datamodules.append(dm)
    except ConfigError as err:
        write_status(output_dir, [{"sweep_id": sweep_id, "outcome": "failed", "error": str(err)}])
        print(f"error: {err}", file=sys.stderr, flush=True)
        if multirun:
            return {"outcome": "failed", "error": str(err)}
        sys.exit(2)

    client, experiment_id = open_experiment(cfg)
    started = time.perf_counter()
    run_ids, loggers = [], []
    for one, name in zip(configs, names, strict=True):
        tags, params = run_metadata(one, init_choice, datamodule)
        tags["trained_together"] = len(configs)
        run_id = start_run(client, experiment_id, name, tags, params)
        client.log_text(run_id, OmegaConf.to_yaml(redact_config(OmegaConf.to_container(one))),
                        "config.yaml")
        run_ids.append(run_id)
        loggers.append(BufferedMlflowLogger(client, run_id, one.tracking.get("flush_every", 1000)))
    statuses = [{"sweep_id": sweep_id, "name": n, "run_id": r, "outcome": "failed"}
                for n, r in zip(names, run_ids, strict=True)]
    try:
        stacked = StackedSeedsModule(modules, dict(cfg.optim), loggers)
        trainer = build_trainer(cfg.trainer, False, [])
        trainer.fit(stacked, train_dataloaders=stacked_loaders(datamodules),
                    val_dataloaders=datamodule.val_dataloader())
        stacked._flush_losses()
        trainer.test(stacked, dataloaders=datamodule.test_dataloader(), verbose=False)
        elapsed = time.perf_counter() - started
        for k, (logger, status) in enumerate(zip(loggers, statuses, strict=True)):
            logger.add([Metric("time/run_s", elapsed / len(configs), int(time.time() * 1000),
                               trainer.global_step)])
            logger.flush()
            outcome = "ok" if stacked.diverged_at_step[k] is None else "diverged"
            status.update(outcome=outcome, **{key: float(v[k])
                                              for key, v in stacked.test_results.items()})
            end_run(client, status["run_id"], outcome)
    except BaseException as err:
        for logger, status in zip(loggers, statuses, strict=True):
            status["error"] = f"{type(err).__name__}: {err}"
            logger.flush()
            client.log_text(status["run_id"], traceback.format_exc(), "traceback.txt")
            end_run(client, status["run_id"], "failed")
        write_status(output_dir, statuses)
        print(f"{names[0]}..{names[-1]}: FAILED ({type(err).__name__}: {err})", file=sys.stderr)
        if multirun and isinstance(err, Exception):
            return statuses[0]
        raise
    write_status(output_dir, statuses)
    for status in statuses:
        print(f"{status['name']}: test/acc={status['test/acc']:.4f} "
              f"test/loss={status['test/loss']:.4f} [{status['outcome']}] "
              f"{elapsed / len(configs):.1f}s (1/{len(configs)} of a batched job)", flush=True)
    return {**statuses[0], "seeds": statuses}
