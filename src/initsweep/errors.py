"""User-input errors: one line that names the field and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A config value a user can fix; ``str(err)`` is the one line we print."""


def require(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError("field=value: allowed")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field}={value!r}: {allowed}")


def require_choice(field: str, value: Any, choices: Iterable[str]) -> None:
    """Raise unless ``value`` is one of ``choices``; the message lists them."""
    choices = sorted(choices)
    require(value in choices, field, value, f"must be one of {', '.join(choices)}")
