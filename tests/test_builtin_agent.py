"""The built-in proposer: ranges from train.py's constants, in-place edits, coordinate steps
then TPE, no repeats, a persisted search that resumes, and the loop driving it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from autoresearch import capsliterals, profiles
from autoresearch.agents import load
from autoresearch.agents.base import Context
from autoresearch.agents.builtin import BuiltinAgent
from autoresearch.agents.searchspace import derive, hyperparameters
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

    def __init__(self, folder: Path, score, direction="lower", agent=None):
        self.folder, self.score, self.direction = folder, score, direction
        self.agent = agent or BuiltinAgent()
        self.rows = baseline_rows(score(self.values()))
        self.frontier_text = (folder / "train.py").read_text()
        self.best = self.rows[0].value
        self.descriptions = []
        self.seen = {self.frontier_text}

    def values(self) -> dict:
        return {k: c.value for k, c in hyperparameters((self.folder / "train.py").read_text()).items()}

    def step(self) -> str:
        proposal = self.agent.propose(context(self.folder, self.rows, self.direction))
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


def test_one_proposal_changes_one_value_in_place(folder):
    before = (folder / "train.py").read_text()
    proposal = BuiltinAgent().propose(context(folder, baseline_rows()))
    after = (folder / "train.py").read_text()
    assert proposal.description == "MATRIX_LR 0.04 -> 0.08"
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == [("MATRIX_LR = 0.04                 # Muon: the 2-D matrices inside the blocks",
                        "MATRIX_LR = 0.08                 # Muon: the 2-D matrices inside the blocks")]
    assert proposal.usage is None


def test_a_failed_step_is_tried_the_other_way_and_a_kept_one_goes_on(folder):
    bench = Bench(folder, quadratic)
    first = [bench.step() for _ in range(4)]
    assert first == ["MATRIX_LR 0.04 -> 0.08", "MATRIX_LR 0.04 -> 0.02", "MATRIX_LR 0.02 -> 0.01", "EMBEDDING_LR 0.6 -> 1.2"]
    assert bench.best == pytest.approx(1.0 + (0.5 - 0.3) ** 2)


def test_the_search_improves_never_repeats_and_moves_to_tpe(folder):
    bench = Bench(folder, quadratic)
    for _ in range(45):
        bench.step()
    assert bench.best < 1.01  # found MATRIX_LR 0.02 and a warmdown near 0.3
    assert any("," in d for d in bench.descriptions[-10:])  # TPE proposals change more than one value
    for d in bench.descriptions:
        assert re.match(r"[A-Z][A-Z0-9_]* \S.* -> \S", d), d


def interacting(values) -> float:
    """The best MATRIX_LR depends on DEPTH (a later knob in the pass): 0.04 at depth 2, 0.01 at depth 1."""
    best = 0.04 if values["DEPTH"] >= 2 else 0.01
    return 1.0 + math.log(values["MATRIX_LR"] / best) ** 2 + 3.0 * (values["DEPTH"] != 1)


def test_a_pass_that_kept_a_step_is_followed_by_another_from_the_new_frontier(folder):
    bench = Bench(folder, interacting)
    for _ in range(40):
        bench.step()
        if bench.values()["DEPTH"] == 1 and bench.values()["MATRIX_LR"] == 0.01:
            break
    assert bench.values()["DEPTH"] == 1 and bench.values()["MATRIX_LR"] == 0.01  # halved twice on the second pass
    after = bench.descriptions[next(i for i, d in enumerate(bench.descriptions) if d.startswith("DEPTH 2 -> 1")) + 1:]
    assert after and all("," not in d for d in after)  # coordinate steps, not TPE yet


def test_batch_sizes_keep_their_shape_invariant(folder):
    from autoresearch.agents.searchspace import Param

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


def test_higher_is_better_is_followed(folder):
    bench = Bench(folder, lambda v: -quadratic(v), direction="higher")
    for _ in range(4):
        bench.step()
    assert bench.best == pytest.approx(-(1.0 + 0.04))


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
    r = cli("run", "--max-experiments", "3", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(root)
    assert got[0].value == pytest.approx(0.809742)
    kept = [x.value for x in got if x.status == "keep" and x.kind == "experiment"]
    assert kept and kept[-1] > 0.9
    assert all("printed metric" in x.reason for x in got if x.status in ("keep", "discard"))
