"""`command`: any shell command as the researcher (`--agent-command "…"`).

The command runs in the workspace through the shell, with the prompt in a file whose path
is in AUTORESEARCH_PROMPT_FILE, and edits the editable files itself. Its description is
what it writes to the file named in AUTORESEARCH_DESCRIPTION_FILE, else its last
`DESCRIPTION:` line on stdout, else its last line of output. Optional usage: a JSON object
`{"tokens_in": …, "tokens_out": …, "cost_usd": …}` written to AUTORESEARCH_USAGE_FILE.
A wrapper around any other tool or model fits here.
"""

from __future__ import annotations

import json
import os

from autoresearch.agents import external
from autoresearch.agents.base import Context, Proposal, Usage, description_from
from autoresearch.errors import AutoresearchError
from autoresearch.files import read_own
from autoresearch.proc import CallOutcome


class CommandAgent(external.ProgramAgent):
    name = "command"
    description = "any shell command (--agent-command); prompt in $AUTORESEARCH_PROMPT_FILE"

    @property
    def command(self) -> str:
        return self.settings.agent_command or ""

    def check(self) -> str | None:
        if not self.command:
            return "needs --agent-command \"…\" (a shell command that edits the files)"
        return None

    def invocation(self, context: Context, prompt: str) -> external.Invocation:
        if not self.command:
            raise AutoresearchError("agent 'command' needs --agent-command")
        prompt_path = external.prompt_file(context, prompt, "prompt.md")  # the state folder made a real one
        for stale in (self._description_file(context), self._usage_file(context)):
            stale.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(
            AUTORESEARCH_PROMPT_FILE=str(prompt_path),
            AUTORESEARCH_DESCRIPTION_FILE=str(self._description_file(context)),
            AUTORESEARCH_USAGE_FILE=str(self._usage_file(context)),
            AUTORESEARCH_WORKSPACE=str(context.root),
        )
        return external.Invocation(self.command, env=env, shell=True)

    def answer(self, context: Context, outcome: CallOutcome, call: external.Invocation, usage) -> Proposal:
        if outcome.returncode != 0:
            raise external.failed(self.name, outcome)
        lines = [line.strip() for line in outcome.stdout.splitlines() if line.strip()]
        path = self._description_file(context)
        data = read_own(path)  # the agent writes it: a regular file of its own, or nothing
        written = data.decode("utf-8", errors="replace").strip() if data is not None else ""
        if written:
            description = description_from(written, written.splitlines()[0])
        else:
            description = description_from(outcome.stdout, lines[-1] if lines else "command change")
        return Proposal(description, _usage(self._usage_file(context)))

    @staticmethod
    def _description_file(context: Context):
        return context.state_dir / "description.txt"

    @staticmethod
    def _usage_file(context: Context):
        return context.state_dir / "usage.json"


def _usage(path) -> Usage | None:
    raw = read_own(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Usage(data.get("tokens_in"), data.get("tokens_out"), data.get("cost_usd"))  # Usage bounds them
    except (ValueError, TypeError, AttributeError):
        return None  # a broken usage file costs the figures, not the experiment
