"""CPU, memory, disk, network (and GPU) use of a job, as MLflow's system metrics on its runs.

``tracking.system_metrics_interval_s``: seconds between samples (``null`` or 0: off). Each run of
the job gets MLflow's own ``SystemMetricsMonitor`` (the ``system/*`` metrics of the UI's "System
metrics" tab: ``cpu_utilization_percentage``, ``system_memory_usage_megabytes``, ... and, with
``nvidia-ml-py`` installed, ``gpu_*`` per GPU), started when the runs are open and stopped when
the fit is over. ``MLFLOW_SYSTEM_METRICS_NODE_ID`` (MLflow's variable) names the node in the
metric names, for jobs of one sweep on several machines.

A monitor publishes one sample per interval: a run shorter than the interval records none, so the
default interval is short. What it costs (a store read and a batched write per interval, on a
thread of its own) is measured by ``scripts/benchmark.py --ecosystem`` (docs/performance.md).
A fit that raises leaves its monitors running: each stops by itself within one interval, once
its run is no longer RUNNING.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any


def start_system_metrics(
    tracking_cfg: Mapping[str, Any] | None, uri: str, run_ids: Sequence[str]
) -> list[Any]:
    """Start a monitor per run when ``tracking.system_metrics_interval_s`` is set; returns them
    (``stop_system_metrics`` ends them)."""
    interval = (tracking_cfg or {}).get("system_metrics_interval_s")
    if not interval or not run_ids:
        return []
    # MLflow's own module; psutil comes with MLflow, GPU metrics need nvidia-ml-py
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # "Started monitoring system metrics." on every job would break the one-line-per-job console
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitors = [
        SystemMetricsMonitor(run_id, sampling_interval=float(interval), tracking_uri=uri)
        for run_id in run_ids
    ]
    for monitor in monitors:
        monitor.start()
    return monitors


def stop_system_metrics(monitors: Sequence[Any]) -> None:
    """Stop the monitors and write what they hold (before the runs end: a monitor writes only to
    a RUNNING run)."""
    for monitor in monitors:
        monitor.finish()
