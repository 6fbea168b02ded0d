"""Initializers on any network (issue 14): conv fans as torch computes them, ZerO and orthogonal
on conv kernels, LSUV on conv outputs, Embedding, the norm rule, zero-init-residual and Fixup on
residual nets, and rules that select layers by module path glob or by type."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from initsweep.errors import ConfigError
from initsweep.init.apply import initialize_
from initsweep.init.schemes import fans, hadamard
from initsweep.models.layers import norm_layers, weight_layers
from initsweep.models.zoo import BasicBlock, build_mlp, cnn, mlp, resnet

SEED = 7


def weights_of(net: nn.Module) -> dict[str, torch.Tensor]:
    return {path: m.weight.detach().clone() for path, m in weight_layers(net)}


# ------------------------------------------------------------------------------------ conv fans
@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv1d(8, 16, 5),
        nn.Conv2d(16, 32, 3),
        nn.Conv2d(16, 32, (3, 5), groups=4),
        nn.Conv3d(4, 8, 3),
        nn.Linear(30, 20),
        nn.Embedding(100, 12),
    ],
    ids=["conv1d", "conv2d", "conv2d-groups", "conv3d", "linear", "embedding"],
)
def test_fans_are_torchs(layer):
    assert fans(layer.weight) == nn.init._calculate_fan_in_and_fan_out(layer.weight)


@pytest.mark.parametrize(
    ("cfg", "activation", "std"),
    [
        ({"scheme": "he"}, "relu", math.sqrt(2 / (64 * 9))),
        ({"scheme": "he", "mode": "fan_out"}, "relu", math.sqrt(2 / (256 * 9))),
        ({"scheme": "lecun"}, "tanh", math.sqrt(1 / (64 * 9))),
        ({"scheme": "xavier", "distribution": "normal"}, "relu", math.sqrt(2 / ((64 + 256) * 9))),
        (
            {"scheme": "xavier", "distribution": "normal", "gain": "auto"},
            "tanh",
            5 / 3 * math.sqrt(2 / ((64 + 256) * 9)),
        ),
    ],
)
def test_conv_weights_follow_the_formula_with_the_receptive_field(cfg, activation, std):
    conv = nn.Conv2d(64, 256, 3, bias=False)  # 147,456 draws
    initialize_(conv, cfg, SEED, activation)
    w = conv.weight.detach().double().numpy().ravel()
    assert abs(w.var(ddof=1) - std**2) < 6 * std**2 * math.sqrt(2 / w.size)
    assert stats.kstest(w, stats.norm(0, std).cdf).pvalue > 1e-3


def test_torch_default_on_conv_and_its_bias_is_what_torch_does():
    conv = nn.Conv2d(32, 64, 3)
    initialize_(conv, {"scheme": "torch_default", "bias": {"kind": "torch_default"}}, SEED)
    bound = 1 / math.sqrt(32 * 9)
    w = conv.weight.detach().double().numpy().ravel()
    assert np.abs(w).max() <= bound
    assert stats.kstest(w, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
    assert conv.bias.abs().max() <= bound and conv.bias.std() > bound / 3


# ------------------------------------------------------------------------- ZerO and orthogonal
def test_zero_on_a_conv_kernel_is_the_matrix_at_the_centre():
    """Zhao et al. 2022, Algorithm 2: W[:, :, k//2, k//2] = Algorithm 1's matrix, 0 elsewhere."""
    up = nn.Conv2d(8, 16, 3, bias=False)  # out > in: c * I* H I*, m = 4, c = 2^(-3/2)
    initialize_(up, {"scheme": "hadamard_identity"}, SEED)
    expected = torch.zeros(16, 8, 3, 3)
    expected[:, :, 1, 1] = 2.0**-1.5 * hadamard(16)[:, :8]
    assert torch.equal(up.weight.detach(), expected)
    same = nn.Conv2d(8, 8, 3, padding=1, bias=False)  # out == in: the identity map on channels
    initialize_(same, {"scheme": "hadamard_identity"}, SEED)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(same(x), x)
    line = nn.Conv1d(6, 4, 5, bias=False)  # out < in: the first 4 channels pass through
    initialize_(line, {"scheme": "hadamard_identity"}, SEED)
    x = torch.randn(3, 6, 9)
    torch.testing.assert_close(nn.functional.conv1d(x, line.weight, padding=2), x[:, :4])


def test_orthogonal_conv_kernel_flat_and_delta():
    flat = nn.Conv2d(4, 8, 3, bias=False)  # (8, 36): orthonormal rows times the gain
    initialize_(flat, {"scheme": "orthogonal", "gain": 2.0}, SEED)
    w = flat.weight.detach().reshape(8, -1).double()
    torch.testing.assert_close(w @ w.T, 4.0 * torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0)
    delta = nn.Conv2d(8, 8, 3, padding=1, bias=False)  # Xiao et al. 2018: orthogonal at centre
    initialize_(delta, {"scheme": "orthogonal", "gain": 1.0, "kernel": "delta"}, SEED)
    kernel = delta.weight.detach().clone()
    centre = kernel[:, :, 1, 1].double()
    torch.testing.assert_close(
        centre @ centre.T, torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0
    )
    kernel[:, :, 1, 1] = 0
    assert not kernel.any()
    x = torch.randn(2, 8, 6, 6)  # an isometry on every position's channel vector
    torch.testing.assert_close(delta(x).norm(dim=1), x.norm(dim=1), atol=1e-4, rtol=1e-5)
    with pytest.raises(ConfigError, match=r"^init\.kernel='centre': must be one of delta, flat$"):
        initialize_(delta, {"scheme": "orthogonal", "kernel": "centre"}, SEED)


# ------------------------------------------------------------------------------------------ LSUV
@torch.no_grad()
def test_lsuv_gives_conv_and_linear_outputs_unit_variance():
    net = cnn((1, 8, 8), 10, channels=[8, 16], kernel_size=3)
    x = 3.0 * torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    initialize_(net, {"scheme": "lsuv", "tol": 0.05}, SEED, "relu", draw_batch=lambda n: x[:n])
    variances = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: variances.append(out.var().item()))
        for _, m in weight_layers(net)
    ]
    net(x)
    for hook in hooks:
        hook.remove()
    assert len(variances) == 5
    assert all(abs(v - 1) < 0.05 for v in variances), variances


# ------------------------------------------------------------------------------------- Embedding
class Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5000, 32, padding_idx=0)
        self.out = nn.Linear(32, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens).mean(1))


def test_embedding_torch_default_he_and_padding_row():
    bag = Bag()
    initialize_(bag, {"scheme": "torch_default"}, SEED)
    table = bag.embed.weight.detach()
    assert not table[0].any()  # the padding row is zero, as torch makes it
    assert stats.kstest(table[1:].double().numpy().ravel(), stats.norm(0, 1).cdf).pvalue > 1e-3
    initialize_(bag, {"scheme": "he"}, SEED)  # fans as torch reads a (5000, 32) weight
    table = bag.embed.weight.detach()[1:].double().numpy().ravel()
    assert stats.kstest(table, stats.norm(0, math.sqrt(2 / 32)).cdf).pvalue > 1e-3
    assert [path for path, _ in weight_layers(bag)] == ["embed", "out"]


# --------------------------------------------------------------------------- the norm rule
def test_norm_rule_sets_gamma_zeroes_beta_and_resets_running_statistics():
    net = resnet((1, 8, 8), 10, depth=8, width=4)
    norms = [m for _, m in norm_layers(net)]
    assert len(norms) == 7  # stem + 2 per block x 3 blocks
    for m in norms:  # as if trained: initialize_ must put everything back
        m.running_mean.fill_(3.0), m.running_var.fill_(5.0), m.bias.data.fill_(0.2)
        m.num_batches_tracked.fill_(9)
    for rule, value in (
        ({}, 1.0),
        ({"weight": "zeros"}, 0.0),
        ({"weight": "constant", "value": 0.25}, 0.25),
    ):
        initialize_(net, {"scheme": "he", "norm": rule}, SEED)
        for m in norms:
            assert torch.equal(m.weight.detach(), torch.full_like(m.weight, value))
            assert not m.bias.any() and not m.running_mean.any()
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert int(m.num_batches_tracked) == 0


@pytest.mark.parametrize(
    ("norm", "message"),
    [
        ({"weight": "half"}, r"^init\.norm\.weight='half': must be one of constant, ones, zeros$"),
        ({"weight": "constant", "value": "x"}, r"^init\.norm\.value='x': must be a finite number$"),
        (
            {"gamma": 1.0},
            r"^init\.norm\.gamma=1\.0: not a key of the norm rule; valid: weight, value",
        ),
    ],
)
def test_bad_norm_rule_is_one_line(norm, message):
    with pytest.raises(ConfigError, match=message):
        initialize_(resnet((1, 8, 8), 10, depth=8, width=4), {"scheme": "he", "norm": norm}, 0)


# ------------------------------------------------------------------- residual: Goyal and Fixup
def blocks_of(net: nn.Module) -> list[BasicBlock]:
    return [m for m in net.modules() if isinstance(m, BasicBlock)]


def test_zero_init_residual_zeroes_each_branchs_last_gamma_and_blocks_start_as_identity():
    he, zir = (resnet((1, 8, 8), 10, depth=14, width=4) for _ in range(2))
    initialize_(he, {"scheme": "he"}, SEED)
    initialize_(zir, {"scheme": "zero_init_residual"}, SEED)
    # the same He weights layer by layer (one generator per layer index): only gammas differ
    assert all(
        torch.equal(a, b)
        for a, b in zip(weights_of(he).values(), weights_of(zir).values(), strict=True)
    )
    for block in blocks_of(zir):
        assert not block.bn2.weight.any() and torch.equal(
            block.bn1.weight, torch.ones_like(block.bn1.weight)
        )
    zir.eval()
    x = torch.randn(4, 4, 8, 8)
    block = blocks_of(zir)[0]  # identity shortcut: the block is relu(x)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_zero_init_residual_without_batchnorm_zeroes_the_last_conv():
    net = resnet((1, 8, 8), 10, depth=8, width=4, norm="none")
    initialize_(net, {"scheme": "zero_init_residual", "bias": {"kind": "normal"}}, SEED)
    for block in blocks_of(net):
        assert not block.conv2.weight.any() and not block.conv2.bias.any()
        assert block.conv1.weight.any() and block.conv1.bias.any()


def test_fixup_scales_branches_by_l_to_the_minus_half_and_zeroes_last_layers():
    """ResNet-14: L = 6 branches of m = 2 layers: conv1 x 6^(-1/(2m-2)) = 6^(-1/2) of He's draw;
    conv2 and the classifier (weight and bias) zero; the stem is He's draw untouched."""
    he, fixup = (resnet((1, 8, 8), 10, depth=14, width=4, norm="none") for _ in range(2))
    bias = {"kind": "normal", "std": 0.5}
    initialize_(he, {"scheme": "he", "bias": bias}, SEED)
    initialize_(fixup, {"scheme": "fixup", "bias": bias}, SEED)
    w_he, w_fixup = weights_of(he), weights_of(fixup)
    assert torch.equal(w_fixup["stem"], w_he["stem"])
    for path in w_he:
        if path.endswith("conv1"):
            torch.testing.assert_close(w_fixup[path], w_he[path] * 6**-0.5, rtol=1e-6, atol=0)
        elif path.endswith("conv2"):
            assert not w_fixup[path].any()
    assert not fixup.fc.weight.any() and not fixup.fc.bias.any()
    assert len(blocks_of(fixup)) == 6


@pytest.mark.parametrize(
    ("net", "cfg", "message"),
    [
        (
            build_mlp(8, 3, [16]),
            {"scheme": "fixup"},
            r"^init\.scheme='fixup': the model has no residual blocks",
        ),
        (
            resnet((1, 8, 8), 10, depth=8, width=4, skip=False),
            {"scheme": "zero_init_residual"},
            r"^init\.scheme='zero_init_residual': the model has no residual blocks",
        ),
        (
            resnet((1, 8, 8), 10, depth=8, width=4),
            {"scheme": "he", "layers": [{"select": "stem", "scheme": "fixup"}]},
            r"^init\.layers\[0\]\.scheme='fixup': its rule selects no residual branch's last layer "
            r"\(the model has 3 residual blocks\)$",
        ),
    ],
    ids=["mlp", "plain-resnet", "rule-without-branches"],
)
def test_residual_schemes_need_residual_branches(net, cfg, message):
    with pytest.raises(ConfigError, match=message):
        initialize_(net, cfg, SEED)


# ------------------------------------------------------------------ selecting layers: path, type
def test_rules_select_by_module_path_glob_and_by_type():
    net = resnet((1, 8, 8), 10, depth=20, width=4)
    cfg = {
        "scheme": "he",
        "layers": [
            {"select": "stages.2.*.conv2", "scheme": "zeros"},
            {"type": "Linear", "scheme": "ones"},
            {"select": ["stem", 1], "scale": 0.5},
        ],
    }
    specs = initialize_(net, cfg, SEED)
    zeroed = [s.path for s in specs if s.scheme == "zeros"]
    assert zeroed == ["stages.2.0.conv2", "stages.2.1.conv2", "stages.2.2.conv2"]
    assert [s.path for s in specs if s.scheme == "ones"] == ["fc"]
    assert [s.path for s in specs if s.scale == 0.5] == ["stem", "stages.0.0.conv1"]
    w = weights_of(net)
    assert all(not w[p].any() for p in zeroed) and torch.equal(w["fc"], torch.ones(10, 16))
    assert specs[0].type == "Conv2d" and specs[-1].type == "Linear"


def test_type_and_select_together_intersect():
    net = cnn((1, 8, 8), 10)
    specs = initialize_(
        net,
        {
            "scheme": "he",
            "layers": [{"select": "classifier.*", "type": "Linear", "scheme": "zeros"}],
        },
        SEED,
    )
    assert [s.path for s in specs if s.scheme == "zeros"] == [
        "classifier.fc1",
        "classifier.fc2",
        "classifier.out",
    ]


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [{"select": "layer3.*.conv2", "scheme": "zeros"}],
            r"^init\.layers\[0\]\.select='layer3\.\*\.conv2': matches no weight layer's "
            r"module path; "
            r"the model's weight layers: stem, stages\.0\.0\.conv1, stages\.0\.0\.conv2, .*, fc "
            r"\(20 in all\)$",
        ),
        (
            [{"type": "Conv3d", "scheme": "zeros"}],
            r"^init\.layers\[0\]\.type='Conv3d': the model has no weight layer of this "
            r"type; its weight "
            r"layers are Conv2d \(19\), Linear \(1\) \(normalization layers follow init\.norm\)$",
        ),
        ([{"type": "BatchNorm2d", "scheme": "zeros"}], r"^init\.layers\[0\]\.type='BatchNorm2d': "),
        (
            [{"select": "fc", "type": "Conv2d", "scheme": "zeros"}],
            r"^init\.layers\[0\]='select and type': select and type together select no "
            r"weight layer$",
        ),
        (
            [{"select": "stem", "norm": {"weight": "zeros"}}],
            r"^init\.layers\[0\]\.norm=\{'weight': 'zeros'\}: a rule selects weight layers",
        ),
        (
            [{"select": "2", "scheme": "zeros"}],
            r"^init\.layers\[0\]\.select='2': layer indices must be integers in -20\.\.19",
        ),
    ],
)
def test_a_rule_that_selects_nothing_is_one_line_listing_what_the_model_has(layers, message):
    net = resnet((1, 8, 8), 10, depth=20, width=4)
    with pytest.raises(ConfigError) as err:
        initialize_(net, {"scheme": "he", "layers": layers}, SEED)
    assert "\n" not in str(err.value)
    assert re.match(message, str(err.value)), str(err.value)


def test_a_path_glob_on_the_mlp_selects_by_sequential_position():
    net = build_mlp(8, 3, [16, 16])  # paths "0", "2", "4": quoted digits stay indices
    specs = initialize_(net, {"scheme": "he", "layers": [{"select": "*", "scheme": "zeros"}]}, 0)
    assert [s.path for s in specs] == ["0", "2", "4"] and {s.scheme for s in specs} == {"zeros"}


# ---------------------------------------------------------------------- the MLP stays as it was
def test_the_mlp_factory_on_images_is_the_flat_mlp_bit_for_bit():
    """``model=mlp`` on 1x8x8 digits: the same layers, names and weights as ``build_mlp(64, ...)``
    (the generators are per layer index), and the same outputs on the flattened images."""
    image_net, flat_net = mlp((1, 8, 8), 10, [32, 16]), build_mlp(64, 10, [32, 16])
    for net in (image_net, flat_net):
        initialize_(net, {"scheme": "he", "bias": {"kind": "normal"}}, SEED)
    assert (
        list(image_net.state_dict())
        == list(flat_net.state_dict())
        == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    )
    for a, b in zip(image_net.state_dict().values(), flat_net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(image_net(x), flat_net(x.reshape(5, 64)))
