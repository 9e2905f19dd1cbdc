"""Every process the package starts, and the one rule for what counts as a secret.

- `run`: a short command (git, the harness's manifest), output captured.
- `supervise`: the training run, in a session (process group) of its own, output to a
  file through a pipe, capped (`logcap`: the first LOG_HEAD_BYTES and the last
  LOG_TAIL_BYTES are kept), killed with everything it started at a hard wall-clock limit, on Ctrl-C, and after
  it exits (so background children never outlive it).
- `call`: an agent program (claude, codex, aider, a user's command), in a group of its own,
  stopped with everything it started at its time limit or on Ctrl-C.
- `is_secret` / `scrubbed` / `redact`: environment variables that look like credentials are
  removed from the environment of training runs and blanked out of agent transcripts, by
  the same rule.
- `pid_alive`, `group_alive`, `kill_group`: whether a process or a group still runs; stopping one.
- `own_folder` / `orphaned_folders`: temporary folders named for the process that made them, so
  that the next process finds and removes those whose maker died (`kill -9`) before it could.
- `shielded` / `sigterm_as_interrupt`: signal handling around clean-ups.

Not covered: a process that leaves its group on purpose (setsid of its own) is not
followed by the kill.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Sequence

from autoresearch.errors import AutoresearchError
from autoresearch.files import open_unlinked, remove_tree
from autoresearch.logcap import LOG_HEAD_BYTES, LOG_TAIL_BYTES, CappedLog, Tee, widen_pipe

GRACE = 5.0  # seconds between SIGTERM and SIGKILL

# ---------------------------------------------------------------------------
# Secrets

_SECRET_WORDS = {
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "PWD_HASH",
    "CREDENTIAL", "CREDENTIALS", "KEY", "KEYS", "APIKEY", "AUTH", "COOKIE", "PRIVATE",
}
SECRET_MIN_CHARS = 8  # shorter values are not blanked out of text: they would hit ordinary words


def is_secret(name: str) -> bool:
    """True for environment variables that look like credentials (API keys, tokens, passwords)."""
    upper = name.upper()
    if "API_KEY" in upper or "APIKEY" in upper or "ACCESS_KEY" in upper:
        return True
    return any(part in _SECRET_WORDS for part in re.split(r"[^A-Z0-9]+", upper))


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without its secrets."""
    return {k: v for k, v in environ.items() if not is_secret(k)}


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret variables long enough to be worth hiding, longest first."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if is_secret(k) and len(v) >= SECRET_MIN_CHARS}
    return sorted(found, key=len, reverse=True)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """`text` with every secret value of the environment replaced by ***."""
    for value in secret_values(env):
        text = text.replace(value, "***")
    return text


# ---------------------------------------------------------------------------
# Short commands


def run(
    cmd: Sequence[str],
    cwd: str | Path | None = None,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    stream: bool = False,
    binary: bool = False,
) -> subprocess.CompletedProcess:
    """Run `cmd`, capture its text output, raise AutoresearchError on failure when `check`.

    With `stream`, output goes straight to our stdout/stderr (progress bars) and is not captured;
    with `binary`, it is captured as bytes.
    """
    try:
        result = subprocess.run(
            list(cmd), cwd=cwd, env=dict(env) if env is not None else None, capture_output=not stream,
            text=not binary, timeout=timeout, input=input,
        )
    except FileNotFoundError as exc:
        raise AutoresearchError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise AutoresearchError(f"{' '.join(cmd)} took longer than {timeout:g} s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "")
        detail = (detail.decode(errors="replace") if isinstance(detail, bytes) else detail).strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        raise AutoresearchError(f"{' '.join(cmd)} failed: {last}")
    return result


# ---------------------------------------------------------------------------
# Process groups


def _group_members(pgid: int):
    """(pid folder, state) of each process in the group, from /proc (Linux)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            yield entry, fields[0]


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group."""
    if Path("/proc").is_dir():
        return any(state != "Z" for _, state in _group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_has_marker(pgid: int, marker: str) -> bool:
    """Whether a live process of the group has `marker` (NAME=value) in its environment, so a
    group id left in a journal is only killed while it is still ours. Without /proc: whether
    the group exists at all."""
    if not Path("/proc").is_dir():
        return group_alive(pgid)
    if not marker:
        return False
    needle = marker.encode()
    for entry, state in _group_members(pgid):
        if state == "Z":
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return False


def pid_alive(pid) -> bool:
    """Whether a process with this id exists (a pid that is not a positive number: False). A
    process of another user that we may not signal counts as alive."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):  # OverflowError: no process has so large an id
        return False
    return True


def _pid_namespace() -> str:
    """This process's pid namespace: a pid in a folder's name means something only there."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # no /proc (macOS): pids of the one namespace there is
        return "0"


def own_folder(prefix: str) -> Path:
    """A fresh temporary folder whose name holds this process's pid namespace and pid."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{_pid_namespace()}.{os.getpid()}-"))


def orphaned_folders(prefix: str) -> list[Path]:
    """Temporary folders made by `own_folder(prefix)` in this pid namespace, by this user, whose
    maker is gone. (A pid reused since is taken for alive: such a folder waits for the next
    sweep; a folder of another namespace, where its pid means another process, is never taken.)"""
    mark = f"{prefix}{_pid_namespace()}."
    found = []
    for path in Path(tempfile.gettempdir()).glob(f"{mark}*-*"):
        pid = path.name[len(mark):].split("-", 1)[0]
        try:
            st = path.lstat()
        except OSError:
            continue
        if (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and pid.isdigit() and len(pid) <= 10
                and not pid_alive(pid)):
            found.append(path)
    return found


def sweep_folders(prefix: str) -> list[Path]:
    """Remove `orphaned_folders(prefix)`; the ones removed."""
    gone = orphaned_folders(prefix)
    for path in gone:
        remove_tree(path)
    return gone


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
        if not group_alive(pgid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


@dataclass(frozen=True)
class RunOutcome:
    """How a supervised run ended."""

    returncode: int | None
    seconds: float  # wall clock from start to exit (or to the kill)
    timed_out: bool = False
    error: str = ""  # the command could not start, or why `stop_when` stopped it
    log_dropped: int = 0  # bytes of output left out of the log (the middle of a long output)


def supervise(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    limit: float,
    *,
    on_start: Callable[[int], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    stop_when: Callable[[], str] | None = None,
    tick: float = 0.5,
    log_cap: tuple[int, int] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> RunOutcome:
    """Run `argv` in a new session (its own process group), output to `log_path`.

    The output (stdout and stderr) goes through a pipe that a thread copies into `log_path`
    with a cap: the first `head` and the last `tail` bytes of `log_cap` (LOG_HEAD_BYTES, 1 MiB,
    and LOG_TAIL_BYTES, 4 MiB, by default) are kept, and where bytes were dropped one line
    says how many (cut_line). The head is written as it comes, the tail at least every
    LOG_FLUSH_SECONDS, so the file shows the recent output while the run goes on.

    After `limit` seconds the group gets SIGTERM, then SIGKILL. After a normal exit the group
    is killed too, so background children never outlive the run; then the pipe is read for
    at most LOG_DRAIN_SECONDS more (a process that left the group may hold it open). On
    KeyboardInterrupt the group is killed and the interrupt goes on. `stop_when` is asked at
    each tick: a reason it returns stops the run like the time limit does, and is its `error`.
    """
    started = start(argv, cwd, env, log_path, log_cap=log_cap, pass_fds=pass_fds)
    if isinstance(started, RunOutcome):
        return started
    return started.wait(limit, on_start=on_start, on_tick=on_tick, stop_when=stop_when, tick=tick)


def start(argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, *, stdin: bool = False,
          log_cap: tuple[int, int] | None = None, pass_fds: tuple[int, ...] = (),
          shown: Path | None = None) -> "Started | RunOutcome":
    """The first half of `supervise`: `argv` started in its own process group, its output
    going to `log_path` (and to `shown`, a copy for people: logcap.Tee); with `stdin`, a pipe
    it reads until `Started.send`. The outcome of a command that could not start."""
    head, tail = log_cap if log_cap is not None else (LOG_HEAD_BYTES, LOG_TAIL_BYTES)
    began = time.monotonic()
    log = open_unlinked(log_path)
    if shown is not None:
        try:
            log = Tee(log, open_unlinked(shown))
        except OSError:  # the agent removed its folder: only people's copy is missing
            pass
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, pass_fds=pass_fds,
        )
    except OSError as exc:
        return _not_started(argv, exc, log, began)
    assert proc.stdout is not None
    widen_pipe(proc.stdout.fileno())
    return Started(proc, CappedLog(proc.stdout.fileno(), log, head, tail))


class Started:
    """A command started by `start` and not yet waited for: a process that gets ready (imports,
    loads) before its input exists, and is supervised from `wait` on."""

    def __init__(self, proc: subprocess.Popen, copier: "CappedLog"):
        self.proc, self.copier = proc, copier
        self.done = False

    def send(self, data: bytes) -> None:
        """Write `data` to its stdin and close it (a process that already left reads nothing)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(data)
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait(self, limit: float, *, on_start: Callable[[int], None] | None = None,
             on_tick: Callable[[float], None] | None = None, stop_when: Callable[[], str] | None = None,
             tick: float = 0.5) -> RunOutcome:
        """Supervise it as `supervise` does, `limit` seconds from now."""
        began = time.monotonic()
        try:
            if on_start is not None:
                on_start(self.proc.pid)
            timed_out, stopped = _wait(self.proc, began, limit, tick, on_tick, stop_when)
        except BaseException:
            with shielded():
                self.cancel()
            raise
        seconds = time.monotonic() - began
        dropped = self._end()
        if stopped:
            return RunOutcome(None, seconds, error=stopped, log_dropped=dropped)
        return RunOutcome(None if timed_out else self.proc.returncode, seconds, timed_out, log_dropped=dropped)

    def cancel(self) -> None:
        """Kill its group without waiting for it to finish (nothing came for it to do)."""
        self.send(b"")
        self._end()

    def _end(self) -> int:
        if self.done:
            return 0
        self.done = True
        kill_group(self.proc.pid, self.proc)
        dropped = self.copier.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return dropped


def _not_started(argv: list[str], exc: OSError, log: BinaryIO, start: float) -> RunOutcome:
    """The outcome of a run whose program could not start; the log says why."""
    why = f"cannot start {argv[0]}: {exc.strerror or exc}"
    with log:
        log.write(f"{why}\n".encode())
    return RunOutcome(None, time.monotonic() - start, error=why)


def _wait(proc: subprocess.Popen, start: float, limit: float, tick: float,
          on_tick: Callable[[float], None] | None, stop_when: Callable[[], str] | None) -> tuple[bool, str]:
    """Wait for a supervised run to exit, `limit` seconds from `start` at most, calling `on_tick`
    and asking `stop_when` every `tick` seconds. (whether the limit was reached, why `stop_when`
    stopped it or "")."""
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= limit:
            return True, ""
        try:
            proc.wait(timeout=min(tick, limit - elapsed))
            return False, ""
        except subprocess.TimeoutExpired:
            if on_tick is not None:
                on_tick(time.monotonic() - start)
            stopped = stop_when() if stop_when is not None else ""
            if stopped:
                return False, stopped


@dataclass(frozen=True)
class CallOutcome:
    """How an agent program's call ended, with what it printed."""

    returncode: int | None  # None: stopped at the time limit
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def call(
    cmd: Sequence[str] | str,
    *,
    cwd: Path,
    timeout: float,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    shell: bool = False,
) -> CallOutcome:
    """Run an agent program in a process group of its own; stop the whole group at `timeout`
    or on Ctrl-C. A program that is not there is an AutoresearchError."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd if shell else list(cmd), cwd=cwd, shell=shell, text=True,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError as exc:
        name = cmd.split()[0] if isinstance(cmd, str) else cmd[0]
        raise AutoresearchError(f"agent program not found: {name}") from exc
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc.pid, proc)
        out, err = proc.communicate()
        code = None
    except BaseException:  # Ctrl-C: the agent's whole group goes with us
        with shielded():
            kill_group(proc.pid, proc)
        raise
    return CallOutcome(code, out or "", err or "", time.monotonic() - started)


# ---------------------------------------------------------------------------
# Signals


@contextlib.contextmanager
def shielded():
    """Ignore Ctrl-C and SIGTERM while cleaning up (main thread only; elsewhere a no-op)."""
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
