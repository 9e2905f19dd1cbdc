"""The rows of results.tsv, parsed and formatted: one row per experiment, the upstream five
columns first, then ours. No file I/O here (autoresearch.resultsfile reads and appends).

Upstream columns (in order): commit, <metric> (val_bpb), memory_gb, status, description.
Ours after them: timestamp, seconds, training_seconds, steps, kind, reason, agent,
tokens_in, tokens_out, cost_usd, branch (the research branch of the row), worker (which of
`run --workers N` ran it; empty for one at a time), eval_seconds (the evaluator's wall time),
cause (why a run did not count, see CAUSES), sandboxed (yes / no / empty: not known), log (the
run's own log, under the engine's logs folder), engine_seconds (the engine's own time on the run:
staging its copy, starting its sandboxes, checking and recording it). A run's wall clock is
seconds (the trainer: training_seconds of training, the rest start-up and hand-over) plus
eval_seconds plus engine_seconds. fresh (yes / empty): a re-run of the frontier that starts its
measurements over, because the earlier ones went stale (the machine changed under them): its
earlier runs are neither compared with nor pooled with the ones from here on. A file written by the original project (five
columns, no extras) reads fine; missing extras are empty, and for a file written before
`cause`, `sandboxed` and the `rerun` kind existed they are worked out once, here, from the old
reason text (`_upgrade`): nothing else reads meaning out of prose.

Statuses: keep, discard, crash, invalid, noop, interrupted (a run stopped by Ctrl-C, SIGTERM
or the engine's own death: it says nothing about the code), stale (with several workers, a win
against a frontier that moved while it ran: rebased and measured again, or in conflict with
the new frontier). Kinds: baseline (a run of the unchanged starting point), experiment (the
first row of each proposal: its status is the experiment's outcome), confirm (a further run of
the candidate; decided together with its experiment), rerun (a run of the frontier beside a
candidate, to measure drift: a kept measurement of the frontier's commit, never a new keep).

Memory: `memory_gb` is the run's peak (GPU memory on a GPU, resident memory on the CPU), empty
when nothing measured it; never a made-up 0.0.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any


UPSTREAM = ("commit", "val_bpb", "memory_gb", "status", "description")
EXTRA = (
    "timestamp", "seconds", "training_seconds", "steps", "kind", "reason",
    "agent", "tokens_in", "tokens_out", "cost_usd", "branch", "worker",
    "eval_seconds", "cause", "sandboxed", "log", "engine_seconds", "fresh",
)
STATUSES = ("keep", "discard", "crash", "invalid", "noop", "interrupted", "stale")
KINDS = ("baseline", "experiment", "confirm", "rerun")
MEASURED = ("keep", "discard")  # statuses whose rows carry a real measurement
# Why a crash or an interruption says nothing, or something, about the code:
#   code     the code failed (non-zero exit, no metric, over its budget): it counts as run
#   machine  the machine failed (data missing, sandbox down): not the code's doing
#   engine   the engine failed (an error of its own, a row it could not record)
#   stopped  stopped from outside while it ran (Ctrl-C, SIGTERM, a killed engine)
#   queued   stopped before any worker took it: it never ran
#   hopeless a discard stopped early: its training curve was far behind the frontier's (no measurement)
CAUSES = ("", "code", "machine", "engine", "stopped", "queued", "hopeless")


class ResultsError(ValueError):
    """A results text that does not parse; the message names the line."""


@dataclass(frozen=True)
class Row:
    commit: str
    value: float  # the metric; 0.0 for crashes, as upstream
    memory_gb: float
    status: str
    description: str
    timestamp: str = ""
    seconds: float | None = None
    training_seconds: float | None = None
    steps: int | None = None
    kind: str = "experiment"
    reason: str = ""
    agent: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    branch: str = ""  # e.g. autoresearch/nov22; "" in files written before the column existed
    worker: str = ""  # w1, w2, ... with `run --workers N`; "" for one experiment at a time
    eval_seconds: float | None = None
    cause: str = ""  # one of CAUSES: set on crashes and interruptions
    sandboxed: bool | None = None  # None: not known (no run, or a file from before the column)
    log: str = ""  # the run's own log (a name under the engine's logs folder), while it is kept
    engine_seconds: float | None = None  # the engine's own time on the run, outside its two processes
    fresh: bool = False  # a re-run that starts its commit's measurements over (History.stale)

    # -- what the row is (the one place these questions are answered) --------------------------

    @property
    def measured(self) -> bool:
        """It carries a real measurement of its commit."""
        return self.status in MEASURED and math.isfinite(self.value) and self.cause != "hopeless"

    @property
    def ran(self) -> bool:
        """Its code ran to an answer (a measurement, or a failure of the code itself): the
        same code need not run again."""
        return self.status in (*MEASURED, "stale") or (self.status == "crash" and self.cause == "code")

    @property
    def used_machine(self) -> bool:
        """A run started on the machine (whatever came of it)."""
        return self.status not in ("invalid", "noop") and self.cause != "queued"

    @property
    def wall(self) -> float:
        """Its run's whole wall-clock: the trainer, the evaluator and the engine's own work on it."""
        return (self.seconds or 0.0) + (self.eval_seconds or 0.0) + (self.engine_seconds or 0.0)

    @property
    def is_experiment(self) -> bool:
        """The first row of a proposal: one per experiment, its status is the outcome."""
        return self.kind == "experiment"

    def cells(self) -> list[str]:
        def num(v, fmt):
            return "" if v is None else format(v, fmt)

        return [
            self.commit[:7], f"{self.value:.6f}", num(self.memory_gb, ".1f"), self.status, clean(self.description),
            self.timestamp, num(self.seconds, ".1f"), num(self.training_seconds, ".1f"), num(self.steps, "d"),
            self.kind, clean(self.reason), clean(self.agent), num(self.tokens_in, "d"), num(self.tokens_out, "d"),
            num(self.cost_usd, ".4f"), clean(self.branch), clean(self.worker), num(self.eval_seconds, ".1f"),
            self.cause, "" if self.sandboxed is None else ("yes" if self.sandboxed else "no"), clean(self.log),
            num(self.engine_seconds, ".1f"), "yes" if self.fresh else "",
        ]


# Text that came from a run or from the agent (run.log, descriptions, reasons, agent names) is
# shown on terminals and written into results.tsv: `printable` is the one rule for it. It
# lives here, in the pure layer, so that every layer can use it (research/ imports nothing).
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clear screen (\x1b[2J)
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"  # OSC (title), DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"  # the other escapes: charset (ESC ( B), keypad (ESC =), save cursor (ESC 7)
)
# every control character but newline and tab: C0, DEL, C1; bidi overrides, embeddings, isolates
# and marks (they reorder what a terminal shows); lone surrogates (invalid UTF-8 decoded with
# surrogateescape: they cannot even be written out as UTF-8)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def printable(text: str | bytes) -> str:
    """`text` safe to show on a terminal: bytes decoded as UTF-8 (invalid bytes and lone
    surrogates become U+FFFD), ANSI/OSC escape sequences removed, and every control character
    except newline and tab (C0, DEL, C1 such as \\x9b, bidi overrides U+202A-U+202E and
    isolates U+2066-U+2069, the marks U+200E, U+200F, U+061C) removed."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    text = _SURROGATES.sub("\ufffd", str(text))
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


# An agent's reported usage is its own claim: a token count past this is no count (SQLite's
# integers end at 2**63; no call comes near 2**53), and a cost must be a finite amount >= 0
# (NaN would never reach --max-cost).
MAX_TOKENS = 2**53


def usage_count(value: Any) -> int | None:
    """A reported token count, or None where it is not a whole number from 0 to MAX_TOKENS."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, str) else value
        whole = int(number)
    except (TypeError, ValueError, OverflowError):
        return None
    return whole if whole == number and 0 <= whole <= MAX_TOKENS else None


def usage_cost(value: Any) -> float | None:
    """A reported cost in dollars, or None where it is not a finite amount of at least 0."""
    if isinstance(value, bool):
        return None
    try:
        cost = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


def clean(text: str) -> str:
    """One TSV cell: printable (see above), no tabs, no newlines."""
    return " ".join(printable(text).split())


# what markdown (and the HTML it lets through, and GitHub's math) reads as syntax: in a
# description or a reason, written by the agent or the trainer, each is shown as the character it
# is. Otherwise a rendered report could fetch an image from anywhere (a way out for an agent
# without a network), link to javascript: or carry HTML. (`>` and `!` start nothing once `<` and
# `[` are escaped, and stay readable: "DEPTH 2 -> 1".)
_MD_SYNTAX = re.compile(r"([\\`*_\[\]<|~&#$])")


def md_cell(text: str) -> str:
    """`text` as one table cell or list item of a markdown file: one printable line (`clean`),
    every character markdown would read as syntax escaped, so that it renders as written."""
    return _MD_SYNTAX.sub(r"\\\1", clean(text))


def header(metric: str = "val_bpb") -> str:
    return "\t".join((UPSTREAM[0], metric, *UPSTREAM[2:], *EXTRA)) + "\n"


def _float(cell: str, default: float | None = None) -> float | None:
    if cell == "":
        return default
    value = float(cell)
    return value


def parse(text: str, source: str = "results.tsv") -> tuple[str, list[Row]]:
    """(metric name, rows) from the text of a results file; raises ResultsError naming the line."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ResultsError(f"{source} is empty (no header line)")
    head = lines[0].split("\t")
    if len(head) < 5 or head[0] != "commit" or head[2:5] != list(UPSTREAM[2:]):
        raise ResultsError(
            f"{source}: line 1 is not a results header (expected commit, <metric>, memory_gb, status, description)"
        )
    metric = head[1]
    index = {name: i for i, name in enumerate(head)}
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(head):
            raise ResultsError(f"{source}: line {number} has {len(cells)} columns, the header has {len(head)}")

        def get(name: str) -> str:
            i = index.get(name)
            return cells[i] if i is not None and i < len(cells) else ""

        try:
            value = float(cells[1])
            if math.isnan(value):
                raise ValueError("nan")
            sandboxed = get("sandboxed")
            if sandboxed not in ("", "yes", "no"):
                raise ValueError(f"sandboxed {sandboxed!r}")
            row = Row(
                commit=cells[0], value=value, memory_gb=_float(cells[2]), status=cells[3],
                description=cells[4], timestamp=get("timestamp"), seconds=_float(get("seconds")),
                training_seconds=_float(get("training_seconds")),
                steps=int(get("steps")) if get("steps") else None,
                kind=get("kind") or "experiment", reason=get("reason"), agent=get("agent"),
                tokens_in=int(get("tokens_in")) if get("tokens_in") else None,
                tokens_out=int(get("tokens_out")) if get("tokens_out") else None,
                cost_usd=_float(get("cost_usd")), branch=get("branch"), worker=get("worker"),
                eval_seconds=_float(get("eval_seconds")), cause=get("cause"),
                sandboxed=None if not sandboxed else sandboxed == "yes", log=get("log"),
                engine_seconds=_float(get("engine_seconds")), fresh=get("fresh") == "yes",
            )
        except ValueError as exc:
            raise ResultsError(f"{source}: line {number} is malformed ({exc})") from exc
        if row.status not in STATUSES:
            raise ResultsError(f"{source}: line {number} has unknown status {row.status!r}")
        if row.kind not in KINDS:
            raise ResultsError(f"{source}: line {number} has unknown kind {row.kind!r}")
        if row.cause not in CAUSES:
            raise ResultsError(f"{source}: line {number} has unknown cause {row.cause!r}")
        rows.append(row if "cause" in index else _upgrade(row))
    return metric, rows


# The texts by which files written before the typed columns told these facts apart.
_OLD_RERUN = "re-run of the frontier beside: "
_OLD_NOT_RUN = {"interrupted": "stopped", "not recorded": "engine", "engine error": "engine",
                "machine failure": "machine"}


def _upgrade(row: Row) -> Row:
    """A row of a file from before the `cause` column: its typed facts from its old text."""
    changes: dict = {}
    if row.kind == "confirm" and row.description.startswith(_OLD_RERUN):
        changes["kind"] = "rerun"
    if row.status == "crash":
        changes["cause"] = next((c for p, c in _OLD_NOT_RUN.items() if row.reason.startswith(p)), "code")
        if changes["cause"] == "stopped":
            changes["status"] = "interrupted"
    elif row.status == "interrupted":
        changes["cause"] = "queued" if "before a worker took it" in row.reason else "stopped"
    if "unsandboxed" in row.reason:
        changes["sandboxed"] = False
    if row.memory_gb == 0.0:
        changes["memory_gb"] = None  # what files of before said when nothing measured it
    return replace(row, **changes) if changes else row


def as_dict(row: Row) -> dict:
    return asdict(row)


def line(row: Row) -> str:
    """One row as a line of the file, newline included."""
    return "\t".join(row.cells()) + "\n"
