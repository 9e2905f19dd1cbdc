"""The engine's decisions in-process, against a fake runner: the life of an experiment
(engine/pool.py), its journal (engine/lifecycle.py) and recovery (engine/recover.py), in a
real workspace with real git, but with no training process and no CLI subprocess.

`FakeRunner` implements the engine's `Runs` protocol for real: it writes a log per run,
reports through the journal (`pen.update`) like the local Runner, and returns a
`Measurement` whose value a test scripts from the code that runs (score.py's `SCORE = x`),
the kind of run and the call count; a script may return None (a crash of the code) or an
exception to raise (a machine failure, Ctrl-C)."""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from autoresearch import gitrepo
from autoresearch.engine import Engine
from autoresearch.engine.experiment import RERUN
from autoresearch.engine.guard import Guard
from autoresearch.engine.lifecycle import STOPPED, Pen, stopped_rows
from autoresearch.engine.measure import HARNESS, Limits, Measurement
from autoresearch.engine.outcome import make_row, utc_now
from autoresearch.engine.pool import Pool, one_experiment
from autoresearch.engine.recover import recover
from autoresearch.engine.runner import Runs
from autoresearch.engine.slots import Slot
from autoresearch.errors import MachineError
from autoresearch.research.history import History
from autoresearch.store import Journal
from autoresearch.workspace import Workspace
from support import blank, clean, head

BRANCH = "autoresearch/test"
CODE = "SCORE = {value}\nprint(f'score: {{SCORE}}')\n"
BROKEN = "raise SystemExit(1)\n"

# what a run of some code measures: (score.py's text, the kind of run, the runner's call count)
# -> a value, None for a crash of the code, or an exception to raise
Script = Callable[[str, str, int], "float | None | BaseException"]


def code(value: float) -> str:
    return CODE.format(value=value)


def plain(text: str, kind: str, n: int) -> float | None:
    """score.py's SCORE, a little noise from run to run; code that raises crashes."""
    found = re.search(r"^SCORE = (\S+)$", text, re.M)
    if found is None or BROKEN in text:
        return None
    return float(found.group(1)) + 0.001 * (n % 2)


class FakeRunner:
    """The engine's `Runs`, without a process: a scripted measurement of the commit's code."""

    def __init__(self, ws: Workspace, log_path: Path, script: Script = plain):
        self.root = ws.root
        self.limits = Limits.of(ws.config)
        self.log_path = log_path
        self.script = script
        self.calls: list[tuple[str, str, str]] = []  # (short commit, kind, description)

    def run(self, commit: str, pen: Pen, *, kind: str, description: str) -> Measurement:
        self.calls.append((commit[:7], kind, description))
        n = len(self.calls)
        result_path = str(self.log_path.with_name(f"{self.log_path.stem}-{n}.json"))
        pen.update(result_path=result_path, pgid=None)  # as the Runner does once its process starts
        log = f"fake run {n}: {kind} {commit[:7]} {description}\n"
        self.log_path.write_text(log)
        got = self.script(gitrepo.show(self.root, commit, "score.py") or "", kind, n)
        if isinstance(got, BaseException):
            self.log_path.write_text(log + "cut short\n")
            raise got
        if got is None:
            tail = "Traceback (most recent call last):\nSystemExit: 1\n"
            self.log_path.write_text(log + tail)
            return Measurement(None, "exit status 1", training_seconds=None, steps=None, seconds=0.3, log_tail=tail)
        self.log_path.write_text(log + f"---\nscore: {got:.6f}\ntraining_seconds: 1.0\nnum_steps: 10\n")
        return Measurement(value=got, reason="", source=HARNESS, memory_gb=None, training_seconds=1.0, steps=10,
                           seconds=1.5)


def _is_runs(runner: Runs) -> Runs:  # the type checker's view: FakeRunner is a Runs
    return runner


@dataclass
class Lab:
    """A blank workspace on the research branch, its lock held, its baseline measured by the fake."""

    ws: Workspace
    engine: Engine
    runner: FakeRunner
    tmp: Path
    lines: list[str] = field(default_factory=list)
    baseline: str = ""  # the frontier's full sha

    @property
    def root(self) -> Path:
        return self.ws.root

    def edit(self, text: str) -> None:
        """What an agent does: change the editable file in place."""
        (self.root / "score.py").write_text(text)

    def new_rows(self):
        return [r for r in self.ws.store.rows() if r.kind != "baseline"]


@contextlib.contextmanager
def measured(tmp_path: Path, runner_type: type[FakeRunner] = FakeRunner) -> Iterator[Lab]:
    """A Lab whose baseline `runner_type` measured, the workspace's lock held while it is used."""
    ws = blank(tmp_path, code(1.0), branch=BRANCH)
    runner = runner_type(ws, tmp_path / "fake-run.log")
    lines: list[str] = []
    with ws.state.locked("test"):
        engine = Engine(ws, out=lines.append, live=False, runner=_is_runs(runner))
        engine.ensure_baseline(engine.branch())
        yield Lab(ws, engine, runner, tmp_path, lines, head(ws.root))


@pytest.fixture
def lab(tmp_path) -> Lab:
    with measured(tmp_path) as made:
        yield made


def test_a_clear_win_is_kept_after_a_frontier_rerun_beside_it(lab):
    lab.edit(code(0.5))
    out = one_experiment(lab.engine, "halve the score")
    assert out.status == "keep", "\n".join(lab.lines[-12:])
    got = lab.new_rows()
    assert [(r.kind, r.status) for r in got] == [("experiment", "keep"), ("rerun", "keep"), ("confirm", "keep")]
    assert got[1].commit == lab.baseline[:7] and got[1].description == RERUN + "halve the score"
    assert got[0].commit == got[2].commit == out.commit != lab.baseline[:7]
    assert [kind for _, kind, _ in lab.runner.calls] == ["baseline", "baseline", "experiment", "rerun", "confirm"]
    tip = head(lab.root)
    assert tip.startswith(out.commit) and gitrepo.resolve(lab.root, BRANCH) == tip
    assert gitrepo.resolve(lab.root, f"{tip}^") == lab.baseline  # one commit on the old frontier
    assert (lab.root / "score.py").read_text() == code(0.5) and clean(lab.root)
    assert lab.ws.store.journals() == []


def test_a_clear_loser_is_discarded_after_one_run_and_every_run_keeps_its_log(lab):
    lab.edit(code(2.0))
    out = one_experiment(lab.engine, "double the score")
    assert out.status == "discard" and out.reason.startswith("not better"), lab.lines
    got = lab.new_rows()
    assert [(r.kind, r.status, r.commit) for r in got] == [("experiment", "discard", out.commit)]
    assert len(lab.runner.calls) == 3
    assert head(lab.root) == lab.baseline and gitrepo.resolve(lab.root, BRANCH) == lab.baseline
    assert (lab.root / "score.py").read_text() == code(1.0) and clean(lab.root)
    assert lab.ws.store.journals() == []
    every = lab.ws.store.rows()
    assert len({r.log for r in every}) == len(every) == 3  # one log per run, none shared
    for r in every:
        assert r.log, r
        text = (lab.ws.state.logs_dir / r.log).read_text()
        assert f": {r.kind} {r.commit} " in text, (r, text)
    assert "score: 2.00" in (lab.ws.state.logs_dir / got[0].log).read_text()


def test_a_crash_of_the_code_is_the_codes_and_the_same_code_is_not_run_again(lab):
    lab.edit(code(0.5) + BROKEN)
    out = one_experiment(lab.engine, "break it")
    assert out.status == "crash" and out.reason == "exit status 1"
    (row,) = lab.new_rows()
    assert (row.kind, row.status, row.cause, row.memory_gb) == ("experiment", "crash", "code", None)
    assert "SystemExit" in out.log_tail
    assert head(lab.root) == lab.baseline and clean(lab.root)
    runs = len(lab.runner.calls)
    lab.edit(code(0.5) + BROKEN)
    again = one_experiment(lab.engine, "break it once more")
    assert again.status == "noop" and "already ran" in again.reason and row.commit in again.reason
    assert len(lab.runner.calls) == runs  # not run
    assert [r.status for r in lab.new_rows()] == ["crash", "noop"]
    assert head(lab.root) == lab.baseline and clean(lab.root)


def test_ctrl_c_during_the_confirm_run_records_the_finished_runs_undecided_and_propagates(lab):
    def interrupt_the_confirm(text, kind, n):
        return KeyboardInterrupt() if kind == "confirm" else plain(text, kind, n)

    lab.runner.script = interrupt_the_confirm
    lab.edit(code(0.5))
    with pytest.raises(KeyboardInterrupt):
        one_experiment(lab.engine, "halve the score")
    got = lab.new_rows()
    assert [(r.kind, r.status) for r in got] == [("experiment", "discard"), ("rerun", "keep"),
                                                 ("confirm", "interrupted")]
    first, rerun, flying = got
    assert first.reason.startswith("not decided") and first.value == pytest.approx(0.5, abs=0.002)
    assert rerun.commit == lab.baseline[:7]
    assert flying.commit == first.commit and flying.cause == "stopped" and flying.reason == "interrupted"
    assert head(lab.root) == lab.baseline and gitrepo.resolve(lab.root, BRANCH) == lab.baseline
    assert (lab.root / "score.py").read_text() == code(1.0) and clean(lab.root)
    assert lab.ws.store.journals() == []


def test_a_machine_failure_one_at_a_time_is_recorded_stops_the_caller_and_the_code_runs_again(lab):
    failed = []

    def machine_fails_once(text, kind, n):
        if kind == "experiment" and not failed:
            failed.append(n)
            return MachineError("the sandbox could not start")
        return plain(text, kind, n)

    lab.runner.script = machine_fails_once
    lab.edit(code(2.0))
    with pytest.raises(MachineError):
        one_experiment(lab.engine, "double the score")
    (row,) = lab.new_rows()
    assert (row.kind, row.status, row.cause) == ("experiment", "crash", "machine")
    assert row.reason.startswith("machine failure: the sandbox could not start")
    assert head(lab.root) == lab.baseline and clean(lab.root) and lab.ws.store.journals() == []
    lab.edit(code(2.0))
    again = one_experiment(lab.engine, "double the score, again")
    assert again.status == "discard", again.reason  # run, not a noop: the machine's failure said nothing of the code
    assert gitrepo.show(lab.root, again.commit, "score.py") == gitrepo.show(lab.root, row.commit, "score.py")
    assert [kind for _, kind, _ in lab.runner.calls[2:]] == ["experiment", "experiment"]


def test_a_pool_queues_an_experiment_again_for_the_next_worker_after_a_machine_failure(lab):
    lock = threading.Lock()
    failed: list[str] = []

    def first_run_of_a_fails(text, kind, n):
        with lock:
            if "SCORE = 2.0" in text and not failed:
                failed.append(kind)
                return MachineError("the GPU fell off the bus")
        return plain(text, kind, n)

    runners: dict[str, FakeRunner] = {}

    def make(slot: Slot, halt) -> Runs:
        runners[slot.name] = FakeRunner(lab.ws, lab.tmp / f"fake-{slot.name}.log", first_run_of_a_fails)
        return runners[slot.name]

    pool = Pool(lab.engine, [Slot("w1"), Slot("w2")], out=lab.lines.append, runners=make)
    assert sorted(runners) == ["w1", "w2"]
    pool.start()
    found = []
    try:
        lab.edit(code(2.0))
        assert pool.submit("A: double the score") is None
        assert clean(lab.root)
        lab.edit(code(3.0))
        assert pool.submit("B: triple the score") is None
        pool.drain(found.append)
    finally:
        pool.close()
    assert sorted(o.description for o in found) == ["A: double the score", "B: triple the score"]
    assert all(o.status == "discard" for o in found)
    got = lab.new_rows()
    a = [(r.kind, r.status, r.cause) for r in got if r.description.startswith("A")]
    b = [(r.kind, r.status, r.cause) for r in got if r.description.startswith("B")]
    assert a == [("experiment", "interrupted", "machine"), ("experiment", "discard", "")], got
    assert b == [("experiment", "discard", "")]
    (decided,) = [o for o in found if o.description.startswith("A")]
    assert {r.commit for r in got if r.description.startswith("A")} == {decided.commit}  # the same candidate, again
    assert all(r.worker in ("w1", "w2") for r in got), [(r.description, r.worker) for r in got]
    assert any("goes to the next worker" in line for line in lab.lines), lab.lines
    assert failed == ["experiment"]
    assert sum(len(r.calls) for r in runners.values()) == 3  # A twice, B once
    assert head(lab.root) == lab.baseline and clean(lab.root)
    assert lab.ws.store.journals() == []


def _candidate(lab: Lab, value: float, description: str) -> str:
    """A candidate committed off the branch on the frontier, the tree back at the frontier (Pool.submit's way)."""
    lab.edit(code(value))
    sha = gitrepo.commit_off_branch(lab.root, lab.baseline, description, exclude=lab.engine.guard.protected())
    lab.engine.guard.reset(lab.baseline)
    return sha


def _journal(lab: Lab, candidate: str, description: str, **fields) -> Journal:
    return Journal(branch=BRANCH, frontier=lab.baseline, kind="experiment", description=description,
                   candidate=candidate, agent="test", pid=99999, started_utc=utc_now(), worker="", **fields)


def _facts(r) -> tuple:
    """A row less its timestamp."""
    return r.commit, r.kind, r.status, r.cause, r.reason, r.description, r.agent, r.branch, r.value


def test_recovery_records_a_killed_experiment_its_finished_run_undecided_and_the_one_in_flight_interrupted(lab):
    candidate = _candidate(lab, 0.5, "halve the score")
    m = Measurement(0.5, "", HARNESS, None, 1.0, 10, 1.5)
    first = make_row(candidate, status="discard", kind="experiment", description="halve the score", reason="",
                     branch=BRANCH, agent="test", m=m)
    # as a kill -9 leaves it: the first run finished (undecided), the frontier's re-run beside it in flight
    journal = _journal(lab, candidate, "halve the score", measured=(replace(first, reason=f"not decided: {STOPPED} before the decision"),),
                       running=(lab.baseline, "rerun", RERUN + "halve the score"), result_path="/nonexistent/x.json")
    Pen(lab.ws.store, "main-1-99999", journal)
    before = lab.ws.store.rows()
    line = recover(lab.ws, Guard(lab.ws))
    assert line is not None and "recovered an interrupted experiment" in line and candidate[:7] in line
    assert "recorded its 1 finished run undecided, and the one in flight as interrupted" in line
    got = lab.ws.store.rows()[len(before):]
    assert [(r.commit, r.kind, r.status, r.cause) for r in got] == [
        (candidate[:7], "experiment", "discard", ""), (lab.baseline[:7], "rerun", "interrupted", "stopped")]
    assert got[0].reason == f"not decided: {STOPPED} before the decision" and got[0].value == 0.5
    # the same builder as a Ctrl-C: stopped_rows
    same = stopped_rows(journal, "interrupted", "stopped", "interrupted")
    assert [_facts(r) for r in got] == [_facts(r) for r in same]
    assert lab.ws.store.journals() == []
    assert head(lab.root) == lab.baseline and clean(lab.root)
    assert recover(lab.ws, Guard(lab.ws)) is None
    assert len(lab.ws.store.rows()) == len(before) + 2


def test_recovery_moves_the_branch_to_a_recorded_keep_that_a_kill_cut_short(lab):
    candidate = _candidate(lab, 0.5, "halve the score")
    m = Measurement(0.5, "", HARNESS, None, 1.0, 10, 1.5)
    block = [make_row(candidate, status="keep", kind="experiment", description="halve the score", reason="better",
                      branch=BRANCH, m=m),
             make_row(lab.baseline, status="keep", kind="rerun", description=RERUN + "halve the score",
                      reason="frontier re-run", branch=BRANCH, m=m),
             make_row(candidate, status="keep", kind="confirm", description="halve the score", reason="better",
                      branch=BRANCH, m=m)]
    pen = Pen(lab.ws.store, "main-1-99999", _journal(lab, candidate, "halve the score"))
    pen.record(block, keep=True)  # Pool._settle's first step; the kill came before the branch moved
    (name, j), = lab.ws.store.journals()
    assert j.recorded and j.keep and head(lab.root) == lab.baseline
    before = lab.ws.store.rows()
    line = recover(lab.ws, Guard(lab.ws))
    assert line is not None and f"moved the branch to {candidate[:7]}" in line
    assert head(lab.root) == candidate and gitrepo.resolve(lab.root, BRANCH) == candidate
    assert (lab.root / "score.py").read_text() == code(0.5) and clean(lab.root)
    assert lab.ws.store.rows() == before  # recorded once, not again
    assert lab.ws.store.journals() == []
    assert lab.engine.frontier(lab.engine.history(BRANCH)) == candidate
    assert recover(lab.ws, Guard(lab.ws)) is None


def test_a_machine_that_slows_down_mid_line_is_noticed_and_wins_are_still_kept(lab):
    """Right after the baseline every run scores 0.3 worse (another job took half the machine).
    Four neutral candidates lose clearly against the frontier's old runs; then the frontier is
    measured again before the next candidate, whose true gain of 0.1 is kept: the old runs are
    neither compared with nor pooled into the noise (it would be 0.3 wide)."""
    def slower(text, kind, n):
        value = plain(text, kind, n)
        return None if value is None else value + (0.3 if n > 2 else 0.0) + 0.004 * (n % 3)

    lab.runner.script = slower
    for k in range(4):
        lab.edit(code(1.0 + 0.0001 * (k + 1)))
        assert one_experiment(lab.engine, f"a neutral change {k}").status == "discard"
    assert not any("re-measuring" in line for line in lab.lines)
    lab.edit(code(0.9))
    out = one_experiment(lab.engine, "a real win")
    said = [line for line in lab.lines if line.startswith("re-measuring the frontier")]
    assert len(said) == 1 and "the last 4 candidates each lost to it by" in said[0], lab.lines
    assert out.status == "keep", "\n".join(lab.lines[-12:])
    rows = [r for r in lab.new_rows() if r.description.endswith("a real win")]
    assert rows[0].kind == "rerun" and rows[0].reason.startswith("frontier re-measured before the candidate")
    assert rows[0].value == pytest.approx(1.3, abs=0.02) and rows[0].fresh  # as the slower machine measures it
    assert lab.ws.store.rows()[-len(rows):] == rows  # the fact is kept in the engine's records too
    assert History(lab.ws.store.rows(), BRANCH).noise.sigma < 0.02


class ShorterUnderThePin(FakeRunner):
    """Runs after the baseline's (under the pinned deadline) train 0.8 s instead of 1.0 s, as the
    template's train.py does when it stops early enough to hand over, and score 0.05 worse."""

    def run(self, commit: str, pen: Pen, *, kind: str, description: str) -> Measurement:
        m = super().run(commit, pen, kind=kind, description=description)
        if kind == "baseline" or m.value is None:
            return m
        return replace(m, value=m.value + 0.05, training_seconds=0.8, steps=8)


def test_a_candidate_that_trained_less_under_the_pinned_deadline_is_compared_with_the_frontier_under_it(tmp_path):
    """The first baseline's runs had room to spare after training; under the pinned deadline
    every later run trains a little less. A real gain of 0.02 (smaller than what the shorter
    training costs) is not lost to runs that trained longer: the frontier is measured again
    beside the candidate, once, and the gain is kept."""
    with measured(tmp_path, ShorterUnderThePin) as lab:
        assert lab.ws.pins.baseline_startup is not None  # the deadline is pinned from here on
        lab.edit(code(0.98))
        out = one_experiment(lab.engine, "a real win")
        assert out.status == "keep", "\n".join(lab.lines[-12:])
        reruns = [r for r in lab.ws.store.rows() if r.kind == "rerun"]
        assert reruns[0].fresh and reruns[0].reason.startswith("frontier re-measured beside the candidate: it trained 0.8 s")
        lab.edit(code(0.985))
        assert one_experiment(lab.engine, "a worse change").status == "discard"
    said = [line for line in lab.lines if line.startswith("re-measuring the frontier")]
    assert len(said) == 1, lab.lines  # once: the frontier's runs are made under the pin from then on
