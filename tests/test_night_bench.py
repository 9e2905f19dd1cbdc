"""bench/night.py's parts: the random-search arm's proposer, the original's rule, the re-runs'
streams and their seeded commits (the night itself takes hours: docs/benchmarks.md)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from autoresearch import capsliterals, gitrepo
from autoresearch.agents.base import Context
from autoresearch.agents.searchspace import derive, hyperparameters
from autoresearch.research import keeprule
from autoresearch.workspace import init_workspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import night  # noqa: E402


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return init_workspace(tmp_path_factory.mktemp("night") / "ws", profile="cpu")


def context(ws, state: Path) -> Context:
    return Context(root=ws.root, state_dir=state, editable=("train.py",), metric="val_bpb", direction="lower",
                   program="", files={"train.py": (ws.root / "train.py").read_text()}, notes="", history="")


def test_random_search_moves_one_to_three_knobs_within_their_ranges(ws, tmp_path):
    start = (ws.root / "train.py").read_text()
    consts = hyperparameters(start)
    ranges = {p.name: p for name, c in consts.items() for p in derive(name, c.value)}
    agent = night.RandomSearch(seed=3)
    sizes, seen = set(), set()
    try:
        for _ in range(40):
            said = agent.propose(context(ws, tmp_path)).description
            after = capsliterals.read_constants((ws.root / "train.py").read_text())
            moved = {k for k, c in consts.items() if after[k].value != c.value}
            assert 1 <= len(moved) <= 4 and all(k in said for k in moved)  # up to 3 drawn, a device batch refitted
            for name, p in ranges.items():
                value = after[p.constant].value if p.index is None else after[p.constant].value[p.index]
                if p.kind in ("cat", "bool"):
                    assert value in p.choices
                else:  # on the search's scale, unclamped (values are rounded to 3 significant digits)
                    x = 1 - value if p.kind == "one_minus" else math.log2(value) if p.kind == "pow2" else value
                    assert p.low * 0.99 - 1e-9 <= x <= p.high * 1.01 + 1e-9, (name, value)
            seq = night.seq_len(ws.root)
            total, device = after["TOTAL_BATCH_SIZE"].value, after["DEVICE_BATCH_SIZE"].value
            assert total % (device * seq) == 0, "a draw the trainer cannot run"
            sizes.add(len(moved - {"DEVICE_BATCH_SIZE"}) or 1)
            seen.add((ws.root / "train.py").read_text())
            (ws.root / "train.py").write_text(start)  # the engine resets to the frontier
    finally:
        (ws.root / "train.py").write_text(start)
    assert len(seen) >= 30 and sizes >= {1, 2, 3}


def test_random_search_keeps_the_ranges_of_the_start_of_the_line(ws, tmp_path):
    agent = night.RandomSearch(seed=1)
    start = (ws.root / "train.py").read_text()
    try:
        agent.propose(context(ws, tmp_path))
        saved = (tmp_path / "random-search.json").read_text()
        agent.propose(context(ws, tmp_path))  # from a frontier that moved: the same ranges
        assert (tmp_path / "random-search.json").read_text().split('"n"')[0] == saved.split('"n"')[0]
    finally:
        (ws.root / "train.py").write_text(start)


def evidence(gain: float) -> keeprule.Evidence:
    return keeprule.Evidence(gain=gain, delta=-gain, se=0.01, p_better=0.5, runs=1, frontier_runs=2, sigma=0.01)


def test_the_original_rule_keeps_any_lower_single_run():
    assert night.single_run(evidence(1e-6)).action == "keep"
    assert night.single_run(evidence(0.0)).action == "discard"
    assert night.single_run(evidence(-0.2)).action == "discard"
    assert keeprule.decide(evidence(1e-6)).action != "keep"  # the keep rule never keeps on one run


@pytest.mark.parametrize("arms, n, reruns", [(["builtin", "random", "original", "builtin2"], 2, 5),
                                              (["builtin", "random", "original"], 3, 2)])
def test_the_reruns_are_even_streams_with_fresh_seeds(arms, n, reruns):
    plan = night.streams(arms, n, reruns)
    assert len(plan) == n and len({len(s) for s in plan}) == 1
    jobs = [j for s in plan for j in s]
    for arm in arms:
        assert sorted(seed for a, which, seed in jobs if a == arm and which == "frontier") == \
            [night.SEED_BASE + k for k in range(1, reruns + 1)]
    base = [seed for _, which, seed in jobs if which == "baseline"]
    assert len(base) >= reruns and len(set(base)) == len(base) and 42 not in base


def test_a_seeded_rerun_is_a_commit_on_no_branch_with_only_the_seed_changed(ws):
    head = gitrepo.head(ws.root)
    commit = night.seeded(ws.root, head, 1003)
    assert gitrepo.head(ws.root) == head and gitrepo.parent(ws.root, commit) == head
    assert gitrepo.changed_between(ws.root, head, commit) == ["train.py"]
    before = capsliterals.read_constants(gitrepo.show(ws.root, head, "train.py"))
    after = capsliterals.read_constants(gitrepo.show(ws.root, commit, "train.py"))
    assert after["SEED"].value == 1003
    assert {k: c.value for k, c in after.items() if k != "SEED"} == {k: c.value for k, c in before.items() if k != "SEED"}
