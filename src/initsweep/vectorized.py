"""K init seeds of one config trained as one batched model: ``seeds_per_job=K``.

A sweep over seeds repeats the same small network K times; its cost is mostly per-step overhead,
not arithmetic. Here a job with ``seed=s`` trains seeds s, s+1, ..., s+K-1 at once:

- each model starts from exactly the weights its own ``init_seed`` gives alone (the same
  ``initialize_`` call), and sees exactly its own data order (its own ``data_seed`` generator);
- the K parameter sets are stacked (``torch.func.stack_module_state``) and each layer of the
  forward pass is one batched matmul over them, so one step runs K models in a few kernels (and
  one fused optimizer step, see ``make_optimizer``);
- the loss is the sum of the K per-model mean losses, so each model's gradient is its own; SGD and
  Adam update element-wise, so each model's update is its own too;
- a model that diverges is frozen at its last good weights (its run is tagged ``diverged``) while
  the others go on; training stops when all have diverged.

Each seed is logged as an ordinary MLflow run: the same name, params, tags, config hash, metrics,
per-layer diagnostics (measured on each seed's own weights, at the same steps) and artifacts as
when trained alone, plus the tag ``trained_together=<K>``. Seeds whose config already has a
FINISHED run are skipped (``force=true`` reruns them), and SIGTERM ends the job as in a single
run: every run KILLED with ``outcome=preempted``, resumed by the next launch from the batched
checkpoint. Batched matmuls sum in another order than single ones, so metrics match a sequential
run to float tolerance, not bit for bit (see tests/test_vectorized.py).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from mlflow.entities import Metric
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.func import stack_module_state

from initsweep.artifacts import complete_pending, finish_run
from initsweep.diagnostics import DiagnosticsCallback
from initsweep.errors import ConfigError
from initsweep.module import InitSweepModule, make_optimizer
from initsweep.redaction import redact_config, redact_override
from initsweep.resume import (
    PREEMPTED,
    PREEMPTION,
    PreemptionCheckpoint,
    checkpoint_path,
    find_runs_of_group,
    finished_run,
    mark_preempted,
    preempted_run,
    reopen_run,
)
from initsweep.tracking import (
    PARENT_RUN_ENV,
    SEED_KEYS,
    SWEEP_ID_ENV,
    BufferedMlflowLogger,
    end_run,
    open_experiment,
    run_name,
    start_run,
    tracking_uri,
)
from initsweep.train import (
    build,
    build_diagnostics,
    build_trainer,
    check_top_level,
    plots_in_background,
    run_metadata,
    status_file,
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


def seed_overrides(overrides: Sequence[str], one: DictConfig, base_seed: int) -> list[str]:
    """The command-line overrides a job of this seed alone would have had (overrides.txt)."""
    out, keys = [], set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        keys.add(key)
        if key != "seeds_per_job":
            out.append(f"{key}={one[key]}" if key in SEED_KEYS else override)
    if "seed" not in keys and one.seed != base_seed:
        out.append(f"seed={one.seed}")
    return out


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
    """K copies of one network, stacked; trains and evaluates them as one batched model.

    ``generators`` are the seeds' data-order generators: saved in checkpoints with the frozen
    (diverged) seeds, so a resumed job continues exactly where it stopped.
    """

    def __init__(self, modules: list[InitSweepModule], optim_cfg: dict[str, Any],
                 loggers: list[BufferedMlflowLogger],
                 generators: Sequence[torch.Generator] = ()) -> None:
        super().__init__()
        self.k = len(modules)
        self.optim_cfg = dict(optim_cfg)
        self.loggers_per_seed = loggers
        self.generators = list(generators)
        self.divergence_threshold = modules[0].divergence_threshold
        self.automatic_optimization = False  # training_step steps, then re-freezes dead seeds
        params, _ = stack_module_state([m.net for m in modules])
        # ParameterDict keys cannot hold dots; keep the stacked tensors as real Parameters so that
        # Lightning moves them to the device and the optimizer sees them.
        self.stacked = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(p.detach().clone())
                                         for n, p in params.items()})
        # The network's layers in order, kept out of the module tree so that Lightning's device
        # moves and state_dict never see them: forward() walks it, and each seed's ordinary
        # network for the diagnostics is a copy of it.
        object.__setattr__(self, "_template", copy.deepcopy(modules[0].net))
        self._seed_nets: dict[int, nn.Sequential] = {}
        self.alive = torch.ones(self.k, dtype=torch.bool)
        self.diverged_at_step: list[int | None] = [None] * self.k
        self._frozen: dict[str, Tensor] = {}
        self._step_losses: list[tuple[int, Tensor]] = []  # (step, K losses), synced per epoch
        self.loss_history: list[list[float]] = [[] for _ in range(self.k)]  # for the loss plots
        self._sums: dict[str, Tensor] = {}
        self._epoch_start_step = 0

    def seed_net(self, k: int) -> nn.Sequential:
        """Seed k as an ordinary network holding a copy of its current weights."""
        net = self._seed_nets.get(k)
        if net is None:
            net = self._seed_nets[k] = copy.deepcopy(self._template).to(self.device)
        with torch.no_grad():
            for name, param in net.named_parameters():
                param.copy_(self.stacked[name.replace(".", "__")][k])
        return net

    def forward(self, x: Tensor) -> Tensor:
        """All K models at once: ``x`` is (K, B, D), or (B, D) shared by all; returns (K, B, C).

        Each Linear is one batched matmul over the stacked weights, each activation acts
        elementwise: the same arithmetic as K separate forwards, without vmap's per-call cost.
        """
        h = x if x.dim() == 3 else x.expand(self.k, *x.shape)
        for name, layer in self._template.named_children():
            if isinstance(layer, nn.Linear):
                weight = self.stacked[f"{name}__weight"].transpose(1, 2)  # (K, in, out)
                bias = self.stacked.get(f"{name}__bias")
                h = (torch.bmm(h, weight) if bias is None
                     else torch.baddbmm(bias.unsqueeze(1), h, weight))
            else:
                h = layer(h)
        return h

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
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(torch.where(self.alive.to(losses.device), losses, 0.0).sum())
        optimizer.step()
        if self._frozen:  # a zero gradient still moves Adam's weights: put the dead ones back
            dead = (~self.alive).to(losses.device)
            with torch.no_grad():
                for name, p in self.stacked.items():
                    p[dead] = self._frozen[name].to(p.device)[dead]
        return losses.detach()

    def on_train_epoch_end(self) -> None:
        self._flush_losses()

    def _flush_losses(self) -> None:
        if not self._step_losses:
            return
        steps = [step for step, _ in self._step_losses]
        losses = torch.stack([loss for _, loss in self._step_losses]).cpu()  # one sync per epoch
        self._step_losses = []
        now = int(time.time() * 1000)
        every = self.trainer.log_every_n_steps  # as InitSweepModule.log_train_losses
        for k, logger in enumerate(self.loggers_per_seed):
            rows = [(step, v) for step, v in zip(steps, losses[:, k].tolist(), strict=True)
                    if not math.isnan(v)]
            self.loss_history[k].extend(v for _, v in rows)
            at = self.diverged_at_step[k]
            logger.add([Metric("train/loss", v, now, step) for step, v in rows
                        if step % every == 0 or step == at])
            if at is not None and at in steps:
                logger.add([Metric("train/diverged_at_step", float(at), now, at)])

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)  # (K, B, C): every model on the same batch
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
        return make_optimizer(self.parameters(), self.optim_cfg)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stacked_seeds"] = {
            "generators": [g.get_state() for g in self.generators],
            "alive": self.alive.clone(), "diverged_at_step": list(self.diverged_at_step),
            "frozen": {name: t.cpu() for name, t in self._frozen.items()}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["stacked_seeds"]
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        self.alive = state["alive"].clone()
        self.diverged_at_step = list(state["diverged_at_step"])
        self._frozen = dict(state["frozen"])


def batch_checkpoint(cfg: DictConfig, config_hashes: Sequence[str]) -> Path:
    """One checkpoint per set of seeds trained together (named by their config hashes)."""
    key = hashlib.sha256(",".join(config_hashes).encode()).hexdigest()[:12]
    return checkpoint_path(cfg.tracking, tracking_uri(cfg.tracking), f"batch-{key}")


def train_batched(cfg: DictConfig, overrides: Sequence[str], named: list[str],
                  init_choice: str | None, multirun: bool, output_dir: Any) -> dict[str, Any]:
    """The job for ``seeds_per_job=K``: K runs, one batched fit. Returns the first seed's status
    with every seed's under ``"seeds"``; the status file lists them all for the sweep summary."""
    sweep_id = os.environ.get(SWEEP_ID_ENV)
    try:
        check_top_level(cfg)
        configs = seed_configs(cfg, cfg.seeds_per_job)
        names = [run_name(c, named, init_choice) for c in configs]
        datamodule, first = build(configs[0])  # validates data, model, init, optim, trainer
        build_diagnostics(configs[0], datamodule)  # and the diagnostics config
    except ConfigError as err:
        write_status(output_dir, [{"sweep_id": sweep_id, "outcome": "failed", "error": str(err)}])
        print(f"error: {err}", file=sys.stderr, flush=True)
        if multirun:
            return {"outcome": "failed", "error": str(err)}
        sys.exit(2)

    client, experiment_id = open_experiment(cfg)
    started = time.perf_counter()
    metadata = [run_metadata(one, init_choice, datamodule) for one in configs]
    statuses = [{"sweep_id": sweep_id, "name": name, "outcome": "failed"} for name in names]
    hashes = [tags["config_hash"] for tags, _ in metadata]
    by_hash = find_runs_of_group(client, experiment_id, metadata[0][0]["group_hash"], hashes)
    previous = [by_hash[h] for h in hashes]
    todo = []  # positions (in configs) of the seeds to train
    for k, runs in enumerate(previous):
        done = None if cfg.get("force", False) else finished_run(runs)
        if done is None:
            todo.append(k)
            continue
        statuses[k].update(outcome="skipped", run_id=done.info.run_id,
                           **{key: v for key, v in done.data.metrics.items()
                              if key.startswith("test/")})
        print(f"{names[k]}: skipped, finished as run {done.info.run_id} (force=true reruns it)",
              flush=True)
    if not todo:
        write_status(output_dir, statuses)
        return {**statuses[0], "seeds": statuses}

    modules, generators = [], []
    for k in todo:
        one = configs[k]
        module = first if k == 0 else InitSweepModule(
            one.model, OmegaConf.to_container(one.init, resolve=True), one.optim,
            datamodule.in_features, datamodule.num_classes, one.init_seed,
            draw_batch=lambda n, s=one.init_seed: datamodule.probe_batch(n, s)[0],
            divergence_threshold=one.trainer.get("divergence_threshold"))
        modules.append(module)
        generators.append(torch.Generator().manual_seed(one.data_seed))  # as its datamodule's

    checkpoint = batch_checkpoint(cfg, [metadata[k][0]["config_hash"] for k in todo])
    interrupted = [preempted_run(previous[k]) for k in todo]
    resume = not cfg.get("force", False) and all(
        found is not None and found[1] == checkpoint for found in interrupted)
    loggers = []
    for position, k in enumerate(todo):
        one, (tags, params) = configs[k], metadata[k]
        if resume:  # preempted together before: reopen the runs, resume the checkpoint
            run_id = interrupted[position][0].info.run_id
            reopen_run(client, run_id)
            print(f"{names[k]}: resuming run {run_id} from {checkpoint}", flush=True)
        else:
            run_id = start_run(client, experiment_id, names[k],
                               {**tags, "trained_together": len(todo), "checkpoint": checkpoint},
                               params)
            client.log_text(run_id, OmegaConf.to_yaml(redact_config(OmegaConf.to_container(one))),
                            "config.yaml")
            client.log_text(run_id, "\n".join(map(redact_override,
                                                  seed_overrides(overrides, one, cfg.seed))) + "\n",
                            "overrides.txt")
        statuses[k].update(run_id=run_id, parent_run_id=os.environ.get(PARENT_RUN_ENV))
        loggers.append(BufferedMlflowLogger(client, run_id, one.tracking.get("flush_every", 1000)))

    preemption = PreemptionCheckpoint(checkpoint)
    trained = [statuses[k] for k in todo]
    try:
        stacked = StackedSeedsModule(modules, dict(cfg.optim), loggers, generators)
        diagnostics: list[DiagnosticsCallback | None] = [
            build_diagnostics(configs[k], datamodule, seed_index=position)
            for position, k in enumerate(todo)]
        trainer = build_trainer(cfg.trainer, False,
                                [preemption, *(d for d in diagnostics if d is not None)])
        train_batches = StackedBatches(*datamodule.train, datamodule.batch_size, generators)
        trainer.fit(stacked, train_dataloaders=train_batches,
                    val_dataloaders=datamodule.val_dataloader(),
                    ckpt_path=str(checkpoint) if resume else None)
        stacked._flush_losses()
        trainer.test(stacked, dataloaders=datamodule.test_dataloader(), verbose=False)
        elapsed = time.perf_counter() - started
        complete_pending()  # the previous job's plots, drawn while this one trained
        background = plots_in_background(cfg)
        for position, (logger, status) in enumerate(zip(loggers, trained, strict=True)):
            logger.add([Metric("time/run_s", elapsed / len(todo), int(time.time() * 1000),
                               trainer.global_step)])
            logger.flush()
            outcome = "ok" if stacked.diverged_at_step[position] is None else "diverged"
            status.update(outcome=outcome, **{key: float(v[position])
                                              for key, v in stacked.test_results.items()})
            finish_run(client, status["run_id"], status["name"], outcome, diagnostics[position],
                       stacked.seed_net(position), stacked.loss_history[position],
                       cfg.diagnostics.get("plots", True), background,
                       status_file(output_dir))
        checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    except PREEMPTION as err:
        preemption.restore_handler()
        for logger, status in zip(loggers, trained, strict=True):
            logger.flush()
            mark_preempted(client, status["run_id"])
            status.update(outcome=PREEMPTED, error=str(err) or "SIGTERM")
        write_status(output_dir, statuses)
        complete_pending()
        print(f"{names[todo[0]]}..{names[todo[-1]]}: preempted; {len(todo)} runs KILLED, the next "
              f"launch resumes them from {checkpoint}", file=sys.stderr, flush=True)
        if multirun:
            return {**statuses[0], "seeds": statuses}
        sys.exit(143)  # 128 + SIGTERM, what a scheduler expects
    except BaseException as err:
        for logger, status in zip(loggers, trained, strict=True):
            status["error"] = f"{type(err).__name__}: {err}"
            try:
                logger.flush()  # nothing that was logged is lost
                client.log_text(status["run_id"], traceback.format_exc(), "traceback.txt")
            finally:
                end_run(client, status["run_id"], "failed")
        write_status(output_dir, statuses)
        complete_pending()
        print(f"{names[todo[0]]}..{names[todo[-1]]}: FAILED ({type(err).__name__}: {err})",
              file=sys.stderr, flush=True)
        if multirun and isinstance(err, Exception):
            return {**statuses[0], "seeds": statuses}
        raise
    write_status(output_dir, statuses)
    for status in trained:
        print(f"{status['name']}: test/acc={status['test/acc']:.4f} "
              f"test/loss={status['test/loss']:.4f} [{status['outcome']}] "
              f"{elapsed / len(todo):.1f}s (1/{len(todo)} of a batched job)", flush=True)
    return {**statuses[0], "seeds": statuses}
