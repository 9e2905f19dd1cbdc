"""The live line: one line of progress on a terminal while a run goes on, rewritten in place
from the run's log (its last step, loss and seconds left), then "evaluating" while the
engine's evaluator scores what the trainer handed over."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from autoresearch import runlog
from autoresearch.files import read_tail
from autoresearch.research.results import printable

LIVE_READ_BYTES = 64 * 1024


class LiveLine:
    """One line of progress on a terminal, rewritten in place from run.log's step lines."""

    def __init__(self, stream: TextIO, log_path: Path, label: str):
        self.stream, self.log_path, self.label = stream, log_path, label
        self.evaluating = False  # while the engine's evaluator runs (evaluate)
        self.offset = 0.0  # the trainer's seconds, once the evaluator's clock ticks
        self.shown = False

    def __call__(self, elapsed: float) -> None:
        # the end of the log, read afresh each tick: a capped run.log stops growing but its tail moves
        raw = read_tail(self.log_path, LIVE_READ_BYTES)
        if raw is None:
            return
        found = runlog.progress(raw[:raw.rfind("\n") + 1])  # a half-written last line waits for its end
        evaluating = self.evaluating or (found is not None and found.evaluating)
        parts = [self.label, f"{elapsed + self.offset:4.0f} s"]
        if found is not None:
            parts.append(f"step {found.step}")
            loss, left = found.fields.get("loss"), found.fields.get("remaining")
            if isinstance(loss, float):
                parts.append(f"loss {loss:.4f}")
            if isinstance(left, float) and not evaluating:
                parts.append(f"{left:.0f} s left")
        if evaluating:
            parts.append("evaluating")
        text = printable(" | ".join(parts)).replace("\n", " ")
        self.stream.write("\r\x1b[K" + text[:100])
        self.stream.flush()
        self.shown = True

    def evaluate(self, after: float) -> None:
        """The trainer exited after `after` seconds and the evaluator starts: the line says so,
        and its clock goes on from there."""
        self.evaluating, self.offset = True, after

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
