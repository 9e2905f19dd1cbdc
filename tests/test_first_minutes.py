"""A new user's first minutes: every check that can fail runs before anything is created, numbers
are checked, a row with the wrong shape says so, and every command finds the ./research that
`run` made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from autoresearch.research.results import Row
from support import cli, write_results


@pytest.fixture(scope="module")
def no_keys(tmp_path_factory) -> dict:
    """An environment without API keys and with a PATH that has git but no agent programs."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for tool in ("git", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")}
    env["PATH"] = str(bin_dir)
    return env


@pytest.mark.parametrize("args, message", [
    (["--agent", "nosuch"], "unknown agent 'nosuch'"),
    (["--agent", "claude"], "agent 'claude' is not ready: claude not found on PATH"),
    (["--agent", "openai"], "agent 'openai' is not ready: OPENAI_API_KEY is not set"),
    (["--agent", "command"], "agent 'command' is not ready: needs --agent-command"),
    (["--agent-timeout", "nan"], "'nan' is not a finite number"),
    (["--hours", "inf"], "'inf' is not a finite number"),
    (["--max-cost", "-1"], "give a number of 0 or more"),
])
def test_run_refuses_before_it_creates_anything(tmp_path, no_keys, args, message):
    done = subprocess.run([sys.executable, "-m", "autoresearch", "run", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=no_keys)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no ./research, no branch, nothing


@pytest.mark.parametrize("dataset, message", [
    ("files:{tmp}/nonexistent", "no such folder"),
    ("files:{tmp}/empty", "holds no documents"),
])
def test_init_refuses_a_files_dataset_with_nothing_to_read(tmp_path, dataset, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "image.png").write_bytes(b"\x89PNG")
    done = cli("init", "ws", "--profile", "cpu", "--dataset", dataset.format(tmp=tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "ws").exists()


def test_init_takes_a_files_dataset_with_documents(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "sub" / "a.md").write_text("# hello\n")
    done = cli("init", "ws", "--profile", "cpu", "--dataset", f"files:{tmp_path / 'docs'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("budget", ["nan", "inf", "-inf", "0", "-5", "soon"])
def test_a_budget_that_is_not_a_positive_number_is_one_line(tmp_path, budget):
    done = cli("init", "ws", "--budget", budget, cwd=tmp_path)
    assert done.returncode == 2 and "Invalid value for '--budget'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "ws").exists()


def test_a_row_with_the_wrong_number_of_columns_says_so(tmp_path):
    from autoresearch.research.results import EXTRA, UPSTREAM, ResultsError, header, parse

    text = header("val_bpb") + "abc1234\t1.0\t0.0\tkeep\tfine\n"  # 5 cells under the full header
    with pytest.raises(ResultsError, match=f"line 2 has 5 columns, the header has {len(UPSTREAM) + len(EXTRA)}"):
        parse(text)


def test_commands_run_where_run_made_research_find_it(tmp_path):
    made = cli("init", "research", "--template", "blank", "--command", "python score.py", "--metric", "score",
               "--editable", "score.py", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    write_results(tmp_path / "research", [Row("abc1234", 1.0, 0.0, "keep", "baseline", kind="baseline")])
    for args in (["status"], ["report"], ["status", "--json"]):
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert "not inside an autoresearch workspace" not in done.stderr
    assert str(tmp_path / "research") in cli("status", cwd=tmp_path).stdout


def test_help_answers_the_obvious_questions(tmp_path):
    run = cli("run", "--help", cwd=tmp_path).stdout
    words = " ".join(run.split())
    assert "default: no limit; 0 runs only the baseline" in words and "1800" in words and "600" in words
    assert "creates ./research" in words and "runs until Ctrl-C" in words
    init = " ".join(cli("init", "--help", cwd=tmp_path).stdout.split())
    assert "default: this folder" in init and "20 on the CPU" in init
    top = cli("--help", cwd=tmp_path).stdout
    commands = top.split("Commands:")[1]
    assert "..." not in commands and "…" not in commands  # no description cut short


def test_the_live_line_says_evaluating_once_the_harness_does(tmp_path):
    import io

    from autoresearch.engine.liveline import LiveLine

    log = tmp_path / "run.log"
    log.write_text("step 00010 | progress 99.0% | loss 2.000000 | remaining 0s\n")
    stream = io.StringIO()
    line = LiveLine(stream, log, "experiment abc1234")
    line(20.0)
    assert "0 s left" in stream.getvalue() and "evaluating" not in stream.getvalue()
    with open(log, "a") as fh:
        fh.write("evaluating: 131,072 validation tokens\n")
    line(21.0)
    last = stream.getvalue().rsplit("\r\x1b[K", 1)[-1]
    assert last.endswith("evaluating") and "s left" not in last


def test_the_live_line_goes_on_while_the_engines_evaluator_runs(tmp_path):
    """The trainer printed its last step and exited; the evaluator is a process of its own that
    writes nothing to the trainer's log: the line says evaluating and its clock goes on."""
    import io

    from autoresearch.engine.liveline import LiveLine

    log = tmp_path / "run.log"
    log.write_text("step 00054 | progress 100.0% | loss 3.100000 | remaining 0s\nhanded over to the evaluator\n")
    stream = io.StringIO()
    line = LiveLine(stream, log, "baseline abc1234")
    line(13.0)
    assert "0 s left" in stream.getvalue().rsplit("\r\x1b[K", 1)[-1]
    line.evaluate(after=13.1)
    line(4.0)  # the evaluator's own clock
    last = stream.getvalue().rsplit("\r\x1b[K", 1)[-1]
    assert "  17 s" in last and last.endswith("evaluating") and "s left" not in last and "step 54" in last


def test_status_says_evaluating_while_the_engines_evaluator_runs(tmp_path):
    import os
    import time

    from autoresearch.state import Current, StateFolder
    from autoresearch.views.snapshot import running
    from autoresearch.views.terminal import progress_text

    class Source:  # what `running` reads of a workspace
        state = StateFolder(tmp_path)
        log_path = tmp_path / "run.log"

    Source.log_path.write_text("step 00054 | progress 100.0% | loss 3.100000 | remaining 0s\n")
    now = time.time()
    # this process: alive for sure (the leader of the test run's process group may be gone)
    current = Current("abc1234", "x", "experiment", started_at=now - 20, pid=os.getpid())
    info = running(Source, now, current)
    assert "evaluating" not in info["progress"]
    from dataclasses import replace
    info = running(Source, now, replace(current, phase="evaluating"))
    assert info["progress"]["evaluating"] is True and info["alive"]
    assert "evaluating" in progress_text(info) and "remaining" not in progress_text(info)


def test_status_says_evaluating_too():
    from autoresearch.views.snapshot import parse_progress
    from autoresearch.views.terminal import progress_text

    log = "step 00010 | progress 99.0% | loss 2.000000 | remaining 0s\nevaluating: 131,072 validation tokens\n"
    progress = parse_progress(log)
    assert progress["evaluating"] is True and progress["step"] == 10
    text = progress_text({"commit": "abc1234", "description": "x", "kind": "experiment", "alive": True,
                          "progress": progress, "elapsed": 21.0})
    assert "evaluating" in text and "remaining" not in text


def test_the_harness_announces_its_evaluation():
    from autoresearch.workspace import template_text

    assert 'print(f"evaluating:' in template_text("llm", "prepare.py")


def test_the_cpu_profile_sets_half_the_cores_as_torch_threads(tmp_path):
    from autoresearch import capsliterals, profiles
    from autoresearch.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws", profile="cpu")
    threads = capsliterals.read_constants((ws.root / "train.py").read_text())["CPU_THREADS"].value
    assert threads == profiles.cpu_threads() == max(1, len(os.sched_getaffinity(0)) // 2)
    assert ws.config.budget == 20
    big = init_workspace(tmp_path / "gpu", profile="cuda-large")  # GPU profiles leave PyTorch's default
    assert capsliterals.read_constants((big.root / "train.py").read_text())["CPU_THREADS"].value == 0
