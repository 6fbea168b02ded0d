"""How long ``initsweep report`` takes on a large sweep: 1,000 runs in 100 groups.

    python scripts/benchmark_report.py                       # store in a temp folder
    python scripts/benchmark_report.py --store /tmp/bench-report --repeats 3

Writes a synthetic sweep into a sqlite MLflow store (once: reused when ``--store`` already has
it): 10 learning rates x 10 init schemes x 10 seeds, with the tags and params real jobs log, and
accuracy-like metrics (``test/acc``, ``val/acc``). Then times the report's computation (``build``:
loading the runs and every statistic; no files, no plots), by default and with every pair
(``all_pairs``), and prints how many pairs each compared and the time per pair. It runs against
whichever ``initsweep`` is first on the path, so the same store times two versions of the code
(older versions without ``all_pairs`` time their default only).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

EXPERIMENT = "bench_report"
LRS = ("0.01", "0.02", "0.05", "0.1", "0.2", "0.3", "0.5", "0.7", "1.0", "2.0")
SCHEMES = (
    "he",
    "xavier",
    "orthogonal",
    "lsuv",
    "normal",
    "uniform",
    "torch_default",
    "trunc_normal",
    "sparse",
    "kaiming_uniform",
)
SEEDS = range(10)


def make_store(root: Path) -> str:
    """The synthetic sweep (skipped when the store has it); returns the tracking URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(EXPERIMENT):
        return uri
    exp = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(
        exp, run_name="sweep-bench", tags={"sweep_id": "bench", "initsweep.role": "sweep"}
    ).info.run_id
    rng = np.random.default_rng(0)
    for i, lr in enumerate(LRS):
        for j, scheme in enumerate(SCHEMES):
            for seed in SEEDS:
                acc = float(np.clip(0.85 + 0.01 * i - 0.002 * j + rng.normal(0, 0.02), 0, 1))
                params = {
                    "optim.lr": lr,
                    "init.scheme": scheme,
                    "seed": str(seed),
                    "init_seed": str(seed),
                    "data_seed": str(seed),
                    "optim.name": "sgd",
                }
                tags = {
                    "mlflow.parentRunId": parent,
                    "sweep_id": "bench",
                    "outcome": "ok",
                    "seed": str(seed),
                    "init_seed": str(seed),
                    "data_seed": str(seed),
                    "n_test": "360",
                }
                run = client.create_run(exp, run_name=f"{scheme}-lr{lr}-s{seed}", tags=tags)
                client.log_batch(
                    run.info.run_id,
                    params=[Param(k, v) for k, v in params.items()],
                    metrics=[
                        Metric("test/acc", acc, 0, 0),
                        Metric("val/acc", acc + rng.normal(0, 0.01), 0, 0),
                    ],
                )
                client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    client.set_terminated(parent, "FINISHED")
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="folder of the sqlite store (default: temp)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from initsweep.report.compute import build
    from initsweep.report.select import select

    root = args.store or Path(tempfile.mkdtemp(prefix="bench-report-"))
    root.mkdir(parents=True, exist_ok=True)
    uri = make_store(root)
    client = MlflowClient(tracking_uri=uri)
    selection = select(client, EXPERIMENT, sweep="bench")
    variants = {"default": {}}
    if "all_pairs" in inspect.signature(build).parameters:
        variants["all pairs"] = {"all_pairs": True}
    from initsweep.report import pairs as stats
    from initsweep.report.table import load

    table = load(client, selection)
    for name, options in variants.items():
        builds, loads, compares = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            report = build(client, selection, **options)
            builds.append(time.perf_counter() - start)
            start = time.perf_counter()
            load(client, selection)
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            stats.pairwise(table, 0, **({"every_pair": True} if options else {}))
            compares.append(time.perf_counter() - start)
        pairs = len(report.pairs)
        print(
            f"{name}: {len(report.table.frame)} runs, {len(report.summary)} groups, {pairs} "
            f"pairs: build {min(builds):.2f} s (loading the runs {min(loads):.2f} s, the "
            f"pairs {min(compares):.2f} s = {1000 * min(compares) / max(pairs, 1):.2f} ms per "
            f"pair); best of {args.repeats}, median build {statistics.median(builds):.2f} s"
        )
    print(f"store: {uri}")


if __name__ == "__main__":
    main()
