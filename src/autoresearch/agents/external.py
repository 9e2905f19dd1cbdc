"""What the agents that run another program share: `ProgramAgent`, one `propose` for all.

A subclass says how to call its program (`invocation`), what the call used (`usage_of`)
and what its answer means (`answer`); the base makes the call, keeps the transcript and
handles the time limit.

An agent program (claude, codex, aider, a user's command) runs in its own process group
in the workspace, so that a timeout or Ctrl-C stops it and everything it started. Its
output is kept, secrets blanked out, in the state folder (`agent.log`, the last call only,
so it never grows) for a human who wants to see what the agent did.

A timed-out call is not an error: the editable files are put back as they were before the
call (a half-made edit is worth nothing) and the proposal is a no-op, which the engine
records as `noop` before asking again. A program that fails (exit status not 0) raises
AutoresearchError with its last line of output: that is usually a missing login or key,
which asking again would not fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

from autoresearch import proc
from autoresearch.agents.base import Agent, Context, Proposal, Usage, keep_transcript
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, behind_a_link, real_folder
from autoresearch.proc import CallOutcome, redact


@dataclass(frozen=True)
class Invocation:
    """How to call an agent program once."""

    cmd: Sequence[str] | str
    input: str | None = None  # the prompt on stdin, if it goes there
    env: Mapping[str, str] | None = None
    shell: bool = False
    output: Path | None = None  # a file the program writes its answer to


class ProgramAgent(Agent):
    """Base of the agents that run a program of their own in the workspace."""

    tail: ClassVar[str] = ""  # added to the prompt: how this program is to work

    def prompt_for(self, context: Context) -> str:
        if not self.tail:
            return context.prompt
        return context.prompt + self.tail.format(editable=", ".join(context.editable), notes=context.notes_file)

    def invocation(self, context: Context, prompt: str) -> Invocation:  # pragma: no cover - interface
        raise NotImplementedError

    def usage_of(self, outcome: CallOutcome) -> Usage | None:
        """What the call used, as far as its output says (also for a call that timed out)."""
        return None

    def answer(self, context: Context, outcome: CallOutcome, call: Invocation, usage: Usage | None) -> Proposal:
        """The proposal from a finished call; raises AutoresearchError when the program failed."""
        raise NotImplementedError  # pragma: no cover - interface

    def propose(self, context: Context) -> Proposal:
        prompt = self.prompt_for(context)
        call = self.invocation(context, prompt)
        outcome = proc.call(call.cmd, cwd=context.root, timeout=self.timeout, input=call.input, env=call.env,
                            shell=call.shell)
        keep_transcript(context, transcript(self.name, call.cmd, outcome, len(prompt)))
        usage = self.usage_of(outcome)
        if outcome.timed_out:
            return timed_out(context, self.name, self.timeout, usage)
        return self.answer(context, outcome, call, usage)


def transcript(name: str, cmd: Sequence[str] | str, outcome: CallOutcome, prompt_chars: int) -> str:
    """What the state folder keeps of one call: its command, how it ended, its output."""
    shown = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
    status = "timed out" if outcome.timed_out else f"exit status {outcome.returncode}"
    return (
        f"agent: {name}\ncommand: {shown}\nprompt: {prompt_chars} characters\n"
        f"{status} after {outcome.seconds:.1f} s\n\n--- stdout\n{outcome.stdout}\n--- stderr\n{outcome.stderr}\n"
    )


def restore(context: Context) -> None:
    """Put the editable files back as the context saw them (after a timed-out call)."""
    for name, text in context.files.items():
        path = context.root / name
        if behind_a_link(context.root, name):  # a folder made a link: the guard refuses the change
            continue
        try:
            if not path.exists() or path.read_text(errors="replace") != text:
                atomic_write(path, text)
        except OSError:
            pass


def timed_out(context: Context, name: str, timeout: float, usage: Usage | None = None) -> Proposal:
    restore(context)
    return Proposal(f"{name} timed out after {timeout:g} s; nothing changed", usage)


def failed(name: str, outcome: CallOutcome) -> AutoresearchError:
    lines = [line.strip() for line in (outcome.stderr + "\n" + outcome.stdout).splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    return AutoresearchError(f"{name} failed (exit status {outcome.returncode}): {redact(last)[:300]}")


def prompt_file(context: Context, text: str, name: str = "prompt.md") -> Path:
    """Write the prompt where agent programs can read it: the ignored state folder."""
    path = real_folder(context.state_dir) / name  # a link in its place is replaced, not written through
    atomic_write(path, text)
    return path
