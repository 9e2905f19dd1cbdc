"""Every view tells the same story about one results file: the loop's exit line, `status
--json` and its table, report.md and progress.png, the dashboard's JSON, the agent's prompt.

One hand-written line of research holds every kind of row: baseline runs, two kept changes
with their confirm runs, the frontier's re-runs beside candidates (one of them of an old
frontier, recorded after a newer keep), discards, a crash of the code and one of the machine,
interrupted runs (stopped while running, stopped before a worker took it), a stale win, an
invalid and a no-op proposal. Counted by hand it has 12 experiments; each view must say so,
and give the same baseline and frontier."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from autoresearch import loop
from autoresearch.engine.outcome import Outcome
from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.research.results import Row, header, line
from autoresearch.views import report as report_mod
from autoresearch.views import snapshot as st
from autoresearch.views import terminal
from autoresearch.views.dashboard import server

B = "autoresearch/agree"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

# (commit, value, status, kind, description, cause): 20 rows, 60 s apart
LIFE = [
    ("a000000", 1.000, "keep", "baseline", "baseline", ""),
    ("a000000", 1.004, "keep", "baseline", "baseline", ""),
    ("b000001", 0.980, "keep", "experiment", "win one", ""),                   # experiment 1
    ("a000000", 1.002, "keep", "rerun", "re-run of the frontier beside: win one", ""),
    ("b000001", 0.982, "keep", "confirm", "win one", ""),
    ("c000002", 0.995, "discard", "experiment", "a loser", ""),                # 2
    ("d000003", 0.0, "crash", "experiment", "a bug", "code"),                  # 3
    ("e000004", 0.0, "crash", "experiment", "the data went missing", "machine"),  # 4
    ("f000005", 0.0, "interrupted", "experiment", "stopped while it ran", "stopped"),  # 5
    ("f000006", 0.0, "interrupted", "experiment", "stopped before a worker took it", "queued"),  # 6
    ("g000007", 0.975, "stale", "experiment", "a win on a frontier that moved", ""),  # 7
    ("b000001", 0.0, "invalid", "experiment", "edited the harness", ""),       # 8
    ("b000001", 0.0, "noop", "experiment", "changed nothing", ""),             # 9
    ("i000010", 0.960, "keep", "experiment", "win two", ""),                   # 10
    ("b000001", 0.985, "keep", "rerun", "re-run of the frontier beside: win two", ""),
    ("i000010", 0.962, "keep", "confirm", "win two", ""),
    ("j000011", 0.990, "discard", "experiment", "tried against the old frontier", ""),  # 11
    ("b000001", 0.990, "keep", "rerun", "re-run of the frontier beside: tried against the old frontier", ""),
    ("k000012", 0.970, "discard", "experiment", "cut short", ""),              # 12
    ("k000012", 0.0, "interrupted", "confirm", "cut short", "stopped"),
]
EXPERIMENTS = 12
OUTCOMES = {"keep": 2, "discard": 3, "crash": 2, "invalid": 1, "noop": 1, "interrupted": 2, "stale": 1}
RERUNS = (3, 14, 17)  # rows of kind rerun: keep rows of the frontier's commit, never kept changes
KEPT_RUNS = (2, 4, 13, 15)  # rows of the two kept changes
BASELINE = (1.000 + 1.004 + 1.002) / 3  # every kept run of the baseline's commit, its re-run too
FRONTIER = (0.960 + 0.962) / 2  # the last kept commit's kept runs, not its best run (0.960)
MACHINE_RUNS = 20 - 3  # all but the queued one, the invalid and the no-op
ELAPSED = 19 * 60 + 50.0  # stamped when recorded; the first run took 50 s


def rows() -> list[Row]:
    out = []
    for i, (commit, value, status, kind, description, cause) in enumerate(LIFE):
        ran = status in ("keep", "discard")
        used = status not in ("invalid", "noop") and cause != "queued"
        out.append(Row(
            commit=commit, value=value, memory_gb=None, status=status, description=description,
            timestamp=(T0 + timedelta(seconds=60 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            seconds=50.0 if used else None, training_seconds=40.0 if ran else None, kind=kind,
            agent="" if kind == "baseline" else "builtin", branch=B, cause=cause,
            sandboxed=False if used else None,  # a machine without a sandbox: every run unsandboxed
        ))
    return out


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "research" / "results.tsv"
    path.parent.mkdir()
    path.write_text(header("val_bpb") + "".join(line(r) for r in rows()))
    return path


def history() -> History:
    return History(rows(), B)


# ---------------------------------------------------------------- what each view says


def exit_line(start: int = 0) -> str:
    """The loop's last line, its SessionSummary settled as Loop._finish settles it."""
    h = history()
    summary = loop.SessionSummary(branch=B, metric="val_bpb", stopped="reached --max-experiments")
    summary.settle(h, start, h.frontier_commit)
    return summary.line()


def status_json(results, capsys) -> dict:
    capsys.readouterr()
    terminal.status(results=results, as_json=True)
    return json.loads(capsys.readouterr().out)


def report_text(results, tmp_path) -> str:
    _, md = report_mod.report(results=results, out=tmp_path / "out")
    return md.read_text()


def dashboard_json(results) -> dict:
    source = st.open_source(results=results)
    return server.Dashboard([source]).state(0, source)[1]


def counts_in(text: str) -> tuple[int, dict[str, int]]:
    """(experiments, by outcome) from a Tally text: "12 experiments[ on B] (2 keep, ...)"."""
    m = re.search(r"(\d+) experiments?(?: on \S+)? \(([^)]*)\)", text)
    assert m, text
    outcomes = {s: 0 for s in OUTCOMES}
    for part in m.group(2).split(", "):
        n, status = part.split(" ", 1)
        outcomes[status] = int(n)
    return int(m.group(1)), outcomes


# ---------------------------------------------------------------- the same counts, baseline and frontier


def test_every_view_gives_the_same_experiment_counts(results, tmp_path, capsys):
    said = {
        "exit line": counts_in(exit_line()),
        "status table": counts_in(dict(terminal.rows_of_table(st.snapshot(st.open_source(results=results))))["experiments"]),
        "report.md": counts_in(report_text(results, tmp_path)),
    }
    status = status_json(results, capsys)["summary"]
    said["status --json"] = (status["experiments"], status["counts"])
    dash = dashboard_json(results)["summary"]
    said["dashboard"] = (dash["experiments"], dash["counts"])
    said["dashboard text"] = counts_in(dash["counts_text"])
    for view, (experiments, outcomes) in said.items():
        assert experiments == EXPERIMENTS and outcomes == OUTCOMES, view
    # the runs around the experiments, in the one text every view prints
    text = history().tally().text()
    assert text == ("12 experiments (2 keep, 3 discard, 2 crash, 1 invalid, 1 noop, 2 interrupted, 1 stale); "
                    "2 baseline runs, 3 frontier re-runs, 1 more run interrupted")
    assert status["counts_text"] == dash["counts_text"] == text
    assert text in report_text(results, tmp_path) and exit_line().startswith(f"reached --max-experiments: {text[:14]} on {B}")


def test_every_view_gives_the_same_baseline_and_frontier(results, tmp_path, capsys):
    status = status_json(results, capsys)["summary"]
    dash = dashboard_json(results)
    md = report_text(results, tmp_path)
    assert status["baseline"] == pytest.approx(BASELINE) and status["frontier"] == pytest.approx(FRONTIER)
    assert dash["summary"]["baseline"] == status["baseline"] and dash["summary"]["frontier"] == status["frontier"]
    assert f"val_bpb {BASELINE:.6f} -> {FRONTIER:.6f} at i000010" in exit_line()
    # report.md: its head and its table of kept changes give the same baseline
    assert f"- baseline: {BASELINE:.6f} (mean of 3 runs of its commit)" in md and f"- frontier: {FRONTIER:.6f}" in md
    table = [row for row in md.splitlines() if row.startswith("| ") and "`" in row]
    assert [row.split(" | ")[1] for row in table] == ["`a000000`", "`b000001`", "`i000010`"]
    assert table[0].split(" | ")[2] == f"{BASELINE:.6f}" and table[-1].split(" | ")[2] == f"{FRONTIER:.6f}"
    # the dashboard's kept changes and the frontier line it draws end at the same values
    assert dash["changes"][0]["value"] == pytest.approx(BASELINE) and dash["changes"][-1]["value"] == pytest.approx(FRONTIER)
    assert dash["rows"][-1]["frontier"] == pytest.approx(FRONTIER)
    # nothing kept yet: the frontier is the baseline, no change
    early = History(rows()[:2], B)
    assert early.change == 0.0 and early.baseline == early.frontier_value


def test_the_frontier_is_numbered_as_the_loop_numbers_experiments(results):
    h = history()
    assert [h.numbers[i] for i in (0, 1, 2, 5, 13, 15, 18, 19)] == [None, None, 1, 2, 10, 10, 12, 12]
    table = dict(terminal.rows_of_table(st.snapshot(st.open_source(results=results))))
    assert "(commit i000010, experiment #10)" in table["frontier"]
    # a resumed loop numbers its next proposal after the branch's experiments
    resumed = loop.Loop(SimpleNamespace(config=SimpleNamespace(metric="val_bpb")), loop.Plan())
    resumed.resume(h)
    assert (resumed.rows_before, resumed.number(1)) == (len(LIFE), EXPERIMENTS + 1)


def test_a_sessions_exit_line_counts_its_own_rows_as_history_does():
    assert History(rows(), B).tally(14).text() == "2 experiments (2 discard); 2 frontier re-runs, 1 more run interrupted"
    assert exit_line(14).startswith(f"reached --max-experiments: 2 experiments on {B} (2 discard); 2 frontier re-runs")


def test_runs_unsandboxed_are_counted_from_the_typed_column(results, capsys):
    s = status_json(results, capsys)["summary"]
    assert (s["unsandboxed"], s["runs"]) == (MACHINE_RUNS, MACHINE_RUNS)
    table = dict(terminal.rows_of_table(st.snapshot(st.open_source(results=results))))
    assert table["sandbox"].startswith(f"{MACHINE_RUNS} of {MACHINE_RUNS} runs unsandboxed")
    unknown = History([replace(r, sandboxed=None) for r in rows()], B).tally()  # a file from before the column
    assert (unknown.unsandboxed, unknown.sandboxed, unknown.machine_runs) == (0, 0, MACHINE_RUNS)


def test_experiments_per_hour_count_decided_experiments_and_runs_per_hour_runs(results, tmp_path, capsys):
    s = status_json(results, capsys)["summary"]
    decided = OUTCOMES["keep"] + OUTCOMES["discard"] + OUTCOMES["stale"]
    assert s["elapsed_seconds"] == pytest.approx(ELAPSED) and s["rates_meaningful"]
    assert s["experiments_per_hour"] == pytest.approx(decided / (ELAPSED / 3600))
    assert s["runs_per_hour"] == pytest.approx(MACHINE_RUNS / (ELAPSED / 3600))
    md = report_text(results, tmp_path)
    assert (f"- pace: {s['experiments_per_hour']:.1f} experiments per hour over 19.8 min "
            f"({s['runs_per_hour']:.1f} runs per hour)") in md


# ---------------------------------------------------------------- re-runs are measurements of the frontier, never keeps


def test_re_runs_are_never_counted_or_drawn_as_keeps(results, monkeypatch, tmp_path):
    h = history()
    assert [i for i in range(len(h)) if h.label(i) == "rerun"] == list(RERUNS)
    assert [i for i in range(len(h)) if h.label(i) == "keep"] == list(KEPT_RUNS)
    assert [c.commit for c in h.kept_changes] == ["a000000", "b000001", "i000010"]  # the late re-run of b is no new change
    dash = dashboard_json(results)
    assert [r["index"] for r in dash["rows"] if r["label"] == "rerun"] == list(RERUNS)
    assert [r["index"] for r in dash["rows"] if r["label"] == "keep"] == list(KEPT_RUNS)

    from matplotlib.axes import Axes

    drawn: list[tuple[str, list, list]] = []
    steps: list[list] = []
    scatter, step = Axes.scatter, Axes.step

    def spy_scatter(ax, x, y, *args, **kw):
        drawn.append((kw.get("color"), list(x), list(y)))
        return scatter(ax, x, y, *args, **kw)

    def spy_step(ax, x, y, *args, **kw):
        steps.append(list(y))
        return step(ax, x, y, *args, **kw)

    monkeypatch.setattr(Axes, "scatter", spy_scatter)
    monkeypatch.setattr(Axes, "step", spy_step)
    report_mod.report(results=results, out=tmp_path / "plot")
    kept = [x for color, xs, _ in drawn if color == report_mod.KEEP_COLOR for x in xs]
    assert kept == [i + 1 for i in KEPT_RUNS]  # drawn at run number index + 1
    reruns = [x for color, xs, _ in drawn if color == report_mod.FRONTIER_COLOR for x in xs]
    assert reruns == [i + 1 for i in RERUNS]
    # the line is the frontier after each run (History.series), ending at the frontier's mean as
    # the title gives it, not at the best single run (0.960)
    assert steps[-1] == pytest.approx([v for v in h.series if v is not None] + [FRONTIER])


# ---------------------------------------------------------------- one sign convention: new minus old


def test_a_wins_delta_is_negative_for_val_bpb_everywhere(results, tmp_path, capsys):
    h = history()
    before = h.before(13)
    ev = keeprule.weigh(h.rows[:16], "b000001", "i000010", start=13, direction="lower")
    decision = keeprule.decide(ev)
    assert ev.gain > 0 and ev.delta == pytest.approx(-ev.gain)  # the decisions' gain, the people's delta
    shown = float(re.search(r"over \d+ runs?, ([+-]\d\.\d+) ±", decision.reason).group(1))
    assert shown < 0, decision.reason
    outcome = Outcome(status="keep", kind="experiment", description="win two", commit="i000010", metric="val_bpb",
                      direction="lower", value=FRONTIER, values=[0.960, 0.962], frontier_value=before,
                      frontier="i000010", p_better=ev.p_better, memory_gb=None, seconds=50.0, reason=decision.reason)
    head, why = outcome.lines()[:2]
    delta = float(re.search(r"\(([+-]\d\.\d+) vs ", head).group(1))
    assert delta == pytest.approx(FRONTIER - before) and delta < 0, head
    assert why.strip().startswith("better: P(better)") and "-0.0" in why
    # the same sign in status, the dashboard, the report and the prompt
    s = status_json(results, capsys)["summary"]
    assert s["change"] < 0 and s["change"] == pytest.approx(FRONTIER - BASELINE)
    row = dashboard_json(results)["rows"][13]
    assert row["delta"] < 0 and row["delta"] == pytest.approx(0.960 - before)
    md = report_text(results, tmp_path)
    assert f"- change: {FRONTIER - BASELINE:+.6f} (frontier minus baseline" in md
    from autoresearch.agents.context import history_text

    assert f"{0.960 - before:+.6f}" in history_text(h, "val_bpb") and f"{0.960 - before:+.6f}".startswith("-")


def test_for_a_higher_is_better_metric_a_win_is_positive():
    flipped = [Row(r.commit, 2.0 - r.value if r.measured else 0.0, r.memory_gb, r.status, r.description,
                   kind=r.kind, branch=B, cause=r.cause) for r in rows()]
    ev = keeprule.weigh(flipped[:16], "b000001", "i000010", start=13, direction="higher")
    assert ev.gain > 0 and ev.delta == pytest.approx(ev.gain)
    assert f"{ev.delta:+.6f} ±" in ev.describe() and ev.describe().split(", ")[1].startswith("+")


# ---------------------------------------------------------------- memory nothing measured


def test_a_memory_nothing_measured_shows_no_value(results, tmp_path, capsys):
    outcome = Outcome(status="discard", kind="experiment", description="cpu run", commit="c000002", metric="val_bpb",
                      direction="lower", value=0.995, values=[0.995], frontier_value=0.981, memory_gb=None, seconds=50.0)
    assert "GB" not in outcome.lines()[0] and "memory" not in outcome.lines()[0]
    measured = Outcome(status="discard", kind="experiment", description="gpu run", commit="c000002", metric="val_bpb",
                       direction="lower", value=0.995, frontier_value=0.981, memory_gb=12.5, seconds=50.0)
    assert "memory 12.5 GB" in measured.lines()[0]
    assert all(r["memory_gb"] is None for r in dashboard_json(results)["rows"])
    assert "0.0 GB" not in report_text(results, tmp_path)
    assert "0.0 GB" not in "\n".join(text for _, text in terminal.rows_of_table(st.snapshot(st.open_source(results=results))))
