"""``hydra/sweeper=race``: the race sweeper's structured config, registered in Hydra's ConfigStore
(as Hydra's own sweepers and the Optuna/Ax plugins register theirs). A wrong key or type is an
OmegaConf validation error when the config is composed, before anything runs.

No ``from __future__ import annotations`` here: Hydra's plugin scan imports this module in a way
that leaves string annotations unresolvable for ``dataclasses``; OmegaConf reads the real types.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from initsweep.race.engine import CONFIDENCE, MARGIN, SEEDS_FIRST, SEEDS_PER_ROUND
from initsweep.vocab import VAL_ACC


@dataclass
class RaceSweeperConf:
    _target_: str = "hydra_plugins.initsweep_race.race_sweeper.RaceSweeper"
    # Swept keys, as hydra.sweeper.params of the basic sweeper (the command line adds to them).
    params: dict[str, str] | None = None
    # The seeds each configuration may get, in the order they are given: "range(10)", "0,1,2",
    # or a list. The race gives them; `seed` itself is never swept.
    seeds: Any = "range(10)"
    # The defaults below are initsweep.race.engine's (one source with RaceSettings).
    seeds_first: int = SEEDS_FIRST  # seeds every configuration gets in round 1
    seeds_per_round: int = SEEDS_PER_ROUND  # seeds each live configuration gets in later rounds
    metric: str = VAL_ACC  # the selection metric: val/acc or val/loss (never test)
    direction: str | None = None  # max | min; null: the metric's own (acc max, loss min)
    # 1 - alpha of the elimination test over the whole race (anytime-valid betting e-processes,
    # e-Holm over the context's configurations: docs/race.md).
    confidence: float = CONFIDENCE
    # Differences up to this, in the metric's units, never drop a configuration (docs/race.md).
    margin: float = MARGIN
    budget: int | None = None  # total runs (configuration x seed); null: only the seeds cap it
    # Keys whose values are raced separately (a winner per init): each context its own race.
    context: list[str] = field(default_factory=lambda: ["init"])


ConfigStore.instance().store(
    group="hydra/sweeper", name="race", node=RaceSweeperConf, provider="initsweep"
)
