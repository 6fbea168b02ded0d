"""The jobs of a multirun, as Hydra's basic sweeper expands them: one list of overrides a job.

Hydra's own expansion (``BasicSweeper.split_arguments``) over ``hydra.sweeper.params`` and the
command line, so the dry run (``launch.plan``) and the progress bar's total
(``launch.progress``) count exactly the jobs a launch makes. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig


def job_overrides(cfg: DictConfig, arguments: Sequence[str], config_loader: Any) -> list[list[str]]:
    """The sweep's jobs, as Hydra's basic sweeper expands them: ``hydra.sweeper.params`` then
    the command line, every combination (the race sweeper's grid gets its seeds too)."""
    # Hydra's sweeper and override grammar only when a sweep's jobs are expanded
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = cfg.hydra.sweeper
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    if "seeds" in sweeper:  # the race sweeper: it gives each configuration up to these seeds
        seeds = sweeper.seeds
        params.append(
            "seed=" + (seeds if isinstance(seeds, str) else ",".join(str(s) for s in seeds))
        )
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(
        [*params, *arguments]
    )
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]
