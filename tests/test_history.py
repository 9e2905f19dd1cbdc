"""History: every number about a line of research, pinned on small hand-written row sets,
and the same frontier value in the agent's prompt and in `autoresearch status --json`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from autoresearch.research import keeprule
from autoresearch.research.history import History, kept_mean
from autoresearch.research.results import Row, parse
from support import cli, git, write_results

B = "autoresearch/test"


def r(commit: str, value: float, status: str = "keep", kind: str = "experiment", branch: str = B, **extra) -> Row:
    return Row(commit=commit, value=value, memory_gb=0.0, status=status, description=extra.pop("description", commit),
               kind=kind, branch=branch, **extra)


# The life of a branch: two baseline runs of a000000, a win b000000 confirmed A-B-A (the
# frontier re-run between its two runs), a discard, a crash, then c000000 kept.
LIFE = [
    r("a000000", 2.00, kind="baseline"),
    r("a000000", 2.02, kind="baseline"),
    r("a000000", 2.04, kind="rerun", description="re-run of the frontier beside: b"),
    r("b000000", 1.90),
    r("b000000", 1.94, kind="confirm"),
    r("d000000", 1.99, status="discard"),
    r("e000000", 0.0, status="crash"),
    r("c000000", 1.80),
    r("c000000", 1.84, kind="confirm"),
]


def test_the_frontier_is_the_mean_of_the_kept_runs_of_the_last_kept_commit():
    h = History(LIFE, B)
    assert h.frontier_commit == "c000000"
    assert h.frontier_value == pytest.approx(1.82)
    assert h.frontier_index == 7
    assert h.frontier_change.commit == "c000000" and h.frontier_change.runs == 2
    assert kept_mean(LIFE, "b000000") == pytest.approx(1.92)


def test_the_series_follows_keeps_confirms_and_frontier_reruns():
    h = History(LIFE, B)
    assert h.series == pytest.approx([2.00, 2.01, 2.02, 1.90, 1.92, 1.92, 1.92, 1.80, 1.82])
    assert h.delta(3) == pytest.approx(1.90 - 2.02) and h.delta(6) is None  # new minus old; a crash has none
    assert h.before(0) is None and h.before(3) == pytest.approx(2.02)  # the re-run moved the frontier b beat
    assert h.series[-1] == h.frontier_value  # one function gives both


def test_a_re_run_of_the_old_frontier_after_a_kept_change_leaves_the_change_the_frontier():
    # the change ran twice, then the old frontier beside it (the test's A-B-A before a keep)
    rows = [r("a000000", 2.00, kind="baseline"), r("a000000", 2.02, kind="baseline"),
            r("b000000", 1.90), r("b000000", 1.92, kind="confirm"),
            r("a000000", 2.04, kind="rerun", description="re-run of the frontier beside: b")]
    h = History(rows, B)
    assert h.frontier_commit == "b000000" and h.frontier_value == pytest.approx(1.91)
    assert h.series == pytest.approx([2.00, 2.01, 1.90, 1.91, 1.91])
    assert [c.commit for c in h.kept_changes] == ["a000000", "b000000"]
    assert h.label(4) == "rerun" and h.tally().outcomes["keep"] == 1 and h.tally().reruns == 1  # never a keep


def test_nothing_kept_means_no_frontier():
    h = History([r("a000000", 0.0, status="crash", kind="baseline")], B)
    assert h.frontier_commit is None and h.frontier_value is None and h.series == [None]
    assert h.baseline is None and h.change is None and h.frontier_change is None


def test_the_baseline_is_the_value_of_its_commit_and_the_change_is_new_minus_old():
    h = History(LIFE, B)
    # the baseline's commit is valued as every kept commit: its baseline runs and its re-run,
    # so the report's head and its table of kept changes give one value
    assert h.baseline_runs == [2.00, 2.02, 2.04] and h.baseline == pytest.approx(2.02) and h.baseline_count == 3
    assert h.baseline == h.kept_changes[0].value == h.value_of("a000000")
    assert h.change == pytest.approx(1.82 - 2.02)  # a win is negative when lower is better
    assert h.change_pct == pytest.approx(100 * (1.82 - 2.02) / 2.02)
    higher = History([r("a000000", 1.0, kind="baseline"), r("b000000", 1.5)], B, direction="higher")
    assert higher.change == pytest.approx(0.5)


def test_a_file_without_kinds_takes_its_first_measured_row_as_the_baseline():
    upstream = [r("a000000", 0.0, status="crash", branch=""), r("b000000", 1.0, branch=""),
                r("c000000", 0.9, branch="")]
    h = History(upstream)
    assert h.baseline == 1.0 and h.baseline_count == 1 and h.frontier_value == 0.9


def test_the_tally_kept_changes_and_the_streak():
    h = History([*LIFE, r("f000000", 1.9, status="discard"), r("g000000", 0.0, status="noop")], B)
    tally = h.tally()
    assert tally.outcomes == {"keep": 2, "discard": 2, "crash": 1, "invalid": 0, "noop": 1, "interrupted": 0, "stale": 0}
    assert (tally.experiments, tally.decided, tally.baseline_runs, tally.reruns) == (6, 4, 2, 1)
    assert tally.text() == "6 experiments (2 keep, 2 discard, 1 crash, 1 noop); 2 baseline runs, 1 frontier re-run"
    assert h.tally(7).text() == "3 experiments (1 keep, 1 discard, 1 noop)"  # a session's rows
    assert h.numbers == [None, None, None, 1, 1, 2, 3, 4, 4, 5, 6]
    changes = [(c.commit, c.runs, c.baseline) for c in h.kept_changes]
    assert changes == [("a000000", 3, True), ("b000000", 2, False), ("c000000", 2, False)]
    assert h.kept_changes[1].delta == pytest.approx(1.92 - 2.02)
    assert h.not_kept_streak() == 2


def test_rows_of_another_branch_do_not_count_and_rows_without_a_branch_belong_to_all():
    other = [r("y000000", 0.6, kind="baseline", branch=""), r("z000000", 0.5, branch="autoresearch/old")]
    h = History([*other, *LIFE], B)
    assert len(h) == len(LIFE) + 1 and h.frontier_value == pytest.approx(1.82)
    old = History([*other, *LIFE], "autoresearch/old")
    assert len(old) == 2 and old.frontier_commit == "z000000" and old.baseline == 0.6


def test_the_noise_is_the_keep_rules_estimate_over_the_same_rows():
    h = History(LIFE, B)
    assert h.noise == keeprule.noise(h.rows)
    assert h.noise.runs == 7  # a000000 x3, b000000 x2, c000000 x2


def test_pace_and_usage():
    rows = [r("a000000", 2.0, kind="baseline", timestamp="2026-01-01T00:01:00Z", seconds=60.0, training_seconds=50.0),
            r("b000000", 1.9, timestamp="2026-01-01T00:02:00Z", seconds=60.0, training_seconds=50.0,
              tokens_in=10, tokens_out=2, cost_usd=0.5),
            r("c000000", 1.8, timestamp="2026-01-01T00:03:00Z", seconds=60.0, training_seconds=50.0, tokens_in=5)]
    h = History(rows, B)
    assert h.pace.elapsed_seconds == pytest.approx(180.0)  # the first row's run started a minute before its stamp
    assert h.pace.experiments_per_hour == pytest.approx(2 / (180 / 3600))  # decided experiments, not the baseline run
    assert h.pace.runs_per_hour == pytest.approx(3 / (180 / 3600))
    assert h.pace.training_share == pytest.approx(150 / 180)
    assert (h.usage.tokens_in, h.usage.tokens_out, h.usage.cost_usd) == (15, 2, 0.5)


# -- one frontier value everywhere --------------------------------------------------------


def test_the_agents_prompt_and_status_json_show_the_same_frontier_value(tmp_path):
    """A confirmed win has two runs and a baseline two: the frontier is their mean, not the last
    row's value nor the first baseline run, in the prompt as in `status --json`."""
    root = tmp_path / "ws"
    done = cli("init", str(root), "--template", "blank", "--command", "python score.py", "--metric", "score",
                "--editable", "score.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    git(root, "switch", "-qc", B)
    (root / "score.py").write_text("print('score: 2.0')\n")
    git(root, "commit", "-qam", "baseline")
    base = git(root, "rev-parse", "--short=7", "HEAD")
    (root / "score.py").write_text("print('score: 1.8')\n")
    git(root, "commit", "-qam", "win")
    win = git(root, "rev-parse", "--short=7", "HEAD")
    write_results(root, [
        r(base, 2.00, kind="baseline"), r(base, 2.02, kind="baseline"),
        r(base, 2.04, kind="rerun"), r(win, 1.80, description="win"), r(win, 1.83, kind="confirm", description="win"),
    ])

    snap = json.loads(cli("status", "--json", cwd=root).stdout)
    frontier = snap["summary"]["frontier"]
    assert frontier == pytest.approx(1.815)

    copy = tmp_path / "prompt.md"
    done = cli("run", "--agent", "command", "--agent-command", f"cp \"$AUTORESEARCH_PROMPT_FILE\" {copy}",
                "--max-experiments", "1", cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    prompt = copy.read_text()
    shown = f"{frontier:.6f}"
    assert f"frontier (best so far) score {shown} at commit {win}" in prompt
    assert f"frontier_value: {shown}" in prompt
    assert "1.830000 at commit" not in prompt  # not the last kept row alone
    assert "baseline score 2.020000" in prompt  # the baseline is the mean of its commit's runs too
    assert snap["summary"]["baseline"] == pytest.approx(2.02)


def test_labels_name_baseline_runs_re_runs_and_interrupted_runs():
    # a crash "interrupted" of a file written before the status existed, upgraded where it is read
    old = parse(f"commit\tval_bpb\tmemory_gb\tstatus\tdescription\tkind\treason\tbranch\n"
                f"g000000\t0.000000\t0.0\tcrash\tg\texperiment\tinterrupted\t{B}\n")[1]
    rows = [*LIFE, r("f000000", 0.0, status="interrupted", kind="confirm"), *old]
    h = History(rows, B)
    assert h.baseline_indices == {0, 1}  # the frontier re-run of the baseline commit is no baseline run
    assert [h.label(i) for i in range(len(rows))] == [
        "baseline", "baseline", "rerun", "keep", "keep", "discard", "crash", "keep", "keep", "interrupted", "interrupted"]
    assert h.tally().interrupted_runs == 2 and h.tally().outcomes["interrupted"] == 1
    upstream = History([r("a000000", 1.0, branch=""), r("b000000", 0.9, branch="")])
    assert upstream.baseline_indices == {0} and upstream.label(0) == "baseline"


def _timed(commit: str, at: str, worker: str = "", **times) -> Row:
    return r(commit, 1.0, timestamp=f"2026-12-06T10:{at}Z", worker=worker, **times)


def test_the_time_split_says_where_the_wall_clock_went():
    """Two runs 100 s apart, each 40 s training + 10 s start-up and hand-over, 20 s evaluator,
    5 s engine: the first row's whole run (75 s) counts from its start, so 175 s elapsed."""
    times = dict(seconds=50.0, training_seconds=40.0, eval_seconds=20.0, engine_seconds=5.0)
    pace = History([_timed("a", "00:00", **times), _timed("b", "01:40", **times)], B).pace
    assert pace.elapsed_seconds == pytest.approx(175.0)
    split = pace.split
    assert (split.training, split.startup, split.evaluating, split.engine) == pytest.approx(
        (80 / 175, 20 / 175, 40 / 175, 10 / 175))
    assert split.between == pytest.approx(25 / 175) and pace.training_share == pytest.approx(80 / 175)
    assert split.text().startswith("training 46 % · start-up and hand-over 11 % · evaluator 23 % · engine 6 %")


def test_the_time_split_of_a_pool_counts_each_workers_wall_clock():
    times = dict(seconds=50.0, training_seconds=40.0, eval_seconds=5.0, engine_seconds=1.0)
    rows = [_timed("a", "00:00", "w1", **times), _timed("b", "00:00", "w2", **times),
            _timed("c", "00:56", "w1", **times), _timed("d", "00:56", "w2", **times)]
    pace = History(rows, B).pace
    assert pace.elapsed_seconds == pytest.approx(112.0)  # two runs of 56 s one after the other
    assert pace.training_share == pytest.approx(160 / 224)  # not 160 / 112, clamped to 100 %
    assert sum((pace.split.training, pace.split.startup, pace.split.evaluating, pace.split.engine,
                pace.split.between)) == pytest.approx(1.0)


def _measured(commit: str, value: float, at: str, status: str = "keep", kind: str = "experiment") -> Row:
    return r(commit, value, status=status, kind=kind, timestamp=f"2026-12-06T10:{at}Z")


def test_the_frontier_is_stale_after_candidates_keep_losing_clearly():
    from autoresearch.research.history import parse_time

    base = [_measured("a000000", v, f"0{i}:00", kind="baseline") for i, v in enumerate((1.00, 1.01, 0.99, 1.00))]
    now = parse_time("2026-12-06T10:20:00Z")
    losers = [_measured(f"b00000{i}", 1.30, f"1{i}:00", status="discard") for i in range(4)]
    history = History(base + losers, B)
    why = history.stale("a000000", now)
    assert why.startswith("the last 4 candidates each lost to it by") and "sigma" in why
    assert History(base + losers[:3], B).stale("a000000", now) == ""  # three are not yet a pattern
    near = [_measured(f"c00000{i}", 1.012, f"1{i}:00", status="discard") for i in range(4)]
    assert History(base + near, B).stale("a000000", now) == ""  # ordinary losses, within the noise
    confirmed = losers[:3] + [_measured("b000003", 1.30, "13:00", status="discard", kind="confirm")]
    assert History(base + confirmed, B).stale("a000000", now) == ""  # a candidate that needed a second run
    fresh = [_measured("a000000", 1.30, "14:00", kind="rerun")]
    assert History(base + losers + fresh, B).stale("a000000", now) == ""  # measured again since


def test_the_frontier_is_stale_when_its_last_measurement_is_old():
    from autoresearch.research.history import STALE_SECONDS, parse_time

    base = [_measured("a000000", v, "00:00", kind="baseline") for v in (1.00, 1.01)]
    at = parse_time("2026-12-06T10:00:00Z")
    since = [_measured(f"c00000{i}", 1.012, f"0{i}:30", status="discard") for i in range(8)]
    assert History(base + since, B).stale("a000000", at + STALE_SECONDS - 60) == ""
    assert History(base + since, B).stale("a000000", at + STALE_SECONDS + 60) == \
        "its last measurement is 61 minutes and 8 runs old"
    # a long budget: an hour is two runs, not yet stale
    assert History(base + since[:2], B).stale("a000000", at + STALE_SECONDS + 60) == ""


def test_the_frontier_is_stale_when_the_runs_pace_moved_beyond_its_noise():
    """The machine got slower (or faster) without any candidate losing clearly: the steps per
    training second of every run since the frontier's last measurement moved far from its own."""
    from autoresearch.research.history import parse_time

    def paced(commit, value, at, steps, status="keep", kind="experiment"):
        return replace(_measured(commit, value, at, status=status, kind=kind), steps=steps, training_seconds=10.0)

    base = [paced("a000000", v, f"0{i}:00", steps, kind="baseline")
            for i, (v, steps) in enumerate(((1.00, 100), (1.01, 102), (0.99, 99)))]
    now = parse_time("2026-12-06T10:20:00Z")
    slow = [paced(f"b00000{i}", 1.01, f"1{i}:00", 80, status="discard") for i in range(3)]
    why = History(base + slow, B).stale("a000000", now)
    assert why == ("the last 3 runs trained 20 % or more fewer steps per second than its runs "
                   "(the machine's speed changed?)")
    fast = [paced(f"b00000{i}", 0.995, f"1{i}:00", 125, status="discard") for i in range(3)]
    assert "more steps per second" in History(base + fast, B).stale("a000000", now)
    assert History(base + slow[:2], B).stale("a000000", now) == ""  # two runs are not yet a pattern
    mixed = slow[:2] + [paced("b000009", 1.01, "19:00", 101, status="discard")]
    assert History(base + mixed, B).stale("a000000", now) == ""  # the last run trained at the frontier's pace
    a_little = [paced(f"b00000{i}", 1.01, f"1{i}:00", 90, status="discard") for i in range(3)]
    assert History(base + a_little, B).stale("a000000", now) == ""  # 10 %: within what a change moves
    one_change = [paced("b000001", 1.01, f"1{i}:00", 80, status="discard", kind="experiment" if i == 0 else "confirm")
                  for i in range(3)]
    assert History(base + one_change, B).stale("a000000", now) == ""  # one change's runs: its code may be slower
    measured_again = slow + [paced("a000000", 1.05, "15:00", 80, kind="rerun")]
    assert History(base + measured_again, B).stale("a000000", now) == ""
