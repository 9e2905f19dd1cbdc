"""Whole loops driven by agents: `autoresearch run` with the openai agent against the loopback
server, and with a third-party agent from an entry point. A blank-template workspace with a
tiny script stands in for training, so each experiment takes a fraction of a second."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from autoresearch import resultsfile as results
from autoresearch.agents import context
from autoresearch.proc import run
from fakes.llm_server import FakeLLM, search_replace
from fakes.plugin import install
from support import blank, cli

KEY = "sk-test-run-0123456789SECRET"

SCORE = """\
import os

LR = 0.5
print("key:", "present" if os.environ.get("OPENAI_API_KEY") else "absent")
print(f"score: {abs(LR - 0.1) + 1.0:.6f}")
"""

ANSWERS = [
    search_replace("score.py", "LR = 0.5", "LR = 0.2", "lower LR to 0.2"),  # 1.4 -> 1.1: keep
    search_replace("score.py", "LR = 0.2", "LR = 0.9", "raise LR to 0.9")  # 1.1 -> 1.8: discard
    + "<<<<<<< APPEND notes.md\n- LR 0.9 is a guess; lower may be better\n>>>>>>> END\n",
    search_replace("program.md", "# Research brief", "# Research brief (mine now)", "rewrite the brief"),  # invalid
]


def experiments(ws):
    _, rows = results.read(ws.results_path)
    return [r for r in rows if r.kind == "experiment"]


def files_under(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(root).parts:
            yield path


def test_run_with_the_openai_agent_keeps_discards_and_reverts(tmp_path):
    ws = blank(tmp_path, text=SCORE)
    brief = (ws.root / "program.md").read_text()

    def reply(request):
        asked = sum(1 for r in llm.history if r.api == "openai")
        return ANSWERS[asked - 1] if asked <= len(ANSWERS) else "DESCRIPTION: nothing more to try\n"

    with FakeLLM([reply] * 10) as llm:
        done = cli("run", "--agent", "openai", "--base-url", llm.url + "/v1", "--model", "fake-model",
                   "--max-experiments", "3", "--tag", "agents", cwd=ws.root, env={"OPENAI_API_KEY": KEY}, timeout=300)
        prompts = [r.last_user() for r in llm.history]
    assert done.returncode == 0, done.stdout + done.stderr

    rows = experiments(ws)
    assert [r.status for r in rows[:3]] == ["keep", "discard", "invalid"]
    assert [r.description for r in rows[:3]] == ["lower LR to 0.2", "raise LR to 0.9", "rewrite the brief"]
    assert all(r.agent == "openai" and (r.tokens_in or 0) > 0 for r in rows[:3])
    # the tree is the frontier: the kept change, the brief as it was
    assert "LR = 0.2" in (ws.root / "score.py").read_text()
    assert (ws.root / "program.md").read_text() == brief
    status = run(["git", "status", "--porcelain"], cwd=ws.root).stdout.splitlines()
    assert set(status) <= {"?? notes.md"}  # the notes live beside the commits, never in them

    # the prompts carried the history, and stayed under the bound
    assert len(prompts) >= 3
    assert all(len(p) <= context.MAX_CHARS for p in prompts)
    assert "lower LR to 0.2" in prompts[1] and "keep" in prompts[1]
    assert "raise LR to 0.9" in prompts[2] and "discard" in prompts[2]
    assert "+LR = 0.9" in prompts[2]  # the diff of the discarded change
    # the notes written with the discarded change survived its reset and were shown next time
    assert "LR 0.9 is a guess" in prompts[2]
    assert "LR 0.9 is a guess" in (ws.root / "notes.md").read_text()

    # the key reached the server only: not the training process, the results, the logs, the state
    assert "key: absent" in ws.log_path.read_text()
    for path in files_under(ws.root):
        assert KEY not in path.read_text(errors="replace"), path
    assert KEY not in done.stdout + done.stderr


def test_run_with_a_third_party_agent_from_an_entry_point(tmp_path):
    site = install(tmp_path / "site")
    ws = blank(tmp_path)
    done = cli("run", "--agent", "nudger", "--max-experiments", "2", "--tag", "plugin",
               cwd=ws.root, env={"PYTHONPATH": str(site)}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = experiments(ws)
    assert [(r.status, r.description, r.agent) for r in rows[:2]] == [
        ("keep", "LR 0.5 -> 0.4", "nudger"), ("keep", "LR 0.4 -> 0.3", "nudger")]
    assert rows[0].tokens_in == 11 and rows[0].cost_usd == 0.001


def test_reported_cost_is_recorded_and_max_cost_stops_the_loop(tmp_path):
    from fakes.llm_server import Answer

    ws = blank(tmp_path, text=SCORE)
    steps = [search_replace("score.py", f"LR = {a}", f"LR = {b}", f"LR {a} -> {b}")
             for a, b in (("0.5", "0.4"), ("0.4", "0.3"), ("0.3", "0.2"), ("0.2", "0.1"))]
    with FakeLLM([Answer(text, cost=0.6) for text in steps]) as llm:
        done = cli("run", "--agent", "openai", "--base-url", llm.url + "/v1", "--model", "m",
                   "--max-cost", "1", "--max-experiments", "4", "--tag", "cost", cwd=ws.root, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = experiments(ws)
    assert [r.cost_usd for r in rows] == [0.6, 0.6]  # the second call reached $1.20 >= $1: stop
    assert "max-cost" in done.stdout


def test_a_missing_program_or_key_is_one_line_before_anything_runs(tmp_path):
    ws = blank(tmp_path)
    # a PATH with python and git only, whatever else this machine has installed
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git"))
    path = os.path.dirname(sys.executable) + os.pathsep + str(tools)
    for args, expected in ((["--agent", "claude"], "claude not found on PATH"),
                           (["--agent", "openai"], "OPENAI_API_KEY is not set")):
        done = cli("run", *args, "--max-experiments", "1", "--tag", "x" + args[1],
                   cwd=ws.root, env={"PATH": path, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}, timeout=300)
        assert done.returncode == 1
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0]
    assert not ws.results_path.exists()  # no baseline ran
