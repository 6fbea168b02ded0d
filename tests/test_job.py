"""One lifecycle, two fits: a run alone and K stacked seeds end the same way in every case.

Each case runs seeds 0 and 1 as two single-run jobs and as one ``seeds_per_job=2`` job, then
compares what a user sees: each run's state and tags in MLflow, its status, and its console lines
(run ids, paths and timings normalised). Failure and skip are exercised for real; preemption is a
real SIGTERM delivered to this process while the job trains.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initsweep.training.job import run_job
from tests.conftest import compose_config, runs_of

BASE = ["init=he", "debug=tiny", "diagnostics.every_n_steps=1"]  # states and lines, not accuracy
# Long enough that a SIGTERM sent once the first epoch's checkpoint exists lands mid-training.
LONG = [
    "data=synthetic",
    "data.n_train=1024",
    "data.n_val=200",
    "data.n_test=200",
    "data.features=32",
    "data.batch_size=32",
    "trainer.max_epochs=10",
    "init=he",
    "diagnostics.enabled=false",
]
# set by MLflow, by the path, or by which process ran it and when (tracking.ownership)
SYSTEM_TAGS = (
    "mlflow.",
    "trained_together",
    "checkpoint",
    "initsweep.owner.",
    "initsweep.heartbeat",
)


def _jobs(store: str, experiment: str, extra: list[str], stacked: bool) -> list[dict]:
    common = [*extra, f"tracking.uri={store}", f"experiment_name={experiment}"]
    if stacked:
        return run_job(compose_config([*common, "seed=0", "seeds_per_job=2"]))["seeds"]
    return [run_job(compose_config([*common, f"seed={seed}"]))["seeds"][0] for seed in (0, 1)]


def _normalised(text: str) -> list[str]:
    """Console lines without what differs between two stores: run ids, paths, seconds."""
    text = re.sub(r"\b[0-9a-f]{32}\b", "<run>", text)
    text = re.sub(r"/\S+\.ckpt", "<ckpt>", text)
    text = re.sub(r"\b\d+\.\d+s\b", "<t>", text)
    return [line for line in text.splitlines() if line.strip()]


def _state(store: str, experiment: str) -> dict[str, tuple]:
    """Per run name: MLflow status, tags (system ones aside), artifact names."""
    client = MlflowClient(store)
    return {
        r.info.run_name: (
            r.info.status,
            {k: v for k, v in r.data.tags.items() if not k.startswith(SYSTEM_TAGS)},
            sorted(a.path for a in client.list_artifacts(r.info.run_id)),
        )
        for r in runs_of(store, experiment)
    }


def _both(store: str, capsys, extra: list[str], experiment: str = "case"):
    """Run the case through both paths; returns (single, stacked), each (statuses, lines)."""
    out = []
    for stacked in (False, True):
        name = f"{experiment}-{'stacked' if stacked else 'single'}"
        statuses = _jobs(store, name, extra, stacked)
        captured = capsys.readouterr()
        out.append((statuses, _normalised(captured.out + captured.err), _state(store, name)))
    return out


def _status_view(statuses: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in s.items() if k not in ("run_id", "parent_run_id", "timing")}
        for s in statuses
    ]


def test_success_and_skip_end_the_same_way(store, capsys):
    single, stacked = _both(store, capsys, BASE)
    assert single[1] == stacked[1]  # "he-x1-s0: test/acc=... [ok] <t>" for both seeds
    assert [s["outcome"] for s in single[0]] == ["ok", "ok"]
    assert single[2].keys() == stacked[2].keys() == {"he-x1-s0", "he-x1-s1"}
    for name in single[2]:
        assert single[2][name][0] == stacked[2][name][0] == "FINISHED"
        assert single[2][name][1] == stacked[2][name][1]
        assert single[2][name][2] == stacked[2][name][2]
    # no finished run keeps a checkpoint tag naming a file that is gone
    assert all("checkpoint" not in r.data.tags for r in runs_of(store, "case-single"))
    assert all("checkpoint" not in r.data.tags for r in runs_of(store, "case-stacked"))

    again = _both(store, capsys, BASE)
    assert (
        again[0][1]
        == again[1][1]
        == [
            "he-x1-s0: skipped, finished as run <run> (force=true reruns it)",
            "he-x1-s1: skipped, finished as run <run> (force=true reruns it)",
        ]
    )
    # a skipped run's status carries its stored val/* and test/* metrics; a stacked fit's are
    # the single fit's to float rounding (docs/scaling.md: rel 1e-4)
    for single_status, stacked_status in zip(
        _status_view(again[0][0]), _status_view(again[1][0]), strict=True
    ):
        numbers = {k for k, v in single_status.items() if isinstance(v, float)}
        assert {k: v for k, v in single_status.items() if k not in numbers} == {
            k: v for k, v in stacked_status.items() if k not in numbers
        }
        for key in numbers:
            assert single_status[key] == pytest.approx(stacked_status[key], rel=1e-5), key
        assert {"val/acc", "val/loss", "test/acc", "test/loss"} <= single_status.keys()


def test_a_failure_inside_fit_ends_the_same_way(store, capsys):
    # trainer.accelerator=nosuch passes the config checks and fails in Lightning's Trainer, after
    # the runs exist: both paths must mark every run FAILED with its traceback.
    with pytest.raises(Exception, match="nosuch"):
        _jobs(store, "failed-single", [*BASE, "trainer.accelerator=nosuch"], stacked=False)
    with pytest.raises(Exception, match="nosuch"):
        _jobs(store, "failed-stacked", [*BASE, "trainer.accelerator=nosuch"], stacked=True)
    captured = capsys.readouterr()
    lines = [line for line in _normalised(captured.err) if "FAILED" in line]
    # outside a multirun the single path stops at its first job: [single s0, stacked s0, s1]
    assert len(lines) == 3 and lines[0] == lines[1] == lines[2].replace("he-x1-s1", "he-x1-s0")
    assert lines[0].startswith("he-x1-s0: FAILED (") and lines[0].endswith(
        "run <run> marked FAILED"
    )
    single, stacked = _state(store, "failed-single"), _state(store, "failed-stacked")
    assert single["he-x1-s0"] == stacked["he-x1-s0"]
    status, tags, artifacts = single["he-x1-s0"]
    assert status == "FAILED" and tags["outcome"] == "failed" and "traceback.txt" in artifacts
    assert stacked["he-x1-s1"][0] == "FAILED"


def _sigterm_once_checkpointed(folder: Path) -> threading.Thread:
    """Send this process a real SIGTERM once the job's first checkpoint exists (and so our
    handler is installed)."""
    before = set(folder.glob("*.ckpt"))

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if set(folder.glob("*.ckpt")) - before and signal.getsignal(signal.SIGTERM) not in (
                signal.SIG_DFL,
                None,
            ):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_preemption_and_resume_end_the_same_way(store, tmp_path, capsys):
    checkpoints = Path(store.removeprefix("sqlite:///")).parent / "checkpoints"
    seen = []
    for stacked in (False, True):
        experiment = f"preempted-{'stacked' if stacked else 'single'}"
        common = [*LONG, f"tracking.uri={store}", f"experiment_name={experiment}"]
        configs = (
            [compose_config([*common, "seed=0", "seeds_per_job=2"])]
            if stacked
            else [compose_config([*common, f"seed={seed}"]) for seed in (0, 1)]
        )
        for cfg in configs:
            watcher = _sigterm_once_checkpointed(checkpoints)
            with pytest.raises(SystemExit) as stopped:
                run_job(cfg)
            watcher.join()
            assert stopped.value.code == 143
        killed = _state(store, experiment)
        preempted_lines = _normalised(capsys.readouterr().err)
        for cfg in configs:
            run_job(cfg)  # the next launch resumes
        resumed_lines = [
            line for line in _normalised(capsys.readouterr().out) if "resuming" in line
        ]
        seen.append((killed, preempted_lines, resumed_lines, _state(store, experiment)))
    single, stacked = seen
    assert (
        [line for line in single[1] if "preempted" in line]
        == [line for line in stacked[1] if "preempted" in line]
        == [
            f"he-x1-s{k}: preempted (SIGTERM); run <run> KILLED, the next launch resumes it "
            "from <ckpt>"
            for k in (0, 1)
        ]
    )
    assert (
        single[2] == stacked[2] == [f"he-x1-s{k}: resuming run <run> from <ckpt>" for k in (0, 1)]
    )
    for name in ("he-x1-s0", "he-x1-s1"):
        assert single[0][name][:2] == stacked[0][name][:2]
        assert single[0][name][0] == "KILLED" and single[0][name][1]["outcome"] == "preempted"
        assert single[3][name][:2] == stacked[3][name][:2]
        assert single[3][name][0] == "FINISHED" and single[3][name][1]["outcome"] == "ok"
    assert not list(checkpoints.glob("*.ckpt"))


def test_the_sweep_callback_and_the_report_import_no_torch():
    code = (
        "import sys, initsweep.launch.sweep, initsweep.report.render, initsweep.cli; "
        "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_package_sets_no_environment_variable():
    # the libraries first (MLflow sets its own telemetry session variable on import): what
    # changes after that is initsweep's doing
    code = (
        "import os, mlflow, lightning, hydra, torch; before = dict(os.environ); "
        "import initsweep, initsweep.training.job, initsweep.launch.sweep, "
        "initsweep.report.render; "
        "assert dict(os.environ) == before, set(os.environ) ^ set(before)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
