"""The one way an experiment's facts are written: its journal while it runs, its rows when
it ends, whichever mode ran it (one at a time, a pool of workers, Ray) and whoever ends it
(a decision, Ctrl-C, a failed machine, recovery after `kill -9`).

- `Pen`: an experiment's journal in the store, written through at every step (what ran, what
  runs now, the leftover processes to stop), so that recovery can finish it.
- `stop_status`: what stopping an experiment means (interrupted, a machine failure, an error
  of the engine's own), as a status, a typed cause and a reason.
- `stopped_rows`: the rows of an experiment cut short: its finished runs undecided (never
  kept) and the run in flight with the stop's status. The pool, the engine's baseline and
  recovery all call it; nothing else builds an interrupted row.
- `record`: rows and the journal marked recorded, in one transaction (autoresearch.store).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from autoresearch.engine.outcome import make_row
from autoresearch.errors import MachineError
from autoresearch.research.results import Row
from autoresearch.store import Journal, Store

STOPPED = "the engine stopped"


class Pen:
    """The journal of one experiment in flight, under `name` in the store."""

    def __init__(self, store: Store, name: str, journal: Journal):
        self.store, self.name, self.journal = store, name, journal
        store.write_journal(name, journal)

    def update(self, **changes) -> Journal:
        self.journal = replace(self.journal, **changes)
        self.store.write_journal(self.name, self.journal)
        return self.journal

    def record(self, rows: Iterable[Row], *, keep: bool = False) -> None:
        """Its rows and the journal marked recorded, together (then `close` once the branch is where they say)."""
        self.store.record(list(rows), journal=self.name, keep=keep)
        self.journal = replace(self.journal, recorded=True, keep=keep)

    def close(self) -> None:
        self.store.drop_journal(self.name)


def stop_status(exc: BaseException) -> tuple[str, str, str]:
    """(status, cause, reason) of runs the engine stopped: Ctrl-C or SIGTERM is an
    interruption, not a crash of the code; a failed machine or an error of the engine's own is
    a crash that is not the code's."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "stopped", "interrupted"
    what, cause = ("machine failure", "machine") if isinstance(exc, MachineError) else ("engine error", "engine")
    return "crash", cause, f"{what}: {' '.join(str(exc).split())[:150] or type(exc).__name__}"


def stopped_rows(j: Journal, status: str, cause: str, reason: str) -> list[Row]:
    """The rows of an experiment stopped before its decision: each finished run as the journal
    holds it (the candidate's undecided), and the run in flight (or, when none had finished,
    the experiment itself) with `status`, `cause` and `reason`."""
    rows = list(j.measured)
    commit, kind, description = j.running or (j.candidate or j.frontier, j.kind, j.description)
    if j.running is not None or not rows:
        rows.append(make_row(commit, status=status, kind=kind, description=description, reason=reason,
                             branch=j.branch, agent=j.agent, usage=None if j.measured else j.usage,
                             worker=j.worker, cause=cause))
    return rows
