"""Size the cpu profile: one full experiment, and the same model trained for a single step.

Makes a workspace with `autoresearch init --profile cpu`, prepares it, runs `python train.py`
and reports the wall clock of the whole run, its overhead (everything that is not timed
training: imports, setup, the untimed first step, evaluation, exit) and val_bpb; then runs a
copy of train.py that stops after its first step, for the val_bpb a barely trained model gets.

    python bench/train_cpu.py                           # the cpu profile as shipped
    python bench/train_cpu.py --set DEPTH=3 --harness EVAL_TOKENS=65536 --budget 30

--set rewrites train.py constants, --harness rewrites prepare.py constants (for sizing only:
the workspace's fingerprint no longer matches, which `python train.py` does not check).
Prepared data goes to AUTORESEARCH_CACHE_DIR (default: a cache folder under the temp dir).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch import capsliterals


def parse_assignments(items):
    values = {}
    for item in items:
        name, _, literal = item.partition("=")
        values[name] = ast.literal_eval(literal)
    return values


def rewrite(path: Path, values: dict) -> None:
    if values:
        path.write_text(capsliterals.write_constants(path.read_text(), values))


def run_train(ws: Path, script: str) -> tuple[float, dict, str]:
    t0 = time.time()
    r = subprocess.run([sys.executable, script], cwd=ws, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    summary = dict(re.findall(r"^(\w+):\s+(\S+)$", r.stdout.split("\n---\n")[-1], re.M))
    return wall, summary, r.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=None, help="TIME_BUDGET (default: the profile's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="train.py constants")
    parser.add_argument("--harness", nargs="*", default=[], metavar="NAME=VALUE", help="prepare.py constants")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-step run")
    args = parser.parse_args()
    os.environ.setdefault("AUTORESEARCH_CACHE_DIR", str(Path(tempfile.gettempdir()) / "autoresearch-bench-cache"))

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        init = [sys.executable, "-m", "autoresearch", "init", str(ws), "--profile", "cpu"]
        if args.budget:
            init += ["--budget", f"{args.budget:g}"]
        subprocess.run(init, check=True, capture_output=True)
        rewrite(ws / "prepare.py", parse_assignments(args.harness))
        rewrite(ws / "train.py", parse_assignments(args.set))
        t0 = time.time()
        subprocess.run([sys.executable, "prepare.py"], cwd=ws, check=True, capture_output=True)
        prepare_s = time.time() - t0

        wall, full, out = run_train(ws, "train.py")
        steps = [line for line in out.splitlines() if line.startswith("step ")]
        print(out.split("\n---\n")[0].splitlines()[1])  # the model line
        print(f"prepare: {prepare_s:.1f}s (cached data is reused)")
        print(f"last progress line: {steps[-1] if steps else '-'}")
        training = float(full["training_seconds"])
        print(f"full run: val_bpb {full['val_bpb']}, {full['num_steps']} steps, "
              f"{full['total_tokens_M']}M tokens, training {training:.1f}s, wall {wall:.1f}s, "
              f"overhead {wall - training:.1f}s (startup {full['startup_seconds']}s)")

        if not args.no_baseline:
            text = (ws / "train.py").read_text()
            one_step, n = re.subn(r"^    if done:\n        break$", "    break", text, flags=re.M)
            assert n == 1, "train.py's loop no longer ends with `if done: break`"
            (ws / "train_one_step.py").write_text(one_step)
            _, base, _ = run_train(ws, "train_one_step.py")
            print(f"one step: val_bpb {base['val_bpb']}")


if __name__ == "__main__":
    main()
