"""Accuracies as a reader reads them, beside the exact value: ``0.9630 = 347/360``.

MLflow's runs table shows a metric with every digit of its float (``0.9629629629629629`` for
347/360) and has no column format. The metric stays exact: the report, the race and the charts
read it, and a ratio of counts is the honest value. Beside it each run gets a tag,
``test/acc_rounded``, with the report's precision (4 decimals, ``report.render.fmt``) and the
counts it came from, so a reviewer who adds the tag's column reads four digits and can check
them. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlflow.tracking import MlflowClient

ROUNDED_SUFFIX = "_rounded"
ROUNDED_KEYS = ("test/acc",)  # the accuracy a comparison is about (the UI's primary metric)
DIGITS = 4  # as the report prints it


def rounded(value: float, n: int | None) -> str:
    """``0.9630 = 347/360``; without ``n`` (or a value that is no ratio of it), the rounding."""
    text = f"{value:.{DIGITS}f}"
    if n and math.isfinite(value):
        correct = round(value * n)
        if correct / n == value:  # exact: correct / n is how the accuracy was computed
            text += f" = {correct}/{n}"
    return text


def rounded_tags(metrics: Mapping[str, Any], n: int | None) -> dict[str, str]:
    """The rounded tags of a run's final metrics (those in ``ROUNDED_KEYS`` it has)."""
    return {
        f"{key}{ROUNDED_SUFFIX}": rounded(float(metrics[key]), n)
        for key in ROUNDED_KEYS
        if isinstance(metrics.get(key), (int, float))
    }


def log_rounded(
    client: MlflowClient, run_id: str, metrics: Mapping[str, Any], n: int | None
) -> None:
    """Set the run's rounded tags (nothing when it has none of the metrics)."""
    for key, value in rounded_tags(metrics, n).items():
        client.set_tag(run_id, key, value)
