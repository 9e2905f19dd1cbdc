"""`autoresearch prepare`: run the workspace's own harness, then pin its validation split.

The harness (prepare.py in the workspace) does the work; this module only runs it with the
interpreter we run under and remembers the val split's sha256 in the state folder, so that
a later prepare that produced different validation data is refused.
"""

from __future__ import annotations

import json
import sys

from autoresearch.errors import AutoresearchError
from autoresearch.proc import run
from autoresearch.workspace import Workspace


def manifest(ws: Workspace) -> dict | None:
    """The harness's record of prepared data, or None when not prepared yet."""
    code = "import json, prepare; print(json.dumps(prepare.manifest()))"
    result = run([sys.executable, "-c", code], cwd=ws.root, check=False)
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines()
        raise AutoresearchError(f"cannot read the harness: {lines[-1] if lines else 'exit ' + str(result.returncode)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def is_prepared(ws: Workspace) -> bool:
    return ws.config.template != "llm" or manifest(ws) is not None


def prepare(ws: Workspace) -> dict | None:
    """Run `python prepare.py` in the workspace (progress shown) and pin the val split."""
    if ws.config.template != "llm":
        return None
    if not ws.harness_ok():
        raise AutoresearchError("prepare.py does not match the workspace's fingerprint; restore it with `git checkout main -- prepare.py`")
    result = run([sys.executable, "prepare.py"], cwd=ws.root, check=False, stream=True)
    if result.returncode != 0:
        raise AutoresearchError(f"prepare.py failed (exit {result.returncode}); see the line above")
    record = manifest(ws)
    if record is None:
        raise AutoresearchError("prepare.py finished but left no manifest")
    pinned = ws.state.pinned_val()
    if pinned is not None:
        if pinned != record["val_sha256"]:
            raise AutoresearchError(
                f"the validation split changed (sha256 {record['val_sha256'][:12]}, pinned {pinned[:12]}): "
                "results would not compare; make a new workspace"
            )
    else:
        ws.state.pin_val(record["val_sha256"])
    return record
