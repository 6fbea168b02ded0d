"""Why, per group: how many of a group's seeds carry each diagnosis finding.

Each job run carries its diagnosis (``diagnostics.findings``): the ``diagnosis`` tag (codes) and
the sentences as its note. Here they are counted per group, next to the group's score: "zeros:
symmetric 3/3"; "U[0,1): exploding 3/3, diverged 0/3". Where the seeds of one config disagree on
a finding (some dead, some healthy), that is said: the seed changes the mechanism, not only the
score. Pandas only; the report renders it (``render.why_blocks``) and the parent run's note
quotes it (``mlflow_ui.summary_note``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from initsweep.diagnostics.findings import CODES, parse_codes, sentences
from initsweep.report.table import RunTable

NOTE_COLUMN = "tags.mlflow.note.content"


@dataclass
class GroupWhy:
    """One group's findings over its seeds."""

    group: str
    runs: int  # runs in the group (duplicates left out)
    seeds: list[str] = field(default_factory=list)  # seed labels of the diagnosed runs
    carriers: dict[str, list[str]] = field(default_factory=dict)  # code -> seeds carrying it
    usable: int = 0  # runs whose score counts (outcome ok, finite metric)
    mean: float = math.nan
    std: float = math.nan
    # (seed, sentences) of the first run of each distinct set of codes: the evidence quoted
    examples: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def diagnosed(self) -> int:
        return len(self.seeds)

    def count(self, code: str) -> int:
        return len(self.carriers.get(code, []))

    def disagreements(self) -> list[str]:
        """Codes some but not all of the diagnosed seeds carry (``healthy`` is the absence of
        the others: not repeated)."""
        return [c for c in self.carriers if c != "healthy" and 0 < self.count(c) < self.diagnosed]

    def disagreement(self) -> str:
        """``dead_relu in seeds 0, 2, not in 1`` per disagreeing code, ``; ``-joined."""
        parts = []
        for code in self.disagreements():
            have = self.carriers[code]
            rest = [s for s in self.seeds if s not in have]
            parts.append(
                f"{code} in seed{'s' if len(have) > 1 else ''} {', '.join(have)}, "
                f"not in {', '.join(rest)}"
            )
        return "; ".join(parts)


def seed_label(row: pd.Series) -> str:
    """``3``; ``1/2`` (init seed / data seed) when they differ from ``seed``."""

    def as_int(value: Any) -> str:
        return "?" if value is None or pd.isna(value) else str(int(value))

    seed, init, data = (row.get(k) for k in ("seed", "init_seed", "data_seed"))
    if as_int(init) == as_int(seed) and as_int(data) == as_int(seed):
        return as_int(seed)
    return f"{as_int(init)}/{as_int(data)}"


def why(table: RunTable) -> list[GroupWhy]:
    """The findings of every group, in the report's group order."""
    frame = table.frame
    if frame.empty:
        return []
    frame = frame[frame["outcome"] != "duplicate"]
    out = []
    for group in table.groups():
        rows = frame[frame["group"] == group]
        g = GroupWhy(group, len(rows))
        scores = rows.loc[rows["usable"], "value"]
        g.usable = len(scores)
        if len(scores):
            g.mean = float(scores.mean())
            g.std = float(scores.std()) if len(scores) > 1 else math.nan
        quoted: set[tuple[str, ...]] = set()
        for _, row in rows.iterrows():
            tag = row.get("diagnosis")
            if not isinstance(tag, str) or not tag:
                continue  # diagnostics off, or a run from before diagnoses
            label = seed_label(row)
            g.seeds.append(label)
            found = tuple(parse_codes(tag))
            for code in found:
                g.carriers.setdefault(code, []).append(label)
            note = row.get(NOTE_COLUMN)
            said = sentences(note if isinstance(note, str) else None)
            if found not in quoted and said:
                quoted.add(found)
                g.examples.append((label, said))
        order = {c: i for i, c in enumerate(CODES)}
        g.carriers = dict(sorted(g.carriers.items(), key=lambda kv: order.get(kv[0], len(order))))
        out.append(g)
    return out


def sweep_codes(groups: list[GroupWhy]) -> list[str]:
    """Every code any group carries, in ``CODES`` order (unknown codes last)."""
    seen = {c for g in groups for c in g.carriers}
    return [c for c in CODES if c in seen] + sorted(seen - set(CODES))


def score(g: GroupWhy, digits: int = 4) -> str:
    if math.isnan(g.mean):
        return "–"
    spread = f" ± {g.std:.{digits}f}" if not math.isnan(g.std) else ""
    return f"{g.mean:.{digits}f}{spread}"


def why_frame(groups: list[GroupWhy], metric: str) -> pd.DataFrame:
    """One row per group: its score, then ``k/n`` per finding (every code of the sweep, so a
    ``0/3`` shows what a group does not do), then where its seeds disagree."""
    codes = sweep_codes(groups)
    rows = []
    for g in groups:
        row = {
            "group": g.group,
            f"{metric} mean ± std": score(g),
            "diagnosed": f"{g.diagnosed}/{g.runs}",
        }
        for code in codes:
            row[code] = f"{g.count(code)}/{g.diagnosed}" if g.diagnosed else "–"
        row["seeds disagree"] = g.disagreement() or "no"
        rows.append(row)
    return pd.DataFrame(rows)


def summary_line(g: GroupWhy) -> str:
    """``zeros: symmetric 3/3`` (the group's own findings only)."""
    found = ", ".join(f"{c} {g.count(c)}/{g.diagnosed}" for c in g.carriers)
    return f"{g.group}: {found or 'no diagnosis'}"


def disagreement_lines(groups: list[GroupWhy]) -> list[str]:
    """A line per group whose seeds disagree on a finding."""
    return [
        f"**{g.group}**: the seeds disagree: {g.disagreement()}. The seed changes the "
        "mechanism here, not only the score."
        for g in groups
        if g.disagreements()
    ]
