"""The built-in proposer: ranges from train.py's constants, in-place edits, draws screened by
a model of the results (a lost region not drawn again), a kept move followed, no repeats, a
persisted search that resumes, and the loop driving it."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from autoresearch import capsliterals, profiles
from autoresearch.agents import load
from autoresearch.agents.base import Context
from autoresearch.agents import builtin
from autoresearch.agents.builtin import BuiltinAgent
from autoresearch.agents.searchspace import Param, derive, hyperparameters, values_of
from autoresearch.research.results import Row
from autoresearch.workspace import template_text

from support import blank, cli, clean, git, head, kept_last, rows


@pytest.fixture
def folder(tmp_path) -> Path:
    text = capsliterals.write_constants(template_text("llm", "train.py"), profiles.PROFILES["cpu"].train)
    (tmp_path / "train.py").write_text(text)
    (tmp_path / "prepare.py").write_text(capsliterals.write_constants(template_text("llm", "prepare.py"), {}))
    return tmp_path


def context(folder: Path, rows_, direction="lower", branch="autoresearch/x") -> Context:
    files = {"train.py": (folder / "train.py").read_text()}
    return Context(root=folder, state_dir=folder / ".state", editable=("train.py",), metric="val_bpb",
                   direction=direction, program="", files=files, notes="", history="", rows=tuple(rows_),
                   extra={"branch": branch})


def baseline_rows(value=2.0):
    return [Row("base000", value, 0.0, "keep", "baseline", kind="baseline"),
            Row("base000", value + 0.01, 0.0, "keep", "baseline", kind="baseline")]


class Bench:
    """Drives an agent the way the loop does: propose, score, keep (new frontier) or revert."""

    def __init__(self, folder: Path, score, direction="lower", agent=None, branch="autoresearch/x"):
        self.folder, self.score, self.direction, self.branch = folder, score, direction, branch
        self.agent = agent or BuiltinAgent()
        self.rows = baseline_rows(score(self.values()))
        self.frontier_text = (folder / "train.py").read_text()
        self.best = self.rows[0].value
        self.descriptions = []
        self.seen = {self.frontier_text}

    def values(self) -> dict:
        return {k: c.value for k, c in hyperparameters((self.folder / "train.py").read_text()).items()}

    def step(self) -> str:
        proposal = self.agent.propose(context(self.folder, self.rows, self.direction, self.branch))
        text = (self.folder / "train.py").read_text()
        assert text not in self.seen, f"proposed twice: {proposal.description}"
        self.seen.add(text)
        value = self.score(self.values())
        better = value < self.best if self.direction == "lower" else value > self.best
        status = "keep" if better else "discard"
        if better:
            self.best, self.frontier_text = value, text
        else:
            (self.folder / "train.py").write_text(self.frontier_text)
        self.rows.append(Row(f"c{len(self.rows):06d}", value, 0.0, status, proposal.description))
        self.descriptions.append(proposal.description)
        return proposal.description


def quadratic(values) -> float:
    """A smooth bowl with its best at MATRIX_LR 0.02 and WARMDOWN_RATIO 0.3."""
    return 1.0 + math.log(values["MATRIX_LR"] / 0.02) ** 2 + (values["WARMDOWN_RATIO"] - 0.3) ** 2


def test_ranges_come_from_the_current_values(folder):
    consts = hyperparameters((folder / "train.py").read_text())
    assert "VE_GATE_CHANNELS" not in consts  # below the first class: not a hyperparameter
    spec = {p.name: p for name, c in consts.items() for p in derive(name, c.value)}
    assert (spec["MATRIX_LR"].kind, spec["MATRIX_LR"].low, spec["MATRIX_LR"].high) == ("log", 0.01, 0.16)
    exp = consts["TOTAL_BATCH_SIZE"].value.bit_length() - 1  # powers of two around the current value
    assert spec["TOTAL_BATCH_SIZE"].kind == "pow2" and (spec["TOTAL_BATCH_SIZE"].low, spec["TOTAL_BATCH_SIZE"].high) == (exp - 2, exp + 2)
    assert spec["DEPTH"].kind == "int" and (spec["DEPTH"].low, spec["DEPTH"].high) == (1, 4)
    assert spec["WINDOW_PATTERN"].kind == "cat" and "SSSL" in spec["WINDOW_PATTERN"].choices
    assert spec["ADAM_BETAS[1]"].kind == "one_minus"
    assert spec["WARMDOWN_RATIO"].kind == "float"
    assert "SEED" not in spec and "COMPILE" not in spec


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]


def test_a_proposal_moves_one_to_three_knobs_far_enough_to_show_in_place(folder):
    before = (folder / "train.py").read_text()
    consts = hyperparameters(before)
    spec = {p.name: p for name, c in consts.items() for p in derive(name, c.value)}
    proposal = BuiltinAgent().propose(context(folder, baseline_rows()))
    after = (folder / "train.py").read_text()
    moved = {k: c.value for k, c in hyperparameters(after).items() if c.value != consts[k].value}
    assert 1 <= len(moved) <= 3 and all(k in proposal.description for k in moved)
    lines = changed_lines(before, after)
    assert len(lines) == len(moved)  # only the constants' own lines, comments kept
    for old, new in lines:
        assert old.split("=")[0] == new.split("=")[0] and old.split("#")[1:] == new.split("#")[1:]
    for name, value in moved.items():
        if name in spec and spec[name].kind not in ("cat", "bool") and name != "DEVICE_BATCH_SIZE":
            assert spec[name].distance(value, consts[name].value) >= builtin.MIN_MOVE - 1e-9, name
    assert proposal.usage is None


def test_a_kept_move_is_tried_again_as_far_the_same_way(folder):
    bench = Bench(folder, lambda v: v["MATRIX_LR"] * (1.0 + 0.1 * v["DEPTH"]))  # lower rates and depth always win
    for _ in range(30):
        before = bench.values()
        bench.step()
        if bench.rows[-1].status == "keep" and before["MATRIX_LR"] != bench.values()["MATRIX_LR"]:
            break
    kept, before = bench.values(), before
    ratio = kept["MATRIX_LR"] / before["MATRIX_LR"]
    bench.step()
    follow = bench.values() if bench.rows[-1].status == "keep" else None
    proposal = bench.descriptions[-1]
    assert f"MATRIX_LR {kept['MATRIX_LR']:g} -> " in proposal, proposal
    got = float(proposal.split(f"MATRIX_LR {kept['MATRIX_LR']:g} -> ")[1].split(",")[0])
    low = 0.01  # the range's end: 0.04 / 4
    assert got == pytest.approx(max(low, kept["MATRIX_LR"] * ratio), rel=0.02)
    assert follow is not None  # lower still: kept again


def test_a_region_that_lost_clearly_is_not_drawn_again(folder):
    agent = BuiltinAgent()
    agent.propose(context(folder, baseline_rows()))
    state_file = folder / ".state" / "builtin" / "autoresearch_x.json"
    state = json.loads(state_file.read_text())
    params = [Param(**p) for p in state["params"]]
    frontier = values_of(params, hyperparameters((folder / "train.py").read_text()))

    def draws(trials) -> int:
        deep = 0
        for seed in range(120):
            s = dict(state, trials=list(trials))
            change = agent._draw(s, params, frontier, set(), None, random.Random(seed), "lower")
            deep += change.get("DEPTH") == 3
        return deep

    calm = [{"how": "draw", "status": "discard", "value": 2.0 + 0.01 * (i % 3), "base": 2.0,
             "moves": {name: value}, "from": {name: frontier[name]}, "key": f"k{i}"}
            for i, (name, value) in enumerate([("MATRIX_LR", 0.02), ("WARMDOWN_RATIO", 0.8), ("EMBEDDING_LR", 2.0)])]
    disaster = {"how": "draw", "status": "discard", "value": 3.5, "base": 2.0, "moves": {"DEPTH": 3}, "from": {"DEPTH": 2},
                "key": "deep"}
    assert draws(calm) > 0  # DEPTH 3 is drawn like anything else while nothing is known of it
    assert draws([*calm, disaster]) == 0


def lines(folder: Path, score, steps: int, n: int = 3, direction: str = "lower") -> list[Bench]:
    """`n` lines of research (branches) of `steps` experiments each, every one from the same start:
    a search draws at random, so what it must do is asked of most lines, not of one path."""
    start = (folder / "train.py").read_text()
    out = []
    for k in range(n):
        (folder / "train.py").write_text(start)
        bench = Bench(folder, score, direction, branch=f"autoresearch/line{k}")
        for _ in range(steps):
            bench.step()
        bench.final = bench.values()
        out.append(bench)
    return out


def test_the_search_improves_and_never_repeats(folder):
    benches = lines(folder, quadratic, 45)
    # from 1.52: the rate within about 1.5x of its best in most lines. No closer is asked: a move
    # smaller than MIN_MOVE is never drawn (under noise it could not show)
    assert sorted(b.best for b in benches)[1] < 1.2
    for d in (d for b in benches for d in b.descriptions):
        assert re.match(r"[A-Z][A-Z0-9_]* \S.* -> \S", d), d
    assert len({tuple(b.descriptions) for b in benches}) == 3  # each line draws its own


def interacting(values) -> float:
    """The best MATRIX_LR depends on DEPTH: 0.04 at depth 2, 0.01 at depth 1 (the best depth)."""
    best = 0.04 if values["DEPTH"] >= 2 else 0.01
    return 1.0 + math.log(values["MATRIX_LR"] / best) ** 2 + 3.0 * (values["DEPTH"] != 1)


def test_a_knob_that_changes_another_knobs_best_value_is_found_with_it(folder):
    benches = lines(folder, interacting, 60)
    found = [b for b in benches if b.final["DEPTH"] == 1 and b.best < 1.2]
    assert len(found) >= 2, [b.best for b in benches]


def one_trial(params, name, before, after, value, status="discard", base=2.0) -> dict:
    return {"how": "draw", "status": status, "value": value, "base": base, "moves": {name: after},
            "from": {name: before}, "key": f"{name}={after}"}


def test_the_model_reads_a_result_in_the_metrics_direction():
    params = derive("MATRIX_LR", 0.04) + derive("WARMDOWN_RATIO", 0.5)
    frontier = {"MATRIX_LR": 0.04, "WARMDOWN_RATIO": 0.5}
    went_up = [one_trial(params, "MATRIX_LR", 0.04, 0.08, 2.05)]  # the metric rose by 0.05
    lower = builtin.Model(params, went_up)
    higher = builtin.Model(params, went_up, higher=True)
    up, down = {"MATRIX_LR": 0.1}, {"MATRIX_LR": 0.02}
    assert lower.expected(frontier, up) > lower.scale  # a loss, lower being better
    assert higher.expected(frontier, up) < -higher.scale  # a win, higher being better
    assert lower.score(frontier, down) < lower.score(frontier, up)
    assert higher.score(frontier, up) < lower.score(frontier, up)


def test_the_other_side_of_a_knob_whose_move_lost_goes_before_another_try_of_the_same_side():
    params = derive("MATRIX_LR", 0.04) + derive("WARMDOWN_RATIO", 0.5)
    frontier = {"MATRIX_LR": 0.04, "WARMDOWN_RATIO": 0.5}
    # a move up of the warmdown that did what moves do, and one of the rate: a flat stretch both
    flat = [one_trial(params, "WARMDOWN_RATIO", 0.5, 0.8, 2.0), one_trial(params, "MATRIX_LR", 0.04, 0.08, 2.0),
            one_trial(params, "MATRIX_LR", 0.04, 0.12, 2.0)]
    model = builtin.Model(params, flat)
    assert model.score(frontier, {"WARMDOWN_RATIO": 0.2}) < model.score(frontier, {"WARMDOWN_RATIO": 0.7})
    assert model.score(frontier, {"MATRIX_LR": 0.02}) < model.score(frontier, {"MATRIX_LR": 0.1})


def test_a_no_op_or_an_invalid_change_teaches_the_model_nothing():
    params = derive("MATRIX_LR", 0.04)
    frontier = {"MATRIX_LR": 0.04}
    for status in ("noop", "invalid", "stale"):
        model = builtin.Model(params, [one_trial(params, "MATRIX_LR", 0.04, 0.08, None, status=status)])
        assert model.expected(frontier, {"MATRIX_LR": 0.08}) == 0.0, status
    crashed = builtin.Model(params, [one_trial(params, "MATRIX_LR", 0.04, 0.08, None, status="crash")])
    assert crashed.expected(frontier, {"MATRIX_LR": 0.08}) > 0.0  # a crash is a loss


def test_only_a_kept_move_is_followed(folder):
    bench = Bench(folder, quadratic)
    state_file = folder / ".state" / "builtin" / "autoresearch_x.json"
    for _ in range(20):
        bench.step()
    hows = [t["how"] for t in json.loads(state_file.read_text())["trials"] if t["how"] != "frontier"]
    statuses = [r.status for r in bench.rows[2:]]
    assert len(hows) == len(statuses) - 1 or len(hows) == len(statuses)  # the last is still pending
    for k in range(1, len(hows)):
        assert (hows[k] == "follow") <= (statuses[k - 1] == "keep"), (k, hows, statuses)
    assert "follow" in hows


def test_the_opening_steps_size_batch_rates_and_schedule_alone_each_way_before_any_draw(folder):
    state_file = folder / ".state" / "builtin" / "autoresearch_x.json"
    bench = Bench(folder, lambda v: 2.0)  # flat: nothing is ever kept
    for _ in range(18):
        bench.step()
    # the knobs of OPENING the CPU default has, in that order: down (smaller) first, then up
    expected = ["DEPTH 2 -> 1", "DEPTH 2 -> 3", "ASPECT_RATIO 64 -> 32", "ASPECT_RATIO 64 -> 128",
                "TOTAL_BATCH_SIZE 2**11 -> 2**10, DEVICE_BATCH_SIZE 8 -> 4", "TOTAL_BATCH_SIZE 2**11 -> 2**12",
                "MATRIX_LR 0.04 -> 0.02", "MATRIX_LR 0.04 -> 0.08", "EMBEDDING_LR 0.6 -> 0.3",
                "EMBEDDING_LR 0.6 -> 1.2", "UNEMBEDDING_LR 0.004 -> 0.002", "UNEMBEDDING_LR 0.004 -> 0.008",
                "SCALAR_LR 0.5 -> 0.25", "SCALAR_LR 0.5 -> 1.0",
                "WARMUP_RATIO 0.0 -> 0.1",  # no warm-up: nothing below it
                "WARMDOWN_RATIO 0.5 -> 0.3", "WARMDOWN_RATIO 0.5 -> 0.7"]
    assert bench.descriptions[:17] == expected
    hows = [t["how"] for t in json.loads(state_file.read_text())["trials"] if t["how"] != "frontier"]
    assert hows == ["opening"] * 17  # the 18th, still pending, is the first draw
    assert json.loads(state_file.read_text())["pendings"][0]["how"] == "draw"


def test_an_opening_step_that_wins_is_followed_and_not_stepped_back(folder):
    bench = Bench(folder, lambda v: 2.0 + math.log2(v["TOTAL_BATCH_SIZE"]) / 100)  # a smaller batch always wins
    for _ in range(8):
        bench.step()
    batch = [d for d in bench.descriptions if d.startswith("TOTAL_BATCH_SIZE")]
    assert batch[:2] == ["TOTAL_BATCH_SIZE 2**11 -> 2**10, DEVICE_BATCH_SIZE 8 -> 4",
                         "TOTAL_BATCH_SIZE 2**10 -> 2**9, DEVICE_BATCH_SIZE 4 -> 2"]  # followed to the range's end
    assert bench.values()["TOTAL_BATCH_SIZE"] == 2**9
    assert "TOTAL_BATCH_SIZE 2**9 -> 2**10" not in bench.descriptions  # up again from where it won: not tried


def test_an_opening_step_in_flight_is_not_proposed_again_by_another_worker(folder):
    start = (folder / "train.py").read_text()
    first = BuiltinAgent().propose(context(folder, baseline_rows())).description
    (folder / "train.py").write_text(start)  # the next worker's checkout: the frontier
    ctx = context(folder, baseline_rows())
    ctx.extra["in_flight"] = first
    second = BuiltinAgent().propose(ctx).description
    assert (first, second) == ("DEPTH 2 -> 1", "DEPTH 2 -> 3")


def test_a_search_that_began_with_draws_has_no_opening(folder):
    """A search state from before the opening resumes with its draws, not a late opening."""
    state_file = folder / ".state" / "builtin" / "autoresearch_x.json"
    bench = Bench(folder, lambda v: 2.0)
    bench.step()
    state = json.loads(state_file.read_text())
    state["pendings"][0].update(how="draw", opening=None)  # as written before there was an opening
    state_file.write_text(json.dumps(state))
    bench.step()
    assert json.loads(state_file.read_text())["pendings"][0]["how"] == "draw"


def test_two_proposals_that_read_alike_each_get_their_own_result(folder):
    """With several workers the same description can be in flight twice (from different frontiers):
    each proposal is settled from its own experiment's commit, not both from the first."""
    state = {"trials": [], "follow": None}
    pending = {"values": {}, "key": "a", "rows_before": 2, "how": "draw", "description": "DEPTH 2 -> 3",
               "moves": {"DEPTH": 3}, "from": {"DEPTH": 2}, "base": 2.0}
    rows = [*baseline_rows(), Row("c1", 2.5, 0.0, "discard", "DEPTH 2 -> 3"),
            Row("c2", 1.9, 0.0, "keep", "DEPTH 2 -> 3"), Row("c2", 1.8, 0.0, "keep", "DEPTH 2 -> 3")]
    ctx = context(folder, rows)
    for key in ("a", "b"):
        assert BuiltinAgent._settle_one(state, ctx, dict(pending, key=key)) == "settled"
    got = {t["key"]: (t["commit"], t["status"], t["value"]) for t in state["trials"]}
    assert got == {"a": ("c1", "discard", 2.5), "b": ("c2", "keep", pytest.approx(1.85))}


def test_batch_sizes_keep_their_shape_invariant(folder):
    params = [Param("TOTAL_BATCH_SIZE", "pow2", 11, 15), Param("DEVICE_BATCH_SIZE", "pow2", 3, 7)]
    change = BuiltinAgent._fix_shapes(params, {"TOTAL_BATCH_SIZE": 8192, "DEVICE_BATCH_SIZE": 32},
                                      {"TOTAL_BATCH_SIZE": 4096}, 256)
    assert change == {"TOTAL_BATCH_SIZE": 4096, "DEVICE_BATCH_SIZE": 16}


def test_the_search_resumes_from_its_state_file(folder):
    bench = Bench(folder, quadratic)
    for _ in range(6):
        bench.step()
    state = folder / ".state" / "builtin" / "autoresearch_x.json"
    assert state.is_file()
    bench.agent = BuiltinAgent()  # a new process: the state comes from the file
    for _ in range(6):
        bench.step()  # Bench asserts that nothing is proposed twice
    assert len(set(bench.descriptions)) == 12
    trials = json.loads(state.read_text())["trials"]
    assert len([t for t in trials if t["how"] != "frontier"]) == 11  # all but the last, still pending


def test_higher_is_better_is_followed(folder):
    benches = lines(folder, lambda v: -quadratic(v), 30, n=2, direction="higher")
    start = -quadratic({"MATRIX_LR": 0.04, "WARMDOWN_RATIO": 0.5})
    assert all(b.best > start + 0.05 for b in benches), [b.best for b in benches]


def test_builtin_is_registered_and_ready():
    agent = load("builtin", model=None, base_url=None)
    assert isinstance(agent, BuiltinAgent) and agent.check() is None


def test_no_hyperparameters_is_a_clear_error(tmp_path):
    from autoresearch.errors import AutoresearchError

    (tmp_path / "train.py").write_text("print('hello')\n")
    with pytest.raises(AutoresearchError, match="no Python file with ALL_CAPS hyperparameters"):
        BuiltinAgent().propose(context(tmp_path, []))


SCRIPT = """\
import math
LEARNING_RATE = 0.01   # step size
WIDTH = 16             # units
score = 10 - math.log(LEARNING_RATE / 0.05) ** 2 - (math.log2(WIDTH) - 6) ** 2
print(f"score: {score:.6f}")
"""


def test_the_loop_drives_the_builtin_agent_on_any_script(tmp_path):
    root = blank(tmp_path, SCRIPT, direction="higher", branch="autoresearch/test").root
    r = cli("run", "--max-experiments", "5", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    experiments = [x for x in got if x.kind == "experiment"]
    assert len(experiments) == 5 and all(x.agent == "builtin" for x in experiments)
    kept = [x.value for x in got if x.status == "keep" and x.kind == "experiment"]
    assert kept and kept == sorted(kept) and len(set(kept)) == len(kept)  # strictly better each time
    assert head(root)[:7] == kept_last(got) and clean(root)
    # resumed: the next run goes on with the same study and proposes new values
    r = cli("run", "--max-experiments", "2", cwd=root)
    assert r.returncode == 0, r.stderr
    descriptions = [x.description for x in rows(root) if x.kind == "experiment"]
    assert len(descriptions) == 7 and len(set(descriptions)) == 7
    assert git(root, "status", "--porcelain") == ""


def test_the_packing_example_in_the_docs_runs_and_improves(tmp_path):
    doc = (Path(__file__).parent.parent / "docs" / "blank-template.md").read_text()
    script = doc.split("```python\n", 1)[1].split("```", 1)[0]
    root = blank(tmp_path, script, editable=("pack.py",), metric="fill", direction="higher", folder="packing").root
    r = cli("run", "--tag", "pack", "--max-experiments", "6", cwd=root)  # as the page shows it (a fixed branch: the draws depend on its name)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    assert got[0].value == pytest.approx(0.809742)
    kept = [x.value for x in got if x.status == "keep" and x.kind == "experiment"]
    assert kept and kept[-1] > 0.9
    assert all("printed metric" in x.reason for x in got if x.status in ("keep", "discard"))
