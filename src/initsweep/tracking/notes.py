"""Notes the MLflow UI shows: a run's "Description" and an experiment's banner
(``mlflow.note.content``, markdown), cut to MLflow's limits on a tag value.

The one writer of run notes: a sweep's summary (``report.publish``) and a job's diagnosis
(``diagnostics.findings``) both go through ``set_run_note``. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from initsweep.vocab import NOTE_TAG

MAX_TAG_VALUE = 20_000  # MLflow's limit on an experiment tag's value (mlflow.utils.validation)
MAX_NOTE = 8000  # MLflow's limit on a run tag's value (a run note is a tag)


def set_run_note(
    client: MlflowClient, run_id: str, markdown: str, tags: Mapping[str, str] | None = None
) -> None:
    """A run's note (its "Description", markdown): the one writer of ``mlflow.note.content``
    on runs (a sweep's summary in ``report.publish``, a job's diagnosis in
    ``diagnostics.findings``). Cut to
    MLflow's limit on a tag value, with a closing line that says so. ``tags``: more tags written
    in the same call (one round trip to the store)."""
    if len(markdown) > MAX_NOTE:
        tail = "\n\n… (cut: the full text is in the run's artifacts)"
        markdown = markdown[: MAX_NOTE - len(tail)] + tail
    if not tags:
        client.set_tag(run_id, NOTE_TAG, markdown)
        return
    client.log_batch(
        run_id,
        tags=[RunTag(NOTE_TAG, markdown), *(RunTag(k, str(v)) for k, v in tags.items())],
        synchronous=True,
    )


def set_experiment_note(client: MlflowClient, experiment_id: str, markdown: str) -> None:
    """The experiment's note: the banner above its runs (first line shown, the rest unfolds)."""
    client.set_experiment_tag(experiment_id, NOTE_TAG, markdown[:MAX_TAG_VALUE])
