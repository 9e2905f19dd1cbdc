"""`autoresearch experiment`: one experiment end to end, in real git repositories, with real
subprocesses. Fake train.py scripts produce the faults; each test ends with the frontier
intact, a clean tree and exactly one row per experiment."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from autoresearch import sandbox
from autoresearch.state import StateFolder
from autoresearch.research.results import line
from autoresearch.workspace import Workspace

from support import (
    assert_intact, blank, clean, cli, commit, experiment, experiment_json, git, head, llm_like, pid_alive, rows, train_text,
    wait_for,
)


def change(root: Path, **kw) -> None:
    (root / "train.py").write_text(train_text(**kw))


def run_fault(root: Path, body: str, *, value: float = 0.5):
    frontier = head(root)
    before = len(rows(root))
    change(root, value=value, body=body)
    r = experiment(root, "a faulty change")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_intact(root, frontier, before + 1)
    last = rows(root)[-1]
    assert last.status == "crash" and last.value == 0.0 and last.memory_gb is None
    return r, last


# -- the baseline and the ratchet ------------------------------------------------


def test_first_experiment_is_the_baseline_run_twice(ws):
    baseline = rows(ws)
    assert [(r.kind, r.status, r.value) for r in baseline] == [("baseline", "keep", 1.0)] * 2
    assert {r.branch for r in baseline} == {"autoresearch/test"}
    assert baseline[0].commit == head(ws)[:7]
    assert clean(ws)


def test_a_clear_win_is_confirmed_early_then_kept_and_becomes_the_frontier(ws):
    change(ws, value=0.5)
    out = experiment_json(ws, "VALUE 1.0 -> 0.5")
    assert out["status"] == "keep" and out["value"] == 0.5 and out["frontier_value"] == 1.0
    assert out["delta"] == pytest.approx(-0.5)
    r = rows(ws)
    # never kept on one run: the frontier is re-run before the second, so drift in machine speed counts
    assert [(x.kind, x.status) for x in r[2:]] == [("experiment", "keep"), ("rerun", "keep"), ("confirm", "keep")]
    assert r[3].commit == r[0].commit and r[3].description.startswith("re-run of the frontier")
    assert "P(better) 1.00 over 2 runs" in r[2].reason
    assert head(ws)[:7] == r[-1].commit == out["frontier"]
    assert git(ws, "log", "-1", "--format=%s") == "VALUE 1.0 -> 0.5"
    assert clean(ws)
    # the next change is measured against the new frontier
    change(ws, value=0.6)
    out = experiment_json(ws, "worse")
    assert out["status"] == "discard" and out["frontier_value"] == 0.5
    assert head(ws)[:7] == r[-1].commit


def test_a_win_within_min_delta_stops_after_one_run(ws):
    frontier = head(ws)
    change(ws, value=0.9995)  # better by less than min_delta (0.001): nothing to confirm
    r = experiment(ws, "tiny")
    assert "P(better) 0.45 over 1 run" in r.stdout and "stops at 0.45" in r.stdout
    last = rows(ws)[-1]
    assert (last.kind, last.status) == ("experiment", "discard") and last.reason.startswith("not better")
    assert head(ws) == frontier and clean(ws)


UNJAILED = "AUTORESEARCH_SANDBOX"


@pytest.fixture
def unjailed(monkeypatch):
    """Runs without the sandbox: for scripts that keep a counter or a pid file outside their
    folder, which a sandboxed run cannot reach (the sandbox's own tests: test_trust.py)."""
    monkeypatch.setenv(UNJAILED, "off")


def sequence(tmp_path, values: list[float], *, baseline_runs: int = 4):
    """A blank workspace whose command prints the next value of `values` at each run, whatever the code."""
    counter = tmp_path / "runs"
    script = (f"from pathlib import Path\np = Path({str(counter)!r})\n"
              "n = int(p.read_text()) if p.exists() else 0\np.write_text(str(n + 1))\n"
              f"print(f'score: {{{values!r}[n]}}')\n")
    ws = blank(tmp_path, script, branch="autoresearch/test", folder="seq")
    ws.save(replace(ws.config, keep=replace(ws.config.keep, baseline_runs=baseline_runs)))  # tree and pin
    commit(ws, "four baseline runs")
    assert experiment(ws.root, "baseline").returncode == 0
    with open(ws.root / "score.py", "a") as fh:
        fh.write("# a comment\n")
    return ws.root


def test_a_borderline_candidate_gets_a_third_run_and_is_decided_on_all_of_them(tmp_path, unjailed):
    # baseline 1.00 1.02 1.00 1.02; candidate 0.99, then 1.00 (still unsure), then 0.98 (likely
    # better, but never kept without the frontier re-run beside it), frontier 1.01
    root = sequence(tmp_path, [1.00, 1.02, 1.00, 1.02, 0.99, 1.00, 0.98, 1.01, 1.20])
    r = experiment(root, "borderline")
    assert "run 1 score 0.990000: P(better) 0.88 over 1 run" in r.stdout
    assert "run 2 score 1.000000: P(better) 0.89 over 2 runs" in r.stdout
    assert "run 3 score 0.980000: P(better) 0.96 over 3 runs" in r.stdout and "run the frontier again" in r.stdout
    got = rows(root)[4:]
    assert [(x.kind, x.status, x.value) for x in got] == [
        ("experiment", "keep", 0.99), ("confirm", "keep", 1.0), ("confirm", "keep", 0.98), ("rerun", "keep", 1.01)]
    assert got[3].commit == rows(root)[0].commit != got[0].commit == got[1].commit == got[2].commit
    assert "over 3 runs" in got[0].reason and clean(root) and head(root)[:7] == got[0].commit
    # the old frontier's re-run, written last, does not make it the frontier again
    with open(root / "score.py", "a") as fh:
        fh.write("# another comment\n")
    out = experiment_json(root, "next")
    assert out["frontier_value"] == pytest.approx(0.99) and out["status"] == "discard"


def test_a_clear_loser_runs_once(tmp_path, unjailed):
    root = sequence(tmp_path, [1.00, 1.02, 1.00, 1.02, 1.08])
    assert experiment(root, "worse").returncode == 0
    got = rows(root)[4:]
    assert [(x.kind, x.status) for x in got] == [("experiment", "discard")]
    assert "P(better) 0.00 over 1 run" in got[0].reason and clean(root)


def test_no_change_is_a_noop_row(ws):
    frontier = head(ws)
    out = experiment_json(ws, "nothing")
    assert out["status"] == "noop"
    assert_intact(ws, frontier, 3)


def test_code_that_already_ran_is_not_run_again(ws):
    frontier = head(ws)
    change(ws, value=2.0)
    assert experiment_json(ws, "worse")["status"] == "discard"
    first = rows(ws)[-1]
    change(ws, value=2.0)
    out = experiment_json(ws, "worse again")
    assert out["status"] == "noop"
    assert f"same code as {first.commit}, which already ran (discard 2.000000)" in out["reason"]
    assert_intact(ws, frontier, 4)


def test_an_agent_that_committed_its_change_itself_is_handled(ws):
    change(ws, value=0.5)
    git(ws, "commit", "-qam", "agent commit")
    out = experiment_json(ws, "VALUE -> 0.5")
    assert out["status"] == "keep"
    assert git(ws, "log", "-1", "--format=%s") == "VALUE -> 0.5"
    assert git(ws, "rev-list", "--count", "HEAD") == "3"  # init, workspace, the kept change: squashed


def test_experiment_refuses_to_run_off_a_research_branch(tmp_path):
    root = tmp_path / "ws"
    llm_like(root, branch="")
    r = experiment(root, "x")
    assert r.returncode == 1 and "research branch" in r.stderr and not (root / "results.tsv").exists()


def test_output_is_a_few_lines_and_json_is_one_object(ws):
    change(ws, value=2.0)
    r = experiment(ws, "worse")
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("sandbox: ")  # whether the run is jailed comes first
    lines = lines[1:]
    assert len(lines) <= 3 and lines[0].startswith("discard") and "val_bpb 2.000000" in lines[0]
    assert "+1.000000 vs 1.000000" in lines[0] and "memory 0.5 GB" in lines[0]
    change(ws, value=3.0)
    out = experiment_json(ws, "worse still")
    assert {"status", "value", "delta", "memory_gb", "seconds", "commit", "frontier", "reason", "rows"} <= set(out)


# -- the guard --------------------------------------------------------------------


def test_an_edit_to_prepare_py_is_refused_and_reverted(ws):
    frontier = head(ws)
    original = (ws / "prepare.py").read_text()
    (ws / "prepare.py").write_text(original + "\nTIME_BUDGET = 100\n")
    change(ws, value=0.1)
    out = experiment_json(ws, "sneaky")
    assert out["status"] == "invalid" and "prepare.py" in out["reason"]
    assert (ws / "prepare.py").read_text() == original
    assert (ws / "train.py").read_text() == git(ws, "show", f"{frontier}:train.py") + "\n"
    assert_intact(ws, frontier, 3)


def test_a_new_file_outside_the_editable_set_is_refused(ws):
    frontier = head(ws)
    (ws / "helper.py").write_text("X = 1\n")
    out = experiment_json(ws, "new file")
    assert out["status"] == "invalid" and "helper.py" in out["reason"]
    assert not (ws / "helper.py").exists()
    assert_intact(ws, frontier, 3)


def test_a_ref_named_like_the_frontiers_id_does_not_move_the_frontier(ws):
    """The rows name commits by their short ids, and git prefers a ref to an object of the same
    name: a tag `<frontier's id>` on the agent's own commit (which changes the harness) must not
    make that commit the frontier, measured as a baseline that nothing checked."""
    frontier = head(ws)
    original = (ws / "prepare.py").read_text()
    (ws / "prepare.py").write_text(original + "\nTIME_BUDGET = 100\n")
    change(ws, value=0.1)
    git(ws, "commit", "-qam", "the agent's commit")
    git(ws, "tag", frontier[:7], "HEAD")
    out = experiment_json(ws, "a tag for a frontier")
    assert out["status"] == "invalid" and "prepare.py" in out["reason"], out
    assert (ws / "prepare.py").read_text() == original
    assert_intact(ws, frontier, 3)
    assert [r.kind for r in rows(ws)] == ["baseline", "baseline", "experiment"]


@pytest.mark.parametrize("bit, path", [("--assume-unchanged", "program.md"), ("--skip-worktree", "program.md"),
                                       ("--assume-unchanged", "autoresearch.toml")])
def test_an_edit_hidden_by_a_bit_in_the_index_is_refused_and_undone(ws, bit, path):
    """What the guard checks is what would be committed: a bit the agent set in .git/index does
    not hide its edit of a fixed file (or of the settings) from the check, and the reset that
    undoes it does not keep the agent's version behind that bit."""
    frontier = head(ws)
    original = (ws / path).read_bytes()
    (ws / path).write_bytes(original + b"\n# budget = 600\n")
    git(ws, "update-index", bit, path)
    change(ws, value=0.1)
    out = experiment_json(ws, "hidden by the index")
    assert out["status"] == "invalid" and path in out["reason"], out
    assert (ws / path).read_bytes() == original
    assert git(ws, "ls-files", "-v", path).split()[0] == "H"  # the bit is gone with the old index
    assert_intact(ws, frontier, 3)


def test_an_object_planted_under_the_id_of_the_edit_is_refused(ws):
    """The guard checks the 200-byte train.py in the tree; the agent planted an object under that
    content's id holding another train.py: the candidate would run (and be kept as) the other one."""
    import hashlib
    import zlib

    frontier = head(ws)
    change(ws, value=0.9)
    shown = (ws / "train.py").read_bytes()
    other = train_text(value=0.0001).encode()
    sha = hashlib.sha1(b"blob %d\0" % len(shown) + shown).hexdigest()
    (ws / ".git" / "objects" / sha[:2]).mkdir(exist_ok=True)
    (ws / ".git" / "objects" / sha[:2] / sha[2:]).write_bytes(zlib.compress(b"blob %d\0" % len(other) + other))
    out = experiment_json(ws, "a planted object")
    assert out["status"] == "invalid" and "train.py" in out["reason"] and "object" in out["reason"], out
    assert_intact(ws, frontier, 3)


def test_a_research_branch_made_a_symbolic_ref_is_refused_and_moves_nothing(ws):
    """Keeping a change moves the branch checked out; made an alias of main, it would move main:
    HEAD is then read as on main, where experiments do not run."""
    main = git(ws, "rev-parse", "main")
    git(ws, "symbolic-ref", "refs/heads/autoresearch/test", "refs/heads/main")
    change(ws, value=0.5)
    r = experiment(ws, "on an alias")
    assert r.returncode != 0 and "this workspace is on main" in r.stderr
    assert git(ws, "rev-parse", "main") == main


def test_the_notes_file_may_change_and_survives_a_discard(ws):
    frontier = head(ws)
    (ws / "notes.md").write_text("tried a worse value\n")
    change(ws, value=2.0)
    assert experiment_json(ws, "worse")["status"] == "discard"
    assert (ws / "notes.md").read_text() == "tried a worse value\n"
    assert head(ws) == frontier
    assert git(ws, "status", "--porcelain") == "?? notes.md"


# -- faults -----------------------------------------------------------------------


def test_syntax_error_is_refused_before_it_runs_with_where_it_is(ws):
    """A file that does not parse cannot be checked (the guard reads its literals), so it is
    an invalid change, not a run: the reason says the line and the error."""
    frontier, before = head(ws), len(rows(ws))
    change(ws, value=0.5, body="def broken(:\n    pass")
    out = experiment_json(ws, "a faulty change")
    assert out["status"] == "invalid" and "SyntaxError" in out["reason"] and "line" in out["reason"], out
    assert_intact(ws, frontier, before + 1)


def test_import_error_is_a_crash(ws):
    r, last = run_fault(ws, "import no_such_module_anywhere")
    assert "ModuleNotFoundError" in last.reason and "no_such_module_anywhere" in r.stdout


def test_exception_mid_training_is_a_crash_with_at_most_50_traceback_lines(ws):
    body = ("import sys\nsys.setrecursionlimit(200)\n"
            "def dive(n):\n    return dive(n + 1) if n < 150 else 1 / 0\n"
            "print('step 00002 | loss 2.5', flush=True)\ndive(0)")
    r, last = run_fault(ws, body)
    assert "ZeroDivisionError" in last.reason
    tail = r.stdout.split("end of run.log", 1)[1].splitlines()[1:]
    assert 0 < len(tail) <= 50 and tail[-1].startswith("ZeroDivisionError")


def test_nan_from_the_harness_is_a_crash(ws):
    _, last = run_fault(ws, "VALUE = float('nan')")
    assert "not finite" in last.reason


# the baseline's extra lines, which a simplification drops; from the moment `flag` exists, the
# baseline's code crashes (its re-runs beside a change), while the change itself runs
PADDING = "import os, sys\nif os.path.exists({flag!r}):\n    sys.exit(3)\nPAD_A = 1\nPAD_B = 2\nPAD_C = 3"


def simplifiable(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A measured baseline with lines to drop, and the flag that makes its re-runs crash (the run
    goes unsandboxed, so that it sees the flag outside its folder)."""
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")
    root, flag = tmp_path / "ws", tmp_path / "frontier-crashes"
    llm_like(root)
    change(root, body=PADDING.format(flag=str(flag)))
    git(root, "commit", "-qam", "a baseline with lines to spare")
    r = experiment(root, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    return root, flag


def test_a_simplification_whose_frontier_re_runs_all_crash_is_not_kept(tmp_path, monkeypatch):
    """Shorter and no worse than the baseline's old runs, but never measured beside a run of the
    frontier: "no worse" rests on nothing measured alongside it. Before, it was kept on its first run."""
    root, flag = simplifiable(tmp_path, monkeypatch)
    frontier = head(root)
    flag.touch()
    change(root)  # the same value, in fewer lines
    out = experiment_json(root, "drop the padding")
    assert out["status"] == "discard", out
    assert "not kept as a simplification: no re-run of the frontier beside it succeeded" in out["reason"]
    got = rows(root)[2:]
    assert got and all(x.commit != frontier[:7] for x in got)  # every re-run of the frontier crashed
    assert all(x.status == "discard" for x in got) and len(got) == 5
    assert head(root) == frontier and clean(root)


def test_a_simplification_measured_beside_a_frontier_re_run_is_kept(tmp_path, monkeypatch):
    root, _ = simplifiable(tmp_path, monkeypatch)
    frontier = head(root)
    change(root)
    out = experiment_json(root, "drop the padding")
    assert out["status"] == "keep" and out["reason"].startswith("simplification: fewer lines of code"), out
    got = rows(root)[2:]
    # the candidate's run, then the frontier's beside it, both measured
    assert [(x.commit == frontier[:7], x.kind, x.status) for x in got[:2]] == [(False, "experiment", "keep"),
                                                                                (True, "rerun", "keep")]
    assert head(root)[:7] == got[0].commit and clean(root)


def test_a_diverged_run_that_prints_fail_is_a_crash(ws):
    _, last = run_fault(ws, "import sys\nprint('FAIL', flush=True)\nsys.exit(1)")
    assert last.reason.split("; ")[0] == "diverged (printed FAIL)"  # "; unsandboxed" where there is no sandbox


def test_memory_error_is_a_crash(ws):
    _, last = run_fault(ws, "hog = bytearray(2**62)")
    assert last.reason.startswith("out of memory") and "MemoryError" in last.reason


def test_a_hang_with_no_output_is_killed_at_the_hard_limit(tmp_path, unjailed):
    root = tmp_path / "ws"
    llm_like(root, hard_limit=2)
    assert experiment(root, "baseline").returncode == 0
    pidfile = tmp_path / "pid"
    frontier = head(root)
    change(root, body=f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)")
    t0 = time.monotonic()
    r = experiment(root, "hang")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 60
    assert_intact(root, frontier, 3)
    last = rows(root)[-1]
    assert last.status == "crash" and last.reason.startswith("timeout: killed after 2 s")
    assert not pid_alive(int(pidfile.read_text()))


def test_a_background_child_left_running_is_killed_with_the_group(ws, tmp_path, unjailed):
    pidfile = tmp_path / "child"
    body = ("import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(child.pid))")
    change(ws, value=2.0, body=body)
    out = experiment_json(ws, "leaves a child")
    assert out["status"] == "discard"
    assert wait_for(lambda: not pid_alive(int(pidfile.read_text())), timeout=15)


def test_a_printed_val_bpb_without_a_hand_over_is_not_kept(ws):
    body = "print('---')\nprint('val_bpb:          0.001000')\nimport sys\nsys.exit(0)"
    r, last = run_fault(ws, body)
    assert "value.json" in last.reason  # the stand-in evaluator found nothing handed over


def test_a_printed_value_is_never_the_score(ws):
    change(ws, value=2.0, body="evaluate_bpb(VALUE)\nprint('---')\nprint('val_bpb:          0.001000')\nimport sys\nsys.exit(0)")
    out = experiment_json(ws, "prints a better number than it reached")
    assert out["status"] == "discard" and rows(ws)[-1].value == 2.0


def test_a_run_writes_only_its_own_copy_of_the_workspace(ws):
    original = (ws / "prepare.py").read_text()
    before = (ws / "results.tsv").read_text()
    body = ("with open('prepare.py', 'a') as fh:\n    fh.write('# tampered\\n')\n"
            "with open('results.tsv', 'a') as fh:\n    fh.write('fake\\t0.1\\t0.0\\tkeep\\tforged\\n')")
    change(ws, value=2.0, body=body)
    assert experiment_json(ws, "writes the harness and the results")["status"] == "discard"
    assert (ws / "prepare.py").read_text() == original
    text = (ws / "results.tsv").read_text()
    assert "forged" not in text and text.startswith(before)


def test_training_past_the_budget_is_flagged(ws):
    change(ws, value=0.5)
    text = (ws / "train.py").read_text().replace('print("training_seconds: 0.1")', 'print("training_seconds: 30.0")')
    (ws / "train.py").write_text(text)
    frontier = head(ws)
    out = experiment_json(ws, "trains too long")
    assert out["status"] == "crash" and out["reason"].startswith("over budget: trained 30.0 s, budget 2 s")
    assert_intact(ws, frontier, 3)


def test_a_run_that_lies_about_its_training_time_is_caught_by_the_wall_clock(tmp_path):
    root = tmp_path / "ws"
    llm_like(root, budget=1, allowance=1, hard_limit=30)
    assert experiment(root, "baseline").returncode == 0
    frontier = head(root)
    change(root, value=0.5, body="import time\ntime.sleep(4)")
    out = experiment_json(root, "slow but claims 0.1 s")
    assert out["status"] == "crash" and out["reason"].startswith("over budget"), out["reason"]
    assert_intact(root, frontier, 3)


def test_the_deadline_is_pinned_from_the_baseline_runs_only():
    from autoresearch.engine.measure import baseline_startup
    from autoresearch.research.results import Row

    def row(kind: str, status: str, seconds: float, training: float | None) -> Row:
        return Row("abc1234", 1.0, 0.0, status, "x", seconds=seconds, training_seconds=training, kind=kind)

    assert baseline_startup([], budget=300) is None
    rows_ = [row("baseline", "keep", 305.0, 300.0), row("baseline", "keep", 364.0, 300.2), row("baseline", "crash", 900, None)]
    assert baseline_startup(rows_, budget=300) == 63.8  # the slowest of its measured runs
    # changes that ran slowly (even one that was kept) are not the baseline
    slow = [*rows_, row("experiment", "keep", 900.0, 300.0), row("confirm", "keep", 900.0, 300.0)]
    assert baseline_startup(slow, budget=300) == 63.8
    assert baseline_startup([row("baseline", "keep", 12.0, None)], budget=10) == 2  # no printed time: the budget


def test_a_slow_start_is_killed_at_the_deadline_the_baseline_pinned(tmp_path):
    """The fake baseline starts in well under a second: its deadline is about 1 s past the
    budget, not the 31 s the baseline itself gets; a change that sleeps 25 s before training is killed."""
    root = tmp_path / "ws"
    llm_like(root, budget=1)
    r = experiment(root, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    frontier = head(root)
    change(root, value=0.5, body="import time\ntime.sleep(25)")
    out = experiment_json(root, "slow start")
    m = re.match(r"over budget: killed after ([0-9.]+) s \(budget 1 s \+ startup allowance ([0-9.]+) s\)", out["reason"])
    assert out["status"] == "crash" and m, out["reason"]
    assert 0.05 <= float(m.group(2)) < 3
    assert_intact(root, frontier, 3)
    assert "startup allowance 30.1 s (30 s + 10 % of the budget, until the baseline is pinned)" in r.stdout


def test_a_command_that_cannot_start_is_a_crashed_baseline(tmp_path):
    from autoresearch.workspace import init_workspace

    root = tmp_path / "ws"
    init_workspace(root, template="blank", command="no-such-program-anywhere --flag", metric="score",
                   editable=("score.py",))
    git(root, "switch", "-qc", "autoresearch/test")
    r = experiment(root, "baseline")
    assert r.returncode == 1
    assert "the baseline crashed (cannot start no-such-program-anywhere" in r.stderr
    assert [(x.status, x.kind) for x in rows(root)] == [("crash", "baseline")]
    assert clean(root)


# -- the environment of the run -----------------------------------------------------


def test_secrets_never_reach_the_training_process_and_caches_stay_in_its_scratch(ws, tmp_path):
    change(ws, value=2.0, body="import json, os\nprint('ENV ' + json.dumps(dict(os.environ)))")
    env = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "x", "HF_TOKEN": "hf", "AWS_SECRET_ACCESS_KEY": "a",
           "DB_PASSWORD": "p", "OMP_NUM_THREADS": "1", "MY_SETTING": "not for training"}
    r = cli("experiment", "-d", "dump env", cwd=ws, env=env)
    assert r.returncode == 0, r.stderr
    line = next(x for x in (ws / "run.log").read_text().splitlines() if x.startswith("ENV "))
    seen = json.loads(line[4:])
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"):
        assert name not in seen
    assert seen["OMP_NUM_THREADS"] == "1" and "MY_SETTING" not in seen  # an allowlist, not a blocklist
    scratch = "/scratch/" if sandbox.detect().on else "/autoresearch-run-"  # unsandboxed: the real scratch folder
    if sandbox.detect().on:  # the record is the evaluator's to write (unsandboxed, the marker finds the run's processes)
        assert "AUTORESEARCH_RESULT" not in seen
    assert scratch in seen["TORCHINDUCTOR_CACHE_DIR"] and scratch in seen["TRITON_CACHE_DIR"]
    assert "sk-test" not in (ws / "run.log").read_text()


def test_the_running_experiment_is_visible_in_current_json(ws, tmp_path):
    import subprocess

    change(ws, value=2.0, body="import time\ntime.sleep(3)")
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "experiment", "-d", "slow"], cwd=ws,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    current = ws / ".autoresearch" / "current.json"
    assert wait_for(lambda: current.exists() and json.loads(current.read_text()).get("pid"), timeout=30)
    data = json.loads(current.read_text())
    assert data["description"] == "slow" and data["kind"] == "experiment" and data["budget"] == 2
    assert {"commit", "started_at", "agent"} <= set(data)
    proc.communicate(timeout=60)
    assert not current.exists()


def test_a_second_engine_on_the_same_workspace_is_refused(ws):
    from autoresearch.workspace import Workspace

    with Workspace.load(ws).state.locked("test holder"):
        r = experiment(ws, "x")
    assert r.returncode == 1 and "another autoresearch process" in r.stderr and "test holder" in r.stderr


def test_deleting_the_state_folder_does_not_release_the_lock(ws):
    """The attack: a run (or the agent) removes .autoresearch/ while an engine holds the lock,
    so that a second engine starts beside it. The lock lives in the engine's private folder."""
    from autoresearch.workspace import Workspace

    change(ws, value=0.5)
    with Workspace.load(ws).state.locked("test holder"):
        shutil.rmtree(ws / ".autoresearch")
        r = experiment(ws, "x")
    assert r.returncode == 1 and "another autoresearch process" in r.stderr
    assert len(rows(ws)) == 2


def test_files_the_agent_planted_in_the_workspace_are_removed_before_the_run(ws):
    """Planted beside the change, hidden from git: an ignored .pyc, a package hidden through
    .git/info/exclude, a stray file. They go before the run; the engine's own files stay."""
    (ws / "__pycache__").mkdir()
    (ws / "__pycache__" / "prepare.cpython-311.pyc").write_bytes(b"planted")
    (ws / "prepare_rigged").mkdir()
    (ws / "prepare_rigged" / "__init__.py").write_text("def evaluate_bpb(v): return 0.0\n")
    with open(ws / ".git" / "info" / "exclude", "a") as fh:
        fh.write("prepare_rigged/\n")
    (ws / ".autoresearch" / "agent-notes.txt").write_text("the agents' own files stay\n")
    change(ws, value=0.5)
    r = experiment(ws, "with plants")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed 2 untracked or ignored paths before the run: " in r.stdout and "prepare_rigged/" in r.stdout
    assert rows(ws)[-1].status == "keep"
    assert not (ws / "__pycache__").exists() and not (ws / "prepare_rigged").exists()
    assert (ws / ".autoresearch" / "agent-notes.txt").exists() and (ws / "results.tsv").exists()
    r = experiment(ws, "again")  # nothing left to remove: no message
    assert "removed" not in r.stdout


def _kill_experiment_mid_run(root: Path, description: str) -> int:
    """`autoresearch experiment` killed with SIGKILL while its training run sleeps; its pid."""
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "experiment", "-d", description], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = root / ".autoresearch" / "current.json"
        assert wait_for(lambda: path.exists() and json.loads(path.read_text() or "{}").get("pid"), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.pid


def test_an_interrupted_candidate_is_not_folded_into_the_next_commit(ws):
    """The engine dies mid-run; the agent edits on and calls `experiment` again: the candidate
    was committed off the branch, so the tree the agent edits is the frontier's, and the next
    commit holds the new edit, not the interrupted change."""
    frontier = head(ws)
    slow = train_text(0.5, body="import time\ntime.sleep(60)")
    (ws / "train.py").write_text(slow)
    dead = _kill_experiment_mid_run(ws, "slow")
    assert head(ws) == frontier and clean(ws)  # the candidate is a commit no branch points at
    left = [p for p in Path(tempfile.gettempdir()).glob("autoresearch-run-*") if f".{dead}-" in p.name]
    assert len(left) == 1  # the killed engine's scratch, its staged copy and hand-over folder in it
    (ws / "train.py").write_text((ws / "train.py").read_text() + "# a new idea\n")
    r = experiment(ws, "next idea")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not left[0].exists()  # removed by the next run on the host
    assert "recovered an interrupted experiment" in r.stdout
    got = rows(ws)
    assert (got[2].status, got[2].cause, got[2].description) == ("interrupted", "stopped", "slow")
    committed = git(ws, "show", f"{got[3].commit}:train.py")
    assert committed == (train_text(1.0) + "# a new idea\n").strip()  # the frontier's file, the new edit only
    assert clean(ws)


# -- results.tsv problems -------------------------------------------------------------


def test_a_damaged_results_tsv_is_restored_from_the_engines_record(ws):
    good = (ws / "results.tsv").read_text()
    (ws / "results.tsv").write_text(good + "garbage line without tabs\n")
    change(ws, value=0.5)
    r = experiment(ws, "x")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "results.tsv had 1 line the engine did not write: restored" in r.stdout
    text = (ws / "results.tsv").read_text()
    assert text.startswith(good) and "garbage" not in text and rows(ws)[-1].description == "x"


def test_damaged_engine_records_are_a_clear_error_and_are_not_overwritten(ws):
    db = StateFolder(ws).private / "engine.db"
    bad = b"this is not a database" * 100
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(bad)
    frontier = head(ws)
    change(ws, value=0.5)
    r = experiment(ws, "x")
    assert r.returncode == 1
    assert "cannot open the engine's records" in r.stderr and "move it away" in r.stderr
    assert db.read_bytes() == bad
    assert head(ws) == frontier


def test_missing_prepared_data_is_the_machines_failure_and_the_same_code_runs_again(ws, tmp_path, monkeypatch):
    frontier = head(ws)
    change(ws, value=0.5)
    with monkeypatch.context() as m:
        m.setenv("AUTORESEARCH_CACHE_DIR", str(tmp_path / "an-empty-cache"))
        r = experiment(ws, "x")
    assert r.returncode == 1 and "the prepared data is missing (train.bin" in r.stderr
    last = rows(ws)[-1]
    assert last.status == "crash" and last.reason.startswith("machine failure: the prepared data is missing")
    assert head(ws) == frontier and clean(ws)
    change(ws, value=0.5)  # the same code, with the data back: it runs, it is not a noop
    out = experiment_json(ws, "x again")
    assert out["status"] == "keep", out


@pytest.mark.skipif(sys.platform != "linux" or not sandbox.bwrap_programs() or not sandbox.detect().on,
                    reason="needs bubblewrap")
def test_a_sandbox_that_cannot_start_is_the_machines_failure(ws, tmp_path, monkeypatch):
    """bubblewrap starts for the probe but fails to set up the training run's jail (as on a
    full /tmp or a kernel that refuses a mount): the run tells nothing about the code."""
    real = sandbox.bwrap_programs()[0]
    shim = tmp_path / "bin" / "bwrap"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\ncase "$*" in *train.py*) echo "bwrap: Can\'t mount tmpfs on /newroot/tmp: '
                    f'No space left on device" >&2; exit 1;; esac\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    frontier = head(ws)
    change(ws, value=0.5)
    r = experiment(ws, "x")
    assert r.returncode == 1 and "the sandbox could not start: bwrap: Can't mount tmpfs" in r.stderr
    last = rows(ws)[-1]
    assert last.status == "crash" and last.reason.startswith("machine failure: the sandbox could not start")
    assert head(ws) == frontier and clean(ws)


def test_a_full_disk_while_recording_leaves_the_frontier_intact_and_is_recorded_later(ws, monkeypatch):
    import sqlite3

    from autoresearch import store
    from autoresearch.engine import Engine
    from autoresearch.engine.pool import one_experiment
    from autoresearch.errors import AutoresearchError
    from autoresearch.workspace import Workspace

    frontier = head(ws)
    before = (ws / "results.tsv").read_text()
    change(ws, value=0.5)
    real = store.Store._insert

    def full(conn, rows):  # what SQLite says when the disk under its database is full
        if any(r.description == "full disk" for r in rows):
            raise sqlite3.OperationalError("database or disk is full")
        real(conn, rows)

    monkeypatch.setattr(store.Store, "_insert", staticmethod(full))
    lines = []
    with Workspace.load(ws).state.locked("test"):
        with pytest.raises(AutoresearchError) as err:
            one_experiment(Engine(Workspace.load(ws), out=lines.append, live=False), "full disk")
    monkeypatch.setattr(store.Store, "_insert", staticmethod(real))
    assert "cannot record the result" in str(err.value) and "frontier is still" in str(err.value)
    assert (ws / "results.tsv").read_text() == before
    assert head(ws) == frontier and clean(ws)
    # with room again, the next start records what happened, and research goes on
    change(ws, value=2.0)
    out = experiment_json(ws, "next")
    got = rows(ws)
    recovered = [r for r in got if r.description == "full disk"]
    # its finished runs are recorded, undecided: never kept, but not thrown away either
    assert recovered and all(r.status == "discard" and r.reason.startswith("not recorded") for r in recovered)
    assert all(r.kind == "baseline" or r.status != "keep" or r.commit == frontier[:7] for r in got)
    assert out["status"] == "discard" and got[-1].description == "next"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_workspace_is_a_clear_error(ws):
    frontier = head(ws)
    before = (ws / "results.tsv").read_text()
    change(ws, value=0.5)
    os.chmod(ws / "results.tsv", 0o444)
    os.chmod(ws, 0o555)
    try:
        r = experiment(ws, "x")
    finally:
        os.chmod(ws, 0o755)
        os.chmod(ws / "results.tsv", 0o644)
    assert r.returncode == 1 and "error:" in r.stderr
    assert (ws / "results.tsv").read_text() == before
    assert head(ws) == frontier


# -- the blank template: any command, any direction -----------------------------------


SCORE = """\
# A non-ML example: tune a polynomial's coefficients to maximise a score.
A = {a}   # coefficient
B = 1.0   # offset
score = 10 - (A - 3.0) ** 2 - (B - 0.5) ** 2
print(f"score: {{score:.6f}}")
"""


def test_blank_template_reads_the_printed_metric_higher_is_better(tmp_path):
    root = blank(tmp_path, SCORE.format(a=1.0), direction="higher", branch="autoresearch/test").root
    r = experiment(root, "baseline")
    assert r.returncode == 0 and "no harness record" in r.stdout
    assert [x.value for x in rows(root)] == [5.75, 5.75]
    (root / "score.py").write_text(SCORE.format(a=2.0))
    out = experiment_json(root, "A 1 -> 2")
    assert out["status"] == "keep" and out["value"] == pytest.approx(8.75) and out["source"] == "printed line"
    assert "printed metric" in rows(root)[-1].reason
    (root / "score.py").write_text(SCORE.format(a=0.0))
    assert experiment_json(root, "A 2 -> 0")["status"] == "discard"
    missing = "print('nothing to see')\n"
    (root / "score.py").write_text(missing)
    out = experiment_json(root, "no metric")
    assert out["status"] == "crash" and "no `score: <number>` line" in out["reason"]
    assert clean(root)


def test_a_run_log_rewritten_while_the_run_runs_is_not_what_the_engine_reads(tmp_path):
    """An agent that works while the workers train (`run --workers N`) can replace run.log, or
    write into it, as the run prints: the printed metric, the curve and the reason are read
    from the engine's own copy of the output, outside the workspace."""
    slow = SCORE.format(a=2.0).replace("print(", "import time\nprint('halfway', flush=True)\ntime.sleep(3)\nprint(", 1)
    root = blank(tmp_path, SCORE.format(a=1.0), direction="higher", branch="autoresearch/test").root
    assert experiment(root, "baseline").returncode == 0
    (root / "score.py").write_text(slow)
    running = subprocess.Popen([sys.executable, "-m", "autoresearch", "experiment", "-d", "A 1 -> 2", "--json"],
                               cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = root / "run.log"
    assert wait_for(lambda: log.is_file() and "halfway" in log.read_text(), timeout=60)
    forged = root / "forged.log"
    forged.write_text("score: 1000000.0\n")
    os.replace(forged, log)  # a new file in its place; the run goes on printing into the old one
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, out + err
    got = json.loads(out.strip().splitlines()[-1])
    assert got["value"] == pytest.approx(8.75) and got["status"] == "keep", got
    assert [x.value for x in rows(root)][-1] == pytest.approx(8.75)


def test_results_header_uses_the_metric_name(tmp_path):
    root = blank(tmp_path, SCORE.format(a=1.0), direction="higher", branch="autoresearch/test").root
    experiment(root, "baseline")
    assert (root / "results.tsv").read_text().split("\n", 1)[0].split("\t")[:5] == [
        "commit", "score", "memory_gb", "status", "description"]


def test_val_split_mismatch_is_a_crash(ws):
    from autoresearch import pins

    pins.write(pins.read(ws).with_val("cd" * 32))  # the split the evaluator reads is no longer the pinned one
    frontier = head(ws)
    change(ws, value=0.5)
    out = experiment_json(ws, "other data")
    assert out["status"] == "crash" and "different validation split" in out["reason"]
    assert_intact(ws, frontier, 3)


def test_the_live_line_is_one_line_rewritten_in_place(tmp_path):
    import io

    from autoresearch.engine.liveline import LiveLine

    log = tmp_path / "run.log"
    stream = io.StringIO()
    line = LiveLine(stream, log, "experiment abc1234")
    with open(log, "w") as fh:
        for step in range(1, 200):
            fh.write(f"step {step:05d} | progress 10.0% | loss {3 - step / 100:.6f} | lrm 1.00 | dt 10ms | remaining {200 - step}s\n")
        fh.write("step 00200 | progress 99.0% | loss 1.000123 | remaining 1")  # half-written
    line(12.0)
    line.clear()
    text = stream.getvalue()
    assert "\n" not in text
    assert "experiment abc1234 |   12 s | step 199 | loss 1.0100 | 1 s left" in text
    assert text.endswith("\r\x1b[K")


def test_drift_in_machine_speed_is_not_mistaken_for_a_win(tmp_path, unjailed):
    """Every run scores better than the one before, whatever the code (a machine that keeps
    getting faster): the frontier's re-runs beside the candidate show the drift, and the
    candidate never beats them by enough to be kept."""
    counter = tmp_path / "runs"
    script = (f"from pathlib import Path\np = Path({str(counter)!r})\n"
              "n = int(p.read_text()) if p.exists() else 0\np.write_text(str(n + 1))\n"
              "print(f'score: {1.0 + 0.1 * max(0, n - 1)}')\n")  # the baseline pair agrees exactly
    root = blank(tmp_path, script, metric="score", direction="higher", branch="autoresearch/test", folder="drift").root
    assert experiment(root, "baseline").returncode == 0  # runs 0 and 1: 1.0, 1.0 (sigma: the prior alone)
    with open(root / "score.py", "a") as fh:
        fh.write("# a comment: the same program\n")
    out = experiment_json(root, "a comment")  # 1.1 (a win?), frontier re-run 1.2, ...: drift, no gain
    assert out["status"] == "discard", out
    got = rows(root)[2:]
    assert got[0].kind == "experiment" and got[1].commit == rows(root)[0].commit and got[1].value == 1.2
    reruns = [x for x in got if x.commit == rows(root)[0].commit]
    assert len(reruns) >= 2 and all(x.status == "keep" and x.kind == "rerun" for x in reruns)
    candidate = [x for x in got if x.commit == got[0].commit]
    assert len(candidate) == 5 and all(x.status == "discard" for x in candidate)
    assert "not shown better after 5 runs" in got[0].reason
    assert clean(root) and head(root)[:7] == rows(root)[0].commit


def test_a_record_is_used_only_from_an_evaluator_that_finished(tmp_path):
    """A record at the path with the right pins, but the evaluator was killed: a forged or
    stale file, never the score (without a sandbox the trainer could write there)."""
    from autoresearch.config import Config
    from autoresearch.engine.measure import Limits, measure
    from autoresearch.proc import RunOutcome

    cfg = Config(budget=2)
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"val_bpb": 0.1, "harness_sha256": "h" * 64, "val_sha256": "v" * 64}))
    log = "---\nval_bpb: 0.100000\ntraining_seconds: 1.0\n"
    trained = RunOutcome(0, 3.0)
    killed = measure(cfg, Limits.of(cfg), trained, log, record, "v" * 64, RunOutcome(-9, 1.0), harness_pin="h" * 64)
    assert killed.value is None and killed.reason == "no evaluation: the engine's evaluator exit status -9"
    finished = measure(cfg, Limits.of(cfg), trained, log, record, "v" * 64, RunOutcome(0, 1.0), harness_pin="h" * 64)
    assert finished.value == 0.1


@pytest.mark.parametrize("said", ["inf", "1e12"])
def test_a_printed_training_time_past_reason_is_over_budget(tmp_path, said):
    """A training time too large to record is not dropped as if none was printed: it is past
    any budget."""
    from autoresearch.config import Config
    from autoresearch.engine.measure import Limits, measure
    from autoresearch.proc import RunOutcome

    cfg = Config(budget=2)
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"val_bpb": 0.1, "harness_sha256": "h" * 64, "val_sha256": "v" * 64}))
    log = f"---\nval_bpb: 0.100000\ntraining_seconds: {said}\nnum_steps: 10\n"
    m = measure(cfg, Limits.of(cfg), RunOutcome(0, 3.0), log, record, "v" * 64, RunOutcome(0, 1.0), harness_pin="h" * 64)
    assert m.value is None and m.reason.startswith("over budget: printed a training time"), m.reason
    assert m.training_seconds is None  # never recorded


def test_a_results_tsv_planted_before_the_first_run_is_not_read_and_is_replaced(tmp_path):
    root = tmp_path / "ws"
    llm_like(root)
    (root / "results.tsv").write_bytes(b"commit\tval_bpb\n\xff\xfe\x00 not text\n")
    r = experiment(root, "baseline")
    assert r.returncode == 0, r.stderr
    rows = Workspace.load(root).store.rows()
    assert rows and {r.kind for r in rows} == {"baseline"}  # the engine's records hold only what it ran
    assert (root / "results.tsv").read_text().splitlines()[1:] == [line(r).rstrip("\n") for r in rows]


def test_a_description_is_kept_as_one_printable_line_of_bounded_length(ws):
    """The agent writes the description; it becomes the commit's message, which `git log` shows
    on the researcher's terminal: no escape sequence survives, and a flood is cut."""
    hostile = "tune \x1b]0;PWNED\x07 \x1b[31mred\x1b[0m \x1bP+q\x1b\\ \x1b[?1049h" + " more" * 1000
    change(ws, value=0.5)
    out = experiment_json(ws, hostile)
    assert out["status"] == "keep", out
    kept = rows(ws)[-1]
    body = git(ws, "cat-file", "-p", kept.commit)
    assert "\x1b" not in body and "\x07" not in body
    assert kept.description.startswith("tune red more") and len(kept.description) <= 500
    assert git(ws, "log", "-1", "--format=%s") == kept.description
