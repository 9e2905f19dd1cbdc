"""One supervised run of the workspace's command on the checked-out code, and its measurement.

`Runner.run(commit, journal, ...)` starts the command as a process group of its own
(autoresearch.proc.supervise) with run.log as its output, secrets scrubbed from its
environment, AUTORESEARCH_RESULT pointing at a fresh record path and a hard wall-clock
limit; it keeps the journal and current.json up to date for recovery and watchers, shows a
live line on a terminal, checks that the run left the protected files alone, and measures.
It makes no git changes and writes no rows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from autoresearch import proc
from autoresearch.engine.guard import Guard
from autoresearch.engine.measure import LOG_READ_BYTES, Limits, Measurement, measure, read_log
from autoresearch.state import Current, Journal
from autoresearch.workspace import Workspace

RESULT_VARIABLE = "AUTORESEARCH_RESULT"
_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%{}\n")
_STEP = re.compile(r"^step\s+(\d+)\b(.*)$")
_EVALUATING = re.compile(r"^evaluating\b")  # the harness's evaluate_bpb says so when it starts
_FIELD = re.compile(r"\b(loss|remaining|progress)\s+([-+0-9.eE]+)(%|s)?")


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


def marker(result_path: str) -> str:
    """The environment entry that marks a run's processes as ours (see proc.group_has_marker)."""
    return f"{RESULT_VARIABLE}={result_path}"


class LiveLine:
    """One line of progress on a terminal, rewritten in place from run.log's step lines."""

    def __init__(self, stream: TextIO, log_path: Path, label: str):
        self.stream, self.log_path, self.label = stream, log_path, label
        self.offset, self.partial, self.last = 0, b"", ""
        self.evaluating = False
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
            if _EVALUATING.match(text):
                self.evaluating = True
                break
            if _STEP.match(text):
                self.last, self.evaluating = text, False
                break
        parts = [self.label, f"{elapsed:4.0f} s"]
        m = _STEP.match(self.last)
        if m:
            fields = {k: v for k, v, _ in _FIELD.findall(m.group(2))}
            parts.append(f"step {int(m.group(1))}")
            if "loss" in fields:
                parts.append(f"loss {float(fields['loss']):.4f}")
            if "remaining" in fields and not self.evaluating:
                parts.append(f"{float(fields['remaining']):.0f} s left")
        if self.evaluating:
            parts.append("evaluating")
        text = " | ".join(parts)
        self.stream.write("\r\x1b[K" + text[:100])
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


class Runner:
    def __init__(self, ws: Workspace, limits: Limits, guard: Guard, *, stream: TextIO, live: bool):
        self.ws, self.limits, self.guard = ws, limits, guard
        self.state = ws.state
        self.stream, self.live = stream, live

    def env(self, result_path: Path) -> dict[str, str]:
        env = proc.scrubbed(os.environ)
        cache = self.state.cache_dir
        env[RESULT_VARIABLE] = str(result_path)
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
        env.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(self, commit: str, journal: Journal, *, kind: str, description: str) -> Measurement:
        """Run the command on the checked-out `commit` and measure it."""
        runs = self.state.runs_dir
        runs.mkdir(parents=True, exist_ok=True)
        for old in runs.glob("*.json*"):
            with contextlib.suppress(OSError):
                old.unlink()
        result_path = runs / f"{int(time.time())}-{uuid.uuid4().hex[:12]}.json"
        pinned = self.state.pinned_val() or self.ws.config.val_sha256
        before = self.guard.snapshot()
        journal = replace(journal, kind=kind, result_path=str(result_path))
        self.state.write_journal(journal)
        current = Current(commit=commit[:7], description=description, kind=kind, started_at=time.time(),
                          budget=self.ws.config.budget, agent=journal.agent)
        self.state.write_current(current)

        def on_start(pgid: int) -> None:
            self.state.write_journal(replace(journal, pgid=pgid))
            self.state.write_current(replace(current, pid=pgid))

        live = LiveLine(self.stream, self.ws.log_path, f"{kind} {commit[:7]}") if self.live else None
        try:
            outcome = proc.supervise(
                command_argv(self.ws.config.command), self.ws.root, self.env(result_path), self.ws.log_path,
                self.limits.hard, on_start=on_start, on_tick=live,
            )
        finally:
            if live is not None:
                live.clear()
            self.state.clear_current()
        self.state.write_journal(journal)
        log = read_log(self.ws.log_path)
        tampered = self.guard.tampering(before)
        m = measure(self.ws.config, self.limits, outcome, log, result_path, pinned)
        if tampered:
            m = replace(m, value=None, reason=tampered)
        with contextlib.suppress(OSError):
            result_path.unlink()
        return m
