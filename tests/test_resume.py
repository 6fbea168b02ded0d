"""Idempotent and resumable sweeps: finished configs are skipped; a SIGTERM'd run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, runs_of

# ~0.1-0.3 s an epoch on 2 cores; SIGTERM is sent as soon as epoch 1's checkpoint exists, so 15
# epochs leave it a wide margin to land mid-training
SLOW = [
    "data=synthetic",
    "data.n_train=12000",
    "data.n_val=500",
    "data.n_test=1000",
    "data.features=64",
    "data.batch_size=64",
    "trainer.max_epochs=15",
    "init=he",
    "diagnostics.enabled=false",
]


@pytest.mark.slow  # a whole sweep end to end; the fast tier keeps a smaller check of it
def test_rerunning_a_sweep_skips_finished_configs(cli, store):
    args = ("-m", "init=he,zeros", "seed=0", "trainer.max_epochs=1")
    cli(*args, check=True)
    again = cli(*args, check=True)
    assert "he-x1-s0: skipped, finished as run" in again.stdout
    assert "2 jobs (2 skipped)" in again.stdout
    assert len([r for r in runs_of(store) if "scheme" in r.data.tags]) == 2
    forced = cli(*args, "force=true", check=True)
    assert "2 jobs (2 ok)" in forced.stdout
    assert len([r for r in runs_of(store) if "scheme" in r.data.tags]) == 4


# 15 epochs, a SIGTERM, a relaunch: minutes under load. The fast tier keeps a real SIGTERM with
# preemption and resume in test_job.py::test_preemption_and_resume_end_the_same_way.
@pytest.mark.slow
@pytest.mark.parametrize("batched", [[], ["seeds_per_job=2"]], ids=["alone", "batched"])
def test_sigterm_checkpoints_and_the_next_launch_resumes_to_the_same_result(
    tmp_path, store, batched
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    base = [
        sys.executable,
        str(REPO / "train.py"),
        *SLOW,
        *batched,
        f"tracking.uri={store}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    checkpoints = tmp_path / "mlruns" / "checkpoints"
    n_runs = 2 if batched else 1

    job = subprocess.Popen(
        [*base, "experiment_name=interrupted"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*.ckpt")) and job.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=240)
    assert job.returncode == 143, f"exit {job.returncode}: {err[-2000:]}"
    killed = {r.info.run_name: r for r in runs_of(store, "interrupted")}
    assert len(killed) == n_runs
    for run in killed.values():
        assert run.info.status == "KILLED" and run.data.tags["outcome"] == "preempted"
        assert "test/acc" not in run.data.metrics

    resumed = subprocess.run(
        [*base, "experiment_name=interrupted"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("resuming run") == n_runs
    runs = {r.info.run_name: r for r in runs_of(store, "interrupted")}  # the same runs, reopened
    assert {n: r.info.run_id for n, r in runs.items()} == {
        n: r.info.run_id for n, r in killed.items()
    }
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert not list(checkpoints.glob("*.ckpt"))  # removed once finished

    whole = subprocess.run(
        [*base, "experiment_name=uninterrupted"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert whole.returncode == 0, whole.stderr
    client = MlflowClient(store)
    for reference in runs_of(store, "uninterrupted"):
        run = runs[reference.info.run_name]
        for key in ("test/acc", "test/loss"):
            assert run.data.metrics[key] == reference.data.metrics[key], key
        final_val = [
            client.get_metric_history(r.info.run_id, "val/loss")[-1].value for r in (run, reference)
        ]
        assert final_val[0] == final_val[1]
