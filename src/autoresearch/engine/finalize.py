"""`autoresearch finalize`: which kept changes of a line of research carry its improvement.

A line keeps changes one after another, each judged against the frontier of its time. In the
morning some of them may have ridden on noise, or on a later change. For a line whose
frontier F holds the kept changes K1..Kn (History.kept_changes, the baseline aside):

- each Ki is taken back out of F (its edit of the editable files undone line by line,
  autoresearch.textmerge: `F - Ki`), and F is run against F - Ki in pairs, as a candidate against a frontier, until the
  keep rule decides (keeprule.weigh and decide: the same thresholds, at most `max_runs` pairs,
  the line's own noise model): the change held up when F beats F - Ki; a change whose lines
  later changes rewrote cannot be taken out alone ("entangled");
- F is run against the baseline the same way, with fresh runs of both.

Then `finalize.md` (change, claimed gain when kept, gain that held up, verdict) and a branch
`<line>-final` from the baseline with one commit per change that held up, in the order they
were kept, the evidence in each message. Nothing here touches the line, its rows or the
working tree: the runs are kept in the store as this line's finalize record (a document), so a
finalize that was stopped goes on where it stopped, and they never move the frontier.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from autoresearch import gitrepo, textmerge
from autoresearch.engine.experiment import Engine
from autoresearch.engine.lifecycle import Pen
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.research import keeprule
from autoresearch.research.history import KeptChange
from autoresearch.research.results import Row, md_cell
from autoresearch.store import Journal

KIND = "finalize"  # the runs' kind for the runner: never a reader of a compile cache, always cold
REPORT = "finalize.md"
WITHOUT, WITH = "without", "with"


@dataclass
class Test:
    """One comparison: the line's frontier (`with`) against a reference (`without`): the
    frontier without one kept change, or the baseline."""

    title: str
    without: str  # the reference's commit (full sha); "" when the change could not be taken out
    with_: str  # the frontier's
    change: int | None = None  # the kept change's place in the line (1 = the first after the baseline)
    claimed: float | None = None  # what it moved the frontier by when kept (new minus old)
    runs: list[tuple[str, float | None, str]] = field(default_factory=list)  # (side, value or None, why not)
    verdict: str = ""  # "held up", "dropped" ("did not hold up": the baseline test), "entangled", "not measured"
    delta: float | None = None  # with minus without, from this test's runs
    reason: str = ""

    def counts(self) -> tuple[int, int]:
        return sum(1 for s, _, _ in self.runs if s == WITHOUT), sum(1 for s, _, _ in self.runs if s == WITH)


@dataclass
class Record:
    """A line's finalize: its tests and their runs so far (kept in the store as one document)."""

    line: str
    frontier: str
    tests: list[Test]
    version: int = 1  # a record of another version (other references, other verdicts) is started over

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Record | None":
        try:
            data = json.loads(text)
            if data.get("version") != cls.version:
                return None
            tests = [Test(**{**t, "runs": [tuple(r) for r in t["runs"]]}) for t in data["tests"]]
            return cls(data["line"], data["frontier"], tests)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def runs_left(self, max_runs: int) -> tuple[int, int]:
        """The fewest and the most runs still to make (a pair at least, `max_runs` pairs at most, per test)."""
        open_ = [t for t in self.tests if not t.verdict]
        least = sum(max(0, 2 - len(t.runs)) for t in open_)
        return least, sum(2 * max_runs - len(t.runs) for t in open_)


def edit_onto(root: Path, editable: Callable[[str], bool], frm: str, to: str, onto: str, message: str) -> str | None:
    """A commit on `onto` (on no branch) with the edit of the editable files (Guard.is_editable)
    from commit `frm` to commit `to` made on it, file by file (textmerge); None where `onto`
    changed the same lines."""
    files: dict[str, str | None] = {}
    for path in gitrepo.changed_between(root, frm, to):
        if not editable(path):
            continue
        ok, text = textmerge.merge_file(*(gitrepo.show(root, c, path) for c in (frm, to, onto)))
        if not ok:
            return None
        files[path] = text
    return gitrepo.commit_off_branch(root, onto, message, files=files)


def leave_out(root: Path, editable: Callable[[str], bool], frontier: str, change: str) -> str | None:
    """A commit on `frontier` with `change`'s edit undone (None: later changes rewrote the same
    lines, so it cannot be taken out alone)."""
    before = gitrepo.parent(root, change)
    if before is None:
        return None
    return edit_onto(root, editable, change, before, frontier, f"finalize: the frontier without {change[:7]}")


def plan(engine: Engine, line: str) -> Record:
    """The tests of the line as it stands: one per kept change, and the frontier against the baseline."""
    if gitrepo.current_branch(engine.root) == f"{line}-final":
        raise AutoresearchError(f"{line}-final is checked out: finalize rewrites it; switch to another branch first")
    history = engine.history(line)
    kept = history.kept_changes
    changes = [k for k in kept if not k.baseline]
    if not changes:
        known = "" if history.rows else f" (no runs recorded on {line}: give the whole branch name, autoresearch/TAG)"
        raise AutoresearchError(f"nothing was kept on {line} beyond its baseline: there is nothing to finalize{known}")
    frontier = engine.frontier(history)
    root, editable = engine.root, engine.guard.is_editable
    tests = []
    for n, k in enumerate(changes, 1):
        sha = _kept(root, k.commit)
        without = leave_out(root, editable, frontier, sha) or ""
        t = Test(f"#{n} {k.description}", without, frontier, n, k.delta)
        if not without:
            t.verdict, t.reason = "entangled", "later kept changes edit the same lines: it cannot be taken out alone"
        tests.append(t)
    base = next((k for k in kept if k.baseline), None)
    start = gitrepo.resolve(root, base.commit) if base is not None else None
    if not start:
        raise AutoresearchError(f"{line} has no baseline run to start the final branch from")
    claimed = history.frontier_value - history.baseline if history.baseline is not None else None
    tests.append(Test("the frontier against the baseline", start, frontier, None, claimed))
    return Record(line, frontier, tests)


def _kept(root: Path, commit: str) -> str:
    """The full id of a kept commit; an error when it is gone (never a ref of that name instead)."""
    sha = gitrepo.resolve(root, commit)
    if not sha:
        raise AutoresearchError(f"the kept commit {commit} is not in the repository (or its id is ambiguous): "
                                f"finalize needs every kept change")
    return sha


def weigh(line_rows: list[Row], test: Test, direction: str, rule: keeprule.Rule) -> keeprule.Decision:
    """The keep rule on the test's runs: the frontier as the candidate, the reference as the
    frontier it must beat, the line's rows informing the noise (each test's runs are its own:
    labelled apart from every commit of the line)."""
    rows = list(line_rows)
    start = len(rows)
    for side, value, _ in test.runs:
        measured = value is not None
        rows.append(Row(commit="fz-ref" if side == WITHOUT else "fz-new", value=value if measured else 0.0,
                        memory_gb=None, status=("keep" if side == WITHOUT else "discard") if measured else "crash",
                        description=test.title, kind="baseline" if side == WITHOUT else "experiment"))
    return keeprule.decide(keeprule.weigh(rows, "fz-ref", "fz-new", start=start, direction=direction, rule=rule), rule)


def settle(test: Test, line_rows: list[Row], direction: str, rule: keeprule.Rule) -> None:
    """The verdict once the runs so far decide it (left open while they do not). A crash is a
    run that measured nothing: two of one side with nothing measured there decide it (a change
    without which the code fails held up; a frontier that fails here is not measured)."""
    n_without, n_with = test.counts()
    if n_without != n_with or not test.runs:
        return
    values = {s: [v for side, v, _ in test.runs if side == s and v is not None] for s in (WITHOUT, WITH)}
    crashed = {s: [why for side, v, why in test.runs if side == s and v is None] for s in (WITHOUT, WITH)}
    if len(crashed[WITH]) >= 2 and not values[WITH]:
        test.verdict, test.reason = "not measured", f"the frontier crashed here ({crashed[WITH][-1]})"
    elif len(crashed[WITHOUT]) >= 2 and not values[WITHOUT] and values[WITH]:
        test.verdict, test.reason = "held up", f"without it the code fails ({crashed[WITHOUT][-1]})"
    elif values[WITHOUT] and values[WITH]:
        decision = weigh(line_rows, test, direction, rule)
        test.delta = decision.evidence.delta
        if decision.action != "more":
            lost = "dropped" if test.change is not None else "did not hold up"  # a change goes; the line's claim fails
            test.verdict = "held up" if decision.action == "keep" else lost
            test.reason = decision.reason
            return
    if not test.verdict and n_with >= rule.max_runs:
        test.verdict, test.reason = "not measured", f"no decision after {n_with} pairs of runs"


class Finalize:
    """Runs a line's finalize to its end (or until stopped), keeping its record in the store."""

    def __init__(self, engine: Engine, line: str, out: Callable[[str], None]):
        self.engine, self.line, self.out = engine, line, out
        self.store = engine.store
        self.name = f"finalize:{line}"
        self.rule = engine.cfg.keep.rule()

    def record(self) -> Record:
        """The line's record: the one kept in the store if the line has not moved since, else a new plan."""
        fresh = plan(self.engine, self.line)
        kept = self.store.document(self.name)
        old = Record.from_json(kept) if kept else None
        if old is not None and old.frontier == fresh.frontier and [t.title for t in old.tests] == [t.title for t in fresh.tests]:
            done = sum(len(t.runs) for t in old.tests)
            if done:
                self.out(f"finalize: going on where it stopped ({done} run{'s' if done != 1 else ''} made)")
            return old
        if old is not None:
            self.out("finalize: the line moved since its last finalize: starting over")
        self.store.put_document(self.name, fresh.to_json())
        return fresh

    def seconds_per_run(self) -> float | None:
        recent = [r.wall for r in self.engine.history(self.line).rows if r.measured and r.seconds][-10:]
        return sum(recent) / len(recent) if recent else None

    def announce(self, rec: Record) -> None:
        least, most = rec.runs_left(self.rule.max_runs)
        open_ = sum(1 for t in rec.tests if not t.verdict)
        per = self.seconds_per_run()
        when = (f", about {least * per / 60:.0f} to {most * per / 60:.0f} minutes at {per:.0f} s a run "
                f"(the line's recent runs)") if per else ""
        changes = sum(1 for t in rec.tests if t.change is not None)
        self.out(f"finalize {self.line}: {changes} kept change{'s' if changes != 1 else ''}; {open_} test"
                 f"{'s' if open_ != 1 else ''} to run, {least} to {most} runs{when}")

    def run(self) -> Record:
        rec = self.record()
        self.announce(rec)
        line_rows = list(self.engine.history(self.line).rows)
        direction = self.engine.cfg.direction
        for test in rec.tests:
            while not test.verdict:
                n_without, n_with = test.counts()
                side = WITHOUT if n_without <= n_with else WITH
                test.runs.append(self._run(test, side))
                self.store.put_document(self.name, rec.to_json())  # a stop now loses no finished run
                settle(test, line_rows, direction, self.rule)
            self.out(f"{test.title}: {test.verdict} ({test.reason})")
        self.store.put_document(self.name, rec.to_json())
        return rec

    def _run(self, test: Test, side: str) -> tuple[str, float | None, str]:
        commit = test.without if side == WITHOUT else test.with_
        what = f"{test.title}: {'the frontier' if side == WITH else 'the reference'}"
        pen = Pen(self.store, self.name, Journal(branch=self.name, frontier=commit, kind=KIND, description=what,
                                                 candidate=commit, recorded=True))  # recovery records nothing
        try:
            m = self.engine.run(pen, commit, KIND, what)
        finally:
            pen.close()
        self.out(f"  {side} {commit[:7]}: " + (f"{self.engine.cfg.metric} {m.value:.6f}" if m.ok else f"crash ({m.reason})"))
        return side, m.value if m.ok else None, "" if m.ok else m.reason


def held(rec: Record) -> list[Test]:
    return [t for t in rec.tests if t.change is not None and t.verdict == "held up"]


def final_branch(engine: Engine, rec: Record, changes: list[KeptChange]) -> tuple[str, list[str]]:
    """`<line>-final`: the baseline with the changes that held up, one commit each, in the order
    they were kept; (its name, the changes that do not apply without ones dropped before them)."""
    root, editable = engine.root, engine.guard.is_editable
    base = next((t.without for t in rec.tests if t.change is None), None)
    if not base:
        raise AutoresearchError("the line has no baseline to start the final branch from")
    current, skipped = base, []
    for t in held(rec):
        k = changes[t.change - 1]
        sha = _kept(root, k.commit)
        before = gitrepo.parent(root, sha)
        message = (f"{k.description}\n\nKept on {rec.line} as change {t.change} ({_signed(t.claimed)} "
                   f"when kept). Left out of the final frontier and run against it: {_signed(t.delta)} with it; "
                   f"{t.reason}.")
        made = edit_onto(root, editable, before, sha, current, message) if before else None
        if made is None:
            skipped.append(t.title)
            continue
        current = made
    name = f"{rec.line}-final"
    gitrepo.set_branch(root, name, current)  # made, or moved from an earlier finalize's
    return name, skipped


def finalize(engine: Engine, line: str, out: Callable[[str], None]) -> Path:
    """The whole of `autoresearch finalize` on `line`: the tests, the final branch, finalize.md."""
    fin = Finalize(engine, line, out)
    rec = fin.run()
    changes = [k for k in engine.history(line).kept_changes if not k.baseline]
    branch, skipped = final_branch(engine, rec, changes)
    path = engine.root / REPORT
    gitrepo.ignore_locally(engine.root, REPORT)  # never an uncommitted change (a workspace from before it)
    atomic_write(path, report(rec, engine.cfg.metric, branch, skipped))  # a link planted there is replaced
    kept = len(held(rec))
    out(f"finalize: {kept} of {len(changes)} kept change{'s' if len(changes) != 1 else ''} held up; "
        f"branch {branch}; {REPORT} written")
    return path


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.6f}"


def report(rec: Record, metric: str, branch: str, skipped: list[str]) -> str:
    """finalize.md: one row per kept change, then the frontier against the baseline."""
    lines = [f"# Finalize: {rec.line}", "",
             f"Each kept change taken back out of the final frontier ({rec.frontier[:7]}) and measured against it; "
             f"then the frontier against the baseline, with fresh runs. Differences are {metric}, new minus old.", "",
             "| change | claimed when kept | held up (with minus without) | runs | verdict |",
             "| --- | --- | --- | --- | --- |"]
    for t in rec.tests:
        lines.append(f"| {md_cell(t.title)} | {_signed(t.claimed)} | {_signed(t.delta)} | {len(t.runs)} | "
                     f"{t.verdict}: {md_cell(t.reason)} |")
    lines += ["", f"Branch `{branch}`: the baseline with the {len(held(rec))} change"
                  f"{'s' if len(held(rec)) != 1 else ''} that held up, one commit each. Each was measured "
                  f"within the final frontier; their sum on the baseline was not run as a whole."]
    if skipped:
        lines.append("Left out because they do not apply without a change dropped before them: "
                     f"{', '.join(md_cell(x) for x in skipped)}.")
    return "\n".join(lines) + "\n"
