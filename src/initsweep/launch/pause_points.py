"""Named points where a test can hold a real process, to kill or interrupt it exactly there.

    INITSWEEP_PAUSE_AT=checkpoint:3 INITSWEEP_PAUSE_FILE=/tmp/x python train.py -m ...

The third time the process reaches ``pause("checkpoint")`` (counted per name, over the whole
process) it writes ``/tmp/x`` (its pid and the point) and waits until ``/tmp/x.go`` exists; the
test meanwhile sends SIGKILL or SIGINT. Without the environment variables a pause point is a
dictionary lookup. Points: ``checkpoint`` (an epoch's checkpoint saved and its rows written),
``report`` (a sweep's jobs are over, its report not yet made).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from initsweep.vocab import PAUSE_AT_ENV, PAUSE_FILE_ENV

_reached: dict[str, int] = {}
WAIT_LIMIT_S = 600.0  # a test that never releases the process does not hang it for ever


def pause(point: str) -> None:
    """Hold the process here when the environment asks for this point (see the docstring)."""
    wanted = os.environ.get(PAUSE_AT_ENV)
    if not wanted:
        return
    _reached[point] = _reached.get(point, 0) + 1
    name, _, count = wanted.partition(":")
    if name != point or _reached[point] != int(count or 1):
        return
    marker = Path(os.environ[PAUSE_FILE_ENV])
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{os.getpid()} {point}:{_reached[point]}\n")
    tmp.replace(marker)
    release = marker.with_name(marker.name + ".go")
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
