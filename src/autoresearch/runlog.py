"""A run's log as people and the engine read it, and where each run's log is kept.

A training run writes its output (progress lines rewritten in place with `\\r`, then the
summary block) to a capped log. Three readers need the same reading of it: the engine's
measurement (the summary block, the last traceback), the live line on a terminal, and the
views (`status`, the dashboard). They all go through `lines` and `progress` here.

Each run's log is kept under the engine's logs folder as `<n>.log` (`RunLogs`), named on its
row of results.tsv, so that the agent, `status` and the dashboard show the log of the run
they talk about; the oldest are pruned past `KEEP_LOGS`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.research.results import printable

KEEP_LOGS = 200  # run logs kept per workspace; the oldest go first
# a progress line of the template's train.py: "step 12 | progress 40.0% | loss 3.2 | ... | remaining 12s"
# (a step of more digits is no step: int() refuses 4,300 of them, and no run takes 10^12 steps)
_PROGRESS = re.compile(r"^step\s+(\d{1,12})\s*\|(.*)$")


def lines(text: str) -> list[str]:
    """Log lines as a terminal shows them: each line's last state after carriage returns
    ("text\\r" and "text\\r\\x1b[K" show the text), and printable (no escapes, no controls)."""
    out = []
    for line in text.split("\n"):
        parts = [printable(part) for part in line.split("\r")]
        while len(parts) > 1 and not parts[-1].strip():
            parts.pop()
        out.append(parts[-1])
    return out


def text(raw: str) -> str:
    """The whole log as a terminal shows it (see `lines`)."""
    return "\n".join(lines(raw))


@dataclass(frozen=True)
class Progress:
    """The last progress line of a log: its step, its `name value` fields as numbers where
    they are numbers, and whether the evaluation started after it."""

    step: int
    fields: dict[str, float | str] = field(default_factory=dict)
    evaluating: bool = False


def _value(raw: str) -> float | str:
    num = raw[:-2] if raw.endswith("ms") else raw.rstrip("%").rstrip("s")
    try:
        return float(num.replace(",", ""))
    except ValueError:
        return raw


def progress(raw: str) -> Progress | None:
    """The last progress line of a log's text; None before the first step."""
    evaluating = False
    for line in reversed(lines(raw)):
        line = line.strip()
        if line.startswith("evaluating"):
            evaluating = True
        found = _step(line)
        if found is not None:
            return Progress(found.step, found.fields, evaluating)
    return None


def curve(raw: str) -> list[Progress]:
    """Every progress line of a log's text, in order (the training curve the trainer printed)."""
    return [p for p in map(_step, (x.strip() for x in lines(raw))) if p is not None]


def _step(line: str) -> Progress | None:
    m = _PROGRESS.match(line)
    if not m:
        return None
    found: dict[str, float | str] = {}
    for part in (m.group(2) or "").split("|"):
        bits = part.strip().split(None, 1)
        if len(bits) == 2:
            found[bits[0].replace("/", "_")] = _value(bits[1].strip())
    return Progress(int(m.group(1)), found, False)


class RunLogs:
    """The engine's folder of run logs: one file per run, numbered in the order they started."""

    def __init__(self, folder: Path, keep: int = KEEP_LOGS):
        self.folder, self.keep = Path(folder), keep

    def path(self, name: str) -> Path:
        """The file of a log named on a row ("" or a name that is not ours: a path that does not exist)."""
        if not re.fullmatch(r"[0-9]{1,9}\.log", name or ""):
            return self.folder / "-missing-"
        return self.folder / name

    def keep_copy(self, source: Path) -> str:
        """Copy a finished run's log in as the next numbered log; its name ("" when it could not be kept).

        The name is claimed with O_EXCL before it is written: workers finishing at the same
        moment never share a number."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            numbers = self._numbers()
            number = (numbers[-1] + 1) if numbers else 1
            while True:
                try:
                    fd = os.open(self.folder / f"{number}.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    break
                except FileExistsError:
                    number += 1
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
            for old in numbers[: max(0, len(numbers) + 1 - self.keep)]:
                (self.folder / f"{old}.log").unlink(missing_ok=True)
            return f"{number}.log"
        except OSError:
            return ""  # a log is a convenience: never fail a run over it

    def _numbers(self) -> list[int]:
        return sorted(int(p.stem) for p in self.folder.glob("*.log") if p.stem.isdigit())
