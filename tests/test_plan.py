"""``python train.py -m ... --dry-run`` / ``initsweep plan``: the plan of a half-finished sweep
(runs to skip, resume, start; job placement), creating nothing, exit 0."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.conftest import REPO, compose_config, runs_of

TABLES = (
    "experiments",
    "runs",
    "tags",
    "params",
    "metrics",
    "latest_metrics",
    "experiment_tags",
    "inputs",
)


def row_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.suffix != ".db-journal"}


def preempt(store: str, tmp_path: Path, overrides: list[str]) -> tuple[str, Path]:
    """A run of ``overrides``' config left as a SIGTERM'd job leaves it: KILLED, outcome
    preempted, its checkpoint there (tests/test_resume.py makes a real one; the plan only reads
    the tags and that the file exists)."""
    from initsweep.naming import config_hash, group_hash
    from initsweep.tracking.resume import mark_preempted
    from initsweep.vocab import CHECKPOINT_TAG

    cfg = compose_config(overrides)
    checkpoint = tmp_path / "mlruns" / "checkpoints" / f"{config_hash(cfg)}.ckpt"
    checkpoint.write_bytes(b"not read by the plan")
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("initsweep")
    run = client.create_run(
        exp.experiment_id,
        run_name="he-x1-s1",
        tags={
            "config_hash": config_hash(cfg),
            "group_hash": group_hash(cfg),
            "outcome": "running",
            CHECKPOINT_TAG: str(checkpoint),
        },
    )
    mark_preempted(client, run.info.run_id)
    return run.info.run_id, checkpoint


def test_dry_run_of_a_half_finished_sweep_creates_nothing(cli, store, tmp_path):
    shrink = ["debug=tiny", "diagnostics.enabled=false"]
    cli("-m", "init=he,zeros", "seed=0", *shrink, check=True)  # 2 of the 6 runs FINISHED
    finished = {
        r.info.run_name: r.info.run_id
        for r in runs_of(store)
        if r.data.tags.get("initsweep.role") != "sweep"
    }
    (tmp_path / "mlruns" / "checkpoints").mkdir(parents=True, exist_ok=True)
    preempted, checkpoint = preempt(store, tmp_path, ["init=he", "seed=1", *shrink])
    db = Path(store.removeprefix("sqlite:///"))
    before, files = row_counts(db), files_under(tmp_path)

    proc = cli("-m", "init=he,zeros", "seed=0,1,2", *shrink, "--dry-run", "--list")

    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "plan: 6 runs in 6 jobs, experiment 'initsweep'" in out
    assert "  skip       2  FINISHED already: he-x1-s0, zeros-x1-s0" in out
    assert "  resume     1  preempted, from their checkpoint: he-x1-s1" in out
    assert "  start      3  new: he-x1-s2, zeros-x1-s1, zeros-x1-s2" in out
    assert "jobs: 6 on hydra/launcher=basic: one after another in the launching process" in out
    assert f"skip   he-x1-s0  run {finished['he-x1-s0']}" in out
    assert f"resume he-x1-s1  run {preempted} from {checkpoint}" in out
    assert row_counts(db) == before  # nothing created: no sweep parent, no run, no tag
    assert files_under(tmp_path) == files  # no multirun folder, no report, no checkpoint


def test_initsweep_plan_stacks_seeds_and_names_the_launcher(tmp_path, monkeypatch, capsys):
    from initsweep.cli import main

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"
    assert (
        main(
            [
                "plan",
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "init=he,xavier",
                "seed=0,3",
                "seeds_per_job=3",
                f"tracking.uri={store}",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "plan: 12 runs in 4 jobs" in out and "start     12" in out
    assert "one SLURM array task each (--array=0-3%32), partition gpu" in out
    assert "seeds_per_job=3: each job trains 3 seeds as one stacked model" in out
    assert "the sweep creates it" in out
    assert not (tmp_path / "absent").exists() and not list(tmp_path.iterdir())


def test_plan_sweep_returns_the_runs_as_a_frame(tmp_path, monkeypatch):
    import initsweep

    monkeypatch.chdir(tmp_path)
    plan = initsweep.plan_sweep(
        "init=he,zeros seed=0,1", tracking_uri=f"sqlite:///{tmp_path / 'none.db'}"
    )
    assert plan.counts == {"skip": 0, "resume": 0, "start": 4}
    assert list(plan.table["name"]) == ["he-x1-s0", "he-x1-s1", "zeros-x1-s0", "zeros-x1-s1"]


def test_a_bad_override_is_one_line_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "optim.lrr=1", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: optim.lrr: not a key of optim; valid: fused, lr, name, weight_decay"
    )


def test_a_store_that_does_not_answer_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from initsweep.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["plan", "init=he", "tracking.uri=http://127.0.0.1:9"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: tracking.uri=http://127.0.0.1:9: connection refused"
    )
