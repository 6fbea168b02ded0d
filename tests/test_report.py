"""initsweep report: known answers on synthetic MLflow stores, then end to end on a real sweep.

The synthetic runs carry the same tags and params as real jobs (``mlflow.parentRunId``,
``sweep_id``, ``outcome``, the flattened config with ``seed`` / ``init_seed`` / ``data_seed``), so
the report cannot tell them from a sweep; only their metric is chosen to make the answer known.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from scipy import stats

from initsweep import cli
from initsweep.naming import SEED_KEYS
from initsweep.report.compute import build
from initsweep.report.publish import report_for_sweep
from initsweep.report.select import select
from tests.conftest import TrainedSweep

REPO = Path(__file__).resolve().parents[1]
BASE_PARAMS = {
    "data.batch_size": "64",
    "model.activation": "relu",
    "optim.name": "adam",
    "optim.lr": "0.001",
    "init.scheme": "he",
    "trainer.max_epochs": "2",
    "experiment_name": "x",
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[str, MlflowClient, Path]:
    """One sqlite store for all synthetic sweeps (one experiment each: creating a store costs)."""
    root = tmp_path_factory.mktemp("synth")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, MlflowClient(tracking_uri=uri), root


def make_sweep(synth, jobs: list[dict], experiment: str | None = None) -> tuple[str, str]:
    """Log a sweep like the real callback and jobs do; returns (experiment name, parent run id).

    Each job: ``params`` (merged over BASE_PARAMS), ``seed`` (or ``init_seed`` / ``data_seed``),
    ``value`` (test/acc, None: not logged), ``val`` (val/acc, when given), ``outcome`` (default
    ok), ``n_test`` (tag).
    """
    _, client, root = synth
    experiment = experiment or f"exp-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(
        experiment, artifact_location=(root / "artifacts" / experiment).as_uri()
    )
    sweep_id = f"sweep-{uuid.uuid4().hex[:6]}"
    parent = client.create_run(
        exp_id, run_name=f"sweep-{sweep_id}", tags={"sweep_id": sweep_id, "initsweep.role": "sweep"}
    )
    parent_id = parent.info.run_id
    for job in jobs:
        seed = job.get("seed", 0)
        seeds = {
            "seed": seed,
            "init_seed": job.get("init_seed", seed),
            "data_seed": job.get("data_seed", seed),
        }
        params = {**BASE_PARAMS, **job.get("params", {}), **{k: str(v) for k, v in seeds.items()}}
        outcome = job.get("outcome", "ok")
        tags = {
            "mlflow.parentRunId": parent_id,
            "sweep_id": sweep_id,
            "outcome": outcome,
            "scheme": params["init.scheme"],
            "scale": "1.0",
            "dataset": "digits",
            "group_hash": "g",
            "config_hash": "c",
            **{k: str(v) for k, v in seeds.items()},
        }
        if job.get("n_test"):
            tags["n_test"] = str(job["n_test"])
        run = client.create_run(exp_id, run_name=f"{params['init.scheme']}-s{seed}", tags=tags)
        metrics = []
        if job.get("value") is not None:
            metrics = [
                Metric("test/acc", float(job["value"]), 0, 0),
                Metric("test/loss", 1.0 - float(job["value"]), 0, 0),
            ]
        if job.get("val") is not None:
            metrics.append(Metric("val/acc", float(job["val"]), 0, 0))
        client.log_batch(
            run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()]
        )
        status = RunStatus.FAILED if outcome == "failed" else RunStatus.FINISHED
        client.set_terminated(run.info.run_id, RunStatus.to_string(status))
    client.set_terminated(parent_id, "FINISHED")
    return experiment, parent_id


def report_of(synth, experiment: str, parent: str, **options):
    uri, client, _ = synth
    return build(client, select(client, experiment, sweep=parent), **options)


def test_group_statistics_and_ci_covers_the_true_mean(synth):
    rng = np.random.default_rng(1)
    values = {"he": rng.normal(0.90, 0.02, 30), "xavier": rng.normal(0.80, 0.02, 30)}
    jobs = [
        {"params": {"init.scheme": s}, "seed": i, "value": v, "n_test": 360}
        for s, vs in values.items()
        for i, v in enumerate(vs)
    ]
    exp, parent = make_sweep(synth, jobs)
    report = report_of(synth, exp, parent)
    summary = report.summary.set_index("group")
    assert list(summary.index) == ["he", "xavier"]
    for (scheme, truth), x in zip((("he", 0.90), ("xavier", 0.80)), values.values(), strict=True):
        row = summary.loc[scheme]
        assert row["n"] == 30
        assert row["ci_low"] < truth < row["ci_high"]
        assert row["ci_low"] < row["mean"] < row["ci_high"]
        assert row["ci_high"] - row["ci_low"] < 0.03
        assert row["mean"] == pytest.approx(np.mean(x))
        assert row["std"] == pytest.approx(np.std(x, ddof=1))
        assert row["median"] == pytest.approx(np.median(x))
        assert row["iqm"] == pytest.approx(stats.trim_mean(x, 0.25))
        p = np.mean(x)
        assert row["noise_floor"] == pytest.approx(math.sqrt(p * (1 - p) / 360))
    again = report_of(synth, exp, parent).summary
    assert again["ci_low"].tolist() == report.summary["ci_low"].tolist()  # seeded: reproducible


def test_p_a_beats_b_is_one_when_separated_and_half_when_identical(synth):
    rng = np.random.default_rng(2)
    same = rng.normal(0.7, 0.01, 8)
    jobs = []
    for i in range(8):
        jobs += [
            {"params": {"init.scheme": "good"}, "seed": i, "value": 0.9 + rng.normal(0, 0.01)},
            {"params": {"init.scheme": "bad"}, "seed": i, "value": 0.5 + rng.normal(0, 0.01)},
            {"params": {"init.scheme": "twin1"}, "seed": i, "value": same[i]},
            {"params": {"init.scheme": "twin2"}, "seed": i, "value": same[i]},
        ]
    exp, parent = make_sweep(synth, jobs)
    pairs = report_of(synth, exp, parent).pairs
    pair = {frozenset((r["a"], r["b"])): r for _, r in pairs.iterrows()}
    separated = pair[frozenset(("good", "bad"))]
    assert separated["a"] == "good" and separated["P(A>B)"] == 1.0
    # exact (Clopper-Pearson) interval of 8 wins in 8: [0.025^(1/8), 1], not a degenerate [1, 1]
    assert separated["ci_low"] == pytest.approx(0.025 ** (1 / 8)) and separated["ci_high"] == 1
    # 4 groups, one key of names: all 6 pairs; 5 of them 8/8 (sign test p = 2 / 2^8), the twins
    # tie on every seed (p = 1): Holm multiplies the smallest by 6, the next ones by 5, 4, ...
    assert separated["sign_p"] == pytest.approx(2 / 256)
    assert separated["sign_holm_p"] == pytest.approx(6 * 2 / 256)
    # the verdict: the paired t-test on the difference of means, Holm-adjusted, its interval at
    # the pair's Holm level (the first of 6 hypotheses: 0.05 / 6)
    g = {
        s: np.array([j["value"] for j in jobs if j["params"]["init.scheme"] == s])
        for s in ("good", "bad")
    }
    assert separated["test"] == "paired t" and separated["called"]
    assert separated["test_p"] == pytest.approx(stats.ttest_rel(g["good"], g["bad"]).pvalue)
    assert separated["mean_diff"] == pytest.approx(np.mean(g["good"] - g["bad"]))
    assert separated["diff_low"] > 0.35 and separated["diff_high"] < 0.45
    assert separated["verdict"].startswith(
        f"good > bad: good − bad = +{separated['mean_diff']:.3f} [+0.40"
    )
    assert "8 seeds (Holm p<0.001); P(A>B)=1.00" in separated["verdict"]
    assert separated["aso_eps_min"] == 0.0  # every good seed above every bad one
    identical = pair[frozenset(("twin1", "twin2"))]
    assert identical["P(A>B)"] == 0.5 and identical["ci_low"] <= 0.5 <= identical["ci_high"]
    assert identical["holm_p"] == 1.0 and not identical["called"]
    assert identical["verdict"].startswith("twin1 vs twin2: twin1 − twin2 = +0.000")
    assert "not called" in identical["verdict"] and "no difference seen" in identical["verdict"]


def test_design_pairs_by_default_every_pair_on_request(synth, tmp_path):
    """Default: groups that differ in one key, and only neighbouring values of a numeric key;
    ``all_pairs`` (``--all-pairs``, ``+report={all_pairs: true}``) compares every pair."""
    rng = np.random.default_rng(5)
    jobs = [
        {
            "params": {"init.scheme": scheme, "optim.lr": lr},
            "seed": i,
            "value": 0.8 + 0.05 * k + rng.normal(0, 0.01),
        }
        for scheme in ("he", "xavier")
        for k, lr in enumerate(("0.01", "0.1", "1.0"))
        for i in range(6)
    ]
    exp, parent = make_sweep(synth, jobs)
    pairs = report_of(synth, exp, parent).pairs
    got = {frozenset((r["a"], r["b"])) for _, r in pairs.iterrows()}
    lr_steps = {
        frozenset((f"{s} optim.lr={a}", f"{s} optim.lr={b}"))
        for s in ("he", "xavier")
        for a, b in (("0.01", "0.1"), ("0.1", "1.0"))
    }
    schemes = {
        frozenset((f"he optim.lr={lr}", f"xavier optim.lr={lr}")) for lr in ("0.01", "0.1", "1.0")
    }
    assert got == lr_steps | schemes  # 7 pairs, not 0.01 vs 1.0
    text = report_for_sweep(synth[0], exp, parent, tmp_path / "all", {"all_pairs": True, "seed": 1})
    assert "15 comparisons (every pair)" in text and "Holm-adjusted" in text
    assert len((tmp_path / "all" / "pairs.csv").read_text().splitlines()) == 1 + 15
    md = (tmp_path / "all" / "report.md").read_text()
    assert "at most 5% chance of any false winner" in md and "docs/report.md" in md


def test_the_demo_gap_is_called_at_three_seeds_against_a_point(synth, tmp_path):
    """``make sweep``'s he (0.963 +- 0.007) vs zeros (0.1000 on every seed: a point) on 3 seeds:
    called, with the difference and its interval; the verdicts lead the block, the method is one
    line after them; two points that differ by one test image are not called."""
    he = (0.9639, 0.9556, 0.9694)
    jobs = [
        {"params": {"init.scheme": s}, "seed": i, "value": v, "n_test": 360}
        for i in range(3)
        for s, v in (("he", he[i]), ("zeros", 0.1), ("ones", 0.1 + 1 / 360))
    ]
    exp, parent = make_sweep(synth, jobs)
    pairs = report_of(synth, exp, parent).pairs.set_index(["a", "b"])
    verdict = pairs.loc[("he", "zeros"), "verdict"]
    assert verdict.startswith("he > zeros: he − zeros = +0.863 [+0.8")
    assert "3 seeds" in verdict and "disagrees" not in verdict
    assert pairs.loc[("he", "zeros"), "diff_low"] > 0.8
    assert not pairs.loc[("ones", "zeros"), "called"]  # 1/360 on 3 seeds: the resolution floor
    text = report_for_sweep(synth[0], exp, parent, tmp_path / "demo", {"seed": 0})
    block = text[text.index("verdicts:") :].splitlines()
    assert block[1].strip().startswith("he > ") and "docs/report.md" in block[4]


# A 3-seed x 3-lr grid small enough to check by hand.
#   seed 0: a .90  b .80  c .70  -> a      means: a .8667  b .8233  c .6667 -> a wins on the mean
#   seed 1: a .80  b .85  c .70  -> b      flip rate 1/3; regret of seed 1 = .8667 - .8233
#   seed 2: a .90  b .82  c .60  -> a
GRID = {"0.001": (0.90, 0.80, 0.90), "0.01": (0.80, 0.85, 0.82), "0.1": (0.70, 0.70, 0.60)}


def test_tuning_trap_matches_hand_computed_values(synth):
    jobs = [
        {"params": {"optim.lr": lr}, "seed": s, "value": v}
        for lr, vs in GRID.items()
        for s, v in enumerate(vs)
    ]
    exp, parent = make_sweep(synth, jobs)
    report = report_of(synth, exp, parent, tune="optim.lr")
    (result,) = report.tuning
    assert result.values == ["0.001", "0.01", "0.1"]
    assert result.best_on_mean == "0.001"
    assert list(result.per_seed["winner"]) == ["0.001", "0.01", "0.001"]
    assert result.flip_rate == pytest.approx(1 / 3)
    lost = (0.90 + 0.80 + 0.90) / 3 - (0.80 + 0.85 + 0.82) / 3
    assert result.regret == pytest.approx(lost / 3)
    assert result.regret_max == pytest.approx(lost)
    # optimism: a seed's winning score minus the winner's mean on the other two seeds
    assert result.optimism == pytest.approx(((0.90 - 0.85) + (0.85 - 0.81) + (0.90 - 0.85)) / 3)
    assert result.tau_mean == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    curve = result.curve.set_index("k")
    # k=1: choosing on seed 1 picks b; on seeds {0,2} a beats b by .9 - .81 -> regret .09 / 3
    assert curve.loc[1, "regret"] == pytest.approx(0.09 / 3)
    assert curve.loc[1, "miss_rate"] == pytest.approx(1 / 3)
    # k=2: only {0,2} -> a, evaluated on seed 1 where b beats a by .05
    assert curve.loc[2, "regret"] == pytest.approx(0.05 / 3)
    assert result.p_best["0.001"] > result.p_best["0.01"] > result.p_best["0.1"] == 0
    assert result.p_best.sum() == pytest.approx(1.0)


def test_tuning_trap_chooses_on_validation_and_scores_on_test(synth, tmp_path):
    """Seed 0's validation metric prefers lr b, its test metric (like every seed's) prefers a:
    the choice follows val/acc, the regret is read on test/acc. Choosing on test would show no
    flip at all."""
    val = {"a": (0.70, 0.95, 0.95), "b": (0.90, 0.80, 0.80)}  # means: a .867, b .833
    test = {"a": (0.90, 0.90, 0.90), "b": (0.80, 0.80, 0.80)}
    jobs = [
        {
            "params": {"optim.lr": {"a": "0.1", "b": "0.2"}[v]},
            "seed": s,
            "value": test[v][s],
            "val": val[v][s],
        }
        for v in ("a", "b")
        for s in range(3)
    ]
    exp, parent = make_sweep(synth, jobs)
    (result,) = report_of(synth, exp, parent, tune="optim.lr").tuning
    assert (result.select_metric, result.score_metric) == ("val/acc", "test/acc")
    assert result.best_on_mean == "0.1"
    assert list(result.per_seed["winner"]) == ["0.2", "0.1", "0.1"]
    assert result.flip_rate == pytest.approx(1 / 3)
    assert result.regret == pytest.approx(0.10 / 3)  # test means: .90 - .80, on one seed of 3
    curve = result.curve.set_index("k")
    assert curve.loc[1, "regret"] == pytest.approx(0.10 / 3)  # chose b on seed 0's val
    on_test = report_of(synth, exp, parent, tune="optim.lr", select_metric="test/acc").tuning[0]
    assert on_test.flip_rate == 0 and on_test.select_metric == "test/acc"
    out = tmp_path / "rep"
    assert (
        cli.main(
            [
                "report",
                "--tracking-uri",
                synth[0],
                "--experiment",
                exp,
                "--sweep",
                parent,
                "--out",
                str(out),
                "--no-log",
                "--tune",
                "optim.lr",
            ]
        )
        == 0
    )
    assert "**Chosen on `val/acc`, scored on `test/acc`**" in (out / "report.md").read_text()


def test_tuning_trap_without_a_validation_metric_says_so(synth):
    jobs = [
        {"params": {"optim.lr": lr}, "seed": s, "value": v}
        for lr, vs in GRID.items()
        for s, v in enumerate(vs)
    ]
    exp, parent = make_sweep(synth, jobs)
    report = report_of(synth, exp, parent, tune="optim.lr")
    assert report.tuning[0].select_metric == "test/acc"
    assert any("no `val/acc` logged" in note and "optimistic" in note for note in report.notes)


def test_grouping_ignores_only_the_seed_keys(synth):
    jobs = []
    for lr in ("0.01", "0.1"):
        for batch in ("32", "64"):
            for i, (seed, init_seed, data_seed) in enumerate(((0, 0, 0), (1, 5, 7), (2, 2, 9))):
                params = {"optim.lr": lr, "data.batch_size": batch}
                if batch == "64":
                    params["init.mode"] = "fan_in"  # a key only some runs have
                jobs.append(
                    {
                        "params": params,
                        "seed": seed,
                        "init_seed": init_seed,
                        "data_seed": data_seed,
                        "value": 0.5 + 0.01 * i,
                    }
                )
    exp, parent = make_sweep(synth, jobs)
    report = report_of(synth, exp, parent)
    table = report.table
    assert set(table.group_keys) == {"optim.lr", "data.batch_size", "init.mode"}
    assert not set(table.group_keys) & set(SEED_KEYS)
    assert "model.activation" not in table.group_keys  # constant: not a group key
    assert set(table.label_keys) == {"optim.lr", "data.batch_size"}  # init.mode adds nothing
    assert len(report.summary) == 4 and set(report.summary["n"]) == {3}
    groups = table.frame.groupby("group")["run_id"].count()
    assert groups.to_dict() == {g: 3 for g in groups.index}


def test_variance_split_finds_the_seed_that_matters(synth):
    rng = np.random.default_rng(3)
    init_effect, data_effect = rng.normal(0, 0.03, 4), rng.normal(0, 0.03, 4)
    jobs = []
    for i in range(4):
        for d in range(4):
            noise = rng.normal(0, 0.0005)
            jobs.append(
                {
                    "params": {"init.scheme": "initonly"},
                    "init_seed": i,
                    "data_seed": d,
                    "value": 0.9 + init_effect[i] + noise,
                }
            )
            jobs.append(
                {
                    "params": {"init.scheme": "dataonly"},
                    "init_seed": i,
                    "data_seed": d,
                    "value": 0.9 + data_effect[d] + noise,
                }
            )
    exp, parent = make_sweep(synth, jobs)
    split = report_of(synth, exp, parent).variance.set_index("group")
    assert split.loc["initonly", "init_share"] > 0.95
    assert split.loc["initonly", "data_share"] < 0.03
    assert split.loc["dataonly", "data_share"] > 0.95
    for group in split.index:
        total = split.loc[group, ["init_share", "data_share", "rest_share"]].sum()
        assert total == pytest.approx(1.0)
    assert split.loc["initonly", "init_seeds"] == split.loc["initonly", "data_seeds"] == 4
    for group, source in (("initonly", "init"), ("dataonly", "data")):
        row = split.loc[group]
        assert row[f"{source}_low"] > 0.8 and row[f"{source}_high"] <= 1.0
        assert row[f"{source}_low"] <= row[f"{source}_share"] <= row[f"{source}_high"]
        assert row["separated"]  # the interval of init - data share excludes 0
    assert split.loc["initonly", "init_minus_data_low"] > 0
    assert split.loc["dataonly", "init_minus_data_high"] < 0


def test_variance_split_warns_when_the_grid_cannot_tell_init_from_data(synth, tmp_path, capsys):
    """Init and data effects of the same size on a 4 x 4 grid: no verdict on which matters more,
    a warning that says so, and (the two being equal) that no grid size would tell them apart;
    unequal effects get the grid size that would."""
    effects = np.array([-0.03, -0.01, 0.01, 0.03])
    jobs = []
    for i in range(4):
        for d in range(4):
            jobs.append(
                {
                    "params": {"init.scheme": "even"},
                    "init_seed": i,
                    "data_seed": d,
                    "value": 0.9 + effects[i] + effects[(d + 1) % 4] + 0.002 * (i == d),
                }
            )
            jobs.append(
                {
                    "params": {"init.scheme": "lopsided"},
                    "init_seed": i,
                    "data_seed": d,
                    "value": 0.9 + effects[i] + 0.5 * effects[(d + 2) % 4] + 0.004 * ((i + d) % 2),
                }
            )
    exp, parent = make_sweep(synth, jobs)
    out = tmp_path / "rep"
    assert (
        cli.main(
            [
                "report",
                "--tracking-uri",
                synth[0],
                "--experiment",
                exp,
                "--sweep",
                parent,
                "--out",
                str(out),
                "--no-log",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    split = report_of(synth, exp, parent).variance.set_index("group")
    even = split.loc["even"]
    assert not even["separated"] and even["init_minus_data_low"] < 0 < even["init_minus_data_high"]
    assert even["init_share"] == pytest.approx(even["data_share"], abs=0.05)
    lopsided = split.loc["lopsided"]
    assert not lopsided["separated"] and lopsided["grid_to_separate"] > 4
    md = (out / "report.md").read_text()
    for text in (md, printed):
        assert "even: the 4x4 grid cannot tell whether the init seed or the data seed" in text
        assert "too close for even a 64x64 grid" in text
        k = int(lopsided["grid_to_separate"])
        assert "lopsided: the 4x4 grid cannot tell" in text and f"a {k}x{k} grid" in text


def test_failed_and_diverged_runs_are_counted_not_dropped(synth, tmp_path, capsys):
    jobs = [{"params": {"init.scheme": "he"}, "seed": i, "value": 0.9 + 0.01 * i} for i in range(5)]
    jobs += [
        {"params": {"init.scheme": "he"}, "seed": 5, "value": None, "outcome": "failed"},
        {"params": {"init.scheme": "he"}, "seed": 6, "value": 0.1, "outcome": "diverged"},
        {"params": {"init.scheme": "ones"}, "seed": 0, "value": 0.1, "outcome": "diverged"},
        {"params": {"init.scheme": "ones"}, "seed": 1, "value": 0.1, "outcome": "diverged"},
    ]
    exp, parent = make_sweep(synth, jobs)
    uri = synth[0]
    out = tmp_path / "rep"
    code = cli.main(
        [
            "report",
            "--tracking-uri",
            uri,
            "--experiment",
            exp,
            "--sweep",
            parent,
            "--out",
            str(out),
            "--n-test",
            "360",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "9 runs, 5 usable (3 diverged, 1 failed excluded)" in printed
    report = report_of(synth, exp, parent)
    summary = report.summary.set_index("group")
    assert summary.loc["he", ["n", "failed", "diverged"]].tolist() == [5, 1, 1]
    assert summary.loc["he", "mean"] == pytest.approx(0.92)  # only the ok runs
    assert summary.loc["ones", ["n", "diverged"]].tolist() == [0, 2]
    assert math.isnan(summary.loc["ones", "mean"])
    md = (out / "report.md").read_text()
    assert "| ones | 0 | 0 | 2 |" in md and "| he | 5 | 1 | 1 |" in md
    runs_csv = (out / "runs.csv").read_text().splitlines()
    assert len(runs_csv) == 1 + 9


@pytest.mark.parametrize(
    ("args", "flag", "listed"),
    [
        (["--metric", "nosuch"], "--metric", "test/acc"),
        (["--tune", "nosuch"], "--tune", "init.scheme"),
        (["--tune", "seed"], "--tune", "init.scheme"),
        (["--experiment", "nosuch"], "--experiment", "exp-"),
        (["--sweep", "nosuch"], "--sweep", "sweep-"),
        (["--filter", "params.x === 1"], "--filter", ""),
        (["--n-test", "0"], "--n-test", ">= 1"),
        (["--select-metric", "val/nosuch"], "--select-metric", "test/acc"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(synth, capsys, args, flag, listed):
    jobs = [
        {"params": {"init.scheme": s}, "seed": i, "value": 0.5}
        for s in ("he", "zeros")
        for i in range(2)
    ]
    exp, _ = make_sweep(synth, jobs)
    argv = ["report", "--tracking-uri", synth[0], "--no-log", "--out", str(synth[2] / "bad")]
    if "--experiment" not in args:
        argv += ["--experiment", exp]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli.main(argv + args))
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and flag in err[0], err
    assert listed in err[0]


def test_missing_store_is_an_error_and_is_not_created(tmp_path, capsys):
    db = tmp_path / "none" / "mlflow.db"
    assert cli.main(["report", "--tracking-uri", f"sqlite:///{db}"]) == 2
    assert "--tracking-uri" in capsys.readouterr().err
    assert not db.exists()


def test_sweep_then_report_end_to_end(trained_sweep: TrainedSweep, tmp_path):
    """A real sweep with report=true (the default hook), then `initsweep report` as a subprocess.
    It logs the report on the shared sweep's parent run again, with the sweep's UI address."""
    store = trained_sweep.store
    hook_report = trained_sweep.root / "multirun" / "report"
    assert (hook_report / "report.md").is_file() and (hook_report / "runs.csv").is_file()

    out = tmp_path / "cli-report"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= trained_sweep.ui_env
    script = Path(sys.executable).parent / "initsweep"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "initsweep.cli"]
    proc = subprocess.run(
        [
            *command,
            "report",
            "--tracking-uri",
            store,
            "--latest",
            "--tune",
            "init.scheme",
            "--out",
            str(out),
            "--n-test",
            "360",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "he > zeros" in proc.stdout or "he vs zeros" in proc.stdout
    assert "6 runs, 6 usable" in proc.stdout
    expected = {
        "report.md",
        "report.html",
        "runs.csv",
        "groups.csv",
        "pairs.csv",
        "tuning.csv",
        "tuning_seeds.csv",
        "regret_curve.csv",
        "plots/groups.png",
        "plots/tuning_curve.png",
        "plots/rank_heatmap.png",
        "plots/kendall_tau.png",
        "plots/regret_vs_seeds.png",
    }
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == expected
    for name in expected:
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for image in (n for n in expected if n.endswith(".png")):
        assert f"]({image})" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<table" in html

    client = MlflowClient(store)
    parent = client.search_runs(
        [client.get_experiment_by_name("initsweep").experiment_id],
        "tags.`initsweep.role` = 'sweep'",
    )[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    logged |= {a.path for a in client.list_artifacts(parent.info.run_id, "report/plots")}
    assert {f"report/{name}" for name in expected} <= logged
    assert parent.data.tags["report"] == "report/report.html"


def test_the_verdict_says_when_the_sign_test_disagrees():
    """The t-test calls a on the mean while b wins on most seeds (a few big seeds), and the sign
    test calls a pair the t-test does not (collapsing seeds): both are said in the verdict."""
    from initsweep.report.pairs import Comparison

    mean_only = Comparison(
        "a",
        "b",
        10,
        0.3,
        0.07,
        0.65,
        0.05,
        diff_low=0.01,
        diff_high=0.09,
        test_p=0.001,
        holm_p=0.001,
        sign_p=0.34,
        sign_holm_p=0.34,
        sign_for_a=False,
    )
    assert mean_only.called and "the sign test disagrees: b wins on most seeds" in mean_only.verdict
    seeds_only = Comparison(
        "a",
        "b",
        20,
        0.9,
        0.68,
        0.99,
        0.02,
        diff_low=-0.01,
        diff_high=0.05,
        test_p=0.2,
        holm_p=0.4,
        sign_p=0.001,
        sign_holm_p=0.002,
    )
    assert not seeds_only.called
    assert "the sign test disagrees: a wins on most seeds (P(a>b)=0.90" in seeds_only.verdict
    agree = Comparison(
        "a",
        "b",
        20,
        0.9,
        0.68,
        0.99,
        0.05,
        diff_low=0.01,
        diff_high=0.09,
        test_p=0.001,
        holm_p=0.002,
        sign_p=0.001,
        sign_holm_p=0.002,
    )
    assert "disagrees" not in agree.verdict
