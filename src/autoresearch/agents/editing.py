"""The edit format language models answer in, and the code that checks and applies it.

A model that cannot touch the disk (the `anthropic` and `openai` agents) answers with text:
a `DESCRIPTION:` line and edit blocks. Three kinds of block, each opened by a marker line
naming the file and closed by a marker line:

    <<<<<<< SEARCH train.py
    lines copied exactly from the current file
    =======
    the lines that replace them
    >>>>>>> REPLACE

    <<<<<<< FILE notes.md          (the whole new content of a file)
    ...
    >>>>>>> END

    <<<<<<< APPEND notes.md        (text added at the end of a file)
    ...
    >>>>>>> END

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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autoresearch import gitrepo
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.state import STATE_DIR

FORMAT = """\
Answer with exactly this shape:

DESCRIPTION: <one line, under 80 characters: what you changed and why>

then one or more edit blocks. To change part of a file:

<<<<<<< SEARCH train.py
<lines copied exactly from the current file, enough of them to be unique>
=======
<the lines that replace them>
>>>>>>> REPLACE

To replace a whole file (or create notes.md):

<<<<<<< FILE notes.md
<the complete new content>
>>>>>>> END

To add to the end of a file (the usual way to write in notes.md):

<<<<<<< APPEND notes.md
<text to add>
>>>>>>> END

Rules for blocks: the file name follows the opening marker on the same line; SEARCH text
must match the current file character for character, including indentation, and occur
once; several SEARCH blocks may follow each other and apply in order; keep blocks small.
Do not wrap blocks in code fences. An answer with no block changes nothing.
"""

_OPEN = re.compile(r"^<{5,9} ?(SEARCH|FILE|APPEND)\s+(\S.*?)\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_CLOSE = re.compile(r"^>{5,9} ?(REPLACE|END)\s*$")
_DESCRIPTION = re.compile(r"^\s*[*_#>\s]*description[*_]*\s*:\s*[*_]*\s*(.*?)[*_\s]*$", re.IGNORECASE)


class EditError(AutoresearchError):
    """An answer that cannot be applied as it stands; the message is meant for the model."""


@dataclass(frozen=True)
class Block:
    kind: str  # "SEARCH", "FILE" or "APPEND"
    path: str
    search: str = ""
    text: str = ""


@dataclass(frozen=True)
class Answer:
    description: str
    blocks: tuple[Block, ...]


def parse(text: str) -> Answer:
    """Split a model's answer into its description and edit blocks (no file is read)."""
    lines = text.replace("\r\n", "\n").split("\n")
    description = ""
    prose: list[str] = []
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = _OPEN.match(line)
        if not opened:
            if line.startswith("<<<<<"):
                raise EditError(f"line {i + 1}: an opening marker must name its file, "
                                f"as in '<<<<<<< SEARCH train.py' (got {line.strip()[:40]!r})")
            if _CLOSE.match(line):
                raise EditError(f"line {i + 1}: a closing marker outside an edit block")
            found = _DESCRIPTION.match(line)
            if found and not description:
                description = found.group(1).strip()
            elif line.strip() and not line.strip().startswith("```"):
                prose.append(line.strip())
            i += 1
            continue
        kind, path = opened.group(1), opened.group(2).strip().strip("`'\"")
        start = i + 1
        first: list[str] = []
        second: list[str] = []
        current = first
        i = start
        closed = False
        while i < len(lines):
            line = lines[i]
            if kind == "SEARCH" and current is first and _DIVIDER.match(line):
                current = second
            elif _CLOSE.match(line):
                closed = True
                break
            elif _OPEN.match(line):
                break
            else:
                current.append(line)
            i += 1
        if not closed:
            raise EditError(f"the {kind} block for {path} that starts on line {start} is not closed "
                            f"(expected a '>>>>>>> {'REPLACE' if kind == 'SEARCH' else 'END'}' line)")
        if kind == "SEARCH":
            if current is first:
                raise EditError(f"the SEARCH block for {path} that starts on line {start} has no '=======' line")
            blocks.append(Block(kind, path, search=_join(first), text=_join(second)))
        else:
            blocks.append(Block(kind, path, text=_join(first)))
        i += 1
    if not description and prose:
        description = prose[0].lstrip("#*-> ").strip()
    return Answer(description=one_line(description), blocks=tuple(blocks))


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        if block.kind == "FILE":
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
