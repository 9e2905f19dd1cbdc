"""What the agents that run another program share: the call, its time limit, its transcript.

An agent program (claude, codex, aider, a user's command) runs in its own process group
in the workspace, so that a timeout or Ctrl-C stops it and everything it started. Its
output is kept, secrets blanked out, in the state folder (`agent.log`, the last call only,
so it never grows) for a human who wants to see what the agent did.

A timed-out call is not an error: the editable files are put back as they were before the
call (a half-made edit is worth nothing) and the proposal is a no-op, which the engine
records as `noop` before asking again. A program that fails (exit status not 0) raises
AutoresearchError with its last line of output: that is usually a missing login or key,
which asking again would not fix.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from autoresearch.agents.base import Context, Proposal, Usage
from autoresearch.errors import AutoresearchError
from autoresearch.workspace import atomic_write

DEFAULT_TIMEOUT = 1800.0  # seconds for one call; long edits by a CLI agent take minutes
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_DESCRIPTION = re.compile(r"^\W*description\W*:\s*(.+?)\s*\**\s*$", re.IGNORECASE | re.MULTILINE)


def secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment that look like credentials (long enough to be worth hiding)."""
    env = os.environ if env is None else env
    return sorted({v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 8}, key=len, reverse=True)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    for value in secrets(env):
        text = text.replace(value, "***")
    return text


def description_from(text: str, fallback: str) -> str:
    """The last `DESCRIPTION:` line of an agent's answer, else `fallback`; one line."""
    found = _DESCRIPTION.findall(text or "")
    line = found[-1] if found else fallback
    line = " ".join(line.strip().strip("`*_").split())
    return line[:199] + "…" if len(line) > 200 else line


def timeout_of(options: Mapping) -> float:
    value = options.get("agent_timeout") or options.get("timeout")
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except (TypeError, ValueError) as exc:
        raise AutoresearchError(f"agent timeout must be a number of seconds, not {value!r}") from exc


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: stopped at the time limit
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def call(
    cmd: Sequence[str] | str,
    *,
    cwd: Path,
    timeout: float,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    shell: bool = False,
) -> Outcome:
    """Run an agent program in a process group of its own; stop the whole group at `timeout`."""
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
        _stop(proc)
        out, err = proc.communicate()
        code = None
    except BaseException:  # Ctrl-C: the agent's whole group goes with us
        _stop(proc)
        raise
    return Outcome(code, out or "", err or "", time.monotonic() - started)


def keep_transcript(context: Context, name: str, cmd, outcome: Outcome, prompt_chars: int) -> None:
    """The last call's command and output, secrets blanked, in the state folder."""
    shown = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
    status = "timed out" if outcome.timed_out else f"exit status {outcome.returncode}"
    text = (
        f"agent: {name}\ncommand: {shown}\nprompt: {prompt_chars} characters\n"
        f"{status} after {outcome.seconds:.1f} s\n\n--- stdout\n{outcome.stdout}\n--- stderr\n{outcome.stderr}\n"
    )
    try:
        context.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(context.state_dir / "agent.log", redact(text))
    except OSError:
        pass  # a transcript is a convenience; never fail an experiment over it


def restore(context: Context) -> None:
    """Put the editable files back as the context saw them (after a timed-out call)."""
    for name, text in context.files.items():
        path = context.root / name
        try:
            if not path.exists() or path.read_text(errors="replace") != text:
                atomic_write(path, text)
        except OSError:
            pass


def timed_out(context: Context, name: str, timeout: float, usage: Usage | None = None) -> Proposal:
    restore(context)
    return Proposal(f"{name} timed out after {timeout:g} s; nothing changed", usage)


def failed(name: str, outcome: Outcome) -> AutoresearchError:
    lines = [line.strip() for line in (outcome.stderr + "\n" + outcome.stdout).splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    return AutoresearchError(f"{name} failed (exit status {outcome.returncode}): {redact(last)[:300]}")


def prompt_file(context: Context, text: str, name: str = "prompt.md") -> Path:
    """Write the prompt where agent programs can read it: the ignored state folder."""
    context.state_dir.mkdir(parents=True, exist_ok=True)
    path = context.state_dir / name
    atomic_write(path, text)
    return path
