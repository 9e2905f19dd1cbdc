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
from autoresearch.agents.base import Agent, Context, Proposal, Usage
from autoresearch.errors import AutoresearchError


class CommandAgent(Agent):
    name = "command"
    description = "any shell command (--agent-command); prompt in $AUTORESEARCH_PROMPT_FILE"

    @property
    def command(self) -> str:
        return str(self.options.get("agent_command") or self.options.get("command") or "").strip()

    def check(self) -> str | None:
        if not self.command:
            return "needs --agent-command \"…\" (a shell command that edits the files)"
        return None

    def propose(self, context: Context) -> Proposal:
        if not self.command:
            raise AutoresearchError("agent 'command' needs --agent-command")
        prompt = external.prompt_file(context, context.prompt, "prompt.md")
        description_file = context.state_dir / "description.txt"
        usage_file = context.state_dir / "usage.json"
        for stale in (description_file, usage_file):
            stale.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(
            AUTORESEARCH_PROMPT_FILE=str(prompt),
            AUTORESEARCH_DESCRIPTION_FILE=str(description_file),
            AUTORESEARCH_USAGE_FILE=str(usage_file),
            AUTORESEARCH_WORKSPACE=str(context.root),
        )
        timeout = external.timeout_of(self.options)
        outcome = external.call(self.command, cwd=context.root, timeout=timeout, env=env, shell=True)
        external.keep_transcript(context, self.name, self.command, outcome, len(context.prompt))
        if outcome.timed_out:
            return external.timed_out(context, self.name, timeout)
        if outcome.returncode != 0:
            raise external.failed(self.name, outcome)
        lines = [line.strip() for line in outcome.stdout.splitlines() if line.strip()]
        written = description_file.read_text(errors="replace").strip() if description_file.is_file() else ""
        if written:
            description = external.description_from(written, written.splitlines()[0])
        else:
            description = external.description_from(outcome.stdout, lines[-1] if lines else "command change")
        return Proposal(description, _usage(usage_file))


def _usage(path) -> Usage | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        cost = data.get("cost_usd")
        return Usage(int(data.get("tokens_in") or 0), int(data.get("tokens_out") or 0),
                     float(cost) if cost is not None else None)
    except (ValueError, TypeError, AttributeError):
        return None  # a broken usage file costs the figures, not the experiment
