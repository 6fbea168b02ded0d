"""The per-layer rules of an ``init`` config: what one weight layer gets (``LayerSpec``), which
layers a rule selects (by index, slice, module path glob or class name), the bias rule and the
normalization layers' rule.

The bias and norm rules' default values have one source, ``conf/shared/init_common.yaml``, which
every ``conf/init/*.yaml`` composes: a job's init config carries every key. A direct Python call
that leaves keys out (``initialize_(net, {"scheme": "he"}, seed)``) gets them from that file.
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from initsweep.errors import ConfigError, require, require_choice
from initsweep.init.checks import check, check_choice, check_number, is_number
from initsweep.init.schemes import fans
from initsweep.models.layers import bias_of, weight_of

COMMON_YAML = Path(__file__).resolve().parents[3] / "conf" / "shared" / "init_common.yaml"
# The bias rule's keys (values: COMMON_YAML) and kinds.
BIAS_KEYS = ("kind", "value", "std")
BIAS_KINDS = ("zeros", "constant", "normal", "torch_default")
# The normalization layers' rule (values: COMMON_YAML): the affine weight (BatchNorm's gamma) is
# ones, zeros or ``value``; the bias is always zero and BatchNorm's running statistics start at
# mean 0, variance 1, as torch's constructors set them.
NORM_KEYS = ("weight", "value")
NORM_WEIGHTS = ("ones", "zeros", "constant")


@functools.cache
def common_defaults() -> dict[str, Any]:
    """``conf/shared/init_common.yaml``: the values of the keys every init config has."""
    if not COMMON_YAML.is_file():
        raise ConfigError(
            f"init: the bias and norm rules' defaults are read from {COMMON_YAML}, "
            "which is missing; give every key of init.bias and init.norm"
        )
    container = OmegaConf.to_container(OmegaConf.load(COMMON_YAML), resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def _completed(given: Mapping[str, Any], rule: str, keys: Sequence[str]) -> dict[str, Any]:
    """``given`` with the keys it leaves out taken from ``common_defaults()[rule]``, in ``keys``'
    order (the yaml is read only when a key is missing)."""
    if all(k in given for k in keys):
        return {k: given[k] for k in keys}
    defaults = common_defaults()[rule]
    return {k: given[k] if k in given else defaults[k] for k in keys}


# --------------------------------------------------------------------------------------- biases
def bias_rule(bias: Any, field_name: str) -> dict[str, Any]:
    """A ``bias`` mapping checked for unknown keys (a typo would otherwise be ignored)."""
    require(
        isinstance(bias, Mapping),
        field_name,
        bias,
        f"must be a mapping with keys {', '.join(BIAS_KEYS)}",
    )
    for key in bias:
        require(
            key in BIAS_KEYS,
            f"{field_name}.{key}",
            bias[key],
            f"not a key of the bias rule; valid: {', '.join(BIAS_KEYS)}",
        )
    return dict(bias)


def complete_bias_rule(bias: Mapping[str, Any]) -> dict[str, Any]:
    """Every key of the bias rule: ``bias``'s, the missing ones from ``init_common.yaml``."""
    return _completed(bias, "bias", BIAS_KEYS)


def fill_bias_(
    bias: Tensor, weight: Tensor, kind: str, value: float, std: float, generator: torch.Generator
) -> None:
    """The bias rule: zeros, constant(value), normal(0, std) or torch_default
    U(+-1/sqrt(fan_in)). A random bias alone breaks the symmetry of zero weights."""
    check_choice("bias.kind", kind, BIAS_KINDS)
    if kind == "zeros":
        bias.zero_()
    elif kind == "constant":
        check_number("bias.value", value)
        bias.fill_(float(value))
    elif kind == "normal":
        check(is_number(std) and std >= 0, "bias.std", std, "must be a number >= 0")
        bias.normal_(0.0, std, generator=generator)
    else:
        bound = 1.0 / math.sqrt(fans(weight)[0])
        bias.uniform_(-bound, bound, generator=generator)


# ------------------------------------------------------------------------ normalization layers
def norm_rule(norm: Any, field_name: str = "init.norm") -> dict[str, Any]:
    """The ``norm`` mapping, checked: ``weight: ones | zeros | constant`` (``value``)."""
    norm = {} if norm is None else norm
    require(
        isinstance(norm, Mapping),
        field_name,
        norm,
        f"must be a mapping with keys {', '.join(NORM_KEYS)}",
    )
    for key in norm:
        require(
            key in NORM_KEYS,
            f"{field_name}.{key}",
            norm[key],
            f"not a key of the norm rule; valid: {', '.join(NORM_KEYS)}",
        )
    rule = _completed(norm, "norm", NORM_KEYS)
    require_choice(f"{field_name}.weight", rule["weight"], NORM_WEIGHTS)
    require(
        is_number(rule["value"]), f"{field_name}.value", rule["value"], "must be a finite number"
    )
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


# ---------------------------------------------------------------------------- one layer's spec
@dataclass
class LayerSpec:
    """What one weight layer gets: scheme, its parameters, scale and bias rule.

    ``sources`` says which config entry set each parameter (``init`` or ``init.layers[r]``), so
    that an invalid value is reported at the field the user wrote. ``path`` and ``type`` name
    the layer in the network (empty when specs are resolved for a bare layer count).
    """

    scheme: str
    params: dict[str, Any]
    scale: float
    bias: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    path: str = ""
    type: str = ""

    def field_of(self, param: str) -> str:
        """The config field an ``InvalidInitParameter`` of this layer is about."""
        if param == "activation":
            return "model.activation"  # the model's activation, passed to gain-taking schemes
        return f"{self.sources.get(param, 'init')}.{param}"


# ------------------------------------------------------------------------- selecting layers
def _is_index_text(text: str) -> bool:
    return text.strip().lstrip("+-").isdigit()


def _listing(items: Sequence[str], limit: int = 16) -> str:
    """``a, b, c`` or, for a long list, its start and end and how many in all."""
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:10])}, ..., {', '.join(items[-3:])} ({len(items)} in all)"


def _select_paths(pattern: str, paths: Sequence[str], field_name: str, selector: Any) -> list[int]:
    chosen = [i for i, path in enumerate(paths) if fnmatch.fnmatchcase(path, pattern)]
    require(
        len(chosen) > 0,
        field_name,
        selector,
        f"matches no weight layer's module path; the model's weight layers: "
        f"{_listing(list(paths))}",
    )
    return chosen


def select(
    selector: Any, n_layers: int, field_name: str, paths: Sequence[str] | None = None
) -> list[int]:
    """Layer indices for a rule's ``select``: an int, a list of ints, a slice "start:stop", or a
    glob over the weight layers' module paths (``"stages.2.*.conv2"``), or a list of those."""
    if isinstance(selector, str) and ":" in selector:
        try:
            parts = [int(p) if p.strip() else None for p in selector.split(":")]
            indices = list(range(n_layers))[slice(*parts)]
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"{field_name}={selector!r}: not a slice like '0:2' ({err})"
            ) from None
        # Python would clip "0:9" to the layers that exist; a rule naming layers that do not
        # exist is a mistake (a config written for another network), so it is an error.
        require(
            all(p is None or -n_layers <= p <= n_layers for p in parts[:2]),
            field_name,
            selector,
            f"slice bounds must be in {-n_layers}..{n_layers} "
            f"(the network has weight layers 0..{n_layers - 1})",
        )
        require(
            len(indices) > 0,
            field_name,
            selector,
            f"selects no layer; the network has weight layers 0..{n_layers - 1}",
        )
        return indices
    items = (
        list(selector)
        if isinstance(selector, Sequence) and not isinstance(selector, str)
        else [selector]
    )
    require(
        len(items) > 0,
        field_name,
        selector,
        f"selects no layer; the network has weight layers 0..{n_layers - 1}",
    )
    out: list[int] = []
    for item in items:
        # A string is a module path glob; one that reads as a number is a quoted index (an
        # MLP's paths are "0", "2", ...: an index written as a string would pick the wrong one).
        if isinstance(item, str) and paths is not None and not _is_index_text(item):
            out.extend(_select_paths(item, paths, field_name, selector))
            continue
        require(
            isinstance(item, int) and not isinstance(item, bool) and -n_layers <= item < n_layers,
            field_name,
            selector,
            f"layer indices must be integers in {-n_layers}..{n_layers - 1} "
            f"(the network has {n_layers} weight layers)",
        )
        out.append(item % n_layers)
    return list(dict.fromkeys(out))


def select_types(
    selector: Any, types: Sequence[tuple[str, ...]] | None, field_name: str
) -> list[int]:
    """Layer indices whose class (or a base class) has the name ``selector`` (or one of a list)."""
    names = [selector] if isinstance(selector, str) else selector
    require(
        isinstance(names, Sequence) and len(names) > 0 and all(isinstance(n, str) for n in names),
        field_name,
        selector,
        "must be a layer class name such as Conv2d, or a list of them",
    )
    require(types is not None, field_name, selector, "needs the model's layers")
    assert types is not None
    chosen = [i for i, mro in enumerate(types) if any(n in mro for n in names)]
    if not chosen:
        counts = ", ".join(f"{t} ({n})" for t, n in Counter(mro[0] for mro in types).items())
        raise ConfigError(
            f"{field_name}={selector!r}: the model has no weight layer of this "
            f"type; its weight layers are {counts} (normalization layers follow "
            "init.norm)"
        )
    return chosen
