"""Parallel launchers: the GPU-slot allocator (no GPU needed), a real ``hydra/launcher=gpus``
multirun on CPU, a real submitit sweep with its local executor, and the SLURM config's sbatch.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from initsweep.launch import devices
from initsweep.launch.devices import (
    GPU_IDS_ENV,
    NVML_CHECK_ENV,
    SLOT_DIR_ENV,
    SLOT_TIMEOUT_ENV,
    THREADS_ENV,
    acquire_slot,
    bind_job,
    drop_failing_nvml_check,
    plan,
    release_slot,
    visible_gpus,
)
from tests.conftest import REPO, compose_config, runs_of


# ------------------------------------------------------------------------- the per-step CUDA check
def test_a_failing_nvml_check_is_dropped_and_the_cuda_answer_stays(monkeypatch):
    monkeypatch.setenv(NVML_CHECK_ENV, "1")  # what importing Lightning sets
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    answer = torch.cuda.is_available()
    nvml_works = torch.cuda.is_initialized() or torch.cuda._device_count_nvml() >= 0
    assert drop_failing_nvml_check() is not nvml_works
    assert os.environ[NVML_CHECK_ENV] == ("1" if nvml_works else "0")
    assert torch.cuda.is_available() == answer
    assert drop_failing_nvml_check() is False  # once is enough


# ----------------------------------------------------------------------------------- the plan
def test_plan_one_job_per_gpu_and_cores_split_between_them():
    assert plan(visible=["0", "1", "2", "3"], cores=16) == plan(
        None, 4, visible=list("0123"), cores=16
    )
    p = plan(visible=["0", "1", "2", "3"], cores=16)
    assert (p.gpu_ids, p.n_jobs, p.threads_per_job) == (("0", "1", "2", "3"), 4, 4)
    p = plan(gpus=2, visible=["4", "7", "9"], cores=16)  # a configured count: the first two
    assert (p.gpu_ids, p.n_jobs, p.threads_per_job) == (("4", "7"), 2, 8)


def test_plan_on_cpu_runs_cores_over_threads_jobs():
    assert plan(visible=[], cores=2) == devices.Plan((), 2, 1)
    assert plan(visible=[], cores=16, threads_per_job=4) == devices.Plan((), 4, 4)
    assert plan(gpus=0, visible=["0", "1"], cores=8) == devices.Plan((), 8, 1)  # GPUs declined
    assert plan(visible=[], cores=2, threads_per_job=8).n_jobs == 1
    with pytest.raises(ValueError, match="devices.gpus"):
        plan(gpus=-1, visible=[])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("2,3", ["2", "3"]),
        ("", []),
        ("0,-1,1", ["0"]),
        ("GPU-abc, GPU-def", ["GPU-abc", "GPU-def"]),
    ],
)
def test_visible_gpus_reads_cuda_visible_devices(monkeypatch, env, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert visible_gpus() == expected


# ----------------------------------------------------------------------------------- the slots
def test_slots_exclude_threads_of_one_process(tmp_path):
    """flock belongs to the open file: threads with their own fds never share a slot."""
    holders: dict[int, int] = {}
    used: set[int] = set()
    errors: list[str] = []
    guard = threading.Lock()

    def worker(n: int) -> None:
        slot, fd = acquire_slot(tmp_path, 3, timeout_s=30, poll_s=0.005)
        with guard:
            if slot in holders:
                errors.append(f"slot {slot} held by {holders[slot]} and {n}")
            holders[slot] = n
            used.add(slot)
        time.sleep(0.02)
        with guard:
            del holders[slot]
        release_slot(fd)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and used == {0, 1, 2}


def _hold_slot(slot_dir: str, n_slots: int, hold_s: float, out: str) -> None:
    """A worker process: take a slot, hold it, exit without releasing (the OS frees it)."""
    slot, _fd = acquire_slot(Path(slot_dir), n_slots, timeout_s=60, poll_s=0.01)
    start = time.time()
    time.sleep(hold_s)
    Path(out).write_text(
        json.dumps({"slot": slot, "start": start, "end": time.time(), "pid": os.getpid()})
    )


def test_slots_exclude_processes_and_free_on_exit(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_hold_slot, args=(str(tmp_path / "slots"), 2, 0.2, str(tmp_path / f"{n}.json"))
        )
        for n in range(6)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    records = [json.loads((tmp_path / f"{n}.json").read_text()) for n in range(6)]
    assert {r["slot"] for r in records} == {0, 1}
    for slot in (0, 1):  # one holder at a time per slot; slots freed by exiting holders
        spans = sorted((r["start"], r["end"]) for r in records if r["slot"] == slot)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))


@pytest.fixture
def gpu_env(monkeypatch, tmp_path):
    """The environment DevicesCallback hands to workers, for two (pretend) GPUs 3 and 5."""
    threads = torch.get_num_threads()
    monkeypatch.setenv(GPU_IDS_ENV, "3,5")
    monkeypatch.setenv(THREADS_ENV, "1")
    monkeypatch.setenv(SLOT_DIR_ENV, str(tmp_path / "slots"))
    monkeypatch.setenv(SLOT_TIMEOUT_ENV, "0.3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    devices.reset_binding()
    yield tmp_path / "slots"
    devices.reset_binding()
    torch.set_num_threads(threads)


def test_a_worker_keeps_its_gpu_for_all_its_jobs(gpu_env):
    first = bind_job(None)
    assert (first.gpu, first.slot, os.environ["CUDA_VISIBLE_DEVICES"]) == ("3", 0, "3")
    assert torch.get_num_threads() == 1
    # another worker (its own fd) takes the other GPU; this worker's next job keeps GPU 3
    slot, fd = acquire_slot(gpu_env, 2, timeout_s=1)
    assert slot == 1
    again = bind_job(None)
    assert again is first and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    # a third worker finds both GPUs held: it waits, then fails (never shares)
    with pytest.raises(TimeoutError, match="no free GPU slot"):
        acquire_slot(gpu_env, 2, timeout_s=0.2)
    release_slot(fd)


def test_binding_after_cuda_initialized_fails_loudly(gpu_env, monkeypatch):
    monkeypatch.setattr(devices, "_cuda_initialized", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA was initialized"):
        bind_job(None)


def test_cpu_plan_hides_gpus_and_limits_threads(gpu_env, monkeypatch):
    monkeypatch.setenv(GPU_IDS_ENV, "")
    monkeypatch.setenv(THREADS_ENV, "1")
    binding = bind_job(None)
    assert binding.gpu is None and binding.threads == 1
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and torch.get_num_threads() == 1


def test_basic_launcher_binds_nothing(monkeypatch):
    for name in (GPU_IDS_ENV, THREADS_ENV, "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    assert bind_job(compose_config()) is None
    assert torch.get_num_threads() == threads


# ------------------------------------------------------------------------------ real launches
def _sweep(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *args,
        "trainer.max_epochs=1",
        "diagnostics.plots=false",
        f"tracking.uri={store}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env={**base, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc


def _children_of_one_parent(store: str, n: int) -> list:
    runs = runs_of(store)
    parents = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == n
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "test/acc" in run.data.metrics
    return children


@pytest.mark.slow  # 37-52 s on 2 shared cores: 3 jobs, 2 loky workers importing torch + Lightning
def test_gpus_launcher_binds_each_worker_to_its_own_gpu(tmp_path):
    """Two pretend GPUs on a CPU machine: 3 jobs, 2 workers, each worker on its own GPU id."""
    proc = _sweep(
        tmp_path,
        "hydra/launcher=gpus",
        "init=he,zeros,xavier",
        "seed=0",
        "trainer.accelerator=cpu",
        env={"CUDA_VISIBLE_DEVICES": "0,1"},
    )
    out = proc.stdout + proc.stderr
    assert "Joblib.Parallel(n_jobs=2,backend=loky" in out
    bound = re.findall(r"job bound to GPU (\d) \(slot \d of 2, pid (\d+)", out)
    assert len(bound) == 3
    gpu_of_pid = {}
    for gpu, pid in bound:
        assert gpu_of_pid.setdefault(pid, gpu) == gpu  # a reused worker keeps its GPU
    assert sorted(gpu_of_pid.values()) == ["0", "1"]  # two workers, two GPUs
    slots = tmp_path / "multirun" / ".gpu_slots"
    assert sorted(p.name for p in slots.iterdir()) == ["0.lock", "1.lock"]
    _children_of_one_parent(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", 3)


@pytest.mark.slow  # a whole sweep end to end; the fast tier keeps a smaller check of it
def test_gpus_launcher_on_cpu_runs_cores_jobs_at_once(tmp_path):
    proc = _sweep(
        tmp_path, "hydra/launcher=gpus", "init=he,zeros", "seed=0", env={"CUDA_VISIBLE_DEVICES": ""}
    )
    out = proc.stdout + proc.stderr
    assert f"Joblib.Parallel(n_jobs={devices.available_cores()},backend=loky" in out
    assert "1 torch thread(s) per job" in out
    _children_of_one_parent(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", 2)


@pytest.mark.slow  # 22-35 s on 2 shared cores: each submitit job is a fresh process
def test_submitit_local_sweep(tmp_path):
    proc = _sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        "init=he,zeros",
        "seed=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
    )
    assert "2 jobs (2 ok)" in proc.stdout
    children = _children_of_one_parent(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", 2)
    assert sorted(r.info.run_name for r in children) == ["he-x1-s0", "zeros-x1-s0"]
    logs = list((tmp_path / "multirun" / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 2  # two submitit jobs, each its own process


def test_slurm_config_makes_a_one_gpu_sbatch(tmp_path, monkeypatch):
    """No cluster here: build the sbatch script submitit would submit, from our config."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                f"hydra.sweep.dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    params.pop("_target_")
    params["name"] = "train"
    folder = str(tmp_path / ".submitit" / "%j")
    params.pop("submitit_folder")
    # the plugin's own mapping (hydra_submitit_launcher.submitit_launcher.launch)
    executor = submitit.AutoExecutor(
        folder=folder, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -c pass", "uid")
    for line in (
        "--gpus-per-node=1",
        "--cpus-per-task=4",
        "--ntasks-per-node=1",
        "--time=60",
        "--partition=gpu",
        "--mem=16GB",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}" in sbatch, line


@pytest.mark.slow  # 4 fresh processes importing torch + Lightning at once on 2 cores
def test_four_parallel_writers_to_one_sqlite_store_lose_nothing(tmp_path):
    """submitit_local starts all 4 jobs at once: 4 processes write one sqlite store together."""
    _sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        "init=he,zeros,xavier,lecun",
        "seed=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
    )
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    children = _children_of_one_parent(store, 4)
    client = MlflowClient(store)
    steps = math.ceil(1078 / 64)  # digits train split / batch size: one epoch
    for run in children:
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(steps)), run.info.run_name
        for key in ("val/loss", "val/acc", "test/loss", "test/acc", "diag/L0/act_std"):
            assert key in run.data.metrics, (run.info.run_name, key)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
            "config.yaml",
            "overrides.txt",
            "diagnostics",
        }
