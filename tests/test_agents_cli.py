"""The agents that run a program: claude, codex, aider (fakes on PATH) and any command."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import sys
import textwrap
from pathlib import Path

import pytest

from autoresearch import agents
from autoresearch.agents import context
from autoresearch.errors import AutoresearchError
from support import blank, dirty, head, pid_alive

FAKES = Path(__file__).parent / "fakes" / "bin"
KEY = "sk-test-cli-0123456789SECRET"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Put the fake programs first on PATH; return a function that scripts their next calls."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    history = tmp_path / "history.jsonl"
    monkeypatch.setenv("FAKE_AGENT_HISTORY", str(history))

    def script(*steps):
        path = tmp_path / "script.json"
        path.write_text(json.dumps(list(steps)))
        monkeypatch.setenv("FAKE_AGENT_SCRIPT", str(path))

    def calls():
        return [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []

    script.calls = calls
    return script


LOWER = {"file": "score.py", "search": "LR = 0.5", "replace": "LR = 0.2"}
NOTE = {"file": "notes.md", "append": "- LR 0.2: trying\n"}
HARNESS = {"file": "program.md", "write": "# anything goes\n"}


# ---------------------------------------------------------------- claude


def test_claude_edits_only_what_its_permission_rules_allow(tmp_path, fake):
    ws = blank(tmp_path)
    fake({"edits": [LOWER, NOTE, HARNESS], "reply": "Lowered it.\nDESCRIPTION: lower LR to 0.2"})
    ctx = context.build(ws, [])
    proposal = agents.load("claude", model="sonnet").propose(ctx)
    assert proposal.description == "lower LR to 0.2"
    assert "LR = 0.2" in (ws.root / "score.py").read_text()
    assert (ws.root / "notes.md").read_text() == "- LR 0.2: trying\n"
    assert dirty(ws) == ["notes.md", "score.py"]  # program.md was denied by the rules
    call = fake.calls()[0]
    assert call["refused"] == ["program.md"]
    argv = call["argv"]
    assert argv[:1] == ["-p"] and argv[argv.index("--permission-mode") + 1] == "dontAsk"
    assert argv[argv.index("--output-format") + 1] == "json"
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert "Bash" in argv[argv.index("--disallowedTools") + 1]
    assert call["prompt"].startswith(ctx.prompt)  # the bounded context, on stdin
    assert Path(call["cwd"]) == ws.root
    assert proposal.usage.tokens_in == 2000 and proposal.usage.tokens_out == 420
    assert proposal.usage.cost_usd == pytest.approx(0.0123)


def test_claude_reporting_an_error_raises(tmp_path, fake):
    ws = blank(tmp_path)
    fake({"edits": [], "reply": "Invalid API key", "is_error": True, "exit": 1})
    with pytest.raises(AutoresearchError, match="Invalid API key"):
        agents.load("claude").propose(context.build(ws, []))


def test_a_timed_out_agent_leaves_the_files_as_they_were(tmp_path, fake):
    ws = blank(tmp_path)
    fake({"edits": [LOWER], "reply": "DESCRIPTION: slow", "sleep_after": 30})
    proposal = agents.load("claude", agent_timeout=1).propose(context.build(ws, []))
    assert "timed out after 1 s" in proposal.description
    assert dirty(ws) == []
    assert "timed out" in (ws.state_dir / "agent.log").read_text()


# ---------------------------------------------------------------- codex


def test_codex_exec_in_the_sandbox_never_asking(tmp_path, fake):
    ws = blank(tmp_path)
    fake({"edits": [LOWER, {"file": "../escape.py", "write": "x = 1\n"}], "reply": "DESCRIPTION: lower LR to 0.2"})
    ctx = context.build(ws, [])
    proposal = agents.load("codex", model="gpt-5.1-codex", base_url="http://127.0.0.1:9/v1").propose(ctx)
    assert proposal.description == "lower LR to 0.2"
    assert dirty(ws) == ["score.py"]
    assert not (tmp_path / "escape.py").exists()  # outside the workspace: the sandbox said no
    call = fake.calls()[0]
    argv = call["argv"]
    assert argv[0] == "exec" and argv[-1] == "-"
    assert argv[argv.index("--sandbox") + 1] == "workspace-write"
    assert 'approval_policy="never"' in argv
    assert "--json" in argv and Path(argv[argv.index("-C") + 1]) == ws.root
    assert argv[argv.index("-m") + 1] == "gpt-5.1-codex"
    assert call["openai_base_url"] == call["config_base_url"] == "http://127.0.0.1:9/v1"
    assert call["prompt"].startswith(ctx.prompt)
    assert (proposal.usage.tokens_in, proposal.usage.tokens_out, proposal.usage.cost_usd) == (2400, 350, None)


def test_codex_failing_raises_its_error(tmp_path, fake):
    ws = blank(tmp_path)
    fake({"edits": [], "reply": "", "exit": 1, "stderr": "401 Unauthorized"})
    with pytest.raises(AutoresearchError, match="codex failed: 401 Unauthorized"):
        agents.load("codex").propose(context.build(ws, []))


# ---------------------------------------------------------------- aider


def test_aider_edits_the_files_it_is_given_and_leaves_git_alone(tmp_path, fake):
    ws = blank(tmp_path)
    before = head(ws.root)
    gitignore = (ws.root / ".gitignore").read_text()
    fake({"edits": [LOWER, NOTE, HARNESS], "reply": "DESCRIPTION: lower LR to 0.2"})
    ctx = context.build(ws, [])
    proposal = agents.load("aider", model="openai/gpt-4o", base_url="http://127.0.0.1:9/v1").propose(ctx)
    assert proposal.description == "lower LR to 0.2"
    assert dirty(ws) == ["notes.md", "score.py"]  # no .aider* files, no program.md
    assert head(ws.root) == before  # aider committed nothing
    assert (ws.root / ".gitignore").read_text() == gitignore
    call = fake.calls()[0]
    assert call["argv"][-2:] == ["score.py", "notes.md"]
    assert "--yes-always" in call["argv"] and "--no-auto-commits" in call["argv"]
    assert call["argv"][call["argv"].index("--openai-api-base") + 1] == "http://127.0.0.1:9/v1"
    assert call["prompt"].startswith(ctx.prompt)
    assert (proposal.usage.tokens_in, proposal.usage.tokens_out) == (2500, 310)
    assert proposal.usage.cost_usd == pytest.approx(0.01)


# ---------------------------------------------------------------- command


EDITOR = textwrap.dedent("""\
    import json, os, pathlib
    prompt = pathlib.Path(os.environ["AUTORESEARCH_PROMPT_FILE"]).read_text()
    assert "score.py" in prompt
    path = pathlib.Path("score.py")
    path.write_text(path.read_text().replace("LR = 0.5", "LR = 0.3"))
    pathlib.Path(os.environ["AUTORESEARCH_DESCRIPTION_FILE"]).write_text("LR 0.5 -> 0.3\\n")
    pathlib.Path(os.environ["AUTORESEARCH_USAGE_FILE"]).write_text(json.dumps({"tokens_in": 7, "tokens_out": 3, "cost_usd": 0.5}))
    print("done")
""")


def test_command_gets_the_prompt_file_and_edits_itself(tmp_path):
    ws = blank(tmp_path)
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    ctx = context.build(ws, [])
    proposal = agents.load("command", agent_command=f"{sys.executable} {script}").propose(ctx)
    assert proposal.description == "LR 0.5 -> 0.3"
    assert (proposal.usage.tokens_in, proposal.usage.tokens_out, proposal.usage.cost_usd) == (7, 3, 0.5)
    assert dirty(ws) == ["score.py"]
    assert (ws.state_dir / "prompt.md").read_text() == ctx.prompt


def test_command_description_from_its_output(tmp_path):
    ws = blank(tmp_path)
    proposal = agents.load("command", agent_command="echo thinking; echo 'DESCRIPTION: nothing today'; echo bye").propose(
        context.build(ws, []))
    assert proposal.description == "nothing today"
    assert proposal.usage is None


def test_command_failing_raises_with_its_last_line_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", KEY)
    ws = blank(tmp_path)
    with pytest.raises(AutoresearchError) as caught:
        agents.load("command", agent_command='echo "auth failed for $MY_SERVICE_TOKEN" >&2; exit 3').propose(
            context.build(ws, []))
    assert "exit status 3" in str(caught.value) and "auth failed" in str(caught.value)
    assert KEY not in str(caught.value)
    assert KEY not in (ws.state_dir / "agent.log").read_text()


def test_a_timeout_stops_the_whole_process_group(tmp_path):
    ws = blank(tmp_path)
    pidfile = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pidfile}; sed -i s/0.5/0.9/ score.py; wait"
    proposal = agents.load("command", agent_command=command, agent_timeout=1).propose(context.build(ws, []))
    assert "timed out" in proposal.description
    assert dirty(ws) == []  # the half-done edit was undone
    assert not pid_alive(int(pidfile.read_text()))  # the grandchild went with the group


def test_command_without_a_command_is_not_ready():
    assert "--agent-command" in agents.load("command").check()
    assert agents.load("command", agent_command="true").check() is None


def test_missing_programs_are_one_line_each(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    for name, hint in (("claude", "npm install"), ("codex", "npm install"), ("aider", "pip install")):
        problem = agents.load(name).check()
        assert problem.startswith(f"{name} not found on PATH") and hint in problem


# ---------------------------------------------------------------- the real program


AIDER_ANSWER = textwrap.dedent("""\
    I will lower the learning rate.

    score.py
    ```python
    {content}
    ```

    DESCRIPTION: lower LR to 0.2 (real aider)
""")


@pytest.mark.skipif(shutil.which("aider") is None, reason="aider is not installed (python -m pip install aider-chat)")
def test_real_aider_against_the_loopback_server(tmp_path, monkeypatch):
    from fakes.llm_server import FakeLLM
    from support import SCORE

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-not-a-secret")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price list
    ws = blank(tmp_path)
    content = SCORE.replace("LR = 0.5", "LR = 0.2").rstrip("\n")
    with FakeLLM([AIDER_ANSWER.format(content=content)] * 3) as llm:
        agent = agents.load("aider", model="openai/fake-model", base_url=llm.url + "/v1", agent_timeout=300)
        proposal = agent.propose(context.build(ws, []))
        assert llm.history, "aider never called the server"
    assert "LR = 0.2" in (ws.root / "score.py").read_text()
    assert set(dirty(ws)) <= {"score.py", "notes.md"}  # aider creates the notes file it was given
    assert "real aider" in proposal.description
    assert proposal.usage.tokens_in > 0 and proposal.usage.tokens_out > 0
    request = llm.history[0]
    assert request.body["model"] == "fake-model" and "LR = 0.5" in " ".join(request.texts())


@pytest.mark.skipif(shutil.which("claude") is None, reason="claude is not installed (npm install -g @anthropic-ai/claude-code)")
def test_real_claude_code_against_the_loopback_server(tmp_path, monkeypatch):
    """The real Claude Code, its model replaced by the loopback server: it reads score.py, edits it
    (allowed), tries to write a new file (denied by our rules, without asking), then answers."""
    from fakes.llm_server import FakeLLM, Turn

    ws = blank(tmp_path)
    score, extra, brief = (str(ws.root / name) for name in ("score.py", "extra.py", "program.md"))

    def model(request):
        if not request.body.get("tools"):
            return "ok"  # side questions Claude Code may ask (titles, summaries)
        done = len(request.tool_results())
        if done == 0:
            return Turn(tools=[("Read", {"file_path": score}), ("Read", {"file_path": brief})])
        if done == 2:
            return Turn(tools=[("Edit", {"file_path": score, "old_string": "LR = 0.5", "new_string": "LR = 0.2"}),
                               ("Write", {"file_path": extra, "content": "x = 1\n"}),
                               ("Edit", {"file_path": brief, "old_string": "# Research brief", "new_string": "# Mine"})])
        return Turn(text="Lowered the learning rate.\nDESCRIPTION: lower LR to 0.2 (real claude)")

    home = tmp_path / "home"
    home.mkdir()
    for name in ("CLAUDE_CONFIG_DIR", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))  # no user settings, no login: only the key below
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-local-not-a-secret")
    monkeypatch.setenv("DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    with FakeLLM([model] * 20) as llm:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", llm.url)
        proposal = agents.load("claude", model="claude-sonnet-4-6", agent_timeout=300).propose(context.build(ws, []))
        main = [r for r in llm.history if r.body.get("tools")]
    assert proposal.description == "lower LR to 0.2 (real claude)"
    assert "LR = 0.2" in (ws.root / "score.py").read_text()
    assert not (ws.root / "extra.py").exists()  # denied: not an editable file
    assert dirty(ws) == ["score.py"]
    denied = [str(r.get("content")) for r in main[-1].tool_results() if r.get("is_error")]
    assert len(denied) == 2 and all("denied" in d for d in denied)  # without asking anyone
    assert {t["name"] for t in main[0].body["tools"]}.isdisjoint({"Bash", "WebFetch", "WebSearch"})
    assert proposal.usage.tokens_in > 0


@pytest.mark.skipif(shutil.which("codex") is None, reason="codex is not installed (npm install -g @openai/codex)")
def test_real_codex_against_the_loopback_server(tmp_path, monkeypatch, request):
    """The real Codex CLI, its model replaced by the loopback server (Responses API): it runs one
    command in its sandbox to edit score.py, then answers."""
    from fakes.llm_server import FakeLLM, Turn

    # Codex's own bubblewrap sandbox mounts a fresh /tmp, which would hide a workspace under /tmp
    # (where tmp_path is): the workspace and codex's home live under /var/tmp instead
    outside_tmp = Path(tempfile.mkdtemp(prefix="autoresearch-codex-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(outside_tmp, ignore_errors=True))
    ws = blank(outside_tmp)

    def model(request):
        if request.api != "responses":
            return "ok"
        if not request.tool_results():
            return Turn(tools=[("exec_command", {"cmd": "sed -i 's/LR = 0.5/LR = 0.2/' score.py", "tty": False})])
        return Turn(text="Lowered the learning rate.\nDESCRIPTION: lower LR to 0.2 (real codex)")

    home = outside_tmp / "home"
    (home / ".codex").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CODEX_HOME", str(home / ".codex"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-not-a-secret")
    with FakeLLM([model] * 20) as llm:
        proposal = agents.load("codex", base_url=llm.url + "/v1", model="gpt-5.4", agent_timeout=300).propose(
            context.build(ws, []))
        calls = [r for r in llm.history if r.api == "responses"]
    assert proposal.description == "lower LR to 0.2 (real codex)"
    assert "LR = 0.2" in (ws.root / "score.py").read_text()
    assert dirty(ws) == ["score.py"]
    assert len(calls) >= 2 and proposal.usage.tokens_in > 0


def test_aiders_figures_that_are_no_numbers_count_nothing():
    """aider's output holds the model's reply too: a "Tokens:" line of the model's own making
    (a figure that is no number, digits past a float) counts nothing, and the call still counts."""
    from autoresearch.agents.aider import usage_from
    from autoresearch.agents.base import Usage

    output = ("Tokens: 1.2k sent, 300 received. Cost: $0.01 message, $0.02 session.\n"
              "Tokens: 1.2.3 sent, " + "9" * 400 + " received. Cost: $1.2.3 message\n")
    assert usage_from(output) == Usage(1200, 300, 0.01)
