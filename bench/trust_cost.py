"""What the sandbox and the evaluator cost per experiment on this machine.

    python bench/trust_cost.py [--budget 10] [--reps 10]

1. Starting a process: `python -c pass` plain, in the training sandbox, and in the sandbox with
   `pysource`'s test folders masked (median of --reps).
2. One experiment of the `cpu` profile through the real engine, sandboxed: the training
   process's wall time, the hand-over (torch.export) time the harness prints, and the
   evaluator's time (startup, load, checks and scoring), read from run.log.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch import sandbox


def started(argv: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=10)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    box = sandbox.detect()
    if not box.on:
        sys.exit(f"error: no sandbox here ({box.why})")
    plain = started([sys.executable, "-c", "pass"], args.reps)
    jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
    jailed = started(box.wrap([sys.executable, "-c", "pass"], jail), args.reps)
    print(f"process start: plain {plain * 1000:.0f} ms, sandboxed {jailed * 1000:.0f} ms "
          f"(+{(jailed - plain) * 1000:.0f} ms)")
    t0 = time.perf_counter()  # finding the folders and working out the masks: once per engine
    folders = sandbox.test_folders(sandbox.python_roots())
    masked = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False, masked=folders)
    argv = box.wrap([sys.executable, "-c", "pass"], masked)
    prepared = time.perf_counter() - t0
    print(f"process start with pysource's {len(folders)} test folders masked: "
          f"{started(argv, args.reps) * 1000:.0f} ms, plus {prepared * 1000:.0f} ms to list them")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        cli = lambda *a: subprocess.run([sys.executable, "-m", "autoresearch", *a], cwd=ws if ws.exists() else tmp,
                                        capture_output=True, text=True)
        r = cli("init", str(ws), "--profile", "cpu", "--budget", f"{args.budget:g}")
        assert r.returncode == 0, r.stderr
        assert cli("prepare").returncode == 0
        subprocess.run(["git", "switch", "-qc", "autoresearch/bench"], cwd=ws, check=True)
        t0 = time.perf_counter()
        r = cli("experiment", "-d", "baseline")
        total = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr
        log = (ws / "run.log").read_text()
        rows = (ws / "results.tsv").read_text().splitlines()[1:]
        trainer = [float(x.split("\t")[6]) for x in rows]
        handover = re.findall(r"torch.export program in ([\d.]+)s", log)
        evaluated = re.findall(r"evaluator: val_bpb ([\d.]+) in ([\d.]+) s", log)
        print(f"budget {args.budget:g} s; baseline of {len(rows)} runs in {total:.1f} s through the engine")
        print(f"training process wall time per run: {', '.join(f'{t:.1f} s' for t in trainer)}")
        print(f"hand-over (torch.export) in the last run: {handover[-1] if handover else '?'} s")
        print(f"evaluator in the last run: {evaluated[-1][1] if evaluated else '?'} s of scoring "
              f"(val_bpb {evaluated[-1][0] if evaluated else '?'})")


if __name__ == "__main__":
    main()
