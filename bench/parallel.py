"""Throughput of `autoresearch run --workers N` on a workload of fixed duration.

A blank-template workspace whose command sleeps RUN seconds and prints a noisy score (the
editable file's value plus noise); the `command` agent is a script that sleeps THINK seconds
and writes a value that loses clearly (so that each experiment is one run of fixed duration;
`--mixed` lets a third of them win, which brings confirm runs, re-runs and rebases). Each
configuration runs the real loop (`autoresearch run`, a subprocess) for a number of proposals
and reports, from the rows it wrote (from the end of the baseline to the end of the last run):

- experiments per hour and runs per hour;
- the share of wall-clock spent training: the runs' seconds over N x that wall clock.

With `--mixed`, workers that finish their last experiment early wait for the others at the end:
compare such figures over many proposals.

    python bench/parallel.py                      # 1, 2 and 4 workers, agent 0 s, runs 10 s
    python bench/parallel.py --think 5 --workers 1 --sequential   # the agent's overlap
    python bench/parallel.py --builtin --workers 1 3                # the driver with the built-in agent
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from autoresearch import resultsfile
from autoresearch.workspace import Workspace, init_workspace

SCORE = """import random, time
VALUE = 1.0
time.sleep({run})
print(f"score: {{VALUE + random.gauss(0, 0.01):.6f}}")
"""
AGENT = """import random, re, time
from pathlib import Path
time.sleep({think})
text = Path("score.py").read_text()
value = round(random.uniform({low}, 1.3), 4)
Path("score.py").write_text(re.sub(r"^VALUE = .*$", f"VALUE = {{value}}", text, flags=re.M))
print(f"DESCRIPTION: VALUE {{value}}")
"""


# knobs for the built-in agent to search (it changes ALL_CAPS literals); they do not move the score
KNOBS = "".join(f"KNOB_{k} = {k + 1}.0\n" for k in range(8))


def make(folder: Path, run: float, knobs: bool = False) -> Workspace:
    init_workspace(folder, template="blank", command="python score.py", metric="score", editable=("score.py",),
                   budget=run)
    (folder / "score.py").write_text((KNOBS if knobs else "") + SCORE.format(run=run))
    for args in (["add", "-A"], ["commit", "-qm", "score"], ["switch", "-qc", "autoresearch/bench"]):
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
                       cwd=folder, check=True, capture_output=True)
    return Workspace.load(folder)


def when(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def measure(tmp: Path, workers: int | None, proposals: int, run: float, think: float, mixed: bool,
            builtin: bool = False) -> dict:
    label = f"workers-{workers}" if workers else "sequential"
    ws = make(tmp / label, run, knobs=builtin)
    agent = tmp / f"agent-{label}.py"
    agent.write_text(AGENT.format(think=think, low=0.9 if mixed else 1.05))
    chosen = ["--agent", "builtin"] if builtin else ["--agent", "command", "--agent-command", f"{sys.executable} {agent}"]
    cmd = [sys.executable, "-m", "autoresearch", "run", *chosen, "--max-experiments", str(proposals)]
    if workers:
        cmd += ["--workers", str(workers)]
    done = subprocess.run(cmd, cwd=ws.root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = resultsfile.read(ws.root / "results.tsv")[1]
    start = max(when(r.timestamp) for r in rows if r.kind == "baseline")
    runs = [(when(r.timestamp) - r.seconds, when(r.timestamp), r) for r in rows
            if r.kind != "baseline" and r.seconds is not None and r.status not in ("noop", "invalid")]
    end = max(stop for _, stop, _ in runs)
    window = end - start
    inside = sum(max(0.0, stop - max(begin, start)) for begin, stop, _ in runs)
    started = [r for _, _, r in runs]
    n = workers or 1
    # while every worker still had work: up to the first worker's last run (after it the line's
    # last experiments finish on fewer workers, an end a night of research does not have)
    busy_end = min(max(stop for _, stop, r in runs if r.worker == w) for w in {r.worker for r in started})
    busy = [r for _, stop, r in runs if stop <= busy_end]
    return {"label": label, "experiments": sum(1 for r in started if r.kind == "experiment"), "runs": len(started),
            "wall": window, "per_hour": 3600 * sum(1 for r in started if r.kind == "experiment") / window,
            "runs_per_hour": 3600 * len(started) / window, "share": inside / (n * window),
            "busy_runs": len(busy), "busy_wall": busy_end - start,
            "busy_runs_per_hour": 3600 * len(busy) / max(busy_end - start, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--proposals", type=int, default=8, help="proposals per worker")
    parser.add_argument("--run", type=float, default=10.0, help="seconds each run sleeps")
    parser.add_argument("--think", type=float, default=0.0, help="seconds the agent takes per proposal")
    parser.add_argument("--sequential", action="store_true", help="also the loop without --workers")
    parser.add_argument("--mixed", action="store_true", help="a third of the proposals win (more runs each)")
    parser.add_argument("--builtin", action="store_true",
                        help="the built-in agent (it searches VALUE) instead of the scripted one; compare runs per hour")
    args = parser.parse_args()
    os.environ.setdefault("AUTORESEARCH_HOME", tempfile.mkdtemp(prefix="autoresearch-bench-home-"))
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        if args.sequential:
            results.append(measure(Path(tmp), None, args.proposals, args.run, args.think, args.mixed, args.builtin))
        for n in args.workers:
            results.append(measure(Path(tmp), n, args.proposals * n, args.run, args.think, args.mixed, args.builtin))
    base = next((r for r in results if r["label"] == "workers-1"), results[0])
    ratio = "runs_per_hour" if args.mixed or args.builtin else "per_hour"
    print(f"runs of {args.run:g} s, agent {args.think:g} s per proposal")
    for r in results:
        n = int(r["label"].split("-")[1]) if r["label"].startswith("workers") else 1
        print(f"{r['label']:>11}: {r['experiments']} experiments, {r['runs']} runs in {r['wall']:.0f} s; "
              f"{r['per_hour']:.0f} experiments/h, {r['runs_per_hour']:.0f} runs/h "
              f"({r[ratio] / base[ratio] / n:.2f} x N of one worker); "
              f"training {100 * r['share']:.0f} % of the wall clock")
        print(f"{'':>11}  while every worker had work: {r['busy_runs']} runs in {r['busy_wall']:.0f} s, "
              f"{r['busy_runs_per_hour']:.0f} runs/h ({r['busy_runs_per_hour'] / base['busy_runs_per_hour']:.2f} x one worker's)")


if __name__ == "__main__":
    main()
