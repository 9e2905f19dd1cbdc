"""The trainer's deadline and the evaluator's limit, pinned from the baseline, through the real
engine: a run that slows its own clocks gets no more training than the deadline allows, later
slow runs do not move it, the evaluator is stopped at a limit the baseline's evaluations set,
and the template's train.py stops training early enough to hand over before its deadline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from autoresearch import capsliterals, pins
from autoresearch.config import Config
from autoresearch.engine import measure
from autoresearch.engine.measure import Limits
from autoresearch.workspace import Workspace, fingerprint

from support import (FAKE_PREPARE, VAL_SHA, assert_intact, experiment, experiment_json, git, head, llm_like, rows,
                     small_cpu_workspace, train_text)

SLACK = 0.05  # of the budget, beyond the baseline's time outside training
KILL_GRACE = 1.0  # the supervisor's tick and the kill, beyond the limit

# "training" for 4 s by clocks that run three times slow: 12 s of the machine's time
SLOW_CLOCKS = """\
import time
_time, _perf, _mono = time.time, time.perf_counter, time.monotonic
_t0, _p0, _m0 = _time(), _perf(), _mono()
time.time = lambda: _t0 + (_time() - _t0) / 3
time.perf_counter = lambda: _p0 + (_perf() - _p0) / 3
time.monotonic = lambda: _m0 + (_mono() - _m0) / 3
_start = time.perf_counter()
while time.perf_counter() - _start < 4.0:
    time.sleep(0.05)
"""


def baseline(root: Path) -> subprocess.CompletedProcess:
    r = experiment(root, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def pinned(root: Path) -> pins.Pins:
    found = pins.read(root)
    assert found is not None and found.baseline_startup is not None, found
    return found


def outside_training(root: Path) -> float:
    """The most any baseline run spent outside training, from the rows (never below 0, as the
    pin counts it: a run that printed more training than its rounded wall time spent none)."""
    return max(max(0.0, x.seconds - x.training_seconds) for x in rows(root) if x.kind == "baseline")


ALLOWANCE = re.compile(r"^baseline run \d of \d: .*startup allowance ([0-9.]+) s", re.M)


def test_the_limits_before_and_after_the_baseline_is_pinned():
    cfg = Config(budget=300)
    before = Limits.of(cfg)
    assert before.allowance == 60 and before.hard == 360 and before.evaluator == 600
    assert "until the baseline is pinned" in before.basis
    fresh = pins.Pins("/ws", "h" * 64, "v" * 64)
    assert Limits.of(cfg, fresh) == before  # a pins file from before the fields: the defaults
    pinned = fresh.with_baseline(63.8, 40.0)
    after = Limits.of(cfg, pinned)
    assert after.allowance == pytest.approx(63.8 + 15) and after.hard == pytest.approx(300 + 63.8 + 15)
    assert after.evaluator == 400 and "pinned" in after.basis  # 10 x the slowest baseline evaluation
    assert Limits.of(cfg, fresh.with_baseline(2.0, 3.0)).evaluator == 120  # at least two minutes
    # pins written before the caps (a baseline made slow on purpose) are capped when read
    old = Limits.of(cfg, fresh.with_baseline(500.0, 900.0))
    assert old.allowance == pytest.approx(75 + 15) and old.evaluator == 750  # a quarter of the budget each
    # set by hand, the allowance and the hard limit still win
    assert Limits.of(replace(cfg, allowance=7.0), pinned).hard == 307
    assert Limits.of(replace(cfg, hard_limit=42.0), pinned).hard == 42


def test_a_slow_clock_gets_no_more_training_than_the_pinned_deadline(tmp_path):
    """It reports 4 s of training by its own clock and trains 12 s: before the deadline was
    pinned, the startup allowance (10 s + 1.5 x the baseline's) gave it room for that, and it won."""
    root = tmp_path / "ws"
    llm_like(root, budget=4)
    baseline(root)
    deadline = 4 + outside_training(root) + SLACK * 4
    before = pins.read(root)
    frontier = head(root)
    text = train_text(0.5, body=SLOW_CLOCKS).replace(
        'print("training_seconds: 0.1")', 'print(f"training_seconds: {time.perf_counter() - _start:.1f}")')
    (root / "train.py").write_text(text)
    out = experiment_json(root, "the same training, by a slower clock")
    assert out["status"] == "crash" and out["reason"].startswith("over budget: killed after"), out
    assert_intact(root, frontier, 3)
    ran = rows(root)[-1]
    assert ran.seconds is not None and ran.seconds <= deadline + KILL_GRACE < 12
    # the deadline it was killed at: the one pinned from the baseline, and it stays pinned
    limits = Limits.of(Workspace.load(root).config, pinned(root))
    assert limits.hard == pytest.approx(deadline, abs=0.06) and f"killed after {limits.hard:g} s" in out["reason"]
    assert pins.read(root) == before


def test_the_pinned_deadline_does_not_move_after_slow_runs(tmp_path):
    root = tmp_path / "ws"
    llm_like(root, budget=4)  # the stand-in trains no time at all: the slow start has 3 s to spare under load
    baseline(root)
    fast = outside_training(root)
    before = pins.read(root)
    # a change that starts slowly (within the deadline), and is not kept
    (root / "train.py").write_text(train_text(1.5, body="import time\ntime.sleep(1.0)"))
    assert experiment_json(root, "slow start")["status"] == "discard"
    # a second line of research whose unchanged code starts slowly: its baseline runs move nothing
    git(root, "switch", "-qc", "autoresearch/slow", "main")
    (root / "train.py").write_text(train_text(1.0, body="import time\ntime.sleep(1.0)"))
    git(root, "commit", "-qam", "a slow starting point")
    r = baseline(root)
    slow = [x for x in rows(root) if x.kind == "baseline" and x.branch == "autoresearch/slow"]
    assert len(slow) == 2 and min(x.seconds - x.training_seconds for x in slow) > fast + 0.5
    first, second = (float(a) for a in ALLOWANCE.findall(r.stdout))
    assert first == second, r.stdout  # its first slow run did not widen the limit of its second
    assert pins.read(root) == before and pinned(root).baseline_startup == pytest.approx(fast)
    assert first == Limits.of(Workspace.load(root).config, pinned(root)).allowance


@pytest.mark.slow
def test_a_baseline_made_slow_on_purpose_pins_no_more_than_the_cap(tmp_path):
    """An agent with git commits a train.py that sleeps before the first baseline runs: what the
    baseline spent outside training is pinned at most at the cap (10 s or a quarter of the
    budget), so a later change cannot train in its padding."""
    root = tmp_path / "ws"
    llm_like(root, budget=2, baseline_runs=1)
    (root / "train.py").write_text(train_text(1.0, body="import time\ntime.sleep(20)"))
    git(root, "commit", "-qam", "a slow starting point, committed by the agent")
    r = baseline(root)
    assert rows(root)[-1].seconds >= 20 and pinned(root).baseline_startup == measure.startup_cap(2) == 10
    assert "outside training" in r.stdout and "10 s for it at most" in r.stdout
    frontier = head(root)
    (root / "train.py").write_text(train_text(0.5, body="import time\ntime.sleep(15)"))
    out = experiment_json(root, "trains in the baseline's padding")
    assert out["status"] == "crash" and out["reason"].startswith("over budget: killed after 12.1 s"), out
    assert_intact(root, frontier, 2)


SLOW_EVALUATION = FAKE_PREPARE.replace(
    'def score_handover(folder):\n    with open(os.path.join(folder, "value.json")) as fh:\n'
    '        value = json.load(fh)["value"]\n',
    'def score_handover(folder):\n    import time\n    with open(os.path.join(folder, "value.json")) as fh:\n'
    '        handed = json.load(fh)\n    time.sleep(handed.get("sleep", 0))  # a model that is slow to score\n'
    '    value = handed["value"]\n')


def slow_scoring_harness(root: Path) -> None:
    """SLOW_EVALUATION as the workspace's harness, fingerprinted and pinned."""
    (root / "prepare.py").write_text(SLOW_EVALUATION)
    ws = Workspace.load(root)
    sha = fingerprint(root, ws.config.harness_files)
    ws.save(replace(ws.config, harness_sha256=sha))
    pins.write(pins.fresh(root, sha, VAL_SHA))


def slow_handover(seconds: float) -> str:
    """A train.py body whose hand-over asks SLOW_EVALUATION to take `seconds` to score it."""
    return ("import json, os\n"
            "_write = evaluate_bpb\n"
            "def evaluate_bpb(value):\n"
            "    _write(value)\n"
            "    path = os.path.join(os.environ['AUTORESEARCH_HANDOVER'], 'value.json')\n"
            f"    json.dump({{'value': value, 'sleep': {seconds}}}, open(path, 'w'))\n"
            "    return value")


def test_the_evaluator_is_stopped_at_a_limit_the_baseline_evaluations_set(tmp_path, monkeypatch):
    """A hand-over that takes 30 s to score: before, the evaluator had 600 s whatever the
    baseline's evaluations took. (The floor of a minute is lowered here to keep the test short.)"""
    assert SLOW_EVALUATION != FAKE_PREPARE
    root = tmp_path / "ws"
    llm_like(root, budget=2)
    slow_scoring_harness(root)
    git(root, "commit", "-qam", "a harness that scores as slowly as the hand-over asks")
    baseline(root)
    frontier = head(root)
    body = slow_handover(30)
    (root / "train.py").write_text(train_text(0.5, body=body))

    from autoresearch.engine import Engine
    from autoresearch.engine.pool import one_experiment

    monkeypatch.setattr(measure, "EVALUATOR_MIN", 1.0, raising=False)
    monkeypatch.setattr(measure, "EVALUATOR_FACTOR", 4.0, raising=False)  # well under the 30 s asked for
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")  # in this process: the engine's own, not the jail's
    lines: list[str] = []
    started = time.monotonic()
    ws = Workspace.load(root)
    with ws.state.locked("test"):
        outcome = one_experiment(Engine(ws, out=lines.append, live=False), "a model slow to score")
    assert time.monotonic() - started < 28  # the hand-over asked for 30 s: the pinned limit cut it short
    assert outcome.status == "crash" and outcome.reason == "no evaluation: the engine's evaluator timed out", outcome
    assert_intact(root, frontier, 3)
    evaluation = pinned(root).baseline_eval
    # the baseline's evaluator from the engine's go: its start-up happened while the trainer ran
    assert evaluation is not None and 0 <= evaluation < 15
    monkeypatch.undo()
    assert Limits.of(Workspace.load(root).config, pinned(root)).evaluator == 120  # at least two minutes


def test_a_baseline_made_slow_to_score_on_purpose_pins_no_more_than_the_cap(tmp_path, monkeypatch):
    """The evaluator's limit follows the baseline's evaluations: one that an agent with git made
    slow to score before the first baseline pins at most the cap. (The cap, 30 s or a quarter of
    the budget, is lowered here to 1 s to keep the test short.)"""
    root = tmp_path / "ws"
    llm_like(root, budget=2, baseline_runs=1)
    slow_scoring_harness(root)
    body = slow_handover(4)
    (root / "train.py").write_text(train_text(1.0, body=body))
    git(root, "commit", "-qam", "a harness that scores slowly, and a baseline slow to score")

    from autoresearch.engine import Engine

    monkeypatch.setattr(measure, "EVALUATION_CAP", 1.0, raising=False)
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")  # in this process: the engine's own, not the jail's
    ws = Workspace.load(root)
    with ws.state.locked("test"):
        engine = Engine(ws, out=lambda line: None, live=False)
        engine.ensure_baseline(engine.branch())
    assert rows(root)[-1].eval_seconds >= 4 and pinned(root).baseline_eval == 1.0


def test_a_pins_file_of_an_older_version_is_moved_into_the_database_once(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    path = pins.home() / "pins" / f"{pins._key(root)}.json"  # where pins were kept as files
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"root": str(root.resolve()), "harness_sha256": "h" * 64, "val_sha256": "v" * 64,
                                "version": pins.VERSION}))
    old = pins.read(root)
    assert old is not None and old.baseline_startup is None and old.baseline_eval is None
    assert not path.exists() and path.with_name(path.name + ".v0").is_file()  # moved, once
    assert pins.read(root) == old
    pins.write(old.with_baseline(3.5, 12.0))
    assert pins.read(root) == replace(old, baseline_startup=3.5, baseline_eval=12.0)


# ---------------------------------------------------------------------------
# the template's train.py, for real (slow)

@pytest.fixture(scope="module")
def real_workspace(tmp_path_factory, data_cache) -> Path:
    """A CPU workspace of the template with a 3 s budget, a small batch and a short evaluation."""
    return small_cpu_workspace(tmp_path_factory.mktemp("deadline") / "ws", "3")


@pytest.mark.heavy
def test_the_template_stops_training_to_hand_over_before_its_deadline(real_workspace, tmp_path):
    """Run with a deadline 8 s away and a budget of 600 s: it trains what fits, hands over and
    exits before the deadline."""
    (tmp_path / "train.py").write_text((real_workspace / "train.py").read_text())
    prepare = (real_workspace / "prepare.py").read_text()
    (tmp_path / "prepare.py").write_text(capsliterals.write_constants(prepare, {"TIME_BUDGET": 600}))
    handover = tmp_path / "handover"
    handover.mkdir()
    started = time.time()
    deadline = started + 8.0
    env = {**os.environ, "AUTORESEARCH_DEADLINE": f"{deadline:.3f}", "AUTORESEARCH_HANDOVER": str(handover),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    ended = time.time()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert ended < deadline, (ended - deadline, r.stdout[-1500:])
    assert "stopping before the deadline" in r.stdout
    trained = float(re.search(r"^training_seconds:\s+([0-9.]+)$", r.stdout, re.M).group(1))
    assert 0 <= trained < 8  # none at all where a loaded machine took most of the 8 s to start
    assert any(handover.iterdir())  # the model was handed over


@pytest.mark.heavy
def test_the_honest_template_finishes_within_its_pinned_deadline(real_workspace):
    root = real_workspace
    # a change that does nothing is measured at most twice: enough runs under the pinned deadline
    ws = Workspace.load(root)
    ws.save(replace(ws.config, keep=replace(ws.config.keep, max_runs=2)))
    git(root, "commit", "-qam", "two runs of a candidate at most")
    git(root, "switch", "-qc", "autoresearch/deadline")
    baseline(root)
    limits = Limits.of(Workspace.load(root).config, pinned(root))
    assert limits.hard == pytest.approx(3 + outside_training(root) + SLACK * 3, abs=0.06)
    (root / "train.py").write_text((root / "train.py").read_text() + "\n# a comment\n")
    out = experiment_json(root, "a comment")
    assert out["status"] in ("keep", "discard"), out
    made = [x for x in rows(root) if x.kind != "baseline"]
    assert made and all(x.status in ("keep", "discard") for x in made)
    assert all(x.seconds <= limits.hard for x in made), [(x.seconds, limits.hard) for x in made]
