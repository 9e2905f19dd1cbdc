"""What the fake agent programs (bin/claude, bin/codex, bin/aider) share.

A test writes a script, a JSON list of steps, to the file named in FAKE_AGENT_SCRIPT; each
call of a fake takes the next step:

    {"edits": [{"file": "train.py", "search": "A", "replace": "B"},
               {"file": "notes.md", "append": "text"},
               {"file": "x.py", "write": "whole content"}],
     "reply": "final message (with a DESCRIPTION: line)",
     "exit": 0, "sleep": 0, "sleep_after": 0, "stderr": "", "is_error": false}

Each call is appended to the JSON-lines file named in FAKE_AGENT_HISTORY: its argv, its
working folder, the prompt it received, and which edits it applied or was refused.
Whether an edit is allowed is decided by each fake the way its real program would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def step() -> dict:
    script = os.environ.get("FAKE_AGENT_SCRIPT")
    if not script:
        return {"edits": [], "reply": "DESCRIPTION: nothing to do"}
    path = Path(script)
    counter = path.with_name(path.name + ".count")
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    steps = json.loads(path.read_text())
    return steps[n] if n < len(steps) else {"edits": [], "reply": "DESCRIPTION: script exhausted"}


def apply(s: dict, root: Path, allowed) -> tuple[list[str], list[str]]:
    """Apply the step's edits under `root` where `allowed(relative path)`; (applied, refused)."""
    applied, refused = [], []
    for edit in s.get("edits", []):
        name = edit["file"]
        if not allowed(name):
            refused.append(name)
            continue
        path = root / name
        if "write" in edit:
            path.write_text(edit["write"])
        elif "append" in edit:
            old = path.read_text() if path.exists() else ""
            path.write_text(old + edit["append"])
        else:
            text = path.read_text()
            if edit["search"] not in text:
                refused.append(name + " (search text not found)")
                continue
            path.write_text(text.replace(edit["search"], edit["replace"], 1))
        applied.append(name)
    return applied, refused


def record(entry: dict) -> None:
    history = os.environ.get("FAKE_AGENT_HISTORY")
    if history:
        with open(history, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def pause(s: dict) -> None:
    if s.get("sleep"):
        time.sleep(float(s["sleep"]))


def finish(s: dict) -> None:
    if s.get("sleep_after"):  # edits made, then the program hangs (a timeout test)
        sys.stdout.flush()
        time.sleep(float(s["sleep_after"]))
    if s.get("stderr"):
        sys.stderr.write(s["stderr"] + "\n")
    sys.exit(int(s.get("exit", 0)))
