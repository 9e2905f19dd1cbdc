"""The keep rule as pure functions: noise estimate, bar, decisions, simplification."""

from __future__ import annotations

import math

import pytest

from autoresearch.research import keeprule
from autoresearch.research.results import Row


def decide(values, frontier, *, sigma=0.01, direction="lower", smaller=False, early=False, confirm=True, min_delta=0.001, z=2.0):
    return keeprule.decide(values, frontier, direction=direction, min_delta=min_delta, z=z, sigma=sigma,
                           confirm=confirm, smaller=smaller, early=early)


def test_improvement_follows_the_direction():
    assert keeprule.improvement(1.0, 0.9, "lower") == pytest.approx(0.1)
    assert keeprule.improvement(1.0, 0.9, "higher") == pytest.approx(-0.1)
    assert keeprule.improvement(1.0, 1.2, "higher") == pytest.approx(0.2)


def test_bar_is_the_larger_of_min_delta_and_z_sigma():
    assert keeprule.bar(0.001, 2.0, 0.01) == pytest.approx(0.02)
    assert keeprule.bar(0.05, 2.0, 0.01) == pytest.approx(0.05)


def test_a_win_beyond_the_bar_is_kept_outright_once_the_noise_is_known():
    d = decide([0.95], 1.0, sigma=0.01)
    assert d.action == "keep" and d.improvement == pytest.approx(0.05) and d.bar == pytest.approx(0.02)
    assert "better by 0.050000 > bar 0.020000" in d.reason


def test_while_the_noise_estimate_is_young_every_win_is_confirmed():
    assert decide([0.95], 1.0, sigma=0.01, early=True).action == "confirm"
    assert decide([0.95], 1.0, sigma=0.01, early=True, confirm=False).action == "keep"


def test_a_small_win_is_confirmed_then_kept_only_if_the_mean_clears_the_bar():
    assert decide([0.99], 1.0).action == "confirm"
    kept = decide([0.97, 0.975], 1.0)
    assert kept.action == "keep" and kept.reason.startswith("confirmed:")
    dropped = decide([0.99, 1.0], 1.0)
    assert dropped.action == "discard" and dropped.reason.startswith("not confirmed")


def test_a_confirmed_pair_needs_both_runs_better_than_the_frontier():
    d = decide([0.90, 1.001], 1.0, sigma=0.01)  # mean clears the bar, the second run does not beat the frontier
    assert d.action == "discard" and "one of the runs is not better" in d.reason


def test_no_confirm_when_disabled_and_losses_are_discarded():
    assert decide([0.99], 1.0, confirm=False).action == "discard"
    d = decide([1.05], 1.0)
    assert d.action == "discard" and d.reason.startswith("not better")


def test_higher_is_better():
    assert decide([1.05], 1.0, direction="higher").action == "keep"
    assert decide([0.95], 1.0, direction="higher").action == "discard"


def test_a_smaller_change_within_the_noise_is_kept_as_a_simplification():
    d = decide([1.005], 1.0, sigma=0.01, smaller=True)
    assert d.action == "keep" and d.simplification and d.reason.startswith("simplification")
    assert decide([1.05], 1.0, sigma=0.01, smaller=True).action == "discard"  # clearly worse: no
    assert decide([1.005], 1.0, sigma=0.01, smaller=False).action == "discard"


def test_min_delta_floors_the_bar():
    d = decide([0.999], 1.0, sigma=0.0, min_delta=0.002, confirm=False)
    assert d.action == "discard" and d.bar == pytest.approx(0.002)


def test_decide_refuses_non_finite_values():
    with pytest.raises(ValueError):
        decide([math.nan], 1.0)


def test_pooled_sigma_without_prior_is_the_classic_pooled_std():
    noise = keeprule.pooled([[1.0, 1.2], [2.0, 2.4, 2.2]], prior_sigma=0.0, prior_dof=0)
    ss = 0.02 + (0.04 + 0.04 + 0.0)
    assert noise.pooled == pytest.approx(math.sqrt(ss / 3))
    assert noise.dof == 3 and noise.runs == 5


def test_the_prior_holds_when_the_baseline_runs_agree_exactly():
    noise = keeprule.pooled([[1.0, 1.0]], prior_sigma=0.002)
    assert noise.pooled == pytest.approx(0.002 / math.sqrt(2))
    assert noise.dof == 1 and noise.early
    # Student's t for 2 degrees of freedom over the normal quantile
    assert noise.sigma == pytest.approx(noise.pooled * 4.303 / 1.96)


def test_inflation_shrinks_as_repeats_come_in():
    few = keeprule.pooled([[1.0, 1.01]], prior_sigma=0.002)
    many = keeprule.pooled([[1.0, 1.01]] * 30, prior_sigma=0.002)
    assert few.inflation > 2 > many.inflation > 1
    assert not many.early


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
