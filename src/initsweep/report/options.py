"""The root config's ``report`` value, typed: ``true`` (the default report), ``false`` (none), or a
mapping of the options ``initsweep report`` takes on its command line.

One parser for the sweep callback (which checks it at the start of a multirun: a bad key is one
line and exit code 2 before any run exists) and for the end-of-sweep hook
(``report.publish.report_for_sweep``). Torch-free and pandas-free: the callback imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from initsweep.errors import ConfigError
from initsweep.vocab import PRIMARY_METRIC


@dataclass(frozen=True)
class ReportOptions:
    """What ``report: {...}`` may set; each field is the ``initsweep report`` flag of that name."""

    metric: str = PRIMARY_METRIC
    tune: str | None = None
    n_test: int | None = None
    seed: int = 0
    select_metric: str | None = None
    all_pairs: bool = False


def report_options(value: Any) -> ReportOptions | None:
    """``report``'s value as options: None for no report (``false``, ``null``), the defaults for
    ``true``, the given keys for a mapping. Raises ``ConfigError`` naming the key and the valid
    ones for an unknown key, and for a value that is none of these."""
    if not value:  # false, null, or an empty mapping
        return None
    if value is True:
        return ReportOptions()
    if not isinstance(value, Mapping):  # a DictConfig is a Mapping
        raise ConfigError(
            f"report={value!r}: must be true, false or a mapping of {', '.join(_fields())}"
        )
    given = {str(k): value[k] for k in value}
    unknown = sorted(set(given) - set(_fields()))
    if unknown:
        raise ConfigError(
            f"report.{unknown[0]}: not a key of report; valid: {', '.join(_fields())}"
        )
    options = ReportOptions(**given)
    return dataclasses.replace(options, seed=int(options.seed), all_pairs=bool(options.all_pairs))


def _fields() -> list[str]:
    return [f.name for f in dataclasses.fields(ReportOptions)]
