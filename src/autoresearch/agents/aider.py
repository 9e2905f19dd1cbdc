"""`aider`: aider in non-interactive mode on the editable files and the notes.

The prompt goes in a file (`--message-file`); aider answers once, applies its own edits to
the files named on its command line, and exits. It runs without git (`--no-git`: the engine
owns commits, and aider must not commit, add to .gitignore or commit a dirty tree), with its
history files in the engine's state folder so nothing new appears in the workspace. Token
counts and cost come from aider's `Tokens: … Cost: …` lines. Needs the `aider` program
(PyPI: aider-chat) and the key its model needs; `--model` picks the model, `--base-url`
becomes `--openai-api-base`.
"""

from __future__ import annotations

import math
import re
import shutil

from autoresearch.agents import external
from autoresearch.agents.base import Context, Proposal, Usage, description_from
from autoresearch.proc import CallOutcome

TAIL = """
Edit the files in the chat ({editable}) to make the change; you may append to {notes}.
Finish your answer with the DESCRIPTION line.
"""

_TOKENS = re.compile(r"Tokens:\s*(?P<sent>[\d.,]+)\s*(?P<ks>[kKmM]?)\s+sent.*?(?P<recv>[\d.,]+)\s*(?P<kr>[kKmM]?)\s+received", re.I)
_COST = re.compile(r"Cost:\s*\$(?P<cost>[\d.,]+)\s+message", re.I)


def _number(value: str, suffix: str = "") -> float:
    """A figure of aider's report; 0 where it is none ("1.2.3", or digits past a float: the
    model's reply is in the same output and may print anything). Usage bounds the sums."""
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[suffix.lower()]
    try:
        number = float(value.replace(",", "")) * scale
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def usage_from(output: str) -> Usage:
    """Sum of aider's per-message token and cost reports in `output`."""
    tokens_in = tokens_out = 0
    cost = None
    for line in output.splitlines():
        found = _TOKENS.search(line)
        if found:
            tokens_in += round(_number(found["sent"], found["ks"]))
            tokens_out += round(_number(found["recv"], found["kr"]))
        paid = _COST.search(line)
        if paid:
            cost = (cost or 0.0) + _number(paid["cost"])
    return Usage(tokens_in, tokens_out, cost)


class AiderAgent(external.ProgramAgent):
    name = "aider"
    description = "aider, non-interactive (--message-file) on the editable files"
    tail = TAIL

    def check(self) -> str | None:
        if not shutil.which("aider"):
            return "aider not found on PATH (python -m pip install aider-install && aider-install)"
        return None

    def command(self, context: Context, message_file) -> list[str]:
        state = context.state_dir
        cmd = [
            "aider", "--yes-always", "--no-auto-commits", "--no-dirty-commits", "--no-git", "--no-gitignore",
            "--no-stream", "--no-pretty", "--no-check-update", "--no-show-model-warnings",
            "--no-analytics", "--map-tokens", "0",
            "--input-history-file", str(state / "aider.input.history"),
            "--chat-history-file", str(state / "aider.chat.history.md"),
            "--message-file", str(message_file),
        ]
        if self.settings.model:
            cmd += ["--model", self.settings.model]
        if self.settings.base_url:
            cmd += ["--openai-api-base", self.settings.base_url]
        return cmd + [*context.editable, context.notes_file]

    def invocation(self, context: Context, prompt: str) -> external.Invocation:
        message_file = external.prompt_file(context, prompt, "aider-message.md")
        return external.Invocation(self.command(context, message_file))

    def usage_of(self, outcome: CallOutcome) -> Usage:
        return usage_from(outcome.stdout + "\n" + outcome.stderr)

    def answer(self, context: Context, outcome: CallOutcome, call: external.Invocation, usage) -> Proposal:
        if outcome.returncode != 0:
            raise external.failed(self.name, outcome)
        return Proposal(description_from(outcome.stdout, "aider change"), usage)
