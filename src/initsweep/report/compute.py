"""The report's numbers: load a selection of runs and compute every statistic, no files written.

``build`` returns a ``Report``; ``render`` turns it into text, tables and figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from mlflow.tracking import MlflowClient

from initsweep.report.pairs import pairwise
from initsweep.report.select import ReportInputError, Selection
from initsweep.report.stats import group_summary, is_accuracy
from initsweep.report.table import RunTable, load, resolve_param
from initsweep.report.tuning import TuningResult, analyse
from initsweep.report.variance_split import variance_split
from initsweep.vocab import PRIMARY_METRIC


@dataclass
class Report:
    """Everything the report shows, computed from one selection of runs."""

    selection: Selection
    table: RunTable
    seed: int
    summary: pd.DataFrame
    pairs: pd.DataFrame
    variance: pd.DataFrame
    tune_key: str | None = None
    tuning: list[TuningResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    all_pairs: bool = False  # every pair compared (--all-pairs), else ``neighbour_pairs``

    @property
    def accuracy(self) -> bool:
        return is_accuracy(self.table)


def logged_metrics(table: RunTable) -> list[str]:
    """Metric names in the table, ``test/`` and ``val/`` first (for error messages)."""
    names = [c.removeprefix("metrics.") for c in table.frame.columns if c.startswith("metrics.")]
    return sorted(
        names,
        key=lambda k: (
            not k.startswith("test/"),
            not k.startswith("val/"),
            k.startswith("diag/"),
            k,
        ),
    )


def build(
    client: MlflowClient,
    selection: Selection,
    metric: str = PRIMARY_METRIC,
    tune: str | None = None,
    n_test: int | None = None,
    seed: int = 0,
    select_metric: str | None = None,
    all_pairs: bool = False,
) -> Report:
    """Load the runs and compute every statistic (no files written).

    ``select_metric``: what the tuning trap chooses on (default: the ``val/`` counterpart of
    ``metric``, falling back to ``metric`` with a note); ``all_pairs``: compare every pair of
    groups instead of the design's neighbours.
    """
    table = load(client, selection, metric, n_test)
    tune_key = resolve_param(table, tune) if tune else None
    if select_metric and f"metrics.{select_metric}" not in table.frame:
        names = logged_metrics(table)
        raise ReportInputError(
            "--select-metric",
            f"{select_metric!r}: not logged by these runs; "
            f"choose from {', '.join(names[:10]) or '(no metrics)'}"
            + (f" (+{len(names) - 10} more)" if len(names) > 10 else ""),
        )
    summary = group_summary(table, seed)
    report = Report(
        selection,
        table,
        seed,
        summary,
        pairwise(table, seed, every_pair=all_pairs),
        variance_split(table, seed),
        tune_key,
        notes=list(table.notes),
        all_pairs=all_pairs,
    )
    if tune_key:
        report.tuning, notes = analyse(table, tune_key, seed, select_metric)
        report.notes += notes
    if report.accuracy and summary["n_test"].isna().all():
        report.notes.append(
            "test-set noise floor not shown: no run logged `n_test` (tag, param "
            "or metric); pass --n-test N"
        )
    return report
