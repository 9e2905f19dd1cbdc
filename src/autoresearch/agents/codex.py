"""`codex`: the Codex CLI non-interactively (`codex exec`), editing the workspace itself.

The prompt goes in on stdin (`-`). The sandbox lets it write only inside the workspace
(`--sandbox workspace-write`) and it never stops to ask (`approval_policy=never`); the
engine's guard then reverts anything outside the editable files and the notes. `--json`
streams events, from which we take the token counts; `-o` keeps the final message, from
which we take the description. Codex reports no cost (None). Needs the `codex` program
(npm package @openai/codex) logged in or OPENAI_API_KEY; `--model` picks the model and
`--base-url` becomes its `openai_base_url` (and OPENAI_BASE_URL, which older versions read);
the server must speak the Responses API, as Codex does.
"""

from __future__ import annotations

import json
import os
import shutil

from autoresearch.agents import external
from autoresearch.agents.base import Context, Proposal, Usage, description_from
from autoresearch.errors import AutoresearchError
from autoresearch.files import read_own, real_folder
from autoresearch.proc import CallOutcome, redact

TAIL = """
You are working in the workspace folder itself. Edit {editable} in place; you may append to
{notes}. Do not run the training script, git, or package managers: the engine runs the
experiment after you finish. Finish with the DESCRIPTION line.
"""


class CodexAgent(external.ProgramAgent):
    name = "codex"
    description = "OpenAI Codex CLI, non-interactive (codex exec); edits the files itself"
    tail = TAIL

    def check(self) -> str | None:
        if not shutil.which("codex"):
            return "codex not found on PATH (npm install -g @openai/codex)"
        return None

    def command(self, context: Context, last_message) -> list[str]:
        cmd = [
            "codex", "exec", "--sandbox", "workspace-write", "-c", 'approval_policy="never"',
            "--skip-git-repo-check", "--json", "-o", str(last_message), "-C", str(context.root),
        ]
        if self.settings.model:
            cmd += ["-m", self.settings.model]
        if self.settings.base_url:  # current versions read the config key, older ones the variable
            cmd += ["-c", f"openai_base_url={json.dumps(self.settings.base_url)}"]
        return cmd + ["-"]

    def invocation(self, context: Context, prompt: str) -> external.Invocation:
        last_message = real_folder(context.state_dir) / "codex-last-message.txt"
        last_message.unlink(missing_ok=True)
        env = dict(os.environ)
        if self.settings.base_url:
            env["OPENAI_BASE_URL"] = self.settings.base_url
        return external.Invocation(self.command(context, last_message), input=prompt, env=env, output=last_message)

    def usage_of(self, outcome: CallOutcome) -> Usage:
        return _events(outcome.stdout)[0]

    def answer(self, context: Context, outcome: CallOutcome, call: external.Invocation, usage) -> Proposal:
        _, messages, error = _events(outcome.stdout)
        if outcome.returncode != 0:
            if error:
                raise AutoresearchError(f"codex failed: {redact(error)[:300]}")
            raise external.failed(self.name, outcome)
        last = call.output
        written = read_own(last) if last else None
        final = written.decode("utf-8", errors="replace") if written is not None else (messages[-1] if messages else "")
        first = next((line.strip() for line in final.splitlines() if line.strip()), "codex change")
        return Proposal(description_from(final, first), usage)


def _events(stdout: str) -> tuple[Usage, list[str], str]:
    """Token counts, agent messages and the last error from `codex exec --json` output."""
    tokens_in = tokens_out = 0
    messages: list[str] = []
    error = ""
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        kind = event.get("type", "")
        if kind == "turn.completed":
            usage = event.get("usage") or {}
            tokens_in += int(usage.get("input_tokens") or 0)
            tokens_out += int(usage.get("output_tokens") or 0)
        elif kind == "item.completed":
            item = event.get("item") or {}
            if item.get("type") in ("agent_message", "assistant_message") and item.get("text"):
                messages.append(str(item["text"]))
        elif kind in ("error", "turn.failed"):
            detail = event.get("message") or (event.get("error") or {}).get("message") or ""
            error = str(detail) or error
    return Usage(tokens_in, tokens_out, None), messages, error
