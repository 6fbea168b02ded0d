"""Orphans: runs left open by a process that is gone, and what adopting each one means.

A sweep killed outright (SIGKILL, the OOM killer, a lost node) leaves its runs RUNNING. A run is
an orphan when its owner (``tracking.ownership``) is gone: checked at once on the same host (the
PID and its start), after ``ownership.stale_after_s()`` without a heartbeat on another. A run an
interrupted sweep handed over (KILLED, its plots still owed: the ``initsweep.pending`` tag) is one
too. The adoption rules (``classify``; applied by ``initsweep.launch.adoption``):

- ``complete``: its training had finished and only end-of-run work was pending (its plots: the
  inputs are in the folder the pending tag names): draw and log them, end it FINISHED with the
  outcome it was trained to;
- ``resume``: its job's checkpoint is there: mark it preempted, so the job that adopts it resumes
  it into the same run (``tracking.resume``);
- ``close``: nothing to resume: KILLED with ``outcome=orphaned`` and an ``error`` that says why;
- ``close-parent``: a sweep's parent run: KILLED, its note pointing at the adopting sweep.

Torch-free, store queries only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from initsweep.tracking.ownership import owner_alive
from initsweep.vocab import CHECKPOINT_TAG, PENDING_TAG, ROLE_TAG, SWEEP_ROLE


@dataclass
class Orphan:
    """A run to adopt, what to do with it (``complete``, ``resume``, ``close``,
    ``close-parent``) and why it counts as an orphan."""

    run: Run
    action: str
    why: str

    @property
    def name(self) -> str:
        return self.run.info.run_name or self.run.info.run_id


def pending_folder(run: Run) -> Path | None:
    """The folder of a pending run's plot inputs (``plots:<folder>``), if its tag names one."""
    kind, _, folder = run.data.tags.get(PENDING_TAG, "").partition(":")
    return Path(folder) if kind == "plots" and folder else None


def classify(run: Run, stale_after: float | None = None) -> Orphan | None:
    """The orphan ``run`` is, or None when its owner is alive (or it is not open)."""
    tags = run.data.tags
    if run.info.status == "KILLED" and tags.get(PENDING_TAG):
        return Orphan(run, "complete", "handed over by an interrupted sweep")
    if run.info.status != "RUNNING":
        return None
    verdict = owner_alive(run, stale_after)
    if verdict.alive:
        return None
    if tags.get(ROLE_TAG) == SWEEP_ROLE:
        return Orphan(run, "close-parent", verdict.why)
    if tags.get(PENDING_TAG):
        return Orphan(run, "complete", verdict.why)
    checkpoint = tags.get(CHECKPOINT_TAG)
    if checkpoint and Path(checkpoint).exists():
        return Orphan(run, "resume", verdict.why)
    return Orphan(run, "close", verdict.why)


def search(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    return list(client.search_runs(experiment_ids, filter_string, max_results=10000))


def open_runs(client: MlflowClient, experiment_ids: list[str]) -> list[Run]:
    """Every RUNNING run, and every KILLED one still owing end-of-run work."""
    return [
        *search(client, experiment_ids, "attributes.status = 'RUNNING'"),
        *search(
            client,
            experiment_ids,
            f"attributes.status = 'KILLED' and tags.`{PENDING_TAG}` LIKE 'plots%'",
        ),
    ]


def find_orphans(
    client: MlflowClient, experiment_ids: Iterable[str], stale_after: float | None = None
) -> list[Orphan]:
    """The orphans of the given experiments, job runs first, then parents."""
    found = [classify(run, stale_after) for run in open_runs(client, list(experiment_ids))]
    orphans = [o for o in found if o is not None]
    return sorted(orphans, key=lambda o: o.action == "close-parent")
