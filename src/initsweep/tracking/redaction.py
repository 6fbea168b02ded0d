"""Keeping credentials out of everything a run logs or prints.

Plain ``re`` only: the report imports this without pulling in Lightning and torch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any


def redact(uri: str) -> str:
    """A URI without credentials (user:password@ is never logged or printed)."""
    return re.sub(r"//[^/@]+@", "//***@", uri)


# A config key whose value is a credential, whatever it holds (matched on the key's last part).
SECRET_KEY = re.compile(
    r"(^|[_-])(pass(word|wd)?|secret|token|api_?key|access_?key|credentials?)$", re.IGNORECASE
)


def is_secret_key(key: str) -> bool:
    """``tracking.password``, ``+tags.api_token``, ...: names that say the value is a secret."""
    return bool(SECRET_KEY.search(str(key).rsplit(".", 1)[-1]))


def redact_config(tree: Any) -> Any:
    """A copy of a resolved config that is safe to log as an artifact.

    Why: the resolved config carries the ``tracking`` section, which is where a URI with
    ``user:password@`` or a key filled from the environment (``${oc.env:MLFLOW_TRACKING_PASSWORD}``)
    ends up. Values of secret-named keys become ``***``; credentials in any string are removed.
    """
    if isinstance(tree, Mapping):
        return {
            k: "***" if is_secret_key(k) and v not in (None, "") else redact_config(v)
            for k, v in tree.items()
        }
    if isinstance(tree, (list, tuple)):
        return [redact_config(v) for v in tree]
    return redact(tree) if isinstance(tree, str) else tree


def redact_override(override: str) -> str:
    """A command-line ``key=value`` fit to log (the ``overrides.txt`` artifact, the sweep's tag)."""
    key, sep, _ = override.partition("=")
    if sep and is_secret_key(key.lstrip("+~")):
        return f"{key}=***"
    return redact(override)


_KEY_VALUE = re.compile(r"(?<!\S)[+~]*[\w.-]+=\S+")


def redact_line(text: str) -> str:
    """A free-form line (a log message) without URI credentials or values of secret-named
    ``key=value`` words, e.g. Hydra's ``#0 : tracking.uri=postgresql\\://u\\:pw@db/x``."""
    return redact(_KEY_VALUE.sub(lambda m: redact_override(m.group(0)), text))


def redact_log_records() -> None:
    """Pass every log record of this process through ``redact_line``.

    Why: Hydra's launchers log each job's overrides verbatim before it runs (``[HYDRA] #0 :
    init=he tracking.uri=postgresql://user:password@db/mlflow``), and Hydra reconfigures logging
    for every job, so a handler filter would not last: the record factory does. Idempotent.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # bad format arguments: logging reports them when it emits
            return record
        safe = redact_line(message)
        if safe != message:
            record.msg, record.args = safe, ()
        return record

    make_record.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
