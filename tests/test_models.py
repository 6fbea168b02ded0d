"""Any network (issue 14): the built-in models, a user's own model from a file in their folder
run end to end through the command line, stacked seeds on a ResNet with BatchNorm, and the
one-line errors (exit 2, no run) for models that cannot work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from initsweep.errors import ConfigError
from initsweep.models.layers import norm_layers, weight_layers
from initsweep.models.zoo import ResNet, resnet
from initsweep.training.builders import build
from initsweep.training.job import run_job
from tests.conftest import REPO, compose_config, runs_of, stacked_and_alone


def _example_code() -> str:
    """The ``my_models.py`` of docs/extending.md, as a user would copy it."""
    text = (REPO / "docs" / "extending.md").read_text()
    return re.search(r"```python\n(# my_models\.py\n.*?)```", text, re.DOTALL).group(1)


# An extra factory next to the documented one: vmap cannot run it (.item() in forward).
GATED = """

class Gated(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) if x.sum().item() > 0 else -self.fc(x)


def gated_net(input_shape, num_classes):
    import math
    return Gated(math.prod(input_shape), num_classes)
"""


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """The folder the CLI runs from (``cli``'s cwd), holding the user's ``my_models.py``."""
    (tmp_path / "my_models.py").write_text(_example_code() + GATED)
    return tmp_path


# ------------------------------------------------------------------------------- the built-ins
@pytest.mark.parametrize(
    ("overrides", "n_layers", "kind"),
    [
        (["model=mlp"], 3, "MLP"),
        (["model=cnn"], 5, "ConvNet"),
        (["model=resnet", "model.depth=8", "model.width=4"], 8, "ResNet"),
        (
            [
                "model=resnet",
                "model.depth=8",
                "model.width=4",
                "data=mnist",
                f"data.root={REPO.parent / 'shared' / 'data'}",
            ],
            8,
            "ResNet",
        ),
    ],
)
def test_each_built_in_model_fits_its_data(overrides, n_layers, kind):
    if "data=mnist" in overrides and not (REPO.parent / "shared/data/MNIST/raw").exists():
        pytest.skip("real MNIST files not present")
    datamodule, module = build(compose_config(overrides))
    assert type(module.net).__name__ == kind and len(weight_layers(module.net)) == n_layers
    x, _ = datamodule.probe_batch(3, 0)
    assert module(x).shape == (3, 10)


def test_resnet_depth_norm_and_plain_variant():
    for depth in (8, 14, 20, 56):
        net = resnet((1, 28, 28), 10, depth=depth, width=4)
        assert len(weight_layers(net)) == depth
    with_bn, without = resnet((1, 8, 8), 10, depth=14), resnet((1, 8, 8), 10, depth=14, norm="none")
    assert len(norm_layers(with_bn)) == 13 and norm_layers(without) == []
    # the plain net has the same layers (option A shortcuts have no weights): same weights
    residual, plain = (resnet((1, 8, 8), 10, depth=14, width=4, skip=skip) for skip in (1, 0))
    assert [p for p, _ in weight_layers(residual)] == [p for p, _ in weight_layers(plain)]
    x = torch.randn(2, 1, 8, 8)
    plain.load_state_dict(residual.state_dict())
    assert not torch.allclose(residual.eval()(x), plain.eval()(x))  # only the skips differ
    assert isinstance(residual, ResNet)


# --------------------------------------------------------------------------- a user's own model
@pytest.mark.slow  # a whole sweep end to end; the fast tier keeps a smaller check of it
def test_a_model_from_a_file_in_the_users_folder_runs_end_to_end(cli, store, user_folder):
    proc = cli(
        "model=custom",
        "model._target_=my_models.small_cnn",
        "+model.channels=8",
        "init=he",
        "optim.lr=0.01",
        "trainer.max_epochs=3",
        "diagnostics.every_n_steps=10",
        check=True,
    )
    (run,) = runs_of(store)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "ok", proc.stderr
    assert run.data.params["model._target_"] == "my_models.small_cnn"
    assert run.data.params["model.channels"] == "8"
    assert run.data.metrics["test/acc"] > 0.5  # chance is 0.1
    for i in range(2):
        assert f"diag/L{i}/act_std" in run.data.metrics
    client = MlflowClient(store)
    csv_text = Path(
        client.download_artifacts(run.info.run_id, "diagnostics/diagnostics.csv")
    ).read_text()
    header, first, *_ = csv_text.splitlines()
    assert header.endswith(",path,type") and first.endswith(",0,Conv2d")


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["model._target_=my_modles.small_cnn"],
            "error: model._target_='my_modles.small_cnn': cannot import my_modles "
            "(ModuleNotFoundError",
        ),
        (
            ["model._target_=my_models.small_cnn", "+model.chanels=32"],
            "error: model.chanels=32: not an argument of my_models.small_cnn; valid: channels",
        ),
        (
            [
                "model._target_=my_models.small_cnn",
                "init.layers=[{select: 'conv*', scheme: zeros}]",
            ],
            "error: init.layers[0].select='conv*': matches no weight layer's module path; "
            "the model's "
            "weight layers: 0, 4",
        ),
        (
            ["model._target_=my_models.gated_net", "seeds_per_job=2"],
            "error: seeds_per_job=2: model my_models.gated_net cannot be trained stacked "
            "(torch.func.vmap"
            ": RuntimeError: vmap: It looks like you're calling .item() on a Tensor.",
        ),
    ],
    ids=["not-importable", "unknown-key", "selects-nothing", "not-stackable"],
)
def test_a_model_that_cannot_work_is_one_line_exit_2_and_no_run(
    cli, store, user_folder, args, message
):
    proc = cli("model=custom", *args)
    assert proc.returncode == 2, proc.stderr
    assert len(_error_lines(proc)) == 1 and _error_lines(proc)[0].startswith(message), proc.stderr
    assert runs_of(store) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=cnn", "data=synthetic", "data.n_train=100"],
            "model=cnn: needs image inputs (C, H, W); the data's inputs have shape (784,)",
        ),
        (
            ["model=cnn", "+model.widht=3"],
            "model.widht=3: not an argument of initsweep.models.zoo.cnn; "
            "valid: channels, kernel_size, pool, hidden_sizes, ",
        ),
        (
            ["model=cnn", "model.channels=[4,4,4,4]"],
            "model.channels=[4, 4, 4, 4]: 4 pooling blocks shrink the 8x8 input to 0x0",
        ),
        (["model=resnet", "model.depth=10"], "model.depth=10: must be 6n+2 with n >= 1"),
        (["model=resnet", "model.norm=layer"], "model.norm='layer': must be one of batch, none"),
        (["model=custom"], "model._target_: not set; model=custom needs your factory"),
        (
            ["model=custom", "model._target_=torch.nn.Linear"],
            "model._target_='torch.nn.Linear': a model factory is called as "
            "f(input_shape=(C, H, W), "
            "num_classes=N, ...); torch.nn.Linear has no argument 'input_shape'",
        ),
        (
            ["model=custom", "model._target_=torch.nn.Identity"],
            "model._target_='torch.nn.Identity': must map inputs (B, 1, 8, 8) to logits "
            "(B, 10); gave "
            "(2, 1, 8, 8) for B=2",
        ),
        (
            ["model=resnet", "model.skip=false", "init=fixup"],
            "init.scheme='fixup': the model has no residual blocks",
        ),
        (
            [
                "model=resnet",
                "model.depth=8",
                "init=he",
                "init.layers=[{type: Conv3d, scheme: zeros}]",
            ],
            "init.layers[0].type='Conv3d': the model has no weight layer of this type; its weight "
            "layers are Conv2d (7), Linear (1)",
        ),
    ],
)
def test_bad_model_input_is_one_line_exit_2_and_no_run(store, capsys, overrides, message):
    with pytest.raises(SystemExit) as exit_:
        run_job(compose_config([*overrides, f"tracking.uri={store}"]))
    assert exit_.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert runs_of(store) == []


def test_model_keys_are_checked_against_the_factory_before_it_is_called():
    with pytest.raises(ConfigError, match=r"^model\.hidden=\[3\]: not an argument of "):
        build(compose_config(["+model.hidden=[3]"]))


# ---------------------------------------------------------------------------- stacked seeds
def test_stacked_resnet_with_batchnorm_logs_the_runs_sequential_jobs_would(store):
    """seeds_per_job=2 on a ResNet-8 with BatchNorm (vmap over functional_call, each seed's own
    running statistics): the metrics of two runs alone, to float tolerance (as
    tests/test_stacked_seeds.py for the MLP)."""
    shrink = [
        "model=resnet",
        "model.depth=8",
        "model.width=4",
        "init=he",
        "trainer.max_epochs=2",
        "diagnostics.every_n_steps=9",
        "diagnostics.plots=false",
    ]
    batched, alone = stacked_and_alone(store, shrink, 2)
    client = MlflowClient(store)
    for name, run in batched.items():
        twin = alone[name]
        assert run.data.tags["trained_together"] == "2"
        assert set(run.data.metrics) == set(twin.data.metrics)
        assert run.data.metrics["test/loss"] == pytest.approx(
            twin.data.metrics["test/loss"], rel=1e-4
        )
        n_test = int(run.data.tags["n_test"])
        for key in (
            "val/loss",
            "val/acc",
            "diag/L0/grad_norm",
            "diag/L3/update_ratio",
            "diag/L2/norm_running_mean",
            "diag/L2/norm_running_var",
            "diag/L5/effective_rank",
        ):
            mine = client.get_metric_history(run.info.run_id, key)
            theirs = client.get_metric_history(twin.info.run_id, key)
            assert [m.step for m in mine] == [m.step for m in theirs], key
            assert [m.value for m in mine] == pytest.approx(
                [m.value for m in theirs], rel=1e-4, abs=2 / n_test
            ), key


def test_stacked_cnn_starts_from_each_seeds_own_weights_and_buffers():
    from initsweep.naming import seed_configs
    from initsweep.training.fit_stacked import StackedModule

    cfg = compose_config(["model=cnn", "model.norm=batch", "init=he", "seeds_per_job=3"])
    modules = [build(one)[1] for one in seed_configs(cfg, 3)]
    stacked = StackedModule(modules, dict(cfg.optim), loggers=[])
    for k, module in enumerate(modules):
        net = stacked.net_for(k)
        for (name, a), b in zip(
            net.state_dict().items(), module.net.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
    x = torch.rand(4, 1, 8, 8)
    stacked.eval()
    out = stacked(x)  # one batch for all: (K, B, classes)
    for k, module in enumerate(modules):
        torch.testing.assert_close(out[k], module.net.eval()(x), rtol=1e-5, atol=1e-6)
    assert isinstance(stacked.net_for(0), nn.Module)
