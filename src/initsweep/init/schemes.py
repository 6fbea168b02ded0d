"""The per-layer schemes: one function each, registered by name (``registry.register``).

Over 400 lines only because each scheme carries its formula, paper, ``Args:`` and ``Example:``
(as ``torch.nn.init`` does); the code itself is short.

Adding a scheme is one function here plus one yaml file in ``conf/init/``:

    @register("my_scheme")
    def my_scheme_(weight, generator, alpha=1.0):
        '''Formula and paper; Args: and Example: as below.'''
        weight.normal_(0.0, alpha, generator=generator)

The function fills ``weight`` in place (torch.nn.init style: the name ends in ``_``), draws every
random number from ``generator`` and never loops over elements. Its keyword parameters are what
the yaml file may set; a parameter named ``activation`` receives the model's activation (for
gains), one named ``layer`` the module itself. A bad value raises ``InvalidInitParameter`` (a
``ValueError``) through ``checks``. Schemes with a pass over the whole network (LSUV, Fixup,
zero-init residual) are in ``passes``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from initsweep.init.checks import (
    check,
    check_choice,
    check_number,
    check_positive,
    is_number,
)
from initsweep.init.registry import register

NONLINEARITIES = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


# --------------------------------------------------------------------------------------- helpers
def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or conv (out, in/groups, *kernel) weight, as
    ``torch.nn.init`` computes them: the receptive field (kernel size) multiplies both. An
    Embedding's (num_embeddings, dim) weight gets fan_in = dim, as torch reads any 2-D shape."""
    if weight.dim() < 2:
        raise ValueError(f"fan needs a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def gain_for(activation: str, param: str = "activation", negative_slope: float = 0.01) -> float:
    """``torch.nn.init.calculate_gain``, raising ``InvalidInitParameter`` for unknown names."""
    check_choice(param, activation, NONLINEARITIES)
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", negative_slope)
    return nn.init.calculate_gain(activation)  # type: ignore[arg-type]  # checked just above


def _fill_std_(weight: Tensor, generator: torch.Generator, std: float, distribution: str) -> None:
    """Zero-mean normal with ``std``, or the uniform with the same variance (bound sqrt(3) std)."""
    check_choice("distribution", distribution, ("uniform", "normal"))
    if distribution == "normal":
        weight.normal_(0.0, std, generator=generator)
    else:
        bound = math.sqrt(3.0) * std
        weight.uniform_(-bound, bound, generator=generator)


def _gain(gain: Any, activation: str) -> float:
    """A number > 0, or ``auto``: ``calculate_gain`` of the model's activation."""
    if gain == "auto":
        return gain_for(activation)
    check(
        is_number(gain) and gain > 0,
        "gain",
        gain,
        "must be a number > 0 or auto (calculate_gain of model.activation)",
    )
    return float(gain)


def hadamard(n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sylvester's Hadamard matrix of size n (a power of two), entries +-1, built by Kronecker."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"hadamard size must be a power of two, got {n}")
    h = torch.ones(1, 1, dtype=dtype)
    base = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=dtype)
    while h.shape[0] < n:
        h = torch.kron(h, base)
    return h


def _center_kernel(flat: Tensor, shape: torch.Size) -> Tensor:
    """A 2-D (out, in) matrix at the centre of a conv kernel, zeros elsewhere."""
    kernel = torch.zeros(shape, dtype=flat.dtype)
    centre = tuple(s // 2 for s in shape[2:])
    kernel[(slice(None), slice(None), *centre)] = flat  # type: ignore[index]
    return kernel


# Every scheme's ``weight`` and ``generator`` arguments, as its Args: block says them:
#   weight: a Linear (out, in), conv (out, in/groups, *kernel) or Embedding weight, in place
#   generator: the ``torch.Generator`` every random number is drawn from (unused if deterministic)
# --------------------------------------------------------------------------------------- schemes
@register("zeros")
def zeros_(weight: Tensor, generator: torch.Generator) -> None:
    """Fill ``weight`` with zeros: W = 0.

    Every unit of a layer computes the same thing and gets the same gradient, so the symmetry
    between them is never broken (a random bias can break it: ``bias.kind=normal``).

    Args:
        weight: the weight to fill in place (any shape).
        generator: unused (deterministic).

    Example:
        >>> w = torch.empty(3, 5)
        >>> zeros_(w, torch.Generator())
    """
    weight.zero_()


@register("ones")
def ones_(weight: Tensor, generator: torch.Generator) -> None:
    """Fill ``weight`` with ones: W = 1.

    Symmetric like ``zeros``, and a layer's pre-activations grow with its fan-in.

    Args:
        weight: the weight to fill in place (any shape).
        generator: unused (deterministic).

    Example:
        >>> w = torch.empty(3, 5)
        >>> ones_(w, torch.Generator())
    """
    weight.fill_(1.0)


@register("constant")
def constant_(weight: Tensor, generator: torch.Generator, value: float = 0.5) -> None:
    """Fill ``weight`` with one value: W = value.

    Any constant leaves all units of a layer identical, as zeros do.

    Args:
        weight: the weight to fill in place (any shape).
        generator: unused (deterministic).
        value: the constant, a finite number.

    Example:
        >>> w = torch.empty(3, 5)
        >>> constant_(w, torch.Generator(), value=0.1)
    """
    check_number("value", value)
    weight.fill_(float(value))


@register("uniform")
def uniform_(
    weight: Tensor, generator: torch.Generator, low: float = -0.1, high: float = 0.1
) -> None:
    """Fill ``weight`` from a uniform distribution: W ~ U[low, high).

    Args:
        weight: the weight to fill in place (any shape).
        generator: the generator to draw from.
        low: the lower bound, a finite number.
        high: the upper bound, a finite number > ``low``.

    Example:
        >>> w = torch.empty(3, 5)
        >>> uniform_(w, torch.Generator().manual_seed(0), low=-0.01, high=0.01)
    """
    check_number("low", low)
    check_number("high", high)
    check(low < high, "low", low, f"must be < high ({high})")
    weight.uniform_(low, high, generator=generator)


@register("normal")
def normal_(
    weight: Tensor, generator: torch.Generator, mean: float = 0.0, std: float = 0.01
) -> None:
    """Fill ``weight`` from a normal distribution: W ~ N(mean, std^2).

    Args:
        weight: the weight to fill in place (any shape).
        generator: the generator to draw from.
        mean: the mean, a finite number.
        std: the standard deviation, a number >= 0.

    Example:
        >>> w = torch.empty(3, 5)
        >>> normal_(w, torch.Generator().manual_seed(0), std=0.1)
    """
    check_number("mean", mean)
    check(is_number(std) and std >= 0, "std", std, "must be a number >= 0")
    weight.normal_(mean, std, generator=generator)


@register("truncated_normal")
def truncated_normal_(
    weight: Tensor,
    generator: torch.Generator,
    mean: float = 0.0,
    std: float = 0.1,
    cut: float = 2.0,
) -> None:
    """Fill ``weight`` from a truncated normal: W ~ N(mean, std^2) cut to
    [mean - cut * std, mean + cut * std], TensorFlow's ``truncated_normal`` rule.

    ``cut`` is in units of std, where ``torch.nn.init.trunc_normal_`` takes absolute bounds
    ``a, b``: they are converted. The truncated variance is smaller than std^2 (a factor 0.774 at
    cut = 2).

    Args:
        weight: the weight to fill in place (any shape).
        generator: the generator to draw from.
        mean: the mean, a finite number.
        std: the standard deviation before truncation, a number > 0.
        cut: the half-width of the kept interval in units of ``std``, a number > 0.

    Example:
        >>> w = torch.empty(3, 5)
        >>> truncated_normal_(w, torch.Generator().manual_seed(0), std=0.1, cut=2.0)
    """
    check_number("mean", mean)
    check_positive("std", std)
    check_positive("cut", cut)
    nn.init.trunc_normal_(
        weight, mean, std, a=mean - cut * std, b=mean + cut * std, generator=generator
    )


@register("xavier")
def xavier_(
    weight: Tensor,
    generator: torch.Generator,
    distribution: str = "uniform",
    gain: float | str = 1.0,
    activation: str = "linear",
) -> None:
    """Xavier (Glorot) initialization: Var(W) = gain^2 * 2 / (fan_in + fan_out).

    From Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural
    networks", eq. 16. Uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)). The gain
    is 1, as published and as ``torch.nn.init.xavier_*``, Keras' and JAX's ``glorot_*`` define it.

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        distribution: ``uniform`` or ``normal`` (the same variance).
        gain: a number > 0, or ``auto``: ``calculate_gain`` of the model's activation (5/3 for
            tanh, sqrt(2) for relu).
        activation: the model's activation, passed by ``initialize_`` (for ``gain: auto``).

    Example:
        >>> w = torch.empty(3, 5)
        >>> xavier_(w, torch.Generator().manual_seed(0), gain="auto", activation="tanh")
    """
    gain = _gain(gain, activation)
    fan_in, fan_out = fans(weight)
    _fill_std_(weight, generator, gain * math.sqrt(2.0 / (fan_in + fan_out)), distribution)


@register("he")
def he_(
    weight: Tensor,
    generator: torch.Generator,
    distribution: str = "normal",
    mode: str = "fan_in",
    nonlinearity: str | None = None,
    negative_slope: float = 0.01,
    activation: str = "relu",
) -> None:
    """He (Kaiming) initialization: Var(W) = gain^2 / fan, gain = calculate_gain(nonlinearity).

    From He et al. 2015, "Delving Deep into Rectifiers". For ReLU, Var(W) = 2 / fan_in keeps the
    forward signal's second moment constant through depth.

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        distribution: ``normal`` or ``uniform`` (the same variance).
        mode: ``fan_in`` (keeps the forward signal) or ``fan_out`` (the backward signal).
        nonlinearity: the gain's nonlinearity (linear, sigmoid, tanh, relu, leaky_relu, selu);
            ``None``: the model's activation.
        negative_slope: leaky_relu's slope (for its gain), a number >= 0.
        activation: the model's activation, passed by ``initialize_``.

    Example:
        >>> w = torch.empty(3, 5)
        >>> he_(w, torch.Generator().manual_seed(0), mode="fan_out", nonlinearity="relu")
    """
    check_choice("mode", mode, ("fan_in", "fan_out"))
    check(
        is_number(negative_slope) and negative_slope >= 0,
        "negative_slope",
        negative_slope,
        "must be a number >= 0",
    )
    gain = gain_for(
        nonlinearity or activation, "nonlinearity" if nonlinearity else "activation", negative_slope
    )
    fan_in, fan_out = fans(weight)
    fan = fan_in if mode == "fan_in" else fan_out
    _fill_std_(weight, generator, gain / math.sqrt(fan), distribution)


@register("lecun")
def lecun_(
    weight: Tensor, generator: torch.Generator, distribution: str = "normal", gain: float = 1.0
) -> None:
    """LeCun initialization: Var(W) = gain^2 / fan_in, gain 1 by definition.

    From LeCun et al. 1998, "Efficient BackProp".

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        distribution: ``normal`` or ``uniform`` (the same variance).
        gain: a number > 0.

    Example:
        >>> w = torch.empty(3, 5)
        >>> lecun_(w, torch.Generator().manual_seed(0))
    """
    check_positive("gain", gain)
    fan_in, _ = fans(weight)
    _fill_std_(weight, generator, gain / math.sqrt(fan_in), distribution)


@register("torch_default")
def torch_default_(
    weight: Tensor, generator: torch.Generator, layer: nn.Module | None = None
) -> None:
    """What torch's layer constructors draw: W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for Linear
    and conv layers (``kaiming_uniform_`` with a = sqrt(5) reduces to this bound), W ~ N(0, 1)
    for an Embedding.

    Args:
        weight: the layer's weight, filled in place.
        generator: the generator to draw from.
        layer: the module, passed by ``initialize_`` (an ``nn.Embedding`` draws N(0, 1)).

    Example:
        >>> w = torch.empty(3, 5)
        >>> torch_default_(w, torch.Generator().manual_seed(0))
    """
    if isinstance(layer, nn.Embedding):
        weight.normal_(0.0, 1.0, generator=generator)
        return
    fan_in, _ = fans(weight)
    bound = 1.0 / math.sqrt(fan_in)
    weight.uniform_(-bound, bound, generator=generator)


@register("orthogonal")
def orthogonal_(
    weight: Tensor,
    generator: torch.Generator,
    gain: float | None = None,
    kernel: str = "flat",
    activation: str = "linear",
) -> None:
    """Orthogonal initialization: W = gain * Q, Q a random (semi-)orthogonal matrix (the QR of
    a Gaussian matrix), so W W^T = gain^2 I when out <= in.

    From Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear
    neural networks". A conv kernel (out, in, *k) with ``kernel: flat`` is the (out, in * prod(k))
    matrix made (semi-)orthogonal, as ``torch.nn.init.orthogonal_``, Keras and LSUV's paper do;
    ``kernel: delta`` is the delta-orthogonal kernel of Xiao et al. 2018 ("Dynamical Isometry
    and a Mean Field Theory of CNNs"): an orthogonal (out, in) matrix at the kernel's centre,
    zeros elsewhere.

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: the generator to draw from.
        gain: a number > 0; ``None``: ``calculate_gain`` of the model's activation.
        kernel: ``flat`` or ``delta`` (conv kernels only; a Linear weight ignores it).
        activation: the model's activation, passed by ``initialize_``.

    Example:
        >>> w = torch.empty(8, 4, 3, 3)
        >>> orthogonal_(w, torch.Generator().manual_seed(0), gain=1.0, kernel="delta")
    """
    gain = gain_for(activation) if gain is None else gain
    check_positive("gain", gain)
    check_choice("kernel", kernel, ("flat", "delta"))
    if kernel == "flat" or weight.dim() == 2:
        nn.init.orthogonal_(weight, gain=gain, generator=generator)
        return
    centre = torch.empty(weight.shape[0], weight.shape[1], dtype=weight.dtype)
    nn.init.orthogonal_(centre, gain=gain, generator=generator)
    weight.copy_(_center_kernel(centre, weight.shape))


@register("hadamard_identity")
def hadamard_identity_(weight: Tensor, generator: torch.Generator) -> None:
    """ZerO initialization: identities and Hadamard matrices only, no random draw.

    From Zhao et al. 2022, "ZerO Initialization: Initializing Neural Networks with only Zeros
    and Ones", Algorithm 1, for a weight of shape (out, in):

    - out == in: the identity;
    - out < in:  the partial identity I* (the first ``out`` coordinates pass through);
    - out > in:  c * I* H I*, with H the Sylvester Hadamard matrix of size 2^m,
      m = ceil(log2 out), and c = 2^(-(m-1)/2).

    A conv kernel (out, in, *k) gets that matrix at its centre, zeros elsewhere (Algorithm 2).
    Every seed gives the same network, and it still trains: the Hadamard blocks break the
    symmetry that a constant init cannot.

    Args:
        weight: a Linear (out, in) or conv (out, in/groups, *kernel) weight, filled in place.
        generator: unused (deterministic).

    Example:
        >>> w = torch.empty(5, 3)
        >>> hadamard_identity_(w, torch.Generator())
    """
    out_features, in_features = weight.shape[0], weight.shape[1]
    flat = torch.zeros(out_features, in_features, dtype=weight.dtype)
    if out_features <= in_features:
        flat.fill_diagonal_(1.0)
    else:
        m = math.ceil(math.log2(out_features))
        h = hadamard(2**m, dtype=weight.dtype)
        flat = h[:out_features, :in_features] * 2.0 ** (-(m - 1) / 2)
    weight.copy_(
        flat.reshape(weight.shape) if weight.dim() == 2 else _center_kernel(flat, weight.shape)
    )
