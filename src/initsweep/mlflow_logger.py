"""The Lightning logger of a job's run: metric rows buffered in memory, written with log_batch.

A synchronous ``log_metric`` costs more than a training step (a round trip to sqlite, a request
to a server), so rows are kept and written in batches of up to ``flush_every`` (and always at the
end of fit, when a job fails or is preempted): see docs/performance.md for the measured costs.
The run itself is created and ended by ``initsweep.job``, which owns its tags, parent and status.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

MAX_BATCH = 1000  # MLflow's limit on metric rows per log_batch call


class BufferedMlflowLogger(Logger):
    """A Lightning logger that buffers metric rows and writes them with ``log_batch``.

    ``flush()`` runs every ``flush_every`` rows and at ``finalize``; the job flushes it before it
    ends the run, whatever the outcome, so nothing that was logged is lost.
    """

    def __init__(self, client: MlflowClient, run_id: str, flush_every: int = MAX_BATCH) -> None:
        super().__init__()
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self._rows: list[Metric] = []

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is logged once by the job itself, not by Lightning."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self.add([Metric(key, float(value), now, step or 0)
                  for key, value in metrics.items() if key != "epoch"])

    def add(self, rows: list[Metric]) -> None:
        """Metric rows made elsewhere (the stacked-seeds module logs per seed)."""
        self._rows.extend(rows)
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._rows:
            chunk, self._rows = self._rows[:MAX_BATCH], self._rows[MAX_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()
