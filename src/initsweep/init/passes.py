"""The schemes with a pass over the whole network after every layer is filled: LSUV (on a data
batch), zero-init residual and Fixup (on the network's residual blocks).

Each registers its per-layer fill (``lsuv_``, ``zero_init_residual_``, ``fixup_``) with a
``network_pass(net, layers, draw_batch, **params)``; ``layers`` are the weight layers given the
scheme, and the pass's keyword parameters are yaml keys like the fill's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from initsweep.init.checks import NoResidualBlocks, check_count, check_positive
from initsweep.init.registry import register
from initsweep.init.schemes import he_
from initsweep.models.layers import (
    WEIGHT_LAYER_TYPES,
    bias_of,
    residual_blocks,
    weight_layers,
    weight_of,
)


# ------------------------------------------------------------------------------------------ LSUV
def layer_output(layer: nn.Module, x: Tensor) -> Tensor:
    """What ``layer`` computes on ``x`` with its current weights, without calling its hooks."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight, layer.bias)  # typed: nn.Linear's own attributes
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return layer._conv_forward(x, layer.weight, layer.bias)
    if isinstance(layer, nn.Embedding):
        return F.embedding(
            x,
            layer.weight,
            layer.padding_idx,
            layer.max_norm,
            layer.norm_type,
            layer.scale_grad_by_freq,
            layer.sparse,
        )
    raise TypeError(f"no output rule for {type(layer).__name__}")


def lsuv_pass(
    net: nn.Module,
    layers: Sequence[nn.Module],
    draw_batch: Callable[[int], Tensor],
    tol: float = 0.1,
    max_iter: int = 10,
    batch_size: int = 256,
) -> None:
    """LSUV's second step (Mishkin & Matas 2016, "All you need is a good init"): layer by layer,
    from the input, divide W by sqrt(Var(layer output on the batch)) until |Var - 1| < tol or
    ``max_iter`` rescalings. A conv layer's output variance is over the whole output blob
    (samples, channels, positions), as in the paper's conv nets.

    One forward pass does it all, so the pass costs one forward whatever the depth: a hook on
    each layer rescales the layer as the batch reaches it and hands the rescaled output on, so
    the layers after it see what the layer-by-layer algorithm would show them.

    Args:
        net: the network, its weight layers already filled.
        layers: the weight layers given ``lsuv``; the others are left as they are.
        draw_batch: ``draw_batch(n)`` gives n training inputs, drawn reproducibly by init_seed.
        tol: the tolerance on the output variance, a number > 0.
        max_iter: rescalings per layer at most, an integer >= 1.
        batch_size: inputs in the batch, an integer >= 2.
    """
    check_positive("tol", tol)
    check_count("max_iter", max_iter, 1)
    check_count("batch_size", batch_size, 2)
    batch = draw_batch(batch_size)
    done: set[int] = set()

    def rescale_(layer: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor | None:
        if id(layer) in done:  # a layer applied twice is normalized on its first use only
            return None
        done.add(id(layer))
        for _ in range(max_iter):
            var = out.var().item()
            if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                break
            weight_of(layer).div_(math.sqrt(var))
            out = layer_output(layer, inputs[0])
        return out

    handles = [layer.register_forward_hook(rescale_) for layer in layers]
    was_training = net.training
    net.eval()  # BatchNorm normalizes with its (fresh) running statistics and leaves them alone
    try:
        net(batch)
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()


@register("lsuv", network_pass=lsuv_pass, needs_data=True)
def lsuv_(weight: Tensor, generator: torch.Generator, activation: str = "linear") -> None:
    """LSUV (layer-sequential unit variance): orthogonal weights, then each layer rescaled until
    its output on a data batch has unit variance (``lsuv_pass``).

    From Mishkin & Matas 2016, "All you need is a good init". This function is the first step:
    an orthogonal matrix of gain 1. The yaml's ``tol``, ``max_iter`` and ``batch_size`` are the
    pass's (``lsuv_pass``).

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        activation: the model's activation, passed by ``initialize_`` (unused: gain 1).

    Example:
        >>> w = torch.empty(3, 5)
        >>> lsuv_(w, torch.Generator().manual_seed(0))
    """
    nn.init.orthogonal_(weight, gain=1.0, generator=generator)


# ------------------------------------------------------------------------ residual networks
def _residual_branches(
    net: nn.Module, layers: Sequence[nn.Module], scheme: str
) -> list[tuple[list[nn.Module], list[nn.Module]]]:
    """(weight layers, norm layers) of each residual branch whose last weight layer was given
    ``scheme``; an ``InvalidInitParameter`` on ``scheme`` when there is none."""
    blocks = residual_blocks(net)
    if not blocks:
        raise NoResidualBlocks(
            "scheme",
            scheme,
            "the model has no residual blocks (modules "
            "with a residual_branch(); model=resnet with model.skip=true "
            "has them; docs/extending.md)",
        )
    chosen = {id(layer) for layer in layers}
    branches = []
    for _, branch in blocks:
        weights = [m for m in branch if isinstance(m, WEIGHT_LAYER_TYPES)]
        if weights and id(weights[-1]) in chosen:
            branches.append((weights, [m for m in branch if m not in weights]))
    if not branches:
        raise NoResidualBlocks(
            "scheme",
            scheme,
            f"its rule selects no residual branch's last "
            f"layer (the model has {len(blocks)} residual blocks)",
        )
    return branches


def _zero_(module: nn.Module) -> None:
    weight_of(module).zero_()
    bias = bias_of(module)
    if bias is not None:
        bias.zero_()


def zero_init_residual_pass(
    net: nn.Module, layers: Sequence[nn.Module], draw_batch: Callable[[int], Tensor] | None
) -> None:
    """Goyal et al. 2017 ("Accurate, Large Minibatch SGD", section 5.1): the last BatchNorm of
    each residual branch starts with gamma = 0, so every block starts as the identity. A branch
    without a norm layer gets its last weight layer zeroed instead (its bias too).

    Args:
        net: the network, its weight layers already filled.
        layers: the weight layers given the scheme: a branch takes part when its last weight
            layer is one of them.
        draw_batch: unused (the pass reads the network's structure only).
    """
    for weights, norms in _residual_branches(net, layers, "zero_init_residual"):
        last_norm = next(
            (m for m in reversed(norms) if getattr(m, "weight", None) is not None), None
        )
        if last_norm is not None:
            weight_of(last_norm).zero_()
        else:
            _zero_(weights[-1])


def fixup_pass(
    net: nn.Module, layers: Sequence[nn.Module], draw_batch: Callable[[int], Tensor] | None
) -> None:
    """Fixup's rules 1 and 2 (Zhang, Dauphin & Ma 2019): the classification layer (the
    network's last weight layer) and the last weight layer of each residual branch start at 0;
    the other weight layers of a branch of m weight layers are scaled by L^(-1/(2m-2)), L the
    number of residual branches (L^(-1/2) for two-layer basic blocks). Rule 3 (scalar
    multipliers and biases added to the architecture) is not an initialization and is not built
    here.

    Args:
        net: the network, its weight layers already filled.
        layers: the weight layers given the scheme: only they are scaled or zeroed.
        draw_batch: unused (the pass reads the network's structure only).
    """
    total = len(residual_blocks(net))
    chosen = {id(layer) for layer in layers}
    in_branches: set[int] = set()
    for weights, _ in _residual_branches(net, layers, "fixup"):
        in_branches.update(id(w) for w in weights)
        m = len(weights)
        if m > 1:
            factor = total ** (-1.0 / (2 * m - 2))
            for layer in weights[:-1]:
                if id(layer) in chosen:
                    weight_of(layer).mul_(factor)
        _zero_(weights[-1])
    classifier = weight_layers(net)[-1][1]
    if id(classifier) in chosen and id(classifier) not in in_branches:
        _zero_(classifier)


@register("zero_init_residual", network_pass=zero_init_residual_pass)
def zero_init_residual_(
    weight: Tensor,
    generator: torch.Generator,
    distribution: str = "normal",
    mode: str = "fan_in",
    nonlinearity: str | None = None,
    negative_slope: float = 0.01,
    activation: str = "relu",
) -> None:
    """He initialization, then the last BatchNorm gamma of each residual branch = 0, so every
    block starts as the identity (``zero_init_residual_pass``).

    From Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
    section 5.1; the fill is ``he_`` (He et al. 2015). Needs a network with residual blocks
    (``models.layers.residual_blocks``).

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        distribution: ``normal`` or ``uniform``, as ``he_``.
        mode: ``fan_in`` or ``fan_out``, as ``he_``.
        nonlinearity: the gain's nonlinearity; ``None``: the model's activation.
        negative_slope: leaky_relu's slope, a number >= 0.
        activation: the model's activation, passed by ``initialize_``.

    Example:
        >>> w = torch.empty(8, 4, 3, 3)
        >>> zero_init_residual_(w, torch.Generator().manual_seed(0))
    """
    he_(weight, generator, distribution, mode, nonlinearity, negative_slope, activation)


@register("fixup", network_pass=fixup_pass)
def fixup_(
    weight: Tensor,
    generator: torch.Generator,
    distribution: str = "normal",
    mode: str = "fan_in",
    nonlinearity: str | None = None,
    negative_slope: float = 0.01,
    activation: str = "relu",
) -> None:
    """Fixup: He initialization, then each residual branch's layers rescaled and its last layer
    and the classifier zeroed, so a deep residual net trains without normalization
    (``fixup_pass``).

    From Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
    Normalization"; the fill is its "standard method", ``he_`` (He et al. 2015). Needs a network
    with residual blocks (``models.layers.residual_blocks``).

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        distribution: ``normal`` or ``uniform``, as ``he_``.
        mode: ``fan_in`` or ``fan_out``, as ``he_``.
        nonlinearity: the gain's nonlinearity; ``None``: the model's activation.
        negative_slope: leaky_relu's slope, a number >= 0.
        activation: the model's activation, passed by ``initialize_``.

    Example:
        >>> w = torch.empty(8, 4, 3, 3)
        >>> fixup_(w, torch.Generator().manual_seed(0))
    """
    he_(weight, generator, distribution, mode, nonlinearity, negative_slope, activation)
