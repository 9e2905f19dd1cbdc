"""`claude`: Claude Code in headless mode (`claude -p`), editing the workspace itself.

The prompt goes in on stdin. Tools are limited by permission rules: reading and searching
anywhere in the workspace, editing only the editable files and the notes; everything else
(the shell, the web) is denied without asking (`--permission-mode dontAsk`), so the call
never waits for a human. `--output-format json` gives the final message, the token counts
and the cost in US dollars. Needs the `claude` program (npm package
@anthropic-ai/claude-code) logged in, or ANTHROPIC_API_KEY; `--model` picks the model.
"""

from __future__ import annotations

import json
import shutil

from autoresearch.agents import external
from autoresearch.agents.base import Context, Proposal, Usage, description_from
from autoresearch.errors import AutoresearchError
from autoresearch.proc import CallOutcome, redact

READ_TOOLS = ("Read", "Grep", "Glob")
DENIED_TOOLS = ("Bash", "WebFetch", "WebSearch", "NotebookEdit", "Task", "Agent")

TAIL = """
You are working in the workspace folder itself. Read what you need, then edit {editable} in
place with your file tools; you may append to {notes}. You cannot run commands: the engine
runs the experiment after you finish. Finish with the DESCRIPTION line.
"""


def allowed_tools(context: Context, notes: str) -> list[str]:
    rules = list(READ_TOOLS)
    for name in (*context.editable, notes):
        rules += [f"Edit(./{name})", f"Write(./{name})"]
    return rules


class ClaudeAgent(external.ProgramAgent):
    name = "claude"
    description = "Claude Code CLI, headless (claude -p); edits the files itself"
    tail = TAIL

    def check(self) -> str | None:
        if not shutil.which("claude"):
            return "claude not found on PATH (npm install -g @anthropic-ai/claude-code)"
        return None

    def command(self, context: Context, notes: str) -> list[str]:
        cmd = [
            "claude", "-p", "--output-format", "json", "--permission-mode", "dontAsk",
            "--allowedTools", ",".join(allowed_tools(context, notes)),
            "--disallowedTools", ",".join(DENIED_TOOLS),
        ]
        if self.settings.model:
            cmd += ["--model", self.settings.model]
        return cmd

    def invocation(self, context: Context, prompt: str) -> external.Invocation:
        return external.Invocation(self.command(context, context.notes_file), input=prompt)

    def answer(self, context: Context, outcome: CallOutcome, call: external.Invocation, usage) -> Proposal:
        result = _last_json(outcome.stdout)
        if outcome.returncode != 0 or result is None:
            if result and result.get("result"):
                raise AutoresearchError(f"claude failed: {redact(str(result['result']))[:300]}")
            raise external.failed(self.name, outcome)
        used = result.get("usage") or {}
        tokens_in = sum(int(used.get(k) or 0) for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        cost = result.get("total_cost_usd", result.get("cost_usd"))
        usage = Usage(tokens_in, int(used.get("output_tokens") or 0), float(cost) if cost is not None else None)
        if result.get("is_error"):
            raise AutoresearchError(f"claude reported an error: {redact(str(result.get('result')))[:300]}")
        text = str(result.get("result") or "")
        return Proposal(description_from(text, _first_line(text) or "claude change"), usage)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _last_json(stdout: str) -> dict | None:
    """The result object: the whole output, or its last line that parses (older versions add lines)."""
    for chunk in (stdout, *reversed(stdout.splitlines())):
        try:
            value = json.loads(chunk)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
        if isinstance(value, list):  # stream-style arrays: the last "result" event
            results = [v for v in value if isinstance(v, dict) and v.get("type") == "result"]
            if results:
                return results[-1]
    return None
