"""`autoresearch run`: the unattended loop, driven by a scripted agent (the `command` agent
running a small script) in real workspaces, as a real subprocess: noop / invalid / agent
errors, cost limits, kill -9 and resume, Ctrl-C, refusals at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.research.results import line
from support import clean, cli, git, head, llm_like, no_journals, pid_alive, rows, train_text, wait_for

AGENT = r'''
import json, os, re, sys
from pathlib import Path

steps = json.loads(Path(os.environ["STEPS"]).read_text())
counter = Path(os.environ["STEPS"] + ".n")
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
step = steps[n] if n < len(steps) else {"desc": "nothing left"}
if os.environ.get("PROMPTS"):  # keep each prompt the agent was shown, in order
    Path(os.environ["PROMPTS"], f"{n}.md").write_text(Path(os.environ["AUTORESEARCH_PROMPT_FILE"]).read_text())
if "usage" in step:
    Path(os.environ["AUTORESEARCH_USAGE_FILE"]).write_text(json.dumps(step["usage"]))
if "fail" in step:
    print(step["fail"], file=sys.stderr)
    sys.exit(1)
if "value" in step:
    text = Path("train.py").read_text()
    text = re.sub(r"^VALUE = .*$", f"VALUE = {step['value']!r}", text, flags=re.M)
    if "body" in step:
        text = text.replace("# body\n", step["body"] + "\n")
    Path("train.py").write_text(text)
for name, content in step.get("write", {}).items():
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    Path(name).write_text(content)
for name, content in step.get("append", {}).items():
    with open(name, "a") as fh:
        fh.write(content)
for old, new in step.get("replace", {}).items():
    Path("train.py").write_text(Path("train.py").read_text().replace(old, new))
for command in step.get("shell", []):  # what an agent with a shell does besides editing
    import subprocess
    subprocess.run(command, shell=True, check=True)
if "fail_after" in step:  # what it did stays: an agent that failed halfway
    print(step["fail_after"], file=sys.stderr)
    sys.exit(1)
print("DESCRIPTION: " + step.get("desc", "a change"))
'''


@pytest.fixture
def agent(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    steps = tmp_path / "steps.json"

    def configure(step_list) -> dict:
        steps.write_text(json.dumps(step_list))
        return {"STEPS": str(steps)}

    configure.command = f"{sys.executable} {script}"
    return configure


def loop(root: Path, agent, *args: str, env=None, timeout: float = 180) -> subprocess.CompletedProcess:
    return cli("run", "--agent", "command", "--agent-command", agent.command, *args, cwd=root, env=env, timeout=timeout)


def start_loop(root: Path, agent, *args: str, env=None) -> subprocess.Popen:
    # Ctrl-C must reach the loop however the suite was launched (`nohup pytest &` ignores SIGINT,
    # and an ignored signal is inherited): the child starts with the default disposition.
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--agent", "command", "--agent-command", agent.command, *args],
        cwd=root, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def current(root: Path, kind: str = "experiment") -> dict | None:
    """The run in flight, once started, if it is of `kind`."""
    path = root / ".autoresearch" / "current.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("pid") and data.get("kind") == kind else None


@pytest.fixture
def unjailed(monkeypatch):
    """Runs without the sandbox: these scripts write their pid outside their folder so the test
    can find the training process (a sandboxed run cannot; its own tests: test_trust.py)."""
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")


def test_the_loop_records_every_kind_of_proposal(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root, branch="")
    env = agent([
        {"value": 0.5, "desc": "VALUE 1.0 -> 0.5", "usage": {"tokens_in": 1200, "tokens_out": 80, "cost_usd": 0.01}},
        {"desc": "thinking only", "append": {"notes.md": "idea: try 0.4\n"}},
        {"write": {"prepare.py": "TIME_BUDGET = 999\n"}, "desc": "edit the harness"},
        {"fail": "rate limited"},
        {"value": 0.7, "desc": "VALUE 0.5 -> 0.7"},
    ])
    r = loop(root, agent, "--tag", "t1", "--max-experiments", "4", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "created autoresearch/t1 from main" in r.stdout
    assert "agent command failed (1 in a row): command failed (exit status 1): rate limited" in r.stdout
    got = [(x.kind, x.status, x.description) for x in rows(root)]
    assert got == [
        ("baseline", "keep", "baseline"), ("baseline", "keep", "baseline"),
        ("experiment", "keep", "VALUE 1.0 -> 0.5"),
        ("rerun", "keep", "re-run of the frontier beside: VALUE 1.0 -> 0.5"), ("confirm", "keep", "VALUE 1.0 -> 0.5"),
        ("experiment", "noop", "thinking only"),
        ("experiment", "invalid", "edit the harness"),
        ("experiment", "discard", "VALUE 0.5 -> 0.7"),
    ]
    kept = rows(root)[2]
    assert (kept.agent, kept.tokens_in, kept.tokens_out, kept.cost_usd) == ("command", 1200, 80, 0.01)
    assert head(root)[:7] == kept.commit and git(root, "branch", "--show-current") == "autoresearch/t1"
    assert (root / "notes.md").read_text() == "idea: try 0.4\n"
    assert "TIME_BUDGET = 999" not in (root / "prepare.py").read_text()
    assert git(root, "status", "--porcelain") == "?? notes.md"
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("reached --max-experiments: 4 experiments on autoresearch/t1 "
                           "(1 keep, 1 discard, 1 invalid, 1 noop); 2 baseline runs")
    assert "val_bpb 1.000000 -> 0.500000" in last
    state = json.loads((root / ".autoresearch" / "loop.json").read_text())
    assert state["state"] == "stopped" and state["branch"] == "autoresearch/t1" and state["agent"] == "command"


def test_an_agent_that_moves_head_to_a_line_of_its_own_starts_no_baseline_there(tmp_path, agent):
    """A new branch at the agent's own commit (which edits the harness) would be a new line whose
    baseline nothing checks: the loop takes HEAD back to its branch, drops that edit, and goes on."""
    root = tmp_path / "ws"
    llm_like(root, branch="")
    harness = (root / "prepare.py").read_text()
    git_as_agent = "git -c user.name=agent -c user.email=agent@example.com"
    env = agent([
        {"value": 0.1, "write": {"prepare.py": "TIME_BUDGET = 999\n"}, "desc": "a line of my own",
         "shell": ["git switch -qc autoresearch/mine", f"{git_as_agent} commit -qam mine"]},
        {"value": 0.5, "desc": "VALUE 1.0 -> 0.5"},
    ])
    r = loop(root, agent, "--tag", "t1", "--max-experiments", "2", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HEAD was on autoresearch/mine: back on autoresearch/t1" in r.stdout
    got = rows(root)
    assert {x.branch for x in got} == {"autoresearch/t1"}
    assert [x.kind for x in got if x.kind in ("baseline", "experiment")] == ["baseline", "baseline", "experiment", "experiment"]
    assert [x.status for x in got if x.kind == "experiment"] == ["noop", "keep"]
    assert git(root, "branch", "--show-current") == "autoresearch/t1" and head(root)[:7] == got[3].commit
    assert (root / "prepare.py").read_text() == harness and clean(root)


def test_links_an_agent_leaves_in_its_own_folders_bring_in_nothing_and_send_out_nothing(tmp_path, agent):
    """A confined agent that makes the notes a link to a file outside, and the state folder a link
    to a folder outside: the next prompt holds nothing of that file, and nothing the engine
    writes (the agent's transcript, the prompt, the loop's record) lands in that folder."""
    root = tmp_path / "ws"
    llm_like(root, branch="")
    secret, outside = tmp_path / "secret.txt", tmp_path / "outside"
    secret.write_text("TOP-SECRET-outside-the-workspace\n")
    outside.mkdir()
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    env = agent([
        {"fail_after": "planted", "shell": [f"rm -f notes.md && ln -s {secret} notes.md",
                                            f"rm -rf .autoresearch && ln -s {outside} .autoresearch"]},
        {"value": 0.5, "desc": "refused: the notes are a link"},
        {"value": 0.5, "desc": "VALUE 1.0 -> 0.5"},
    ])
    r = loop(root, agent, "--tag", "t1", "--max-experiments", "2", env={**env, "PROMPTS": str(prompts)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list(prompts.glob("*.md"))) == 3 and not any("TOP-SECRET" in p.read_text() for p in prompts.glob("*.md"))
    assert list(outside.iterdir()) == []  # nothing written through the link
    assert not (root / ".autoresearch").is_symlink()
    assert [x.status for x in rows(root) if x.kind == "experiment"] == ["invalid", "keep"], r.stdout


def test_max_cost_stops_the_loop_cleanly(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    usage = {"tokens_in": 10, "tokens_out": 1, "cost_usd": 0.4}
    env = agent([{"value": 1.0 + i, "desc": f"try {i}", "usage": usage} for i in range(1, 10)])
    r = loop(root, agent, "--max-cost", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert "resuming autoresearch/test" in r.stdout
    experiments = [x for x in rows(root) if x.kind == "experiment"]
    assert len(experiments) == 3 and sum(x.cost_usd for x in experiments) == pytest.approx(1.2)
    assert r.stdout.strip().splitlines()[-1].startswith("reached --max-cost 1")
    assert clean(root)


def test_an_agents_absurd_figures_and_escape_sequences_neither_stop_nor_reach_the_terminal(tmp_path, agent):
    """Reported usage is a claim: a token count past any integer the store holds, a cost of NaN
    or below zero are not recorded (and cannot blind --max-cost); an agent's error text and a
    file name it made reach the terminal without their escape sequences."""
    root = tmp_path / "ws"
    llm_like(root)
    escape = "\x1b]0;PWNED\x07\x1b[2J\x1b[31m"
    env = agent([
        {"value": 0.5, "desc": "a win", "usage": {"tokens_in": 1e30, "tokens_out": 5, "cost_usd": float("nan")}},
        {"fail": escape + "FAKE: val_bpb 0.1 keep"},
        {"value": 0.4, "desc": "a file of its own", "write": {escape + "red.py": "x = 1\n"},
         "usage": {"tokens_in": -3, "tokens_out": 2.5, "cost_usd": -1}},
    ])
    r = loop(root, agent, "--max-experiments", "2", "--max-cost", "0.5", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    assert "failed (1 in a row): command failed (exit status 1): FAKE: val_bpb 0.1 keep" in r.stdout  # told, as text
    win, other = [x for x in rows(root) if x.kind == "experiment"]
    assert win.status == "keep" and (win.tokens_in, win.tokens_out, win.cost_usd) == (0, 5, None)
    assert other.status == "invalid" and (other.tokens_in, other.tokens_out, other.cost_usd) == (0, 0, None)
    again = loop(root, agent, "--max-experiments", "1", env=env)  # nothing left half-recorded
    assert again.returncode == 0, again.stdout + again.stderr
    status = cli("status", "--json", cwd=root)
    assert status.returncode == 0 and "Infinity" not in status.stdout and "NaN" not in status.stdout


def test_an_agent_that_keeps_failing_stops_the_loop_with_a_clear_message(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    env = agent([{"fail": "invalid api key"}] * 5)
    r = loop(root, agent, "--max-experiments", "5", env=env)
    assert r.returncode == 1
    assert "failed 3 times in a row (last: command failed (exit status 1): invalid api key); stopping" in r.stderr
    assert [x.kind for x in rows(root)] == ["baseline", "baseline"]
    assert clean(root)


def test_kill_9_of_the_loop_mid_run_then_resume(tmp_path, agent, unjailed):
    root = tmp_path / "ws"
    llm_like(root, branch="")
    pidfile = tmp_path / "train.pid"
    body = f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)"
    env = agent([{"value": 0.5, "body": body, "desc": "slow change"}, {"value": 2.0, "desc": "after the crash"}])
    proc = start_loop(root, agent, "--tag", "k9", env=env)
    try:
        assert wait_for(lambda: current(root) is not None and pidfile.is_file() and pidfile.read_text(), timeout=60), proc.stderr
        frontier = rows(root)[0].commit
        train_pid = int(pidfile.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert pid_alive(train_pid)  # orphaned: its own process group outlives the loop
    finally:
        if proc.poll() is None:
            proc.kill()
    r = loop(root, agent, "--tag", "k9", "--max-experiments", "1", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "recovered an interrupted experiment" in r.stdout and "stopped its leftover processes" in r.stdout
    assert wait_for(lambda: not pid_alive(train_pid), timeout=15)
    got = [(x.status, x.reason, x.description) for x in rows(root)][2:]
    assert got[0] == ("interrupted", "interrupted", "slow change")
    assert got[1][0] == "discard" and got[1][2] == "after the crash"
    assert head(root)[:7] == frontier and clean(root)
    assert no_journals(root)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_kills_the_run_records_it_and_leaves_the_frontier(tmp_path, agent, sig, unjailed):
    root = tmp_path / "ws"
    llm_like(root)
    pidfile = tmp_path / "train.pid"
    body = f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)"
    env = agent([{"value": 0.5, "body": body, "desc": "slow change"}])
    proc = start_loop(root, agent, env=env)
    try:
        assert wait_for(lambda: current(root) is not None and pidfile.is_file() and pidfile.read_text(), timeout=60)
        frontier = rows(root)[0].commit
        train_pid = int(pidfile.read_text())
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert out.strip().splitlines()[-1].startswith(
        "interrupted: 1 experiment on autoresearch/test (1 interrupted); 2 baseline runs;")
    assert not pid_alive(train_pid)
    last = rows(root)[-1]
    assert (last.status, last.reason, last.description) == ("interrupted", "interrupted", "slow change")
    assert len(rows(root)) == 3
    assert head(root)[:7] == frontier and clean(root)
    assert no_journals(root)


def stalls_on_confirm(tmp_path: Path) -> tuple[Path, str]:
    """(pid file, train.py body): a change whose first run finishes and whose second (its
    confirm run) writes its pid and sleeps."""
    pidfile, runs = tmp_path / "train.pid", tmp_path / "runs"
    body = (f"import os, time\nfrom pathlib import Path\nruns = Path({str(runs)!r})\n"
            "n = int(runs.read_text()) if runs.exists() else 0\nruns.write_text(str(n + 1))\n"
            f"if n >= 1:\n    open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n    time.sleep(120)")
    return pidfile, body


def test_ctrl_c_during_a_confirmation_keeps_both_finished_runs(tmp_path, agent, unjailed):
    """A win's first run and the frontier's re-run finished; Ctrl-C comes during its confirm run."""
    root = tmp_path / "ws"
    llm_like(root)
    pidfile, body = stalls_on_confirm(tmp_path)
    env = agent([{"value": 0.5, "body": body, "desc": "a win"}])
    proc = start_loop(root, agent, env=env)
    try:
        assert wait_for(lambda: pidfile.is_file() and pidfile.read_text() and current(root, "confirm") is not None, timeout=90)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    got = [(r.commit, r.status, r.kind, r.value) for r in rows(root)]
    base = got[0][0]
    assert [g[1:3] for g in got] == [("keep", "baseline"), ("keep", "baseline"), ("discard", "experiment"),
                                      ("keep", "rerun"), ("interrupted", "confirm")]
    assert got[3][0] == base and got[3][3] == 1.0  # the frontier's re-run: a measurement of the frontier
    assert got[2][3] == 0.5 and got[4][3] == 0.0  # the candidate's finished run keeps its value
    assert rows(root)[2].reason.startswith("not decided: interrupted")
    last = out.strip().splitlines()[-1]  # the interrupted confirm run is no second experiment
    assert last.startswith("interrupted: 1 experiment on autoresearch/test (1 discard); 2 baseline runs, ")
    assert "1 more run interrupted;" in last
    assert head(root)[:7] == base and clean(root)
    assert no_journals(root)


def test_a_dirty_tree_at_start_is_one_clear_line_and_nothing_is_touched(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root, branch="")
    (root / "train.py").write_text(train_text(0.3))
    r = loop(root, agent, env=agent([]))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: the workspace has uncommitted changes (train.py); commit or discard them first (nothing was touched)"]
    assert git(root, "branch", "--show-current") == "main"
    assert (root / "train.py").read_text() == train_text(0.3)
    assert not (root / "results.tsv").exists()


def test_a_corrupted_results_tsv_is_not_read_and_becomes_the_engines_copy_again(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root)
    (root / "results.tsv").write_text("this is not a results file\n")
    r = loop(root, agent, "--max-experiments", "0", env=agent([]))
    assert r.returncode == 0, r.stderr
    text = (root / "results.tsv").read_text()
    assert "this is not a results file" not in text and [x.kind for x in rows(root)] == ["baseline", "baseline"]


def test_branches_default_to_the_date_resume_and_get_a_suffix(tmp_path, agent):
    from autoresearch.loop import date_tag

    root = tmp_path / "ws"
    llm_like(root, branch="")
    env = agent([])
    tag = date_tag()
    r = loop(root, agent, "--max-experiments", "0", env=env)
    assert r.returncode == 0, r.stderr
    assert f"created autoresearch/{tag} from main" in r.stdout
    r = loop(root, agent, "--max-experiments", "0", env=env)
    assert f"resuming autoresearch/{tag}" in r.stdout
    assert [x.kind for x in rows(root)] == ["baseline", "baseline"]  # the baseline is not run again
    git(root, "switch", "-q", "main")
    r = loop(root, agent, "--max-experiments", "0", env=env)
    assert f"created autoresearch/{tag}-2 from main" in r.stdout
    assert [x.branch for x in rows(root)] == [f"autoresearch/{tag}"] * 2 + [f"autoresearch/{tag}-2"] * 2


def test_a_bad_tag_is_refused(tmp_path, agent):
    root = tmp_path / "ws"
    llm_like(root, branch="")
    r = loop(root, agent, "--tag", "no spaces/allowed", env=agent([]))
    assert r.returncode == 1 and "--tag" in r.stderr


def test_run_outside_a_workspace_creates_research(tmp_path):
    from autoresearch.loop import open_or_create

    lines = []
    ws = open_or_create(tmp_path, lines.append)
    assert ws.root == (tmp_path / "research").resolve()
    assert ws.config.template == "llm" and (ws.root / "train.py").is_file()
    assert lines[0].startswith(f"created the workspace {tmp_path / 'research'} (profile ")
    again = open_or_create(tmp_path, lines.append)
    assert again.root == ws.root and lines[-1].startswith("using the workspace")


def test_an_agent_that_is_not_ready_is_refused_before_the_baseline(tmp_path):
    root = tmp_path / "ws"
    llm_like(root)
    r = cli("run", "--agent", "command", cwd=root)
    assert r.returncode == 1 and "agent 'command' is not ready" in r.stderr
    assert not (root / "results.tsv").exists()


def test_kill_9_during_a_confirmation_records_the_finished_runs_at_the_next_start(tmp_path, agent, unjailed):
    """The engine dies with the win's first run and the frontier's re-run measured: the next
    start records both from the journal (the candidate's undecided), the confirm run as interrupted."""
    root = tmp_path / "ws"
    llm_like(root)
    pidfile, body = stalls_on_confirm(tmp_path)
    env = agent([{"value": 0.5, "body": body, "desc": "a win"}, {"value": 2.0, "desc": "after the crash"}])
    proc = start_loop(root, agent, env=env)
    try:
        assert wait_for(lambda: pidfile.is_file() and pidfile.read_text() and current(root, "confirm") is not None, timeout=90)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(rows(root)) == 2  # only the baseline was recorded before the engine died
    r = loop(root, agent, "--max-experiments", "1", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "recorded its 2 finished runs undecided, and the one in flight as interrupted" in r.stdout
    got = [(r.commit, r.status, r.kind, r.value) for r in rows(root)]
    base = got[0][0]
    assert [g[1:3] for g in got[:5]] == [("keep", "baseline"), ("keep", "baseline"), ("discard", "experiment"),
                                          ("keep", "rerun"), ("interrupted", "confirm")]
    assert got[2][3] == 0.5 and got[3][0] == base and got[3][3] == 1.0
    assert rows(root)[2].reason == "not decided: the engine stopped before the decision"
    assert got[4][0] == got[2][0] and rows(root)[5].description == "after the crash"
    assert head(root)[:7] == base and clean(root)


def test_a_keep_row_appended_after_kill_9_is_not_adopted(tmp_path, agent, unjailed):
    """The attack: kill the engine mid-run, then append a `keep` row for the candidate to
    results.tsv. Recovery reads the engine's own ledger, so the forged row is dropped."""
    root = tmp_path / "ws"
    llm_like(root)
    pidfile = tmp_path / "train.pid"
    body = f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)"
    env = agent([{"value": 0.5, "body": body, "desc": "slow change"}, {"value": 2.0, "desc": "after the crash"}])
    proc = start_loop(root, agent, env=env)
    try:
        assert wait_for(lambda: current(root) is not None and pidfile.is_file() and pidfile.read_text(), timeout=60), proc.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    frontier, candidate = rows(root)[0].commit, json.loads((root / ".autoresearch" / "current.json").read_text())["commit"]
    assert candidate != frontier and head(root)[:7] == frontier  # the candidate is a commit off the branch
    forged = rows(root)[-1].__class__(candidate, 0.1, 0.5, "keep", "slow change", timestamp="2099-01-01T00:00:00Z",
                                      kind="experiment", branch="autoresearch/test")
    with open(root / "results.tsv", "a") as fh:
        fh.write(line(forged))
    r = loop(root, agent, "--max-experiments", "1", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "results.tsv had 1 line the engine did not write: restored" in r.stdout
    got = rows(root)
    assert not [x for x in got if x.status == "keep" and x.commit == candidate]
    assert (got[2].status, got[2].description) == ("interrupted", "slow change")
    assert head(root)[:7] != candidate and clean(root)
