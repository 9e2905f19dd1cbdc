"""What an agent sees before each experiment: built fresh every time, bounded in size.

First version: the brief, the editable files, the notes and the last rows of results.
The prompt never grows with the length of the run: every part is cut to its share.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.agents.base import Context
from autoresearch.workspace import Workspace

MAX_CHARS = 40_000


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…(cut)…\n" + text[-limit:]


def history_text(rows, metric: str, limit: int = 4000) -> str:
    lines = [f"# last experiments (commit, {metric}, status, description)"]
    for r in rows[-30:]:
        lines.append(f"{r.commit[:7]}  {r.value:.6f}  {r.status:<8} {r.description}")
    return _tail("\n".join(lines), limit)


def build(ws: Workspace, rows, *, max_chars: int = MAX_CHARS, extra: dict | None = None) -> Context:
    cfg = ws.config
    files = {}
    for name in cfg.editable:
        path = ws.root / name
        files[name] = path.read_text() if path.exists() else ""
    program_path = ws.root / "program.md"
    program = program_path.read_text() if program_path.exists() else ""
    notes_path = ws.root / cfg.notes
    notes = notes_path.read_text() if notes_path.exists() else ""
    history = history_text(rows, cfg.metric)
    prompt_parts = [
        _tail(program, max_chars // 4),
        *(f"===== {name} =====\n{text}" for name, text in files.items()),
        history,
        "===== notes.md =====\n" + _tail(notes, max_chars // 10),
    ]
    prompt = _tail("\n\n".join(prompt_parts), max_chars)
    return Context(
        root=ws.root, state_dir=ws.state_dir, editable=cfg.editable, metric=cfg.metric,
        direction=cfg.direction, program=program, files=files, notes=notes, history=history,
        rows=tuple(rows), prompt=prompt, extra=dict(extra or {}),
    )
