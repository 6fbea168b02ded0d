"""Nothing from the environment or a credentialed URI is logged as a param, tag or artifact.

The real leak paths: the resolved ``config.yaml`` artifact carries the ``tracking`` section (a URI
with ``user:password@``, a key filled by ``${oc.env:MLFLOW_TRACKING_PASSWORD}``); the
``overrides.txt`` artifact and the sweep's ``overrides`` tag carry the command line; params are the
flattened config, so any top-level key with a URI ends up there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initsweep.redaction import is_secret_key, redact_config, redact_override
from tests.conftest import REPO, runs_of

ENV_PASSWORD = "hunter2-from-env"
SECRETS = (ENV_PASSWORD, "s3cr3t-in-uri", "pw-in-notes", "tok-123-user-tag")


def test_redact_config_masks_secret_keys_and_uri_credentials():
    config = {"tracking": {"uri": "http://alice:pw@host:5000", "password": "x", "token": None,
                           "flush_every": 1000},
              "data": {"root": "s3://key:secret@bucket/data", "tokenizer": "bpe"},
              "tags": {"api_token": "t", "list": ["postgresql://u:p@db/x"]}}
    assert redact_config(config) == {
        "tracking": {"uri": "http://***@host:5000", "password": "***", "token": None,
                     "flush_every": 1000},
        "data": {"root": "s3://***@bucket/data", "tokenizer": "bpe"},
        "tags": {"api_token": "***", "list": ["postgresql://***@db/x"]}}


@pytest.mark.parametrize(("override", "expected"), [
    ("tracking.uri=http://u:p@h:5000", "tracking.uri=http://***@h:5000"),
    ("+tracking.password=abc", "+tracking.password=***"),
    ("++tags.MY_TOKEN=abc", "++tags.MY_TOKEN=***"),
    ("init=he", "init=he"),
    ("data.tokenizer=bpe", "data.tokenizer=bpe"),
])
def test_redact_override(override, expected):
    assert redact_override(override) == expected


def test_secret_key_names():
    assert all(map(is_secret_key, ("password", "tracking.passwd", "aws_secret_access_key",
                                   "secret", "user.api_token", "apikey", "credentials")))
    assert not any(map(is_secret_key, ("tokenizer", "init.scheme", "passes", "config_hash")))


def _leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _artifact_text(client: MlflowClient, run_id: str, dest: Path) -> str:
    """Every artifact of the run, downloaded and read as text (binary files included)."""
    folder = Path(client.download_artifacts(run_id, "", str(dest)))
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def leaky_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One-job multirun whose config and command line carry every kind of secret."""
    tmp = tmp_path_factory.mktemp("secrets")
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_USERNAME="alice", MLFLOW_TRACKING_PASSWORD=ENV_PASSWORD)
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "init=zeros", "seed=0",
           "trainer.max_epochs=1", "diagnostics.plots=false", f"tracking.uri={store}",
           # a tracking key filled from the environment, as a server login would be
           "+tracking.password=${oc.env:MLFLOW_TRACKING_PASSWORD}",
           "+tracking.registry_uri='http://alice:s3cr3t-in-uri@registry.example:5000'",
           # a URI with credentials outside the tracking section: becomes a param
           "+notes.mirror='https://bob:pw-in-notes@mirror.example/digits'",
           "+tags.api_token=tok-123-user-tag",
           f"hydra.sweep.dir={tmp / 'multirun'}"]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
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
