"""History: the one place every number about a line of research comes from. Pure, no I/O.

`History(rows, branch)` takes the rows of results.tsv (oldest first) and keeps those of one
research branch (rows written before the branch column existed belong to every branch).
From them it answers, the same way for the engine, the agent's prompt, `status`, the report
and the dashboard:

- the frontier: the commit of the last kept measurement and its value, the mean of every
  kept measured run of that commit (the baseline runs, the runs that got it kept, its
  re-runs beside later candidates);
- the frontier after each row (the series the views draw and the deltas are taken against);
- the baseline: the mean of the measured baseline runs (for a file written by the original
  project, which has no kinds, its first measured row);
- the kept changes in order, the counts by status, the noise estimate of the keep rule,
  the pace (experiments per hour, the share of wall-clock spent training) and the agent's
  usage.

Not covered: which commits still exist in git (the engine resolves the frontier's commit),
and rows of other branches (make another History).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Iterable, Sequence

from autoresearch.research import keeprule
from autoresearch.research.results import STATUSES, Row


def on_branch(rows: Iterable[Row], branch: str | None) -> list[Row]:
    """The rows of one research branch; rows written without a branch belong to every branch.
    No branch: every row."""
    if not branch:
        return list(rows)
    return [r for r in rows if r.branch in (branch, "")]


def kept_mean(rows: Iterable[Row], commit: str) -> float | None:
    """The value of a kept commit: the mean of its kept, measured runs (None: it has none).

    This is the frontier value wherever one is shown or compared with."""
    values = [r.value for r in rows if r.status == "keep" and keeprule.measured(r) and r.commit[:7] == commit[:7]]
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


def interrupted(row: Row) -> bool:
    """A run stopped from outside (Ctrl-C, SIGTERM, a killed engine): it says nothing about the
    code. Files written before the status existed recorded these as crashes "interrupted"."""
    return row.status == "interrupted" or (row.status == "crash" and row.reason.startswith("interrupted"))


@dataclass(frozen=True)
class KeptChange:
    """One kept commit: where it first appears, its value and how it moved the frontier."""

    index: int  # of its first row
    commit: str
    value: float  # the mean of its kept runs
    runs: int
    delta: float | None  # against the kept commit before it; None for the first
    baseline: bool
    description: str
    reason: str
    agent: str


@dataclass(frozen=True)
class Pace:
    elapsed_seconds: float | None  # from the first experiment's start to the last row
    experiments_per_hour: float | None
    training_seconds: float | None
    training_share: float | None  # of the elapsed wall-clock, at most 1


@dataclass(frozen=True)
class Usage:
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None


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
        return [r for r in self.rows if r.status == "keep" and keeprule.measured(r) and r.commit[:7] == commit[:7]]

    @cached_property
    def series(self) -> list[float | None]:
        """The frontier value after each row (None before anything was kept)."""
        out: list[float | None] = []
        current: float | None = None
        seen: set[str] = set()
        frontier = ""
        for i, r in enumerate(self.rows):
            if r.status == "keep" and keeprule.measured(r):
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

    # -- the baseline --------------------------------------------------------------

    @cached_property
    def baseline_runs(self) -> list[float]:
        return [r.value for r in self.rows if r.kind == "baseline" and keeprule.measured(r)]

    @cached_property
    def baseline(self) -> float | None:
        """The mean of the baseline runs; for a file without kinds, its first measured row."""
        if self.baseline_runs:
            return keeprule.mean(self.baseline_runs)
        return next((r.value for r in self.rows if keeprule.measured(r)), None)

    @cached_property
    def baseline_indices(self) -> frozenset[int]:
        """The rows that are baseline runs: the kept ones of kind baseline; in a file without
        kinds (the original project's) its first measured row, as `baseline` takes it."""
        marked = {i for i, r in enumerate(self.rows) if r.kind == "baseline" and r.status == "keep"}
        if marked or any(r.kind == "baseline" for r in self.rows):
            return frozenset(marked)
        first = next((i for i, r in enumerate(self.rows) if keeprule.measured(r)), None)
        return frozenset({first}) if first is not None and self.rows[first].status == "keep" else frozenset()

    def label(self, index: int) -> str:
        """What a row is called where runs are counted: "baseline", "interrupted", or its status."""
        if index in self.baseline_indices:
            return "baseline"
        return "interrupted" if interrupted(self.rows[index]) else self.rows[index].status

    @cached_property
    def baseline_count(self) -> int:
        if self.baseline_runs:
            return len(self.baseline_runs)
        return 1 if self.baseline is not None else 0

    @cached_property
    def improvement(self) -> float | None:
        """How much better the frontier is than the baseline (positive: better)."""
        if self.baseline is None or self.frontier_value is None:
            return None
        return keeprule.improvement(self.baseline, self.frontier_value, self.direction)

    @cached_property
    def improvement_pct(self) -> float | None:
        if self.improvement is None or not self.baseline:
            return None
        return 100.0 * self.improvement / abs(self.baseline)

    # -- what happened -----------------------------------------------------------

    @cached_property
    def kept_changes(self) -> list[KeptChange]:
        order: list[str] = []
        groups: dict[str, list[tuple[int, Row]]] = {}
        for i, r in enumerate(self.rows):
            if r.status == "keep" and keeprule.measured(r):
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
                delta=None if previous is None else value - previous, baseline=first.kind == "baseline",
                description=first.description, reason=next((r.reason for _, r in group if r.reason), ""),
                agent=first.agent,
            ))
            previous = value
        return out

    @cached_property
    def frontier_change(self) -> KeptChange | None:
        """The kept change that is the frontier now."""
        return self.kept_changes[-1] if self.kept_changes else None

    @cached_property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for r in self.rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def not_kept_streak(self) -> int:
        """How many rows since the last keep."""
        streak = 0
        for r in reversed(self.rows):
            if r.status == "keep":
                break
            streak += 1
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
        return any(keeprule.measured(r) for r in self.rows)

    def band(self, min_delta: float) -> float:
        """The noise band drawn around the frontier (two sigma of one run)."""
        return keeprule.band(min_delta, self.noise.sigma)

    # -- pace and usage ---------------------------------------------------------------

    @cached_property
    def pace(self) -> Pace:
        stamped = [(t, r) for t, r in ((parse_time(r.timestamp), r) for r in self.rows) if t is not None]
        train = [r.training_seconds for r in self.rows if r.training_seconds is not None]
        secs = [r.seconds for r in self.rows if r.seconds is not None]
        elapsed = None
        if len(stamped) >= 2:
            first_t, first = min(stamped, key=lambda p: p[0])
            # a row is stamped when it is recorded, i.e. at the end of its experiment
            elapsed = (max(t for t, _ in stamped) - first_t) + (first.seconds or 0.0)
        elif secs:
            elapsed = sum(secs)
        per_hour = len(self.rows) / (elapsed / 3600.0) if elapsed and elapsed > 0 else None
        share = min(sum(train) / elapsed, 1.0) if train and elapsed and elapsed > 0 else None
        return Pace(elapsed, per_hour, sum(train) if train else None, share)

    @cached_property
    def usage(self) -> Usage:
        def total(values: Sequence):
            present = [v for v in values if v is not None]
            return sum(present) if present else None

        return Usage(total([r.tokens_in for r in self.rows]), total([r.tokens_out for r in self.rows]),
                     total([r.cost_usd for r in self.rows]))
