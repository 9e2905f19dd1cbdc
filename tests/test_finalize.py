"""`autoresearch finalize` on a synthetic line: one kept change is real (it lowers the score by
about 12 sigma) and one rode on noise (it never helped, and was kept on lucky runs). Each
is taken back out of the final frontier and measured against it with the keep rule through the
real engine: the first holds up, the second is dropped, and the branch <line>-final holds the
first alone. The line itself, its rows and the working tree stay as they were."""

from __future__ import annotations

import re
from dataclasses import replace

from autoresearch.engine import Engine
from autoresearch.engine import finalize as fin
from autoresearch.workspace import Workspace
from support import cli, git, head, init_research, research_row, rows, write_results

# the score: 1.0, 0.05 lower with A = 1 (12 sigma), 0.004 higher with B = 1 (one sigma: it never
# helped; its runs were lucky when it was kept), plus fresh noise of sigma 0.004 each run
SCORE = """import os, random
A = {a}
B = {b}
random.seed(os.urandom(8))
print(f"score: {{1.0 - 0.05 * A + 0.004 * B + random.gauss(0, 0.004):.6f}}")
"""


def synthetic_line(root):
    init_research(root)
    commits = []
    for a, b, message in ((0, 0, "baseline"), (1, 0, "A 0 -> 1"), (1, 1, "B 0 -> 1")):
        (root / "score.py").write_text(SCORE.format(a=a, b=b))
        git(root, "add", "score.py")
        git(root, "commit", "-q", "-m", message)
        commits.append(git(root, "rev-parse", "--short=7", "HEAD"))
    recorded = []
    plan = [(commits[0], v, "baseline", "baseline") for v in (1.003, 0.998)]
    plan += [(commits[1], v, "A 0 -> 1", "experiment" if i == 0 else "confirm") for i, v in enumerate((0.951, 0.948, 0.952))]
    # the noise change, kept on three lucky runs 0.006 under the frontier
    plan += [(commits[2], v, "B 0 -> 1", "experiment" if i == 0 else "confirm") for i, v in enumerate((0.944, 0.943, 0.945))]
    for i, (sha, value, description, kind) in enumerate(plan):
        recorded.append(replace(research_row(sha, value, "keep", description, kind, "", i), branch="autoresearch/test"))
    write_results(root, recorded)
    return commits, recorded


def test_finalize_keeps_the_real_change_and_drops_the_one_that_rode_on_noise(tmp_path):
    root = tmp_path / "ws"
    commits, recorded = synthetic_line(root)
    before = head(root)
    planned = cli("finalize", "--plan", cwd=root)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "finalize autoresearch/test: 2 kept changes; 3 tests to run, 6 to 30 runs" in planned.stdout

    r = cli("finalize", cwd=root, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    report = (root / "finalize.md").read_text()
    # the change's description as markdown shows it as written: its syntax characters escaped
    verdicts = dict(re.findall(r"^\| (\\#\d [^|]+?|the frontier against the baseline) \|.*\| (held up|dropped|entangled):",
                               report, re.M))
    assert verdicts == {"\\#1 A 0 -> 1": "held up", "\\#2 B 0 -> 1": "dropped",
                        "the frontier against the baseline": "held up"}, report
    assert "finalize: 1 of 2 kept changes held up; branch autoresearch/test-final" in r.stdout

    # the clean branch: the baseline and one commit, the real change, with its evidence
    final = git(root, "rev-parse", "autoresearch/test-final")
    assert git(root, "rev-parse", f"{final}~1")[:7] == commits[0]
    assert "A = 1\nB = 0\n" in git(root, "show", f"{final}:score.py")
    message = git(root, "log", "-1", "--format=%B", final)
    assert message.startswith("A 0 -> 1") and "when kept" in message and "with it" in message
    # the line, its rows and the tree as they were
    assert head(root) == before and git(root, "status", "--porcelain") == ""
    assert rows(root) == recorded


def test_a_stopped_finalize_goes_on_where_it_stopped(tmp_path):
    root = tmp_path / "ws"
    synthetic_line(root)
    ws = Workspace.load(root)
    engine = Engine(ws, out=lambda line: None, live=False)
    real, made = engine.runner, []

    class StopsAfterThree:
        def run(self, commit, pen, *, kind, description):
            if len(made) == 3:
                raise KeyboardInterrupt
            made.append(commit)
            return real.run(commit, pen, kind=kind, description=description)

        @property
        def log_path(self):
            return real.log_path

    engine.runner = StopsAfterThree()
    try:
        fin.Finalize(engine, "autoresearch/test", lambda line: None).run()
        raise AssertionError("the stop did not reach it")
    except KeyboardInterrupt:
        pass
    said = []
    engine = Engine(Workspace.load(root), out=said.append, live=False)
    rec = fin.Finalize(engine, "autoresearch/test", said.append).run()
    assert "finalize: going on where it stopped (3 runs made)" in said
    assert all(t.verdict for t in rec.tests) and sum(len(t.runs) for t in rec.tests) >= 6
    assert not engine.store.journals()  # nothing left in flight for recovery
