"""The engine's private state in one place: an SQLite database in its private folder.

What it holds (and nothing else writes it):

| table | what | written | read |
| --- | --- | --- | --- |
| `rows` | every results row the engine recorded, in order (the ledger) | `record` | History, recovery |
| `journals` | each experiment in flight: enough to finish it after `kill -9` | the engine, step by step | recovery |
| `seen` | which code already ran, by the content of its editable files | `remember` | the guard |
| `meta` | the schema version; the pins (harness, validation split, baseline needs) and the pinned settings (autoresearch.pins); how many rows each tracker was sent (autoresearch.tracking) | `open`, `pin`, `mark_sent` | `open`, `pinned`, `sent` |

A decision is one transaction: its rows go in and its journal is marked recorded together, so
a kill at any point leaves either both or neither. WAL mode: readers (the views, another
thread's journal) never block the writer. `results.tsv` in the workspace is a copy written
from `rows` after each record, for people and other tools; the engine never reads it back
(the agent can edit it), and `restore` rewrites it whole at each start.

Older workspaces kept these as files (a TSV ledger, journal JSON files holding TSV lines,
`seen.json`); `open` moves them in once (`_migrate_files`, version 0 to 1), says so through
`take_note`, and renames the old files with a `.v0` suffix.

The database lives in the private folder (pins.private_dir): neither a training run nor the
agent's edits of the workspace reach it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterable

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.research.results import ResultsError, Row, header, line, parse

DB_NAME = "engine.db"
VERSION = 1
_TYPES = {"str": "TEXT", "float": "REAL", "int": "INTEGER"}


@dataclass(frozen=True)
class Journal:
    """One experiment in flight: enough to record it after the engine died.

    `measured` holds the rows of its finished runs as they would be recorded if the engine
    stopped now (the candidate's undecided); `running` the run in flight (its commit, kind,
    description), if any."""

    branch: str
    frontier: str  # full sha
    kind: str  # baseline | experiment
    description: str
    candidate: str | None = None  # full sha, once committed
    agent: str = ""
    pid: int = 0  # the engine's
    started_utc: str = ""
    usage: dict | None = None  # tokens_in, tokens_out, cost_usd
    result_path: str = ""  # the harness record of the run in flight (marks its processes)
    pgid: int | None = None  # the run's process group while it runs
    recorded: bool = False  # its rows are in the ledger
    keep: bool = False  # and they say keep
    reason: str = ""  # why it could not be recorded
    measured: tuple[Row, ...] = ()
    running: tuple[str, str, str] | None = None  # (commit, kind, description) of the run in flight
    worker: str = ""  # the worker that runs it ("" for the baseline on the driver)

    def to_json(self) -> str:
        data = asdict(self)
        data["measured"] = [asdict(r) for r in self.measured]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Journal | None":
        try:
            data = json.loads(text)
            data["measured"] = tuple(Row(**r) for r in data.get("measured") or ())
            if data.get("running"):
                data["running"] = tuple(data["running"])
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError, AttributeError):
            return None  # a damaged journal reads as absent


@dataclass(frozen=True)
class SeenEntry:
    """A run of some code, remembered by the content of its editable files."""

    commit: str
    status: str
    value: float
    reason: str = ""


_BOOLS = ("sandboxed", "fresh")  # kept as 0 / 1 (sandboxed also NULL: not known)


def _row_columns() -> list[tuple[str, str]]:
    out = []
    for f in fields(Row):
        base = str(f.type).split("|")[0].strip()
        out.append((f.name, "INTEGER" if f.name in _BOOLS else _TYPES.get(base, "TEXT")))
    return out


ROW_COLUMNS = _row_columns()
_NAMES = [name for name, _ in ROW_COLUMNS]
_QUOTED = ", ".join(f'"{n}"' for n in _NAMES)


def _to_row(values: tuple) -> Row:
    data = dict(zip(_NAMES, values))
    if data["sandboxed"] is not None:
        data["sandboxed"] = bool(data["sandboxed"])
    data["fresh"] = bool(data["fresh"])  # NULL in rows from before the column
    if data["value"] is None:  # SQLite keeps a NaN as NULL
        data["value"] = math.nan
    return Row(**data)


_local = threading.local()


class Store:
    """The engine's database for the workspace whose private folder is `private`; with
    `public`, the results.tsv it keeps as a copy of the rows."""

    def __init__(self, private: Path, public: Path | None = None, metric: str = "val_bpb"):
        self.private, self.public, self.metric = Path(private), public, metric
        self.path = self.private / DB_NAME

    # -- the connection ---------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are not shared between threads), opened
        again when the file at the path is another one (a workspace's records moved aside by an
        `init` where it was, and a new database made there)."""
        conns = getattr(_local, "conns", None)
        if conns is None:
            conns = _local.conns = {}
        key = str(self.path)
        conn, inode = conns.get(key, (None, None))
        try:
            now = self.path.stat().st_ino
        except FileNotFoundError:
            now = None
        if conn is None or now is None or now != inode:
            if conn is not None:
                conn.close()
            conn = self._open()
            conns[key] = (conn, self.path.stat().st_ino)
        return conn

    def _open(self) -> sqlite3.Connection:
        self.private.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a recorded decision survives a power cut too
            conn.execute("PRAGMA busy_timeout=30000")
            with _transaction(conn):
                self._schema(conn)
        except sqlite3.DatabaseError as exc:
            raise AutoresearchError(f"cannot open the engine's records {self.path}: {exc}; move it away to start "
                                    f"over (the rows are also in results.tsv; the settings are pinned again from the "
                                    f"committed autoresearch.toml, the validation split by the next prepare)") from exc
        if fresh:
            try:
                with _transaction(conn):
                    note = self._migrate_files(conn)
                    if note:  # said once, by the next start (`take_note`)
                        conn.execute("INSERT OR REPLACE INTO meta VALUES ('note', ?)", (note,))
            except AutoresearchError:
                conn.close()  # nothing half-made: the next start tries again
                for extra in ("", "-wal", "-shm"):
                    Path(f"{self.path}{extra}").unlink(missing_ok=True)
                raise
        return conn

    def _schema(self, conn: sqlite3.Connection) -> None:
        cols = ", ".join(f'"{n}" {t}' for n, t in ROW_COLUMNS)
        conn.execute(f"CREATE TABLE IF NOT EXISTS rows (seq INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
        conn.execute("CREATE TABLE IF NOT EXISTS journals (name TEXT PRIMARY KEY, data TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, data TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        have = {r[1] for r in conn.execute("PRAGMA table_info(rows)")}
        for name, kind in ROW_COLUMNS:  # a column added to Row since the database was made
            if name not in have:
                conn.execute(f'ALTER TABLE rows ADD COLUMN "{name}" {kind}')
        version = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if version is not None and int(version[0]) > VERSION:
            raise sqlite3.DatabaseError(f"written by a newer version of autoresearch (version {version[0]})")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(VERSION),))

    # -- rows -------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """Every row the engine recorded, oldest first."""
        cur = self._db().execute(f"SELECT {_QUOTED} FROM rows ORDER BY seq")
        return [_to_row(v) for v in cur]

    def append(self, rows: Row | Iterable[Row]) -> None:
        """Record rows that belong to no journal (an invalid or noop experiment)."""
        self.record(rows)

    def record(self, rows: Row | Iterable[Row], *, journal: str = "", keep: bool = False) -> None:
        """The rows and, with `journal`, that journal marked recorded (and whether they say
        keep): one transaction. Then results.tsv follows, best effort."""
        rows = [rows] if isinstance(rows, Row) else list(rows)
        conn = self._db()
        try:
            with _transaction(conn):
                self._insert(conn, rows)
                if journal:
                    j = self._journal(conn, journal)
                    if j is not None:
                        self._put_journal(conn, journal, replace(j, recorded=True, keep=keep))
        except sqlite3.Error as exc:
            raise AutoresearchError(f"cannot record the result in {self.path}: {exc}") from exc
        self._mirror(rows)

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
        marks = ", ".join("?" for _ in _NAMES)
        conn.executemany(f"INSERT INTO rows ({_QUOTED}) VALUES ({marks})",
                         [tuple(getattr(r, n) for n in _NAMES) for r in rows])

    # -- results.tsv, the public copy ---------------------------------------------------

    def _mirror(self, new: list[Row]) -> None:
        """Append the new rows to results.tsv when it is still the copy written last; else
        rewrite it whole. A results.tsv that cannot be written now is rewritten at the next
        record or start."""
        if self.public is None:
            return
        try:
            size = self._meta("public_size")
            path = self.public
            if size is not None and path.is_file() and not path.is_symlink() and path.stat().st_size == int(size):
                with open(path, "a") as fh:
                    fh.write("".join(line(r) for r in new))
                self._set_meta("public_size", str(path.stat().st_size))
            else:
                self.restore()
        except (OSError, AutoresearchError, sqlite3.Error):
            pass

    def restore(self) -> int:
        """Make results.tsv a copy of the rows again; how many lines it had that the engine did
        not write (they are dropped). Nothing to do before the first row."""
        if self.public is None:
            return 0
        rows = self.rows()
        if not rows:
            return 0
        text = header(self.metric) + "".join(line(r) for r in rows)
        try:
            old = self.public.read_text() if self.public.is_file() and not self.public.is_symlink() else None
        except (OSError, UnicodeDecodeError):
            old = ""
        if old != text:
            atomic_write(self.public, text)  # a link planted in its place is replaced, not written through
        self._set_meta("public_size", str(len(text.encode())))
        if old is None or old == text:
            return 0
        mine = set(text.splitlines())
        return sum(1 for ln in old.splitlines() if ln.strip() and ln not in mine)

    # -- journals -----------------------------------------------------------------------

    def journal(self, name: str) -> Journal | None:
        return self._journal(self._db(), name)

    def journals(self) -> list[tuple[str, Journal | None]]:
        cur = self._db().execute("SELECT name, data FROM journals ORDER BY name")
        return [(name, Journal.from_json(data)) for name, data in cur]

    def write_journal(self, name: str, journal: Journal) -> None:
        conn = self._db()
        with _transaction(conn):
            self._put_journal(conn, name, journal)

    def drop_journal(self, name: str) -> None:
        conn = self._db()
        with _transaction(conn):
            conn.execute("DELETE FROM journals WHERE name = ?", (name,))

    @staticmethod
    def _journal(conn: sqlite3.Connection, name: str) -> Journal | None:
        found = conn.execute("SELECT data FROM journals WHERE name = ?", (name,)).fetchone()
        return Journal.from_json(found[0]) if found else None

    @staticmethod
    def _put_journal(conn: sqlite3.Connection, name: str, journal: Journal) -> None:
        conn.execute("INSERT OR REPLACE INTO journals VALUES (?, ?)", (name, journal.to_json()))

    # -- code that already ran ------------------------------------------------------------

    def seen(self) -> dict[str, SeenEntry]:
        out = {}
        for key, data in self._db().execute("SELECT key, data FROM seen"):
            try:
                out[key] = SeenEntry(**json.loads(data))
            except (ValueError, TypeError):
                continue
        return out

    def remember(self, entries: dict[str, SeenEntry]) -> None:
        conn = self._db()
        with _transaction(conn):
            conn.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)",
                             [(k, json.dumps(asdict(v))) for k, v in entries.items()])

    def take_note(self) -> str:
        """What opening the database did that a person should hear of (a migration), once."""
        note = self._meta("note") or ""
        if note:
            conn = self._db()
            with _transaction(conn):
                conn.execute("DELETE FROM meta WHERE key = 'note'")
        return note

    # -- pins: what makes scores comparable, written by init, prepare and the first baseline -----

    def pinned(self, key: str) -> str | None:
        """A pin's text (autoresearch.pins says which there are); None when not pinned."""
        return self._meta(f"pin:{key}")

    def pin(self, key: str, text: str) -> None:
        self._set_meta(f"pin:{key}", text)

    def unpin(self, *keys: str) -> None:
        conn = self._db()
        with _transaction(conn):
            conn.executemany("DELETE FROM meta WHERE key = ?", [(f"pin:{k}",) for k in keys])

    # -- documents: records of other commands (a line's finalize), one JSON text each -------

    def document(self, name: str) -> str | None:
        return self._meta(f"doc:{name}")

    def put_document(self, name: str, text: str) -> None:
        self._set_meta(f"doc:{name}", text)

    # -- trackers: how many rows each has been sent (the rows past it are its queue) ----------

    def sent(self, tracker: str) -> int:
        found = self._meta(f"sent:{tracker}")
        return int(found) if found and found.isdigit() else 0

    def mark_sent(self, tracker: str, count: int) -> None:
        """The tracker has the first `count` rows; the mark only ever moves forward."""
        if count > self.sent(tracker):
            self._set_meta(f"sent:{tracker}", str(count))

    # -- meta -------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        found = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return found[0] if found else None

    def _set_meta(self, key: str, value: str) -> None:
        conn = self._db()
        with _transaction(conn):
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- an older workspace's files, moved in once ---------------------------------------------

    def _migrate_files(self, conn: sqlite3.Connection) -> str:
        """Version 0 to 1: the ledger TSV, the journal files and seen.json, into the database;
        each old file renamed `.v0`. (The workspace's results.tsv is never read: the agent can
        write it.)"""
        moved = []
        source = ledger = self.private / "results.tsv"
        if ledger.is_file():
            try:
                rows = parse(source.read_text(), source.name)[1]
            except (OSError, UnicodeDecodeError, ResultsError) as exc:
                raise AutoresearchError(f"cannot read {source.name} ({exc}); fix or move it away "
                                        f"(nothing was changed)") from None
            self._insert(conn, rows)
            moved.append(f"{len(rows)} rows")
        for path in sorted(self.private.glob("journal*.json")):
            journal = _old_journal(path)
            if journal is not None:
                self._put_journal(conn, path.stem.removeprefix("journal-") if "-" in path.stem else "main", journal)
                moved.append(path.name)
        seen = self.private / "seen.json"
        if seen.is_file():
            try:
                data = json.loads(seen.read_text())
                for key, value in data.items():
                    conn.execute("INSERT OR REPLACE INTO seen VALUES (?, ?)", (key, json.dumps(value)))
                moved.append("seen.json")
            except (OSError, ValueError, AttributeError):
                pass
        for path in [ledger, seen, *self.private.glob("journal*.json")]:
            if path.is_file():
                os.replace(path, path.with_name(path.name + ".v0"))
        return f"moved the engine's records into {DB_NAME} (version {VERSION}): {', '.join(moved)}" if moved else ""


def _old_journal(path: Path) -> Journal | None:
    """A journal file of version 0: `measured` as results.tsv lines, `running` a commit."""
    try:
        data = json.loads(path.read_text())
        lines = data.get("measured") or []
        data["measured"] = [asdict(r) for r in parse(header() + "".join(
            ln if ln.endswith("\n") else ln + "\n" for ln in lines), "journal")[1]]
        running = data.get("running") or ""
        data["running"] = [running, data.get("kind", "experiment"), data.get("description", "")] if running else None
        data.pop("version", None)
        return Journal.from_json(json.dumps(data))
    except (OSError, ValueError, ResultsError, AttributeError):
        return None


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an error): one writer at a time, all or nothing."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, exc, tb) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def read_rows(private: Path) -> list[Row]:
    """The rows of a workspace's database, read only (for the views); none when it has none."""
    path = Path(private) / DB_NAME
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            return [_to_row(v) for v in conn.execute(f"SELECT {_QUOTED} FROM rows ORDER BY seq")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []
