"""Hydra callback: the store and experiment once per launch, a parent MLflow run per multirun,
and a summary of the jobs at the end (non-zero exit when any failed).

Before anything is created the store is checked (``store.check_store``): an unreachable or
unsupported store is one line and exit code 2. At the end, a run its job left RUNNING (the job
was killed, or gave up on the store) is closed: KILLED and resumable when its checkpoint is
there, else FAILED (``resume.close_abandoned``), so a finished sweep leaves no run RUNNING.

Jobs find their parent through the environment (``INITSWEEP_PARENT_RUN_ID``), which every Hydra
launcher's workers inherit, and report back through a small JSON status file in their output dir
(``initsweep.launch.status_files``), which works for in-process, joblib and submitit jobs alike.

Torch-free: a launching process that only submits jobs (joblib, SLURM) never imports Lightning.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from initsweep.diagnostics.pending import complete_pending
from initsweep.errors import ConfigError
from initsweep.launch.adoption import adopt_parents
from initsweep.launch.console import print_error, quiet_third_parties
from initsweep.launch.pause_points import pause
from initsweep.launch.progress import SweepProgress, jobs_report_here, sweep_size
from initsweep.launch.status_files import NOT_DONE, collect_statuses
from initsweep.naming import SEED_KEYS, swept_keys
from initsweep.report.options import report_options
from initsweep.tracking.ownership import heartbeat, owner_tags
from initsweep.tracking.redaction import redact, redact_log_records, redact_override
from initsweep.tracking.resume import close_abandoned
from initsweep.tracking.retries import StoreUnavailable
from initsweep.tracking.store import (
    StoreCheckFailed,
    check_store,
    open_experiment,
    tracking_uri,
    uri_source,
)
from initsweep.tracking.ui import closing_line, finish_sweep_ui
from initsweep.vocab import (
    ERROR_TAG,
    PARENT_RUN_ENV,
    PARENT_TAG,
    ROLE_TAG,
    SWEEP_ID_ENV,
    SWEEP_ID_TAG,
    SWEEP_ROLE,
    SWEPT_KEYS_ENV,
    Outcome,
)

# A job whose status still says RUNNING at the end of the sweep: it ended without a word.
DIED = "its job ended without a result (killed, out of memory, or lost with its node)"

# The parent run of the multirun this process launched and has not closed yet (see abort_sweep).
_open_sweep: tuple[MlflowClient, str] | None = None


def abort_sweep(reason: str, status: str = "FAILED") -> None:
    """Close the open sweep's parent run (FAILED: Hydra rejected the sweep after it started, a
    job's overrides failed to compose; KILLED: Ctrl-C), as ``on_multirun_end`` will never come."""
    global _open_sweep
    if _open_sweep is None:
        return
    client, run_id = _open_sweep
    _open_sweep = None
    heartbeat.release([run_id])
    client.set_tag(run_id, ERROR_TAG, reason[:5000])
    client.set_terminated(run_id, status)
    for key in (PARENT_RUN_ENV, SWEEP_ID_ENV, SWEPT_KEYS_ENV):
        os.environ.pop(key, None)


def check_store_or_exit(config: DictConfig) -> None:
    """The store answers, or one line and exit code 2 (Hydra turns a callback's exception into a
    warning, so the callback exits itself)."""
    tracking = config.get("tracking")
    try:
        check_store(tracking_uri(tracking), uri_source(tracking))
    except StoreCheckFailed as err:
        print_error(str(err))
        sys.exit(2)


class SweepCallback(Callback):
    """Registered in conf/config.yaml under ``hydra.callbacks``."""

    @staticmethod
    def _open_store(config: DictConfig) -> tuple[MlflowClient, str]:
        """Console and logs made safe (before the launcher logs each job's overrides), the store
        checked (one line and exit 2 if unusable) and created before any job touches it."""
        redact_log_records()
        quiet_third_parties()
        check_store_or_exit(config)
        return open_experiment(config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._open_store(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:  # a bad report option fails now, not after the sweep ran
            self.report = report_options(config.get("report"))
        except ConfigError as err:
            print_error(str(err))
            sys.exit(2)
        self.client, self.experiment_id = self._open_store(config)
        self.sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        overrides = " ".join(map(redact_override, config.hydra.overrides.task))
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"sweep-{self.sweep_id}",
            tags={
                SWEEP_ID_TAG: self.sweep_id,
                ROLE_TAG: SWEEP_ROLE,
                "overrides": overrides[:5000],
                "sweep_dir": str(self.sweep_dir),
                **owner_tags(),
            },
        )
        self.parent_run_id = run.info.run_id
        heartbeat.watch(self.client, [self.parent_run_id])
        adopt_parents(self.client, self.experiment_id, overrides[:5000], f"sweep {self.sweep_id}")
        global _open_sweep
        _open_sweep = (self.client, self.parent_run_id)
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        os.environ[SWEEP_ID_ENV] = self.sweep_id
        self.swept = swept_keys(config.hydra.overrides.task, config.hydra.sweeper.get("params"))
        os.environ[SWEPT_KEYS_ENV] = ",".join(self.swept)
        print(
            f"sweep {self.sweep_id}: parent run {self.parent_run_id} in "
            f"{redact(tracking_uri(config.get('tracking')))}",
            flush=True,
        )
        # a bar under the jobs' lines on a terminal (nothing changes elsewhere)
        self.progress = SweepProgress(sweep_size(config) if jobs_report_here(config) else None)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.advance()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if getattr(self, "progress", None) is not None:
            self.progress.close()
        global _open_sweep
        _open_sweep = None
        heartbeat.release([self.parent_run_id])
        os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(SWEEP_ID_ENV, None)
        os.environ.pop(SWEPT_KEYS_ENV, None)
        try:
            complete_pending()  # the last jobs' plots (diagnostics.background_plots): runs end here
        except StoreUnavailable as err:
            print(f"warning: plots not logged: {err}", file=sys.stderr, flush=True)
        statuses = collect_statuses(self.sweep_dir, self.sweep_id)  # after: plots may fail runs
        for s in statuses:
            if s.get("outcome") == Outcome.RUNNING:
                s.update(outcome=Outcome.FAILED, error=DIED)
        try:
            self._close_abandoned(statuses)
        except StoreUnavailable as err:
            print(
                f"warning: {err}: runs left RUNNING stay so; the next launch resumes them",
                file=sys.stderr,
                flush=True,
            )
        failed = [s for s in statuses if s.get("outcome") in NOT_DONE]
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s.get("outcome", "unknown")] = counts.get(s.get("outcome", "unknown"), 0) + 1
        tags = {"n_jobs": len(statuses), **{f"n_{k}": v for k, v in counts.items()}}
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        try:
            for key, value in tags.items():
                self.client.set_tag(self.parent_run_id, key, value)
            status = RunStatus.FAILED if failed else RunStatus.FINISHED
            self.client.set_terminated(self.parent_run_id, RunStatus.to_string(status))
        except StoreUnavailable as err:
            print(f"sweep {self.sweep_id}: {len(statuses)} jobs ({summary or 'none'})", flush=True)
            print_error(f"{err}: the sweep's parent run {self.parent_run_id} is left RUNNING")
            sys.exit(1)
        print(f"sweep {self.sweep_id}: {len(statuses)} jobs ({summary or 'none'})", flush=True)
        pause("report")
        if self.report is not None:  # report=true (default) or {tune: optim.lr, ...}
            try:
                # pandas, scipy and matplotlib load only when a report is made
                from initsweep.report.publish import report_for_sweep

                print(
                    report_for_sweep(
                        tracking_uri(config.get("tracking")),
                        config.get("experiment_name", "initsweep"),
                        self.parent_run_id,
                        self.sweep_dir / "report",
                        self.report,
                    ),
                    flush=True,
                )
            except Exception as err:  # a report that cannot be made never fails the sweep
                print(f"report: not written: {err}", file=sys.stderr, flush=True)
        try:  # what the MLflow UI opens on; a view that cannot be written never fails the sweep
            link = finish_sweep_ui(
                self.client, self.experiment_id, self.parent_run_id, self.sweep_id, self.swept
            )
            # the demo's kind of sweep (inits over seeds) gets the pointer to the tuning trap; a
            # sweep over anything else (a learning rate, report=false or not) has its own story
            tuned = bool(self.report and self.report.tune) or any(
                k not in SEED_KEYS and k.split(".")[0] != "init" for k in self.swept
            )
            print(closing_line(self.sweep_id, link, tuned), flush=True)
        except Exception as err:
            print(f"mlflow ui: view not written: {err}", file=sys.stderr, flush=True)
        for s in failed:
            print(
                f"  {s.get('outcome')}: {s.get('name', '?')}: {s.get('error', '?')}",
                file=sys.stderr,
            )
        if failed:
            sys.exit(1)

    def _close_abandoned(self, statuses: list[dict[str, Any]]) -> None:
        """End the sweep's runs still RUNNING: every job is over, so nobody will end them."""
        left = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and attributes.status = 'RUNNING'",
            max_results=10000,
        )
        errors = {s.get("run_id"): s.get("error") for s in statuses if s.get("run_id")}
        for run in left:
            error = errors.get(run.info.run_id) or DIED
            how = close_abandoned(self.client, run, error)
            print(
                f"{run.info.run_name}: left RUNNING by its job ({error}); run "
                f"{run.info.run_id} now {how}",
                file=sys.stderr,
                flush=True,
            )
