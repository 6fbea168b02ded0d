"""The optimizers a config can name (Adam, AdamW, SGD with optional Nesterov momentum), validated,
with torch's fused kernels where they exist."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from initsweep.errors import ConfigError, require

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def check_optim(optim_cfg: Mapping[str, Any]) -> None:
    """Validate an ``optim`` config before anything is built (one-line errors)."""
    name = optim_cfg.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={name!r}: must be one of {', '.join(sorted(OPTIMIZERS))}")
    lr = optim_cfg.get("lr")
    require(isinstance(lr, (int, float)) and lr > 0, "optim.lr", lr, "must be a number > 0")
    momentum = optim_cfg.get("momentum", 0.0)
    require(0 <= momentum < 1, "optim.momentum", momentum, "must be in [0, 1)")
    # Nesterov (Sutskever et al. 2013's form, as torch's SGD has it) is a kind of momentum.
    require(
        not optim_cfg.get("nesterov", False) or momentum > 0,
        "optim.nesterov",
        True,
        f"needs optim.momentum > 0 (it is {momentum})",
    )
    require(
        optim_cfg.get("weight_decay", 0.0) >= 0,
        "optim.weight_decay",
        optim_cfg.get("weight_decay"),
        "must be >= 0",
    )
    fused = optim_cfg.get("fused", "auto")
    require(fused in ("auto", True, False), "optim.fused", fused, "must be auto, true or false")


def check_fused(optim_cfg: Mapping[str, Any], device: str) -> None:
    """``optim.fused: true`` on a device this torch has no fused kernel of the optimizer for is a
    one-line ``ConfigError`` before any run exists (torch would raise inside fit)."""
    if optim_cfg.get("fused", "auto") is not True:
        return
    name = optim_cfg.get("name")
    try:
        _fused(OPTIMIZERS[str(name)], device)
    except RuntimeError as err:
        raise ConfigError(
            f"optim.fused=true: torch {torch.__version__} has no fused {name} "
            f"kernel for device {device} ({str(err).splitlines()[0]}); use "
            f"optim.fused=auto or false"
        ) from None


def _fused(cls: Any, device: str | torch.device) -> None:
    """Raises torch's RuntimeError if optimizer class ``cls`` has no fused kernel for
    ``device``."""
    cls([torch.zeros(1, device=device, requires_grad=True)], fused=True)


def make_optimizer(params: Iterable[Tensor], optim_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The configured optimizer over ``params`` (a run alone, stacked members, the benchmark).

    ``fused: auto`` takes torch's fused kernel (one pass over each parameter per step) where this
    torch has it for the parameters' device: the same update rule as the default per-op loop, and
    faster (docs/performance.md). Its last bits differ from the per-op loop, so ``fused: false``
    reproduces runs made without it.
    """
    cfg = dict(optim_cfg)
    cls = OPTIMIZERS[cfg.pop("name")]
    params = list(params)
    fused = cfg.pop("fused", "auto")
    if fused == "auto":
        try:  # torch says whether it has the kernel by refusing fused=True
            _fused(cls, params[0].device)
            fused = True
        except RuntimeError:
            fused = False
    return cls(params, fused=True, **cfg) if fused else cls(params, **cfg)
