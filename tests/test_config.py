"""Config composition, seeding (0 included), model building, validation of every user field."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from initsweep.errors import ConfigError
from initsweep.models.layers import linear_layers
from initsweep.models.zoo import build_mlp
from initsweep.naming import config_hash, named_overrides, run_name, swept_keys
from initsweep.training.builders import build, build_diagnostics, plots_in_background
from initsweep.training.optimizers import check_fused, make_optimizer
from tests.conftest import compose_config


def test_default_config_composes_with_every_group():
    cfg = compose_config()
    for group in ("data", "model", "init", "optim", "trainer", "tracking"):
        assert group in cfg, group
    assert cfg.seed == 0 and cfg.init_seed == 0 and cfg.data_seed == 0
    assert cfg.experiment_name == "initsweep"
    assert OmegaConf.to_container(cfg.tags) == {}


def test_seed_drives_both_seeds_unless_they_are_set():
    cfg = compose_config(["seed=5", "data_seed=9"])
    assert (cfg.init_seed, cfg.data_seed) == (5, 9)


def _weights(overrides):
    _, module = build(compose_config(overrides))
    return [p.detach().clone() for p in module.parameters()]


def test_seed_zero_seeds_like_any_other_value():
    zero_a, zero_b = _weights(["init=he", "seed=0"]), _weights(["init=he", "seed=0"])
    one = _weights(["init=he", "seed=1"])
    assert all(torch.equal(a, b) for a, b in zip(zero_a, zero_b, strict=True))
    assert not torch.equal(zero_a[0], one[0])


def test_init_does_not_depend_on_data_seed():
    a = _weights(["init=xavier", "init_seed=4", "data_seed=0"])
    b = _weights(["init=xavier", "init_seed=4", "data_seed=8"])
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_mlp_shapes_activation_and_bias():
    net = build_mlp(64, 10, [32, 16], "tanh", bias=False)
    layers = linear_layers(net)
    assert [tuple(layer.weight.shape) for layer in layers] == [(32, 64), (16, 32), (10, 16)]
    assert all(layer.bias is None for layer in layers)
    assert sum(isinstance(m, torch.nn.Tanh) for m in net) == 2
    assert net(torch.zeros(3, 64)).shape == (3, 10)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=0", "optim.lr=0.0: must be a number > 0"),
        ("optim=sgd", None),
        ("optim.weight_decay=-1", "optim.weight_decay=-1.0: must be >= 0"),
        ("optim.fused=maybe", "optim.fused='maybe': must be auto, true or false"),
        ("data.batch_size=0", "data.batch_size=0: must be an integer >= 1"),
        ("model.hidden_sizes=[16,0]", "model.hidden_sizes=[16, 0]: every hidden size must be"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: must be an integer >= 1"),
        (
            "model.activation=swish",
            "model.activation='swish': must be one of linear, relu, sigmoid",
        ),
        ("seed=-1", "seed=-1: must be an integer >= 0"),
        (
            "job.divergence_threshold=-1",
            "job.divergence_threshold=-1.0: must be null or a number > 0",
        ),
        ("init=normal", None),  # control: valid
    ],
)
def test_bad_values_raise_one_line_naming_the_field(override, message):
    cfg = compose_config([override])
    if message is None:
        build(cfg)
        return
    with pytest.raises(ConfigError) as err:
        build(cfg)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_run_names_show_what_the_sweep_varies():
    cfg = compose_config(["init=he", "seed=2", "optim.lr=0.01"])
    assert run_name(cfg) == "he-x1-s2"
    overrides = ["init=he", "seed=2", "optim.lr=0.01", "trainer.max_epochs=3"]
    swept = swept_keys(
        ["init=he,xavier", "seed=0,1,2", "optim.lr=0.1,0.01", "trainer.max_epochs=3"], None
    )
    assert swept == ["init", "seed", "optim.lr"]
    assert run_name(cfg, named_overrides(overrides, swept)) == "he-x1-s2-optim.lr=0.01"
    # a preset sweeping a group with "+" (experiment=s5_residual's "+s5"): named like any key
    swept = swept_keys(["init=he"], {"+s5": "plain,fixup", "model.depth": "20,56"})
    assert swept == ["s5", "model.depth"]
    assert named_overrides(["+s5=plain", "model.depth=20", "init=he"], swept) == [
        "s5=plain",
        "model.depth=20",
    ]
    crossed = compose_config(["init=he", "init_seed=1", "data_seed=3"])
    assert run_name(crossed) == "he-x1-s0-i1-d3"


def test_config_hash_changes_with_result_keys_only():
    base = compose_config()
    assert config_hash(base) == config_hash(compose_config(["experiment_name=other"]))
    assert config_hash(base) != config_hash(compose_config(["seed=1"]))
    assert config_hash(base) != config_hash(compose_config(["optim.lr=0.1"]))


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_fused_optimizer_makes_the_update_of_the_default_loop(name):
    """``optim.fused``: auto takes torch's fused kernel on CPU; its update equals the per-op
    loop's to float rounding, so fused=false is there only to reproduce older runs bit for bit."""
    cfg = OmegaConf.to_container(compose_config([f"optim={name}", "optim.lr=0.01"]).optim)
    torch.manual_seed(0)
    start = [torch.randn(32, 16), torch.randn(32)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    finals = {}
    for fused in ("auto", False):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optimizer = make_optimizer(params, {**cfg, "fused": fused})
        assert optimizer.defaults.get("fused") is (True if fused == "auto" else None)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        finals[fused] = [p.detach() for p in params]
    assert not torch.equal(finals["auto"][0], start[0])  # the steps did move the weights
    for a, b in zip(finals["auto"], finals[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_background_plots_is_validated_with_the_diagnostics():
    cfg = compose_config(["diagnostics.background_plots=maybe"])
    datamodule, _ = build(cfg)
    with pytest.raises(ConfigError) as err:
        build_diagnostics(cfg, datamodule)
    assert str(err.value) == "diagnostics.background_plots='maybe': must be auto, true or false"
    assert plots_in_background(compose_config()) is False  # auto outside a multirun: inline
    assert plots_in_background(compose_config(["diagnostics.background_plots=true"])) is True


def test_fused_true_without_a_fused_kernel_is_a_one_line_error():
    """``optim.fused=true`` where torch has no fused kernel: a ConfigError before any run, not
    torch's error inside fit (a device type torch does not know stands in for one without it)."""
    check_fused({"name": "adam", "fused": True}, "cpu")  # this torch has it
    check_fused({"name": "adam", "fused": "auto"}, "nowhere")  # auto: never an error
    with pytest.raises(
        ConfigError,
        match=r"^optim.fused=true: torch .* no fused adam kernel "
        r"for device nowhere .*use optim.fused=auto or false$",
    ):
        check_fused({"name": "adam", "fused": True}, "nowhere")
