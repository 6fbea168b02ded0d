"""Load on a shared tracking server: N concurrent writers through the project's own logging path,
then every run, row, param, tag and artifact counted back against what was sent.

    python scripts/server_load.py --tracking-uri http://127.0.0.1:16850            # 16 writers
    python scripts/server_load.py --writers 16 --rows 3000 --batch 1000 --json out.json

Each writer is a process (forked once everything is imported, so 16 of them start in a moment on
2 cores) that does what a job does, without training: ``initsweep.tracking.store.start_run`` (tags,
params), a ``BufferedMlflowLogger`` fed ``--batch`` metric rows at a time (each feed is one
``log_batch`` call, timed: the latency reported), ``client.log_text`` (a config.yaml) and
``client.log_artifacts`` (a diagnostics/ folder of a CSV and two binary files), then
``store.end_run``. All writers start together (a barrier). The parent then reads everything
back with a fresh client and counts what is missing; exit code 1 if anything is.

Prints one line per measure and, with ``--json``, writes them for a test or a doc table
(docs/scaling.md, "Run on a cluster", has the numbers measured here).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# Imported before the fork, once: a writer starts in milliseconds instead of importing MLflow
# (and Lightning, which the logger subclasses) on its own.
from mlflow.entities import Metric

from initsweep.tracking.retries import RetryPolicy
from initsweep.tracking.store import (
    end_run,
    ensure_experiment,
    open_client,
    start_run,
    tracking_uri,
)
from initsweep.training.logger import BufferedMlflowLogger

KEYS = ("train/loss", "train/acc", "val/loss")  # rows are spread over these keys
N_PARAMS, N_TAGS = 60, 20
ARTIFACT_SIZES = {"diagnostics.csv": 40_000, "loss.png": 60_000, "weights.png": 120_000}


def writer(
    index: int, uri: str, experiment_id: str, rows: int, batch: int, barrier: Any, results: Any
) -> None:
    """One job's logging, timed; puts what it sent (or its error) on ``results``."""
    try:
        client = open_client(uri, RetryPolicy())
        tags = {f"load.tag{i}": f"value-{index}-{i}" for i in range(N_TAGS)}
        params = {f"load.param{i:02d}": str(index * 1000 + i) for i in range(N_PARAMS)}
        barrier.wait()
        started = time.perf_counter()
        run_id = start_run(client, experiment_id, f"writer-{index:02d}", tags, params)
        logger = BufferedMlflowLogger(client, run_id, flush_every=batch)
        latencies, written = [], 0
        while written < rows:
            n = min(batch, rows - written)
            now = int(time.time() * 1000)
            chunk = [
                Metric(
                    KEYS[(written + i) % len(KEYS)],
                    float(written + i),
                    now,
                    (written + i) // len(KEYS),
                )
                for i in range(n)
            ]
            tick = time.perf_counter()
            logger.add(chunk)  # a full buffer: one log_batch call
            latencies.append(time.perf_counter() - tick)
            written += n
        logger.flush()  # the last partial batch, if any
        client.log_text(run_id, "".join(f"key{i}: {i}\n" for i in range(200)), "config.yaml")
        with tempfile.TemporaryDirectory() as folder:
            for name, size in ARTIFACT_SIZES.items():
                (Path(folder) / name).write_bytes(os.urandom(size))
            client.log_artifacts(run_id, folder, "diagnostics")
        end_run(client, run_id, "ok")
        results.put(
            {
                "index": index,
                "run_id": run_id,
                "rows": rows,
                "latencies": latencies,
                "seconds": time.perf_counter() - started,
            }
        )
    except BaseException as err:  # reported by the parent: a writer that died lost its run
        results.put({"index": index, "error": f"{type(err).__name__}: {err}"})


def count_back(uri: str, experiment_id: str, sent: list[dict[str, Any]]) -> dict[str, int]:
    """What the store holds, counted against what the writers sent."""
    client = open_client(uri, RetryPolicy())
    runs = {r.info.run_id: r for r in client.search_runs([experiment_id], max_results=1000)}
    lost = {"runs": 0, "rows": 0, "params": 0, "tags": 0, "artifacts": 0, "not_finished": 0}
    for one in sent:
        run = runs.get(one.get("run_id", ""))
        if run is None:
            lost["runs"] += 1
            continue
        lost["not_finished"] += run.info.status != "FINISHED"
        expected_rows = {key: len(range(k, one["rows"], len(KEYS))) for k, key in enumerate(KEYS)}
        for key, n in expected_rows.items():
            history = client.get_metric_history(run.info.run_id, key)
            lost["rows"] += n - len({(m.step, m.value) for m in history})
        lost["params"] += N_PARAMS - sum(k.startswith("load.param") for k in run.data.params)
        lost["tags"] += N_TAGS - sum(k.startswith("load.tag") for k in run.data.tags)
        stored = {
            a.path: a.file_size for a in client.list_artifacts(run.info.run_id, "diagnostics")
        }
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        lost["artifacts"] += sum(
            stored.get(f"diagnostics/{name}") != size for name, size in ARTIFACT_SIZES.items()
        )
        lost["artifacts"] += "config.yaml" not in top
    return lost


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank): no interpolation between measured calls."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri", default=None, help="the server (default: $MLFLOW_TRACKING_URI)"
    )
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--rows", type=int, default=3000, help="metric rows per writer")
    parser.add_argument(
        "--batch",
        type=int,
        default=1000,
        help="rows per log_batch call (tracking.flush_every; MLflow's max 1000)",
    )
    parser.add_argument("--experiment", default=None, help="default: load-<random>")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    uri = args.tracking_uri or tracking_uri()
    client = open_client(uri, RetryPolicy())
    experiment = args.experiment or f"load-{uuid.uuid4().hex[:8]}"
    experiment_id = ensure_experiment(client, experiment, None)
    context = mp.get_context("fork")
    barrier, results = context.Barrier(args.writers), context.Queue()
    procs = [
        context.Process(
            target=writer, args=(i, uri, experiment_id, args.rows, args.batch, barrier, results)
        )
        for i in range(args.writers)
    ]
    tick = time.perf_counter()
    for proc in procs:
        proc.start()
    sent = [results.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - tick
    for proc in procs:
        proc.join()
    errors = [s["error"] for s in sent if "error" in s]
    lost = count_back(uri, experiment_id, sent)
    latencies = [t for s in sent for t in s.get("latencies", [])]
    out = {
        "uri": uri,
        "experiment": experiment,
        "writers": args.writers,
        "rows_per_writer": args.rows,
        "batch": args.batch,
        "rows_sent": sum(s.get("rows", 0) for s in sent),
        "writer_errors": errors,
        "lost": lost,
        "wall_s": round(wall, 1),
        "log_batch_calls": len(latencies),
        "log_batch_p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
        "log_batch_p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
        "log_batch_max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "writer_s_median": round(statistics.median(s["seconds"] for s in sent if "seconds" in s), 1)
        if latencies
        else None,
    }
    for key, value in out.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 1 if errors or any(lost.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
