"""Ctrl-C: a sweep that stops cleanly, leaves nothing RUNNING, exits 130 and resumes on relaunch.

A terminal sends SIGINT to the whole foreground process group. During a job's training
(``training.preemption``) it is recorded and the job stops after the current step; its guard
marks the runs KILLED with ``outcome=preempted`` (Ctrl-C ignored for those few store calls:
``shield``) and ``interrupted`` prints one line and raises ``KeyboardInterrupt``, which stops the
sweep. ``exit_on_interrupt`` (around the entry point) then draws the plots already queued (the
plot worker ignores SIGINT), closes the sweep's parent run KILLED and exits 130. A second Ctrl-C
stops at once: during training it ends the step now; while plots are awaited they are handed to
the next launch (``diagnostics.pending.hand_over``). Outside a job (between jobs, in the report)
Python's own KeyboardInterrupt takes the same exit.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C

_said = False  # the one line has been printed


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def shield() -> None:
    """Ctrl-C ignored from here until ``interrupted``: the runs are being marked (milliseconds),
    and a second Ctrl-C must not leave one of them RUNNING."""
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted(names: Sequence[str], step: int | None, checkpoint: Path) -> NoReturn:
    """One line for the runs a Ctrl-C stopped, then ``KeyboardInterrupt`` to stop the sweep."""
    global _said
    runs = ", ".join(names) or "the job"
    where = (
        f"saved at step {step}; relaunch to resume"
        if step is not None and checkpoint.exists()
        else "before its first checkpoint; relaunch to start it again"
    )
    print(f"interrupted: {runs} {where}", file=sys.stderr, flush=True)
    _said = True
    if _main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    raise KeyboardInterrupt


def stop_if_interrupted(signalled: signal.Signals | None) -> None:
    """A Ctrl-C that came after a job's training: the job ended its runs; the sweep stops now."""
    global _said
    if signalled == signal.SIGINT:
        print(
            "interrupted: after the job's training ended (its runs are ended); relaunch to go on",
            file=sys.stderr,
            flush=True,
        )
        _said = True
        raise KeyboardInterrupt


def on_interrupt() -> int:
    """What a Ctrl-C leaves to do (see the module's docstring); returns the exit code."""
    # MLflow and the plot hand-over only once a Ctrl-C arrives (the handler is installed early)
    from initsweep.diagnostics.pending import complete_pending, hand_over
    from initsweep.launch.sweep import abort_sweep
    from initsweep.tracking.retries import StoreUnavailable

    if not _said:
        print("interrupted; relaunch the same command to go on", file=sys.stderr, flush=True)
    if _main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # the plots already queued: the worker is still drawing them (a second Ctrl-C: not waiting)
    with contextlib.suppress(KeyboardInterrupt, StoreUnavailable):
        complete_pending()
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a few store calls: nothing left to wait on
    handed = hand_over()
    if handed:
        print(
            f"interrupted: plots of {', '.join(handed)} handed to the next launch",
            file=sys.stderr,
            flush=True,
        )
    abort_sweep("interrupted (Ctrl-C); relaunch the same command to resume", status="KILLED")
    return INTERRUPTED_EXIT


@contextmanager
def exit_on_interrupt() -> Iterator[None]:
    """Around an entry point: a Ctrl-C ends as ``on_interrupt`` says, exit code 130, no
    traceback."""
    try:
        yield
    except KeyboardInterrupt:
        sys.exit(on_interrupt())
