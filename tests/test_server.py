"""A real ``mlflow server`` (scripts/start_tracking_server.sh) on a free loopback port, a multirun
through the CLI with ``tracking=server``, and every run and artifact checked over HTTP.

The server runs in its own process group (the script starts it with setsid); the fixture stops
the whole group by its id however the test ends, so no server outlives the tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, runs_of

SCRIPT = REPO / "scripts" / "start_tracking_server.sh"
START_TIMEOUT_S = 90  # a cold server imports MLflow and migrates a fresh sqlite db: ~8 s here


@dataclass
class Server:
    uri: str
    pid: int
    artifacts: Path


def free_port() -> int:
    """A loopback port nobody listens on (the OS picks it; tiny race until the server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in the group? Reads /proc: the server is not our child."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(pgid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.1)


def wait_healthy(uri: str, pgid: int, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if not group_alive(pgid):
            raise RuntimeError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"mlflow server not healthy after {timeout_s}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    proc = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--log",
            str(root / "server.log"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(proc.stdout.strip())
    try:
        assert os.getpgid(pid) == pid, "the server must lead its own process group"
        uri = f"http://127.0.0.1:{port}"
        wait_healthy(uri, pid, root / "server.log")
        yield Server(uri, pid, root / "artifacts")
    finally:
        stop_group(pid)
        assert not group_alive(pid), f"mlflow server group {pid} still alive"


@pytest.fixture
def store(server: Server) -> str:
    """Overrides conftest's sqlite store: the ``cli`` fixture now passes tracking.uri=<server>."""
    return server.uri


@pytest.mark.slow  # 21-38 s on 2 shared cores: a cold server start (7-16 s), a 2-job sweep
def test_multirun_logs_every_run_and_artifact_to_a_server(cli, server):
    proc = cli(
        "-m", "tracking=server", "init=he,zeros", "seed=0", "trainer.max_epochs=1", check=True
    )
    assert "2 jobs (2 ok)" in proc.stdout
    client = MlflowClient(tracking_uri=server.uri)
    runs = runs_of(server.uri)
    parents = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == ["he-x1-s0", "zeros-x1-s0"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        for metric in (
            "train/loss",
            "val/loss",
            "val/acc",
            "test/loss",
            "test/acc",
            "diag/L0/weight_norm",
        ):
            assert metric in run.data.metrics, metric
        # every train step arrived through the batched logger, not only the last value
        steps = client.get_metric_history(run.info.run_id, "train/loss")
        assert len(steps) > 10 and len({m.step for m in steps}) == len(steps)
        # artifacts go through the server (--serve-artifacts) and land in its destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "overrides.txt", "diagnostics"} <= top
        diagnostics = {
            Path(a.path).name for a in client.list_artifacts(run.info.run_id, "diagnostics")
        }
        assert {"diagnostics.csv", "loss.png", "depth_at_init.png"} <= diagnostics
        config = yaml.safe_load(
            Path(
                client.download_artifacts(
                    run.info.run_id, "config.yaml", str(server.artifacts.parent / run.info.run_id)
                )
            ).read_text()
        )
        assert config["tracking"]["uri"] == server.uri
        assert config["init"]["scheme"] == run.data.tags["scheme"]
    on_disk = {p.name for p in server.artifacts.rglob("*") if p.is_file()}
    assert {"config.yaml", "diagnostics.csv"} <= on_disk


def test_script_refuses_a_file_store(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--backend-store-uri", str(tmp_path / "mlruns")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "must be a SQL store" in proc.stderr
