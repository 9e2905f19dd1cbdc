"""Every run in the experiment tracker researchers already use (`run --track mlflow`).

The queue is the ledger itself: a tracker has been sent the first `Store.sent(key)` rows of the
engine's store, and the rows after them are what it still has to get. While `autoresearch run`
goes on, a thread of its own sends rows as they are recorded (`Sender`); a tracker that is down
keeps them queued, the run says so once, and they go with the next send that works: later in
the same run, at the next run, or with `autoresearch track`. The research never waits for a
tracker: the loop only starts the sender, and gives it FINAL_SECONDS at the end.

What a tracker gets for a row is an `Item`: the row, its research line and experiment number,
the diff its commit made, its run's log and the training curve printed in it. A tracker is a
view: it reads what the engine recorded and its copy is never read back.

A tracker is a plugin: a subclass of `Tracker` named in TRACKERS, whose SDK is imported only
when it is used (an optional extra: `autoresearch[mlflow]`).
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from autoresearch import gitrepo, runlog
from autoresearch.errors import AutoresearchError
from autoresearch.research.history import History
from autoresearch.research.results import Row
from autoresearch.workspace import Workspace

# name -> (module:class, the package its SDK comes from, the extra that installs it)
TRACKERS = {"mlflow": ("autoresearch.tracking.mlflow:MlflowTracker", "mlflow", "autoresearch[mlflow]")}
POLL_SECONDS = 5.0  # how often the sender looks for new rows
FINAL_SECONDS = 30.0  # at the end of a run, the most the last send may take; the rest stays queued


class TrackerDown(Exception):
    """The tracker cannot take runs now (unreachable, failing): they stay queued."""


class TrackerRefused(Exception):
    """The tracker refuses this row as it is (a value it does not take): it is skipped, said once."""


@dataclass(frozen=True)
class Item:
    """One recorded row and what comes with it."""

    seq: int  # its place in the ledger, from 0: the key that makes sending it again a no-op
    row: Row
    workspace: str  # the workspace folder's name
    metric: str
    number: int | None  # the experiment it belongs to, as the views number them (None: baseline)
    diff: str  # what its commit changed in the editable files ("" for baseline runs and re-runs)
    log: str  # its run's log, while the engine keeps it
    curve: tuple[tuple[int, float], ...]  # (step, training loss) as the trainer printed them

    def title(self) -> str:
        r = self.row
        if self.number is None:
            return "baseline"
        what = {"confirm": "confirm run", "rerun": "frontier re-run beside it"}.get(r.kind, r.description)
        return f"#{self.number} {what}"[:250]


class Tracker:
    """Where rows go. `send` raises TrackerDown when the tracker cannot take them now."""

    name = ""

    def __init__(self, ws: Workspace):
        self.ws = ws

    def where(self) -> str:
        """The destination, for people (a URI)."""
        return ""

    def hint(self) -> str:
        """How to look at what was sent ("" when there is nothing to say)."""
        return ""

    def send(self, item: Item) -> None:
        raise NotImplementedError

    @property
    def key(self) -> str:
        """Its queue's name in the store: another destination starts from the first row."""
        return f"{self.name}:{self.where()}"


def check(name: str) -> None:
    """One error line when the tracker called `name` cannot be used here (before anything starts)."""
    if name not in TRACKERS:
        raise AutoresearchError(f"unknown tracker {name!r}: use {', '.join(sorted(TRACKERS))}")
    _, package, extra = TRACKERS[name]
    if importlib.util.find_spec(package) is None:
        raise AutoresearchError(f"tracking with {name} needs {package}, which is not installed: pip install '{extra}'")


def load(name: str, ws: Workspace) -> Tracker:
    """The tracker called `name` (checked: `check`)."""
    check(name)
    module, _, cls = TRACKERS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)(ws)


def items(ws: Workspace, rows: list[Row], start: int) -> Iterator[Item]:
    """The rows from `start` on, each with what a tracker gets with it, made one at a time."""
    numbers: dict[int, int | None] = {}
    for branch in {r.branch for r in rows[start:]}:
        history = History(rows, branch or None)
        numbers.update({id(r): n for r, n in zip(history.rows, history.numbers)})
    logs = runlog.RunLogs(ws.state.logs_dir)
    for seq in range(start, len(rows)):
        r = rows[seq]
        log = ""
        if r.log:
            try:
                log = runlog.text(logs.path(r.log).read_text(errors="replace"))
            except OSError:
                pass
        diff = ""
        if r.kind in ("experiment", "confirm") and r.commit:
            diff = gitrepo.commit_diff(ws.root, r.commit, ws.config.editable) or ""
        curve = tuple((p.step, float(p.fields["loss"])) for p in runlog.curve(log)
                      if isinstance(p.fields.get("loss"), float))
        yield Item(seq, r, ws.root.name, ws.config.metric, numbers.get(id(r)), diff, log, curve)


class Sender:
    """Sends the store's rows past the tracker's mark, in order, marking each once it is in."""

    def __init__(self, ws: Workspace, tracker: Tracker, out: Callable[[str], None]):
        self.ws, self.tracker, self.out = ws, tracker, out
        self.sent = 0  # rows sent by this sender
        self.down = ""  # why the tracker is down, once said
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pending(self) -> int:
        return max(0, len(self.ws.store.rows()) - self.ws.store.sent(self.tracker.key))

    def send_pending(self, until: float | None = None) -> int:
        """Send what is queued (until the monotonic time `until`, or the sender is stopped); the
        rows sent. A tracker that is down, or fails in a way of its own, leaves the rest queued
        and is said once; a row it refuses as it is goes unsent, said."""
        store = self.ws.store
        rows = store.rows()
        start = store.sent(self.tracker.key)
        done = 0
        for item in items(self.ws, rows, start) if start < len(rows) else ():
            if (until is not None and time.monotonic() > until) or (until is None and self._stop.is_set()):
                break
            try:
                self.tracker.send(item)
            except TrackerRefused as exc:
                self.out(f"tracking: {self.tracker.name} refused run {item.seq + 1} ({_first(exc)}); it is skipped")
            except Exception as exc:  # never the research's problem: it stays queued
                if not self.down:
                    self.out(f"tracking: {self.tracker.name} at {self.tracker.where()} cannot take runs now "
                             f"({_first(exc)}); they stay queued and are sent when it can")
                self.down = _first(exc)
                break
            else:
                done += 1
                if self.down:
                    self.out(f"tracking: {self.tracker.name} is back; sending the queued runs")
                    self.down = ""
            store.mark_sent(self.tracker.key, item.seq + 1)
        self.sent += done
        return done

    def start(self) -> "Sender":
        self.out(f"tracking: every run goes to {self.tracker.name} at {self.tracker.where()}"
                 + (f" ({self.tracker.hint()})" if self.tracker.hint() else ""))
        self._thread = threading.Thread(target=self._run, name="autoresearch-tracking", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_pending()
            except Exception as exc:  # the store busy, say: the next look tries again
                self.down = self.down or _first(exc)
            self._stop.wait(POLL_SECONDS)

    def close(self, seconds: float = FINAL_SECONDS) -> None:
        """Stop the thread, send what the run recorded last (for at most `seconds`; Ctrl-C cuts it
        short) and say where things stand. Never raises: the research's own summary comes first."""
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join(seconds)
            if self._thread is None or not self._thread.is_alive():
                if self.pending() and not self.down:
                    self.out(f"tracking: sending the last runs to {self.tracker.name} (at most {seconds:.0f} s)")
                self.send_pending(until=time.monotonic() + seconds)
            left = self.pending()
        except KeyboardInterrupt:
            left, self.down = self.pending(), self.down or "stopped"
        except Exception as exc:
            self.out(f"tracking: {_first(exc)}")
            return
        if left:
            self.out(f"tracking: {left} run{'s' if left != 1 else ''} queued for {self.tracker.name} "
                     f"({self.down or 'not sent in time'}): the next `autoresearch run` or `autoresearch track` "
                     f"sends {'them' if left != 1 else 'it'}")
        else:
            self.out(f"tracking: {self.sent} run{'s' if self.sent != 1 else ''} sent to {self.tracker.name} "
                     f"this session, none queued")


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
