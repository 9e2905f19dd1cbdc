"""Checking an answer's edits (`answers.Answer`) against the workspace, and applying them.

`apply` is all or nothing: every block is checked in memory first (the file exists or is
created whole, the search text occurs exactly once, a `.py` result parses), then the files
are written. What it refuses raises `EditError`, whose message is written to be shown back
to the model for its one retry.

Not covered here: whether the change is *allowed*. Paths that would escape the workspace or
that the engine's guard cannot see (.git, the engine's state folder, ignored files) are
refused; an edit to a tracked file that is not editable (say `prepare.py`) is written, so
that the engine's guard reverts it and records the attempt as `invalid`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

from autoresearch import gitrepo
from autoresearch.agents.answers import HOW, Answer, EditError
from autoresearch.files import atomic_write
from autoresearch.state import STATE_DIR

_LEFT_OUT = re.compile(r"\b(rest|unchanged|same|remains?|remaining|existing|omitted|elided|as before)\b", re.IGNORECASE)


def _code_lines(path: str, text: str) -> int:
    python = path.endswith(".py")
    return sum(1 for line in text.split("\n") if line.strip() and not (python and line.strip().startswith("#")))


def _leaves_out(line: str) -> bool:
    """A comment standing in for code the model did not write out ("# ... rest unchanged")."""
    text = line.strip()
    if not text.startswith(("#", "//")):
        return False
    body = text.lstrip("#/ ").strip()
    if "..." not in body and "…" not in body:
        return False
    words = body.replace("…", " ").replace(".", " ").strip(" ()[]")
    return not words or bool(_LEFT_OUT.search(words))


def _check_whole(key: str, current: str, text: str) -> None:
    """Refuse a fenced block that is a fragment of `key` rather than the whole new file."""
    if key.endswith(".py"):
        try:
            ast.parse(text, filename=key)
        except SyntaxError as exc:
            where = f"line {exc.lineno}" if exc.lineno else "somewhere"
            raise EditError(f"the fenced block for {key} is not valid Python ({exc.msg}, {where}), so it is not "
                            f"the whole file; nothing was applied: {HOW}") from exc
    kept = {line.strip() for line in current.split("\n")}
    for number, line in enumerate(text.split("\n"), start=1):
        if _leaves_out(line) and line.strip() not in kept:
            raise EditError(f"the fenced block for {key} leaves code out ({line.strip()[:60]!r} on its line "
                            f"{number}); nothing was applied: {HOW}")
    have, had = _code_lines(key, text), _code_lines(key, current)
    if have * 2 < had and had - have >= 5:
        raise EditError(f"the fenced block is only {have} of {key}'s {had} lines of code, so writing it whole "
                        f"would delete most of the file; nothing was applied: {HOW}")


def check_path(root: Path, name: str) -> Path:
    """The file `name` names inside the workspace, or EditError when no edit may go there."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or not pure.parts or ".." in pure.parts:
        raise EditError(f"{name}: give a path relative to the workspace, inside it")
    if pure.parts[0].lower() in (".git", STATE_DIR):
        raise EditError(f"{name}: that folder is not part of the experiment")
    path = root.joinpath(*pure.parts)
    if path.is_symlink() or path.is_dir():
        raise EditError(f"{name}: not a regular file")
    real = path.resolve()
    if real != root.resolve() / pure and root.resolve() not in real.parents:
        raise EditError(f"{name}: leads outside the workspace")
    if gitrepo.is_ignored(root, pure.as_posix()):
        raise EditError(f"{name}: the engine owns that file; only the editable files and the notes may change")
    return path


def _locate(content: str, search: str, path: str, number: int) -> tuple[int, int]:
    """Start and end of the one place `search` occurs; tolerant of trailing spaces only."""
    count = content.count(search)
    if count == 1:
        start = content.index(search)
        return start, start + len(search)
    if count > 1:
        raise EditError(f"SEARCH block {number} for {path} matches {count} places; include more lines so it is unique")
    # Models often drop trailing whitespace or the final newline: retry line by line.
    want = [line.rstrip() for line in search.rstrip("\n").split("\n")]
    have = content.split("\n")
    offsets = [0]
    for line in have:
        offsets.append(offsets[-1] + len(line) + 1)
    hits = [
        k for k in range(len(have) - len(want) + 1)
        if all(have[k + j].rstrip() == want[j] for j in range(len(want)))
    ]
    if len(hits) == 1:
        k = hits[0]
        end = min(offsets[k + len(want)], len(content))
        return offsets[k], end
    if len(hits) > 1:
        raise EditError(f"SEARCH block {number} for {path} matches {len(hits)} places; include more lines so it is unique")
    first = next((line for line in want if line.strip()), "")
    raise EditError(
        f"SEARCH block {number} for {path} does not match the current file"
        + (f" (its first line {first.strip()[:60]!r} " + ("occurs" if first.strip() and first.strip() in content else "does not occur") + ")" if first else "")
        + "; copy the lines exactly as they are now"
    )


def plan(root: Path, answer: Answer) -> dict[str, str]:
    """Relative path -> new text for every file the answer changes; raises EditError."""
    root = Path(root)
    new: dict[str, str] = {}
    before: dict[str, str | None] = {}
    for number, block in enumerate(answer.blocks, start=1):
        path = check_path(root, block.path)
        key = PurePosixPath(block.path.replace("\\", "/")).as_posix()
        if key in new:
            current = new[key]
        elif path.is_file():
            try:
                current = path.read_text()
            except UnicodeDecodeError as exc:
                raise EditError(f"{key}: not a text file") from exc
        else:
            current = None
        before.setdefault(key, current)
        if block.kind == "FILE":
            if block.fenced and current is not None:
                _check_whole(key, current, block.text)
            new[key] = block.text
        elif block.kind == "APPEND":
            base = current or ""
            if base and not base.endswith("\n"):
                base += "\n"
            new[key] = base + block.text
        else:
            if current is None:
                if block.search.strip():
                    raise EditError(f"SEARCH block {number}: {key} does not exist; use a FILE block to create it")
                new[key] = block.text
                continue
            if not block.search.strip():
                raise EditError(f"SEARCH block {number} for {key} is empty; copy the lines to replace")
            start, end = _locate(current, block.search, key, number)
            replacement = block.text
            if end == len(current) and not current.endswith("\n") and replacement.endswith("\n"):
                replacement = replacement[:-1]
            new[key] = current[:start] + replacement + current[end:]
    for key, text in new.items():
        if key.endswith(".py"):
            try:
                ast.parse(text, filename=key)
            except SyntaxError as exc:
                where = f"line {exc.lineno}" if exc.lineno else "somewhere"
                raise EditError(f"after the edit {key} is not valid Python ({exc.msg}, {where}); nothing was applied") from exc
    if answer.blocks and all(b.fenced for b in answer.blocks) and all(new[k] == before[k] for k in new):
        raise EditError(f"no edit: the fenced {', '.join(new)} is the same as the current file; make one change, "
                        f"as SEARCH/REPLACE blocks or the whole changed file in one fenced block")
    return new


def apply(root: Path, answer: Answer) -> list[str]:
    """Check every block, then write the changed files; returns the paths that changed."""
    root = Path(root)
    changed = []
    for key, text in plan(root, answer).items():
        path = root / key
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
        changed.append(key)
    return changed
