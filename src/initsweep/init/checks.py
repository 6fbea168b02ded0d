"""Checks of a scheme's parameters, raised like ``torch.nn.init``'s ``ValueError``s.

A scheme called directly raises ``InvalidInitParameter`` (a ``ValueError``) naming its own
parameter; ``initialize_`` turns it into a one-line ``ConfigError`` at the config field the value
came from. Private to ``initsweep.init`` (report/ has its own number test: it must not import
torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class InvalidInitParameter(ValueError):
    """A scheme's parameter out of its range, raised like ``torch.nn.init``'s ``ValueError``s.

    ``param`` names the parameter as the scheme's function calls it (``low``, ``bias.std``,
    ``activation``); ``initialize_`` turns it into a one-line ``ConfigError`` naming the config
    field the value came from (``init.low``, ``init.layers[0].low``, ``model.activation``).
    """

    def __init__(self, param: str, value: Any, allowed: str) -> None:
        self.param, self.value, self.allowed = param, value, allowed
        super().__init__(f"{param}={value!r}: {allowed}")


class NoResidualBlocks(InvalidInitParameter):
    """A residual scheme on a network without residual blocks (or with none of them selected)."""


def check(ok: bool, param: str, value: Any, allowed: str) -> None:
    """``InvalidInitParameter(param, value, allowed)`` unless ``ok``."""
    if not ok:
        raise InvalidInitParameter(param, value, allowed)


def check_choice(param: str, value: Any, choices: Sequence[str]) -> None:
    check(value in choices, param, value, f"must be one of {', '.join(sorted(choices))}")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what every numeric parameter must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_number(param: str, value: Any) -> None:
    check(is_number(value), param, value, "must be a finite number")


def check_positive(param: str, value: Any) -> None:
    check(is_number(value) and value > 0, param, value, "must be a number > 0")


def check_count(param: str, value: Any, minimum: int) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        param,
        value,
        f"must be an integer >= {minimum}",
    )
