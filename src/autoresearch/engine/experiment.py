"""One experiment, end to end: guard, commit, supervised run, metric, record, decide.

`Engine(ws).experiment(description)` is what `autoresearch experiment` and every turn of `run` do:

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
5. Record the row(s) and the journal in one transaction (lifecycle.py, the store), then keep
   the commit or stay at the frontier. The journal makes every step recoverable after
   `kill -9` (recover.py).

This module is one worker's part (a candidate's runs until the keep rule decides) and the
driver's tools (the guard, the baseline); engine/pool.py is the life of an experiment from
the agent's edit to its record, for one experiment at a time (a pool of one inline worker)
as for several.

The first experiment on a branch is the baseline: the unchanged code, run
`keep.baseline_runs` times to estimate the run-to-run noise. What the training run and the
agent cannot do to the score: docs/trust.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, TextIO

from autoresearch import gitrepo, pins
from autoresearch.engine.guard import Guard
from autoresearch.engine.earlystop import Reference
from autoresearch.engine.lifecycle import STOPPED, Pen, stop_status, stopped_rows
from autoresearch.engine.measure import PRINTED, Limits, Measurement, baseline_startup, evaluation_cap, startup_cap
from autoresearch.engine.outcome import Outcome, make_row, usage_json, utc_now
from autoresearch.engine.recover import recover
from autoresearch.engine.runner import Runner, Runs
from autoresearch.engine.slots import Slot
from autoresearch.errors import AutoresearchError
from autoresearch.proc import shielded
from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.research import results
from autoresearch.runlog import RunLogs
from autoresearch.store import Journal
from autoresearch.workspace import Workspace

PRINTED_NOTE = " (printed metric)"
RERUN = "re-run of the frontier beside: "
MAX_DESCRIPTION = 500  # characters of an experiment's description that are kept
SHORTER = 0.01  # of the budget: trained less than the first baseline (_trained_less_than_before_the_pin)


def describe(description: str) -> str:
    """The agent's description as the engine keeps it (the commit's message, the row's cell):
    one printable line (no terminal escapes for `git log` to replay), at most MAX_DESCRIPTION
    characters."""
    text = results.clean(str(description)) or "(no description)"
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 1].rstrip() + "\u2026"


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
    key: str = ""  # the content key of its editable files
    smaller: bool = False
    whole: bool = False  # a stale win's files as a whole on a newer frontier (pool.whole_onto): never "simpler"
    measurements: list[Measurement] = field(default_factory=list)  # the candidate's runs
    block: list[results.Row] = field(default_factory=list)  # their rows and the frontier's re-runs, in the order they ran
    # (the candidate's rows provisional until the decision)
    decision: keeprule.Decision | None = None

    @property
    def frontier_value(self) -> float | None:
        return self.history.value_of(self.frontier)

    def journal(self, worker: str) -> Journal:
        """Its journal as a worker starts it."""
        return Journal(branch=self.branch, frontier=self.frontier, kind="experiment", description=self.description,
                       candidate=self.candidate, agent=self.agent, pid=os.getpid(), started_utc=utc_now(),
                       usage=self.usage, worker=worker)

    def settled(self, **fields) -> list[results.Row]:
        """The block's rows with the candidate's measured runs given `fields` (status, reason)."""
        return [replace(r, **fields) if r.commit == self.candidate[:7] and r.kind != "rerun" and r.status != "crash"
                else r for r in self.block]

    def undecided(self, why: str) -> list[results.Row]:
        """The block as a stop now would record it: the candidate's measured runs undecided (a
        discard that says so, never a keep); the frontier's re-runs stay what they are."""
        return self.settled(status="discard", reason=f"not decided: {why} before the decision")

    def frontier_now(self) -> float | None:
        """The frontier's value with its re-runs so far (the candidate's rows are not kept rows of it)."""
        return History([*self.history.rows, *self.block], self.branch, self.history.direction).value_of(self.frontier)


class Engine:
    """One worker's runs in a workspace (a candidate and the frontier beside it until the keep
    rule decides), and the driver's tools: the guard, the frontier, the baseline. The caller
    holds the workspace lock."""

    def __init__(self, ws: Workspace, *, out: Callable[[str], None] | None = None, stream: TextIO | None = None,
                 live: bool | None = None, slot: Slot = Slot(), halt: Callable[[], bool] | None = None,
                 runner: Runs | None = None):
        self.ws = ws
        self.cfg = ws.config
        self.root = ws.root
        self.store = ws.store
        self.stream = stream if stream is not None else sys.stdout
        say = out or (lambda line: print(line, file=self.stream, flush=True))
        self.out = lambda line: say(results.printable(line))  # agent and trainer text reach these lines
        self.limits = Limits.of(self.cfg)
        self.guard = Guard(ws)
        self.logs = RunLogs(ws.state.logs_dir)
        self.baseline_evals: list[float] = []  # the evaluator's seconds of the baseline runs made here
        self.slot = slot  # a worker's share of the machine (engine/slots.py)
        self.line = ""  # the branch a loop researches on (set by it): HEAD is kept there
        # the runs go to `runner` (a Ray actor's, engine/cluster.py; a test's) or run here
        self.runner: Runs = runner if runner is not None else Runner(
            ws, self.limits, self.guard, stream=self.stream, live=self.stream.isatty() if live is None else live,
            out=self.out, slot=slot, halt=halt)

    def _row(self, commit: str, **fields) -> results.Row:
        """A results row of this engine's runs (it names the worker, in a pool)."""
        return make_row(commit, worker=self.slot.name, **fields)

    # -- where the research stands ---------------------------------------------------

    def branch(self) -> str:
        """The research branch checked out: the loop's own (`line`), where HEAD is taken back to if
        the agent moved it (its edit there is dropped: no other line starts from its commit)."""
        name = gitrepo.current_branch(self.root)
        if self.line and name != self.line:
            self.out(f"HEAD was {f'on {name}' if name else 'detached'}: back on {self.line}, the edit made there dropped")
            self.guard.back_to(self.line)
            name = self.line
        if not name or not name.startswith(gitrepo.PREFIX):
            where = f"on {name}" if name else "on a detached HEAD"
            raise AutoresearchError(
                f"experiments run on a research branch, and this workspace is {where}: "
                f"`autoresearch run` sets one up, or `git switch -c {gitrepo.PREFIX}<tag>`"
            )
        return name

    def history(self, branch: str) -> History:
        return History(self.store.rows(), branch, self.cfg.direction)

    def frontier(self, history: History) -> str:
        """The full sha of the frontier: the commit of the last kept row, else HEAD."""
        if history.frontier_commit:
            sha = gitrepo.resolve(self.root, history.frontier_commit)
            if sha:
                return sha
        return gitrepo.head(self.root)

    def recover(self, keep_edits: bool = False) -> str | None:
        return recover(self.ws, self.guard, keep_edits)

    # -- the agent's edit -----------------------------------------------------------------

    def open_attempt(self, branch: str, description: str, agent: str, usage: Any
                     ) -> tuple[Attempt, list[str], Outcome | None]:
        """The agent's edit in the tree as an Attempt on the frontier, with the paths it changed;
        and an `invalid` Outcome (row recorded, edit reverted) when it may not run."""
        history = self.history(branch)
        frontier = self.frontier(history)
        self.squash_onto(frontier, branch)
        attempt = Attempt(describe(description), agent, usage_json(usage), branch, frontier, history)
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

    def baseline_needed(self, history: History, frontier: str) -> bool:
        runs = history.runs_of(frontier)
        if any(r.kind != "baseline" for r in runs):
            return False
        return len(runs) < max(1, self.cfg.keep.baseline_runs)

    def record_plain(self, attempt: Attempt, status: str, reason: str) -> Outcome:
        """An experiment that did not run (invalid, noop): one row at the frontier's commit."""
        row = self._row(attempt.frontier, status=status, kind="experiment", description=attempt.description,
                        reason=reason, branch=attempt.branch, agent=attempt.agent, usage=attempt.usage)
        self.store.append(row)
        short = attempt.frontier[:7]
        return Outcome(status, "experiment", attempt.description, short, self.cfg.metric, self.cfg.direction,
                       frontier_before=short, frontier_value=attempt.frontier_value, frontier=short, reason=reason,
                       rows=[row])

    # -- a candidate's runs (a worker's part) ---------------------------------------------

    def trial(self, a: Attempt, pen: Pen) -> None:
        """Run a committed candidate and the frontier beside it until the keep rule decides
        (`a.decision`; None when its first run crashed or there is nothing to compare with).
        Writes no rows: the journal (`pen`) holds each finished run until the caller records them."""
        # what whole_onto leaves out of the frontier's lines is not a simplification
        a.smaller = not a.whole and self.guard.smaller(a.frontier, a.candidate)
        stale = a.history.stale(a.frontier, time.time())
        if stale:  # the candidate would be judged against measurements this machine no longer gives
            self.out(f"re-measuring the frontier {a.frontier[:7]} before the candidate: {stale}")
            self._rerun_frontier(a, pen, f"frontier re-measured before the candidate: {stale}", fresh=True)
        first = self._candidate_run(a, pen, "experiment")
        shorter = self._trained_less_than_before_the_pin(a, first) if not stale else ""
        if shorter:
            self.out(f"re-measuring the frontier {a.frontier[:7]} beside the candidate: {shorter}")
            self._rerun_frontier(a, pen, f"frontier re-measured beside the candidate: {shorter}", fresh=True)
        if first.ok and a.frontier_value is not None:
            a.decision = self._decide(a)
            while a.decision.action == "more":
                self._more(a, pen)

    def _trained_less_than_before_the_pin(self, a: Attempt, first: Measurement) -> str:
        """Why the frontier is measured again beside the candidate ("" when it is not): its runs are
        all the first baseline's, made before the deadline was pinned, and the candidate trained
        less than they did under it (the template stops early enough to hand over in time)."""
        if not first.ok or first.hopeless or first.training_seconds is None:
            return ""
        if self.cfg.allowance > 0 or self.cfg.hard_limit > 0 or self.ws.pins.baseline_startup is None:
            return ""  # every run had the same limits
        ours = [r for r in a.history.rows if r.commit[:7] == a.frontier[:7] and r.measured and r.status == "keep"]
        pinned_by = [r for r in self.store.rows() if r.kind == "baseline" and r.status == "keep"]
        before = {r.branch for r in pinned_by[:max(1, self.cfg.keep.baseline_runs)]}  # as pin_baseline took them
        if not ours or any(r.kind != "baseline" or r.branch not in before or r.training_seconds is None for r in ours):
            return ""
        trained = min(r.training_seconds for r in ours)
        if first.training_seconds >= trained - SHORTER * self.cfg.budget:
            return ""
        return (f"it trained {first.training_seconds:g} s under the pinned deadline, the frontier's runs "
                f"{trained:g} s or more before it was pinned")

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
        slowest_eval = (min(max(self.baseline_evals), evaluation_cap(self.cfg.budget))
                        if self.baseline_evals else None)
        if pinned.baseline_startup is not None:
            # the startup pinned by an engine that never saw the baseline's evaluations (a kill
            # in between, an older workspace): the evaluations of this engine's baseline runs
            if pinned.baseline_eval is None and slowest_eval is not None:
                pins.write(pinned.with_baseline(pinned.baseline_startup, slowest_eval))
            return
        runs = [r for r in self.store.rows() if r.kind == "baseline" and r.status == "keep"]
        if len(runs) < max(1, self.cfg.keep.baseline_runs):
            return
        startup = baseline_startup(runs, self.cfg.budget)
        if startup is not None:
            pins.write(pinned.with_baseline(startup, slowest_eval))
            if startup >= round(startup_cap(self.cfg.budget), 1) and self.cfg.allowance <= 0:
                self.out(f"the baseline spent more than {startup:g} s outside training (start-up, compile, hand-over): "
                         f"every run's deadline counts {startup:g} s for it at most (10 s or a quarter of the budget). "
                         f"The template's train.py reads its deadline and trains for less; a program that does not "
                         f"is killed over budget: set `allowance` in autoresearch.toml (then `autoresearch settings "
                         f"--accept`) to give it the time")

    def run(self, pen: Pen, commit: str, kind: str, description: str, behind: Reference | None = None) -> Measurement:
        """One run on this engine's runner, its log kept and named on the measurement; the
        journal says what runs while it runs. With `behind`, it may be stopped early."""
        self._refresh_limits()
        pen.update(running=(commit, kind, description))
        m = self.runner.run(commit, pen, kind=kind, description=description, **({"behind": behind} if behind else {}))
        m = replace(m, log=self.logs.keep_copy(self.runner.log_path))
        pen.update(running=None, pgid=None, result_path="")
        return m

    def _candidate_run(self, a: Attempt, pen: Pen, kind: str) -> Measurement:
        behind = self._reference(a) if kind == "experiment" and self.cfg.early_stop else None
        m = self.run(pen, a.candidate, kind, a.description, behind)
        a.measurements.append(m)
        a.block.append(self._row(a.candidate, status="discard" if m.ok or m.hopeless else "crash", kind=kind,
                                 description=a.description, reason="" if m.ok else m.reason, branch=a.branch,
                                 agent=a.agent, m=m, usage=a.usage if len(a.measurements) == 1 else None,
                                 cause="hopeless" if m.hopeless else ""))
        self._note_measured(a, pen)
        return m

    def _reference(self, a: Attempt) -> Reference | None:
        """The frontier's training curve, from the logs of its last three measured runs, its re-runs
        beside this candidate included and none from before it was last measured afresh (the
        machine as it is now)."""
        rows = [r for r in (*a.history.rows, *a.block) if r.commit[:7] == a.frontier[:7] and r.measured
                and r.status == "keep"]
        restart = max((i for i, r in enumerate(rows) if r.fresh), default=0)
        logs = []
        for r in rows[restart:][-3:]:
            try:
                logs.append(self.logs.path(r.log).read_text(errors="replace") if r.log else "")
            except OSError:
                pass
        return Reference.of(logs)

    def _note_measured(self, a: Attempt, pen: Pen) -> None:
        """Put the finished runs in the journal, as an interruption now would record them: a
        `kill -9` of the engine before the decision then loses no measurement."""
        pen.update(measured=tuple(a.undecided(STOPPED)))

    def _decide(self, a: Attempt) -> keeprule.Decision:
        """The sequential test on every run so far: keep, discard, or one more run."""
        rule = self.cfg.keep.rule()
        evidence = keeprule.weigh([*a.history.rows, *a.block], a.frontier, a.candidate, start=len(a.history.rows),
                                  direction=self.cfg.direction, rule=rule)
        return keeprule.decide(evidence, rule, smaller=a.smaller)

    def _more(self, a: Attempt, pen: Pen) -> None:
        """One more run, the frontier's or the candidate's as the test asks; then decide on every run."""
        last = a.measurements[-1]
        self.out(f"run {len(a.measurements)} {self.cfg.metric} {last.value:.6f}: {a.decision.reason}")
        if a.decision.evidence.rerun_frontier:
            if self._rerun_frontier(a, pen):  # drift in machine speed shows up beside the candidate
                a.decision = self._decide(a)
                return
            # a crashed re-run tells nothing: the candidate's next run still does
        m = self._candidate_run(a, pen, "confirm")
        if not m.ok:
            a.decision = keeprule.Decision("discard", a.decision.evidence,
                                           f"not confirmed: run {len(a.measurements)} crashed ({m.reason})")
            return
        a.decision = self._decide(a)

    def _rerun_frontier(self, a: Attempt, pen: Pen, why: str = "frontier re-run beside the candidate, to measure drift",
                        fresh: bool = False) -> bool:
        """Run the frontier once more, beside the candidate's runs; whether it measured.

        A wall-clock budget ties the metric to the machine's speed: when the machine gets faster
        (another job ends), every change looks like a win. Fresh runs of the frontier between the
        candidate's runs measure that drift: the test weighs a run made beside the candidate over
        one made long ago, and the re-runs join the frontier's runs for later candidates too.
        Each is a kept `rerun` row of the frontier's commit, recorded with the candidate's rows.
        """
        m = self.run(pen, a.frontier, "rerun", RERUN + a.description)
        if not m.ok:
            self.out(f"frontier re-run crashed ({m.reason}); comparing with its earlier runs")
            return False
        self.out(f"frontier re-run {self.cfg.metric} {m.value:.6f}")
        reason = why + (PRINTED_NOTE if m.source == PRINTED else "")
        a.block.append(replace(self._row(a.frontier, status="keep", kind="rerun", description=RERUN + a.description,
                                         reason=reason, branch=a.branch, agent=a.agent, m=m), fresh=fresh))
        self._note_measured(a, pen)
        return True

    @staticmethod
    def verdict(a: Attempt) -> tuple[str, str]:
        """(status, reason) of a candidate whose runs are over."""
        first = a.measurements[0]
        if first.hopeless:
            status, reason = "discard", first.reason
        elif not first.ok:
            status, reason = "crash", first.reason
        elif a.decision is None:
            status, reason = "discard", "no frontier value to compare with"
        else:
            status, reason = a.decision.action, a.decision.reason
        if first.ok and first.source == PRINTED:
            reason += PRINTED_NOTE
        return status, reason

    def outcome(self, a: Attempt, status: str, reason: str, block: list[results.Row], *, keep: bool) -> Outcome:
        """What a recorded candidate came to, for the loop and `experiment --json`; remembers its code as run."""
        rows = [r for r in block if r.commit == a.candidate[:7] and r.kind != "rerun"]
        first = a.measurements[0]
        values = [m.value for m in a.measurements if m.ok]
        value = keeprule.mean(values) if values and status != "crash" else None
        self.guard.remember(a.key, replace(rows[0], value=value if value is not None else 0.0))
        last = a.measurements[-1]
        memory = [m.memory_gb for m in a.measurements if m.memory_gb is not None]
        return Outcome(
            status=status, kind="experiment", description=a.description, commit=a.candidate[:7], metric=self.cfg.metric,
            direction=self.cfg.direction, value=value, values=values, frontier_before=a.frontier[:7],
            frontier_value=a.frontier_now(), frontier=(a.candidate if keep else a.frontier)[:7],
            improvement=a.decision.improvement if a.decision else None,
            p_better=a.decision.evidence.p_better if a.decision else None,
            sigma=a.history.noise.sigma, memory_gb=max(memory) if memory else None,
            seconds=sum(m.seconds for m in a.measurements), training_seconds=first.training_seconds, steps=first.steps,
            reason=reason, source=first.source,
            log_tail=first.log_tail if status == "crash" else last.log_tail if not last.ok else "", rows=rows,
        )

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
        pen = Pen(self.store, "baseline", Journal(branch=branch, frontier=frontier, candidate=frontier, kind="baseline",
                                                  description="baseline", pid=os.getpid(), started_utc=utc_now(),
                                                  worker=self.slot.name))
        self._refresh_limits()
        self.out(f"{label}: {self.cfg.command!r} on {frontier[:7]} ({self.limits.describe()})")
        try:
            m = self.run(pen, frontier, "baseline", "baseline")
        except BaseException as exc:
            with shielded():
                with contextlib.suppress(Exception):
                    pen.record(stopped_rows(pen.journal, *stop_status(exc)))
                    pen.close()
            raise
        reason = (label + (PRINTED_NOTE if m.source == PRINTED else "")) if m.ok else m.reason
        if m.ok and m.eval_seconds is not None:
            self.baseline_evals.append(m.eval_seconds)
        row = self._row(frontier, status="keep" if m.ok else "crash", kind="baseline", description="baseline",
                        reason=reason, branch=branch, m=m)
        with shielded():
            pen.record([row])
            pen.close()
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
        if not self.baseline_needed(history, frontier):
            return None
        return self.baseline(branch, history, frontier)
