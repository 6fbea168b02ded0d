"""End to end through the real CLI: Hydra multirun -> Lightning -> a real sqlite MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from initsweep.diagnostics.plots import PLOT_FILES
from tests.conftest import TrainedSweep, runs_of


def test_multirun_logs_one_child_run_per_job(trained_sweep: TrainedSweep):
    store = trained_sweep.store  # conftest.TRAINED_SWEEP: init=xavier,he,zeros seed=0,1 debug=fast
    runs = runs_of(store)
    parents = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["n_jobs"] == "6"
    assert len(children) == 6
    names = {r.info.run_name for r in children}
    assert names == {f"{s}-x1-s{i}" for s in ("xavier", "he", "zeros") for i in (0, 1)}
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["sweep_id"] == parents[0].data.tags["sweep_id"]
        for tag in ("scheme", "scale", "seed", "init_seed", "data_seed", "config_hash"):
            assert tag in run.data.tags
        assert run.data.tags["outcome"] == "ok"
        for metric in ("train/loss", "val/loss", "val/acc", "test/loss", "test/acc"):
            assert metric in run.data.metrics, metric
        assert run.data.params["init.scheme"] == run.data.tags["scheme"]
        artifacts = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id)}
        assert {"config.yaml", "overrides.txt"} <= artifacts
        # drawn by the plot worker while the next job trained; the last job's at the sweep's end
        plots = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id, "diagnostics")}
        assert {f"diagnostics/{n}" for n in ("diagnostics.csv", *PLOT_FILES)} == plots
        acc = run.data.metrics["test/acc"]
        if run.data.tags["scheme"] == "zeros":
            assert acc <= 0.2
        else:
            assert acc >= 0.9
        assert f"{run.info.run_name}: test/acc=" in trained_sweep.stdout
    # full train/loss history is there, one row per step
    client = MlflowClient(store)
    history = client.get_metric_history(children[0].info.run_id, "train/loss")
    assert len(history) > 50 and len({m.step for m in history}) == len(history)


def test_same_config_and_seed_give_identical_metrics(cli, store):
    # once in a multirun (plots drawn by the worker), once alone (inline): the same bits
    cli("-m", "init=he", "seed=3", "trainer.max_epochs=2", check=True)
    cli("init=he", "seed=3", "trainer.max_epochs=2", "force=true", check=True)  # else: skipped
    a, b = [r for r in runs_of(store) if r.data.tags.get("initsweep.role") != "sweep"]
    assert a.data.tags["config_hash"] == b.data.tags["config_hash"]
    for key in ("test/acc", "test/loss", "val/loss"):
        assert a.data.metrics[key] == b.data.metrics[key], key


def test_bad_value_is_one_line_nonzero_exit_and_no_run(cli, store):
    proc = cli("optim.lr=-1")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == ["error: optim.lr=-1.0: must be a number > 0"], proc.stderr
    assert runs_of(store) == []


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["init=nosuch"],
            "error: init=nosuch: must be one of constant, fixup, hadamard_identity, he, ",
        ),
        (
            ["init=zero"],
            "error: init=zero: renamed to hadamard_identity (ZerO; init=zeros is W = 0)",
        ),
        (
            ["optim.lr=fast"],
            "error: optim.lr: Value 'fast' of type 'str' could not be converted to Float",
        ),
        (
            ["optim.lrr=0.1"],
            "error: optim.lrr: not a key of optim; valid: fused, lr, name, weight_decay",
        ),
        (["+trainer.foo=1"], "error: trainer.foo=1: not an argument of lightning.Trainer; valid: "),
        (["job.progress_bar=maybe"], "error: job.progress_bar: Value 'maybe' is not a valid bool"),
    ],
    ids=[
        "unknown-choice",
        "renamed-choice",
        "wrong-type",
        "unknown-key",
        "unknown-trainer-arg",
        "bad-bool",
    ],
)
def test_a_bad_command_line_is_one_line_exit_2_and_no_run(cli, store, args, message):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(_error_lines(proc)) == 1 and _error_lines(proc)[0].startswith(message), proc.stderr
    assert runs_of(store) == []


def test_a_sweep_hydra_rejects_closes_its_parent_run(cli, store):
    # Hydra checks every job's overrides before the first job runs, after our callback opened
    # the sweep's parent run: that run must not stay RUNNING.
    proc = cli("-m", "optim.lr=0.1,fast", "trainer.max_epochs=1")
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "error: optim.lr: Value 'fast' of type 'str' could not be converted to Float"
    ]
    [parent] = runs_of(store)
    assert parent.data.tags["initsweep.role"] == "sweep" and parent.info.status == "FAILED"


def test_a_bad_report_option_is_one_line_exit_2_before_the_sweep(cli, store):
    proc = cli("-m", "report={tune: optim.lr, metrc: test/loss}", "seed=0,1")
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "error: report.metrc: not a key of report; valid: metric, "
        "tune, n_test, seed, select_metric, all_pairs"
    ], proc.stderr
    assert runs_of(store) == []


def test_failures_are_isolated_and_summarised(cli, store):
    # 4 jobs: one fine; two with bad input (no run at all); one that raises inside Lightning
    # after its run started (run FAILED with the traceback). The sweep still runs all four.
    proc = cli(
        "-m",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu,nosuch",
        "model.activation=relu,swish",
    )
    assert proc.returncode == 1
    assert "model.activation='swish': must be one of linear, relu, sigmoid, tanh" in proc.stderr
    assert "4 jobs (3 failed, 1 ok)" in proc.stdout
    runs = runs_of(store)
    parent = next(r for r in runs if r.data.tags.get("initsweep.role") == "sweep")
    assert parent.info.status == "FAILED" and parent.data.tags["n_failed"] == "3"
    children = [r for r in runs if r is not parent]
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED"]
    failed = next(r for r in children if r.info.status == "FAILED")
    assert failed.data.tags["outcome"] == "failed"
    artifacts = {a.path for a in MlflowClient(store).list_artifacts(failed.info.run_id)}
    assert "traceback.txt" in artifacts
