"""History: the one place every number about a line of research comes from. Pure, no I/O.

`History(rows, branch)` takes the rows of results.tsv (oldest first) and keeps those of one
research branch (rows written before the branch column existed belong to every branch).
From them it answers, the same way for the engine, the agent's prompt, `status`, the report,
the dashboard and the loop's exit line:

- the frontier: the commit of the last kept measurement and its value, the mean of every
  kept measured run of that commit (the baseline runs, the runs that got it kept, its
  re-runs beside later candidates);
- the frontier after each row (the series the views draw and the deltas are taken against);
- the baseline: the value of the starting point's commit, the same mean (for a file written
  by the original project, which has no kinds, its first measured row is the baseline);
- the kept changes in order, the tally (experiments by outcome, and the runs around them),
  each row's label and experiment number, the noise estimate of the keep rule, the pace
  (decided experiments per hour, runs per hour, the share of wall-clock spent training) and
  the agent's usage.

What a row is (measured, ran, used the machine, an experiment) comes from the Row's typed
properties; nothing here reads meaning out of reason text.

Not covered: which commits still exist in git (the engine resolves the frontier's commit),
and rows of other branches (make another History).
"""

# long module: every number the views, the prompt and the engine show of a line is drawn here, from
# the same rows (docs/architecture.md, "One source for every number"); split, they would drift apart

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Iterable, Sequence

from autoresearch.research import keeprule
from autoresearch.research.results import STATUSES, Row

DECIDED = ("keep", "discard", "stale")  # outcomes that are a verdict on the code (the pace counts these)
FAILED = ("interrupted", "crash", "invalid", "noop")  # rows without a measurement, labelled by their status


def on_branch(rows: Iterable[Row], branch: str | None) -> list[Row]:
    """The rows of one research branch; rows written without a branch belong to every branch.
    No branch: every row."""
    if not branch:
        return list(rows)
    return [r for r in rows if r.branch in (branch, "")]


def kept_mean(rows: Iterable[Row], commit: str) -> float | None:
    """The value of a kept commit: the mean of its kept, measured runs (None: it has none), from
    its last fresh start on (a re-run after the machine changed, History.stale).

    This is the frontier value wherever one is shown or compared with."""
    values: list[float] = []
    for r in rows:
        if r.status == "keep" and r.measured and r.commit[:7] == commit[:7]:
            values = [r.value] if r.fresh else [*values, r.value]
    return keeprule.mean(values) if values else None


def parse_time(cell: str) -> float | None:
    """A timestamp cell as unix time: unix seconds or ISO 8601 (naive means UTC)."""
    cell = (cell or "").strip()
    if not cell:
        return None
    try:
        return float(cell)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Tally:
    """What a stretch of a branch's rows holds, counted once for every view: `status`, the
    report, the dashboard, the agent's prompt and the loop's exit line all show `text()`.

    An experiment is one proposal: its first row (kind experiment), whose status is its
    outcome. The runs around experiments (baseline runs, confirm runs, the frontier's re-runs
    beside a candidate) are counted apart and never as outcomes: a re-run of the frontier is
    a keep row of the frontier's commit, not a kept change."""

    outcomes: dict[str, int]  # experiments by outcome: every status, zeros included
    baseline_runs: int = 0  # runs of the unchanged starting point, whatever came of them
    reruns: int = 0  # the frontier's re-runs beside a candidate
    machine_runs: int = 0  # rows whose run started on the machine (Row.used_machine)
    interrupted_runs: int = 0  # rows of any kind with status interrupted
    unsandboxed: int = 0  # machine runs known to have run without a sandbox (sandboxed is False)
    sandboxed: int = 0  # machine runs known to have run in one (None, not known, is neither)

    @property
    def experiments(self) -> int:
        return sum(self.outcomes.values())

    @property
    def decided(self) -> int:
        """Experiments that ended in a verdict on their code: kept, discarded or stale."""
        return sum(self.outcomes.get(s, 0) for s in DECIDED)

    def text(self, on: str = "") -> str:
        """e.g. "7 experiments (1 keep, 5 discard, 1 crash); 2 baseline runs, 3 frontier re-runs";
        `on` names the branch after the count."""
        head = _plural(self.experiments, "experiment") + (f" on {on}" if on else "")
        outcomes = ", ".join(f"{n} {s}" for s, n in self.outcomes.items() if n)
        if outcomes:
            head += f" ({outcomes})"
        more = self.interrupted_runs - self.outcomes.get("interrupted", 0)  # those not counted as outcomes
        runs = [_plural(self.baseline_runs, "baseline run") if self.baseline_runs else "",
                _plural(self.reruns, "frontier re-run") if self.reruns else "",
                f"{_plural(more, 'more run')} interrupted" if more else ""]
        shown = [t for t in runs if t]
        return head + ("; " + ", ".join(shown) if shown else "")


@dataclass(frozen=True)
class KeptChange:
    """One kept commit: where it first appears, its value and how it moved the frontier."""

    index: int  # of its first row
    commit: str
    value: float  # the mean of its kept runs
    runs: int
    delta: float | None  # against the kept commit before it (new minus old); None for the first
    baseline: bool
    description: str
    reason: str
    agent: str


@dataclass(frozen=True)
class Pace:
    elapsed_seconds: float | None  # from the first run's start to the last row
    experiments_per_hour: float | None  # decided experiments (kept, discarded, stale) per hour
    runs_per_hour: float | None  # runs on the machine per hour: baseline, confirm and re-runs too
    training_seconds: float | None
    training_share: float | None  # of the workers' wall-clock (elapsed times workers), at most 1
    split: "TimeSplit | None" = None


@dataclass(frozen=True)
class TimeSplit:
    """Where the workers' wall-clock went (elapsed times the number of workers), as shares that
    sum to 1: each run's training, the trainer's time outside it (start-up, compile, the
    hand-over), the engine's evaluator, the engine's own work on the run, and the rest (the
    agent's proposals, commits and decisions between runs, and any run that recorded no times)."""

    training: float
    startup: float
    evaluating: float
    engine: float
    between: float

    def text(self) -> str:
        parts = [("training", self.training), ("start-up and hand-over", self.startup),
                 ("evaluator", self.evaluating), ("engine", self.engine), ("agent and between runs", self.between)]
        return " · ".join(f"{name} {100 * share:.0f} %" for name, share in parts)


@dataclass(frozen=True)
class Spend:
    """What the agents cost over a line of research (None: no row reported it)."""

    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None


# When the frontier's measurements may no longer hold on this machine (History.stale): this many
# candidates in a row lost to them by more than STALE_SIGMAS run-to-run sigmas each, on one run
# (a machine that slowed down makes every change look clearly worse; ordinary changes of a good
# frontier lose by far less, and bad ones are rarely that many in a row), or they are older than
# STALE_SECONDS and STALE_RUNS runs (a long budget's runs are not stale after one hour).
STALE_LOSSES = 4
STALE_SIGMAS = 3.0
STALE_SECONDS = 3600.0
STALE_RUNS = 8
# Or the machine's speed moved: each of the last STALE_PACE_RUNS runs since the frontier's last
# measurement (of two changes at least) trained at a pace (steps per training second) STALE_PACE or more away from the
# frontier's own runs, all in the same direction, and farther than three times the spread among
# the frontier's runs. A faster machine is caught here too (it makes every change look better:
# the dangerous side). Most changes leave the pace within a few percent; a change that really is
# slower costs one re-run of the frontier at most every STALE_PACE_RUNS runs. The pace comes from
# the trainer, so it only ever asks for a measurement, never decides one.
STALE_PACE = 0.15
STALE_PACE_RUNS = 3


def _pace(row: Row) -> float | None:
    """Steps per training second of a run that trained (None where it did not say)."""
    if row.steps and row.training_seconds and row.training_seconds > 0:
        return row.steps / row.training_seconds
    return None


def _pace_moved(frontier_runs: list[Row], since: list[Row]) -> str:
    """Why the machine's speed seems to have moved since the frontier's runs ("" when not): see STALE_PACE."""
    own = sorted(p for p in map(_pace, frontier_runs) if p is not None)
    recent = [_pace(r) for r in since[-STALE_PACE_RUNS:]]
    if not own or len(recent) < STALE_PACE_RUNS or None in recent:
        return ""
    if len({r.commit[:7] for r in since[-STALE_PACE_RUNS:]}) < 2:
        return ""  # one change's runs: that code may simply be slower (a bigger model), not the machine
    middle = own[len(own) // 2] if len(own) % 2 else (own[len(own) // 2 - 1] + own[len(own) // 2]) / 2
    spread = (own[-1] - own[0]) / middle if len(own) > 1 else 0.0
    ratios = [p / middle - 1 for p in recent]
    bar = max(STALE_PACE, 3 * spread)
    if all(x <= -bar for x in ratios) or all(x >= bar for x in ratios):
        least = min(ratios, key=abs)
        return (f"the last {STALE_PACE_RUNS} runs trained {abs(least) * 100:.0f} % or more "
                f"{'fewer' if least < 0 else 'more'} steps per second than its runs (the machine's speed changed?)")
    return ""


class History:
    """The rows of one line of research and every number drawn from them."""

    def __init__(self, rows: Iterable[Row], branch: str | None = None, direction: str = "lower"):
        self.branch = branch or ""
        self.direction = direction
        self.rows: tuple[Row, ...] = tuple(on_branch(rows, branch))

    def __len__(self) -> int:
        return len(self.rows)

    # -- the frontier ------------------------------------------------------------

    @cached_property
    def frontier_commit(self) -> str | None:
        """The short commit kept last: the one whose first kept measurement came last (a re-run
        of an older frontier, written after a change's runs, does not make it the frontier
        again); None before anything was kept."""
        return self.kept_changes[-1].commit[:7] if self.kept_changes else None

    @cached_property
    def frontier_value(self) -> float | None:
        return self.value_of(self.frontier_commit) if self.frontier_commit else None

    @cached_property
    def frontier_index(self) -> int | None:
        """Index of the first row of the frontier's commit."""
        if self.frontier_commit is None:
            return None
        return next(i for i, r in enumerate(self.rows) if r.commit[:7] == self.frontier_commit)

    def value_of(self, commit: str) -> float | None:
        """A commit's kept value (kept_mean over this history)."""
        return kept_mean(self.rows, commit)

    def runs_of(self, commit: str) -> list[Row]:
        """The kept, measured rows of a commit."""
        return [r for r in self.rows if r.status == "keep" and r.measured and r.commit[:7] == commit[:7]]

    @cached_property
    def series(self) -> list[float | None]:
        """The frontier value after each row (None before anything was kept): what the views
        draw as the frontier, and what each row's delta is taken against."""
        out: list[float | None] = []
        current: float | None = None
        seen: set[str] = set()
        frontier = ""
        for i, r in enumerate(self.rows):
            if r.status == "keep" and r.measured:
                if r.commit[:7] not in seen:  # a newly kept commit is the frontier from here on
                    seen.add(r.commit[:7])
                    frontier = r.commit[:7]
                if r.commit[:7] == frontier:  # a re-run of an older frontier leaves the value alone
                    current = kept_mean(self.rows[: i + 1], frontier)
            out.append(current)
        return out

    def before(self, index: int) -> float | None:
        """The frontier value a row was compared with: the one after the row before it."""
        return self.series[index - 1] if index > 0 else None

    def delta(self, index: int) -> float | None:
        """A measured row's change of the metric against the frontier before it: new minus old,
        in the metric's units (for a lower-is-better metric a win is negative)."""
        before = self.before(index)
        row = self.rows[index]
        return row.value - before if before is not None and row.measured else None

    # -- the baseline --------------------------------------------------------------

    @cached_property
    def baseline_indices(self) -> frozenset[int]:
        """The rows that are baseline runs: the kept ones of kind baseline; in a file without
        kinds (the original project's) its first measured row."""
        marked = {i for i, r in enumerate(self.rows) if r.kind == "baseline" and r.status == "keep"}
        if marked or any(r.kind == "baseline" for r in self.rows):
            return frozenset(marked)
        first = next((i for i, r in enumerate(self.rows) if r.measured), None)
        return frozenset({first}) if first is not None and self.rows[first].status == "keep" else frozenset()

    def is_baseline(self, index: int) -> bool:
        """A run of the unchanged starting point (whatever came of it)."""
        return self.rows[index].kind == "baseline" or index in self.baseline_indices

    @cached_property
    def baseline_runs(self) -> list[float]:
        """The values the baseline is the mean of: every kept, measured run of the baseline's
        commit (its baseline runs and its re-runs beside candidates), as for any kept commit."""
        commits = {self.rows[i].commit[:7] for i in self.baseline_indices}
        return [r.value for r in self.rows if r.status == "keep" and r.measured and r.commit[:7] in commits]

    @cached_property
    def baseline(self) -> float | None:
        """The value of the starting point; for a file whose first measured row was not kept,
        that row's value."""
        if self.baseline_runs:
            return keeprule.mean(self.baseline_runs)
        return next((r.value for r in self.rows if r.measured), None)

    @cached_property
    def baseline_count(self) -> int:
        if self.baseline_runs:
            return len(self.baseline_runs)
        return 1 if self.baseline is not None else 0

    @cached_property
    def change(self) -> float | None:
        """The frontier's change of the metric since the baseline: new minus old, in the
        metric's units, as every difference is shown (a win is negative when lower is better)."""
        if self.baseline is None or self.frontier_value is None:
            return None
        return self.frontier_value - self.baseline

    @cached_property
    def change_pct(self) -> float | None:
        if self.change is None or not self.baseline:
            return None
        return 100.0 * self.change / abs(self.baseline)

    # -- what happened -----------------------------------------------------------

    def label(self, index: int) -> str:
        """What a row is called where runs are drawn and listed: a failure by its status
        (interrupted, crash, invalid, noop); "rerun" for a re-run of the frontier (a
        measurement of the frontier, never a keep); "baseline" for a baseline run; else its
        status (a confirm run of a kept change is "keep")."""
        row = self.rows[index]
        if row.status in FAILED:
            return row.status
        if row.kind == "rerun":
            return "rerun"
        return "baseline" if index in self.baseline_indices else row.status

    @cached_property
    def numbers(self) -> list[int | None]:
        """The experiment each row belongs to, numbered from 1 along the branch as the loop
        numbers them ("[7] ..."): an experiment's own, and for its confirm runs and the
        frontier's re-runs beside it the experiment before them; None for the baseline runs
        and what comes before the first experiment."""
        out: list[int | None] = []
        n = 0
        for i, r in enumerate(self.rows):
            if r.is_experiment and not self.is_baseline(i):
                n += 1
            out.append(None if self.is_baseline(i) or n == 0 else n)
        return out

    def tally(self, start: int = 0) -> Tally:
        """The counts of the rows from index `start` on (0: the whole branch; a session's
        first row: what the session recorded)."""
        outcomes = {s: 0 for s in STATUSES}
        baseline = reruns = machine = stopped = unsandboxed = sandboxed = 0
        for i in range(start, len(self.rows)):
            r = self.rows[i]
            if self.is_baseline(i):
                baseline += 1
            elif r.kind == "rerun":
                reruns += 1
            elif r.is_experiment:
                outcomes[r.status] = outcomes.get(r.status, 0) + 1
            machine += r.used_machine
            stopped += r.status == "interrupted"
            unsandboxed += r.used_machine and r.sandboxed is False
            sandboxed += r.used_machine and r.sandboxed is True
        return Tally(outcomes, baseline, reruns, machine, stopped, unsandboxed, sandboxed)

    @cached_property
    def kept_changes(self) -> list[KeptChange]:
        order: list[str] = []
        groups: dict[str, list[tuple[int, Row]]] = {}
        for i, r in enumerate(self.rows):
            if r.status == "keep" and r.measured:
                if r.commit not in groups:
                    order.append(r.commit)
                    groups[r.commit] = []
                groups[r.commit].append((i, r))
        out: list[KeptChange] = []
        previous = None
        for commit in order:
            group = groups[commit]
            index, first = group[0]
            value = keeprule.mean([r.value for _, r in group])
            out.append(KeptChange(
                index=index, commit=commit, value=value, runs=len(group),
                delta=None if previous is None else value - previous, baseline=index in self.baseline_indices,
                description=first.description, reason=next((r.reason for _, r in group if r.reason), ""),
                agent=first.agent,
            ))
            previous = value
        return out

    @cached_property
    def frontier_change(self) -> KeptChange | None:
        """The kept change that is the frontier now."""
        return self.kept_changes[-1] if self.kept_changes else None

    def not_kept_streak(self) -> int:
        """How many experiments since the last kept one (or the baseline)."""
        streak = 0
        for i in reversed(range(len(self.rows))):
            r = self.rows[i]
            if i in self.baseline_indices or (r.is_experiment and r.status == "keep"):
                break
            streak += r.is_experiment
        return streak

    @cached_property
    def agents(self) -> list[str]:
        return list(dict.fromkeys(r.agent for r in self.rows if r.agent))

    # -- noise -------------------------------------------------------------------------

    @cached_property
    def noise(self) -> keeprule.Noise:
        return keeprule.noise(self.rows)

    @cached_property
    def measured(self) -> bool:
        """Whether any row carries a measurement."""
        return any(r.measured for r in self.rows)

    # -- pace and usage ---------------------------------------------------------------

    @cached_property
    def pace(self) -> Pace:
        stamped = [(t, r) for t, r in ((parse_time(r.timestamp), r) for r in self.rows) if t is not None]
        train = [r.training_seconds for r in self.rows if r.training_seconds is not None]
        secs = [r.seconds for r in self.rows if r.seconds is not None]
        elapsed = None
        if len(stamped) >= 2:
            first_t, first = min(stamped, key=lambda p: p[0])
            # a row is stamped when it is recorded, i.e. at the end of its run
            elapsed = (max(t for t, _ in stamped) - first_t) + first.wall
        elif secs:
            elapsed = sum(r.wall for r in self.rows)
        hours = elapsed / 3600.0 if elapsed and elapsed > 0 else None
        tally = self.tally()
        per_hour = tally.decided / hours if hours else None
        runs_per_hour = tally.machine_runs / hours if hours else None
        # several workers run at once: their wall-clock is the elapsed time once per worker
        capacity = elapsed * max(1, len({r.worker for r in self.rows if r.worker})) if hours else None
        share = min(sum(train) / capacity, 1.0) if train and capacity else None
        return Pace(elapsed, per_hour, runs_per_hour, sum(train) if train else None, share,
                    self._split(capacity) if train and capacity else None)

    def _split(self, capacity: float) -> TimeSplit:
        def total(values) -> float:
            return sum(v for v in values if v is not None)

        timed = [r for r in self.rows if r.seconds is not None and r.training_seconds is not None]
        parts = [total(r.training_seconds for r in timed), total(max(r.seconds - r.training_seconds, 0.0) for r in timed),
                 total(r.eval_seconds for r in self.rows), total(r.engine_seconds for r in self.rows)]
        shares = [min(p / capacity, 1.0) for p in parts]
        scale = max(1.0, sum(shares))  # clocks of separate processes may overlap a little
        shares = [s / scale for s in shares]
        return TimeSplit(*shares, between=max(0.0, 1.0 - sum(shares)))

    def stale(self, frontier: str, now: float) -> str:
        """Why the frontier's measurements should be taken again before the next candidate is
        judged against them ("" when they still hold): see the STALE_ constants."""
        ours = [i for i, r in enumerate(self.rows) if r.commit[:7] == frontier[:7] and r.measured and r.status == "keep"]
        if not ours:
            return ""
        last = self.rows[ours[-1]]
        when = parse_time(last.timestamp)
        since = sum(1 for r in self.rows[ours[-1] + 1:] if r.used_machine)
        if when is not None and now - when > STALE_SECONDS and since >= STALE_RUNS:
            return f"its last measurement is {(now - when) / 60:.0f} minutes and {since} runs old"
        moved = _pace_moved([self.rows[i] for i in ours], [r for r in self.rows[ours[-1] + 1:] if r.used_machine])
        if moved:
            return moved
        value, sigma = self.value_of(frontier), self.noise.sigma
        if value is None or not sigma > 0:
            return ""
        after = [r for r in self.rows[ours[-1] + 1:] if r.is_experiment or r.kind == "confirm"]
        if len(after) < STALE_LOSSES or any(r.kind == "confirm" for r in after[-STALE_LOSSES:]):
            return ""
        losses = [keeprule.improvement(value, r.value, self.direction) / sigma for r in after[-STALE_LOSSES:]
                  if r.status == "discard" and r.measured]
        if len(losses) < STALE_LOSSES or max(losses) >= -STALE_SIGMAS:
            return ""
        return (f"the last {STALE_LOSSES} candidates each lost to it by {-max(losses):.0f} sigma or more on one run "
                f"(a machine that slowed down?)")

    @cached_property
    def usage(self) -> Spend:
        def total(values: Sequence):
            present = [v for v in values if v is not None]
            return sum(present) if present else None

        return Spend(total([r.tokens_in for r in self.rows]), total([r.tokens_out for r in self.rows]),
                     total([r.cost_usd for r in self.rows]))
