"""results.tsv on disk: read it whole, append rows so that it is never torn.

The format lives in autoresearch.research.results; this module only touches the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from autoresearch.errors import AutoresearchError
from autoresearch.research.results import ResultsError, Row, header, line, parse


def read(path: Path) -> tuple[str, list[Row]]:
    """(metric, rows) of a results file; AutoresearchError when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise AutoresearchError(f"{path} does not exist yet: no experiments recorded")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoresearchError(f"cannot read {path}: {exc}") from exc
    try:
        return parse(text, path.name)
    except ResultsError as exc:
        raise AutoresearchError(str(exc)) from exc


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
            parse(old, path.name)  # refuse to extend a corrupted file
        except ResultsError as exc:
            raise AutoresearchError(str(exc)) from exc
        if old and not old.endswith("\n"):
            old += "\n"
    else:
        old = header(metric)
    text = old + "".join(line(r) for r in rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise AutoresearchError(f"cannot record the result in {path}: {exc.strerror or exc}") from exc


def read_rows(path: Path) -> list[Row]:
    """All rows ([] when there is no file yet). A malformed file is an error that says what to do."""
    if not Path(path).exists():
        return []
    try:
        return read(path)[1]
    except AutoresearchError as exc:
        raise AutoresearchError(f"{exc}; fix or move results.tsv away (nothing was changed)") from exc
