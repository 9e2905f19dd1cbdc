"""The keep rule: a sequential test on the evidence, pure functions over numbers and rows, no I/O.

A candidate is kept when the evidence that it beats the frontier by more than `min_delta`
is strong, and it is run again while the evidence is neither strong nor weak:

- the evidence is the difference of two means, the frontier's runs and the candidate's
  runs, over its standard error `sigma * sqrt(1/n_frontier + 1/n_candidate)`; P(better) is
  the normal probability of that z (sigma inflated by Student's t while it is young);
- after its first run a candidate with P(better) <= `first_stop` stops there (one run for
  a clear loser); from its second run on it is kept at P(better) >= `p_keep`, stops at
  P(better) <= `stop`, and runs again otherwise, up to `max_runs` runs;
- every further run of the candidate comes after a fresh run of the frontier (A-B-A): the
  frontier runs made beside the candidate must also lose to it (`local_z`), so a drift of
  the machine's speed cancels out of that comparison;
- the frontier's value is taken from its runs made after it was kept (the runs that got a
  candidate kept were selected for being lucky) and no older than `window` runs, falling
  back to all of its runs when there are none;
- a steady drift found in the repeated runs of the line (a slope over time beyond
  `drift_z` standard errors) is taken out of every value before the means are compared,
  its uncertainty added to the standard error;
- a candidate that leaves fewer lines of code and is not worse beyond the noise (P(better)
  above `SIMPLER`) is kept as a simplification, once the test has stopped without a keep.

docs/keep-rule.md has the figures behind these choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterable, Sequence

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

MEASURED = ("keep", "discard")  # statuses whose rows carry a real measurement


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
    return Noise(_shrunk(ss, dof, prior_sigma, prior_dof), dof, runs, prior_sigma, prior_dof)


def _shrunk(ss: float, dof: int, prior_sigma: float, prior_dof: float) -> float:
    """sqrt((prior_dof * prior_sigma^2 + ss) / (prior_dof + dof)): the pooled sigma with the prior mixed in."""
    return math.sqrt((prior_dof * prior_sigma ** 2 + ss) / (prior_dof + dof))


def measured(row) -> bool:
    return row.status in MEASURED and math.isfinite(row.value)


def repeat_groups(rows) -> list[list[float]]:
    """Values of rows that measured the same code: grouped by commit, measured rows only."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if measured(r):
            groups.setdefault(r.commit[:7], []).append(r.value)
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

RAN = ("keep", "discard", "crash", "interrupted")  # statuses of rows that used the machine
SIMPLER = 0.05  # a simplification is kept while P(better) stays above this: not worse beyond the noise
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Rule:
    """The settings of the test (config [keep]); docs/keep-rule.md has the figures behind them."""

    p_keep: float = 0.96  # keep at this P(better), from the second run on
    first_stop: float = 0.58  # after one run, stop at or below this P(better)
    stop: float = 0.69  # from the second run on, stop at or below this
    max_runs: int = 5  # runs of one candidate at most
    min_delta: float = 0.001  # a win must also matter: P(better) is P(better by more than this)
    window: int = 10  # frontier runs older than this many runs are not compared with
    drift_z: float = 1.5  # a slope over time beyond this many standard errors is taken out
    local_z: float = 0.5  # the A-B-A frontier runs must lose to the candidate by this many standard errors


@dataclass(frozen=True)
class Evidence:
    """What the runs say about a candidate against the frontier."""

    gain: float  # the candidate's mean over the frontier's, positive: better (drift taken out)
    se: float  # its standard error
    p_better: float  # P(gain > min_delta)
    runs: int  # the candidate's runs
    frontier_runs: int  # the frontier's runs compared with
    local_z: float | None  # against the frontier runs made beside it (None: none yet)
    drift: float  # the slope per run taken out of the values (0: none found)
    sigma: float

    def describe(self) -> str:
        runs = "1 run" if self.runs == 1 else f"{self.runs} runs"
        text = f"P(better) {self.p_better:.2f} over {runs}, {self.gain:+.6f} ± {self.se:.6f} vs {self.frontier_runs} of the frontier"
        if self.drift:
            text += f", drift {self.drift:+.2g}/run taken out"
        return text


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


def _spread(rows: Sequence, at: list[int]) -> tuple[float, int, float, float]:
    """(sum of squares, dof, sum of (t - mean t)(y - mean y), sum of (t - mean t)^2) within commits."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for r, t in zip(rows, at):
        if measured(r):
            groups.setdefault(r.commit[:7], []).append((t, r.value))
    ss = sxy = sxx = 0.0
    dof = 0
    for points in groups.values():
        if len(points) < 2:
            continue
        mt = mean([t for t, _ in points])
        my = mean([y for _, y in points])
        ss += sum((y - my) ** 2 for _, y in points)
        sxy += sum((t - mt) * (y - my) for t, y in points)
        sxx += sum((t - mt) ** 2 for t, _ in points)
        dof += len(points) - 1
    return ss, dof, sxy, sxx


def _frontier_runs(rows: Sequence, at: list[int], frontier: str, now: int, window: int) -> list[int]:
    """Indices of the frontier's runs to compare with: those made after it was kept (a baseline's
    all) within the window; else every one of its runs."""
    mine = [i for i, r in enumerate(rows) if r.commit[:7] == frontier[:7] and r.status == "keep" and measured(r)]
    if not mine:
        return []
    first = mine[0]
    selecting = set()
    if rows[first].kind != "baseline":  # the runs that got it kept: contiguous from its first row
        i = first
        while i < len(rows) and rows[i].commit[:7] == frontier[:7]:
            selecting.add(i)
            i += 1
    fresh = [i for i in mine if i not in selecting and at[i] >= now - window]
    return fresh or mine


def weigh(rows: Sequence, frontier: str, candidate: str, *, start: int, direction: str = "lower",
          rule: Rule = Rule(), prior_rel: float = PRIOR_REL, prior_dof: float = PRIOR_DOF) -> Evidence:
    """The evidence on `candidate` against `frontier` in `rows` (oldest first, the candidate's
    runs and the frontier's re-runs beside it from index `start` on)."""
    at = _positions(rows)
    now = (at[-1] + (rows[-1].status in RAN)) if rows else 0
    ss, dof, sxy, sxx = _spread(rows, at)
    s0 = prior_rel * abs(_reference(rows))
    raw = _shrunk(ss, dof, s0, prior_dof) if prior_dof + dof > 0 else 0.0
    slope = slope_var = 0.0
    if sxx > 0 and dof >= 2 and raw > 0 and abs(sxy / sxx) * math.sqrt(sxx) / raw > rule.drift_z:
        slope = sxy / sxx
        ss, dof = ss - sxy * sxy / sxx, dof - 1
        raw = _shrunk(ss, dof, s0, prior_dof)
    sigma = Noise(raw, dof, 0, s0, prior_dof).sigma  # inflated by Student's t like the noise the views show
    if slope:
        slope_var = sigma ** 2 / sxx

    def values(indices: list[int]) -> tuple[float, float]:  # (mean value with drift out, mean time)
        return mean([rows[i].value - slope * at[i] for i in indices]), mean([at[i] for i in indices])

    f_idx = _frontier_runs(rows, at, frontier, now, rule.window)
    c_idx = [i for i in range(start, len(rows)) if rows[i].commit[:7] == candidate[:7] and math.isfinite(rows[i].value)
             and rows[i].status in MEASURED]
    if not f_idx or not c_idx:
        raise ValueError("weigh() needs measured runs of the frontier and of the candidate")
    (fm, ft), (cm, ct) = values(f_idx), values(c_idx)
    gain = improvement(fm, cm, direction)
    se = math.sqrt(sigma ** 2 * (1 / len(f_idx) + 1 / len(c_idx)) + (ct - ft) ** 2 * slope_var)
    p = _NORMAL.cdf((gain - rule.min_delta) / se) if se > 0 else float(gain > rule.min_delta)
    beside = [i for i in range(start, len(rows)) if rows[i].commit[:7] == frontier[:7] and measured(rows[i])]
    local = None
    if beside:
        lm, _ = values(beside)
        lse = sigma * math.sqrt(1 / len(beside) + 1 / len(c_idx))
        local = (improvement(lm, cm, direction) - rule.min_delta) / lse if lse > 0 else math.inf
    return Evidence(gain, se, p, len(c_idx), len(f_idx), local, slope, sigma)


def decide(ev: Evidence, rule: Rule = Rule(), *, smaller: bool = False) -> Decision:
    """Keep, discard, or run once more. Never keeps on one run: a single run of a wall-clock
    budget is tied to the machine's speed at that moment."""
    p, n = ev.p_better, ev.runs
    if n >= 2 and p >= rule.p_keep and (ev.local_z is None or ev.local_z > rule.local_z):
        return Decision("keep", ev, f"better: {ev.describe()} (keeps at {rule.p_keep:g})")
    if n == 1 and p <= rule.first_stop:
        why = f"not better: {ev.describe()} (stops at {rule.first_stop:g} after one run)"
    elif n >= 2 and p <= rule.stop:
        why = f"not better: {ev.describe()} (stops at {rule.stop:g})"
    elif n >= rule.max_runs:
        if p >= rule.p_keep:
            why = (f"not confirmed: the frontier, re-run beside it, did not lose to it "
                   f"(z {ev.local_z:.2f} <= {rule.local_z:g}); {ev.describe()}")
        else:
            why = f"not shown better after {n} runs: {ev.describe()} (keeps at {rule.p_keep:g})"
    else:
        return Decision("more", ev, f"{ev.describe()}: run again beside the frontier")
    if smaller and p > SIMPLER:
        return Decision("keep", ev, f"simplification: fewer lines of code, within the noise ({ev.describe()})", True)
    return Decision("discard", ev, why)
