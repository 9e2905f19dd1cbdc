"""Finish the experiments a crash or `kill -9` of the engine interrupted.

The caller holds the workspace lock, so no other engine is running: a journal left in the
store belongs to a dead one. For each: its leftover process group is killed (only while its
processes still carry the run's marker); unless its rows were recorded (the same transaction
marks the journal), its finished runs are recorded undecided and the run in flight as
interrupted (lifecycle.stopped_rows, as for Ctrl-C); and a candidate whose rows say keep but
that the branch did not reach yet is moved onto.

Everything read here is the engine's own (autoresearch.store, in its private folder), so a
row someone else appended to results.tsv is never adopted: results.tsv is rewritten from it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from autoresearch import gitrepo, proc
from autoresearch.engine.guard import Guard
from autoresearch.engine.lifecycle import stopped_rows
from autoresearch.engine.runner import marker
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, behind_a_link
from autoresearch.store import Journal
from autoresearch.workspace import Workspace


def recover(ws: Workspace, guard: Guard, keep_edits: bool = False) -> str | None:
    """Clean up after a dead engine; a line saying what was done, or None when nothing was left.

    With `keep_edits` (an agent calling `experiment` with new edits in the tree) the files in
    the working tree are kept: a recorded keep the branch did not reach yet is merged under them.
    """
    store = ws.store
    lines = [x for x in (store.take_note(), _restore_results(ws)) if x]
    for name, j in store.journals():
        if j is not None:
            line = _finish(ws, guard, j, name, keep_edits)
            if line:
                lines.append(line)
        store.drop_journal(name)
    ws.state.clear_current()
    ws.state.clear_worker_runs()
    return "; ".join(lines) or None


def _finish(ws: Workspace, guard: Guard, j: Journal, name: str, keep_edits: bool) -> str | None:
    killed = ""
    if j.pgid and j.result_path and proc.group_has_marker(j.pgid, marker(j.result_path)):
        proc.kill_group(j.pgid, None, grace=2.0)
        killed = f"; stopped its leftover processes (group {j.pgid})"
    if j.recorded:
        if j.keep and j.candidate and gitrepo.head(ws.root) == j.frontier:
            return _move_to(ws, guard, j.candidate, j.frontier, keep_edits)
        return None
    reason = j.reason or "interrupted"
    measured = list(j.measured)  # the candidate's already undecided (Engine._note_measured)
    if j.reason:  # the engine knew it could not record them, and why
        measured = [replace(r, reason=j.reason) if r.status == "discard" and r.kind != "rerun" else r for r in measured]
    rows = stopped_rows(replace(j, measured=tuple(measured)), "interrupted", "stopped", reason)
    ws.store.record(rows, journal=name)
    what = f"recovered an interrupted {j.kind} ({(j.candidate or j.frontier)[:7]} {j.description!r})"
    if measured:
        runs = "run" if len(measured) == 1 else "runs"
        in_flight = ", and the one in flight as interrupted" if j.running is not None else ""
        return f"{what}: recorded its {len(measured)} finished {runs} undecided{in_flight}{killed}"
    return f"{what}: recorded as interrupted ({reason}){killed}"


def _move_to(ws: Workspace, guard: Guard, candidate: str, frontier: str, keep_edits: bool) -> str:
    """The branch onto a kept candidate whose record a kill cut short of moving it."""
    line = f"moved the branch to {candidate[:7]}, kept before the engine stopped"
    if keep_edits and guard.dirty():
        dropped = carry_edits(ws, guard, frontier, candidate)
        if dropped:
            line += f"; the edits to {', '.join(dropped)} conflict with it: dropped"
    else:
        guard.reset(candidate)
    return line


def carry_edits(ws: Workspace, guard: Guard, base: str, onto: str) -> list[str]:
    """Edits made on top of `base` moved onto `onto` (the branch and the tree): each edited
    file becomes `onto`'s with the edit since `base` merged in; the paths of the edits that
    conflict are dropped and returned."""
    root = ws.root
    edited = {p: _text(root / p) for p in guard.dirty()}
    guard.reset(onto)
    dropped = []
    for path, text in edited.items():
        old = gitrepo.show(root, base, path)
        theirs = gitrepo.show(root, onto, path)
        if text is _UNREADABLE:
            dropped.append(path)
            continue
        if text is None:  # deleted since `base`
            if theirs is not None and theirs == old:
                (root / path).unlink(missing_ok=True)
            continue
        merged = text if old is None else gitrepo.merge_text(root, text, old, theirs or "")
        if merged is None or behind_a_link(root, path):  # an ignored folder the reset left may be a link
            dropped.append(path)
            continue
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(root / path, merged)
    return dropped


_UNREADABLE = "\0unreadable"
_MAX_EDIT = 16 * 1024 * 1024


def _text(path: Path) -> str | None:
    """An edited file's text; None when it is gone; _UNREADABLE for a link, a folder, a huge or
    a binary file (the guard refuses those anyway: they are not carried over)."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_EDIT:
            return _UNREADABLE
        return path.read_bytes().decode()
    except (OSError, UnicodeDecodeError):
        return _UNREADABLE


def _restore_results(ws: Workspace) -> str | None:
    """results.tsv back to the rows the engine wrote, saying so when someone else's were there."""
    try:
        foreign = ws.store.restore()
    except (AutoresearchError, OSError):
        return None
    if not foreign:
        return None
    lines = "line" if foreign == 1 else "lines"
    return f"results.tsv had {foreign} {lines} the engine did not write: restored from the engine's record"
