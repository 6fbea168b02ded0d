"""Every run records the data it trained and was tested on (``mlflow.data`` + ``log_inputs``):
name, digest, source, schema and the split as context, read back through MlflowClient. Runs on
digits and on MNIST-format data differ there; seeds of one config share it. Beside the exact
accuracy, a tag reads it as the report prints it."""

from __future__ import annotations

import json
import math

import numpy as np
from mlflow.tracking import MlflowClient

from tests.conftest import compose_config, runs_of
from tests.test_data import _write_idx

SHRINK = ["debug=tiny", "diagnostics.enabled=false"]


def inputs_of(run) -> dict[str, object]:
    """context -> the dataset entity of each logged input."""
    return {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
        for i in run.inputs.dataset_inputs
    }


def test_runs_record_their_datasets_and_digits_differs_from_mnist(tmp_path, store):
    from initsweep.training.job import run_job

    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 120), ("t10k", 40)):
        _write_idx(raw, prefix, rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
    for seed in (0, 1):
        run_job(compose_config([*SHRINK, f"seed={seed}", f"tracking.uri={store}"]))
    run_job(
        compose_config(
            [
                *SHRINK,
                "data=mnist",
                f"data.root={tmp_path}",
                "data.val_size=20",
                f"tracking.uri={store}",
            ]
        )
    )
    client = MlflowClient(store)
    runs = {
        r.data.tags["dataset"] + str(r.data.tags["seed"]): client.get_run(r.info.run_id)
        for r in runs_of(store)
    }
    digits, digits_1, mnist = (inputs_of(runs[k]) for k in ("digits0", "digits1", "mnist0"))

    assert set(digits) == set(mnist) == {"train", "val", "test"}
    train = digits["train"]
    assert train.name == "digits" and train.source_type == "code"
    assert "DigitsDataModule" in json.loads(train.source)["tags"]["loader"]
    schema = json.loads(train.schema)["mlflow_tensorspec"]
    assert '"shape": [-1, 1, 8, 8]' in schema["features"] and "int64" in schema["targets"]
    assert json.loads(digits["test"].profile)["features_shape"][0] == 360
    assert len({d.digest for d in digits.values()}) == 3  # each split its own digest
    # the same data for every seed of a config: the same digests
    assert {c: d.digest for c, d in digits.items()} == {c: d.digest for c, d in digits_1.items()}
    assert mnist["train"].name == "mnist" and mnist["train"].source_type == "local"
    assert json.loads(mnist["train"].source)["uri"] == str(raw.resolve())
    assert {d.digest for d in digits.values()}.isdisjoint(d.digest for d in mnist.values())
    # beside the exact accuracy, the report's four digits and the counts (tracking.rounded)
    run = runs["digits0"]
    acc = run.data.metrics["test/acc"]
    assert run.data.tags["test/acc_rounded"] == f"{acc:.4f} = {round(acc * 360)}/360"


def test_the_rounded_accuracy_reads_as_the_report_prints_it():
    from initsweep.report.views import fmt
    from initsweep.tracking.rounded import rounded, rounded_tags

    assert rounded(347 / 360, 360) == "0.9639 = 347/360" == f"{fmt(347 / 360)} = 347/360"
    assert rounded(0.1, 360) == "0.1000 = 36/360"
    assert rounded(0.5, None) == "0.5000" and rounded(math.nan, 360) == "nan"
    assert rounded(0.123456, 360) == "0.1235"  # no ratio of 360: the rounding alone
    assert rounded_tags({"test/acc": 347 / 360, "test/loss": 0.12}, 360) == {
        "test/acc_rounded": "0.9639 = 347/360"
    }
