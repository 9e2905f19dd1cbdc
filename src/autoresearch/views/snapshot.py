"""Where the research stands: one snapshot of a workspace, read-only, for humans and scripts.

`snapshot(source)` gathers everything `autoresearch status`, the report and the dashboard
show: the results (baseline, frontier, its change, counts, rates, share of wall-clock spent
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

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoresearch import gitrepo, resultsfile, runlog, store
from autoresearch.config import Config, KeepRule
from autoresearch.errors import AutoresearchError
from autoresearch.files import read_tail
from autoresearch.proc import pid_alive  # the one test of a recorded process (the dashboard's too)
from autoresearch.research import keeprule
from autoresearch.research.history import History, Tally
from autoresearch.research.results import Row, as_dict
from autoresearch.state import Current
from autoresearch.workspace import Folder, Workspace

LOG_TAIL_BYTES = 64 * 1024
DIFF_LIMIT = 200_000  # characters of a diff shown at most
_COMMIT = re.compile(r"^[0-9a-fA-F]{4,40}$")
STARTING_SECONDS = 120  # a current.json without a pid older than this was left by a killed engine
# Rates (experiments per hour, the share of wall-clock spent training) extrapolate from what ran
# so far. Over the first minutes that is mostly setup and the baseline runs, and one experiment
# more or less moves them by half (2.6 minutes of baseline runs make "46 per hour"). They are
# shown once RATE_MIN_EXPERIMENTS experiments were decided (kept, discarded or stale: what the
# rate counts) over at least RATE_MIN_SECONDS of wall-clock: by then they are a pace, not a guess.
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
        """Where the rows are read: a workspace's engine records (the rows its engine wrote, of
        which results.tsv is a copy that the agent could edit), else the results file itself."""
        if self.config is not None and self.results_path == self.root / "results.tsv":
            db = self.state.private / store.DB_NAME
            if db.exists():
                return db
        return self.results_path

    def recorded(self) -> bool:
        """Whether anything was recorded yet (rows in the engine's records, or a results file)."""
        path = self.rows_path
        return bool(store.read_rows(path.parent)) if path.name == store.DB_NAME else path.exists()

    def read(self) -> tuple[str, list[Row]]:
        """(metric, rows); AutoresearchError when the results file is missing or malformed."""
        path = self.rows_path
        if path.name == store.DB_NAME:
            rows = store.read_rows(path.parent)
            if not rows:  # whatever results.tsv holds then, the engine did not write it
                raise AutoresearchError(f"no experiments recorded yet in {self.root}")
            return self.config.metric, rows
        return resultsfile.read(path)


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
    """The numbers of one branch's results, as History computes them: every view shows these
    and nothing else (the terminal, the report, the dashboard's cards)."""

    metric: str
    direction: str
    experiments: int  # proposals recorded: the experiment rows (Tally.experiments), baseline runs aside
    counts: dict[str, int]  # the experiments by outcome (Tally.outcomes)
    counts_text: str  # Tally.text(): the one line every view gives the counts in
    tally: Tally  # the runs around the experiments as well: baseline runs, frontier re-runs, ...
    baseline: float | None
    baseline_runs: int  # the measured runs the baseline is the mean of
    frontier: float | None
    frontier_commit: str | None
    frontier_index: int | None
    frontier_number: int | None  # the experiment that made it the frontier (History.numbers); None: the baseline
    change: float | None  # frontier minus baseline, in the metric's units (a win is negative when lower is better)
    change_pct: float | None
    sigma: float | None
    sigma_runs: int
    sigma_dof: float
    sigma_text: str
    keep_bar: float | None  # the noise band drawn around the frontier: two sigma of one run
    p_keep: float
    min_delta: float
    elapsed_seconds: float | None
    experiments_per_hour: float | None  # decided experiments: kept, discarded or stale
    runs_per_hour: float | None  # runs on the machine, baseline, confirm and frontier re-runs too
    training_seconds: float | None
    training_share: float | None
    time_split: dict | None  # History's TimeSplit: shares of the workers' wall-clock, and its text
    agents: list[str]
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    # whether the rates above mean something yet (RATE_MIN_EXPERIMENTS, RATE_MIN_SECONDS); the
    # numbers stay in the summary either way, the views show rates_note instead while False
    rates_meaningful: bool = False
    rates_note: str = ""
    runs: int = 0  # runs that used the machine (Tally.machine_runs)
    unsandboxed: int = 0  # of them, those that ran without a sandbox (Tally.unsandboxed)


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


def rates_state(history: History, tally: Tally) -> tuple[bool, str]:
    """(meaningful, note): whether the rates can be shown yet; the note says why not."""
    pace = history.pace
    if pace.experiments_per_hour is None and pace.training_share is None:
        return False, "no timestamps"
    if tally.decided >= RATE_MIN_EXPERIMENTS and (pace.elapsed_seconds or 0.0) >= RATE_MIN_SECONDS:
        return True, ""
    return False, (f"too early: shown from {RATE_MIN_EXPERIMENTS} experiments "
                   f"and {RATE_MIN_SECONDS / 60:.0f} minutes")


def summarize(history: History, metric: str = "val_bpb", keep: KeepRule | None = None, judged: bool = True) -> Summary:
    """The numbers of a branch's results."""
    keep = keep or KeepRule()
    sigma, runs, dof, text = noise_of(history, judged)
    pace, usage, tally = history.pace, history.usage, history.tally()
    meaningful, note = rates_state(history, tally)
    index = history.frontier_index
    return Summary(
        metric=metric, direction=history.direction, experiments=tally.experiments, counts=dict(tally.outcomes),
        counts_text=tally.text(), tally=tally, baseline=history.baseline, baseline_runs=history.baseline_count,
        frontier=history.frontier_value, frontier_commit=history.frontier_commit, frontier_index=index,
        frontier_number=None if index is None else history.numbers[index],
        change=history.change, change_pct=history.change_pct,
        sigma=sigma, sigma_runs=runs, sigma_dof=dof, sigma_text=text,
        keep_bar=None if sigma is None else keeprule.band(keep.min_delta, sigma), p_keep=keep.p_keep, min_delta=keep.min_delta,
        elapsed_seconds=pace.elapsed_seconds, experiments_per_hour=pace.experiments_per_hour,
        runs_per_hour=pace.runs_per_hour, training_seconds=pace.training_seconds, training_share=pace.training_share,
        time_split=None if pace.split is None else {**asdict(pace.split), "text": pace.split.text()},
        agents=history.agents, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd,
        rates_meaningful=meaningful, rates_note=note, runs=tally.machine_runs, unsandboxed=tally.unsandboxed,
    )


def row_dicts(history: History) -> list[dict]:
    """Rows as JSON-ready dicts with what the views draw beside the row's cells: its index, its
    experiment's number (History.numbers), its label (History.label), whether it is measured
    and used the machine, the frontier after it (History.series: the line the chart draws) and
    its delta, new minus old, against the frontier before it (History.delta)."""
    out = []
    for i, r in enumerate(history.rows):
        d = as_dict(r)
        d.update(index=i, number=history.numbers[i], label=history.label(i), measured=r.measured,
                 used_machine=r.used_machine, frontier=history.series[i], delta=history.delta(i))
        out.append(d)
    return out


# --------------------------------------------------------------------------- the running experiment


def clean_log(text: str) -> list[str]:
    """Log lines as a terminal would show them (autoresearch.runlog.lines)."""
    return runlog.lines(text)


def parse_progress(text: str) -> dict | None:
    """The last `step N | progress P% | loss L | ... | remaining Ss` line of a log, as a dict of
    numbers (autoresearch.runlog.progress); with "evaluating": True once the harness said it
    started evaluating after that step."""
    found = runlog.progress(text)
    if found is None:
        return None
    return {"step": found.step, **({"evaluating": True} if found.evaluating else {}), **found.fields}


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
    text = read_tail(log or source.log_path, 16 * 1024)
    info["progress"] = parse_progress(text) if text else None
    if current.phase == "evaluating":  # the trainer exited; the engine's evaluator scores its model
        info["progress"] = {**(info["progress"] or {}), "evaluating": True}
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
    text = read_tail(source.log_path, LOG_TAIL_BYTES)
    if text is None:
        return None
    return "\n".join(clean_log(text)[-lines:]).strip("\n")


# --------------------------------------------------------------------------- the snapshot


def load_rows(source: Source) -> tuple[str, list[Row], str | None]:
    """(metric, rows, error) — error is one line when results.tsv is missing or malformed."""
    metric = source.config.metric if source.config else "val_bpb"
    try:
        metric, rows = source.read()
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
class Loaded:
    """What every view reads from a source: the metric, every branch's rows, the branch whose
    rows are shown and its History; `error` is one line when results.tsv is missing or malformed
    or the branch asked for has no rows."""

    metric: str
    rows: list[Row]
    branch: str | None
    history: History
    head: dict  # git_head
    error: str | None


def load(source: Source, direction: str | None = None, branch: str | None = None) -> Loaded:
    """The rows of one research branch (see pick_branch), as the engine counts them. Never raises
    for bad results: `status`, the dashboard and the report all start here."""
    cfg = source.config
    metric, all_rows, error = load_rows(source)
    head = git_head(source)
    shown = pick_branch(all_rows, head["branch"], branch)
    history = History(all_rows, shown, direction or (cfg.direction if cfg else "lower"))
    if branch and not history.rows and not error:
        error = f"{source.results_path.name} has no experiments on branch {branch}"
    return Loaded(metric, all_rows, shown, history, head, error)


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
    changes: list[dict] | None = field(default=None)  # with_rows only: History.kept_changes, labelled on the chart
    workers: list[dict] = field(default_factory=list)  # with `run --workers N`: each worker's run

    @property
    def workspace(self) -> bool:
        return self.config is not None

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("rows", "changes"):
            if data[key] is None:
                data.pop(key)
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
    got = load(source, direction, branch)
    history = got.history
    summary = summarize(history, got.metric, cfg.keep if cfg else None, judged=cfg is not None)
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
        error=got.error, branch=got.head["branch"], head=got.head["head"], rows_branch=got.branch,
        branches=list(dict.fromkeys(r.branch for r in got.rows if r.branch)), rows_total=len(got.rows),
        agent=next((c for c in candidates if c), None), loop=loop, running=current, summary=summary,
        workers=workers(source), time=time.time(),
        rows=row_dicts(history) if with_rows else None,
        changes=[asdict(c) for c in history.kept_changes] if with_rows else None,
    )
