"""`autoresearch prepare`: run the workspace's own harness, then pin its validation split.

The harness (prepare.py in the workspace) does the work; this module only runs it with the
interpreter we run under and remembers the val split's sha256 in the state folder, so that
a later prepare that produced different validation data is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from autoresearch import pins
from autoresearch.errors import AutoresearchError
from autoresearch.proc import run
from autoresearch.workspace import Workspace


def harness_copy(ws: Workspace, folder: Path, sha256: str | None = None, source_root: Path | None = None) -> Path:
    """The workspace's harness copied into `folder`, after checking it against the pin
    (`sha256`: the pin a run already read; else the pins file is read); from `source_root`
    (a run's copy of its commit) instead of the workspace when given.

    The engine never imports the harness from the workspace: a `prepare/` package, a planted
    `__pycache__` file or a link there would be imported instead."""
    if len(ws.config.harness_files) != 1:
        raise AutoresearchError("the harness must be exactly one file (harness.files in autoresearch.toml)")
    source = (source_root or ws.root) / ws.config.harness_files[0]
    if source.is_symlink() or not source.is_file():
        raise AutoresearchError(f"{ws.config.harness_files[0]} must be a regular file, not a link")
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != (sha256 if sha256 is not None else ws.pins.harness_sha256):
        raise AutoresearchError(f"{ws.config.harness_files[0]} does not match its pinned fingerprint")
    path = folder / "prepare.py"
    path.write_bytes(data)
    return path


def _ask(ws: Workspace, code: str) -> str:
    """The last line a short program prints with the pinned harness importable as `prepare`."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-harness-") as tmp:
        harness_copy(ws, Path(tmp))
        result = run([sys.executable, "-I", "-B", "-c", code], cwd=tmp, check=False, env=_env())
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines()
        raise AutoresearchError(f"cannot read the harness: {lines[-1] if lines else 'exit ' + str(result.returncode)}")
    return result.stdout.strip().splitlines()[-1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def manifest(ws: Workspace) -> dict | None:
    """The harness's record of prepared data, or None when not prepared yet."""
    return json.loads(_ask(ws, "import sys; sys.path.insert(0, '.'); import json, prepare; "
                              "print(json.dumps(prepare.manifest()))"))


_PREPARED: dict[tuple[str, str, str], Path] = {}


def prepared_dir(ws: Workspace) -> Path:
    """Where the harness keeps this workspace's prepared data on this machine (asked once per
    harness and cache folder: the answer takes an interpreter that imports torch)."""
    key = (str(ws.root), ws.pins.harness_sha256, os.environ.get("AUTORESEARCH_CACHE_DIR", ""))
    if key not in _PREPARED:
        code = "import sys; sys.path.insert(0, '.'); import prepare; print(prepare.PREPARED_DIR)"
        _PREPARED[key] = Path(_ask(ws, code))
    return _PREPARED[key]


def is_prepared(ws: Workspace) -> bool:
    return ws.config.template != "llm" or manifest(ws) is not None


def prepare(ws: Workspace) -> dict | None:
    """Run `python prepare.py` in the workspace (progress shown) and pin the val split."""
    if ws.config.template != "llm":
        return None
    if not ws.harness_ok():
        raise AutoresearchError("prepare.py does not match the workspace's fingerprint; restore it with `git checkout main -- prepare.py`")
    with tempfile.TemporaryDirectory(prefix="autoresearch-harness-") as tmp:
        harness_copy(ws, Path(tmp))
        result = run([sys.executable, "-B", "prepare.py"], cwd=tmp, check=False, stream=True, env=_env())
    if result.returncode != 0:
        raise AutoresearchError(f"prepare.py failed (exit {result.returncode}); see the line above")
    record = manifest(ws)
    if record is None:
        raise AutoresearchError("prepare.py finished but left no manifest")
    pinned = ws.pins.val_sha256 or None
    if pinned is not None:
        if pinned != record["val_sha256"]:
            raise AutoresearchError(
                f"the validation split changed (sha256 {record['val_sha256'][:12]}, pinned {pinned[:12]}): "
                "results would not compare; make a new workspace"
            )
    else:
        pins.write(ws.pins.with_val(record["val_sha256"]))
    return record
