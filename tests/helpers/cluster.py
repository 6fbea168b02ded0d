"""Session fixtures for the cluster tests: the real SLURM cluster and the PostgreSQL-backed mlflow
server of ``scripts/local_cluster.sh``, started once per test session when a test asks for them.

Policy (issue 12): in CI (``CI=true``) a cluster that cannot start FAILS the tests that need it,
with the script's reason; on a machine where the script cannot run (not root, no apt-get) they
SKIP with a one-line reason. A part that already ran before the session (someone ran
``scripts/local_cluster.sh start``) is used and left running; a part the session started is
stopped at its end.

Registered in tests/conftest.py; used by tests/test_cluster.py, tests/test_server_faults.py and
tests/test_secrets.py, whose tests carry the ``cluster`` marker (`make test-full`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local_cluster.sh"
STATE = Path(os.environ.get("INITSWEEP_CLUSTER_DIR", "/tmp/initsweep-cluster"))
# From nothing: apt-get install (~25 s here) + daemons (~10 s) + a cold mlflow server (~25 s).
START_TIMEOUT_S = 900
DAEMONS = {
    "slurm": ("munged", "mariadb", "slurmdbd", "slurmctld", "slurmd"),
    "server": ("postgres", "mlflow"),
}


@dataclass
class LocalCluster:
    """What a test needs from the script's ``export`` lines."""

    env: dict[str, str] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        return self.env["INITSWEEP_PARTITION"]

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def secret(self, name: str) -> str:
        """A password the script generated (secrets/ is root-only)."""
        return (STATE / "secrets" / name).read_text().strip()


def _unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere; ``reason`` is one line."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"cluster tests must run in CI, but: {reason}", pytrace=False)
    pytest.skip(reason)


def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "VENV": sys.prefix}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def part_running(part: str) -> bool:
    """All of the part's daemons run (``status`` prints one line per daemon)."""
    lines = _script("status").stdout.splitlines()
    running = {line.split()[0] for line in lines if " running (pid " in line}
    return set(DAEMONS[part]) <= running


def parse_exports(text: str) -> dict[str, str]:
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in text.splitlines()
        if line.startswith("export ")
    )


def _start(part: str) -> tuple[LocalCluster, bool]:
    """Start ``part`` (slurm or server); returns (cluster, whether this session started it)."""
    if shutil.which("bash") is None or sys.platform != "linux":
        _unavailable(
            f"the local cluster needs Linux and bash (scripts/local_cluster.sh), not {sys.platform}"
        )
    was_running = part_running(part)
    if not was_running:
        if os.geteuid() != 0:
            _unavailable(
                f"the local {part} needs root to install and start "
                f"(sudo scripts/local_cluster.sh start {part}), and none runs"
            )
        if shutil.which("apt-get") is None:
            _unavailable("the local cluster installs Debian packages: no apt-get here")
    tick = time.monotonic()
    proc = _script("start", part, timeout=START_TIMEOUT_S)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(
            f"scripts/local_cluster.sh start {part} failed: {reason}\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    print(
        f"\nlocal {part}: {'already running' if was_running else 'started'} in "
        f"{time.monotonic() - tick:.0f}s",
        file=sys.stderr,
    )
    return LocalCluster(parse_exports(proc.stdout)), not was_running


def _stop(part: str) -> None:
    proc = _script("stop", part, timeout=300)
    assert proc.returncode == 0, proc.stderr


def _session_part(part: str) -> Iterator[LocalCluster]:
    """A part already running is used and left running; one this session started is stopped."""
    cluster, started = _start(part)
    yield cluster
    if started:
        _stop(part)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalCluster]:
    """munged, MariaDB, slurmdbd, slurmctld, slurmd: one node, partition $INITSWEEP_PARTITION."""
    yield from _session_part("slurm")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalCluster]:
    """PostgreSQL (password auth on loopback) and an ``mlflow server`` on it."""
    yield from _session_part("server")
