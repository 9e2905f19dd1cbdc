"""The evaluator's speed against the trainer's forward pass, on this machine.

    python bench/evaluator.py [--workspace DIR] [--reps 3]

Builds the workspace's model as its train.py does (a fresh `cpu`-profile workspace in a
temporary folder when none is given), then measures, per token:

1. the trainer's forward pass as training runs it (train mode, autograd recording, the loss),
   on the trainer's threads (train.py's CPU_THREADS), and forward plus backward;
2. the hand-over (torch.export) of that model, as evaluate_bpb makes it under the engine;
3. the engine's evaluator on it, as the engine starts it (`python -I -B -m
   autoresearch.evaluator`, every core): its wall time, and inside it the load and the scoring
   of EVAL_TOKENS with every check.

The weights are untrained: the speed of a forward pass does not depend on their values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

SETUP_END = "adamw, muon = optimizers = build_optimizers(raw_model)\n"


def make_workspace(folder: Path) -> Path:
    ws = folder / "ws"
    for argv in (["init", str(ws), "--profile", "cpu"], ["prepare"]):
        done = subprocess.run([sys.executable, "-m", "autoresearch", *argv], cwd=ws if ws.exists() else folder,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: autoresearch {argv[0]}: {done.stderr.strip()}")
    return ws


def build(ws: Path) -> dict:
    """train.py's definitions and Setup up to its model, run in this process."""
    text = (ws / "train.py").read_text()
    if SETUP_END not in text:
        sys.exit("error: this train.py does not build its model the way the template does")
    sys.path.insert(0, str(ws))
    os.chdir(ws)
    module = types.ModuleType("train_bench")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(text.split(SETUP_END)[0], str(ws / "train.py"), "exec"), module.__dict__)
    return module.__dict__


def per_token(fn, tokens: int, reps: int) -> float:
    fn()  # warm
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return tokens / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    ws = args.workspace.resolve() if args.workspace else make_workspace(Path(tmp.name))
    s = build(ws)
    torch, model = s["torch"], s["raw_model"]
    threads = torch.get_num_threads()
    B, T = s["DEVICE_BATCH_SIZE"], s["MAX_SEQ_LEN"]
    x = torch.randint(0, s["vocab_size"], (B, T))
    y = torch.randint(0, s["vocab_size"], (B, T))

    def forward():
        model(x, y)

    def step():
        model(x, y).backward()
        model.zero_grad(set_to_none=True)

    fwd = per_token(forward, B * T, args.reps)
    both = per_token(step, B * T, args.reps)
    print(f"trainer ({threads} thread{'s' * (threads > 1)}, batch {B} x {T}): forward {fwd:,.0f} tokens/s, "
          f"forward and backward {both:,.0f} tokens/s")

    handover = Path(tmp.name) / "handover"
    prepare = sys.modules["prepare"]
    t0 = time.perf_counter()
    prepare.hand_over(model, B, handover)
    print(f"hand-over: {time.perf_counter() - t0:.1f} s, "
          f"{sum(p.stat().st_size for p in handover.iterdir()) / 1e6:.1f} MB")

    harness = ws / "prepare.py"
    job = {"harness": str(harness), "harness_sha256": hashlib.sha256(harness.read_bytes()).hexdigest(),
           "handover": str(handover), "record": str(Path(tmp.name) / "record.json"), "metric": "val_bpb"}
    (Path(tmp.name) / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"(OMP|MKL|OPENBLAS)_NUM_THREADS", k)}
    walls, scoring, loads = [], [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-I", "-B", "-m", "autoresearch.evaluator", str(Path(tmp.name) / "job.json")],
                              capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t0)
        record = json.loads(Path(job["record"]).read_text())
        if done.returncode != 0:
            sys.exit(f"error: the evaluator failed: {record.get('error')}")
        loads.append(record.get("load_seconds", float("nan")))
        scoring.append(record.get("score_seconds", float("nan")))
    tokens = record["tokens"]
    score = statistics.median(scoring)
    print(f"evaluator ({os.cpu_count()} cores): wall {statistics.median(walls):.1f} s "
          f"(in it: load {statistics.median(loads):.1f} s, scoring with every check {score:.1f} s); "
          f"{tokens / score:,.0f} tokens/s scored = {tokens / score / fwd:.2f}x the trainer's forward")


if __name__ == "__main__":
    main()
