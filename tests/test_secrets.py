"""Nothing from the environment or a credentialed URI is logged as a param, tag or artifact.

The real leak paths: the resolved ``config.yaml`` artifact carries the ``tracking`` section (a URI
with ``user:password@``, a key filled by ``${oc.env:MLFLOW_TRACKING_PASSWORD}``); the
``overrides.txt`` artifact and the sweep's ``overrides`` tag carry the command line; params are the
flattened config, so any top-level key with a URI ends up there.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initsweep.tracking.redaction import (
    is_secret_key,
    redact_config,
    redact_line,
    redact_log_records,
    redact_override,
)
from tests.conftest import REPO, runs_of

ENV_PASSWORD = "hunter2-from-env"
SECRETS = (ENV_PASSWORD, "s3cr3t-in-uri", "pw-in-notes", "tok-123-user-tag")


def test_redact_config_masks_secret_keys_and_uri_credentials():
    config = {
        "tracking": {
            "uri": "http://alice:pw@host:5000",
            "password": "x",
            "token": None,
            "flush_every": 1000,
        },
        "data": {"root": "s3://key:secret@bucket/data", "tokenizer": "bpe"},
        "tags": {"api_token": "t", "list": ["postgresql://u:p@db/x"]},
    }
    assert redact_config(config) == {
        "tracking": {
            "uri": "http://***@host:5000",
            "password": "***",
            "token": None,
            "flush_every": 1000,
        },
        "data": {"root": "s3://***@bucket/data", "tokenizer": "bpe"},
        "tags": {"api_token": "***", "list": ["postgresql://***@db/x"]},
    }


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("tracking.uri=http://u:p@h:5000", "tracking.uri=http://***@h:5000"),
        ("+tracking.password=abc", "+tracking.password=***"),
        ("++tags.MY_TOKEN=abc", "++tags.MY_TOKEN=***"),
        ("init=he", "init=he"),
        ("data.tokenizer=bpe", "data.tokenizer=bpe"),
    ],
)
def test_redact_override(override, expected):
    assert redact_override(override) == expected


def test_redact_line_as_hydra_logs_a_jobs_overrides():
    line = (
        r"#0 : init=he tracking.uri=postgresql\://mlflow\:pw1@127.0.0.1\:5432/mlflow "
        "+tracking.password=pw2 tags.note='x=1' seed=0"
    )
    assert redact_line(line) == (
        r"#0 : init=he tracking.uri=postgresql\://***@127.0.0.1\:5432"
        "/mlflow +tracking.password=*** tags.note='x=1' seed=0"
    )


def test_log_records_are_redacted_whatever_handler_writes_them(caplog):
    factory = logging.getLogRecordFactory()
    try:
        redact_log_records()
        redact_log_records()  # idempotent: one wrapper
        with caplog.at_level(logging.INFO):
            logging.getLogger("hydra.x").info("\t#%d : %s", 0, "tracking.uri=http://u:pw@h:5000")
        assert caplog.messages == ["\t#0 : tracking.uri=http://***@h:5000"]
    finally:
        logging.setLogRecordFactory(factory)


def test_secret_key_names():
    assert all(
        map(
            is_secret_key,
            (
                "password",
                "tracking.passwd",
                "aws_secret_access_key",
                "secret",
                "user.api_token",
                "apikey",
                "credentials",
            ),
        )
    )
    assert not any(map(is_secret_key, ("tokenizer", "init.scheme", "passes", "config_hash")))


def _leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _artifact_text(client: MlflowClient, run_id: str, dest: Path) -> str:
    """Every artifact of the run, downloaded and read as text (binary files included)."""
    folder = Path(client.download_artifacts(run_id, "", str(dest)))
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


@pytest.fixture(scope="module")
def leaky_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One-job multirun whose config and command line carry every kind of secret."""
    tmp = tmp_path_factory.mktemp("secrets")
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_USERNAME="alice", MLFLOW_TRACKING_PASSWORD=ENV_PASSWORD)
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "init=zeros",
        "seed=0",
        "trainer.max_epochs=1",
        "diagnostics.plots=false",
        f"tracking.uri={store}",
        # a tracking key filled from the environment, as a server login would be
        "+tracking.password=${oc.env:MLFLOW_TRACKING_PASSWORD}",
        "+tracking.registry_uri='http://alice:s3cr3t-in-uri@registry.example:5000'",
        # a URI with credentials outside the tracking section: becomes a param
        "+notes.mirror='https://bob:pw-in-notes@mirror.example/digits'",
        "+tags.api_token=tok-123-user-tag",
        f"hydra.sweep.dir={tmp / 'multirun'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    (tmp / "console.txt").write_text(proc.stdout + proc.stderr)
    return store, tmp


def test_no_secret_in_a_jobs_params_tags_or_artifacts(leaky_sweep):
    store, tmp = leaky_sweep
    client = MlflowClient(store)
    [job] = [r for r in runs_of(store) if r.data.tags.get("initsweep.role") != "sweep"]
    params = "\n".join(f"{k}={v}" for k, v in job.data.params.items())
    tags = "\n".join(f"{k}={v}" for k, v in job.data.tags.items())
    artifacts = _artifact_text(client, job.info.run_id, tmp / "job")
    assert _leaked(params) == [] and _leaked(tags) == [] and _leaked(artifacts) == []
    # redacted, not dropped: the config still says where things are
    assert job.data.params["notes.mirror"] == "https://***@mirror.example/digits"
    assert job.data.tags["user.api_token"] == "***"
    assert "registry_uri: http://***@registry.example:5000" in artifacts
    assert "password: '***'" in artifacts
    assert "+tracking.registry_uri='http://***@registry.example:5000'" in artifacts


def test_no_secret_in_the_sweeps_parent_run(leaky_sweep):
    store, tmp = leaky_sweep
    client = MlflowClient(store)
    [parent] = [r for r in runs_of(store) if r.data.tags.get("initsweep.role") == "sweep"]
    tags = "\n".join(f"{k}={v}" for k, v in parent.data.tags.items())
    params = "\n".join(f"{k}={v}" for k, v in parent.data.params.items())
    artifacts = _artifact_text(client, parent.info.run_id, tmp / "parent")
    assert _leaked(tags + params + artifacts) == []


def _log_files(sweep_dir: Path) -> str:
    """The sweep's log files (Hydra's job logs). Not Hydra's records of the command line
    (multirun.yaml, .hydra/): a secret typed on the command line is in those verbatim, as in the
    shell's history; the README says to pass credentials through the environment instead."""
    return "\n".join(p.read_text() for p in sorted(sweep_dir.rglob("*.log")))


def test_no_secret_on_the_console_or_in_a_log_file(leaky_sweep):
    _, tmp = leaky_sweep
    console = (tmp / "console.txt").read_text()
    assert "#0 : " in console  # Hydra's line with the job's overrides, redacted
    assert _leaked(console) == [] and _leaked(_log_files(tmp / "multirun")) == []


@pytest.mark.cluster  # the local PostgreSQL (tests/helpers/cluster.py)
@pytest.mark.slow  # ~25 s: one job writing straight into it
def test_no_postgresql_password_from_a_store_uri_in_any_run_or_log(pg_server, tmp_path):
    """``tracking.uri=postgresql://user:PASSWORD@host/db``: MLflow's SQL store without a server,
    the password in the URI. It must reach no param, tag, artifact, console or log line."""
    password = pg_server.secret("pg_password")
    uri = pg_server.env["INITSWEEP_PG_URI"].replace("://mlflow@", f"://mlflow:{password}@")
    experiment = f"secrets-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "init=zeros",
        "seed=0",
        "trainer.max_epochs=1",
        "diagnostics.plots=false",
        f"tracking.uri={uri}",
        f"experiment_name={experiment}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    client = MlflowClient(uri)
    runs = runs_of(uri, experiment)
    assert len(runs) == 2  # the sweep's parent and the job
    texts = {"console": proc.stdout + proc.stderr, "logs": _log_files(tmp_path / "multirun")}
    for run in runs:
        texts[run.info.run_name] = "\n".join(
            [
                *map(str, run.data.params.items()),
                *map(str, run.data.tags.items()),
                _artifact_text(client, run.info.run_id, tmp_path / run.info.run_id),
            ]
        )
    assert [where for where, text in texts.items() if password in text] == []
    assert "postgresql://***@127.0.0.1" in proc.stdout  # the sweep says where, redacted
