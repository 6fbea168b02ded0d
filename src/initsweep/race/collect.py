"""A round's results, read back from what its jobs reported: their status files.

Every job writes ``initsweep_job.json`` into its Hydra output folder (``launch.status_files``),
whatever launcher ran it (in this process, joblib workers, SLURM tasks): one status per run with
its seed, outcome, run id and final val/* and test/* metrics. A run found FINISHED in the store
is skipped by the job and its status carries the stored run's metrics, so a rerun of a stopped
race reads the same numbers without training. Torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initsweep.launch.status_files import status_file
from initsweep.vocab import Outcome

USABLE = (Outcome.OK, Outcome.SKIPPED, Outcome.DIVERGED)  # outcomes whose metrics are the run's own


@dataclass
class RoundResults:
    """The selection and score metrics per (candidate, seed), and why any are missing."""

    values: dict[tuple[int, int], float | None] = field(default_factory=dict)
    scores: dict[tuple[int, int], float | None] = field(default_factory=dict)
    problems: dict[tuple[int, int], str] = field(default_factory=dict)
    run_ids: dict[tuple[int, int], str] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)


def job_output_dir(job_return: Any) -> Path | None:
    """The Hydra output folder of a launched job (from its JobReturn), None if unknown."""
    hydra_cfg = getattr(job_return, "hydra_cfg", None)
    try:
        return Path(str(hydra_cfg.hydra.runtime.output_dir))  # type: ignore[union-attr]
    except AttributeError:
        return None


def read_statuses(output_dir: Path | None) -> list[dict[str, Any]]:
    path = status_file(output_dir)
    if path is None or not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def collect(
    jobs: Sequence[tuple[int, tuple[int, ...], Any]],
    metric: str,
    score_metric: str,
    results: RoundResults | None = None,
) -> RoundResults:
    """Map each job's statuses to its (candidate, seed)s: ``jobs`` are (candidate, seeds,
    JobReturn) in launch order. A seed with no usable status gets a problem instead of a value."""
    out = results or RoundResults()
    for index, seeds, job_return in jobs:
        statuses = {s.get("seed"): s for s in read_statuses(job_output_dir(job_return))}
        lone_error = next(
            (s.get("error") for s in statuses.values() if s.get("seed") is None and s.get("error")),
            None,
        )  # a config error: one status, no seed
        for seed in seeds:
            key = (index, seed)
            status = statuses.get(seed)
            outcome = status.get("outcome", "unknown") if status else "no status"
            out.outcomes[outcome] = out.outcomes.get(outcome, 0) + 1
            if status is None:
                out.values[key] = None
                out.problems[key] = lone_error or job_error(job_return) or "the job wrote no status"
                continue
            if status.get("run_id"):
                out.run_ids[key] = str(status["run_id"])
            out.scores[key] = number(status.get(score_metric))
            value = number(status.get(metric)) if outcome in USABLE else None
            out.values[key] = value
            if value is None:
                why = status.get("error") or (
                    f"{outcome}: {metric} missing or not finite" if outcome in USABLE else outcome
                )
                out.problems[key] = str(why).splitlines()[0][:300]
    return out


def number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def job_error(job_return: Any) -> str | None:
    """The exception a job ended with, if Hydra recorded one (never raised here)."""
    value = getattr(job_return, "_return_value", None)
    return f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else None
