"""How long a new user waits for the first decided experiment on this machine.

Runs the README's first command's second half, `autoresearch run --max-experiments 1`, in an
empty folder with an empty data cache (so it creates ./research, prepares the offline data,
runs the baseline twice and then one experiment, confirmed or not), and prints the seconds
from the start to each step and to the decision line.

    python bench/first_decision.py            # goal: the decision within 180 s on 2 cores
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKS = {
    "created the workspace": "workspace created",
    "preparing the data": "preparing",
    "baseline run 1 of": "first baseline run starts",
    "baseline val_bpb": "baseline measured",
    "confirm ": "a win: confirming",
    "frontier re-run": "frontier re-run done",
}
DECISION = re.compile(r"^(keep|discard|crash|noop|invalid)\s")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="first-decision-") as tmp:
        env = dict(os.environ, AUTORESEARCH_CACHE_DIR=str(Path(tmp) / "cache"), PYTHONUNBUFFERED="1")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--max-experiments", "1"], cwd=tmp,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        decided = None
        for line in proc.stdout:
            line = line.rstrip("\n").rsplit("\r", 1)[-1]
            at = time.monotonic() - started
            for prefix, label in MARKS.items():
                if line.startswith(prefix):
                    print(f"{at:6.1f} s  {label}")
            if decided is None and DECISION.match(line) and "(baseline)" not in line:
                decided = at
                print(f"{at:6.1f} s  decided: {line.strip()[:100]}")
        proc.wait()
        total = time.monotonic() - started
    load = os.getloadavg()[0]
    print(f"exit {proc.returncode}; whole command {total:.1f} s; load average at the end {load:.2f}")
    if decided is None:
        print("no experiment was decided")
        return 1
    print(f"first decision after {decided:.1f} s (goal: 180 s)")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
