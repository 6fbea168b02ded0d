"""initsweep.tracking.ui on real sqlite stores: the saved view's format, colours, notes, the parent
run's summary, the deep link. What the browser makes of them: tests/test_ui.py."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from initsweep import cli, vocab
from initsweep.report import publish
from initsweep.report.compute import build
from initsweep.report.figures import zoom_groups
from initsweep.report.publish import make_report
from initsweep.report.select import select
from initsweep.tracking import colors as run_colours
from initsweep.tracking import links, notes, ui, views
from initsweep.tracking.resume import forget_checkpoint
from initsweep.training.steps import exact_ratio

DIAG = [f"diag/L{i}/{k}" for i in range(3) for k in ("grad_norm", "dead_frac")]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> tuple[str, MlflowClient, Path]:
    """One sqlite store for the module (creating one costs seconds), an experiment per test."""
    root = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, MlflowClient(uri), root


def make_store(
    shared, inits=("he", "zeros"), seeds=(0, 1, 2), lrs=("0.1",), checkpoint: bool = False
) -> tuple[str, MlflowClient, str, str, str]:
    """A finished sweep as the callback and jobs log it (tags, params, metrics at their steps),
    in an experiment of its own; returns (uri, client, experiment id, parent run id, sweep id)."""
    uri, client, root = shared
    sweep_id = f"20260101-000000-{uuid.uuid4().hex[:6]}"
    exp_id = client.create_experiment(f"exp-{sweep_id}", (root / sweep_id).as_uri())
    parent = client.create_run(
        exp_id, run_name=f"sweep-{sweep_id}", tags={"sweep_id": sweep_id, "initsweep.role": "sweep"}
    ).info.run_id
    for init in inits:
        for lr in lrs:
            for seed in seeds:
                tags = {
                    "mlflow.parentRunId": parent,
                    "sweep_id": sweep_id,
                    "init": init,
                    "scheme": init,
                    "scale": "1.0",
                    "seed": str(seed),
                    "init_seed": str(seed),
                    "data_seed": str(seed),
                    "outcome": "ok",
                    "n_test": "360",
                }
                if checkpoint:
                    tags["checkpoint"] = "/nowhere/x.ckpt"
                run = client.create_run(exp_id, run_name=f"{init}-lr{lr}-s{seed}", tags=tags)
                acc = (0.9 if init == "he" else 0.1) + 0.01 * seed + (0.002 if lr == "0.2" else 0)
                params = {
                    "init.scheme": init,
                    "init.mode": "fan_in" if init == "he" else "∅",
                    "init.scale": "1.0",
                    "optim.lr": lr,
                    "seed": str(seed),
                    "init_seed": str(seed),
                    "data_seed": str(seed),
                    "experiment_name": "x",
                }
                metrics = [Metric("test/acc", acc, 0, 0), Metric("test/loss", 1 - acc, 0, 0)]
                metrics += [
                    Metric(k, 1.0, 0, s) for k in ["val/acc", "train/loss", *DIAG] for s in (10, 20)
                ]
                client.log_batch(
                    run.info.run_id,
                    metrics=metrics,
                    params=[Param(k, v) for k, v in params.items()],
                )
                client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    client.set_terminated(parent, "FINISHED")
    return uri, client, exp_id, parent, sweep_id


def test_view_tag_is_the_uis_envelope_with_a_compressed_state():
    keys = [
        "test/acc",
        "test/loss",
        "val/acc",
        "val/loss",
        "train/loss",
        "time/run_s",
        *[f"diag/L{i}/m{j}" for i in range(200) for j in range(11)],
    ]  # a 200-layer model
    state = views.view_state(keys, ["init", "optim.lr", "seed"], 100, "tags.x = 'y'")
    value = views.encode_view("sweep x", state, now_ms=123)
    envelope = json.loads(value)
    assert envelope["name"] == "sweep x" and envelope["createdAt"] == 123
    assert envelope["state"].startswith("deflate;")
    assert len(json.dumps(state)) > notes.MAX_TAG_VALUE > len(value)  # why it is compressed
    assert views.decode_view(value) == ("sweep x", state)


def test_view_state_groups_by_init_charts_every_run_and_folds_diagnostics():
    keys = ["test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "time/run_s", *DIAG]
    state = views.view_state(keys, ["init", "optim.lr", "seed"], 9)
    section_of = views.section_of
    assert state["runsHiddenMode"] == "SHOW_ALL" and state["useGroupedValuesInCharts"] is False
    assert state["groupBy"] == {
        "aggregateFunction": "average",
        "groupByKeys": [
            {"mode": "tag", "groupByData": "init"},
            {"mode": "param", "groupByData": "optim.lr"},
        ],
    }
    assert state["selectedColumns"] == [
        "metrics.`test/acc`",
        "tags.`test/acc_rounded`",  # "0.9630 = 347/360" beside the exact value
        "metrics.`val/acc`",
        "tags.`init`",
        "tags.`scale`",
        "tags.`seed`",
        "params.`optim.lr`",
        "tags.`outcome`",
        "attributes.`Dataset`",  # the runs' logged inputs: name (digest)
    ]
    assert state["columnOrder"] == state["selectedColumns"]  # widths apply only with an order
    charts, sections = state["compareRunCharts"], state["compareRunSections"]
    # cards for the open sections; the UI adds the folded ones' cards into their sections
    assert {c["metricKey"] for c in charts} == {
        "test/acc",
        "test/loss",
        "val/acc",
        "val/loss",
        "train/loss",
    }
    assert [c["metricKey"] for c in charts[:2]] == ["test/acc", "test/loss"]
    assert {c["metricKey"]: c["type"] for c in charts}["test/acc"] == "BAR"
    assert {c["metricKey"]: c["type"] for c in charts}["val/acc"] == "LINE"
    assert not any(c["isGenerated"] for c in charts)  # else the UI turns bars into lines
    by_name = {s["name"]: s for s in sections}
    assert [s["name"] for s in sections[:3]] == ["test", "val", "train"]
    assert state["isAccordionReordered"] is True  # else the UI sorts sections by name
    assert all(by_name[n]["display"] for n in ("test", "val", "train"))
    assert not any(by_name[f"diag/L{i}"]["display"] for i in range(3))
    ids = {s["uuid"] for s in sections}
    assert all(c["metricSectionId"] in ids for c in charts)
    assert {section_of(k) for k in keys} <= set(by_name)  # else the UI adds them open


def test_swept_keys_read_back_from_runs(shared):
    _, client, exp_id, parent, _ = make_store(shared, lrs=("0.1", "0.2"))
    runs = views.sweep_runs(client, exp_id, parent)
    # init.scheme and init.mode follow the init config; optim.lr and the seeds do not
    # (init_seed and data_seed follow seed here: the seed column says it)
    assert views.swept_keys_of(runs) == ["init", "optim.lr", "seed"]
    one_init = [r for r in runs if r.data.tags["init"] == "he"]
    assert views.swept_keys_of(one_init) == ["optim.lr", "seed"]


def test_run_colours_a_hue_per_init_a_shade_per_seed():
    colors = run_colours.run_colors(
        [(f"{i}{s}", i, str(s)) for i in ("he", "zeros") for s in range(3)]
    )
    assert len(set(colors.values())) == 6
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors.values())

    def hue(color: str) -> float:
        import colorsys

        return colorsys.rgb_to_hls(*(int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0]

    for init in ("he", "zeros"):
        assert (
            max(hue(colors[f"{init}{s}"]) for s in range(3))
            - min(hue(colors[f"{init}{s}"]) for s in range(3))
            < 0.02
        )
    assert abs(hue(colors["he0"]) - hue(colors["zeros0"])) > 0.05


def test_exact_ratio_is_the_exact_fraction():
    assert exact_ratio(36, 360) == 0.1 and repr(exact_ratio(36.0, 360)) == "0.1"
    assert exact_ratio(335, 360) == 335 / 360
    with pytest.raises(ValueError, match="whole counts"):
        exact_ratio(0.5, 360)


def test_checkpoint_tag_is_cleared_and_clearing_twice_is_harmless(shared):
    _, client, exp_id, parent, _ = make_store(shared, seeds=(0,), checkpoint=True)
    run_id = views.sweep_runs(client, exp_id, parent)[0].info.run_id
    forget_checkpoint(client, run_id)
    forget_checkpoint(client, run_id)
    assert "checkpoint" not in client.get_run(run_id).data.tags


def test_report_md_images_point_at_the_server():
    md = "# r\n\n![groups](plots/groups.png)\n\n![x](https://e.org/a.png)\n"
    out = links.absolute_image_links(md, "http://h:5000", "abc", "report")
    assert "![groups](http://h:5000/get-artifact?path=report/plots/groups.png&run_uuid=abc)" in out
    assert "![x](https://e.org/a.png)" in out


def test_links_never_carry_a_search_facet_or_credentials(monkeypatch):
    link = links.runs_page_link("http://h:5000/", "3", "sweep-x")
    assert link == (
        "http://h:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&compareRunsMode=CHART&viewStateShareKey=sweep-x"
    )
    monkeypatch.delenv(vocab.UI_URL_ENV, raising=False)
    assert links.ui_base_url("http://u:pw@srv:5000/") == "http://srv:5000"
    assert links.ui_base_url("sqlite:///x.db") == links.DEFAULT_UI_URL
    monkeypatch.setenv(vocab.UI_URL_ENV, "http://elsewhere:8080/")
    assert links.ui_base_url("sqlite:///x.db") == "http://elsewhere:8080"


def test_parent_run_carries_the_answer(shared, tmp_path, monkeypatch):
    monkeypatch.setenv(vocab.UI_URL_ENV, "http://127.0.0.1:5999")
    uri, client, exp_id, parent, sweep_id = make_store(shared, lrs=("0.1", "0.2"))
    selection = select(client, sweep=parent)
    report, _, _, logged = make_report(client, selection, tmp_path / "rep", tune="optim.lr")
    assert logged == parent
    run = client.get_run(parent)
    metrics = run.data.metrics
    summary = report.summary.set_index("group")
    for group in summary.index:
        name = publish.metric_name("test_acc", group, "mean")
        assert metrics[name] == pytest.approx(summary.loc[group, "mean"])
        for stat in ("n", "std", "min", "max", "ci_low", "ci_high"):
            assert publish.metric_name("test_acc", group, stat) in metrics
    tuning = [k for k in metrics if "/tuning optim.lr/" in k]
    assert {k.rsplit("/", 1)[1] for k in tuning} == {"flip_rate", "regret", "heldout_regret_k1"}
    note = run.data.tags[vocab.NOTE_TAG]
    assert note.startswith("## Seed sensitivity of `test/acc`")
    assert "Tuning `optim.lr`" in note.split("\n")[2]  # the tuning trap's verdict first
    for verdict in report.pairs["verdict"]:
        assert verdict in note
    assert f"viewStateShareKey={views.sweep_view_key(sweep_id)}" in note
    # the logged report.md's images load from the server, the one on disk stays relative
    logged_md = Path(client.download_artifacts(parent, "report/report.md", str(tmp_path)))
    assert (
        "(http://127.0.0.1:5999/get-artifact?path=report/plots/groups.png&run_uuid="
        in logged_md.read_text()
    )
    assert "(plots/groups.png)" in (tmp_path / "rep" / "report.md").read_text()
    # the view lists the sections of the parent's summaries, folded
    name, state = views.decode_view(
        client.get_experiment(exp_id).tags[
            vocab.VIEW_TAG_PREFIX + run.data.tags[vocab.VIEW_KEY_TAG]
        ]
    )
    listed = {s["name"] for s in state["compareRunSections"]}
    assert {views.section_of(k) for k in metrics} <= listed
    summaries = [s for s in state["compareRunSections"] if s["name"].startswith("test_acc/")]
    assert summaries and not any(s["display"] for s in summaries)


def test_finish_sweep_ui_and_ui_link(shared, capsys):
    uri, client, exp_id, parent, sweep_id = make_store(shared)
    base = "http://127.0.0.1:5999"
    link = ui.finish_sweep_ui(client, exp_id, parent, sweep_id, base_url=base)
    key = views.sweep_view_key(sweep_id)
    assert link == links.runs_page_link(base, exp_id, key)
    experiment = client.get_experiment(exp_id)
    assert experiment.tags[vocab.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert experiment.tags[vocab.PRIMARY_METRIC_TAG] == "test/acc"
    banner = experiment.tags[vocab.NOTE_TAG]
    assert f"viewStateShareKey={key}" in banner.splitlines()[0]
    assert "experiment=tuning_trap" in banner  # nothing tuned here
    name, state = views.decode_view(experiment.tags[vocab.VIEW_TAG_PREFIX + key])
    assert sweep_id in name and state["searchFilter"] == f"tags.sweep_id = '{sweep_id}'"
    runs = views.sweep_runs(client, exp_id, parent)
    assert all(r.data.tags[vocab.RUN_COLOR_TAG].startswith("#") for r in runs)
    assert (
        cli.main(
            [
                "ui-link",
                "--tracking-uri",
                uri,
                "--experiment",
                f"exp-{sweep_id}",
                "--base-url",
                base,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == link


def test_ui_link_writes_the_view_of_an_older_sweep(shared, tmp_path, capsys):
    uri, client, exp_id, parent, sweep_id = make_store(shared)
    assert (
        cli.main(
            ["ui-link", "--tracking-uri", uri, "--sweep", sweep_id, "--base-url", "http://h:1"]
        )
        == 0
    )
    assert capsys.readouterr().out.strip().endswith(f"viewStateShareKey=sweep-{sweep_id}")
    assert vocab.VIEW_TAG_PREFIX + f"sweep-{sweep_id}" in client.get_experiment(exp_id).tags
    assert cli.main(["ui-link", "--tracking-uri", f"sqlite:///{tmp_path / 'no.db'}"]) == 2
    assert cli.main(["ui-link", "--tracking-uri", uri, "--sweep", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: --") for line in err)


def test_zoom_leaves_out_a_collapsed_group_only():
    summary = pd.DataFrame(
        {
            "group": ["he", "xavier", "zeros"],
            "mean": [0.96, 0.965, 0.1],
            "min": [0.956, 0.958, 0.1],
            "max": [0.97, 0.972, 0.103],
        }
    )
    assert sorted(zoom_groups(summary)) == ["he", "xavier"]
    assert zoom_groups(summary.iloc[:2]) is None  # overlapping: one axis shows the spread
    losses = summary.assign(mean=[0.3, 0.31, 2.3], min=[0.28, 0.29, 2.29], max=[0.33, 0.34, 2.31])
    assert sorted(zoom_groups(losses, lower_is_better=True)) == ["he", "xavier"]
    assert zoom_groups(summary.assign(min=math.nan, max=math.nan)) is None


def test_groups_plot_draws_the_zoomed_panel(shared, tmp_path):
    import matplotlib.image

    _, client, exp_id, parent, _ = make_store(shared)
    report = build(client, select(client, sweep=parent))
    from initsweep.report.figures import groups_plot

    path = groups_plot(report.table, report.summary, tmp_path / "g.png")
    one = groups_plot(
        report.table, report.summary[report.summary["group"] == "he"], tmp_path / "g1.png"
    )
    assert matplotlib.image.imread(path).shape[1] > matplotlib.image.imread(one).shape[1] * 1.5


def test_a_run_note_longer_than_a_tag_is_cut_and_says_so(shared):
    _, client, exp_id, parent, _ = make_store(shared, seeds=(0,))
    notes.set_run_note(client, parent, "x" * 10_000)
    note = client.get_run(parent).data.tags[vocab.NOTE_TAG]
    assert len(note) == notes.MAX_NOTE and note.endswith("in the run's artifacts)")


def test_a_swept_config_group_is_grouped_by_its_params(shared):
    _, client, exp_id, parent, sweep_id = make_store(shared, lrs=("0.1", "0.2"))
    # `optim=...` on the command line names a config group, no param: read the runs instead
    key = views.write_sweep_view(client, exp_id, parent, sweep_id, ["init", "optim", "seed"])
    _, state = views.decode_view(client.get_experiment(exp_id).tags[vocab.VIEW_TAG_PREFIX + key])
    assert {"mode": "param", "groupByData": "optim.lr"} in state["groupBy"]["groupByKeys"]
