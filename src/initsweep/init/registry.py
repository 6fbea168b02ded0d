"""The scheme registry: ``register`` adds a scheme under its name, ``get_scheme`` and
``list_schemes`` are the only ways to read it.

A scheme is a fill function ``fill_(weight, generator, **params)`` (torch.nn.init style: fills
``weight`` in place, draws every random number from ``generator``) and, for schemes that act on
the whole network after every layer is filled, a ``network_pass``. The keyword parameters of both
are the scheme's parameters: what its ``conf/init/<name>.yaml`` may set.

The built-in schemes register when ``initsweep.init`` is imported (its ``__init__`` imports
``schemes`` and ``passes``), so whatever module of the package a caller imports first, the
registry is full.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from initsweep.errors import require_choice

# Keys of an ``init`` config that are not scheme parameters.
COMMON_KEYS = ("scheme", "scale", "bias", "layers", "norm")
# Parameters a scheme's function may take that the network fills in, not the config.
CONTEXT_PARAMS = ("activation", "layer")


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


_SCHEMES: dict[str, Scheme] = {}


def register(
    name: str, *, network_pass: Callable[..., None] | None = None, needs_data: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fill_(weight, generator, **params)`` under ``name`` (a decorator).

    ``network_pass(net, layers, draw_batch, **params)`` runs after every layer is filled, on the
    layers given this scheme. ``needs_data=True`` says the pass draws training inputs from
    ``draw_batch`` (LSUV): ``initialize_`` refuses such a scheme without one. A pass on the
    network's structure alone (Fixup) keeps the default; ``needs_data`` without a pass is a
    ``ValueError``.

    Refuses a name already taken (``ValueError``): a second scheme of the same name would
    silently replace the first for every config that names it.
    """
    if name in _SCHEMES:
        taken = _SCHEMES[name].fill_
        raise ValueError(
            f"init scheme {name!r} is already registered (by {taken.__module__}.{taken.__name__})"
        )
    if needs_data and network_pass is None:
        raise ValueError(
            f"init scheme {name!r}: needs_data=True means its network_pass draws "
            "a data batch, and it has no network_pass"
        )

    def decorator(fill_: Callable[..., None]) -> Callable[..., None]:
        names = list(inspect.signature(fill_).parameters)[2:]  # skip weight, generator
        params = tuple(n for n in names if n not in CONTEXT_PARAMS)
        if network_pass is not None:
            params += tuple(list(inspect.signature(network_pass).parameters)[3:])
        _SCHEMES[name] = Scheme(
            name, fill_, params, "activation" in names, "layer" in names, network_pass, needs_data
        )
        return fill_

    return decorator


def get_scheme(name: str, field_name: str = "init.scheme") -> Scheme:
    """The scheme registered as ``name``; a one-line ``ConfigError`` at ``field_name`` naming
    the registered ones when there is none."""
    require_choice(field_name, name, _SCHEMES)
    return _SCHEMES[name]


def list_schemes() -> list[str]:
    """The registered schemes' names, in registration order."""
    return list(_SCHEMES)
