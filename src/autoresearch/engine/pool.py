"""The life of an experiment, from the agent's edit to its record: one at a time (a pool of
one inline worker: `one_experiment`, `autoresearch experiment`, `run`) or N in flight (`run
--workers N`, `--ray`). Nothing else commits a candidate, records a decision or stops one.

Who does what:
- The driver (the thread that also asks the agent) alone writes the working tree, the branch
  and the decided rows. `submit` turns the agent's edit into a candidate commit whose parent
  is the frontier, puts the tree back at the frontier, and queues the candidate; `collect`
  records what the workers finished (`_settle`: keep, discard, or a stale win rebased) and
  what was stopped (`_stopped`), each in one transaction with its journal (lifecycle.Pen).
- A worker (a thread, or the driver's own thread for one at a time, with an Engine on a Slot:
  its GPU or its share of the cores) takes the next candidate and runs it, and the frontier
  beside it, until the keep rule decides (`Engine.trial`). It runs each commit from a copy
  (never the working tree, which the agent is editing meanwhile) and writes only its journal.
  The frontier re-runs of a candidate run on its worker, so an A-B-A comparison never mixes
  slots. Its runs go to the Runner made for its slot (`runners`: a Ray actor's, a test's),
  else a local one.

One ratchet: a win measured against a frontier that has moved since is not kept as it is. Its
change is merged three-way onto the current frontier; when that applies cleanly, the merged
commit is queued first and measured against the current frontier like any candidate; when it
conflicts, the candidate's editable files as they are, committed on the current frontier, are
queued instead (`whole_onto`): a win is never thrown away, and the ratchet stays monotone,
since that commit too is kept only if it beats the current frontier. Either way the first
record is `stale`. A win that finishes after the loop was told to stop goes back to the agent
(`returned`).

Faults: a run that fails for the machine's reasons (MachineError) is recorded as interrupted
(never as run) and its experiment queued again, once, for the next worker (one at a time, it
is recorded as a machine failure and stops the caller, as any error); a second failure of
the same candidate is recorded as a machine failure and not queued again (train.py can print
what a failing sandbox prints). A worker is retired when it is lost for good (its Ray actor died:
WorkerLost) or after MAX_WORKER_FAILURES machine failures in a row; with none left, the pool
stops. A `kill -9` of the driver leaves each experiment's journal; the next start records the
finished runs undecided and the ones in flight as interrupted (recover.py). `close` (Ctrl-C)
stops every worker's run and records them the same way.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import queue
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

from autoresearch import gitrepo
from autoresearch.engine.earlystop import EARLY
from autoresearch.engine.experiment import Attempt, Engine
from autoresearch.engine.lifecycle import Pen, stop_status, stopped_rows
from autoresearch.engine.outcome import Outcome
from autoresearch.engine.runner import Runs
from autoresearch.engine.slots import Slot
from autoresearch.errors import AutoresearchError, MachineError, WorkerLost
from autoresearch.proc import shielded
from autoresearch.store import Journal

# what makes a worker's Runner: its slot, and the pool's halt (true once the pool is stopping)
MakeRunner = Callable[[Slot, Callable[[], bool]], Runs]


MAX_WORKER_FAILURES = 2  # machine failures in a row that retire a worker


@dataclass
class Ticket:
    """One candidate on its way through the pool."""

    number: int  # in this session: names its journal
    attempt: Attempt
    rebased_from: str = ""  # short sha of the stale win it was rebased from
    worker: str = ""  # who runs it (once taken)
    pen: Pen | None = None  # its journal, once a worker started it
    error: BaseException | None = None
    retries: int = 0  # times it was queued again after a machine failure

    def journal(self) -> Journal:
        return self.pen.journal if self.pen is not None else self.attempt.journal(self.worker)


@dataclass(frozen=True)
class InFlight:
    """A candidate queued or running, as the agent's prompt and the views show it."""

    worker: str  # "" while queued
    commit: str
    description: str

    def line(self) -> str:
        return f"{self.worker or 'queued'} {self.commit} {self.description}"


class Pool:
    """Experiments in flight on `slots`: each a thread, or with `inline` one worker that runs
    in the caller's thread (one experiment at a time) on the driver's own engine."""

    def __init__(self, engine: Engine, slots: list[Slot], *, out: Callable[[str], None] | None = None,
                 runners: MakeRunner | None = None, inline: bool = False):
        if not slots:
            raise AutoresearchError("a pool needs at least one worker")
        if inline and len(slots) != 1:
            raise AutoresearchError("an inline pool has one worker")
        self.engine = engine  # the driver's: owns the tree
        self.out = out or engine.out
        self._say_lock = threading.Lock()
        self._cv = threading.Condition()
        self._todo: collections.deque[Ticket] = collections.deque()
        self._running: dict[str, Ticket] = {}
        self._done: queue.Queue[Ticket] = queue.Queue()
        self._halt = threading.Event()
        self._numbers = itertools.count(1)
        self.returned: list[tuple[str, str]] = []  # (commit, description) of stale wins the loop stopped before
        self._started = False
        self.inline = inline
        self.runners = runners  # a Ray cluster's: each worker's runs go to its actor (engine/cluster.py)
        self.workers = [_Worker(self, slot) for slot in slots]

    # -- the driver's side -------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many candidates may wait or run at once: one per worker, and one more ready, so
        that a worker that finishes starts the next at once while the agent thinks."""
        return len(self.alive()) + 1

    def alive(self) -> list["_Worker"]:
        return [w for w in self.workers if not w.retired]

    def outstanding(self) -> int:
        with self._cv:
            return len(self._todo) + len(self._running)

    def in_flight(self) -> list[InFlight]:
        with self._cv:
            running = [InFlight(t.worker, t.attempt.candidate[:7], t.attempt.description) for t in self._running.values()]
            queued = [InFlight("", t.attempt.candidate[:7], t.attempt.description) for t in self._todo]
        return running + queued

    def say(self, line: str) -> None:
        with self._say_lock:
            self.out(line)

    def start(self) -> None:
        if not self._started and not self.inline:
            for w in self.workers:
                w.start()
        self._started = True

    def submit(self, description: str, *, agent: str = "", usage: Any = None) -> Outcome | None:
        """Take the agent's edit in the working tree as a candidate: an `invalid` or `noop` row
        now (its Outcome), or a commit off the branch queued for a worker (None). The tree and
        the branch are back at the frontier either way."""
        e = self.engine
        a, changed, refused = e.open_attempt(e.branch(), description, agent, usage)
        if refused is not None:
            return refused
        history, frontier = a.history, a.frontier
        if not changed:
            return e.record_plain(a, "noop", "no change to the editable files")
        # a commit on the frontier that no branch points at: the branch moves only when it wins
        a.candidate = gitrepo.commit_off_branch(e.root, frontier, a.description, exclude=e.guard.protected())
        e.guard.reset(frontier)
        altered = gitrepo.altered_blobs(e.root, frontier, a.candidate)
        if altered:  # the guard checked the file; the commit would hold the object's other bytes
            return e.record_plain(a, "invalid", f"{altered[0]}: its object under .git/objects holds other bytes "
                                                f"than its id says (reverted)")
        a.key = e.guard.content_key(a.candidate)
        earlier = e.guard.seen(history).get(a.key)
        if earlier is not None:
            measured = earlier.status in ("keep", "discard") and not earlier.reason.startswith(EARLY)
            shown = f" {earlier.value:.6f}" if measured else ""
            return e.record_plain(a, "noop", f"same code as {earlier.commit}, which already ran ({earlier.status}{shown}); "
                                             f"not run again")
        with self._cv:
            flying = (*self._todo, *self._running.values(), *list(self._done.queue))  # finished, not yet recorded too
            twin = next((t for t in flying if t.attempt.key == a.key), None)
        if twin is not None:
            return e.record_plain(a, "noop", f"same code as {twin.attempt.candidate[:7]}, which is in flight; not run twice")
        self._queue(Ticket(next(self._numbers), a))
        return None

    def _queue(self, ticket: Ticket, *, first: bool = False) -> None:
        with self._cv:
            if first:
                self._todo.appendleft(ticket)
            else:
                self._todo.append(ticket)
            self._cv.notify()

    def collect(self, timeout: float = 0.0) -> list[Outcome]:
        """Record what the workers finished (waiting up to `timeout` seconds for the first); an
        inline pool runs its next candidate here first. An inline run stopped by Ctrl-C or by an
        error of the engine's own is recorded, then raised."""
        if self.inline:
            ticket = self.take(self.workers[0], wait=False)
            if ticket is not None:
                self.workers[0].run_one(ticket)
                self.finished(ticket)
        finished = []
        try:
            finished.append(self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait())
            while True:
                finished.append(self._done.get_nowait())
        except queue.Empty:
            pass
        outcomes = []
        for n, ticket in enumerate(finished):
            try:
                outcome = self._settle(ticket)
            except BaseException:
                for later in finished[n + 1:]:  # recorded by the next collect, or by close
                    self._done.put(later)
                raise
            if outcome is not None:
                outcomes.append(outcome)
            if self.inline and ticket.error is not None:
                raise ticket.error
        if not self.alive() and self.outstanding():
            raise AutoresearchError("every worker failed for the machine's reasons; stopping (see the lines above)")
        return outcomes

    def drain(self, show: Callable[[Outcome], None]) -> None:
        """Wait for every queued and running candidate (a rebased win too) and record it."""
        while self.outstanding() or not self._done.empty():
            for outcome in self.collect(timeout=0.5):
                show(outcome)

    def close(self) -> None:
        """Stop the workers; runs still going are stopped and recorded as interrupted."""
        self._halt.set()
        with self._cv:
            dropped = list(self._todo)
            self._todo.clear()
            self._cv.notify_all()
        for w in self.workers:
            if w.is_alive():
                w.join()
        try:
            self.collect()
        except (AutoresearchError, KeyboardInterrupt):
            pass
        if dropped:  # proposals no worker took: one interrupted row each (their agent's usage with it)
            self.engine.store.append([row for t in dropped for row in stopped_rows(
                t.journal(), "interrupted", "queued", "interrupted before a worker took it")])
            self.say(f"{len(dropped)} proposal{'s' if len(dropped) != 1 else ''} waiting for a worker were not run")

    # -- recording -------------------------------------------------------------------------

    def _settle(self, t: Ticket) -> Outcome | None:
        """Record a finished candidate: the decision (one transaction with its journal), then
        the branch moves to it when it is kept."""
        a, e = t.attempt, self.engine
        if t.error is not None:
            return self._stopped(t)
        status, reason = e.verdict(a)
        frontier = e.frontier(e.history(a.branch))
        if status == "keep" and frontier != a.frontier:
            status, reason = "stale", self._rebase(t, frontier, reason)
        block = a.settled(status=status, reason=reason)
        keep = status == "keep"
        with shielded():  # the rows, the branch, then the journal: recovery finishes what a kill -9 cut
            try:
                t.pen.record(block, keep=keep)
            except AutoresearchError as exc:
                with contextlib.suppress(Exception):
                    t.pen.update(reason=f"not recorded: {exc}")
                raise AutoresearchError(f"{exc}; the change was not kept, the frontier is still {frontier[:7]}") from exc
            if keep:
                e.guard.reset(a.candidate)  # the branch moves on: the candidate's parent is the frontier
            t.pen.close()
        outcome = e.outcome(a, status, reason, block, keep=keep)
        if not keep:
            outcome = replace(outcome, frontier=frontier[:7])
        return outcome

    def _stopped(self, t: Ticket) -> Outcome | None:
        """A candidate whose runs were cut short (Ctrl-C, a machine failure, an engine error):
        its finished runs are recorded undecided, the one in flight with the stop's status; it
        is not marked as run. A first machine failure queues it again."""
        a, exc = t.attempt, t.error
        status, cause, reason = stop_status(exc)
        # another worker may have a machine that works; one at a time there is no other
        again = isinstance(exc, MachineError) and not self._halt.is_set() and t.retries < 1 and not self.inline
        if again:
            status = "interrupted"  # a worker's machine failed: not the code's doing
        j = t.journal()
        rows = stopped_rows(replace(j, measured=tuple(a.undecided(reason))), status, cause, reason)
        with shielded():
            if t.pen is not None:
                t.pen.record(rows)
                t.pen.close()
            else:
                self.engine.store.append(rows)
        if again:
            self.say(f"{t.worker}: {reason}; {a.candidate[:7]} goes to the next worker")
            retry = Attempt(a.description, a.agent, None, a.branch, a.frontier, a.history, candidate=a.candidate,
                            key=a.key, whole=a.whole)
            self._queue(Ticket(next(self._numbers), retry, rebased_from=t.rebased_from, retries=t.retries + 1),
                        first=True)
        return None

    def _rebase(self, t: Ticket, frontier: str, why: str) -> str:
        """The reason of a win whose frontier moved; the merged change is queued when it applies."""
        a, e = t.attempt, self.engine
        won = f"won against {a.frontier[:7]} ({why})"
        if self._halt.is_set():
            self.returned.append((a.candidate[:7], a.description))
            return f"{won}, but the frontier moved to {frontier[:7]} and the loop stopped before it could run there"
        merged = merge_onto(e, a.candidate, a.frontier, frontier)
        how, whole = "rebased as {} and measured again", merged is None
        if whole:  # its files as they are, on the new frontier: kept only if that wins there
            merged = whole_onto(e, a.candidate, frontier)
            how = "its change does not merge (a conflict, or a merge over the caps), so its files as a whole on it ({}) are measured there"
        over = e.guard.committed_total(merged)
        if over:  # each win was under the caps; with what the frontier gained meanwhile it is not
            return f"{won}, but on the frontier {frontier[:7]}, which moved, {over}: not run there"
        key = e.guard.content_key(merged)
        if key == e.guard.content_key(frontier):
            return f"{won}, but the frontier {frontier[:7]} already has its change"
        history = e.history(a.branch)
        again = Attempt(a.description, a.agent, None, a.branch, frontier, history, candidate=merged, key=key,
                        whole=whole)
        self._queue(Ticket(next(self._numbers), again, rebased_from=a.candidate[:7]), first=True)
        return f"{won}, but the frontier moved to {frontier[:7]}: {how.format(merged[:7])}"

    # -- the workers' side -------------------------------------------------------------------

    def halted(self) -> bool:
        return self._halt.is_set()

    def finished(self, ticket: Ticket) -> None:
        with self._cv:  # on the done queue before it leaves the running: `drain` never sees neither
            self._done.put(ticket)
            if self._running.get(ticket.worker) is ticket:
                del self._running[ticket.worker]

    def take(self, worker: "_Worker", *, wait: bool = True) -> Ticket | None:
        with self._cv:
            while wait and not self._todo and not self._halt.is_set():
                self._cv.wait(timeout=1.0)
            if self._halt.is_set() or not self._todo:
                return None
            ticket = self._todo.popleft()
            ticket.worker = worker.slot.name
            self._running[worker.slot.name] = ticket
            return ticket


class _Worker(threading.Thread):
    """Runs candidates from the pool, one at a time, until the pool stops (as a thread), or one
    when the inline pool's driver asks (`run_one`)."""

    def __init__(self, pool: Pool, slot: Slot):
        super().__init__(name=f"autoresearch-{slot.name or 'main'}", daemon=True)
        self.pool, self.slot = pool, slot
        self.retired = False
        self.failures = 0  # machine failures in a row
        e = pool.engine
        if pool.inline:
            self.engine = e  # one at a time: the driver's own engine, its runner and its live line
        else:
            runner = pool.runners(slot, pool.halted) if pool.runners is not None else None
            self.engine = Engine(e.ws, out=lambda line: pool.say(f"[{slot.name}] {line}"), stream=e.stream,
                                 live=False, slot=slot, halt=pool.halted, runner=runner)

    def run(self) -> None:
        while not self.retired:
            ticket = self.pool.take(self)
            if ticket is None:
                return
            self.run_one(ticket)
            self.pool.finished(ticket)

    def run_one(self, ticket: Ticket) -> None:
        """The candidate's runs until the keep rule decides; an exception is kept on the ticket
        for the driver to record (a thread must not die silently)."""
        a = ticket.attempt
        name = f"{self.slot.name or 'main'}-{ticket.number}-{os.getpid()}"
        try:
            a.history = self.engine.history(a.branch)  # the rows as they are now, its frontier's runs too
            ticket.pen = Pen(self.engine.store, name, a.journal(self.slot.name))
            if not self.pool.inline:
                self.pool.say(f"[{self.slot.name}] {a.candidate[:7]} {a.description}")
            self.engine.trial(a, ticket.pen)
            self.failures = 0
        except BaseException as exc:
            ticket.error = exc
            if isinstance(exc, MachineError):
                self.failures += 1
                self.retired = isinstance(exc, WorkerLost) or self.failures >= MAX_WORKER_FAILURES


def one_experiment(engine: Engine, description: str, *, agent: str = "", usage: Any = None) -> Outcome:
    """One experiment on the current branch, start to record, in the caller's thread: what
    `autoresearch experiment` does, and each turn of `autoresearch run`. Prints its outcome
    (the baseline, when it runs instead, prints each run)."""
    branch = engine.branch()
    note = engine.recover(keep_edits=True)
    if note:
        engine.out(note)
    history = engine.history(branch)
    frontier = engine.frontier(history)
    if engine.baseline_needed(history, frontier):
        changed = engine.guard.changed(frontier)
        if not changed:
            return engine.baseline(branch, history, frontier)
        engine.out("no baseline yet on this branch: measuring the unchanged code first")
        with engine.guard.set_aside(changed, frontier):
            engine.baseline(branch, history, frontier)
    pool = Pool(engine, [engine.slot], inline=True)
    found: list[Outcome] = []
    outcome = pool.submit(description, agent=agent, usage=usage)
    if outcome is None:
        pool.drain(found.append)
        outcome = found[-1]
    for line in outcome.lines():
        engine.out(line)
    return outcome


def whole_onto(e: Engine, candidate: str, onto: str) -> str:
    """A commit on `onto` whose editable files are the candidate's, as they are: a change that
    does not merge with the frontier, tried whole (what the frontier changed in those files
    meanwhile is left out; the keep rule decides whether that is better). Off the branch."""
    root = e.root
    files = {path: gitrepo.show(root, candidate, path) for path in gitrepo.changed_between(root, onto, candidate)
             if e.guard.is_editable(path)}
    return gitrepo.commit_off_branch(root, onto, gitrepo.message(root, candidate) or "as a whole", files=files)


def merge_onto(e: Engine, candidate: str, base: str, onto: str) -> str | None:
    """A commit on `onto` with the change from `base` to `candidate` merged in (three-way, file
    by file), off the branch; None when a file conflicts. The working tree is not touched."""
    root = e.root
    merged: dict[str, str | None] = {}
    for path in gitrepo.changed_between(root, base, candidate):
        ours, old, theirs = (gitrepo.show(root, c, path) for c in (candidate, base, onto))
        if ours is None:  # deleted by the candidate
            if theirs is not None and theirs != old:
                return None
            merged[path] = None
        elif old is None or theirs is None:  # new in the candidate, or gone from the frontier
            if theirs is not None and theirs != ours:
                return None
            merged[path] = ours
        else:
            text = gitrepo.merge_text(root, ours, old, theirs)
            if text is None:
                return None
            merged[path] = text
    # the merge is a new text no guard has seen: two wins under the caps may add up past them
    for path, text in merged.items():
        if text is not None and e.guard.is_editable(path) and e.guard.payload_of(path, text.encode()):
            return None
    message = gitrepo.message(root, candidate) or "rebased"
    return gitrepo.commit_off_branch(root, onto, message, files=merged)
