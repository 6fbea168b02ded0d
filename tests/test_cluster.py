"""Sweeps on a real SLURM cluster (scripts/local_cluster.sh: slurmctld, slurmd, slurmdbd on
MariaDB, munge), through the CLI as a user runs them: real sbatch, real ``sacct``, real MLflow
(sqlite, and an ``mlflow server`` on PostgreSQL).

The node has this machine's cores; each task asks for 1 CPU (``cpus_per_task=1``, which is also
its torch thread count, src/initsweep/launch/devices.py) and 2 GB, so tasks run ``nproc`` at a time.
``hydra.launcher.gpus_per_node=0`` is how a user turns the config's GPU request off for a CPU
partition (sbatch gets ``--gpus-per-node=0``; ``=null`` drops the flag, also accepted).
Fixtures: tests/helpers/cluster.py (fail in CI, skip without root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, runs_of
from tests.helpers.cluster import STATE, LocalCluster

# Each test starts (or reuses) the local SLURM cluster: root, apt-get (`make test-full`).
pytestmark = pytest.mark.cluster

METRICS = ("test/acc", "test/loss", "val/loss", "val/acc", "train/loss")
GRID = ["init=he,zeros", "seed=0,1", "trainer.max_epochs=2", "diagnostics.plots=false"]
RUN_NAMES = ["he-x1-s0", "he-x1-s1", "zeros-x1-s0", "zeros-x1-s1"]
SRUN_WARNING = "command is available on your system but is not used"


def slurm_launcher(cluster: LocalCluster) -> list[str]:
    return [
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=10",
    ]


def sweep(
    folder: Path,
    args: list[str],
    cluster: LocalCluster,
    store: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``python train.py -m ARGS`` in ``folder``, with the cluster's SLURM_CONF; ``store`` None:
    the tracking config decides (``tracking=server`` reads MLFLOW_TRACKING_URI)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({k: v for k, v in cluster.env.items() if k != "MLFLOW_TRACKING_URI"})
    env.update(extra_env or {})
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *args,
        f"hydra.sweep.dir={folder / 'multirun'}",
        *([f"tracking.uri={store}"] if store else []),
    ]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def array_job(sweep_dir: Path) -> tuple[str, list[str]]:
    """The one SLURM array job a sweep submitted, and its task ids (submitit's folders)."""
    tasks = sorted(
        d.name for d in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", d.name)
    )
    arrays = {t.split("_")[0] for t in tasks}
    assert len(arrays) == 1, f"expected one array job, got {sorted(arrays)}"
    return arrays.pop(), tasks


def sacct_states(
    array_id: str, env: dict[str, str], n_tasks: int, timeout_s: float = 90
) -> dict[str, str]:
    """Each task's state in the accounting database, once none is left unfinished there
    (slurmdbd hears of a task's end a moment after the launcher read its result)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", array_id, "-o", "JobID,State"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if line)
        unfinished = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED"}
        if len(states) == n_tasks and not unfinished & set(states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct after {timeout_s}s: {states}")
        time.sleep(1)


def children_of_one_parent(uri: str, experiment: str = "initsweep") -> tuple:
    runs = runs_of(uri, experiment)
    parents = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r not in parents]
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    return parents[0], {r.info.run_name: r for r in children}


@pytest.mark.slow  # ~2 min on 2 cores: 4 SLURM tasks (2 at a time, each a fresh process), 4 basic
def test_slurm_array_sweep_completes_with_the_basic_launchers_metrics(slurm_cluster, tmp_path):
    store = f"sqlite:///{tmp_path / 'slurm' / 'mlruns' / 'mlflow.db'}"
    proc = sweep(tmp_path / "slurm", [*slurm_launcher(slurm_cluster), *GRID], slurm_cluster, store)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "4 jobs (4 ok)" in proc.stdout
    # one sbatch: an array of 4 tasks, on the partition asked for, no GPU requested
    sweep_dir = tmp_path / "slurm" / "multirun"
    array_id, tasks = array_job(sweep_dir)
    assert tasks == [f"{array_id}_{i}" for i in range(4)]
    sbatch = (sweep_dir / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    for line in (
        "--array=0-3%4",
        f"--partition={slurm_cluster.partition}",
        "--gpus-per-node=0",
        "--cpus-per-task=1",
    ):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert sacct_states(array_id, slurm_cluster.env, 4) == {t: "COMPLETED" for t in tasks}
    # each run was trained inside its SLURM task (its line is in that task's log)
    logs = "".join((sweep_dir / ".submitit" / t / f"{t}_0_log.out").read_text() for t in tasks)
    assert sorted(re.findall(r"^([\w.-]+): test/acc=", logs, re.M)) == RUN_NAMES
    # under srun Lightning sees a SLURM task: no "srun is available but not used" warning
    errors = "".join((sweep_dir / ".submitit" / t / f"{t}_0_log.err").read_text() for t in tasks)
    assert SRUN_WARNING not in errors
    parent, children = children_of_one_parent(store)
    assert parent.info.status == "FINISHED" and sorted(children) == RUN_NAMES
    assert all(r.info.status == "FINISHED" for r in children.values())

    # The same sweep on Hydra's basic launcher, one torch thread like the SLURM tasks
    # (cpus_per_task=1): same bits.
    basic_store = f"sqlite:///{tmp_path / 'basic' / 'mlruns' / 'mlflow.db'}"
    proc = sweep(
        tmp_path / "basic", [*GRID, "+devices.threads_per_job=1"], slurm_cluster, basic_store
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert SRUN_WARNING not in proc.stderr  # srun is installed here: jobs outside SLURM too
    _, basic = children_of_one_parent(basic_store)
    for name in RUN_NAMES:
        for key in METRICS:
            assert children[name].data.metrics[key] == basic[name].data.metrics[key], (name, key)


@pytest.mark.slow  # ~45 s: 2 tasks at once
def test_a_failing_task_does_not_stop_the_others(slurm_cluster, tmp_path):
    """One job of the array gets a bad value that fails inside Lightning, after its run started:
    its run is FAILED with the traceback, the other job finishes, the sweep says so (exit 1)."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = sweep(
        tmp_path,
        [
            *slurm_launcher(slurm_cluster),
            "init=he",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu,nosuch",
            "diagnostics.plots=false",
        ],
        slurm_cluster,
        store,
    )
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    assert "2 jobs (1 failed, 1 ok)" in proc.stdout
    assert re.search(r"failed: .*nosuch", proc.stderr), proc.stderr
    array_id, tasks = array_job(tmp_path / "multirun")
    # the failing job caught its error and reported it: neither task failed in SLURM's eyes
    assert sacct_states(array_id, slurm_cluster.env, 2) == {t: "COMPLETED" for t in tasks}
    parent, children = children_of_one_parent(store)
    assert parent.info.status == "FAILED" and parent.data.tags["n_failed"] == "1"
    assert sorted(r.info.status for r in children.values()) == ["FAILED", "FINISHED"]
    failed = next(r for r in children.values() if r.info.status == "FAILED")
    artifacts = {a.path for a in MlflowClient(store).list_artifacts(failed.info.run_id)}
    assert "traceback.txt" in artifacts


def _texts_under(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def _server_process_texts(pgid: int) -> str:
    """Command lines and environments of the mlflow server's processes (its process group)."""
    texts = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                texts += [
                    (stat.parent / f).read_bytes().decode("utf-8", "replace")
                    for f in ("cmdline", "environ")
                ]
        except (OSError, IndexError):
            continue
    assert texts, f"no process in the server's group {pgid}"
    return "\n".join(texts)


@pytest.mark.slow  # ~1.5 min: the 4-task sweep; plus a cold server start (~25 s) if not running
def test_slurm_sweep_logs_to_a_postgresql_backed_server(slurm_cluster, pg_server, tmp_path):
    experiment = f"cluster-{uuid.uuid4().hex[:8]}"  # the server outlives one test
    uri = pg_server.tracking_uri
    proc = sweep(
        tmp_path,
        [*slurm_launcher(slurm_cluster), *GRID, "tracking=server", f"experiment_name={experiment}"],
        slurm_cluster,
        extra_env={"MLFLOW_TRACKING_URI": uri},
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "4 jobs (4 ok)" in proc.stdout
    array_id, tasks = array_job(tmp_path / "multirun")
    assert sacct_states(array_id, slurm_cluster.env, 4) == {t: "COMPLETED" for t in tasks}
    parent, children = children_of_one_parent(uri, experiment)
    assert parent.info.status == "FINISHED" and sorted(children) == RUN_NAMES
    client = MlflowClient(uri)
    for run in children.values():
        assert run.info.status == "FINISHED"
        assert set(METRICS) <= set(run.data.metrics)
        steps = client.get_metric_history(run.info.run_id, "train/loss")
        assert len(steps) == len({m.step for m in steps}) > 10  # every step, once
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # through the server
        assert {"config.yaml", "overrides.txt"} <= {
            a.path for a in client.list_artifacts(run.info.run_id)
        }

    # The PostgreSQL password never leaves the server side: not in a param, tag or artifact of
    # any run, not in the sweep's console or any log/file of the sweep, not in the server's log,
    # command line or environment (libpq reads it from the script's pgpass file).
    password = pg_server.secret("pg_password")
    texts = {
        "console": proc.stdout + proc.stderr,
        "sweep folder (hydra and submitit logs)": _texts_under(tmp_path / "multirun"),
        "server and database logs": _texts_under(STATE / "logs"),
        "server processes": _server_process_texts(int(pg_server.env["INITSWEEP_MLFLOW_PID"])),
    }
    for run in [parent, *children.values()]:
        texts[run.info.run_name] = "\n".join(
            [
                *map(str, run.data.params.items()),
                *map(str, run.data.tags.items()),
                _texts_under(
                    Path(
                        client.download_artifacts(
                            run.info.run_id, "", str(tmp_path / run.info.run_id)
                        )
                    )
                ),
            ]
        )
    assert [where for where, text in texts.items() if password in text] == []


# ------------------------------------------------------------------ preemption, time limits, kills
# One job that trains for a while (10-40 s here, by the machine's load). The time-limit tests
# need it still training when SLURM's signal comes, on slurmctld's ~30 s tick: they pause it
# (``paused_until_slurm_signals``) rather than make it minutes long.
LONG = [
    "init=he",
    "seed=0",
    "data=synthetic",
    "data.n_train=12000",
    "data.n_val=500",
    "data.n_test=1000",
    "data.features=64",
    "data.batch_size=64",
    "trainer.max_epochs=45",
    "diagnostics.enabled=false",
]
FINAL = ("test/acc", "test/loss", "val/loss", "val/acc")


@contextmanager
def running_sweep(
    folder: Path, args: list[str], cluster: LocalCluster, store: str
) -> Iterator[subprocess.Popen]:
    """``sweep`` without waiting: the test acts on the cluster while the sweep runs. However
    the test ends, the sweep and its tasks are gone afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({k: v for k, v in cluster.env.items() if k != "MLFLOW_TRACKING_URI"})
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *args,
        f"hydra.sweep.dir={folder / 'multirun'}",
        f"tracking.uri={store}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:  # the test failed while the sweep ran: stop it and its tasks
            proc.kill()
            proc.communicate()
            if (folder / "multirun" / ".submitit").is_dir():
                jobs = {t.split("_")[0] for t in tasks_of(folder / "multirun")}
                subprocess.run(["scancel", *jobs], env=env, capture_output=True)


def wait_until_training(
    proc: subprocess.Popen, checkpoints: Path, jobs: int = 1, timeout_s: float = 600
) -> None:
    """Until each job's first epoch-end checkpoint exists: training, and resumable."""
    deadline = time.monotonic() + timeout_s
    while len(list(checkpoints.glob("*.ckpt"))) < jobs:
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended first:\n{proc.stdout.read()}\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)


def tasks_of(sweep_dir: Path) -> list[str]:
    """The SLURM ids of a sweep's tasks: ``N_i`` for an array, ``N`` for a one-job sweep."""
    return sorted(
        d.name for d in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+(_\d+)?", d.name)
    )


def attempts(task: str, env: dict[str, str], timeout_s: float = 90) -> list[str]:
    """Every attempt of a task in the accounting database, oldest first (``--duplicates``: a
    requeued task keeps its id and gets one record per run), once the last one is final."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "--duplicates", "-j", task, "-o", "JobID,State"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        states = [line.split("|")[1] for line in out.splitlines() if line.split("|")[0] == task]
        if states and states[-1] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct after {timeout_s}s: {states}")
        time.sleep(1)


def task_log(sweep_dir: Path, task: str) -> str:
    folder = sweep_dir / ".submitit" / task
    return "".join(p.read_text() for p in sorted(folder.glob(f"{task}_0_log.*")))


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster, tmp_path_factory) -> dict[str, float]:
    """LONG on the basic launcher, never stopped, one torch thread like a SLURM task."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    store = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    proc = sweep(folder, [*LONG, "+devices.threads_per_job=1"], slurm_cluster, store)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    [run] = children_of_one_parent(store)[1].values()
    return {key: run.data.metrics[key] for key in FINAL}


def assert_resumed_to_the_end(
    proc: subprocess.Popen, folder: Path, store: str, uninterrupted: dict[str, float]
) -> str:
    """The launching process waited: one job, ok; its one run FINISHED, resumed, with the
    metrics of the uninterrupted run, bit for bit. Returns the task's log."""
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "1 jobs (1 ok)" in out and "preempted" not in out
    sweep_dir = folder / "multirun"
    [task] = tasks_of(sweep_dir)
    log = task_log(sweep_dir, task)
    parent, children = children_of_one_parent(store)
    assert parent.info.status == "FINISHED" and list(children) == ["he-x1-s0"]
    run = children["he-x1-s0"]
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "ok"
    assert f"he-x1-s0: resuming run {run.info.run_id} from " in log  # the same run
    assert {key: run.data.metrics[key] for key in FINAL} == uninterrupted
    return log


@pytest.mark.slow  # ~2 min: ~40 s SLURM's restart delay (cred_expire=30) + 45 epochs
def test_a_requeued_task_resumes_its_run_and_the_sweep_waits_for_it(
    slurm_cluster, tmp_path, uninterrupted
):
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    with running_sweep(
        tmp_path, [*slurm_launcher(slurm_cluster), *LONG], slurm_cluster, store
    ) as proc:
        wait_until_training(proc, tmp_path / "mlruns" / "checkpoints")
        [task] = tasks_of(tmp_path / "multirun")
        subprocess.run(
            ["scontrol", "requeue", task], env={**os.environ, **slurm_cluster.env}, check=True
        )
        log = assert_resumed_to_the_end(proc, tmp_path, store, uninterrupted)
    assert "he-x1-s0: preempted (SIGTERM)" in log and f"SLURM task {task} was requeued" in log
    assert attempts(task, slurm_cluster.env) == ["REQUEUED", "COMPLETED"]


def process_state(pid: int) -> str | None:
    """``R``, ``S``, ``T`` (stopped), ... from ``/proc/<pid>/stat``; None once it has exited."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def paused_until_slurm_signals(pid: int, timeout_s: float = 150) -> None:
    """Hold a task's process (SIGSTOP) until SLURM signals it: slurmstepd sends a SIGCONT with
    every signal, so the process runs again exactly when the time-limit signal arrives. Then it
    is mid-training, however fast this machine trains; the signal, submitit's requeue and the
    resume are untouched."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5
        while process_state(pid) not in ("T", "t", None) and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + timeout_s
        while process_state(pid) in ("T", "t"):
            assert time.monotonic() < deadline, "no signal from SLURM"
            time.sleep(0.2)
    finally:
        with suppress(ProcessLookupError):  # it has handled the signal and exited: requeued
            os.kill(pid, signal.SIGCONT)


@pytest.mark.slow  # ~2 min: a first attempt until its limit, SLURM's restart delay, the rest
def test_a_task_at_its_time_limit_is_requeued_by_submitit_and_resumes(
    slurm_cluster, tmp_path, uninterrupted
):
    """``timeout_min=2``: SLURM sends submitit's USR2 ``signal_delay_s`` before the limit (on
    its ~30 s tick); the job stops at the next step and hands over to submitit, which requeues
    it (``max_num_timeout``). Once the first requeue is in the accounting, the waiting task's
    limit is raised, so the test's length does not depend on where the later ticks fall."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    launcher = [
        *slurm_launcher(slurm_cluster),
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        "hydra.launcher.max_num_timeout=3",
    ]
    env = {**os.environ, **slurm_cluster.env}
    with running_sweep(tmp_path, [*launcher, *LONG], slurm_cluster, store) as proc:
        wait_until_training(proc, tmp_path / "mlruns" / "checkpoints")
        [task] = tasks_of(tmp_path / "multirun")
        paused_until_slurm_signals(python_of(task, slurm_cluster.env))
        deadline = time.monotonic() + 300
        while (
            "REQUEUED"
            not in subprocess.run(
                ["sacct", "-X", "-n", "-P", "--duplicates", "-j", task, "-o", "State"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        ):
            assert proc.poll() is None, "the job finished instead of being requeued"
            assert time.monotonic() < deadline, "no requeue at the time limit"
            time.sleep(1)
        subprocess.run(["scontrol", "update", f"JobId={task}", "TimeLimit=10"], env=env, check=True)
        log = assert_resumed_to_the_end(proc, tmp_path, store, uninterrupted)
    assert "he-x1-s0: preempted (SIGUSR2)" in log
    assert re.search(r"Requeued job \S+ \(2 remaining timeouts\)", log), log  # submitit's
    assert attempts(task, slurm_cluster.env) == ["REQUEUED", "COMPLETED"]


@pytest.mark.slow  # ~45 s: one attempt until its time limit
def test_a_task_out_of_requeues_at_its_time_limit_ends_timeout(slurm_cluster, tmp_path):
    """``max_num_timeout=0``: submitit refuses the requeue (UncompletedJobError); the job is
    over, with outcome ``timeout``, its run resumable by a relaunch, and the sweep says so."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    launcher = [
        *slurm_launcher(slurm_cluster),
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        "hydra.launcher.max_num_timeout=0",
    ]
    with running_sweep(tmp_path, [*launcher, *LONG], slurm_cluster, store) as proc:
        wait_until_training(proc, tmp_path / "mlruns" / "checkpoints")
        [task] = tasks_of(tmp_path / "multirun")
        paused_until_slurm_signals(python_of(task, slurm_cluster.env))
        out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, f"{out}\n{err}"
    assert "1 jobs (1 timeout)" in out
    [task] = tasks_of(tmp_path / "multirun")
    assert (
        f"timeout: he-x1-s0: SLURM task {task}: Job not requeued because: timed-out too many times."
    ) in err, err
    assert attempts(task, slurm_cluster.env) == ["COMPLETED"]  # the job ended, and said why
    parent, children = children_of_one_parent(store)
    assert parent.info.status == "FAILED" and parent.data.tags["n_timeout"] == "1"
    run = children["he-x1-s0"]
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "preempted"


def python_of(task: str, env: dict[str, str]) -> int:
    """The PID of the task's Python process (its job step, under srun)."""
    env = {**os.environ, **env}
    job = subprocess.run(
        ["squeue", "-h", "-j", task, "-o", "%A"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()  # an array task's own job id
    out = subprocess.run(
        ["scontrol", "listpids", job], env=env, capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines()[1:]:
        pid = int(line.split()[0])
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode()).name.startswith("python"):
            return pid
    raise AssertionError(f"no python process in task {task}: {out}")


@pytest.mark.slow  # ~1.5 min: two tasks; the killed one is collected after submitit's 15 s
def test_a_task_killed_with_sigkill_is_a_failed_job_and_leaves_no_run_running(
    slurm_cluster, tmp_path
):
    """What the OOM killer or a lost node does: no signal the job can handle, no result. The
    sweep collects the other task, says which one failed and how SLURM saw it, exits 1."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [
        *slurm_launcher(slurm_cluster),
        "seed=0,1",
        "trainer.max_epochs=30",
        *(a for a in LONG if not a.startswith(("seed=", "trainer.max_epochs="))),
    ]
    with running_sweep(tmp_path, args, slurm_cluster, store) as proc:
        wait_until_training(proc, tmp_path / "mlruns" / "checkpoints", jobs=2)
        array_id, tasks = array_job(tmp_path / "multirun")
        os.kill(python_of(tasks[0], slurm_cluster.env), signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, f"{out}\n{err}"
    assert "2 jobs (1 failed, 1 ok)" in out
    line = f"failed: he-x1-s0: SLURM task {tasks[0]} ended without a result (sacct: FAILED)"
    assert line in err, err
    assert "Traceback" not in err
    assert sacct_states(array_id, slurm_cluster.env, 2) == {
        tasks[0]: "FAILED",
        tasks[1]: "COMPLETED",
    }
    parent, children = children_of_one_parent(store)
    assert parent.info.status == "FAILED" and parent.data.tags["n_failed"] == "1"
    assert {n: r.info.status for n, r in children.items()} == {
        "he-x1-s0": "KILLED",
        "he-x1-s1": "FINISHED",
    }
    killed = children["he-x1-s0"]  # resumable: its checkpoint is there
    assert killed.data.tags["outcome"] == "preempted"
    assert killed.data.tags["error"] == line.removeprefix("failed: he-x1-s0: ")


@pytest.mark.slow  # ~30 s: one srun
def test_inside_a_slurm_task_lightning_uses_slurm_without_its_own_requeue(slurm_cluster, tmp_path):
    code = (
        "import signal; from tests.conftest import compose_config; "
        "from initsweep.training.builders import build_trainer; "
        "t = build_trainer(compose_config(['debug=fast']), False, []); "
        "env = t._accelerator_connector.cluster_environment; "
        "t._signal_connector.register_signal_handlers(); "
        "print(type(env).__name__, env.auto_requeue, "
        "signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)"
    )
    env = {**os.environ, **slurm_cluster.env}
    proc = subprocess.run(
        [
            "srun",
            "-p",
            slurm_cluster.partition,
            "-n1",
            "-c1",
            "--mem=2G",
            sys.executable,
            "-c",
            code,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    # Lightning's requeue handler (SIGUSR1, hpc_ckpt files) is not installed: submitit requeues
    assert proc.stdout.splitlines()[-1] == "SLURMEnvironment False True"
    assert SRUN_WARNING not in proc.stderr


def test_outside_slurm_lightning_uses_the_plain_environment_and_says_nothing_of_srun(tmp_path):
    """On a machine with SLURM installed (a login node) a job outside SLURM prints no srun
    warning. Without srun here the warning cannot appear: skipped."""
    if shutil.which("srun") is None:
        pytest.skip("srun is not installed here: the warning cannot appear")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_"))}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "init=he",
            "trainer.max_epochs=1",
            "diagnostics.plots=false",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 jobs (1 ok)" in proc.stdout
    assert SRUN_WARNING not in proc.stderr
    from initsweep.training.builders import cluster_environment

    assert type(cluster_environment()).__name__ == "LightningEnvironment"
