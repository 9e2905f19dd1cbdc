"""An edit of one text made on another version of it, line by line (finalize's three-way merge).

`merge_edit(old, new, here)` makes on `here` the edit that turned `old` into `new`: each
changed stretch of `old` is found in `here` through their common lines and replaced there.
Unlike git's merge, an edit next to a line that `here` changed is not a conflict (two changes
of neighbouring constants of train.py are common); an edit of lines that `here` changed, or an
insertion whose place `here` moved or changed, is (None). Pure: no files, no git.
"""

from __future__ import annotations

from difflib import SequenceMatcher


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def merge_edit(old: str, new: str, here: str) -> str | None:
    """`here` with the edit from `old` to `new` made on it; None where it does not apply."""
    a, b, c = _lines(old), _lines(new), _lines(here)
    at: list[int | None] = [None] * len(a)  # where each line of `old` is in `here` (None: changed there)
    for tag, i1, i2, j1, _ in SequenceMatcher(None, a, c, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                at[i1 + k] = j1 + k
    out: list[str] = []
    pos = 0  # the next line of `here` not copied yet
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:  # old[i1:i2] becomes new[j1:j2]: those lines must be in `here` as they were, together
            span = at[i1:i2]
            if None in span or span != list(range(span[0], span[0] + len(span))):
                return None
            start, end = span[0], span[-1] + 1
        else:  # an insertion between old lines i1 - 1 and i1: both where they were, still neighbours
            before = at[i1 - 1] if i1 > 0 else -1
            after = at[i1] if i1 < len(a) else len(c)
            if before is None or after is None or after != before + 1:
                return None
            start = end = after
        if start < pos:
            return None
        out += c[pos:start] + b[j1:j2]
        pos = end
    return "".join(out + c[pos:])


def merge_file(old: str | None, new: str | None, here: str | None) -> tuple[bool, str | None]:
    """(whether it applies, the file's text after it: None for no file) for an edit that may make
    (`old` None) or remove (`new` None) the file."""
    if here == old:
        return True, new
    if here == new:
        return True, here
    if None in (old, new, here):
        return False, None
    merged = merge_edit(old, new, here)
    return merged is not None, merged
