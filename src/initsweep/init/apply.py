"""Applying an ``init`` config to a network: ``layer_specs`` resolves the config into one
``LayerSpec`` per weight layer (validating every field), ``initialize_`` fills the layers.

Every weight layer (Linear, Conv1d/2d/3d, Embedding: ``initsweep.models.layers.weight_layers``)
gets its scheme and parameters (``layers`` rules select layers by index, module path glob or
type), the ``scale`` multiplier and the ``bias`` rule; every normalization layer gets the ``norm``
rule; then the network passes run. Each weight layer draws from its own generator seeded by
``(init_seed, layer index)``, so a layer's weights do not depend on the data seed, on anything
drawn before, or on the schemes of the other layers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from initsweep.errors import ConfigError, require, require_choice
from initsweep.init.checks import InvalidInitParameter, is_number
from initsweep.init.registry import COMMON_KEYS, get_scheme
from initsweep.init.rules import (
    BIAS_KINDS,
    LayerSpec,
    bias_rule,
    complete_bias_rule,
    fill_bias_,
    init_norm_,
    norm_rule,
    select,
    select_types,
)
from initsweep.models.layers import bias_of, norm_layers, weight_layers, weight_of


def layer_specs(
    init_cfg: Mapping[str, Any], layers: int | Sequence[tuple[str, nn.Module]]
) -> list[LayerSpec]:
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
    top_bias = complete_bias_rule(bias_rule(top.get("bias") or {}, "init.bias"))
    norm_rule(top.get("norm"))
    require(
        is_number(top.get("scale", 1.0)) and top.get("scale", 1.0) > 0,
        "init.scale",
        top.get("scale"),
        "must be a number > 0",
    )
    specs = [
        LayerSpec(
            top.get("scheme", "torch_default"),
            dict(base_params),
            top.get("scale", 1.0),
            dict(top_bias),
            path=paths[i] if paths else "",
            type=types[i][0] if types else "",
        )
        for i in range(n_layers)
    ]
    for r, rule in enumerate(top.get("layers") or []):
        where = f"init.layers[{r}]"
        require(
            isinstance(rule, Mapping), where, rule, "a rule is a mapping {select: ..., <init keys>}"
        )
        rule = dict(rule)
        require(
            "select" in rule or "type" in rule,
            where,
            rule,
            "a rule needs a 'select' key (layer indices, a slice '0:2' or a module path "
            "glob) or a 'type' key (a layer class such as Conv2d)",
        )
        require(
            "norm" not in rule,
            f"{where}.norm",
            rule.get("norm"),
            "a rule selects weight layers; init.norm applies to every normalization layer",
        )
        if "scale" in rule:
            require(
                is_number(rule["scale"]) and rule["scale"] > 0,
                f"{where}.scale",
                rule["scale"],
                "must be a number > 0",
            )
        rule_bias = bias_rule(rule.get("bias") or {}, f"{where}.bias")
        chosen = list(range(n_layers))
        if "select" in rule:
            chosen = select(rule.pop("select"), n_layers, f"{where}.select", paths)
        if "type" in rule:
            of_type = set(select_types(rule.pop("type"), types, f"{where}.type"))
            chosen = [i for i in chosen if i in of_type]
            require(
                len(chosen) > 0,
                where,
                "select and type",
                "select and type together select no weight layer",
            )
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
            raise ConfigError(
                f"{spec.sources.get(key, 'init')}.{key}={spec.params[key]!r}: not "
                f"a parameter of scheme '{spec.scheme}'; valid: "
                f"{', '.join(scheme.params + COMMON_KEYS)}"
            )
        require_choice(spec.field_of("bias.kind"), spec.bias["kind"], BIAS_KINDS)
    return specs


def layer_generator(init_seed: int, layer_index: int, stream: int = 0) -> torch.Generator:
    """A generator owned by one layer: seeded by (init_seed, layer, stream) via SeedSequence."""
    state = np.random.SeedSequence([init_seed, layer_index, stream]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]) & ((1 << 63) - 1))


@torch.no_grad()
def initialize_(
    net: nn.Module,
    init_cfg: Mapping[str, Any],
    init_seed: int,
    activation: str = "relu",
    draw_batch: Callable[[int], Tensor] | None = None,
) -> list[LayerSpec]:
    """Initialize every weight and normalization layer of ``net`` from ``init_cfg``; return the
    per-weight-layer specs.

    Weight layers (``weight_layers``: Linear, Conv1d/2d/3d, Embedding) get their scheme, scale
    and bias rule, each drawing from the generator of ``(init_seed, its index)``; an Embedding's
    ``padding_idx`` row is zero, as torch makes it. Normalization layers get ``init.norm``.
    Then the schemes' network passes run (LSUV on ``draw_batch(n)``, n training inputs; the
    residual rules). Parameters of any other kind keep what the model's constructor gave them.
    Raises ``ConfigError`` (one line, naming the field) for invalid parameters.

    Args:
        net: any network; its weight and normalization layers are found by ``models.layers``.
        init_cfg: an ``init`` config (``conf/init/<scheme>.yaml`` composed, or a plain dict:
            keys it leaves out take the scheme's and ``conf/shared/init_common.yaml``'s
            defaults).
        init_seed: the weights' seed, an integer >= 0.
        activation: the model's activation, for the schemes whose gain follows it.
        draw_batch: ``draw_batch(n)`` gives n training inputs; needed by data-dependent
            schemes (LSUV).

    Example:
        >>> net = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> specs = initialize_(net, {"scheme": "he", "bias": {"kind": "zeros"}}, init_seed=0)
        >>> [spec.scheme for spec in specs]
        ['he', 'he']
    """
    require(
        isinstance(init_seed, int) and init_seed >= 0,
        "init_seed",
        init_seed,
        "must be an integer >= 0",
    )
    named = weight_layers(net)
    layers = [layer for _, layer in named]
    specs = layer_specs(init_cfg, named)
    for i, (layer, spec) in enumerate(zip(layers, specs, strict=True)):
        scheme = get_scheme(spec.scheme)
        fill_params = {
            k: v for k, v in spec.params.items() if k in inspect.signature(scheme.fill_).parameters
        }
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
                fill_bias_(
                    bias,
                    weight,
                    spec.bias["kind"],
                    spec.bias["value"],
                    spec.bias["std"],
                    layer_generator(init_seed, i, stream=1),
                )
                target_bias.copy_(bias)
    rule = norm_rule(dict(init_cfg).get("norm"))
    for _, norm in norm_layers(net):
        init_norm_(norm, rule)
    for scheme_name in dict.fromkeys(s.scheme for s in specs):
        scheme = get_scheme(scheme_name)
        if scheme.network_pass is None:
            continue
        chosen = [layer for layer, s in zip(layers, specs, strict=True) if s.scheme == scheme_name]
        first = specs[layers.index(chosen[0])]
        if scheme.needs_data and draw_batch is None:
            raise ConfigError(
                f"{first.field_of('scheme')}={scheme_name!r}: needs a data batch "
                "(data-dependent scheme) but none was given"
            )
        pass_params = {
            k: v
            for k, v in first.params.items()
            if k in inspect.signature(scheme.network_pass).parameters
        }
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
