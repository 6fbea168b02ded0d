"""A job's status file: how a job reports back to the sweep callback, whatever the launcher.

Each job writes ``initsweep_job.json`` into its Hydra output folder: a list with one status per
run it owns (name, seed, outcome, run id, the run's final val/* and test/* metrics, error), tagged
with the sweep id. The sweep callback reads them all at the end of the multirun for its summary;
the race sweeper (``hydra_plugins.initsweep_race``) reads each round's to select on val/*. Files
work the same for in-process, joblib and submitit (SLURM) jobs, which share nothing else with the
launcher.
Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from initsweep.vocab import Outcome

STATUS_FILE = "initsweep_job.json"
# Metrics a status carries: the final validation metrics (what a sweeper selects on) and the test
# metrics (what the selection is scored on).
REPORTED_PREFIXES = ("val/", "test/")


def reported_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics of a run that its status carries (``REPORTED_PREFIXES``)."""
    return {k: v for k, v in metrics.items() if k.startswith(REPORTED_PREFIXES)}


# Written when a job's runs are open: still there at the end = it died. (training/job.py imports
# this name; Outcome.RUNNING is the same value.)
RUNNING = Outcome.RUNNING
# Outcomes that make a sweep fail (exit code 1, parent run FAILED); the rest are results
# (ok, diverged) or nothing to do (skipped). "timeout": a SLURM task's time limit (training/job.py).
NOT_DONE = (Outcome.FAILED, Outcome.PREEMPTED, "timeout", Outcome.RUNNING)


def status_file(output_dir: Path | None) -> Path | None:
    """Where a job's status file goes (None outside Hydra: no output folder)."""
    return None if output_dir is None else output_dir / STATUS_FILE


def write_status(output_dir: Path | None, statuses: Sequence[Mapping[str, Any]]) -> None:
    """The job's status file: one status per run."""
    path = status_file(output_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(list(statuses)))


def mark_failed(path: Path | None, run_id: str, error: str) -> None:
    """Correct a run's status after the job wrote it (its plots failed to draw or upload)."""
    if path is None or not path.exists():
        return
    statuses = json.loads(path.read_text())
    for status in statuses:
        if status.get("run_id") == run_id:
            status.update(outcome=Outcome.FAILED, error=error)
    path.write_text(json.dumps(statuses))


def mark_lost(
    output_dir: Path, sweep_id: str | None, name: str, error: str
) -> list[dict[str, Any]]:
    """A job that ended without a result (killed, out of memory, node lost): what it had written
    of its runs becomes ``failed`` with ``error`` (its finished runs stay as they were), or, if
    it never wrote a status for this sweep, one failed status named ``name``. Returns them."""
    path = output_dir / STATUS_FILE
    statuses: list[dict[str, Any]]
    try:
        statuses = [s for s in json.loads(path.read_text()) if s.get("sweep_id") == sweep_id]
    except (OSError, ValueError):
        statuses = []
    if not statuses:
        statuses = [{"sweep_id": sweep_id, "name": name, "outcome": Outcome.FAILED, "error": error}]
    for status in statuses:
        if status.get("outcome") in (Outcome.RUNNING, Outcome.PREEMPTED):
            status.update(outcome=Outcome.FAILED, error=error)
    write_status(output_dir, statuses)
    return statuses


def collect_statuses(sweep_dir: Path, sweep_id: str) -> list[dict[str, Any]]:
    """The statuses this sweep's jobs wrote (older sweeps in the same folder are ignored)."""
    statuses: list[dict[str, Any]] = []
    for path in sorted(sweep_dir.glob(f"**/{STATUS_FILE}")):
        statuses.extend(s for s in json.loads(path.read_text()) if s.get("sweep_id") == sweep_id)
    return statuses
