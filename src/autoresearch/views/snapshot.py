"""Where the research stands: one snapshot of a workspace, read-only, for humans and scripts.

`snapshot(source)` gathers everything `autoresearch status`, the report and the dashboard
show: the results (baseline, frontier, improvement, counts, rate, share of wall-clock spent
training, the noise estimate), git (branch, head), the agent and its usage, and the running
experiment (from `.autoresearch/current.json` and the last progress line of `run.log`).
It never writes to the workspace and never raises for a missing or malformed
`results.tsv`: the problem becomes the snapshot's `error` line instead.

A `Source` is a workspace, or just a folder holding a `results.tsv` (one written by the
original project has no config: the metric comes from the header, lower is better unless
told otherwise).

Not covered: history of earlier `run.log`s (only the latest run's log exists), and the
state of other branches than the one checked out.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoresearch import gitrepo, resultsfile
from autoresearch.config import Config, KeepRule
from autoresearch.errors import AutoresearchError
from autoresearch.files import read_tail
from autoresearch.research import keeprule
from autoresearch.research.history import History, interrupted
from autoresearch.research.results import UNSANDBOXED, Row, as_dict, printable
from autoresearch.state import Current
from autoresearch.workspace import Folder, Workspace

LOG_TAIL_BYTES = 64 * 1024
DIFF_LIMIT = 200_000  # characters of a diff shown at most
_COMMIT = re.compile(r"^[0-9a-fA-F]{4,40}$")
_PROGRESS = re.compile(r"^step\s+(\d+)\s*\|(.*)$")
STARTING_SECONDS = 120  # a current.json without a pid older than this was left by a killed engine
# Rates (experiments per hour, the share of wall-clock spent training) extrapolate from what ran
# so far. Over the first minutes that is mostly setup and the baseline runs, and one experiment
# more or less moves them by half (2.6 minutes of baseline runs make "46 per hour"). They are
# shown once RATE_MIN_EXPERIMENTS experiments (not baseline runs, not interrupted ones) finished
# over at least RATE_MIN_SECONDS of wall-clock: by then they are a pace, not a guess.
RATE_MIN_EXPERIMENTS = 3
RATE_MIN_SECONDS = 600.0


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source(Folder):
    """What to look at: a folder, its results file, and its config when it is a workspace."""

    root: Path
    results_path: Path
    config: Config | None = None

    @property
    def is_git(self) -> bool:
        return gitrepo.is_repo(self.root)

    @property
    def rows_path(self) -> Path:
        """Where the rows are read: a workspace's ledger (the rows its engine wrote, of which
        results.tsv is a copy that the agent could edit), else the results file itself."""
        if self.config is not None and self.results_path == self.root / "results.tsv":
            ledger = self.state.ledger
            if ledger.exists():
                return ledger
        return self.results_path


def open_source(where: str | Path = ".", results: str | Path | None = None) -> Source:
    """The workspace holding `where`, or a folder (or file) with a results.tsv in it.

    `results` names the results file explicitly; then no workspace is needed.
    """
    if results is not None:
        path = Path(results).resolve()
        if path.is_dir():
            path = path / "results.tsv"
        try:
            ws = Workspace.find(path.parent)
            config = ws.config if ws.root == path.parent else None
        except AutoresearchError:
            config = None
        return Source(path.parent, path, config)
    here = Path(where).resolve()
    if here.is_file():
        return Source(here.parent, here, None)
    try:
        ws = Workspace.find(here)
    except AutoresearchError:
        if (here / "results.tsv").exists():
            return Source(here, here / "results.tsv", None)
        raise
    return Source(ws.root, ws.results_path, ws.config)


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Summary:
    """The numbers of one branch's results, as History computes them."""

    metric: str
    direction: str
    experiments: int
    counts: dict[str, int]
    baseline: float | None
    baseline_runs: int
    frontier: float | None
    frontier_commit: str | None
    frontier_index: int | None
    improvement: float | None
    improvement_pct: float | None
    sigma: float | None
    sigma_runs: int
    sigma_dof: float
    sigma_text: str
    keep_bar: float | None  # the noise band drawn around the frontier: two sigma of one run
    p_keep: float
    min_delta: float
    elapsed_seconds: float | None
    experiments_per_hour: float | None
    training_seconds: float | None
    training_share: float | None
    agents: list[str]
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    # how the views label the runs: "baseline" for the baseline runs (not counted as "keep"),
    # "interrupted" for runs stopped from outside; the other statuses as they are (History.label)
    labelled_counts: dict[str, int] = field(default_factory=dict)
    counts_text: str = "none"  # e.g. "2 baseline, 3 keep, 1 discard"
    # whether the rates above mean something yet (RATE_MIN_EXPERIMENTS, RATE_MIN_SECONDS); the
    # numbers stay in the summary either way, the views show rates_note instead while False
    rates_meaningful: bool = False
    rates_note: str = ""
    runs: int = 0  # rows of runs that went to an end (keep, discard, crash)
    unsandboxed: int = 0  # of them, those that ran without a sandbox


def noise_of(history: History, judged: bool = True) -> tuple[float | None, int, float, str]:
    """(sigma, runs, dof, text) of the keep rule's noise estimate, as the engine computes it.

    `judged`: the rows were decided by our keep rule, so its prior-only estimate applies even
    before anything ran twice; for a results file the rule never judged (one written by the
    original project) only measured repeats count. sigma is None where there is nothing.
    """
    if not history.measured:
        return None, 0, 0, "no measurements yet"
    est = history.noise
    if not judged and est.dof == 0:
        return None, 0, 0, "nothing run twice"
    return est.sigma, est.runs, est.dof, est.describe()


def labelled_counts(history: History) -> dict[str, int]:
    """Runs by History.label: baseline first, then the statuses in their usual order."""
    counts = {"baseline": 0, **{s: 0 for s in history.counts}}
    for i in range(len(history.rows)):
        label = history.label(i)
        counts[label] = counts.get(label, 0) + 1
    return counts


def best_so_far(history: History) -> list[float | None]:
    """The best frontier value up to each row: a running min (lower is better) or max of
    History.series, so the line the views draw never moves the wrong way.

    The frontier itself may: a second baseline run or a frontier re-run that comes in worse
    moves its mean, and a simplification is kept within the noise. The engine compares with
    the true frontier (History); this is only what the views draw as "best so far"."""
    pick = min if history.direction == "lower" else max
    out: list[float | None] = []
    best: float | None = None
    for value in history.series:
        if value is not None:
            best = value if best is None else pick(best, value)
        out.append(best)
    return out


def rates_state(history: History) -> tuple[bool, str]:
    """(meaningful, note): whether the rates can be shown yet; the note says why not."""
    pace = history.pace
    if pace.experiments_per_hour is None and pace.training_share is None:
        return False, "no timestamps"
    finished = sum(1 for i, r in enumerate(history.rows)
                   if i not in history.baseline_indices and r.kind == "experiment" and not interrupted(r))
    if finished >= RATE_MIN_EXPERIMENTS and (pace.elapsed_seconds or 0.0) >= RATE_MIN_SECONDS:
        return True, ""
    return False, (f"too early: shown from {RATE_MIN_EXPERIMENTS} experiments "
                   f"and {RATE_MIN_SECONDS / 60:.0f} minutes")


RAN = ("keep", "discard", "crash")


def summarize(history: History, metric: str = "val_bpb", keep: KeepRule | None = None, judged: bool = True) -> Summary:
    """The numbers of a branch's results."""
    keep = keep or KeepRule()
    sigma, runs, dof, text = noise_of(history, judged)
    pace, usage = history.pace, history.usage
    labelled = labelled_counts(history)
    meaningful, note = rates_state(history)
    return Summary(
        metric=metric, direction=history.direction, experiments=len(history), counts=dict(history.counts),
        baseline=history.baseline, baseline_runs=history.baseline_count, frontier=history.frontier_value,
        frontier_commit=history.frontier_commit, frontier_index=history.frontier_index,
        improvement=history.improvement, improvement_pct=history.improvement_pct,
        sigma=sigma, sigma_runs=runs, sigma_dof=dof, sigma_text=text,
        keep_bar=None if sigma is None else keeprule.band(keep.min_delta, sigma), p_keep=keep.p_keep, min_delta=keep.min_delta,
        elapsed_seconds=pace.elapsed_seconds, experiments_per_hour=pace.experiments_per_hour,
        training_seconds=pace.training_seconds, training_share=pace.training_share, agents=history.agents,
        tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd,
        labelled_counts=labelled, counts_text=", ".join(f"{n} {k}" for k, n in labelled.items() if n) or "none",
        rates_meaningful=meaningful, rates_note=note,
        runs=sum(1 for r in history.rows if r.status in RAN),
        unsandboxed=sum(1 for r in history.rows if r.status in RAN and UNSANDBOXED in r.reason),
    )


def row_dicts(history: History) -> list[dict]:
    """Rows as JSON-ready dicts with their index, frontier, the best-so-far line the chart draws
    (best_so_far), how the views label them (History.label) and delta to the frontier before them."""
    out = []
    best = best_so_far(history)
    for i, r in enumerate(history.rows):
        d = as_dict(r)
        d["index"] = i
        d["measured"] = keeprule.measured(r)
        d["frontier"] = history.series[i]
        d["best"] = best[i]
        d["label"] = history.label(i)
        before = history.before(i)
        d["delta"] = (r.value - before) if (before is not None and d["measured"]) else None
        out.append(d)
    return out


# --------------------------------------------------------------------------- the running experiment


def tail_text(path: Path, limit: int = LOG_TAIL_BYTES) -> str | None:
    """The last `limit` bytes of a file as text, None when it does not exist."""
    return read_tail(path, limit)


def clean_log(text: str) -> list[str]:
    """Log lines as a terminal would show them, carriage returns applied, and printable (no
    colour codes, no escape sequences, no control characters: research.results.printable)."""
    lines = []
    for line in text.split("\n"):
        parts = [printable(part) for part in line.split("\r")]
        while len(parts) > 1 and not parts[-1]:  # "text\r" and "text\r\x1b[K" show the text
            parts.pop()
        lines.append(parts[-1])
    return lines


def parse_progress(text: str) -> dict | None:
    """The last `step N | progress P% | loss L | ... | remaining Ss` line of a log, as numbers;
    with "evaluating": True once the harness said it started evaluating after that step."""
    evaluating = False
    for line in reversed(clean_log(text)):
        if line.strip().startswith("evaluating"):
            evaluating = True
        m = _PROGRESS.match(line.strip())
        if not m:
            continue
        info: dict = {"step": int(m.group(1))}
        if evaluating:
            info["evaluating"] = True
        for part in m.group(2).split("|"):
            bits = part.strip().split(None, 1)
            if len(bits) != 2:
                continue
            key, raw = bits[0].strip().replace("/", "_"), bits[1].strip()
            num = raw.rstrip("%").rstrip("s").replace(",", "")
            if raw.endswith("ms"):
                num = raw[:-2].replace(",", "")
            try:
                value: float | str = float(num)
            except ValueError:
                value = raw
            info[key] = value
        return info
    return None


def pid_alive(pid) -> bool:
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def running(source: Source, now: float | None = None, current: Current | None = None,
            log: Path | None = None) -> dict | None:
    """The experiment in flight (current.json) with its progress from run.log, or None; or
    another run in flight (`current`, a worker's) with its own log."""
    current = current if current is not None else source.state.current()
    if current is None:
        return None
    now = time.time() if now is None else now
    info: dict[str, Any] = {
        "commit": current.commit[:12], "description": current.description, "kind": current.kind,
        "agent": current.agent, "budget": current.budget, "started_at": current.started_at,
    }
    try:
        info["elapsed"] = max(0.0, now - float(current.started_at))
    except (TypeError, ValueError):
        info["elapsed"] = None
    if current.pid is None:  # recorded before the process started: starting, unless long ago
        info["alive"] = info["elapsed"] is not None and info["elapsed"] < STARTING_SECONDS
    else:
        info["alive"] = pid_alive(current.pid)
    text = tail_text(log or source.log_path, 16 * 1024)
    info["progress"] = parse_progress(text) if text else None
    if current.worker:
        info["worker"] = current.worker
    return info


def workers(source: Source, now: float | None = None) -> list[dict]:
    """What each worker of `run --workers N` is running (current-<worker>.json, its log)."""
    found = []
    for current in source.state.worker_runs():
        info = running(source, now, current, source.worker_log_path(current.worker))
        if info is not None and info.get("alive"):
            found.append(info)
    return found


def loop_state(source: Source) -> dict | None:
    loop = source.state.loop()
    if loop is None:
        return None
    out = {k: getattr(loop, k) for k in ("tag", "branch", "agent", "started_at", "updated_at", "state")}
    out["alive"] = pid_alive(loop.pid)
    return out


# --------------------------------------------------------------------------- git


def git_head(source: Source) -> dict:
    """Branch and head commit; empty values where the folder is not a git repository."""
    if not source.is_git:
        return {"branch": None, "head": None}
    try:
        return {"branch": gitrepo.branch_label(source.root), "head": gitrepo.short_head(source.root)}
    except AutoresearchError:
        return {"branch": None, "head": None}


def commit_diff(source: Source, commit: str) -> dict:
    """The change a commit made against its parent: {"ok", "text", "message"}.

    Discarded commits are reset away and only stay reachable until git collects them, so
    an unknown commit is an answer ("no longer in the repository"), not an error.
    """
    commit = (commit or "").strip()
    if not _COMMIT.match(commit):
        return {"ok": False, "text": "", "message": f"{commit or '(empty)'} is not a commit id"}
    if not source.is_git:
        return {"ok": False, "text": "", "message": f"{source.root} is not a git repository: no diffs to show"}
    if not gitrepo.has_commit(source.root, commit):
        return {
            "ok": False, "text": "",
            "message": f"commit {commit} is no longer in the repository "
                       "(discarded experiments are reset away and eventually collected by git)",
        }
    shown = gitrepo.commit_patch(source.root, commit)
    if shown.returncode != 0:
        return {"ok": False, "text": "", "message": f"git show {commit} failed: {shown.stderr.strip()[:300]}"}
    text = shown.stdout
    if len(text) > DIFF_LIMIT:
        text = text[:DIFF_LIMIT] + f"\n… (cut: the diff has {len(shown.stdout):,} characters)\n"
    return {"ok": True, "text": text, "message": ""}


def log_tail(source: Source, lines: int = 200) -> str | None:
    text = tail_text(source.log_path)
    if text is None:
        return None
    return "\n".join(clean_log(text)[-lines:]).strip("\n")


# --------------------------------------------------------------------------- the snapshot


def load_rows(source: Source) -> tuple[str, list[Row], str | None]:
    """(metric, rows, error) — error is one line when results.tsv is missing or malformed."""
    metric = source.config.metric if source.config else "val_bpb"
    try:
        metric, rows = resultsfile.read(source.rows_path)
    except AutoresearchError as exc:
        return metric, [], str(exc)
    return metric, rows, None


def pick_branch(rows, checked_out: str | None, wanted: str | None = None) -> str | None:
    """Which research branch's rows to show: the one asked for, else the checked-out one when
    it has rows, else the branch of the latest row; None when the rows name no branch."""
    names = [r.branch for r in rows if r.branch]
    if wanted:
        return wanted
    if checked_out and checked_out in names:
        return checked_out
    return names[-1] if names else None


@dataclass(frozen=True)
class Snapshot:
    """Everything the views show about one source, at one moment."""

    name: str
    root: str
    results: str
    config: dict | None  # the workspace's settings the views show; None for a bare results file
    error: str | None  # one line when results.tsv is missing or malformed
    branch: str | None  # checked out
    head: str | None
    rows_branch: str | None  # whose rows are counted
    branches: list[str]  # every branch results.tsv names
    rows_total: int
    agent: str | None
    loop: dict | None
    running: dict | None
    summary: Summary
    time: float
    rows: list[dict] | None = field(default=None)  # with_rows only
    workers: list[dict] = field(default_factory=list)  # with `run --workers N`: each worker's run

    @property
    def workspace(self) -> bool:
        return self.config is not None

    def to_json(self) -> dict:
        data = asdict(self)
        if self.rows is None:
            data.pop("rows")
        keys = list(data)
        keys.insert(keys.index("config"), "workspace")
        data["workspace"] = self.workspace
        return {k: data[k] for k in keys}


def _config_view(cfg: Config | None) -> dict | None:
    if cfg is None:
        return None
    return {"template": cfg.template, "profile": cfg.profile, "dataset": cfg.dataset, "budget": cfg.budget,
            "editable": list(cfg.editable), "metric": cfg.metric, "direction": cfg.direction,
            "harness_record": cfg.harness_record}


def snapshot(source: Source, direction: str | None = None, with_rows: bool = False,
             branch: str | None = None) -> Snapshot:
    """Everything about one source. Never raises for bad results.

    A results.tsv can hold several research branches (one `run --tag` each): the numbers are
    those of one branch (see pick_branch), as the engine counts them.
    """
    cfg = source.config
    metric, all_rows, error = load_rows(source)
    head = git_head(source)
    shown_branch = pick_branch(all_rows, head["branch"], branch)
    history = History(all_rows, shown_branch, direction or (cfg.direction if cfg else "lower"))
    if branch and not history.rows and not error:
        error = f"no experiments recorded on branch {branch}"
    summary = summarize(history, metric, cfg.keep if cfg else None, judged=cfg is not None)
    loop = loop_state(source)
    current = running(source)
    candidates = (
        current.get("agent") if current and current.get("alive") else None,
        loop.get("agent") if loop and loop.get("alive") else None,
        summary.agents[-1] if summary.agents else None,
        loop.get("agent") if loop else None,
    )
    return Snapshot(
        name=source.name, root=str(source.root), results=str(source.results_path), config=_config_view(cfg),
        error=error, branch=head["branch"], head=head["head"], rows_branch=shown_branch,
        branches=list(dict.fromkeys(r.branch for r in all_rows if r.branch)), rows_total=len(all_rows),
        agent=next((c for c in candidates if c), None), loop=loop, running=current, summary=summary,
        workers=workers(source),
        time=time.time(), rows=row_dicts(history) if with_rows else None,
    )
