"""S4, "what symmetry really does", on the study's network: 5-4-3-2-2, sigmoid, MSE, plain SGD
with lr 0.8, biases 0.1 / 0.2 / 0.3 / 0.4 for the four weight layers, a fixed input batch.

Hidden layer h (h = 1, 2, 3) is the output of weight layer h - 1 and the input of weight layer h.
Its units are *identical* when the rows of W_{h-1} are equal, the entries of b_{h-1} are equal and
the columns of W_h are equal: then every unit computes the same output on every input, and the
layer acts as one unit. In those terms the study's claims read (and hold, as tested below):

1. Zero weights: after step k exactly the last k weight layers are non-zero (the update travels
   from the output backwards, one layer per step); after 4 steps all hidden units are identical:
   W_0 has equal rows (but distinct columns: it sees the real inputs), W_1 and W_2 are constant,
   and each row of W_3 is constant (the two output units may differ: they have different
   targets; with the study's all-ones target they are identical too).
2. Constant non-zero weights: that same state after one step.
3. Random W_0..W_{M-1}, the rest zero or constant: those stay random (distinct units), W_M ends
   row-equal (its rows equal, its columns distinct) and every hidden layer after M is identical.
4. Zero weights with a random bias: the units of every hidden layer are distinct after training
   (though W_0 and W_1 stay rank one for a long time: distinct units, one input direction).

Not asserted by the study but worth knowing: "without an activation, zero weights never change"
holds only with zero biases; with S4's biases the output layer moves at the first step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initsweep.init.apply import initialize_
from initsweep.models.layers import linear_layers
from initsweep.models.zoo import build_mlp

BIASES = (0.1, 0.2, 0.3, 0.4)
N_LAYERS = len(BIASES)
HIDDEN = (1, 2, 3)
_g = torch.Generator().manual_seed(0)
X = torch.randn(8, 5, generator=_g)  # the fixed input batch
TARGETS = {"random": torch.rand(8, 2, generator=_g), "ones": torch.ones(8, 2)}  # "ones": S4's y


def s4_net(
    scheme: str = "zeros",
    layers: tuple = (),
    activation: str = "sigmoid",
    study_biases: bool = True,
    **init,
) -> nn.Sequential:
    net = build_mlp(5, 2, [4, 3, 2], activation)
    bias_rules = (
        [{"select": i, "bias": {"kind": "constant", "value": b}} for i, b in enumerate(BIASES)]
        if study_biases
        else []
    )
    initialize_(net, {"scheme": scheme, **init, "layers": [*bias_rules, *layers]}, 0, activation)
    return net


def sgd_steps(net: nn.Module, steps: int, target: str = "random") -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.8)
    for _ in range(steps):
        loss = F.mse_loss(net(X), TARGETS[target])
        opt.zero_grad()
        loss.backward()
        opt.step()


def W(net: nn.Module, i: int) -> torch.Tensor:
    return linear_layers(net)[i].weight.detach()


def b(net: nn.Module, i: int) -> torch.Tensor:
    return linear_layers(net)[i].bias.detach()


def rows_equal(w: torch.Tensor, rel: float = 1e-5) -> bool:
    """All rows equal, up to ``rel`` times the largest entry (the weights can be ~1e-15)."""
    scale = w.abs().max().item()
    return (w - w[:1]).abs().max().item() <= rel * scale


def constant(w: torch.Tensor) -> bool:
    return rows_equal(w.reshape(-1, 1))


def rows_distinct(w: torch.Tensor, rel: float = 1e-3) -> bool:
    """No two rows equal: the smallest pairwise distance is a visible part of the largest row."""
    d = torch.cdist(w.double(), w.double()) + torch.eye(len(w), dtype=torch.float64) * 1e300
    return d.min().item() > rel * w.double().norm(dim=1).max().item()


def hidden_outputs(net: nn.Module) -> list[torch.Tensor]:
    outs, h = [], X
    with torch.no_grad():
        for module in net:
            h = module(h)
            if not isinstance(module, nn.Linear):
                outs.append(h)
    return outs


def units_identical(net: nn.Module, h: int) -> bool:
    same = rows_equal(W(net, h - 1)) and constant(b(net, h - 1)) and rows_equal(W(net, h).T)
    return same and rows_equal(hidden_outputs(net)[h - 1].T)  # one unit, on every input


def units_distinct(net: nn.Module, h: int) -> bool:
    w_in = torch.cat([W(net, h - 1), b(net, h - 1)[:, None]], dim=1)
    return rows_distinct(w_in) and rows_distinct(W(net, h).T)


def assert_symmetric_state(net: nn.Module, target: str = "random") -> None:
    """The state of claims 1 and 2: every hidden layer acts as one unit."""
    assert all(units_identical(net, h) for h in HIDDEN)
    assert rows_equal(W(net, 0)) and not constant(W(net, 0))  # row-equal, columns differ
    assert constant(W(net, 1)) and constant(W(net, 2))  # internally equal
    assert rows_equal(W(net, 3).T)  # each output row constant ...
    assert constant(W(net, 3)) == (target == "ones")  # ... rows equal iff outputs are


@pytest.mark.parametrize("target", ["random", "ones"])
def test_claim1_zero_weights_wake_up_from_the_output_backwards(target):
    net = s4_net("zeros")
    for step in range(1, N_LAYERS + 1):
        sgd_steps(net, 1, target)
        nonzero = [bool(W(net, i).ne(0).all()) for i in range(N_LAYERS)]
        still_zero = [bool(W(net, i).eq(0).all()) for i in range(N_LAYERS)]
        expected = [i >= N_LAYERS - step for i in range(N_LAYERS)]
        assert nonzero == expected and still_zero == [not e for e in expected], step
        assert all(units_identical(net, h) for h in HIDDEN), step  # symmetric all along
    assert_symmetric_state(net, target)
    sgd_steps(net, 40, target)
    assert_symmetric_state(net, target)  # and training never leaves it


@pytest.mark.parametrize("value", [0.5, -0.3, 1.0])
def test_claim2_constant_weights_reach_the_symmetric_state_after_one_step(value):
    net = s4_net("constant", value=value)
    assert all(constant(W(net, i)) for i in range(N_LAYERS))  # before: everything constant
    sgd_steps(net, 1)
    assert_symmetric_state(net)
    sgd_steps(net, 40)
    assert_symmetric_state(net)


@pytest.mark.parametrize(
    "rest", [{"scheme": "zeros"}, {"scheme": "constant", "value": 0.5}], ids=["zeros", "constant"]
)
@pytest.mark.parametrize(("m", "target"), [(1, "random"), (2, "random"), (3, "ones")])
def test_claim3_random_first_m_layers_move_the_symmetry_to_layer_m(m, target, rest):
    """(M = 3 makes W_3, the output layer, the row-equal one: its rows can only be equal when
    the two outputs are interchangeable, so that case uses S4's all-ones target.)"""
    net = s4_net(**rest, layers=({"select": f"0:{m}", "scheme": "normal", "std": 1.0},))
    sgd_steps(net, N_LAYERS + 40, target)
    for i in range(m):  # still "random": no two units alike
        assert rows_distinct(W(net, i))
    for h in range(1, m + 1):
        assert units_distinct(net, h)
    assert rows_equal(W(net, m)) and not constant(W(net, m))  # row-equal, columns differ
    for h in range(m + 1, N_LAYERS):
        assert units_identical(net, h)
        assert h == 3 or constant(W(net, h))  # internally equal (W_3 only row-constant)


def test_claim4_a_random_bias_alone_breaks_the_symmetry():
    net = s4_net("zeros", study_biases=False, bias={"kind": "normal", "std": 1.0})
    assert all(rows_distinct(b(net, i)[:, None]) for i in range(N_LAYERS))
    sgd_steps(net, 60)
    assert all(W(net, i).ne(0).all() for i in range(N_LAYERS))
    for h in HIDDEN:
        assert units_distinct(net, h)
        assert rows_distinct(hidden_outputs(net)[h - 1].T)  # the units compute different things
    # ... but only just: the rows of W_0 and W_1 stay parallel (rank one, measured sigma_2 /
    # sigma_1 ~ 1e-6 here and still ~1e-5 after 3000 steps), so every unit of the first hidden
    # layer sees the same single projection of the input, with its own gain and bias.
    for i in (0, 1):
        sigma = torch.linalg.svdvals(W(net, i).double())
        assert sigma[1] < 1e-3 * sigma[0]
    # control: the same run with S4's constant biases stays symmetric
    control = s4_net("zeros")
    sgd_steps(control, 60)
    assert all(units_identical(control, h) for h in HIDDEN)


def test_without_activation_zero_weights_stay_zero_only_with_zero_biases():
    net = s4_net("zeros", activation="linear", study_biases=False)
    sgd_steps(net, 20)
    assert all(W(net, i).eq(0).all() for i in range(N_LAYERS))  # every activation is 0
    net = s4_net("zeros", activation="linear")  # S4's biases: the output layer sees b_2 != 0
    sgd_steps(net, 1)
    assert W(net, 3).ne(0).all() and all(W(net, i).eq(0).all() for i in range(3))
