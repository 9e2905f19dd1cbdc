"""The keep rule: a sequential test on the evidence, pure functions over numbers and rows, no I/O.

A candidate is kept when the evidence that it beats the frontier by more than `min_delta`
is strong, and it is run again while the evidence is neither strong nor weak:

- the evidence is the candidate's offset from the frontier, estimated from both commits' runs
  by generalised least squares, and its standard error; P(better) is the normal probability
  that the offset exceeds `min_delta` (sigma inflated by Student's t while it is young);
- the machine's speed is taken to wander (a random walk of `wander` sigma per run), so a
  frontier run made beside the candidate counts for more than one made long ago: a drift of
  the machine cancels out of the side-by-side comparison instead of being fitted and
  extrapolated;
- the runs that got the frontier kept were selected for looking good, so they are taken to
  share an unknown luck of `luck` sigma: the frontier's fresh re-runs outweigh them;
- after its first run a candidate with P(better) <= `first_stop` stops there (one run for
  a clear loser); from its second run on it is kept at P(better) >= `p_keep`, stops at
  P(better) <= `stop`, and runs again otherwise, up to `max_runs` runs;
- the next run is the frontier's or the candidate's, whichever shrinks the standard error
  more, with at most one frontier re-run per candidate run; and no keep without a frontier
  re-run beside the candidate that also loses to it by `local_z` standard errors (A-B-A), so
  that a sudden change of the machine's speed is not taken for a win;
- a candidate that leaves fewer lines of code and is not worse beyond the noise (P(better)
  above `SIMPLER`) is kept as a simplification, once the test has stopped without a keep, and
  only when it and the frontier were measured beside each other: a successful re-run of the
  frontier next to a successful run of the candidate. Until there is one the frontier runs
  again (up to `max_runs` runs of the candidate); without one it is discarded.

docs/keep-rule.md has the figures behind these choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Iterable, Sequence

from autoresearch.research.results import MEASURED  # statuses whose rows carry a real measurement

# The prior on the relative run-to-run noise, and its weight in degrees of freedom: 0.2 %
# of the metric, about the seed-to-seed spread of the reference run on an H100. Noisier
# setups (short CPU budgets) are covered by the measured repeats and the t inflation; a
# larger prior would block real wins on quiet machines for dozens of experiments.
PRIOR_REL = 0.002
PRIOR_DOF = 1.0
# Student's t, 97.5 % quantile, for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)



def t975(dof: float) -> float:
    """Student's t 97.5 % quantile (dof rounded down; 1.96 + 2.4/dof beyond 30)."""
    n = int(dof)
    if n < 1:
        return _T975[0]
    return _T975[n - 1] if n <= len(_T975) else 1.96 + 2.4 / n


@dataclass(frozen=True)
class Noise:
    """The run-to-run noise estimate."""

    pooled: float  # the pooled estimate, prior mixed in
    dof: float  # degrees of freedom from measured repeats (the prior not counted)
    runs: int  # rows used (members of groups of two or more)
    prior: float  # the prior sigma mixed in
    prior_dof: float = PRIOR_DOF

    @property
    def inflation(self) -> float:
        return t975(self.dof + self.prior_dof) / 1.96

    @property
    def sigma(self) -> float:
        """The sigma the rule uses: the pooled estimate inflated for its few degrees of freedom."""
        return self.pooled * self.inflation

    def describe(self) -> str:
        if self.dof == 0:
            return f"sigma {self.sigma:.6f} (prior only: nothing run twice yet)"
        return (f"sigma {self.sigma:.6f} ({self.pooled:.6f} pooled from {self.runs} repeated runs, "
                f"{self.dof:g} dof, x{self.inflation:.2f} for so few)")


def improvement(frontier: float, value: float, direction: str = "lower") -> float:
    """How much better `value` is than `frontier` (positive: better)."""
    return frontier - value if direction == "lower" else value - frontier


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def pooled(groups: Iterable[Sequence[float]], prior_sigma: float, prior_dof: float = PRIOR_DOF) -> Noise:
    """Pooled standard deviation of repeated runs, shrunk towards `prior_sigma`.

    sigma^2 = (prior_dof * prior_sigma^2 + sum of squared deviations) / (prior_dof + dof),
    dof = sum over groups of (runs - 1).
    """
    ss, dof, runs = 0.0, 0, 0
    for values in groups:
        values = [v for v in values if math.isfinite(v)]
        if len(values) < 2:
            continue
        m = mean(values)
        ss += sum((v - m) ** 2 for v in values)
        dof += len(values) - 1
        runs += len(values)
    if prior_dof + dof <= 0:
        return Noise(0.0, 0, 0, prior_sigma, prior_dof)
    return Noise(math.sqrt((prior_dof * prior_sigma ** 2 + ss) / (prior_dof + dof)), dof, runs, prior_sigma, prior_dof)


def measured(row) -> bool:
    return row.status in MEASURED and math.isfinite(row.value) and getattr(row, "cause", "") != "hopeless"


def repeat_groups(rows) -> list[list[float]]:
    """Values of rows that measured the same code: grouped by commit, measured rows only; a
    commit's runs before a `fresh` re-run (the machine changed under them) in a group apart."""
    groups: dict[tuple[str, int], list[float]] = {}
    starts: dict[str, int] = {}
    for r in rows:
        if measured(r):
            commit = r.commit[:7]
            if getattr(r, "fresh", False):
                starts[commit] = starts.get(commit, 0) + 1
            groups.setdefault((commit, starts.get(commit, 0)), []).append(r.value)
    return [v for v in groups.values() if len(v) > 1]


def baseline_value(rows) -> float | None:
    values = [r.value for r in rows if r.kind == "baseline" and measured(r)]
    return mean(values) if values else None


def noise(rows, prior_rel: float = PRIOR_REL, prior_dof: float = PRIOR_DOF) -> Noise:
    """The noise estimate from the rows of one line of research."""
    return pooled(repeat_groups(rows), prior_rel * abs(_reference(rows)), prior_dof)


def band(min_delta: float, sigma_value: float) -> float:
    """The noise band the views draw around the frontier: two sigma of one run (at least min_delta)."""
    return max(min_delta, 2.0 * sigma_value)


def code_lines(text: str) -> int:
    """Lines of code: blank lines and comment-only lines aside (docstrings count as code)."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


# -- the sequential test ---------------------------------------------------------------

RAN = ("keep", "discard", "crash", "interrupted", "stale")  # statuses of rows that used the machine
SIMPLER = 0.05  # a simplification is kept while P(better) stays above this: not worse beyond the noise
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Rule:
    """The settings of the test (config [keep]); docs/keep-rule.md has the figures behind them."""

    p_keep: float = 0.96  # keep at this P(better), from the second run on
    first_stop: float = 0.45  # after one run, stop at or below this P(better)
    stop: float = 0.55  # from the second run on, stop at or below this
    max_runs: int = 5  # runs of one candidate at most
    min_delta: float = 0.001  # a win must also matter: P(better) is P(better by more than this)
    window: int = 20  # frontier re-runs older than this many runs are not compared with
    wander: float = 0.3  # the machine's level may wander by this many sigma per run (a random walk)
    luck: float = 0.25  # the runs that got the frontier kept may share this much luck, in sigma
    local_z: float = 0.5  # the frontier's re-runs beside the candidate must lose to it by this many standard errors


@dataclass(frozen=True)
class Evidence:
    """What the runs say about a candidate against the frontier.

    `gain` (positive: better) is what the decisions use; `delta` is the same offset as people
    are shown every difference: the change of the metric, candidate minus frontier, in the
    metric's units (for a lower-is-better metric a win is negative)."""

    gain: float  # the candidate's offset from the frontier, positive: better
    delta: float  # the same offset as a change of the metric: candidate minus frontier
    se: float  # its standard error
    p_better: float  # P(gain > min_delta)
    runs: int  # the candidate's runs
    frontier_runs: int  # the frontier's runs compared with
    sigma: float  # one run's noise
    beside: int = 0  # the frontier's re-runs among the candidate's runs
    local_z: float = math.inf  # against those re-runs alone, in standard errors (inf: none yet)
    rerun_frontier: bool = False  # if it runs again: the frontier's turn (else the candidate's)
    adjacent: int = 0  # the frontier's re-runs right before or after a measured run of the candidate

    def describe(self) -> str:
        runs = "1 run" if self.runs == 1 else f"{self.runs} runs"
        return f"P(better) {self.p_better:.2f} over {runs}, {self.delta:+.6f} ± {self.se:.6f} vs {self.frontier_runs} of the frontier"


@dataclass(frozen=True)
class Decision:
    """What to do with a candidate: keep, discard, or `more` (run it again beside the frontier)."""

    action: str  # "keep" | "discard" | "more"
    evidence: Evidence
    reason: str
    simplification: bool = False

    @property
    def improvement(self) -> float:
        return self.evidence.gain


def _positions(rows: Sequence) -> list[int]:
    """Each row's place in time: how many runs came before it."""
    out, n = [], 0
    for r in rows:
        out.append(n)
        n += r.status in RAN
    return out


def _reference(rows: Sequence) -> float:
    """The magnitude the prior on sigma is relative to: the baseline, else the mean measurement."""
    value = baseline_value(rows)
    if value is None:
        values = [r.value for r in rows if measured(r)]
        value = mean(values) if values else 0.0
    return value


def _frontier_runs(rows: Sequence, at: list[int], frontier: str, now: int, window: int) -> tuple[list[int], set[int]]:
    """(indices of the frontier's runs to compare with, those among them that got it kept).

    Its re-runs no older than `window` runs, and the runs that got it kept (all of a baseline's):
    those were selected for looking good, so `weigh` lets them share an unknown luck."""
    mine = [i for i, r in enumerate(rows) if r.commit[:7] == frontier[:7] and r.status == "keep" and measured(r)]
    if not mine:
        return [], set()
    restarts = [i for i in mine if getattr(rows[i], "fresh", False)]
    if restarts:  # the machine changed: its runs from the last fresh start on (History.stale), in the window
        return [restarts[-1]] + [i for i in mine if i > restarts[-1] and at[i] >= now - window], set()
    first = mine[0]
    if rows[first].kind == "baseline":  # its own runs, unselected, and its re-runs in the window
        own = [i for i in mine if rows[i].kind == "baseline"]
        return own + [i for i in mine if i not in own and at[i] >= now - window], set()
    # its own experiment's block: up to the next experiment of another commit
    end = next((i for i in range(first + 1, len(rows))
                if rows[i].kind == "experiment" and rows[i].commit[:7] != frontier[:7]), len(rows))
    selecting = {i for i in mine if i < end}
    fresh = [i for i in mine if i >= end and at[i] >= now - window]
    return sorted(selecting) + fresh, selecting


def _solve(a: list[list[float]], columns: list[list[float]]) -> list[list[float]]:
    """A^-1 times each column, A symmetric positive definite (Cholesky; n is a few dozen at most)."""
    n = len(a)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = a[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = math.sqrt(s) if i == j else s / low[j][j]
    out = []
    for b in columns:
        z = [0.0] * n
        for i in range(n):
            z[i] = (b[i] - sum(low[i][k] * z[k] for k in range(i))) / low[i][i]
        x = [0.0] * n
        for i in reversed(range(n)):
            x[i] = (z[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
        out.append(x)
    return out


@dataclass(frozen=True)
class _Runs:
    """The runs `weigh` compares: when each ran, its value (larger is better), whether it is the
    candidate's, whether it got the frontier kept."""

    times: list[int]
    values: list[float]
    candidate: list[float]  # 1.0 for the candidate's runs, 0.0 for the frontier's
    lucky: list[bool]

    def plus(self, time: int, candidate: bool) -> "_Runs":
        return _Runs(self.times + [time], self.values + [0.0], self.candidate + [float(candidate)], self.lucky + [False])


def _contrast(runs: _Runs, sigma: float, rule: Rule) -> tuple[float, float]:
    """(estimate, variance) of the candidate's offset from the frontier, by generalised least squares.

    The model: value = level(time) + offset * candidate + luck * lucky + noise, where the noise
    has `sigma`, the level is a random walk of `rule.wander` sigma per run (a machine whose speed
    changes: runs far apart say less about each other than runs side by side), and the runs that
    got the frontier kept share one unknown luck of `rule.luck` sigma."""
    t0 = min(runs.times)
    walk, luck = (rule.wander * sigma) ** 2, (rule.luck * sigma) ** 2
    cov = [[walk * (min(ti, tj) - t0) + (sigma ** 2 if i == j else 0.0) + (luck if li and lj else 0.0)
            for j, (tj, lj) in enumerate(zip(runs.times, runs.lucky))]
           for i, (ti, li) in enumerate(zip(runs.times, runs.lucky))]
    w1, wc, wy = _solve(cov, [[1.0] * len(runs.times), runs.candidate, runs.values])
    a11, a12, a22 = sum(w1), sum(wc), sum(c * w for c, w in zip(runs.candidate, wc))
    b1, b2 = sum(wy), sum(c * w for c, w in zip(runs.candidate, wy))
    det = a11 * a22 - a12 * a12
    return (a11 * b2 - a12 * b1) / det, a11 / det


def weigh(rows: Sequence, frontier: str, candidate: str, *, start: int, direction: str = "lower",
          rule: Rule = Rule(), prior_rel: float = PRIOR_REL, prior_dof: float = PRIOR_DOF) -> Evidence:
    """The evidence on `candidate` against `frontier` in `rows` (oldest first, the candidate's
    runs and the frontier's re-runs beside it from index `start` on)."""
    at = _positions(rows)
    now = (at[-1] + (rows[-1].status in RAN)) if rows else 0
    sigma = noise(rows, prior_rel, prior_dof).sigma  # inflated by Student's t while young, as the views show it
    f_idx, selecting = _frontier_runs(rows, at, frontier, now, rule.window)
    c_idx = [i for i in range(start, len(rows)) if rows[i].commit[:7] == candidate[:7] and measured(rows[i])]
    if not f_idx or not c_idx:
        raise ValueError("weigh() needs measured runs of the frontier and of the candidate")
    sign = -1.0 if direction == "lower" else 1.0  # values turned so that larger is better
    idx = f_idx + c_idx
    runs = _Runs([at[i] for i in idx], [sign * rows[i].value for i in idx],
                 [0.0] * len(f_idx) + [1.0] * len(c_idx), [i in selecting for i in idx])
    beside = [i for i in f_idx if i >= start]
    mine = set(c_idx)  # measured runs of the candidate: a frontier re-run next to one was measured beside it
    adjacent = sum(1 for i in beside if i - 1 in mine or i + 1 in mine)
    if sigma > 0:
        gain, var = _contrast(runs, sigma, rule)
        se = math.sqrt(var)
    else:  # nothing to weigh the runs with: every run the same value
        gain = improvement(mean([rows[i].value for i in f_idx]), mean([rows[i].value for i in c_idx]), direction)
        se = 0.0
    p = _NORMAL.cdf((gain - rule.min_delta) / se) if se > 0 else float(gain > rule.min_delta)
    if not beside and (p >= rule.p_keep or sigma == 0):  # A-B-A: no keep without a frontier re-run beside it
        rerun = True
    elif sigma > 0 and len(beside) < len(c_idx):  # else whichever run tells more, at most one re-run per candidate run
        rerun = _contrast(runs.plus(now, False), sigma, rule)[1] < _contrast(runs.plus(now, True), sigma, rule)[1]
    else:
        rerun = False
    local = math.inf
    if beside:  # a sudden change of the machine's speed, beside the candidate, shows here
        lse = sigma * math.sqrt(1 / len(beside) + 1 / len(c_idx))
        lgain = improvement(mean([rows[i].value for i in beside]), mean([rows[i].value for i in c_idx]), direction)
        local = (lgain - rule.min_delta) / lse if lse > 0 else (math.inf if lgain > rule.min_delta else -math.inf)
    # sign * gain: the offset turned back into the metric's own direction (candidate minus frontier)
    return Evidence(gain, sign * gain, se, p, len(c_idx), len(f_idx), sigma, len(beside), local, rerun, adjacent)


def decide(ev: Evidence, rule: Rule = Rule(), *, smaller: bool = False) -> Decision:
    """Keep, discard, or run once more. Never keeps on one run: a single run of a wall-clock
    budget is tied to the machine's speed at that moment."""
    p, n = ev.p_better, ev.runs
    local = ev.beside > 0 and ev.local_z > rule.local_z
    if n >= 2 and p >= rule.p_keep and local:
        if ev.frontier_runs >= 2:
            return Decision("keep", ev, f"better: {ev.describe()} (keeps at {rule.p_keep:g})")
        if n < rule.max_runs:  # a frontier measured afresh (History.stale) once: never the only evidence
            return Decision("more", replace(ev, rerun_frontier=True),
                            f"{ev.describe()}: the frontier has one run since it was measured afresh: run it again")
    if n == 1 and p <= rule.first_stop:
        why = f"not better: {ev.describe()} (stops at {rule.first_stop:g} after one run)"
    elif n >= 2 and p <= rule.stop:
        why = f"not better: {ev.describe()} (stops at {rule.stop:g})"
    elif n >= rule.max_runs and p >= rule.p_keep and ev.frontier_runs < 2:
        why = f"not confirmed: the frontier was measured only once since it was measured afresh; {ev.describe()}"
    elif n >= rule.max_runs and p >= rule.p_keep and not ev.beside:
        why = f"not confirmed: no re-run of the frontier beside it ran; {ev.describe()}"
    elif n >= rule.max_runs and p >= rule.p_keep:
        why = (f"not confirmed: the frontier's re-runs beside it did not lose to it "
               f"(z {ev.local_z:.2f} <= {rule.local_z:g}); {ev.describe()}")
    elif n >= rule.max_runs:
        why = f"not shown better after {n} runs: {ev.describe()} (keeps at {rule.p_keep:g})"
    else:
        nxt = "the frontier again" if ev.rerun_frontier else "it again"
        return Decision("more", ev, f"{ev.describe()}: run {nxt}")
    if smaller and p > SIMPLER:
        # simpler is kept only on a side-by-side measurement: a successful frontier re-run next
        # to a successful run of the candidate (without one, "no worse" rests on old runs alone)
        if ev.adjacent:
            return Decision("keep", ev, f"simplification: fewer lines of code, within the noise ({ev.describe()})", True)
        if n < rule.max_runs:
            return Decision("more", replace(ev, rerun_frontier=True),
                            f"{ev.describe()}: fewer lines of code, within the noise: run the frontier beside it")
        why = f"not kept as a simplification: no re-run of the frontier beside it succeeded; {why}"
    return Decision("discard", ev, why)
