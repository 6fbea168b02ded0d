"""A sweep killed outright or interrupted leaves no ghosts: real processes, real signals.

The sweeps are held at a pause point (``initsweep.launch.pause_points``: after an epoch's
checkpoint, or before the report) so that SIGKILL or SIGINT lands exactly there; the relaunch adopts
what the dead process left: every config one FINISHED run, nothing RUNNING, a checkpointed run
resumed into the same run with a continuous history and the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initsweep.tracking.orphans import classify
from initsweep.tracking.ownership import owner_alive, owner_tags
from initsweep.tracking.store import ensure_store
from initsweep.vocab import (
    ADOPTED_BY_TAG,
    HEARTBEAT_TAG,
    NOTE_TAG,
    OWNER_HOST_TAG,
    OWNER_PID_TAG,
    OWNER_STARTED_TAG,
    PENDING_TAG,
    ROLE_TAG,
)
from tests.conftest import REPO, runs_of

# Two jobs of three digits epochs: the first job's plots are still owed (its run RUNNING) while
# the second trains; checkpoint 5 is the second job's second epoch.
SWEEP = ["-m", "init=xavier,he", "seed=0", "trainer.max_epochs=3"]
MID_SECOND_JOB = "checkpoint:5"


class Launch:
    """``python train.py ARGS`` in its own session (as a terminal's foreground job), SIGINT at
    its default disposition (a background job of a non-interactive shell ignores it)."""

    def __init__(
        self, tmp_path: Path, store: str, *args: str, pause: str | None = None, name: str = "launch"
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.marker = tmp_path / f"{name}.paused"
        if pause:
            env.update(INITSWEEP_PAUSE_AT=pause, INITSWEEP_PAUSE_FILE=str(self.marker))
        self.log = tmp_path / f"{name}.log"
        cmd = [
            sys.executable,
            str(REPO / "train.py"),
            *args,
            f"tracking.uri={store}",
            f"hydra.run.dir={tmp_path / name}",
            f"hydra.sweep.dir={tmp_path / name}",
        ]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    def paused(self, timeout: float = 300) -> None:
        """Wait until the process holds at its pause point."""
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"never paused:\n{self.output}"
            time.sleep(0.05)

    def signal_group(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def release(self) -> None:
        self.marker.with_name(self.marker.name + ".go").touch()

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.log.read_text()


def finish(tmp_path: Path, store: str, *args: str, name: str) -> str:
    launch = Launch(tmp_path, store, *args, name=name)
    code = launch.wait()
    assert code == 0, f"exit {code}:\n{launch.output}"
    return launch.output


def initsweep_doctor(store: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "initsweep.cli", "doctor", "--tracking-uri", store, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_no_ghosts(store: str, experiment: str = "initsweep") -> dict[str, object]:
    """Nothing RUNNING; every config exactly one FINISHED run; returns the job runs by name."""
    runs = runs_of(store, experiment)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    jobs = [r for r in runs if r.data.tags.get(ROLE_TAG) != "sweep"]
    finished: dict[str, list] = {}
    for run in jobs:
        if run.info.status == "FINISHED":
            finished.setdefault(run.data.tags["config_hash"], []).append(run.info.run_name)
    configs = {r.data.tags["config_hash"] for r in jobs}
    assert {h: len(names) for h, names in finished.items()} == {h: 1 for h in configs}
    return {r.info.run_name: r for r in jobs if r.info.status == "FINISHED"}


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("time/")]
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


@pytest.mark.slow
def test_a_sweep_killed_outright_is_adopted_by_the_relaunch(tmp_path, store):
    # 1. killed mid-training of its second job: the first job's run waits for its plots
    first = Launch(tmp_path, store, *SWEEP, pause=MID_SECOND_JOB, name="first")
    first.paused()
    first.signal_group(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    left = {r.info.run_name: r for r in runs_of(store)}
    assert {n: r.info.status for n, r in left.items() if not n.startswith("sweep-")} == {
        "xavier-x1-s0": "RUNNING",
        "he-x1-s0": "RUNNING",
    }
    assert left["xavier-x1-s0"].data.tags[PENDING_TAG].startswith("plots:")
    assert left["xavier-x1-s0"].data.tags["outcome"] == "ok"  # its result line said so

    # 2. the relaunch adopts both, then is killed in its report
    second = Launch(tmp_path, store, *SWEEP, pause="report:1", name="second")
    second.paused()
    second.signal_group(signal.SIGKILL)
    second.wait()
    said = second.output
    assert f"adopted run {left['xavier-x1-s0'].info.run_id}" in said
    assert "completed (its plots logged): FINISHED, ok" in said
    assert f"he-x1-s0: resuming run {left['he-x1-s0'].info.run_id}" in said
    assert "closed KILLED" in said  # the first sweep's parent

    # 3. the third launch has nothing to train (the second sweep had ended its parent run
    # before its report: only the report's files are missing there)
    third = finish(tmp_path, store, *SWEEP, name="third")
    assert third.count("skipped, finished as run") == 2
    runs = assert_no_ghosts(store)
    assert {n: r.info.run_id for n, r in runs.items()} == {
        n: left[n].info.run_id for n in ("xavier-x1-s0", "he-x1-s0")
    }  # the same runs
    parents = [r for r in runs_of(store) if r.data.tags.get(ROLE_TAG) == "sweep"]
    assert sorted(p.info.status for p in parents) == ["FINISHED", "FINISHED", "KILLED"]
    assert all(
        "adopted by sweep" in p.data.tags[NOTE_TAG] for p in parents if p.info.status == "KILLED"
    )
    client = MlflowClient(store)
    xavier = runs["xavier-x1-s0"]
    assert PENDING_TAG not in xavier.data.tags
    assert {a.path for a in client.list_artifacts(xavier.info.run_id, "diagnostics")} >= {
        "diagnostics/diagnostics.csv",
        "diagnostics/loss.png",
    }

    # the resumed run: a continuous history, bit for bit an uninterrupted run's
    finish(
        tmp_path,
        store,
        "init=he",
        "seed=0",
        "trainer.max_epochs=3",
        "experiment_name=uninterrupted",
        name="reference",
    )
    reference = runs_of(store, "uninterrupted")[0]
    resumed = histories(client, runs["he-x1-s0"].info.run_id)
    for key, rows in resumed.items():
        steps = [step for step, _ in rows]
        assert steps == sorted(set(steps)), f"{key}: duplicate or unordered steps"
    assert resumed == histories(client, reference.info.run_id)
    assert runs["he-x1-s0"].data.metrics["test/acc"] == reference.data.metrics["test/acc"]


@pytest.mark.slow
def test_only_the_dead_sweeps_runs_are_adopted_in_a_shared_store(tmp_path, store):
    live = Launch(
        tmp_path,
        store,
        "-m",
        "init=zeros",
        "seed=0",
        "trainer.max_epochs=2",
        pause="checkpoint:1",
        name="live",
    )
    dead = Launch(
        tmp_path,
        store,
        "-m",
        "init=xavier",
        "seed=0",
        "trainer.max_epochs=2",
        pause="checkpoint:1",
        name="dead",
    )
    live.paused()
    dead.paused()
    dead.signal_group(signal.SIGKILL)
    dead.wait()
    before = {r.info.run_name: r for r in runs_of(store)}
    live_ids = {
        r.info.run_id
        for r in before.values()
        if r.data.tags.get(OWNER_PID_TAG) == str(live.proc.pid)
    }
    assert len(live_ids) == 2  # its parent and its job's run, both RUNNING

    # the doctor, told that any silence is stale, still judges this host's runs by their PID
    listed = initsweep_doctor(store, "--stale-after", "0")
    lines = listed.splitlines()
    assert len(lines) == 2 and all(f"pid {dead.proc.pid} on" in line for line in lines), listed
    assert not any(run_id in listed for run_id in live_ids)
    assert "would mark it preempted" in listed and "would close it KILLED (a dead sweep's" in listed

    relaunch = finish(
        tmp_path, store, "-m", "init=xavier", "seed=0", "trainer.max_epochs=2", name="relaunch"
    )
    client = MlflowClient(store)
    assert f"xavier-x1-s0: resuming run {before['xavier-x1-s0'].info.run_id}" in relaunch
    for run_id in live_ids:  # untouched while it lives
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and ADOPTED_BY_TAG not in run.data.tags
    live.release()
    assert live.wait() == 0, live.output
    runs = assert_no_ghosts(store)
    assert runs["zeros-x1-s0"].info.run_id in live_ids
    assert ADOPTED_BY_TAG not in runs["zeros-x1-s0"].data.tags
    assert initsweep_doctor(store, "--fix").strip() == "no orphans"


@pytest.mark.slow
def test_ctrl_c_ends_the_sweep_cleanly_and_the_relaunch_resumes(tmp_path, store):
    # Ctrl-C once during the second job: one line, exit 130, the run preempted, nothing RUNNING
    first = Launch(tmp_path, store, *SWEEP, pause=MID_SECOND_JOB, name="first")
    first.paused()
    first.signal_group(signal.SIGINT)
    first.release()
    assert first.wait() == 130, first.output
    said = first.output
    assert "Traceback" not in said and "plot worker gone" not in said
    lines = [line for line in said.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and lines[0].startswith("interrupted: he-x1-s0 saved at step ")
    assert lines[0].endswith("; relaunch to resume")
    runs = {r.info.run_name: r for r in runs_of(store)}
    assert [n for n, r in runs.items() if r.info.status == "RUNNING"] == []
    assert runs["xavier-x1-s0"].info.status == "FINISHED"  # its queued plots were drawn
    assert PENDING_TAG not in runs["xavier-x1-s0"].data.tags
    assert (runs["he-x1-s0"].info.status, runs["he-x1-s0"].data.tags["outcome"]) == (
        "KILLED",
        "preempted",
    )
    assert [r.info.status for n, r in runs.items() if n.startswith("sweep-")] == ["KILLED"]

    # the relaunch resumes it; Ctrl-C twice while it is held: it stops at once, nothing RUNNING
    second = Launch(tmp_path, store, *SWEEP, pause="checkpoint:1", name="second")
    second.paused()
    second.signal_group(signal.SIGINT)
    time.sleep(0.3)  # two Ctrl-Cs, not one: the first is handled within the pause's 20 ms poll
    second.signal_group(signal.SIGINT)
    assert second.wait(timeout=60) == 130, second.output  # never released: it stopped itself
    assert f"resuming run {runs['he-x1-s0'].info.run_id}" in second.output
    assert "Traceback" not in second.output
    assert [r.info.run_name for r in runs_of(store) if r.info.status == "RUNNING"] == []

    third = finish(tmp_path, store, *SWEEP, name="third")
    assert f"resuming run {runs['he-x1-s0'].info.run_id}" in third
    done = assert_no_ghosts(store)
    assert done["he-x1-s0"].info.run_id == runs["he-x1-s0"].info.run_id


# -- the ownership rules on their own (no training) ----------------------------------------------


def _run_with(client: MlflowClient, experiment_id: str, tags: dict[str, str]):
    run = client.create_run(experiment_id, tags=tags)
    return client.get_run(run.info.run_id)


def test_an_owner_is_checked_by_pid_here_and_by_heartbeat_elsewhere(store):
    ensure_store(store)  # from the migrated template: no migrations run here
    client = MlflowClient(store)
    exp = client.create_experiment("owners")
    mine = _run_with(client, exp, owner_tags())
    assert owner_alive(mine, stale_after=0).alive  # this process: alive whatever the window

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = _run_with(client, exp, {**owner_tags(), OWNER_PID_TAG: gone.stdout.strip()})
    verdict = owner_alive(dead, stale_after=1e9)  # no waiting on this host
    assert not verdict.alive and "is gone" in verdict.why
    reused = _run_with(client, exp, {**owner_tags(), OWNER_STARTED_TAG: "another-boot:1"})
    assert not owner_alive(reused, stale_after=1e9).alive  # our PID, another process's start

    elsewhere = {**owner_tags(), OWNER_HOST_TAG: "another-host"}
    fresh = _run_with(client, exp, elsewhere)
    assert owner_alive(fresh, stale_after=600).alive
    stale = _run_with(client, exp, {**elsewhere, HEARTBEAT_TAG: str(int(time.time()) - 3600)})
    assert owner_alive(stale, stale_after=600, now=time.time() + 3600).alive is False
    assert classify(stale, stale_after=600) is None  # its start is recent: still a sign of life
    old = _run_with(client, exp, {})  # an older version's run: no owner tags
    assert owner_alive(old, stale_after=600).alive
    assert not owner_alive(old, stale_after=600, now=time.time() + 3600).alive
    assert classify(old, stale_after=0).action == "close"
