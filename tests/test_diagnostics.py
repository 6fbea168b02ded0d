"""Diagnostics on hand-built weights with known answers; divergence; every study preset runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.tracking import MlflowClient
from torch import nn

from initsweep.diagnostics.probe import distinct_rows, effective_rank, measure
from initsweep.training.job import run_job
from tests.conftest import CONF, compose_config, linear_net, runs_of

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_constant_weights_give_one_distinct_unit_and_rank_one():
    weights = [torch.full((8, 5), 0.3), torch.full((6, 8), -0.2), torch.full((3, 6), 0.1)]
    net = linear_net(weights, nn.Tanh)
    x, y = torch.randn(64, 5, generator=torch.Generator().manual_seed(0)), torch.zeros(64).long()
    rows = measure(net, x, y)
    assert [r["distinct_units"] for r in rows] == [1.0, 1.0, 1.0]
    for row in rows:
        assert row["effective_rank"] == pytest.approx(1.0, abs=1e-3)


def test_identity_layers_preserve_the_signal_std():
    net = linear_net([torch.eye(16)] * 5, nn.Identity)
    x, y = torch.randn(256, 16, generator=torch.Generator().manual_seed(0)), torch.zeros(256).long()
    rows = measure(net, x, y)
    for row in rows:
        assert row["std_ratio"] == pytest.approx(1.0, rel=1e-6)
        assert row["distinct_units"] == 16.0
    assert rows[-1]["act_std"] == pytest.approx(float(x.std()), rel=1e-6)


def test_relu_with_all_negative_preactivations_is_all_dead():
    net = linear_net([-torch.ones(4, 3), torch.ones(2, 4)], nn.ReLU)
    x, y = torch.rand(32, 3) + 0.1, torch.zeros(32).long()  # positive inputs, negative weights
    rows = measure(net, x, y)
    assert rows[0]["dead_frac"] == 1.0 and rows[0]["act_std"] == 0.0
    assert rows[0]["grad_norm"] == 0.0  # nothing flows back through dead units


def test_saturation_and_helpers():
    net = linear_net([torch.full((4, 3), 50.0), torch.ones(2, 4)], nn.Sigmoid)
    rows = measure(net, torch.rand(16, 3) + 0.5, torch.zeros(16).long())
    assert rows[0]["saturated_frac"] == 1.0
    w = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    assert distinct_rows(w) == 2
    assert effective_rank(torch.zeros(5, 3)) == 0.0
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)


# The fast tier's heaviest test when measured (a 2-job CLI multirun with plots and the report). The
# fast tier keeps the stacked path's divergence (test_stacked_seeds.py); a lone run's: here only.
@pytest.mark.slow
def test_a_diverging_job_is_tagged_and_the_sweep_goes_on(cli, store):
    proc = cli(
        "-m", "init=ones,he", "optim=sgd", "optim.lr=0.5", "trainer.max_epochs=2", check=True
    )
    # a diverged run still gets its diagnosis (diagnostics.findings), the outcome not repeated
    assert "ones-x1-s0" in proc.stdout and "[diverged, symmetric, exploding]" in proc.stdout
    runs = {r.info.run_name: r for r in runs_of(store)}
    diverged, fine = runs["ones-x1-s0"], runs["he-x1-s0"]
    assert diverged.info.status == "FINISHED" and diverged.data.tags["outcome"] == "diverged"
    assert diverged.data.tags["diagnosis"] == "symmetric, exploding, diverged"
    assert "- diverged at step 1 (loss " in diverged.data.tags["mlflow.note.content"]
    assert "train/diverged_at_step" in diverged.data.metrics
    assert "test/acc" in diverged.data.metrics and "train/loss" in diverged.data.metrics
    assert fine.data.tags["outcome"] == "ok" and fine.data.metrics["test/acc"] > 0.8
    client = MlflowClient(store)
    files = {a.path for a in client.list_artifacts(fine.info.run_id, "diagnostics")}
    assert files == {
        f"diagnostics/{n}"
        for n in (
            "diagnostics.csv",
            "loss.png",
            "depth_at_init.png",
            "weight_histograms.png",
            "distinct_units.png",
        )
    }
    for i in range(3):
        for key in ("act_std", "grad_norm", "distinct_units", "effective_rank", "dead_frac"):
            assert f"diag/L{i}/{key}" in fine.data.metrics
    csv_path = Path(client.download_artifacts(fine.info.run_id, "diagnostics/diagnostics.csv"))
    header, *lines = csv_path.read_text().splitlines()
    assert header.startswith("step,layer,weight_norm")
    assert len(lines) == 3 * 2  # at init and at the end (34 steps < the default cadence of 50)


def _shrunk_single_job(preset: str) -> list[str]:
    """Overrides that pick the first value of every swept key and shrink the work."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    parser = OverridesParser.create()
    picks = []
    for key, values in (cfg.hydra.sweeper.params or {}).items():
        override = parser.parse_override(f"{key}={values}")  # a,b,c or range(4) or ...
        first = (
            next(iter(override.sweep_string_iterator()))
            if override.is_sweep_override()
            else override.value()
        )
        picks.append(f"{key}={first}")
    return [
        f"experiment={preset}",
        *picks,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
    ]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_a_shrunken_run_completes(preset, store, tmp_path):
    overrides = _shrunk_single_job(preset)
    if preset == "s3_depth":
        overrides.append("model.depth=9")  # the same path, 10 layers instead of 100
    cfg = compose_config([*overrides, f"tracking.uri={store}"])
    assert cfg.experiment_name != "initsweep" or preset not in ("s0_fixed_init",)
    status = run_job(cfg)
    assert status["outcome"] in ("ok", "diverged"), status
    (run,) = runs_of(store, cfg.experiment_name)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
