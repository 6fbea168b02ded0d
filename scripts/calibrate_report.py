"""Measure the report's statistics on simulated seeds: the numbers docs/report.md quotes.

    python scripts/calibrate_report.py                 # 10,000 replicates per cell (~2 min)
    python scripts/calibrate_report.py --replicates 2000
    python scripts/calibrate_report.py --replicates 2000 --only verdicts   # the verdicts' tables

The scenarios are those of ``tests/test_calibration.py`` (imported from it), with more
replicates: the tests assert bands, this prints the values (and those of the methods the report's
were chosen against). Monte-Carlo standard deviation of a
rate near 0.95 (or 0.05) at 10,000 replicates: 0.002.
"""

from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from initsweep.report import stats as st  # noqa: E402
from initsweep.report import variance_split as vs  # noqa: E402
from initsweep.report.aso import THRESHOLD, aso  # noqa: E402
from initsweep.stats.differences import paired_difference, welch_difference  # noqa: E402
from initsweep.stats.multiple_testing import holm  # noqa: E402
from tests.test_calibration import (  # noqa: E402
    KINDS,
    N_TEST,
    SEEDS,
    TRUE_MEAN,
    VERDICT_KINDS,
    crossed_grids,
    null_groups,
    resolution_of,
    scores,
    t_verdicts,
)

GROUPS = (2, 3, 5, 10, 20)
SPREAD = 0.02  # one seed spread: the sd of a group's scores (normal, skewed; collapse: its seeds
# that do not collapse)


def t_false_winners(r: int, rng: np.random.Generator) -> None:
    """The verdict's family-wise error: equal groups, all pairs, paired t + Holm."""
    print(
        "\nVerdicts (paired t on the difference of means, Holm over all pairs, 5%), equal "
        "groups: P(any false winner), groups x seeds"
    )
    print("| scores | groups | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |")
    print("|---|---|" + "---|" * len(SEEDS))
    for kind in VERDICT_KINDS:
        for groups in GROUPS:
            first, second = np.array(list(combinations(range(groups), 2))).T
            cells = []
            for n in SEEDS:
                called = np.concatenate(
                    [
                        t_verdicts(
                            null_groups(kind, groups, n, min(r, 1000), rng),
                            first,
                            second,
                            resolution_of(kind),
                        ).any(-1)
                        for _ in range(0, r, 1000)
                    ]
                )
                cells.append(f"{called.mean():.3f}")
            print(f"| {kind} | {groups} | " + " | ".join(cells) + " |")
    first, second = np.array(list(combinations(range(10), 2))).T
    floorless = [
        t_verdicts(null_groups("ties", 10, n, r, rng), first, second, 0.0).any(-1) for n in SEEDS
    ]
    cells = [f"{called.mean():.3f}" for called in floorless]
    print("| ties, no resolution floor | 10 | " + " | ".join(cells) + " |")


def power(r: int, rng: np.random.Generator) -> None:
    """Share of sweeps that call a true difference of 1, 2, 4 seed spreads, one pair at 5%."""
    print(
        f"\nPower, one pair at 5%: share of {r} sweeps calling A > B when A's mean is 1 / 2 / 4 "
        f"seed spreads ({SPREAD}) above B's (the same per-seed effect as the false-call "
        "tables; collapse: each seed of either group collapses to 0.10 with probability 0.1)"
    )
    print("| scores | method | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |")
    print("|---|---|" + "---|" * len(SEEDS))
    methods = {
        "paired t (the verdict)": lambda a, b, res: paired_difference(a, b, res),
        "Welch (seeds not paired)": lambda a, b, res: welch_difference(a, b, res),
    }
    for kind in KINDS:
        samples = {
            (n, k): null_groups(kind, 2, n, r, rng, shift=[k * SPREAD, 0.0])
            for n in SEEDS
            for k in (1, 2, 4)
        }
        for name, method in methods.items():
            cells = []
            for n in SEEDS:
                parts = []
                for k in (1, 2, 4):
                    x = samples[n, k]
                    diff = method(x[:, 0], x[:, 1], resolution_of(kind))
                    parts.append(((diff.p_value() <= st.ALPHA) & (diff.estimate > 0)).mean())
                cells.append(" / ".join(f"{v:.2f}" for v in parts))
            print(f"| {kind} | {name} | " + " | ".join(cells) + " |")
        cells = []
        for n in SEEDS:
            parts = []
            for k in (1, 2, 4):
                x = samples[n, k]
                p = st.sign_test(x[:, 0], x[:, 1])
                parts.append(((p <= st.ALPHA) & (st.p_better(x[:, 0], x[:, 1]) > 0.5)).mean())
            cells.append(" / ".join(f"{v:.2f}" for v in parts))
        print(f"| {kind} | sign test (second line) | " + " | ".join(cells) + " |")


def targets(r: int, rng: np.random.Generator) -> None:
    """The issue's targets: the demo gap at 3 seeds, 4 spreads at 5 seeds."""
    n = 3
    he = 0.963 + 0.007 * rng.standard_normal((r, 1, n))
    xavier = 0.963 + 0.007 * rng.standard_normal((r, 1, n))
    zeros = 0.100 + 0.001 * rng.standard_normal((r, 1, n))
    called = t_verdicts(
        np.concatenate([he, xavier, zeros], axis=1), np.array([0, 0, 1]), np.array([1, 2, 2])
    )
    point = t_verdicts(
        np.concatenate([he, np.full((r, 1, n), 0.1)], axis=1),
        np.array([0]),
        np.array([1]),
        1 / N_TEST,
    )
    print(
        f"\nTargets ({r} replicates): demo gap (he 0.963 +- 0.007, xavier the same, zeros "
        f"0.100 +- 0.001, 3 seeds, 3 pairs, Holm): he > zeros called in {called[:, 1].mean():.4f}"
        f"; against zeros as a point (0.1000 on every seed): {point.mean():.4f}"
    )
    a = 0.98 + 0.02 * rng.standard_normal((r, 5))
    b = 0.90 + 0.02 * rng.standard_normal((r, 5))
    paired = paired_difference(a, b).p_value() <= st.ALPHA
    welch = welch_difference(a, b).p_value() <= st.ALPHA
    print(
        f"  0.98 vs 0.90, sd 0.02 (4 spreads), 5 seeds, one pair: paired t {paired.mean():.4f}"
        f", Welch {welch.mean():.4f}, sign test "
        f"{(st.sign_test(a, b) <= st.ALPHA).mean():.4f}"
    )


def bootstrap_t_interval(x: np.ndarray, rng: np.random.Generator, n_boot: int = 1999):
    """The studentized bootstrap (Efron & Tibshirani 1993, 12.5), measured and not chosen: its
    intervals are very wide when a seed collapsed. Resampled means and sds from resample counts."""
    n = x.shape[-1]
    counts = (rng.integers(0, n, (n_boot, n))[:, :, None] == np.arange(n)).sum(1).astype(float)
    mean, se = x.mean(-1), x.std(-1, ddof=1) / np.sqrt(n)
    boot_mean = x @ counts.T / n
    boot_se = np.sqrt(np.maximum((x * x) @ counts.T / n - boot_mean**2, 0) / (n - 1))
    shift = boot_mean - mean[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = np.where(boot_se > 1e-12, shift / boot_se, np.sign(shift) * np.inf)
    t_star = np.sort(np.nan_to_num(t_star, nan=0.0), axis=-1)
    return mean - t_star[:, int(0.975 * (n_boot + 1)) - 1] * se, mean - t_star[
        :, int(0.025 * (n_boot + 1)) - 1
    ] * se


def intervals(r: int, rng: np.random.Generator) -> None:
    print(
        "\n95% interval of a group's mean: coverage (collapse: when >= 1 seed collapsed, "
        "and the median width then), for the report's interval (Hall's skewness-corrected t) "
        "and the two it was chosen against"
    )
    methods = {
        "hall-t (report)": lambda x: st.mean_interval(x),
        "Student t": st.t_interval,
        "bootstrap-t": lambda x: bootstrap_t_interval(x, rng),
    }
    print("| scores | interval | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |")
    print("|---|---|" + "---|" * len(SEEDS))
    for kind in KINDS:
        samples = {n: scores(kind, (r, n), rng) for n in SEEDS}
        for name, method in methods.items():
            cells = []
            for x in samples.values():
                parts = [method(x[i : i + 1000]) for i in range(0, r, 1000)]
                low = np.concatenate([p[0] for p in parts])
                high = np.concatenate([p[1] for p in parts])
                covered = (low <= TRUE_MEAN[kind]) & (TRUE_MEAN[kind] <= high)
                if kind == "collapse":
                    seen = (x < 0.5).any(axis=-1)
                    cells.append(
                        f"{covered.mean():.3f}; {covered[seen].mean():.3f}, width "
                        f"{np.median((high - low)[seen]):.2f}"
                    )
                else:
                    cells.append(f"{covered.mean():.3f}")
            print(f"| {kind} | {name} | " + " | ".join(cells) + " |")


def verdicts(r: int, rng: np.random.Generator) -> None:
    print(
        "\nThe second line, the sign test: 10 equal configurations, all 45 pairs: P(any false "
        "winner) / expected false winners / one pair alone / any false winner without Holm"
    )
    print("| scores | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |")
    print("|---|" + "---|" * len(SEEDS))
    first, second = np.array(list(combinations(range(10), 2))).T
    for kind in KINDS:
        cells = []
        for n in SEEDS:
            x = null_groups(kind, 10, n, r, rng)
            p = st.sign_test(x[:, first], x[:, second])
            called = st.calls(holm(p))
            single = st.calls(p[:, 0])
            raw = (p <= st.ALPHA).any(axis=-1)
            cells.append(
                f"{called.any(-1).mean():.3f} / {called.sum(-1).mean():.3f} / "
                f"{single.mean():.3f} / {raw.mean():.2f}"
            )
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\nPower of one pair (P(win) per seed 0.75 / 0.85 / 0.95), exact sign test at 5%:")
    for n in SEEDS:
        print(
            f"  {n} seeds: "
            + " / ".join(
                f"{float(st.sign_test_power(n, q, st.ALPHA)):.2f}" for q in (0.75, 0.85, 0.95)
            )
        )
    for q in (0.75, 0.85, 0.95):
        print(
            f"  seeds for 80% power at P(win) {q}: 1 pair "
            f"{st.seeds_for_win_probability(q, st.ALPHA):.0f}, 10 pairs (level 0.005) "
            f"{st.seeds_for_win_probability(q, st.ALPHA / 10):.0f}"
        )


def against_the_best(r: int, rng: np.random.Generator) -> None:
    """Why the default pairs are fixed by the design: pairs chosen from the data (everything
    against the observed best) break Holm's guarantee."""
    r = min(r, 4000)
    print(
        "\nEqual groups, Holm over G - 1 pairs: P(any false winner) when the pairs are "
        "everything against the observed best / one fixed group against the others"
    )
    for groups, n in ((10, 10), (20, 10), (20, 20)):
        x = scores("normal", (r, groups, n), rng)
        best = x.mean(axis=-1).argmax(axis=-1)
        others = np.ones((r, groups), bool)
        others[np.arange(r), best] = False
        leader = x[np.arange(r), best][:, None, :]
        rest = x[others].reshape(r, groups - 1, n)
        against_best = st.calls(holm(st.sign_test(leader, rest))).any(axis=-1).mean()
        fixed = st.calls(holm(st.sign_test(x[:, :1], x[:, 1:]))).any(axis=-1).mean()
        print(f"  {groups} groups x {n} seeds: {against_best:.3f} / {fixed:.3f}")


def p_interval(r: int, rng: np.random.Generator) -> None:
    print("\nExact interval of P(A > B) with ties (accuracy on 360 images): coverage")
    a = np.round((0.905 + 0.006 * rng.standard_normal(2_000_000)) * 360) / 360
    b = np.round((0.900 + 0.006 * rng.standard_normal(2_000_000)) * 360) / 360
    truth = float(st.p_better(a, b))
    cells = []
    for n in SEEDS:
        a = np.round((0.905 + 0.006 * rng.standard_normal((r, n))) * 360) / 360
        b = np.round((0.900 + 0.006 * rng.standard_normal((r, n))) * 360) / 360
        low, high = st.p_better_interval(a, b)
        cells.append(f"{n} seeds {((low <= truth) & (truth <= high)).mean():.3f}")
    print("  " + ", ".join(cells))


def aso_rates(r: int, rng: np.random.Generator) -> None:
    r = min(r, 4000)
    print(
        f"\nASO eps_min < {THRESHOLD} with equal configurations (A = the better-looking by "
        "P(A > B), one comparison): false 'A dominates' rate"
    )
    for kind in KINDS:
        cells = []
        for n in SEEDS:
            a, b = scores(kind, (r, n), rng), scores(kind, (r, n), rng)
            flip = (st.p_better(a, b) < 0.5)[:, None]
            a, b = np.where(flip, b, a), np.where(flip, a, b)
            cells.append(f"{n}: {(aso(a, b, rng) < THRESHOLD).mean():.3f}")
        print(f"  {kind}: " + ", ".join(cells))


def variance(r: int, rng: np.random.Generator) -> None:
    r = min(r, 4000)
    print(
        "\nVariance split on crossed k x k grids (normal random effects): bias of each share "
        "(init, data, rest) and coverage of the 95% intervals (init, data, rest, init - data)"
    )
    for true_shares in ((0.6, 0.2, 0.2), (0.34, 0.49, 0.17), (0.1, 0.1, 0.8), (0.0, 0.5, 0.5)):
        for k in (4, 8):
            truth = np.array(true_shares)
            y = crossed_grids(true_shares, k, r, rng)
            estimate = vs.shares(vs.variance_components(y))
            low, high = [], []
            for i in range(0, r, 500):
                lo, hi = vs.share_intervals(vs.pivotal_shares(y[i : i + 500], rng))
                low.append(lo)
                high.append(hi)
            low, high = np.concatenate(low), np.concatenate(high)
            target = np.append(truth, truth[0] - truth[1])
            coverage = ((low <= target) & (target <= high)).mean(axis=0)
            ahead = (estimate[:, 1] > estimate[:, 0]).mean()
            spread = np.round(np.quantile(estimate[:, 0], [0.05, 0.95]), 2)
            print(
                f"  {true_shares} {k}x{k}: bias {np.round(estimate.mean(0) - truth, 3)}, "
                f"sd {np.round(estimate.std(0), 3)}, coverage {np.round(coverage, 3)}, "
                f"data estimated above init in {ahead:.2f} of grids, init share's 90% range "
                f"{spread}"
            )
        k = vs.grid_to_separate(truth, rng)
        print(
            f"    grid that separates init from data 4 times in 5: {k}x{k}"
            if k
            else "    no grid up to 64x64 separates them"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        choices=("verdicts",),
        default=None,
        help="verdicts: only the verdicts' false-call, power and target tables",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    targets(args.replicates, rng)
    t_false_winners(args.replicates, rng)
    power(args.replicates, rng)
    if args.only == "verdicts":
        return
    intervals(args.replicates, rng)
    verdicts(args.replicates, rng)
    against_the_best(args.replicates, rng)
    p_interval(args.replicates, rng)
    aso_rates(args.replicates, rng)
    variance(args.replicates, rng)


if __name__ == "__main__":
    main()
