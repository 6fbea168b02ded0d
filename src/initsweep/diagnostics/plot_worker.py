"""A worker process that draws runs' plots, so a sweep's next job trains meanwhile.

    python -m initsweep.diagnostics.plot_worker     # started by PlotWorker; not a user command

The protocol is one line per job on the child's stdin and one pickle per answer on its stdout:
the parent pickles the job's ``diagnostics.plots.PlotInputs`` into ``<folder>/plot_inputs.pkl``
and sends the folder (a file, not the pipe: a pipe holds 64 KiB, and the parent must never wait
for the child to read); the child draws the PNGs into that folder and answers ``None``, or the
traceback text when drawing failed, one answer per job in order. The
child imports only numpy and matplotlib (this module imports nothing else at the top), so it
starts in under a second and never touches torch, MLflow or the parent's threads.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

INPUTS_FILE = "plot_inputs.pkl"


def serve() -> None:
    """The child's loop: draw each job sent on stdin, answer on stdout, stop at end of input."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answer stream
    os.nice(19)  # the training job keeps its cores: plots take what it leaves idle
    # Ctrl-C reaches the whole foreground process group: the parent decides (it waits for the
    # plots already sent, or on a second Ctrl-C hands them to the next launch and kills us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # matplotlib only in the worker process, never in the job's
    from initsweep.diagnostics import plots as run_plots

    for line in requests:
        folder = Path(line.decode().rstrip("\n"))
        try:
            inputs_file = folder / INPUTS_FILE
            inputs = pickle.loads(inputs_file.read_bytes())
            run_plots.draw_all(inputs, folder)
            inputs_file.unlink()  # the folder is uploaded as the run's artifacts afterwards; kept
            # until the plots are drawn, so a run whose process dies meanwhile can be completed
            answer = None
        except Exception:
            answer = traceback.format_exc()
        pickle.dump(answer, answers)
        answers.flush()


class PlotWorkerDied(RuntimeError):
    """The worker process is gone; its unanswered jobs must be drawn elsewhere."""


class PlotWorker:
    """The parent's handle on one worker process: ``submit`` jobs, then ``answer`` each in order."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(
                filter(None, (package_root, os.environ.get("PYTHONPATH")))
            ),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "initsweep.diagnostics.plot_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # both PIPEs
        self.requests: IO[bytes] = self.process.stdin
        self.answers: IO[bytes] = self.process.stdout
        self.sent = self.answered = 0

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def outstanding(self) -> int:
        """Jobs sent and not yet answered."""
        return self.sent - self.answered

    def submit(self, inputs: Any, folder: Path) -> int:
        """Queue one run's plots; returns its ticket (answers come back in ticket order)."""
        (folder / INPUTS_FILE).write_bytes(pickle.dumps(inputs))
        try:
            self.requests.write(f"{folder}\n".encode())
            self.requests.flush()
        except (BrokenPipeError, OSError) as err:
            raise PlotWorkerDied(f"plot worker gone: {err}") from None
        self.sent += 1
        return self.sent - 1

    def answer(self, ticket: int) -> str | None:
        """Wait for job ``ticket``: None when its PNGs are written, else the worker's traceback."""
        if ticket != self.answered:
            raise ValueError(
                f"answers come in order: expected ticket {self.answered}, got {ticket}"
            )
        try:
            answer = pickle.load(self.answers)
        except (EOFError, OSError, pickle.UnpicklingError) as err:
            raise PlotWorkerDied(
                f"plot worker gone (exit code {self.process.poll()}): {type(err).__name__}"
            ) from None
        self.answered += 1
        return answer

    def close(self) -> None:
        """End of input: the worker finishes what it was sent and exits."""
        try:
            self.requests.close()
            self.process.wait(timeout=30)
        except Exception:
            self.process.kill()


if __name__ == "__main__":
    serve()
