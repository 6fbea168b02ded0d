"""K seeds of one config trained as one stacked model: ``seeds_per_job=K``.

A sweep over seeds repeats the same small network K times; its cost is mostly per-step overhead,
not arithmetic. Here a job with ``seed=s`` trains seeds s, s+1, ..., s+K-1 at once:

- each model starts from exactly the weights its own ``init_seed`` gives alone (the same
  ``initialize_`` call), and sees exactly its own data order (its own ``data_seed`` generator);
- the K parameter sets (and buffers: BatchNorm's running statistics) are stacked
  (``torch.func.stack_module_state``); an MLP's forward pass is one batched matmul per layer over
  them, any other network runs under ``torch.func.vmap`` of ``functional_call`` (BatchNorm
  included: each seed normalizes with its own batch statistics and updates its own running
  statistics), so one step runs K models in a few kernels (and one fused optimizer step, see
  ``make_optimizer``); a user's model that vmap cannot run is refused before any run is created
  (``check_stackable``);
- the loss is the sum of the K per-model mean losses, so each model's gradient is its own; SGD and
  Adam update element-wise, so each model's update is its own too;
- a model that diverges is frozen at its last good weights (its run is tagged ``diverged``) while
  the others go on; training stops when all have diverged.

Each seed is logged as an ordinary MLflow run: the same name, params, tags, config hash, metrics,
per-layer diagnostics (measured on each seed's own weights, at the same steps) and artifacts as
when trained alone, plus the tag ``trained_together=<K>``. Seeds whose config already has a
FINISHED run are skipped (``force=true`` reruns them), and SIGTERM ends the job as in a single
run: every run KILLED with ``outcome=preempted``, resumed by the next launch from the job's
checkpoint (all of that is ``training.job``'s; only the fit is here). Batched matmuls sum in
another order than single ones, so metrics match a sequential run to float tolerance, not bit for
bit (see tests/test_stacked_seeds.py).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mlflow.entities import Metric
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from initsweep.diagnostics.callback import DiagnosticsCallback
from initsweep.errors import ConfigError
from initsweep.models.zoo import MLP
from initsweep.training.builders import build_trainer
from initsweep.training.data import TensorDataModule, shuffled_order
from initsweep.training.logger import BufferedMlflowLogger
from initsweep.training.module import ClassifierModule, RunModule
from initsweep.training.preemption import PreemptionCheckpoint
from initsweep.training.steps import (
    LossLog,
    RunResult,
    epoch_metrics,
    is_diverged,
    log_every_n_steps,
    optimizer_step,
    outcome_of,
)

# An MLP's K seeds run as batched matmuls (``_forward_mlp``); False runs them under vmap like any
# other network (scripts/benchmark.py --mlp-vmap measures both; docs/performance.md).
MLP_BATCHED_MATMUL = True


def _vmapped(
    template: nn.Module,
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    x: Tensor,
    stacked_input: bool,
) -> Tensor:
    """K copies of ``template`` on their stacked ``params`` and ``buffers``: ``x`` is one batch
    per copy (``stacked_input``) or one batch for all. Buffers are updated in place, per copy."""

    def one(p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(template, (p, b), (xi,))

    return vmap(one, in_dims=(0, 0, 0 if stacked_input else None), randomness="different")(
        params, buffers, x
    )


def check_stackable(module: RunModule, sample: Tensor, k: int) -> None:
    """``seeds_per_job=k`` on a model that ``torch.func.vmap`` cannot run (data-dependent Python
    control flow, ``.item()``, in-place writes into a non-batched tensor, ...) is a one-line
    ``ConfigError``, found on two copies and two samples before any run exists."""
    if isinstance(module.net, MLP):
        return  # stacked as batched matmuls, no vmap
    nets = [copy.deepcopy(module.net) for _ in range(2)]
    params, buffers = stack_module_state(nets)
    template = copy.deepcopy(module.net).train()
    x = sample[:2].expand(2, *sample[:2].shape)
    try:
        _vmapped(template, params, buffers, x, stacked_input=True).sum().backward()
    except Exception as err:
        raise ConfigError(
            f"seeds_per_job={k}: model {module.model_target} cannot be trained "
            f"stacked (torch.func.vmap: {type(err).__name__}: "
            f"{str(err).strip().splitlines()[0]}); run it with seeds_per_job=1"
        ) from None


class StackedBatches:
    """Per-model mini-batches ``(K, B, ...)``: model k follows its own shuffling generator."""

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, generators: list[torch.Generator]
    ) -> None:
        self.x, self.y, self.batch_size, self.generators = x, y, batch_size, generators

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # each model's order as its run alone draws it (data.TensorBatches)
        orders = torch.stack([shuffled_order(len(self.y), g) for g in self.generators])
        for start in range(0, len(self.y), self.batch_size):
            index = orders[:, start : start + self.batch_size]
            yield self.x[index], self.y[index]


class StackedModule(ClassifierModule):
    """K copies of one network (its members), stacked; trains and evaluates them as one batched
    model.

    ``generators`` are the members' data-order generators: saved in checkpoints with the frozen
    (diverged) members, so a resumed job continues exactly where it stopped.
    """

    _template: nn.Module  # the network's structure, outside the module tree (see __init__)

    def __init__(
        self,
        modules: list[RunModule],
        optim_cfg: dict[str, Any],
        loggers: list[BufferedMlflowLogger],
        generators: Sequence[torch.Generator] = (),
    ) -> None:
        super().__init__()
        self.k = len(modules)
        self.optim_cfg = dict(optim_cfg)
        self.schedule_cfg = modules[0].schedule_cfg
        self.input_shape = modules[0].input_shape
        self.member_loggers = loggers
        self.generators = list(generators)
        self.divergence_threshold = modules[0].divergence_threshold
        self.automatic_optimization = False  # training_step steps, then re-freezes dead seeds
        params, buffers = stack_module_state([m.net for m in modules])
        # ParameterDict keys cannot hold dots; keep the stacked tensors as real Parameters so that
        # Lightning moves them to the device and the optimizer sees them.
        self.stacked = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(p.detach().clone()) for n, p in params.items()}
        )
        # Buffers (BatchNorm's running statistics) as buffers of this module: moved with it,
        # saved in its checkpoints.
        self._buffer_keys = {name: "stacked_buffer__" + name.replace(".", "__") for name in buffers}
        for name, key in self._buffer_keys.items():
            self.register_buffer(key, buffers[name].clone())
        # The network, kept out of the module tree so that Lightning's device moves and
        # state_dict never see it: forward() runs it on the stacked tensors, and each seed's
        # ordinary network for the diagnostics is a copy of it.
        object.__setattr__(self, "_template", copy.deepcopy(modules[0].net))
        self._mlp = MLP_BATCHED_MATMUL and isinstance(self._template, MLP)
        self._seed_nets: dict[int, nn.Module] = {}
        self.alive = torch.ones(self.k, dtype=torch.bool)
        self.diverged_at_step: list[int | None] = [None] * self.k
        self._frozen: dict[str, Tensor] = {}
        self.losses = LossLog(self.k)  # (step, K losses), synced per epoch
        self._sums: dict[str, Tensor] = {}  # per-seed loss and correct sums of the epoch
        self._n = 0  # samples evaluated this epoch (every seed sees the same batches)
        self._epoch_start_step = 0

    def stacked_state(self) -> dict[str, Tensor]:
        """Every stacked tensor (K, ...) by the network's own parameter or buffer name."""
        state = {name.replace("__", "."): p for name, p in self.stacked.items()}
        state.update({name: getattr(self, key) for name, key in self._buffer_keys.items()})
        return state

    def net_for(self, k: int) -> nn.Module:
        """Member k as an ordinary network holding a copy of its current weights and buffers."""
        net = self._seed_nets.get(k)
        if net is None:
            net = self._seed_nets[k] = copy.deepcopy(self._template).to(self.device)
        with torch.no_grad():
            for name, param in net.named_parameters():
                param.copy_(self.stacked[name.replace(".", "__")][k])
            for name, buffer in net.named_buffers():
                buffer.copy_(getattr(self, self._buffer_keys[name])[k])
        return net

    def forward(self, x: Tensor) -> Tensor:
        """All K models at once: ``x`` is (K, B, *input_shape), or (B, *input_shape) shared by
        all; returns (K, B, C)."""
        stacked_input = x.dim() == len(self.input_shape) + 2
        if self._mlp:
            return self._forward_mlp(x.flatten(2) if stacked_input else x.flatten(1))
        self._template.train(self.training)
        params = {
            name: self.stacked[name.replace(".", "__")]
            for name, _ in self._template.named_parameters()
        }
        buffers = {name: getattr(self, key) for name, key in self._buffer_keys.items()}
        return _vmapped(self._template, params, buffers, x, stacked_input)

    def _forward_mlp(self, x: Tensor) -> Tensor:
        """An MLP's K copies: ``x`` is (K, B, D) or (B, D). Each Linear is one batched matmul over
        the stacked weights, each activation acts elementwise: the same arithmetic as K separate
        forwards, without vmap's per-call cost (scripts/benchmark.py measures both)."""
        h = x if x.dim() == 3 else x.expand(self.k, *x.shape)
        for name, layer in self._template.named_children():
            if isinstance(layer, nn.Linear):
                weight = self.stacked[f"{name}__weight"].transpose(1, 2)  # (K, in, out)
                bias = self.stacked.get(f"{name}__bias")
                h = (
                    torch.bmm(h, weight)
                    if bias is None
                    else torch.baddbmm(bias.unsqueeze(1), h, weight)
                )
            else:
                h = layer(h)
        return h

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch  # (K, B, D), (K, B)
        logits = self(x)
        per_model = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        losses = per_model.view(self.k, -1).mean(dim=1)
        self.losses.append(self.global_step, losses, self.alive.clone())
        if self.divergence_threshold is not None:
            exploding = is_diverged(losses.detach(), self.divergence_threshold).cpu() & self.alive
            for k in exploding.nonzero().flatten().tolist():
                # frozen at the weights before this update (and the running statistics of this
                # step's forward pass), as a run alone stops there
                self.diverged_at_step[k] = self.global_step
                for name, p in self.stacked_state().items():
                    self._frozen.setdefault(name, p.detach().clone())[k] = p.detach()[k]
            self.alive &= ~exploding
        if not bool(self.alive.any()):
            self.trainer.should_stop = True
            return None
        optimizer_step(self, torch.where(self.alive.to(losses.device), losses, 0.0).sum())
        if self._frozen:  # a zero gradient still moves Adam's weights: put the dead ones back
            dead = (~self.alive).to(losses.device)
            with torch.no_grad():
                for name, p in self.stacked_state().items():
                    p[dead] = self._frozen[name].to(p.device)[dead]
        return losses.detach()

    def on_train_epoch_end(self) -> None:
        self.log_train_losses()

    def log_train_losses(self) -> None:
        """Send each member's steps' losses not yet logged (one device sync per epoch)."""
        self.losses.flush(self.member_loggers, log_every_n_steps(self), self.diverged_at_step)

    # The diagnostics callback's view of the module (``diagnostics.callback.Members``)
    def logger_for(self, k: int) -> Any:
        return self.member_loggers[k]

    def stopped_at(self, k: int) -> int | None:
        """The step member k diverged at (it trains no more while the others go on)."""
        return self.diverged_at_step[k]

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)  # (K, B, C): every model on the same batch
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(self.k), reduction="none")
        sums = {
            "loss": loss.view(self.k, -1).sum(dim=1).double(),
            "correct": (logits.argmax(dim=2) == y).sum(dim=1),
        }
        for key, value in sums.items():
            self._sums[key] = self._sums.get(key, 0) + value
        self._n += len(y)

    def _log_epoch(self, stage: str, step: int) -> list[dict[str, float]]:
        """Each member's ``<stage>/acc`` and ``<stage>/loss``, logged in its run at the step a
        run alone would log them (test: step 0, as ``RunModule``)."""
        correct = self._sums["correct"].cpu().tolist()
        losses = self._sums["loss"].cpu().tolist()
        values = [epoch_metrics(stage, c, v, self._n) for c, v in zip(correct, losses, strict=True)]
        self._sums, self._n = {}, 0
        now = int(time.time() * 1000)
        for k, logger in enumerate(self.member_loggers):
            at = self.diverged_at_step[k]
            if stage == "val" and at is not None and at < self._epoch_start_step:
                continue  # a run alone stopped in an earlier epoch: no more validation
            model_step = 0 if stage == "test" else step if at is None else min(step, at - 1)
            logger.add([Metric(key, v, now, model_step) for key, v in values[k].items()])
        return values

    def on_train_epoch_start(self) -> None:
        self._epoch_start_step = self.global_step

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stacked_seeds"] = {
            "generators": [g.get_state() for g in self.generators],
            "alive": self.alive.clone(),
            "diverged_at_step": list(self.diverged_at_step),
            "frozen": {name: t.cpu() for name, t in self._frozen.items()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["stacked_seeds"]
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        self.alive = state["alive"].clone()
        self.diverged_at_step = list(state["diverged_at_step"])
        self._frozen = dict(state["frozen"])


def fit_stacked(
    configs: list[DictConfig],
    loggers: list[BufferedMlflowLogger],
    modules: list[RunModule],
    datamodule: TensorDataModule,
    diagnostics: list[DiagnosticsCallback | None],
    preemption: PreemptionCheckpoint,
    resume_from: str | None,
) -> list[RunResult]:
    """Train and test the members' models (``modules[k]``, configured by ``configs[k]``) as one
    stacked model; one ``RunResult`` per member. The Trainer is ``configs[0]``'s: the members
    share it."""
    generators = [torch.Generator().manual_seed(one.data_seed) for one in configs]  # as alone
    stacked = StackedModule(modules, dict(configs[0].optim), loggers, generators)
    trainer = build_trainer(
        configs[0], False, [preemption, *(d for d in diagnostics if d is not None)]
    )
    train_batches = StackedBatches(*datamodule.splits()[0], datamodule.batch_size, generators)
    trainer.fit(
        stacked,
        train_dataloaders=train_batches,
        val_dataloaders=datamodule.val_dataloader(),
        ckpt_path=resume_from,
    )
    stacked.log_train_losses()
    trainer.test(stacked, dataloaders=datamodule.test_dataloader(), verbose=False)
    return [
        RunResult(
            outcome_of(stacked.diverged_at_step[k]),
            stacked.test_results[k],
            diagnostics[k],
            stacked.net_for(k),
            stacked.losses.history[k],
            trainer.global_step,
            stacked.diverged_at_step[k],
        )
        for k in range(len(configs))
    ]
