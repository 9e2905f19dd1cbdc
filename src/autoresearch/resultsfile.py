"""A results file on disk (one written by this tool, or by the original project): read it
whole, append rows so that it is never torn.

The format lives in autoresearch.research.results; this module only touches the file. The
engine's own rows live in its database (autoresearch.store), of which a workspace's
results.tsv is a copy: the engine never reads that copy back (the agent can edit it).
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.research.results import ResultsError, Row, header, line, parse


def read(path: Path) -> tuple[str, list[Row]]:
    """(metric, rows) of a results file; AutoresearchError when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise AutoresearchError(f"{path} does not exist yet: no experiments recorded yet")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoresearchError(f"cannot read {path}: {exc}") from exc
    try:
        return parse(text, path.name)
    except ResultsError as exc:
        raise AutoresearchError(str(exc)) from exc


def _write_whole(path: Path, text: str) -> None:
    """files.atomic_write, its error said as a results file's."""
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise AutoresearchError(f"cannot record the result in {path}: {exc.strerror or exc}") from exc


def append(path: Path, rows: list[Row] | Row, metric: str = "val_bpb") -> None:
    """Append rows so that the file is always whole: write a full copy beside it, fsync, rename.

    An existing file that does not parse is never overwritten (AutoresearchError). A full or
    read-only disk raises AutoresearchError and leaves the old file as it was.
    """
    path = Path(path)
    if isinstance(rows, Row):
        rows = [rows]
    if path.exists():
        old = path.read_text()
        try:
            metric, earlier = parse(old, path.name)  # refuse to extend a corrupted file
        except ResultsError as exc:
            raise AutoresearchError(str(exc)) from exc
        if old.split("\n", 1)[0] + "\n" != header(metric):
            # written with fewer columns (the original's five, or before a column was added):
            # rewritten whole with today's, so every line has as many cells as the header
            old = header(metric) + "".join(line(r) for r in earlier)
        if old and not old.endswith("\n"):
            old += "\n"
    else:
        old = header(metric)
    _write_whole(path, old + "".join(line(r) for r in rows))


def read_rows(path: Path) -> list[Row]:
    """All rows ([] when there is no file yet). A malformed file is an error that says what to do."""
    if not Path(path).exists():
        return []
    try:
        return read(path)[1]
    except AutoresearchError as exc:
        raise AutoresearchError(f"{exc}; fix or move results.tsv away (nothing was changed)") from exc
