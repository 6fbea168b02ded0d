"""What jobs, the sweep callback and the report agree on: names, seed keys, hashes, run names.

Torch-free on purpose (OmegaConf and Hydra's override parser only): the sweep callback and the
report import it without paying for Lightning and torch, and there is one copy of each convention.

- A multirun's launching process hands its jobs the parent run and the sweep through the
  environment (``PARENT_RUN_ENV``, ``SWEEP_ID_ENV``, ``SWEPT_KEYS_ENV``), which every Hydra
  launcher's workers inherit.
- ``config_hash`` names "the same config" (``RESULT_KEYS``: everything that decides a result,
  seeds included); ``group_hash`` the same config over all seeds (``GROUP_KEYS``).
- A job of ``seeds_per_job=K`` with ``seed=s`` covers seeds s .. s+K-1 (``seed_configs``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

SEED_KEYS = ("seed", "init_seed", "data_seed")
# Config sections that decide a job's result: what is hashed to recognise "the same config".
GROUP_KEYS = ("data", "model", "init", "optim", "lr_schedule", "trainer", "job")
RESULT_KEYS = (*GROUP_KEYS, *SEED_KEYS)
# Keys inside those sections that change what a job shows, not what it computes.
NOT_HASHED = {"job": ("progress_bar",)}
# Top-level keys that are not part of a run's recorded config: where it is logged, free-form tags,
# how jobs are batched and placed (a seed trained in a batch or on another GPU must look the same).
NOT_PARAMS = ("tracking", "tags", "seeds_per_job", "devices", "force", "report", "debug")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
# Keys the run name shows already (``run_name``), so ``named_overrides`` leaves them out.
NAMED_KEYS = ("init", "init.scheme", "init.scale", *SEED_KEYS)


def as_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A config as plain containers, interpolations resolved (a mapping stays as it is)."""
    if isinstance(cfg, DictConfig):
        return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    return dict(cfg)


# Built-in ``_target_`` prefixes as they were when the first stores were written. Hashes are
# computed on these spellings, so moving a module never changes a config's hash: stores in the wild
# rely on it to skip FINISHED configs and resume preempted runs (tests/test_config_hash.py pins
# them).
HASHED_TARGET_PREFIXES = {
    "initsweep.models.zoo.": "initsweep.networks.",
    "initsweep.training.data.": "initsweep.data.",
}


def hashed_target(target: str) -> str:
    """``target`` as the config hash spells it: built-in modules under their first names."""
    for prefix, legacy in HASHED_TARGET_PREFIXES.items():
        if target.startswith(prefix):
            return legacy + target[len(prefix) :]
    return target


def config_hash(cfg: Mapping[str, Any], keys: tuple[str, ...] = RESULT_KEYS) -> str:
    """Short stable hash of the result-deciding part of a resolved config.

    Built-in ``_target_`` strings are hashed under their first module paths (``hashed_target``).
    """
    container = as_dict(cfg)
    part = {k: container.get(k) for k in keys}
    for section in ("data", "model"):
        value = part.get(section)
        if isinstance(value, Mapping) and isinstance(value.get("_target_"), str):
            part[section] = {**value, "_target_": hashed_target(value["_target_"])}
    for section, skipped in NOT_HASHED.items():
        value = part.get(section)
        if isinstance(value, Mapping):
            part[section] = {k: v for k, v in value.items() if k not in skipped}
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:12]


def group_hash(cfg: Mapping[str, Any]) -> str:
    """``config_hash`` without the seeds: every seed of one config shares it."""
    return config_hash(cfg, GROUP_KEYS)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists stay one value (as the CLI writes them)."""
    if isinstance(tree, Mapping):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    value = json.dumps(tree) if isinstance(tree, (list, tuple)) else str(tree)
    return {prefix[:-1]: value[:MAX_PARAM_LENGTH]}


def run_name(
    cfg: Mapping[str, Any], extra_overrides: Sequence[str] = (), init_choice: str | None = None
) -> str:
    """Readable run name: ``<init>-x<scale>-s<seed>``, plus seeds that differ and other overrides.

    ``<init>`` is the ``init`` config chosen (``s4/zeros`` -> ``s4.zeros``), else the scheme.
    ``extra_overrides`` are the job's values of the other keys the sweep varies (see
    ``named_overrides``), so two jobs of one sweep never share a name.
    """
    init = cfg["init"]
    label = (init_choice or init["scheme"]).replace("/", ".")
    name = f"{label}-x{init.get('scale', 1.0):g}-s{cfg['seed']}"
    if cfg["init_seed"] != cfg["seed"]:
        name += f"-i{cfg['init_seed']}"
    if cfg["data_seed"] != cfg["seed"]:
        name += f"-d{cfg['data_seed']}"
    for override in extra_overrides:
        name += f"-{override}"
    return name


def swept_keys(
    task_overrides: Sequence[str], sweeper_params: Mapping[str, Any] | None
) -> list[str]:
    """Keys a multirun varies: sweep overrides on the command line and ``hydra.sweeper.params``."""
    # Hydra's override grammar (ANTLR) only in the launching process, not in every job
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    # a preset's "+group" sweeps a group its defaults do not list: the job's override is "+group=x"
    params = [override_key(k) for k in (sweeper_params or {})]
    return keys + [k for k in params if k not in keys]


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def named_overrides(task_overrides: Sequence[str], swept: Sequence[str]) -> list[str]:
    """This job's ``key=value`` for swept keys that the run name does not already show."""
    return [
        override.lstrip("+~")
        for override in task_overrides
        if override_key(override) in swept and override_key(override) not in NAMED_KEYS
    ]


def seed_configs(cfg: DictConfig, k: int) -> list[DictConfig]:
    """The K per-seed configs of a job: seed, init_seed and data_seed shifted by 0..K-1.

    Each is resolved (``init_seed: ${seed}`` becomes a number before the shift) and has
    ``seeds_per_job=1``: what the same seed's job alone would have composed.
    """
    configs = []
    for offset in range(k):
        one = cast(DictConfig, OmegaConf.create(as_dict(cfg)))
        for key in SEED_KEYS:
            one[key] = cfg[key] + offset
        one.seeds_per_job = 1
        configs.append(one)
    return configs


def seed_overrides(overrides: Sequence[str], one: Mapping[str, Any], base_seed: int) -> list[str]:
    """The command-line overrides a job of this seed alone would have had (overrides.txt)."""
    out, keys = [], set()
    for override in overrides:
        key = override_key(override)
        keys.add(key)
        if key != "seeds_per_job":
            out.append(f"{key}={one[key]}" if key in SEED_KEYS else override)
    if "seed" not in keys and one["seed"] != base_seed:
        out.append(f"seed={one['seed']}")
    return out
