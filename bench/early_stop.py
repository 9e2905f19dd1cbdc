"""Whether stopping hopeless runs early pays: decided experiments per hour, and true wins lost.

A fresh blank-template workspace per arm whose run command is `python score.py`, the editable
file. A run "trains" for SECONDS, printing a training curve that falls from 3 towards its final
value (`final + (3 - final) * exp(-4 p)` at the share p of its budget), then prints
`loss: final`, with final = 1 - DELTA + N(0, sigma) per run (the same noise for run n in both
arms). The same changes are tried in both arms, through the real engine as `autoresearch run`
tries them (`one_experiment`): nulls (a comment), true wins of 2 sigma, and clear losers of
LOSER sigma, in the order given by --mix. One arm runs with `early_stop = true`, the other
without; each prints the wall time of its experiments, the decided experiments per hour, the
wins kept and the runs stopped early.

    python bench/early_stop.py [--experiments 30] [--seconds 6] [--mix 0,2,-8]

The figures, and whether early stopping is on by default, are in docs/benchmarks.md (it is
turned on only if it decides at least 1.3 times as many experiments per hour and loses at most
5 % of the true wins).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from keep_rule_engine import SIGMA, change, git  # the same edits of the same synthetic file

from autoresearch.engine import Engine
from autoresearch.engine.pool import one_experiment
from autoresearch.resultsfile import read_rows
from autoresearch.workspace import Workspace, init_workspace

SCORE = '''\
import math, random, time
from pathlib import Path

DELTA = {delta!r}

counter = Path({counter!r})
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
final = 1.0 - DELTA + random.Random({seed} * 1_000_003 + n).gauss(0.0, {sigma!r})
for i in range({steps} + 1):
    p = i / {steps}
    print(f"step {{i + 1:05d}} | progress {{100 * p:.1f}}% | loss {{final + (3 - final) * math.exp(-4 * p):.6f}}", flush=True)
    time.sleep({pause!r})
print(f"loss: {{final:.6f}}")
'''


def workspace(folder: Path, early: bool, seed: int, seconds: float) -> Workspace:
    folder.mkdir(parents=True)
    root = folder / "ws"
    ws = init_workspace(root, template="blank", command="python score.py", metric="loss", editable=("score.py",),
                        budget=seconds)
    ws.save(replace(ws.config, early_stop=early))
    steps = 20
    (root / "score.py").write_text(SCORE.format(delta=0.0, counter=str(folder / "runs"), seed=seed, sigma=SIGMA,
                                                steps=steps, pause=seconds / steps))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the synthetic metric")
    git(root, "switch", "-qc", "autoresearch/bench")
    return Workspace.load(root)


def play(effects: list[float], early: bool, seed: int, seconds: float, folder: Path) -> dict:
    ws = workspace(folder, early, seed, seconds)
    engine = Engine(ws, out=lambda line: None, live=False)
    decided = wins = wins_kept = stopped = 0
    with ws.state.locked("bench"):
        one_experiment(engine, "baseline")
        started = time.monotonic()
        for i, effect in enumerate(effects):
            change(ws.root, effect, i)
            outcome = one_experiment(engine, f"change {i}: {effect:g} sigma")
            decided += outcome.status in ("keep", "discard", "stale")
            wins += effect > 0
            wins_kept += effect > 0 and outcome.status == "keep"
        took = time.monotonic() - started
    stopped = sum(1 for r in read_rows(ws.results_path) if r.cause == "hopeless")
    return {"seconds": took, "decided": decided, "per_hour": 3600 * decided / took, "wins": wins,
            "wins_kept": wins_kept, "stopped": stopped}


def main() -> None:
    os.environ["AUTORESEARCH_SANDBOX"] = "off"  # the run counter lives beside the workspace (as keep_rule_engine.py)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=6.0, help="each run's training time")
    parser.add_argument("--mix", default="0,2,-8", help="the effects, in sigmas, cycled in this order")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    mix = [float(x) for x in args.mix.split(",")]
    effects = [mix[i % len(mix)] for i in range(args.experiments)]
    print(f"{args.experiments} experiments cycling {mix} sigma (sigma {SIGMA}), runs of {args.seconds:g} s, seed {args.seed}")
    print("| early_stop | wall time | decided | decided per hour | true wins kept | runs stopped early |")
    print("|---|---|---|---|---|---|")
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for early in (False, True):
            r = found[early] = play(effects, early, args.seed, args.seconds, Path(tmp) / f"early{int(early)}")
            print(f"| {'on' if early else 'off'} | {r['seconds']:.0f} s | {r['decided']} | {r['per_hour']:.0f} | "
                  f"{r['wins_kept']} of {r['wins']} | {r['stopped']} |", flush=True)
    gain = found[True]["per_hour"] / found[False]["per_hour"]
    lost = found[False]["wins_kept"] - found[True]["wins_kept"]
    print(f"early stopping: {gain:.2f}x decided experiments per hour; true wins kept {found[True]['wins_kept']} "
          f"against {found[False]['wins_kept']} without it ({lost:+d} lost)")


if __name__ == "__main__":
    main()
