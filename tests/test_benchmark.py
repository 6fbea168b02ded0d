"""scripts/benchmark.py runs end to end on the bundled digits and writes every measure it prints.

Only that it works and what it reports are tested here; how fast anything is stays a benchmark
figure (docs/performance.md; README's "What it costs"), never a timed assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

BENCHMARK = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--workload", "digits"]
# Each test runs the benchmark script: whole runs, timed against plain loops.
pytestmark = pytest.mark.slow


def test_benchmark_reports_ratios_shares_and_seed_throughput(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [*BENCHMARK, "--repeats", "1", "--seeds", "2", "--skip-sweep", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["workload"] == "digits" and len(result["rows"]) == 1
    for key in (
        "plain_loop_s",
        "initsweep_run_s",
        "ratio_run_to_plain",
        "ratio_fit_to_plain",
        "ratio_lightning_alone_to_plain",
        "ratio_run_to_lightning_alone",
        "ratio_peer_to_plain",
        "ratio_run_to_peer",
        "mlflow_share",
        "diagnostics_share",
        "artifacts_share",
        "diagnosis_share",
        "diagnosis_ms",
    ):
        assert 0 < result[key]["min"] <= result[key]["median"] <= result[key]["max"], key
        assert key in proc.stdout
    for key in ("mlflow_share", "diagnostics_share", "artifacts_share", "diagnosis_share"):
        assert result[key]["median"] < 1, key
    for seeds in (result["vectorized_seeds"], result["vectorized_seeds_no_diagnostics"]):
        assert seeds["k"] == 2
        assert seeds["batched_seeds_per_s"] == pytest.approx(2 / seeds["batched_s"])
        assert seeds["speedup"] == pytest.approx(seeds["sequential_s"] / seeds["batched_s"])


def test_benchmark_times_lightnings_hooks_in_a_run_and_in_lightning_alone(tmp_path):
    out = tmp_path / "hooks.json"
    proc = subprocess.run(
        [*BENCHMARK, "--hooks", "--threads", "1", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    hooks = json.loads(out.read_text())
    run, alone = hooks["initsweep run"], hooks["lightning alone"]
    assert run["[Callback]DiagnosticsCallback.on_train_batch_end"]["calls"] > 0
    assert run["save_checkpoint"]["calls"] == 10  # digits: one per epoch (PreemptionCheckpoint)
    assert not any(name.startswith("[Callback]") for name in alone)  # a bare Trainer
    assert run["run_training_batch"]["calls"] == alone["run_training_batch"]["calls"]
    assert "Lightning actions by inclusive wall time" in proc.stdout


def test_benchmark_splits_the_demo_sweeps_wall_time():
    """The split's clocks are set in the sweep's own process (benchmark.SWEEP_DRIVER)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    split = benchmark.demo_sweep_wall()
    for key in ("imports_s", "job_imports_s", "store_s", "jobs_s", "sweep_end_s"):
        assert 0 < split[key] < split["wall_s"], key
    assert split["rest_s"] == pytest.approx(
        split["wall_s"] - sum(v for k, v in split.items() if k not in ("wall_s", "rest_s"))
    )


def test_benchmark_profiles_one_run(tmp_path):
    out = tmp_path / "run.txt"
    proc = subprocess.run(
        [*BENCHMARK, "--profile", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "initsweep_run" in text and "Trainer.fit" in text


def test_benchmark_times_a_cnn_against_its_own_plain_loop(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            *BENCHMARK,
            "--model",
            "cnn",
            "--repeats",
            "1",
            "--seeds",
            "2",
            "--skip-sweep",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["model"] == "cnn" and result["dataset"] == "DigitsDataModule"
    assert result["ratio_run_to_plain"]["median"] > 0
    assert result["vectorized_seeds"]["k"] == 2
