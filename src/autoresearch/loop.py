"""`autoresearch run`: the unattended loop. Setup without questions, then experiment forever.

1. Find the workspace, or create `./research` (profile auto) when there is none.
2. Take the workspace lock; finish an experiment a crash or `kill -9` interrupted.
3. Refuse a dirty tree (one line, nothing touched).
4. Resume the research branch (the one checked out, or `autoresearch/<tag>`), or create
   `autoresearch/<tag>` from main; the tag defaults to the date (`nov22`, then `nov22-2`, …).
5. Prepare the data if it is missing; load and check the agent; run the baseline.
6. Loop until `--max-experiments`, `--hours`, `--max-cost` or Ctrl-C: build the agent's
   context, let it edit, run `Engine.experiment`. An agent that raises is logged in one
   line and asked again; several failures in a row stop the loop.

Ctrl-C (or SIGTERM) kills the running experiment's process group, keeps every run that
finished, records the one in flight as `interrupted`, leaves the tree clean at the frontier,
and prints a one-line summary of what ran.

Not covered: two loops on one workspace (the lock refuses the second; use one workspace
per machine or GPU).
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TextIO

from autoresearch import agents, gitrepo, sandbox, tracking
from autoresearch.agents import Agent
from autoresearch.agents import context as context_mod
from autoresearch.config import CONFIG_NAME
from autoresearch.engine import Engine
from autoresearch.engine import slots
from autoresearch.engine.outcome import Outcome
from autoresearch.engine.pool import Pool, one_experiment
from autoresearch.errors import AutoresearchError
from autoresearch.proc import shielded, sigterm_as_interrupt
from autoresearch.research.history import History, Tally
from autoresearch.research.results import printable, usage_cost
from autoresearch.state import LoopState
from autoresearch.workspace import DEFAULT_FOLDER, Workspace, init_workspace

MAX_AGENT_FAILURES = 3  # consecutive agent errors before the loop stops


@dataclass
class SessionSummary:
    branch: str = ""
    experiments: int = 0  # proposals made this session (what --max-experiments counts)
    # what this session recorded, counted as every view counts (History.tally): experiments by
    # outcome, baseline runs, frontier re-runs; None until the rows were read
    tally: Tally | None = None
    cost_usd: float = 0.0
    start_value: float | None = None
    end_value: float | None = None
    frontier: str = ""
    stopped: str = ""  # why the loop ended
    interrupted: bool = False
    metric: str = "val_bpb"

    def settle(self, history: History, start: int, frontier: str) -> None:
        """What the session recorded (the branch's rows from `start` on) and where the branch
        stands: its baseline and the value of `frontier`, as `status` gives them."""
        self.tally = ran(history, start)
        self.frontier = frontier[:7]
        self.end_value = history.value_of(frontier)
        if history.baseline is not None:
            self.start_value = history.baseline

    def line(self) -> str:
        text = f"{self.stopped}: {(self.tally or Tally({})).text(on=self.branch)}"
        if self.start_value is not None and self.end_value is not None:
            text += f"; {self.metric} {self.start_value:.6f} -> {self.end_value:.6f} at {self.frontier}"
        if self.cost_usd:
            text += f"; agent cost ${self.cost_usd:.2f}"
        return text


def ready_agent(plan: Plan) -> Agent:
    """The plan's agent, loaded and checked (its program found, its key present)."""
    agent = agents.load(plan.agent, **{k: v for k, v in plan.agent_options.items() if v is not None})
    problem = agent.check()
    if problem:
        raise AutoresearchError(f"agent {plan.agent!r} is not ready: {problem}")
    return agent


def ran(history: History, start: int) -> Tally:
    """What a session recorded from row `start` on, for its exit line: History's tally of
    those rows, counted as `status` counts the whole branch."""
    return history.tally(start)


def date_tag(now: datetime | None = None) -> str:
    now = now or datetime.now()
    return f"{now.strftime('%b').lower()}{now.day}"


def check_tag(tag: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", tag) or ".." in tag or tag.endswith((".", ".lock")):
        raise AutoresearchError(f"--tag {tag!r}: use letters, digits, '.', '_' and '-' (e.g. nov22)")
    return tag


def open_or_create(start: Path, out: Callable[[str], None]) -> Workspace:
    """The workspace holding `start`; else `start/research`, created (profile auto) if needed."""
    folder = Path(start) / DEFAULT_FOLDER
    try:
        ws = Workspace.find(start)
    except AutoresearchError:
        ws = None
    if ws is not None:
        if ws.root == folder.resolve():
            out(f"using the workspace {folder}")
        return ws
    ws = init_workspace(folder, profile="auto", out=out)
    c = ws.config
    out(f"created the workspace {folder} (profile {c.profile}, dataset {c.dataset}, budget {c.budget:g} s)")
    return ws


def setup_branch(ws: Workspace, tag: str | None, out: Callable[[str], None]) -> str:
    root = ws.root
    current = gitrepo.current_branch(root)
    if tag is None and current and current.startswith(gitrepo.PREFIX):
        out(f"resuming {current}")
        return current
    if tag is not None:
        name = gitrepo.PREFIX + check_tag(tag)
        if gitrepo.branch_exists(root, name):
            if current != name:
                gitrepo.switch(root, name)
            out(f"resuming {name}")
            return name
    else:
        base = date_tag()
        name, n = gitrepo.PREFIX + base, 2
        while gitrepo.branch_exists(root, name):
            name, n = f"{gitrepo.PREFIX}{base}-{n}", n + 1
    start = "refs/heads/main" if gitrepo.branch_exists(root, "main") else "HEAD"  # a tag named main is not asked
    gitrepo.create_branch(root, name, start)
    out(f"created {name} from {start.removeprefix('refs/heads/')}")
    return name


@dataclass(frozen=True)
class Plan:
    """What `autoresearch run` was asked to do: who researches, on which branch, until when."""

    agent: str = "builtin"
    agent_options: dict[str, Any] = field(default_factory=dict)  # given to the agent (None values dropped)
    tag: str | None = None
    max_experiments: int | None = None  # None: no limit
    hours: float | None = None
    max_cost: float | None = None
    workers: int | str | None = None  # None: one experiment at a time; a number or "auto": a pool
    ray: str | None = None  # a Ray cluster's address ("auto": the one `ray start` made here): the pool's workers are its actors
    track: str | None = None  # an experiment tracker every run goes to (None: the workspace's `track` setting)

    def check(self) -> None:
        if self.max_experiments is not None and self.max_experiments < 0:
            raise AutoresearchError("--max-experiments must be 0 or more")
        if self.hours is not None and self.hours <= 0:
            raise AutoresearchError("--hours must be a positive number")
        if self.max_cost is not None and self.max_cost < 0:
            raise AutoresearchError("--max-cost must be 0 or more")
        if self.tag is not None:
            check_tag(self.tag)
        if self.workers is not None and self.workers != slots.AUTO and int(self.workers) < 1:
            raise AutoresearchError("--workers must be 1 or more")
        if self.track:
            tracking.check(self.track)


class Loop:
    def __init__(self, ws: Workspace, plan: Plan, *, out: Callable[[str], None] | None = None,
                 stream: TextIO | None = None):
        self.ws = ws
        self.plan = plan
        self.agent_name = plan.agent
        self.stream = stream or sys.stdout
        say = out or (lambda line: print(line, file=self.stream, flush=True))
        self.out = lambda line: say(printable(line))  # agent text (a reason, an error) reaches these lines
        self.summary = SessionSummary(metric=ws.config.metric)
        self.started = time.time()
        self.branch = ""
        self.rows_before = 0  # rows of the branch before this session
        self.numbered = 0  # experiments of the branch before this session: the loop numbers on from them
        self._failures = 0  # the agent's failures in a row

    def resume(self, history: History) -> None:
        """Where this session starts on its branch: the rows before it (its exit line counts the
        rest) and the experiments before it (its proposals are numbered on from them)."""
        self.rows_before, self.numbered = len(history), history.tally().experiments

    def number(self, ahead: int = 0) -> int:
        """The number of this session's latest proposal (`ahead`: of the one after), counted
        on from the branch's experiments as `status` and the report number them."""
        return self.numbered + self.summary.experiments + ahead

    # -- loop.json -----------------------------------------------------------

    def state(self, state: str, *, experiment: int | None = None, description: str = "", reason: str = "") -> None:
        record = LoopState(
            pid=os.getpid(), tag=self.branch.removeprefix(gitrepo.PREFIX), branch=self.branch, agent=self.agent_name,
            started_at=self.started, updated_at=time.time(), state=state, experiments=self.summary.experiments,
            cost_usd=round(self.summary.cost_usd, 4), experiment=experiment, description=description, reason=reason,
        )
        try:
            self.ws.state.write_loop(record)
        except OSError:
            pass  # the loop.json is for watchers; never worth stopping the research for

    # -- the loop ----------------------------------------------------------------

    def run(self, agent: Agent | None = None) -> SessionSummary:
        """The loop, with `agent` (checked already), or the plan's, loaded and checked here."""
        ws = self.ws
        seats = slots.local(self.plan.workers) if self.plan.workers is not None and self.plan.ray is None else []
        # with a pool, the baseline runs on the first worker's share of the machine, as candidates will
        engine = Engine(ws, out=self.out, stream=self.stream,
                        **({"slot": replace(seats[0], name=""), "live": False} if seats else {}))
        note = engine.recover()
        if note:
            self.out(note)
        engine.history("")  # damaged records stop us here, before anything changes
        self._check_tree(engine)
        sender = self._sender()
        self.branch = setup_branch(ws, self.plan.tag, self.out)
        self.resume(engine.history(self.branch))
        self.summary.branch = self.branch
        self.state("starting")
        self._prepare()
        agent = agent or ready_agent(self.plan)
        cluster = None
        if sender is not None:
            sender.start()  # its own thread: a tracker that is slow or down never holds the research
        try:
            if self.plan.ray is not None:
                from autoresearch.engine.cluster import Cluster

                cluster = Cluster(ws, self.plan.ray, self.plan.workers, self.out)
                seats = cluster.slots
                # the baseline runs where the candidates will: on the first actor
                engine = Engine(ws, out=self.out, stream=self.stream, runner=cluster.runner(ws, slots.Slot()))
            engine.line = self.branch
            self.state("baseline")
            engine.ensure_baseline(self.branch)
            self.summary.start_value = engine.history(self.branch).baseline
            if seats:
                self._loop_pool(engine, agent, seats, (lambda slot, halt: cluster.runner(ws, slot, halt)) if cluster else None)
            else:
                self._loop(engine, agent)
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self.summary.stopped = "interrupted"
            with shielded():
                if engine.guard.dirty():
                    engine.guard.reset(gitrepo.head(ws.root))  # an agent's half-made edit
        finally:
            self._finish(engine)
            if cluster is not None:
                with shielded():
                    cluster.close()
            if sender is not None:  # not shielded: Ctrl-C cuts the tracker's last send short
                sender.close()
        return self.summary

    def _check_tree(self, engine: Engine) -> None:
        """Refuse a workspace the loop may not start on: uncommitted changes, a changed harness."""
        dirty = engine.guard.dirty()
        if dirty:
            shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
            hint = f"; a change of {CONFIG_NAME} goes through `autoresearch settings --accept`" if CONFIG_NAME in dirty else ""
            raise AutoresearchError(f"the workspace has uncommitted changes ({shown}); commit or discard them first "
                                    f"(nothing was touched){hint}")
        if not engine.guard.settings_accepted():
            self.out(f"note: {CONFIG_NAME} in the tree is not the pinned settings, which the engine uses "
                     f"(`autoresearch settings` shows the difference)")
        if self.ws.config.harness_files and not self.ws.harness_ok():
            raise AutoresearchError(
                f"{', '.join(self.ws.config.harness_files)} does not match the workspace fingerprint; "
                "results would not compare: restore it with `git checkout main -- prepare.py`"
            )

    def _sender(self) -> tracking.Sender | None:
        """The experiment tracker every run goes to (--track, else the `track` setting), if any."""
        name = self.plan.track if self.plan.track is not None else self.ws.config.track
        return tracking.Sender(self.ws, tracking.load(name, self.ws), self.out) if name else None

    def _prepare(self) -> None:
        if self.ws.config.template != "llm":
            return
        from autoresearch import preparing

        if preparing.is_prepared(self.ws):
            return
        self.out("preparing the data (once per dataset and profile) ...")
        self.state("preparing")
        preparing.prepare(self.ws)

    def _limit(self) -> str:
        """Why no further experiment may start ("" while one may)."""
        if self.plan.max_experiments is not None and self.summary.experiments >= self.plan.max_experiments:
            return "reached --max-experiments"
        if self.plan.hours and time.time() >= self.started + self.plan.hours * 3600:
            return f"reached --hours {self.plan.hours:g}"
        if self.plan.max_cost is not None and self.summary.cost_usd >= self.plan.max_cost:
            return f"reached --max-cost {self.plan.max_cost:g}"
        return ""

    def _loop(self, engine: Engine, agent) -> None:
        while True:
            self.summary.stopped = self._limit()
            if self.summary.stopped:
                return
            proposal = self._propose(engine, agent)
            if proposal is None:
                continue
            self.state("running", experiment=self.number(), description=proposal.description)
            one_experiment(engine, proposal.description, agent=self.agent_name, usage=getattr(proposal, "usage", None))

    def _propose(self, engine: Engine, agent, pool: Pool | None = None):
        """Ask the agent for one change (it edits the tree); None when it failed (said, and the
        tree cleaned); several failures in a row stop the loop."""
        history = engine.history(self.branch)
        ctx = context_mod.build(self.ws, history, extra=self._extra(engine, history, pool))
        number = self.number(1)
        self.state("proposing", experiment=number)
        try:
            proposal = agent.propose(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # any agent error: log, clean up, ask again
            self._failures += 1
            message = " ".join(str(exc).split())[:300] or type(exc).__name__
            self.out(f"agent {self.agent_name} failed ({self._failures} in a row): {message}")
            with shielded():
                if engine.guard.dirty():
                    engine.guard.reset(gitrepo.head(self.ws.root))
            if self._failures >= MAX_AGENT_FAILURES:
                self.summary.stopped = "stopped"
                raise AutoresearchError(
                    f"the agent {self.agent_name!r} failed {self._failures} times in a row (last: {message}); stopping"
                ) from exc
            time.sleep(min(10.0, float(self._failures)))
            return None
        self._failures = 0
        self.summary.experiments += 1
        usage = getattr(proposal, "usage", None)
        cost = usage_cost(getattr(usage, "cost_usd", None))
        if cost:
            self.summary.cost_usd += cost
        self.out(f"[{number}] {proposal.description}")
        return proposal

    def _loop_pool(self, engine: Engine, agent, seats: list[slots.Slot], runners=None) -> None:
        """N workers train while the agent proposes the next candidates, each from the current
        frontier with the ones in flight in its prompt (engine/pool.py has the ratchet)."""
        pool = Pool(engine, seats, out=self.out, runners=runners)
        self.out(f"{len(seats)} worker{'s' if len(seats) != 1 else ''}: {', '.join(s.describe() for s in seats)}; "
                 f"run logs in {self.ws.state_dir.name}/workers/")
        if warning := slots.oversubscribed(seats):
            self.out(warning)
        if runners is None and (note := slots.shared_machine(seats)):  # Ray's workers may be machines apart
            self.out(note)
        pool.start()
        try:
            while True:
                for outcome in pool.collect():
                    self._show(outcome)
                self.summary.stopped = self._limit()
                if self.summary.stopped:
                    break
                if pool.outstanding() >= pool.capacity:
                    self.state("running", experiment=self.number())
                    for outcome in pool.collect(timeout=1.0):
                        self._show(outcome)
                    continue
                engine.guard.clean()  # nothing planted in the tree reaches the agent's next edit
                proposal = self._propose(engine, agent, pool)
                if proposal is None:
                    continue
                outcome = pool.submit(proposal.description, agent=self.agent_name, usage=getattr(proposal, "usage", None))
                if outcome is not None:
                    self._show(outcome)
            self.state("running", experiment=self.number(), reason="finishing the experiments in flight")
            pool.drain(self._show)
        finally:
            with shielded():
                pool.close()

    def _show(self, outcome: Outcome) -> None:
        for line in outcome.lines():
            self.out(line)

    def _extra(self, engine: Engine, history: History, pool: Pool | None = None) -> dict:
        keep = self.ws.config.keep
        frontier = engine.frontier(history)
        value = history.value_of(frontier)
        extra: dict[str, Any] = {
            "branch": self.branch,
            "experiment": self.number(1),
            "frontier": frontier[:7],
            "keep_bar": f"a change is kept once P(better by more than {keep.min_delta:g}) reaches {keep.p_keep:g} "
                        f"over 2 to {keep.max_runs} runs, each after a re-run of the frontier ({history.noise.describe()})",
        }
        if value is not None:
            extra["frontier_value"] = f"{value:.6f}"
        if self.plan.max_experiments is not None:
            extra["experiments_left"] = self.plan.max_experiments - self.summary.experiments
        if pool is not None:
            flying = pool.in_flight()
            # the agent should not propose what is already being measured
            extra["in_flight"] = "; ".join(f.line() for f in flying) if flying else "nothing"
            if pool.returned:
                extra["returned"] = ("wins that conflict with the current frontier, to redo on it: "
                                     + "; ".join(f"{c} {d}" for c, d in pool.returned[-5:]))
        return extra

    def _finish(self, engine: Engine) -> None:
        try:
            history = engine.history(self.branch) if self.branch else None
        except AutoresearchError:
            history = None
        if history:
            self.summary.settle(history, self.rows_before, engine.frontier(history))
        if not self.summary.stopped:
            self.summary.stopped = "stopped"
        self.state("stopped", reason=self.summary.stopped)
        self.out(self.summary.line())


def run(start: str | Path, plan: Plan, *, out: Callable[[str], None] | None = None,
        stream: TextIO | None = None) -> SessionSummary:
    """Open (or create) the workspace, hold its lock, and run the loop. Ctrl-C ends it cleanly."""
    plan.check()
    agent = ready_agent(plan)  # every check that can fail comes before anything is created
    say = out or (lambda line: print(line, file=stream or sys.stdout, flush=True))
    say(sandbox.detect().describe())  # first: whether the runs to come are jailed, and why not
    with sigterm_as_interrupt():
        try:
            ws = open_or_create(Path(start), say)
            with ws.state.locked("autoresearch run"):
                return Loop(ws, plan, out=say, stream=stream).run(agent)
        except KeyboardInterrupt:  # before the loop started: nothing to clean
            say("interrupted")
            return SessionSummary(stopped="interrupted", interrupted=True)


__all__ = ["Loop", "Plan", "SessionSummary", "run", "date_tag", "setup_branch", "open_or_create"]
