"""Datasets: fixed splits, reproducible shuffling, sliced batches, clear missing-file errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from initsweep.errors import ConfigError
from initsweep.training.data import (
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TensorBatches,
)


def test_digits_split_is_fixed_and_independent_of_data_seed():
    a, b = DigitsDataModule(data_seed=0), DigitsDataModule(data_seed=7)
    a.setup(), b.setup()
    for split_a, split_b in zip((a.train, a.val, a.test), (b.train, b.val, b.test), strict=True):
        assert torch.equal(split_a[0], split_b[0]) and torch.equal(split_a[1], split_b[1])
    n = len(a.train[1]) + len(a.val[1]) + len(a.test[1])
    assert n == 1797 and len(a.test[1]) == 360
    assert a.input_shape == (1, 8, 8) and a.in_features == 64 and a.num_classes == 10
    assert float(a.train[0].min()) == 0.0 and float(a.train[0].max()) == 1.0
    # stratified: every class is in the test split in about the same proportion
    counts = torch.bincount(a.test[1], minlength=10)
    assert int(counts.min()) >= 35


def test_another_split_seed_moves_the_split():
    a, b = DigitsDataModule(split_seed=0), DigitsDataModule(split_seed=1)
    a.setup(), b.setup()
    assert not torch.equal(a.test[0], b.test[0])


def _epoch_labels(dm: DigitsDataModule, epochs: int = 2) -> list[torch.Tensor]:
    loader = dm.train_dataloader()
    return [torch.cat([y for _, y in loader]) for _ in range(epochs)]


def test_shuffling_follows_data_seed_and_changes_each_epoch():
    runs = [DigitsDataModule(data_seed=s) for s in (0, 0, 1)]
    for dm in runs:
        dm.setup()
    same_a, same_b, other = (_epoch_labels(dm) for dm in runs)
    assert all(torch.equal(x, y) for x, y in zip(same_a, same_b, strict=True))
    assert not torch.equal(same_a[0], other[0])
    assert not torch.equal(same_a[0], same_a[1])  # a new order every epoch


def test_batches_are_slices_covering_every_sample_once():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    batches = list(
        TensorBatches(x, y, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    )
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(10))
    assert len(TensorBatches(x, y, batch_size=4)) == 3


def _write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the MNIST idx format (uncompressed), as torchvision reads it."""
    raw.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
    )


def test_fashion_mnist_reads_idx_files_in_torchvision_layout(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    for prefix, n in (("train", 200), ("t10k", 50)):
        _write_idx(raw, prefix, rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
    dm = FashionMNISTDataModule(root=str(tmp_path), val_size=0.1, batch_size=32)
    dm.setup()
    assert dm.train[0].shape == (180, 1, 28, 28) and dm.val[0].shape == (20, 1, 28, 28)
    assert dm.test[0].shape == (50, 1, 28, 28)
    assert dm.input_shape == (1, 28, 28) and dm.in_features == 784 and dm.num_classes == 10
    assert float(dm.train[0].min()) >= 0.0 and float(dm.train[0].max()) <= 1.0


def test_missing_files_name_the_folder_and_the_flag(tmp_path):
    with pytest.raises(ConfigError) as err:
        MNISTDataModule(root=str(tmp_path)).setup()
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "data.download=true" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"data_seed": -1}, "data_seed"),
    ],
)
def test_bad_data_values(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        DigitsDataModule(**kwargs)


@pytest.mark.skipif(
    not (Path(__file__).parents[2] / "shared/data/MNIST/raw").exists(),
    reason="real MNIST files not present",
)
def test_real_mnist_when_present():
    dm = MNISTDataModule(root=str(Path(__file__).parents[2] / "shared/data"))
    dm.setup()
    assert dm.train[0].shape == (55000, 1, 28, 28) and dm.test[0].shape == (10000, 1, 28, 28)
