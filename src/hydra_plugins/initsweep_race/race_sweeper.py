"""The race sweeper: configurations race over seeds, and the clearly worse stop getting seeds.

    python train.py -m hydra/sweeper=race optim.lr=0.05,0.1,0.2,0.5,1.0 init=he,xavier

Built as Hydra's basic sweeper and the Optuna/Ax sweeper plugins are: a structured config in the
ConfigStore (``config.py``), ``setup()`` instantiates the configured launcher, ``sweep()``
launches batches through ``self.launcher.launch(batch, initial_job_idx)``, so every launcher
works (basic, ``hydra/launcher=gpus`` (joblib), SLURM (submitit)). One batch per round: every
live configuration's next seeds, stacked into ``seeds_per_job`` jobs where possible. Results come
back through the jobs' status files (``initsweep.race.collect``); the decisions are
``initsweep.race.engine.Race``'s (pure, replayable: scripts/race_study.py); the race's table, plot
and winners go to ``<sweep dir>/race/`` and the sweep's parent run (``initsweep.race.publish``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from initsweep.race.collect import collect
from initsweep.vocab import PARENT_RUN_ENV

log = logging.getLogger(__name__)


class RaceSweeper(Sweeper):
    """``hydra/sweeper=race``: see docs/race.md."""

    def __init__(self, **keys: Any) -> None:
        super().__init__()
        self.keys = keys  # checked in sweep(), where a bad one is a one-line error (exit 2)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        # Hydra's plugin scan imports this module in every process: the race (numpy, Hydra's
        # override parser, MLflow) loads only when the race sweeper runs
        from initsweep.race.plan import make_plan, to_container

        assert self.config is not None and self.launcher is not None
        keys = {k: to_container(v) for k, v in self.keys.items()}
        plan = make_plan(keys, arguments, self.config)  # ConfigError: one line, nothing ran
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        return RaceDriver(self, plan, sweep_dir).run()


class RaceDriver:
    """One race through the launcher: plan a round, launch it as one batch, read, decide."""

    def __init__(self, sweeper: RaceSweeper, plan: Any, sweep_dir: Path) -> None:
        from initsweep.race.engine import Race  # at run time (see sweep)

        self.sweeper, self.plan, self.sweep_dir = sweeper, plan, sweep_dir
        self.race = Race(plan.candidates, plan.settings)
        self.job_idx = 0
        self.run_ids: dict[tuple[int, int], str] = {}

    def run(self) -> list[Any]:
        # at run time (see sweep)
        from initsweep.race.plan import job_overrides
        from initsweep.race.publish import round_line

        returns = []
        print(
            f"race: {len(self.plan.candidates)} configurations in "
            f"{len(self.race.contexts)} context(s), up to {len(self.plan.settings.seeds)} "
            f"seeds each (full grid {self.race.full_grid} runs); selecting on "
            f"{self.plan.metric}",
            flush=True,
        )
        while round_plan := self.race.next_round():
            jobs = job_overrides(self.plan, round_plan)
            batch = [overrides for _, _, overrides in jobs]
            self.sweeper.validate_batch_is_legal(batch)
            results = self.sweeper.launcher.launch(batch, initial_job_idx=self.job_idx)
            self.job_idx += len(batch)
            returns.append(results)
            read = collect(
                [(index, seeds, ret) for (index, seeds, _), ret in zip(jobs, results, strict=True)],
                self.plan.metric,
                self.plan.score_metric,
            )
            self.run_ids.update(read.run_ids)
            table = self.race.record(read.values, read.scores, read.problems)
            print(
                f"race round {len(self.race.rounds)} ({self.race.spent} runs): {round_line(table)}",
                flush=True,
            )
            self.publish(final=False)
        self.publish(final=True)
        for context, w in self.race.winners().items():
            print(
                f"race winner{' ' + context if context else ''}: {w.candidate.label} "
                f"({w.ended}, {w.n_seeds} seeds) {self.plan.metric}={w.mean:.4f} "
                f"[{w.low:.4f}, {w.high:.4f}], {self.plan.score_metric}={w.score_mean:.4f}",
                flush=True,
            )
        print(
            f"race: {self.race.spent} runs of the full grid's {self.race.full_grid} "
            f"({self.race.spent / self.race.full_grid:.0%}); table in "
            f"{self.sweep_dir / 'race'}",
            flush=True,
        )
        return returns

    def publish(self, final: bool) -> None:
        """Files in <sweep dir>/race and, when a parent run is open, its artifacts and tags."""
        from initsweep.race.publish import log_to_parent, write_files  # at run time (see sweep)

        files = write_files(
            self.race, self.plan.metric, self.plan.score_metric, self.sweep_dir / "race"
        )
        parent = os.environ.get(PARENT_RUN_ENV)
        if not parent:
            return
        from initsweep.tracking.store import open_client, tracking_uri  # MLflow: at run time

        config = self.sweeper.config
        assert config is not None
        client = open_client(tracking_uri(config.get("tracking")))
        log_to_parent(
            client, parent, self.race, files, self.plan.metric, self.plan.score_metric, final
        )
