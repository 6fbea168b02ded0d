"""What a job does when the MLflow store stops answering: retry with backoff, within a budget.

Torch-free. The policy (docs/scaling.md, "When the store goes down"; numbers are ``tracking.*``
config keys, ``RetryPolicy``):

- **Transient** failures are retried: no connection (refused, reset, timed out), and answers that
  say "try later" (HTTP 5xx and 429; a SQL store's OperationalError, which MLflow reports as
  TEMPORARILY_UNAVAILABLE). An answer that says the request is wrong (4xx: a bad value, a missing
  run) is not: retrying cannot fix it.
- **Training never waits.** The metric logger writes its rows with ``try_now``: one attempt, and
  while the store is down the rows stay in memory and the next attempt is made no sooner than
  the backoff allows (``retry_backoff_s``, doubling up to ``retry_backoff_max_s``).
- **Where a job must wait** (create or reopen its runs, its last rows, artifacts, the end of a
  run, the sweep's parent run) a call is retried with the same backoff until it succeeds or the
  time spent waiting in this outage reaches ``retry_budget_s``; then it raises
  ``StoreUnavailable`` (one line: the URI, redacted, how long, why). Once given up, later calls
  in this process make one attempt each until one succeeds (a circuit breaker: the next job of a
  basic-launcher sweep does not wait a whole budget again).
- Every call retried here is idempotent for MLflow: metric rows are deduplicated by the store,
  params and tags are upserts, artifacts overwrite. The exception: a ``create_run`` whose answer
  was lost may have created a run; such a duplicate is left RUNNING and closed by the sweep
  callback at the end of the sweep (``initsweep.launch.sweep``).

MLflow's own HTTP retries (7 with exponential backoff, up to ~4 minutes per call, which is why an
unreachable server used to take 8 minutes to fail) are turned off where this project makes a
client (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` unless set), so this module is the one policy.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from initsweep.tracking.redaction import redact, redact_line

T = TypeVar("T")
# A non-blocking attempt (``try_now``) gives up on an answer after this long: a server that
# accepts connections but does not answer (starting up, overloaded, a dropped network) must not
# hold training for MLflow's default request timeout (120 s).
TRY_NOW_TIMEOUT_S = 10


@dataclass(frozen=True)
class RetryPolicy:
    """How long a job waits for the store (``tracking.retry_*``; defaults: conf/tracking/)."""

    budget_s: float = 300.0  # waiting time per outage before a call gives up
    backoff_s: float = 1.0  # first wait between attempts; doubles
    backoff_max_s: float = 30.0  # longest wait between attempts

    @classmethod
    def from_config(cls, tracking_cfg: Mapping[str, Any] | None) -> RetryPolicy:
        cfg, default = tracking_cfg or {}, cls()
        return cls(
            float(cfg.get("retry_budget_s", default.budget_s)),
            float(cfg.get("retry_backoff_s", default.backoff_s)),
            float(cfg.get("retry_backoff_max_s", default.backoff_max_s)),
        )


class StoreUnavailable(Exception):
    """The store did not answer within the retry budget; ``str(err)`` is one line. Raised once
    runs exist (exit code 1, runs left resumable); a store unusable at launch is
    ``store.StoreCheckFailed`` instead (exit code 2, before any run)."""

    def __init__(self, uri: str, waited_s: float, reason: str, budget_s: float) -> None:
        super().__init__(
            f"tracking store {redact(uri)} unreachable ({reason}); gave up after "
            f"waiting {waited_s:.0f} s (tracking.retry_budget_s={budget_s:g})"
        )
        self.uri, self.reason = redact(uri), reason


def transient(err: BaseException) -> bool:
    """A failure that retrying may cure (see the module docstring)."""
    if isinstance(err, StoreUnavailable):
        return False
    if isinstance(err, MlflowException):
        return err.get_http_status_code() >= 500 or err.get_http_status_code() == 429
    return isinstance(err, OSError)  # requests' ConnectionError and Timeout are OSErrors


def reason(err: BaseException) -> str:
    """What went wrong, in a few words, with no credentials: for the one-line messages."""
    text = str(err)
    for needle, short in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host not found"),
        ("nodename nor servname", "host not found"),
        ("timed out", "timed out"),
        ("Timeout", "timed out"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed by the server"),
        ("Connection aborted", "connection closed by the server"),
    ):
        if needle in text:
            return short
    first = (text.strip().splitlines() or [type(err).__name__])[0]
    return redact_line(first)[:200]


@dataclass
class Outage:
    """The store's state as this process saw it (one per URI, shared by its clients)."""

    since: float | None = None  # monotonic time of the first failure; None: the store answers
    waited_s: float = 0.0  # time spent waiting for it in blocking calls, this outage
    next_wait_s: float = 0.0  # the next backoff
    next_try: float = 0.0  # non-blocking attempts are skipped until then (monotonic)
    reason: str = ""
    gave_up: bool = False


_outages: dict[str, Outage] = {}


def outage_of(uri: str) -> Outage:
    return _outages.setdefault(uri, Outage())


class RetryingClient(MlflowClient):
    """An ``MlflowClient`` whose store calls follow the retry policy (module docstring).

    The methods this project calls are wrapped (``RETRIED``); ``try_now`` is the non-blocking
    attempt the metric logger uses while a model trains.
    """

    def __init__(self, tracking_uri: str, policy: RetryPolicy | None = None) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.uri = tracking_uri
        self.policy = policy or RetryPolicy()

    @property
    def outage(self) -> Outage:
        return outage_of(self.uri)

    def retry(self, call: Callable[[], T]) -> T:
        """``call()`` until it succeeds, a failure is not transient, or the budget is spent."""
        while True:
            try:
                result = call()
            except Exception as err:
                if not transient(err):
                    raise
                wait = self._failed(err)
                if wait is None:
                    out = self.outage
                    raise StoreUnavailable(
                        self.uri, out.waited_s, out.reason, self.policy.budget_s
                    ) from None
                time.sleep(wait)
                self.outage.waited_s += wait
                continue
            self._answered()
            return result

    def try_now(self, method: str, *args: Any, **kwargs: Any) -> bool:
        """``method(*args, **kwargs)`` once, without waiting; False when the store did not answer
        (or is down and the backoff says not yet), so the caller keeps its data for later."""
        out = self.outage
        if out.since is not None and time.monotonic() < out.next_try:
            return False
        try:
            with _request_timeout(TRY_NOW_TIMEOUT_S):
                getattr(MlflowClient, method)(self, *args, **kwargs)
        except Exception as err:
            if not transient(err):
                raise
            out.next_try = time.monotonic() + self._backoff(err)
            return False
        self._answered()
        return True

    def _backoff(self, err: BaseException) -> float:
        """Record a transient failure; the wait before the next attempt."""
        out = self.outage
        out.reason = reason(err)
        if out.since is None:
            out.since, out.waited_s, out.next_wait_s = time.monotonic(), 0.0, self.policy.backoff_s
            print(
                f"warning: tracking store {redact(self.uri)}: {out.reason}; retrying with "
                f"backoff (tracking.retry_budget_s={self.policy.budget_s:g})",
                file=sys.stderr,
                flush=True,
            )
        wait = out.next_wait_s
        out.next_wait_s = min(2 * wait, self.policy.backoff_max_s)
        return wait

    def _failed(self, err: BaseException) -> float | None:
        """A blocking call failed: how long to wait before the next attempt, None to give up."""
        wait = self._backoff(err)
        out = self.outage
        left = self.policy.budget_s - out.waited_s
        if out.gave_up or left <= 0:
            out.gave_up = True
            return None
        return min(wait, left)

    def _answered(self) -> None:
        out = self.outage
        if out.since is not None:
            print(
                f"tracking store {redact(self.uri)} answers again after "
                f"{time.monotonic() - out.since:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            _outages[self.uri] = Outage()


@contextmanager
def _request_timeout(seconds: float) -> Iterator[None]:
    """MLflow's HTTP request timeout for the calls made inside (MLflow reads it per request)."""
    name = "MLFLOW_HTTP_REQUEST_TIMEOUT"
    previous = os.environ.get(name)
    if previous is not None and float(previous) <= seconds:  # a user's shorter one stays
        yield
        return
    os.environ[name] = str(int(seconds))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def try_now(client: MlflowClient, method: str, *args: Any, **kwargs: Any) -> bool:
    """One attempt at ``client.method(...)`` that never waits (``RetryingClient.try_now``); any
    other client is simply called."""
    if isinstance(client, RetryingClient):
        return client.try_now(method, *args, **kwargs)
    getattr(client, method)(*args, **kwargs)
    return True


# The MlflowClient methods this project calls on a store (jobs, the sweep callback, the report).
RETRIED = (
    "get_experiment_by_name",
    "create_experiment",
    "get_experiment",
    "search_experiments",
    "search_runs",
    "get_run",
    "create_run",
    "update_run",
    "set_terminated",
    "set_tag",
    "delete_tag",
    "log_batch",
    "log_metric",
    "log_param",
    "log_text",
    "log_artifact",
    "log_artifacts",
    "list_artifacts",
    "download_artifacts",
    "get_metric_history",
)


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(MlflowClient, name)

    @functools.wraps(method)
    def call(self: RetryingClient, *args: Any, **kwargs: Any) -> Any:
        return self.retry(lambda: method(self, *args, **kwargs))

    return call


for _name in RETRIED:
    setattr(RetryingClient, _name, _retried(_name))
