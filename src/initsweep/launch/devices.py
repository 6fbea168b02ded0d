"""One GPU, or a fair share of the CPU cores, per job when jobs run in parallel.

Used by ``hydra/launcher=gpus`` (conf/hydra/launcher/gpus.yaml), which is Hydra's joblib launcher.
Why the binding happens in the job and not in the launcher:

- Hydra only instantiates launchers from the ``hydra_plugins`` package, and the joblib launcher
  has no per-job hook, so the job binds itself, first thing in ``training.job.run_job``, before
  anything can touch CUDA (``CUDA_VISIBLE_DEVICES`` is read once, when CUDA initializes in a
  process).
- The joblib launcher hard-codes the ``loky`` backend, whose worker processes are reused from
  one job to the next. A worker that ran a job on GPU 2 has a CUDA context on GPU 2 that no
  environment variable can move. So a worker takes a GPU slot once and keeps it for its whole
  life (the lock is released by the OS when the worker exits): every job that worker runs uses
  the same GPU, and no two live workers share one. A worker that finds CUDA already initialized
  before it holds a slot fails loudly instead of silently sharing a GPU.
- Slots are ``flock``-ed files, one per GPU, in a folder shared by the sweep's workers (by
  default ``<sweep dir>/.gpu_slots``; point ``devices.slot_dir`` at one folder to let several
  sweeps on one machine share the GPUs). A crashed worker frees its slot automatically.

On a machine without GPUs the same launcher runs ``cores // threads_per_job`` jobs at once, and
each job limits torch to ``threads_per_job`` threads so parallel jobs do not oversubscribe cores.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from initsweep.vocab import GPU_IDS_ENV, SLOT_DIR_ENV, SLOT_TIMEOUT_ENV, THREADS_ENV

log = logging.getLogger("initsweep")

# Set by DevicesCallback in the launching process; the workers inherit them.


# ------------------------------------------------------------------------------------ the plan
def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs this process can see, as ``CUDA_VISIBLE_DEVICES`` entries.

    Reads ``CUDA_VISIBLE_DEVICES`` when set (no CUDA call); else asks torch, which initializes
    the CUDA driver in *this* process, so only the launching process calls it, never a job.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = []
        for entry in (e.strip() for e in env.split(",")):
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry
                break
            ids.append(entry)
        return ids
    import torch  # torch only in a job: a launching process plans GPUs torch-free

    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass(frozen=True)
class Plan:
    """How a sweep uses the machine: one job per GPU, or cores / threads jobs on CPU."""

    gpu_ids: tuple[str, ...]
    n_jobs: int
    threads_per_job: int


def plan(
    gpus: int | None = None,
    threads_per_job: int | None = None,
    *,
    cores: int | None = None,
    visible: Sequence[str] | None = None,
) -> Plan:
    """Jobs at once and torch threads per job.

    ``gpus``: how many of the visible GPUs to use (None: all, 0: CPU only). With GPUs, one job
    per GPU and the cores split between them; on CPU, ``threads_per_job`` (default 1: the
    models here are small, one thread per job is the fastest use of the cores) decides the
    number of jobs.
    """
    if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0):
        raise ValueError(f"devices.gpus={gpus!r}: must be null or an integer >= 0")
    if threads_per_job is not None and (
        not isinstance(threads_per_job, int) or threads_per_job < 1
    ):
        raise ValueError(
            f"devices.threads_per_job={threads_per_job!r}: must be null or an integer >= 1"
        )
    cores = cores or available_cores()
    ids = list(visible_gpus() if visible is None else visible)
    if gpus is not None:
        ids = ids[:gpus]
    if ids:
        return Plan(tuple(ids), len(ids), threads_per_job or max(1, cores // len(ids)))
    threads = threads_per_job or 1
    return Plan((), max(1, cores // threads), threads)


def _n_jobs_resolver(gpus: Any = None, threads_per_job: Any = None) -> int:
    """``${initsweep_n_jobs:${devices.gpus},${devices.threads_per_job}}`` in gpus.yaml."""
    return plan(gpus, threads_per_job).n_jobs


# Registered on import; Hydra imports this module when it instantiates DevicesCallback, which is
# before it instantiates the launcher whose n_jobs uses the resolver.
OmegaConf.register_new_resolver("initsweep_n_jobs", _n_jobs_resolver, replace=True)


class DevicesCallback(Callback):
    """Computes the plan once in the launching process and hands it to the jobs (environment).

    Registered by conf/hydra/launcher/gpus.yaml. The workers are started after
    ``on_multirun_start``, so they inherit the variables.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        devices = config.get("devices") or {}
        p = plan(devices.get("gpus"), devices.get("threads_per_job"))
        slot_dir = devices.get("slot_dir") or Path(str(config.hydra.sweep.dir)) / ".gpu_slots"
        os.environ[GPU_IDS_ENV] = ",".join(p.gpu_ids)
        os.environ[THREADS_ENV] = str(p.threads_per_job)
        os.environ[SLOT_DIR_ENV] = str(Path(slot_dir).resolve())
        os.environ[SLOT_TIMEOUT_ENV] = str(devices.get("slot_timeout_s", 3600))
        where = f"GPUs {','.join(p.gpu_ids)}" if p.gpu_ids else f"CPU ({available_cores()} cores)"
        log.info(
            "gpus launcher: %d jobs at once on %s, %d torch thread(s) per job",
            p.n_jobs,
            where,
            p.threads_per_job,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        for name in (GPU_IDS_ENV, THREADS_ENV, SLOT_DIR_ENV, SLOT_TIMEOUT_ENV):
            os.environ.pop(name, None)


# ----------------------------------------------------------------------------------- GPU slots
def try_lock(path: Path) -> int | None:
    """An open fd holding an exclusive ``flock`` on ``path``, or None if someone holds it.

    ``flock`` locks belong to the open file, so two threads of one process, each with its own
    fd, exclude each other too (POSIX ``lockf`` locks would not), and the OS drops the lock when
    the holder exits, however it exits.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a human looking at the folder
    return fd


def acquire_slot(
    slot_dir: Path, n_slots: int, timeout_s: float = 3600.0, poll_s: float = 0.1
) -> tuple[int, int]:
    """``(slot, fd)``: the first free slot of ``0..n_slots-1``, waiting up to ``timeout_s``.

    Waiting (rather than failing) covers the moment a replaced worker starts before the old one
    has exited, and a user who sets ``hydra.launcher.n_jobs`` above the number of GPUs.
    """
    if n_slots < 1:
        raise ValueError("no GPU slot to take: n_slots must be >= 1")
    slot_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for slot in range(n_slots):
            fd = try_lock(slot_dir / f"{slot}.lock")
            if fd is not None:
                return slot, fd
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"no free GPU slot in {slot_dir} after {timeout_s:g}s ({n_slots} slots, all held)"
            )
        time.sleep(poll_s)


def release_slot(fd: int) -> None:
    """Give a slot back (workers normally never do: the OS does it when they exit)."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@dataclass
class Binding:
    """What this process is bound to; kept for the process's life (see module docstring)."""

    slot: int | None
    gpu: str | None
    threads: int | None
    slot_dir: str | None = None
    fd: int | None = None


_BOUND: Binding | None = None  # this process's GPU slot, taken by its first job


def _cuda_initialized() -> bool:
    import torch  # torch only in a job (as above)

    return bool(torch.cuda.is_initialized())


def _bind_gpu(gpu_ids: Sequence[str], slot_dir: Path, timeout_s: float) -> Binding:
    """This process's GPU: the one it already holds, else a free slot's, set before CUDA starts."""
    global _BOUND
    if _BOUND is not None and _BOUND.gpu is not None and _BOUND.slot_dir == str(slot_dir):
        os.environ["CUDA_VISIBLE_DEVICES"] = _BOUND.gpu  # unchanged since its first job
        if _cuda_initialized():  # free what the previous job of this worker left cached
            import torch  # torch only in a job (as above)

            torch.cuda.empty_cache()
        return _BOUND
    if _cuda_initialized():
        raise RuntimeError(
            "initsweep.launch.devices: CUDA was initialized in this process before it was bound "
            "to a GPU, so CUDA_VISIBLE_DEVICES can no longer take effect and this job would share "
            "a GPU with another. Bind first (bind_job at the start of run_job)."
        )
    if _BOUND is not None and _BOUND.fd is not None:  # a slot of another sweep: give it back
        release_slot(_BOUND.fd)
    slot, fd = acquire_slot(slot_dir, len(gpu_ids), timeout_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[slot]
    _BOUND = Binding(slot, gpu_ids[slot], None, str(slot_dir), fd)
    return _BOUND


def launcher_threads() -> int | None:
    """Torch threads for a job of a submitit launcher (SLURM or local), None for the others.

    SLURM and submitit give each task its own GPU and CPUs but leave torch to start one thread
    per core of the node: use the task's ``cpus_per_task``. Submitit's local executor starts
    every job of the sweep at once, so without a ``cpus_per_task`` a job gets one thread.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    cpus = None
    if HydraConfig.initialized():
        cpus = HydraConfig.get().launcher.get("cpus_per_task")
    cpus = cpus or os.environ.get("SLURM_CPUS_PER_TASK")
    return int(cpus) if cpus else 1


NVML_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_failing_nvml_check() -> bool:
    """Stop torch from retrying a CUDA check that cannot work, on every optimizer step.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` on import, so ``torch.cuda.is_available()``
    asks NVML instead of starting CUDA (fork safety). Adam and AdamW call it on every ``step()``
    (torch 2.14, ``_accelerator_graph_capture_health_check``), and until CUDA is initialized
    nothing is cached: where NVML is missing or fails (CPU machines), each call loads and fails
    to initialize the NVML library (~0.1 ms) and then falls back to the CUDA runtime check anyway.
    Dropping the flag there gives the same answer by the same fallback, without the retry.
    Returns True when the flag was dropped.
    """
    import torch  # torch only in a job (as above)

    if os.environ.get(NVML_CHECK_ENV) != "1" or torch.cuda.is_initialized():
        return False
    try:
        nvml_failed = torch.cuda._device_count_nvml() < 0  # private; absent in other versions
    except Exception:
        return False
    if nvml_failed:
        os.environ[NVML_CHECK_ENV] = "0"
    return nvml_failed


def bind_job(cfg: Mapping[str, Any] | None = None) -> Binding | None:
    """Bind this job to one GPU and/or a number of torch threads; call before any CUDA work.

    Under ``hydra/launcher=gpus`` the plan comes from the launching process (environment).
    Under the submitit launchers only torch's thread count is set (``launcher_threads``).
    Otherwise ``devices.threads_per_job`` if the config has it; else nothing (the basic launcher
    runs one job at a time with all cores).
    """
    import torch  # torch only in a job (as above)

    drop_failing_nvml_check()
    devices = (cfg or {}).get("devices") or {}
    threads = os.environ.get(THREADS_ENV) or devices.get("threads_per_job") or launcher_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    gpu_env = os.environ.get(GPU_IDS_ENV)
    if gpu_env is None:
        return None if threads is None else Binding(None, None, int(threads))
    gpu_ids = [g for g in gpu_env.split(",") if g]
    if not gpu_ids:
        # CPU plan (no GPU, or devices.gpus=0): hide any GPU so Lightning's "auto" cannot put
        # every job on GPU 0.
        if not _cuda_initialized():
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        log.debug("job on CPU with %s torch thread(s)", threads)
        return Binding(None, None, int(threads) if threads is not None else None)
    slot_dir = Path(os.environ.get(SLOT_DIR_ENV) or ".gpu_slots")
    bound = _bind_gpu(gpu_ids, slot_dir, float(os.environ.get(SLOT_TIMEOUT_ENV, 3600)))
    bound.threads = int(threads) if threads is not None else None
    log.info(
        "job bound to GPU %s (slot %d of %d, pid %d, %s torch threads)",
        bound.gpu,
        bound.slot,
        len(gpu_ids),
        os.getpid(),
        bound.threads,
    )
    return bound


def reset_binding() -> None:
    """Forget (and release) this process's slot; for tests that bind repeatedly in one process."""
    global _BOUND
    if _BOUND is not None and _BOUND.fd is not None:
        release_slot(_BOUND.fd)
    _BOUND = None
