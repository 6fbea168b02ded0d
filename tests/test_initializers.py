"""The initializer library (issue 3): every scheme's distribution, the common knobs (scale, bias,
per-layer rules), reproducibility, the one-line config errors, speed and the yaml files."""

from __future__ import annotations

import doctest
import inspect
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from initsweep.errors import ConfigError
from initsweep.init import apply, passes, schemes
from initsweep.init.apply import initialize_, layer_generator, layer_specs
from initsweep.init.registry import COMMON_KEYS, get_scheme, list_schemes, register
from initsweep.init.rules import BIAS_KEYS, NORM_KEYS, common_defaults
from initsweep.init.schemes import fans, hadamard
from initsweep.models.layers import linear_layers
from initsweep.models.zoo import build_mlp, resnet

CONF = Path(__file__).resolve().parents[1] / "conf"
OUT, IN = 512, 1024  # a large weight: N = 524,288 draws
N = OUT * IN
SEED = 1234
SQRT3 = math.sqrt(3.0)
GAIN = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}
RANDOM_SCHEMES = (
    "uniform",
    "normal",
    "truncated_normal",
    "xavier",
    "he",
    "lecun",
    "torch_default",
    "orthogonal",
    "lsuv",
)
# Schemes for residual networks only (an MLP has no residual branch: a one-line error); the
# registry-wide tests run them on a small ResNet (tests/test_models_init.py tests them in depth).
RESIDUAL_SCHEMES = ("zero_init_residual", "fixup")
MLP_SCHEMES = [s for s in list_schemes() if s not in RESIDUAL_SCHEMES]
DETERMINISTIC_SCHEMES = ("zeros", "ones", "constant", "hadamard_identity")


def draw(
    cfg: dict, activation: str = "relu", shape: tuple[int, int] = (OUT, IN), seed: int = SEED
) -> np.ndarray:
    """The weights ``initialize_`` gives one bias-free Linear layer, as a flat float64 array."""
    layer = nn.Linear(shape[1], shape[0], bias=False)
    initialize_(layer, cfg, seed, activation)
    return layer.weight.detach().double().numpy().ravel()


def weights(net: nn.Module) -> list[torch.Tensor]:
    return [layer.weight.detach().clone() for layer in linear_layers(net)]


def small_net(activation: str = "relu", bias: bool = True) -> nn.Sequential:
    """Four weight layers: (16, 8), (16, 16), (16, 16), (3, 16)."""
    return build_mlp(8, 3, [16, 16, 16], activation, bias=bias)


def small_resnet() -> nn.Module:
    """ResNet-8 (one block per stage), 4 channels, on 1x8x8 inputs."""
    return resnet((1, 8, 8), 3, depth=8, width=4)


def batch_of(n_features: int, n: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, n_features, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ statistical: each formula
def sym_uniform(std: float):
    """The zero-mean uniform with standard deviation ``std``: U(-sqrt(3) std, sqrt(3) std)."""
    return stats.uniform(loc=-SQRT3 * std, scale=2 * SQRT3 * std)


XAVIER_STD = math.sqrt(2.0 / (IN + OUT))
# (id, init config, model activation, target distribution from the paper's formula)
CASES = [
    (
        "uniform",
        {"scheme": "uniform", "low": -0.3, "high": 0.5},
        "relu",
        stats.uniform(loc=-0.3, scale=0.8),
    ),
    ("uniform-default", {"scheme": "uniform"}, "relu", stats.uniform(loc=-0.1, scale=0.2)),
    ("normal", {"scheme": "normal", "mean": 0.2, "std": 0.5}, "relu", stats.norm(0.2, 0.5)),
    ("normal-default", {"scheme": "normal"}, "relu", stats.norm(0.0, 0.01)),
    (
        "truncated_normal",
        {"scheme": "truncated_normal", "mean": 0.1, "std": 0.2},
        "relu",
        stats.truncnorm(-2.0, 2.0, loc=0.1, scale=0.2),
    ),
    (
        "truncated_normal-cut1.5",
        {"scheme": "truncated_normal", "cut": 1.5},
        "relu",
        stats.truncnorm(-1.5, 1.5, loc=0.0, scale=0.1),
    ),
    ("xavier-uniform-linear", {"scheme": "xavier"}, "linear", sym_uniform(XAVIER_STD)),
    # gain 1 whatever the activation (Glorot & Bengio, torch, Keras, JAX); gain=auto takes
    # calculate_gain of the model's activation
    (
        "xavier-uniform-tanh-gain1",
        {"scheme": "xavier", "distribution": "uniform"},
        "tanh",
        sym_uniform(XAVIER_STD),
    ),
    (
        "xavier-normal-relu-gain1",
        {"scheme": "xavier", "distribution": "normal"},
        "relu",
        stats.norm(0.0, XAVIER_STD),
    ),
    (
        "xavier-uniform-tanh-auto",
        {"scheme": "xavier", "distribution": "uniform", "gain": "auto"},
        "tanh",
        sym_uniform(5 / 3 * XAVIER_STD),
    ),
    (
        "xavier-normal-relu-auto",
        {"scheme": "xavier", "distribution": "normal", "gain": "auto"},
        "relu",
        stats.norm(0.0, math.sqrt(2) * XAVIER_STD),
    ),
    (
        "xavier-normal-explicit-gain",
        {"scheme": "xavier", "distribution": "normal", "gain": 0.5},
        "tanh",
        stats.norm(0.0, 0.5 * XAVIER_STD),
    ),
    ("he-normal-relu-fan_in", {"scheme": "he"}, "relu", stats.norm(0.0, math.sqrt(2 / IN))),
    (
        "he-uniform-relu-fan_in",
        {"scheme": "he", "distribution": "uniform"},
        "relu",
        sym_uniform(math.sqrt(2 / IN)),
    ),
    (
        "he-normal-tanh-fan_out",
        {"scheme": "he", "mode": "fan_out"},
        "tanh",
        stats.norm(0.0, 5 / 3 / math.sqrt(OUT)),
    ),
    (
        "he-uniform-relu-fan_out",
        {"scheme": "he", "distribution": "uniform", "mode": "fan_out"},
        "relu",
        sym_uniform(math.sqrt(2 / OUT)),
    ),
    (
        "he-nonlinearity-overrides-activation",
        {"scheme": "he", "nonlinearity": "tanh"},
        "relu",
        stats.norm(0.0, 5 / 3 / math.sqrt(IN)),
    ),
    (
        "he-leaky_relu",
        {"scheme": "he", "nonlinearity": "leaky_relu", "negative_slope": 0.2},
        "relu",
        stats.norm(0.0, math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(IN)),
    ),
    ("lecun-normal", {"scheme": "lecun"}, "relu", stats.norm(0.0, 1 / math.sqrt(IN))),
    (
        "lecun-uniform",
        {"scheme": "lecun", "distribution": "uniform"},
        "tanh",
        sym_uniform(1 / math.sqrt(IN)),
    ),
    (
        "torch_default",
        {"scheme": "torch_default"},
        "relu",
        stats.uniform(loc=-1 / math.sqrt(IN), scale=2 / math.sqrt(IN)),
    ),
    # A row of a Haar-random semi-orthogonal matrix is uniform on the unit sphere of R^IN; one
    # coordinate x of it has (x + 1) / 2 ~ Beta((IN - 1) / 2, (IN - 1) / 2): var 1 / IN.
    (
        "orthogonal-tanh-gain",
        {"scheme": "orthogonal"},
        "tanh",
        stats.beta((IN - 1) / 2, (IN - 1) / 2, loc=-5 / 3, scale=10 / 3),
    ),
    (
        "orthogonal-explicit-gain",
        {"scheme": "orthogonal", "gain": 2.0},
        "relu",
        stats.beta((IN - 1) / 2, (IN - 1) / 2, loc=-2.0, scale=4.0),
    ),
]


@pytest.mark.parametrize(
    ("cfg", "activation", "target"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_mean_variance_and_distribution_match_the_formula(cfg, activation, target):
    w = draw(cfg, activation)
    mean, var = float(target.mean()), float(target.var())
    mu4 = (float(target.stats(moments="k")) + 3.0) * var**2  # 4th central moment from kurtosis
    se_mean = math.sqrt(var / N)
    se_var = math.sqrt((mu4 - var**2) / N)  # 2 sigma^4 / N for a normal, 0.8 sigma^4 / N uniform
    assert abs(w.mean() - mean) < 6 * se_mean, (w.mean(), mean, se_mean)
    assert abs(w.var(ddof=1) - var) < 6 * se_var, (w.var(ddof=1), var, se_var)
    assert stats.kstest(w, target.cdf).pvalue > 1e-3


def test_the_random_draws_are_not_degenerate():
    """The KS test above would also pass a sorted or repeated draw; check they look iid."""
    w = draw({"scheme": "normal", "std": 1.0}, shape=(256, 1024)).reshape(256, 1024)
    assert len(np.unique(w)) > 0.99 * w.size
    rows = np.corrcoef(w[:64])  # distinct rows are uncorrelated: |r| ~ 1/sqrt(1024)
    assert np.abs(rows[~np.eye(64, dtype=bool)]).max() < 6 / math.sqrt(1024)


@pytest.mark.parametrize(
    ("mean", "std", "cut"), [(0.0, 0.1, 2.0), (0.3, 1.5, 1.0), (-1.0, 0.01, 3.0)]
)
def test_truncated_normal_respects_its_bounds_exactly(mean, std, cut):
    cfg = {"scheme": "truncated_normal", "mean": mean, "std": std, "cut": cut}
    layer = nn.Linear(IN, OUT, bias=False)
    initialize_(layer, cfg, SEED, "relu")
    w = layer.weight.detach()
    low, high = (
        torch.tensor(mean - cut * std, dtype=torch.float32),
        torch.tensor(mean + cut * std, dtype=torch.float32),
    )
    assert w.min() >= low and w.max() <= high
    # ... and reaches close to them: it is cut, not shrunk.
    assert w.min() < low + 0.01 * std and w.max() > high - 0.01 * std


def test_torch_default_is_what_nn_linear_does():
    layer = nn.Linear(IN, OUT)
    torch.manual_seed(0)
    reference = nn.Linear(IN, OUT)
    initialize_(layer, {"scheme": "torch_default", "bias": {"kind": "torch_default"}}, SEED)
    bound = 1 / math.sqrt(IN)
    for ours, theirs in ((layer.weight, reference.weight), (layer.bias, reference.bias)):
        assert ours.abs().max() <= bound
        assert (
            stats.ks_2samp(ours.detach().numpy().ravel(), theirs.detach().numpy().ravel()).pvalue
            > 1e-3
        )


def test_fans_of_linear_and_conv_weights():
    assert fans(torch.empty(OUT, IN)) == (IN, OUT)
    assert fans(torch.empty(32, 16, 3, 5)) == (16 * 15, 32 * 15)
    with pytest.raises(ValueError):
        fans(torch.empty(7))


# ------------------------------------------------------------------------------------ orthogonal
@pytest.mark.parametrize(
    ("shape", "activation", "cfg", "gain"),
    [
        ((64, 128), "relu", {"scheme": "orthogonal"}, math.sqrt(2)),
        ((100, 100), "linear", {"scheme": "orthogonal"}, 1.0),
        ((128, 64), "tanh", {"scheme": "orthogonal"}, 5 / 3),
        ((48, 96), "relu", {"scheme": "orthogonal", "gain": 0.5}, 0.5),
        ((96, 48), "relu", {"scheme": "orthogonal", "gain": 3.0}, 3.0),
    ],
)
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, activation, cfg, gain):
    layer = nn.Linear(shape[1], shape[0], bias=False)
    initialize_(layer, cfg, SEED, activation)
    w = layer.weight.detach().double()
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
    eye = torch.eye(min(shape), dtype=torch.float64)
    torch.testing.assert_close(gram, gain**2 * eye, atol=1e-5 * gain**2, rtol=0)


# ------------------------------------------------------------------------------------------ ZerO
def test_hadamard_is_sylvester():
    for n in (1, 2, 4, 64):
        h = hadamard(n)
        assert h.shape == (n, n) and set(h.unique().tolist()) <= {-1.0, 1.0}
        torch.testing.assert_close(h @ h.T, n * torch.eye(n), atol=0, rtol=0)
    assert torch.equal(hadamard(4)[1], torch.tensor([1.0, -1.0, 1.0, -1.0]))
    for bad in (0, 3, 12):
        with pytest.raises(ValueError):
            hadamard(bad)


def test_zero_is_bit_identical_across_seeds():
    nets = [build_mlp(64, 10, [256, 128, 128, 100], "relu") for _ in range(3)]
    for seed, net in zip((0, 1, 987654), nets, strict=True):
        initialize_(net, {"scheme": "hadamard_identity"}, seed, "relu")
    for other in nets[1:]:
        assert all(torch.equal(a, b) for a, b in zip(weights(nets[0]), weights(other), strict=True))


def test_zero_is_identity_partial_identity_or_hadamard():
    net = build_mlp(64, 10, [256, 128, 128, 100], "relu")
    initialize_(net, {"scheme": "hadamard_identity"}, 0, "relu")
    up, down, square, down2, out = weights(net)
    # out > in (64 -> 256): c * I* H_m I* with m = ceil(log2 256) = 8, c = 2^(-(m-1)/2).
    c = 2.0 ** (-(8 - 1) / 2)
    assert torch.equal(up, c * hadamard(256)[:, :64])
    torch.testing.assert_close(up.T @ up, 2.0 * torch.eye(64))  # c^2 * 2^m = 2: orthogonal cols
    # out < in (256 -> 128, 128 -> 100, 100 -> 10): the first `out` coordinates pass through.
    for w in (down, down2, out):
        assert torch.equal(w, torch.eye(w.shape[0], w.shape[1]))
    assert torch.equal(square, torch.eye(128))  # out == in: the identity


def test_zero_hadamard_for_a_size_that_is_not_a_power_of_two():
    layer = nn.Linear(20, 100, bias=False)  # m = ceil(log2 100) = 7
    initialize_(layer, {"scheme": "hadamard_identity"}, 0)
    assert torch.equal(layer.weight.detach(), 2.0**-3 * hadamard(128)[:100, :20])


def digits_accuracy(net: nn.Module, steps: int = 300) -> float:
    """Train ``net`` on sklearn's digits with Adam; return the held-out accuracy."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        torch.tensor(x / 16.0, dtype=torch.float32),
        torch.tensor(y),
        test_size=0.3,
        random_state=0,
        stratify=y,
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(y_train), (64,), generator=g)
        loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (net(x_test).argmax(1) == y_test).float().mean().item()


def test_zero_trains_digits_well_above_chance():
    """ZerO starts from a fixed, seed-free network and still learns (chance is 0.1).

    Measured: 0.97 (64-256-128-10, ReLU, 300 Adam steps), as He gets; the bar leaves margin.
    The control, all-zero weights, stays at chance: a fixed init that is not ZerO cannot learn.
    """
    net = build_mlp(64, 10, [256, 128], "relu")
    initialize_(net, {"scheme": "hadamard_identity"}, 0, "relu")
    assert digits_accuracy(net) > 0.9
    initialize_(net, {"scheme": "zeros"}, 0, "relu")
    assert digits_accuracy(net, steps=100) < 0.2


# ------------------------------------------------------------------------------------------ LSUV
def reference_lsuv(net: nn.Module, x: torch.Tensor, tol: float, max_iter: int) -> None:
    """Mishkin & Matas' loop as written: for each layer from the input, run the whole network,
    divide W by the std of the layer's output, until |var - 1| < tol (max_iter rescalings)."""
    for layer in linear_layers(net):
        out: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _i, o, out=out: out.append(o))
        for _ in range(max_iter):
            out.clear()
            net(x)
            var = out[0].var().item()
            if abs(var - 1.0) < tol:
                break
            layer.weight.div_(math.sqrt(var))
        handle.remove()


def layer_output_variances(net: nn.Module, x: torch.Tensor) -> list[float]:
    out: list[float] = []
    handles = [
        layer.register_forward_hook(lambda _m, _i, o: out.append(o.var().item()))
        for layer in linear_layers(net)
    ]
    net(x)
    for handle in handles:
        handle.remove()
    return out


@pytest.mark.parametrize(
    ("activation", "bias", "tol"),
    [
        ("tanh", {"kind": "zeros"}, 0.1),
        ("relu", {"kind": "zeros"}, 0.05),
        ("relu", {"kind": "normal", "std": 0.3}, 0.02),
    ],
)
@torch.no_grad()
def test_lsuv_gives_every_layer_unit_output_variance_on_the_batch(activation, bias, tol):
    x = 3.0 * batch_of(32, 256) + 1.0  # far from unit variance on purpose
    net = build_mlp(32, 10, [64] * 8, activation)
    cfg = {"scheme": "lsuv", "tol": tol, "max_iter": 10, "batch_size": 256, "bias": bias}
    initialize_(net, cfg, SEED, activation, draw_batch=lambda n: x[:n])
    variances = layer_output_variances(net, x)
    assert len(variances) == 9
    assert all(abs(v - 1.0) < tol for v in variances), variances

    # The one-pass implementation is the layer-by-layer algorithm: same start, same result.
    ref = build_mlp(32, 10, [64] * 8, activation)
    initialize_(ref, {"scheme": "orthogonal", "gain": 1.0, "bias": bias}, SEED, activation)
    reference_lsuv(ref, x, tol, 10)
    for ours, theirs in zip(weights(net), weights(ref), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


@torch.no_grad()
def test_lsuv_uses_batch_size_inputs_and_only_rescales_its_own_layers():
    x = 2.0 * batch_of(32, 512)
    asked: list[int] = []

    def draw_batch(n: int) -> torch.Tensor:
        asked.append(n)
        return x[:n]

    net = build_mlp(32, 10, [64] * 4, "relu")
    cfg = {"scheme": "he", "layers": [{"select": "1:3", "scheme": "lsuv", "batch_size": 100}]}
    initialize_(net, cfg, SEED, "relu", draw_batch=draw_batch)
    assert asked == [100]
    he = build_mlp(32, 10, [64] * 4, "relu")
    initialize_(he, {"scheme": "he"}, SEED, "relu")
    w, w_he = weights(net), weights(he)
    for i in (0, 3, 4):
        assert torch.equal(w[i], w_he[i])
    variances = layer_output_variances(net, x[:100])
    assert abs(variances[1] - 1) < 0.1 and abs(variances[2] - 1) < 0.1


def test_lsuv_without_a_data_batch_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^init\.scheme='lsuv': needs a data batch"):
        initialize_(small_net(), {"scheme": "lsuv"}, 0)


# ------------------------------------------------------------------------------- scale and bias
@pytest.mark.parametrize(
    "cfg",
    [
        {"scheme": "normal", "std": 0.3},
        {"scheme": "xavier"},
        {"scheme": "orthogonal"},
        {"scheme": "hadamard_identity"},
        {"scheme": "constant", "value": 0.7},
        {"scheme": "he"},
    ],
)
@pytest.mark.parametrize("scale", [0.001, 0.1, 10.0])
def test_scale_multiplies_the_drawn_weights_exactly(cfg, scale):
    base, scaled = small_net(), small_net()
    initialize_(base, cfg, SEED)
    initialize_(scaled, {**cfg, "scale": scale}, SEED)
    for w, ws in zip(weights(base), weights(scaled), strict=True):
        assert torch.equal(ws, w * scale)


def biases(net: nn.Module) -> list[torch.Tensor]:
    return [layer.bias.detach().clone() for layer in linear_layers(net)]


def test_bias_rules_zeros_and_constant():
    net = small_net()
    initialize_(net, {"scheme": "normal"}, SEED)
    assert all(torch.equal(b, torch.zeros_like(b)) for b in biases(net))  # the default
    initialize_(net, {"scheme": "normal", "bias": {"kind": "constant", "value": -0.25}}, SEED)
    assert all(torch.equal(b, torch.full_like(b, -0.25)) for b in biases(net))


def test_bias_rule_normal_has_its_std_and_is_seeded():
    layer = nn.Linear(8, 20_000)
    initialize_(layer, {"scheme": "zeros", "bias": {"kind": "normal", "std": 0.5}}, SEED)
    b = layer.bias.detach().double().numpy()
    assert abs(b.mean()) < 6 * 0.5 / math.sqrt(b.size)
    assert abs(b.var(ddof=1) - 0.25) < 6 * 0.25 * math.sqrt(2 / (b.size - 1))
    assert stats.kstest(b, stats.norm(0, 0.5).cdf).pvalue > 1e-3
    # its own stream: the same bias whatever the weights' scheme, a new one with a new seed
    other = nn.Linear(8, 20_000)
    initialize_(other, {"scheme": "he", "bias": {"kind": "normal", "std": 0.5}}, SEED)
    assert torch.equal(layer.bias, other.bias)
    initialize_(other, {"scheme": "zeros", "bias": {"kind": "normal", "std": 0.5}}, SEED + 1)
    assert not torch.equal(layer.bias, other.bias)


def test_bias_rule_default_std_is_the_yaml_default():
    layer, other = nn.Linear(8, 1000), nn.Linear(8, 1000)
    initialize_(layer, {"scheme": "zeros", "bias": {"kind": "normal"}}, SEED)
    common = OmegaConf.load(CONF / "shared" / "init_common.yaml")
    initialize_(
        other, {"scheme": "zeros", "bias": {"kind": "normal", "std": common.bias.std}}, SEED
    )
    assert torch.equal(layer.bias, other.bias) and common.bias.std == 0.1


def test_bias_rule_torch_default_uses_fan_in_not_scale():
    layer = nn.Linear(400, 20_000)
    initialize_(layer, {"scheme": "normal", "scale": 10.0, "bias": {"kind": "torch_default"}}, SEED)
    b = layer.bias.detach().double().numpy()
    bound = 1 / math.sqrt(400)
    assert np.abs(b).max() <= bound
    assert stats.kstest(b, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3


def test_bias_rules_are_ignored_by_bias_free_layers_but_still_checked():
    net = small_net(bias=False)
    initialize_(net, {"scheme": "normal", "bias": {"kind": "normal", "std": 1.0}}, SEED)
    with pytest.raises(ConfigError, match=r"^init\.bias\.kind='gaussian': must be one of"):
        initialize_(net, {"scheme": "normal", "bias": {"kind": "gaussian"}}, SEED)


# ------------------------------------------------------------------------------ per-layer rules
def test_layer_rule_with_a_slice_gives_the_first_layers_another_scheme():
    net = small_net()
    cfg = {"scheme": "zeros", "layers": [{"select": "0:2", "scheme": "normal", "std": 1.0}]}
    specs = initialize_(net, cfg, SEED)
    assert [s.scheme for s in specs] == ["normal", "normal", "zeros", "zeros"]
    assert specs[0].params == {"std": 1.0}
    w = weights(net)
    assert 0.7 < w[0].std() < 1.3 and 0.8 < w[1].std() < 1.2
    assert not w[2].any() and not w[3].any()


@pytest.mark.parametrize(
    ("select", "chosen"),
    [
        (0, [0]),
        (3, [3]),
        (-1, [3]),
        (-4, [0]),
        ([0, 3], [0, 3]),
        ([-1, 1], [1, 3]),
        ("1:3", [1, 2]),
        ("-2:", [2, 3]),
        (":1", [0]),
        ("::2", [0, 2]),
        ("0:4", [0, 1, 2, 3]),
        ("-4:-3", [0]),
    ],
)
def test_layer_rule_selectors(select, chosen):
    specs = layer_specs({"scheme": "zeros", "layers": [{"select": select, "scheme": "ones"}]}, 4)
    assert [i for i, s in enumerate(specs) if s.scheme == "ones"] == chosen


def test_layer_rule_selectors_from_hydra_containers():
    cfg = OmegaConf.create({"scheme": "zeros", "layers": [{"select": [0, -1], "scheme": "ones"}]})
    assert [s.scheme for s in layer_specs(cfg, 4)] == ["ones", "zeros", "zeros", "ones"]


def test_layer_rules_apply_in_order_and_inherit_or_reset_parameters():
    cfg = {
        "scheme": "normal",
        "mean": 0.5,
        "std": 0.01,
        "scale": 2.0,
        "bias": {"kind": "constant", "value": 0.1},
        "layers": [
            {"select": "0:3", "std": 0.2},  # same scheme: inherits
            {"select": 1, "scheme": "uniform", "high": 0.5},  # new scheme: defaults
            {"select": -1, "scale": 3.0, "bias": {"value": 0.4}},
        ],
    }
    specs = layer_specs(cfg, 4)
    assert [(s.scheme, s.params, s.scale) for s in specs] == [
        ("normal", {"mean": 0.5, "std": 0.2}, 2.0),
        ("uniform", {"high": 0.5}, 2.0),
        ("normal", {"mean": 0.5, "std": 0.2}, 2.0),
        ("normal", {"mean": 0.5, "std": 0.01}, 3.0),
    ]
    assert [s.bias["value"] for s in specs] == [0.1, 0.1, 0.1, 0.4]
    assert all(s.bias["kind"] == "constant" for s in specs)


# ---------------------------------------------------------------------------- reproducibility
def test_a_layer_does_not_depend_on_other_layers_or_on_earlier_draws():
    """Layer 2 gets N(0, 1) in three networks whose other layers differ, with the global RNG
    moved in between: it must be bit-identical."""
    configs = [
        {"scheme": "normal", "std": 1.0},
        {"scheme": "zeros", "layers": [{"select": 2, "scheme": "normal", "std": 1.0}]},
        {
            "scheme": "orthogonal",
            "layers": [
                {"select": 2, "scheme": "normal", "std": 1.0},
                {"select": 0, "scheme": "truncated_normal"},
            ],
        },
    ]
    layer2 = []
    for k, cfg in enumerate(configs):
        torch.manual_seed(100 + k)
        torch.randn(1000 * (k + 1))  # a different amount drawn before each time
        net = small_net()
        initialize_(net, cfg, SEED)
        layer2.append(linear_layers(net)[2].weight.detach().clone())
    assert all(torch.equal(layer2[0], w) for w in layer2[1:])


@pytest.mark.parametrize("scheme", [s for s in MLP_SCHEMES if s != "lsuv"])
def test_initializing_leaves_the_global_rng_alone(scheme):
    net = small_net()  # building the Linear layers draws from the global RNG; initializing not
    state = torch.get_rng_state()
    initialize_(net, {"scheme": scheme, "bias": {"kind": "normal"}}, SEED)
    assert torch.equal(torch.get_rng_state(), state)


def init_weights(scheme: str, seed: int, dtype: torch.dtype = torch.float32):
    x = batch_of(8)
    net = small_net().to(dtype)
    initialize_(
        net,
        {"scheme": scheme, "bias": {"kind": "normal"}},
        seed,
        "relu",
        draw_batch=lambda n: x[:n].to(dtype),
    )
    return weights(net) + biases(net)


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
def test_same_init_seed_same_weights_different_seed_different_weights(scheme):
    a, b, c = init_weights(scheme, 3), init_weights(scheme, 3), init_weights(scheme, 4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(not torch.equal(x, z) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("scheme", DETERMINISTIC_SCHEMES)
def test_deterministic_schemes_ignore_the_seed(scheme):
    a, b = init_weights(scheme, 3), init_weights(scheme, 4)
    assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4], strict=True))


@pytest.mark.parametrize("scheme", [s for s in MLP_SCHEMES if s != "lsuv"])
def test_same_weights_in_any_dtype(scheme):
    for x, y in zip(init_weights(scheme, 5), init_weights(scheme, 5, torch.float64), strict=True):
        assert torch.equal(x.double(), y)


def test_layer_generators_are_distinct_per_seed_layer_and_stream():
    draws = {
        (s, i, k): torch.rand(4, generator=layer_generator(s, i, k)).tolist()
        for s in (0, 1)
        for i in (0, 1)
        for k in (0, 1)
    }
    assert len({tuple(v) for v in draws.values()}) == len(draws)


# ----------------------------------------------------------------------------------------- errors
ERRORS = [
    ({"scheme": "normal", "std": -0.1}, r"init\.std=-0\.1: must be a number >= 0"),
    ({"scheme": "normal", "std": "abc"}, r"init\.std='abc': must be a number >= 0"),
    ({"scheme": "truncated_normal", "std": 0.0}, r"init\.std=0\.0: must be a number > 0"),
    ({"scheme": "truncated_normal", "cut": -1}, r"init\.cut=-1: must be a number > 0"),
    ({"scheme": "uniform", "low": 0.5, "high": 0.5}, r"init\.low=0\.5: must be < high"),
    ({"scheme": "uniform", "low": 1, "high": -1}, r"init\.low=1: must be < high \(-1\)"),
    ({"scheme": "uniform", "high": None}, r"init\.high=None: must be a finite number"),
    ({"scheme": "constant", "value": "x"}, r"init\.value='x': must be a finite number"),
    (
        {"scheme": "xavier", "distribution": "cauchy"},
        r"init\.distribution='cauchy': must be one of normal, uniform",
    ),
    ({"scheme": "he", "distribution": "laplace"}, r"init\.distribution='laplace': must be one of"),
    ({"scheme": "lecun", "distribution": "Normal"}, r"init\.distribution='Normal': must be one"),
    ({"scheme": "he", "mode": "fan_avg"}, r"init\.mode='fan_avg': must be one of fan_in, fan_out"),
    (
        {"scheme": "he", "nonlinearity": "swish"},
        r"init\.nonlinearity='swish': must be one of leaky_relu, linear, relu, selu, sigmoid, tanh",
    ),
    ({"scheme": "he", "negative_slope": -0.1}, r"init\.negative_slope=-0\.1: must be a number"),
    ({"scheme": "xavier", "gain": 0}, r"init\.gain=0: must be a number > 0"),
    ({"scheme": "orthogonal", "gain": -1.0}, r"init\.gain=-1\.0: must be a number > 0"),
    ({"scheme": "lecun", "gain": 0.0}, r"init\.gain=0\.0: must be a number > 0"),
    ({"scheme": "normal", "scale": 0}, r"init\.scale=0: must be a number > 0"),
    ({"scheme": "normal", "scale": -1.0}, r"init\.scale=-1\.0: must be a number > 0"),
    (
        {"scheme": "normal", "layers": [{"select": 1, "scale": 0.0}]},
        r"init\.layers\[0\]\.scale=0\.0: must be a number > 0",
    ),
    (
        {"scheme": "glorot"},
        r"init\.scheme='glorot': must be one of constant, fixup, "
        r"hadamard_identity, he, lecun, lsuv, normal, ones, orthogonal, "
        r"torch_default, truncated_normal, uniform, xavier, zero_init_residual, "
        r"zeros$",
    ),
    (
        {"scheme": "normal", "layers": [{"select": 0, "scheme": "kaiming"}]},
        r"init\.layers\[0\]\.scheme='kaiming': must be one of constant, fixup, hadamard_identity",
    ),
    (
        {"scheme": "normal", "gain": 2.0},
        r"init\.gain=2\.0: not a parameter of scheme 'normal'; valid: mean, std, scheme, scale, "
        r"bias, layers, norm$",
    ),
    (
        {"scheme": "normal", "layers": [{"select": 0, "scheme": "uniform", "std": 1}]},
        r"init\.layers\[0\]\.std=1: not a parameter of scheme 'uniform'; valid: low, high,",
    ),
    ({"scheme": "zeros", "tol": 0.1}, r"init\.tol=0\.1: not a parameter of scheme 'zeros'"),
    (
        {"scheme": "normal", "layers": [{"select": 4, "std": 1}]},
        r"init\.layers\[0\]\.select=4: layer indices must be integers in -4\.\.3 "
        r"\(the network has 4 weight layers\)",
    ),
    ({"scheme": "normal", "layers": [{"select": -5}]}, r"init\.layers\[0\]\.select=-5: layer"),
    (
        {"scheme": "normal", "layers": [{"select": 0}, {"select": [1, 9]}]},
        r"init\.layers\[1\]\.select=\[1, 9\]: layer indices must be integers in -4\.\.3",
    ),
    ({"scheme": "normal", "layers": [{"select": "2"}]}, r"init\.layers\[0\]\.select='2': layer"),
    ({"scheme": "normal", "layers": [{"select": True}]}, r"init\.layers\[0\]\.select=True"),
    (
        {"scheme": "normal", "layers": [{"select": "4:6"}]},
        r"init\.layers\[0\]\.select='4:6': slice bounds must be in -4\.\.4 "
        r"\(the network has weight layers 0\.\.3\)",
    ),
    (
        {"scheme": "normal", "layers": [{"select": "0:9"}]},
        r"init\.layers\[0\]\.select='0:9': slice bounds must be in -4\.\.4",
    ),
    (
        {"scheme": "normal", "layers": [{"select": "2:1"}]},
        r"init\.layers\[0\]\.select='2:1': selects no layer; the network has weight layers 0\.\.3",
    ),
    ({"scheme": "normal", "layers": [{"select": []}]}, r"init\.layers\[0\]\.select=\[\]: selects"),
    (
        {"scheme": "normal", "layers": [{"select": "a:b"}]},
        r"init\.layers\[0\]\.select='a:b': not a slice like '0:2'",
    ),
    (
        {"scheme": "normal", "layers": [{"scheme": "ones"}]},
        r"init\.layers\[0\]=\{'scheme': 'ones'\}: a rule needs a 'select' key",
    ),
    (
        {"scheme": "normal", "bias": {"kind": "uniform"}},
        r"init\.bias\.kind='uniform': must be one of constant, normal, torch_default, zeros$",
    ),
    (
        {"scheme": "normal", "bias": {"kind": "normal", "std": -1}},
        r"init\.bias\.std=-1: must be a number >= 0",
    ),
    (
        {"scheme": "normal", "bias": {"kind": "constant", "value": None}},
        r"init\.bias\.value=None: must be a finite number",
    ),
    (
        {"scheme": "normal", "bias": {"kind": "normal", "mean": 1.0}},
        r"init\.bias\.mean=1\.0: not a key of the bias rule; valid: kind, value, std",
    ),
    (
        {"scheme": "normal", "layers": [{"select": 0, "bias": {"kind": "laplace"}}]},
        r"init\.layers\[0\]\.bias\.kind='laplace': must be one of",
    ),
    # a value set by a rule is reported at that rule, one set at the top at the top
    (
        {"scheme": "normal", "layers": [{"select": 1, "scheme": "uniform", "low": 1, "high": 0}]},
        r"init\.layers\[0\]\.low=1: must be < high \(0\)",
    ),
    (
        {"scheme": "uniform", "low": 1, "high": 0, "layers": [{"select": 0, "scheme": "normal"}]},
        r"init\.low=1: must be < high \(0\)",
    ),
    (
        {"scheme": "normal", "layers": [{"select": "1:", "bias": {"kind": "normal", "std": -2}}]},
        r"init\.layers\[0\]\.bias\.std=-2: must be a number >= 0",
    ),
    (
        {"scheme": "he", "layers": [{"select": 0, "mode": "fan_avg"}]},
        r"init\.layers\[0\]\.mode='fan_avg': must be one of fan_in, fan_out",
    ),
    ({"scheme": "lsuv", "tol": 0}, r"init\.tol=0: must be a number > 0"),
    ({"scheme": "lsuv", "max_iter": 0}, r"init\.max_iter=0: must be an integer >= 1"),
    ({"scheme": "lsuv", "batch_size": 1}, r"init\.batch_size=1: must be an integer >= 2"),
]


@pytest.mark.parametrize(("cfg", "pattern"), ERRORS, ids=[p.split(":")[0][:40] for _, p in ERRORS])
def test_invalid_config_is_a_one_line_error_naming_the_field(cfg, pattern):
    x = batch_of(8)
    with pytest.raises(ConfigError) as err:
        initialize_(small_net(), cfg, SEED, "relu", draw_batch=lambda n: x[:n])
    message = str(err.value)
    assert "\n" not in message
    assert re.match(pattern, message), message


def test_unknown_model_activation_for_a_gain_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^model\.activation='swish': must be one of"):
        initialize_(small_net(), {"scheme": "xavier", "gain": "auto"}, SEED, "swish")
    initialize_(small_net(), {"scheme": "xavier"}, SEED, "swish")  # gain 1: no activation read


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_init_seed_is_a_config_error(seed):
    with pytest.raises(ConfigError, match=r"^init_seed=.*: must be an integer >= 0"):
        initialize_(small_net(), {"scheme": "normal"}, seed)


# ---------------------------------------------------------------- vectorized: 100 x 256 in a blink
@pytest.fixture(scope="module")
def deep_net() -> nn.Sequential:
    return build_mlp(256, 256, [256] * 99, "relu", bias=False)


@pytest.mark.parametrize("scheme", MLP_SCHEMES)
@torch.no_grad()
def test_every_scheme_initializes_a_100_layer_256_wide_mlp(deep_net, scheme):
    """The S3 network: each scheme is a handful of tensor ops per layer (see
    scripts/benchmark_init.py for the times); a Python loop over elements would never finish."""
    x = batch_of(256, 256)
    specs = initialize_(deep_net, {"scheme": scheme}, SEED, "relu", draw_batch=lambda n: x[:n])
    assert len(specs) == 100
    assert all(torch.isfinite(w).all() for w in weights(deep_net))


# ------------------------------------------------------------------------------ the yaml files
def scheme_defaults(name: str) -> dict:
    scheme = get_scheme(name)
    fns = [scheme.fill_] + ([scheme.network_pass] if scheme.network_pass else [])
    return {
        p.name: p.default
        for fn in fns
        for p in inspect.signature(fn).parameters.values()
        if p.name in scheme.params
    }


def test_every_scheme_has_a_yaml_whose_keys_are_its_parameters():
    assert {p.stem for p in (CONF / "init").glob("*.yaml")} == set(list_schemes())
    x = batch_of(8)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in list_schemes():
            scheme = get_scheme(name)
            init = OmegaConf.to_container(
                compose("config", overrides=[f"init={name}"]).init, resolve=True
            )
            assert init["scheme"] == name
            assert set(init) == set(scheme.params) | set(COMMON_KEYS), name
            # ... with the function's defaults, and the common keys' defaults
            assert {k: init[k] for k in scheme.params} == scheme_defaults(name), name
            assert init["scale"] == 1.0 and init["layers"] == []
            assert set(init["bias"]) == set(BIAS_KEYS)
            # ... and it is a valid config as it stands
            net = small_resnet() if name in RESIDUAL_SCHEMES else small_net()
            initialize_(net, init, SEED, "relu", draw_batch=lambda n: x[:n])


def test_every_study_preset_in_conf_init_is_a_valid_init():
    """The presets in sub-folders (``init=s4/zeros``, ...) compose and initialize S4's net."""
    presets = sorted(
        p.relative_to(CONF / "init").with_suffix("").as_posix()
        for p in (CONF / "init").glob("*/*.yaml")
    )
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for preset in presets:
            init = OmegaConf.to_container(
                compose("config", overrides=[f"init={preset}"]).init, resolve=True
            )
            assert init["scheme"] in list_schemes(), preset
            assert set(init) <= set(get_scheme(init["scheme"]).params) | set(COMMON_KEYS), preset
            net = build_mlp(5, 2, [4, 3, 2], "sigmoid")
            x = batch_of(5)
            initialize_(net, init, SEED, "sigmoid", draw_batch=lambda n, x=x: x[:n])


def test_the_bias_and_norm_defaults_are_read_from_the_common_yaml():
    """One source: conf/shared/init_common.yaml has the rules' keys and their values, and a
    direct call that leaves them out gets those values."""
    common = OmegaConf.to_container(OmegaConf.load(CONF / "shared" / "init_common.yaml"))
    assert set(common) == set(COMMON_KEYS) - {"scheme"}
    assert tuple(common["bias"]) == BIAS_KEYS and tuple(common["norm"]) == NORM_KEYS
    assert common_defaults() == common
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    [spec] = initialize_(net, {"scheme": "he"}, SEED)
    assert spec.bias == common["bias"]
    assert torch.equal(net[1].weight, torch.full((3,), float(common["norm"]["value"])))


def test_a_per_layer_rule_from_the_command_line():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["init=zeros", "init.layers=[{select: '0:2', scheme: normal, std: 1.0}]"],
        )
    init = OmegaConf.to_container(cfg.init, resolve=True)
    specs = layer_specs(init, 4)
    assert [s.scheme for s in specs] == ["normal", "normal", "zeros", "zeros"]


def test_register_refuses_a_name_that_is_taken():
    with pytest.raises(ValueError, match="'he' is already registered"):
        register("he")(lambda weight, generator: None)


@pytest.mark.parametrize("module", ["initsweep.init.registry", "initsweep.init.apply"])
def test_the_registry_is_full_whichever_module_is_imported_first(module):
    """The package's ``__init__`` registers the built-in schemes: no import-order surprise."""
    code = (
        f"import {module}; from initsweep.init.registry import list_schemes; "
        "print(' '.join(list_schemes()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == {p.stem for p in (CONF / "init").glob("*.yaml")}


def test_only_a_data_pass_needs_data():
    """``needs_data`` is explicit: LSUV opts in; the residual passes read the network only."""
    assert [n for n in list_schemes() if get_scheme(n).needs_data] == ["lsuv"]
    assert get_scheme("fixup").network_pass is not None
    with pytest.raises(ValueError, match="has no network_pass"):
        register("needs_data_without_pass", needs_data=True)
    assert "needs_data_without_pass" not in list_schemes()


@pytest.mark.parametrize("module", [schemes, passes, apply])
def test_docstring_examples_run(module):
    """Each scheme's ``Example:`` (torch.nn.init style) runs as written."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_scheme_called_directly_raises_value_error_like_torch():
    from initsweep.init.checks import InvalidInitParameter

    weight = torch.empty(3, 4)
    with pytest.raises(ValueError, match=r"^low=1: must be < high \(0\)$") as err:
        get_scheme("uniform").fill_(weight, torch.Generator(), low=1, high=0)
    assert isinstance(err.value, InvalidInitParameter) and err.value.param == "low"
