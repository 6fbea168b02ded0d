"""A store that cannot be used fails fast and clearly; one that stops answering is waited for
within a budget (src/initsweep/tracking/retries.py). Real processes and real sockets: a loopback
port nobody listens on is a server that is down.

The server-side faults (a real mlflow server on PostgreSQL killed mid-sweep) are in
tests/test_server_faults.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from initsweep.tracking.retries import RetryingClient, RetryPolicy, StoreUnavailable, transient
from initsweep.tracking.store import StoreCheckFailed, check_store
from tests.conftest import REPO
from tests.test_server import free_port

# A launch must not wait minutes; this only bounds the subprocess, it asserts no speed.
HANG_S = 300


def _train(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            *args,
            f"hydra.run.dir={tmp_path / 'run'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        cwd=tmp_path,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


@pytest.mark.parametrize("multirun", [[], ["-m", "seed=0,1"]], ids=["run", "multirun"])
def test_a_server_that_is_not_running_is_one_line_and_exit_2_before_any_run(tmp_path, multirun):
    uri = f"http://127.0.0.1:{free_port()}"
    proc = _train(tmp_path, *multirun, "init=he", env={"MLFLOW_TRACKING_URI": uri})
    assert _one_error_line(proc) == f"error: MLFLOW_TRACKING_URI={uri}: connection refused"
    # nothing was started: no job folder, no local store created instead
    assert not (tmp_path / "run").exists() and not (tmp_path / "multirun").exists()
    assert not (tmp_path / "mlruns").exists()


def test_an_unsupported_scheme_lists_the_supported_ones(tmp_path):
    line = _one_error_line(_train(tmp_path, "init=he", "tracking.uri=bogus://x"))
    assert line.startswith("error: tracking.uri=bogus://x: unsupported scheme 'bogus'; supported: ")
    assert {"http", "https", "postgresql", "sqlite"} <= set(
        line.split("supported: ")[1].split(", ")
    )


@pytest.mark.parametrize("scheme", ["http", "postgresql"])
def test_the_error_line_names_the_uri_without_its_password(tmp_path, scheme):
    port = free_port()
    line = _one_error_line(
        _train(
            tmp_path, "-m", "init=he", f"tracking.uri={scheme}://alice:s3cr3t@127.0.0.1:{port}/db"
        )
    )
    assert line == (f"error: tracking.uri={scheme}://***@127.0.0.1:{port}/db: connection refused")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://127.0.0.1:{port}", "http://127.0.0.1:{port}: connection refused"),
        ("bogus://x", "bogus://x: unsupported scheme 'bogus'; supported: "),
    ],
)
def test_the_report_fails_fast_the_same_way(tmp_path, uri, message):
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-m", "initsweep.cli", "report", "--tracking-uri", uri.format(port=port)],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    line = _one_error_line(proc)
    assert line.startswith(f"error: --tracking-uri {message.format(port=port)}"), line


def test_a_sqlite_store_in_a_folder_that_cannot_be_made_says_why(tmp_path):
    (tmp_path / "file").write_text("")  # a file where the store's folder would go
    with pytest.raises(StoreCheckFailed, match=r"^tracking\.uri=sqlite:///.*/file/db/m\.db: "):
        check_store(f"sqlite:///{tmp_path / 'file' / 'db' / 'm.db'}")


def test_what_is_retried():
    assert transient(
        MlflowException("API request to http://x failed with exception Connection refused")
    )  # INTERNAL_ERROR: 500
    assert transient(MlflowException("db down", error_code=TEMPORARILY_UNAVAILABLE))
    assert transient(ConnectionRefusedError())
    assert not transient(MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE))
    assert not transient(MlflowException("no run", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not transient(ValueError("a bug"))
    assert not transient(StoreUnavailable("http://x", 1.0, "connection refused", 1.0))


def test_a_blocking_call_waits_the_budget_then_gives_up_once_and_fast_after(capfd, monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # as store.open_client sets it
    client = RetryingClient(uri, RetryPolicy(budget_s=1.5, backoff_s=0.2, backoff_max_s=0.4))
    tick = time.monotonic()
    with pytest.raises(StoreUnavailable) as gave_up:
        client.get_experiment_by_name("x")
    waited = time.monotonic() - tick
    assert re.fullmatch(
        rf"tracking store {uri} unreachable \(connection refused\); gave up "
        r"after waiting \d+ s \(tracking\.retry_budget_s=1\.5\)",
        str(gave_up.value),
    ), str(gave_up.value)
    assert waited >= 1.5  # it did wait: the budget is a floor here, not a speed
    # given up: the next blocking call makes one attempt and raises (no second budget)
    tick = time.monotonic()
    with pytest.raises(StoreUnavailable):
        client.get_experiment_by_name("x")
    assert time.monotonic() - tick < waited
    err = capfd.readouterr().err
    assert err.count("retrying with backoff") == 1, err  # one warning per outage


def test_training_never_waits_for_the_store_rows_stay_buffered(monkeypatch):
    from initsweep.training.logger import BufferedMlflowLogger

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = RetryingClient(uri, RetryPolicy(budget_s=60, backoff_s=30, backoff_max_s=30))
    logger = BufferedMlflowLogger(client, "0" * 32, flush_every=10)
    tick = time.monotonic()
    for step in range(100):  # 10 full buffers: one attempt, then nothing until the backoff
        logger.add([Metric("train/loss", float(step), 0, step)])
    assert time.monotonic() - tick < 30  # never slept the 30 s backoff
    assert [m.step for m in logger.unsent()] == list(range(100))


def test_retry_and_give_up_lines_carry_no_password(capfd, monkeypatch):
    """The fault paths print the store's URI: redacted, like everything else logged."""
    uri = f"http://alice:s3cr3t@127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = RetryingClient(uri, RetryPolicy(budget_s=0.3, backoff_s=0.1, backoff_max_s=0.1))
    with pytest.raises(StoreUnavailable) as gave_up:
        client.search_experiments()
    printed = capfd.readouterr()
    assert "s3cr3t" not in str(gave_up.value) + printed.out + printed.err
    assert "http://***@127.0.0.1:" in str(gave_up.value) and "http://***@127.0.0.1:" in printed.err
