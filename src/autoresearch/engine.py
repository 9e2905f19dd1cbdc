"""One experiment, end to end: guard, commit, supervised run, metric, record, decide.

`Engine(ws).experiment(description)` is what `autoresearch experiment` and every turn of
`autoresearch run` do:

1. Guard. The change against the frontier (the branch's best commit) may touch only the
   editable files (and the agent's notes, which are never scored); the harness must match
   its fingerprint. Otherwise: status `invalid`, the change is reverted. An empty change is
   a `noop`; code identical to code that already ran is not run again (`noop`, with the
   earlier result in the reason).
2. Commit the candidate, then run the workspace's command as a process group of its own:
   output to run.log, secrets scrubbed from the environment, AUTORESEARCH_RESULT pointing at
   a fresh path, a hard wall-clock limit after which the whole group is killed.
3. Measure: the metric comes from the harness's record (checked against the harness and
   validation-split fingerprints), cross-checked with the printed `val_bpb:` line; the
   engine's own clock checks the budget. Anything wrong makes the run a `crash`, with a
   reason. A blank-template workspace without a record reads the printed `NAME: value` line
   and says so.
4. Decide with the noise-aware keep rule (keeprule.py); a small win is run once more
   (a `confirm` row) and the pair is decided together.
5. Record the row(s) in results.tsv (atomically), then keep the commit or reset to the
   frontier. A journal in the state folder makes every step recoverable after `kill -9`.

The first experiment on a branch is the baseline: the unchanged code, run
`keep.baseline_runs` times to estimate the run-to-run noise.

Not covered: a training process that escapes its process group (setsid of its own) is not
followed; the record can be forged by code that reads the harness and the pinned hashes
(the checks stop accidents and casual gaming, not a determined adversary).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from autoresearch import gitrepo, keeprule, results
from autoresearch.errors import AutoresearchError
from autoresearch.results import Row
from autoresearch.workspace import Workspace, atomic_write, read_tail

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Seconds granted beyond the training budget for startup (imports, data, compilation) and
# anything else that is not evaluation: 30 s plus 10 % of the budget. A cold torch.compile
# of the reference model takes about 53 s on an H100, inside the 60 s this gives a 300 s
# budget; a CPU run starts in a few seconds. Settable as `allowance` in autoresearch.toml.
ALLOWANCE_BASE = 30.0
ALLOWANCE_FRAC = 0.10
# An honest training loop checks the clock after each step, so it may overrun by one step:
# the printed training time may pass the budget by 3 s, 2 % of the budget, or two average
# steps, whichever is largest (a slow CPU can take seconds per step).
OVERRUN_MIN = 3.0
OVERRUN_FRAC = 0.02
OVERRUN_STEPS = 2.0
GRACE = 5.0  # seconds between SIGTERM and SIGKILL
TRACEBACK_LINES = 50
LOG_READ_BYTES = 512 * 1024  # only the end of a long run.log is read
PRINTED_NOTE = " (printed metric)"

JOURNAL = "journal.json"
CURRENT = "current.json"
SEEN = "seen.json"
LOCK = "lock"
RUNS_DIR = "runs"
CACHE_DIR = "cache"

_SECRET_WORDS = {
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "PWD_HASH",
    "CREDENTIAL", "CREDENTIALS", "KEY", "KEYS", "APIKEY", "AUTH", "COOKIE", "PRIVATE",
}
_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%{}\n")
_STEP = re.compile(r"^step\s+(\d+)\b(.*)$")
_FIELD = re.compile(r"\b(loss|remaining|progress)\s+([-+0-9.eE]+)(%|s)?")
_SUMMARY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


# ---------------------------------------------------------------------------
# The supervised process


def is_secret(name: str) -> bool:
    """True for environment variables that look like credentials (API keys, tokens, passwords)."""
    upper = name.upper()
    if "API_KEY" in upper or "APIKEY" in upper or "ACCESS_KEY" in upper:
        return True
    return any(part in _SECRET_WORDS for part in re.split(r"[^A-Z0-9]+", upper))


def scrubbed(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not is_secret(k)}


def command_argv(command: str) -> list[str]:
    """The run command as an argv: split like a shell would, or run by /bin/sh when it uses
    shell syntax. A leading `python`/`python3` means the interpreter autoresearch runs under,
    which has the training dependencies."""
    if any(c in _SHELL_CHARS for c in command.replace("'", "").replace('"', "")) or not command.strip():
        return ["/bin/sh", "-c", command]
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


@dataclass(frozen=True)
class RunOutcome:
    returncode: int | None
    seconds: float  # wall clock from start to exit (or to the kill)
    timed_out: bool = False
    error: str = ""  # the command could not start


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(pgid: int, proc: subprocess.Popen | None = None, grace: float = GRACE) -> None:
    """SIGTERM the whole group, wait up to `grace` seconds, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        if proc is not None:
            proc.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def supervise(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    limit: float,
    *,
    on_start: Callable[[int], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    tick: float = 0.5,
) -> RunOutcome:
    """Run `argv` in a new session (its own process group), output to `log_path`.

    After `limit` seconds the group gets SIGTERM, then SIGKILL. After a normal exit the group
    is killed too, so background children never outlive the run. On KeyboardInterrupt the
    group is killed and the interrupt goes on.
    """
    start = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            log.write(f"cannot start {argv[0]}: {exc.strerror or exc}\n".encode())
            return RunOutcome(None, time.monotonic() - start, error=f"cannot start {argv[0]}: {exc.strerror or exc}")
    pgid = proc.pid
    timed_out = False
    try:
        if on_start is not None:
            on_start(pgid)
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= limit:
                timed_out = True
                break
            try:
                proc.wait(timeout=min(tick, limit - elapsed))
                break
            except subprocess.TimeoutExpired:
                if on_tick is not None:
                    on_tick(time.monotonic() - start)
    except BaseException:
        with shielded():
            kill_group(pgid, proc)
        raise
    seconds = time.monotonic() - start
    kill_group(pgid, proc)
    return RunOutcome(None if timed_out else proc.returncode, seconds, timed_out)


@contextlib.contextmanager
def shielded():
    """Ignore Ctrl-C and SIGTERM while cleaning up (main thread only; elsewhere a no-op)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt, so `kill PID` cleans up like Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class LiveLine:
    """One line of progress on a terminal, rewritten in place from run.log's step lines."""

    def __init__(self, stream: TextIO, log_path: Path, label: str):
        self.stream, self.log_path, self.label = stream, log_path, label
        self.offset, self.partial, self.last = 0, b"", ""
        self.shown = False

    def __call__(self, elapsed: float) -> None:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(LOG_READ_BYTES)
                self.offset = fh.tell()
        except OSError:
            return
        lines = (self.partial + chunk).replace(b"\r", b"\n").split(b"\n")
        self.partial = lines.pop()
        for raw in reversed(lines):
            text = raw.decode(errors="replace").strip()
            if _STEP.match(text):
                self.last = text
                break
        parts = [self.label, f"{elapsed:4.0f} s"]
        m = _STEP.match(self.last)
        if m:
            fields = {k: v for k, v, _ in _FIELD.findall(m.group(2))}
            parts.append(f"step {int(m.group(1))}")
            if "loss" in fields:
                parts.append(f"loss {float(fields['loss']):.4f}")
            if "remaining" in fields:
                parts.append(f"{float(fields['remaining']):.0f} s left")
        text = " | ".join(parts)
        width = 100
        self.stream.write("\r\x1b[K" + text[:width])
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


# ---------------------------------------------------------------------------
# Reading what a run left behind


def read_log(path: Path, limit: int = LOG_READ_BYTES) -> str:
    text = read_tail(path, limit) or ""
    # a line rewritten in place with \r: keep its last state
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def summary(log: str) -> dict[str, str]:
    """The `name: value` lines after the last `---` line (the whole log when there is none)."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "---":
            lines = lines[i + 1 :]
            break
    found: dict[str, str] = {}
    for line in lines:
        m = _SUMMARY.match(line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def printed_value(log: str, name: str) -> str | None:
    """The value of the last `NAME: value` line anywhere in the log."""
    pattern = re.compile(rf"^\s*{re.escape(name)}:\s*(\S+)\s*$")
    for line in reversed(log.splitlines()):
        m = pattern.match(line)
        if m:
            return m.group(1)
    return None


def number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def traceback_tail(log: str, limit: int = TRACEBACK_LINES) -> str:
    """The last traceback in the log (at most `limit` lines); else the last lines of the log."""
    lines = [line.rstrip() for line in log.rstrip().splitlines()]
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last)"):
            start = i
            break
    if start is None:
        return "\n".join(lines[-min(limit, 20) :])
    return "\n".join(lines[start:][-limit:])


def crash_reason(log: str, returncode: int | None) -> str:
    """One short line: why a run failed."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    tail = "\n".join(lines[-60:])
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    if any(line == "FAIL" for line in lines[-20:]):
        return "diverged (printed FAIL)"
    last = ""
    if "Traceback (most recent call last)" in tail:
        tb = traceback_tail(log).splitlines()
        last = next((line.strip() for line in reversed(tb) if line.strip()), "")
    elif lines:
        last = lines[-1]
    oom = re.search(r"MemoryError|out of memory|OutOfMemoryError", tail, re.IGNORECASE)
    if oom:
        return ("out of memory: " + last)[:200] if last else "out of memory"
    code = f"exit status {returncode}"
    return f"{code}: {last}"[:200] if last else code


# ---------------------------------------------------------------------------
# Results and state


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_rows(ws: Workspace) -> list[Row]:
    """All rows of results.tsv ([] when there is none). A malformed file is an error."""
    if not ws.results_path.exists():
        return []
    try:
        _, rows = results.read(ws.results_path)
    except AutoresearchError as exc:
        raise AutoresearchError(f"{exc}; fix or move results.tsv away (nothing was changed)") from exc
    return rows


def branch_rows(rows: list[Row], branch: str) -> list[Row]:
    """The rows of one research branch (rows written without a branch belong to every branch)."""
    return [r for r in rows if r.branch in (branch, "")]


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def extra_setting(ws: Workspace, key: str) -> Any:
    """A top-level key of autoresearch.toml that Config does not model (None if absent)."""
    try:
        return tomllib.loads(ws.config_path.read_text()).get(key)
    except (OSError, tomllib.TOMLDecodeError):
        return None


@dataclass(frozen=True)
class Limits:
    budget: float
    allowance: float  # startup etc. beyond the budget, evaluation aside
    hard: float  # wall-clock limit of the whole run
    overrun: float  # how far past the budget the printed training_seconds may go

    def describe(self) -> str:
        return f"budget {self.budget:g} s, hard limit {self.hard:g} s"


def limits(ws: Workspace) -> Limits:
    cfg = ws.config
    budget = cfg.budget
    allowance = extra_setting(ws, "allowance")
    try:
        allowance = float(allowance) if allowance is not None else 0.0
    except (TypeError, ValueError):
        allowance = 0.0
    if allowance <= 0:
        allowance = ALLOWANCE_BASE + ALLOWANCE_FRAC * budget
    hard = cfg.hard_limit if cfg.hard_limit > 0 else 2 * budget + allowance
    return Limits(budget, allowance, hard, max(OVERRUN_MIN, OVERRUN_FRAC * budget))


@contextlib.contextmanager
def locked(ws: Workspace, what: str):
    """Hold the workspace lock: one engine (loop or experiment) per workspace at a time."""
    import fcntl

    ws.state_dir.mkdir(parents=True, exist_ok=True)
    path = ws.state_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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


# ---------------------------------------------------------------------------
# Measurement


@dataclass(frozen=True)
class Measurement:
    value: float | None  # None: the run is a crash
    reason: str = ""  # why it crashed; or a note about the measurement
    source: str = ""  # "harness record" or "printed line"
    memory_gb: float = 0.0
    training_seconds: float | None = None
    steps: int | None = None
    seconds: float = 0.0
    log_tail: str = ""


@dataclass
class Outcome:
    """What `experiment` did; `lines()` for people, `to_json()` for programs."""

    status: str
    kind: str
    description: str
    commit: str  # short sha of the code that ran (the frontier's for noop / invalid)
    metric: str
    direction: str
    value: float | None = None  # the mean of the runs
    values: list[float] = field(default_factory=list)
    frontier_before: str = ""
    frontier_value: float | None = None  # before this experiment
    frontier: str = ""  # short sha of the frontier after it
    improvement: float | None = None  # > 0 better
    bar: float | None = None
    sigma: float | None = None
    memory_gb: float = 0.0
    seconds: float = 0.0
    training_seconds: float | None = None
    steps: int | None = None
    reason: str = ""
    source: str = ""
    log_tail: str = ""
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["rows"] = [r.cells() for r in self.rows]
        data["delta"] = self.delta
        return data

    @property
    def delta(self) -> float | None:
        if self.value is None or self.frontier_value is None:
            return None
        return self.value - self.frontier_value

    def lines(self) -> list[str]:
        head = f"{self.status:<8}"
        if self.kind != "experiment":
            head += f" ({self.kind})"
        out = []
        if self.value is not None:
            text = f"{head} {self.metric} {self.value:.6f}"
            if self.delta is not None and self.kind != "baseline":
                text += f" ({self.delta:+.6f} vs {self.frontier_value:.6f}"
                text += f", bar {self.bar:.6f})" if self.bar is not None else ")"
            if len(self.values) > 1:
                text += f" mean of {len(self.values)} runs"
            text += f"  memory {self.memory_gb:.1f} GB  {self.seconds:.1f} s  [{self.commit}]"
            out.append(text)
        else:
            out.append(f"{head} {self.seconds:.1f} s  [{self.commit}]" if self.seconds else f"{head} [{self.commit}]")
        note = self.reason
        if self.kind == "baseline":
            pass
        elif self.status == "keep":
            note += f"; frontier is now {self.frontier}"
        elif self.status in ("discard", "crash", "invalid") and self.kind != "baseline":
            note += f"; reset to the frontier {self.frontier}"
        if note:
            out.append(f"         {note.lstrip('; ')}")
        if self.status == "crash" and self.log_tail:
            out.append(f"--- end of run.log ({len(self.log_tail.splitlines())} lines) ---")
            out.append(self.log_tail)
        return out


# ---------------------------------------------------------------------------
# The engine


def content_key(root: Path, commit: str, editable: tuple[str, ...]) -> str:
    """A fingerprint of the editable files' content at `commit`."""
    listing = gitrepo.git(root, "ls-tree", "-r", commit, "--", *editable).stdout
    return hashlib.sha256(listing.encode()).hexdigest()


class Engine:
    """Runs experiments in one workspace. The caller holds the workspace lock."""

    def __init__(
        self,
        ws: Workspace,
        *,
        out: Callable[[str], None] | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
    ):
        self.ws = ws
        self.cfg = ws.config
        self.root = ws.root
        self.state = ws.state_dir
        self.stream = stream if stream is not None else sys.stdout
        self.out = out or (lambda line: print(line, file=self.stream, flush=True))
        self.live = self.stream.isatty() if live is None else live
        self.limits = limits(ws)

    # -- branch and rows ---------------------------------------------------

    def branch(self) -> str:
        name = gitrepo.current_branch(self.root)
        if not name or not name.startswith(gitrepo.PREFIX):
            where = f"on {name}" if name else "on a detached HEAD"
            raise AutoresearchError(
                f"experiments run on a research branch, and this workspace is {where}: "
                f"`autoresearch run` sets one up, or `git switch -c {gitrepo.PREFIX}<tag>`"
            )
        return name

    def rows(self, branch: str) -> list[Row]:
        return branch_rows(read_rows(self.ws), branch)

    def frontier(self, rows: list[Row]) -> str:
        """The full sha of the frontier: the commit of the last kept row, else HEAD."""
        for r in reversed(rows):
            if r.status == "keep":
                sha = gitrepo.resolve(self.root, r.commit)
                if sha:
                    return sha
                break
        return gitrepo.head(self.root)

    def frontier_runs(self, rows: list[Row], frontier: str) -> list[Row]:
        return [r for r in rows if r.commit[:7] == frontier[:7] and r.status == "keep" and keeprule.measured(r)]

    def protected(self) -> list[str]:
        """Files that survive every reset: the agent's notes."""
        return [self.cfg.notes] if self.cfg.notes else []

    def is_editable(self, path: str) -> bool:
        for name in self.cfg.editable:
            name = name.rstrip("/")
            if path == name or path.startswith(name + "/"):
                return True
        return False

    def dirty(self) -> list[str]:
        """Uncommitted changes, the notes file aside."""
        return [p for p in gitrepo.changes(self.root) if p not in self.protected()]

    def reset(self, commit: str) -> None:
        gitrepo.reset_hard(self.root, commit, keep=self.protected())

    # -- state files -------------------------------------------------------

    def journal(self) -> dict | None:
        return read_json(self.state / JOURNAL)

    def write_journal(self, **data) -> None:
        write_json(self.state / JOURNAL, data)

    def clear_state(self) -> None:
        for name in (JOURNAL, CURRENT):
            with contextlib.suppress(OSError):
                (self.state / name).unlink()

    def seen(self, rows: list[Row]) -> dict:
        path = self.state / SEEN
        data = read_json(path)
        if data is not None:
            return data
        data = {}  # rebuilt from the rows: each commit that ran, by the content of its editable files
        for r in rows:
            if not self._counts_as_run(r) or r.commit[:7] in {v.get("commit") for v in data.values()}:
                continue
            sha = gitrepo.resolve(self.root, r.commit)
            if sha:
                data.setdefault(content_key(self.root, sha, self.cfg.editable), self._seen_entry(r))
        with contextlib.suppress(OSError):
            write_json(path, data)
        return data

    @staticmethod
    def _counts_as_run(row: Row) -> bool:
        if row.status in ("keep", "discard"):
            return True
        return row.status == "crash" and not row.reason.startswith(("interrupted", "not recorded", "engine error"))

    @staticmethod
    def _seen_entry(row: Row) -> dict:
        return {"commit": row.commit[:7], "status": row.status, "value": row.value, "reason": row.reason}

    def remember(self, key: str, row: Row) -> None:
        if not self._counts_as_run(row):
            return
        path = self.state / SEEN
        data = read_json(path) or {}
        data[key] = self._seen_entry(row)
        with contextlib.suppress(OSError):
            write_json(path, data)

    # -- recovery ------------------------------------------------------------

    def recover(self, keep_edits: bool = False) -> str | None:
        """Finish an experiment that a crash or kill -9 interrupted. Returns a line, or None.

        The caller holds the workspace lock, so no other engine is running: a journal left
        behind belongs to a dead one. Its leftover process group is killed, the row is
        written unless it already was (as a crash, "interrupted"), and the branch goes back
        to the frontier (or to the candidate, when its row says keep). With `keep_edits`
        (an agent calling `experiment` with new edits in the tree) the files in the working
        tree are left as they are and only the branch moves.
        """
        j = self.journal()
        if j is None:
            (self.state / CURRENT).unlink(missing_ok=True)
            return None
        killed = ""
        pgid = j.get("pgid")
        if isinstance(pgid, int) and _ours(pgid, j.get("result_path", "")):
            kill_group(pgid, None, grace=2.0)
            killed = f"; stopped its leftover processes (group {pgid})"
        frontier = j.get("frontier") or gitrepo.head(self.root)
        candidate = j.get("candidate")
        branch = j.get("branch") or ""
        kind = j.get("kind", "experiment")
        if not candidate and kind != "baseline":
            head = gitrepo.head(self.root)
            if head != frontier and gitrepo.parent(self.root, head) == frontier:
                candidate = head  # committed, but killed before the journal said so
        line = None
        if j.get("recorded"):
            keep = bool(j.get("keep"))
        elif candidate:
            rows = read_rows(self.ws)
            written = [r for r in rows if r.commit[:7] == candidate[:7] and r.branch in (branch, "")
                       and r.kind in (kind, "confirm") and r.timestamp >= j.get("started_utc", "")]
            keep = kind != "baseline" and any(r.status == "keep" for r in written)
            if not written:
                reason = j.get("reason") or "interrupted"
                row = Row(
                    commit=candidate[:7], value=0.0, memory_gb=0.0, status="crash",
                    description=j.get("description", ""), timestamp=utc_now(), kind=kind,
                    reason=reason, agent=j.get("agent", ""), branch=branch, **_usage_cells(j.get("usage")),
                )
                results.append(self.ws.results_path, row, self.cfg.metric)
                line = (f"recovered an interrupted {kind} ({candidate[:7]} {j.get('description', '')!r}): "
                        f"recorded as crash ({reason}){killed}")
        else:
            keep = False
        target = candidate if keep and candidate else frontier
        if keep_edits and self.dirty():
            gitrepo.git(self.root, "reset", "-q", "--mixed", target)
        else:
            self.reset(target)
        self.clear_state()
        if line:
            line += f"; tree reset to the frontier {target[:7]}"
        return line

    # -- one run ---------------------------------------------------------------

    def _env(self, result_path: Path) -> dict[str, str]:
        env = scrubbed(dict(os.environ))
        cache = self.state / CACHE_DIR
        env["AUTORESEARCH_RESULT"] = str(result_path)
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
        env.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run_once(self, commit: str, *, kind: str, description: str, agent: str, journal: dict) -> Measurement:
        """Run the command on the checked-out `commit` and measure it (no git changes, no rows)."""
        runs = self.state / RUNS_DIR
        runs.mkdir(parents=True, exist_ok=True)
        for old in runs.glob("*.json*"):
            with contextlib.suppress(OSError):
                old.unlink()
        result_path = runs / f"{int(time.time())}-{uuid.uuid4().hex[:12]}.json"
        pinned = self._pinned_val()
        results_before = self._results_bytes()
        tracked_before = self._outside_snapshot()
        journal = dict(journal, result_path=str(result_path))
        self.write_journal(**journal)
        started = time.time()
        current = {"commit": commit[:7], "description": description, "kind": kind, "started_at": started,
                   "budget": self.cfg.budget, "pid": None, "agent": agent}
        write_json(self.state / CURRENT, current)

        def on_start(pgid: int) -> None:
            self.write_journal(**dict(journal, pgid=pgid))
            write_json(self.state / CURRENT, dict(current, pid=pgid))

        live = LiveLine(self.stream, self.ws.log_path, f"{kind} {commit[:7]}") if self.live else None
        try:
            outcome = supervise(
                command_argv(self.cfg.command), self.root, self._env(result_path), self.ws.log_path,
                self.limits.hard, on_start=on_start, on_tick=live,
            )
        finally:
            if live is not None:
                live.clear()
            (self.state / CURRENT).unlink(missing_ok=True)
        self.write_journal(**dict(journal, pgid=None))
        log = read_log(self.ws.log_path)
        tampered = self._tampering(results_before, tracked_before)
        m = self.measure(outcome, log, result_path, pinned)
        if tampered:
            m = replace(m, value=None, reason=tampered)
        with contextlib.suppress(OSError):
            result_path.unlink()
        return m

    def _pinned_val(self) -> str:
        path = self.state / "val_sha256"
        try:
            return path.read_text().strip()
        except OSError:
            return self.cfg.val_sha256

    def _results_bytes(self) -> bytes | None:
        try:
            return self.ws.results_path.read_bytes()
        except OSError:
            return None

    def _outside_snapshot(self) -> dict[str, str]:
        """sha256 of each tracked file the run must not change (everything but the editable files)."""
        listing = gitrepo.git(self.root, "ls-files", "-z").stdout.split("\0")
        snap = {}
        for name in listing:
            if not name or self.is_editable(name) or name in self.protected():
                continue
            path = self.root / name
            try:
                snap[name] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                snap[name] = "missing"
        return snap

    def _tampering(self, results_before: bytes | None, tracked_before: dict[str, str]) -> str:
        problems = []
        if self.cfg.harness_files and not self.ws.harness_ok():
            problems.append(f"{', '.join(self.cfg.harness_files)} changed during the run (harness fingerprint)")
        after = self._results_bytes()
        if after != results_before:
            if results_before is None:
                self.ws.results_path.unlink(missing_ok=True)
            else:
                atomic_write(self.ws.results_path, results_before.decode())
            problems.append("the run wrote to results.tsv (restored)")
        changed = []
        for name, digest in tracked_before.items():
            path = self.root / name
            try:
                now = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                now = "missing"
            if now != digest and name not in self.cfg.harness_files:
                changed.append(name)
        if changed:
            problems.append(f"the run changed files outside the editable set: {', '.join(sorted(changed)[:5])}")
        return "; ".join(problems)

    def measure(self, outcome: RunOutcome, log: str, result_path: Path, pinned: str) -> Measurement:
        cfg, lim = self.cfg, self.limits
        printed = summary(log)
        memory = number(printed.get("peak_vram_mb"))
        memory_gb = memory / 1024 if memory is not None and math.isfinite(memory) else 0.0
        training = number(printed.get("training_seconds"))
        steps_f = number(printed.get("num_steps"))
        steps = int(steps_f) if steps_f is not None and math.isfinite(steps_f) else None
        base = dict(memory_gb=memory_gb, training_seconds=training, steps=steps, seconds=outcome.seconds)

        def crash(reason: str) -> Measurement:
            return Measurement(None, reason, memory_gb=0.0, training_seconds=training, steps=steps,
                               seconds=outcome.seconds, log_tail=traceback_tail(log))

        if outcome.error:
            return crash(outcome.error)
        if outcome.timed_out:
            return crash(f"timeout: killed after {lim.hard:g} s (the hard limit)")
        if outcome.returncode != 0:
            return crash(crash_reason(log, outcome.returncode))

        eval_seconds = 0.0
        if cfg.harness_record:
            record = read_json(result_path)
            if record is None:
                if result_path.exists():
                    return crash("the harness record is not valid JSON")
                return crash(f"no harness record: evaluate_bpb never ran (a printed {cfg.metric} is not trusted)")
            key = cfg.metric if cfg.metric in record else "val_bpb"
            value = number(str(record.get(key)))
            if value is None:
                return crash(f"the harness record has no {key}")
            if cfg.harness_sha256 and record.get("harness_sha256") != cfg.harness_sha256:
                return crash("the harness record comes from a different prepare.py (fingerprint mismatch)")
            if pinned and record.get("val_sha256") != pinned:
                return crash("the harness record is for a different validation split (val_sha256 mismatch)")
            if not math.isfinite(value):
                return crash(f"{cfg.metric} is not finite ({value})")
            shown = number(printed.get(cfg.metric, printed_value(log, cfg.metric)))
            if shown is None:
                return crash(f"exit 0 but no summary: no `{cfg.metric}:` line printed")
            if not math.isfinite(shown) or abs(shown - value) > 5e-6 + 1e-6 * abs(value):
                return crash(f"the printed {cfg.metric} {shown} does not match the harness record {value:.6f}")
            eval_seconds = number(str(record.get("eval_seconds"))) or 0.0
            source = "harness record"
        else:
            value = number(printed_value(log, cfg.metric))
            if value is None:
                return crash(f"exit 0 but no `{cfg.metric}: <number>` line printed")
            if not math.isfinite(value):
                return crash(f"{cfg.metric} is not finite ({value})")
            source = "printed line"

        # The engine's clock: the printed training time, and the wall clock minus evaluation.
        step_time = training / steps if training is not None and steps else 0.0
        if training is not None and training > lim.budget + max(lim.overrun, OVERRUN_STEPS * step_time):
            return crash(f"over budget: trained {training:.1f} s, budget {lim.budget:g} s")
        beyond = outcome.seconds - eval_seconds - lim.budget
        if beyond > lim.allowance:
            return crash(
                f"over budget: ran {outcome.seconds:.1f} s, {beyond:.1f} s beyond the {lim.budget:g} s budget "
                f"and evaluation (allowance {lim.allowance:g} s)"
            )
        return Measurement(value, "", source, **base)

    # -- the experiment ------------------------------------------------------

    def experiment(self, description: str, *, agent: str = "", usage: Any = None) -> Outcome:
        """Guard, commit, run, measure, decide, record: one experiment on the current branch.

        Prints its outcome through `out` (the baseline, when it runs instead, prints each run).
        """
        outcome = self._experiment(description, agent=agent, usage=usage)
        if outcome.kind != "baseline":
            for line in outcome.lines():
                self.out(line)
        return outcome

    def _experiment(self, description: str, *, agent: str = "", usage: Any = None) -> Outcome:
        description = " ".join(str(description).split()) or "(no description)"
        branch = self.branch()
        note = self.recover(keep_edits=True)
        if note:
            self.out(note)
        rows = self.rows(branch)
        frontier = self.frontier(rows)
        head = gitrepo.head(self.root)
        if head != frontier:
            if gitrepo.is_ancestor(self.root, frontier, head):
                gitrepo.git(self.root, "reset", "-q", "--soft", frontier)  # an agent committed: squash it
            else:
                raise AutoresearchError(
                    f"HEAD {head[:7]} is not built on the frontier {frontier[:7]} of {branch}; "
                    f"`git reset --hard {frontier[:7]}` to go back to it"
                )
        changed = [p for p in gitrepo.changed_since(self.root, frontier) if p not in self.protected()]
        outside = [p for p in changed if not self.is_editable(p)]
        harness_bad = self.cfg.harness_files and not self.ws.harness_ok()
        if outside or harness_bad:
            if outside:
                reason = f"changed files outside the editable set: {', '.join(outside[:5])}" + (" …" if len(outside) > 5 else "")
            else:
                reason = f"{', '.join(self.cfg.harness_files)} does not match the workspace fingerprint"
            self.reset(frontier)
            if harness_bad and not self.ws.harness_ok():
                raise AutoresearchError(f"{reason} even at the frontier {frontier[:7]}; restore it from main")
            return self._record_plain("invalid", frontier, description, reason + " (reverted)", agent, usage, branch, rows)

        if self._baseline_needed(rows, frontier):
            if not changed:
                return self.baseline(branch, rows, frontier)
            saved = {p: (self.root / p).read_bytes() if (self.root / p).is_file() else None for p in changed}
            self.out("no baseline yet on this branch: measuring the unchanged code first")
            self.reset(frontier)
            try:
                self.baseline(branch, rows, frontier)
            finally:  # the change comes back, whatever happened to the baseline
                for p, data in saved.items():
                    path = self.root / p
                    if data is None:
                        path.unlink(missing_ok=True)
                    else:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(data)
            rows = self.rows(branch)
            changed = [p for p in gitrepo.changed_since(self.root, frontier) if p not in self.protected()]
        if not changed:
            return self._record_plain("noop", frontier, description, "no change to the editable files", agent, usage, branch, rows)
        return self._candidate(description, branch, rows, frontier, agent, usage)

    def _baseline_needed(self, rows: list[Row], frontier: str) -> bool:
        runs = self.frontier_runs(rows, frontier)
        if any(r.kind != "baseline" for r in runs):
            return False
        return len(runs) < max(1, self.cfg.keep.baseline_runs)

    def _record_plain(self, status, frontier, description, reason, agent, usage, branch, rows) -> Outcome:
        row = Row(commit=frontier[:7], value=0.0, memory_gb=0.0, status=status, description=description,
                  timestamp=utc_now(), kind="experiment", reason=reason, agent=agent, branch=branch,
                  **_usage_cells(usage))
        results.append(self.ws.results_path, row, self.cfg.metric)
        fv = self._frontier_value(rows, frontier)
        return Outcome(status, "experiment", description, frontier[:7], self.cfg.metric, self.cfg.direction,
                       frontier_before=frontier[:7], frontier_value=fv, frontier=frontier[:7], reason=reason, rows=[row])

    def _frontier_value(self, rows, frontier) -> float | None:
        runs = self.frontier_runs(rows, frontier)
        return keeprule.mean([r.value for r in runs]) if runs else None

    def _candidate(self, description, branch, rows, frontier, agent, usage) -> Outcome:
        cfg = self.cfg
        started_utc = utc_now()
        journal = dict(branch=branch, frontier=frontier, candidate=None, kind="experiment", description=description,
                       agent=agent, pid=os.getpid(), started_utc=started_utc, usage=_usage_json(usage))
        self.write_journal(**journal)
        candidate = gitrepo.commit_all(self.root, description, exclude=self.protected())
        journal["candidate"] = candidate
        self.write_journal(**journal)

        key = content_key(self.root, candidate, cfg.editable)
        earlier = self.seen(rows).get(key)
        if earlier is not None:
            self.reset(frontier)
            self.clear_state()
            shown = f" {earlier['value']:.6f}" if earlier.get("status") in ("keep", "discard") else ""
            why = f": {earlier['reason']}" if earlier.get("reason") and earlier.get("status") == "crash" else ""
            reason = f"same code as {earlier['commit']}, which already ran ({earlier['status']}{shown}{why}); not run again"
            return self._record_plain("noop", frontier, description, reason, agent, usage, branch, rows)

        fv = self._frontier_value(rows, frontier)
        noise = keeprule.noise(rows)
        smaller = self._smaller(frontier, candidate)
        measurements: list[Measurement] = []
        extra_rows: list[Row] = []
        try:
            m = self.run_once(candidate, kind="experiment", description=description, agent=agent, journal=journal)
            measurements.append(m)
            decision = None
            if m.value is not None and fv is not None:
                decision = self._decide([m.value], fv, noise, smaller)
                if decision.action == "confirm":
                    self.out(f"confirm  {cfg.metric} {m.value:.6f} ({m.value - fv:+.6f} vs {fv:.6f}, bar {decision.bar:.6f}): "
                             f"{decision.reason}")
                    reference = self._rerun_frontier(frontier, candidate, branch, description, agent, journal)
                    if reference is not None:  # drift in machine speed now counts as noise, and moves the frontier
                        extra_rows.append(reference)
                        rows = rows + [reference]
                        fv, noise = self._frontier_value(rows, frontier), keeprule.noise(rows)
                    m2 = self.run_once(candidate, kind="confirm", description=description, agent=agent,
                                       journal=dict(journal, kind="confirm"))
                    measurements.append(m2)
                    if m2.value is not None:
                        decision = self._decide([m.value, m2.value], fv, noise, smaller)
                        beside = reference.value if reference is not None else None
                        both = keeprule.mean([m.value, m2.value])  # runs before and after the re-run: drift cancels
                        if (decision.action == "keep" and not decision.simplification and beside is not None
                                and keeprule.improvement(beside, both, cfg.direction) <= 0):
                            decision = keeprule.Decision(
                                "discard", decision.improvement, decision.bar,
                                f"not confirmed: the frontier, re-run between its two runs, scored {beside:.6f} "
                                f"(their mean {both:.6f})")
                    else:
                        decision = keeprule.Decision("discard", decision.improvement, decision.bar,
                                                     f"not confirmed: the confirm run crashed ({m2.reason})")
        except BaseException as exc:
            with shielded():
                self._interrupted(journal, candidate, frontier, _why(exc))
            raise
        return self._conclude(description, branch, frontier, candidate, fv, noise, measurements, decision, agent, usage, key,
                              journal, extra_rows)

    def _rerun_frontier(self, frontier, candidate, branch, description, agent, journal) -> Row | None:
        """Run the frontier once more, between a candidate's two runs, and record it.

        A wall-clock budget ties the metric to the machine's speed: when the machine gets faster
        (another job ends), every change looks like a win. A fresh run of the frontier beside the
        confirm run measures that drift: it joins the frontier's runs (moving its value and the
        noise estimate) and the confirm run must beat it too. Its row is a `confirm` of the
        frontier's commit, kept, written with the candidate's rows in one append. None when it
        crashed (then the old frontier value stands).
        """
        gitrepo.reset_hard(self.root, frontier, keep=self.protected())
        try:
            m = self.run_once(frontier, kind="confirm", description=f"re-run of the frontier beside: {description}",
                              agent=agent, journal=dict(journal, kind="confirm"))
        finally:
            gitrepo.reset_hard(self.root, candidate, keep=self.protected())
        if m.value is None:
            self.out(f"frontier re-run crashed ({m.reason}); comparing with its earlier runs")
            return None
        row = Row(commit=frontier[:7], value=m.value, memory_gb=m.memory_gb, status="keep",
                  description=f"re-run of the frontier beside: {description}", timestamp=utc_now(),
                  seconds=round(m.seconds, 1), training_seconds=m.training_seconds, steps=m.steps, kind="confirm",
                  reason="frontier re-run beside a confirm run, to measure drift"
                  + (PRINTED_NOTE if m.source == "printed line" else ""), agent=agent, branch=branch)
        self.out(f"frontier re-run {self.cfg.metric} {m.value:.6f}")
        return row

    def _smaller(self, frontier: str, candidate: str) -> bool:
        before = after = 0
        for name in self.cfg.editable:
            before += keeprule.code_lines(gitrepo.show(self.root, frontier, name) or "")
            after += keeprule.code_lines(gitrepo.show(self.root, candidate, name) or "")
        return after < before

    def _decide(self, values, fv, noise, smaller) -> keeprule.Decision:
        k = self.cfg.keep
        return keeprule.decide(values, fv, direction=self.cfg.direction, min_delta=k.min_delta, z=k.z,
                               sigma=noise.sigma, confirm=k.confirm, smaller=smaller,
                               early=noise.early or k.confirm_all)

    def _interrupted(self, journal, candidate, frontier, reason: str) -> None:
        """Ctrl-C (or SIGTERM, or an error of the engine's own) mid-experiment: record it as a
        crash and go back to the frontier."""
        row = Row(commit=candidate[:7], value=0.0, memory_gb=0.0, status="crash", description=journal["description"],
                  timestamp=utc_now(), kind=journal["kind"], reason=reason, agent=journal.get("agent", ""),
                  branch=journal["branch"], **_usage_cells(journal.get("usage")))
        try:
            results.append(self.ws.results_path, row, self.cfg.metric)
        except AutoresearchError:
            return  # the journal stays: the next start records it
        self.write_journal(**dict(journal, recorded=True, keep=False))
        self.reset(frontier)
        self.clear_state()

    def _conclude(self, description, branch, frontier, candidate, fv, noise, measurements, decision, agent, usage, key,
                  journal, extra_rows=()) -> Outcome:
        cfg = self.cfg
        first = measurements[0]
        if first.value is None:
            status, reason = "crash", first.reason
        elif decision is None:
            status, reason = "discard", "no frontier value to compare with"
        else:
            status, reason = decision.action, decision.reason
        if first.value is not None and first.source == "printed line":
            reason += PRINTED_NOTE
        rows = []
        kinds = ["experiment", "confirm"]
        for i, m in enumerate(measurements):
            row_status = status if m.value is not None else "crash"
            rows.append(Row(
                commit=candidate[:7], value=m.value if m.value is not None else 0.0,
                memory_gb=m.memory_gb if m.value is not None else 0.0, status=row_status, description=description,
                timestamp=utc_now(), seconds=round(m.seconds, 1), training_seconds=m.training_seconds, steps=m.steps,
                kind=kinds[i], reason=reason if m.value is not None or i == 0 else m.reason, agent=agent, branch=branch,
                **(_usage_cells(usage) if i == 0 else {}),
            ))
        keep = status == "keep"
        try:
            results.append(self.ws.results_path, [*extra_rows, *rows], cfg.metric)
        except AutoresearchError as exc:
            with shielded():
                with contextlib.suppress(Exception):
                    self.write_journal(**dict(journal, reason=f"not recorded: {exc}"))
                self.reset(frontier)
            raise AutoresearchError(f"{exc}; the change was not kept, the frontier is still {frontier[:7]}") from exc
        with shielded():
            self.write_journal(**dict(journal, recorded=True, keep=keep))
            self.reset(candidate if keep else frontier)
            self.clear_state()
        values = [m.value for m in measurements if m.value is not None]
        value = keeprule.mean(values) if values and status != "crash" else None
        self.remember(key, replace(rows[0], value=value if value is not None else 0.0))
        last = measurements[-1]
        return Outcome(
            status=status, kind="experiment", description=description, commit=candidate[:7], metric=cfg.metric,
            direction=cfg.direction, value=value, values=values, frontier_before=frontier[:7], frontier_value=fv,
            frontier=(candidate if keep else frontier)[:7],
            improvement=decision.improvement if decision else None, bar=decision.bar if decision else None,
            sigma=noise.sigma, memory_gb=max(m.memory_gb for m in measurements),
            seconds=sum(m.seconds for m in measurements), training_seconds=first.training_seconds, steps=first.steps,
            reason=reason, source=first.source, log_tail=(first.log_tail if status == "crash" else last.log_tail if last.value is None else ""),
            rows=rows,
        )

    # -- the baseline ------------------------------------------------------

    def baseline(self, branch: str, rows: list[Row], frontier: str) -> Outcome:
        """Run the unchanged frontier until it has `baseline_runs` measured runs."""
        need = max(1, self.cfg.keep.baseline_runs) - len(self.frontier_runs(rows, frontier))
        total = max(1, self.cfg.keep.baseline_runs)
        outcome = None
        for _ in range(max(0, need)):
            done = len(self.frontier_runs(rows, frontier))
            label = f"baseline run {done + 1} of {total}"
            journal = dict(branch=branch, frontier=frontier, candidate=frontier, kind="baseline", description="baseline",
                           agent="", pid=os.getpid(), started_utc=utc_now(), usage=None)
            self.write_journal(**journal)
            self.out(f"{label}: {self.cfg.command!r} on {frontier[:7]} ({self.limits.describe()})")
            try:
                m = self.run_once(frontier, kind="baseline", description="baseline", agent="", journal=journal)
            except BaseException as exc:
                with shielded():
                    self._interrupted(journal, frontier, frontier, _why(exc))
                raise
            status = "keep" if m.value is not None else "crash"
            reason = label if m.value is not None else m.reason
            if m.value is not None and m.source == "printed line":
                reason += PRINTED_NOTE
            row = Row(commit=frontier[:7], value=m.value if m.value is not None else 0.0,
                      memory_gb=m.memory_gb if m.value is not None else 0.0, status=status, description="baseline",
                      timestamp=utc_now(), seconds=round(m.seconds, 1), training_seconds=m.training_seconds,
                      steps=m.steps, kind="baseline", reason=reason, branch=branch)
            try:
                results.append(self.ws.results_path, row, self.cfg.metric)
            except AutoresearchError:
                with shielded():
                    with contextlib.suppress(Exception):
                        self.write_journal(**dict(journal, reason="not recorded"))
                    self.reset(frontier)
                raise
            with shielded():
                self.write_journal(**dict(journal, recorded=True, keep=False))
                self.reset(frontier)
                self.clear_state()
            rows = rows + [row]
            if m.value is not None:
                self.remember(content_key(self.root, frontier, self.cfg.editable), row)
            runs = [r.value for r in self.frontier_runs(rows, frontier)]
            outcome = Outcome(
                status=status, kind="baseline", description="baseline", commit=frontier[:7], metric=self.cfg.metric,
                direction=self.cfg.direction, value=m.value, values=[m.value] if m.value is not None else [],
                frontier_before=frontier[:7], frontier_value=keeprule.mean(runs) if runs else None,
                frontier=frontier[:7], sigma=keeprule.noise(rows).sigma, memory_gb=m.memory_gb, seconds=m.seconds,
                training_seconds=m.training_seconds, steps=m.steps, reason=reason, source=m.source,
                log_tail=m.log_tail if m.value is None else "", rows=[row],
            )
            for line in outcome.lines():
                self.out(line)
            if m.value is None:
                raise AutoresearchError(
                    f"the baseline crashed ({m.reason}); the unchanged code must run before any research: "
                    f"see run.log, fix it on main, then start again"
                )
        if outcome is None:
            raise AutoresearchError("the baseline is already measured")
        noise = keeprule.noise(rows)
        self.out(f"baseline {self.cfg.metric} {outcome.frontier_value:.6f} over {total} runs; noise {noise.describe()}; "
                 f"a change must win by more than {keeprule.bar(self.cfg.keep.min_delta, self.cfg.keep.z, noise.sigma):.6f}")
        if outcome.source == "printed line":
            self.out(f"the metric is read from the printed `{self.cfg.metric}:` line: this workspace has no harness record")
        outcome.rows = [r for r in rows if r.kind == "baseline" and r.commit[:7] == frontier[:7]][-need:]
        return outcome

    def ensure_baseline(self, branch: str) -> Outcome | None:
        rows = self.rows(branch)
        frontier = self.frontier(rows)
        if not self._baseline_needed(rows, frontier):
            return None
        return self.baseline(branch, rows, frontier)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"engine error: {' '.join(str(exc).split())[:150] or type(exc).__name__}"


def _usage_json(usage: Any) -> dict | None:
    if usage is None:
        return None
    if isinstance(usage, dict):
        return usage
    return {"tokens_in": getattr(usage, "tokens_in", None), "tokens_out": getattr(usage, "tokens_out", None),
            "cost_usd": getattr(usage, "cost_usd", None)}


def _usage_cells(usage: Any) -> dict:
    data = _usage_json(usage)
    if not data:
        return {}
    out = {}
    for key, kind in (("tokens_in", int), ("tokens_out", int), ("cost_usd", float)):
        value = data.get(key)
        if value is not None:
            with contextlib.suppress(TypeError, ValueError):
                out[key] = kind(value)
    return out


def _ours(pgid: int, marker: str) -> bool:
    """Whether process group `pgid` still runs one of our experiments (checked by its environment
    on Linux; elsewhere, whether the group exists at all)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return _group_alive(pgid)
    if not marker:
        return False
    needle = f"AUTORESEARCH_RESULT={marker}".encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) < 3 or fields[2] != str(pgid) or fields[0] == "Z":
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return False
