"""What a race leaves behind: the round table (CSV and markdown), the intervals plot, the
winners and the runs spent, as files in ``<sweep dir>/race/`` and on the sweep's parent run.

On the parent run (the one ``initsweep.launch.sweep.SweepCallback`` opens for the multirun):
- artifacts ``race/rounds.csv``, ``race/race.md``, ``race/intervals.png``, rewritten after
  every round, so a stopped race shows how far it got;
- tags ``race.winner.<context>`` (the chosen configuration), ``race.ended.<context>`` (why that
  context's race ended), ``race.metric``, ``race.score_metric``;
- metrics ``race/<context>/<metric>`` with ``_low``/``_high`` (the winner's interval on the
  selection metric), the same for the score metric, and ``race/runs``, ``race/full_grid``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from initsweep.race.engine import Race, Standing, Winner

COLUMNS = (
    "round",
    "context",
    "configuration",
    "seeds",
    "mean",
    "low",
    "high",
    "diff_to_leader",
    "p_holm",
    "status",
    "reason",
)


def metric_key(text: str) -> str:
    """``init=he`` -> ``init_he``: MLflow keys take letters, digits, ``_-./`` and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", text).strip() or "all"


def rows(race: Race) -> list[dict[str, Any]]:
    out = []
    for table in race.rounds:
        for s in table:
            out.append(
                dict(
                    zip(
                        COLUMNS,
                        (
                            s.round,
                            s.context,
                            s.label,
                            s.n_seeds,
                            s.mean,
                            s.low,
                            s.high,
                            s.diff,
                            s.p_holm,
                            s.status,
                            s.reason,
                        ),
                        strict=True,
                    )
                )
            )
    return out


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_csv(race: Race, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows(race))
    return path


def markdown(race: Race, metric: str, score_metric: str) -> str:
    """The race as markdown: settings, winners, runs spent, then every round's table."""
    st = race.settings
    lines = [
        "# Race",
        "",
        f"Selection on `{metric}` ({'max' if st.maximize else 'min'}imised), score on "
        f"`{score_metric}`; confidence {st.confidence:g}: a configuration is dropped when its "
        "anytime-valid e-process (betting on paired differences against the best so far, "
        "beyond the margin), e-Holm-adjusted over its context, gives p = 1/e <= "
        f"{1 - st.confidence:.3g}, over the whole race (docs/race.md).",
        f"Seeds in order: {', '.join(map(str, st.seeds))}; {st.seeds_first} first, then "
        f"{st.seeds_per_round} per round; margin {st.margin:g}; budget: "
        f"{'none' if st.budget is None else st.budget}.",
        "",
        f"**Runs spent: {race.spent} of the full grid's {race.full_grid} "
        f"({race.spent / race.full_grid:.0%}).**",
        "",
        "## Winners",
        "",
        f"| context | winner | ended | seeds | {metric} mean | interval | {score_metric} mean "
        "| interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in race.winners().values():
        lines.append(
            f"| {w.context or 'all'} | {w.candidate.label} | {w.ended} | {w.n_seeds} | "
            f"{fmt(w.mean)} | [{fmt(w.low)}, {fmt(w.high)}] | {fmt(w.score_mean)} | "
            f"[{fmt(w.score_low)}, {fmt(w.score_high)}] |"
        )
    unfinished = [c for c in race.contexts if c not in race.ended]
    if unfinished:
        lines += ["", f"Still racing: {', '.join(c or 'all' for c in unfinished)}."]
    lines += [
        "",
        "## Rounds",
        "",
        "| round | context | configuration | seeds | mean | interval | diff to leader "
        "| Holm p | status | reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(race):
        lines.append(
            f"| {r['round']} | {r['context'] or 'all'} | {r['configuration']} | "
            f"{r['seeds']} | {fmt(r['mean'])} | [{fmt(r['low'])}, {fmt(r['high'])}] | "
            f"{fmt(r['diff_to_leader'])} | {fmt(r['p_holm'])} | {r['status']} | "
            f"{r['reason']} |"
        )
    return "\n".join(lines) + "\n"


def plot(race: Race, metric: str, path: Path) -> Path:
    """Per context, each configuration's mean and interval after every round it was alive in:
    the intervals narrow as seeds come in, and a configuration's line ends where it was dropped."""
    import matplotlib  # only where a race is plotted: the race sweeper's process needs no plots

    matplotlib.use("Agg")
    # matplotlib only when the race's plot is drawn
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    contexts = list(race.contexts)
    fig, axes = plt.subplots(1, len(contexts), figsize=(5.2 * len(contexts), 3.8), squeeze=False)
    winners = race.winners()
    for ax, context in zip(axes[0], contexts, strict=True):
        labels = [race.candidates[i].label for i in race.contexts[context]]
        finals: list[Standing] = []  # each configuration's last row
        for k, label in enumerate(labels):
            mine = [
                s
                for table in race.rounds
                for s in table
                if s.context == context and s.label == label and not math.isnan(s.mean)
            ]
            if not mine:
                continue
            x = [s.n_seeds + (k - (len(labels) - 1) / 2) * 0.06 for s in mine]
            y = [s.mean for s in mine]
            err = [
                [max(0.0, s.mean - s.low) if not math.isnan(s.low) else 0.0 for s in mine],
                [max(0.0, s.high - s.mean) if not math.isnan(s.high) else 0.0 for s in mine],
            ]
            won = context in winners and winners[context].candidate.label == label
            out = mine[-1].status in ("dropped", "failed")
            note = (
                " (winner)" if won else f" ({mine[-1].status} at {mine[-1].n_seeds})" if out else ""
            )
            line = ax.errorbar(
                x,
                y,
                yerr=err,
                marker="o",
                ms=4,
                capsize=3,
                lw=2.2 if won else 1.0,
                label=label + note,
            )
            if out:
                ax.plot(x[-1], y[-1], "x", ms=9, color=line[0].get_color())
            finals.append(mine[-1])
        # Zoom around the final leader: a diverging learning rate's mean and interval would
        # flatten everything else; rows far below leave the frame (their legend says why).
        ref = max(
            (s for s in finals if s.status in ("leader", "alive")),
            key=lambda s: s.mean if race.settings.maximize else -s.mean,
            default=None,
        )
        if ref is not None:
            width = max(
                ref.high - ref.low if not math.isnan(ref.high) else 0.0, 0.01 * abs(ref.mean), 1e-6
            )
            near = [
                s.mean
                for table in race.rounds
                for s in table
                if s.context == context and abs(s.mean - ref.mean) <= 3 * width
            ]
            bounds = [*near, *(v for v in (ref.low, ref.high) if not math.isnan(v))]
            lo, hi = min(bounds), max(bounds)
            ax.set_ylim(lo - 0.15 * (hi - lo + 1e-6), hi + 0.15 * (hi - lo + 1e-6))
        ax.set_title(context or "all", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("seeds played (one round per step)")
        ax.set_ylabel(f"{metric}: mean and interval")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"race: {race.spent} of {race.full_grid} runs; x = dropped", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_files(race: Race, metric: str, score_metric: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "race.md").write_text(markdown(race, metric, score_metric))
    files = [write_csv(race, folder / "rounds.csv"), folder / "race.md"]
    if race.rounds:
        files.append(plot(race, metric, folder / "intervals.png"))
    return files


def winner_metrics(
    winners: Mapping[str, Winner], metric: str, score_metric: str
) -> dict[str, float]:
    out: dict[str, float] = {}
    for context, w in winners.items():
        for name, (mean, low, high) in (
            (metric, (w.mean, w.low, w.high)),
            (score_metric, (w.score_mean, w.score_low, w.score_high)),
        ):
            base = f"race/{metric_key(context)}/{metric_key(name)}"
            for suffix, value in (("", mean), ("_low", low), ("_high", high)):
                if not math.isnan(value):
                    out[base + suffix] = float(value)
    return out


def log_to_parent(
    client: Any,
    run_id: str,
    race: Race,
    files: Sequence[Path],
    metric: str,
    score_metric: str,
    final: bool,
) -> None:
    """Artifacts after every round; winners as tags and metrics once the race is over."""
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="race")
    client.set_tag(run_id, "race.metric", metric)
    client.set_tag(run_id, "race.score_metric", score_metric)
    client.log_metric(run_id, "race/runs", race.spent, step=len(race.rounds))
    client.log_metric(run_id, "race/full_grid", race.full_grid)
    if not final:
        return
    winners = race.winners()
    for context, w in winners.items():
        client.set_tag(run_id, f"race.winner.{metric_key(context)}", w.candidate.label)
        client.set_tag(run_id, f"race.ended.{metric_key(context)}", w.ended)
    for key, value in winner_metrics(winners, metric, score_metric).items():
        client.log_metric(run_id, key, value)


def round_line(table: Sequence[Standing]) -> str:
    """One console line per context after a round: leader, live count, who was dropped."""
    out = []
    for context in dict.fromkeys(s.context for s in table):
        mine = [s for s in table if s.context == context]
        leader = next((s for s in mine if s.status == "leader"), None)
        dropped = [s.label for s in mine if s.status in ("dropped", "failed")]
        alive = sum(s.status in ("leader", "alive") for s in mine)
        text = f"{context or 'all'}: {alive} alive"
        if leader is not None:
            text += (
                f", leader {leader.label} {leader.mean:.4f} [{fmt(leader.low)}, "
                f"{fmt(leader.high)}] on {leader.n_seeds} seeds"
            )
        if dropped:
            text += f"; dropped {', '.join(dropped)}"
        out.append(text)
    return "; ".join(out)
