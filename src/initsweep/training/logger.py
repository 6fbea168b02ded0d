"""The Lightning logger of a job's run: metric rows buffered in memory, written with log_batch.

A synchronous ``log_metric`` costs more than a training step (a round trip to sqlite, a request
to a server), so rows are kept and written in batches of up to ``flush_every`` (and always at the
end of fit, when a job fails or is preempted): see docs/performance.md for the measured costs.
The run itself is created and ended by ``training.job``, which owns its tags, parent and status.

When the store is down (``initsweep.tracking.retries``) the writes made while training do not wait:
the rows stay in the buffer and go out with a later write, once the store answers again; only
``flush()`` (end of fit, end of the run) waits for it, within the retry budget.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from initsweep.tracking.retries import RetryingClient

MAX_BATCH = 1000  # MLflow's limit on metric rows per log_batch call


class BufferedMlflowLogger(Logger):
    """A Lightning logger that buffers metric rows and writes them with ``log_batch``.

    Every ``flush_every`` rows a write is attempted without waiting (``write_now``); ``flush()``
    writes everything, waiting for the store within the retry budget. The job flushes before it
    ends the run, whatever the outcome, so nothing that was logged is lost.
    """

    def __init__(self, client: MlflowClient, run_id: str, flush_every: int = MAX_BATCH) -> None:
        super().__init__()
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self._rows: list[Metric] = []
        self.logged_through: dict[str, int] = {}  # a resumed run's last stored step per key

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
        self.add(
            [
                Metric(key, float(value), now, step or 0)
                for key, value in metrics.items()
                if key != "epoch"
            ]
        )

    def add(self, rows: list[Metric]) -> None:
        """Metric rows made elsewhere (the stacked-seeds module logs per seed)."""
        if self.logged_through:  # resumed: the redone epoch's rows the store has already
            rows = [r for r in rows if r.step > self.logged_through.get(r.key, -1)]
        self._rows.extend(rows)
        if len(self._rows) >= self.flush_every:
            self.write_now()

    def write_now(self) -> None:
        """Write the buffer if the store answers now; if it does not, keep the rows (training
        goes on) and let a later write try again, no sooner than the retry backoff allows."""
        if not isinstance(self.client, RetryingClient):
            self.flush()
            return
        while self._rows:
            chunk = self._rows[:MAX_BATCH]
            if not self.client.try_now("log_batch", self.run_id, metrics=chunk, synchronous=True):
                return
            del self._rows[: len(chunk)]

    def flush(self) -> None:
        """Write every buffered row, waiting for the store within the retry budget; a row is
        dropped from the buffer only once the store has it."""
        while self._rows:
            chunk = self._rows[:MAX_BATCH]
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
            del self._rows[: len(chunk)]

    def unsent(self) -> list[Metric]:
        """The rows not written yet (what a job that gave up on the store keeps on disk)."""
        return list(self._rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End of fit: wait for the store; interrupted (Lightning says "failed"): do not wait,
        the job's guard decides (a stopped job has seconds before SIGKILL)."""
        if status == "success":
            self.flush()
        else:
            self.write_now()
