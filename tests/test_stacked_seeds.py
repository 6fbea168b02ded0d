"""seeds_per_job=K: K seeds trained as one vmapped model log the runs K sequential jobs would.

Tolerance: a batched matmul sums in another order than K single ones, so losses agree to ~1e-5
relative, not bit for bit; an accuracy may differ by a sample that sits on a decision boundary.
"""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from initsweep.naming import seed_configs, seed_overrides
from initsweep.training.builders import build
from initsweep.training.fit_stacked import StackedModule
from initsweep.training.job import run_job
from tests.conftest import compose_config, runs_of, stacked_and_alone

SHRINK = ["init=he", "trainer.max_epochs=3", "diagnostics.enabled=false"]


def test_each_seed_starts_from_its_own_weights_exactly():
    cfg = compose_config([*SHRINK, "seed=5", "seeds_per_job=3"])
    modules = [build(one)[1] for one in seed_configs(cfg, 3)]
    stacked = StackedModule(modules, dict(cfg.optim), loggers=[])
    for k, module in enumerate(modules):
        for name, param in module.net.named_parameters():
            assert torch.equal(stacked.stacked[name.replace(".", "__")][k], param)
    assert [c.init_seed for c in seed_configs(cfg, 3)] == [5, 6, 7]


def test_batched_seeds_log_the_runs_sequential_jobs_would(store):
    # diagnostics on, at a cadence that measures mid-epoch: each seed's diag/ metrics, CSV and
    # plots must be there as in a run trained alone
    shrink = ["init=he", "trainer.max_epochs=3", "diagnostics.every_n_steps=7"]
    batched, alone = stacked_and_alone(store, shrink, 3)
    client = MlflowClient(store)
    for name, run in batched.items():
        twin = alone[name]
        assert run.info.status == "FINISHED" and run.data.tags["trained_together"] == "3"
        for tag in ("config_hash", "group_hash", "seed", "init_seed", "data_seed", "outcome"):
            assert run.data.tags[tag] == twin.data.tags[tag], tag
        assert {k: v for k, v in run.data.params.items() if k != "experiment_name"} == {
            k: v for k, v in twin.data.params.items() if k != "experiment_name"
        }
        assert run.data.metrics["test/loss"] == pytest.approx(
            twin.data.metrics["test/loss"], rel=1e-4
        )
        n_test = int(run.data.tags["n_test"])
        assert abs(run.data.metrics["test/acc"] - twin.data.metrics["test/acc"]) <= 2 / n_test
        assert set(run.data.metrics) == set(twin.data.metrics)
        assert any(key.startswith("diag/L2/") for key in run.data.metrics)
        for key in (
            "train/loss",
            "val/loss",
            "val/acc",
            "diag/L0/grad_norm",
            "diag/L1/update_ratio",
            "diag/L2/effective_rank",
        ):
            mine = client.get_metric_history(run.info.run_id, key)
            theirs = client.get_metric_history(twin.info.run_id, key)
            assert [m.step for m in mine] == [m.step for m in theirs], key
            assert [m.value for m in mine] == pytest.approx(
                [m.value for m in theirs], rel=1e-4, abs=2 / n_test
            ), key
        artifacts = [
            [f.path for f in client.list_artifacts(r.info.run_id, "diagnostics")]
            for r in (run, twin)
        ]
        assert artifacts[0] == artifacts[1] and "diagnostics/loss.png" in artifacts[0]
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == [
            f.path for f in client.list_artifacts(twin.info.run_id)
        ]


def test_finished_seeds_are_skipped_and_the_rest_trained_together(store):
    common = ["init=he", "debug=tiny", "diagnostics.enabled=false", f"tracking.uri={store}"]
    run_job(compose_config([*common, "seeds_per_job=2"]))
    status = run_job(compose_config([*common, "seeds_per_job=3"]))
    assert [s["outcome"] for s in status["seeds"]] == ["skipped", "skipped", "ok"]
    runs = {r.info.run_name: r for r in runs_of(store)}
    assert sorted(runs) == ["he-x1-s0", "he-x1-s1", "he-x1-s2"]
    assert runs["he-x1-s0"].data.tags["trained_together"] == "2"
    # The one seed left trains alone, as a run of its own: untagged, and the same bits.
    assert "trained_together" not in runs["he-x1-s2"].data.tags
    run_job(compose_config([*common, "seed=2", "experiment_name=alone"]))
    (alone,) = runs_of(store, "alone")

    def trained(run):  # what training measured (time/* is the wall clock's)
        return {k: v for k, v in run.data.metrics.items() if not k.startswith("time/")}

    assert trained(runs["he-x1-s2"]) == trained(alone)
    forced = run_job(compose_config([*common, "seeds_per_job=3", "force=true"]))
    assert [s["outcome"] for s in forced["seeds"]] == ["ok", "ok", "ok"]
    assert len(runs_of(store)) == 6


def test_a_seed_alone_gets_the_overrides_it_would_have_had():
    cfg = compose_config(["seed=4", "seeds_per_job=2"])
    one = seed_configs(cfg, 2)[1]
    assert seed_overrides(["seed=4", "seeds_per_job=2", "init=he"], one, 4) == ["seed=5", "init=he"]
    assert seed_overrides(
        ["init=he"], seed_configs(compose_config(["seeds_per_job=2"]), 2)[1], 0
    ) == ["init=he", "seed=1"]


def test_diverging_seeds_are_frozen_and_tagged(store):
    status = run_job(
        compose_config(
            [
                "init=ones",
                "optim=sgd",
                "optim.lr=0.5",
                "seeds_per_job=2",
                "trainer.max_epochs=2",
                f"tracking.uri={store}",
            ]
        )
    )
    assert [s["outcome"] for s in status["seeds"]] == ["diverged", "diverged"]
    for run in runs_of(store):
        assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "diverged"
        assert "train/diverged_at_step" in run.data.metrics and "test/acc" in run.data.metrics


def test_bad_seeds_per_job_is_a_one_line_error(store, capsys):
    with pytest.raises(SystemExit):
        run_job(compose_config(["seeds_per_job=0", f"tracking.uri={store}"]))
    assert "seeds_per_job=0: must be an integer >= 1" in capsys.readouterr().err
    assert runs_of(store) == []


def test_log_every_n_steps_thins_train_loss_rows_alone_and_batched(store):
    common = [
        *SHRINK,
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=5",
        f"tracking.uri={store}",
    ]
    run_job(compose_config([*common, "experiment_name=alone"]))
    run_job(compose_config([*common, "seeds_per_job=2", "experiment_name=batched"]))
    client = MlflowClient(store)
    steps = {}
    for experiment in ("alone", "batched"):
        for run in runs_of(store, experiment):
            history = client.get_metric_history(run.info.run_id, "train/loss")
            steps[experiment, run.info.run_name] = [m.step for m in history]
    alone = steps["alone", "he-x1-s0"]
    assert len(alone) >= 3 and alone == list(range(0, alone[-1] + 1, 5))
    assert steps["batched", "he-x1-s0"] == steps["batched", "he-x1-s1"] == alone
