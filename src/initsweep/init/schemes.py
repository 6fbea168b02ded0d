"""The initializer library: a registry of named, vectorized weight-initialization schemes.

Adding a scheme is one function here plus one yaml file in ``conf/init/``:

    @register("my_scheme")
    def my_scheme_(weight, generator, *, alpha=1.0):
        '''Formula and paper.'''
        weight.normal_(0.0, alpha, generator=generator)

The function fills ``weight`` in place (torch.nn.init style: the name ends in ``_``), draws every
random number from ``generator`` and never loops over elements. Its keyword parameters are what
the yaml file may set; a parameter named ``activation`` receives the model's activation (for gains).

A parameter named ``layer`` receives the module itself (``torch_default`` fills an Embedding as
torch does). Schemes that act on the network as a whole after the per-layer fill (LSUV's variance
pass on data, Fixup's and zero-init-residual's rules for residual branches) register a
``network_pass``.

``initialize_`` applies an ``init`` config to any network: every weight layer (Linear,
Conv1d/2d/3d, Embedding: ``initsweep.models.zoo.weight_layers``) gets its scheme and parameters
(``layers`` rules select layers by index, module path glob or type), the ``scale`` multiplier and
the ``bias`` rule; every normalization layer gets the ``norm`` rule; then the network passes run.
Each weight layer draws from its own generator seeded by ``(init_seed, layer index)``, so a layer's
weights do not depend on the data seed, on anything drawn before, or on the schemes of the other
layers.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from initsweep.errors import ConfigError, require, require_choice
from initsweep.models.zoo import (
    WEIGHT_LAYER_TYPES,
    bias_of,
    norm_layers,
    residual_blocks,
    weight_layers,
    weight_of,
)

# Keys of an ``init`` config that are not scheme parameters.
COMMON_KEYS = ("scheme", "scale", "bias", "layers", "norm")
# Parameters a scheme's function may take that the network fills in, not the config.
CONTEXT_PARAMS = ("activation", "layer")
NONLINEARITIES = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
BIAS_KINDS = ("zeros", "constant", "normal", "torch_default")
# The bias rule's keys and their defaults (as in conf/shared/init_common.yaml).
BIAS_DEFAULTS: dict[str, Any] = {"kind": "zeros", "value": 0.0, "std": 0.1}
# The normalization layers' rule and its defaults (as in conf/shared/init_common.yaml): the affine
# weight (BatchNorm's gamma) is ones, zeros or ``value``; the bias is always zero and BatchNorm's
# running statistics start at mean 0, variance 1, as torch's constructors set them.
NORM_WEIGHTS = ("ones", "zeros", "constant")
NORM_DEFAULTS: dict[str, Any] = {"weight": "ones", "value": 1.0}


@dataclass(frozen=True)
class Scheme:
    """A registered scheme: its fill function and the parameters it accepts."""

    name: str
    fill_: Callable[..., None]
    params: tuple[str, ...]
    wants_activation: bool
    wants_layer: bool = False
    # A second pass over the whole network after every layer is filled: LSUV's on a data batch
    # (``needs_data``), the residual rules' on the network's structure.
    network_pass: Callable[..., None] | None = None
    needs_data: bool = False


SCHEMES: dict[str, Scheme] = {}


def register(name: str, network_pass: Callable[..., None] | None = None, needs_data: bool = True
             ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fill_(weight, generator, **params)`` under ``name``.

    ``network_pass(net, layers, draw_batch, **params)`` runs after every layer is filled, on the
    layers given this scheme; ``needs_data``: it needs ``draw_batch`` (a ConfigError without).

    Refuses a name already taken (``ValueError``): a second scheme of the same name would
    silently replace the first for every config that names it.
    """
    if name in SCHEMES:
        raise ValueError(f"init scheme {name!r} is already registered "
                         f"(by {SCHEMES[name].fill_.__module__}.{SCHEMES[name].fill_.__name__})")

    def decorator(fill_: Callable[..., None]) -> Callable[..., None]:
        names = list(inspect.signature(fill_).parameters)[2:]  # skip weight, generator
        params = tuple(n for n in names if n not in CONTEXT_PARAMS)
        if network_pass is not None:
            params += tuple(list(inspect.signature(network_pass).parameters)[3:])
        SCHEMES[name] = Scheme(name, fill_, params, "activation" in names, "layer" in names,
                               network_pass, needs_data and network_pass is not None)
        return fill_

    return decorator


def get_scheme(name: str, field_name: str = "init.scheme") -> Scheme:
    require_choice(field_name, name, SCHEMES)
    return SCHEMES[name]


# --------------------------------------------------------------------------------------- helpers
def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or conv (out, in/groups, *kernel) weight, as
    ``torch.nn.init`` computes them: the receptive field (kernel size) multiplies both. An
    Embedding's (num_embeddings, dim) weight gets fan_in = dim, as torch reads any 2-D shape."""
    if weight.dim() < 2:
        raise ValueError(f"fan needs a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


class InvalidInitParameter(ValueError):
    """A scheme's parameter out of its range, raised like ``torch.nn.init``'s ``ValueError``s.

    ``param`` names the parameter as the scheme's function calls it (``low``, ``bias.std``,
    ``activation``); ``initialize_`` turns it into a one-line ``ConfigError`` naming the config
    field the value came from (``init.low``, ``init.layers[0].low``, ``model.activation``).
    """

    def __init__(self, param: str, value: Any, allowed: str) -> None:
        self.param, self.value, self.allowed = param, value, allowed
        super().__init__(f"{param}={value!r}: {allowed}")


def _check(ok: bool, param: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InvalidInitParameter(param, value, allowed)


def _choice(param: str, value: Any, choices: Sequence[str]) -> None:
    _check(value in choices, param, value, f"must be one of {', '.join(sorted(choices))}")


def gain_for(activation: str, param: str = "activation", negative_slope: float = 0.01) -> float:
    """``torch.nn.init.calculate_gain``, raising ``InvalidInitParameter`` for unknown names."""
    _choice(param, activation, NONLINEARITIES)
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", negative_slope)
    return nn.init.calculate_gain(activation)  # type: ignore[arg-type]  # checked just above


def _fill_std_(weight: Tensor, generator: torch.Generator, std: float, distribution: str) -> None:
    """Zero-mean normal with ``std``, or the uniform with the same variance (bound sqrt(3) std)."""
    _choice("distribution", distribution, ("uniform", "normal"))
    if distribution == "normal":
        weight.normal_(0.0, std, generator=generator)
    else:
        bound = math.sqrt(3.0) * std
        weight.uniform_(-bound, bound, generator=generator)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _number(param: str, value: Any) -> None:
    _check(_is_number(value), param, value, "must be a finite number")


def _positive(param: str, value: Any) -> None:
    _check(_is_number(value) and value > 0, param, value, "must be a number > 0")


# --------------------------------------------------------------------------------------- schemes
@register("zeros")
def zeros_(weight: Tensor, generator: torch.Generator) -> None:
    """W = 0. Every unit of a layer computes the same thing: symmetry is never broken (S0, S2)."""
    weight.zero_()


@register("ones")
def ones_(weight: Tensor, generator: torch.Generator) -> None:
    """W = 1. Symmetric like zeros, and the pre-activations grow with fan-in (S0, S1)."""
    weight.fill_(1.0)


@register("constant")
def constant_(weight: Tensor, generator: torch.Generator, value: float = 0.5) -> None:
    """W = value. Any constant leaves all units of a layer identical (S0, S4 claim 2)."""
    _number("value", value)
    weight.fill_(float(value))


@register("uniform")
def uniform_(weight: Tensor, generator: torch.Generator, low: float = -0.1,
             high: float = 0.1) -> None:
    """W ~ U[low, high). S1 sweeps [0,1), [-1,1), [-0.1,0.1), [-0.01,0.01), [-0.001,0.001)."""
    _number("low", low)
    _number("high", high)
    _check(low < high, "low", low, f"must be < high ({high})")
    weight.uniform_(low, high, generator=generator)


@register("normal")
def normal_(weight: Tensor, generator: torch.Generator, mean: float = 0.0,
            std: float = 0.01) -> None:
    """W ~ N(mean, std^2). S0 uses std 0.01; S1 std 0.1; S2/S3 std 1 (times 10 in S2)."""
    _number("mean", mean)
    _check(_is_number(std) and std >= 0, "std", std, "must be a number >= 0")
    weight.normal_(mean, std, generator=generator)


@register("truncated_normal")
def truncated_normal_(weight: Tensor, generator: torch.Generator, mean: float = 0.0,
                      std: float = 0.1, cut: float = 2.0) -> None:
    """W ~ N(mean, std^2) truncated to [mean - cut*std, mean + cut*std] (TensorFlow's rule, S1).

    ``cut`` is in units of std (default 2, as in the studies). Note that
    ``torch.nn.init.trunc_normal_`` takes absolute bounds ``a, b``; we convert. The truncated
    variance is smaller than std^2 (by ~0.774 at cut=2).
    """
    _number("mean", mean)
    _positive("std", std)
    _positive("cut", cut)
    nn.init.trunc_normal_(weight, mean, std, a=mean - cut * std, b=mean + cut * std,
                          generator=generator)


def _gain(gain: Any, activation: str) -> float:
    """A number > 0, or ``auto``: ``calculate_gain`` of the model's activation."""
    if gain == "auto":
        return gain_for(activation)
    _check(_is_number(gain) and gain > 0, "gain", gain,
           "must be a number > 0 or auto (calculate_gain of model.activation)")
    return float(gain)


@register("xavier")
def xavier_(weight: Tensor, generator: torch.Generator, distribution: str = "uniform",
            gain: float | str = 1.0, activation: str = "linear") -> None:
    """Glorot & Bengio 2010, eq. 16: Var(W) = gain^2 * 2 / (fan_in + fan_out).

    Uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)). ``gain`` is 1, as published
    and as ``torch.nn.init.xavier_*``, Keras' ``glorot_*`` and JAX's ``glorot_*`` define it;
    ``gain: auto`` takes ``calculate_gain(model activation)`` (5/3 for tanh, sqrt(2) for relu).
    """
    gain = _gain(gain, activation)
    fan_in, fan_out = fans(weight)
    _fill_std_(weight, generator, gain * math.sqrt(2.0 / (fan_in + fan_out)), distribution)


@register("he")
def he_(weight: Tensor, generator: torch.Generator, distribution: str = "normal",
        mode: str = "fan_in", nonlinearity: str | None = None, negative_slope: float = 0.01,
        activation: str = "relu") -> None:
    """He et al. 2015 (Kaiming): Var(W) = gain^2 / fan, gain = calculate_gain(nonlinearity).

    For ReLU: Var(W) = 2 / fan_in, which keeps the forward signal's second moment constant
    through depth (S3). ``nonlinearity`` defaults to the model's activation; ``mode`` chooses
    fan_in (forward signal) or fan_out (backward signal).
    """
    _choice("mode", mode, ("fan_in", "fan_out"))
    _check(_is_number(negative_slope) and negative_slope >= 0, "negative_slope",
            negative_slope, "must be a number >= 0")
    gain = gain_for(nonlinearity or activation, "nonlinearity" if nonlinearity else "activation",
                    negative_slope)
    fan_in, fan_out = fans(weight)
    fan = fan_in if mode == "fan_in" else fan_out
    _fill_std_(weight, generator, gain / math.sqrt(fan), distribution)


@register("lecun")
def lecun_(weight: Tensor, generator: torch.Generator, distribution: str = "normal",
           gain: float = 1.0) -> None:
    """LeCun et al. 1998 (Efficient BackProp): Var(W) = gain^2 / fan_in, gain 1 by definition."""
    _positive("gain", gain)
    fan_in, _ = fans(weight)
    _fill_std_(weight, generator, gain / math.sqrt(fan_in), distribution)


@register("torch_default")
def torch_default_(weight: Tensor, generator: torch.Generator,
                   layer: nn.Module | None = None) -> None:
    """What torch's constructors do: W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for Linear and
    Conv (kaiming_uniform_ with a=sqrt(5) reduces to this bound; S1 calls it the "general
    rule"), W ~ N(0, 1) for an Embedding.
    """
    if isinstance(layer, nn.Embedding):
        weight.normal_(0.0, 1.0, generator=generator)
        return
    fan_in, _ = fans(weight)
    bound = 1.0 / math.sqrt(fan_in)
    weight.uniform_(-bound, bound, generator=generator)


@register("orthogonal")
def orthogonal_(weight: Tensor, generator: torch.Generator, gain: float | None = None,
                kernel: str = "flat", activation: str = "linear") -> None:
    """Saxe et al. 2014: W = gain * Q, Q a random (semi-)orthogonal matrix (QR of a Gaussian).

    Rows (or columns, whichever are fewer) are orthonormal: W W^T = gain^2 I when out <= in.
    ``gain`` defaults to ``calculate_gain(model activation)``. A conv kernel (out, in, *k):
    ``kernel: flat`` makes the (out, in * prod(k)) matrix (semi-)orthogonal, as
    ``torch.nn.init.orthogonal_``, Keras and LSUV's paper (Mishkin & Matas 2016) do;
    ``kernel: delta`` is Xiao et al. 2018's delta-orthogonal kernel: an orthogonal (out, in)
    matrix at the kernel's centre, zeros elsewhere (a linear layer ignores it).
    """
    gain = gain_for(activation) if gain is None else gain
    _positive("gain", gain)
    _choice("kernel", kernel, ("flat", "delta"))
    if kernel == "flat" or weight.dim() == 2:
        nn.init.orthogonal_(weight, gain=gain, generator=generator)
        return
    centre = torch.empty(weight.shape[0], weight.shape[1], dtype=weight.dtype)
    nn.init.orthogonal_(centre, gain=gain, generator=generator)
    weight.copy_(_center_kernel(centre, weight.shape))


def hadamard(n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sylvester's Hadamard matrix of size n (a power of two), entries +-1, built by Kronecker."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"hadamard size must be a power of two, got {n}")
    h = torch.ones(1, 1, dtype=dtype)
    base = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=dtype)
    while h.shape[0] < n:
        h = torch.kron(h, base)
    return h


@register("hadamard_identity")
def hadamard_identity_(weight: Tensor, generator: torch.Generator) -> None:
    """ZerO (Zhao et al. 2022, "ZerO Initialization: Initializing Neural Networks with only
    Zeros and Ones"), Algorithm 1, for a weight of shape (out, in) (for a conv kernel
    (out, in, *k), Algorithm 2: that matrix at the kernel's centre, zeros elsewhere):

    - out == in: the identity;
    - out < in:  the partial identity I* (the first ``out`` coordinates pass through);
    - out > in:  c * I* H I*, with H the Sylvester Hadamard matrix of size 2^m,
      m = ceil(log2 out), and c = 2^(-(m-1)/2).

    Deterministic: no random draw at all, so every seed gives the same network. It still trains,
    because the Hadamard blocks break the symmetry that a constant init cannot (S0's wish for a
    fixed init that does not cripple the network).
    """
    out_features, in_features = weight.shape[0], weight.shape[1]
    flat = torch.zeros(out_features, in_features, dtype=weight.dtype)
    if out_features <= in_features:
        flat.fill_diagonal_(1.0)
    else:
        m = math.ceil(math.log2(out_features))
        h = hadamard(2**m, dtype=weight.dtype)
        flat = h[:out_features, :in_features] * 2.0 ** (-(m - 1) / 2)
    weight.copy_(flat.reshape(weight.shape) if weight.dim() == 2 else
                 _center_kernel(flat, weight.shape))


def _center_kernel(flat: Tensor, shape: torch.Size) -> Tensor:
    """A 2-D (out, in) matrix at the centre of a conv kernel, zeros elsewhere (ZerO for conv)."""
    kernel = torch.zeros(shape, dtype=flat.dtype)
    centre = tuple(s // 2 for s in shape[2:])
    kernel[(slice(None), slice(None), *centre)] = flat  # type: ignore[index]
    return kernel


def layer_output(layer: nn.Module, x: Tensor) -> Tensor:
    """What ``layer`` computes on ``x`` with its current weights, without calling its hooks."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight, layer.bias)  # typed: nn.Linear's own attributes
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return layer._conv_forward(x, layer.weight, layer.bias)
    if isinstance(layer, nn.Embedding):
        return F.embedding(x, layer.weight, layer.padding_idx, layer.max_norm, layer.norm_type,
                           layer.scale_grad_by_freq, layer.sparse)
    raise TypeError(f"no output rule for {type(layer).__name__}")


def lsuv_pass(net: nn.Module, layers: Sequence[nn.Module], draw_batch: Callable[[int], Tensor],
              tol: float = 0.1, max_iter: int = 10, batch_size: int = 256) -> None:
    """LSUV, second step (Mishkin & Matas 2016, "All you need is a good init"): layer by layer,
    from the input, divide W by sqrt(Var(layer output on the batch)) until |Var - 1| < tol or
    ``max_iter`` rescalings. The first step (orthogonal weights) is ``lsuv_``'s fill. A conv
    layer's output variance is over the whole output blob (samples, channels, positions), as in
    the paper's conv nets. ``draw_batch(batch_size)`` gives the training inputs, drawn
    reproducibly by init_seed.

    One forward pass does it all: a hook on each layer rescales the layer as the batch reaches
    it and hands the rescaled output on, so the layers after it see what the layer-by-layer
    algorithm would show them. (Re-running the whole network for every layer and iteration
    was O(depth^2): 14 s for a 100-layer MLP.)
    """
    _positive("tol", tol)
    _check(isinstance(max_iter, int) and not isinstance(max_iter, bool) and max_iter >= 1,
           "max_iter", max_iter, "must be an integer >= 1")
    _check(isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 2,
           "batch_size", batch_size, "must be an integer >= 2")
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


@register("lsuv", network_pass=lsuv_pass)
def lsuv_(weight: Tensor, generator: torch.Generator, activation: str = "linear") -> None:
    """LSUV's first step: an orthogonal matrix (gain 1); the variance pass follows on data."""
    nn.init.orthogonal_(weight, gain=1.0, generator=generator)


# ------------------------------------------------------------------------ residual networks
class NoResidualBlocks(InvalidInitParameter):
    """A residual scheme on a network without residual blocks (or with none of them selected)."""


def _residual_branches(net: nn.Module, layers: Sequence[nn.Module], scheme: str
                       ) -> list[tuple[list[nn.Module], list[nn.Module]]]:
    """(weight layers, norm layers) of each residual branch whose last weight layer was given
    ``scheme``; an ``InvalidInitParameter`` on ``scheme`` when there is none."""
    blocks = residual_blocks(net)
    if not blocks:
        raise NoResidualBlocks("scheme", scheme, "the model has no residual blocks (modules "
                               "with a residual_branch(); model=resnet with model.skip=true "
                               "has them; docs/extending.md)")
    chosen = {id(layer) for layer in layers}
    branches = []
    for _, branch in blocks:
        weights = [m for m in branch if isinstance(m, WEIGHT_LAYER_TYPES)]
        if weights and id(weights[-1]) in chosen:
            branches.append((weights, [m for m in branch if m not in weights]))
    if not branches:
        raise NoResidualBlocks("scheme", scheme, f"its rule selects no residual branch's last "
                               f"layer (the model has {len(blocks)} residual blocks)")
    return branches


def _zero_(module: nn.Module) -> None:
    weight_of(module).zero_()
    bias = bias_of(module)
    if bias is not None:
        bias.zero_()


def zero_init_residual_pass(net: nn.Module, layers: Sequence[nn.Module],
                            draw_batch: Callable[[int], Tensor] | None) -> None:
    """Goyal et al. 2017 ("Accurate, Large Minibatch SGD", section 5.1): the last BatchNorm of
    each residual branch starts with gamma = 0, so every block starts as the identity. A branch
    without a norm layer gets its last weight layer zeroed instead (its bias too)."""
    for weights, norms in _residual_branches(net, layers, "zero_init_residual"):
        last_norm = next((m for m in reversed(norms) if getattr(m, "weight", None) is not None),
                         None)
        if last_norm is not None:
            weight_of(last_norm).zero_()
        else:
            _zero_(weights[-1])


def fixup_pass(net: nn.Module, layers: Sequence[nn.Module],
               draw_batch: Callable[[int], Tensor] | None) -> None:
    """Fixup (Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
    Normalization"), rules 1 and 2: the classification layer (the network's last weight layer)
    and the last weight layer of each residual branch start at 0; the other weight layers of a
    branch of m weight layers are scaled by L^(-1/(2m-2)), L the number of residual branches
    (L^(-1/2) for two-layer basic blocks). Rule 3 (scalar multipliers and biases added to the
    architecture) is not an initialization and is not built here.
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


@register("zero_init_residual", network_pass=zero_init_residual_pass, needs_data=False)
def zero_init_residual_(weight: Tensor, generator: torch.Generator, distribution: str = "normal",
                        mode: str = "fan_in", nonlinearity: str | None = None,
                        negative_slope: float = 0.01, activation: str = "relu") -> None:
    """He et al. 2015 (as ``he``), then each residual branch's last BatchNorm gamma = 0
    (``zero_init_residual_pass``, Goyal et al. 2017)."""
    he_(weight, generator, distribution, mode, nonlinearity, negative_slope, activation)


@register("fixup", network_pass=fixup_pass, needs_data=False)
def fixup_(weight: Tensor, generator: torch.Generator, distribution: str = "normal",
           mode: str = "fan_in", nonlinearity: str | None = None, negative_slope: float = 0.01,
           activation: str = "relu") -> None:
    """He et al. 2015 (as ``he``, Fixup's "standard method"), then Fixup's rescaling and zeros
    (``fixup_pass``, Zhang et al. 2019)."""
    he_(weight, generator, distribution, mode, nonlinearity, negative_slope, activation)


# --------------------------------------------------------------------------------------- biases
def fill_bias_(bias: Tensor, weight: Tensor, kind: str, value: float, std: float,
               generator: torch.Generator) -> None:
    """Bias rule: zeros, constant(value), normal(0, std) or torch_default U(+-1/sqrt(fan_in)).

    A random bias alone breaks the symmetry of zero weights (S4 claim 4).
    """
    _choice("bias.kind", kind, BIAS_KINDS)
    if kind == "zeros":
        bias.zero_()
    elif kind == "constant":
        _number("bias.value", value)
        bias.fill_(float(value))
    elif kind == "normal":
        _check(_is_number(std) and std >= 0, "bias.std", std, "must be a number >= 0")
        bias.normal_(0.0, std, generator=generator)
    else:
        bound = 1.0 / math.sqrt(fans(weight)[0])
        bias.uniform_(-bound, bound, generator=generator)


# ------------------------------------------------------------------------ normalization layers
def norm_rule(norm: Any, field_name: str = "init.norm") -> dict[str, Any]:
    """The ``norm`` mapping, checked: ``weight: ones | zeros | constant`` (``value``)."""
    norm = {} if norm is None else norm
    require(isinstance(norm, Mapping), field_name, norm,
            f"must be a mapping with keys {', '.join(NORM_DEFAULTS)}")
    for key in norm:
        require(key in NORM_DEFAULTS, f"{field_name}.{key}", norm[key],
                f"not a key of the norm rule; valid: {', '.join(NORM_DEFAULTS)}")
    rule = {**NORM_DEFAULTS, **norm}
    require_choice(f"{field_name}.weight", rule["weight"], NORM_WEIGHTS)
    require(_is_number(rule["value"]), f"{field_name}.value", rule["value"],
            "must be a finite number")
    return rule


def init_norm_(layer: nn.Module, rule: Mapping[str, Any]) -> None:
    """A normalization layer as the rule says: weight ones / zeros / value, bias zeros, running
    statistics reset (mean 0, variance 1, no batches seen)."""
    if getattr(layer, "weight", None) is not None:
        fill = {"ones": 1.0, "zeros": 0.0, "constant": float(rule["value"])}[rule["weight"]]
        weight_of(layer).fill_(fill)
    bias = bias_of(layer)
    if bias is not None:
        bias.zero_()
    reset = getattr(layer, "reset_running_stats", None)
    if callable(reset) and getattr(layer, "track_running_stats", False):
        reset()


# --------------------------------------------------------------------------- applying a config
@dataclass
class LayerSpec:
    """What one weight layer gets: scheme, its parameters, scale and bias rule.

    ``sources`` says which config entry set each parameter (``init`` or ``init.layers[r]``), so
    that an invalid value is reported at the field the user wrote. ``path`` and ``type`` name
    the layer in the network (empty when specs are resolved for a bare layer count).
    """

    scheme: str
    params: dict[str, Any]
    scale: float = 1.0
    bias: dict[str, Any] = field(default_factory=lambda: dict(BIAS_DEFAULTS))
    sources: dict[str, str] = field(default_factory=dict)
    path: str = ""
    type: str = ""

    def field_of(self, param: str) -> str:
        """The config field an ``InvalidInitParameter`` of this layer is about."""
        if param == "activation":
            return "model.activation"  # the model's activation, passed to gain-taking schemes
        return f"{self.sources.get(param, 'init')}.{param}"


def _is_index_text(text: str) -> bool:
    return text.strip().lstrip("+-").isdigit()


def _listing(items: Sequence[str], limit: int = 16) -> str:
    """``a, b, c`` or, for a long list, its start and end and how many in all."""
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:10])}, ..., {', '.join(items[-3:])} ({len(items)} in all)"


def _select_paths(pattern: str, paths: Sequence[str], field_name: str, selector: Any) -> list[int]:
    chosen = [i for i, path in enumerate(paths) if fnmatch.fnmatchcase(path, pattern)]
    require(len(chosen) > 0, field_name, selector,
            f"matches no weight layer's module path; the model's weight layers: "
            f"{_listing(list(paths))}")
    return chosen


def _select(selector: Any, n_layers: int, field_name: str,
            paths: Sequence[str] | None = None) -> list[int]:
    """Layer indices for a rule's ``select``: an int, a list of ints, a slice "start:stop", or a
    glob over the weight layers' module paths (``"stages.2.*.conv2"``), or a list of those."""
    if isinstance(selector, str) and ":" in selector:
        try:
            parts = [int(p) if p.strip() else None for p in selector.split(":")]
            indices = list(range(n_layers))[slice(*parts)]
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{field_name}={selector!r}: not a slice like '0:2' ({err})"
                              ) from None
        # Python would clip "0:9" to the layers that exist; a rule naming layers that do not
        # exist is a mistake (a config written for another network), so it is an error.
        require(all(p is None or -n_layers <= p <= n_layers for p in parts[:2]), field_name,
                selector, f"slice bounds must be in {-n_layers}..{n_layers} "
                f"(the network has weight layers 0..{n_layers - 1})")
        require(len(indices) > 0, field_name, selector,
                f"selects no layer; the network has weight layers 0..{n_layers - 1}")
        return indices
    items = list(selector) if isinstance(selector, Sequence) and not isinstance(selector, str) \
        else [selector]
    require(len(items) > 0, field_name, selector,
            f"selects no layer; the network has weight layers 0..{n_layers - 1}")
    out: list[int] = []
    for item in items:
        # A string is a module path glob; one that reads as a number is a quoted index (an
        # MLP's paths are "0", "2", ...: an index written as a string would pick the wrong one).
        if isinstance(item, str) and paths is not None and not _is_index_text(item):
            out.extend(_select_paths(item, paths, field_name, selector))
            continue
        require(isinstance(item, int) and not isinstance(item, bool)
                and -n_layers <= item < n_layers, field_name, selector,
                f"layer indices must be integers in {-n_layers}..{n_layers - 1} "
                f"(the network has {n_layers} weight layers)")
        out.append(item % n_layers)
    return list(dict.fromkeys(out))


def _select_types(selector: Any, types: Sequence[tuple[str, ...]] | None, field_name: str
                  ) -> list[int]:
    """Layer indices whose class (or a base class) has the name ``selector`` (or one of a list)."""
    names = [selector] if isinstance(selector, str) else selector
    require(isinstance(names, Sequence) and len(names) > 0
            and all(isinstance(n, str) for n in names), field_name, selector,
            "must be a layer class name such as Conv2d, or a list of them")
    require(types is not None, field_name, selector, "needs the model's layers")
    assert types is not None
    chosen = [i for i, mro in enumerate(types) if any(n in mro for n in names)]
    if not chosen:
        counts = ", ".join(f"{t} ({n})" for t, n in Counter(mro[0] for mro in types).items())
        raise ConfigError(f"{field_name}={selector!r}: the model has no weight layer of this "
                          f"type; its weight layers are {counts} (normalization layers follow "
                          "init.norm)")
    return chosen


def _bias_rule(bias: Any, field_name: str) -> dict[str, Any]:
    """A ``bias`` mapping checked for unknown keys (a typo would otherwise be ignored)."""
    require(isinstance(bias, Mapping), field_name, bias,
            f"must be a mapping with keys {', '.join(BIAS_DEFAULTS)}")
    for key in bias:
        require(key in BIAS_DEFAULTS, f"{field_name}.{key}", bias[key],
                f"not a key of the bias rule; valid: {', '.join(BIAS_DEFAULTS)}")
    return dict(bias)


def layer_specs(init_cfg: Mapping[str, Any],
                layers: int | Sequence[tuple[str, nn.Module]]) -> list[LayerSpec]:
    """Resolve an ``init`` config into one spec per weight layer, validating every field.

    ``layers`` is the network's ``weight_layers`` (or just their number). ``init.layers`` is a
    list of rules ``{select: <int | [ints] | "start:stop" | "path.glob*">, type: <class name>,
    <any init key>}`` (``select``, ``type`` or both) applied in order on top of the top-level
    scheme; a rule naming another ``scheme`` starts from that scheme's defaults instead of
    inheriting the top-level parameters.
    """
    if isinstance(layers, int):
        n_layers, paths, types = layers, None, None
    else:
        n_layers = len(layers)
        paths = [path for path, _ in layers]
        types = [tuple(c.__name__ for c in type(m).__mro__) for _, m in layers]
    top = dict(init_cfg)
    base_params = {k: v for k, v in top.items() if k not in COMMON_KEYS}
    top_bias = {**BIAS_DEFAULTS, **_bias_rule(top.get("bias") or {}, "init.bias")}
    norm_rule(top.get("norm"))
    require(_is_number(top.get("scale", 1.0)) and top.get("scale", 1.0) > 0, "init.scale",
            top.get("scale"), "must be a number > 0")
    specs = [LayerSpec(top.get("scheme", "torch_default"), dict(base_params),
                       top.get("scale", 1.0), dict(top_bias),
                       path=paths[i] if paths else "", type=types[i][0] if types else "")
             for i in range(n_layers)]
    for r, rule in enumerate(top.get("layers") or []):
        where = f"init.layers[{r}]"
        require(isinstance(rule, Mapping), where, rule,
                "a rule is a mapping {select: ..., <init keys>}")
        rule = dict(rule)
        require("select" in rule or "type" in rule, where, rule,
                "a rule needs a 'select' key (layer indices, a slice '0:2' or a module path "
                "glob) or a 'type' key (a layer class such as Conv2d)")
        require("norm" not in rule, f"{where}.norm", rule.get("norm"),
                "a rule selects weight layers; init.norm applies to every normalization layer")
        if "scale" in rule:
            require(_is_number(rule["scale"]) and rule["scale"] > 0, f"{where}.scale",
                    rule["scale"], "must be a number > 0")
        rule_bias = _bias_rule(rule.get("bias") or {}, f"{where}.bias")
        chosen = list(range(n_layers))
        if "select" in rule:
            chosen = _select(rule.pop("select"), n_layers, f"{where}.select", paths)
        if "type" in rule:
            of_type = set(_select_types(rule.pop("type"), types, f"{where}.type"))
            chosen = [i for i in chosen if i in of_type]
            require(len(chosen) > 0, where, "select and type",
                    "select and type together select no weight layer")
        for i in chosen:
            spec = specs[i]
            if "scheme" in rule and rule["scheme"] != spec.scheme:
                get_scheme(rule["scheme"], f"{where}.scheme")
                spec.scheme, spec.params = rule["scheme"], {}
                spec.sources["scheme"] = where
            params = {k: v for k, v in rule.items() if k not in COMMON_KEYS}
            spec.params.update(params)
            spec.scale = rule.get("scale", spec.scale)
            spec.bias = {**spec.bias, **rule_bias}
            spec.sources.update({k: where for k in params})
            spec.sources.update({f"bias.{k}": where for k in rule_bias})
    for spec in specs:
        scheme = get_scheme(spec.scheme)
        for key in sorted(set(spec.params) - set(scheme.params)):
            raise ConfigError(f"{spec.sources.get(key, 'init')}.{key}={spec.params[key]!r}: not "
                              f"a parameter of scheme '{spec.scheme}'; valid: "
                              f"{', '.join(scheme.params + COMMON_KEYS)}")
        require_choice(spec.field_of("bias.kind"), spec.bias["kind"], BIAS_KINDS)
    return specs


def layer_generator(init_seed: int, layer_index: int, stream: int = 0) -> torch.Generator:
    """A generator owned by one layer: seeded by (init_seed, layer, stream) via SeedSequence."""
    state = np.random.SeedSequence([init_seed, layer_index, stream]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]) & ((1 << 63) - 1))


@torch.no_grad()
def initialize_(net: nn.Module, init_cfg: Mapping[str, Any], init_seed: int,
                activation: str = "relu", draw_batch: Callable[[int], Tensor] | None = None,
                ) -> list[LayerSpec]:
    """Initialize every weight and normalization layer of ``net`` from ``init_cfg``; return the
    per-weight-layer specs.

    Weight layers (``weight_layers``: Linear, Conv1d/2d/3d, Embedding) get their scheme, scale
    and bias rule, each drawing from the generator of ``(init_seed, its index)``; an Embedding's
    ``padding_idx`` row is zero, as torch makes it. Normalization layers get ``init.norm``.
    Then the schemes' network passes run (LSUV on ``draw_batch(n)``, n training inputs; the
    residual rules). Parameters of any other kind keep what the model's constructor gave them.
    Raises ``ConfigError`` (one line, naming the field) for invalid parameters.
    """
    require(isinstance(init_seed, int) and init_seed >= 0, "init_seed", init_seed,
            "must be an integer >= 0")
    named = weight_layers(net)
    layers = [layer for _, layer in named]
    specs = layer_specs(init_cfg, named)
    for i, (layer, spec) in enumerate(zip(layers, specs, strict=True)):
        scheme = SCHEMES[spec.scheme]
        fill_params = {k: v for k, v in spec.params.items()
                       if k in inspect.signature(scheme.fill_).parameters}
        if scheme.wants_activation:
            fill_params["activation"] = activation
        if scheme.wants_layer:
            fill_params["layer"] = layer
        with _reported_at(spec):
            # Draw in float32 on CPU, then copy: identical weights whatever the device or dtype.
            target = weight_of(layer)
            weight = torch.empty(target.shape, dtype=torch.float32)
            scheme.fill_(weight, layer_generator(init_seed, i), **fill_params)
            if isinstance(layer, nn.Embedding) and layer.padding_idx is not None:
                weight[layer.padding_idx] = 0.0
            target.copy_(weight.mul_(spec.scale))
            target_bias = bias_of(layer)
            if target_bias is not None:
                bias = torch.empty(target_bias.shape, dtype=torch.float32)
                fill_bias_(bias, weight, spec.bias["kind"], spec.bias["value"], spec.bias["std"],
                           layer_generator(init_seed, i, stream=1))
                target_bias.copy_(bias)
    rule = norm_rule(dict(init_cfg).get("norm"))
    for _, norm in norm_layers(net):
        init_norm_(norm, rule)
    for scheme_name in dict.fromkeys(s.scheme for s in specs):
        scheme = SCHEMES[scheme_name]
        if scheme.network_pass is None:
            continue
        chosen = [layer for layer, s in zip(layers, specs, strict=True) if s.scheme == scheme_name]
        first = specs[layers.index(chosen[0])]
        if scheme.needs_data and draw_batch is None:
            raise ConfigError(f"{first.field_of('scheme')}={scheme_name!r}: needs a data batch "
                              "(data-dependent scheme) but none was given")
        pass_params = {k: v for k, v in first.params.items()
                       if k in inspect.signature(scheme.network_pass).parameters}
        with _reported_at(first):
            scheme.network_pass(net, chosen, draw_batch, **pass_params)
    return specs


@contextmanager
def _reported_at(spec: LayerSpec) -> Iterator[None]:
    """Turn a scheme's ``InvalidInitParameter`` into a ``ConfigError`` at the config field."""
    try:
        yield
    except InvalidInitParameter as err:
        raise ConfigError(f"{spec.field_of(err.param)}={err.value!r}: {err.allowed}") from None
