"""`autoresearch status`: the snapshot of a workspace as a table in the terminal, or as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.errors import AutoresearchError
from autoresearch.research.results import printable
from autoresearch.views.snapshot import Snapshot, open_source, snapshot


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
    description = repr(printable(current["description"]))  # quoted, what the agent wrote made harmless
    head = f"{current['commit'][:7]} {description}" if current.get("commit") else description
    if current.get("kind") and current["kind"] != "experiment":
        head += f" ({current['kind']})"
    if not current.get("alive"):
        return head + " — its process is gone (interrupted; the next `run` records it as interrupted)"
    p = current.get("progress")
    parts = []
    if p:
        parts.append(f"step {p['step']}")
        if isinstance(p.get("progress"), float):
            parts.append(f"{p['progress']:.1f} %")
        if isinstance(p.get("loss"), float):
            parts.append(f"loss {p['loss']:.4f}")
        if p.get("evaluating"):
            parts.append("evaluating")
        elif isinstance(p.get("remaining"), float):
            parts.append(f"{p['remaining']:.0f} s remaining")
    else:
        parts.append("starting")
    if current.get("elapsed") is not None:
        parts.append(f"running for {duration(current['elapsed'])}")
    return head + ": " + ", ".join(parts)


def rows_of_table(snap: Snapshot) -> list[tuple[str, str]]:
    """The status table as (label, text) pairs: what the terminal and tests read."""
    if snap.workers:  # a pool: one line per worker
        running = [(w["worker"], progress_text(w)) for w in snap.workers]
    else:
        running = [("running", progress_text(snap.running))]
    return [*_where(snap), *_numbers(snap), *running]


def _where(snap: Snapshot) -> list[tuple[str, str]]:
    """Which workspace, branch and agent; a results problem."""
    cfg = snap.config
    out = []
    where = snap.root
    if cfg:
        where += f"  ({cfg['template']}, profile {cfg['profile']}, budget {cfg['budget']:g} s)"
    else:
        where += "  (no workspace config: results only)"
    out.append(("workspace", where))
    if snap.branch:
        out.append(("branch", f"{snap.branch} @ {snap.head or '?'}"))
    if snap.rows_branch and (snap.rows_branch != snap.branch or len(snap.branches or []) > 1):
        others = [b for b in snap.branches if b != snap.rows_branch]
        text = f"experiments of {snap.rows_branch}"
        if others:
            text += f" (also in results.tsv: {', '.join(others)}; choose with --branch)"
        out.append(("rows", text))
    agent = snap.agent or "—"
    loop = snap.loop
    if loop:
        agent += f"  (loop {'running' if loop['alive'] else 'not running'}"
        agent += f", {loop['state']})" if loop.get("state") else ")"
    out.append(("agent", agent))
    if snap.error:
        out.append(("results", snap.error))
    return out


def _numbers(snap: Snapshot) -> list[tuple[str, str]]:
    """The research's numbers, from the snapshot's summary."""
    s, cfg, out = snap.summary, snap.config, []
    source_note = ""
    if cfg and not cfg.get("harness_record", True):
        source_note = "; read from the printed line, no harness record"
    out.append(("metric", f"{s.metric} ({s.direction} is better{source_note})"))
    runs = f"  (mean of {s.baseline_runs} runs of its commit)" if s.baseline_runs > 1 else ""
    out.append(("baseline", _num(s.baseline) + runs))
    front = _num(s.frontier)
    if s.frontier_commit:
        made = "the baseline" if s.frontier_number is None else f"experiment #{s.frontier_number}"
        front += f"  (commit {s.frontier_commit[:7]}, {made})"
    out.append(("frontier", front))
    if s.change is not None:  # new minus old, as every difference is shown
        pct = f", {s.change_pct:+.2f} %" if s.change_pct is not None else ""
        out.append(("change", f"{s.change:+.6f}  (frontier minus baseline{pct})"))
    else:
        out.append(("change", "—"))
    out.append(("experiments", s.counts_text))
    if s.unsandboxed:  # counted from the rows' sandboxed column (Tally): None is not known, not sandboxed
        out.append(("sandbox", f"{s.unsandboxed} of {s.runs} runs unsandboxed: no sandbox could be had "
                               f"(`autoresearch run --require-sandbox` refuses that; see docs/trust.md)"))
    elif s.runs and s.tally.sandboxed == s.runs:
        out.append(("sandbox", f"every run sandboxed ({s.runs})"))
    elif s.runs:
        out.append(("sandbox", f"not recorded for {s.runs - s.tally.sandboxed} of {s.runs} runs"))
    return out + _pace(s) + _noise_and_usage(s)


def _pace(s) -> list[tuple[str, str]]:
    """Rates once they mean something (History's pace, Summary.rates_meaningful)."""
    if not s.rates_meaningful and s.rates_note and s.rates_note != "no timestamps":
        return [("rate", f"— ({s.rates_note})"), ("training", f"— ({s.rates_note})")]
    out = []
    if s.experiments_per_hour is not None:
        runs = f" ({s.runs_per_hour:.1f} runs per hour)" if s.runs_per_hour is not None else ""
        out.append(("rate", f"{s.experiments_per_hour:.1f} experiments per hour over {duration(s.elapsed_seconds)}{runs}"))
    else:
        out.append(("rate", "— (no timestamps)"))
    if s.training_share is not None:
        out.append(("training", f"{100 * s.training_share:.0f} % of wall-clock"))
    else:
        out.append(("training", "— (no training_seconds recorded)"))
    if s.time_split is not None:
        out.append(("time", s.time_split["text"]))
    return out


def _noise_and_usage(s) -> list[tuple[str, str]]:
    out = []
    if s.sigma is not None:
        text = s.sigma_text.removeprefix("sigma ")
        out.append(("noise σ", f"{text}; a change is kept at P(better) >= {s.p_keep:g}"))
    else:
        out.append(("noise σ", f"— ({s.sigma_text})"))
    if s.tokens_in is not None or s.cost_usd is not None:
        usage = f"{s.tokens_in or 0:,} tokens in, {s.tokens_out or 0:,} out"
        if s.cost_usd is not None:
            usage += f", ${s.cost_usd:.2f}"
        out.append(("usage", usage))
    return out


def render(snap: Snapshot):
    """A rich Table of the snapshot. Every cell is printable (research.results.printable):
    descriptions, agent names, branches and loop states come from the agent or from files it
    could write, and rich passes escape sequences through to the terminal."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None, pad_edge=False, title=Text(printable(f"autoresearch · {snap.name}")),
                  title_justify="left", title_style="bold")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for label, text in rows_of_table(snap):
        style = "red" if label == "results" else None
        table.add_row(label, Text(printable(text)), style=style)  # Text: a description is never read as markup
    return table


def status(where: str | Path = ".", results: str | Path | None = None, as_json: bool = False, console=None,
           branch: str | None = None) -> dict:
    """`autoresearch status`: print the table (or JSON) and return the snapshot."""
    from rich.console import Console

    source = open_source(where, results)
    snap = snapshot(source, branch=branch)
    if as_json:
        print(json.dumps(snap.to_json(), indent=2, default=str))
    else:
        (console or Console()).print(render(snap))
    if snap.error and source.recorded():  # malformed (nothing recorded yet is not an error)
        raise AutoresearchError(snap.error)
    return snap


