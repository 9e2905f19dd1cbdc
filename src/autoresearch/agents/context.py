"""What an agent sees before each experiment: built fresh every time, bounded in size.

The prompt has, in order: the task and its rules; the research brief (program.md); the
editable files as they are now; a summary of where the research stands; the last rows of
results with their deltas to the frontier they were measured against; the descriptions of
older attempts that were not kept (so nothing is tried twice); the diffs of recent kept
changes and of the last few discards; the tail of the last crash's log; the agent's own
notes. Every part has a share of `max_chars`; when the parts together are too long, the
least useful are cut first (older attempts, then diffs, then the brief, then the notes), so
the prompt never grows with the length of the run.

Diffs come from git: a discarded change's commit is reset away but still reachable by its
hash, and each diff is saved under the workspace's state folder the first time it is read,
so it survives git's garbage collection. Not covered: rows from another branch (the loop
passes the rows of its own branch) and binary editable files (read as text, replaced where
they do not decode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autoresearch import gitrepo, runlog
from autoresearch.agents.base import Context
from autoresearch.research.history import History
from autoresearch.research.results import Row
from autoresearch.files import read_own, read_tail
from autoresearch.runlog import RunLogs
from autoresearch.workspace import Workspace

MAX_CHARS = 64_000
MAX_READ_BYTES = 8 * 1024 * 1024  # a file of the workspace larger than this is not read for the prompt
HISTORY_ROWS = 25
KEPT_DIFFS = 3
DISCARDED_DIFFS = 3
DIFF_CHARS = 2_500
CRASH_LINES = 40
CRASH_BYTES = 64 * 1024  # of a crashed run's log, read from its end

TASK = """\
You are an autonomous researcher. Each time you are called you make ONE focused change that
you expect to improve {metric} ({direction} is better). The engine then commits your change,
runs `{command}` for a fixed time budget, and keeps the change only if it beats the best
result so far by more than the run-to-run noise; otherwise the change is reset. You are called
again with the outcome in the history below.

Rules:
- Change only {editable}. Everything else (the harness, the config, the data) is fixed; a
  change to any other file is reverted and recorded as invalid.
- You may add to {notes}, your notebook: it is kept across experiments (also when a change is
  reset) and shown to you every time. Write what you learned and what to try next.
- Do not add dependencies. Do not run the experiment yourself. Do not ask questions: nobody
  will answer. Prefer simple changes; a change that makes the code simpler at equal {metric}
  is a win.
- Do not repeat an experiment listed below as discarded or crashed unless you change the idea.
- End with one line: DESCRIPTION: <what you changed, under 80 characters>
"""


@dataclass
class _Part:
    key: str
    title: str
    body: str
    share: float  # of max_chars, before the final fit
    keep_end: bool  # cut from the front (keep the latest text) rather than from the back
    rank: int  # cut order when everything does not fit: lowest first


def _cut(text: str, limit: int, keep_end: bool) -> str:
    if len(text) <= limit:
        return text
    if limit <= 20:
        return ""
    marker = "\n…(cut)…\n"
    room = limit - len(marker)
    return marker.lstrip("\n") + text[-room:] if keep_end else text[:room] + marker.rstrip("\n")


def _cut_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = "\n…({} characters cut)…\n"
    room = limit - len(marker) - 8
    if room <= 40:
        return text[:limit]
    head = room * 2 // 3
    return text[:head] + marker.format(len(text) - room) + text[len(text) - (room - head):]


def _fmt(value: float) -> str:
    return f"{value:.6f}"


def history_text(history: History, metric: str, limit_rows: int = HISTORY_ROWS) -> str:
    """The last rows as a small table: the run's number, its experiment's number, commit, value,
    delta to the frontier (new minus old), what the row is (History.label), kind, description."""
    rows = history.rows
    if not rows:
        return "No experiments yet: the next run is the first."
    lines = [f"run  exp  commit   {metric:<10} delta      status      kind        description"]
    numbered = []
    for i, r in enumerate(rows):
        delta = history.delta(i)
        shown = f"{delta:+.6f}" if delta is not None else ""
        value = _fmt(r.value) if r.measured else "-"
        number = history.numbers[i]
        reason = f" [{r.reason}]" if r.reason else ""
        numbered.append(f"{i + 1:<4} {'' if number is None else number:<4} {r.commit[:7]:<8} {value:<10} {shown:<10} "
                        f"{history.label(i):<11} {r.kind:<11} {r.description}{reason}")
    if len(numbered) > limit_rows:
        lines.append(f"(first {len(numbered) - limit_rows} rows not shown)")
    lines += numbered[-limit_rows:]
    lines.append(f"(delta: the value minus the frontier's before that row, the value of the kept code; "
                 f"{history.direction} is better)")
    return "\n".join(lines)


def summary_text(history: History, metric: str) -> str:
    """Where the research stands, in the same numbers `autoresearch status` shows."""
    if not history.rows:
        return "Nothing has run yet."
    parts = [f"so far: {history.tally().text()}"]
    if history.baseline is not None:
        runs = history.baseline_runs
        spread = f" (mean of {len(runs)} runs, spread {max(runs) - min(runs):.6f})" if len(runs) > 1 else ""
        parts.append(f"baseline {metric} {_fmt(history.baseline)}{spread}")
    change = history.frontier_change
    if change is not None:
        what = "the baseline" if change.baseline else change.description
        parts.append(f"frontier (best so far) {metric} {_fmt(history.frontier_value)} at commit "
                     f"{history.frontier_commit} ({what})")
    streak = history.not_kept_streak()
    if streak >= 3:
        parts.append(f"the last {streak} experiments were not kept: consider a different direction")
    return "\n".join(parts)


def earlier_attempts(rows, shown: int) -> str:
    """Descriptions of older attempts that were not kept (the table shows only the last rows)."""
    older = [r for r in rows[:-shown] if r.status in ("discard", "crash", "invalid") and r.is_experiment] if len(rows) > shown else []
    seen = set()
    lines = []
    for r in reversed(older):  # newest first, so a cut drops the oldest
        text = " ".join(r.description.split())[:120]
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        lines.append(f"- {r.status}: {text}" + (f" [{r.reason}]" if r.reason else ""))
    return "\n".join(lines)


_HASH = re.compile(r"^[0-9a-f]{7,40}$")


def commit_diff(ws: Workspace, commit: str) -> str:
    """The change a commit made to the editable files; cached in the engine's own folder. "" if unknown."""
    if not _HASH.match(commit or "") or set(commit) == {"0"}:
        return ""
    cache = ws.state.diffs_dir / f"{commit}.diff"  # in the engine's own folder
    cached = read_own(cache, MAX_READ_BYTES)
    if cached is not None:
        return cached.decode("utf-8", errors="replace")
    text = gitrepo.commit_diff(ws.root, commit, ws.config.editable)
    if text is None:
        return ""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(text)
    except OSError:
        pass  # a read-only state folder only costs a git call next time
    return text


def diffs_text(ws: Workspace, rows, statuses: tuple[str, ...], count: int, per_diff: int = DIFF_CHARS) -> str:
    picked = [r for r in rows if r.status in statuses and r.is_experiment][-count:]
    chunks = []
    for r in reversed(picked):  # newest first
        diff = commit_diff(ws, r.commit)
        if not diff.strip():
            continue
        value = f"{r.value:.6f}" if r.measured else r.status
        chunks.append(f"--- {r.commit[:7]} ({r.status}, {value}): {r.description}\n{_cut_middle(diff.strip(), per_diff)}")
    return "\n\n".join(chunks)


def crash_text(ws: Workspace, rows, lines: int = CRASH_LINES) -> str:
    """The tail of the last run's own log when it crashed (the log named on its row, whichever
    worker ran it)."""
    last = next((r for r in reversed(rows) if r.used_machine), None)
    if last is None or last.status != "crash":
        return ""
    path = RunLogs(ws.state.logs_dir).path(last.log)
    try:
        text = read_tail(path, CRASH_BYTES) if path.is_file() else None
    except OSError:
        text = None
    if text is None:
        return ""
    tail = runlog.lines(text.rstrip("\n"))[-lines:]  # a progress line rewritten in place: its last state
    head = f"{last.commit[:7]} crashed" + (f" ({last.reason})" if last.reason else "") + f": {last.description}"
    return head + "\n" + "\n".join(tail)


def _read(path: Path) -> str:
    """A file of the workspace for the prompt: "" unless a regular file of its own (the agent may
    leave a link there to bring another file into the next prompt)."""
    data = read_own(path, MAX_READ_BYTES)
    return data.decode("utf-8", errors="replace") if data is not None else ""


def _fence(name: str, text: str) -> str:
    lang = "python" if name.endswith(".py") else ""
    fence = "````" if "```" in text else "```"
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"### {name}\n{fence}{lang}\n{body}{fence}"


def _extra_text(extra: dict) -> str:
    lines = []
    for key, value in extra.items():
        if isinstance(value, (str, int, float, bool)) and not key.startswith("_"):
            lines.append(f"{key}: {' '.join(str(value).split())[:300]}")
    return "\n".join(lines)


def _fit(parts: list[_Part], max_chars: int, fixed: int) -> None:
    """Cut the parts in place so that their rendered length plus `fixed` is at most max_chars."""
    for p in parts:
        p.body = _cut(p.body, int(max_chars * p.share), p.keep_end)

    def total() -> int:
        return fixed + sum(len(p.title) + len(p.body) + 3 for p in parts if p.body)

    for p in sorted(parts, key=lambda p: p.rank):
        excess = total() - max_chars
        if excess <= 0:
            break
        room = len(p.body) - excess
        p.body = _cut(p.body, room, p.keep_end) if room >= 200 else ""


def build(ws: Workspace, history: History | Iterable[Row], *, max_chars: int = MAX_CHARS,
          extra: dict | None = None) -> Context:
    """The context for the next experiment; `prompt` is at most `max_chars` characters long.

    `history`: the branch's History (or its rows, oldest first)."""
    cfg = ws.config
    if not isinstance(history, History):
        history = History(history, None, cfg.direction)
    rows = list(history.rows)
    files = {name: _read(ws.root / name) for name in cfg.editable}
    program = _read(ws.root / "program.md")
    notes = _read(ws.root / cfg.notes)
    extra = dict(extra or {})

    table = history_text(history, cfg.metric)
    task = TASK.format(
        metric=cfg.metric, direction=cfg.direction, command=cfg.command,
        editable=", ".join(f"`{e}`" for e in cfg.editable), notes=f"`{cfg.notes}`",
    )
    files_text = "\n\n".join(_fence(name, text) for name, text in files.items())
    parts = [
        _Part("program", "## The research brief (program.md)", program.strip(), 0.15, False, 3),
        _Part("files", "## The editable files as they are now", files_text, 0.70, False, 9),
        _Part("engine", "## From the engine", _extra_text(extra), 0.03, False, 7),
        _Part("summary", "## Where the research stands", summary_text(history, cfg.metric), 0.03, False, 8),
        _Part("history", "## Recent experiments (oldest first)", table, 0.12, True, 6),
        _Part("earlier", "## Older attempts that were not kept (newest first)", earlier_attempts(rows, HISTORY_ROWS), 0.05, False, 0),
        _Part("kept", "## Diffs of recent kept changes (newest first)", diffs_text(ws, rows, ("keep",), KEPT_DIFFS), 0.08, False, 2),
        _Part("discarded", "## Diffs of the last changes that were not kept (newest first)",
              diffs_text(ws, rows, ("discard", "crash"), DISCARDED_DIFFS), 0.08, False, 1),
        _Part("crash", "## The last run crashed: the end of its log", crash_text(ws, rows), 0.05, True, 5),
        _Part("notes", f"## Your notes ({cfg.notes})", notes.strip() or "(empty: start your notebook)", 0.08, True, 4),
    ]
    closing = "Now make your one change."
    _fit(parts, max_chars, len(task) + len(closing) + 4)
    prompt = "\n\n".join([task.rstrip(), *(f"{p.title}\n{p.body}" for p in parts if p.body), closing])
    if len(prompt) > max_chars:  # only when max_chars is smaller than the fixed text
        prompt = prompt[:max_chars]
    return Context(
        root=ws.root, state_dir=ws.state_dir, editable=cfg.editable, metric=cfg.metric,
        direction=cfg.direction, program=program, files=files, notes=notes, history=table,
        rows=tuple(rows), prompt=prompt, notes_file=cfg.notes, extra=extra,
    )
