"""The run's vocabulary: tag names, outcomes, metric names and environment variables, once.

Modelled on ``mlflow.utils.mlflow_tags``: every name that a job writes and the sweep callback,
the report, the race or a test reads back is a constant here, and MLflow's own tags reuse
MLflow's constants. A reader of a store (a query such as ``tags.outcome = 'ok'``, a dashboard)
relies on these strings, so they never change; add, don't rename.

Torch-free and import-light: every layer may import it, the console and the entry point too. It
imports nothing: MLflow's tag names are spelled out here (importing ``mlflow.utils.mlflow_tags``
imports all of MLflow, pandas included) and tests/test_vocab.py pins them to MLflow's constants.
"""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    """How a run ended, as its ``outcome`` tag, its status file and the console say it.

    A ``str`` subclass: ``Outcome.OK == "ok"``, so stored tags compare with members directly.
    """

    RUNNING = "running"  # open: still there at the end means its job died
    OK = "ok"  # trained to the end
    DIVERGED = "diverged"  # stopped when its loss crossed the divergence threshold
    FAILED = "failed"  # an exception (traceback.txt on the run)
    PREEMPTED = "preempted"  # SIGTERM / requeue: KILLED with a checkpoint, resumable
    SKIPPED = "skipped"  # a FINISHED run of the same config exists (not a run of its own)
    ORPHANED = "orphaned"  # its process died with no checkpoint: closed KILLED by an adopter

    def __str__(self) -> str:  # f"{Outcome.OK}" == "ok", as it is stored
        return self.value


# Outcomes of a run whose training completed (diverged runs completed: the divergence is the
# result).
TRAINED = (Outcome.OK, Outcome.DIVERGED)

# -- MLflow's own tags (the UI reads them) --------------------------------------------------
PARENT_TAG = "mlflow.parentRunId"  # MLFLOW_PARENT_RUN_ID: a job's run -> its sweep's parent
NOTE_TAG = "mlflow.note.content"  # MLFLOW_RUN_NOTE: a run's or experiment's markdown note
# Saved views: the runs page's viewStateShareKey reads "mlflow.sharedViewState.<key>" (3.17's
# compiled UI; docs/mlflow_ui.md). Not MLFLOW_CUSTOM_VIEW_TAG_PREFIX ("mlflow.customView.view"):
# that is another feature's (templated custom views), the runs page never reads it.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"  # MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME
RUN_COLOR_TAG = "mlflow.runColor"  # the UI's run colour (no constant in mlflow_tags)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the UI's experiment type (no constant either)

# -- initsweep's tags on a job's run ----------------------------------------------------------
OUTCOME_TAG = "outcome"  # an Outcome value
ERROR_TAG = "error"  # one line, on a failed run
CHECKPOINT_TAG = "checkpoint"  # the file a preempted run resumes from; removed once it finished
CONFIG_HASH_TAG = "config_hash"  # naming.config_hash: "the same config", seeds included
GROUP_HASH_TAG = "group_hash"  # naming.group_hash: the same config over all its seeds
SWEEP_ID_TAG = "sweep_id"  # the sweep a run was launched by ("none" outside a multirun)
DIAGNOSIS_TAG = "diagnosis"  # the findings' codes, e.g. "symmetric, diverged"
TRAINED_TOGETHER_TAG = "trained_together"  # runs trained as one stacked model (seeds_per_job)

# Who owns an open run (``tracking.ownership``): the process that writes it, and when it last
# said so; a run whose owner is gone is an orphan that the next launch adopts
# (``tracking.orphans``, ``launch.adoption``).
OWNER_HOST_TAG = "initsweep.owner.host"
OWNER_PID_TAG = "initsweep.owner.pid"
OWNER_STARTED_TAG = "initsweep.owner.started"  # "<boot id>:<start ticks>": tells a reused PID
HEARTBEAT_TAG = "initsweep.heartbeat"  # unix seconds, refreshed while the owner lives
# Trained, not ended: what its end waits for, and where that work's inputs are kept
# ("plots:<folder>"); removed when the run ends.
PENDING_TAG = "initsweep.pending"
ADOPTED_BY_TAG = "initsweep.adopted_by"  # the sweep (or "doctor") that took an orphan over

# -- on a sweep's parent run ------------------------------------------------------------------
ROLE_TAG = "initsweep.role"  # "sweep" on a parent run
SWEEP_ROLE = "sweep"
VIEW_KEY_TAG = "initsweep.view"  # the key of the sweep's saved view
SUMMARY_METRIC_TAG = "initsweep.summary_metric"  # the metric the parent's summary used

# -- metrics a run logs -----------------------------------------------------------------------
TEST_ACC = "test/acc"
TEST_LOSS = "test/loss"
VAL_ACC = "val/acc"
VAL_LOSS = "val/loss"
TRAIN_LOSS = "train/loss"
PRIMARY_METRIC = TEST_ACC  # what the UI's view, the report and the race rank by default

# -- environment variables --------------------------------------------------------------------
# A multirun's launching process hands its jobs the parent run and the sweep through these;
# every Hydra launcher's workers inherit them.
PARENT_RUN_ENV = "INITSWEEP_PARENT_RUN_ID"
SWEEP_ID_ENV = "INITSWEEP_SWEEP_ID"
SWEPT_KEYS_ENV = "INITSWEEP_SWEPT_KEYS"  # keys the multirun varies: they go into run names
GPU_IDS_ENV = "INITSWEEP_GPU_IDS"  # the GPUs this sweep may use, comma-separated ("" = CPU)
THREADS_ENV = "INITSWEEP_THREADS_PER_JOB"
SLOT_DIR_ENV = "INITSWEEP_SLOT_DIR"
SLOT_TIMEOUT_ENV = "INITSWEEP_SLOT_TIMEOUT_S"
UI_URL_ENV = "INITSWEEP_UI_URL"  # where `mlflow ui` serves this store, for links and images
HEARTBEAT_ENV = "INITSWEEP_HEARTBEAT_S"  # seconds between an owner's heartbeats (0: none)
STALE_AFTER_ENV = "INITSWEEP_STALE_AFTER_S"  # another host's run with no heartbeat for this long
PAUSE_AT_ENV = "INITSWEEP_PAUSE_AT"  # tests: "<point>:<n>" holds the process (launch.pause_points)
PAUSE_FILE_ENV = "INITSWEEP_PAUSE_FILE"  # tests: the marker written there; "<file>.go" releases
NO_STORE_TEMPLATE_ENV = "INITSWEEP_NO_STORE_TEMPLATE"  # set: MLflow creates every new store
