"""The edit format language models answer in, and reading an answer as edits.

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

Many models (local ones more often than not) answer instead with a line of prose and the
whole file in one fenced code block. When an answer has no edit block, its fenced blocks are
read as whole-file edits where they can be attributed to an editable file: by the name in
the fence's info string (```python train.py), on the line just before it (`train.py:`,
`### train.py`, `**train.py**`), or in a first-line comment (`# train.py`); an unnamed block
counts when the workspace has exactly one editable file and the block is its only candidate.
Such a block must be the whole file: one that does not parse, leaves code out (`# ... rest
unchanged`) or has under half the file's code lines is refused as a fragment (`editing.apply`
checks it against the file). An answer
with no usable edit at all raises `EditError("no edit: ...")` so that it gets its retry;
only an answer that keeps the format (a `DESCRIPTION:` line) and holds no code at all is a
deliberate "no change".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Sequence

from autoresearch.agents.base import description_in, one_line
from autoresearch.errors import AutoresearchError

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
The whole of one file in one fenced code block, its name on the line before (train.py:), is
also accepted.
"""

_OPEN = re.compile(r"^<{5,9} ?(SEARCH|FILE|APPEND)\s+(\S.*?)\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_CLOSE = re.compile(r"^>{5,9} ?(REPLACE|END)\s*$")


class EditError(AutoresearchError):
    """An answer that cannot be applied as it stands; the message is meant for the model."""


@dataclass(frozen=True)
class Block:
    kind: str  # "SEARCH", "FILE" or "APPEND"
    path: str
    search: str = ""
    text: str = ""
    fenced: bool = False  # a FILE read from a fenced code block: checked to be the whole file


@dataclass(frozen=True)
class Answer:
    description: str
    blocks: tuple[Block, ...]


def parse(text: str, editable: Sequence[str] = ()) -> Answer:
    """Split a model's answer into its description and edit blocks (no file is read).

    `editable`: the workspace's editable files, needed to read an answer without edit
    blocks as whole files in fenced code blocks; without it such an answer is "no edit"."""
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
            said = description_in(line)
            if said is not None and not description:
                description = said
            elif line.strip() and not line.strip().startswith("```"):
                prose.append(line.strip())
            i += 1
            continue
        block, i = _block(lines, i, opened.group(1), opened.group(2).strip().strip("`'\""))
        blocks.append(block)
    if not blocks:
        return _fenced_answer(lines, tuple(editable))
    if not description and prose:
        description = prose[0].lstrip("#*-> ").strip()
    return Answer(description=one_line(description), blocks=tuple(blocks))


def _block(lines: list[str], i: int, kind: str, path: str) -> tuple[Block, int]:
    """The edit block whose opening marker is line `i` (0-based), and the index of the line after it."""
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
    if kind != "SEARCH":
        return Block(kind, path, text=_join(first)), i + 1
    if current is first:
        raise EditError(f"the SEARCH block for {path} that starts on line {start} has no '=======' line")
    return Block(kind, path, search=_join(first), text=_join(second)), i + 1


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


# --- Answers without edit blocks: whole files in fenced code blocks ---------------------

_FENCE_OPEN = re.compile(r"^( *)(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE = re.compile(r"^ *(`{3,}|~{3,})\s*$")
_TOKEN = re.compile(r"[\w./\\-]+")
_FILE_NAME = re.compile(r"(?:\./)?[\w.-]+(?:/[\w.-]+)*\.[A-Za-z]\w{0,7}")
_NAME_PREFIX = re.compile(r"^(?:file(?:name)?|path)\s*[:=]\s*", re.IGNORECASE)
_COMMENT = re.compile(r"^\s*(?:#+|//+|--(?!-)|;+|/\*+|<!--)\s*(.*?)\s*(?:\*/|-->)?\s*$")
_LANGUAGES = {
    "py": {"python", "py", "python3", "py3"},
    "md": {"markdown", "md"},
    "yaml": {"yaml", "yml"}, "yml": {"yaml", "yml"},
    "sh": {"sh", "bash", "shell", "zsh"},
    "js": {"javascript", "js"}, "ts": {"typescript", "ts"},
    "txt": {"text", "txt", "plaintext"},
    "ini": {"ini", "cfg"}, "cfg": {"ini", "cfg"},
}
_DIFF_LANGUAGES = {"diff", "patch", "udiff"}
# how to send an edit, for the messages that go back to the model
HOW = "send SEARCH/REPLACE blocks, or the whole file in one fenced block with its name on the line before it"


@dataclass
class _Fence:
    line: int  # 1-based number of the opening line
    info: str
    body: list[str]
    closed: bool
    before: int | None  # index of the nearest non-blank line above, outside any fence
    lang: str = ""
    name: str | None = None  # the editable file it names
    other: str | None = None  # a file it names that is not editable


def _scan(lines: list[str]) -> tuple[list[_Fence], list[int]]:
    """The fenced code blocks of an answer, and the indices of the lines outside them."""
    fences: list[_Fence] = []
    outside: list[int] = []
    last_close = -1
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if not opened or (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            outside.append(i)
            i += 1
            continue
        indent, marker = len(opened.group(1)), opened.group(2)
        before = next((k for k in reversed(outside) if k > last_close and lines[k].strip()), None)
        body: list[str] = []
        j = i + 1
        closed = False
        while j < len(lines):
            close = _FENCE_CLOSE.match(lines[j])
            if close and close.group(1)[0] == marker[0] and len(close.group(1)) >= len(marker):
                closed = True
                break
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            j += 1
        fences.append(_Fence(i + 1, opened.group(3).strip(), body, closed, before))
        last_close = j
        i = j + 1
    return fences, outside


def _resolve(token: str, editable: tuple[str, ...]) -> str | None:
    """The editable file `token` names ("train.py", "./train.py", "`train.py`:"), else None."""
    name = token.strip().strip("`'\"*_").rstrip(".,:;!?)").replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    if not name:
        return None
    if name in editable:
        return name
    hits = [e for e in editable if name.endswith("/" + e) or e.endswith("/" + name)]
    return hits[0] if len(hits) == 1 else None


def _pure_name(line: str) -> str | None:
    """The file name a line consists of ("train.py:", "### `train.py`", "**File: train.py**"), else None."""
    core = _NAME_PREFIX.sub("", line.strip().strip("#*_`>:- \t").strip())
    core = core.strip("*_`'\": \t")
    return core if _FILE_NAME.fullmatch(core) else None


def _attribute(fence: _Fence, lines: list[str], editable: tuple[str, ...]) -> None:
    """Set the fence's language and the file it names: info string, first-line comment, line before."""
    tokens = [t for t in re.split(r"[\s{},;]+", fence.info) if t]
    if tokens:
        head = re.split(r"[:=]", tokens[0].lstrip("."), maxsplit=1)[0]
        fence.lang = "" if _FILE_NAME.fullmatch(head) else head.lower()
    for token in _TOKEN.findall(fence.info):
        resolved = _resolve(token, editable)
        if resolved:
            fence.name = resolved
            return
        if _FILE_NAME.fullmatch(token.rstrip(".,:;")) and not fence.other:
            fence.other = token.rstrip(".,:;")
    if fence.other:
        return
    first = next((line for line in fence.body if line.strip()), "")
    comment = _COMMENT.match(first) if not first.lstrip().startswith("#!") else None
    if comment and comment.group(1):
        text = _NAME_PREFIX.sub("", comment.group(1))
        pure = _pure_name(text)
        resolved = _resolve(pure or text.split()[0], editable) if text.split() else None
        if resolved or pure:
            fence.name, fence.other = resolved, None if resolved else pure
            return
    if fence.before is not None:
        line = lines[fence.before]
        pure = _pure_name(line)
        if pure:
            fence.name = _resolve(pure, editable)
            fence.other = None if fence.name else pure
            return
        named = {r for r in (_resolve(t, editable) for t in _TOKEN.findall(line)) if r}
        if len(named) == 1:
            fence.name = named.pop()


def _speaks(lang: str, path: str) -> bool:
    """Whether an unnamed fence tagged `lang` may hold the file `path`."""
    if not lang:
        return True
    ext = PurePosixPath(path).suffix.lstrip(".").lower()
    return lang in _LANGUAGES.get(ext, {ext})


def _is_diff(fence: _Fence) -> bool:
    first = next((line for line in fence.body if line.strip()), "")
    return fence.lang in _DIFF_LANGUAGES or first.startswith(("--- ", "diff --git", "@@ "))


def _no_edit(fences: list[_Fence], editable: tuple[str, ...]) -> str:
    """Why an answer without edit blocks has nothing to apply, in words for the model."""
    how = HOW + (f" ({editable[0]}:)" if editable else "")
    files = ", ".join(editable)
    if not fences:
        return f"no edit: the answer has no edit blocks and no fenced file; {how}"
    if any(_is_diff(f) for f in fences):
        return f"no edit: a diff is not applied; {how}"
    others = sorted({f.other for f in fences if f.other})
    if others:
        return (f"no edit: the fenced block names {', '.join(others)}, which may not change"
                + (f" (the editable files: {files})" if files else "") + f"; {how}")
    if len(editable) == 1:
        langs = ", ".join(sorted({f.lang for f in fences if f.lang}))
        return f"no edit: the fenced block ({langs}) is not {editable[0]}; {how}"
    return ("no edit: the fenced block does not say which file it is"
            + (f" (the editable files: {files})" if files else "") + f"; {how}")


def _fenced_answer(lines: list[str], editable: tuple[str, ...]) -> Answer:
    """An answer without edit blocks: its fenced whole files, or EditError("no edit: ...")."""
    fences, outside = _scan(lines)
    for fence in fences:
        _attribute(fence, lines, editable)
    description = ""
    declared = False
    prose: list[tuple[int, str]] = []
    for k in outside:
        said = description_in(lines[k])
        if said is not None and not declared:
            declared = True
            description = said
        elif lines[k].strip():
            prose.append((k, lines[k].strip()))
    if not description:
        intros = {f.before for f in fences}
        said = [t for k, t in prose if not _pure_name(t) and not (k in intros and t.endswith(":"))]
        said = said or [t for _, t in prose if not _pure_name(t)]
        description = said[0].lstrip("#*-> ").strip().rstrip(":").strip() if said else ""

    named = [f for f in fences if f.name]
    if named:
        chosen = named
    elif len(editable) == 1:
        chosen = [f for f in fences if not f.other and _speaks(f.lang, editable[0])]
        if len(chosen) > 1:
            raise EditError(f"the answer has {len(chosen)} fenced code blocks and does not say which one is "
                            f"{editable[0]}; {HOW} ({editable[0]}:)")
    else:
        chosen = []
    if not chosen:
        if not fences and declared:
            return Answer(description=one_line(description), blocks=())  # a deliberate "no change"
        raise EditError(_no_edit(fences, editable))
    blocks: list[Block] = []
    first_line: dict[str, int] = {}
    for fence in chosen:
        path = fence.name or editable[0]
        if path in first_line:
            raise EditError(f"the fenced blocks on lines {first_line[path]} and {fence.line} are both {path}; "
                            f"send the file once, whole, or SEARCH/REPLACE blocks")
        first_line[path] = fence.line
        if not fence.closed:
            raise EditError(f"the fenced block for {path} that starts on line {fence.line} is not closed "
                            f"(was the answer cut off?); {HOW}")
        if _is_diff(fence):
            raise EditError(f"the fenced block for {path} is a diff, and a diff is not applied; {HOW}")
        blocks.append(Block("FILE", path, text=_join(fence.body), fenced=True))
    return Answer(description=one_line(description), blocks=tuple(blocks))
