"""The noise-aware keep rule: pure functions over numbers and result rows, no I/O.

A change is kept only if it beats the frontier by more than the run-to-run noise:

    improvement > bar = max(min_delta, z * sigma)

where `improvement` is frontier minus value for a lower-is-better metric (value minus
frontier when higher is better), the frontier is the mean of the runs of the kept code, and
`sigma` is the standard deviation of one run of unchanged code. A change whose first run
wins by more than 0 but not more than the bar is run once more (a confirm run) and kept only
if the mean of its two runs clears the bar and both runs beat the frontier. A change within
the noise (improvement > -bar) that makes the editable files smaller, counting code lines
only, is kept as a simplification.

Sigma is pooled over every group of repeated runs of the same code seen so far (the
baseline runs and each confirm pair), so it sharpens as the research goes on. Two baseline
runs alone give one degree of freedom, an estimate that comes out below half the true
sigma about one time in three, so three safeguards hold while the estimate is young:
- it is pulled towards a prior: one degree of freedom worth of `PRIOR_REL` times the
  baseline's magnitude;
- it is inflated by Student's t over the normal quantile for its degrees of freedom
  (x2.2 with the baseline pair alone, x1.25 at 6, towards x1);
- until `EARLY_DOF` degrees of freedom are in, every win is confirmed, however large.
docs/keep-rule.md has the numbers behind these choices.

Not covered: noise that drifts over time (a machine that gets slower overnight) and
metrics near zero, where the relative prior vanishes and `min_delta` is the only floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# The prior on the relative run-to-run noise, and its weight in degrees of freedom: 0.2 %
# of the metric, about the seed-to-seed spread of the reference run on an H100. Noisier
# setups (short CPU budgets) are covered by the measured repeats and the t inflation; a
# larger prior would block real wins on quiet machines for dozens of experiments.
PRIOR_REL = 0.002
PRIOR_DOF = 1.0
EARLY_DOF = 6  # below this many measured degrees of freedom, every win is confirmed
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

    @property
    def early(self) -> bool:
        return self.dof < EARLY_DOF

    def describe(self) -> str:
        if self.dof == 0:
            return f"sigma {self.sigma:.6f} (prior only: nothing run twice yet)"
        return (f"sigma {self.sigma:.6f} ({self.pooled:.6f} pooled from {self.runs} repeated runs, "
                f"{self.dof:g} dof, x{self.inflation:.2f} for so few)")


@dataclass(frozen=True)
class Decision:
    """What to do with a candidate: keep, discard, or confirm (run it once more)."""

    action: str  # "keep" | "discard" | "confirm"
    improvement: float  # of the mean of the runs over the frontier; > 0 is better
    bar: float
    reason: str
    simplification: bool = False


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
    weight = prior_dof + dof
    if weight <= 0:
        return Noise(0.0, 0, 0, prior_sigma, prior_dof)
    return Noise(math.sqrt((prior_dof * prior_sigma**2 + ss) / weight), dof, runs, prior_sigma, prior_dof)


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
    reference = baseline_value(rows)
    if reference is None:
        values = [r.value for r in rows if measured(r)]
        reference = mean(values) if values else 0.0
    return pooled(repeat_groups(rows), prior_rel * abs(reference), prior_dof)


def bar(min_delta: float, z: float, sigma_value: float) -> float:
    """The margin a change must win by."""
    return max(min_delta, z * sigma_value)


def code_lines(text: str) -> int:
    """Lines of code: blank lines and comment-only lines aside (docstrings count as code)."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def decide(
    values: Sequence[float],
    frontier: float,
    *,
    direction: str,
    min_delta: float,
    z: float,
    sigma: float,
    confirm: bool = True,
    smaller: bool = False,
    early: bool = False,
) -> Decision:
    """The verdict on a candidate measured `len(values)` times (1, or 2 after a confirm run).

    `early`: the noise estimate is still young, so any win is confirmed before it is kept.
    """
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError("decide() needs finite measurements")
    gain = improvement(frontier, mean(values), direction)
    margin = bar(min_delta, z, sigma)
    single = len(values) == 1
    runs = "1 run" if single else f"the mean of {len(values)} runs"
    every = all(improvement(frontier, v, direction) > 0 for v in values)
    if gain > margin and (single and not (early and confirm) or not single and every):
        reason = f"better by {gain:.6f} > bar {margin:.6f} ({runs})"
        return Decision("keep", gain, margin, reason if single else f"confirmed: {reason}")
    if smaller and gain > -margin:
        return Decision("keep", gain, margin,
                        f"simplification: fewer lines of code, {gain:+.6f} is within the noise (bar {margin:.6f})", True)
    if single and gain > 0 and confirm:
        why = "a win while the noise estimate is young" if gain > margin else f"better by {gain:.6f} <= bar {margin:.6f}"
        return Decision("confirm", gain, margin, f"{why}: run again to confirm")
    if not single:
        if gain > margin:
            return Decision("discard", gain, margin, f"not confirmed: one of the runs is not better than the frontier "
                                                     f"(mean {gain:+.6f}, bar {margin:.6f})")
        return Decision("discard", gain, margin, f"not confirmed: {runs} {gain:+.6f} vs the frontier, bar {margin:.6f}")
    if gain > 0:
        return Decision("discard", gain, margin, f"better by {gain:.6f}, within the noise (bar {margin:.6f})")
    return Decision("discard", gain, margin, f"not better ({gain:+.6f}, bar {margin:.6f})")
