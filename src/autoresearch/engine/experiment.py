"""One experiment, end to end: guard, commit, supervised run, metric, record, decide.

`Engine(ws).experiment(description)` is what `autoresearch experiment` and every turn of
`autoresearch run` do:

1. Guard (guard.py). The change against the frontier (the branch's best commit) may touch
   only the editable files and the agent's notes; the harness must match its fingerprint.
   Otherwise: status `invalid`, the change is reverted. An empty change is a `noop`; code
   identical to code that already ran is not run again (`noop`, with the earlier result).
2. Commit the candidate, then run it (runner.py): its own process group, run.log, secrets
   scrubbed, a fresh harness-record path, a hard wall-clock limit.
3. Measure (measure.py): the harness's record, cross-checked with the printed line, the
   budget checked by the engine's clock. Anything wrong makes the run a `crash`.
4. Decide with the keep rule (autoresearch.research.keeprule) against the frontier as
   History computes it, as a sequential test: while the evidence is neither strong nor weak,
   the frontier or the candidate runs once more, as the test asks (no keep without a
   frontier re-run beside the candidate: A-B-A), and every run so far is weighed again, up
   to `keep.max_runs` runs of the candidate.
5. Record the row(s) in results.tsv atomically, then keep the commit or reset to the
   frontier. The journal in the state folder makes every step recoverable after `kill -9`
   (recover.py).

The first experiment on a branch is the baseline: the unchanged code, run
`keep.baseline_runs` times to estimate the run-to-run noise.

Not covered: a training process that escapes its process group (setsid of its own) is not
followed; the record can be forged by code that reads the harness and the pinned hashes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, TextIO

from autoresearch import gitrepo, pins
from autoresearch.engine.guard import Guard
from autoresearch.engine.measure import PRINTED, Limits, Measurement, baseline_startup
from autoresearch.engine.outcome import Outcome, make_row, usage_json, utc_now
from autoresearch.engine.recover import recover
from autoresearch.engine.runner import Runner
from autoresearch.engine.slots import Slot
from autoresearch.errors import AutoresearchError, MachineError
from autoresearch.proc import shielded
from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.research import results
from autoresearch.state import Journal
from autoresearch.workspace import Workspace

PRINTED_NOTE = " (printed metric)"
STOPPED = "the engine stopped"
RERUN = "re-run of the frontier beside: "


@dataclass
class Attempt:
    """A candidate on its way through the ratchet: what it is, what it was compared with, what
    its runs measured."""

    description: str
    agent: str
    usage: dict | None
    branch: str
    frontier: str  # full sha
    history: History  # the branch's rows before it (plus the frontier's re-run, once made)
    candidate: str = ""  # full sha, once committed
    journal: Journal | None = None
    key: str = ""  # the content key of its editable files
    smaller: bool = False
    measurements: list[Measurement] = field(default_factory=list)  # the candidate's runs
    block: list[results.Row] = field(default_factory=list)  # their rows and the frontier's re-runs, in the order they ran
    # (the candidate's rows provisional until the decision)
    decision: keeprule.Decision | None = None
    in_flight: tuple[str, str, str] | None = None  # (commit, kind, description) of the run going on

    @property
    def frontier_value(self) -> float | None:
        return self.history.value_of(self.frontier)

    def add_reference(self, row: results.Row) -> None:
        self.block.append(row)

    def add_run(self, m: Measurement, row: results.Row) -> None:
        self.measurements.append(m)
        self.block.append(row)

    def settled(self, **fields) -> list[results.Row]:
        """The block's rows with the candidate's measured runs given `fields` (status, reason)."""
        return [replace(r, **fields) if r.commit == self.candidate[:7] and r.status != "crash" else r for r in self.block]

    def frontier_now(self) -> float | None:
        """The frontier's value with its re-runs so far (the candidate's rows are not kept rows of it)."""
        return History([*self.history.rows, *self.block], self.branch, self.history.direction).value_of(self.frontier)


class Engine:
    """Runs experiments in one workspace. The caller holds the workspace lock."""

    def __init__(self, ws: Workspace, *, out: Callable[[str], None] | None = None, stream: TextIO | None = None,
                 live: bool | None = None, slot: Slot = Slot(), halt: Callable[[], bool] | None = None):
        self.ws = ws
        self.cfg = ws.config
        self.root = ws.root
        self.state = ws.state
        self.stream = stream if stream is not None else sys.stdout
        self.out = out or (lambda line: print(line, file=self.stream, flush=True))
        self.limits = Limits.of(self.cfg)
        self.guard = Guard(ws)
        self.baseline_evals: list[float] = []  # the evaluator's seconds of the baseline runs made here
        # a worker of a pool (engine/pool.py) runs committed candidates and leaves the working
        # tree, the branch and results.tsv to the pool's driver
        self.slot = slot
        self.owns_tree = not slot.name
        self.runner = Runner(ws, self.limits, self.guard, stream=self.stream,
                             live=self.stream.isatty() if live is None else live, out=self.out, slot=slot, halt=halt)

    def _row(self, commit: str, **fields) -> results.Row:
        """A results row of this engine's runs (it names the worker, in a pool)."""
        return make_row(commit, worker=self.slot.name, **fields)

    def seat(self, ticket: str) -> None:
        """A worker's journal and run records for the experiment `ticket` (see StateFolder.seat)."""
        self.state = self.runner.state = self.ws.state.seat(self.slot.name, ticket)

    # -- where the research stands ---------------------------------------------------

    def branch(self) -> str:
        name = gitrepo.current_branch(self.root)
        if not name or not name.startswith(gitrepo.PREFIX):
            where = f"on {name}" if name else "on a detached HEAD"
            raise AutoresearchError(
                f"experiments run on a research branch, and this workspace is {where}: "
                f"`autoresearch run` sets one up, or `git switch -c {gitrepo.PREFIX}<tag>`"
            )
        return name

    def history(self, branch: str) -> History:
        return History(self.ws.results.rows(), branch, self.cfg.direction)

    def frontier(self, history: History) -> str:
        """The full sha of the frontier: the commit of the last kept row, else HEAD."""
        if history.frontier_commit:
            sha = gitrepo.resolve(self.root, history.frontier_commit)
            if sha:
                return sha
        return gitrepo.head(self.root)

    def recover(self, keep_edits: bool = False) -> str | None:
        return recover(self.ws, self.guard, keep_edits)

    def in_progress(self) -> bool:
        return self.state.journal() is not None

    # -- one experiment ------------------------------------------------------------------

    def experiment(self, description: str, *, agent: str = "", usage: Any = None) -> Outcome:
        """Guard, commit, run, measure, decide, record: one experiment on the current branch.

        Prints its outcome through `out` (the baseline, when it runs instead, prints each run).
        """
        outcome = self._experiment(description, agent=agent, usage=usage)
        if outcome.kind != "baseline":
            for line in outcome.lines():
                self.out(line)
        return outcome

    def _experiment(self, description: str, *, agent: str, usage: Any) -> Outcome:
        branch = self.branch()
        note = self.recover(keep_edits=True)
        if note:
            self.out(note)
        attempt, changed, refused = self.open_attempt(branch, description, agent, usage)
        if refused is not None:
            return refused
        history, frontier = attempt.history, attempt.frontier
        if self._baseline_needed(history, frontier):
            if not changed:
                return self.baseline(branch, history, frontier)
            self.out("no baseline yet on this branch: measuring the unchanged code first")
            with self._set_aside(changed, frontier):
                self.baseline(branch, history, frontier)
            attempt.history = self.history(branch)
            changed = self.guard.changed(frontier)
        if not changed:
            return self.record_plain(attempt, "noop", "no change to the editable files")
        return self._candidate(attempt)

    def open_attempt(self, branch: str, description: str, agent: str, usage: Any
                     ) -> tuple[Attempt, list[str], Outcome | None]:
        """The agent's edit in the tree as an Attempt on the frontier, with the paths it changed;
        and an `invalid` Outcome (row recorded, edit reverted) when it may not run."""
        history = self.history(branch)
        frontier = self.frontier(history)
        self.squash_onto(frontier, branch)
        attempt = Attempt(" ".join(str(description).split()) or "(no description)", agent, usage_json(usage), branch,
                          frontier, history)
        changed = self.guard.changed(frontier)
        reason = self.guard.violation(changed)
        if not reason:
            return attempt, changed, None
        self.guard.reset(frontier)
        if self.cfg.harness_files and not self.ws.harness_ok():
            raise AutoresearchError(f"{reason} even at the frontier {frontier[:7]}; restore it from main")
        return attempt, changed, self.record_plain(attempt, "invalid", reason + " (reverted)")

    def squash_onto(self, frontier: str, branch: str) -> None:
        """An agent that committed its change: squash its commits back into the working tree."""
        head = gitrepo.head(self.root)
        if head == frontier:
            return
        if not gitrepo.is_ancestor(self.root, frontier, head):
            raise AutoresearchError(
                f"HEAD {head[:7]} is not built on the frontier {frontier[:7]} of {branch}; "
                f"`git reset --hard {frontier[:7]}` to go back to it"
            )
        gitrepo.move_branch(self.root, frontier)

    @contextlib.contextmanager
    def _set_aside(self, changed: list[str], frontier: str):
        """Take the change out of the tree while the unchanged code runs; it comes back, whatever happens."""
        saved = {p: (self.root / p).read_bytes() if (self.root / p).is_file() else None for p in changed}
        self.guard.reset(frontier)
        try:
            yield
        finally:
            for p, data in saved.items():
                path = self.root / p
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)

    def _baseline_needed(self, history: History, frontier: str) -> bool:
        runs = history.runs_of(frontier)
        if any(r.kind != "baseline" for r in runs):
            return False
        return len(runs) < max(1, self.cfg.keep.baseline_runs)

    def record_plain(self, attempt: Attempt, status: str, reason: str) -> Outcome:
        """An experiment that did not run (invalid, noop): one row at the frontier's commit."""
        row = self._row(attempt.frontier, status=status, kind="experiment", description=attempt.description,
                       reason=reason, branch=attempt.branch, agent=attempt.agent, usage=attempt.usage)
        self.ws.results.append(row)
        short = attempt.frontier[:7]
        return Outcome(status, "experiment", attempt.description, short, self.cfg.metric, self.cfg.direction,
                       frontier_before=short, frontier_value=attempt.frontier_value, frontier=short, reason=reason,
                       rows=[row])

    # -- the candidate -------------------------------------------------------------------

    def _candidate(self, a: Attempt) -> Outcome:
        a.journal = Journal(branch=a.branch, frontier=a.frontier, kind="experiment", description=a.description,
                            agent=a.agent, pid=os.getpid(), started_utc=utc_now(), usage=a.usage)
        self.state.write_journal(a.journal)
        a.candidate = gitrepo.commit_all(self.root, a.description, exclude=self.guard.protected())
        a.journal = replace(a.journal, candidate=a.candidate)
        self.state.write_journal(a.journal)

        a.key = self.guard.content_key(a.candidate)
        earlier = self.guard.seen(a.history).get(a.key)
        if earlier is not None:
            self.guard.reset(a.frontier)
            self.state.clear_experiment()
            shown = f" {earlier.value:.6f}" if earlier.status in ("keep", "discard") else ""
            why = f": {earlier.reason}" if earlier.reason and earlier.status == "crash" else ""
            return self.record_plain(
                a, "noop", f"same code as {earlier.commit}, which already ran ({earlier.status}{shown}{why}); not run again")

        try:
            self.trial(a)
        except BaseException as exc:
            with shielded():
                self._interrupted(a, exc)
            raise
        return self._conclude(a)

    def trial(self, a: Attempt) -> None:
        """Run a committed candidate and the frontier beside it until the keep rule decides
        (`a.decision`; None when its first run crashed or there is nothing to compare with).
        Writes no rows: the journal holds each finished run until the caller records them."""
        a.smaller = self.guard.smaller(a.frontier, a.candidate)
        first = self._candidate_run(a, "experiment")
        if first.ok and a.frontier_value is not None:
            a.decision = self._decide(a)
            while a.decision.action == "more":
                self._more(a)

    def _refresh_limits(self) -> None:
        """The limits of the next run: the defaults until the baseline is pinned, then the pinned ones."""
        self.pin_baseline()
        self.limits = self.runner.limits = Limits.of(self.cfg, self.ws.pins)

    def pin_baseline(self) -> None:
        """Once the first baseline has all its runs measured, pin what it needed, outside the
        workspace: the most any of its runs spent outside training (every later run's deadline
        follows from it) and its slowest evaluation (the evaluator's limit). Pinned once and
        never derived again, so no later run, however slow, moves them."""
        pinned = self.ws.pins
        slowest_eval = max(self.baseline_evals) if self.baseline_evals else None
        if pinned.baseline_startup is not None:
            # the startup pinned by an engine that never saw the baseline's evaluations (a kill
            # in between, an older workspace): the evaluations of this engine's baseline runs
            if pinned.baseline_eval is None and slowest_eval is not None:
                pins.write(pinned.with_baseline(pinned.baseline_startup, slowest_eval))
            return
        runs = [r for r in self.ws.results.rows() if r.kind == "baseline" and r.status == "keep"]
        if len(runs) < max(1, self.cfg.keep.baseline_runs):
            return
        startup = baseline_startup(runs, self.cfg.budget)
        if startup is not None:
            pins.write(pinned.with_baseline(startup, slowest_eval))

    def _run(self, a: Attempt, commit: str, kind: str, description: str) -> Measurement:
        self._refresh_limits()
        a.in_flight = (commit, kind, description)
        m = self.runner.run(commit, a.journal, kind=kind, description=description)
        a.in_flight = None
        return m

    def _candidate_run(self, a: Attempt, kind: str) -> Measurement:
        m = self._run(a, a.candidate, kind, a.description)
        a.add_run(m, self._row(a.candidate, status="discard" if m.ok else "crash", kind=kind, description=a.description,
                              reason="" if m.ok else m.reason, branch=a.branch, agent=a.agent, m=m,
                              usage=a.usage if not a.measurements else None))
        self._note_measured(a)
        return m

    def _note_measured(self, a: Attempt) -> None:
        """Put the finished runs in the journal, as an interruption now would record them: a
        `kill -9` of the engine before the decision then loses no measurement."""
        rows = a.settled(reason=f"not decided: {STOPPED} before the decision")
        a.journal = replace(a.journal, measured=tuple(results.line(r) for r in rows))
        self.state.write_journal(a.journal)

    def _decide(self, a: Attempt) -> keeprule.Decision:
        """The sequential test on every run so far: keep, discard, or one more run."""
        rule = self.cfg.keep.rule()
        evidence = keeprule.weigh([*a.history.rows, *a.block], a.frontier, a.candidate, start=len(a.history.rows),
                                  direction=self.cfg.direction, rule=rule)
        return keeprule.decide(evidence, rule, smaller=a.smaller)

    def _more(self, a: Attempt) -> None:
        """One more run, the frontier's or the candidate's as the test asks; then decide on every run."""
        last = a.measurements[-1]
        self.out(f"run {len(a.measurements)} {self.cfg.metric} {last.value:.6f}: {a.decision.reason}")
        if a.decision.evidence.rerun_frontier:
            reference = self._rerun_frontier(a)
            if reference is not None:  # drift in machine speed shows up beside the candidate
                a.add_reference(reference)
                a.decision = self._decide(a)
                return
            # a crashed re-run tells nothing: the candidate's next run still does
        m = self._candidate_run(a, "confirm")
        if not m.ok:
            a.decision = keeprule.Decision("discard", a.decision.evidence,
                                           f"not confirmed: run {len(a.measurements)} crashed ({m.reason})")
            return
        a.decision = self._decide(a)

    def _rerun_frontier(self, a: Attempt) -> results.Row | None:
        """Run the frontier once more, beside the candidate's runs.

        A wall-clock budget ties the metric to the machine's speed: when the machine gets faster
        (another job ends), every change looks like a win. Fresh runs of the frontier between the
        candidate's runs measure that drift: the test weighs a run made beside the candidate over
        one made long ago, and the re-runs join the frontier's runs for later candidates too.
        Each is a kept `confirm` row of the frontier's commit, written with the candidate's rows
        in one append. None when it crashed (then the earlier frontier runs stand).
        """
        description = RERUN + a.description
        if self.owns_tree:  # the run uses a copy of the commit; the tree follows for the tampering check
            self.guard.reset(a.frontier)
        try:
            m = self._run(a, a.frontier, "confirm", description)
        finally:
            if self.owns_tree:
                self.guard.reset(a.candidate)
        if not m.ok:
            self.out(f"frontier re-run crashed ({m.reason}); comparing with its earlier runs")
            return None
        self.out(f"frontier re-run {self.cfg.metric} {m.value:.6f}")
        reason = "frontier re-run beside the candidate, to measure drift" + (PRINTED_NOTE if m.source == PRINTED else "")
        row = self._row(a.frontier, status="keep", kind="confirm", description=description, reason=reason,
                       branch=a.branch, agent=a.agent, m=m)
        a.journal = replace(a.journal, measured=(*a.journal.measured, results.line(row)))
        self.state.write_journal(a.journal)
        return row

    def _interrupted(self, a: Attempt, exc: BaseException) -> None:
        """Ctrl-C (or SIGTERM, or an error of the engine's own) mid-experiment: keep every run
        that finished, record the one in flight as interrupted, go back to the frontier.

        Finished runs of the candidate are recorded undecided (`discard`, never kept: the
        decision needed the runs that did not happen); a finished re-run of the frontier is a
        measurement of the frontier like any other. The code may be proposed again.
        """
        status, reason = stop_status(exc)
        rows = a.settled(reason=f"not decided: {reason} before the decision")
        if a.in_flight is not None or not a.measurements:
            commit, kind, description = a.in_flight or (a.candidate, "experiment", a.description)
            rows.append(self._row(commit, status=status, kind=kind, description=description, reason=reason,
                                 branch=a.branch, agent=a.agent, usage=None if a.measurements else a.usage))
        self._record_stop(a.journal, a.frontier, rows)

    def _record_stop(self, journal: Journal, frontier: str, rows: list[results.Row]) -> None:
        try:
            self.ws.results.append(rows)
        except AutoresearchError:
            return  # the journal stays: the next start records it
        self.state.write_journal(replace(journal, recorded=True, keep=False))
        if self.owns_tree:
            self.guard.reset(frontier)
        self.state.clear_experiment()

    @staticmethod
    def verdict(a: Attempt) -> tuple[str, str]:
        """(status, reason) of a candidate whose runs are over."""
        first = a.measurements[0]
        if not first.ok:
            status, reason = "crash", first.reason
        elif a.decision is None:
            status, reason = "discard", "no frontier value to compare with"
        else:
            status, reason = a.decision.action, a.decision.reason
        if first.ok and first.source == PRINTED:
            reason += PRINTED_NOTE
        return status, reason

    def _conclude(self, a: Attempt) -> Outcome:
        """Write the candidate's rows (and the frontier's re-run), then keep or reset."""
        status, reason = self.verdict(a)
        block = a.settled(status=status, reason=reason)
        keep = status == "keep"
        self._write(a.journal, a.frontier, block, keep=keep, target=a.candidate if keep else a.frontier)
        return self.outcome(a, status, reason, block, keep=keep)

    def outcome(self, a: Attempt, status: str, reason: str, block: list[results.Row], *, keep: bool) -> Outcome:
        """What a recorded candidate came to, for the loop and `experiment --json`; remembers its code as run."""
        rows = [r for r in block if r.commit == a.candidate[:7]]
        first = a.measurements[0]
        values = [m.value for m in a.measurements if m.ok]
        value = keeprule.mean(values) if values and status != "crash" else None
        self.guard.remember(a.key, replace(rows[0], value=value if value is not None else 0.0))
        last = a.measurements[-1]
        fv = a.frontier_now()
        return Outcome(
            status=status, kind="experiment", description=a.description, commit=a.candidate[:7], metric=self.cfg.metric,
            direction=self.cfg.direction, value=value, values=values, frontier_before=a.frontier[:7], frontier_value=fv,
            frontier=(a.candidate if keep else a.frontier)[:7],
            improvement=a.decision.improvement if a.decision else None,
            p_better=a.decision.evidence.p_better if a.decision else None,
            sigma=a.history.noise.sigma, memory_gb=max(m.memory_gb for m in a.measurements),
            seconds=sum(m.seconds for m in a.measurements), training_seconds=first.training_seconds, steps=first.steps,
            reason=reason, source=first.source,
            log_tail=first.log_tail if status == "crash" else last.log_tail if not last.ok else "", rows=rows,
        )

    def _write(self, journal: Journal, frontier: str, rows: list[results.Row], *, keep: bool, target: str) -> None:
        """Append the rows, then move the tree to `target`; a failed append resets to the frontier."""
        try:
            self.ws.results.append(rows)
        except AutoresearchError as exc:
            with shielded():
                with contextlib.suppress(Exception):
                    self.state.write_journal(replace(journal, reason=f"not recorded: {exc}"))
                self.guard.reset(frontier)
            if journal.kind == "baseline":
                raise
            raise AutoresearchError(f"{exc}; the change was not kept, the frontier is still {frontier[:7]}") from exc
        with shielded():
            self.state.write_journal(replace(journal, recorded=True, keep=keep))
            self.guard.reset(target)
            self.state.clear_experiment()

    # -- the baseline --------------------------------------------------------------------

    def baseline(self, branch: str, history: History, frontier: str) -> Outcome:
        """Run the unchanged frontier until it has `baseline_runs` measured runs."""
        total = max(1, self.cfg.keep.baseline_runs)
        need = total - len(history.runs_of(frontier))
        outcome = None
        for _ in range(max(0, need)):
            outcome, history = self._baseline_run(branch, history, frontier, total)
        if outcome is None:
            raise AutoresearchError("the baseline is already measured")
        noise = history.noise
        self.out(f"baseline {self.cfg.metric} {outcome.frontier_value:.6f} over {total} runs; noise {noise.describe()}; "
                 f"a change is kept at P(better) >= {self.cfg.keep.p_keep:g} over 2 to {self.cfg.keep.max_runs} runs")
        if outcome.source == PRINTED:
            self.out(f"the metric is read from the printed `{self.cfg.metric}:` line: this workspace has no harness record")
        self._refresh_limits()  # the baseline is measured: its needs are pinned now, for every later run
        self.out(f"each run from now on: {self.limits.describe()}"
                 + (f"; evaluator limit {self.limits.evaluator:g} s" if self.cfg.harness_record else ""))
        outcome.rows = [r for r in history.rows if r.kind == "baseline" and r.commit[:7] == frontier[:7]][-need:]
        return outcome

    def _baseline_run(self, branch: str, history: History, frontier: str, total: int) -> tuple[Outcome, History]:
        label = f"baseline run {len(history.runs_of(frontier)) + 1} of {total}"
        journal = Journal(branch=branch, frontier=frontier, candidate=frontier, kind="baseline",
                          description="baseline", pid=os.getpid(), started_utc=utc_now())
        self.state.write_journal(journal)
        self._refresh_limits()
        self.out(f"{label}: {self.cfg.command!r} on {frontier[:7]} ({self.limits.describe()})")
        try:
            m = self.runner.run(frontier, journal, kind="baseline", description="baseline")
        except BaseException as exc:
            with shielded():
                status, reason = stop_status(exc)
                self._record_stop(journal, frontier, [self._row(frontier, status=status, kind="baseline",
                                                               description="baseline", reason=reason, branch=branch)])
            raise
        reason = (label + (PRINTED_NOTE if m.source == PRINTED else "")) if m.ok else m.reason
        if m.ok and m.eval_seconds is not None:
            self.baseline_evals.append(m.eval_seconds)
        row = self._row(frontier, status="keep" if m.ok else "crash", kind="baseline", description="baseline",
                       reason=reason, branch=branch, m=m)
        journal = replace(journal, measured=(results.line(row),))
        self.state.write_journal(journal)
        self._write(journal, frontier, [row], keep=False, target=frontier)
        history = History([*history.rows, row], branch, self.cfg.direction)
        if m.ok:
            self.guard.remember(self.guard.content_key(frontier), row)
        outcome = Outcome(
            status=row.status, kind="baseline", description="baseline", commit=frontier[:7], metric=self.cfg.metric,
            direction=self.cfg.direction, value=m.value, values=[m.value] if m.ok else [], frontier_before=frontier[:7],
            frontier_value=history.value_of(frontier), frontier=frontier[:7], sigma=history.noise.sigma,
            memory_gb=m.memory_gb, seconds=m.seconds, training_seconds=m.training_seconds, steps=m.steps,
            reason=reason, source=m.source, log_tail=m.log_tail if not m.ok else "", rows=[row],
        )
        for line in outcome.lines():
            self.out(line)
        if not m.ok:
            raise AutoresearchError(
                f"the baseline crashed ({m.reason}); the unchanged code must run before any research: "
                f"see run.log, fix it on main, then start again"
            )
        return outcome, history

    def ensure_baseline(self, branch: str) -> Outcome | None:
        history = self.history(branch)
        frontier = self.frontier(history)
        if not self._baseline_needed(history, frontier):
            return None
        return self.baseline(branch, history, frontier)


def stop_status(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of a run the engine stopped: Ctrl-C or SIGTERM is an interruption, not a
    crash of the code; an error of the engine's own is recorded as a crash that says so."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted"
    what = "machine failure" if isinstance(exc, MachineError) else "engine error"
    return "crash", f"{what}: {' '.join(str(exc).split())[:150] or type(exc).__name__}"
