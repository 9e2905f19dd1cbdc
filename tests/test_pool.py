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

from autoresearch import gitrepo, sandbox
from autoresearch.engine import slots
from autoresearch.errors import AutoresearchError
from autoresearch.state import StateFolder
from support import blank, clean, cli, git, head, llm_like, no_journals, pid_alive, rows, wait_for
from test_loop import AGENT, agent, start_loop  # noqa: F401 (agent: the fixture)


SLOW = "import time\ntime.sleep(1.5)"
SCALED = "from prepare import evaluate_bpb as _score\nevaluate_bpb = lambda v: _score(v * 0.9)"


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
    llm_like(root, budget=6)  # the deadline (budget + the baseline's startup + 5 %) leaves SLOW room under load
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


def test_a_stale_win_that_conflicts_is_measured_as_a_whole_on_the_new_frontier_and_kept(tmp_path, agent):
    """The slow 0.5 and the quick 0.6 change the same line: 0.6 is kept first; 0.5 does not
    merge onto it, so its train.py as it is goes on top of 0.6 and is measured there, and wins."""
    root = tmp_path / "ws"
    llm_like(root, budget=6)  # room for SLOW under load, as above
    env = agent([{"value": 0.5, "body": SLOW, "desc": "slow: VALUE 0.5"}, {"value": 0.6, "desc": "VALUE 0.6"},
                 {"desc": "look", "append": {"notes.md": "x\n"}}])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "3", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    first = [x for x in got if x.description == "VALUE 0.6" and x.kind == "experiment"]
    stale = [x for x in got if x.description == "slow: VALUE 0.5" and x.status == "stale"]
    assert first[0].status == "keep" and stale, r.stdout
    assert "does not merge (a conflict, or a merge over the caps), so its files as a whole on it" in stale[0].reason, stale[0].reason
    whole = stale[0].reason.split("as a whole on it (")[1][:7]
    again = [x for x in got if x.commit == whole and x.kind == "experiment"]
    assert again and again[0].status == "keep" and again[0].value == pytest.approx(0.5), r.stdout
    assert gitrepo.resolve(root, f"{whole}^")[:7] == first[0].commit  # on top of the frontier it lost to
    assert head(root)[:7] == whole and "VALUE = 0.5" in (root / "train.py").read_text()
    assert git(root, "status", "--porcelain") in ("", "?? notes.md")  # the agent's notebook aside


def test_two_wins_under_the_caps_that_add_up_past_them_are_not_merged(tmp_path, agent):
    """Each candidate's editable files hold 180 KiB together, under the 256 KiB cap; the one that
    finishes second, merged onto the first, would hold about 360 KiB: it is recorded stale and not run."""
    from dataclasses import replace

    from autoresearch.workspace import Workspace

    root = tmp_path / "ws"
    ws = llm_like(root, budget=6, branch="")
    ws.save(replace(ws.config, editable=("train.py", "extra")))
    git(root, "commit", "-qam", "extra/ is editable")
    git(root, "switch", "-qc", "autoresearch/cap")
    block = "".join(f"# line {i} of notes that are not code\n" for i in range(1600))  # about 60 KiB
    a = {f"extra/a{i}.txt": block for i in range(3)}
    b = {f"extra/b{i}.txt": block for i in range(3)}
    env = agent([{"value": 0.5, "body": SLOW, "write": a, "desc": "slow: VALUE 0.5 and a"},
                 {"replace": {"from prepare import evaluate_bpb": SCALED}, "write": b, "desc": "scale by 0.9 and b"},
                 {"desc": "look", "append": {"notes.md": "x\n"}}])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "3", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    kept = [x for x in got if x.status == "keep" and x.kind == "experiment"]
    stale = [x for x in got if x.status == "stale"]
    assert [x.description for x in kept] == ["scale by 0.9 and b"], r.stdout
    assert stale and "would hold" in stale[0].reason and "not run there" in stale[0].reason, r.stdout
    assert sorted(p.name for p in (root / "extra").iterdir()) == ["b0.txt", "b1.txt", "b2.txt"]
    assert Workspace.load(root).config.editable == ("train.py", "extra")


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


def two_sleeping(tmp_path: Path, agent):
    """A pool of two workers, each training a change that sleeps: (workspace, env, loop, the runs' pids)."""
    root = tmp_path / "ws"
    llm_like(root)
    env = agent([{"value": 0.5, "body": sleeper(tmp_path, "a"), "desc": "slow a"},
                 {"value": 0.6, "body": sleeper(tmp_path, "b"), "desc": "slow b"}])
    proc = start_loop(root, agent, "--workers", "2", "--max-experiments", "2", env=env)
    if not wait_for(lambda: pids(tmp_path, "a", "b") is not None, timeout=90):
        proc.kill()
        pytest.fail(proc.communicate()[1])
    return root, env, proc, pids(tmp_path, "a", "b")


def test_ctrl_c_stops_every_worker_and_records_each_run_interrupted(tmp_path, agent, unjailed):
    root, env, proc, running = two_sleeping(tmp_path, agent)
    try:
        assert wait_for(lambda: len(list((root / ".autoresearch").glob("current-*.json"))) == 2, timeout=30)
        shown = json.loads(cli("status", "--json", cwd=root).stdout)["workers"]
        assert sorted(w["description"] for w in shown) == ["slow a", "slow b"], shown
        assert sorted(w["worker"] for w in shown) == ["w1", "w2"], shown
        table = cli("status", cwd=root).stdout
        assert "w1" in table and "w2" in table and "'slow a'" in table and "'slow b'" in table, table
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert wait_for(lambda: not any(pid_alive(p) for p in running), timeout=10)
    got = [x for x in rows(root) if x.kind != "baseline"]
    assert sorted((x.status, x.description) for x in got) == [("interrupted", "slow a"), ("interrupted", "slow b")]
    assert sorted(x.worker for x in got) == ["w1", "w2"]
    assert clean(root) and no_journals(root)
    assert not list((root / ".autoresearch").glob("current-*.json"))


def test_kill_9_of_the_driver_records_what_the_workers_had_in_flight(tmp_path, agent, unjailed):
    root, env, proc, running = two_sleeping(tmp_path, agent)
    try:
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
    assert no_journals(root)


def test_three_workers_on_the_blank_template(tmp_path, agent):
    """Any command, any metric: a blank workspace whose train.py prints its VALUE as the score."""
    ws = blank(tmp_path, "VALUE = 1.0\n# body\nprint(f'score: {VALUE}')\n", editable=("train.py",))
    git(ws.root, "switch", "-qc", "autoresearch/blank")
    env = agent([{"value": v, "desc": f"VALUE {v}"} for v in (1.4, 1.3, 0.5, 1.2, 1.1)])
    r = run_pool(ws.root, agent, "--workers", "3", "--max-experiments", "5", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 workers: w1 on 1 CPU thread" in r.stdout or "3 workers: w1 on" in r.stdout
    assert ("warning: 3 workers on" in r.stdout) == (slots.cores() < 3)  # said, not refused: this command computes little
    got = rows(ws.root)
    assert sorted(x.description for x in got if x.kind == "experiment") == [f"VALUE {v}" for v in (0.5, 1.1, 1.2, 1.3, 1.4)]
    assert len({x.worker for x in got if x.kind != "baseline"}) >= 2
    kept = [x for x in got if x.status == "keep" and x.kind == "experiment"]
    assert [x.description for x in kept] == ["VALUE 0.5"] and head(ws.root)[:7] == kept[0].commit
    assert clean(ws.root)


def h100s(n: int, model: str = "NVIDIA H100") -> list[slots.Gpu]:
    return [slots.Gpu(i, model, f"GPU-{i:04d}", minor=i) for i in range(n)]


def test_slots_share_the_machine_and_never_mix_gpu_models():
    cpu = slots.local(2, cards=[], cpus=4)
    assert [s.name for s in cpu] == ["w1", "w2"] and all(dict(s.env)["OMP_NUM_THREADS"] == "2" for s in cpu)
    assert dict(slots.local(3, cards=[], cpus=2)[0].env)["OMP_NUM_THREADS"] == "1"
    assert slots.oversubscribed(slots.local(2, cards=[], cpus=2), cpus=2) == ""
    warning = slots.oversubscribed(slots.local(3, cards=[], cpus=2), cpus=2)
    assert warning.startswith("warning: 3 workers on 2 CPU cores") and "--workers 2 or fewer" in warning
    assert slots.shared_machine(slots.local(1, cards=[], cpus=2)) == ""
    assert "share this machine" in slots.shared_machine(slots.local(2, cards=[], cpus=2))
    gpus = slots.local("auto", cards=h100s(4), environ={})
    assert [(s.name, s.gpu, dict(s.env)["CUDA_VISIBLE_DEVICES"]) for s in gpus] == [
        ("w1", 0, "GPU-0000"), ("w2", 1, "GPU-0001"), ("w3", 2, "GPU-0002"), ("w4", 3, "GPU-0003")]
    assert [s.gpu for s in slots.local("auto", cards=h100s(4), environ={"CUDA_VISIBLE_DEVICES": "2,3"})] == [2, 3]
    with pytest.raises(AutoresearchError, match="different models"):
        slots.local(2, cards=h100s(1) + [slots.Gpu(1, "NVIDIA A100")], environ={})
    # the mixed pool is fine once the visible GPUs are of one model
    assert len(slots.local("auto", cards=h100s(1) + [slots.Gpu(1, "NVIDIA A100")],
                           environ={"CUDA_VISIBLE_DEVICES": "1"})) == 1
    with pytest.raises(AutoresearchError, match="one worker per GPU"):
        slots.local(3, cards=h100s(2), environ={})
    assert slots.parse_count("auto") == "auto" and slots.parse_count("3") == 3
    for bad in ("0", "two"):
        with pytest.raises(AutoresearchError):
            slots.parse_count(bad)


def test_bad_worker_counts_are_one_line_and_touch_nothing(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    before = git(root, "rev-parse", "HEAD")
    r = run_pool(root, agent, "--workers", "0")
    assert r.returncode != 0 and r.stderr.strip() == "error: --workers must be 1 or more"
    assert git(root, "rev-parse", "HEAD") == before and not (root / "results.tsv").exists()


def test_a_change_that_pretends_the_sandbox_failed_is_its_own_crash(tmp_path, agent):
    """train.py printing what a failing bubblewrap prints is the code's crash, not the machine's:
    whether the sandbox came up is told by a channel the trainer cannot write. No worker is
    retired and nothing runs twice."""
    if not sandbox.detect().on:
        pytest.skip("needs the sandbox: a machine failure is told apart only with one")
    root = tmp_path / "ws"
    llm_like(root)
    body = "import sys\nprint('bwrap: Creating new namespace failed: Operation not permitted', flush=True)\nsys.exit(1)"
    env = agent([{"value": 0.5, "body": body, "desc": "pretend"}, {"value": 2.0, "desc": "honest a"},
                 {"value": 3.0, "desc": "honest b"}])
    r = run_pool(root, agent, "--workers", "2", "--max-experiments", "3", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = [(x.status, x.description, x.reason.split(":")[0]) for x in rows(root) if x.kind == "experiment"]
    assert sorted(got) == [("crash", "pretend", "exit status 1"), ("discard", "honest a", "not better"),
                           ("discard", "honest b", "not better")], got
    assert len({x.worker for x in rows(root) if x.description.startswith("honest")}) >= 1
    assert clean(root)


def test_a_merge_of_two_wins_that_together_carry_too_much_is_not_made(tmp_path):
    """Each win is under the guard's caps; their three-way merge is new text that no guard saw,
    and it is checked like any change: over the caps, it goes back to the agent."""
    from autoresearch.engine import Engine, guard
    from autoresearch.engine.pool import merge_onto
    from autoresearch.workspace import Workspace

    root = tmp_path / "ws"
    llm_like(root)
    base = git(root, "rev-parse", "HEAD")
    text = (root / "train.py").read_text()
    half = guard.MAX_CONSTANTS // 2 + 10
    numbers = lambda name: f"{name} = [" + ", ".join(f"[{i}.5]" for i in range(half)) + "]\n"
    (root / "train.py").write_text(numbers("A") + text)
    assert guard.payload_problem("train.py", (root / "train.py").read_bytes()) == ""
    git(root, "commit", "-qam", "a")
    first = git(root, "rev-parse", "HEAD")
    git(root, "reset", "-q", "--hard", base)
    (root / "train.py").write_text(text + numbers("B"))
    git(root, "commit", "-qam", "b")
    second = git(root, "rev-parse", "HEAD")
    e = Engine(Workspace.load(root), out=lambda line: None)
    assert merge_onto(e, first, base, base) is not None  # one of them alone merges
    assert merge_onto(e, first, base, second) is None


def test_a_pool_candidates_crash_shows_the_agent_that_candidates_own_log(tmp_path, agent):
    """In a pool, each run's log is kept and named on its row: the prompt after a crash shows
    the log of the run that crashed (run.log holds only the baseline's output there)."""
    root = tmp_path / "ws"
    llm_like(root)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    crash = "raise SystemExit('the candidate broke: marker-7f3a')"
    env = {**agent([{"value": 0.9, "body": crash, "desc": "a crashing change"},
                    {"value": 1.2, "desc": "a later change"}, {"desc": "look", "append": {"notes.md": "x\n"}}]),
           "PROMPTS": str(prompts)}
    # one worker thread: the second proposal waits for it, so the third prompt comes right after the crash
    r = run_pool(root, agent, "--workers", "1", "--max-experiments", "3", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    crashed = next(x for x in rows(root) if x.description == "a crashing change")
    assert crashed.status == "crash" and crashed.cause == "code" and crashed.log, crashed
    log = StateFolder(root).logs_dir / crashed.log
    assert "marker-7f3a" in log.read_text()
    later = sorted(prompts.glob("*.md"), key=lambda p: int(p.stem))
    shown = [p.read_text() for p in later if "## The last run crashed" in p.read_text()]
    # the crash is recorded once its worker finished: some later prompt shows it, with its own log
    assert any("marker-7f3a" in text and "a crashing change" in text for text in shown), [p.name for p in later]
