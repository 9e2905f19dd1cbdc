"""bench/night.py's parts: the random-search arm's proposer, the original's rule, the re-runs'
streams and their seeded commits (the night itself takes hours: docs/benchmarks.md)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch import capsliterals, gitrepo
from autoresearch.agents.base import Context
from autoresearch.agents.searchspace import derive, harness_seq_len, hyperparameters
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
            seq = harness_seq_len(ws.root)
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
    for stream in plan:  # the baseline's runs spread through each stream, one of them last
        at = [i for i, (_, which, _) in enumerate(stream) if which == "baseline"]
        assert at[-1] == len(stream) - 1 and all(b - a > 1 for a, b in zip([-1, *at], at))


def test_arms_that_cannot_all_have_a_partner_are_refused(tmp_path):
    done = subprocess.run([sys.executable, str(night.__file__), "--arms", "builtin", "random", "original",
                           "--at-once", "2", "--out", str(tmp_path / "n")], capture_output=True, text=True)
    assert done.returncode != 0 and "--at-once must divide" in done.stderr and not (tmp_path / "n").exists()


SCORE = """import sys
LOSS = {loss!r}
print(f"loss: {{LOSS}}")
"""


def test_the_original_rule_reaches_the_engines_decision(tmp_path, monkeypatch):
    """The arm replaces keeprule.decide; the engine must decide through it: a lower single run
    is kept at once, where the keep rule would run it again."""
    from autoresearch.engine import Engine
    from autoresearch.engine.pool import one_experiment
    from autoresearch.workspace import Workspace

    ws = init_workspace(tmp_path / "ws", template="blank", command="python score.py", metric="loss",
                        editable=("score.py",))
    (ws.root / "score.py").write_text(SCORE.format(loss=1.0))
    gitrepo.git(ws.root, *gitrepo.identity_args(ws.root), "commit", "-qam", "the score")
    gitrepo.git(ws.root, "switch", "-qc", "autoresearch/t")
    ws = Workspace.load(ws.root)
    engine = Engine(ws, out=lambda line: None, live=False)
    with ws.state.locked("test"):
        one_experiment(engine, "baseline")
        (ws.root / "score.py").write_text(SCORE.format(loss=0.999))
        monkeypatch.setattr(keeprule, "decide", night.single_run)
        outcome = one_experiment(engine, "a lower loss")
    assert outcome.status == "keep"
    rows = [r for r in ws.store.rows() if r.kind != "baseline"]
    assert [r.kind for r in rows] == ["experiment"] and "the original's rule" in rows[0].reason


def test_a_seeded_rerun_is_a_commit_on_no_branch_with_only_the_seed_changed(ws):
    head = gitrepo.head(ws.root)
    commit = night.seeded(ws.root, head, 1003)
    assert gitrepo.head(ws.root) == head and gitrepo.parent(ws.root, commit) == head
    assert gitrepo.changed_between(ws.root, head, commit) == ["train.py"]
    before = capsliterals.read_constants(gitrepo.show(ws.root, head, "train.py"))
    after = capsliterals.read_constants(gitrepo.show(ws.root, commit, "train.py"))
    assert after["SEED"].value == 1003
    assert {k: c.value for k, c in after.items() if k != "SEED"} == {k: c.value for k, c in before.items() if k != "SEED"}


def test_the_report_gives_what_held_up_as_new_minus_old():
    results = {"a": {"decided": 3, "per_hour": 30.0, "training_share": 0.7, "kept": 1, "claimed": -0.05,
                     "frontier_runs": [1.90, 1.92, 1.91]},
               "b": {"decided": 2, "per_hour": 20.0, "training_share": 0.7, "kept": 0, "claimed": 0.0,
                     "frontier_runs": [2.01, 2.00, 1.99]}}
    table = night.report(results, [2.00, 2.02, 1.98])
    assert results["a"]["held_up"] == pytest.approx(-0.09) and results["b"]["held_up"] == pytest.approx(0.0)
    assert results["a"]["held_up_se"] == pytest.approx(math.sqrt(0.01 ** 2 / 3 + 0.02 ** 2 / 3))
    assert "| a | 3 | 30.0 | 70 % | 1 | -0.0500 | -0.0900 ± " in table
