"""Why an init fails, in words: findings drawn from what the diagnostics already measured.

Over 400 lines on purpose: every finding's rule, threshold and sentence sit side by side, so a
reader checks a sentence against the rule that writes it in one place.

``diagnose`` reads a run's diagnostics records (``DiagnosticsCallback.records``: one dict per
step and weight layer with ``LAYER_METRICS``), its outcome and, for a diverged run, the step and
the loss it diverged at, and returns findings: a short code and a sentence with the evidence.

    symmetric        a hidden layer has 1 distinct unit at init (S0, S4); the sentence says
                     whether it still has 1 at the end
    exploding        the activation std at init grows past SIGNAL_GAIN x the input's (S3)
    vanishing        ... or falls below 1 / SIGNAL_GAIN of it (S3)
    saturated        over SATURATED_FRAC of a tanh/sigmoid layer's activations saturated (S2)
    dead_relu        over DEAD_FRAC of a ReLU layer's units never active on the probe batch
    healthy          none of the above (about the init: a healthy init can still diverge)
    diverged         the loss went non-finite or past ``job.divergence_threshold``; or the
                     activations at the end are non-finite (the last update broke the weights
                     after the last loss was checked)

A finding names a mechanism, measured; whether it cost accuracy is the score's business (a
3-layer net trains through a signal that vanishes to 1e-3, a 100-layer net does not). Runs with
diagnostics off have no records and get no diagnosis. No torch here: the job, the report and
the benchmark share this module; it costs a pass over the records (see scripts/benchmark.py).

Layers are named ``record["path"]`` or ``record["name"]`` when the records carry one (a module
path), else ``layer <i>`` after the ``diag/L<i>/*`` metrics, so any depth and any model read the
same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from initsweep.vocab import DIAGNOSIS_TAG, Outcome

if TYPE_CHECKING:  # mlflow only where a diagnosis is logged
    from mlflow.tracking import MlflowClient

TAG = DIAGNOSIS_TAG  # run tag: the codes, e.g. "symmetric, diverged" (tags.diagnosis LIKE ...)
SEPARATOR = ", "
CODES = (
    "symmetric",
    "exploding",
    "vanishing",
    "saturated",
    "dead_relu",
    "healthy",
    "diverged",
)  # the order findings are listed in: causes first

# --- thresholds: one reason each; the measurements behind them in docs/diagnostics.md ("Findings")
# All rows of W equal: every unit computes the same function and gets the same update (S0, S4).
SYMMETRIC_UNITS = 1
# Variance-preserving inits (He 2015; Glorot & Bengio 2010, with the activation's gain) keep the
# activation std within a few times the input's even 100 layers deep (S3); 10x past it, either
# way, is a scale mismatch that compounds with depth.
SIGNAL_GAIN = 10.0
# A tanh/sigmoid activation within eps of its bound passes < 2 eps of its gradient: with most of
# a layer there, its backward signal is mostly cut (Glorot & Bengio 2010, section 3; S2).
SATURATED_FRAC = 0.5
# A ReLU unit inactive on every probe sample gets no gradient from them and adds nothing
# forward: past half of a layer, it has lost most of its width (Lu et al. 2019, "Dying ReLU").
DEAD_FRAC = 0.5

STUDIES = {"symmetric": "S0, S4", "exploding": "S3", "vanishing": "S3", "saturated": "S2"}


@dataclass(frozen=True)
class Finding:
    """One finding: a code (the tag's vocabulary, ``CODES``) and the sentence with evidence."""

    code: str
    sentence: str


# ------------------------------------------------------------------------------- helpers
def layer_name(record: Mapping[str, Any]) -> str:
    """``record["path"]`` or ``record["name"]`` (a module path) when present, else ``layer i``.

    An MLP's paths are Sequential positions (``2`` for weight layer 1), which say nothing to a
    reader: those stay ``layer i``, as the run plots label them (``run_plots.layer_label``)."""
    named = str(record.get("path") or record.get("name") or "")
    return named if named and not named.isdigit() else f"layer {int(record['layer'])}"


def num(value: float) -> str:
    """3 significant digits, in scientific notation outside [0.01, 1000): ``9.8e6``, ``0.42``."""
    if not math.isfinite(value):
        return "non-finite" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def pct(fraction: float | None) -> str:
    """``0.25`` -> ``25%``; a missing or NaN fraction is ``–`` (the report's tables use it too)."""
    return "–" if fraction is None or math.isnan(fraction) else f"{100 * fraction:.0f}%"


def _list_names(records: Sequence[Mapping[str, Any]], limit: int = 4) -> str:
    names = [layer_name(r) for r in records]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


def _value(record: Mapping[str, Any], key: str) -> float:
    value = record.get(key, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _by_step(records: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    steps: dict[int, dict[int, Mapping[str, Any]]] = {}
    for record in records:
        steps.setdefault(int(record["step"]), {})[int(record["layer"])] = record  # last wins
    return {step: [layers[i] for i in sorted(layers)] for step, layers in sorted(steps.items())}


def _when(step: int) -> str:
    return "at init" if step == 0 else f"at step {step}"


# ------------------------------------------------------------------------------- findings
def _symmetry(
    start: list[Mapping[str, Any]], end: list[Mapping[str, Any]], start_step: int, same_step: bool
) -> Finding | None:
    """Hidden layers (all but the last) with one distinct unit at init, and what became of them.

    A symmetric init is the finding even when training moved the rows apart later: float
    roundoff alone separates them (S0's all-ones net has 256 "distinct" rows after one SGD step,
    its activations still rank 1), and a random bias does it for real (S4, claim 4); the
    sentence gives the count at the end either way.
    """
    hidden = min(len(start), len(end)) - 1
    if hidden < 1:
        return None
    first, last = start[:hidden], end[:hidden]
    stuck = [i for i in range(hidden) if _value(first[i], "distinct_units") <= SYMMETRIC_UNITS]
    if not stuck:
        return None
    when = _when(start_step)
    subject = (
        "every hidden layer has"
        if len(stuck) == hidden
        else f"{_list_names([first[i] for i in stuck])} {'has' if len(stuck) == 1 else 'have'}"
    )
    at_end = [int(_value(last[i], "distinct_units")) for i in stuck]
    if same_step:
        later = " (no later measurement)"
    elif all(d <= SYMMETRIC_UNITS for d in at_end):
        later = " and still 1 at the end"
    else:
        later = f"; {', '.join(map(str, at_end))} at the end"
    zero = all(_value(first[i], "weight_norm") == 0 for i in stuck)
    weights = f"; all their weights 0 {when}" if zero else ""
    return Finding(
        "symmetric",
        f"symmetric: {subject} 1 distinct unit {when}{later}{weights} ({STUDIES['symmetric']})",
    )


def signal_scales(layers: list[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], float]]:
    """``(record, act_std / input std)`` per layer, from the first layer on, until the first
    layer whose weights are all 0 (past it the signal is constant by construction: that is
    symmetry, not vanishing). The input's std is the first layer's ``act_std / std_ratio``;
    empty when that is not measurable (e.g. zero weights in the first layer)."""
    if not layers:
        return []
    first_std, first_ratio = _value(layers[0], "act_std"), _value(layers[0], "std_ratio")
    if not (math.isfinite(first_ratio) and first_ratio > 0 and math.isfinite(first_std)):
        return []
    input_std = first_std / first_ratio
    out = []
    for record in layers:
        if _value(record, "weight_norm") == 0:
            break
        out.append((record, _value(record, "act_std") / input_std))
    return out


def _peak_loss(losses: Sequence[float], first_step: int) -> str:
    """``; peak training loss 3e4 at step 0`` (``losses[i]`` is step ``first_step + i``)."""
    finite = [(v, i) for i, v in enumerate(losses) if math.isfinite(v)]
    if not finite:
        return ""
    value, index = max(finite)
    return f"; peak training loss {num(value)} at step {first_step + index}"


def _signal(layers: list[Mapping[str, Any]], step: int, losses: Sequence[float]) -> list[Finding]:
    scales = signal_scales(layers)
    when = _when(step)
    loss = _peak_loss(losses, step)
    findings = []
    overflow = next((r for r, s in scales if not math.isfinite(s)), None)
    finite = [(r, s) for r, s in scales if math.isfinite(s)]
    if overflow is not None:
        before = (
            f" ({num(finite[-1][1])} times the input's std in the layer before)" if finite else ""
        )
        findings.append(
            Finding(
                "exploding",
                f"exploding signal: activations overflow to "
                f"inf/nan in {layer_name(overflow)} {when}{before}"
                f"{loss} ({STUDIES['exploding']})",
            )
        )
    elif finite:
        top, gain = max(finite, key=lambda rs: rs[1])
        output = " (the output layer)" if top is layers[-1] else ""
        if gain > SIGNAL_GAIN:
            findings.append(
                Finding(
                    "exploding",
                    f"exploding signal: activation std reaches {num(gain)} times "
                    f"the input's in {layer_name(top)}{output} {when} (pre-activation std "
                    f"{num(_value(top, 'preact_std'))}){loss} ({STUDIES['exploding']})",
                )
            )
    if finite:
        low, gain = min(finite, key=lambda rs: rs[1])
        if gain < 1 / SIGNAL_GAIN:
            depth = next(k for k, (r, _) in enumerate(finite) if r is low) + 1
            per_layer = f"x{num(gain ** (1 / depth))} per layer; " if depth > 1 else ""
            findings.append(
                Finding(
                    "vanishing",
                    f"vanishing signal: activation std falls to {num(gain)} times "
                    f"the input's in {layer_name(low)} {when} "
                    f"({per_layer}{STUDIES['vanishing']})",
                )
            )
    return findings


def _finite_signal(record: Mapping[str, Any]) -> bool:
    """Whether the layer's activations were finite (fractions of NaN activations mean nothing:
    every comparison with NaN is false, so they read 0)."""
    return math.isfinite(_value(record, "act_std"))


def _worst(layers: list[Mapping[str, Any]], key: str) -> tuple[Mapping[str, Any], float] | None:
    """The hidden layer (weights not all 0) with the largest ``key``."""
    candidates = [
        (r, _value(r, key))
        for r in layers[:-1]
        if _value(r, "weight_norm") != 0 and _finite_signal(r)
    ]
    candidates = [(r, v) for r, v in candidates if math.isfinite(v)]
    return max(candidates, key=lambda rv: rv[1]) if candidates else None


def _units_finding(
    code: str,
    key: str,
    threshold: float,
    start: list[Mapping[str, Any]],
    end: list[Mapping[str, Any]],
    start_step: int,
    same_step: bool,
    describe: str,
    study: str = "",
) -> Finding | None:
    """A per-layer fraction (dead or saturated) over ``threshold`` at the start or the end;
    the sentence gives the same layer's fraction at the other moment, then ``study``."""
    moments = [(start, end if not same_step else [], _when(start_step), "at the end")]
    if not same_step:
        moments.append((end, start, "at the end", _when(start_step)))
    for layers, other, when, other_when in moments:
        worst = _worst(layers, key)
        if worst is None or worst[1] <= threshold:
            continue
        record, value = worst
        twin = next(
            (r for r in other if r.get("layer") == record.get("layer") and _finite_signal(r)), None
        )
        notes = [f"{pct(_value(twin, key))} {other_when}"] if twin is not None else []
        notes += [study] if study else []
        also = f" ({'; '.join(notes)})" if notes else ""
        return Finding(
            code, describe.format(pct=pct(value), name=layer_name(record), when=when) + also
        )
    return None


def _saturation_words(activation: str | None, eps: float) -> str:
    if activation == "tanh":
        return f"tanh activations beyond |{1 - eps:g}|"
    if activation == "sigmoid":
        return f"sigmoid activations within {eps:g} of 0 or 1"
    return "activations saturated"


def _broke_at_the_end(end: list[Mapping[str, Any]], end_step: int) -> Finding | None:
    """Non-finite activations at the end of a run that did not diverge: the last update broke
    the weights after the last loss was checked (S3's N(0, 1) tanh net, one step long)."""
    broken = next((r for r in end if not _finite_signal(r)), None)
    if broken is None:
        return None
    return Finding(
        "diverged",
        f"diverged in the last update: activations non-finite in "
        f"{layer_name(broken)} at the end (step {end_step}), after the "
        "last loss checked",
    )


def _diverged(at: int | None, losses: Sequence[float], threshold: float | None) -> Finding:
    where = f" at step {at}" if at is not None else ""
    loss = losses[-1] if losses else math.nan
    # The diverging step's loss is the last one kept; a last loss that is finite and under the
    # threshold (or no threshold given: job.divergence_threshold is the caller's) says non-finite.
    if not math.isfinite(loss) or threshold is None or loss <= threshold:
        why = "loss non-finite"
    else:
        why = f"loss {num(loss)}, above job.divergence_threshold {num(threshold)}"
    return Finding("diverged", f"diverged{where} ({why})")


def diagnose(
    records: Sequence[Mapping[str, Any]],
    outcome: str = Outcome.OK,
    diverged_at: int | None = None,
    losses: Sequence[float] = (),
    activation: str | None = None,
    saturation_eps: float = 0.01,
    divergence_threshold: float | None = None,
) -> list[Finding]:
    """The findings of one run, in ``CODES`` order; ``[]`` without records (diagnostics off).

    ``records``: ``DiagnosticsCallback.records``; the first step measured is "init" (a resumed
    run's first step is later and said so), the last is "the end". ``losses``: every training
    step's loss, in order, from the first step measured (its peak is quoted for an exploding
    signal, its last for a divergence). ``activation``: the model's, for the words of a
    saturation finding (``record["activation"]`` wins when the records carry one).
    """
    steps = _by_step(records)
    if not steps:
        return []
    start_step, end_step = next(iter(steps)), next(reversed(steps))
    start, end = steps[start_step], steps[end_step]
    same = start_step == end_step
    findings: list[Finding] = []
    symmetry = _symmetry(start, end, start_step, same)
    if symmetry is not None:
        findings.append(symmetry)
    findings += _signal(start, start_step, [float(v) for v in losses])
    activation = next((str(r["activation"]) for r in start if r.get("activation")), activation)
    saturated = _units_finding(
        "saturated",
        "saturated_frac",
        SATURATED_FRAC,
        start,
        end,
        start_step,
        same,
        "saturated: {pct} of " + _saturation_words(activation, saturation_eps) + " in {name} "
        "{when}",
        STUDIES["saturated"],
    )
    dead = _units_finding(
        "dead_relu",
        "dead_frac",
        DEAD_FRAC,
        start,
        end,
        start_step,
        same,
        "dead ReLUs: {pct} of {name}'s units never fire on the probe batch {when}",
    )
    findings += [f for f in (saturated, dead) if f is not None]
    if not findings:
        findings.append(_healthy(start, start_step))
    if outcome == Outcome.DIVERGED:
        findings.append(_diverged(diverged_at, losses, divergence_threshold))
    elif not same:
        broke = _broke_at_the_end(end, end_step)
        findings += [broke] if broke is not None else []
    return sorted(findings, key=lambda f: CODES.index(f.code))


def _healthy(layers: list[Mapping[str, Any]], step: int) -> Finding:
    scales = [s for _, s in signal_scales(layers)]
    band = (
        f"signal {num(min(scales))} to {num(max(scales))} times the input's std across "
        f"{len(scales)} layers, "
        if scales
        else ""
    )
    return Finding(
        "healthy",
        f"healthy {_when(step)}: {band}all hidden units distinct, no "
        "layer mostly dead or saturated",
    )


# ------------------------------------------------------------------------------- words out
def codes(findings: Iterable[Finding]) -> str:
    """The tag's value, ``symmetric, diverged``: ``tags.diagnosis LIKE '%symmetric%'`` finds
    the symmetric runs."""
    return SEPARATOR.join(f.code for f in findings)


def parse_codes(tag: str | None) -> list[str]:
    """The codes of a ``diagnosis`` tag (``[]`` for none)."""
    return [c.strip() for c in (tag or "").split(",") if c.strip()]


NOTE_TITLE = "**Diagnosis of the init**"


def note(findings: Iterable[Finding]) -> str:
    """The run's description (markdown): the sentences, one per line, then where they came
    from. ``sentences`` reads them back."""
    lines = [f"{NOTE_TITLE} (initsweep, from this run's `diag/L<i>/*` metrics):", ""]
    lines += [f"- {f.sentence}" for f in findings]
    lines += ["", 'Thresholds and what each finding means: docs/diagnostics.md ("Findings").']
    return "\n".join(lines)


def sentences(note_text: str | None) -> list[str]:
    """The sentences of a note written by ``note`` (``[]`` for any other text)."""
    if not note_text or not note_text.startswith(NOTE_TITLE):
        return []
    return [line[2:] for line in note_text.splitlines() if line.startswith("- ")]


def console_codes(outcome: str, diagnosis: str | None) -> str:
    """What a job's result line shows in brackets: ``ok, healthy``; a code equal to the outcome
    (``diverged``) is not repeated."""
    extra = [c for c in parse_codes(diagnosis) if c != outcome]
    return SEPARATOR.join([outcome, *extra])


def log_diagnosis(client: MlflowClient, run_id: str, findings: Sequence[Finding]) -> str:
    """The ``diagnosis`` tag and the run's note (one MLflow call); returns the tag's value."""
    from initsweep.tracking.notes import set_run_note  # MLflow: the console imports findings

    value = codes(findings)
    set_run_note(client, run_id, note(findings), tags={TAG: value})
    return value
