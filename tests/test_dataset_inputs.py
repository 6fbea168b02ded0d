"""Every run records the data it trained and was tested on (``mlflow.data`` + ``log_inputs``):
name, digest, source, schema and the split as context, read back through MlflowClient. Runs on
digits and on MNIST-format data differ there; seeds of one config share it."""

from __future__ import annotations

import json

import numpy as np
from mlflow.tracking import MlflowClient

from tests.conftest import compose_config, runs_of
from tests.test_data import _write_idx

SHRINK = ["trainer.max_epochs=1", "diagnostics.enabled=false"]


def inputs_of(run) -> dict[str, object]:
    """context -> the dataset entity of each logged input."""
    return {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
            for i in run.inputs.dataset_inputs}


def test_runs_record_their_datasets_and_digits_differs_from_mnist(tmp_path, store):
    from initsweep.training.job import run_job

    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 120), ("t10k", 40)):
        _write_idx(raw, prefix, rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
    for seed in (0, 1):
        run_job(compose_config([*SHRINK, f"seed={seed}", f"tracking.uri={store}"]))
    run_job(compose_config([*SHRINK, "data=mnist", f"data.root={tmp_path}", "data.val_size=20",
                            f"tracking.uri={store}"]))
    client = MlflowClient(store)
    runs = {r.data.tags["dataset"] + str(r.data.tags["seed"]): client.get_run(r.info.run_id)
            for r in runs_of(store)}
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
