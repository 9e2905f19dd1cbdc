"""`autoresearch status`: the numbers, the running experiment, the table and --json."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.resultsfile import read
from autoresearch.views import snapshot as st
from autoresearch.views import terminal

from support import cli, init_research, make_research, write_results

FIXTURES = Path(__file__).parent / "fixtures"


def test_summary_of_our_results():
    metric, rows = read(FIXTURES / "results_ours.tsv")
    s = st.summarize(History(rows), metric)
    # the experiments by outcome: the baseline runs and the confirm run of a kept change are no keeps
    assert s.counts == {"keep": 5, "discard": 5, "crash": 1, "invalid": 1, "noop": 1, "interrupted": 0, "stale": 0}
    assert s.experiments == 13 and s.counts_text == "13 experiments (5 keep, 5 discard, 1 crash, 1 invalid, 1 noop); 2 baseline runs"
    assert s.baseline == pytest.approx((1.482310 + 1.484150) / 2) and s.baseline_runs == 2
    assert s.frontier == pytest.approx(1.440250) and s.frontier_commit == "3d4e5fc"
    assert s.change == pytest.approx(1.440250 - s.baseline) and s.change < 0  # new minus old: a win is negative
    # the keep rule's estimate: pooled over two repeated pairs (the baseline runs and the
    # confirmed change), shrunk towards its prior by one degree of freedom
    ss = (1.484150 - 1.482310) ** 2 / 2 + (1.467040 - 1.466120) ** 2 / 2
    prior = keeprule.PRIOR_REL * s.baseline
    pooled = math.sqrt((keeprule.PRIOR_DOF * prior**2 + ss) / (keeprule.PRIOR_DOF + 2))
    # widened by Student's t for its few degrees of freedom (prior's included)
    expected = pooled * keeprule.t975(2 + keeprule.PRIOR_DOF) / 1.96
    assert s.sigma == pytest.approx(expected) and s.sigma_runs == 4 and s.sigma_dof == 2
    assert s.keep_bar == pytest.approx(max(0.001, 2 * expected))
    # rows are stamped 80 s apart when recorded; the first took 74.2 s
    elapsed = 15 * 80 + 74.2
    assert s.elapsed_seconds == pytest.approx(elapsed)
    assert s.experiments_per_hour == pytest.approx(10 / (elapsed / 3600))  # decided: 5 kept, 5 discarded
    assert s.runs_per_hour == pytest.approx(14 / (elapsed / 3600))  # every run on the machine (not invalid, noop)
    assert s.training_share == pytest.approx(13 * 60.1 / elapsed)
    assert s.tokens_in == sum(r.tokens_in for r in rows if r.tokens_in) and s.cost_usd == pytest.approx(0.3544)


def test_frontier_follows_the_last_kept_commit():
    _, rows = read(FIXTURES / "results_ours.tsv")
    series = History(rows).series
    assert series[0] == pytest.approx(1.482310)
    assert series[1] == pytest.approx(1.483230)  # both baseline runs
    assert series[7] == pytest.approx((1.466120 + 1.467040) / 2)  # a confirmed change counts both runs
    assert series[13] == pytest.approx(1.453100)  # a simplification kept within the noise
    assert series[-1] == pytest.approx(1.440250)
    dicts = st.row_dicts(History(rows))
    assert dicts[2]["delta"] == pytest.approx(1.471020 - 1.483230)
    assert dicts[4]["measured"] is False and dicts[4]["delta"] is None


def test_summary_of_the_original_format_has_no_pace_and_no_noise():
    metric, rows = read(FIXTURES / "results_upstream.tsv")
    s = st.summarize(History(rows), metric, judged=False)
    assert s.baseline == 0.9981 and s.baseline_runs == 1  # the first row, as upstream
    assert s.frontier == 0.9877
    assert s.sigma is None and s.experiments_per_hour is None and s.training_share is None
    # in a workspace the keep rule judges with its prior until something was run twice
    judged = st.summarize(History(rows), metric, judged=True)
    assert judged.sigma == pytest.approx(keeprule.noise(rows).sigma) and "prior only" in judged.sigma_text


def test_parse_progress_takes_the_last_progress_line():
    log = (
        "compiling...\n"
        "step 00041 | progress 12.0% | loss 3.500000 | remaining 46s\n"
        "\x1b[2Kstep 00042 | progress 12.3% | loss 3.456789 | lrm 1.00 | dt 123ms | tok/s 12,345 | mfu 12.3% "
        "| epoch 1 | remaining 45s\rstep 00043 | progress 12.6% | loss 3.400000 | remaining 44s\n"
        "a warning printed by a library\n"
    )
    p = st.parse_progress(log)
    assert p == {"step": 43, "progress": 12.6, "loss": 3.4, "remaining": 44.0}
    full = st.parse_progress("step 00042 | progress 12.3% | loss 3.456789 | lrm 1.00 | dt 123ms | tok/s 12,345 "
                             "| mfu 12.3% | epoch 1 | remaining 45s")
    assert full["dt"] == 123.0 and full["tok_s"] == 12345.0 and full["mfu"] == 12.3 and full["epoch"] == 1.0
    assert st.parse_progress("no progress here\n---\nval_bpb: 1.0\n") is None


def test_status_json_of_a_workspace_with_a_running_experiment(research_workspace, sleeper):
    root = research_workspace["root"]
    state = root / ".autoresearch"
    state.mkdir(exist_ok=True)
    (state / "current.json").write_text(json.dumps({
        "commit": "0123456789ab", "description": "try a [bold]larger[/] step", "kind": "experiment",
        "started_at": time.time() - 20, "budget": 60, "pid": sleeper, "agent": "openai",
    }))
    (state / "loop.json").write_text(json.dumps({
        "pid": sleeper, "tag": "test", "branch": "autoresearch/test", "agent": "openai",
        "started_at": time.time() - 600, "updated_at": time.time(), "state": "running",
    }))
    try:
        done = cli("status", "--json", cwd=root)
        assert done.returncode == 0, done.stderr
        snap = json.loads(done.stdout)
        assert snap["branch"] == "autoresearch/test" and snap["head"] == research_workspace["commits"][-1]
        assert snap["agent"] == "openai" and snap["loop"]["alive"] is True
        s = snap["summary"]
        assert s["experiments"] == 4 and s["counts"]["keep"] == 2 and s["counts"]["crash"] == 1
        assert s["baseline"] == pytest.approx(2.002) and s["frontier"] == pytest.approx(1.8)
        running = snap["running"]
        assert running["alive"] is True and running["description"] == "try a [bold]larger[/] step"
        assert running["progress"] == {"step": 3, "progress": 3.0, "loss": pytest.approx(2.94), "remaining": 97.0}

        table = cli("status", cwd=root)
        assert table.returncode == 0, table.stderr
        out = table.stdout
        for expected in ("autoresearch/test", "2.002000", "1.800000", "-0.202000",
                         "4 experiments (2 keep, 1 discard, 1 crash); 2 baseline runs", "experiment #4",
                         "too early: shown from 3 experiments and 10 minutes", "noise σ", "step 3", "97 s remaining", "loop running",
                         "no harness record", "'try a [bold]larger[/] step'"):
            assert expected in out, (expected, out)
    finally:
        (state / "current.json").unlink()
        (state / "loop.json").unlink()


def test_an_experiment_whose_process_is_gone_is_reported_as_interrupted(research_workspace):
    root = research_workspace["root"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = root / ".autoresearch"
    state.mkdir(exist_ok=True)
    (state / "current.json").write_text(json.dumps({"commit": "abc1234", "description": "x", "kind": "experiment",
                                                    "started_at": time.time(), "pid": dead.pid}))
    try:
        snap = st.snapshot(st.open_source(root))
        assert snap.running["alive"] is False
        assert "interrupted" in terminal.progress_text(snap.running)
    finally:
        (state / "current.json").unlink()


def test_status_reads_without_writing(research_workspace):
    root = research_workspace["root"]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert cli("status", "--json", cwd=root).returncode == 0
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert before == after


def test_status_of_the_original_results_file_without_a_workspace(tmp_path):
    results = tmp_path / "results.tsv"
    results.write_text((FIXTURES / "results_upstream.tsv").read_text())
    done = cli("status", cwd=tmp_path)  # a folder with only a results.tsv, like the original's checkout
    assert done.returncode == 0, done.stderr
    assert "no workspace config" in done.stdout and "0.987700" in done.stdout and "no timestamps" in done.stdout
    done = cli("status", "--json", "--results", str(FIXTURES / "results_upstream.tsv"))
    assert json.loads(done.stdout)["summary"]["counts"]["keep"] == 4  # the first row is the baseline, no keep


def test_status_with_missing_results_says_so(tmp_path):
    root = init_research(tmp_path / "fresh")
    done = cli("status", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "no experiments recorded yet" in done.stdout and "Traceback" not in done.stderr


def test_status_with_malformed_results_is_a_clear_error(tmp_path):
    root = init_research(tmp_path / "broken")
    planted = root / "results.tsv"
    planted.write_text("commit\tscore\tmemory_gb\tstatus\tdescription\nabc1234\toops\t0.0\tkeep\tx\n")
    done = cli("status", cwd=root)  # the workspace's rows come from the engine's records, not this file
    assert done.returncode == 0 and "no experiments recorded yet" in done.stdout and "oops" not in done.stdout
    planted = tmp_path / "results.tsv"  # a results file outside any workspace is read as it is
    planted.write_text((root / "results.tsv").read_text())
    done = cli("status", "--results", str(planted), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: results.tsv: line 2 is malformed (could not convert string to float: 'oops')"
    assert "line 2 is malformed" in done.stdout  # the rest of the table is still shown
    done = cli("status", "--json", "--results", str(planted), cwd=tmp_path)
    assert done.returncode == 1 and "line 2 is malformed" in json.loads(done.stdout)["error"]


def test_status_outside_a_workspace_is_one_line(tmp_path):
    done = cli("status", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "autoresearch init" in done.stderr


def test_commit_diff_of_kept_discarded_unknown_and_hostile_ids(research_workspace):
    source = st.open_source(research_workspace["root"])
    discarded = research_workspace["commits"][3]  # reset away, still reachable through the reflog
    diff = st.commit_diff(source, discarded)
    assert diff["ok"] and "+# add an offset of 0.05" in diff["text"] and "-# scale by 0.95" in diff["text"]
    gone = st.commit_diff(source, "deadbee")
    assert not gone["ok"] and "no longer in the repository" in gone["message"]
    hostile = st.commit_diff(source, "--output=/tmp/x")
    assert not hostile["ok"] and "is not a commit id" in hostile["message"]


def test_rows_of_the_checked_out_research_branch_are_counted(tmp_path):
    """results.tsv outlives a session: another branch's rows are not this branch's frontier."""
    from dataclasses import replace

    made = make_research(tmp_path / "two")
    root = made["root"]
    ours = [replace(r, branch="autoresearch/test") for r in made["rows"]]
    old = [replace(r, branch="autoresearch/old", value=r.value - 1.0 if r.value else 0.0) for r in made["rows"][:3]]
    write_results(root, old + ours)

    snap = json.loads(cli("status", "--json", cwd=root).stdout)
    assert snap["rows_branch"] == "autoresearch/test" and snap["rows_total"] == 9
    assert snap["summary"]["experiments"] == 4 and snap["summary"]["frontier"] == pytest.approx(1.8)
    assert snap["branches"] == ["autoresearch/old", "autoresearch/test"]
    assert "also in results.tsv: autoresearch/old" in cli("status", cwd=root).stdout

    other = json.loads(cli("status", "--json", "--branch", "autoresearch/old", cwd=root).stdout)
    assert other["summary"]["experiments"] == 1 and other["summary"]["frontier"] == pytest.approx(0.9)
    done = cli("report", "--branch", "autoresearch/old", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "frontier: 0.900000" in (root / "report.md").read_text()
    missing = cli("report", "--branch", "autoresearch/nope", cwd=root)
    assert missing.returncode == 1 and "no experiments on branch autoresearch/nope" in missing.stderr


def test_rates_are_shown_once_they_mean_something():
    """results_ours.tsv: 10 decided experiments over 21 minutes, enough for a rate."""
    done = cli("status", "--results", str(FIXTURES / "results_ours.tsv"))
    assert done.returncode == 0, done.stderr
    assert "per hour over" in done.stdout and "% of wall-clock" in done.stdout and "too early" not in done.stdout
