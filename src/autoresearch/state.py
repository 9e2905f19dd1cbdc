"""The state folders of a workspace: the engine's own files, typed.

Two folders. `.autoresearch/` in the workspace holds what watchers read and what agents
keep; the agent can write there (it edits files in the workspace), so the engine trusts
nothing in it. What the engine decides by lives in its private folder outside the workspace
(`pins.private_dir`, whose database also holds the pins), where neither a training run (the
sandbox does not bind it) nor the agent's edits of the workspace reach.

| file | record | written by | read by |
| --- | --- | --- | --- |
| private `engine.db` | the ledger, the journals of experiments in flight, the code that already ran (autoresearch.store) | the engine | the engine, recovery, the views |
| private `lock` | one engine per workspace (flock) | the engine | another engine |
| private `logs/` | each run's own log, named on its row (autoresearch.runlog) | the engine | the agent's prompt, the views |
| private `runs/` | the evaluator's record of the run in flight | the engine | the engine |
| `current.json` | `Current`: the run in flight, for watchers | the engine | status, dashboard |
| `loop.json` | `LoopState`: what `autoresearch run` is doing | the loop | status, dashboard |

Beside them in `.autoresearch/`: `diffs/` (diffs kept for the agent's prompt) and the agents'
own files (prompts, transcripts, the built-in agent's search state). Compile caches live in
each run's scratch folder, thrown away with it.

A record file that is missing, unreadable or of another version reads as None.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, read_own, real_folder
from autoresearch.pins import private_dir

STATE_DIR = ".autoresearch"
VERSION = 1

CURRENT = "current.json"
LOOP = "loop.json"
LOCK = "lock"
WORKER_CURRENT = "current-*.json"  # current-<worker>.json: a pool's workers (StateFolder.seat)

R = TypeVar("R")


@dataclass(frozen=True)
class Current:
    """The run in flight, for watchers."""

    commit: str
    description: str
    kind: str
    started_at: float  # unix time
    budget: float = 0.0
    pid: int | None = None  # the process group, once started
    agent: str = ""
    worker: str = ""  # with `run --workers N`: which worker runs it
    phase: str = "training"  # training | evaluating (the engine's evaluator, once the trainer exited)
    version: int = VERSION


@dataclass(frozen=True)
class LoopState:
    """What `autoresearch run` is doing."""

    pid: int
    branch: str
    agent: str
    started_at: float
    updated_at: float
    state: str  # starting | preparing | baseline | proposing | running | stopped
    tag: str = ""
    experiments: int = 0
    cost_usd: float = 0.0
    experiment: int | None = None  # the number of the one in progress
    description: str = ""
    reason: str = ""  # why it stopped
    version: int = VERSION


def _record(cls: type[R], data: Any) -> R | None:
    if not isinstance(data, dict) or data.get("version", VERSION) != VERSION:
        return None
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:  # a required field is missing
        return None


def read_json(path: Path) -> Any:
    """A record, or None; read only as a regular file of its own (the agent writes the state folder)."""
    data = read_own(Path(path))
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def write_json(path: Path, data: Any) -> None:
    real_folder(path.parent)  # a link in the state folder's place is replaced, never written through
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


class StateFolder:
    """The state folder of the workspace at `root`; nothing is created until written."""

    def __init__(self, root: Path, worker: str = ""):
        self.root = Path(root)
        self.path = self.root / STATE_DIR
        self.private = private_dir(root)
        self.worker = worker  # a worker's view (see `seat`): its own current record and run records
        self._current, self._runs = (f"current-{worker}.json", f"runs-{worker}") if worker else (CURRENT, "runs")

    def seat(self, worker: str) -> "StateFolder":
        """The view of one worker of a pool: its own current record for watchers and its own
        folder of run records."""
        return StateFolder(self.root, worker)

    def worker_runs(self) -> list[Current]:
        """What each worker of a pool is running, for watchers."""
        found = (_record(Current, read_json(p)) for p in sorted(self.path.glob(WORKER_CURRENT)))
        # the name becomes a log's file name: a plain one only (the agent can write these records)
        return [c for c in found
                if c is not None and isinstance(c.worker, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", c.worker)]

    def clear_worker_runs(self) -> None:
        for path in self.path.glob(WORKER_CURRENT):
            with contextlib.suppress(OSError):
                path.unlink()

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def logs_dir(self) -> Path:
        """Each run's own log (autoresearch.runlog.RunLogs)."""
        return self.private / "logs"

    @property
    def runs_dir(self) -> Path:
        return self.private / self._runs

    @property
    def diffs_dir(self) -> Path:
        return self.private / "diffs"

    # -- the run in flight, for watchers ---------------------------------------------

    def current(self) -> Current | None:
        return _record(Current, read_json(self.path / self._current))

    def write_current(self, current: Current) -> None:
        # for watchers only: a disk that a run filled for a moment must not stop the engine here
        with contextlib.suppress(OSError):
            write_json(self.path / self._current, asdict(replace(current, worker=self.worker)))

    def clear_current(self) -> None:
        (self.path / self._current).unlink(missing_ok=True)

    # -- the loop ------------------------------------------------------------------------

    def loop(self) -> LoopState | None:
        return _record(LoopState, read_json(self.path / LOOP))

    def write_loop(self, loop: LoopState) -> None:
        write_json(self.path / LOOP, asdict(loop))

    # -- the lock ----------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, what: str):
        """Hold the workspace lock: one engine (loop or experiment) per workspace at a time.

        The lock file is in the private folder: deleting `.autoresearch/` (or the whole
        workspace's untracked files) does not release it."""
        self.private.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.private / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "?"
                raise AutoresearchError(
                    f"another autoresearch process is using this workspace ({holder}); wait for it or stop it first"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}, {what}\n".encode())
            yield
        finally:
            os.close(fd)
