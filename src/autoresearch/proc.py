"""Every short subprocess the package starts goes through `run`.

The supervised training process (own process group, hard limit, log file) lives in
the engine; it is the one place that needs more than `run` offers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from autoresearch.errors import AutoresearchError


def run(
    cmd: Sequence[str],
    cwd: str | Path | None = None,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    stream: bool = False,
) -> subprocess.CompletedProcess:
    """Run `cmd`, capture its text output, raise AutoresearchError on failure when `check`.

    With `stream`, output goes straight to our stdout/stderr (progress bars) and is not captured.
    """
    try:
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=not stream,
            text=True,
            timeout=timeout,
            input=input,
        )
    except FileNotFoundError as exc:
        raise AutoresearchError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise AutoresearchError(f"{' '.join(cmd)} took longer than {timeout:g} s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        raise AutoresearchError(f"{' '.join(cmd)} failed: {last}")
    return result
