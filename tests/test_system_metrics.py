"""``tracking.system_metrics_interval_s``: MLflow's system metrics on a job's run; off: none."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from tests.conftest import compose_config, runs_of

# long enough for the monitor to sample at 0.1 s even on a busy machine (2 epochs was not, once)
SHRINK = ["trainer.max_epochs=8", "diagnostics.enabled=false"]


def test_system_metrics_are_logged_when_asked_and_only_then(store):
    from initsweep.training.job import run_job

    run_job(
        compose_config(
            [
                *SHRINK,
                f"tracking.uri={store}",
                "experiment_name=with",
                "tracking.system_metrics_interval_s=0.1",
            ]
        )
    )
    run_job(compose_config([*SHRINK, f"tracking.uri={store}", "experiment_name=without"]))
    (with_,), (without,) = runs_of(store, "with"), runs_of(store, "without")
    system = {k for k in with_.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    history = MlflowClient(store).get_metric_history(
        with_.info.run_id, "system/cpu_utilization_percentage"
    )
    # at least one sample (how many fit in a short run depends on the machine's load), numbered
    # from 0 as MLflow's monitor steps them
    assert history and [m.step for m in history] == list(range(len(history)))
    assert with_.info.status == "FINISHED"
    assert not [k for k in without.data.metrics if k.startswith("system/")]
