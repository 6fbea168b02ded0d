"""A reviewer's view of a sweep in the MLflow UI, in a real browser (issue 13).

The session's trained sweep (conftest.trained_sweep, through the real CLI), `mlflow ui` over its
store on the loopback port its links name, Debian's
chromium driven by Playwright (the pip package, pointed at /usr/bin/chromium: nothing is
downloaded). The test opens the sweep's link and checks what a reviewer must see without
configuring anything: the runs with `test/acc`, `init` and `seed` columns grouped by init with
their means, a `test/acc` bar per run, the `diag/*` charts folded away, the parent run's summary
metrics and note, and report.md's images. Screenshots go to the test's temp folder.

Needs chromium (`make chromium`, as root: `apt-get install -y chromium`) and playwright
(`pip install -e '.[dev]'`). Without them the test skips with the reason, except in CI
(`CI=true`), where it fails.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initsweep.report.select import select
from initsweep.tracking import links, ui, views
from initsweep.training.steps import exact_ratio
from tests.conftest import TrainedSweep, free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("INITSWEEP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# False until the sweep callback calls ui.finish_sweep_ui and prints the link, and the jobs
# log exact end-of-run metrics at step 0 without a stale checkpoint tag (issue 13 integration).
# Then True: the test takes the link from the sweep's output and checks the child runs too.
# (The report's summary metrics and note are already logged by the sweep's report hook.)
INTEGRATED = True
PAGE_TIMEOUT_MS = 60_000


def require_browser() -> None:
    """Skip (fail in CI) when chromium or playwright is missing, with a one-line reason."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (run `make chromium` as root: apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def start_ui(store: str, port: int, log: Path) -> subprocess.Popen:
    """`mlflow ui` in its own process group (stopped with it, workers included)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "ui",
                "--backend-store-uri",
                store,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow ui exited {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise AssertionError(f"mlflow ui not up after 120 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after 20 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def numbers_before(text: str, marker: str) -> list[float]:
    """Every number printed just before ``marker``, e.g. the table's "0.92 (average)"."""
    return [
        float(m) for m in re.findall(rf"(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*{re.escape(marker)}", text)
    ]


def dismiss_panels(page) -> None:
    """Close the assistant side panel and the "shared view" banner (they cover the page)."""
    for label in ("Close", "Hide banner"):
        button = page.get_by_role("button", name=label, exact=True)
        if button.count():
            button.first.click()


def test_a_sweep_opens_on_its_answer_in_the_browser(trained_sweep: TrainedSweep, tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    base, store = trained_sweep.ui_base, trained_sweep.store  # its links and report.md images
    port = int(base.rsplit(":", 1)[1])
    client = MlflowClient(store)
    selection = select(client, None, latest=True)
    experiment_id, parent_id = selection.experiment_id, selection.parent_run_id
    if INTEGRATED:
        printed = re.findall(r"http://\S+viewStateShareKey=\S+", trained_sweep.stdout)
        assert printed, trained_sweep.stdout
        link = printed[-1]
    else:  # what the sweep callback will do after the report (which logged the summary)
        link = ui.finish_sweep_ui(
            client, experiment_id, parent_id, selection.sweep_id, base_url=base
        )
    # `make ui` prints the same link
    ui_link = subprocess.run(
        [
            sys.executable,
            "-m",
            "initsweep.cli",
            "ui-link",
            "--tracking-uri",
            store,
            "--base-url",
            base,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ui_link.returncode == 0, ui_link.stderr
    assert ui_link.stdout.strip() == link
    assert link.startswith(f"{base}/#/experiments/{experiment_id}/runs?")
    assert "workflowType=machine_learning" in link

    children = views.sweep_runs(client, experiment_id, parent_id)
    assert len(children) == 6  # conftest.TRAINED_SWEEP: 3 inits x 2 seeds
    values = {r.info.run_name: r.data.metrics["test/acc"] for r in children}
    means = {
        init: sum(v for n, v in values.items() if n.startswith(init)) / 2
        for init in ("xavier", "he", "zeros")
    }
    if INTEGRATED:  # exact values at step 0 (bars by default), no stale checkpoint tag
        for run in children:
            n_test = int(run.data.tags["n_test"])
            value = run.data.metrics["test/acc"]
            assert value == exact_ratio(round(value * n_test), n_test)
            assert [m.step for m in client.get_metric_history(run.info.run_id, "test/acc")] == [0]
            assert "checkpoint" not in run.data.tags

    shots = tmp_path / "screenshots"
    shots.mkdir()
    server = start_ui(store, port, tmp_path / "mlflow-ui.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(PAGE_TIMEOUT_MS)

                # 1. The printed link: charts, one test/acc bar per run, diag/* folded away.
                page.goto(link)
                card = page.locator("[data-testid=experiment-view-compare-runs-card]").filter(
                    has=page.get_by_text("test/acc", exact=True)
                )
                card.first.locator("g.trace.bars g.point").first.wait_for()
                dismiss_panels(page)
                bars = card.first.locator("g.trace.bars g.point")
                assert bars.count() == len(children)
                labels = sorted(
                    float(t) for t in card.first.locator("text.bartext").all_text_contents()
                )
                assert labels == sorted(round(v, 2) for v in values.values())
                titles = page.locator(
                    "[data-testid=experiment-view-compare-runs-card]"
                ).all_inner_texts()
                assert not [t for t in titles if t.startswith("diag/")]
                assert page.get_by_text("diag/L0", exact=False).count() >= 1  # folded section
                shown = page.get_by_test_id("saved-views-trigger").inner_text()
                assert selection.sweep_id in shown
                banner = page.get_by_role("link", name="table", exact=True).first  # the note
                assert banner.get_attribute("href").startswith(f"#/experiments/{experiment_id}/")
                page.screenshot(path=str(shots / "charts.png"))

                # 2. The table: chosen columns, groups by init with their mean over seeds.
                page.goto(
                    links.runs_page_link(
                        base, experiment_id, views.sweep_view_key(selection.sweep_id), mode="TABLE"
                    )
                )
                page.get_by_text("Group: he").first.wait_for()
                dismiss_panels(page)
                columns = page.eval_on_selector_all(
                    ".ag-header-cell", "els => els.map(e => e.getAttribute('col-id'))"
                )
                for column in ("metrics.`test/acc`", "tags.`init`", "tags.`seed`"):
                    assert column in columns, columns
                body = page.inner_text("body")
                assert "Group: zeros" in body
                averages = numbers_before(body, "(average)")
                for init, mean in means.items():
                    assert any(math.isclose(a, mean, abs_tol=1e-12) for a in averages), (
                        init,
                        mean,
                        averages,
                    )
                for name in values:
                    assert name in body
                page.screenshot(path=str(shots / "runs_table.png"))

                # 3. The parent run: its description and summary metrics are the answer.
                page.goto(links.run_page_link(base, experiment_id, parent_id))
                page.get_by_text("Seed sensitivity of").first.wait_for()
                page.get_by_role("link", name="zeros-x1-s1").first.wait_for()  # child runs
                dismiss_panels(page)
                body = page.inner_text("body")
                assert "he vs zeros" in body or "he > zeros" in body
                # 2 seeds per init: no interval below 3 seeds, so no ci_low / ci_high
                for stat in ("n", "mean", "std", "min", "max"):
                    assert f"test_acc/he/{stat}" in body, stat
                parent = client.get_run(parent_id)
                assert parent.data.metrics["test_acc/he/mean"] == pytest.approx(means["he"])
                page.screenshot(path=str(shots / "parent_run.png"))

                # 4. report.md in the artifact viewer: its images load.
                page.goto(
                    f"{base}/#/experiments/{experiment_id}/runs/{parent_id}/artifacts/"
                    "report/report.md?workflowType=machine_learning"
                )
                image = page.locator("img[src*='get-artifact']").first
                image.wait_for()
                page.wait_for_function(
                    "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
                )
                page.screenshot(path=str(shots / "report_md.png"))
            finally:
                browser.close()
    finally:
        stop(server)
    assert {p.name for p in shots.iterdir()} == {
        "charts.png",
        "runs_table.png",
        "parent_run.png",
        "report_md.png",
    }


MNIST_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the clone (CI too)


def test_every_way_into_a_sweep_shows_its_runs_and_datasets(cli, store, tmp_path):
    """A sweep's saved view shows the datasets its runs trained on (name and digest, from the
    runs' logged inputs: a digits sweep and an MNIST sweep differ there), and a child run's page
    opened directly (a colleague's link, no workflowType) shows its metrics. The experiment
    list's own link opens MLflow 3.17's GenAI overview whatever the store says (docs/mlflow.md,
    "Ways in"); the experiment's note there links to the runs."""
    require_browser()
    if not (MNIST_ROOT / "MNIST" / "raw").exists():
        pytest.skip(f"no MNIST idx files under {MNIST_ROOT}")
    from playwright.sync_api import sync_playwright

    tiny = ["debug=tiny", "init=he", "seed=0", "report=false", "diagnostics.plots=false"]
    cli("-m", *tiny, check=True)
    cli("-m", *tiny, "data=mnist", f"data.root={MNIST_ROOT}", check=True)
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("initsweep").experiment_id
    parents = {
        p.data.tags["sweep_id"]: p
        for p in client.search_runs([experiment_id], "tags.`initsweep.role` = 'sweep'")
    }
    datasets = {}  # sweep id -> "name (digest)" of its child's training split
    for sweep_id, parent in parents.items():
        (child,) = views.sweep_runs(client, experiment_id, parent.info.run_id)
        (train,) = [
            d.dataset for d in child.inputs.dataset_inputs if [t.value for t in d.tags] == ["train"]
        ]
        datasets[sweep_id] = f"{train.name} ({train.digest})"
    assert sorted(d.split()[0] for d in datasets.values()) == ["digits", "mnist"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_ui(store, port, tmp_path / "mlflow-ui.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 2000, "height": 1000})
                page.set_default_timeout(PAGE_TIMEOUT_MS)

                # 1. Each sweep's saved view: its run, with the dataset it trained on.
                for sweep_id, dataset in datasets.items():
                    page.goto(
                        links.runs_page_link(
                            base, experiment_id, views.sweep_view_key(sweep_id), mode="TABLE"
                        )
                    )
                    page.get_by_text("he-x1-s0").first.wait_for()
                    dismiss_panels(page)  # the grid renders only the columns in sight
                    digest = dataset.split()[1].strip("()")
                    page.get_by_text(digest).first.wait_for()  # the Dataset cell: name (digest)
                    body = page.inner_text("body")
                    assert dataset.split()[0] in body, body
                    other = next(d for s, d in datasets.items() if s != sweep_id)
                    assert other.split()[1].strip("()") not in body

                # 2. A child run's page, opened directly (a colleague's link): its metrics.
                child = views.sweep_runs(
                    client, experiment_id, next(iter(parents.values())).info.run_id
                )[0]
                page.goto(f"{base}/#/experiments/{experiment_id}/runs/{child.info.run_id}")
                page.get_by_text("test/acc").first.wait_for()
            finally:
                browser.close()
    finally:
        stop(server)
