"""A night of research, measured end to end: the built-in agent against random search and the original's rule.

    python bench/night.py [--minutes 60] [--reruns 5] [--arms builtin random original builtin2]
                          [--at-once 2] [--seed 0] [--out night]

Each arm is a fresh `cpu`-profile workspace (the CPU default: the offline pysource data, a 20 s
budget, one training thread, sandboxed as a user's runs are) and one line of research for
`--minutes` of wall clock:

- builtin: `autoresearch run`'s loop with the built-in agent and the keep rule (builtin2: a
  second such line, the spread between two lines of the same search);
- random: the same loop and keep rule with a proposer that moves one to three of the same
  knobs (the built-in agent's search space, searchspace.derive) to values drawn uniformly
  from their ranges, knowing nothing of the results;
- original: the built-in agent, with the original's rule in place of the keep rule: one run,
  kept when it is lower than the frontier. Only the decision is replaced: the engine still
  weighs the frontier's runs as the keep rule does (its luck and wander) and measures a stale
  frontier again, so this arm is if anything kinder than the original.

`--at-once` arms run at the same time (each then has a core to train on, as alone), so that
whatever the machine does during the night falls on them alike. Then the held-up check: each
arm's final frontier and the baseline run `--reruns` more times with fresh seeds (SEED in
train.py: the model's initial weights; the data's order is the harness's), in as many streams
at once as the arms ran. It prints, and writes to OUT/night.json, per arm: experiments decided
and decided per hour, the share of wall clock spent training (as `status` gives them), the
improvement the line claims (frontier minus baseline, as `status` says it) and the improvement
that held up (the mean of the frontier's fresh runs minus the mean of the baseline's, with
its standard error). Run it again with the same --out to go on after a stop.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from autoresearch import agents, capsliterals, gitrepo, loop
from autoresearch.agents.base import Agent, Context, Proposal
from autoresearch.agents.searchspace import (Param, changed_constants, derive, fit_device_batch, harness_seq_len,
                                             hyperparameters, values_of)
from autoresearch.engine import Engine
from autoresearch.engine.lifecycle import Pen
from autoresearch.research import keeprule
from autoresearch.store import Journal
from autoresearch.workspace import Workspace

ARMS = ("builtin", "random", "original")
TAG = "night"  # the lines' tag; with --seed N it is night-sN (the line's name seeds the built-in agent's draws)
SEED_BASE = 1000  # the fresh seeds: 1001, 1002, ... (train.py's own is 42)
KIND = "heldup"  # the re-runs' kind for the runner: never a reader of a compile cache (on the CPU default none is kept)


# -- random search ---------------------------------------------------------------------------


class RandomSearch(Agent):
    """One to three knobs of the built-in agent's search space, each set to a uniform draw from
    its range (on the range's own scale: logarithmic for rates), from the frontier's values."""

    name = "random"
    description = "random search over the built-in agent's knobs"

    def __init__(self, seed: int = 0, **options: Any):
        super().__init__(**options)
        self.seed = seed

    def propose(self, context: Context) -> Proposal:
        target = next(n for n in context.editable if n.endswith(".py") and hyperparameters(context.files.get(n) or ""))
        text = context.files[target]
        consts = hyperparameters(text)
        state = Path(context.state_dir) / "random-search.json"
        if state.exists():  # the ranges are the ones derived at the start of the line, as the built-in's are
            saved = json.loads(state.read_text())
        else:
            saved = {"params": [vars(p) for name, c in consts.items() for p in derive(name, c.value)], "n": 0}
        params = [Param(**p) for p in saved["params"]]
        rng = random.Random(self.seed * 1_000_003 + saved["n"])
        saved["n"] += 1
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(saved))
        frontier = values_of(params, consts)
        chosen = rng.sample(params, min(len(params), rng.randint(1, 3)))
        values = dict(frontier, **{p.name: p.from_internal(p.draw(rng)) for p in chosen})
        values = fit_device_batch(values, harness_seq_len(Path(context.root)))
        updates = changed_constants(params, consts, values)
        (Path(context.root) / target).write_text(capsliterals.write_constants(text, updates))
        said = ", ".join(f"{k} {consts[k].source} -> {capsliterals.format_value(v, consts[k].source)}" for k, v in updates.items())
        return Proposal(said or "no change (the draw fell on the frontier's values)")


# -- the original's rule ---------------------------------------------------------------------


def single_run(ev: keeprule.Evidence, rule: keeprule.Rule = keeprule.Rule(), *, smaller: bool = False) -> keeprule.Decision:
    """The original's rule in the keep rule's place: one run, kept when it is lower than the frontier."""
    if ev.gain > 0:
        return keeprule.Decision("keep", ev, f"lower than the frontier on one run ({ev.delta:+.6f}): the original's rule")
    return keeprule.Decision("discard", ev, f"not lower than the frontier ({ev.delta:+.6f}): the original's rule")


# -- one arm, one re-run stream (each its own process) ------------------------------------------


def arm(name: str, folder: Path, minutes: float, seed: int) -> None:
    ws = Workspace.load(folder)
    kind = name.rstrip("0123456789")  # builtin2: a second line of the built-in agent
    agent = RandomSearch(seed=zlib.crc32(name.encode()) + seed) if kind == "random" else agents.load("builtin")
    if kind == "original":
        keeprule.decide = single_run  # the engine asks keeprule.decide at every decision
    plan = loop.Plan(agent=agent.name, tag=TAG, hours=minutes / 60)
    with ws.state.locked("autoresearch run"):
        loop.Loop(ws, plan).run(agent)


def minutes_left(folder: Path, minutes: float) -> float:
    """An arm's wall clock left: all of it on its first start, the rest when it goes on after a stop."""
    start = folder.with_name(f"{folder.name}.start")
    if not start.exists():
        start.write_text(str(time.time()))
    return max(0.01, minutes - (time.time() - float(start.read_text())) / 60)


def seeded(root: Path, commit: str, seed: int) -> str:
    """`commit` with train.py's SEED set to `seed`, as a commit on no branch."""
    text = gitrepo.show(root, commit, "train.py") or ""
    return gitrepo.commit_off_branch(root, commit, f"night: seed {seed}",
                                     files={"train.py": capsliterals.write_constants(text, {"SEED": seed})})


def rerun(out: Path, jobs: list[tuple[str, str, int]], log: Path) -> None:
    """Run `jobs` ((arm, "baseline" | "frontier", seed), in order), each in its arm's workspace
    under `out`; one JSON line per run in `log`."""
    for name, which, seed in jobs:
        ws = Workspace.load(out / name)
        engine = Engine(ws, live=False)
        history = engine.history(f"autoresearch/{TAG}")
        commit = next(r.commit for r in history.rows if r.kind == "baseline") if which == "baseline" \
            else engine.frontier(history)
        what = f"night: the {which} with seed {seed}"
        with ws.state.locked("night re-runs"):
            run = seeded(ws.root, commit, seed)
            pen = Pen(engine.store, "night", Journal(branch="night", frontier=run, kind=KIND, description=what,
                                                       candidate=run, recorded=True))
            try:
                m = engine.run(pen, run, KIND, what)
            finally:
                pen.close()
        with log.open("a") as f:
            f.write(json.dumps({"arm": name, "which": which, "seed": seed, "commit": commit,
                                "value": m.value if m.ok else None, "reason": "" if m.ok else m.reason}) + "\n")


# -- the orchestration ---------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: autoresearch {args[0]}: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def together(commands: dict[str, list[str]], logs: Path) -> None:
    """Start every command at once, each with its own log, and wait for all; when one fails,
    stop the others (they would hold their workspaces' locks) and fail."""
    procs = {name: subprocess.Popen(cmd, stdout=(logs / f"{name}.log").open("a"), stderr=subprocess.STDOUT)
             for name, cmd in commands.items()}
    while any(p.poll() is None for p in procs.values()):
        failed = [name for name, p in procs.items() if p.poll() not in (None, 0)]
        if failed:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)  # the loop's clean stop: the run in flight is recorded
            for p in procs.values():
                p.wait()
            sys.exit(f"error: {', '.join(failed)} failed: see {logs}/<name>.log")
        time.sleep(1)
    failed = [name for name, p in procs.items() if p.returncode != 0]
    if failed:
        sys.exit(f"error: {', '.join(failed)} failed: see {logs}/<name>.log")


def streams(arms: list[str], n: int, reruns: int) -> list[list[tuple[str, str, int]]]:
    """The re-runs in `n` streams of equal length, run at once as the arms ran: stream j takes
    every `n`-th arm's frontier with each fresh seed and an equal share of the baseline's runs
    (as many as it takes to have at least `reruns`), spread through the stream and one of them
    last, so that neither a slow spell nor the end (when a stream that finished first leaves
    the machine to the other) falls on the frontiers alone."""
    share = max(1, math.ceil(reruns / n))
    out = []
    for j in range(n):
        mine = arms[j::n]
        front = [(name, "frontier", SEED_BASE + k) for k in range(1, reruns + 1) for name in mine]
        base = [(mine[k % len(mine)], "baseline", SEED_BASE + j + n * k + 1) for k in range(share)]
        jobs: list[tuple[str, str, int]] = []
        for k, job in enumerate(base):  # baseline k after the (k+1)-th share of the frontier's runs
            jobs += front[len(front) * k // share:len(front) * (k + 1) // share] + [job]
        out.append(jobs)
    return out


def summary(folder: Path, reruns: list[dict]) -> dict:
    s = json.loads(cli("status", "--json", "--branch", f"autoresearch/{TAG}", cwd=folder))["summary"]
    outcomes = s["tally"]["outcomes"]
    return {"decided": sum(outcomes.get(k, 0) for k in ("keep", "discard", "stale")), "kept": outcomes.get("keep", 0),
            "runs": s["tally"]["machine_runs"], "per_hour": s["experiments_per_hour"],
            "training_share": s["training_share"], "baseline": s["baseline"], "frontier": s["frontier"],
            "claimed": s["change"], "frontier_runs": [r["value"] for r in reruns if r["value"] is not None],
            "crashed_reruns": sum(1 for r in reruns if r["value"] is None), "counts": s["counts_text"]}


def spread(values: list[float]) -> float:
    return stdev(values) if len(values) > 1 else float("nan")


def report(results: dict[str, dict], baseline: list[float]) -> str:
    b = mean(baseline)
    lines = ["| arm | decided | per hour | training | kept | claimed | held up | fresh runs |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        front = r["frontier_runs"]
        r["held_up"] = mean(front) - b if front else None
        r["held_up_se"] = math.sqrt(spread(front) ** 2 / len(front) + spread(baseline) ** 2 / len(baseline)) if front else None
        held = f"{r['held_up']:+.4f} ± {r['held_up_se']:.4f}" if front else "n/a"
        lines.append(f"| {name} | {r['decided']} | {r['per_hour'] or 0:.1f} | {100 * (r['training_share'] or 0):.0f} % | "
                     f"{r['kept']} | {r['claimed'] or 0:+.4f} | {held} | {len(front)} |")
    return "\n".join(lines) + f"\n\nbaseline, {len(baseline)} fresh runs: {b:.4f} (sd {spread(baseline):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall clock of each arm's line of research")
    parser.add_argument("--reruns", type=int, default=5, help="fresh-seed runs of each final frontier (and about as many of the baseline)")
    parser.add_argument("--arms", nargs="+", default=[*ARMS, "builtin2"],
                        help=f"of {', '.join(ARMS)}; a digit after a name makes a second line of it (builtin2)")
    parser.add_argument("--at-once", type=int, default=2, help="arms run at the same time (the rest after them)")
    parser.add_argument("--out", type=Path, default=Path("night"),
                        help="the arms' workspaces, logs and night.json; run again with the same folder to go on")
    parser.add_argument("--budget", type=float, default=None, help="seconds of training per run (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="other draws for both searches: random search's seed and the lines' name (night-sN), which seeds the built-in agent's")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    parser.add_argument("--rerun", help=argparse.SUPPRESS)  # internal: a JSON list of re-run jobs
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)  # internal: the re-runs' results
    args = parser.parse_args()
    global TAG
    TAG = f"night-s{args.seed}" if args.seed else "night"
    if args.arm:
        return arm(args.arm, args.out, args.minutes, args.seed)
    if args.rerun:
        return rerun(args.out, [tuple(j) for j in json.loads(args.rerun)], args.log)
    bad = [a for a in args.arms if a.rstrip("0123456789") not in ARMS]
    if bad or len(set(args.arms)) < len(args.arms) or args.reruns < 2:
        sys.exit(f"error: arms are {', '.join(ARMS)} (each once, a digit for a second line); --reruns >= 2")
    if args.at_once < 1 or len(args.arms) % args.at_once:
        sys.exit("error: --at-once must divide the number of arms: an arm alone would have the machine to itself")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve()), "--seed", str(args.seed)]
    budget = ["--budget", f"{args.budget:g}"] if args.budget else []
    for name in args.arms:
        if not (out / name).exists():
            cli("init", str(out / name), "--profile", "cpu", *budget, cwd=out)
            cli("prepare", cwd=out / name)
    left = [n for n in args.arms if not (out / f"{n}.done").exists()]  # a second start goes on from here
    for group in (left[i:i + args.at_once] for i in range(0, len(left), args.at_once)):
        t0 = time.monotonic()
        print(f"{time.strftime('%H:%M')} {', '.join(group)}: {args.minutes:g} minutes at once (logs in {out})", flush=True)
        together({n: [*me, "--arm", n, "--out", str(out / n), "--minutes", str(minutes_left(out / n, args.minutes))]
                  for n in group}, out)
        for n in group:
            (out / f"{n}.done").touch()
        print(f"{time.strftime('%H:%M')} done in {(time.monotonic() - t0) / 60:.1f} min", flush=True)
    log = out / "reruns.jsonl"
    if not log.exists():
        Path(f"{log}.part").unlink(missing_ok=True)  # the runs of a re-run phase cut short: made again, once
        plan = streams(args.arms, args.at_once, args.reruns)
        print(f"{time.strftime('%H:%M')} re-runs: {sum(map(len, plan))} runs in {len(plan)} streams at once", flush=True)
        together({f"reruns-{j}": [*me, "--rerun", json.dumps(jobs), "--out", str(out), "--log", str(log) + ".part"]
                  for j, jobs in enumerate(plan)}, out)
        os.replace(str(log) + ".part", log)
    done = [json.loads(x) for x in log.read_text().splitlines()]
    baseline = [r["value"] for r in done if r["which"] == "baseline" and r["value"] is not None]
    results = {n: summary(out / n, [r for r in done if r["arm"] == n and r["which"] == "frontier"]) for n in args.arms}
    table = report(results, baseline)
    (out / "night.json").write_text(json.dumps({"minutes": args.minutes, "reruns": args.reruns, "at_once": args.at_once, "seed": args.seed,
                                                "baseline": baseline, "arms": results}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
