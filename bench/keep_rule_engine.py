"""The keep rule through the real engine, on a synthetic metric of known truth.

Each scenario is a fresh blank-template workspace whose run command is `python score.py`, the
editable file: it prints `loss: 1 - DELTA + N(0, sigma)` (plus, with drift, `drift * sigma`
per run made so far), DELTA being a constant in the file. Every experiment is a fresh change
made the way an agent makes it, then measured by `Engine.experiment` exactly as
`autoresearch run` does (commit, supervised runs, the sequential test, rows, reset):
- a null change adds a comment line: the code scores the same;
- a win of k sigma raises DELTA by k * sigma over the frontier it is tried against.

It prints, per scenario, the changes kept and the runs per experiment (every run the engine
made for it: the candidate's and the frontier's re-runs), then the figures of the keep-rule
issue: at most 5 % of nulls kept (with and without drift), at least 80 % of 2-sigma wins kept,
at most 3 runs per experiment over the mixed scenario.

    python bench/keep_rule_engine.py [--experiments 40] [--seed 1] [--only mixed] [--keep stop=0.6]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

from autoresearch.config import KeepRule
from autoresearch.engine import Engine
from autoresearch.engine.pool import one_experiment
from autoresearch.resultsfile import read_rows
from autoresearch.workspace import Workspace, init_workspace

SIGMA = 0.01  # one run's noise: 1 % of a loss near 1

# The editable file. The run counter and the seed live outside the workspace, where no
# experiment reaches them; the noise of run n is the same for every scenario with one seed.
SCORE = '''\
import random
from pathlib import Path

DELTA = {delta!r}

counter = Path({counter!r})
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
noise = random.Random({seed} * 1_000_003 + n).gauss(0.0, {sigma!r})
print(f"loss: {{1.0 - DELTA + {drift!r} * {sigma!r} * n + noise:.6f}}")
'''


@dataclass(frozen=True)
class Scenario:
    label: str
    effects: tuple[float, ...]  # per experiment, in sigmas of one run (0: a null change)
    drift: float = 0.0  # sigmas per run added to every later run (negative: later runs look better)


def scenarios(n: int) -> list[Scenario]:
    half = n // 2
    return [
        Scenario(f"{n} nulls", (0.0,) * n),
        Scenario(f"{n} nulls, drift -0.1 sigma/run", (0.0,) * n, -0.1),
        Scenario(f"{n} nulls, drift +0.1 sigma/run", (0.0,) * n, 0.1),
        Scenario(f"{n} wins of 1 sigma", (1.0,) * n),
        Scenario(f"{n} wins of 2 sigma", (2.0,) * n),
        Scenario(f"{n} wins of 3 sigma", (3.0,) * n),
        Scenario(f"mixed: {half} nulls, {half} wins of 2 sigma", (0.0, 2.0) * half),
    ]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
                   cwd=root, check=True, capture_output=True)


def workspace(folder: Path, scenario: Scenario, seed: int, keep: dict[str, str]) -> Workspace:
    folder.mkdir(parents=True)
    init_workspace(folder / "ws", template="blank", command="python score.py", metric="loss", editable=("score.py",))
    root = folder / "ws"
    toml = root / "autoresearch.toml"
    for key, value in keep.items():  # the [keep] settings are the only `key = ` lines of that name
        text, n = re.subn(rf"^{re.escape(key)} = [^#\n]*", f"{key} = {value} ", toml.read_text(), count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"--keep {key}: no such setting in [keep]")
        toml.write_text(text)
    (root / "score.py").write_text(SCORE.format(delta=0.0, counter=str(folder / "runs"), seed=seed, sigma=SIGMA,
                                                drift=scenario.drift))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the synthetic metric")
    git(root, "switch", "-qc", "autoresearch/bench")
    return Workspace.load(root)


def change(root: Path, effect: float, i: int) -> None:
    """The agent's edit: a comment (a null change), with DELTA raised by `effect` sigma for a win.
    The comment makes every change new code, as an agent's next idea is: a win tried again
    after a discard would otherwise be the code that already ran."""
    path = root / "score.py"
    text = path.read_text() + f"# change {i}\n"
    if effect:
        current = float(re.search(r"^DELTA = (.+)$", text, re.M).group(1))
        text = re.sub(r"^DELTA = .+$", f"DELTA = {current + effect * SIGMA!r}", text, count=1, flags=re.M)
    path.write_text(text)


def play(scenario: Scenario, seed: int, folder: Path, keep: dict[str, str]) -> tuple[int, int, int]:
    """(changes kept, experiments measured, runs made by the experiments)."""
    ws = workspace(folder, scenario, seed, keep)
    engine = Engine(ws, out=lambda line: None, live=False)
    kept = measured = runs = 0
    with ws.state.locked("bench"):
        one_experiment(engine, "baseline")
        for i, effect in enumerate(scenario.effects):
            change(ws.root, effect, i)
            before = len(read_rows(ws.results_path))
            outcome = one_experiment(engine, f"change {i}: {effect:g} sigma")
            kept += outcome.status == "keep"
            measured += outcome.status in ("keep", "discard")
            runs += len(read_rows(ws.results_path)) - before  # the candidate's rows and the frontier's re-runs
    return kept, measured, runs


def main() -> None:
    # the synthetic score keeps its run counter and seed beside the workspace, where a sandboxed
    # run cannot reach: this bench measures the keep rule, not the sandbox
    os.environ["AUTORESEARCH_SANDBOX"] = "off"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=40, help="experiments per scenario (default 40)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help="run only the scenarios whose label contains this")
    parser.add_argument("--keep", action="append", default=[], metavar="KEY=VALUE",
                        help="a [keep] setting other than the default, e.g. stop=0.6 (repeatable)")
    args = parser.parse_args()
    if any("=" not in item for item in args.keep):
        parser.error("--keep takes KEY=VALUE, e.g. --keep stop=0.6")
    keep = dict(item.split("=", 1) for item in args.keep)
    unknown = sorted(set(keep) - {f.name for f in fields(KeepRule)})
    if unknown:
        parser.error(f"--keep {unknown[0]}: no such setting in [keep] (known: {', '.join(f.name for f in fields(KeepRule))})")
    chosen = [s for s in scenarios(args.experiments) if args.only in s.label]
    print(f"sigma {SIGMA:g}, seed {args.seed}; [keep] settings: " + (", ".join(args.keep) or "the defaults"))
    print("| scenario | kept | runs per experiment | seconds |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k, scenario in enumerate(chosen):
            t0 = time.perf_counter()
            kept, measured, runs = play(scenario, args.seed, Path(tmp) / f"scenario{k}", keep)
            n = len(scenario.effects)
            assert measured == n, f"{scenario.label}: {n - measured} experiments were not measured"
            print(f"| {scenario.label} | {kept} of {n} ({kept / n:.0%}) | {runs / n:.2f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
