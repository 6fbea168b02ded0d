"""Config hashes are a store's memory: ``skip_finished`` and ``resume`` find runs by them, so a
refactor must never change one. The values below were computed before the package was split into
subpackages (commit 8ca3e1f, where the built-in targets were ``initsweep.networks.*`` and
``initsweep.data.*``)."""

from __future__ import annotations

import pytest

from initsweep.naming import config_hash, group_hash, hashed_target
from tests.conftest import compose_config

PINNED = {
    # name: (overrides, config_hash, group_hash)
    "demo xavier s0": (["init=xavier", "seed=0"], "6ec25647e788", "23aeb8cd2d31"),
    "demo he s2": (["init=he", "seed=2"], "41fc28c6f818", "227be88075b1"),
    "demo zeros s1": (["init=zeros", "seed=1"], "a5ec97de31ea", "ff3e802f7486"),
    "defaults": ([], "988d69caf67c", "467fb78ec7b0"),
    "S5 resnet": (
        ["model=resnet", "model.depth=20", "init=fixup", "seed=1"],
        "c996000f6f91",
        "625ae5440465",
    ),
    "custom model": (
        ["model=custom", "model._target_=my_models.small_cnn", "+model.channels=32", "init=lsuv"],
        "544c0cd3f0cf",
        "c4a67f7669c8",
    ),
    "mnist cnn": (["data=mnist", "model=cnn", "init=he"], "c745fc26c52b", "c9ec64ef3ab2"),
    "synthetic sgd cosine": (
        ["data=synthetic", "optim=sgd", "lr_schedule=cosine"],
        "bca504e50380",
        "306e94703143",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_config_hashes_never_change(name: str) -> None:
    overrides, expected_config, expected_group = PINNED[name]
    cfg = compose_config(overrides)
    assert (config_hash(cfg), group_hash(cfg)) == (expected_config, expected_group)


def test_built_in_targets_hash_under_their_first_names() -> None:
    assert hashed_target("initsweep.models.zoo.mlp") == "initsweep.networks.mlp"
    data = "initsweep.training.data.MNISTDataModule"
    assert hashed_target(data) == "initsweep.data.MNISTDataModule"
    assert hashed_target("my_models.small_cnn") == "my_models.small_cnn"  # a user's stays as is
