"""Where a line of research's wall-clock goes on this machine, on the CPU default.

    python bench/training_share.py [--experiments 4] [--budget 20]

A fresh `cpu`-profile workspace in a temporary folder (the data cache is the usual one, so the
data is prepared once), then `autoresearch run --agent builtin --max-experiments N` (the
baseline's two runs and N experiments, decided by the keep rule, sandboxed as a user's
are), then `autoresearch status --json`: the share of the wall-clock spent training and the
rest, as status shows it (History.pace, TimeSplit), from the first run's start to the last
row. The goal on a quiet 2-core machine: at least 70 % training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: autoresearch {args[0]}: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--budget", type=float, default=None, help="seconds of training per run (default: the profile's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        cli("init", str(ws), "--profile", "cpu", *(["--budget", f"{args.budget:g}"] if args.budget else []), cwd=Path(tmp))
        cli("prepare", cwd=ws)
        t0 = time.monotonic()
        cli("run", "--agent", "builtin", "--max-experiments", str(args.experiments), cwd=ws)
        wall = time.monotonic() - t0
        s = json.loads(cli("status", "--json", cwd=ws).stdout)["summary"]
    split = s.get("time_split") or {}  # none from versions before it was recorded
    print(f"{s['runs']} runs ({s['experiments']} experiments) in {wall:.0f} s of `autoresearch run`; "
          f"{s['elapsed_seconds']:.0f} s from the first run's start to the last row")
    print(f"training {100 * s['training_share']:.1f} % of the wall-clock")
    print(f"where it went: {split.get('text', 'not recorded')}")


if __name__ == "__main__":
    main()
