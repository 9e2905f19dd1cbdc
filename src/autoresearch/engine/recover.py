"""Finish an experiment that a crash or `kill -9` of the engine interrupted.

The caller holds the workspace lock, so no other engine is running: a journal left behind
belongs to a dead one. Its leftover process group is killed (only while its processes
still carry the run's marker); the runs that finished are recorded from the journal (a
candidate's as undecided, never kept), the run in flight as "interrupted", unless the rows
are already in the ledger; and the branch goes back to the frontier, or to the candidate
when its recorded rows say keep.

Everything read here is the engine's own: the journal and the ledger live in its private
folder (autoresearch.state), so a row someone else appended to results.tsv is never adopted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from autoresearch import gitrepo, proc
from autoresearch.engine.guard import Guard
from autoresearch.engine.outcome import make_row
from autoresearch.engine.runner import marker
from autoresearch.errors import AutoresearchError
from autoresearch.research.results import ResultsError, Row, header, parse
from autoresearch.state import Journal
from autoresearch.workspace import Workspace


def recover(ws: Workspace, guard: Guard, keep_edits: bool = False) -> str | None:
    """Clean up after a dead engine; a line saying what was done, or None when nothing was left.

    With `keep_edits` (an agent calling `experiment` with new edits in the tree) the files in
    the working tree are left as they are and only the branch moves.
    """
    state = ws.state
    restored = "; ".join(x for x in (_restore_results(ws), _recover_workers(ws, guard)) if x) or None
    j = state.journal()
    if j is None:
        state.clear_current()
        return restored
    killed = ""
    if j.pgid and j.result_path and proc.group_has_marker(j.pgid, marker(j.result_path)):
        proc.kill_group(j.pgid, None, grace=2.0)
        killed = f"; stopped its leftover processes (group {j.pgid})"
    frontier = j.frontier or gitrepo.head(ws.root)
    candidate = j.candidate
    if not candidate and j.kind != "baseline":
        head = gitrepo.head(ws.root)
        if head != frontier and gitrepo.parent(ws.root, head) == frontier:
            candidate = head  # committed, but killed before the journal said so
    line = None
    keep = False
    if j.recorded:
        keep = j.keep
    elif candidate:
        keep, line = _record_unwritten(ws, j, candidate)
        if line:
            line += killed
    target = candidate if keep and candidate else frontier
    if keep_edits and guard.dirty():
        if candidate and target != candidate and gitrepo.head(ws.root) == candidate:
            unfolded = _unfold(ws, guard, candidate, target)
            line = "; ".join(x for x in (line, unfolded) if x) or None
        else:
            gitrepo.move_branch(ws.root, target, keep_tree=True)
    else:
        guard.reset(target)
    state.clear_experiment()
    if line:
        line += f"; tree reset to the frontier {target[:7]}"
    return "; ".join(x for x in (restored, line) if x) or None


def _recover_workers(ws: Workspace, guard: Guard) -> str | None:
    """The experiments a dead pool's workers had in flight (`run --workers N`), one journal
    each: leftover processes stopped, finished runs recorded undecided, the run in flight as
    interrupted. Their candidates are not on the branch, unless the engine recorded a keep and
    died before moving the branch: then it moves now."""
    lines = []
    for path, j in ws.state.worker_journals():
        if j is not None and not j.recorded and j.candidate:
            if j.pgid and j.result_path and proc.group_has_marker(j.pgid, marker(j.result_path)):
                proc.kill_group(j.pgid, None, grace=2.0)
            keep, line = _record_unwritten(ws, j, j.candidate)
            if line:
                lines.append(line)
            if keep and gitrepo.parent(ws.root, j.candidate) == gitrepo.head(ws.root) and not guard.dirty():
                guard.reset(j.candidate)
        path.unlink(missing_ok=True)
    ws.state.clear_worker_runs()
    return "; ".join(lines) or None


def _record_unwritten(ws: Workspace, j: Journal, candidate: str) -> tuple[bool, str | None]:
    """(keep, line): whether the rows already written say keep; else write what the journal
    says finished, and the run in flight as interrupted."""
    written = [r for r in ws.results.rows()
               if r.commit[:7] == candidate[:7] and r.branch in (j.branch, "") and r.kind in (j.kind, "confirm")
               and r.timestamp >= j.started_utc and r.worker == j.worker]  # a pool's worker: its own rows
    if written:
        return j.kind != "baseline" and any(r.status == "keep" for r in written), None
    measured = _measured(j)
    if j.reason:  # the engine saw why it could not record them
        measured = [replace(r, reason=j.reason) if r.commit == candidate[:7] and r.status != "crash" else r
                    for r in measured]
    rows = list(measured)
    in_flight = bool(j.pgid) or bool(j.running) or not measured  # `running`: a run started, not noted yet
    if in_flight:
        reason = j.reason or "interrupted"
        commit = j.running or candidate
        rows.append(make_row(commit, status="interrupted", kind=j.kind if commit == candidate else "confirm",
                             description=j.description, reason=reason, branch=j.branch, agent=j.agent,
                             usage=None if measured else j.usage))
    ws.results.append(rows)
    what = f"recovered an interrupted {j.kind} ({candidate[:7]} {j.description!r})"
    if measured:
        runs = "run" if len(measured) == 1 else "runs"
        return False, f"{what}: recorded its {len(measured)} finished {runs} undecided" + (
            ", and the one in flight as interrupted" if in_flight else "")
    return False, f"{what}: recorded as interrupted ({reason})"


def _unfold(ws: Workspace, guard: Guard, candidate: str, target: str) -> str | None:
    """New edits made on top of the interrupted candidate, without the candidate: each edited
    file becomes the frontier's with the edit since the candidate merged in, so the next commit
    does not carry the interrupted change along. An edit that conflicts is dropped, and said."""
    root = ws.root
    edited = {p: _text(root / p) for p in guard.dirty()}
    guard.reset(target)
    dropped = []
    for path, text in edited.items():
        base = gitrepo.show(root, candidate, path)
        theirs = gitrepo.show(root, target, path)
        if text is _UNREADABLE:
            dropped.append(path)
            continue
        if text is None:  # deleted since the candidate
            if theirs is not None and theirs == base:
                (root / path).unlink(missing_ok=True)
            continue
        merged = text if base is None else gitrepo.merge_text(root, text, base, theirs or "")
        if merged is None:
            dropped.append(path)
            continue
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(merged)
    if dropped:
        return (f"the edits since then to {', '.join(dropped)} were built on the interrupted change "
                f"and conflict with undoing it: dropped")
    return None


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


def _measured(j: Journal) -> list[Row]:
    """The finished runs the journal holds (a damaged entry reads as none)."""
    if not j.measured:
        return []
    try:
        return parse(header() + "".join(ln if ln.endswith("\n") else ln + "\n" for ln in j.measured), "journal")[1]
    except ResultsError:
        return []


def _restore_results(ws: Workspace) -> str | None:
    """results.tsv back to the rows the engine wrote, saying so when someone else's were there."""
    try:
        foreign = ws.results.restore()
    except AutoresearchError:
        return None
    if not foreign:
        return None
    lines = "line" if foreign == 1 else "lines"
    return f"results.tsv had {foreign} {lines} the engine did not write: restored from the engine's record"
