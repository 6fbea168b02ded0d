"""Datasets as preloaded tensors, and a batch iterator that slices them.

No per-sample Python work: each dataset is loaded once into float32 tensors in [0, 1], an epoch
is one ``randperm`` gather, and a batch is a slice. Images keep their shape (C, H, W): digits are
1x8x8, MNIST and Fashion-MNIST 1x28x28 (``input_shape``; an MLP flattens them itself). Shuffling
draws from a ``torch.Generator`` seeded by ``data_seed``, so the data order is reproducible and
independent of the weights' seed.
The train/val/test split is fixed by ``split_seed`` and never moves with ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from initsweep.errors import ConfigError, require

Split = tuple[Tensor, Tensor]


def shuffled_order(n: int, generator: torch.Generator | None) -> Tensor:
    """One epoch's order of ``n`` training samples, drawn from a run's data generator (seeded by
    its ``data_seed``). A run alone (``TensorBatches``) and each member of a stacked model
    (``training.fit_stacked.StackedBatches``) draw it here, so both see the same batches."""
    return torch.randperm(n, generator=generator)


class TensorBatches:
    """Mini-batches ``(x, y)`` sliced from tensors; reshuffled at every ``iter()`` when asked."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.generator = shuffle, generator

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.x, self.y
        if self.shuffle:
            order = shuffled_order(len(y), self.generator)
            x, y = x[order], y[order]
        for start in range(0, len(y), self.batch_size):
            yield x[start : start + self.batch_size], y[start : start + self.batch_size]


def stratified_split(
    x: Tensor, y: Tensor, holdout: float | int, split_seed: int, field: str
) -> tuple[Split, Split]:
    """Split off ``holdout`` (a fraction < 1 or a count) stratified by label, fixed by seed."""
    n = len(y)
    require(
        (0 < holdout < 1) or (isinstance(holdout, int) and 1 <= holdout < n),
        field,
        holdout,
        f"must be a fraction in (0, 1) or a count in 1..{n - 1}",
    )
    keep, held = train_test_split(
        np.arange(n), test_size=holdout, random_state=split_seed, stratify=y.numpy()
    )
    keep, held = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
    return (x[keep], y[keep]), (x[held], y[held])


class TensorDataModule(L.LightningDataModule):
    """Base for the datasets: subclasses implement ``load() -> (train, val, test)``."""

    name = "tensors"

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        split_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        super().__init__()
        require(
            isinstance(batch_size, int) and batch_size >= 1,
            "data.batch_size",
            batch_size,
            "must be an integer >= 1",
        )
        require(
            isinstance(eval_batch_size, int) and eval_batch_size >= 1,
            "data.eval_batch_size",
            eval_batch_size,
            "must be an integer >= 1",
        )
        require(
            isinstance(data_seed, int) and data_seed >= 0,
            "data_seed",
            data_seed,
            "must be an integer >= 0",
        )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.split_seed, self.data_seed = split_seed, data_seed
        self.train: Split | None = None
        self.val: Split | None = None
        self.test: Split | None = None
        # One generator for the whole fit: each epoch's permutation continues its stream.
        self.shuffle_generator = torch.Generator().manual_seed(data_seed)

    def load(self) -> tuple[Split, Split, Split]:
        raise NotImplementedError

    def seed_order(self, data_seed: int) -> None:
        """Draw the training order from ``data_seed`` from now on (the split does not move): a
        job's data is built for its first seed, and the run that trains may be another one."""
        self.data_seed = data_seed
        self.shuffle_generator.manual_seed(data_seed)

    # Saved in Lightning checkpoints, so a resumed run continues the same data order.
    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_generator": self.shuffle_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shuffle_generator.set_state(state["shuffle_generator"])

    def setup(self, stage: str | None = None) -> None:
        if self.train is None:
            self.train, self.val, self.test = self.load()

    def splits(self) -> tuple[Split, Split, Split]:
        """(train, val, test), loaded on first use."""
        self.setup()
        assert self.train is not None and self.val is not None and self.test is not None
        return self.train, self.val, self.test

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W) for images, (features,) for flat data."""
        return tuple(self.splits()[0][0].shape[1:])

    @property
    def in_features(self) -> int:
        """The number of input values (what an MLP's first layer takes)."""
        return math.prod(self.input_shape)

    @property
    def num_classes(self) -> int:
        return int(self.splits()[0][1].max()) + 1

    def probe_batch(self, size: int, seed: int) -> Split:
        """A reproducible batch ``(x, y)`` of training samples drawn by ``seed`` (LSUV, probes)."""
        x, y = self.splits()[0]
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size]
        return x[idx], y[idx]

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits()[0], self.batch_size, True, self.shuffle_generator)

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits()[1], self.eval_batch_size)

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits()[2], self.eval_batch_size)


class DigitsDataModule(TensorDataModule):
    """scikit-learn's bundled 8x8 digits (1797 images, 1x8x8): no download, ever."""

    name = "digits"

    def __init__(self, val_fraction: float = 0.2, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def load(self) -> tuple[Split, Split, Split]:
        # scikit-learn (slow to import) only for the digits data
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 0..16
        y = torch.tensor(digits.target, dtype=torch.long)
        rest, test = stratified_split(
            x, y, self.test_fraction, self.split_seed, "data.test_fraction"
        )
        val_of_rest = self.val_fraction / (1.0 - self.test_fraction)
        train, val = stratified_split(*rest, val_of_rest, self.split_seed, "data.val_fraction")
        return train, val, test


class TorchvisionDataModule(TensorDataModule):
    """MNIST-format datasets through torchvision; the official test set, a fixed val split."""

    dataset_class = "MNIST"

    def __init__(
        self, root: str = "data", download: bool = False, val_size: float | int = 5000, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.download, self.val_size = str(root), bool(download), val_size

    def _read(self, train: bool) -> Split:
        # torchvision's datasets only for the MNIST family
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.dataset_class)
        raw = Path(self.root).expanduser() / self.dataset_class / "raw"
        try:
            ds = cls(root=str(Path(self.root).expanduser()), train=train, download=self.download)
        except RuntimeError as err:
            if self.download:
                raise ConfigError(
                    f"data.download=true: could not download {self.dataset_class} "
                    f"into {raw} ({err}); copy the idx files there instead"
                ) from None
            raise ConfigError(
                f"data.root={self.root!r}: no {self.dataset_class} files in {raw}; "
                "put the idx files there or set data.download=true"
            ) from None
        except OSError as err:  # no network: URLError and friends are OSErrors
            raise ConfigError(
                f"data.download=true: could not download {self.dataset_class} "
                f"into {raw} ({err}); copy the idx files there instead"
            ) from None
        x = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)  # (N, 1, 28, 28)
        return x, ds.targets.to(torch.long)

    def load(self) -> tuple[Split, Split, Split]:
        train_all = self._read(train=True)
        train, val = stratified_split(*train_all, self.val_size, self.split_seed, "data.val_size")
        return train, val, self._read(train=False)


class MNISTDataModule(TorchvisionDataModule):
    name = "mnist"
    dataset_class = "MNIST"


class FashionMNISTDataModule(TorchvisionDataModule):
    name = "fashion_mnist"
    dataset_class = "FashionMNIST"


class SyntheticDataModule(TensorDataModule):
    """Random inputs in [0, 1) labelled by a random linear teacher: any size, no files.

    For benchmarks at MNIST scale where the files are absent, and for quick experiments.
    """

    name = "synthetic"

    def __init__(
        self,
        n_train: int = 55000,
        n_val: int = 5000,
        n_test: int = 10000,
        features: int = 784,
        classes: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for field, value in (
            ("n_train", n_train),
            ("n_val", n_val),
            ("n_test", n_test),
            ("features", features),
        ):
            require(
                isinstance(value, int) and value >= 1,
                f"data.{field}",
                value,
                "must be an integer >= 1",
            )
        require(
            isinstance(classes, int) and classes >= 2,
            "data.classes",
            classes,
            "must be an integer >= 2",
        )
        self.sizes = (n_train, n_val, n_test)
        self.features, self.classes = features, classes

    def load(self) -> tuple[Split, Split, Split]:
        generator = torch.Generator().manual_seed(self.split_seed)
        x = torch.rand(sum(self.sizes), self.features, generator=generator)
        teacher = torch.randn(self.features, self.classes, generator=generator)
        y = ((x - 0.5) @ teacher).argmax(dim=1)
        train, val, test = torch.split(torch.arange(len(y)), list(self.sizes))
        return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])
