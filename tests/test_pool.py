"""`autoresearch run --workers N`: several experiments in flight on one machine, the agent
proposing while they train, one ratchet (stale wins rebased or returned), every row naming
its worker. Real workspaces, the real CLI in a subprocess, the `command` agent running a
scripted proposer; the fake harness prints what train.py's VALUE says."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from autoresearch.state import StateFolder
from support import clean, cli, git, head, llm_like, pid_alive, rows, wait_for
from test_loop import AGENT, start_loop


# the scripted agent of test_loop, which can also replace a line of train.py
REPLACING = AGENT + '''
for old, new in step.get("replace", {}).items():
    Path("train.py").write_text(Path("train.py").read_text().replace(old, new))
'''
SLOW = "import time\ntime.sleep(1.5)"
SCALED = "from prepare import evaluate_bpb as _score\nevaluate_bpb = lambda v: _score(v * 0.9)"


@pytest.fixture
def agent(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(REPLACING)
    steps = tmp_path / "steps.json"

    def configure(step_list) -> dict:
        steps.write_text(json.dumps(step_list))
        return {"STEPS": str(steps)}

    configure.command = f"{sys.executable} {script}"
    return configure


def run_pool(root: Path, agent, *args: str, env=None, timeout: float = 300):
    return cli("run", "--agent", "command", "--agent-command", agent.command, *args, cwd=root, env=env, timeout=timeout)


def test_two_workers_record_every_row_once_and_the_tip_is_the_best(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    env = agent([{"value": v, "desc": f"VALUE {v}"} for v in (1.5, 0.6, 2.0, 0.61)])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "4", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    experiments = [x for x in got if x.kind == "experiment"]
    assert sorted(x.description for x in experiments) == ["VALUE 0.6", "VALUE 0.61", "VALUE 1.5", "VALUE 2.0"] or \
        len(experiments) >= 4, r.stdout
    assert {x.worker for x in got if x.kind != "baseline"} <= {"w1", "w2"}
    assert {x.worker for x in got if x.kind != "baseline"} == {"w1", "w2"}, r.stdout
    assert clean(root), git(root, "status", "--porcelain")
    kept = [x for x in got if x.status == "keep" and x.kind == "experiment"]
    assert kept, r.stdout
    assert head(root)[:7] == kept[-1].commit
    assert "VALUE = 0.6" in (root / "train.py").read_text()
    assert not list(Path(root / ".autoresearch").glob("current-*.json"))
    assert (root / ".autoresearch" / "workers" / "w2.log").is_file()


def test_a_stale_win_is_rebased_onto_the_new_frontier_and_measured_again(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    # both win against the starting frontier; the slow one finishes second, on a frontier that moved
    env = agent([{"value": 0.5, "body": SLOW, "desc": "slow: VALUE 0.5"},
                 {"replace": {"from prepare import evaluate_bpb": SCALED}, "desc": "scale by 0.9"}])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "2", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    stale = [x for x in got if x.status == "stale"]
    assert stale and "rebased as" in stale[0].reason and "measured again" in stale[0].reason, r.stdout
    merged = stale[0].reason.split("rebased as ")[1][:7]
    again = [x for x in got if x.commit == merged and x.kind == "experiment"]
    assert again and again[0].status == "keep" and again[0].value == pytest.approx(0.45), r.stdout
    assert head(root)[:7] == merged
    text = (root / "train.py").read_text()
    assert "VALUE = 0.5" in text and "v * 0.9" in text
    assert clean(root)


def test_a_stale_win_that_conflicts_is_recorded_stale_and_returned_to_the_agent(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    env = agent([{"value": 0.5, "body": SLOW, "desc": "slow: VALUE 0.5"}, {"value": 0.6, "desc": "VALUE 0.6"},
                 {"desc": "look", "append": {"notes.md": "x\n"}}])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "3", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    kept = [x for x in got if x.status == "keep" and x.kind == "experiment"]
    assert [x.description for x in kept] == ["VALUE 0.6"], r.stdout
    stale = [x for x in got if x.description == "slow: VALUE 0.5" and x.kind == "experiment"]
    assert stale[0].status == "stale" and "conflicts with the frontier" in stale[0].reason
    assert head(root)[:7] == kept[0].commit and "VALUE = 0.6" in (root / "train.py").read_text()


def sleeper(tmp_path: Path, name: str) -> str:
    """A train.py body that writes its pid to tmp_path/<name>.pid and sleeps."""
    return f"import os, time\nopen({str(tmp_path / (name + '.pid'))!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)"


def pids(tmp_path: Path, *names: str) -> list[int] | None:
    files = [tmp_path / f"{n}.pid" for n in names]
    if not all(f.exists() and f.read_text() for f in files):
        return None
    return [int(f.read_text()) for f in files]


@pytest.fixture
def unjailed(monkeypatch):
    """The sleepers write their pid outside their folder, which a sandboxed run cannot."""
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")


def test_ctrl_c_stops_every_worker_and_records_each_run_interrupted(tmp_path, agent, unjailed):
    root = tmp_path / "ws"
    llm_like(root)
    env = agent([{"value": 0.5, "body": sleeper(tmp_path, "a"), "desc": "slow a"},
                 {"value": 0.6, "body": sleeper(tmp_path, "b"), "desc": "slow b"}])
    proc = start_loop(root, agent, "--workers", "2", "--max-experiments", "2", env=env)
    try:
        assert wait_for(lambda: pids(tmp_path, "a", "b") is not None, timeout=90), proc.stderr
        running = pids(tmp_path, "a", "b")
        assert wait_for(lambda: len(list((root / ".autoresearch").glob("current-*.json"))) == 2, timeout=30)
        shown = json.loads(cli("status", "--json", cwd=root).stdout)["workers"]
        assert sorted((w["worker"], w["description"]) for w in shown) == [("w1", "slow a"), ("w2", "slow b")] or \
            sorted(w["description"] for w in shown) == ["slow a", "slow b"], shown
        table = cli("status", cwd=root).stdout
        assert "w1" in table and "w2" in table and "'slow a'" in table and "'slow b'" in table, table
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert wait_for(lambda: not any(pid_alive(p) for p in running), timeout=10)
    got = [(x.status, x.description, x.worker) for x in rows(root) if x.kind != "baseline"]
    assert sorted(got) == [("interrupted", "slow a", "w1"), ("interrupted", "slow b", "w2")] or \
        sorted(g[:2] for g in got) == [("interrupted", "slow a"), ("interrupted", "slow b")], got
    assert clean(root) and not list(StateFolder(root).worker_journals())
    assert not list((root / ".autoresearch").glob("current-*.json"))


def test_kill_9_of_the_driver_records_what_the_workers_had_in_flight(tmp_path, agent, unjailed):
    root = tmp_path / "ws"
    llm_like(root)
    env = agent([{"value": 0.5, "body": sleeper(tmp_path, "a"), "desc": "slow a"},
                 {"value": 0.6, "body": sleeper(tmp_path, "b"), "desc": "slow b"}])
    proc = start_loop(root, agent, "--workers", "2", "--max-experiments", "2", env=env)
    try:
        assert wait_for(lambda: pids(tmp_path, "a", "b") is not None, timeout=90), proc.stderr
        running = pids(tmp_path, "a", "b")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    frontier = rows(root)[0].commit
    Path(env["STEPS"] + ".n").unlink()
    env = agent([{"value": 2.0, "desc": "after the crash"}])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "1", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("recovered an interrupted experiment") == 2, r.stdout
    assert wait_for(lambda: not any(pid_alive(p) for p in running), timeout=15)
    got = sorted((x.status, x.description) for x in rows(root) if x.kind != "baseline")
    assert got == [("discard", "after the crash"), ("interrupted", "slow a"), ("interrupted", "slow b")]
    assert head(root)[:7] == frontier and clean(root)
    assert not StateFolder(root).worker_journals()
