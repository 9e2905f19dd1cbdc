"""Monte-Carlo of the keep rule: the real `keeprule.weigh` and `keeprule.decide` on rows built
the way the engine builds them, against a synthetic metric.

Each simulated line of research: the baseline run twice, then experiments, each a fresh
change of known true effect (in sigmas of one run, positive: better), decided exactly as the
engine decides: one run at a time, the candidate's or a re-run of the frontier as the test
asks, the rows written in order. A kept change becomes the frontier. Optionally the metric
drifts by a fixed fraction of sigma per run (negative: every later run looks better), the
machine's level wanders (a random walk), or the noise has heavy tails.

Scenarios, each over 40 experiments:
- null: nothing changes (drift 0, -0.1 sigma and +0.1 sigma per run; a level wandering by
  0.3 sigma per run; Student's t noise with 3 degrees of freedom);
- wins of 1, 2 and 3 sigma, each one better than the frontier it is tried against;
- mixed: nulls and 2-sigma wins alternating.
It prints the share kept, the branches that keep more than 2 of 40 nulls or fewer than 32 of 40
2-sigma wins (the figures of docs/keep-rule.md), and the runs per experiment.

    python bench/keep_rule_sim.py [--branches 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import random

from autoresearch.research import keeprule
from autoresearch.research.results import Row

SIGMA = 0.01  # one run's noise, 1 % of a metric near 1


def line(effects: list[float], *, drift: float, rng: random.Random, rule: keeprule.Rule,
         wander: float = 0.0, tails: bool = False) -> tuple[list[bool], int]:
    """Run one line of research; (kept per experiment, runs made by the experiments)."""
    rows: list[Row] = []
    clock = [0]
    machine = [0.0]  # the machine's own level: a random walk of `wander` sigma per run

    def noise() -> float:
        if not tails:
            return rng.gauss(0.0, SIGMA)
        # Student's t with 3 degrees of freedom, scaled to unit variance: rare large outliers
        t = rng.gauss(0.0, 1.0) / ((rng.gauss(0, 1) ** 2 + rng.gauss(0, 1) ** 2 + rng.gauss(0, 1) ** 2) / 3) ** 0.5
        return SIGMA * t / 3 ** 0.5

    def run(commit: str, level: float, status: str, kind: str) -> Row:
        machine[0] += wander * SIGMA * rng.gauss(0.0, 1.0)
        value = level + drift * SIGMA * clock[0] + machine[0] + noise()
        clock[0] += 1
        return Row(commit, value, 0.0, status, "", kind=kind)

    level, frontier = 1.0, "base000"
    rows += [run(frontier, level, "keep", "baseline") for _ in range(2)]
    kept, runs = [], 0
    for n, effect in enumerate(effects):
        candidate, target = f"c{n:06d}", level - effect * SIGMA
        start = len(rows)
        block = [run(candidate, target, "discard", "experiment")]
        while True:
            decision = keeprule.decide(keeprule.weigh(rows + block, frontier, candidate, start=start, rule=rule), rule)
            if decision.action != "more":
                break
            if decision.evidence.rerun_frontier:
                block.append(run(frontier, level, "keep", "confirm"))
            else:
                block.append(run(candidate, target, "discard", "confirm"))
        keep = decision.action == "keep"
        rows += [r if r.commit == frontier else Row(r.commit, r.value, 0.0, "keep" if keep else "discard", "", kind=r.kind)
                 for r in block]
        runs += len(block)
        kept.append(keep)
        if keep:
            level, frontier = target, candidate
    return kept, runs


SCENARIOS = [  # (label, effects, drift, options)
    ("40 nulls", [0.0] * 40, 0.0, {}),
    ("40 nulls, drift -0.1 sigma/run", [0.0] * 40, -0.1, {}),
    ("40 nulls, drift +0.1 sigma/run", [0.0] * 40, 0.1, {}),
    ("40 nulls, level wandering 0.3 sigma/run", [0.0] * 40, 0.0, {"wander": 0.3}),
    ("40 nulls, heavy tails (t, 3 dof)", [0.0] * 40, 0.0, {"tails": True}),
    ("40 wins of 1 sigma", [1.0] * 40, 0.0, {}),
    ("40 wins of 2 sigma", [2.0] * 40, 0.0, {}),
    ("40 wins of 3 sigma", [3.0] * 40, 0.0, {}),
    ("mixed: 20 nulls, 20 wins of 2 sigma", [0.0, 2.0] * 20, 0.0, {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--branches", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rule = keeprule.Rule()
    print(f"{rule}; {args.branches} lines of 40 experiments per scenario")
    print("| scenario | kept | lines failing the figure | runs per experiment |")
    print("|---|---|---|---|")
    for label, effects, drift, options in SCENARIOS:
        kept = fails = runs = 0
        for _ in range(args.branches):
            k, r = line(effects, drift=drift, rng=rng, rule=rule, **options)
            kept, runs = kept + sum(k), runs + r
            if all(e == 0 for e in effects):
                fails += sum(k) > 2
            elif effects == [2.0] * 40:
                fails += sum(k) < 32
        total = args.branches * len(effects)
        fail = f"{fails / args.branches:.1%}" if all(e == 0 for e in effects) or effects == [2.0] * 40 else "—"
        print(f"| {label} | {kept / total:.1%} | {fail} | {runs / total:.2f} |", flush=True)


if __name__ == "__main__":
    main()
