"""Sweeps on a real SLURM cluster (scripts/local_cluster.sh: slurmctld, slurmd, slurmdbd on
MariaDB, munge), through the CLI as a user runs them: real sbatch, real ``sacct``, real MLflow
(sqlite, and an ``mlflow server`` on PostgreSQL).

The node has this machine's cores; each task asks for 1 CPU (``cpus_per_task=1``, which is also
its torch thread count, src/initsweep/devices.py) and 2 GB, so tasks run ``nproc`` at a time.
``hydra.launcher.gpus_per_node=0`` is how a user turns the config's GPU request off for a CPU
partition (sbatch gets ``--gpus-per-node=0``; ``=null`` drops the flag, also accepted).
Fixtures: tests/cluster.py (fail in CI, skip without root).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.cluster import STATE, LocalCluster
from tests.conftest import REPO, runs_of

METRICS = ("test/acc", "test/loss", "val/loss", "val/acc", "train/loss")
GRID = ["init=he,zeros", "seed=0,1", "trainer.max_epochs=2", "diagnostics.plots=false"]
RUN_NAMES = ["he-x1-s0", "he-x1-s1", "zeros-x1-s0", "zeros-x1-s1"]


def slurm_launcher(cluster: LocalCluster) -> list[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={cluster.partition}",
            "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]


def sweep(folder: Path, args: list[str], cluster: LocalCluster, store: str | None = None,
          extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python train.py -m ARGS`` in ``folder``, with the cluster's SLURM_CONF; ``store`` None:
    the tracking config decides (``tracking=server`` reads MLFLOW_TRACKING_URI)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({k: v for k, v in cluster.env.items() if k != "MLFLOW_TRACKING_URI"})
    env.update(extra_env or {})
    cmd = [sys.executable, str(REPO / "train.py"), "-m", *args,
           f"hydra.sweep.dir={folder / 'multirun'}",
           *([f"tracking.uri={store}"] if store else [])]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def array_job(sweep_dir: Path) -> tuple[str, list[str]]:
    """The one SLURM array job a sweep submitted, and its task ids (submitit's folders)."""
    tasks = sorted(d.name for d in (sweep_dir / ".submitit").iterdir()
                   if re.fullmatch(r"\d+_\d+", d.name))
    arrays = {t.split("_")[0] for t in tasks}
    assert len(arrays) == 1, f"expected one array job, got {sorted(arrays)}"
    return arrays.pop(), tasks


def sacct_states(array_id: str, env: dict[str, str], n_tasks: int,
                 timeout_s: float = 90) -> dict[str, str]:
    """Each task's state in the accounting database, once none is left unfinished there
    (slurmdbd hears of a task's end a moment after the launcher read its result)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", array_id, "-o", "JobID,State"],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             check=True).stdout
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
    proc = sweep(tmp_path / "slurm", [*slurm_launcher(slurm_cluster), *GRID], slurm_cluster,
                 store)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "4 jobs (4 ok)" in proc.stdout
    # one sbatch: an array of 4 tasks, on the partition asked for, no GPU requested
    sweep_dir = tmp_path / "slurm" / "multirun"
    array_id, tasks = array_job(sweep_dir)
    assert tasks == [f"{array_id}_{i}" for i in range(4)]
    sbatch = (sweep_dir / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    for line in ("--array=0-3%4", f"--partition={slurm_cluster.partition}",
                 "--gpus-per-node=0", "--cpus-per-task=1"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert sacct_states(array_id, slurm_cluster.env, 4) == {t: "COMPLETED" for t in tasks}
    # each run was trained inside its SLURM task (its line is in that task's log)
    logs = "".join((sweep_dir / ".submitit" / t / f"{t}_0_log.out").read_text() for t in tasks)
    assert sorted(re.findall(r"^([\w.-]+): test/acc=", logs, re.M)) == RUN_NAMES
    # under srun Lightning sees a SLURM task: no "srun is available but not used" warning
    errors = "".join((sweep_dir / ".submitit" / t / f"{t}_0_log.err").read_text() for t in tasks)
    assert "command is available on your system but is not used" not in errors
    parent, children = children_of_one_parent(store)
    assert parent.info.status == "FINISHED" and sorted(children) == RUN_NAMES
    assert all(r.info.status == "FINISHED" for r in children.values())

    # The same sweep on Hydra's basic launcher, one torch thread like the SLURM tasks
    # (cpus_per_task=1): same bits.
    basic_store = f"sqlite:///{tmp_path / 'basic' / 'mlruns' / 'mlflow.db'}"
    proc = sweep(tmp_path / "basic", [*GRID, "+devices.threads_per_job=1"], slurm_cluster,
                 basic_store)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    _, basic = children_of_one_parent(basic_store)
    for name in RUN_NAMES:
        for key in METRICS:
            assert children[name].data.metrics[key] == basic[name].data.metrics[key], (name, key)


@pytest.mark.slow  # ~45 s: 2 tasks at once
def test_a_failing_task_does_not_stop_the_others(slurm_cluster, tmp_path):
    """One job of the array gets a bad value that fails inside Lightning, after its run started:
    its run is FAILED with the traceback, the other job finishes, the sweep says so (exit 1)."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = sweep(tmp_path, [*slurm_launcher(slurm_cluster), "init=he", "trainer.max_epochs=1",
                            "trainer.accelerator=cpu,nosuch", "diagnostics.plots=false"],
                 slurm_cluster, store)
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
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in sorted(folder.rglob("*")) if p.is_file())


def _server_process_texts(pgid: int) -> str:
    """Command lines and environments of the mlflow server's processes (its process group)."""
    texts = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                texts += [(stat.parent / f).read_bytes().decode("utf-8", "replace")
                          for f in ("cmdline", "environ")]
        except (OSError, IndexError):
            continue
    assert texts, f"no process in the server's group {pgid}"
    return "\n".join(texts)


@pytest.mark.slow  # ~1.5 min: the 4-task sweep; plus a cold server start (~25 s) if not running
def test_slurm_sweep_logs_to_a_postgresql_backed_server(slurm_cluster, pg_server, tmp_path):
    experiment = f"cluster-{uuid.uuid4().hex[:8]}"  # the server outlives one test
    uri = pg_server.tracking_uri
    proc = sweep(tmp_path, [*slurm_launcher(slurm_cluster), *GRID, "tracking=server",
                            f"experiment_name={experiment}"], slurm_cluster,
                 extra_env={"MLFLOW_TRACKING_URI": uri})
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
        assert {"config.yaml", "overrides.txt"} <= {a.path for a in
                                                    client.list_artifacts(run.info.run_id)}

    # The PostgreSQL password never leaves the server side: not in a param, tag or artifact of
    # any run, not in the sweep's console or any log/file of the sweep, not in the server's log,
    # command line or environment (libpq reads it from the script's pgpass file).
    password = pg_server.secret("pg_password")
    texts = {"console": proc.stdout + proc.stderr,
             "sweep folder (hydra and submitit logs)": _texts_under(tmp_path / "multirun"),
             "server and database logs": _texts_under(STATE / "logs"),
             "server processes": _server_process_texts(int(pg_server.env["INITSWEEP_MLFLOW_PID"]))}
    for run in [parent, *children.values()]:
        texts[run.info.run_name] = "\n".join(
            [*map(str, run.data.params.items()), *map(str, run.data.tags.items()),
             _texts_under(Path(client.download_artifacts(run.info.run_id, "",
                                                          str(tmp_path / run.info.run_id))))])
    assert [where for where, text in texts.items() if password in text] == []
