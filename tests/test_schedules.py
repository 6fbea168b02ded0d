"""Optimizers users expect (AdamW, SGD with Nesterov) and the lr_schedule group: each schedule's
factors, a resumed run restores its scheduler, and stacked seeds follow the same schedule."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from initsweep.errors import ConfigError
from initsweep.training.builders import build, build_trainer
from initsweep.training.job import run_job
from initsweep.training.lr_schedules import lr_factor
from initsweep.training.optimizers import make_optimizer
from initsweep.training.preemption import PreemptionCheckpoint
from tests.conftest import compose_config, runs_of


def test_schedule_factors():
    cosine = lr_factor({"name": "cosine", "min_factor": 0.1}, total_steps=101, steps_per_epoch=10)
    assert cosine(0) == 1.0 and cosine(100) == pytest.approx(0.1)
    assert cosine(50) == pytest.approx(0.55) and cosine(200) == pytest.approx(0.1)
    step = lr_factor({"name": "step", "step_size": 2, "gamma": 0.5}, 100, steps_per_epoch=10)
    assert [step(s) for s in (0, 19, 20, 39, 40)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    warmup = lr_factor({"name": "warmup", "warmup_steps": 4, "start_factor": 0.2}, 100, 10)
    assert [warmup(s) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert lr_factor({"name": "none"}, 100, 10)(57) == 1.0


@pytest.mark.parametrize(
    ("overrides", "cls", "expected"),
    [
        (["optim=adamw"], torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
        (["optim=nesterov"], torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        (
            ["optim=sgd", "optim.momentum=0.5", "optim.nesterov=true"],
            torch.optim.SGD,
            {"momentum": 0.5, "nesterov": True},
        ),
    ],
)
def test_optimizer_configs_build_torchs_optimizers(overrides, cls, expected):
    optim = OmegaConf.to_container(compose_config(overrides).optim)
    for fused in ("auto", False):
        optimizer = make_optimizer(
            [torch.nn.Parameter(torch.randn(4, 3))], {**optim, "fused": fused}
        )
        assert type(optimizer) is cls
        assert {k: optimizer.defaults[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optim=sgd", "optim.nesterov=true"],
            "optim.nesterov=True: needs optim.momentum > 0 (it is 0.0)",
        ),
        (["lr_schedule=step", "lr_schedule.gamma=0"], "lr_schedule.gamma=0.0: must be > 0"),
        (
            ["lr_schedule=cosine", "lr_schedule.min_factor=2"],
            "lr_schedule.min_factor=2.0: must be in [0, 1]",
        ),
        (
            ["lr_schedule=warmup", "lr_schedule.warmup_steps=0"],
            "lr_schedule.warmup_steps=0: must be an integer >= 1",
        ),
    ],
)
def test_bad_optimizer_or_schedule_values_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        build(compose_config(overrides))
    assert str(err.value) == message


def test_schedule_keys_and_types_are_checked_while_composing():
    with pytest.raises(ConfigCompositionException):
        compose_config(["lr_schedule=step", "lr_schedule.step_szie=3"])
    with pytest.raises(ConfigCompositionException):
        compose_config(["lr_schedule=warmup", "lr_schedule.warmup_steps=soon"])


class Interrupt(Exception):
    """Stands for a preemption after an epoch's checkpoint."""


class StopAfter(PreemptionCheckpoint):
    def __init__(self, path, epochs: int) -> None:
        super().__init__(path)
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # the checkpoint a job resumes from
        if trainer.current_epoch + 1 == self.epochs:
            raise Interrupt


@pytest.mark.parametrize(
    "schedule",
    [
        ["lr_schedule=step", "lr_schedule.step_size=1", "lr_schedule.gamma=0.5"],
        ["lr_schedule=cosine", "lr_schedule.min_factor=0.1"],
    ],
    ids=["step", "cosine"],
)
def test_a_resumed_run_restores_its_scheduler(tmp_path, schedule):
    """Two epochs, a checkpoint, a new process's worth of objects resuming from it: the same
    learning rate and weights, bit for bit, as four epochs straight."""
    cfg = compose_config(
        ["optim=sgd", *schedule, "trainer.max_epochs=4", "diagnostics.enabled=false"]
    )

    def fit(callbacks, ckpt_path=None):
        datamodule, module = build(cfg)
        trainer = build_trainer(cfg, False, callbacks)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        return trainer, module

    whole, whole_module = fit([])
    checkpoint = tmp_path / "job.ckpt"
    with pytest.raises(Interrupt):
        fit([StopAfter(checkpoint, epochs=2)])
    resumed, resumed_module = fit([PreemptionCheckpoint(tmp_path / "other.ckpt")], checkpoint)
    for trainer in (whole, resumed):
        assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == trainer.global_step
    steps = whole.global_step
    lr = resumed.optimizers[0].param_groups[0]["lr"]
    assert lr == whole.optimizers[0].param_groups[0]["lr"] < 0.1
    if "lr_schedule=step" in schedule:
        assert lr == pytest.approx(0.1 * 0.5 ** (steps // (steps // 4)))
    else:
        assert lr == pytest.approx(0.1 * 0.1)  # the last step's factor is min_factor
    for a, b in zip(whole_module.parameters(), resumed_module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_stacked_seeds_follow_the_schedule_of_runs_alone(store):
    common = [
        "init=he",
        "optim=nesterov",
        "lr_schedule=warmup",
        "lr_schedule.warmup_steps=20",
        "trainer.max_epochs=2",
        "diagnostics.enabled=false",
        f"tracking.uri={store}",
    ]
    run_job(compose_config([*common, "seeds_per_job=2", "experiment_name=batched"]))
    for seed in range(2):
        run_job(compose_config([*common, f"seed={seed}", "experiment_name=alone"]))
    alone = {r.info.run_name: r for r in runs_of(store, "alone")}
    for run in runs_of(store, "batched"):
        twin = alone[run.info.run_name]
        assert run.data.params["lr_schedule.name"] == "warmup"
        assert run.data.metrics["test/loss"] == pytest.approx(
            twin.data.metrics["test/loss"], rel=1e-4
        )
