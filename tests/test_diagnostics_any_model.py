"""Diagnostics on any network (issue 14): conv channels as units, distinct filters, BatchNorm
statistics, each layer's own input for std_ratio, module paths in the records and plots."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initsweep.diagnostics.plots import PLOT_FILES, draw_all
from initsweep.diagnostics.probe import LAYER_METRICS, RECORD_FIELDS, measure
from initsweep.init.apply import initialize_
from initsweep.models.layers import weight_layers
from initsweep.models.zoo import resnet


def conv_net(weights: torch.Tensor, norm: bool = False) -> nn.Sequential:
    conv = nn.Conv2d(1, weights.shape[0], 3, padding=1, bias=False)
    conv.weight.data.copy_(weights)
    layers = [
        conv,
        *([nn.BatchNorm2d(weights.shape[0])] if norm else []),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(weights.shape[0] * 16, 2),
    ]
    return nn.Sequential(*layers)


def probe(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g) + 0.1, torch.zeros(n, dtype=torch.long)


def test_conv_channels_are_the_units():
    """Four filters: two identical positive ones, a different positive one, and a negative one
    that a positive input never activates: 3 distinct filters, 1 dead channel of 4."""
    w = torch.ones(4, 1, 3, 3)
    w[2, 0, 1, 1] = 2.0
    w[3] = -1.0
    row = measure(conv_net(w), *probe())[0]
    assert row["path"] == "0" and row["type"] == "Conv2d"
    assert row["distinct_units"] == 3.0
    assert row["dead_frac"] == 0.25
    identical = measure(conv_net(torch.ones(4, 1, 3, 3)), *probe())[0]
    assert identical["distinct_units"] == 1.0
    assert identical["effective_rank"] == pytest.approx(1.0, abs=1e-3)  # four copies of one map


def test_batchnorm_statistics_of_the_norm_after_a_layer():
    net = conv_net(torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1)), True)
    bn = net[1]
    bn.weight.data.copy_(torch.tensor([1.0, 2.0, 3.0, 0.0]))
    bn.running_mean.copy_(torch.tensor([0.5, -0.5, 1.0, -1.0]))
    bn.running_var.copy_(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    net.eval()
    conv_row, linear_row = measure(net, *probe())
    assert conv_row["norm_weight_mean"] == 1.5
    assert conv_row["norm_running_mean"] == 0.75 and conv_row["norm_running_var"] == 3.0
    assert all(
        math.isnan(linear_row[k])
        for k in ("norm_weight_mean", "norm_running_mean", "norm_running_var")
    )
    # the activation after the norm is what act_* measure: ReLU after BatchNorm
    with torch.no_grad():
        expected = torch.relu(bn(net[0](probe()[0])))
    assert conv_row["act_std"] == pytest.approx(float(expected.std()), rel=1e-6)


def test_resnet_rows_follow_weight_layers_with_their_own_input():
    net = resnet((1, 8, 8), 10, depth=8, width=4)
    initialize_(net, {"scheme": "he"}, 0)
    net.eval()
    x, y = torch.rand(16, 1, 8, 8), torch.zeros(16, dtype=torch.long)
    rows = measure(net, x, y)
    assert [r["path"] for r in rows] == [p for p, _ in weight_layers(net)]
    assert rows[0]["path"] == "stem" and rows[-1]["path"] == "fc"
    assert set(rows[0]) == set(LAYER_METRICS) - {"update_ratio"} | {"path", "type"}
    # std_ratio divides by the std of the layer's own input: for the second stage's first conv
    # that is the first stage's output (after the skip), not the previous conv's activation
    inputs = {}

    def keep_input(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        inputs.setdefault("x", args[0])

    handle = net.stages[1][0].conv1.register_forward_hook(keep_input)
    with torch.no_grad():
        net(x)
    handle.remove()
    row = rows[[p for p, _ in weight_layers(net)].index("stages.1.0.conv1")]
    assert row["std_ratio"] == pytest.approx(row["act_std"] / float(inputs["x"].std()), rel=1e-6)
    assert all(r["grad_norm"] > 0 for r in rows)


def test_plots_label_layers_by_module_path(tmp_path):
    net = resnet((1, 8, 8), 10, depth=8, width=4)
    initialize_(net, {"scheme": "he"}, 0)
    rows = measure(net.eval(), torch.rand(16, 1, 8, 8), torch.zeros(16, dtype=torch.long))
    records = [
        {"step": 0, "layer": i, **row, "update_ratio": math.nan} for i, row in enumerate(rows)
    ]
    assert list(records[0]) != list(RECORD_FIELDS)  # order does not matter to the plots
    weights = [m.weight.detach().numpy() for _, m in weight_layers(net)]
    inputs = {
        "name": "resnet-8",
        "losses": [2.3, 2.1, 1.9],
        "records": records,
        "weights_at_init": weights,
        "weights_at_end": weights,
        "layer_paths": [p for p, _ in weight_layers(net)],
    }
    paths = draw_all(inputs, tmp_path)
    assert [p.name for p in paths] == list(PLOT_FILES) and all(p.stat().st_size > 0 for p in paths)


def test_the_probe_sees_batchnorm_as_training_does_and_leaves_it_untouched():
    """At init a BatchNorm's running statistics are mean 0, variance 1: in eval mode it would
    pass the signal through unnormalized. The probe normalizes with the batch's statistics, as a
    training step does, and puts the running statistics back."""
    from initsweep.diagnostics.probe import probe_mode

    net = resnet((1, 8, 8), 10, depth=20, width=4)
    initialize_(net, {"scheme": "he"}, 0)
    net.train()
    x, y = torch.rand(32, 1, 8, 8), torch.zeros(32, dtype=torch.long)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with probe_mode(net):
        rows = measure(net, x, y)
        assert not net.fc.training and net.stem_bn.training
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    stem = rows[0]  # the stem's activation: ReLU of a batch-normalized signal
    with torch.no_grad():
        normalized = nn.functional.batch_norm(net.stem(x), None, None, training=True)
    assert stem["act_std"] == pytest.approx(float(torch.relu(normalized).std()), rel=1e-5)
    eval_rows = measure(net.eval(), x, y)  # what eval mode would have shown: unnormalized
    ratio = eval_rows[-2]["act_std"] / rows[-2]["act_std"]
    assert not 0.5 < ratio < 2, ratio
