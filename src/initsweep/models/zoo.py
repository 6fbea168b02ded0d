"""The networks a config can name, and how initsweep finds the layers of any network.

A model is built by a factory named by ``model._target_`` (Hydra's convention), called as
``factory(input_shape=(C, H, W), num_classes=N, **the other model keys)``; it returns an
``nn.Module`` mapping a batch ``(B, *input_shape)`` to logits ``(B, N)``. Built in
(``conf/model/``):

- ``mlp``: Linear -> activation per hidden layer, then a linear output layer; flattens its input;
- ``cnn``: LeNet-style (LeCun et al. 1998): [conv -> (norm) -> activation -> pool] blocks, then
  Linear layers;
- ``resnet``: the CIFAR ResNet of He et al. 2016 (section 4.2), depth 6n+2, for 1x8x8 or 1x28x28
  inputs; BatchNorm on or off; ``skip=false`` is the paper's "plain" net of the same layers;
- ``custom``: any factory of the user's (``build_network`` puts the launch folder on the path).

What the rest of initsweep walks, for any network:

- ``weight_layers(net)``: ``(path, module)`` of every Linear, Conv1d/2d/3d and Embedding, in
  registration order (forward order for the built-ins): the initializer's and the diagnostics'
  layer index ``i`` is a position in this list;
- ``norm_layers(net)``: BatchNorm, LayerNorm, GroupNorm, InstanceNorm (the ``init.norm`` rule);
- ``residual_blocks(net)``: modules computing ``x + branch(x)``, found by a ``residual_branch()``
  method that returns the branch's weight and norm layers in order (``BasicBlock`` here; a user's
  block may define it; torchvision's ResNet blocks are recognised too). Fixup and
  zero-init-residual act on those.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initsweep.errors import ConfigError, require, require_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,  # no nonlinearity: S4's "without an activation" case
}
# Layers with a weight an init scheme fills (fans as torch computes them from the weight's shape).
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                                   nn.Embedding)
# Normalization layers: their affine weight and bias follow ``init.norm``, not a scheme.
NORM_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
    nn.GroupNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))
# Factories shipped with initsweep (``model._target_``); anything else is a user's model.
BUILT_IN_MODELS = {f"initsweep.models.zoo.{name}": name for name in ("mlp", "cnn", "resnet")}


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
        require(isinstance(size, int) and size >= 1, "model.hidden_sizes", hidden_sizes,
                "every hidden size must be an integer >= 1")
    sizes = [in_features, *hidden_sizes, out_features]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return MLP(*layers)


def hidden_sizes(model_cfg: Mapping[str, Any]) -> list[int]:
    """``hidden_sizes``, or ``depth`` hidden layers of ``width`` units when depth is set (S3)."""
    depth = model_cfg.get("depth")
    if depth is None:
        return list(model_cfg.get("hidden_sizes", []))
    require(isinstance(depth, int) and depth >= 0, "model.depth", depth,
            "must be null or an integer >= 0")
    return [model_cfg.get("width", 256)] * depth


_hidden_sizes_of = hidden_sizes  # ``mlp``'s argument of the same name hides the function


def mlp(input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int] = (256, 128),
        depth: int | None = None, width: int = 256, activation: str = "relu",
        bias: bool = True) -> MLP:
    """``model=mlp``: an MLP over the flattened input; ``depth`` x ``width`` replaces
    ``hidden_sizes`` when set (S3's 100-layer net)."""
    sizes = _hidden_sizes_of({"hidden_sizes": hidden_sizes, "depth": depth, "width": width})
    return build_mlp(math.prod(input_shape), num_classes, sizes, activation, bias)


# ------------------------------------------------------------------------------------------ CNN
def _image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ConfigError(f"model={model}: needs image inputs (C, H, W); the data's inputs have "
                          f"shape {shape} (data=digits, mnist and fashion_mnist are images)")
    return cast(tuple[int, int, int], shape)


def cnn(input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (6, 16),
        kernel_size: int = 5, pool: str = "max", hidden_sizes: Sequence[int] = (120, 84),
        activation: str = "relu", norm: str = "none", bias: bool = True) -> nn.Module:
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
    require(len(channels) >= 1 and all(isinstance(n, int) and n >= 1 for n in channels),
            "model.channels", channels, "must be a non-empty list of integers >= 1")
    require(all(isinstance(n, int) and n >= 1 for n in hidden), "model.hidden_sizes", hidden,
            "every hidden size must be an integer >= 1")
    require(isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1,
            "model.kernel_size", kernel_size, "must be an odd integer >= 1 ('same' padding)")
    shrink = 1 if pool == "none" else 2 ** len(channels)
    require(h // shrink >= 1 and w // shrink >= 1, "model.channels", channels,
            f"{len(channels)} pooling blocks shrink the {h}x{w} input to "
            f"{h // shrink}x{w // shrink}; use fewer blocks or model.pool=none")
    features: OrderedDict[str, nn.Module] = OrderedDict()
    for i, out in enumerate(channels, start=1):
        features[f"conv{i}"] = nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2,
                                         bias=bias)
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

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: bool,
                 activation: type[nn.Module], skip: bool) -> None:
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
            shortcut = x if self.stride == 1 else x[:, :, ::self.stride, ::self.stride]
            if self.pad:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
            out = out + shortcut
        return self.act2(out)


class ResNet(nn.Module):
    """conv3x3 -> [BN] -> act, three stages of n blocks (width, 2 width, 4 width channels;
    the 2nd and 3rd start with stride 2), global average pooling, a Linear classifier.

    Module paths: ``stem``, ``stages.<s>.<b>.conv1`` / ``conv2`` (``bn1``, ``bn2``), ``fc``.
    """

    def __init__(self, in_channels: int, num_classes: int, n: int, width: int, norm: bool,
                 activation: type[nn.Module], skip: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=not norm)
        self.stem_bn = nn.BatchNorm2d(width) if norm else None
        self.stem_act = activation()
        stages = []
        channels = width
        for s in range(3):
            out = width * 2**s
            blocks = [BasicBlock(channels if b == 0 else out, out, 2 if (s > 0 and b == 0) else 1,
                                 norm, activation, skip) for b in range(n)]
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


def resnet(input_shape: Sequence[int], num_classes: int, depth: int = 20, width: int = 16,
           norm: str = "batch", skip: bool = True, activation: str = "relu") -> ResNet:
    """``model=resnet``: He et al. 2016's CIFAR ResNet (section 4.2) of ``depth`` = 6n+2 weight
    layers (20, 32, 44, 56, 110 in the paper; 8 and 14 are the small ones), channels ``width``,
    2 ``width``, 4 ``width`` (16 in the paper). ``norm: batch | none``; ``skip=false`` is the
    paper's plain counterpart (the same layers without shortcuts). On 1x8x8 digits the stages
    see 8x8, 4x4 and 2x2 maps; on 1x28x28 MNIST 28x28, 14x14 and 7x7."""
    c, h, w = _image_shape(input_shape, "resnet")
    require(isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0, "model.depth", depth,
            "must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110)")
    require(isinstance(width, int) and width >= 1, "model.width", width,
            "must be an integer >= 1")
    require_choice("model.norm", norm, ("batch", "none"))
    require_choice("model.activation", activation, ACTIVATIONS)
    require(h >= 4 and w >= 4, "model", "resnet",
            f"needs inputs of at least 4x4 (two stride-2 stages); the data's are {h}x{w}")
    return ResNet(c, num_classes, (depth - 2) // 6, width, norm == "batch",
                  ACTIVATIONS[activation], bool(skip))


# ------------------------------------------------------------------------ any network's layers
def weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every weight layer (Linear, Conv1d/2d/3d, Embedding) of ``net``, in
    registration order: what an initializer and the diagnostics walk. A layer used twice is
    listed once."""
    return [(path, m) for path, m in net.named_modules()
            if isinstance(m, WEIGHT_LAYER_TYPES) and getattr(m, "weight", None) is not None]


def weight_of(layer: nn.Module) -> Tensor:
    """A weight layer's weight (typed: ``nn.Module`` attributes are ``Tensor | Module``)."""
    return cast(Tensor, layer.weight)


def bias_of(layer: nn.Module) -> Tensor | None:
    """A layer's bias, None when it has none (an Embedding, ``bias=False``)."""
    return cast("Tensor | None", getattr(layer, "bias", None))


def linear_layers(net: nn.Module) -> list[nn.Module]:
    """The weight layers' modules of ``weight_layers`` (the name is older than conv support)."""
    return [m for _, m in weight_layers(net)]


def norm_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every normalization layer of ``net``."""
    return [(path, m) for path, m in net.named_modules() if isinstance(m, NORM_LAYER_TYPES)]


# torchvision's ResNet blocks: their branch's layers by attribute name (duck-typed, so that
# torchvision is never imported here).
_TORCHVISION_BLOCKS = {"BasicBlock": ("conv1", "bn1", "conv2", "bn2"),
                       "Bottleneck": ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")}


def residual_branch(module: nn.Module) -> list[nn.Module]:
    """The residual branch's weight and norm layers of ``module``, in order; [] if it has none."""
    method = getattr(module, "residual_branch", None)
    if callable(method):
        return list(method())
    names = _TORCHVISION_BLOCKS.get(type(module).__name__)
    if names and type(module).__module__.startswith("torchvision."):
        return [getattr(module, name) for name in names]
    return []


def residual_blocks(net: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """``(path, branch layers)`` of every residual block of ``net``."""
    found = [(path, residual_branch(m)) for path, m in net.named_modules()]
    return [(path, branch) for path, branch in found if branch]


# ---------------------------------------------------------------------------- building a model
def _launch_folder() -> str:
    """The folder the user launched from (Hydra's original cwd when it changed directory)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return HydraConfig.get().runtime.cwd
    except Exception:  # no Hydra run: the process's cwd
        pass
    return os.getcwd()


def locate_factory(target: Any) -> Callable[..., nn.Module]:
    """``model._target_`` as a callable: a dotted path ``package.module.function``, importable
    from the Python path or from the folder the run was launched from (a user's own file)."""
    require(isinstance(target, str) and "." in target and not target.startswith("."),
            "model._target_", target, "must be a dotted path to a factory, e.g. "
            "my_models.small_cnn (a function in my_models.py in the folder you run from)")
    folder = _launch_folder()
    if folder not in sys.path:
        sys.path.append(folder)  # after everything else: never shadows an installed package
    module_name, _, attribute = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ConfigError(f"model._target_={target!r}: cannot import {module_name} "
                          f"({type(err).__name__}: {str(err).splitlines()[0]}); it must be on "
                          f"the Python path or a .py file in {folder}") from None
    factory = getattr(module, attribute, None)
    require(callable(factory), "model._target_", target,
            f"{module_name} has no callable {attribute!r}")
    return cast(Callable[..., nn.Module], factory)


def check_model_keys(factory: Callable[..., Any], target: str, keys: Mapping[str, Any]) -> None:
    """Every model key must be an argument of the factory (unless it takes ``**kwargs``); the
    factory must take ``input_shape`` and ``num_classes``."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for needed in ("input_shape", "num_classes"):
        require(needed in parameters, "model._target_", target,
                f"a model factory is called as f(input_shape=(C, H, W), num_classes=N, ...); "
                f"{target} has no argument {needed!r}")
    valid = [n for n in parameters if n not in ("input_shape", "num_classes")]
    for key, value in keys.items():
        require(key in valid, f"model.{key}", value, f"not an argument of {target}; valid: "
                f"{', '.join(valid) or 'none'}")


def build_network(model_cfg: Mapping[str, Any], input_shape: Sequence[int], num_classes: int,
                  init_seed: int = 0) -> nn.Module:
    """The network of ``model_cfg``: its ``_target_`` factory called (through Hydra's
    ``instantiate``, so nested ``_target_`` nodes work too) with the data's input shape and
    number of classes. Raises ``ConfigError`` for an unknown target or key, and for a network
    whose output on a batch of the data's shape is not ``(B, num_classes)``.

    Whatever the constructor draws comes from a generator seeded by ``init_seed`` (the global
    one is left as it was): the initializer refills every weight and norm layer, and any other
    parameter a user's model has keeps a value that depends on the init seed only.
    """
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if isinstance(model_cfg, DictConfig):
        if OmegaConf.is_missing(model_cfg, "_target_"):
            raise ConfigError("model._target_: not set; model=custom needs your factory, e.g. "
                              "model._target_=my_models.small_cnn (docs/extending.md)")
        cfg = cast(dict[str, Any], OmegaConf.to_container(model_cfg, resolve=True))
    else:
        cfg = dict(model_cfg)
    # an MLP config written before models had a _target_ (hidden_sizes, activation, ...)
    target = cfg.pop("_target_", "initsweep.models.zoo.mlp")
    factory = locate_factory(target)
    check_model_keys(factory, target, cfg)
    shape = tuple(int(n) for n in input_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        try:
            # plain lists and dicts for the factory (not OmegaConf containers)
            partial = instantiate({"_target_": target, **cfg}, _partial_=True, _convert_="all")
            net = partial(input_shape=shape, num_classes=num_classes)
        except ConfigError:
            raise
        except Exception as err:
            cause = err.__cause__ if isinstance(err.__cause__, ConfigError) else err
            if isinstance(cause, ConfigError):
                raise cause from None
            raise ConfigError(f"model._target_={target!r}: building the model failed "
                              f"({type(cause).__name__}: {str(cause).splitlines()[0]})") from None
    require(isinstance(net, nn.Module), "model._target_", target,
            f"must return a torch.nn.Module, returned {type(net).__name__}")
    check_output_shape(net, target, shape, num_classes)
    return net


@torch.no_grad()
def check_output_shape(net: nn.Module, target: str, input_shape: tuple[int, ...],
                       num_classes: int) -> None:
    """A batch of 2 zero inputs of the data's shape must give logits ``(2, num_classes)``."""
    was_training = net.training
    net.eval()  # no BatchNorm statistics updated by the check
    try:
        out = net(torch.zeros(2, *input_shape))
    except Exception as err:
        raise ConfigError(f"model._target_={target!r}: does not fit the data's inputs of shape "
                          f"{input_shape} ({type(err).__name__}: {str(err).splitlines()[0]})"
                          ) from None
    finally:
        net.train(was_training)
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    require(shape == (2, num_classes), "model._target_", target,
            f"must map inputs (B, {', '.join(map(str, input_shape))}) to logits "
            f"(B, {num_classes}); gave {shape} for B=2")
