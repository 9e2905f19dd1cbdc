"""The agent interface: the one small contract every researcher implements.

An agent is given a `Context` (the workspace, the brief, the editable files, a bounded
history) and changes the editable files in place, then returns a `Proposal`: a one-line
description and, optionally, what the call used. It never commits, runs training or
touches results: the engine does all of that, and reverts anything outside the rules.

Beside the contract, what every agent shares: reading the `DESCRIPTION:` line of an answer
(`description_in`, `description_from`) and keeping the last call's transcript
(`keep_transcript`, `.autoresearch/agent.log`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, real_folder
from autoresearch.proc import redact
from autoresearch.research.results import usage_cost, usage_count

TRANSCRIPT = "agent.log"  # the last call's transcript, in the state folder
# A `DESCRIPTION:` line as models write it: marked up or not ("**Description:** ...",
# "> DESCRIPTION: ...", "- description: ...", "__DESCRIPTION__: ...").
_DESCRIPTION = re.compile(r"^[\W_]*description[\W_]*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Usage:
    """What one call cost, as the agent or its provider reports it: a claim, so a count that is
    not a whole number within reason becomes 0 and a cost that is not a finite amount of at
    least 0 becomes None (research/results.py's bounds), whoever built the record."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None  # None where the provider does not report it

    def __post_init__(self):
        object.__setattr__(self, "tokens_in", usage_count(self.tokens_in) or 0)
        object.__setattr__(self, "tokens_out", usage_count(self.tokens_out) or 0)
        object.__setattr__(self, "cost_usd", usage_cost(self.cost_usd))


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


@dataclass(frozen=True)
class Options:
    """The options `run` gives every agent, typed and checked once.

    The raw keyword arguments stay in `Agent.options` for plugins with options of their own.
    """

    model: str | None = None
    base_url: str | None = None
    agent_command: str | None = None
    timeout: float | None = None  # seconds for one proposal; None: the agent's default
    max_retries: int | None = None  # the API agents' retries; None: their default

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> "Options":
        timeout = options.get("agent_timeout") or options.get("timeout")
        if timeout is not None:
            try:
                timeout = float(timeout)
            except (TypeError, ValueError):
                raise AutoresearchError(f"agent timeout must be a number of seconds, not {timeout!r}") from None
            if not math.isfinite(timeout) or timeout <= 0:
                raise AutoresearchError(f"agent timeout must be a positive number of seconds, not {timeout:g}")
        retries = options.get("max_retries")
        if retries is not None:
            try:
                retries = int(retries)
            except (TypeError, ValueError):
                raise AutoresearchError(f"max_retries must be a whole number, not {retries!r}") from None
        text = {k: (str(options[k]) if options.get(k) else None) for k in ("model", "base_url")}
        command = options.get("agent_command") or options.get("command")
        return cls(text["model"], text["base_url"], str(command).strip() if command else None, timeout, retries)


class Agent:
    """Base class. Subclasses set `name` and implement `propose`; `check` is optional."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_timeout: ClassVar[float] = 1800.0  # seconds for one proposal

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.settings = Options.parse(options)

    @property
    def timeout(self) -> float:
        return self.settings.timeout or self.default_timeout

    def check(self) -> str | None:
        """None when ready to run; otherwise one line saying what is missing. Never calls out."""
        return None

    def propose(self, context: Context) -> Proposal:  # pragma: no cover - interface
        raise NotImplementedError


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line, whitespace collapsed, cut with "…" to at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def description_in(line: str) -> str | None:
    """What a `DESCRIPTION:` line says ("" when nothing), None when `line` is not one."""
    found = _DESCRIPTION.match(line)
    return _unmarked(found.group(1)) if found else None


def description_from(text: str, fallback: str) -> str:
    """The last `DESCRIPTION:` line of an agent's answer that says something, else `fallback`;
    on one line (one_line)."""
    said = [d for d in map(description_in, (text or "").splitlines()) if d]
    return one_line(said[-1] if said else _unmarked(fallback))


def _unmarked(text: str) -> str:
    """`text` without the emphasis around it (`**`, `__`) and backticks that wrap all of it."""
    text = text.strip(" \t*_")
    inner = text.strip("`")
    return inner.strip(" \t*_") if "`" not in inner else text


def keep_transcript(context: Context, text: str) -> None:
    """The last call's transcript, secrets blanked, in the state folder (agent.log); never an
    error (a transcript is a convenience, no experiment fails over it)."""
    try:
        atomic_write(real_folder(context.state_dir) / TRANSCRIPT, redact(text))
    except OSError:
        pass
