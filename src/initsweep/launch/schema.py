"""Typed schemas (Hydra ConfigStore dataclasses) for the config groups whose fields are fixed.

Hydra checks these while it composes, before any job starts: a misspelt key (``optim.lrr=0.1``)
or a value of the wrong type (``optim.lr=fast``) is rejected for the whole command line. Ranges
and rules across fields (``optim.lr > 0``, ``momentum < 1``) stay one-line checks where the
objects are built (``training.builders``, ``training.optimizers``), which know the valid choices.

Groups left untyped on purpose: ``init`` (each scheme has its own parameters, checked against
the scheme registry), ``data`` and ``model`` (their keys are the constructors' arguments, checked
against the ``_target_``'s signature), and
``trainer`` (any Lightning Trainer argument may be added; ``check_trainer`` names unknown ones).
Each yaml file of a typed group starts with ``- /schema/<group>/<name>@_here_`` in its defaults.
The schemas hold types only (every field ``MISSING``); the values, defaults included, live in
the yaml files, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class AdamConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    fused: Any = MISSING  # auto | true | false


@dataclass
class AdamWConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    fused: Any = MISSING


@dataclass
class SGDConfig:
    name: str = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING
    weight_decay: float = MISSING
    fused: Any = MISSING


@dataclass
class NoScheduleConfig:
    name: str = MISSING


@dataclass
class CosineScheduleConfig:
    name: str = MISSING
    min_factor: float = MISSING


@dataclass
class StepScheduleConfig:
    name: str = MISSING
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class WarmupScheduleConfig:
    name: str = MISSING
    warmup_steps: int = MISSING
    start_factor: float = MISSING


@dataclass
class JobConfig:
    divergence_threshold: float | None = MISSING
    progress_bar: bool | None = MISSING


@dataclass
class DiagnosticsConfig:
    enabled: bool = MISSING
    every_n_steps: int = MISSING
    probe_size: int = MISSING
    probe_seed: int = MISSING
    saturation_eps: float = MISSING
    distinct_tol: float = MISSING
    plots: bool = MISSING
    background_plots: Any = MISSING  # auto | true | false


@dataclass
class TrackingConfig:
    uri: str | None = MISSING
    artifact_location: str | None = MISSING
    flush_every: int = MISSING
    checkpoint_dir: str | None = MISSING
    # When the store does not answer (initsweep.tracking.retries, docs/scaling.md)
    retry_budget_s: float = MISSING
    retry_backoff_s: float = MISSING
    retry_backoff_max_s: float = MISSING
    # MLflow's system metrics, a sample every this many seconds; null or 0: off
    # (initsweep.training.system_metrics)
    system_metrics_interval_s: float | None = MISSING


SCHEMAS: dict[str, dict[str, type]] = {
    "optim": {"adam": AdamConfig, "adamw": AdamWConfig, "sgd": SGDConfig},
    "lr_schedule": {
        "none": NoScheduleConfig,
        "cosine": CosineScheduleConfig,
        "step": StepScheduleConfig,
        "warmup": WarmupScheduleConfig,
    },
    "job": {"default": JobConfig},
    "diagnostics": {"default": DiagnosticsConfig},
    "tracking": {"default": TrackingConfig},
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent); call before Hydra composes."""
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=node)
