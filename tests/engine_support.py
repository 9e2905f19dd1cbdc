"""Workspaces for the engine and loop tests: real git repositories, tiny fake training scripts.

`llm_like(folder)` makes a workspace shaped like the LLM template (train.py editable, a
fingerprinted prepare.py that writes the harness record, a pinned val split) whose
train.py runs in a fraction of a second without torch. `blank(folder, text)` makes a blank
template workspace. Both are committed on `main` and switched to `autoresearch/test`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from autoresearch import resultsfile as results
from autoresearch.workspace import Workspace, fingerprint, init_workspace

VAL_SHA = "ab" * 32

FAKE_PREPARE = '''\
"""A stand-in harness: evaluate_bpb writes the record the engine trusts."""
import hashlib, json, os

TIME_BUDGET = 2
MAX_SEQ_LEN = 16


def manifest():
    return {"val_sha256": "%s"}


def evaluate_bpb(value):
    path = os.environ.get("AUTORESEARCH_RESULT")
    if path:
        with open(__file__, "rb") as fh:
            me = hashlib.sha256(fh.read()).hexdigest()
        record = {"val_bpb": value, "tokens": 100, "bytes": 400, "val_sha256": "%s",
                  "harness_sha256": me, "eval_seconds": 0.01}
        with open(path, "w") as fh:
            json.dump(record, fh)
    return value
''' % (VAL_SHA, VAL_SHA)

TRAIN = '''\
"""A stand-in train.py: prints progress and a summary like the real one."""
from prepare import evaluate_bpb

VALUE = {value}            # what this "training" reaches
# body
print("step 00001 | progress 50.0% | loss 3.000000 | remaining 1s", flush=True)
v = evaluate_bpb(VALUE)
print("---")
print(f"val_bpb:          {{v:.6f}}")
print("training_seconds: 0.1")
print("peak_vram_mb:     512.0")
print("num_steps:        10")
'''


def train_text(value: float = 1.0, body: str = "") -> str:
    text = TRAIN.format(value=repr(float(value)))
    return text.replace("# body\n", body.rstrip("\n") + "\n# body\n") if body else text


def git(root: Path, *args: str, check: bool = True) -> str:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {r.stderr}")
    return r.stdout.strip()


def llm_like(folder: Path, *, value: float = 1.0, budget: float = 2, branch: str = "autoresearch/test",
             baseline_runs: int = 2, hard_limit: float = 0, allowance: float = 0) -> Workspace:
    ws = init_workspace(folder, template="blank", command="python train.py", metric="val_bpb",
                        editable=("train.py",), budget=budget)
    (folder / "prepare.py").write_text(FAKE_PREPARE)
    (folder / "train.py").write_text(train_text(value))
    cfg = replace(ws.config, template="llm", harness_record=True, harness_files=("prepare.py",),
                  harness_sha256=fingerprint(folder, ("prepare.py",)), hard_limit=hard_limit, allowance=allowance,
                  keep=replace(ws.config.keep, baseline_runs=baseline_runs))
    ws = ws.save(cfg)
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "fake llm workspace")
    (folder / ".autoresearch").mkdir(exist_ok=True)
    (folder / ".autoresearch" / "val_sha256").write_text(VAL_SHA + "\n")
    if branch:
        git(folder, "switch", "-qc", branch)
    return Workspace.load(folder)


def blank(folder: Path, text: str, *, metric: str = "score", direction: str = "higher", name: str = "score.py",
          budget: float = 5, branch: str = "autoresearch/test") -> Workspace:
    init_workspace(folder, template="blank", command=f"python {name}", metric=metric, direction=direction,
                   editable=(name,), budget=budget)
    (folder / name).write_text(text)
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "script")
    if branch:
        git(folder, "switch", "-qc", branch)
    return Workspace.load(folder)


def cli(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def experiment(ws: Path, description: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return cli("experiment", "-d", description, *extra, cwd=ws, timeout=timeout)


def experiment_json(ws: Path, description: str) -> dict:
    r = experiment(ws, description, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def rows(ws: Path) -> list:
    return results.read(Path(ws) / "results.tsv")[1]


def head(ws: Path) -> str:
    return git(ws, "rev-parse", "HEAD")


def clean(ws: Path) -> bool:
    return git(ws, "status", "--porcelain") == ""


def assert_intact(ws: Path, frontier: str, n_rows: int) -> None:
    """The ending every fault test shares: frontier intact, clean tree, one row per experiment."""
    assert head(ws) == frontier
    assert clean(ws), git(ws, "status", "--porcelain")
    assert len(rows(ws)) == n_rows
    assert not (Path(ws) / ".autoresearch" / "journal.json").exists()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            text = stat.read_text()
        except OSError:
            return False
        return text[text.rfind(")") + 2:].split()[0] != "Z"
    return True


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
