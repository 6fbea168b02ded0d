"""The shared server under load and in a crash: the PostgreSQL-backed ``mlflow server`` of
scripts/local_cluster.sh (tests/helpers/cluster.py's ``pg_server``), real jobs through the CLI.

- 16 concurrent writers through the project's logging path lose no run, row, param, tag or
  artifact (scripts/server_load.py; its timings go to docs/scaling.md, never asserted here);
- the server killed like a crash (SIGKILL to its process group) mid-sweep and restarted 20 s
  later: the jobs train on, their rows are written once it answers, nothing is lost;
- a job that cannot wait any longer (``tracking.retry_budget_s``) fails with one line, its rows
  are kept beside its checkpoint, and the relaunch resumes the same run with nothing lost.

Policy: src/initsweep/tracking/retries.py; docs/scaling.md, "When the store goes down".
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, runs_of
from tests.helpers.cluster import LocalCluster, _script, parse_exports
from tests.test_server import group_alive

# Each test starts (or reuses) PostgreSQL and its mlflow server: root, apt-get.
pytestmark = pytest.mark.cluster

OUTAGE_S = 20  # how long the server stays dead before the restart begins (issue 12)
EPOCHS = 30
# ~20-40 s of training on 2 shared cores (one torch thread: steady under load), long enough to
# train through the outage; a write every ~200 rows (about an epoch), so some fall in it.
JOB = [
    "init=he",
    "data=synthetic",
    "data.n_train=12000",
    "data.n_val=500",
    "data.n_test=1000",
    "data.features=64",
    "data.batch_size=64",
    f"trainer.max_epochs={EPOCHS}",
    "diagnostics.enabled=false",
    "+devices.threads_per_job=1",
    "tracking=server",
    "tracking.flush_every=200",
    "tracking.retry_backoff_max_s=4",
]
STEPS = EPOCHS * math.ceil(12000 / 64)


def kill_server(cluster: LocalCluster) -> float:
    """SIGKILL the mlflow server's process group, as a crash would; returns when it is dead."""
    pgid = int(cluster.env["INITSWEEP_MLFLOW_PID"])
    os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while group_alive(pgid):
        assert time.monotonic() < deadline, "the killed server is still alive"
        time.sleep(0.1)
    return time.time()


def restart_server(cluster: LocalCluster) -> float:
    """``local_cluster.sh start server``: PostgreSQL runs on, mlflow comes back on the same port
    and database. The fixture's environment is updated (the server's PID changed)."""
    proc = _script("start", "server", timeout=300)
    assert proc.returncode == 0, proc.stderr
    cluster.env.update(parse_exports(proc.stdout))
    return time.time()


@pytest.fixture
def crash(pg_server: LocalCluster) -> Iterator[LocalCluster]:
    """The server, restarted after the test however it ends (later tests need it)."""
    yield pg_server
    if not group_alive(int(pg_server.env["INITSWEEP_MLFLOW_PID"])):
        restart_server(pg_server)


def train(folder: Path, args: list[str], uri: str, wait: bool = True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        *args,
        f"hydra.run.dir={folder / 'run'}",
        f"hydra.sweep.dir={folder / 'multirun'}",
    ]
    if wait:
        return subprocess.run(
            cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=1200
        )
    return subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(proc: subprocess.Popen, checkpoints: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(checkpoints.glob("*.ckpt")):
        if proc.poll() is not None:
            raise AssertionError(f"the job ended first:\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)


def assert_every_row_once(client: MlflowClient, run_id: str) -> list:
    """Each training step's loss and each epoch's validation, exactly once."""
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(STEPS))
    assert len(client.get_metric_history(run_id, "val/loss")) == EPOCHS
    return history


@pytest.mark.slow  # ~3 min: 16 processes writing at once, then everything counted back
def test_sixteen_concurrent_writers_lose_nothing(pg_server, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "server_load.py"),
            "--tracking-uri",
            pg_server.tracking_uri,
            "--writers",
            "16",
            "--rows",
            "2100",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    assert result["writer_errors"] == []
    assert result["lost"] == {
        "runs": 0,
        "rows": 0,
        "params": 0,
        "tags": 0,
        "artifacts": 0,
        "not_finished": 0,
    }
    assert result["rows_sent"] == 16 * 2100
    assert len(runs_of(pg_server.tracking_uri, result["experiment"])) == 16


@pytest.mark.slow  # ~3 min: a 2-job sweep across a ~45 s outage (20 s dead + the restart)
def test_a_sweep_outlives_a_server_crash_and_loses_nothing(crash, tmp_path):
    experiment = f"crash-{uuid.uuid4().hex[:8]}"
    proc = train(
        tmp_path,
        ["-m", *JOB, "seed=0,1", f"experiment_name={experiment}"],
        crash.tracking_uri,
        wait=False,
    )
    try:
        wait_for_checkpoint(proc, tmp_path / "mlruns" / "checkpoints")
        down = kill_server(crash)
        time.sleep(OUTAGE_S)
        back = restart_server(crash)
        out, err = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "2 jobs (2 ok)" in out
    assert re.search(rf"warning: tracking store {crash.tracking_uri}: connection \w+", err), err
    assert re.search(rf"tracking store {crash.tracking_uri} answers again after \d+ s", err)
    client = MlflowClient(crash.tracking_uri)
    runs = {r.info.run_name: r for r in runs_of(crash.tracking_uri, experiment)}
    assert {n: r.info.status for n, r in runs.items() if n.startswith("he-")} == {
        "he-x1-s0": "FINISHED",
        "he-x1-s1": "FINISHED",
    }
    assert [r.info.status for n, r in runs.items() if n.startswith("sweep-")] == ["FINISHED"]
    history = assert_every_row_once(client, runs["he-x1-s0"].info.run_id)
    assert_every_row_once(client, runs["he-x1-s1"].info.run_id)
    # the first job trained on while the server was dead: rows stamped in the outage
    assert any(down * 1000 < m.timestamp < back * 1000 for m in history)
    assert crash.secret("pg_password") not in out + err


@pytest.mark.slow  # ~3 min: a job that gives up, the restart, its relaunch, a reference run
def test_a_job_that_cannot_wait_longer_fails_in_one_line_and_the_relaunch_resumes_it(
    crash, tmp_path
):
    experiment = f"gave-up-{uuid.uuid4().hex[:8]}"
    args = [*JOB, "tracking.retry_budget_s=5", f"experiment_name={experiment}"]
    proc = train(tmp_path, args, crash.tracking_uri, wait=False)
    try:
        wait_for_checkpoint(proc, tmp_path / "mlruns" / "checkpoints")
        kill_server(crash)  # and not back before the job has given up
        out, err = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, f"{out}\n{err}"
    assert "Traceback" not in err
    [failed] = [line for line in err.splitlines() if "FAILED" in line]
    uri = crash.tracking_uri
    assert re.fullmatch(
        rf"he-x1-s0: FAILED \(tracking store {uri} unreachable \(connection refused\); gave up "
        r"after waiting \d+ s \(tracking\.retry_budget_s=5\)\); run (\w{32}) left RUNNING "
        r"\(rows kept in (\S+\.unsent\.json)\); the next launch resumes it from \S+\.ckpt",
        failed,
    ), failed
    run_id, unsent = re.search(r"run (\w{32}) .*rows kept in (\S+)\)", failed).groups()
    kept = json.loads(Path(unsent).read_text())["runs"][run_id]
    assert kept  # the rows logged while the server was dead
    assert crash.secret("pg_password") not in out + err + Path(unsent).read_text()

    restart_server(crash)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # the job could not end it
    again = train(tmp_path, args, uri)
    assert again.returncode == 0, again.stderr
    assert f"he-x1-s0: resuming run {run_id} from " in again.stdout
    assert not Path(unsent).exists()  # written into the run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "ok"
    assert_every_row_once(client, run_id)

    (tmp_path / "reference").mkdir()
    reference = train(tmp_path / "reference", [*JOB, f"experiment_name={experiment}-ref"], uri)
    assert reference.returncode == 0, reference.stderr
    [whole] = runs_of(uri, f"{experiment}-ref")
    for key in ("test/acc", "test/loss", "val/loss"):
        assert run.data.metrics[key] == whole.data.metrics[key], key
