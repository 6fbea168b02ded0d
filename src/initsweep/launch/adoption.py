"""Adoption: the next launch, or ``initsweep doctor --fix``, takes over what a dead process left.

The rules are ``tracking.orphans.classify``'s (see there); this module applies them. A job adopts
the orphans among the runs of the configs it is about to train before it decides what to skip,
resume or start (``adopt_previous``), and the orphaned parents of those runs; a sweep adopts, at
its start, the orphaned parent runs of earlier sweeps of the same command (``adopt_parents``: a
sweep killed in its report leaves nothing else); ``initsweep doctor`` lists the orphans of a store
and ``--fix`` applies the same rules without launching anything (``doctor``). Every adoption is
one console line: ``<run>: adopted run <id> (<why>): <what was done>``.

Torch-free: matplotlib is imported only to draw the plots of a run whose worker never drew them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
from pathlib import Path

from mlflow.entities import Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from initsweep.diagnostics.pending import ARTIFACT_DIR
from initsweep.diagnostics.plot_worker import INPUTS_FILE
from initsweep.tracking.orphans import Orphan, classify, find_orphans, pending_folder, search
from initsweep.tracking.ownership import host
from initsweep.tracking.resume import mark_preempted, write_unsent
from initsweep.tracking.store import end_run
from initsweep.vocab import (
    ADOPTED_BY_TAG,
    CHECKPOINT_TAG,
    ERROR_TAG,
    NOTE_TAG,
    OUTCOME_TAG,
    OWNER_PID_TAG,
    PARENT_TAG,
    PENDING_TAG,
    ROLE_TAG,
    SWEEP_ID_ENV,
    SWEEP_ROLE,
    TRAINED,
    Outcome,
)


def adopter() -> str:
    """Who adopts, as tags and notes say it: this sweep, else this process."""
    sweep = os.environ.get(SWEEP_ID_ENV)
    return f"sweep {sweep}" if sweep else f"pid {os.getpid()} on {host()}"


def _delete_tag(client: MlflowClient, run_id: str, key: str) -> None:
    with contextlib.suppress(MlflowException):  # not there (or deleted by a first attempt)
        client.delete_tag(run_id, key)


def adopt(client: MlflowClient, orphan: Orphan, by: str) -> str:
    """Apply ``orphan.action``; returns what was done, in a few words (for the console)."""
    run_id = orphan.run.info.run_id
    client.set_tag(run_id, ADOPTED_BY_TAG, by)
    if orphan.action == "complete":
        return _complete(client, orphan.run)
    if orphan.action == "resume":
        checkpoint = Path(orphan.run.data.tags[CHECKPOINT_TAG])
        write_unsent(client, run_id, checkpoint)
        mark_preempted(client, run_id)
        return f"resumes from {checkpoint}"
    if orphan.action == "close-parent":
        pid = orphan.run.data.tags.get(OWNER_PID_TAG, "?")
        note = (
            f"This sweep's process (pid {pid}) died without ending it ({orphan.why}); its "
            f"runs were adopted by {by}: resumed from their checkpoints, completed, or "
            f"trained again there."
        )
        client.log_batch(
            run_id, tags=[RunTag(NOTE_TAG, note), RunTag(ERROR_TAG, f"orphaned ({orphan.why})")]
        )
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        return "closed KILLED"
    client.log_batch(
        run_id,
        tags=[
            RunTag(OUTCOME_TAG, Outcome.ORPHANED.value),
            RunTag(
                ERROR_TAG,
                f"orphaned ({orphan.why}) before its first checkpoint; trained again by {by}",
            ),
        ],
    )
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
    return "closed KILLED (no checkpoint to resume)"


def _complete(client: MlflowClient, run: Run) -> str:
    """End a run whose training finished: its plots drawn if they were not, logged, FINISHED."""
    run_id = run.info.run_id
    outcome = run.data.tags.get(OUTCOME_TAG, "")
    if outcome not in TRAINED:  # a tag from before the run's result was known: it trained
        outcome = Outcome.OK.value
    folder = pending_folder(run)
    if folder is not None and folder.is_dir():
        inputs = folder / INPUTS_FILE
        if inputs.exists():  # its worker never drew them
            from initsweep.diagnostics import plots  # matplotlib only for plots drawn here

            plots.draw_all(pickle.loads(inputs.read_bytes()), folder)
            inputs.unlink()
        client.log_artifacts(run_id, str(folder), ARTIFACT_DIR)
        shutil.rmtree(folder, ignore_errors=True)
        how = "its plots logged"
    else:
        client.set_tag(
            run_id,
            NOTE_TAG,
            "Its plots were lost with the process that was "
            "drawing them; everything else was logged.",
        )
        how = "its plots lost with its process"
    _delete_tag(client, run_id, PENDING_TAG)
    end_run(client, run_id, outcome)
    return f"completed ({how}): FINISHED, {outcome}"


def _say(orphan: Orphan, how: str) -> None:
    print(f"{orphan.name}: adopted run {orphan.run.info.run_id} ({orphan.why}): {how}", flush=True)


def adopt_previous(client: MlflowClient, previous: dict[str, list[Run]]) -> dict[str, list[Run]]:
    """Adopt the orphans among each config's runs (and their orphaned parents) before a job
    decides what to skip, resume or start; returns the runs as they are now."""
    by, parents = adopter(), set()
    for runs in previous.values():
        for i, run in enumerate(runs):
            orphan = classify(run)
            if orphan is None:
                continue
            _say(orphan, adopt(client, orphan, by))
            runs[i] = client.get_run(run.info.run_id)
            parent_id = run.data.tags.get(PARENT_TAG)
            if parent_id and parent_id not in parents:
                parents.add(parent_id)
                parent = classify(client.get_run(parent_id))
                if parent is not None:
                    _say(parent, adopt(client, parent, by))
    return previous


def adopt_parents(client: MlflowClient, experiment_id: str, overrides: str, by: str) -> None:
    """At a sweep's start: close the orphaned parent runs of earlier sweeps of the same command
    (a sweep killed after its last job, e.g. in its report, leaves nothing else to adopt)."""
    for run in search(
        client,
        [experiment_id],
        f"attributes.status = 'RUNNING' and tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
    ):
        if run.data.tags.get("overrides", "") != overrides:
            continue
        orphan = classify(run)
        if orphan is not None:
            _say(orphan, adopt(client, orphan, by))


WOULD = {
    "complete": "complete it (training finished, its plots were pending)",
    "resume": "mark it preempted: the next launch of its config resumes it",
    "close": "close it KILLED (outcome orphaned: no checkpoint)",
    "close-parent": "close it KILLED (a dead sweep's parent run)",
}


def doctor(
    client: MlflowClient, experiment_ids: list[str], fix: bool, stale_after: float | None = None
) -> list[str]:
    """``initsweep doctor``: one line per orphan, what would be (``fix``: what was) done."""
    lines = []
    for orphan in find_orphans(client, experiment_ids, stale_after):
        head = f"{orphan.name} ({orphan.run.info.run_id}, {orphan.run.info.status}): {orphan.why}"
        if fix:
            lines.append(f"{head}: {adopt(client, orphan, 'initsweep doctor')}")
        else:
            lines.append(f"{head}: would {WOULD[orphan.action]}")
    return lines
