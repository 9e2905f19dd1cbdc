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

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from autoresearch import keeprule
from autoresearch import results as results_mod
from autoresearch.errors import AutoresearchError
from autoresearch.proc import run
from autoresearch.workspace import STATE_DIR, Config, KeepRule, Workspace, read_tail

LOG_TAIL_BYTES = 64 * 1024
DIFF_LIMIT = 200_000  # characters of a diff shown at most
_COMMIT = re.compile(r"^[0-9a-fA-F]{4,40}$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PROGRESS = re.compile(r"^step\s+(\d+)\s*\|(.*)$")
STARTING_SECONDS = 120  # a current.json without a pid older than this was left by a killed engine


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """What to look at: a folder, its results file, and its config when it is a workspace."""

    root: Path
    results_path: Path
    config: Config | None = None

    @property
    def name(self) -> str:
        return self.root.name or str(self.root)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def log_path(self) -> Path:
        return self.root / "run.log"

    @property
    def is_git(self) -> bool:
        return (self.root / ".git").exists()


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


def measured(row) -> bool:
    """The row carries a real measurement of its commit (as the keep rule counts them)."""
    return keeprule.measured(row)


def noise(rows, measured_only: bool = False) -> dict:
    """The keep rule's noise estimate, as the engine computes it (autoresearch.keeprule).

    sigma is pooled over repeated runs of the same code (baseline runs, confirm pairs) and
    shrunk towards a prior while few repeats exist. `measured_only` drops a prior-only
    estimate (nothing run twice): right for a results file the keep rule never judged,
    such as one written by the original project. sigma is None where there is nothing.
    """
    if not any(keeprule.measured(r) for r in rows):
        return {"sigma": None, "runs": 0, "dof": 0, "prior": None, "text": "no measurements yet"}
    est = keeprule.noise(list(rows))
    if measured_only and est.dof == 0:
        return {"sigma": None, "runs": 0, "dof": 0, "prior": est.prior, "text": "nothing run twice"}
    return {"sigma": est.sigma, "runs": est.runs, "dof": est.dof, "prior": est.prior, "text": est.describe()}


def keep_bar(sigma: float | None, keep: KeepRule | None) -> float | None:
    """The margin a change must win by: max(min_delta, z * sigma); None without sigma."""
    if sigma is None:
        return None
    keep = keep or KeepRule()
    return keeprule.bar(keep.min_delta, keep.z, sigma)


def baseline_of(rows) -> tuple[float | None, int]:
    """(value, runs): mean of the measured baseline runs; else the first measured row (upstream)."""
    runs = [r.value for r in rows if r.kind == "baseline" and measured(r)]
    if runs:
        return sum(runs) / len(runs), len(runs)
    for r in rows:
        if measured(r):
            return r.value, 1
    return None, 0


def frontier_series(rows) -> list[float | None]:
    """The frontier after each row: the value of the last kept commit (mean of its kept runs).

    Before anything was kept it is the baseline, once known; None before that. A commit
    kept with a confirm run counts the mean of both runs, as the keep rule does.
    """
    series: list[float | None] = []
    kept: dict[str, list[float]] = {}
    current: float | None = None
    for r in rows:
        if r.status == "keep" and measured(r):
            kept.setdefault(r.commit, []).append(r.value)
            values = kept[r.commit]
            current = sum(values) / len(values)
        elif current is None and r.kind == "baseline" and measured(r):
            current = r.value
        series.append(current)
    return series


def parse_time(cell: str) -> float | None:
    """A timestamp cell as unix time: unix seconds or ISO 8601 (naive means UTC)."""
    cell = (cell or "").strip()
    if not cell:
        return None
    try:
        return float(cell)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def summarize(rows, metric: str = "val_bpb", direction: str = "lower", keep: KeepRule | None = None,
              judged: bool = True) -> dict:
    """The numbers of a results table, as plain JSON-ready values.

    `judged`: the rows were decided by our keep rule (a workspace), so its prior-only noise
    estimate applies even before anything was run twice.
    """
    rows = list(rows)
    counts = {s: 0 for s in results_mod.STATUSES}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    base, base_runs = baseline_of(rows)
    series = frontier_series(rows)
    front = next((v for v in reversed(series) if v is not None), None)
    front_index = None
    front_commit = None
    for i, r in enumerate(rows):
        if r.status == "keep" and measured(r):
            front_index, front_commit = i, r.commit
    if front_commit is not None:  # the first row of the frontier commit
        front_index = next(i for i, r in enumerate(rows) if r.commit == front_commit)
    improvement = None
    improvement_pct = None
    if base is not None and front is not None:
        improvement = (base - front) if direction == "lower" else (front - base)
        improvement_pct = 100.0 * improvement / abs(base) if base else None
    est = noise(rows, measured_only=not judged)
    sigma = est["sigma"]

    times = [(parse_time(r.timestamp), r) for r in rows]
    times = [(t, r) for t, r in times if t is not None]
    train = [r.training_seconds for r in rows if r.training_seconds is not None]
    secs = [r.seconds for r in rows if r.seconds is not None]
    elapsed = None
    if len(times) >= 2:
        first_t, first = min(times, key=lambda p: p[0])
        last_t = max(t for t, _ in times)
        # a row is stamped when it is recorded, i.e. at the end of its experiment
        elapsed = (last_t - first_t) + (first.seconds or 0.0)
    elif secs:
        elapsed = sum(secs)
    per_hour = len(rows) / (elapsed / 3600.0) if elapsed and elapsed > 0 else None
    training_share = (sum(train) / elapsed) if train and elapsed and elapsed > 0 else None
    if training_share is not None:
        training_share = min(training_share, 1.0)

    def total(name):
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        return sum(values) if values else None

    agents = []
    for r in rows:
        if r.agent and r.agent not in agents:
            agents.append(r.agent)
    return {
        "metric": metric,
        "direction": direction,
        "experiments": len(rows),
        "counts": counts,
        "baseline": base,
        "baseline_runs": base_runs,
        "frontier": front,
        "frontier_commit": front_commit,
        "frontier_index": front_index,
        "improvement": improvement,
        "improvement_pct": improvement_pct,
        "sigma": sigma,
        "sigma_runs": est["runs"],
        "sigma_dof": est["dof"],
        "sigma_text": est["text"],
        "keep_bar": keep_bar(sigma, keep),
        "z": (keep or KeepRule()).z,
        "min_delta": (keep or KeepRule()).min_delta,
        "elapsed_seconds": elapsed,
        "experiments_per_hour": per_hour,
        "training_seconds": sum(train) if train else None,
        "training_share": training_share,
        "agents": agents,
        "tokens_in": total("tokens_in"),
        "tokens_out": total("tokens_out"),
        "cost_usd": total("cost_usd"),
    }


def row_dicts(rows, direction: str = "lower") -> list[dict]:
    """Rows as JSON-ready dicts with their index, frontier and delta to the frontier before them."""
    series = frontier_series(rows)
    out = []
    before: float | None = None
    for i, (r, front) in enumerate(zip(rows, series)):
        d = results_mod.as_dict(r)
        d["index"] = i
        d["measured"] = measured(r)
        d["frontier"] = front
        d["delta"] = (r.value - before) if (before is not None and measured(r)) else None
        out.append(d)
        before = front
    return out


# --------------------------------------------------------------------------- the running experiment


def tail_text(path: Path, limit: int = LOG_TAIL_BYTES) -> str | None:
    """The last `limit` bytes of a file as text, None when it does not exist."""
    return read_tail(path, limit)


def clean_log(text: str) -> list[str]:
    """Log lines as a terminal would show them: colour codes gone, carriage returns applied."""
    lines = []
    for line in _ANSI.sub("", text).split("\n"):
        lines.append(line.rstrip("\r").split("\r")[-1])
    return lines


def parse_progress(text: str) -> dict | None:
    """The last `step N | progress P% | loss L | ... | remaining Ss` line of a log, as numbers."""
    for line in reversed(clean_log(text)):
        m = _PROGRESS.match(line.strip())
        if not m:
            continue
        info: dict = {"step": int(m.group(1))}
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


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def running(source: Source, now: float | None = None) -> dict | None:
    """The experiment in flight (current.json) with its progress from run.log, or None."""
    current = read_json(source.state_dir / "current.json")
    if not current:
        return None
    now = time.time() if now is None else now
    info = {
        "commit": str(current.get("commit", ""))[:12],
        "description": str(current.get("description", "")),
        "kind": str(current.get("kind", "")),
        "agent": str(current.get("agent", "")),
        "budget": current.get("budget"),
        "started_at": current.get("started_at"),
    }
    try:
        info["elapsed"] = max(0.0, now - float(current.get("started_at")))
    except (TypeError, ValueError):
        info["elapsed"] = None
    if current.get("pid") is None:  # recorded before the process started: starting, unless long ago
        info["alive"] = info["elapsed"] is not None and info["elapsed"] < STARTING_SECONDS
    else:
        info["alive"] = pid_alive(current.get("pid"))
    text = tail_text(source.log_path, 16 * 1024)
    info["progress"] = parse_progress(text) if text else None
    return info


def loop_state(source: Source) -> dict | None:
    loop = read_json(source.state_dir / "loop.json")
    if not loop:
        return None
    keys = ("tag", "branch", "agent", "started_at", "updated_at", "state")
    out = {k: loop.get(k) for k in keys}
    out["alive"] = pid_alive(loop.get("pid"))
    return out


# --------------------------------------------------------------------------- git


def git_head(source: Source) -> dict:
    """Branch and head commit; empty values where the folder is not a git repository."""
    if not source.is_git:
        return {"branch": None, "head": None}
    try:
        branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=source.root, check=False).stdout.strip()
        head = run(["git", "rev-parse", "--short", "HEAD"], cwd=source.root, check=False).stdout.strip()
    except AutoresearchError:
        return {"branch": None, "head": None}
    return {"branch": branch or None, "head": head or None}


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
    check = run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=source.root, check=False)
    if check.returncode != 0:
        return {
            "ok": False, "text": "",
            "message": f"commit {commit} is no longer in the repository "
                       "(discarded experiments are reset away and eventually collected by git)",
        }
    shown = run(
        ["git", "-c", "core.quotepath=off", "show", "--no-color", "--no-ext-diff", "--no-textconv", "--stat", "--patch",
         "--format=commit %H%nDate:   %ad%n%n    %s%n", commit, "--"],
        cwd=source.root, check=False,
    )
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


def load_rows(source: Source) -> tuple[str, list, str | None]:
    """(metric, rows, error) — error is one line when results.tsv is missing or malformed."""
    metric = source.config.metric if source.config else "val_bpb"
    try:
        metric, rows = results_mod.read(source.results_path)
    except AutoresearchError as exc:
        return metric, [], str(exc)
    return metric, rows, None


def pick_branch(rows, checked_out: str | None, wanted: str | None = None) -> str | None:
    """Which research branch's rows to show: the one asked for, else the checked-out one when
    it has rows, else the branch of the latest row; None when the rows name no branch."""
    names = [r.branch for r in rows if getattr(r, "branch", "")]
    if wanted:
        return wanted
    if checked_out and checked_out in names:
        return checked_out
    return names[-1] if names else None


def branch_rows(rows, branch: str | None) -> list:
    """The rows of one research branch; rows written without a branch belong to every branch."""
    if not branch:
        return list(rows)
    return [r for r in rows if getattr(r, "branch", "") in (branch, "")]


def snapshot(source: Source, direction: str | None = None, with_rows: bool = False,
             branch: str | None = None) -> dict:
    """Everything about one source, as JSON-ready data. Never raises for bad results.

    A results.tsv can hold several research branches (one `run --tag` each): the numbers are
    those of one branch (see pick_branch), as the engine counts them.
    """
    cfg = source.config
    metric, all_rows, error = load_rows(source)
    head = git_head(source)
    shown_branch = pick_branch(all_rows, head["branch"], branch)
    rows = branch_rows(all_rows, shown_branch)
    if branch and not rows and not error:
        error = f"no experiments recorded on branch {branch}"
    direction = direction or (cfg.direction if cfg else "lower")
    summary = summarize(rows, metric, direction, cfg.keep if cfg else None, judged=cfg is not None)
    loop = loop_state(source)
    current = running(source)
    agent = None
    for candidate in (
        current.get("agent") if current and current.get("alive") else None,
        loop.get("agent") if loop and loop.get("alive") else None,
        summary["agents"][-1] if summary["agents"] else None,
        loop.get("agent") if loop else None,
    ):
        if candidate:
            agent = candidate
            break
    snap = {
        "name": source.name,
        "root": str(source.root),
        "results": str(source.results_path),
        "workspace": cfg is not None,
        "config": None if cfg is None else {
            "template": cfg.template, "profile": cfg.profile, "dataset": cfg.dataset,
            "budget": cfg.budget, "editable": list(cfg.editable), "metric": cfg.metric,
            "direction": cfg.direction, "harness_record": cfg.harness_record,
        },
        "error": error,
        **head,
        "rows_branch": shown_branch,
        "branches": list(dict.fromkeys(r.branch for r in all_rows if getattr(r, "branch", ""))),
        "rows_total": len(all_rows),
        "agent": agent,
        "loop": loop,
        "running": current,
        "summary": summary,
        "time": time.time(),
    }
    if with_rows:
        snap["rows"] = row_dicts(rows, direction)
    return snap


# --------------------------------------------------------------------------- the terminal view


def _num(value, fmt=".6f", none="—"):
    return none if value is None else format(value, fmt)


def duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def progress_text(current: dict | None) -> str:
    if not current:
        return "nothing running"
    head = f"{current['commit'][:7]} {current['description']!r}" if current.get("commit") else repr(current["description"])
    if current.get("kind") and current["kind"] != "experiment":
        head += f" ({current['kind']})"
    if not current.get("alive"):
        return head + " — its process is gone (interrupted; the next `run` records it as a crash)"
    p = current.get("progress")
    parts = []
    if p:
        parts.append(f"step {p['step']}")
        if isinstance(p.get("progress"), float):
            parts.append(f"{p['progress']:.1f} %")
        if isinstance(p.get("loss"), float):
            parts.append(f"loss {p['loss']:.4f}")
        if isinstance(p.get("remaining"), float):
            parts.append(f"{p['remaining']:.0f} s remaining")
    else:
        parts.append("starting")
    if current.get("elapsed") is not None:
        parts.append(f"running for {duration(current['elapsed'])}")
    return head + ": " + ", ".join(parts)


def rows_of_table(snap: dict) -> list[tuple[str, str]]:
    """The status table as (label, text) pairs: what the terminal and tests read."""
    s = snap["summary"]
    cfg = snap["config"]
    metric = s["metric"]
    out = []
    where = snap["root"]
    if cfg:
        where += f"  ({cfg['template']}, profile {cfg['profile']}, budget {cfg['budget']:g} s)"
    else:
        where += "  (no workspace config: results only)"
    out.append(("workspace", where))
    if snap.get("branch"):
        out.append(("branch", f"{snap['branch']} @ {snap.get('head') or '?'}"))
    if snap.get("rows_branch") and (snap["rows_branch"] != snap.get("branch") or len(snap.get("branches") or []) > 1):
        others = [b for b in snap["branches"] if b != snap["rows_branch"]]
        text = f"experiments of {snap['rows_branch']}"
        if others:
            text += f" (also in results.tsv: {', '.join(others)}; choose with --branch)"
        out.append(("rows", text))
    agent = snap.get("agent") or "—"
    loop = snap.get("loop")
    if loop:
        agent += f"  (loop {'running' if loop['alive'] else 'not running'}"
        agent += f", {loop['state']})" if loop.get("state") else ")"
    out.append(("agent", agent))
    if snap.get("error"):
        out.append(("results", snap["error"]))
    source_note = ""
    if cfg and not cfg.get("harness_record", True):
        source_note = "; read from the printed line, no harness record"
    out.append(("metric", f"{metric} ({s['direction']} is better{source_note})"))
    runs = f"  (mean of {s['baseline_runs']} runs)" if s["baseline_runs"] > 1 else ""
    out.append(("baseline", _num(s["baseline"]) + runs))
    front = _num(s["frontier"])
    if s["frontier_commit"]:
        front += f"  (commit {s['frontier_commit'][:7]}, experiment #{s['frontier_index'] + 1})"
    out.append(("frontier", front))
    if s["improvement"] is not None:
        pct = f"  ({s['improvement_pct']:+.2f} %)" if s["improvement_pct"] is not None else ""
        out.append(("improvement", f"{s['improvement']:+.6f}{pct}"))
    else:
        out.append(("improvement", "—"))
    counts = ", ".join(f"{n} {k}" for k, n in s["counts"].items() if n)
    out.append(("experiments", f"{s['experiments']}" + (f": {counts}" if counts else "")))
    if s["experiments_per_hour"] is not None:
        out.append(("rate", f"{s['experiments_per_hour']:.1f} per hour over {duration(s['elapsed_seconds'])}"))
    else:
        out.append(("rate", "— (no timestamps)"))
    if s["training_share"] is not None:
        out.append(("training", f"{100 * s['training_share']:.0f} % of wall-clock"))
    else:
        out.append(("training", "— (no training_seconds recorded)"))
    if s["sigma"] is not None:
        text = s["sigma_text"].removeprefix("sigma ")
        out.append(("noise σ", f"{text}; a win must exceed {s['keep_bar']:.6f}"))
    else:
        out.append(("noise σ", f"— ({s['sigma_text']})"))
    if s["tokens_in"] is not None or s["cost_usd"] is not None:
        usage = f"{s['tokens_in'] or 0:,} tokens in, {s['tokens_out'] or 0:,} out"
        if s["cost_usd"] is not None:
            usage += f", ${s['cost_usd']:.2f}"
        out.append(("usage", usage))
    out.append(("running", progress_text(snap.get("running"))))
    return out


def render(snap: dict):
    """A rich Table of the snapshot."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None, pad_edge=False, title=Text(f"autoresearch · {snap['name']}"),
                  title_justify="left", title_style="bold")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for label, text in rows_of_table(snap):
        style = "red" if label == "results" else None
        table.add_row(label, Text(text), style=style)  # Text: a description is never read as markup
    return table


def status(where: str | Path = ".", results: str | Path | None = None, as_json: bool = False, console=None,
           branch: str | None = None) -> dict:
    """`autoresearch status`: print the table (or JSON) and return the snapshot."""
    from rich.console import Console

    source = open_source(where, results)
    snap = snapshot(source, branch=branch)
    if as_json:
        print(json.dumps(snap, indent=2, default=str))
    else:
        (console or Console()).print(render(snap))
    if snap["error"] and source.results_path.exists():  # malformed (a missing one is just "nothing yet")
        raise AutoresearchError(snap["error"])
    return snap


__all__ = [
    "Source", "open_source", "noise", "summarize", "frontier_series", "row_dicts",
    "parse_progress", "running", "commit_diff", "log_tail", "snapshot", "status", "render",
]
