"""The state folders of a workspace: the engine's own files, typed.

Two folders. `.autoresearch/` in the workspace holds what watchers read and what agents
keep; the agent can write there (it edits files in the workspace), so the engine trusts
nothing in it. What the engine decides by lives in its private folder outside the workspace
(`pins.private_dir`, beside the pins), where neither a training run (the sandbox does not
bind it) nor the agent's edits of the workspace reach.

| file | record | written by | read by |
| --- | --- | --- | --- |
| private `journal.json` | `Journal`: the experiment in progress, step by step | the engine | recovery after `kill -9` |
| private `seen.json` | `Seen`: which code already ran (by content) | the engine | the guard |
| private `lock` | one engine per workspace (flock) | the engine | another engine |
| private `runs/` | the evaluator's record of the run in flight | the engine | the engine |
| `current.json` | `Current`: the run in flight, for watchers | the engine | status, dashboard |
| `loop.json` | `LoopState`: what `autoresearch run` is doing | the loop | status, dashboard |
| `val_sha256` | a copy of the validation split's pin, for the views | `prepare` | the views |

Beside them in `.autoresearch/`: `diffs/` (diffs kept for the agent's prompt) and the agents'
own files (prompts, transcripts, the built-in agent's search state). Compile caches live in
each run's scratch folder, thrown away with it. In the private folder: `results.tsv`, the
ledger of the rows the engine wrote (autoresearch.resultsfile.Results).

A record file that is missing, unreadable or of another version reads as None (the
journal's absence means no experiment is in progress).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.pins import private_dir

STATE_DIR = ".autoresearch"
VERSION = 1

JOURNAL = "journal.json"
CURRENT = "current.json"
SEEN = "seen.json"
LOOP = "loop.json"
LOCK = "lock"
LEDGER = "results.tsv"
VAL_PIN = "val_sha256"
WORKER_CURRENT = "current-*.json"  # current-<worker>.json: a pool's workers (StateFolder.seat)

R = TypeVar("R")


@dataclass(frozen=True)
class Journal:
    """The experiment in progress: enough to finish it after the engine died."""

    branch: str
    frontier: str  # full sha
    kind: str  # baseline | experiment | confirm
    description: str
    candidate: str | None = None  # full sha, once committed
    agent: str = ""
    pid: int = 0  # the engine's
    started_utc: str = ""
    usage: dict | None = None  # tokens_in, tokens_out, cost_usd
    result_path: str = ""  # the harness record of the run in flight (marks its processes)
    pgid: int | None = None  # the run's process group while it runs
    recorded: bool = False  # its row(s) are in results.tsv
    keep: bool = False  # and they say keep
    reason: str = ""  # why it could not be recorded
    # results.tsv lines of the runs that finished but are not recorded yet, as they would be
    # recorded if the engine stopped now: recovery writes them after a `kill -9`
    measured: tuple[str, ...] = ()
    running: str = ""  # the commit of the run in flight (the frontier's, for a re-run beside the candidate)
    worker: str = ""  # the pool's worker that runs it ("" one at a time)
    version: int = VERSION


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
    version: int = VERSION


@dataclass(frozen=True)
class SeenEntry:
    """A run of some code, remembered by the content of its editable files."""

    commit: str
    status: str
    value: float
    reason: str = ""


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
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


class StateFolder:
    """The state folder of the workspace at `root`; nothing is created until written."""

    def __init__(self, root: Path):
        self.path = Path(root) / STATE_DIR
        self.private = private_dir(root)
        self.worker = ""  # set on a worker's view (see `seat`)
        self._journal, self._current, self._runs = JOURNAL, CURRENT, "runs"

    def seat(self, worker: str, ticket: str) -> "StateFolder":
        """The view of one worker of a pool running one experiment (`ticket`): its own journal
        (so that the engine can record one experiment while the worker starts the next), its
        own current record for watchers and its own folder of run records."""
        view = copy.copy(self)
        view.name_files(worker, f"journal-{ticket}.json", f"current-{worker}.json", f"runs-{worker}")
        return view

    def name_files(self, worker: str, journal: str, current: str, runs: str) -> None:
        self.worker, self._journal, self._current, self._runs = worker, journal, current, runs

    def worker_journals(self) -> list[tuple[Path, Journal | None]]:
        """The journals the workers of a pool left (each experiment in flight has one)."""
        return [(p, _record(Journal, read_json(p))) for p in sorted(self.private.glob("journal-*.json"))]

    def worker_runs(self) -> list[Current]:
        """What each worker of a pool is running, for watchers."""
        found = (_record(Current, read_json(p)) for p in sorted(self.path.glob(WORKER_CURRENT)))
        return [c for c in found if c is not None]

    def clear_worker_runs(self) -> None:
        for path in self.path.glob(WORKER_CURRENT):
            with contextlib.suppress(OSError):
                path.unlink()

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def ledger(self) -> Path:
        """The engine's own copy of every row it wrote (see autoresearch.resultsfile.Results)."""
        return self.private / LEDGER

    @property
    def runs_dir(self) -> Path:
        return self.private / self._runs

    @property
    def diffs_dir(self) -> Path:
        return self.path / "diffs"

    # -- the journal and the run in flight ---------------------------------------

    def journal(self) -> Journal | None:
        return _record(Journal, read_json(self.private / self._journal))

    def write_journal(self, journal: Journal) -> None:
        write_json(self.private / self._journal, asdict(journal))

    def current(self) -> Current | None:
        return _record(Current, read_json(self.path / self._current))

    def write_current(self, current: Current) -> None:
        write_json(self.path / self._current, asdict(replace(current, worker=self.worker)))

    def clear_current(self) -> None:
        (self.path / self._current).unlink(missing_ok=True)

    def clear_experiment(self) -> None:
        """The experiment is over: no journal, nothing in flight."""
        for path in (self.private / self._journal, self.path / self._current):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- code that already ran ----------------------------------------------------

    def seen(self) -> dict[str, SeenEntry] | None:
        """Content key -> its run; None when the file is missing or unreadable (rebuild it)."""
        data = read_json(self.private / SEEN)
        if not isinstance(data, dict):
            return None
        out = {}
        for key, value in data.items():
            entry = _record(SeenEntry, value)
            if entry is not None:
                out[key] = entry
        return out

    def write_seen(self, seen: dict[str, SeenEntry]) -> None:
        with contextlib.suppress(OSError):
            write_json(self.private / SEEN, {k: asdict(v) for k, v in seen.items()})

    # -- the loop ------------------------------------------------------------------------

    def loop(self) -> LoopState | None:
        return _record(LoopState, read_json(self.path / LOOP))

    def write_loop(self, loop: LoopState) -> None:
        write_json(self.path / LOOP, asdict(loop))

    # -- the validation pin ------------------------------------------------------------

    def pinned_val(self) -> str | None:
        try:
            return (self.path / VAL_PIN).read_text().strip() or None
        except OSError:
            return None

    def pin_val(self, sha256: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / VAL_PIN, sha256 + "\n")

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
