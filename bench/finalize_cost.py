"""What `autoresearch finalize` costs on this machine for a line of five kept changes.

    python bench/finalize_cost.py [--budget 20] [--changes 5]

In a fresh `cpu`-profile workspace (its default budget, the offline data): `autoresearch run
--max-experiments 0` runs the baseline twice, for real. Then five ordinary changes of train.py's
constants are committed one after another on the line, and recorded as kept with values written
here (a night that keeps five changes on this machine takes many hours; finalize's cost does not
depend on how the claims were made, only on how many runs its tests need, and every one of those
runs is real). Then `autoresearch finalize` runs as a user runs it; its plan line, its verdicts,
its runs and its wall time are printed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch import capsliterals, gitrepo  # noqa: E402
from autoresearch.workspace import Workspace  # noqa: E402

CHANGES = [  # (constant, new value): ordinary knobs of the template train.py, one line each
    ("MATRIX_LR", 0.05), ("EMBEDDING_LR", 0.5), ("WARMDOWN_RATIO", 0.4), ("WEIGHT_DECAY", 0.1),
    ("UNEMBEDDING_LR", 0.005), ("SCALAR_LR", 0.4), ("FINAL_LR_FRAC", 0.05),
]


def cli(ws: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=ws, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"error: autoresearch {args[0]}: {(done.stderr.strip() or done.stdout.strip())[-800:]}")
    return done


def make_line(ws: Path, n: int) -> None:
    """Commit `n` changes on the line and record each as kept, 0.01 below the one before."""
    w = Workspace.load(ws)
    rows = w.store.rows()
    base = [r for r in rows if r.kind == "baseline" and r.measured]
    value = sum(r.value for r in base) / len(base)
    branch = base[0].branch
    made = []
    for name, new in CHANGES[:n]:
        train = ws / "train.py"
        train.write_text(capsliterals.write_constants(train.read_text(), {name: new}))
        sha = gitrepo.commit_all(ws, f"{name} -> {new}")
        value -= 0.01
        for kind in ("experiment", "confirm"):
            made.append(replace(base[-1], commit=sha[:7], value=round(value, 6), description=f"{name} -> {new}",
                                kind=kind, status="keep", reason="recorded by bench/finalize_cost.py", log=""))
    w.store.record([replace(r, branch=branch) for r in made])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="20", help="seconds of training per run (the cpu profile's: 20)")
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="finalize-cost-") as tmp:
        env = dict(os.environ, AUTORESEARCH_CACHE_DIR=str(Path(tmp) / "cache"), PYTHONUNBUFFERED="1")
        ws = Path(tmp) / "ws"
        subprocess.run([sys.executable, "-m", "autoresearch", "init", str(ws), "--profile", "cpu",
                        "--budget", args.budget], cwd=tmp, env=env, check=True, capture_output=True)
        cli(ws, "prepare", env=env)
        cli(ws, "run", "--max-experiments", "0", "--tag", "line", env=env)
        make_line(ws, args.changes)
        print(cli(ws, "finalize", "--plan", env=env).stdout.strip())
        started = time.monotonic()
        done = cli(ws, "finalize", env=env)
        took = time.monotonic() - started
        runs = len(re.findall(r"^  (with|without) ", done.stdout, re.M))
        for line in done.stdout.splitlines():
            if not line.startswith("  "):
                print(line)
        print(f"finalize: {runs} runs in {took / 60:.1f} minutes ({took / max(runs, 1):.0f} s a run)")
        print((ws / "finalize.md").read_text())


if __name__ == "__main__":
    main()
