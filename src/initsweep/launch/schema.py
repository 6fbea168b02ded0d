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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    fused: Any = "auto"  # auto | true | false


@dataclass
class AdamWConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    fused: Any = "auto"


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    fused: Any = "auto"


@dataclass
class NoScheduleConfig:
    name: str = "none"


@dataclass
class CosineScheduleConfig:
    name: str = "cosine"
    min_factor: float = 0.0


@dataclass
class StepScheduleConfig:
    name: str = "step"
    step_size: int = 5
    gamma: float = 0.1


@dataclass
class WarmupScheduleConfig:
    name: str = "warmup"
    warmup_steps: int = 100
    start_factor: float = 0.1


@dataclass
class JobConfig:
    divergence_threshold: float | None = 1e6
    progress_bar: bool | None = None


@dataclass
class DiagnosticsConfig:
    enabled: bool = True
    every_n_steps: int = 50
    probe_size: int = 256
    probe_seed: int = 0
    saturation_eps: float = 0.01
    distinct_tol: float = 1e-6
    plots: bool = True
    background_plots: Any = "auto"  # auto | true | false


@dataclass
class TrackingConfig:
    uri: str | None = None
    artifact_location: str | None = None
    flush_every: int = 1000
    checkpoint_dir: str | None = None
    # When the store does not answer (initsweep.tracking.retries, docs/scaling.md)
    retry_budget_s: float = 300.0
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 30.0
    # MLflow's system metrics, a sample every this many seconds; null or 0: off
    # (initsweep.training.system_metrics)
    system_metrics_interval_s: float | None = None


SCHEMAS: dict[str, dict[str, type]] = {
    "optim": {"adam": AdamConfig, "adamw": AdamWConfig, "sgd": SGDConfig},
    "lr_schedule": {"none": NoScheduleConfig, "cosine": CosineScheduleConfig,
                    "step": StepScheduleConfig, "warmup": WarmupScheduleConfig},
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
