"""Helpers shared by the tests (tests/ is on sys.path, see conftest.py): `from support import ...`.

- Processes: `cli(...)` runs `python -m autoresearch ...`; `git(...)`; `wait_for`, `pid_alive`, `kill`.
- Blank workspaces: `blank(tmp)` commits a blank-template workspace in tmp/ws whose editable
  score.py prints `score: X` (the agent tests' experiment; the engine tests pass their own script),
  with `commit` and `dirty` to work in it.
- LLM-like workspaces: `llm_like(folder)` is shaped like the LLM template (train.py editable, a
  fingerprinted prepare.py that writes the harness record, a pinned val split) whose train.py
  runs in a fraction of a second without torch; `experiment`, `rows`, `head`, `clean` and
  `assert_intact` drive and check the engine in it.
- A recorded line of research: `make_research(root)` runs `autoresearch init --template blank`,
  makes a branch, commits one change per experiment in EXPERIMENTS (discarded ones are reset
  away, as the engine does, so they stay reachable only through the reflog), and writes
  results.tsv and run.log by hand, for the status and dashboard tests.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from autoresearch import pins
from autoresearch import resultsfile as results
from autoresearch.gitrepo import identity_args
from autoresearch.proc import run
from autoresearch.research.results import Row
from autoresearch.state import StateFolder
from autoresearch.store import Store
from autoresearch.workspace import Workspace, fingerprint, init_workspace

# ---------------------------------------------------------------- processes


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m autoresearch ARGS` in `cwd`, `env` on top of ours, 160 columns for rich and click."""
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "160", **(env or {})})


def git(root: Path, *args: str, check: bool = True) -> str:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {r.stderr}")
    return r.stdout.strip()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pid_alive(pid: int) -> bool:
    """Running (a killed orphan may linger as a zombie until something reaps it)."""
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


# ---------------------------------------------------------------- blank workspaces

SCORE = """\
# A tiny experiment: the score is how far LR is from 0.1 (lower is better).
LR = 0.5
WIDTH = 4


def score(lr, width):
    return abs(lr - 0.1) + 1.0 + 0.0 * width


print(f"score: {score(LR, WIDTH):.6f}")
"""
BRIEF = "# Research brief\n\nMake the score as low as you can by tuning LR.\n"


def blank(tmp: Path, text: str = SCORE, *, editable: tuple[str, ...] = ("score.py",), metric: str = "score",
          direction: str = "lower", budget: float = 5, branch: str = "", folder: str = "ws") -> Workspace:
    """A committed blank-template workspace in tmp/folder running `python EDITABLE[0]`, which holds `text`;
    with `branch`, switched to that new branch."""
    root = tmp / folder
    ws = init_workspace(root, template="blank", command=f"python {editable[0]}", metric=metric,
                        editable=tuple(editable), direction=direction, budget=budget)
    (root / editable[0]).write_text(text)
    (root / "program.md").write_text(BRIEF)
    commit(ws, "the experiment")
    if branch:
        git(root, "switch", "-qc", branch)
    return Workspace.load(root)


def commit(ws: Workspace, message: str) -> str:
    run(["git", "add", "-A"], cwd=ws.root)
    run(["git", *identity_args(ws.root), "commit", "-q", "-m", message], cwd=ws.root)
    return run(["git", "rev-parse", "HEAD"], cwd=ws.root).stdout.strip()


def dirty(ws: Workspace) -> list[str]:
    """Paths git sees as changed or new (ignored files excluded)."""
    out = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ws.root).stdout
    return sorted(line[3:] for line in out.splitlines())


# ---------------------------------------------------------------- LLM-like workspaces and the engine

VAL_SHA = "ab" * 32

FAKE_PREPARE = '''\
"""A stand-in harness: evaluate_bpb hands a number over; the engine's evaluator scores it."""
import json, os

TIME_BUDGET = 2
MAX_SEQ_LEN = 16
PREPARED_DIR = os.path.join(os.environ.get("AUTORESEARCH_CACHE_DIR", "/nonexistent"), "prepared", "fake")


def manifest():
    return {"val_sha256": "%s"}


def evaluate_bpb(value):
    folder = os.environ.get("AUTORESEARCH_HANDOVER")
    if folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "value.json"), "w") as fh:
            json.dump({"value": value}, fh)
    return value


def score_handover(folder):
    with open(os.path.join(folder, "value.json")) as fh:
        value = json.load(fh)["value"]
    return {"val_bpb": float(value), "tokens": 100, "bytes": 400, "val_sha256": "%s"}
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


def fake_prepared_data() -> Path:
    """The files the engine checks for before a run, where FAKE_PREPARE says they are (empty:
    the fake harness never reads them)."""
    folder = Path(os.environ["AUTORESEARCH_CACHE_DIR"]) / "prepared" / "fake"
    (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in ("train.bin", "train.idx.npy", "val.bin", "val.idx.npy", "manifest.json"):
        (folder / name).touch()
    return folder


def llm_like(folder: Path, *, value: float = 1.0, budget: float = 2, branch: str = "autoresearch/test",
             baseline_runs: int = 2, hard_limit: float = 0, allowance: float = 0) -> Workspace:
    ws = init_workspace(folder, template="blank", command="python train.py", metric="val_bpb",
                        editable=("train.py",), budget=budget)
    fake_prepared_data()
    (folder / "prepare.py").write_text(FAKE_PREPARE)
    (folder / "train.py").write_text(train_text(value))
    cfg = replace(ws.config, template="llm", harness_record=True, harness_files=("prepare.py",),
                  harness_sha256=fingerprint(folder, ("prepare.py",)), hard_limit=hard_limit, allowance=allowance,
                  keep=replace(ws.config.keep, baseline_runs=baseline_runs))
    ws = ws.save(cfg)
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "fake llm workspace")
    pins.write(pins.fresh(folder, cfg.harness_sha256, VAL_SHA))
    if branch:
        git(folder, "switch", "-qc", branch)
    return Workspace.load(folder)


def experiment(ws: Path, description: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return cli("experiment", "-d", description, *extra, cwd=ws, timeout=timeout)


def experiment_json(ws: Path, description: str) -> dict:
    r = experiment(ws, description, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def rows(ws: Path) -> list:
    return results.read(Path(ws) / "results.tsv")[1]


def kept_last(got: list) -> str:
    """The commit kept last: the one whose first kept row comes last (a re-run of an older
    frontier, written after a change's runs, is kept too but keeps nothing new)."""
    firsts = {}
    for x in got:
        if x.status == "keep":
            firsts.setdefault(x.commit, x)
    return list(firsts)[-1]


def head(ws: Path) -> str:
    return git(ws, "rev-parse", "HEAD")


def clean(ws: Path) -> bool:
    return git(ws, "status", "--porcelain") == ""


def assert_intact(ws: Path, frontier: str, n_rows: int) -> None:
    """The ending every fault test shares: frontier intact, clean tree, one row per experiment."""
    assert head(ws) == frontier
    assert clean(ws), git(ws, "status", "--porcelain")
    assert len(rows(ws)) == n_rows
    assert no_journals(ws)


def no_journals(ws: Path) -> bool:
    """No experiment in flight in the engine's records (or no records yet)."""
    private = StateFolder(Path(ws)).private
    return not (private / "engine.db").exists() or Store(private).journals() == []


# ---------------------------------------------------------------- a recorded line of research

# (score, status, description, kind, reason)
EXPERIMENTS = [
    (2.000, "keep", "baseline", "baseline", ""),
    (2.004, "keep", "baseline", "baseline", ""),
    (1.900, "keep", "scale by 0.95", "experiment", ""),
    (1.950, "discard", "add an offset of 0.05", "experiment", ""),
    (0.0, "crash", "call an undefined function", "experiment", "NameError: name 'nope' is not defined"),
    (1.800, "keep", "scale by 0.9 again", "experiment", ""),
]


def init_research(root: Path) -> Path:
    """`autoresearch init --template blank` in `root`, switched to the branch autoresearch/test."""
    subprocess.run(
        [sys.executable, "-m", "autoresearch", "init", str(root), "--template", "blank",
         "--command", "python score.py", "--metric", "score", "--editable", "score.py"],
        check=True, capture_output=True, text=True,
    )
    git(root, "checkout", "-q", "-b", "autoresearch/test")
    return root


def research_row(commit: str, value: float, status: str, description: str, kind: str, reason: str, i: int) -> Row:
    t = datetime(2025, 3, 8, 22, 0, tzinfo=timezone.utc) + timedelta(seconds=70 * (i + 1))
    ran = status in ("keep", "discard")
    return Row(
        commit=commit, value=value, memory_gb=0.1 if ran else 0.0, status=status, description=description,
        timestamp=t.strftime("%Y-%m-%dT%H:%M:%SZ"), seconds=62.0 if ran else 3.0,
        training_seconds=60.0 if ran else None, steps=100 if ran else None, kind=kind, reason=reason,
        agent="" if kind == "baseline" else "openai", tokens_in=None if kind == "baseline" else 1000 + i,
        tokens_out=None if kind == "baseline" else 200, cost_usd=None if kind == "baseline" else 0.01,
    )


def commit_change(root: Path, text: str, message: str) -> str:
    (root / "score.py").write_text(text)
    git(root, "add", "score.py")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "--short=7", "HEAD")


def make_research(root: Path) -> dict:
    """A workspace with EXPERIMENTS recorded; returns {"root", "rows", "commits"}."""
    init_research(root)
    base = commit_change(root, "print('score: 2.0')\n", "baseline score script")
    commits, recorded = [], []
    for i, (value, status, description, kind, reason) in enumerate(EXPERIMENTS):
        if kind == "baseline":
            sha = base
        else:
            frontier = git(root, "rev-parse", "HEAD")
            sha = commit_change(root, f"# {description}\nprint('score: {value}')\n", description)
            if status != "keep":
                git(root, "reset", "-q", "--hard", frontier)
        commits.append(sha)
        recorded.append(research_row(sha, value, status, description, kind, reason, i))
    write_results(root, recorded)
    (root / "run.log").write_text(
        "starting\n"
        + "".join(f"step {s:05d} | progress {s:.1f}% | loss {3 - s / 50:.6f} | remaining {100 - s}s\n" for s in (1, 2, 3))
        + "---\nscore: 1.800000\n"
    )
    return {"root": root, "rows": recorded, "commits": commits}


def write_results(root: Path, rows) -> None:
    """Make these rows the engine's records (its database, with results.tsv as the copy)."""
    store = Store(pins.private_dir(root), root / "results.tsv", "score")
    store.rows()  # made (and migrated) if it was not yet
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM rows")
    store.record(rows)


def append_row(root: Path, r: Row) -> None:
    """Record one more row as the engine does."""
    Store(pins.private_dir(root), root / "results.tsv", "score").record([r])


API_KEY = "sk-test-0123456789abcdefSECRET"  # a fake key the API agents send to the loopback server


# ---------------------------------------------------------------- the real template, small

FAST_TRAIN = dict(TOTAL_BATCH_SIZE=2**11, DEVICE_BATCH_SIZE=8)


def small_cpu_workspace(root: Path, budget: str = "3", allowance: float = 0.0) -> Path:
    """A workspace of the real CPU template with a short budget, a small batch and a short
    evaluation (the harness is this helper's to change: it pins it again), prepared. `allowance`
    (seconds beyond the budget for startup, 0: pinned from the baseline) for a test whose
    proposals may grow the model, whose startup a budget of seconds cannot absorb."""
    from autoresearch import capsliterals

    r = cli("init", str(root), "--profile", "cpu", "--budget", budget, cwd=root.parent)
    assert r.returncode == 0, r.stderr
    prepare = root / "prepare.py"
    prepare.write_text(capsliterals.write_constants(prepare.read_text(), {"EVAL_TOKENS": 2**14}))
    train = root / "train.py"
    train.write_text(capsliterals.write_constants(train.read_text(), FAST_TRAIN))
    ws = Workspace.load(root)
    sha = fingerprint(root, ws.config.harness_files)
    ws.save(replace(ws.config, harness_sha256=sha, allowance=allowance))
    pins.write(pins.fresh(root, sha))
    git(root, "commit", "-qam", "smaller evaluation and batch, for a test of seconds")
    r = cli("prepare", cwd=root, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return root


PREPARE_IMPORT = "from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, deadline, evaluate_bpb, make_dataloader\n"
SETUP_RULER = "# ---------------------------------------------------------------------------\n# Setup\n"


def template_definitions():
    """The template train.py's definitions (everything above its Setup section: constants, model,
    optimizers, schedules) as a module, without its import of the harness."""
    import types

    from autoresearch.workspace import template_text

    text = template_text("llm", "train.py")
    assert PREPARE_IMPORT in text and SETUP_RULER in text
    head = text.split(SETUP_RULER)[0].replace(PREPARE_IMPORT, "")
    module = types.ModuleType("train_definitions")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(head, "train.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module
