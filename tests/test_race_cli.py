"""The race sweeper through the real CLI: Hydra finds the plugin, real jobs train (debug=fast,
shrunk), results come back through status files, the parent run gets the race, a rerun reuses
the FINISHED runs, bad input is one line with exit code 2, and the joblib launcher works too."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import runs_of

# lr 0.01 barely moves in 2 epochs (val/acc ~0.45), lr 0.5 learns (~0.89): a gap of ~0.45 a
# seed. The anytime-valid rule (docs/race.md) needs several seeds for it: at confidence 0.5 the
# race drops 0.01 after round 4 (5 seeds), 10 runs of the grid's 12.
RACE = [
    "-m",
    "hydra/sweeper=race",
    "optim=sgd",
    "optim.lr=0.01,0.5",
    "init=he",
    "debug=fast",
    "trainer.max_epochs=2",
    "diagnostics.plots=false",
    "hydra.sweeper.seeds=[0,1,2,3,4,5]",
    "hydra.sweeper.seeds_first=2",
    "hydra.sweeper.confidence=0.5",
]


def parent_and_children(store: str) -> tuple[list, list]:
    runs = runs_of(store)
    parents = [r for r in runs if r.data.tags.get("initsweep.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("initsweep.role") != "sweep"]
    return sorted(parents, key=lambda r: r.info.start_time), children


@pytest.mark.slow  # a whole sweep end to end; the fast tier keeps a smaller check of it
def test_a_real_race_drops_the_worse_config_logs_the_race_and_resumes(cli, store, tmp_path):
    proc = cli(*RACE, "seeds_per_job=2", check=True)
    out = proc.stdout
    assert "race round 1 (4 runs): all: 2 alive, leader optim.lr=0.5" in out, out
    assert "race round 4 (10 runs): all: 1 alive, leader optim.lr=0.5" in out, out
    assert "dropped optim.lr=0.01" in out
    assert "race: 10 runs of the full grid's 12 (83%)" in out
    parents, children = parent_and_children(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # round 1: 2 jobs of 2 stacked seeds (seeds_per_job=2); then one seed a round, seeds 0..4
    assert sorted((r.data.params["optim.lr"], r.data.tags["seed"]) for r in children) == [
        (lr, str(s)) for lr in ("0.01", "0.5") for s in range(5)
    ]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {
        r.data.tags.get("trained_together") for r in children if r.data.tags["seed"] in ("0", "1")
    } == {"2"}

    # the winner is the best mean of val/acc as MLflow has it; test/acc is its score
    val = {
        lr: [r.data.metrics["val/acc"] for r in children if r.data.params["optim.lr"] == lr]
        for lr in ("0.01", "0.5")
    }
    assert np.mean(val["0.5"]) > np.mean(val["0.01"])
    parent = parents[0].data
    assert parent.tags["race.winner.all"] == "optim.lr=0.5"
    assert parent.tags["race.ended.all"] == "confident"
    assert parent.metrics["race/all/val/acc"] == pytest.approx(np.mean(val["0.5"]))
    tests = [r.data.metrics["test/acc"] for r in children if r.data.params["optim.lr"] == "0.5"]
    assert parent.metrics["race/all/test/acc"] == pytest.approx(np.mean(tests))
    assert (parent.metrics["race/runs"], parent.metrics["race/full_grid"]) == (10, 12)

    # the round table, the markdown and the plot: on the parent run and in <sweep dir>/race
    client = MlflowClient(tracking_uri=store)
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "race")}
    assert logged == {"race/rounds.csv", "race/race.md", "race/intervals.png"}
    with (tmp_path / "multirun" / "race" / "rounds.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [(r["round"], r["configuration"], r["status"]) for r in table] == [
        (str(k), lr, status)
        for k in range(1, 5)
        for lr, status in (
            ("optim.lr=0.01", "alive" if k < 4 else "dropped"),
            ("optim.lr=0.5", "leader"),
        )
    ]
    assert "worse than optim.lr=0.5" in table[-2]["reason"]
    statuses = json.loads((tmp_path / "multirun" / "0" / "initsweep_job.json").read_text())
    assert [s["seed"] for s in statuses] == [0, 1] and "val/acc" in statuses[0]

    # A rerun of the same race trains nothing: every run is FINISHED in the store
    again = cli(*RACE, "seeds_per_job=2", check=True)
    assert again.stdout.count("skipped, finished as run") == 10, again.stdout
    assert "race round 4 (10 runs): all: 1 alive, leader optim.lr=0.5" in again.stdout
    parents, children_again = parent_and_children(store)
    assert len(children_again) == 10 and len(parents) == 2
    assert parents[1].data.tags["race.winner.all"] == "optim.lr=0.5"
    assert parents[1].data.metrics["race/all/val/acc"] == pytest.approx(np.mean(val["0.5"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["optim.lr=0.1"],
            "error: hydra.sweeper: a race needs at least 2 configurations per context, found 1",
        ),
        (
            ["optim.lr=0.1,0.5", "hydra.sweeper.metric=val/f1"],
            "error: hydra.sweeper.metric='val/f1': unknown selection metric; choose from val/acc, "
            "val/loss",
        ),
        (
            ["optim.lr=0.1,0.5", "hydra.sweeper.seeds=[]"],
            "error: hydra.sweeper.seeds=[]: no seeds left to race on (0)",
        ),
        (
            ["optim.lr=0.1,0.5", "hydra.sweeper.budget=3"],
            "error: hydra.sweeper.budget=3: cannot pay for the first round",
        ),
        (["optim.lr=0.1,0.5", "hydra.sweeper.budget=lots"], "error: hydra.sweeper.budget:"),
    ],
)
def test_bad_race_input_is_one_line_exit_2_and_no_run_left_running(cli, store, args, message):
    proc = cli("-m", "hydra/sweeper=race", "debug=fast", *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    parents, children = parent_and_children(store)
    assert children == []  # nothing ran
    assert all(r.info.status == "FAILED" for r in parents)  # opened by the callback, closed


@pytest.mark.slow
def test_the_race_runs_its_rounds_through_the_joblib_launcher(cli, store):
    proc = cli(*RACE, "hydra/launcher=gpus", "devices.gpus=0", check=True)
    assert "Joblib.Parallel" in proc.stdout + proc.stderr
    assert "race round 4 (10 runs): all: 1 alive, leader optim.lr=0.5" in proc.stdout
    parents, children = parent_and_children(store)
    assert parents[0].data.tags["race.winner.all"] == "optim.lr=0.5"
    assert len(children) == 10 and {r.info.status for r in children} == {"FINISHED"}
