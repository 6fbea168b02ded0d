"""From the sweeper's keys and the command line to a race: settings, configurations, jobs.

Everything a user can get wrong is checked here, before anything runs, and raised as a
``ConfigError`` (one line naming the field and what is allowed; train.py prints it and exits
with code 2). Torch-free: the launching process imports it.

- the sweep overrides (``optim.lr=0.05,0.5 init=he,xavier``, or ``hydra.sweeper.params``) form
  the grid of configurations, as Hydra's basic sweeper forms its grid (command line last, so it
  wins over ``params``); the other overrides go to every job unchanged;
- ``context`` keys split the grid into contexts raced separately (each init its own race);
- the seeds are the race's, never a configuration's: ``seed`` on the command line is an error;
- a job trains ``seeds_per_job`` consecutive seeds of one configuration together
  (``initsweep.naming.seed_configs``), so a round's seeds are cut into such runs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from initsweep.errors import ConfigError, require
from initsweep.naming import SEED_KEYS
from initsweep.race.engine import Candidate, RaceSettings
from initsweep.vocab import VAL_ACC, VAL_LOSS

# What a job's status carries of its run's final validation metrics (job.py: the run's last
# value of every val/* metric) and which way each is better. Selection is on these only:
# choosing on test would leak the score into the choice.
SELECTION_METRICS = {VAL_ACC: "max", VAL_LOSS: "min"}
# The range the race's e-process assumes (rule.py): an accuracy's [0, 1]; a 10-class loss is
# clipped at chance (ln 10), so a diverged run counts as chance, not as infinitely bad.
METRIC_BOUNDS = {VAL_ACC: (0.0, 1.0), VAL_LOSS: (0.0, math.log(10))}
FIELD = "hydra.sweeper"


@dataclass(frozen=True)
class RacePlan:
    """A checked race: its settings, its configurations and what every job of it repeats."""

    settings: RaceSettings
    candidates: tuple[Candidate, ...]
    fixed: tuple[str, ...]  # the non-sweep overrides, given to every job
    metric: str  # selection metric (val/...)
    score_metric: str  # the same metric on test: what the winner is scored on
    seeds_per_job: int
    context_keys: tuple[str, ...]


def parse_seeds(seeds: Any) -> tuple[int, ...]:
    """``range(10)``, ``0,1,2``, ``[3, 1, 2]`` or ``7`` -> the seeds in the order given."""
    if isinstance(seeds, (ListConfig, list, tuple)):
        values: list[Any] = list(seeds)
    else:
        try:
            override = OverridesParser.create().parse_override(f"seed={seeds}")
        except Exception as err:
            raise ConfigError(
                f"{FIELD}.seeds={seeds!r}: not a seed list; use e.g. range(10), "
                f"0,1,2 or [0, 1, 2] ({str(err).splitlines()[0]})"
            ) from None
        values = (
            list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        )
    out = []
    for value in values:
        require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            f"{FIELD}.seeds",
            seeds,
            f"seeds must be integers >= 0, got {value!r}",
        )
        out.append(int(value))
    require(len(set(out)) == len(out), f"{FIELD}.seeds", seeds, "a seed appears twice")
    return tuple(out)


def grid(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """The swept keys with their values (in order) and the fixed overrides, as Hydra's basic
    sweeper reads ``params`` then the command line (a later key replaces an earlier one)."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    swept: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        swept.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            require(
                override.is_discrete_sweep(),
                key,
                str(override.value()),
                "the race sweeps lists and range() only (no interval or tag sweeps)",
            )
            swept[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            fixed[key] = f"{key}={override.get_value_element_as_str()}"
    return swept, list(fixed.values())


def bare_key(key: str) -> str:
    """``+a.b`` / ``~a.b`` / ``a.b`` -> ``a.b``."""
    return key.lstrip("+~")


def make_plan(
    sweeper: Mapping[str, Any], arguments: Sequence[str], config: DictConfig | None = None
) -> RacePlan:
    """Check the sweeper's keys and the command line; raises ConfigError (one line)."""
    metric: Any = sweeper.get("metric")
    known = ", ".join(SELECTION_METRICS)
    if isinstance(metric, str) and metric.startswith("test/"):
        raise ConfigError(
            f"{FIELD}.metric={metric!r}: the race selects on a validation metric "
            f"and scores the winner on test; choose from {known}"
        )
    require(
        metric in SELECTION_METRICS,
        f"{FIELD}.metric",
        metric,
        f"unknown selection metric; choose from {known}",
    )
    direction = sweeper.get("direction") or SELECTION_METRICS[metric]
    require(direction in ("max", "min"), f"{FIELD}.direction", direction, "must be max or min")
    require(
        direction == SELECTION_METRICS[metric],
        f"{FIELD}.direction",
        direction,
        f"{metric} is better when {SELECTION_METRICS[metric]}imised: "
        f"direction={SELECTION_METRICS[metric]} (or null)",
    )
    confidence: Any = sweeper.get("confidence")
    require(
        isinstance(confidence, (int, float)) and 0.5 <= confidence < 1,
        f"{FIELD}.confidence",
        confidence,
        "must be in [0.5, 1), e.g. 0.95",
    )
    margin: Any = sweeper.get("margin", 0.0)
    require(
        isinstance(margin, (int, float)) and margin >= 0,
        f"{FIELD}.margin",
        margin,
        f"must be >= 0, in {metric}'s units (0: call any difference the test supports)",
    )
    seeds = parse_seeds(sweeper.get("seeds"))
    require(
        len(seeds) >= 2,
        f"{FIELD}.seeds",
        sweeper.get("seeds"),
        f"no seeds left to race on ({len(seeds)}): give at least 2, e.g. range(10)",
    )
    first: Any = sweeper.get("seeds_first")
    per_round: Any = sweeper.get("seeds_per_round")
    require(
        isinstance(first, int) and 2 <= first <= len(seeds),
        f"{FIELD}.seeds_first",
        first,
        f"must be 2..{len(seeds)} (a paired comparison needs 2 seeds; "
        f"{FIELD}.seeds has {len(seeds)})",
    )
    require(
        isinstance(per_round, int) and per_round >= 1,
        f"{FIELD}.seeds_per_round",
        per_round,
        "must be an integer >= 1",
    )

    swept, fixed = grid(sweeper.get("params"), arguments)
    seeds_hint = f"the race gives the seeds: set {FIELD}.seeds (e.g. range(10))"
    for key, values in swept.items():
        require(
            bare_key(key) not in SEED_KEYS,
            key,
            ",".join(v.split("=", 1)[1] for v in values),
            f"a seed key is not a configuration; {seeds_hint}",
        )
    for override in fixed:
        require(
            bare_key(override_key_of(override)) != "seed",
            "seed",
            override.split("=", 1)[1],
            seeds_hint,
        )
    require(
        "seeds_per_job" not in swept,
        "seeds_per_job",
        "...",
        "cannot be swept in a race (a fixed value stacks the race's seeds)",
    )
    context = tuple(sweeper.get("context") or ())
    for key in context:
        require(
            key in map(bare_key, swept)
            or config is None
            or OmegaConf.select(config, key, default=None) is not None,
            f"{FIELD}.context",
            list(context),
            f"{key!r} is not a key of the config",
        )
    keys = list(swept)
    candidates = []
    for index, combo in enumerate(itertools.product(*swept.values())):
        by_key = dict(zip(keys, combo, strict=True))
        ctx = " ".join(v for k, v in by_key.items() if bare_key(k) in context)
        label = " ".join(v for k, v in by_key.items() if bare_key(k) not in context)
        candidates.append(Candidate(index, tuple(combo), ctx, label or ctx or "config"))
    contexts: dict[str, int] = {}
    for c in candidates:
        contexts[c.context] = contexts.get(c.context, 0) + 1
    smallest = min(contexts.items(), key=lambda kv: kv[1]) if contexts else ("", 0)
    if not candidates or smallest[1] < 2:
        where = f" in context {smallest[0]}" if smallest[0] else ""
        raise ConfigError(
            f"{FIELD}: a race needs at least 2 configurations per context, found {smallest[1]}"
            f"{where}; sweep a key, e.g. optim.lr=0.05,0.1 (swept: {', '.join(keys) or 'none'}; "
            f"context: {', '.join(context) or 'none'})"
        )

    budget: Any = sweeper.get("budget")
    first_round = len(candidates) * first
    require(
        budget is None or (isinstance(budget, int) and budget >= first_round),
        f"{FIELD}.budget",
        budget,
        f"cannot pay for the first round ({len(candidates)} configurations x {first} "
        f"seeds = {first_round} runs): raise it, lower seeds_first, or null (no cap)",
    )
    per_job = int(config.get("seeds_per_job", 1) or 1) if config is not None else 1
    require(per_job >= 1, "seeds_per_job", per_job, "must be an integer >= 1")
    bounds = METRIC_BOUNDS[metric]
    require(
        margin < bounds[1] - bounds[0],
        f"{FIELD}.margin",
        margin,
        f"must be below {metric}'s range {bounds[1] - bounds[0]:.3g}",
    )
    settings = RaceSettings(
        seeds,
        first,
        per_round,
        direction == "max",
        float(confidence),
        float(margin),
        budget,
        bounds,
    )
    return RacePlan(
        settings,
        tuple(candidates),
        tuple(fixed),
        metric,
        "test/" + metric.split("/", 1)[1],
        per_job,
        context,
    )


def override_key_of(override: str) -> str:
    return override.split("=", 1)[0]


def seed_chunks(seeds: Sequence[int], per_job: int) -> list[tuple[int, int]]:
    """Cut a round's seeds into jobs: ``(first seed, count)`` for runs of consecutive seeds,
    each at most ``per_job`` long (a job of ``seeds_per_job=k`` trains seeds s..s+k-1)."""
    chunks: list[tuple[int, int]] = []
    for seed in seeds:
        if chunks and seed == sum(chunks[-1]) and chunks[-1][1] < per_job:
            chunks[-1] = (chunks[-1][0], chunks[-1][1] + 1)
        else:
            chunks.append((seed, 1))
    return chunks


def job_overrides(
    plan: RacePlan, round_plan: Mapping[int, Sequence[int]]
) -> list[tuple[int, tuple[int, ...], list[str]]]:
    """The round's jobs: (candidate, its seeds, the job's overrides), one batch for the launcher.

    A job's overrides are the fixed ones, the configuration's and ``seed=s`` (with
    ``seeds_per_job=k`` when k consecutive seeds are stacked into the job).
    """
    jobs = []
    for index, seeds in round_plan.items():
        candidate = plan.candidates[index]
        for start, count in seed_chunks(seeds, plan.seeds_per_job):
            stacked = [f"seeds_per_job={count}"] if plan.seeds_per_job > 1 else []
            fixed = [o for o in plan.fixed if override_key_of(o) != "seeds_per_job"]
            jobs.append(
                (
                    index,
                    tuple(range(start, start + count)),
                    [*fixed, *candidate.overrides, f"seed={start}", *stacked],
                )
            )
    return jobs


def to_container(node: Any) -> Any:
    """A DictConfig/ListConfig as plain Python (the sweeper's keys arrive as OmegaConf nodes)."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
