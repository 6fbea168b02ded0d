"""Learning-rate schedules (the ``lr_schedule`` group): a factor of ``optim.lr`` per step.

Every schedule is one ``torch.optim.lr_scheduler.LambdaLR`` stepped after each optimizer step, so
its state (the step count) is one number that Lightning saves in every checkpoint and restores
when a preempted run resumes:

- ``none``: the factor is 1 (no scheduler at all: runs are bit for bit what they were before);
- ``cosine``: Loshchilov & Hutter 2017 (SGDR) without restarts, from 1 down to ``min_factor``
  over the whole run's steps;
- ``step``: ``gamma`` every ``step_size`` epochs (He et al. 2016's decays);
- ``warmup``: linear from ``start_factor`` to 1 over ``warmup_steps`` steps, then 1
  (Goyal et al. 2017's gradual warmup).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from initsweep.errors import require, require_choice

SCHEDULES = ("none", "cosine", "step", "warmup")


def check_schedule(cfg: Mapping[str, Any] | None) -> None:
    """One-line errors for a bad ``lr_schedule`` (its keys and types the typed schemas check)."""
    if cfg is None:
        return
    name = cfg.get("name", "none")
    require_choice("lr_schedule.name", name, SCHEDULES)
    if name == "cosine":
        value = cfg.get("min_factor", 0.0)
        require(0 <= value <= 1, "lr_schedule.min_factor", value, "must be in [0, 1]")
    elif name == "step":
        require(
            cfg.get("step_size", 1) >= 1,
            "lr_schedule.step_size",
            cfg.get("step_size"),
            "must be an integer >= 1 (epochs)",
        )
        require(cfg.get("gamma", 0.1) > 0, "lr_schedule.gamma", cfg.get("gamma"), "must be > 0")
    elif name == "warmup":
        require(
            cfg.get("warmup_steps", 1) >= 1,
            "lr_schedule.warmup_steps",
            cfg.get("warmup_steps"),
            "must be an integer >= 1",
        )
        value = cfg.get("start_factor", 0.1)
        require(0 <= value <= 1, "lr_schedule.start_factor", value, "must be in [0, 1]")


def lr_factor(
    cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int
) -> Callable[[int], float]:
    """The factor of ``optim.lr`` at each step (0-based) of a run of ``total_steps`` steps."""
    name = cfg.get("name", "none")
    if name == "cosine":
        low = float(cfg.get("min_factor", 0.0))
        span = max(total_steps - 1, 1)
        return lambda step: low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(step, span) / span))
    if name == "step":
        size, gamma = int(cfg.get("step_size", 1)), float(cfg.get("gamma", 0.1))
        return lambda step: gamma ** ((step // max(steps_per_epoch, 1)) // size)
    if name == "warmup":
        warm, start = int(cfg.get("warmup_steps", 1)), float(cfg.get("start_factor", 0.1))
        return lambda step: start + (1 - start) * min(step / warm, 1.0)
    return lambda step: 1.0


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: Mapping[str, Any] | None,
    total_steps: int,
    max_epochs: int | None,
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The scheduler of ``cfg`` over ``optimizer`` (None for ``none``); step it after every
    optimizer step. ``total_steps`` is the run's planned number of steps (Lightning's
    ``estimated_stepping_batches``)."""
    if cfg is None or cfg.get("name", "none") == "none":
        return None
    steps_per_epoch = math.ceil(total_steps / max_epochs) if max_epochs else total_steps
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(cfg, total_steps, steps_per_epoch)
    )
