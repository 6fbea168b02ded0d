"""The Python API as a notebook uses it: ``initsweep.run_sweep`` runs the demo and returns its runs
and the report's group table as data frames, equal to what the command line logs on the sweep's
parent run; ``initsweep.load_sweep`` reads the same sweep back."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, REPO

DEMO = "init=xavier,he,zeros seed=0,1,2"


def test_importing_the_package_stays_light():
    code = (
        "import sys, initsweep; heavy = [m for m in ('pandas', 'mlflow', 'torch', 'hydra') "
        "if m in sys.modules]; assert not heavy, heavy; assert callable(initsweep.load_sweep)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.slow
def test_run_sweep_returns_the_demo_as_the_cli_logs_it(tmp_path, store, monkeypatch, capsys):
    import initsweep

    monkeypatch.chdir(tmp_path)  # a notebook's folder: outputs/ and multirun/ go here
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    sweep = initsweep.run_sweep(f"{DEMO} {' '.join(FAST)}", tracking_uri=store)

    assert sweep.returncode == 0, sweep.output[-3000:]
    assert "9 jobs (9 ok)" in capsys.readouterr().out  # echoed as it ran
    assert len(sweep.runs) == 9 and set(sweep.runs["outcome"]) == {"ok"}
    assert sorted(sweep.groups["group"]) == ["he", "xavier", "zeros"]
    assert (sweep.groups["n"] == 3).all()

    # equal to what the command line logged on the parent run (report/groups.csv, runs.csv)
    client = MlflowClient(store)
    logged = {
        name: client.download_artifacts(
            sweep.parent_run_id, f"report/{name}", str(tmp_path / "logged")
        )
        for name in ("groups.csv", "runs.csv")
    }
    with open(logged["groups.csv"], encoding="utf-8") as f:
        assert sweep.groups.to_csv(index=False) == f.read()
    cli_runs = pd.read_csv(logged["runs.csv"])
    ours = pd.read_csv(io.StringIO(sweep.runs.to_csv(index=False)))
    columns = ["run_id", "run_name", "group", "outcome", "test/acc", "seed"]
    pd.testing.assert_frame_equal(ours[columns], cli_runs[columns])
    parent = client.get_run(sweep.parent_run_id)
    assert parent.data.tags["sweep_id"] == sweep.sweep_id

    # read back later, by sweep id, parent run id or "latest": the same tables
    for which in (sweep.sweep_id, sweep.parent_run_id, "latest"):
        again = initsweep.load_sweep(which, tracking_uri=store)
        pd.testing.assert_frame_equal(again.groups, sweep.groups)
        assert list(again.runs["run_id"]) == list(sweep.runs["run_id"])
    assert "xavier" in sweep.text and repr(sweep).startswith(f"Sweep({sweep.sweep_id}: 9 runs")


def test_a_bad_command_line_raises_its_one_line(tmp_path, store, monkeypatch):
    import initsweep

    monkeypatch.chdir(tmp_path)
    with pytest.raises(initsweep.SweepError, match=r"optim.lrr: not a key of optim") as err:
        initsweep.run_sweep(["optim.lrr=0.1"], tracking_uri=store, echo=False)
    assert err.value.returncode == 2


def test_load_sweep_names_what_is_missing(tmp_path):
    import initsweep

    with pytest.raises(ValueError, match="no MLflow store"):
        initsweep.load_sweep("latest", tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
