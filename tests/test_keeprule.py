"""The keep rule as pure functions: noise estimate, the sequential test's decisions, simplification."""

from __future__ import annotations

import math

import pytest

from autoresearch.research import keeprule
from autoresearch.research.results import Row


def test_improvement_follows_the_direction():
    assert keeprule.improvement(1.0, 0.9, "lower") == pytest.approx(0.1)
    assert keeprule.improvement(1.0, 0.9, "higher") == pytest.approx(-0.1)
    assert keeprule.improvement(1.0, 1.2, "higher") == pytest.approx(0.2)


def line(*runs: tuple[str, float, str], base: tuple[float, ...] = (1.00, 1.02, 1.00, 1.02)) -> list[Row]:
    """Rows of a line of research: four baseline runs of B, then (commit, value, status) in order."""
    rows = [Row("b000000", v, 0.0, "keep", "baseline", kind="baseline") for v in base]
    return rows + [Row(c, v, 0.0, s, "x", kind="experiment") for c, v, s in runs]


def judge(rows: list[Row], *, smaller: bool = False, direction: str = "lower") -> keeprule.Decision:
    ev = keeprule.weigh(rows, "b000000", "c000000", start=4, direction=direction)
    return keeprule.decide(ev, smaller=smaller)


def test_a_clear_win_is_never_kept_on_one_run_but_on_two():
    first = judge(line(("c000000", 0.90, "discard")))
    assert first.action == "more" and first.evidence.p_better > 0.99 and first.evidence.runs == 1
    assert first.evidence.rerun_frontier  # promising: the frontier runs again beside it first
    both = judge(line(("c000000", 0.90, "discard"), ("b000000", 1.01, "keep"), ("c000000", 0.91, "discard")))
    assert both.action == "keep" and both.evidence.runs == 2 and both.reason.startswith("better: P(better) 1.00")


def test_no_keep_without_a_re_run_of_the_frontier_beside_it():
    d = judge(line(("c000000", 0.90, "discard"), ("c000000", 0.91, "discard")))
    assert d.evidence.p_better > 0.99 and d.evidence.beside == 0
    assert d.action == "more" and d.evidence.rerun_frontier


def test_a_clear_loss_stops_after_one_run():
    d = judge(line(("c000000", 1.05, "discard")))
    assert d.action == "discard" and d.evidence.p_better < 0.01 and "after one run" in d.reason


def test_a_borderline_candidate_asks_for_another_run():
    d = judge(line(("c000000", 0.99, "discard"), ("b000000", 1.01, "keep"), ("c000000", 1.00, "discard")))
    assert d.action == "more" and 0.55 < d.evidence.p_better < 0.96


def test_the_next_run_is_the_one_that_tells_more():
    # four baseline runs and one of the candidate: the candidate is the less known
    one = judge(line(("c000000", 0.99, "discard")))
    assert one.action == "more" and not one.evidence.rerun_frontier
    # three of the candidate against old runs of the frontier: the frontier's turn
    three = judge(line(("c000000", 0.99, "discard"), ("c000000", 1.01, "discard"), ("c000000", 1.00, "discard")))
    assert three.action == "more" and three.evidence.rerun_frontier


def test_the_run_cap_ends_an_undecided_candidate():
    runs = [("c000000", 0.99, "discard")]
    for v in (1.00, 1.01, 1.00, 1.01):  # still borderline, five runs in
        runs += [("b000000", 1.01, "keep"), ("c000000", v, "discard")]
    d = judge(line(*runs))
    assert d.evidence.runs == 5 == keeprule.Rule().max_runs
    assert d.action == "discard" and "after 5 runs" in d.reason


def test_runs_beside_the_candidate_count_for_more_than_old_ones():
    # every run 0.01 lower than the one before, whatever the code: the candidate only looks better
    drifting = [1.00 - 0.01 * i for i in range(10)]
    rows = line(("c000000", drifting[4], "discard"), ("b000000", drifting[5], "keep"), ("c000000", drifting[6], "discard"),
                ("b000000", drifting[7], "keep"), ("c000000", drifting[8], "discard"), base=tuple(drifting[:4]))
    d = judge(rows)
    assert d.action != "keep"
    # a level taken as fixed weighs the old runs like the new ones, and the drift looks like a win
    fixed = keeprule.weigh(rows, "b000000", "c000000", start=4, rule=keeprule.Rule(wander=0.0))
    assert fixed.gain == pytest.approx(0.03) and d.evidence.gain < fixed.gain - 0.005
    assert d.evidence.p_better < fixed.p_better


def test_a_sudden_change_of_the_machine_is_not_a_win():
    # the frontier's old runs are poor; its re-run beside the candidate is as good as the candidate
    rows = line(("c000000", 0.95, "discard"), ("b000000", 0.955, "keep"), ("c000000", 0.95, "discard"),
                ("c000000", 0.95, "discard"), base=(1.00, 1.01, 1.00, 1.01))
    d = judge(rows)
    assert d.evidence.p_better > 0.96 and d.evidence.beside == 1 and d.evidence.local_z <= 0.5
    assert d.action == "more" and d.evidence.rerun_frontier
    capped = keeprule.decide(d.evidence, keeprule.Rule(max_runs=3))
    assert capped.action == "discard" and capped.reason.startswith("not confirmed: the frontier's re-runs beside it")


def test_higher_is_better():
    d = judge(line(("c000000", 1.10, "discard"), ("b000000", 1.01, "keep"), ("c000000", 1.11, "discard")),
              direction="higher")
    assert d.action == "keep"


def test_a_simplification_is_kept_within_the_noise_and_confirmed_beyond_it():
    # within the noise, but measured on its own: the frontier runs beside it first
    alone = judge(line(("c000000", 1.015, "discard")), smaller=True)
    assert alone.action == "more" and alone.evidence.rerun_frontier and not alone.simplification
    within = judge(line(("c000000", 1.015, "discard"), ("b000000", 1.01, "keep")), smaller=True)
    assert within.action == "keep" and within.simplification and "within the noise" in within.reason
    beyond = judge(line(("c000000", 0.90, "discard")), smaller=True)
    assert beyond.action == "more" and not beyond.simplification  # a big win is confirmed like any other
    worse = judge(line(("c000000", 1.10, "discard")), smaller=True)
    assert worse.action == "discard"


def test_min_delta_is_part_of_better():
    d = judge(line(("c000000", 1.01 - 0.0005, "discard"), ("b000000", 1.01, "keep"), ("c000000", 1.01 - 0.0005, "discard"),
                   base=(1.01,) * 4))
    assert d.evidence.gain == pytest.approx(0.0005) and d.evidence.p_better < 0.5 and d.action == "discard"


def test_the_runs_that_got_the_frontier_kept_count_for_less_than_its_re_runs():
    rows = [Row("b000000", 1.0, 0.0, "keep", "baseline", kind="baseline")] * 2 + [
        Row("f000000", 0.90, 0.0, "keep", "lucky"), Row("b000000", 1.0, 0.0, "keep", "re-run", kind="confirm"),
        Row("f000000", 0.91, 0.0, "keep", "lucky", kind="confirm"),
        Row("d000000", 0.99, 0.0, "discard", "another"), Row("f000000", 0.97, 0.0, "keep", "re-run", kind="confirm"),
        Row("c000000", 0.96, 0.0, "discard", "x")]

    def gain(luck: float) -> float:
        ev = keeprule.weigh(rows, "f000000", "c000000", start=7, rule=keeprule.Rule(luck=luck, wander=0.0))
        assert ev.frontier_runs == 3
        return ev.gain

    # no shared luck: the plain mean of 0.90, 0.91 and 0.97; the more luck, the nearer its re-run
    assert gain(0.0) == pytest.approx((0.90 + 0.91 + 0.97) / 3 - 0.96)
    assert gain(0.0) < gain(0.25) < gain(3.0) < 0.97 - 0.96 + 1e-9


def test_pooled_sigma_without_prior_is_the_classic_pooled_std():
    noise = keeprule.pooled([[1.0, 1.2], [2.0, 2.4, 2.2]], prior_sigma=0.0, prior_dof=0)
    ss = 0.02 + (0.04 + 0.04 + 0.0)
    assert noise.pooled == pytest.approx(math.sqrt(ss / 3))
    assert noise.dof == 3 and noise.runs == 5


def test_the_prior_holds_when_the_baseline_runs_agree_exactly():
    noise = keeprule.pooled([[1.0, 1.0]], prior_sigma=0.002)
    assert noise.pooled == pytest.approx(0.002 / math.sqrt(2))
    assert noise.dof == 1
    # Student's t for 2 degrees of freedom over the normal quantile
    assert noise.sigma == pytest.approx(noise.pooled * 4.303 / 1.96)


def test_inflation_shrinks_as_repeats_come_in():
    few = keeprule.pooled([[1.0, 1.01]], prior_sigma=0.002)
    many = keeprule.pooled([[1.0, 1.01]] * 30, prior_sigma=0.002)
    assert few.inflation > 2 > many.inflation > 1


def row(commit, value, status="keep", kind="experiment"):
    return Row(commit, value, 0.0, status, "x", kind=kind)


def test_noise_from_rows_groups_repeats_by_commit_and_ignores_crashes():
    rows = [row("aaaaaaa", 1.00, kind="baseline"), row("aaaaaaa", 1.02, kind="baseline"),
            row("bbbbbbb", 0.0, "crash"), row("ccccccc", 0.98, "discard"), row("ccccccc", 0.99, "discard", "confirm"),
            row("ddddddd", 0.90)]
    groups = keeprule.repeat_groups(rows)
    assert sorted(map(sorted, groups)) == [[0.98, 0.99], [1.0, 1.02]]
    noise = keeprule.noise(rows)
    assert noise.dof == 2 and noise.prior == pytest.approx(keeprule.PRIOR_REL * 1.01)


def test_code_lines_ignore_blanks_and_comments():
    assert keeprule.code_lines("x = 1\n\n# note\n    # indented note\ny = 2  # trailing\n") == 2


def test_t_quantiles_approach_the_normal():
    assert keeprule.t975(1) == pytest.approx(12.706)
    assert keeprule.t975(30) == pytest.approx(2.042)
    assert 1.96 < keeprule.t975(500) < 1.97


def test_only_recent_re_runs_of_the_frontier_are_compared_with():
    rows = [Row("b000000", 1.0, 0.0, "keep", "baseline", kind="baseline")] * 2
    for i in range(30):  # each a discarded change and a re-run of the frontier: 60 runs
        rows += [Row(f"d{i:06d}", 1.01, 0.0, "discard", "x"), Row("b000000", 1.0 + 0.001 * (i % 3), 0.0, "keep", "re-run", kind="confirm")]
    rows.append(Row("c000000", 0.99, 0.0, "discard", "x"))
    ev = keeprule.weigh(rows, "b000000", "c000000", start=len(rows) - 1, rule=keeprule.Rule(window=20))
    assert ev.frontier_runs == 2 + 10  # the baseline's own runs, and the re-runs of the last 20 runs


def test_without_a_frontier_re_run_beside_it_the_cap_does_not_keep():
    d = judge(line(*[("c000000", 0.90, "discard")] * 5))  # the frontier's re-runs all crashed
    assert d.evidence.p_better > 0.99 and d.evidence.beside == 0
    assert d.action == "discard" and d.reason.startswith("not confirmed: no re-run of the frontier beside it")


def test_a_simplification_is_not_kept_without_a_successful_frontier_run_beside_it():
    # the frontier's re-runs all crashed (they are not in the rows): the candidate ran alone
    alone = [("c000000", 1.015, "discard")]
    for n in range(2, 6):
        d = judge(line(*alone), smaller=True)
        assert d.action == "more" and d.evidence.rerun_frontier, d.reason
        assert d.evidence.adjacent == 0
        alone.append(("c000000", 1.01, "discard"))
    d = judge(line(*alone), smaller=True)
    assert d.evidence.runs == 5 and d.action == "discard" and not d.simplification
    assert d.reason.startswith("not kept as a simplification: no re-run of the frontier beside it succeeded")


def test_a_frontier_re_run_counts_for_a_simplification_only_next_to_a_measured_run_of_it():
    # a frontier re-run after the candidate's crashed run was not measured beside it
    crashed = line(("c000000", 1.015, "discard"), ("c000000", 0.0, "crash"), ("b000000", 1.01, "keep"))
    ev = keeprule.weigh(crashed, "b000000", "c000000", start=4)
    assert keeprule.decide(ev, smaller=True).action != "keep"
    assert ev.beside == 1 and ev.adjacent == 0
    beside = line(("c000000", 1.015, "discard"), ("b000000", 1.01, "keep"), ("c000000", 0.0, "crash"))
    assert keeprule.weigh(beside, "b000000", "c000000", start=4).adjacent == 1


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_the_reason_shows_the_change_of_the_metric_new_minus_old(direction):
    """`gain` (positive: better) decides; the reason shows `delta`, candidate minus frontier in
    the metric's units, as every view shows a difference: a win is negative when lower is better."""
    flip = (lambda v: v) if direction == "lower" else (lambda v: 2.0 - v)
    rows = [Row(r.commit, flip(r.value), 0.0, r.status, "x", kind=r.kind)
            for r in line(("c000000", 0.90, "discard"), ("b000000", 1.01, "keep"), ("c000000", 0.91, "discard"))]
    d = judge(rows, direction=direction)
    ev = d.evidence
    assert d.action == "keep" and ev.gain > 0
    assert ev.delta == pytest.approx(-ev.gain if direction == "lower" else ev.gain)
    assert f", {ev.delta:+.6f} ± {ev.se:.6f} vs " in d.reason
    assert d.reason.split(", ")[1].startswith("-" if direction == "lower" else "+")


def test_a_fresh_start_of_the_frontier_splits_its_runs_and_is_never_the_only_evidence():
    """The machine got 0.3 slower: the frontier's re-run marked fresh starts its measurements
    over. Its older runs are neither compared with nor pooled into the noise, and one fresh run
    is not enough to keep against: the frontier runs again first."""
    from dataclasses import replace

    rows = line(("b000000", 1.31, "keep"), base=(1.00, 1.02))
    rows[-1] = replace(rows[-1], kind="rerun", fresh=True)
    assert sorted(map(sorted, keeprule.repeat_groups(rows))) == [[1.0, 1.02]]  # not [1.0, 1.02, 1.31]
    rows += [Row("c000000", 1.20, 0.0, "discard", "x"), Row("c000000", 1.21, 0.0, "discard", "x", kind="confirm")]
    ev = keeprule.weigh(rows, "b000000", "c000000", start=2)
    assert ev.frontier_runs == 1 and ev.p_better > 0.99  # against the fresh run alone: a clear win
    d = keeprule.decide(ev)
    assert d.action == "more" and d.evidence.rerun_frontier and "measured afresh" in d.reason
    again = keeprule.decide(keeprule.weigh(rows + [Row("b000000", 1.30, 0.0, "keep", "x", kind="rerun")],
                                           "b000000", "c000000", start=2))
    assert again.action == "keep" and again.evidence.frontier_runs == 2
