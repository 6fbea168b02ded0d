"""Who owns an open run: the process that writes it, in a form a later process can check.

Every run the project opens (a job's run, a sweep's parent run) carries its owner's identity as
tags (``owner_tags``): the host, the PID and the process's start (the kernel's boot id and the
process's start time in clock ticks since boot, from ``/proc``), so a PID reused after the owner
died, or a reboot, is not mistaken for the owner. While the owner lives, a daemon thread refreshes
a ``heartbeat`` tag on its open runs every ``heartbeat_s()`` seconds (``Heartbeat``): that is what
a process on another host (a shared store, a cluster) judges by, after ``stale_after_s()``.

``owner_alive`` answers "is this run's owner still there?":
- same host: the PID exists, is not a zombie, and started when the tags say: no waiting;
- another host: its heartbeat (else its last metric, else its start) is younger than the window;
- no owner tags (a run of an older version): the same window on its last sign of life.

Torch-free; the heartbeat thread writes one tag per open run per beat (docs/performance.md has
its measured cost).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from initsweep.vocab import (
    HEARTBEAT_ENV,
    HEARTBEAT_TAG,
    OWNER_HOST_TAG,
    OWNER_PID_TAG,
    OWNER_STARTED_TAG,
    STALE_AFTER_ENV,
)

HEARTBEAT_S = 60.0  # default beat: one tag write per open run a minute
STALE_AFTER_S = 600.0  # default window for another host's run: ten missed beats


def heartbeat_s() -> float:
    """Seconds between heartbeats ($INITSWEEP_HEARTBEAT_S; 0 turns them off)."""
    return float(os.environ.get(HEARTBEAT_ENV) or HEARTBEAT_S)


def stale_after_s() -> float:
    """How long a run on another host may go without a heartbeat before it counts as orphaned
    ($INITSWEEP_STALE_AFTER_S)."""
    return float(os.environ.get(STALE_AFTER_ENV) or STALE_AFTER_S)


def host() -> str:
    return socket.gethostname()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (None: no such process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # the name may hold spaces and parentheses


def process_started(pid: int) -> str:
    """``<boot id>:<start ticks>`` of a process ("" where /proc cannot say)."""
    fields = _stat(pid)
    boot = _boot_id()
    if fields is None or not boot:
        return ""
    return f"{boot}:{fields[19]}"  # field 22 of stat: starttime, counted from field 3 here


def owner_tags() -> dict[str, str]:
    """This process as the owner of the runs it opens (tags written with the run)."""
    pid = os.getpid()
    return {
        OWNER_HOST_TAG: host(),
        OWNER_PID_TAG: str(pid),
        OWNER_STARTED_TAG: process_started(pid),
        HEARTBEAT_TAG: str(int(time.time())),
    }


@dataclass
class Verdict:
    """What ``owner_alive`` found: ``alive``, and why in a few words (for the console)."""

    alive: bool
    why: str


def _pid_alive(pid: int, started: str) -> bool:
    fields = _stat(pid)
    if fields is None:
        if Path("/proc/self/stat").exists():  # /proc works here: the process is gone
            return False
        try:  # no /proc (macOS): whether the PID exists is all one can say
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):  # a zombie: dead, not yet reaped by its parent
        return False
    return not started or started == process_started(pid)


def last_sign_of_life(run: Run) -> float:
    """Unix seconds of the run's newest heartbeat, metric row or start."""
    beat = run.data.tags.get(HEARTBEAT_TAG)
    times = [run.info.start_time / 1000]
    times += [m.timestamp / 1000 for m in getattr(run.data, "_metric_objs", [])]
    if beat:
        with contextlib.suppress(ValueError):
            times.append(float(beat))
    return max(times)


def owner_alive(run: Run, stale_after: float | None = None, now: float | None = None) -> Verdict:
    """Is the process that owns ``run`` still there? (See the module's docstring.)"""
    tags = run.data.tags
    window = stale_after_s() if stale_after is None else stale_after
    owner_host, pid = tags.get(OWNER_HOST_TAG), tags.get(OWNER_PID_TAG)
    if owner_host == host() and pid and pid.isdigit():
        if _pid_alive(int(pid), tags.get(OWNER_STARTED_TAG, "")):
            return Verdict(True, f"pid {pid} on {owner_host} is running")
        return Verdict(False, f"pid {pid} on {owner_host} is gone")
    quiet = (time.time() if now is None else now) - last_sign_of_life(run)
    who = f"pid {pid} on {owner_host}" if owner_host else "an owner it does not name"
    if quiet > window:
        return Verdict(False, f"{who}: no sign of life for {quiet:.0f} s (> {window:g} s)")
    return Verdict(True, f"{who}: alive {quiet:.0f} s ago (window {window:g} s)")


class Heartbeat:
    """One daemon thread per process refreshing the heartbeat tag of the runs it owns.

    ``watch`` the runs a process opens, ``release`` them as they end; a beat writes one tag per
    watched run, from its own thread, once (a store that does not answer is tried again at the
    next beat: a heartbeat never holds training up, nor shares the job's retry backoff).
    ``beats`` and ``seconds`` count what it cost.
    """

    def __init__(self) -> None:
        self._runs: dict[str, MlflowClient] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._every = HEARTBEAT_S
        self._wake = threading.Event()  # set: the interval changed (benchmark.py), beat now
        self.beats = 0
        self.seconds = 0.0

    def watch(self, client: MlflowClient, run_ids: Iterable[str]) -> None:
        every = heartbeat_s()
        if every <= 0:
            return
        with self._lock:
            for run_id in run_ids:
                self._runs[run_id] = client
            if every != self._every:
                self._every = every
                self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="initsweep-heartbeat", daemon=True
                )
                self._thread.start()

    def release(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            for run_id in run_ids:
                self._runs.pop(run_id, None)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._every)
            self._wake.clear()
            with self._lock:
                runs = list(self._runs.items())
            if not runs:
                continue
            tick = time.perf_counter()
            now = str(int(time.time()))
            for run_id, client in runs:
                # MLflow's own call, not the retrying one: no backoff shared with the job; a beat
                # lost is a beat late, nothing more
                with contextlib.suppress(Exception):
                    MlflowClient.set_tag(client, run_id, HEARTBEAT_TAG, now)
            self.seconds += time.perf_counter() - tick
            self.beats += len(runs)


heartbeat = Heartbeat()  # the process's one heartbeat thread
