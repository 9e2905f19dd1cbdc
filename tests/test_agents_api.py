"""The `openai` and `anthropic` agents: the official SDKs against a loopback server."""

from __future__ import annotations

import time

import pytest

from autoresearch import agents
from autoresearch.agents import context
from autoresearch.errors import AutoresearchError
from fakes.llm_server import Answer, Error, search_replace
from support import API_KEY, blank, commit, dirty

KEY = API_KEY
FAST = {"retry-after-ms": "5"}  # the SDKs honour it: retries in milliseconds, not seconds
API = ["openai", "anthropic"]


pytestmark = pytest.mark.usefixtures("api_env")


def agent(name, llm, **options):
    base = llm.url + "/v1" if name == "openai" else llm.url
    return agents.load(name, base_url=base, model=options.pop("model", "fake-model"), **options)


GOOD = search_replace("score.py", "LR = 0.5", "LR = 0.2", "lower LR to 0.2")


@pytest.mark.parametrize("name", API)
def test_a_rate_limit_then_success_applies_the_edit(tmp_path, llm, name):
    ws = blank(tmp_path)
    llm.add(Error(429, "slow down", FAST), GOOD)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert proposal.description == "lower LR to 0.2"
    assert "LR = 0.2\n" in (ws.root / "score.py").read_text()
    assert len(llm.history) == 2  # the SDK retried once
    assert proposal.usage.tokens_in > 0 and proposal.usage.tokens_out > 0


@pytest.mark.parametrize("name", API)
def test_a_server_error_is_retried(tmp_path, llm, name):
    ws = blank(tmp_path)
    llm.add(Error(500, "boom", FAST), GOOD)
    agent(name, llm).propose(context.build(ws, []))
    assert dirty(ws) == ["score.py"]
    assert len(llm.history) == 2


@pytest.mark.parametrize("name", API)
def test_errors_that_outlive_the_retries_raise_one_clean_line_without_the_key(tmp_path, llm, name):
    ws = blank(tmp_path)
    llm.add(*[Error(500, f"internal error near {KEY}", FAST)] * 3)
    with pytest.raises(AutoresearchError) as caught:
        agent(name, llm, max_retries=2).propose(context.build(ws, []))
    message = str(caught.value)
    assert "500" in message and KEY not in message and "***" in message
    assert len(llm.history) == 3
    assert dirty(ws) == []


@pytest.mark.parametrize("name", API)
def test_a_malformed_edit_gets_one_retry_with_the_error(tmp_path, llm, name):
    ws = blank(tmp_path)
    llm.add(search_replace("score.py", "LR = 0.7", "LR = 0.2", "wrong search"), GOOD)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert proposal.description == "lower LR to 0.2"
    assert dirty(ws) == ["score.py"]
    retry = llm.history[1]
    assert "does not match the current file" in retry.last_user()
    assert [m["role"] for m in retry.body["messages"] if m["role"] != "system"] == ["user", "assistant", "user"]
    first_out = proposal.usage.tokens_out
    assert first_out >= 2 * 10  # both answers were counted


@pytest.mark.parametrize("name", API)
def test_a_second_malformed_edit_is_skipped_and_changes_nothing(tmp_path, llm, name):
    ws = blank(tmp_path)
    bad = search_replace("score.py", "LR = 0.7", "LR = 0.2", "wrong search")
    llm.add(bad, bad, GOOD)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert proposal.description.startswith("malformed edit skipped:")
    assert dirty(ws) == []
    assert len(llm.history) == 2  # no third call


def test_an_edit_that_breaks_python_is_sent_back(tmp_path, llm):
    ws = blank(tmp_path)
    llm.add(search_replace("score.py", "LR = 0.5", "LR = (0.5", "broken"), GOOD)
    agent("openai", llm).propose(context.build(ws, []))
    assert "not valid Python" in llm.history[1].last_user()
    assert "LR = 0.2\n" in (ws.root / "score.py").read_text()


@pytest.mark.parametrize("name", API)
def test_an_edit_to_the_harness_is_written_for_the_engine_to_revert(tmp_path, llm, name):
    ws = blank(tmp_path)
    (ws.root / "prepare.py").write_text("TIME_BUDGET = 300\n")
    commit(ws, "a harness")
    llm.add(search_replace("prepare.py", "TIME_BUDGET = 300", "TIME_BUDGET = 3000", "more time"))
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert proposal.description == "more time"
    assert dirty(ws) == ["prepare.py"]  # the engine's guard sees it, reverts it, logs `invalid`


def test_an_answer_without_blocks_changes_nothing(tmp_path, llm):
    ws = blank(tmp_path)
    llm.add("DESCRIPTION: nothing worth trying\n\nI would leave the file as it is.")
    proposal = agent("openai", llm).propose(context.build(ws, []))
    assert proposal.description == "nothing worth trying"
    assert dirty(ws) == []
    assert len(llm.history) == 1


@pytest.mark.parametrize("name", API)
def test_the_request_carries_the_context_and_the_format_but_never_the_key(tmp_path, llm, name):
    ws = blank(tmp_path)
    llm.add(GOOD)
    ctx = context.build(ws, [])
    agent(name, llm).propose(ctx)
    request = llm.history[0]
    assert request.last_user() == ctx.prompt
    assert "<<<<<<< SEARCH" in " ".join(request.texts())
    assert request.body["model"] == "fake-model"
    sent_key = request.headers.get("authorization", "") + request.headers.get("x-api-key", "")
    assert KEY in sent_key  # the key went where it belongs ...
    assert all(KEY not in t for t in request.texts())  # ... and nowhere else
    assert KEY not in (ws.state_dir / "agent.log").read_text()


def test_a_cost_reported_by_the_server_is_used_and_summed_over_the_retry(tmp_path, llm):
    ws = blank(tmp_path)
    llm.add(Answer(search_replace("score.py", "nope", "x", "bad"), cost=0.01), Answer(GOOD, cost=0.02))
    proposal = agent("openai", llm).propose(context.build(ws, []))
    assert proposal.usage.cost_usd == pytest.approx(0.03)


def test_cost_from_the_price_table_for_a_known_model(tmp_path, llm):
    ws = blank(tmp_path)
    llm.add(GOOD)
    usage = agent("anthropic", llm, model="claude-sonnet-4-6").propose(context.build(ws, [])).usage
    assert usage.cost_usd == pytest.approx((usage.tokens_in * 3 + usage.tokens_out * 15) / 1e6)


def test_a_local_server_needs_no_key_and_has_no_cost(tmp_path, llm, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    ws = blank(tmp_path)
    llm.add(GOOD)
    a = agent("openai", llm)
    assert a.check() is None
    assert a.propose(context.build(ws, [])).usage.cost_usd is None


@pytest.mark.parametrize("name", API)
def test_a_call_that_outlives_its_timeout_is_a_noop(tmp_path, llm, name):
    ws = blank(tmp_path)

    def slow(request):
        time.sleep(3)
        return GOOD

    llm.add(slow)
    proposal = agent(name, llm, agent_timeout=0.5, max_retries=0).propose(context.build(ws, []))
    assert proposal.description == f"{name} timed out after 0.5 s; nothing changed"
    assert dirty(ws) == []


def test_check_names_the_missing_key_without_calling(monkeypatch, llm):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert "ANTHROPIC_API_KEY" in agents.load("anthropic").check()
    assert "OPENAI_API_KEY" in agents.load("openai").check()
    assert llm.history == []
