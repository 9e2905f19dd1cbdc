"""The morning report: `progress.png` and `report.md` from a results.tsv.

The plot puts every run at its index: discards as faint dots, crashes (and invalid or no-op
attempts, which have no measurement) as marks along the worse edge, interrupted runs
(stopped from outside: nothing to say about the code) as hollow circles on that edge, kept
changes bold and labeled with their description, the baseline runs as diamonds, the
frontier's re-runs beside a candidate as small dots in the frontier's colour (measurements
of the frontier, never keeps); the frontier after each run (History.series, the value the
title and every other view give) as a step line, the baseline as a dashed line, and the noise
band (the keep rule's bar around the frontier) shaded, whole inside the axes. Values far worse
than the research ever got are drawn clipped at the edge so one blow-up does not flatten the
rest. The markdown lists the kept changes in order with their deltas (new minus old) and
commits, then the crashes and the interrupted runs apart. Every count and value comes from
the snapshot's Summary (views/snapshot.py), the same numbers `status` and the dashboard show.

Works from the results file alone, including one written by the original project (five
columns: no kinds, no timestamps; its first row is the baseline).
"""

from __future__ import annotations

import io
from pathlib import Path

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.research.history import History
from autoresearch.research.results import clean, md_cell, printable
from autoresearch.views.snapshot import Source, Summary, load, open_source, summarize
from autoresearch.views.terminal import duration

WIDTH, HEIGHT, DPI = 12, 6, 100  # progress.png is 1200 x 600 pixels
KEEP_COLOR = "#1a9850"
DISCARD_COLOR = "#8c96a0"
CRASH_COLOR = "#d62728"
OTHER_COLOR = "#ff8c00"  # invalid / noop
INTERRUPTED_COLOR = "#9467bd"  # stopped from outside: not the code's fault
FRONTIER_COLOR = "#2b5bd7"
BASELINE_COLOR = "#555555"
LABEL_CHARS = 48


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    """One line of plot text, printable; `$` escaped so matplotlib never reads a description as math."""
    text = clean(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def plot(history: History, path: Path, *, metric: str = "val_bpb", title: str = "", keep_rule=None,
         judged: bool = False, summary: Summary | None = None) -> Path:
    """Draw progress.png (WIDTH x HEIGHT inches at DPI) and return its path. `summary`: the
    snapshot's numbers of `history` (computed here when not given)."""
    # a Figure on its own Agg canvas, no pyplot: no global backend switch, no GUI, thread-safe
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(history.rows)
    s = summary or summarize(history, metric, keep_rule, judged=judged)
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_xlabel("run #")
    shown_metric = metric.replace("$", r"\$")
    ax.set_ylabel(f"{shown_metric} ({history.direction} is better)")
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlim(0.0, max(len(rows), 1) + 1.0)
    if not history.measured:
        ax.text(0.5, 0.5, "no measured experiments yet" if rows else "no experiments yet",
                transform=ax.transAxes, ha="center", va="center", fontsize=14, color="#777777")
        ax.set_yticks([])
    else:
        lo, hi = y_limits(history, s)
        ax.set_ylim(lo, hi)
        _draw_frontier(ax, history, s)
        _draw_points(ax, history, s, lo, hi)
        _draw_legend(ax, history, s)  # a legend only where there is something to explain
    if not title:  # the counts on a line of their own, the runs around them and the values below
        title = s.counts_text.replace("; ", "\n", 1)
        if s.baseline is not None and s.frontier is not None:
            title += ("; " if "\n" in title else "\n") + f"{shown_metric} {s.baseline:.6f} → {s.frontier:.6f}"
    ax.set_title(printable(title), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    image = io.BytesIO()  # drawn in memory, then written whole; a link planted at the path is replaced
    fig.savefig(image, format="png", dpi=DPI)
    atomic_write(path, image.getvalue())
    return path


def _band(s) -> float | None:
    """The noise band's half-width: the margin a change must beat the frontier by."""
    return s.keep_bar if s.sigma is not None else None


def _draw_frontier(ax, history: History, s) -> None:
    """The frontier after each run as a step line (History.series: the value the title gives),
    the noise band around it, the baseline dashed."""
    n = len(history.rows)
    fx = [i + 1 for i, v in enumerate(history.series) if v is not None]
    fy = [v for v in history.series if v is not None]
    if fx:
        fx_full = fx + [n + 1]
        fy_full = fy + [fy[-1]]
        bar = _band(s)
        if bar:
            ax.fill_between(fx_full, [v - bar for v in fy_full], [v + bar for v in fy_full], step="post",
                            color=FRONTIER_COLOR, alpha=0.12, linewidth=0, zorder=1)
        ax.step(fx_full, fy_full, where="post", color=FRONTIER_COLOR, linewidth=2.0, zorder=3)
    if s.baseline is not None:
        ax.axhline(s.baseline, color=BASELINE_COLOR, linestyle="--", linewidth=1.2, zorder=2)


def _at(history: History, *labels: str) -> list[int]:
    """The x positions (run numbers) of the rows with one of these labels (History.label)."""
    return [i + 1 for i in range(len(history.rows)) if history.label(i) in labels]


def _draw_points(ax, history: History, s, lo: float, hi: float) -> None:
    """Every run at its index: discards faint, failures on the worse edge, kept ones bold and
    labeled, baseline runs as diamonds, the frontier's re-runs small in its colour."""
    rows = history.rows
    sign = 1 if history.direction == "lower" else -1
    edge_y = 0.97 if history.direction == "lower" else 0.03
    edge = ax.get_xaxis_transform()
    # discards: faint; those off the chart sit on the worse edge as small triangles
    discards = [(x, rows[x - 1].value) for x in _at(history, "discard") if rows[x - 1].measured]
    inside = [(x, v) for x, v in discards if lo <= v <= hi]
    if inside:
        ax.scatter(*zip(*inside), s=22, color=DISCARD_COLOR, alpha=0.45, linewidths=0, zorder=4)
    for off, y, marker in (([x for x, v in discards if v > hi]), 0.92, "^"), (([x for x, v in discards if v < lo]), 0.08, "v"):
        if off:
            ax.scatter(off, [y] * len(off), transform=edge, s=30, color=DISCARD_COLOR, alpha=0.6, marker=marker,
                       linewidths=0, zorder=4)
    # failures: no measurement; marked along the worse edge; interrupted runs hollow, apart
    for xs, style in ((_at(history, "crash"), dict(marker="x", s=40, color=CRASH_COLOR, linewidths=1.8)),
                      (_at(history, "invalid", "noop"), dict(marker="|", s=60, color=OTHER_COLOR, linewidths=1.5)),
                      (_at(history, "interrupted"), dict(marker="o", s=46, facecolors="none",
                                                         edgecolors=INTERRUPTED_COLOR, linewidths=1.8))):
        if xs:
            ax.scatter(xs, [edge_y] * len(xs), transform=edge, zorder=5, clip_on=False, **style)
    # measured runs of kept code: kept changes bold, baseline runs as diamonds, re-runs small
    for label, style in (("keep", dict(s=70, color=KEEP_COLOR, edgecolors="#0b3d1f", linewidths=1.0)),
                         ("baseline", dict(s=60, marker="D", color=BASELINE_COLOR, edgecolors="#222222", linewidths=1.0)),
                         ("rerun", dict(s=18, color=FRONTIER_COLOR, linewidths=0))):
        xs = [x for x in _at(history, label) if rows[x - 1].measured]
        if xs:
            ax.scatter(xs, [rows[x - 1].value for x in xs], zorder=6, **style)
    n = len(rows)
    for j, change in enumerate(history.kept_changes):
        label = "baseline" if change.baseline else _short(change.description)
        x = change.index + 1
        right = x > 0.7 * (n + 1)  # labels near the right edge grow leftwards, inside the axes
        ax.annotate(label, (x, change.value), xytext=(-6 if right else 6, -10 * sign if j % 2 else 8 * sign),
                    textcoords="offset points", fontsize=7.5, color="#0b3d1f",
                    rotation=(-20 if right else 20) * sign, rotation_mode="anchor",
                    ha="right" if right else "left", va="center", zorder=7)


def _draw_legend(ax, history: History, s) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    runs = s.baseline_runs
    handles = [
        Line2D([], [], marker="o", linestyle="", color=KEEP_COLOR, markeredgecolor="#0b3d1f", markersize=8, label="kept"),
        Line2D([], [], marker="o", linestyle="", color=DISCARD_COLOR, alpha=0.6, markersize=5, label="discarded"),
        Line2D([], [], marker="x", linestyle="", color=CRASH_COLOR, markersize=7, label="crashed"),
        Line2D([], [], color=FRONTIER_COLOR, linewidth=2, label="frontier (mean of its kept runs)"),
        Line2D([], [], color=BASELINE_COLOR, linestyle="--", marker="D", markersize=5, markeredgecolor="#222222",
               label=f"baseline (mean of {runs} runs)" if runs > 1 else "baseline"),
    ]
    if s.sigma is not None:
        handles.append(Patch(color=FRONTIER_COLOR, alpha=0.15, label=f"noise band (±{s.keep_bar:.4f})"))
    if s.tally.reruns:
        handles.insert(3, Line2D([], [], marker="o", linestyle="", color=FRONTIER_COLOR, markersize=4,
                                 label="frontier re-run"))
    if s.tally.interrupted_runs:
        handles.insert(3, Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markersize=7,
                                 markeredgecolor=INTERRUPTED_COLOR, markeredgewidth=1.8, label="interrupted"))
    if s.counts["invalid"] or s.counts["noop"]:
        handles.insert(3, Line2D([], [], marker="|", linestyle="", color=OTHER_COLOR, markersize=8, label="invalid / no-op"))
    ax.legend(handles=handles, loc="lower left" if history.direction == "lower" else "upper left", fontsize=8,
              framealpha=0.9)


def y_limits(history: History, s) -> tuple[float, float]:
    """Y limits: all kept values and the baseline, plus room for the discards nearby; widened
    so the noise band around the frontier line is whole (the dashboard's limits() agrees)."""
    lo, hi = _limits(list(history.rows), s, history.direction)
    line = [v for v in history.series if v is not None]
    bar = _band(s)
    if line and bar:
        room = 0.05 * (max(hi, max(line) + bar) - min(lo, min(line) - bar))
        lo = min(lo, min(line) - bar - room)
        hi = max(hi, max(line) + bar + room)
    return lo, hi


def _limits(rows, s, direction: str) -> tuple[float, float]:
    """Y limits: all kept values and the baseline, plus room for the discards nearby."""
    anchor = [r.value for r in rows if r.status == "keep" and r.measured]
    if s.baseline is not None:
        anchor.append(s.baseline)
    values = [r.value for r in rows if r.measured]
    if not anchor:
        anchor = values
    lo, hi = min(anchor), max(anchor)
    span = hi - lo
    floor = max(abs(hi) * 2e-3, 1e-6)
    if s.sigma:
        floor = max(floor, 4 * s.keep_bar)
    span = max(span, floor)
    # discards within a few spans of the anchors widen the view; further ones are clipped
    reach = 3.0 * span
    if direction == "lower":
        worse = [v for v in values if hi < v <= hi + reach]
        hi = max([hi, *worse])
        better_ = [v for v in values if lo - reach <= v < lo]
        lo = min([lo, *better_])
        return lo - 0.12 * span, hi + 0.25 * span
    worse = [v for v in values if lo - reach <= v < lo]
    lo = min([lo, *worse])
    better_ = [v for v in values if hi < v <= hi + reach]
    hi = max([hi, *better_])
    return lo - 0.25 * span, hi + 0.12 * span


def markdown(history: History, *, metric: str = "val_bpb", name: str = "", results_name: str = "results.tsv",
             keep_rule=None, judged: bool = False, image: str = "progress.png", summary: Summary | None = None) -> str:
    """report.md. `summary`: the snapshot's numbers of `history` (computed here when not given)."""
    s = summary or summarize(history, metric, keep_rule, judged=judged)
    out = [f"# Research report{': ' + name if name else ''}", ""]
    out += _numbers(s, metric, results_name)
    out += ["", f"![progress]({image})", "", "## Kept changes, in order", ""]
    out += _changes(history, s, metric)
    out += _failures(history)
    # printable as a whole too: the metric's and the workspace's names come from files as well
    return printable("\n".join(out) + "\n")


def _numbers(s: Summary, metric: str, results_name: str) -> list[str]:
    """The report's head: the counts, the baseline and the frontier, the pace, the usage."""
    out = [f"- results: `{results_name}`: {s.counts_text}", f"- metric: `{metric}`, {s.direction} is better"]
    if s.baseline is not None:
        runs = f" (mean of {s.baseline_runs} runs of its commit)" if s.baseline_runs > 1 else ""
        out.append(f"- baseline: {s.baseline:.6f}{runs}")
    if s.frontier is not None:
        commit = f" at commit `{s.frontier_commit[:7]}`" if s.frontier_commit else ""
        out.append(f"- frontier: {s.frontier:.6f}{commit}")
    if s.change is not None:
        pct = f", {s.change_pct:+.2f} %" if s.change_pct is not None else ""
        out.append(f"- change: {s.change:+.6f} (frontier minus baseline{pct})")
    if s.sigma is not None:
        out.append(f"- noise: {s.sigma_text.replace('sigma', 'σ =', 1)}; "
                   f"a change is kept at P(better) >= {s.p_keep:g}")
    if s.experiments_per_hour is not None or s.training_share is not None:
        if not s.rates_meaningful:
            out.append(f"- pace: — ({s.rates_note}; {duration(s.elapsed_seconds)} so far)")
        elif s.experiments_per_hour is not None:
            runs = f" ({s.runs_per_hour:.1f} runs per hour)" if s.runs_per_hour is not None else ""
            out.append(f"- pace: {s.experiments_per_hour:.1f} experiments per hour over {duration(s.elapsed_seconds)}{runs}")
        if s.rates_meaningful and s.training_share is not None:
            out.append(f"- time spent training: {100 * s.training_share:.0f} % of wall-clock")
        if s.rates_meaningful and s.time_split is not None:
            out.append(f"- where the time went: {s.time_split['text']}")
    if s.tokens_in is not None or s.cost_usd is not None:
        usage = f"{s.tokens_in or 0:,} tokens in, {s.tokens_out or 0:,} out"
        if s.cost_usd is not None:
            usage += f", ${s.cost_usd:.2f}"
        out.append(f"- agent usage: {usage}")
    return out


def _changes(history: History, s: Summary, metric: str) -> list[str]:
    """The kept changes as a table: the experiment's number (as `autoresearch run` printed it),
    the value (for the baseline, the summary's baseline), the deltas new minus old."""
    if not history.kept_changes:
        return ["Nothing was kept."]
    out = [f"| # | commit | {metric} | Δ previous | Δ baseline | description |", "|---:|---|---:|---:|---:|---|"]
    previous = None
    for c in history.kept_changes:
        value = s.baseline if c.baseline and s.baseline is not None else c.value
        delta = "" if previous is None else f"{value - previous:+.6f}"
        vs_base = "" if s.baseline is None or c.baseline else f"{value - s.baseline:+.6f}"
        number = history.numbers[c.index]
        desc = "baseline" if c.baseline else md_cell(c.description)
        notes = []
        if c.runs > 1:
            notes.append(f"mean of {c.runs} runs")
        if c.reason:
            notes.append(md_cell(c.reason))
        if notes and not c.baseline:
            desc += f" ({'; '.join(notes)})"
        elif c.baseline and c.runs > 1:
            desc += f" ({c.runs} runs)"
        out.append(f"| {'' if number is None else number} | `{c.commit[:7]}` | {value:.6f} | {delta} | {vs_base} | {desc} |")
        previous = value
    return out


# what a crash or an interruption says about its code, from the row's typed cause
_NOT_THE_CODE = {"machine": " (the machine failed, not the code)", "engine": " (the engine failed, not the code)",
                 "queued": " (never ran)"}


def _failures(history: History) -> list[str]:
    """The crashes, then the interrupted runs apart: those were stopped from outside and say
    nothing about their code. Numbered by experiment, as `autoresearch run` printed them."""
    out: list[str] = []
    for heading, label in (("Crashes", "crash"), ("Interrupted (stopped from outside, not the code's fault)", "interrupted")):
        listed = [(i, r) for i, r in enumerate(history.rows) if history.label(i) == label]
        if listed:
            out += ["", f"## {heading}", ""]
            for i, r in listed:
                why = f": {md_cell(r.reason)}" if r.reason and r.reason != "interrupted" else ""
                kind = f" ({r.kind})" if r.kind != "experiment" else ""
                kind += _NOT_THE_CODE.get(r.cause, "")
                number = history.numbers[i]
                out.append(f"- {'baseline' if number is None else f'#{number}'} `{r.commit[:7]}` "
                           f"{md_cell(r.description)}{kind}{why}")
    return out


def report(where: str | Path = ".", results: str | Path | None = None, out: str | Path | None = None,
           direction: str | None = None, branch: str | None = None) -> tuple[Path, Path]:
    """`autoresearch report`: write progress.png and report.md; return their paths.

    The rows are those of one research branch (snapshot.load, as `status` and the dashboard
    read them): `branch`, else the checked-out one, else the latest row's.
    """
    source: Source = open_source(where, results)
    got = load(source, direction, branch)
    if got.error:  # missing or malformed, or nothing on the branch asked for
        raise AutoresearchError(got.error)
    cfg = source.config
    keep_rule = cfg.keep if cfg else None
    judged = cfg is not None  # our keep rule decided these rows: its noise estimate applies
    summary = summarize(got.history, got.metric, keep_rule, judged=judged)
    folder = Path(out).resolve() if out is not None else source.results_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AutoresearchError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    png = folder / "progress.png"
    md = folder / "report.md"
    try:
        plot(got.history, png, metric=got.metric, summary=summary)
        name = source.name + (f" · {got.branch}" if got.branch else "")
        atomic_write(md, markdown(got.history, metric=got.metric, name=name,
                                  results_name=source.results_path.name, summary=summary))
    except OSError as exc:
        raise AutoresearchError(f"cannot write the report into {folder}: {exc.strerror or exc}") from exc
    return png, md
