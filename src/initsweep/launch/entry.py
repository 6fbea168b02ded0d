"""Entry-point policy: a bad command line is one line and exit code 2, and a multirun whose
sweep was rejected after its parent run was opened gets that run closed FAILED.

``train.py`` wraps Hydra's ``main`` in ``one_line_config_errors``. Torch-free.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import HydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from initsweep.errors import ConfigError
from initsweep.launch.console import print_error

# Choices renamed since an earlier release: the one-line error says where they went.
RENAMED_CHOICES = {
    ("init", "zero"): "hadamard_identity (ZerO; init=zeros is W = 0)",
    ("init", "s3/xavier_gain1"): "xavier (gain 1 is xavier's default now; "
    "s3/xavier_gain_auto takes the activation's)",
}


def _group_choices(conf_dir: Path, group: str) -> list[str]:
    folder = conf_dir / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def config_error_line(err: BaseException, conf_dir: Path) -> str | None:
    """One line for a Hydra composition or OmegaConf validation error, None for other errors.

    Hydra's own messages span several lines (available options one per line, a full_key and an
    object_type line, a hint about HYDRA_FULL_ERROR); the line here keeps what a user needs: the
    field, the value, and what is allowed.
    """
    if isinstance(err, ConfigError):  # raised after composition, e.g. by the race sweeper
        return str(err)
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        message = str(getattr(cause, "msg", None) or cause).splitlines()[0]
        schema = getattr(cause, "object_type", None)
        if key and message.startswith("Key ") and dataclasses.is_dataclass(schema):
            valid = sorted(f.name for f in dataclasses.fields(schema))
            message = f"not a key of {key.rsplit('.', 1)[0]}; valid: {', '.join(valid)}"
        return f"{key}: {message}" if key else message
    if isinstance(err, OverrideParseException):
        return str(err).splitlines()[0]
    if not isinstance(err, HydraException):
        return None
    text = str(err)
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, choice = missing.groups()
        renamed = RENAMED_CHOICES.get((group, choice))
        if renamed:
            return f"{group}={choice}: renamed to {renamed}"
        choices = _group_choices(conf_dir, group)
        if choices:
            return f"{group}={choice}: must be one of {', '.join(choices)}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@contextmanager
def one_line_config_errors(conf_dir: Path) -> Iterator[None]:
    """Run a Hydra entry point so that a bad command line is one line and exit code 2.

    Hydra prints composition errors itself (several lines, exit 1) unless ``HYDRA_FULL_ERROR``
    is set, in which case it raises them: set it for the call, turn what comes out into one
    line. A multirun whose sweep was rejected after its parent run was opened gets that run
    closed FAILED (``launch.sweep.abort_sweep``). Other exceptions propagate unchanged.
    """
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except Exception as err:
        line = config_error_line(err, conf_dir)
        if line is None:
            raise
        # launch.sweep imports MLflow (seconds): a bad command line fails before that cost
        from initsweep.launch.sweep import abort_sweep

        abort_sweep(line)
        print_error(line)
        sys.exit(2)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
