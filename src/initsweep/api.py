"""The Python API: run a sweep and get its runs and report back as data frames, or read one back.

    import initsweep
    sweep = initsweep.run_sweep("init=xavier,he,zeros seed=0,1,2")  # the command line's overrides
    sweep.groups    # the report's group table (its groups.csv), one row per group
    sweep.runs      # one row per job run (runs.csv)
    initsweep.load_sweep("latest")                                  # a sweep already in the store
    initsweep.plan_sweep("init=xavier,he seed=0,1,2").runs          # what a sweep would do

``run_sweep`` runs ``python train.py -m <overrides>`` in a subprocess, not through Hydra's API in
the caller's process: a multirun leaves global state behind (``GlobalHydra``, the logging
configuration, the parent run handed to jobs through ``os.environ``), the sweep callback ends the
process with ``sys.exit`` on a bad store or a failed job, and a job imports torch and Lightning and
can be killed (out of memory, SIGTERM). In a notebook each of those would leak into the next cell
or take the kernel down. The subprocess behaves exactly as the command line does (launchers,
SLURM, resume, the end-of-sweep report and UI view) and its lines stream to the caller as they
come. The frames are then read back from the store by the report's own code
(``initsweep.report``), so they are the tables ``initsweep report`` writes.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from initsweep.launch.plan import Plan
    from initsweep.report.compute import Report

# The sweep callback's first line (``initsweep.launch.sweep``): the sweep id, its parent run, the
# store (credentials redacted).
SWEEP_LINE = re.compile(r"^sweep (\S+): parent run ([0-9a-f]{32}) in (\S+)\s*$")
MULTIRUN_FLAGS = ("-m", "--multirun")


class SweepError(RuntimeError):
    """A sweep that made no parent run (a bad command line or store: exit code 2), or whose
    runs cannot be read back. ``returncode`` and ``output`` are the command's."""

    def __init__(self, message: str, returncode: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


@dataclass
class Sweep:
    """A sweep read back from MLflow: its runs and the report's tables as pandas data frames.

    ``runs``: one row per job run (the report's runs.csv: run id, name, group, status, outcome,
    the metric, seeds, then ``params.*``, ``metrics.*``, ``tags.*``). ``groups``: one row per
    group (groups.csv: mean, interval, spread over seeds). ``pairs``: the paired verdicts
    (pairs.csv). ``variance``: the init-seed / data-seed variance split (empty when the seeds were
    not crossed). ``report`` is the whole report (``initsweep.report.render.Report``); ``text``
    what ``initsweep report`` prints. ``returncode`` and ``output``: the command's, for a sweep
    ``run_sweep`` ran (1 when a job failed; its run is in ``runs`` with its outcome).
    """

    sweep_id: str | None
    parent_run_id: str | None
    experiment_name: str
    tracking_uri: str
    runs: pd.DataFrame
    groups: pd.DataFrame
    pairs: pd.DataFrame
    variance: pd.DataFrame
    report: Report = field(repr=False)
    returncode: int | None = None
    output: str = field(default="", repr=False)

    @property
    def text(self) -> str:
        """The report as the terminal shows it."""
        # the report's modules load on first use: `import initsweep` stays light
        from initsweep.report.render import terminal

        return terminal(self.report)

    def __repr__(self) -> str:
        return (
            f"Sweep({self.sweep_id or self.parent_run_id}: {len(self.runs)} runs in "
            f"{len(self.groups)} groups, experiment {self.experiment_name!r})"
        )


def as_overrides(overrides: Sequence[str] | str) -> list[str]:
    """The overrides as a list, split as a shell would split a string; ``-m`` dropped (a sweep
    is always a multirun here)."""
    args = shlex.split(overrides) if isinstance(overrides, str) else list(overrides)
    return [a for a in args if a not in MULTIRUN_FLAGS]


def default_train_py() -> Path:
    """The repository's train.py (the package is installed from its checkout, ``src/``)."""
    return Path(__file__).resolve().parents[2] / "train.py"


def run_sweep(
    overrides: Sequence[str] | str = (),
    *,
    tracking_uri: str | None = None,
    metric: str = "test/acc",
    tune: str | None = None,
    echo: bool = True,
    cwd: str | Path | None = None,
    train_py: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Sweep:
    """Run ``python train.py -m <overrides>`` and return the sweep (``load_sweep``'s frames).

    ``overrides``: the command line's, as a list or one string (``"init=he,xavier seed=0,1,2"``).
    ``tracking_uri``: the store (``tracking.uri=...``); default as the command line decides it
    (the config, ``$MLFLOW_TRACKING_URI``, else ``<cwd>/mlruns/mlflow.db``). ``metric`` and
    ``tune``: what the returned report compares and treats as tuned (``initsweep report``'s
    ``--metric`` / ``--tune``). ``echo``: print the sweep's lines as they come. ``cwd``: where the
    command runs (default: the current folder, as in a shell). ``env``: extra environment.

    Raises ``SweepError`` when the sweep made no parent run (bad overrides or store: the one-line
    error is the message). A sweep with failed jobs returns (``returncode`` 1); the failed runs
    are in ``runs`` with their outcome.
    """
    args = as_overrides(overrides)
    if tracking_uri:
        args.append(f"tracking.uri={tracking_uri}")
    cmd = [sys.executable, str(train_py or default_train_py()), "-m", *args]
    full_env = {**os.environ, **(env or {})}
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
    output = "".join(lines)
    found = next((m for m in map(SWEEP_LINE.match, lines) if m), None)
    if found is None:
        errors = [line.strip() for line in lines if line.startswith("error:")]
        raise SweepError(
            errors[-1] if errors else f"the sweep made no parent run (exit code {proc.returncode})",
            proc.returncode,
            output,
        )
    sweep_id, parent_run_id, printed_uri = found.groups()
    uri = tracking_uri or (printed_uri if "***" not in printed_uri else None)
    try:
        sweep = load_sweep(parent_run_id, tracking_uri=uri, metric=metric, tune=tune)
    except ValueError as err:  # the report's input errors: e.g. no run logged the metric
        raise SweepError(f"sweep {sweep_id}: {err}", proc.returncode, output) from err
    sweep.returncode, sweep.output = proc.returncode, output
    return sweep


def load_sweep(
    sweep: str = "latest",
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    metric: str = "test/acc",
    tune: str | None = None,
    seed: int = 0,
    all_pairs: bool = False,
) -> Sweep:
    """Read a sweep from the store: ``sweep`` is a sweep id (``20261129-094149-813b10``), its
    parent run's id, or ``"latest"`` (the newest sweep, of ``experiment`` if given).

    ``tracking_uri``: default ``$MLFLOW_TRACKING_URI``, else ``<cwd>/mlruns/mlflow.db`` (as
    ``initsweep report``). ``metric``, ``tune``, ``seed``, ``all_pairs``: ``initsweep report``'s
    options of the same names. Nothing is written (the report's files and the parent run's
    artifacts are the command's business). Bad input raises ``ValueError`` with one line.
    """
    # the report's modules load on first use: `import initsweep` stays light
    from initsweep.report.compute import build
    from initsweep.report.render import runs_csv
    from initsweep.report.select import default_tracking_uri, open_existing_store, select

    client = open_existing_store(tracking_uri or default_tracking_uri())
    latest = sweep == "latest"
    selection = select(client, experiment, sweep=None if latest else sweep, latest=latest)
    report = build(client, selection, metric, tune, seed=seed, all_pairs=all_pairs)
    return Sweep(
        selection.sweep_id,
        selection.parent_run_id,
        selection.experiment_name,
        client.tracking_uri,
        runs_csv(report.table),
        report.summary,
        report.pairs,
        report.variance,
        report,
    )


def plan_sweep(
    overrides: Sequence[str] | str = (),
    *,
    tracking_uri: str | None = None,
    config_dir: str | Path | None = None,
) -> Plan:
    """What ``run_sweep(overrides)`` would do, creating nothing: ``Plan.runs`` has one row per
    run with its job and action (skip, resume, start); ``print(plan)`` shows the summary
    (``initsweep plan``)."""
    # the planner (Hydra's composition) loads on first use: `import initsweep` stays light
    from initsweep.launch.plan import make_plan

    args = as_overrides(overrides)
    if tracking_uri:
        args.append(f"tracking.uri={tracking_uri}")
    return make_plan(args, config_dir)


__all__ = ["Sweep", "SweepError", "load_sweep", "plan_sweep", "run_sweep"]
