"""SLURM as a job sees it: is this a SLURM task, which one, was it requeued, what did it end as.

Torch-free (the launching process and the sweep callback use it too). Only environment variables
that SLURM and submitit set, and SLURM's own commands (``scontrol``, ``sacct``); the policy (what
a job does when it is stopped) is ``initsweep.training.guard.JobGuard``'s.

Why ask ``scontrol``: SLURM sends SIGTERM for ``scontrol requeue``, for preemption, for ``scancel``
and at a time limit alike. Requeue and preemption-with-requeue increment the job's ``Restarts``
in slurmctld *before* the signal is sent, while the task still sees its own
``SLURM_RESTART_COUNT``; ``scancel`` leaves it unchanged. So during the KillWait grace period
``Restarts > SLURM_RESTART_COUNT`` means "this task comes back" (measured on the local cluster of
scripts/local_cluster.sh: docs/scaling.md, "Run on a cluster").
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

SUBMITIT_EXECUTOR_ENV = "SUBMITIT_EXECUTOR"  # set by submitit in every job it runs: slurm | local
SUBMITIT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # the signal submitit requeues on (USR2)
QUERY_TIMEOUT_S = 10.0  # slurmctld answers in milliseconds; this only bounds a hung controller


def under_submitit_slurm() -> bool:
    """This process is a job submitit runs on SLURM (``hydra/launcher=slurm``)."""
    return os.environ.get(SUBMITIT_EXECUTOR_ENV) == "slurm"


def submitit_signal() -> signal.Signals:
    """The signal submitit's handler requeues on (``#SBATCH --signal=USR2@<signal_delay_s>``)."""
    name = os.environ.get(SUBMITIT_SIGNAL_ENV, "USR2")
    return signal.Signals["SIG" + name.removeprefix("SIG")]


def in_slurm_task() -> bool:
    """Inside a task SLURM started (under ``srun``, as submitit always runs its jobs), not in an
    interactive allocation: Lightning's own test (``lightning.fabric...slurm._is_srun_used``)."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )


def task_id() -> str | None:
    """``<array job>_<task>`` for an array task (what ``scontrol`` takes), else the job id."""
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and index:
        return f"{array}_{index}"
    return os.environ.get("SLURM_JOB_ID")


def restart_count() -> int:
    """How many times this task was restarted before this attempt (0 on the first)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def controller_restarts(job: str) -> int | None:
    """``Restarts`` of ``job`` in slurmctld (``scontrol show job -o``); None if it cannot tell."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job],
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\bRestarts=(\d+)", out)
    return int(found.group(1)) if found else None


def requeued() -> bool | None:
    """Whether SLURM will run this task again (its SIGTERM was a requeue, not a cancel);
    None when slurmctld could not be asked."""
    job = task_id()
    if job is None:
        return None
    restarts = controller_restarts(job)
    return None if restarts is None else restarts > restart_count()
