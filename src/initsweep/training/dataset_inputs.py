"""The data a run trained and was tested on, as MLflow datasets: the UI's Datasets column.

Each split is one ``mlflow.data`` dataset logged on the run with ``log_inputs``: the data
module's name (``digits``, ``mnist``), a digest of the split's arrays (MLflow's own: a hash of
a sample of rows and of the shape, so a different split, subset or file gives a different one),
where it came from (the idx folder for MNIST-format data, the loader otherwise), its schema
(the tensors' dtype and shape) and a profile (row count), with the split as the input's context
(``train``, ``val``, ``test``, MLflow's ``mlflow.data.context`` tag). A reviewer sees in the
runs table that every run of a comparison used the same data, and filters by it.

Made once per job (the seeds of a stacked job share the data) and logged on each new run;
a resumed run keeps what its first attempt logged. Cost: docs/performance.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from initsweep.training.data import TensorDataModule

SPLITS = ("train", "val", "test")


def dataset_source(datamodule: TensorDataModule) -> Any:
    """Where the data came from: the raw folder of MNIST-format data (a ``local`` source), else
    the loader that made it (a ``code`` source naming it and its split seed)."""
    # mlflow.data only when a run logs its inputs
    from mlflow.data.code_dataset_source import CodeDatasetSource

    root = getattr(datamodule, "root", None)
    folder = getattr(datamodule, "dataset_class", None)
    if root is not None and folder is not None:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        raw = Path(root).expanduser().resolve() / folder / "raw"
        with warnings.catch_warnings():  # two registered local sources match a path: either does
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(str(raw))
    loader = type(datamodule)
    return CodeDatasetSource(
        tags={
            "loader": f"{loader.__module__}.{loader.__qualname__}",
            "split_seed": str(getattr(datamodule, "split_seed", "")),
        }
    )


def dataset_inputs(datamodule: TensorDataModule) -> list[DatasetInput]:
    """One dataset per split (name, digest, source, schema, profile), its split as context."""
    # mlflow.data only when a run logs its inputs
    from mlflow.data.numpy_dataset import from_numpy

    source = dataset_source(datamodule)
    inputs = []
    for context, (x, y) in zip(SPLITS, datamodule.splits(), strict=True):
        dataset = from_numpy(
            x.detach().cpu().numpy(),
            targets=y.detach().cpu().numpy(),
            source=source,
            name=datamodule.name,
        )
        # the entity is what mlflow.log_input logs; the client takes it directly
        inputs.append(
            DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)])
        )
    return inputs


def log_datasets(
    client: MlflowClient, run_ids: Sequence[str], datamodule: TensorDataModule
) -> None:
    """Log the data module's splits on each run (made once: the runs share the data)."""
    if not run_ids:
        return
    inputs = dataset_inputs(datamodule)
    retry = getattr(client, "retry", None)  # the job's client retries while the store is down
    for run_id in run_ids:
        if retry is not None:
            retry(lambda run_id=run_id: _log_inputs(client, run_id, inputs))
        else:
            _log_inputs(client, run_id, inputs)


def _log_inputs(client: MlflowClient, run_id: str, inputs: list[DatasetInput]) -> None:
    """``log_inputs``, once more when a parallel job registered the same dataset first.

    MLflow looks a dataset up, then inserts it: jobs running at once (joblib, SLURM) that log one
    dataset for the first time race between the two, and the loser's insert breaks the store's
    unique constraint. The dataset exists by then, so the second call only links it to the run.
    """
    for attempt in range(3):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if attempt == 2 or "unique constraint" not in str(err).lower():
                raise
