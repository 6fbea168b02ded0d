"""Moved: ``report.select`` (choosing runs) and ``report.table`` (one row per run).

Kept only for ``report/stats.py``, which imports these names from here; delete once it imports
them from ``report.table`` and ``naming``.
"""

from initsweep.naming import SEED_KEYS
from initsweep.report.table import MISSING, RunTable, sort_key

__all__ = ["MISSING", "SEED_KEYS", "RunTable", "sort_key"]
