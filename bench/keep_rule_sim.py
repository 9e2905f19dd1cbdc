"""Monte-Carlo of the keep rule (autoresearch.research.keeprule, the real functions) against plain "lower wins".

Each simulated branch: a baseline run twice, then experiments drawn from a noise model,
decided exactly as the engine decides (frontier = mean of the kept code's runs, sigma pooled
over repeats with the prior, confirm runs, early confirmation). Reports, per noise model:
- null: 20 experiments that change nothing: mean number kept, and the share of branches that
  keep 2 or more; the same for "lower wins" (keep anything below the best so far);
- power: the chance that one real improvement of k sigma is kept, on a fresh branch and
  after 5 earlier confirm pairs.

    python bench/keep_rule_sim.py [--branches 2000]
"""

from __future__ import annotations

import argparse
import random

from autoresearch.research import keeprule

Z, MIN_DELTA = 2.0, 0.001


class Noise:
    def __init__(self, kind: str, rel: float, rng: random.Random):
        self.kind, self.rel, self.rng = kind, rel, rng

    def draw(self, shift: float = 0.0) -> float:
        if self.kind == "gauss":
            return 3.0 * (1 + self.rel * self.rng.gauss(0, 1)) - shift
        return 3.6 - 0.06 * self.rng.randint(5, 9) - shift  # steps in the budget: 5..9

    @property
    def sigma(self) -> float:
        return 3.0 * self.rel if self.kind == "gauss" else 0.06 * (2.0 ** 0.5)


def run_branch(noise: Noise, n: int, shift: float = 0.0, warm: int = 0) -> tuple[int, int]:
    """(kept by the keep rule, kept by lower-wins) over n experiments of true effect `shift`."""
    base = [noise.draw(), noise.draw()]
    groups = [base] + [[noise.draw(), noise.draw()] for _ in range(warm)]
    frontier = list(base)
    kept = 0
    best, plain = base[0], 0
    for _ in range(n):
        est = keeprule.pooled(groups, keeprule.PRIOR_REL * abs(sum(base) / 2))
        fv = sum(frontier) / len(frontier)
        first = noise.draw(shift)
        if first < best:
            best, plain = first, plain + 1
        d = keeprule.decide([first], fv, direction="lower", min_delta=MIN_DELTA, z=Z, sigma=est.sigma, early=est.early)
        runs = [first]
        if d.action == "confirm":
            runs.append(noise.draw(shift))
            groups.append(runs)
            d = keeprule.decide(runs, fv, direction="lower", min_delta=MIN_DELTA, z=Z, sigma=est.sigma)
        if d.action == "keep":
            kept += 1
            frontier = runs
    return kept, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--branches", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    models = [("gauss", 0.001, "quiet GPU-like: sigma 0.1 %"), ("gauss", 0.01, "sigma 1 %"),
              ("gauss", 0.03, "loaded CPU: sigma 3 %"), ("steps", 0.0, "discrete: 5-9 steps in the budget")]
    print(f"keep rule: z {Z}, min_delta {MIN_DELTA}, prior {keeprule.PRIOR_REL:.1%} (1 dof), "
          f"early confirmation below {keeprule.EARLY_DOF} dof; {args.branches} branches per line")
    print("| noise | null: kept of 20 (mean) | P(kept >= 2) | lower wins: kept (mean) | P(>= 2) | power 2 sigma fresh / warm | power 3 sigma fresh / warm |")
    print("|---|---|---|---|---|---|---|")
    for kind, rel, label in models:
        noise = Noise(kind, rel, rng)
        null = [run_branch(noise, 20) for _ in range(args.branches)]
        ours = [k for k, _ in null]
        plain = [p for _, p in null]
        power = []
        for k in (2, 3):
            for warm in (0, 5):
                hits = sum(run_branch(noise, 1, shift=k * noise.sigma, warm=warm)[0] for _ in range(args.branches))
                power.append(hits / args.branches)
        print(f"| {label} | {sum(ours) / len(ours):.2f} | {sum(k >= 2 for k in ours) / len(ours):.1%} | "
              f"{sum(plain) / len(plain):.2f} | {sum(p >= 2 for p in plain) / len(plain):.0%} | "
              f"{power[0]:.0%} / {power[1]:.0%} | {power[2]:.0%} / {power[3]:.0%} |")


if __name__ == "__main__":
    main()
