"""Stopping a hopeless run early (the `early_stop` setting, off by default: docs/keep-rule.md).

A candidate's first run prints its training curve (`step N | progress P% | loss L` lines). The
frontier's measured runs printed theirs. Once the candidate is past START of its budget, a
curve far above the frontier's at the same share of the budget (by more than MARGIN of the
frontier's loss there and three times the spread between the frontier's own runs) stops the
run: it is recorded as a discard whose cause is `hopeless`, without a measurement.

The curve is the trainer's own output, so it may only ever stop a run, never keep one: a
trainer that prints a low curve goes on to be measured like any other; one that prints a high
curve only loses its own run. The frontier's curve comes from runs of kept code, written by the
same agent: a frontier that printed a curve too low makes later candidates stop, which slows
the research and never keeps anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoresearch import runlog

EARLY = "stopped early"  # how the reason of a run stopped here begins
START = 0.3  # no stop before this share of the budget (warm-up, compilation, the first noisy steps)
MARGIN = 0.03  # the candidate's loss must be this share above the frontier's there ...
SPREAD = 3.0  # ... and this many times the spread between the frontier's runs
POINTS = 21  # the frontier's curve, sampled at this many shares of the budget


def points(log: str) -> list[tuple[float, float]]:
    """(share of the budget, training loss) of each progress line of a run's log."""
    out = []
    for p in runlog.curve(log):
        progress, loss = p.fields.get("progress"), p.fields.get("loss")
        if isinstance(progress, float) and isinstance(loss, float):
            out.append((progress / 100.0, loss))
    return out


def _at(curve: list[tuple[float, float]], x: float) -> float | None:
    """The curve's loss at share `x` (linear between its points; None outside them)."""
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


@dataclass(frozen=True)
class Reference:
    """The frontier's curve: its runs' mean loss and their spread at POINTS shares of the budget."""

    mean: tuple[float | None, ...]
    spread: tuple[float, ...]

    @classmethod
    def of(cls, logs: list[str]) -> "Reference | None":
        curves = [c for c in map(points, logs) if len(c) >= 2]
        if not curves:
            return None
        means, spreads = [], []
        for k in range(POINTS):
            here = [y for y in (_at(c, k / (POINTS - 1)) for c in curves) if y is not None]
            means.append(sum(here) / len(here) if here else None)
            spreads.append(max(here) - min(here) if len(here) > 1 else 0.0)
        return cls(tuple(means), tuple(spreads))

    def at(self, x: float) -> tuple[float, float] | None:
        """(the frontier's mean loss, the spread of its runs) at share `x`, between its samples."""
        k = min(POINTS - 2, int(x * (POINTS - 1)))
        lo, hi = self.mean[k], self.mean[k + 1]
        if lo is None or hi is None:
            return None
        t = x * (POINTS - 1) - k
        return lo + (hi - lo) * t, max(self.spread[k], self.spread[k + 1])

    def verdict(self, log: str) -> str:
        """Why the run whose log this is should stop now ("" while it should go on): its last two
        progress points past START both above the bar (one noisy point is not enough)."""
        found = [(x, loss) for x, loss in points(log) if START <= x < 1.0]
        if len(found) < 2:
            return ""
        over = []
        for x, loss in found[-2:]:
            here = self.at(x)
            if here is None:
                return ""
            ref, spread = here
            bar = ref + max(MARGIN * abs(ref), SPREAD * spread)
            if loss <= bar:
                return ""
            over.append((x, loss, ref, bar))
        x, loss, ref, bar = over[-1]
        return (f"{EARLY} at {100 * x:.0f} % of its budget: training loss {loss:.4f} against the frontier's "
                f"{ref:.4f} there (more than {bar - ref:.4f} above; the curve can only stop a run, never keep one)")
