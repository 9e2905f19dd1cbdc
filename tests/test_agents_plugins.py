"""Agents arrive through the entry-point group `autoresearch.agents`: built-ins and third parties alike."""

from __future__ import annotations

import json
import os
import sys

from autoresearch import agents
from autoresearch.agents import context
from fakes.plugin import install
from support import blank, cli, dirty

BUILTIN = {"aider", "anthropic", "claude", "codex", "command", "openai"}


def test_agents_lists_builtins_and_a_third_party_plugin_without_calling_any(tmp_path):
    site = install(tmp_path / "site", broken=True)
    env = {"PYTHONPATH": str(site), "PATH": os.path.dirname(sys.executable), "OPENAI_API_KEY": "",
           "ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "", "OPENAI_BASE_URL": ""}
    result = cli("agents", "--json", env=env)
    assert result.returncode == 0, result.stderr
    found = {d["name"]: d for d in map(json.loads, result.stdout.splitlines())}
    assert BUILTIN <= set(found)
    assert found["nudger"]["ready"] and found["nudger"]["package"] == "nudger-agent"
    assert "failed to load" in found["ghost"]["problem"]  # a broken plugin is listed, not fatal
    assert "ANTHROPIC_API_KEY" in found["anthropic"]["problem"]
    assert "not found on PATH" in found["claude"]["problem"]
    text = cli("agents", env=env).stdout
    assert "nudger" in text and "[nudger-agent]" in text and "not ready: needs --agent-command" in text


def test_agents_with_options_checks_against_them(tmp_path):
    env = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    result = cli("agents", "--json", "--base-url", "http://127.0.0.1:9/v1", "--agent-command", "true", env=env)
    found = {d["name"]: d for d in map(json.loads, result.stdout.splitlines())}
    assert found["openai"]["ready"] and found["command"]["ready"]


def test_a_third_party_agent_is_loaded_and_used(tmp_path, monkeypatch):
    site = install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    assert "nudger" in agents.available()
    ws = blank(tmp_path)
    proposal = agents.load("nudger").propose(context.build(ws, []))
    assert proposal.description == "LR 0.5 -> 0.4"
    assert dirty(ws) == ["score.py"]
