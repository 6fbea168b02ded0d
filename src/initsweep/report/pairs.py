"""The report's comparisons between groups: which pairs are compared (neighbours in the design,
or every pair), each pair's verdict (``Comparison``: the difference of means with its Holm-level
interval, P(A > B) and the sign test as the second line, ASO as a third opinion) and the table of
all of them (``pairwise``). The methods and their measured calibration: ``report.stats``'s
docstring and docs/report.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from initsweep.naming import SEED_KEYS
from initsweep.report.aso import aso
from initsweep.report.stats import (
    ALPHA,
    MAX_SEEDS,
    calls,
    interval_from_counts,
    is_accuracy,
    rng_for,
    seeds_needed,
    sign_p_from_counts,
)
from initsweep.report.table import MISSING, RunTable, sort_key
from initsweep.stats.differences import Difference, paired_difference, welch_difference
from initsweep.stats.multiple_testing import holm, holm_levels


def seed_matrix(table: RunTable) -> pd.DataFrame:
    """Usable values as seeds (all three keys) x groups, oriented so that higher is better;
    NaN where a group has no usable run on that seed."""
    usable = table.usable
    matrix = usable.pivot_table(
        index=list(SEED_KEYS), columns="group", values="value", aggfunc="mean"
    )
    return -matrix if table.lower_is_better else matrix


def paired_values(table: RunTable, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The metric of groups ``a`` and ``b`` on the seeds (all three keys) both ran."""
    matrix = seed_matrix(table)
    sign = -1.0 if table.lower_is_better else 1.0
    both = matrix[[a, b]].dropna()
    return sign * both[a].to_numpy(), sign * both[b].to_numpy()


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def neighbour_pairs(table: RunTable) -> list[tuple[str, str]]:
    """The comparisons fixed by the sweep's design: groups that differ in exactly one key, and in
    that key only next to each other when its values are numbers (lr 0.1 vs 0.2, not 0.1 vs 1.0;
    he vs xavier at each lr: every pair of a key whose values are names).

    Fixed before looking at the scores, so Holm's guarantee holds (choosing the pairs from the
    data, e.g. everything against the observed best, does not: see docs/report.md); about two
    pairs per group per numeric key, so the family stays small and the report fast.
    """
    labels = table.frame.drop_duplicates("group").set_index("group")
    keys = list(table.label_keys)
    groups = table.groups()
    if not keys:
        return []
    values = labels.loc[groups, [f"params.{k}" for k in keys]].astype(str)
    values.columns = keys
    pairs: list[tuple[str, str]] = []
    for key in keys:
        others = [k for k in keys if k != key]
        numeric = all(_is_number(v) for v in values[key] if v != MISSING)
        blocks = values.groupby(others, sort=False) if others else [((), values)]
        for _, block in blocks:
            column = values[key]
            members = sorted(block.index, key=lambda g: sort_key(column[g]))
            if numeric:
                pairs += list(zip(members, members[1:], strict=False))
            else:
                pairs += list(combinations(members, 2))
    order = {g: i for i, g in enumerate(groups)}
    ordered = {(a, b) if order[a] <= order[b] else (b, a) for a, b in pairs}
    return sorted(ordered, key=lambda p: (order[p[0]], order[p[1]]))


def all_pairs(table: RunTable) -> list[tuple[str, str]]:
    """Every pair of groups (``--all-pairs``)."""
    return list(combinations(table.groups(), 2))


def _digits(width: float) -> int:
    """Decimals that show an interval of this width with two significant digits (3 to 6)."""
    if not math.isfinite(width) or width <= 0:
        return 4
    return int(min(6, max(3, 1 - math.floor(math.log10(width)))))


@dataclass
class Comparison:
    """The difference of A's and B's means (A the better on the mean), with the verdict's test,
    and P(A > B) with the sign test as the distribution-free second line."""

    a: str
    b: str
    n_pairs: int  # seeds both ran (the paired test's n); Welch: the smaller group's n
    p: float  # P(A > B) over the paired seeds, ties half (NaN: no paired seeds)
    ci_low: float  # its exact interval
    ci_high: float
    mean_diff: float  # mean(A) - mean(B), metric units
    diff_low: float = math.nan  # interval at the level Holm tests this pair at
    diff_high: float = math.nan
    test: str = "paired t"  # or "Welch"
    test_p: float = math.nan  # the verdict's test, two-sided
    holm_p: float = math.nan  # test_p adjusted over the pairs compared (Holm)
    sign_p: float = math.nan  # exact two-sided sign test
    sign_holm_p: float = math.nan  # sign_p adjusted over the pairs compared (Holm)
    sign_for_a: bool = True  # the sign test's direction: more seeds favour A than B
    aso_eps: float = math.nan  # almost stochastic order eps_min of A over B
    seeds_needed: float = math.nan  # seeds at which the verdict's test would call it
    level: float = ALPHA  # the Holm level of this pair (its interval is at 1 - level)
    n_a: int = 0
    n_b: int = 0

    @property
    def called(self) -> bool:
        return bool(calls(self.holm_p))

    @property
    def sign_called(self) -> bool:
        return bool(calls(self.sign_holm_p))

    def settle(self) -> str:
        """How many seeds would settle an uncalled pair, as a phrase."""
        need = self.seeds_needed
        if not math.isfinite(need):
            return (
                "no difference seen to chase"
                if need == math.inf and self.mean_diff == 0
                else f"more than {MAX_SEEDS} seeds would be needed"
                if need == math.inf
                else ""
            )
        more = int(need) - self.n_pairs
        return f"about {int(need)} seeds would settle it" + (f" ({more} more)" if more > 0 else "")

    def disagreement(self) -> str:
        """When the second line (P(A > B), sign test) reads the pair otherwise: empty if not."""
        if not math.isfinite(self.p):
            return ""
        if self.sign_called and not (self.called and self.sign_for_a):
            winner, loser = (self.a, self.b) if self.sign_for_a else (self.b, self.a)
            return (
                f"the sign test disagrees: {winner} wins on most seeds (P({winner}>{loser})"
                f"={max(self.p, 1 - self.p):.2f}, Holm p={self.sign_holm_p:.3f}), so a few "
                "seeds decide the means"
            )
        if self.called and self.p < 0.5:
            return (
                f"the sign test disagrees: {self.b} wins on most seeds (P({self.a}>{self.b})"
                f"={self.p:.2f}): {self.a}'s mean rests on a few seeds"
            )
        return ""

    @property
    def verdict(self) -> str:
        """The difference with its adjusted interval, the call, the second line."""
        seeds = (
            f"{self.n_pairs} seed{'s' if self.n_pairs != 1 else ''}"
            if self.test != "Welch"
            else f"{self.n_a} and {self.n_b} seeds, unpaired"
        )
        if not math.isfinite(self.holm_p):
            return f"{self.a} vs {self.b}: not enough seeds ({seeds}; a difference needs 2+)"
        d = _digits(self.diff_high - self.diff_low if math.isfinite(self.diff_low) else 0.0)
        diff = (
            f"{self.a} − {self.b} = {self.mean_diff:+.{d}f} "
            f"[{self.diff_low:+.{d}f}, {self.diff_high:+.{d}f}], {seeds}"
        )
        second = f"P(A>B)={self.p:.2f}" if math.isfinite(self.p) else ""
        other = self.disagreement()
        holm_p = "p<0.001" if self.holm_p < 0.001 else f"p={self.holm_p:.3f}"
        if self.called:
            text = f"{self.a} > {self.b}: {diff} (Holm {holm_p})"
        else:
            settle = self.settle()
            text = f"{self.a} vs {self.b}: {diff}, not called (Holm {holm_p})" + (
                f"; {settle}" if settle else ""
            )
        if second:
            text += f"; {second}"
        return text + (f"; {other}" if other else "")


def _resolution(table: RunTable, a: str, b: str, accuracy: bool) -> float:
    """The metric's step for the pair (``initsweep.stats.differences``): 1 / n_test for an
    accuracy measured on n_test examples, 0 otherwise."""
    if not accuracy:
        return 0.0
    n_test = table.usable.loc[table.usable["group"].isin([a, b]), "n_test"]
    n_test = n_test[np.isfinite(n_test.to_numpy(dtype=float))]
    return 1.0 / float(n_test.min()) if len(n_test) and float(n_test.min()) > 0 else 0.0


def pairwise(
    table: RunTable,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
    every_pair: bool = False,
) -> pd.DataFrame:
    """The verdict of each pair (default: ``neighbour_pairs``; ``every_pair``: ``all_pairs``):
    the difference of means by the paired t-test over the seeds both ran (Welch's when fewer
    than 2 pair), Holm-adjusted over these pairs, with each interval at its Holm level; P(A > B)
    with its interval and the sign test (Holm-adjusted on its own) as the second line; ASO. Each
    pair oriented so that A has the better mean.
    """
    if pairs is None:
        pairs = all_pairs(table) if every_pair else neighbour_pairs(table)
    columns = [
        "a",
        "b",
        "n_pairs",
        "test",
        "mean_diff",
        "diff_low",
        "diff_high",
        "test_p",
        "holm_p",
        "called",
        "P(A>B)",
        "ci_low",
        "ci_high",
        "sign_p",
        "sign_holm_p",
        "aso_eps_min",
        "seeds_needed",
        "verdict",
    ]
    if not pairs:
        return pd.DataFrame(columns=columns)
    matrix = seed_matrix(table)  # higher is better
    accuracy = is_accuracy(table)
    unit = -1.0 if table.lower_is_better else 1.0
    found: list[Comparison] = []
    diffs: list[Difference] = []
    samples: list[tuple[np.ndarray, np.ndarray]] = []
    for a, b in pairs:
        x = matrix[a].to_numpy(dtype=float) if a in matrix else np.array([])
        y = matrix[b].to_numpy(dtype=float) if b in matrix else np.array([])
        both = np.isfinite(x) & np.isfinite(y) if len(x) and len(y) else np.array([], bool)
        resolution = _resolution(table, a, b, accuracy)
        xa, yb = x[np.isfinite(x)] if len(x) else x, y[np.isfinite(y)] if len(y) else y
        if both.sum() >= 2:
            sa, sb = x[both], y[both]
            diff = paired_difference(sa, sb, resolution)
        else:
            sa, sb = (x[both], y[both]) if len(both) else (np.array([]), np.array([]))
            diff = welch_difference(xa, yb, resolution)
        flip = float(diff.estimate) < 0 if np.isfinite(diff.estimate) else False
        if flip:
            a, b, sa, sb, xa, yb = b, a, sb, sa, yb, xa
            diff = Difference(-diff.estimate, diff.se, diff.df, diff.paired)
        n = len(sa)
        wins, losses = int(np.sum(sa > sb)), int(np.sum(sa < sb))
        low, high = interval_from_counts(wins, n - wins - losses, n)
        c = Comparison(
            a,
            b,
            n,
            (wins + (n - wins - losses) / 2) / n if n else math.nan,
            float(low),
            float(high),
            float(diff.estimate) * unit,
            test="paired t" if diff.paired else "Welch",
            test_p=float(diff.p_value()),
            sign_p=float(sign_p_from_counts(wins, losses)) if n else math.nan,
            sign_for_a=wins >= losses,
            n_a=len(xa),
            n_b=len(yb),
        )
        found.append(c)
        diffs.append(diff)
        samples.append((sa, sb))
    m = len(found)
    test_p = np.array([c.test_p for c in found])
    adjusted, levels = holm(test_p), holm_levels(test_p, ALPHA)
    sign_adjusted = holm(np.array([c.sign_p for c in found]))
    rows = []
    for k, c in enumerate(found):
        c.holm_p, c.level, c.sign_holm_p = (
            float(adjusted[k]),
            float(levels[k]),
            float(sign_adjusted[k]),
        )
        diff = diffs[k]
        if math.isfinite(c.level):
            bounds = diff.interval(1 - c.level)
            ends = sorted((float(bounds[0]) * unit, float(bounds[1]) * unit))
            c.diff_low, c.diff_high = ends
        sa, sb = samples[k]
        if len(sa):
            c.aso_eps = float(aso(sa, sb, rng_for(seed, *sorted((c.a, c.b))), n_comparisons=m))
        if not c.called:
            c.seeds_needed = seeds_needed(
                diff, c.n_pairs if diff.paired else min(c.n_a, c.n_b), c.level
            )
        rows.append(
            {
                "a": c.a,
                "b": c.b,
                "n_pairs": c.n_pairs,
                "test": c.test,
                "mean_diff": c.mean_diff,
                "diff_low": c.diff_low,
                "diff_high": c.diff_high,
                "test_p": c.test_p,
                "holm_p": c.holm_p,
                "called": c.called,
                "P(A>B)": c.p,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "sign_p": c.sign_p,
                "sign_holm_p": c.sign_holm_p,
                "aso_eps_min": c.aso_eps,
                "seeds_needed": c.seeds_needed,
                "verdict": c.verdict,
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("holm_p", kind="stable", na_position="last").reset_index(drop=True)
