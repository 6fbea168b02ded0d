"""initsweep: reproducible sweeps over neural-network weight initialization.

Importing the package has no side effects: entry points (train.py, the ``initsweep`` command)
set up what they need, and MLflow's settings are applied where a client is made
(``initsweep.tracking.store.open_client``). The Python API (``run_sweep``, ``load_sweep``,
``plan_sweep``; docs/api.md) is imported on first use, so ``import initsweep`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Sweep", "SweepError", "__version__", "load_sweep", "plan_sweep", "run_sweep"]
_API = ("Sweep", "SweepError", "load_sweep", "plan_sweep", "run_sweep")


def __getattr__(name: str) -> Any:
    if name in _API:  # initsweep.api imports pandas and MLflow: only when asked for
        return getattr(importlib.import_module("initsweep.api"), name)
    raise AttributeError(f"module 'initsweep' has no attribute {name!r}")
