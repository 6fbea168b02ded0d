"""What a job and a sweep print: one line per job, one-line errors, quiet libraries.

Torch-free and a leaf of ``launch``: the entry point (``launch.entry``), the sweep callback and the
job use it before anything heavy is imported.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from initsweep.diagnostics.findings import console_codes
from initsweep.vocab import TEST_ACC, TEST_LOSS

# Known, harmless third-party warnings that would break the one-line-per-job console. Each is
# matched by its message (never a blanket category filter: a new deprecation must stay visible).
QUIET_WARNINGS = (
    ".*does not have many workers.*",  # our loaders slice preloaded tensors: no workers needed
    ".*GPU available but not used.*",
    ".*smaller than the logging interval.*",  # digits has fewer batches than log_every_n_steps
    ".*Checkpoint directory.*",
    ".*overridden `transfer_batch_to_device`.*",  # ours skips the collection walk on CPU
    ".*`isinstance\\(treespec, LeafSpec\\)`.*",  # torch.utils._pytree inside Lightning
    ".*LeafSpec.*is deprecated.*",
    ".*Precision.*is not supported.*",
    # On a machine with SLURM installed (a login node), every job outside srun would print it;
    # inside a SLURM task Lightning detects the cluster itself.
    ".*The `srun` command is available on your system but is not used.*",
)


def quiet_third_parties() -> None:
    """Keep the console to one line per job: silence known, harmless third-party chatter."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def result_line(status: Mapping[str, Any], seconds: float) -> str:
    """``he-x1-s0: test/acc=0.9722 test/loss=0.1181 [ok, healthy] 1.2s``: a job's run that
    ended, with its diagnosis's codes when it has one (``initsweep.diagnostics.findings``)."""
    return (
        f"{status['name']}: {TEST_ACC}={status[TEST_ACC]:.4f} "
        f"{TEST_LOSS}={status[TEST_LOSS]:.4f} "
        f"[{console_codes(status['outcome'], status.get('diagnosis'))}] {seconds:.1f}s"
    )


def print_error(message: str) -> None:
    """A one-line error on stderr, as every bad input gets."""
    print(f"error: {message}", file=sys.stderr, flush=True)
