"""A race over seeds, as a state machine without I/O: what to run next, what the results decide.

    race = Race(candidates, settings)
    while plan := race.next_round():          # {candidate index: seeds to train this round}
        race.record(values_of(plan))          # the selection metric per (candidate, seed)
    race.winners()                            # per context: the best mean, with its interval

Round 1 gives every configuration ``seeds_first`` seeds; each later round gives every live
configuration of every undecided context the next ``seeds_per_round`` seeds, in the order of
``seeds``. After each round, ``initsweep.race.rule.judge`` drops, per context, the configurations
clearly worse than the context's leader. A context is decided when one configuration is left
("confident"); the race ends when every context is decided, the seeds run out ("seeds": the
best mean wins), or the next round would spend more runs than the budget allows ("budget").

The Hydra sweeper (``hydra_plugins.initsweep_race``) drives it with real jobs; ``replay`` drives
it with a table of results (unit tests, scripts/race_study.py). Both run this same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from initsweep.race.rule import Elimination, best_mean, judge
from initsweep.race.rule import mean_and_t_interval as mean_interval

CONFIDENT, SEEDS, BUDGET, ALL_FAILED = "confident", "seeds", "budget", "all failed"
# The sweeper's defaults, one source: RaceSettings and the plugin's RaceSweeperConf use these.
SEEDS_FIRST, SEEDS_PER_ROUND, CONFIDENCE, MARGIN = 2, 1, 0.9, 0.0


@dataclass(frozen=True)
class Candidate:
    """One configuration: its swept keys' overrides, its context and its label within it."""

    index: int
    overrides: tuple[str, ...]  # ``key=value`` of every swept key except the seed
    context: str  # the context keys' ``key=value``s ("" when nothing is a context)
    label: str  # the other swept keys' ``key=value``s: the name within the context


@dataclass(frozen=True)
class RaceSettings:
    """The sweeper's keys that decide the race (docs/race.md)."""

    seeds: tuple[int, ...]
    seeds_first: int = SEEDS_FIRST
    seeds_per_round: int = SEEDS_PER_ROUND
    maximize: bool = True
    confidence: float = CONFIDENCE
    margin: float = MARGIN  # differences up to this (metric units) are never called (rule.py)
    budget: int | None = None  # total runs (configuration x seed); None: the seeds are the cap
    bounds: tuple[float, float] = (0.0, 1.0)  # the metric's range (rule.py: the e-process)


@dataclass(frozen=True)
class Standing:
    """One row of a round's table: a configuration alive at the round's start."""

    round: int
    context: str
    label: str
    n_seeds: int
    mean: float
    low: float
    high: float
    diff: float  # mean paired difference to the leader (> 0: the leader is better)
    p_holm: float  # Holm-adjusted one-sided paired p-value against the leader (NaN: leader)
    status: str  # leader | alive | dropped | failed
    reason: str


@dataclass(frozen=True)
class Winner:
    """A context's choice: the best mean of its live configurations over the seeds played."""

    context: str
    candidate: Candidate
    ended: str  # confident | seeds | budget
    n_seeds: int
    mean: float
    low: float
    high: float
    score_mean: float  # the score metric (test) of the same runs: reported, never chosen on
    score_low: float
    score_high: float


@dataclass
class Race:
    """The race's state; see the module docstring for the loop that drives it."""

    candidates: Sequence[Candidate]
    settings: RaceSettings
    values: dict[tuple[int, int], float] = field(default_factory=dict)
    scores: dict[tuple[int, int], float] = field(default_factory=dict)  # test: reported only
    alive: set[int] = field(default_factory=set)
    played: list[int] = field(default_factory=list)  # seeds given so far, in order
    ended: dict[str, str] = field(default_factory=dict)  # context -> why it ended
    rounds: list[list[Standing]] = field(default_factory=list)
    spent: int = 0  # runs asked for: configuration x seed, trained or found FINISHED
    _pending: dict[int, tuple[int, ...]] = field(default_factory=dict)
    _rules: dict[str, Elimination] = field(default_factory=dict)  # per context (rule.py)
    _fed: dict[str, int] = field(default_factory=dict)  # seeds each context's rule has seen

    def __post_init__(self) -> None:
        if [c.index for c in self.candidates] != list(range(len(self.candidates))):
            raise ValueError("candidates[i].index must be i")
        self.alive = {c.index for c in self.candidates}
        self.contexts: dict[str, list[int]] = {}
        for c in self.candidates:
            self.contexts.setdefault(c.context, []).append(c.index)

    @property
    def full_grid(self) -> int:
        """Runs of the full grid: every configuration on every seed."""
        return len(self.candidates) * len(self.settings.seeds)

    @property
    def done(self) -> bool:
        return len(self.ended) == len(self.contexts)

    def live(self, context: str) -> list[int]:
        return [i for i in self.contexts[context] if i in self.alive]

    def next_round(self) -> dict[int, tuple[int, ...]]:
        """The seeds each live configuration of an undecided context gets next; {} at the end."""
        if self.done:
            return {}
        n = self.settings.seeds_first if not self.played else self.settings.seeds_per_round
        seeds = tuple(self.settings.seeds[len(self.played) : len(self.played) + n])
        open_contexts = [c for c in self.contexts if c not in self.ended]
        if not seeds:
            self._end(open_contexts, SEEDS)
            return {}
        plan = {i: seeds for c in open_contexts for i in self.live(c)}
        budget = self.settings.budget
        if budget is not None and self.spent + len(plan) * len(seeds) > budget:
            self._end(open_contexts, BUDGET)
            return {}
        self._pending = plan
        return dict(plan)

    def record(
        self,
        values: Mapping[tuple[int, int], float | None],
        scores: Mapping[tuple[int, int], float | None] | None = None,
        problems: Mapping[tuple[int, int], str] | None = None,
    ) -> list[Standing]:
        """Take the round's results and judge every context that played; returns the round table.

        ``values``: the selection metric per (candidate, seed) of the planned round; a missing or
        non-finite value (failed job, diverged run) drops that configuration, with
        ``problems[(candidate, seed)]`` as the reason when given. ``scores``: the score metric
        (test) of the same runs, kept for the report and never looked at by the rule.
        """
        if not self._pending:
            raise RuntimeError("record() without a planned round (call next_round() first)")
        plan, self._pending = self._pending, {}
        seeds = next(iter(plan.values()))
        self.played.extend(seeds)
        self.spent += sum(len(s) for s in plan.values())
        failures: dict[int, str] = {}
        for i, planned in plan.items():
            for seed in planned:
                value = values.get((i, seed))
                if scores is not None and scores.get((i, seed)) is not None:
                    self.scores[(i, seed)] = float(scores[(i, seed)])  # type: ignore[arg-type]
                if value is None or not math.isfinite(value):
                    why = (problems or {}).get((i, seed)) or (
                        "no result" if value is None else f"metric is {value}"
                    )
                    failures.setdefault(i, f"seed {seed}: {why}")
                else:
                    self.values[(i, seed)] = float(value)
        table: list[Standing] = []
        round_no = len(self.rounds) + 1
        for context in {self.candidates[i].context: None for i in plan}:
            table.extend(self._judge_context(context, round_no, failures))
        self.rounds.append(table)
        return table

    def _judge_context(
        self, context: str, round_no: int, failures: Mapping[int, str]
    ) -> list[Standing]:
        rows: list[Standing] = []
        for i in self.live(context):
            if i in failures:
                self.alive.discard(i)
                rows.append(self._row(round_no, i, "failed", failures[i]))
        live = self.live(context)
        if not live:
            self.ended[context] = ALL_FAILED
            return rows
        matrix = np.array([[self.values[(i, s)] for s in self.played] for i in live])
        members = self.contexts[context]
        rule = self._rules.setdefault(
            context,
            Elimination(
                len(members),
                self.settings.maximize,
                self.settings.confidence,
                self.settings.margin,
                self.settings.bounds,
            ),
        )
        verdict = judge(
            matrix,
            self.settings.maximize,
            self.settings.confidence,
            elimination=rule,
            rows=[members.index(i) for i in live],
            new_seeds=len(self.played) - self._fed.get(context, 0),
        )
        self._fed[context] = len(self.played)
        leader = self.candidates[live[verdict.leader]]
        alpha = 1 - self.settings.confidence
        for row, i in enumerate(live):
            c = self.candidates[i]
            stats = (
                verdict.mean[row],
                verdict.low[row],
                verdict.high[row],
                verdict.diff[row],
                verdict.p_holm[row],
            )
            if row == verdict.leader:
                status, reason = "leader", ""
            elif verdict.dropped[row]:
                self.alive.discard(i)
                status = "dropped"
                reason = (
                    f"worse than {leader.label} by {verdict.diff[row]:.4g} on "
                    f"{len(self.played)} paired seeds (anytime e-Holm p="
                    f"{verdict.p_holm[row]:.3g} <= {alpha:.3g}, margin "
                    f"{self.settings.margin:g})"
                )
            else:
                status, reason = "alive", f"not called (Holm p={verdict.p_holm[row]:.3g})"
            rows.append(
                Standing(round_no, context, c.label, len(self.played), *stats, status, reason)
            )
        if len(self.live(context)) == 1:
            self.ended[context] = CONFIDENT
        return rows

    def _row(self, round_no: int, i: int, status: str, reason: str) -> Standing:
        c = self.candidates[i]
        seeds = [s for s in self.played if (i, s) in self.values]
        mean, low, high = (
            mean_interval([self.values[(i, s)] for s in seeds], self.settings.confidence)
            if seeds
            else (math.nan, math.nan, math.nan)
        )
        return Standing(
            round_no,
            c.context,
            c.label,
            len(seeds),
            mean,
            low,
            high,
            math.nan,
            math.nan,
            status,
            reason,
        )

    def _end(self, contexts: Sequence[str], why: str) -> None:
        for context in contexts:
            self.ended.setdefault(context, why)

    def winners(self) -> dict[str, Winner]:
        """Per decided context: the live configuration with the best mean over the seeds played."""
        out: dict[str, Winner] = {}
        for context, why in self.ended.items():
            live = self.live(context)
            if not live:
                continue
            seeds = [s for s in self.played if all((i, s) in self.values for i in live)]
            means = [float(np.mean([self.values[(i, s)] for s in seeds])) for i in live]
            best = live[best_mean(means, self.settings.maximize)]
            mean, low, high = mean_interval(
                [self.values[(best, s)] for s in seeds], self.settings.confidence
            )
            tested = [self.scores[(best, s)] for s in seeds if (best, s) in self.scores]
            score = (
                mean_interval(tested, self.settings.confidence)
                if tested
                else (math.nan, math.nan, math.nan)
            )
            out[context] = Winner(
                context, self.candidates[best], why, len(seeds), mean, low, high, *score
            )
        return out


def replay(
    candidates: Sequence[Candidate],
    settings: RaceSettings,
    value: Callable[[Candidate, int], float | None],
    score: Callable[[Candidate, int], float | None] | None = None,
) -> Race:
    """Run a whole race on known results (``value(candidate, seed)``): the sweeper's own logic
    without training, for tests and for measuring the rule on a full grid (race_study.py)."""
    race = Race(candidates, settings)
    while plan := race.next_round():
        keys = [(i, s) for i, seeds in plan.items() for s in seeds]
        race.record(
            {(i, s): value(race.candidates[i], s) for i, s in keys},
            None if score is None else {(i, s): score(race.candidates[i], s) for i, s in keys},
        )
    return race
