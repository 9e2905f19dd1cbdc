"""Stopping a hopeless run early (`early_stop = true`): a candidate whose training curve is far
above the frontier's at the same share of its budget is stopped and recorded as a discard with
cause `hopeless` and no measurement; a candidate whose curve keeps up is measured as any other.
The curve is the trainer's own output: it may stop a run, never keep one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoresearch.engine import Engine
from autoresearch.engine.earlystop import EARLY, Reference
from autoresearch.engine.pool import one_experiment
from autoresearch.workspace import Workspace
from support import blank, cli, commit, git, rows


def curve(start: float, end: float, upto: float = 1.0, n: int = 11) -> str:
    lines = []
    for i in range(n):
        p = upto * i / (n - 1)
        lines.append(f"step {i + 1:05d} | progress {100 * p:.1f}% | loss {start + (end - start) * p:.6f} | remaining 1s")
    return "\n".join(lines) + "\n"


def test_a_curve_far_above_the_frontiers_is_hopeless_past_the_start_only():
    frontier = Reference.of([curve(3.0, 2.0), curve(3.02, 2.01)])
    assert frontier.verdict(curve(4.0, 3.5, upto=0.2)) == ""  # before START: never
    why = frontier.verdict(curve(4.0, 3.5, upto=0.5))
    assert why.startswith(f"{EARLY} at 50 % of its budget: training loss 3.7500 against the frontier's 2.5")
    assert frontier.verdict(curve(3.03, 2.03, upto=0.5)) == ""  # within the margin: it goes on
    assert frontier.verdict(curve(2.5, 1.5, upto=0.5)) == ""  # ahead of the frontier
    assert Reference.of(["no progress lines\n"]) is None


# the run prints its curve over about 5 s (the engine looks every half second), then its score
SCORE = """import time
START = {start}
for i in range(21):
    p = i / 20
    print(f"step {{i + 1:05d}} | progress {{100 * p:.1f}}% | loss {{START - p:.6f}} | remaining 1s", flush=True)
    time.sleep(0.25)
print(f"score: {{START - 1.0:.6f}}")
"""


def measured_baseline(tmp_path) -> Engine:
    """An engine on a research branch with early stopping on, its baseline (SCORE from 3.0) measured."""
    ws = blank(tmp_path, SCORE.format(start=3.0), editable=("score.py",), budget=30)
    ws = ws.save(replace(ws.config, early_stop=True))
    commit(ws, "early stop on")
    git(ws.root, "switch", "-qc", "autoresearch/test")
    engine = Engine(Workspace.load(ws.root), out=lambda line: None, live=False)
    engine.ensure_baseline(engine.branch())
    return engine


@pytest.mark.slow
def test_a_hopeless_candidate_is_stopped_and_discarded_and_a_good_one_is_measured(tmp_path):
    engine = measured_baseline(tmp_path)
    ws = engine.ws

    (ws.root / "score.py").write_text(SCORE.format(start=4.5))  # 1.5 above the frontier all the way
    out = one_experiment(engine, "a much worse change")
    hopeless = rows(ws.root)[-1]
    assert out.status == "discard" and hopeless.status == "discard" and hopeless.cause == "hopeless"
    assert hopeless.reason.startswith(EARLY) and not hopeless.measured
    assert "score:" not in engine.logs.path(hopeless.log).read_text()  # stopped before it ended

    (ws.root / "score.py").write_text(SCORE.format(start=2.9))  # a little ahead: it runs to its end
    one_experiment(engine, "a slightly better change")
    firsts = [r for r in rows(ws.root) if r.description == "a slightly better change"]
    assert firsts[0].measured and firsts[0].cause == ""
    # every view takes the stopped run for what it is: a decided discard without a value
    status = cli("status", "--json", cwd=ws.root)
    assert status.returncode == 0, status.stderr
    assert cli("report", cwd=ws.root).returncode == 0


@pytest.mark.slow
def test_numbers_too_large_for_the_engine_in_the_trainers_output_are_not_read(tmp_path):
    """A step of 5,000 digits (int() refuses more than 4,300) in a progress line, a num_steps
    past the database's integers and a training time below zero: the run is recorded like any
    other (without them), not the engine's crash, though its curve is read for early stopping."""
    engine = measured_baseline(tmp_path)
    ws = engine.ws
    hostile = ('print("step " + "9" * 5000 + " | progress 60.0% | loss 9.0", flush=True)\n'
               'print("num_steps: 1e300", flush=True)\n'
               'print("training_seconds: -1e300", flush=True)\n')
    (ws.root / "score.py").write_text(hostile + SCORE.format(start=2.9))
    out = one_experiment(engine, "huge numbers")
    got = rows(ws.root)[-1]
    assert out.status in ("keep", "discard") and got.measured, (out, got)
    assert got.steps is None and got.training_seconds is None
