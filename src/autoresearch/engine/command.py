"""The run command of a workspace (`command` in autoresearch.toml) as the engine starts it."""

from __future__ import annotations

import shlex
import sys

_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%{}\n")


def command_argv(command: str) -> list[str]:
    """The run command as an argv: split like a shell would, or run by /bin/sh when it uses
    shell syntax. A leading `python`/`python3` means the interpreter autoresearch runs under,
    which has the training dependencies."""
    if any(c in _SHELL_CHARS for c in command.replace("'", "").replace('"', "")) or not command.strip():
        return ["/bin/sh", "-c", command]
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def runs_our_python(command: str) -> bool:
    """Whether the command runs its script with the interpreter autoresearch runs under (the
    default `python train.py`): then what that interpreter cannot parse cannot run either."""
    return command_argv(command)[0] == sys.executable
