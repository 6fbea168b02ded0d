"""Plots drawn by the worker process (diagnostics.background_plots): real worker, real store.

A run handed to the worker stays RUNNING until ``complete_pending`` logs its PNGs and ends it;
a dead worker's plots are drawn in this process; a plot that fails ends its run FAILED.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from initsweep.diagnostics import pending as artifacts
from initsweep.diagnostics.callback import DiagnosticsCallback
from initsweep.diagnostics.plot_worker import PlotWorker, PlotWorkerDied
from initsweep.diagnostics.plots import PLOT_FILES
from initsweep.diagnostics.probe import LAYER_METRICS
from initsweep.tracking.store import ensure_store

EXPECTED = {f"diagnostics/{name}" for name in ("diagnostics.csv", *PLOT_FILES)}


def _finished_diagnostics(broken: bool = False) -> tuple[DiagnosticsCallback, nn.Sequential]:
    """A 2-layer net and the records a callback would have kept (one metric missing if broken)."""
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    callback = DiagnosticsCallback((torch.zeros(2, 4), torch.zeros(2).long()))
    callback.weights_at_init = [layer.weight.detach().clone() for layer in (net[0], net[2])]
    for step in (0, 5):
        for layer in (0, 1):
            row = {"step": step, "layer": layer, **{k: 1.0 + layer for k in LAYER_METRICS}}
            if broken:
                del row["act_std"]  # depth_profile needs it
            callback.records.append(row)
    return callback, net


@pytest.fixture(autouse=True)
def fresh_worker():
    """Each test starts without a worker and leaves none (nor anything pending) behind."""
    yield
    artifacts.shutdown()


@pytest.fixture
def client(store: str) -> MlflowClient:
    ensure_store(store)
    return MlflowClient(store)


def _new_run(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name("t") or client.get_experiment(
        client.create_experiment("t")
    )
    return client.create_run(experiment.experiment_id).info.run_id


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, "diagnostics")}


def test_worker_draws_while_the_run_stays_running_until_completed(client):
    runs = [_new_run(client) for _ in range(2)]
    for run_id in runs:
        callback, net = _finished_diagnostics()
        artifacts.finish_run(
            client,
            run_id,
            "r",
            "ok",
            callback,
            callback.plot_inputs("r", net, [1.0, 0.5, 0.25]),
            background=True,
        )
        assert client.get_run(run_id).info.status == "RUNNING"  # plots owed
    artifacts.complete_pending()
    for run_id in runs:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "ok"
        assert _artifacts(client, run_id) == EXPECTED


def test_a_dead_worker_s_plots_are_drawn_here(client, capsys):
    run_id = _new_run(client)
    callback, net = _finished_diagnostics()
    artifacts.finish_run(
        client,
        run_id,
        "r",
        "diverged",
        callback,
        callback.plot_inputs("r", net, [1.0]),
        background=True,
    )
    for worker in artifacts._workers:  # before it answered (it may have drawn: no matter)
        worker.process.kill()
        worker.process.wait()
    artifacts.complete_pending()
    assert "drawing r's plots in this process" in capsys.readouterr().err
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "diverged"
    assert _artifacts(client, run_id) == EXPECTED


def test_a_plot_that_fails_in_the_worker_fails_its_run_and_its_status(client, tmp_path, capsys):
    run_id = _new_run(client)
    status_file = tmp_path / "initsweep_job.json"
    status_file.write_text(json.dumps([{"run_id": run_id, "outcome": "ok"}]))
    callback, net = _finished_diagnostics(broken=True)
    artifacts.finish_run(
        client,
        run_id,
        "bad",
        "ok",
        callback,
        callback.plot_inputs("bad", net, [1.0]),
        background=True,
        status_file=status_file,
    )
    artifacts.complete_pending()
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["outcome"] == "failed"
    traceback_text = client.download_artifacts(run_id, "traceback.txt", str(tmp_path))
    assert "KeyError: 'act_std'" in Path(traceback_text).read_text()
    [status] = json.loads(status_file.read_text())
    assert status["outcome"] == "failed" and "act_std" in status["error"]
    assert "bad: FAILED (plots: KeyError: 'act_std')" in capsys.readouterr().err


def test_worker_answers_in_order_and_exits_at_end_of_input(tmp_path):
    worker = PlotWorker()
    callback, net = _finished_diagnostics()
    inputs = callback.plot_inputs("w", net, [2.0, 1.0])
    folders = [tmp_path / "a", tmp_path / "b"]
    tickets = []
    for folder in folders:
        folder.mkdir()
        tickets.append(worker.submit(inputs, folder))
    with pytest.raises(ValueError, match="in order"):
        worker.answer(tickets[1])
    assert [worker.answer(t) for t in tickets] == [None, None]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == sorted(PLOT_FILES)
    worker.close()
    assert worker.process.returncode == 0


def test_submitting_to_a_dead_worker_says_so(tmp_path):
    worker = PlotWorker()
    worker.process.kill()
    worker.process.wait()
    callback, net = _finished_diagnostics()
    with pytest.raises(PlotWorkerDied, match="plot worker gone"):
        worker.submit(callback.plot_inputs("w", net, [1.0]), tmp_path)
    assert not worker.alive() and worker.outstanding == 0
