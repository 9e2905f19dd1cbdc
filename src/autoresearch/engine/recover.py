"""Finish an experiment that a crash or `kill -9` of the engine interrupted.

The caller holds the workspace lock, so no other engine is running: a journal left behind
belongs to a dead one. Its leftover process group is killed (only while its processes
still carry the run's marker), its row is written unless it already was (as a crash,
"interrupted"), and the branch goes back to the frontier, or to the candidate when its
row says keep.
"""

from __future__ import annotations

from autoresearch import gitrepo, proc
from autoresearch.engine.guard import Guard
from autoresearch.engine.outcome import make_row
from autoresearch.engine.runner import marker
from autoresearch.resultsfile import append, read_rows
from autoresearch.state import Journal
from autoresearch.workspace import Workspace


def recover(ws: Workspace, guard: Guard, keep_edits: bool = False) -> str | None:
    """Clean up after a dead engine; a line saying what was done, or None when nothing was left.

    With `keep_edits` (an agent calling `experiment` with new edits in the tree) the files in
    the working tree are left as they are and only the branch moves.
    """
    state = ws.state
    j = state.journal()
    if j is None:
        state.clear_current()
        return None
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
        gitrepo.move_branch(ws.root, target, keep_tree=True)
    else:
        guard.reset(target)
    state.clear_experiment()
    if line:
        line += f"; tree reset to the frontier {target[:7]}"
    return line


def _record_unwritten(ws: Workspace, j: Journal, candidate: str) -> tuple[bool, str | None]:
    """(keep, line): whether the rows already written say keep; else write the crash row."""
    written = [r for r in read_rows(ws.results_path)
               if r.commit[:7] == candidate[:7] and r.branch in (j.branch, "") and r.kind in (j.kind, "confirm")
               and r.timestamp >= j.started_utc]
    if written:
        return j.kind != "baseline" and any(r.status == "keep" for r in written), None
    reason = j.reason or "interrupted"
    append(ws.results_path, make_row(candidate, status="interrupted", kind=j.kind, description=j.description, reason=reason,
                                     branch=j.branch, agent=j.agent, usage=j.usage), ws.config.metric)
    return False, (f"recovered an interrupted {j.kind} ({candidate[:7]} {j.description!r}): "
                   f"recorded as interrupted ({reason})")
