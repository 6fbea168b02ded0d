"""Measure the race sweeper on the tuning-trap workload (the numbers in docs/race.md).

The race's decisions are a pure function of the results (``initsweep.race.engine.replay``), so a
full grid, trained once, answers what any race on it would have done: this script replays the
preset's race (conf/experiment/tuning_race.yaml, its own sweeper keys) on different seed orders
and compares its choice with the full grid's.

    # the full grid on the selection seeds 0..9, and the same grid on held-out seeds 10..19
    python train.py -m experiment=tuning_trap report=false
    python train.py -m experiment=tuning_trap report=false 'seed=range(10,20)'
    python scripts/race_study.py --tracking-uri sqlite:///$PWD/mlruns/mlflow.db
    python scripts/race_study.py --null-races 1000      # the simulations only (no grid needed)

It prints (markdown):
1. per repetition (repetition 0: seeds in the preset's order, 1..R-1: shuffled by
   ``numpy.random.default_rng(r)``): the race's learning rate per init, whether it matches the
   best mean over all selection seeds, and the runs spent;
2. the same over ``--orders`` random orders, for the preset and for variants of its keys
   (confidence, seeds_first, budget): agreement rate and mean runs (why the preset is what it is);
3. regret on held-out seeds: choose on val over the selection seeds by (a) one seed, (b) the
   race, (c) the full grid, and, at the race's cost, every configuration on 4 seeds (no race);
   score on the held-out seeds' mean test metric; regret = the best configuration's held-out
   score minus the chosen one's, per init.
4. candidate presets (``--candidates``, e.g. ``confidence=0.9,budget=50``): how many of the R
   repetitions and of the random orders each would agree with the grid, and its runs.
Selection is on the sweeper's metric (val/acc) only; test is read for the score alone.
5. (``--null-races N``, no grid needed) N simulated races among 5 identical configurations
   (no margin, the sweeper's default confidence and seeds_first, 10 seeds): the share of races
   that drop any configuration; and how soon a configuration worse by a gap is dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hydra_plugins.initsweep_race.config import RaceSweeperConf  # noqa: E402
from initsweep.race.engine import Candidate, RaceSettings, replay  # noqa: E402
from initsweep.race.plan import RacePlan, make_plan, to_container  # noqa: E402

PRESET = REPO / "conf" / "experiment" / "tuning_race.yaml"


def preset_plan(preset: Path = PRESET) -> RacePlan:
    """The race the preset runs: the sweeper's defaults (its structured config) with the
    preset's keys, checked by the sweeper's own make_plan."""
    keys = OmegaConf.merge(
        OmegaConf.structured(RaceSweeperConf), OmegaConf.load(preset).hydra.sweeper
    )
    return make_plan(to_container(keys), [])


def load(uri: str, experiment: str, plan: RacePlan) -> pd.DataFrame:
    """One row per FINISHED run of the grid: candidate index, seed, selection and score value."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: no experiment {experiment!r} in {uri}")
    by_overrides = {frozenset(c.overrides): c.index for c in plan.candidates}
    rows = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            "attributes.status = 'FINISHED'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            p, t, m = run.data.params, run.data.tags, run.data.metrics
            if t.get("initsweep.role") == "sweep" or "seed" not in p:
                continue
            key = frozenset((f"init={t.get('init')}", f"optim.lr={float(p['optim.lr'])}"))
            index = by_overrides.get(key)
            if index is None or plan.metric not in m:
                continue
            rows.append(
                {
                    "index": index,
                    "seed": int(p["seed"]),
                    "value": m[plan.metric],
                    "score": m.get(plan.score_metric),
                    "start": run.info.start_time,
                }
            )
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows).sort_values("start").drop_duplicates(["index", "seed"], keep="last")
    return frame.set_index(["index", "seed"]).sort_index()


def orders(seeds: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """Order 0: as given; order r >= 1: ``default_rng(r).permutation``."""
    out = [tuple(seeds)]
    out += [
        tuple(int(s) for s in np.random.default_rng(r).permutation(list(seeds)))
        for r in range(1, n)
    ]
    return out


def best_by_context(
    plan: RacePlan, frame: pd.DataFrame, seeds: Sequence[int], column: str
) -> dict[str, Candidate]:
    """Per context, the candidate with the best mean of ``column`` over ``seeds``."""
    sign = 1 if plan.settings.maximize or column == "score" else -1
    out: dict[str, Candidate] = {}
    for context in dict.fromkeys(c.context for c in plan.candidates):
        mine = [c for c in plan.candidates if c.context == context]
        means = [sign * frame.loc[[(c.index, s) for s in seeds], column].mean() for c in mine]
        out[context] = mine[int(np.argmax(means))]
    return out


def race_on(plan: RacePlan, frame: pd.DataFrame, settings: RaceSettings):
    table = frame["value"].to_dict()
    return replay(plan.candidates, settings, lambda c, s: table.get((c.index, s)))


def parse_value(text: str) -> int | float | None:
    """A sweeper key's value on the command line: ``null``, an int (budget, seeds_first) or a
    float (confidence, margin)."""
    if text == "null":
        return None
    return int(text) if text.lstrip("-").isdigit() else float(text)


def null_races(n_races: int, seeds: int = 10) -> None:
    """Simulated races: the rule's error rate over a whole race, and its power by gap."""
    cands = [Candidate(i, (f"optim.lr={i}",), "", f"optim.lr={i}") for i in range(5)]
    settings = RaceSettings(tuple(range(seeds)))
    print(
        f"## Simulated races: 5 configurations, {seeds} seeds, seeds_first "
        f"{settings.seeds_first}, confidence {settings.confidence}, margin {settings.margin}\n"
    )
    print(
        "Scores 0.9 + a per-seed effect shared by all (sd 0.01) + noise (sd 0.02); one "
        "configuration lowered by the gap (0: all identical).\n"
    )
    print(
        f"| gap | races | any configuration dropped | the worse one dropped by seed {seeds} "
        "| an equal one dropped | seeds to drop the worse one (median) |"
    )
    print("|---|---|---|---|---|---|")
    for gap in (0.0, 0.05, 0.1, 0.2, 0.5, 0.8):
        rng = np.random.default_rng(int(gap * 1000) + 17)
        anyone, worse, equal, when = 0, 0, 0, []
        for _ in range(n_races):
            values = (
                0.9
                + 0.02 * rng.standard_normal((5, seeds))
                + 0.01 * rng.standard_normal((1, seeds))
            )
            values[4] -= gap
            race = replay(cands, settings, lambda c, s, v=values: float(v[c.index, s]))
            drops = [
                (row.label, row.n_seeds)
                for t in race.rounds
                for row in t
                if row.status == "dropped"
            ]
            anyone += bool(drops)
            equal += any(label != "optim.lr=4" for label, _ in drops)
            hit = [n for label, n in drops if label == "optim.lr=4"]
            worse += bool(hit)
            when += hit
        median = f"{np.median(when):.0f}" if when else "-"
        print(
            f"| {gap:g} | {n_races} | {anyone / n_races:.3f} | "
            f"{worse / n_races if gap else float('nan'):.3f} | {equal / n_races:.3f} | "
            f"{median} |"
        )
    print()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="the store with the tuning_trap grids (none: simulations only)",
    )
    parser.add_argument(
        "--null-races",
        type=int,
        default=0,
        help="simulated races among 5 identical configurations (and by gap)",
    )
    parser.add_argument("--experiment", default="tuning_trap")
    parser.add_argument("--heldout-seeds", default="10-19", help="a-b: held-out seeds")
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--orders", type=int, default=1000, help="random orders for the rates")
    parser.add_argument(
        "--equal-seeds",
        type=int,
        default=4,
        help="the no-race baseline: every configuration on this many seeds",
    )
    parser.add_argument(
        "--candidates",
        default="confidence=0.9;confidence=0.9,budget=50;confidence=0.9,budget=60",
        help="';'-separated preset changes to score, each key=value,...",
    )
    args = parser.parse_args(argv)
    if args.null_races:
        null_races(args.null_races)
    if args.tracking_uri is None:
        return

    plan = preset_plan()
    settings = plan.settings
    select = list(settings.seeds)
    lo, hi = map(int, args.heldout_seeds.split("-"))
    heldout = list(range(lo, hi + 1))
    frame = load(args.tracking_uri, args.experiment, plan)
    needed = [(c.index, s) for c in plan.candidates for s in select + heldout]
    missing = [k for k in needed if k not in frame.index]
    if missing:
        raise SystemExit(
            f"error: {len(missing)} runs of the grid are missing, e.g. "
            f"(candidate, seed) {missing[:3]}: run the grids in this docstring"
        )
    truth = best_by_context(plan, frame, select, "value")
    full = len(plan.candidates) * len(select)
    print(
        f"# Race study: {args.experiment}, {len(plan.candidates)} configurations, "
        f"selection seeds {select[0]}..{select[-1]}, held-out seeds {lo}..{hi}\n"
    )
    print(
        "Best mean over all selection seeds (the full grid's choice, on "
        f"{plan.metric}): " + ", ".join(f"{k}: {c.label}" for k, c in truth.items()) + "\n"
    )

    print(f"## {args.repetitions} repetitions of the preset's race\n")
    print("| repetition | seed order | " + " | ".join(truth) + " | runs | ended |")
    print("|---|---|" + "---|" * len(truth) + "---|---|")
    agree, spent = 0, []
    for r, order in enumerate(orders(select, args.repetitions)):
        race = race_on(plan, frame, dataclasses.replace(settings, seeds=order))
        winners = race.winners()
        same = all(winners[k].candidate == truth[k] for k in truth)
        agree += same
        spent.append(race.spent)
        picks = " | ".join(
            winners[k].candidate.label + ("" if winners[k].candidate == truth[k] else " (differs)")
            for k in truth
        )
        ended = ", ".join(sorted({w.ended for w in winners.values()}))
        print(f"| {r} | {','.join(map(str, order))} | {picks} | {race.spent} | {ended} |")
    print(
        f"\nSame choice as the full grid in {agree} of {args.repetitions} repetitions; runs "
        f"{min(spent)}..{max(spent)} (mean {np.mean(spent):.1f}) of {full} "
        f"(at most {max(spent) / full:.0%}).\n"
    )

    print(f"## Agreement and cost over {args.orders} random seed orders\n")
    print("| variant | agree | runs mean | runs max | share of grid (max) |")
    print("|---|---|---|---|---|")
    variants = [
        ("the preset", settings),
        ("budget none (the same rule, uncapped)", dataclasses.replace(settings, budget=None)),
    ]
    for name, change in (
        ("margin", {"margin": 0.0}),
        ("margin", {"margin": 0.005}),
        ("margin", {"margin": 0.02}),
        ("confidence", {"confidence": 0.9}),
        ("confidence", {"confidence": 0.95}),
        ("confidence", {"confidence": 0.8}),
        ("seeds_first", {"seeds_first": 3}),
    ):
        key, value = next(iter(change.items()))
        if getattr(settings, key) == value:
            continue
        label = f"{name} {value}"
        variants.append((label, dataclasses.replace(settings, **change)))
        variants.append(
            (label + ", budget none", dataclasses.replace(settings, budget=None, **change))
        )
    shuffled = orders(select, args.orders + 1)[1:]
    for name, variant in variants:
        hits, runs = 0, []
        for order in shuffled:
            race = race_on(plan, frame, dataclasses.replace(variant, seeds=order))
            winners = race.winners()
            hits += all(winners[k].candidate == truth[k] for k in truth)
            runs.append(race.spent)
        print(
            f"| {name} | {hits / len(shuffled):.1%} | {np.mean(runs):.1f} | {max(runs)} | "
            f"{max(runs) / full:.0%} |"
        )
    equal = args.equal_seeds
    hits = sum(best_by_context(plan, frame, order[:equal], "value") == truth for order in shuffled)
    n_equal = equal * len(plan.candidates)
    print(
        f"| no race: every configuration on the order's first {equal} seeds | "
        f"{hits / len(shuffled):.1%} | {n_equal} | {n_equal} | {n_equal / full:.0%} |"
    )

    print(
        f"\n## Regret on held-out seeds {lo}..{hi} (choose on {plan.metric} over seeds "
        f"{select[0]}..{select[-1]}, score on {plan.score_metric})\n"
    )
    heldout_score = {
        c.index: frame.loc[[(c.index, s) for s in heldout], "score"].mean() for c in plan.candidates
    }
    oracle = {
        k: max(heldout_score[c.index] for c in plan.candidates if c.context == k) for k in truth
    }

    def regret(choice: dict[str, Candidate]) -> dict[str, float]:
        return {k: oracle[k] - heldout_score[choice[k].index] for k in truth}

    one_seed = [regret(best_by_context(plan, frame, [s], "value")) for s in select]
    races = [
        race_on(plan, frame, dataclasses.replace(settings, seeds=o))
        for o in orders(select, args.repetitions)
    ]
    raced = [regret({k: w.candidate for k, w in r.winners().items()}) for r in races]
    many = [race_on(plan, frame, dataclasses.replace(settings, seeds=o)) for o in shuffled]
    raced_many = [regret({k: w.candidate for k, w in r.winners().items()}) for r in many]
    equal_choice = [regret(best_by_context(plan, frame, o[:equal], "value")) for o in shuffled]
    methods = [
        ("(a) one seed (each of the selection seeds)", one_seed, len(plan.candidates)),
        (
            f"(b) the race ({args.repetitions} repetitions)",
            raced,
            float(np.mean([r.spent for r in races])),
        ),
        (
            f"(b) the race ({len(shuffled)} random orders)",
            raced_many,
            float(np.mean([r.spent for r in many])),
        ),
        (f"no race: {equal} seeds each ({len(shuffled)} random orders)", equal_choice, n_equal),
        ("(c) full grid", [regret(truth)], full),
    ]
    print(
        "| method | runs | "
        + " | ".join(f"regret {k} (mean, worst)" for k in truth)
        + " | regret mean |"
    )
    print("|---|---|" + "---|" * len(truth) + "---|")
    for name, values, runs in methods:
        cells = " | ".join(
            f"{np.mean([v[k] for v in values]):.4f}, {max(v[k] for v in values):.4f}" for k in truth
        )
        overall = np.mean([np.mean(list(v.values())) for v in values])
        print(f"| {name} | {runs:g} | {cells} | {overall:.4f} |")
    print(
        "\nHeld-out score per configuration (mean " + plan.score_metric + " over seeds "
        f"{lo}..{hi}): "
        + ", ".join(f"{c.context} {c.label}: {heldout_score[c.index]:.4f}" for c in plan.candidates)
    )

    print("\n## Candidate presets: the preset's keys changed as below\n")
    print(
        f"| change | agree, {args.repetitions} repetitions | agree, {len(shuffled)} orders | "
        "runs mean | runs max |"
    )
    print("|---|---|---|---|---|")
    for text in filter(None, args.candidates.split(";")):
        change = {k: parse_value(v) for k, v in (item.split("=") for item in text.split(","))}
        variant = dataclasses.replace(settings, **change)
        same = sum(
            all(w[k].candidate == truth[k] for k in truth)
            for w in (
                race_on(plan, frame, dataclasses.replace(variant, seeds=o)).winners()
                for o in orders(select, args.repetitions)
            )
        )
        many = [race_on(plan, frame, dataclasses.replace(variant, seeds=o)) for o in shuffled]
        hits = sum(all(r.winners()[k].candidate == truth[k] for k in truth) for r in many)
        runs = [r.spent for r in many]
        print(
            f"| {text} | {same} of {args.repetitions} | {hits / len(many):.1%} | "
            f"{np.mean(runs):.1f} | {max(runs)} |"
        )


if __name__ == "__main__":
    main()
