"""results.tsv on disk: read it whole, append rows so that it is never torn.

The format lives in autoresearch.research.results; this module only touches the file.

A workspace's results.tsv can be written by the agent (it edits files in the workspace) and,
without a sandbox, by a training run. So the engine keeps its own copy, the ledger, in its
private folder (autoresearch.state): `Results` appends there first, then rewrites the
workspace's results.tsv as a copy of it, and reads only the ledger. A row the engine did not
write is never read back; the next append (or `Results.restore`) drops it from results.tsv.
A workspace from before the ledger has its results.tsv adopted once, when it is first read.
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


def _write_whole(path: Path, text: str) -> None:
    """Write a full copy beside `path`, fsync, rename: a reader sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.is_symlink():  # never write through a link planted in its place
            path.unlink()
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


class Results:
    """A workspace's results as the engine wrote them: the ledger, mirrored to results.tsv."""

    def __init__(self, public: Path, ledger: Path, metric: str = "val_bpb"):
        self.public, self.ledger, self.metric = Path(public), Path(ledger), metric

    def rows(self) -> list[Row]:
        """The rows the engine wrote ([] before the first); adopts an older results.tsv once."""
        self._adopt()
        return read_rows(self.ledger)

    def append(self, rows: list[Row] | Row) -> None:
        """The ledger first (a row counts once it is there), then results.tsv as its copy.

        Only a failure to write the ledger is an error: a results.tsv that cannot be written
        now is rewritten from the ledger at the next append or start."""
        self._adopt()
        append(self.ledger, rows, self.metric)
        try:
            self.restore()
        except (AutoresearchError, OSError):
            pass

    def restore(self) -> int:
        """Make results.tsv a copy of the ledger again; how many lines it had that the engine
        did not write (they are dropped)."""
        if not self.ledger.exists():
            return 0
        text = self.ledger.read_text()
        try:
            old = self.public.read_text() if self.public.exists() and not self.public.is_symlink() else None
        except (OSError, UnicodeDecodeError):
            old = ""
        if old == text:
            return 0
        mine = set(text.splitlines())
        foreign = 0 if old is None else sum(1 for ln in old.splitlines() if ln.strip() and ln not in mine)
        _write_whole(self.public, text)
        return foreign

    def _adopt(self) -> None:
        if self.ledger.exists() or not self.public.exists() or self.public.is_symlink():
            return
        try:
            text = self.public.read_text()
            parse(text, self.public.name)
        except (OSError, UnicodeDecodeError, ResultsError) as exc:
            raise AutoresearchError(f"cannot read {self.public.name} ({exc}); fix or move it away "
                                    f"(nothing was changed)") from exc
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        _write_whole(self.ledger, text if text.endswith("\n") else text + "\n")
