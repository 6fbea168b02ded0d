"""Network builders: an MLP of any depth, width and activation, biases optional."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from initsweep.errors import require, require_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,  # no nonlinearity: S4's "without an activation" case
}


def build_mlp(
    in_features: int,
    out_features: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    bias: bool = True,
) -> nn.Sequential:
    """Linear -> activation for each hidden size, then a linear output layer (logits)."""
    require_choice("model.activation", activation, ACTIVATIONS)
    hidden_sizes = list(hidden_sizes)
    for size in hidden_sizes:
        require(isinstance(size, int) and size >= 1, "model.hidden_sizes", hidden_sizes,
                "every hidden size must be an integer >= 1")
    sizes = [in_features, *hidden_sizes, out_features]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    """The weight layers of ``net`` in forward order: what an initializer and diagnostics walk."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def hidden_sizes(model_cfg: Mapping[str, Any]) -> list[int]:
    """``hidden_sizes``, or ``depth`` hidden layers of ``width`` units when depth is set (S3)."""
    depth = model_cfg.get("depth")
    if depth is None:
        return list(model_cfg.get("hidden_sizes", []))
    require(isinstance(depth, int) and depth >= 0, "model.depth", depth,
            "must be null or an integer >= 0")
    return [model_cfg.get("width", 256)] * depth
