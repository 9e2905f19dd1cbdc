"""A command in its jail, started ahead of being waited for (proc.start): the trainer, or the
evaluator that gets ready while the trainer trains. One place tells a failure of the sandbox
from a failure of the command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoresearch import proc, sandbox
from autoresearch.engine.measure import read_log
from autoresearch.errors import MachineError


@dataclass
class Jailed:
    """A command started in its jail and not yet waited for (proc.start), with the pipe that
    tells a failure of the sandbox from a failure of the command (sandbox.UpSignal)."""

    started: "proc.Started | proc.RunOutcome"
    up: "sandbox.UpSignal | None"
    log_path: Path
    what: str

    @classmethod
    def start(cls, box: sandbox.Sandbox, argv: list[str], jail: sandbox.Jail, env: dict[str, str], cwd: Path,
              log_path: Path, what: str, stdin: bool = False, shown: Path | None = None) -> "Jailed":
        up = sandbox.UpSignal() if box.on else None
        try:
            started = proc.start(box.wrap(argv, jail, up), cwd, env, log_path, stdin=stdin,
                                 pass_fds=up.pass_fds if up else (), shown=shown)
        except BaseException:
            if up is not None:
                up.close()
            raise
        return cls(started, up, log_path, what)

    def go(self) -> None:
        if isinstance(self.started, proc.Started):
            self.started.send(b"go\n")

    def finish(self, limit: float, **supervise) -> proc.RunOutcome:
        """Supervise it to its end. A run that failed without the jail saying it was up failed
        for the machine's reasons (MachineError): that is told by a pipe the command cannot
        write, never by what it prints."""
        try:
            outcome = self.started if isinstance(self.started, proc.RunOutcome) else \
                self.started.wait(limit, **supervise)
            if self.up is None or self.up.started() or outcome.returncode in (0, None) or outcome.error:
                return outcome
        finally:
            self._close_up()
        first = (read_log(self.log_path).strip().splitlines() or [f"exit status {outcome.returncode}"])[0][:150]
        raise MachineError(f"{self.what} could not start: {first}")

    def cancel(self) -> None:
        if isinstance(self.started, proc.Started):
            self.started.cancel()
        self._close_up()

    def _close_up(self) -> None:
        if self.up is not None:
            self.up.close()
