"""``hydra/launcher=slurm``: submitit's SLURM launcher, and a task that ends without a result is a
failed job of the sweep, not the end of it.

The plugin's own launcher collects each job with ``job.results()``, which raises when a task left
no result: killed (SIGKILL, the OOM killer, ``scancel`` once its job could not answer), lost with
its node, or out of time without a requeue. Hydra then aborts the multirun with a traceback: no
summary, the other jobs' results never read, the sweep's parent run left RUNNING. Here such a job
is collected as failed, with the state SLURM gives it (``sacct``), in its status file
(``launch.status_files.mark_lost``), so the sweep callback's summary, exit code and parent run
say so and the sweep goes on to collect the others. A task that SLURM requeued is still waited
for: submitit keeps polling while ``sacct`` says it is not finished, and the job's own code
(``initsweep.training.guard.JobGuard``) leaves no result when it comes back.

Kept import-light: Hydra imports every module under ``hydra_plugins`` at start-up.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import OmegaConf, open_dict

from initsweep.launch.status_files import mark_lost
from initsweep.tracking.redaction import redact_line
from initsweep.vocab import SWEEP_ID_ENV

log = logging.getLogger(__name__)
# The hydra-submitit-launcher releases whose ``SlurmLauncher.launch`` ``_submit`` copies (up to its
# collection). Upstream's main has changed that method since: another release is refused with one
# line rather than run with a copy that may no longer match it (docs/configuration.md, "Versions").
COPIED_FROM = ("1.2.0",)


def check_plugin_version(installed: str | None = None) -> None:
    """Raise ``ConfigError`` (one line, exit 2) unless the installed plugin is one copied from."""
    from importlib.metadata import version

    from initsweep.errors import ConfigError

    installed = installed or version("hydra-submitit-launcher")
    if installed not in COPIED_FROM:
        raise ConfigError(
            f"hydra/launcher=slurm: hydra-submitit-launcher {installed} is "
            f"installed; initsweep's SLURM launcher copies its launch from "
            f"{', '.join(COPIED_FROM)}: pip install 'hydra-submitit-launcher=="
            f"{COPIED_FROM[-1]}'"
        )


class SlurmLauncher(SubmititSlurmLauncher):
    """``hydra_submitit_launcher``'s SLURM launcher; ``launch`` collects each job on its own."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        check_plugin_version()
        jobs = self._submit(job_overrides, initial_job_idx)
        return [
            self._collect(job, list(overrides), initial_job_idx + offset)
            for offset, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True))
        ]

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        """Submit one array job: hydra_submitit_launcher 1.2's ``launch`` up to its collection."""
        import submitit  # only where SLURM jobs are submitted: Hydra's plugin scan imports us

        assert self.config is not None
        assert len(job_overrides) > 0
        init_params = {"folder": self.params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}
        init_params.update(
            **{
                f"{self._EXECUTOR}_{x}": y
                for x, y in self.params.items()
                if x in specific_init_keys
            }
        )
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {
            x if x in baseparams else f"{self._EXECUTOR}_{x}": y
            for x, y in self.params.items()
            if x not in init_keys
        }
        executor.update_parameters(**params)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        return list(executor.map_array(self, *zip(*job_params, strict=True)))

    def _collect(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        """The job's result; a task that left none is a failed job (module docstring)."""
        from submitit.core.utils import FailedJobError, UncompletedJobError  # as in _submit

        try:
            return job.results()[0]
        except UncompletedJobError:
            error = f"SLURM task {job.job_id} ended without a result (sacct: {job.state})"
        except FailedJobError as err:
            error = f"SLURM task {job.job_id} failed outside the job: {_last_trace_line(err)}"
        error = redact_line(error)
        name = f"job #{idx} ({' '.join(filter_overrides(overrides))})"
        output_dir = self._output_dir(overrides, idx)
        statuses = mark_lost(output_dir, os.environ.get(SWEEP_ID_ENV), redact_line(name), error)
        for status in statuses:
            if status.get("error") == error:
                print(f"{status.get('name')}: FAILED ({error})", file=sys.stderr, flush=True)
        ret = JobReturn(
            overrides=overrides,
            status=JobStatus.COMPLETED,
            working_dir=str(output_dir),
            task_name=str(self.config.hydra.job.name),
        )
        ret.return_value = {**statuses[0], "seeds": statuses}
        return ret

    def _output_dir(self, overrides: list[str], idx: int) -> Path:
        """The job's Hydra output folder, as its task would have made it (where its status
        file is); a folder under the sweep's if the job's config cannot be composed here."""
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        try:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(config.hydra.job):
                config.hydra.job.num = idx
            return Path(str(config.hydra.sweep.dir)).absolute() / str(config.hydra.sweep.subdir)
        except Exception:  # composed fine when submitted; this is only where to write
            return sweep_dir / ".lost" / str(idx)


def _last_trace_line(err: BaseException) -> str:
    """The exception line of the traceback submitit puts in a FailedJobError's message."""
    lines = (
        [line for line in str(err).split("-" * 22)[1].splitlines() if line.strip()]
        if "-" * 22 in str(err)
        else str(err).splitlines()
    )
    return lines[-1].strip() if lines else type(err).__name__
