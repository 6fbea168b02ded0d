"""What initsweep asks of any network: its weight layers, normalization layers and residual
blocks, found by walking ``named_modules()`` (the built-in networks and a user's alike).

- ``weight_layers(net)``: ``(path, module)`` of every Linear, Conv1d/2d/3d and Embedding, in
  registration order (forward order for the built-ins): the initializer's and the diagnostics'
  layer index ``i`` is a position in this list;
- ``norm_layers(net)``: BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm (the ``init.norm``
  rule);
- ``residual_blocks(net)``: modules computing ``x + branch(x)``, found by a ``residual_branch()``
  method that returns the branch's weight and norm layers in order (``zoo.BasicBlock``; a user's
  block may define it; torchvision's ResNet blocks are recognised too). Fixup and
  zero-init-residual act on those.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

# Layers with a weight an init scheme fills (fans as torch computes them from the weight's shape).
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Embedding,
)
# Normalization layers: their affine weight and bias follow ``init.norm``, not a scheme.
NORM_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every weight layer (Linear, Conv1d/2d/3d, Embedding) of ``net``, in
    registration order: what an initializer and the diagnostics walk. A layer used twice is
    listed once."""
    return [
        (path, m)
        for path, m in net.named_modules()
        if isinstance(m, WEIGHT_LAYER_TYPES) and getattr(m, "weight", None) is not None
    ]


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
_TORCHVISION_BLOCKS = {
    "BasicBlock": ("conv1", "bn1", "conv2", "bn2"),
    "Bottleneck": ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"),
}


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
