"""The agent interface: the one small contract every researcher implements.

An agent is given a `Context` (the workspace, the brief, the editable files, a bounded
history) and changes the editable files in place, then returns a `Proposal`: a one-line
description and, optionally, what the call used. It never commits, runs training or
touches results: the engine does all of that, and reverts anything outside the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None  # None where the provider does not report it


@dataclass(frozen=True)
class Proposal:
    description: str
    usage: Usage | None = None


@dataclass(frozen=True)
class Context:
    root: Path  # the workspace
    state_dir: Path  # private, ignored folder the agent may keep state in
    editable: tuple[str, ...]
    metric: str
    direction: str  # "lower" or "higher"
    program: str  # program.md
    files: dict[str, str]  # editable file -> current text
    notes: str  # the agent's notes.md ("" if none yet)
    history: str  # compact, bounded history text for language models
    rows: tuple[Any, ...] = ()  # results.Row of this branch, oldest first
    prompt: str = ""  # the whole bounded prompt, ready for a language model
    notes_file: str = "notes.md"  # where `notes` lives, relative to root
    extra: dict[str, Any] = field(default_factory=dict)


class Agent:
    """Base class. Subclasses set `name` and implement `propose`; `check` is optional."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def check(self) -> str | None:
        """None when ready to run; otherwise one line saying what is missing. Never calls out."""
        return None

    def propose(self, context: Context) -> Proposal:  # pragma: no cover - interface
        raise NotImplementedError
