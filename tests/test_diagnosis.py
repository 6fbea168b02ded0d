"""The diagnosis in words: each threshold from both sides on real small networks measured by
``initsweep.diagnostics.probe.measure``; then real CLI runs (tag, note, console line, UI filter) and
the report's "why" section on a real sweep."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from initsweep.diagnostics import findings as diagnosis
from initsweep.diagnostics.findings import (
    DEAD_FRAC,
    NOTE_TITLE,
    SATURATED_FRAC,
    SIGNAL_GAIN,
    codes,
    console_codes,
    diagnose,
    sentences,
)
from initsweep.diagnostics.probe import measure
from tests.conftest import linear_net, runs_of


def _records(net: nn.Sequential, x: torch.Tensor, step: int = 0) -> list[dict]:
    """What ``DiagnosticsCallback`` records for ``net`` at ``step`` (labels are never used)."""
    rows = measure(net, x, torch.zeros(len(x), dtype=torch.long))
    return [{"step": step, "layer": i, **row} for i, row in enumerate(rows)]


def _codes(findings: list[diagnosis.Finding]) -> list[str]:
    return [f.code for f in findings]


# ------------------------------------------------------------------------------- symmetry
def test_one_distinct_unit_is_symmetric_two_are_not():
    torch.manual_seed(0)
    x = torch.rand(64, 6)
    first, rows, out = torch.randn(4, 6), torch.rand(1, 4).repeat(5, 1), torch.randn(3, 5)
    start = _records(linear_net([first, rows, out]), x)
    assert [r["distinct_units"] for r in start] == [4, 1, 3]
    found = diagnose(start + _records(linear_net([first, rows, out]), x, step=20))
    assert "symmetric" in _codes(found)
    assert found[0].sentence == (
        "symmetric: layer 1 has 1 distinct unit at init and still 1 at the end (S0, S4)"
    )

    apart = rows.clone()
    apart[0] += 1e-3  # far above distinct_tol: two distinct units
    broken = _records(linear_net([first, apart, out]), x)
    assert broken[1]["distinct_units"] == 2
    assert "symmetric" not in _codes(diagnose(broken))


def test_symmetric_at_init_says_what_training_made_of_it():
    torch.manual_seed(0)
    x = torch.rand(64, 6)
    zeros, out = torch.zeros(4, 6), torch.randn(3, 4)
    start = _records(linear_net([zeros, out]), x)
    end = _records(linear_net([torch.randn(4, 6), out]), x, step=8)
    (finding,) = [f for f in diagnose(start + end) if f.code == "symmetric"]
    assert finding.sentence == (
        "symmetric: every hidden layer has 1 distinct unit at init; 4 at "
        "the end; all their weights 0 at init (S0, S4)"
    )


# ------------------------------------------------------------------------------- signal
@pytest.mark.parametrize(
    "gain, expected",
    [
        (SIGNAL_GAIN * 1.05, "exploding"),
        (SIGNAL_GAIN * 0.95, "healthy"),
        (1 / (SIGNAL_GAIN * 1.05), "vanishing"),
        (1 / (SIGNAL_GAIN * 0.95), "healthy"),
    ],
)
def test_signal_gain_threshold_from_both_sides(gain, expected):
    """Three layers g * I with identity activations: the std is exactly g^3 times the input's
    at the output, so the total gain sits just past or just inside SIGNAL_GAIN."""
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    g = gain ** (1 / 3)
    records = _records(linear_net([g * torch.eye(8)] * 3, nn.Identity), x)
    assert records[-1]["act_std"] / float(x.std()) == pytest.approx(gain, rel=1e-4)
    found = diagnose(records)
    assert _codes(found) == [expected]
    if expected == "exploding":
        assert found[0].sentence.startswith(
            f"exploding signal: activation std reaches {diagnosis.num(gain)} times the input's "
            "in layer 2 (the output layer) at init"
        )
    if expected == "vanishing":
        assert f"x{diagnosis.num(g)} per layer" in found[0].sentence


def test_overflow_is_exploding_and_quotes_the_peak_loss():
    x = torch.randn(64, 8)
    records = _records(linear_net([1e14 * torch.eye(8)] * 3, nn.Identity), x)  # 1e42: past float32
    assert not math.isfinite(records[-1]["act_std"])
    (found,) = diagnose(records, losses=[3.0e4, 2.0, float("nan")])
    assert found.code == "exploding"
    assert "overflow to inf/nan in layer 2 at init" in found.sentence
    assert "peak training loss 3e4 at step 0" in found.sentence


# ------------------------------------------------------------------------------- saturation
@pytest.mark.parametrize("fraction", [SATURATED_FRAC - 0.05, SATURATED_FRAC + 0.05])
def test_saturation_threshold_from_both_sides(fraction):
    """tanh(w x) with x uniform on [-1, 1]: |tanh| > 0.99 exactly where |x| > atanh(0.99) / w."""
    x = torch.linspace(-1, 1, 2001).unsqueeze(1)
    w = math.atanh(0.99) / (1 - fraction)
    net = linear_net([torch.tensor([[w], [-w]]), torch.tensor([[0.1, 0.2], [0.3, -0.1]])], nn.Tanh)
    records = _records(net, x)
    assert records[0]["saturated_frac"] == pytest.approx(fraction, abs=0.002)
    found = diagnose(records, activation="tanh")
    if fraction > SATURATED_FRAC:
        assert _codes(found) == ["saturated"]
        assert found[0].sentence == (
            f"saturated: {round(100 * fraction)}% of tanh activations "
            "beyond |0.99| in layer 0 at init (S2)"
        )
    else:
        assert _codes(found) == ["healthy"]


# ------------------------------------------------------------------------------- dead ReLUs
def _dead_net(dead: int) -> nn.Sequential:
    """10 hidden ReLU units on positive inputs, ``dead`` of them with negative weights."""
    rows = torch.stack(
        [(-1 if j < dead else 1) * 0.1 * (1 + 0.1 * j) * torch.ones(4) for j in range(10)]
    )
    return linear_net([rows, 0.1 * torch.randn(3, 10, generator=torch.Generator().manual_seed(0))])


@pytest.mark.parametrize("dead", [4, 5, 6])
def test_dead_relu_threshold_from_both_sides(dead):
    x = torch.rand(128, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    records = _records(_dead_net(dead), x)
    assert records[0]["dead_frac"] == pytest.approx(dead / 10)
    found = diagnose(records)
    if dead / 10 > DEAD_FRAC:
        assert _codes(found) == ["dead_relu"]
        assert found[0].sentence == (
            f"dead ReLUs: {dead}0% of layer 0's units never fire on the probe batch at init"
        )
    else:
        assert _codes(found) == ["healthy"]


def test_units_that_die_in_training_are_found_at_the_end_with_names_from_paths():
    x = torch.rand(128, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    start, end = _records(_dead_net(2), x), _records(_dead_net(7), x, step=50)
    for record in start + end:
        record["path"] = f"net.{2 * record['layer']}"
    (found,) = diagnose(start + end)
    assert found.sentence == (
        "dead ReLUs: 70% of net.0's units never fire on the probe batch at the end (20% at init)"
    )


# ------------------------------------------------------------------------------- the rest
def test_several_findings_divergence_and_words():
    torch.manual_seed(0)
    x = torch.rand(64, 6)
    ones = _records(linear_net([torch.ones(16, 6), torch.ones(16, 16), torch.ones(3, 16)]), x)
    found = diagnose(ones, "diverged", diverged_at=1, losses=[2.3, 1.2e8], divergence_threshold=1e6)
    assert _codes(found) == ["symmetric", "exploding", "diverged"]
    assert found[-1].sentence == (
        "diverged at step 1 (loss 1.2e8, above job.divergence_threshold 1e6)"
    )
    nan = diagnose(ones, "diverged", diverged_at=12, losses=[2.3, float("nan")])
    assert nan[-1].sentence == "diverged at step 12 (loss non-finite)"
    # a stacked seed keeps no NaN loss: its last kept loss is the step before
    assert diagnose(ones, "diverged", 12, [2.3, 2.2])[-1].sentence.endswith("(loss non-finite)")
    assert codes(found) == "symmetric, exploding, diverged"
    assert console_codes("diverged", codes(found)) == "diverged, symmetric, exploding"
    assert console_codes("ok", None) == "ok"
    assert sentences(diagnosis.note(found)) == [f.sentence for f in found]
    assert diagnosis.note(found).startswith(NOTE_TITLE)
    assert diagnose([]) == []  # diagnostics off: nothing measured, no diagnosis


def test_weights_broken_by_the_last_update_are_a_divergence():
    """S3's N(0, 1) tanh run: the loss checked at step 0 was finite, the update after it made
    the weights NaN; the end's measurements say so and read no saturation out of NaNs."""
    x = torch.linspace(-1, 1, 201).unsqueeze(1)
    w = math.atanh(0.99) / 0.2  # 80% saturated at init
    start = _records(linear_net([torch.tensor([[w], [-w]]), torch.eye(2)], nn.Tanh), x)
    nan = torch.full((2, 1), math.nan)
    end = _records(linear_net([nan, torch.eye(2)], nn.Tanh), x, step=1)
    found = diagnose(start + end, "ok", activation="tanh")
    assert _codes(found) == ["saturated", "diverged"]
    assert found[0].sentence.endswith("in layer 0 at init (S2)")  # no "0% at the end"
    assert found[1].sentence == (
        "diverged in the last update: activations non-finite in layer "
        "0 at the end (step 1), after the last loss checked"
    )


def test_a_healthy_he_init_is_healthy():
    torch.manual_seed(0)
    x = torch.rand(256, 64)
    weights = [torch.randn(n, m) * math.sqrt(2 / m) for m, n in ((64, 128), (128, 64), (64, 10))]
    (found,) = diagnose(_records(linear_net(weights), x))
    assert found.code == "healthy"
    assert found.sentence.startswith("healthy at init: signal ")
    assert "times the input's std across 3 layers, all hidden units distinct" in found.sentence


# ------------------------------------------------------------------------------- real runs
@pytest.mark.slow  # a whole sweep end to end; the fast tier keeps a smaller check of it
def test_runs_carry_their_diagnosis_in_mlflow_and_on_the_console(cli, store):
    proc = cli(
        "-m", "debug=fast", "init=zeros,he", "diagnostics.plots=false", "report=false", check=True
    )
    lines = [line for line in proc.stdout.splitlines() if "test/acc=" in line]
    assert any(line.startswith("zeros-x1-s0: ") and "[ok, symmetric] " in line for line in lines), (
        lines
    )
    assert any(line.startswith("he-x1-s0: ") and "[ok, healthy] " in line for line in lines)
    runs = {r.info.run_name: r for r in runs_of(store) if "diagnosis" in r.data.tags}
    assert runs["zeros-x1-s0"].data.tags["diagnosis"] == "symmetric"
    assert runs["he-x1-s0"].data.tags["diagnosis"] == "healthy"
    note = runs["zeros-x1-s0"].data.tags["mlflow.note.content"]
    assert note.startswith(NOTE_TITLE)
    assert sentences(note) == [
        "symmetric: every hidden layer has 1 distinct unit at init and "
        "still 1 at the end; all their weights 0 at init (S0, S4)"
    ]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("initsweep").experiment_id
    found = client.search_runs([experiment], "tags.diagnosis LIKE '%symmetric%'")
    assert [r.info.run_name for r in found] == ["zeros-x1-s0"]

    off = cli("debug=fast", "init=he", "seed=5", "diagnostics.enabled=false", check=True)
    assert "[ok] " in off.stdout
    (bare,) = [r for r in runs_of(store) if r.info.run_name == "he-x1-s5"]
    assert "diagnosis" not in bare.data.tags and "mlflow.note.content" not in bare.data.tags


@pytest.mark.slow  # a whole sweep end to end; the fast tier keeps a smaller check of it
def test_the_report_says_why_per_group_and_where_seeds_disagree(cli, store, tmp_path):
    """A real S2 sweep, a few steps long: zeros is symmetric on both seeds; PyTorch's default
    init on the S2 net (16-unit ReLU layers) leaves 69% of layer 3's units dead on seed 0 at
    init, 44% on seed 1: the two seeds disagree on the mechanism."""
    proc = cli(
        "-m",
        "experiment=s2_schemes",
        "init=zeros,torch_default",
        "model.activation=relu",
        "seed=0,1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "diagnostics.plots=false",
        check=True,
    )
    assert "  zeros: symmetric 2/2  (test/acc " in proc.stdout
    assert "  torch_default: dead_relu 1/2, healthy 1/2  (test/acc " in proc.stdout
    assert (
        "torch_default: the seeds disagree: dead_relu in seed 0, not in 1. The seed changes "
        "the mechanism here"
    ) in proc.stdout

    md = (tmp_path / "multirun" / "report" / "report.md").read_text()
    section = md.split("## Why: what the diagnostics found, per group")[1].split("\n## ")[0]
    header = "| group | test/acc mean ± std | diagnosed | symmetric | dead_relu | healthy |"
    assert header in section
    assert "| zeros | " in section and " | 2/2 | 2/2 | 0/2 | 0/2 | no |" in section
    assert " | 2/2 | 0/2 | 1/2 | 1/2 | dead_relu in seed 0, not in 1 |" in section
    assert (
        "- **torch_default** (seed 0): dead ReLUs: 69% of layer 3's units never fire on the "
        "probe batch at init"
    ) in section
    assert "- **torch_default** (seed 1): healthy at init: " in section
    assert "- **zeros** (seed 0): symmetric: every hidden layer has 1 distinct unit" in section
    html = (tmp_path / "multirun" / "report" / "report.html").read_text()
    assert "<h2>Why: what the diagnostics found, per group</h2>" in html

    (parent,) = [
        r for r in runs_of(store, "s2_schemes") if r.data.tags.get("initsweep.role") == "sweep"
    ]
    note = parent.data.tags["mlflow.note.content"]
    assert "### Why: what the diagnostics found, per group" in note
    assert "**torch_default**: the seeds disagree: dead_relu in seed 0, not in 1." in note
