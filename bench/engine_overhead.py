"""The engine's own overhead per experiment: everything except the training process.

A blank-template workspace whose run command is trivial (`echo score: 1`), so that the run
itself takes milliseconds; each experiment changes one line of the editable file and goes
through the whole engine: recovery check, guard (git status and diff), commit, duplicate
check, the supervised run in its own process group, measurement, tamper checks, the row
appended atomically, the reset, the state files. Overhead = experiment wall clock minus the
run's own wall clock.

Two paths are measured:
- in-process (`Engine.experiment`, what `autoresearch run` does each turn);
- the command `autoresearch experiment -d ... --json` (what an agent calls), which adds the
  Python start and the imports.

    python bench/engine_overhead.py [--experiments 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.engine import Engine
from autoresearch.engine.pool import one_experiment
from autoresearch.workspace import Workspace, init_workspace


def make(folder: Path) -> Workspace:
    init_workspace(folder, template="blank", command="echo score: 1", metric="score", editable=("knob.py",))
    (folder / "knob.py").write_text("X = 0\n")
    for args in (["add", "-A"], ["commit", "-qm", "knob"], ["switch", "-qc", "autoresearch/bench"]):
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
                       cwd=folder, check=True, capture_output=True)
    return Workspace.load(folder)


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(0.9 * (len(values) - 1))]
    return (f"{name}: median {statistics.median(values) * 1000:.0f} ms, mean {statistics.mean(values) * 1000:.0f} ms, "
            f"p90 {p90 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms over {len(values)} experiments")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = make(Path(tmp) / "ws")
        engine = Engine(ws, out=lambda line: None, live=False)
        in_process = []
        with ws.state.locked("bench"):
            one_experiment(engine, "baseline")
            for i in range(1, args.experiments + 1):
                (ws.root / "knob.py").write_text(f"X = {i}\n")
                t0 = time.perf_counter()
                outcome = one_experiment(engine, f"X -> {i}")
                in_process.append(time.perf_counter() - t0 - outcome.seconds)
        cli = []
        for i in range(args.experiments + 1, 2 * args.experiments + 1):
            (ws.root / "knob.py").write_text(f"X = {i}\n")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "autoresearch", "experiment", "-d", f"X -> {i}", "--json"],
                               cwd=ws.root, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            cli.append(wall - json.loads(r.stdout)["seconds"])
    print(summary("engine overhead, in-process (autoresearch run)", in_process))
    print(summary("engine overhead, `autoresearch experiment` command", cli))


if __name__ == "__main__":
    main()
