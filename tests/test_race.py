"""The race's decision logic on synthetic results (fast, no training): the elimination rule, the
race as a state machine (rounds, contexts, budget, seeds, failures), the plan's one-line checks
and how a round's seeds become jobs. The real race through the CLI: tests/test_race_cli.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hydra_plugins.initsweep_race.config import RaceSweeperConf
from initsweep.errors import ConfigError
from initsweep.race.engine import (
    ALL_FAILED,
    BUDGET,
    CONFIDENT,
    SEEDS,
    Candidate,
    Race,
    RaceSettings,
    replay,
)
from initsweep.race.plan import job_overrides, make_plan, parse_seeds, seed_chunks
from initsweep.race.publish import markdown, round_line, rows, winner_metrics
from initsweep.race.rule import judge, mean_and_t_interval
from initsweep.stats.confidence_sequences import betting_e_values
from initsweep.stats.multiple_testing import e_holm

KEYS = {
    "seeds": "range(10)",
    "seeds_first": 3,
    "seeds_per_round": 1,
    "metric": "val/acc",
    "direction": None,
    "confidence": 0.95,
    "margin": 0.0,
    "budget": None,
    "context": ["init"],
    "params": None,
}


def candidates(contexts: dict[str, list[float]]) -> tuple[list[Candidate], dict[int, float]]:
    """Candidates named lr=<mean> per context, and their true means by index."""
    out, means = [], {}
    for context, values in contexts.items():
        for mean in values:
            i = len(out)
            out.append(Candidate(i, (context, f"optim.lr={mean}"), context, f"optim.lr={mean}"))
            means[i] = mean
    return out, means


def synthetic(
    means: dict[int, float], seed_sd: float, noise_sd: float, n_seeds: int = 20, rng_seed: int = 0
):
    """value(candidate, seed) = true mean + a seed effect shared by every candidate + noise."""
    rng = np.random.default_rng(rng_seed)
    shared = rng.normal(0, seed_sd, n_seeds)
    noise = rng.normal(0, noise_sd, (len(means), n_seeds))
    return lambda c, s: means[c.index] + shared[s] + noise[c.index, s]


# ------------------------------------------------------------------------------------ the rule
def test_mean_and_t_interval_is_the_student_t_interval():
    mean, low, high = mean_and_t_interval([1.0, 2.0, 3.0, 4.0], 0.95)
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    assert math.isnan(mean_and_t_interval([1.0], 0.95)[1])


@pytest.mark.parametrize("margin", (0.0, 0.02))
def test_the_e_process_keeps_its_level_however_often_it_is_looked_at(margin):
    """Differences whose mean is exactly the margin (the null's edge), heavy-tailed (a rare
    -0.8, as a collapse gives), looked at after every one of 30 seeds: the e-value ever reaches
    1 / 0.1 in at most 10% of 4000 sequences (Ville), and its mean at the end is <= 1 (+ MC)."""
    rng = np.random.default_rng(7)
    d = np.where(rng.random((4000, 30)) < 0.05, -0.8, 0.8 * 0.05 / 0.95)
    d = d + 0.02 * rng.standard_normal(d.shape)
    d = d - d.mean() + margin  # mean exactly the margin
    e = betting_e_values(d, margin=margin)
    assert (e.max(axis=-1) >= 10).mean() <= 0.1
    assert e[:, -1].mean() <= 1.05
    # not vacuous: a real gap the size of a collapse grows it fast, a small one cannot
    assert betting_e_values(np.full(10, 0.8))[-1] >= 50
    assert betting_e_values(np.full(40, 0.05))[-1] < 10  # the price of assuming only the bound


def test_judge_drops_a_collapsed_config_and_keeps_a_near_tie():
    rng = np.random.default_rng(2)
    shared = 0.02 * rng.standard_normal(10)
    scores = np.array(
        [
            0.10 + 0.003 * rng.standard_normal(10),  # collapsed to chance
            0.90 + shared + 0.003 * rng.standard_normal(10),  # near tie with leader
            0.901 + shared + 0.003 * rng.standard_normal(10),
        ]
    )  # leader
    verdict = judge(scores, maximize=True, confidence=0.9)
    assert verdict.leader == 2
    assert verdict.dropped.tolist() == [True, False, False]
    assert math.isnan(verdict.p_holm[2]) and math.isnan(verdict.diff[2])
    # p_holm is the anytime-valid p-value 1 / (e-Holm-adjusted e-value)
    assert verdict.p_holm[0] == pytest.approx(min(1.0, 1 / e_holm(verdict.e_value)[0]))
    early = judge(scores[:, :4], maximize=True, confidence=0.9)  # 4 seeds: not yet
    assert not early.dropped.any()


def test_judge_minimises_a_loss_within_its_bounds():
    rng = np.random.default_rng(3)
    scores = np.array([0.30 + 0.01 * rng.standard_normal(10), np.full(10, 2.30)])
    verdict = judge(scores, maximize=False, confidence=0.9, bounds=(0.0, math.log(10)))
    assert verdict.leader == 0
    assert verdict.dropped.tolist() == [False, True]


def test_a_margin_never_counts_differences_below_it():
    """Consistent differences of 0.01 are evidence against "within 0 of the best" but none
    against "within 0.015": that e-process never bets."""
    d = np.full(30, 0.01)
    assert betting_e_values(d)[-1] > 1
    assert betting_e_values(d, margin=0.015)[-1] == 1.0


# ----------------------------------------------------------------------------------- the race
def test_race_drops_the_bad_keeps_the_close_and_picks_the_best_mean():
    cands, means = candidates({"init=he": [0.10, 0.85, 0.90, 0.91]})
    race = replay(cands, RaceSettings(tuple(range(20))), synthetic(means, 0.02, 0.005))
    drops = [s.label for t in race.rounds for s in t if s.status == "dropped"]
    assert drops[0] == "optim.lr=0.1"
    winner = race.winners()["init=he"]
    assert winner.candidate.label == "optim.lr=0.91"
    assert race.spent < race.full_grid == 80
    # every live configuration always has the same seeds: paired comparisons stay paired
    for table in race.rounds:
        assert len({s.n_seeds for s in table if s.status != "failed"}) == 1


def test_a_context_that_is_decided_stops_getting_seeds_while_others_race_on():
    cands, means = candidates({"init=he": [0.1, 0.9], "init=xavier": [0.90, 0.9005]})
    race = Race(cands, RaceSettings(tuple(range(12)), seeds_first=3, margin=0.01))
    value = synthetic(means, 0.02, 0.003)
    plan = race.next_round()
    assert set(plan) == {0, 1, 2, 3} and plan[0] == (0, 1, 2)
    while "init=he" not in race.ended:
        race.record({(i, s): value(cands[i], s) for i, seeds in plan.items() for s in seeds})
        plan = race.next_round()
    assert race.ended == {"init=he": CONFIDENT}
    he_seeds = len(race.played)
    assert he_seeds < 12 and set(plan) == {2, 3}  # only xavier's two get the next seed
    while plan:
        race.record({(i, s): value(cands[i], s) for i, seeds in plan.items() for s in seeds})
        plan = race.next_round()
    assert race.ended == {"init=he": CONFIDENT, "init=xavier": SEEDS}
    assert race.spent == 2 * he_seeds + 2 * 12
    assert race.winners()["init=he"].candidate.label == "optim.lr=0.9"


def test_budget_ends_the_race_before_a_round_it_cannot_pay_for():
    cands, means = candidates({"": [0.90, 0.9001, 0.9002]})
    race = replay(
        cands,
        RaceSettings(tuple(range(10)), seeds_first=3, budget=14),
        synthetic(means, 0.02, 0.01),
    )
    assert race.spent == 12  # 9 in round 1, 3 in round 2; round 3 would need 15 > 14
    assert race.ended == {"": BUDGET}
    assert race.winners()[""].n_seeds == 4


def test_a_failed_run_drops_its_configuration_with_the_reason():
    cands, means = candidates({"": [0.90, 0.91, 0.92]})
    race = Race(cands, RaceSettings(tuple(range(4)), seeds_first=2))
    plan = race.next_round()
    values = {(i, s): means[i] for i, seeds in plan.items() for s in seeds}
    values[(1, 1)] = None
    values[(2, 0)] = float("nan")
    race.record(values, problems={(1, 1): "RuntimeError: boom"})
    failed = {s.label: s.reason for s in race.rounds[0] if s.status == "failed"}
    assert failed == {
        "optim.lr=0.91": "seed 1: RuntimeError: boom",
        "optim.lr=0.92": "seed 0: metric is nan",
    }
    assert race.ended == {"": CONFIDENT}  # one left
    everyone = Race(cands, RaceSettings(tuple(range(4)), seeds_first=2))
    plan = everyone.next_round()
    everyone.record({})
    assert everyone.ended == {"": ALL_FAILED} and everyone.winners() == {}


def test_the_race_is_a_pure_function_of_the_results_and_the_seed_order():
    cands, means = candidates({"a": [0.80, 0.88, 0.9], "b": [0.7, 0.9, 0.95]})
    value = synthetic(means, 0.03, 0.01)
    settings = RaceSettings(tuple(range(10)))
    first, again = replay(cands, settings, value), replay(cands, settings, value)
    assert rows(first) == rows(again) or _nan_equal(rows(first), rows(again))
    with pytest.raises(RuntimeError, match="next_round"):
        Race(cands, settings).record({})


def _nan_equal(a: list[dict], b: list[dict]) -> bool:
    return all(str(x) == str(y) for x, y in zip(a, b, strict=True))


def test_a_rare_failure_cannot_make_the_race_drop_the_grid_s_choice():
    """Config B beats A by 0.01 on 7 of 10 seeds and fails (0.5) on the other 3; A is best on
    the mean over all 10. Seeds in an order that shows B's failures last: the per-round t-test
    this rule replaced dropped A on 3 seeds (without a margin); the e-process cannot, because
    B's small edge is no evidence against a bounded metric that may still fail, and A wins."""
    a = {s: 0.92 + 0.002 * (s % 3) for s in range(10)}
    b = {s: (0.5 if s in (7, 8, 9) else a[s] + 0.01) for s in range(10)}
    cands, _ = candidates({"": [1.0, 2.0]})

    def value(c, s):
        return (a if c.index == 0 else b)[s]

    plain = replay(cands, RaceSettings(tuple(range(10)), seeds_first=3), value)
    assert not any(s.status == "dropped" for t in plain.rounds for s in t)
    assert plain.winners()[""].candidate.index == 0
    assert np.mean(list(a.values())) > np.mean(list(b.values()))  # A is the grid's choice


def test_with_every_seed_played_the_race_chooses_what_the_full_grid_chooses():
    """Near-ties are never dropped; at the last seed the best mean over all N seeds wins."""
    cands, means = candidates({"": [0.90, 0.9004, 0.9008, 0.85]})
    value = synthetic(means, 0.02, 0.01, n_seeds=6, rng_seed=3)
    race = replay(cands, RaceSettings(tuple(range(6)), seeds_first=2), value)
    grid = max(cands, key=lambda c: np.mean([value(c, s) for s in range(6)]))
    assert race.winners()[""].candidate == grid


def test_under_the_null_no_margin_a_race_rarely_drops_anyone():
    """Five identical configurations, no margin, confidence 0.9, 10 seeds, looked at every round:
    a drop is a false one, and the whole race drops one in at most 10% of 200 races (the
    guarantee is for all rounds together; scripts/race_study.py --null-races 1000 measures it).
    The per-round t-test this replaced dropped one in nearly every race."""
    cands, means = candidates({"": [0.9] * 5})
    settings = RaceSettings(tuple(range(10)), confidence=0.9, margin=0.0)
    dropped = 0
    for rep in range(200):
        race = replay(cands, settings, synthetic(means, 0.02, 0.01, rng_seed=rep))
        dropped += any(s.status == "dropped" for t in race.rounds for s in t)
    assert dropped / 200 <= 0.1


def test_the_race_defaults_have_one_source():
    conf = RaceSweeperConf()
    settings = RaceSettings((0, 1))
    assert (conf.seeds_first, conf.seeds_per_round, conf.confidence, conf.margin) == (
        settings.seeds_first,
        settings.seeds_per_round,
        settings.confidence,
        settings.margin,
    )


def test_round_table_markdown_and_metrics_name_every_round_and_the_winner():
    cands, means = candidates({"init=he": [0.1, 0.9, 0.91]})
    race = replay(cands, RaceSettings(tuple(range(12))), synthetic(means, 0.02, 0.004))
    text = markdown(race, "val/acc", "test/acc")
    assert "Runs spent: " in text and "| 1 | init=he | optim.lr=0.1 |" in text
    assert "dropped" in text and "worse than optim.lr=" in text
    assert "init=he" in round_line(race.rounds[0])
    metrics = winner_metrics(race.winners(), "val/acc", "test/acc")
    assert "race/init_he/val/acc" in metrics and "race/init_he/val/acc_low" in metrics


# ----------------------------------------------------------------------------------- the plan
def test_plan_builds_the_grid_contexts_and_settings():
    plan = make_plan({**KEYS, "params": {"init": "he,xavier"}}, ["optim.lr=0.1,0.5", "debug=fast"])
    assert [c.overrides for c in plan.candidates] == [
        ("init=he", "optim.lr=0.1"),
        ("init=he", "optim.lr=0.5"),
        ("init=xavier", "optim.lr=0.1"),
        ("init=xavier", "optim.lr=0.5"),
    ]
    assert [(c.context, c.label) for c in plan.candidates][:2] == [
        ("init=he", "optim.lr=0.1"),
        ("init=he", "optim.lr=0.5"),
    ]
    assert plan.fixed == ("debug=fast",)
    assert plan.settings.seeds == tuple(range(10)) and plan.settings.maximize
    assert (plan.metric, plan.score_metric) == ("val/acc", "test/acc")


def test_command_line_replaces_params_as_the_basic_sweeper_does():
    plan = make_plan({**KEYS, "params": {"optim.lr": "0.1,0.2,0.3"}}, ["optim.lr=0.5,1.0"])
    assert [c.label for c in plan.candidates] == ["optim.lr=0.5", "optim.lr=1.0"]


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("range(4)", (0, 1, 2, 3)),
        ("3,1,2", (3, 1, 2)),
        ([5, 6], (5, 6)),
        ("range(2,8,3)", (2, 5)),
    ],
)
def test_seeds_are_parsed_in_the_order_given(seeds, expected):
    assert parse_seeds(seeds) == expected


@pytest.mark.parametrize(
    ("keys", "arguments", "message"),
    [
        ({}, ["optim.lr=0.1"], "at least 2 configurations per context, found 1"),
        (
            {},
            ["init=he,xavier"],
            "at least 2 configurations per context, found 1 in context init=he",
        ),
        ({"seeds": []}, ["optim.lr=0.1,0.5"], "no seeds left to race on (0)"),
        ({"seeds": "range(3)", "seeds_first": 4}, ["optim.lr=0.1,0.5"], "must be 2..3"),
        ({"seeds": "0,0,1"}, ["optim.lr=0.1,0.5"], "a seed appears twice"),
        (
            {"metric": "val/f1"},
            ["optim.lr=0.1,0.5"],
            "unknown selection metric; choose from val/acc",
        ),
        ({"metric": "test/acc"}, ["optim.lr=0.1,0.5"], "selects on a validation metric"),
        ({"metric": "val/loss", "direction": "max"}, ["optim.lr=0.1,0.5"], "minimised"),
        (
            {"budget": 5},
            ["optim.lr=0.1,0.5"],
            "cannot pay for the first round (2 configurations x 3",
        ),
        ({"confidence": 1.0}, ["optim.lr=0.1,0.5"], "must be in [0.5, 1)"),
        ({"margin": -0.01}, ["optim.lr=0.1,0.5"], "must be >= 0"),
        ({}, ["optim.lr=0.1,0.5", "seed=0,1"], "a seed key is not a configuration"),
        ({}, ["optim.lr=0.1,0.5", "seed=3"], "the race gives the seeds"),
        ({}, ["optim.lr=interval(0.1,0.5)"], "lists and range() only"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(keys, arguments, message):
    with pytest.raises(ConfigError) as err:
        make_plan({**KEYS, **keys}, arguments)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_seeds_are_stacked_into_jobs_of_consecutive_seeds():
    assert seed_chunks([0, 1, 2, 3, 4], 2) == [(0, 2), (2, 2), (4, 1)]
    assert seed_chunks([3, 4, 7, 8, 9], 4) == [(3, 2), (7, 3)]
    assert seed_chunks([5, 2, 3], 3) == [(5, 1), (2, 2)]
    assert seed_chunks([0, 1, 2], 1) == [(0, 1), (1, 1), (2, 1)]


def test_a_round_becomes_one_batch_of_job_overrides():
    plan = make_plan(KEYS, ["optim.lr=0.1,0.5", "debug=fast", "seeds_per_job=2"])
    assert plan.seeds_per_job == 1  # without a composed config, the default
    from dataclasses import replace

    stacked = replace(plan, seeds_per_job=2)
    jobs = job_overrides(stacked, {0: (0, 1, 2), 1: (0, 1, 2)})
    assert jobs[0] == (0, (0, 1), ["debug=fast", "optim.lr=0.1", "seed=0", "seeds_per_job=2"])
    assert jobs[1] == (0, (2,), ["debug=fast", "optim.lr=0.1", "seed=2", "seeds_per_job=1"])
    assert len(jobs) == 4
    single = job_overrides(plan, {1: (4,)})
    assert single == [(1, (4,), ["debug=fast", "optim.lr=0.5", "seed=4"])]


def test_hydra_discovers_the_race_sweeper_in_the_hydra_plugins_namespace():
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    import hydra_plugins

    names = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert "hydra_plugins.initsweep_race.race_sweeper.RaceSweeper" in names
    assert "race.yaml" in ConfigStore.instance().list("hydra/sweeper")
    assert getattr(hydra_plugins, "__file__", None) is None  # a namespace package: no __init__


def test_the_race_imports_no_torch_in_the_launching_process():
    """A launching process that only submits jobs (joblib, SLURM) runs the race: no Lightning."""
    import subprocess
    import sys

    code = (
        "import sys, hydra_plugins.initsweep_race.race_sweeper, initsweep.race.plan, "
        "initsweep.race.engine, initsweep.race.publish, initsweep.race.collect, "
        "initsweep.tracking.store; "
        "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
