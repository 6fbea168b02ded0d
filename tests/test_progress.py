"""Progress where a person waits: a bar under the sweep's job lines on a terminal, and the plain
lines, unchanged, everywhere else (pipes, CI, these tests)."""

from __future__ import annotations

import os
import subprocess
import sys

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from tests.conftest import CONF, REPO


def multirun_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return loader.load_configuration("config", overrides, RunMode.MULTIRUN)


def test_no_bar_when_nobody_watches(capsys, monkeypatch):
    from initsweep.launch.progress import SweepProgress

    monkeypatch.delenv("INITSWEEP_PROGRESS", raising=False)
    progress = SweepProgress(3)
    print("he-x1-s0: test/acc=0.9722")
    progress.advance()
    progress.close()
    assert not progress.active
    assert capsys.readouterr() == ("he-x1-s0: test/acc=0.9722\n", "")


def test_the_bar_keeps_the_job_lines_whole(capsys, monkeypatch):
    from initsweep.launch.progress import SweepProgress

    monkeypatch.setenv("INITSWEEP_PROGRESS", "1")
    progress = SweepProgress(3)
    assert progress.active
    print("he-x1-s0: test/acc=0.9722", flush=True)
    progress.advance()
    progress.close()
    out, err = capsys.readouterr()
    assert out == "he-x1-s0: test/acc=0.9722\n"
    assert "sweep" in err and "1/3" in err


def test_the_sweep_size_is_the_basic_sweepers():
    from initsweep.launch.progress import jobs_report_here, sweep_size

    cfg = multirun_config(["init=he,zeros,xavier", "seed=0,1"])
    assert sweep_size(cfg) == 6 and jobs_report_here(cfg)
    assert sweep_size(multirun_config(["experiment=s3_depth"])) == 8
    assert not jobs_report_here(multirun_config(["hydra/launcher=gpus", "init=he"]))
    assert sweep_size(multirun_config(["hydra/sweeper=race", "optim.lr=0.1,0.2"])) is None


def test_a_sweep_on_a_terminal_shows_the_bar_and_the_same_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "init=he,zeros",
        "seed=0",
        "debug=tiny",
        "diagnostics.enabled=false",
        "report=false",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    shown = subprocess.run(
        cmd,
        cwd=tmp_path,
        env={**env, "INITSWEEP_PROGRESS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert shown.returncode == 0, shown.stderr
    assert "2/2" in shown.stderr  # the bar reached the end
    lines = [line for line in shown.stdout.splitlines() if line.startswith(("he-", "zeros-"))]
    assert [line.split(":")[0] for line in lines] == ["he-x1-s0", "zeros-x1-s0"]
    assert "2 jobs (2 ok)" in shown.stdout
