"""Progress where a person waits: a bar under the sweep's per-job lines, a spinner while a report
reads and computes. Only on an interactive terminal; elsewhere (pipes, files, CI, the tests) the
output is the plain lines it always was, byte for byte.

tqdm draws it (Lightning depends on it, so it is there wherever a job can run; without it, plain
lines). The bar goes to stderr; while it is shown, lines printed to stdout are written above it
(``tqdm.write``), so a job's result line never tears the bar.

Torch-free: the launching process uses it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

PROGRESS_ENV = "INITSWEEP_PROGRESS"  # "0": never a bar, "1": a bar even when not a terminal


def interactive(stream: TextIO | None = None) -> bool:
    """Whether a person watches: stdout and stderr are terminals, not CI, not a dumb terminal;
    ``INITSWEEP_PROGRESS`` (0 / 1) decides over all of that."""
    forced = os.environ.get(PROGRESS_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    streams = [stream] if stream is not None else [sys.stdout, sys.stderr]
    return (
        all(getattr(s, "isatty", lambda: False)() for s in streams)
        and not os.environ.get("CI")
        and os.environ.get("TERM") != "dumb"
    )


class _LinesAbove:
    """A stdout that writes each complete line above the bar."""

    def __init__(self, bar: Any, real: TextIO) -> None:
        self.bar, self.real, self.pending = bar, real, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.bar.write(line, file=self.real)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class SweepProgress:
    """``jobs done / total`` with elapsed and remaining time, under the jobs' lines. Inactive (no
    output at all) when not interactive, when tqdm is missing, or when the total is unknown."""

    def __init__(self, total: int | None, label: str = "sweep") -> None:
        self.bar: Any = None
        self.stdout: TextIO | None = None
        if not total or not interactive():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            total=total,
            desc=label,
            unit="job",
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
            mininterval=0,
        )  # a job ends every few s at most
        self.stdout, sys.stdout = sys.stdout, _LinesAbove(self.bar, sys.stdout)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Remove the bar (it leaves no line behind) and give stdout back."""
        if self.bar is None:
            return
        if self.stdout is not None:
            pending = getattr(sys.stdout, "pending", "")
            sys.stdout = self.stdout
            if pending:
                sys.stdout.write(pending)
        self.bar.close()
        self.bar = None


@contextmanager
def spinner(label: str) -> Iterator[None]:
    """``label`` with the seconds it has taken, on stderr, while the block runs; nothing when not
    interactive. The line is cleared at the end."""
    if not interactive(sys.stderr):
        yield
        return
    done = threading.Event()
    start = time.monotonic()

    def spin() -> None:
        frames = "|/-\\"
        i = 0
        while not done.wait(0.2):
            sys.stderr.write(f"\r{frames[i % 4]} {label} {time.monotonic() - start:.0f}s")
            sys.stderr.flush()
            i += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def sweep_size(config: Any) -> int | None:
    """How many jobs the basic sweeper launches for this multirun (``hydra.sweeper.params`` and
    the command line, every combination); None when it cannot be told here (another sweeper, a
    sweep over a glob of choices)."""
    sweeper = config.hydra.sweeper
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        return None
    try:
        from initsweep.launch.jobs import job_overrides

        return len(job_overrides(config, list(config.hydra.overrides.task), None))
    except Exception:  # e.g. a glob sweep needs the config loader: no total, no bar
        return None


def jobs_report_here(config: Any) -> bool:
    """Whether each job's end is seen in this process (Hydra's basic launcher runs the jobs in
    it); the other launchers' jobs end in their workers, which cannot move a bar here."""
    return "BasicLauncher" in str(config.hydra.launcher.get("_target_", ""))
