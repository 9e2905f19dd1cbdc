"""The evaluator process: scores a handed-over model with the pinned harness, outside the trainer's sandbox.

    python -I -B -m autoresearch.evaluator [--wait] JOB.json

JOB names the harness file (a copy the engine made of the workspace's harness), the sha256 it
must have (the pin), the hand-over folder the trainer wrote and the record to write. The
harness file is checked, imported as a module and asked to `score_handover(folder)`; the
record the engine reads is written here, with the harness fingerprint this process checked
and the evaluation time this process measured, never by the training run. A problem is a
record with one `error` line (exit status 1).

With --wait the process gets ready while the trainer still runs: it checks and imports the
harness (and so PyTorch), lets the harness warm up (`warm()`, when it has one: imports and
files that do not depend on the hand-over), then waits for one line on stdin. "go" starts the
scoring; anything else, or the end of stdin (the trainer failed, the engine died), ends the
process quietly. Nothing it reads before "go" comes from the trainer.

This module imports nothing else of the package, so the process starts with only the
standard library, the harness and what the harness imports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path


def _write(path: Path, record: dict) -> None:
    # not files.atomic_write: this process imports nothing of the package (see above); the
    # record's folder is the evaluator's own, made fresh for the run
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def load_harness(job: dict):
    """(the harness module, its sha256) or (None, an error record)."""
    harness = Path(job["harness"])
    data = harness.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != job["harness_sha256"]:
        return None, {"error": "the harness given to the evaluator does not match its pin"}
    spec = importlib.util.spec_from_file_location("prepare", harness)
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare"] = module
    try:
        spec.loader.exec_module(module)
        if callable(getattr(module, "warm", None)):
            module.warm()
    except Exception as exc:
        return None, _error(module, exc)
    return module, sha


def _error(module, exc: Exception) -> dict:
    """The harness's own errors are one line; anything else says what it was."""
    known = getattr(module, "HarnessError", None)
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return {"error": line if known and isinstance(exc, known) else f"{type(exc).__name__}: {line}"[:300]}


def evaluate(job: dict, loaded=None) -> dict:
    module, sha = loaded or load_harness(job)
    if module is None:
        return sha
    started = time.monotonic()
    try:
        record = module.score_handover(job["handover"])
    except Exception as exc:
        return _error(module, exc)
    if not isinstance(record, dict):
        return {"error": "the harness's score_handover returned no record"}
    record = dict(record, harness_sha256=sha, eval_seconds=round(time.monotonic() - started, 3))
    return record


def main(argv: list[str]) -> int:
    args = argv[1:]
    wait = args[:1] == ["--wait"]
    if wait:
        args = args[1:]
    if len(args) != 1:
        print("usage: python -m autoresearch.evaluator [--wait] JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    out = Path(job["record"])
    loaded = None
    if wait:
        loaded = load_harness(job)  # while the trainer runs: nothing here depends on it
        if sys.stdin.readline().strip() != "go":
            return 3  # nothing to evaluate: the trainer failed, or the engine went away
    record = evaluate(job, loaded)
    _write(out, record)
    if "error" in record:
        print(f"evaluator: {record['error']}", file=sys.stderr)
        return 1
    print(f"evaluator: {job.get('metric', 'val_bpb')} {record.get(job.get('metric', 'val_bpb'))} "
          f"in {record['eval_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # the record is written and the output flushed: skip the interpreter's teardown, which
    # with PyTorch loaded takes most of a second of every run's time outside training
    os._exit(code)
