"""A sweep's plan, creating nothing: ``python train.py -m ... --dry-run``, ``initsweep plan ...``.

How many runs the sweep makes, which are FINISHED and would be skipped, which would resume from
a checkpoint, which would start, and how the jobs would be placed. Each step is the one a real
multirun takes, so the plan cannot drift from it:

- the sweep config is composed by Hydra's config loader in MULTIRUN mode, and the jobs are
  Hydra's own expansion (``BasicSweeper.split_arguments`` over ``hydra.sweeper.params`` and the
  command line), each composed as its launcher composes it (``load_sweep_config``);
- a job's runs, names and hashes are ``naming``'s (``seed_configs``, ``run_name``,
  ``config_hash``), as ``training.job.plan_runs`` makes them;
- skip / resume / start is ``tracking.resume``'s (``finished_run``, ``resumable``), as
  ``training.job.skip_finished`` and ``open_runs`` decide it.

Nothing is created: a sqlite store that does not exist is not made (every run would start), no
experiment, run or sweep folder is written; the store's runs are read in one paginated search.
``hydra/sweeper=race`` decides its runs as it goes: the plan shows its whole grid (configurations
x seeds), the most it can run. Torch-free, like the launching process.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from initsweep.launch.jobs import job_overrides
from initsweep.naming import (
    config_hash,
    named_overrides,
    run_name,
    seed_configs,
    swept_keys,
)
from initsweep.tracking.redaction import redact
from initsweep.tracking.store import StoreCheckFailed, tracking_uri
from initsweep.vocab import ROLE_TAG, SWEEP_ROLE

SKIP, RESUME, START = "skip", "resume", "start"
SHOWN = 12  # names listed per action; `--list` lists every run


@dataclass
class PlannedRun:
    """One run of the sweep and what the launch would do with it."""

    job: int  # the job's index in the sweep (Hydra's job number)
    name: str
    action: str  # SKIP, RESUME or START
    config_hash: str
    overrides: list[str]  # the job's overrides
    run_id: str | None = None  # the FINISHED run (skip) or the preempted one (resume)
    checkpoint: str | None = None  # what a resumed run restarts from


@dataclass
class Plan:
    """The sweep's runs (``runs``), where they go and how the jobs are placed."""

    runs: list[PlannedRun]
    n_jobs: int
    seeds_per_job: int
    experiment: str
    tracking_uri: str
    placement: str
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Runs per action, every action present (0 when none)."""
        found = Counter(run.action for run in self.runs)
        return {action: found.get(action, 0) for action in (SKIP, RESUME, START)}

    @property
    def table(self) -> Any:
        """The runs as a pandas data frame, one row per run (pandas only when asked for)."""
        # pandas only for the plan's table (the launching process may never need it)
        import pandas as pd

        return pd.DataFrame([vars(run) for run in self.runs])

    def render(self, every_run: bool = False) -> str:
        """What ``initsweep plan`` prints (``every_run``: one line per run)."""
        counts = self.counts
        lines = [
            f"plan: {plural(len(self.runs), 'run')} in {plural(self.n_jobs, 'job')}, "
            f"experiment "
            f"{self.experiment!r} in {redact(self.tracking_uri)}"
        ]
        what = {SKIP: "FINISHED already", RESUME: "preempted, from their checkpoint", START: "new"}
        for action in (SKIP, RESUME, START):
            names = [run.name for run in self.runs if run.action == action]
            shown = ", ".join(names[:SHOWN]) + (
                f", +{len(names) - SHOWN} more" if len(names) > SHOWN else ""
            )
            lines.append(
                f"  {action:<6} {counts[action]:>5}  {what[action]}"
                + (f": {shown}" if names else "")
            )
        lines.append(f"jobs: {self.placement}")
        lines += [f"note: {note}" for note in self.notes]
        if every_run:
            for run in self.runs:
                detail = {
                    SKIP: f"run {run.run_id}",
                    RESUME: f"run {run.run_id} from {run.checkpoint}",
                }.get(run.action, "")
                lines.append(f"  job {run.job:>4}  {run.action:<6} {run.name}  {detail}".rstrip())
        lines.append("nothing was created (dry run)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def default_config_dir() -> Path:
    """The repository's conf/ (beside train.py; the package is installed from its checkout)."""
    return Path(__file__).resolve().parents[3] / "conf"


def placement(cfg: DictConfig, n_jobs: int) -> str:
    """How the launcher would place the jobs, in one line."""
    launcher = cfg.hydra.launcher
    target = str(launcher.get("_target_", ""))
    choice = cfg.hydra.runtime.choices.get("hydra/launcher", "basic")
    where = f"{n_jobs} on hydra/launcher={choice}: "
    if "joblib" in target:
        try:
            parallel = f"{launcher.n_jobs} at a time"
        except Exception:  # the n_jobs resolver needs the devices module's registration
            parallel = "in parallel"
        return where + f"{parallel} in joblib workers, each on its own GPU slot (or CPU threads)"
    if "slurm" in target.lower():
        return where + (
            f"one SLURM array task each (--array=0-{n_jobs - 1}"
            f"%{launcher.get('array_parallelism')}), partition "
            f"{launcher.get('partition')}, {launcher.get('gpus_per_node')} GPU(s), "
            f"{launcher.get('cpus_per_task')} CPUs, {launcher.get('timeout_min')} min"
        )
    if "submitit" in target.lower():
        return where + "one local submitit process each"
    if "race" in str(cfg.hydra.sweeper.get("_target_", "")):
        return where + "given in rounds by the race, one after another in this process"
    return where + "one after another in the launching process"


def _store_runs(uri: str, experiment: str) -> tuple[dict[str, list[Any]], str | None]:
    """The experiment's job runs by config hash, newest first, read without creating anything;
    and a note when there is no store or experiment yet."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return {}, f"no store at {redact(uri)} yet: the sweep creates it"
    # MLflow only when a plan reads a store (`--dry-run` with a bad command line stays instant)
    from initsweep.tracking.store import check_store, open_client

    if not uri.startswith("sqlite:///"):  # a server that does not answer: one line, not retries
        check_store(uri)  # creates nothing for a server or a database
    client = open_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}, f"no experiment {experiment!r} yet: the sweep creates it"
    by_hash: dict[str, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            "",
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        for run in page:
            if run.data.tags.get(ROLE_TAG) != SWEEP_ROLE:  # as a job's search: parents out
                by_hash.setdefault(run.data.tags.get("config_hash", ""), []).append(run)
        token = page.token
        if not token:
            break
    return by_hash, None


def make_plan(
    overrides: Sequence[str], config_dir: str | Path | None = None, config_name: str = "config"
) -> Plan:
    """Compose the sweep and classify its runs (see the module's docstring); raises Hydra's
    composition errors as a real launch would (``launch.console`` makes them one line)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from initsweep.launch import devices  # noqa: F401  (registers the gpus launcher's resolver)
    from initsweep.launch.schema import register_schemas
    from initsweep.tracking.resume import finished_run, resumable

    register_schemas()
    folder = Path(config_dir or default_config_dir()).resolve()
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        sweep_cfg = loader.load_configuration(config_name, list(overrides), RunMode.MULTIRUN)
        jobs = job_overrides(sweep_cfg, list(sweep_cfg.hydra.overrides.task), loader)
        swept = swept_keys(sweep_cfg.hydra.overrides.task, sweep_cfg.hydra.sweeper.get("params"))
        configs = []
        for overrides_of_job in jobs:
            cfg = loader.load_sweep_config(sweep_cfg, overrides_of_job)
            choice = cfg.hydra.runtime.choices.get("init")
            with open_dict(cfg):
                del cfg["hydra"]
            configs.append((overrides_of_job, choice, cfg))
    uri = tracking_uri(sweep_cfg.get("tracking"))
    experiment = str(sweep_cfg.get("experiment_name", "initsweep"))
    force = bool(sweep_cfg.get("force", False))
    by_hash, note = _store_runs(uri, experiment)
    runs: list[PlannedRun] = []
    k = int(sweep_cfg.get("seeds_per_job", 1))
    for index, (overrides_of_job, choice, cfg) in enumerate(configs):
        named = named_overrides(overrides_of_job, swept)
        seeds = seed_configs(cfg, int(cfg.get("seeds_per_job", 1)))
        planned = [
            PlannedRun(
                index, run_name(one, named, choice), START, config_hash(one), list(overrides_of_job)
            )
            for one in seeds
        ]
        previous = [by_hash.get(run.config_hash, []) for run in planned]
        todo = []
        for run, found in zip(planned, previous, strict=True):
            done = None if force else finished_run(found)
            if done is None:
                todo.append((run, found))
            else:
                run.action, run.run_id = SKIP, done.info.run_id
        resumed = None if force or not todo else resumable([found for _, found in todo])
        if resumed is not None:
            for position, (run, _) in enumerate(todo):
                run.action, run.run_id = RESUME, resumed[0][position].info.run_id
                run.checkpoint = str(resumed[1])
        runs += planned
    notes = [note] if note else []
    if force:
        notes.append("force=true: runs FINISHED already are trained again")
    if k > 1:
        notes.append(f"seeds_per_job={k}: each job trains {k} seeds as one stacked model")
    if "race" in str(sweep_cfg.hydra.sweeper.get("_target_", "")):
        notes.append(
            "hydra/sweeper=race: the race gives seeds as it goes; these are the most "
            "runs it can make"
        )
    return Plan(runs, len(configs), k, experiment, uri, placement(sweep_cfg, len(configs)), notes)


def main(argv: Sequence[str], config_dir: str | Path | None = None) -> int:
    """``initsweep plan [--list] OVERRIDES...`` and ``train.py -m ... --dry-run``: print the plan;
    exit 0, or 2 with one line for a bad command line."""
    # the console's third-party set-up only for the command-line entry
    from initsweep.launch.console import print_error, quiet_third_parties
    from initsweep.launch.entry import one_line_config_errors

    args = [a for a in argv if a not in ("-m", "--multirun")]
    every_run = "--list" in args
    args = [a for a in args if a != "--list"]
    quiet_third_parties()
    folder = Path(config_dir or default_config_dir())
    with one_line_config_errors(folder):
        try:
            plan = make_plan(args, folder)
        except StoreCheckFailed as err:
            print_error(str(err))
            return 2
    print(plan.render(every_run), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
