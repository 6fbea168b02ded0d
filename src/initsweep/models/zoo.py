"""The networks a config can name (``conf/model/``), built by their factories.

A model is built by a factory named by ``model._target_`` (Hydra's convention), called as
``factory(input_shape=(C, H, W), num_classes=N, **the other model keys)``; it returns an
``nn.Module`` mapping a batch ``(B, *input_shape)`` to logits ``(B, N)``
(``initsweep.models.build``). Built in:

- ``mlp``: Linear -> activation per hidden layer, then a linear output layer; flattens its input;
- ``cnn``: LeNet-style (LeCun et al. 1998): [conv -> (norm) -> activation -> pool] blocks, then
  Linear layers;
- ``resnet``: the CIFAR ResNet of He et al. 2016 (section 4.2), depth 6n+2, for 1x8x8 or 1x28x28
  inputs; BatchNorm on or off; ``skip=false`` is the paper's "plain" net of the same layers;
- ``custom``: any factory of the user's (``build.build_network`` puts the launch folder on the
  path).

``conf/model/*.yaml`` name these factories as ``initsweep.models.zoo.<name>``, and the config
hash maps that prefix (``naming.HASHED_TARGET_PREFIXES``): moving them changes both.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from initsweep.errors import ConfigError, require, require_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,  # no nonlinearity: a deep linear network
}


# ------------------------------------------------------------------------------------------ MLP
class MLP(nn.Sequential):
    """Linear -> activation layers as a ``Sequential`` that flattens its input first.

    Flattening in ``forward`` (not an ``nn.Flatten`` module) keeps the layers' names ``0``, ``2``,
    ... and so the parameter names and checkpoints of the MLP as it always was.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(1))


def build_mlp(
    in_features: int,
    out_features: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    bias: bool = True,
) -> MLP:
    """Linear -> activation for each hidden size, then a linear output layer (logits)."""
    require_choice("model.activation", activation, ACTIVATIONS)
    hidden_sizes = list(hidden_sizes)
    for size in hidden_sizes:
        require(
            isinstance(size, int) and size >= 1,
            "model.hidden_sizes",
            hidden_sizes,
            "every hidden size must be an integer >= 1",
        )
    sizes = [in_features, *hidden_sizes, out_features]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return MLP(*layers)


def hidden_sizes(model_cfg: Mapping[str, Any]) -> list[int]:
    """``hidden_sizes``, or ``depth`` hidden layers of ``width`` units when depth is set."""
    depth = model_cfg.get("depth")
    if depth is None:
        return list(model_cfg.get("hidden_sizes", []))
    require(
        isinstance(depth, int) and depth >= 0,
        "model.depth",
        depth,
        "must be null or an integer >= 0",
    )
    return [model_cfg.get("width", 256)] * depth


_hidden_sizes_of = hidden_sizes  # ``mlp``'s argument of the same name hides the function


def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden_sizes: Sequence[int] = (256, 128),
    depth: int | None = None,
    width: int = 256,
    activation: str = "relu",
    bias: bool = True,
) -> MLP:
    """``model=mlp``: an MLP over the flattened input; ``depth`` x ``width`` replaces
    ``hidden_sizes`` when set (a deep net of equal layers: ``depth=100 width=256``)."""
    sizes = _hidden_sizes_of({"hidden_sizes": hidden_sizes, "depth": depth, "width": width})
    return build_mlp(math.prod(input_shape), num_classes, sizes, activation, bias)


# ------------------------------------------------------------------------------------------ CNN
def _image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ConfigError(
            f"model={model}: needs image inputs (C, H, W); the data's inputs have "
            f"shape {shape} (data=digits, mnist and fashion_mnist are images)"
        )
    return cast(tuple[int, int, int], shape)


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (6, 16),
    kernel_size: int = 5,
    pool: str = "max",
    hidden_sizes: Sequence[int] = (120, 84),
    activation: str = "relu",
    norm: str = "none",
    bias: bool = True,
) -> nn.Module:
    """``model=cnn``: LeNet-style (LeCun et al. 1998, LeNet-5's 6 and 16 channels, 120 and 84
    units): per entry of ``channels`` a block conv(k x k, "same" padding) -> [BatchNorm] ->
    activation -> 2x2 pool (``pool: max | avg | none``), then Linear -> activation layers of
    ``hidden_sizes`` and a linear output layer. Module paths: ``features.conv1``, ...,
    ``classifier.fc1``, ..., ``classifier.out``."""
    c, h, w = _image_shape(input_shape, "cnn")
    require_choice("model.activation", activation, ACTIVATIONS)
    require_choice("model.pool", pool, ("max", "avg", "none"))
    require_choice("model.norm", norm, ("batch", "none"))
    channels, hidden = list(channels), list(hidden_sizes)
    require(
        len(channels) >= 1 and all(isinstance(n, int) and n >= 1 for n in channels),
        "model.channels",
        channels,
        "must be a non-empty list of integers >= 1",
    )
    require(
        all(isinstance(n, int) and n >= 1 for n in hidden),
        "model.hidden_sizes",
        hidden,
        "every hidden size must be an integer >= 1",
    )
    require(
        isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1,
        "model.kernel_size",
        kernel_size,
        "must be an odd integer >= 1 ('same' padding)",
    )
    shrink = 1 if pool == "none" else 2 ** len(channels)
    require(
        h // shrink >= 1 and w // shrink >= 1,
        "model.channels",
        channels,
        f"{len(channels)} pooling blocks shrink the {h}x{w} input to "
        f"{h // shrink}x{w // shrink}; use fewer blocks or model.pool=none",
    )
    features: OrderedDict[str, nn.Module] = OrderedDict()
    for i, out in enumerate(channels, start=1):
        features[f"conv{i}"] = nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2, bias=bias)
        if norm == "batch":
            features[f"norm{i}"] = nn.BatchNorm2d(out)
        features[f"act{i}"] = ACTIVATIONS[activation]()
        if pool != "none":
            features[f"pool{i}"] = (nn.MaxPool2d if pool == "max" else nn.AvgPool2d)(2)
        c = out
    flat = c * (h // shrink) * (w // shrink)
    classifier: OrderedDict[str, nn.Module] = OrderedDict()
    sizes = [flat, *hidden]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        classifier[f"fc{i}"] = nn.Linear(fan_in, fan_out, bias=bias)
        classifier[f"act{i}"] = ACTIVATIONS[activation]()
    classifier["out"] = nn.Linear(sizes[-1], num_classes, bias=bias)
    return ConvNet(nn.Sequential(features), nn.Sequential(classifier))


class ConvNet(nn.Module):
    """Convolutional features, flattened, then a classifier."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


# --------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """He et al. 2016's basic block: conv3x3 -> [BN] -> act -> conv3x3 -> [BN], plus the
    shortcut, then act. ``skip=False`` drops the shortcut: a block of the paper's plain net.

    The shortcut is option A of the paper's CIFAR nets: identity, or, where the block halves the
    resolution and doubles the channels, the input subsampled by 2 and zero-padded with the new
    channels. It has no weights, so a plain net and a residual net of the same depth have the
    same weight layers and draw the same initial weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm: bool,
        activation: type[nn.Module],
        skip: bool,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(out_channels) if norm else None
        self.act1 = activation()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(out_channels) if norm else None
        self.act2 = activation()
        self.skip = skip
        self.stride, self.pad = stride, out_channels - in_channels

    def residual_branch(self) -> list[nn.Module]:
        """The branch's weight and norm layers in order; empty for a plain block (no skip)."""
        if not self.skip:
            return []
        return [m for m in (self.conv1, self.bn1, self.conv2, self.bn2) if m is not None]

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = self.bn1(out)
        out = self.conv2(self.act1(out))
        if self.bn2 is not None:
            out = self.bn2(out)
        if self.skip:
            shortcut = x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
            if self.pad:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
            out = out + shortcut
        return self.act2(out)


class ResNet(nn.Module):
    """conv3x3 -> [BN] -> act, three stages of n blocks (width, 2 width, 4 width channels;
    the 2nd and 3rd start with stride 2), global average pooling, a Linear classifier.

    Module paths: ``stem``, ``stages.<s>.<b>.conv1`` / ``conv2`` (``bn1``, ``bn2``), ``fc``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        n: int,
        width: int,
        norm: bool,
        activation: type[nn.Module],
        skip: bool,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=not norm)
        self.stem_bn = nn.BatchNorm2d(width) if norm else None
        self.stem_act = activation()
        stages = []
        channels = width
        for s in range(3):
            out = width * 2**s
            blocks = [
                BasicBlock(
                    channels if b == 0 else out,
                    out,
                    2 if (s > 0 and b == 0) else 1,
                    norm,
                    activation,
                    skip,
                )
                for b in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem(x)
        if self.stem_bn is not None:
            out = self.stem_bn(out)
        out = self.stages(self.stem_act(out))
        return self.fc(out.mean(dim=(2, 3)))


def resnet(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int = 20,
    width: int = 16,
    norm: str = "batch",
    skip: bool = True,
    activation: str = "relu",
) -> ResNet:
    """``model=resnet``: He et al. 2016's CIFAR ResNet (section 4.2) of ``depth`` = 6n+2 weight
    layers (20, 32, 44, 56, 110 in the paper; 8 and 14 are the small ones), channels ``width``,
    2 ``width``, 4 ``width`` (16 in the paper). ``norm: batch | none``; ``skip=false`` is the
    paper's plain counterpart (the same layers without shortcuts). On 1x8x8 digits the stages
    see 8x8, 4x4 and 2x2 maps; on 1x28x28 MNIST 28x28, 14x14 and 7x7."""
    c, h, w = _image_shape(input_shape, "resnet")
    require(
        isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0,
        "model.depth",
        depth,
        "must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110)",
    )
    require(isinstance(width, int) and width >= 1, "model.width", width, "must be an integer >= 1")
    require_choice("model.norm", norm, ("batch", "none"))
    require_choice("model.activation", activation, ACTIVATIONS)
    require(
        h >= 4 and w >= 4,
        "model",
        "resnet",
        f"needs inputs of at least 4x4 (two stride-2 stages); the data's are {h}x{w}",
    )
    return ResNet(
        c,
        num_classes,
        (depth - 2) // 6,
        width,
        norm == "batch",
        ACTIVATIONS[activation],
        bool(skip),
    )
