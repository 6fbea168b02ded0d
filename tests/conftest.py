"""Shared fixtures: a temp MLflow store, the real CLI as a subprocess, one trained sweep for the
tests that only read one, composed configs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    import torch
    from torch import nn
from omegaconf import DictConfig

from initsweep.launch.schema import register_schemas
from initsweep.vocab import UI_URL_ENV

# Session fixtures: the local SLURM cluster and PostgreSQL-backed mlflow server
# (tests/helpers/cluster.py)
from tests.helpers.cluster import pg_server, slurm_cluster  # noqa: F401

register_schemas()  # as train.py does before Hydra composes: every test's compose needs them
REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# Shrunk but real (conf/debug/fast.yaml): enough epochs for digits to separate good inits from
# bad ones.
FAST = ["debug=fast"]
# The demo's grid on two seeds: what test_cli, test_report and test_ui read back (trained_sweep).
TRAINED_SWEEP = ["-m", "init=xavier,he,zeros", "seed=0,1", *FAST]


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The composed config, as a job would see it (hydra node removed)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides or [])


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def run_cli(
    root: Path,
    store: str,
    args: tuple[str, ...] | list[str],
    check: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in ``root`` (its run/ and multirun/ folders) against ``store``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | (env or {})
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        *args,
        f"tracking.uri={store}",
        f"hydra.run.dir={root / 'run'}",
        f"hydra.sweep.dir={root / 'multirun'}",
    ]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli(tmp_path: Path, store: str):
    """Run ``python train.py ARGS`` against the temp store; returns the CompletedProcess."""

    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        return run_cli(tmp_path, store, args, check)

    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TrainedSweep:
    """A finished sweep: ``store`` (its tracking URI), ``root`` (the sweep ran there: the report
    hook wrote ``root/multirun/report``), ``stdout`` (what it printed), ``ui_env`` (the MLflow UI
    address its links and report.md images point at, as ``{UI_URL_ENV: url}``)."""

    store: str
    root: Path
    stdout: str
    ui_env: dict[str, str]

    @property
    def ui_base(self) -> str:
        return self.ui_env[UI_URL_ENV]


@pytest.fixture(scope="session")
def trained_sweep(tmp_path_factory: pytest.TempPathFactory) -> TrainedSweep:
    """TRAINED_SWEEP (6 jobs, plots, the report hook) trained once per session through the real
    CLI, for the tests that only read a finished sweep; a test that changes a store trains its
    own (``cli``). One test writes here: test_report's `initsweep report` logs the report on the
    parent run again, with the same ``ui_env`` (the links and images still name test_ui's port)."""
    root = tmp_path_factory.mktemp("trained-sweep")
    store = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    ui_env = {UI_URL_ENV: f"http://127.0.0.1:{free_port()}"}  # test_ui serves the UI there
    proc = run_cli(root, store, TRAINED_SWEEP, check=True, env=ui_env)
    return TrainedSweep(store, root, proc.stdout, ui_env)


def linear_net(
    weights: list[torch.Tensor], activation: type[nn.Module] | None = None
) -> nn.Sequential:
    """Bias-free Linear layers with the given weights, a fresh ``activation`` (default ReLU)
    after each hidden one (``diagnostics.measure`` keys its hooks by module, so each layer gets
    its own): networks built to sit on a chosen side of a diagnostic's threshold."""
    from torch import nn

    modules: list[nn.Module] = []
    for i, w in enumerate(weights):
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        layer.weight.data.copy_(w)
        modules.append(layer)
        if i < len(weights) - 1:
            modules.append((activation or nn.ReLU)())
    return nn.Sequential(*modules)


def runs_of(store: str, experiment: str = "initsweep") -> list:
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def stacked_and_alone(store: str, shrink: list[str], k: int) -> tuple[dict, dict]:
    """Seeds 0..k-1 trained as one ``seeds_per_job=k`` job (experiment ``batched``) and as k
    jobs alone (``alone``): each side's runs by name, for the parity tests."""
    from initsweep.training.job import run_job

    run_job(
        compose_config(
            [*shrink, f"seeds_per_job={k}", f"tracking.uri={store}", "experiment_name=batched"]
        )
    )
    for seed in range(k):
        run_job(
            compose_config(
                [*shrink, f"seed={seed}", f"tracking.uri={store}", "experiment_name=alone"]
            )
        )
    batched = {r.info.run_name: r for r in runs_of(store, "batched")}
    alone = {r.info.run_name: r for r in runs_of(store, "alone")}
    assert set(batched) == set(alone) == {f"he-x1-s{seed}" for seed in range(k)}
    return batched, alone
