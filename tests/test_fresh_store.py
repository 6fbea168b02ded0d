"""A new sqlite store copied from the migrated template is the store MLflow itself would create.

Real MLflow stores throughout: one created by MLflow's migrations (the template switched off), one
from the template; same schema, same revision, and MLflow uses the copy as any store.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initsweep.tracking import sqlite_template as fresh_store
from initsweep.tracking.store import ensure_store, open_experiment


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One template for the module (making it takes MLflow's seconds once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def own_cache(cache, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv(fresh_store.ENV_DISABLE, raising=False)


def schema(db: Path) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str]]]:
    """Every table and index with its definition's clauses, in order (MLflow's own migrations
    write a table's CHECK constraints in an order that changes from one store to the next)."""
    with sqlite3.connect(db) as con:
        objects = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        return (
            [
                (kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").split("\n")))
                for kind, name, sql in objects.fetchall()
            ],
            con.execute("SELECT * FROM alembic_version").fetchall(),
        )


def test_a_store_from_the_template_has_mlflows_schema_and_works(tmp_path, monkeypatch):
    monkeypatch.setenv(fresh_store.ENV_DISABLE, "1")
    by_mlflow = tmp_path / "mlflow" / "mlflow.db"
    ensure_store(f"sqlite:///{by_mlflow}")
    assert not by_mlflow.exists()  # left to MLflow: created on first use
    MlflowClient(f"sqlite:///{by_mlflow}").search_experiments()
    monkeypatch.delenv(fresh_store.ENV_DISABLE)

    copied = tmp_path / "copied" / "mlflow.db"
    ensure_store(f"sqlite:///{copied}")
    assert copied.exists() and fresh_store.template_path().exists()
    assert schema(copied) == schema(by_mlflow)

    client = MlflowClient(f"sqlite:///{copied}")
    # the Default experiment is MLflow's, made on opening, as in a store MLflow created
    default, theirs = (
        MlflowClient(f"sqlite:///{db}").get_experiment("0") for db in (copied, by_mlflow)
    )
    assert default.name == theirs.name == "Default"
    assert default.artifact_location == theirs.artifact_location
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    client.log_metric(run_id, "m", 1.5, step=3)
    client.set_terminated(run_id)
    assert client.get_run(run_id).data.metrics == {"m": 1.5}


def test_an_existing_store_is_never_replaced(tmp_path):
    db = tmp_path / "mlflow.db"
    ensure_store(f"sqlite:///{db}")
    client, experiment_id = open_experiment(
        {"tracking": {"uri": f"sqlite:///{db}"}, "experiment_name": "kept"}
    )
    run_id = client.create_run(experiment_id).info.run_id
    assert fresh_store.create_from_template(db) is False
    ensure_store(f"sqlite:///{db}")
    assert MlflowClient(f"sqlite:///{db}").get_run(run_id).info.experiment_id == experiment_id
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]  # no scratch file left


def test_without_a_usable_cache_the_store_is_left_to_mlflow(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    db = tmp_path / "store" / "mlflow.db"
    ensure_store(f"sqlite:///{db}")
    assert db.parent.is_dir() and not db.exists()  # MLflow's first client migrates it
