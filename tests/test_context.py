"""What the agent sees: the brief, the files, the history with deltas, diffs, crashes, notes; bounded."""

from __future__ import annotations

from dataclasses import replace

from autoresearch.agents import context
from autoresearch.proc import run
from autoresearch.research.results import Row
from support import blank, commit


def row(commit_, value, status, description, kind="experiment", reason=""):
    return Row(commit_, value, 0.0, status, description, kind=kind, reason=reason)


def change(ws, old, new, message):
    path = ws.root / "score.py"
    path.write_text(path.read_text().replace(old, new))
    return commit(ws, message)[:7]


def reset(ws, to):
    run(["git", "reset", "-q", "--hard", to], cwd=ws.root)


def test_the_prompt_has_brief_files_history_with_deltas_and_notes(tmp_path):
    ws = blank(tmp_path)
    (ws.root / "notes.md").write_text("- LR below 0.3 looked promising\n")
    rows = [row("aaaaaaa", 1.4, "keep", "baseline", kind="baseline"),
            row("bbbbbbb", 1.2, "keep", "lower LR to 0.3"),
            row("ccccccc", 1.5, "discard", "raise WIDTH to 8")]
    ctx = context.build(ws, rows)
    p = ctx.prompt
    assert "Make the score as low as you can" in p  # program.md
    assert "LR = 0.5" in p and "```python" in p  # the editable file
    assert "LR below 0.3 looked promising" in p  # notes
    assert "-0.200000" in p and "+0.300000" in p  # deltas against the frontier of the time
    assert "raise WIDTH to 8" in p and "discard" in p
    assert "frontier (best so far) score 1.200000 at commit bbbbbbb" in p
    assert "lower is better" in p and "`score.py`" in p
    assert ctx.files == {"score.py": (ws.root / "score.py").read_text()}
    assert ctx.notes_file == "notes.md" and ctx.notes.startswith("- LR below")


def test_diffs_of_kept_and_discarded_changes_come_from_git_and_survive_gc(tmp_path):
    ws = blank(tmp_path)
    base = run(["git", "rev-parse", "HEAD"], cwd=ws.root).stdout.strip()
    kept = change(ws, "LR = 0.5", "LR = 0.3", "lower LR")
    frontier = run(["git", "rev-parse", "HEAD"], cwd=ws.root).stdout.strip()
    thrown = change(ws, "WIDTH = 4", "WIDTH = 64", "wider")
    reset(ws, frontier)  # discarded: reachable only by its hash now
    rows = [row(base[:7], 1.4, "keep", "baseline", kind="baseline"),
            row(kept, 1.2, "keep", "lower LR"), row(thrown, 1.3, "discard", "wider")]
    first = context.build(ws, rows).prompt
    assert "-LR = 0.5\n+LR = 0.3" in first
    assert "-WIDTH = 4\n+WIDTH = 64" in first
    assert (ws.state.diffs_dir / f"{thrown}.diff").is_file()  # cached in the engine's own folder
    # git forgets the discarded commit; the saved diff does not
    run(["git", "reflog", "expire", "--expire-unreachable=now", "--all"], cwd=ws.root)
    run(["git", "gc", "-q", "--prune=now"], cwd=ws.root)
    assert run(["git", "cat-file", "-e", thrown], cwd=ws.root, check=False).returncode != 0
    assert "+WIDTH = 64" in context.build(ws, rows).prompt


def test_the_last_crash_shows_the_end_of_its_log(tmp_path):
    ws = blank(tmp_path)
    log = "".join(f"step {i}\n" for i in range(500)) + 'Traceback (most recent call last):\n  File "score.py", line 3\nZeroDivisionError: division by zero\n'
    ws.state.logs_dir.mkdir(parents=True)
    (ws.state.logs_dir / "2.log").write_text(log)  # the crashed run's own log, named on its row
    ws.log_path.write_text("another run's output\n")
    rows = [row("aaaaaaa", 1.4, "keep", "baseline", kind="baseline"),
            replace(row("bbbbbbb", 0.0, "crash", "divide by WIDTH - 4", reason="exit status 1"), log="2.log")]
    p = context.build(ws, rows).prompt
    assert "The last run crashed" in p and "ZeroDivisionError: division by zero" in p
    assert "step 499" in p and "step 10\n" not in p  # a tail, not the whole log
    # a later run that did not crash: its log replaced the crash's, so no crash section
    rows.append(row("ccccccc", 1.3, "discard", "something else"))
    assert "The last run crashed" not in context.build(ws, rows).prompt
    # rows that did not run (noop, invalid) leave run.log to the crash before them
    rows[-1] = row("-------", 0.0, "noop", "nothing")
    assert "ZeroDivisionError" in context.build(ws, rows).prompt


def test_the_prompt_stays_under_the_bound_however_long_the_run(tmp_path):
    ws = blank(tmp_path)
    (ws.root / "program.md").write_text("# Brief\n" + "Read this carefully. " * 5000)
    (ws.root / "notes.md").write_text("".join(f"- note {i}: " + "x" * 80 + "\n" for i in range(3000)))
    ws.log_path.write_text("Traceback\n" + "frame\n" * 10_000)

    def rows(n):
        out = [row("aaaaaaa", 1.4, "keep", "baseline", kind="baseline")]
        for i in range(1, n):
            status = ("discard", "crash", "keep", "invalid")[i % 4]
            out.append(row(f"{i:07x}", 1.4 - i * 1e-5, status, f"attempt {i}: " + "a long idea " * 30))
        return out

    lengths = {}
    for n in (10, 200, 2000):
        for limit in (6_000, 20_000, context.MAX_CHARS):
            p = context.build(ws, rows(n), max_chars=limit).prompt
            assert len(p) <= limit, (n, limit, len(p))
            lengths[n, limit] = len(p)
            assert "LR = 0.5" in p  # the editable file is never dropped
            assert f"attempt {n - 1}:" in p  # nor the latest experiment
    assert lengths[2000, context.MAX_CHARS] <= context.MAX_CHARS
    big = context.build(ws, rows(2000)).prompt
    assert "note 2999" in big and "note 0:" not in big  # the newest notes are kept
    assert "attempt 1969:" in big  # older failures are listed so they are not retried


def test_older_attempts_not_kept_are_listed_once(tmp_path):
    ws = blank(tmp_path)
    rows = [row("aaaaaaa", 1.4, "keep", "baseline", kind="baseline")]
    rows += [row(f"{i:07x}", 1.5, "discard", "double WIDTH") for i in range(1, 4)]
    rows += [row(f"{i:07x}", 1.5, "discard", f"idea {i}") for i in range(4, 60)]
    p = context.build(ws, rows).prompt
    older = p.split("## Older attempts that were not kept (newest first)\n", 1)[1].split("\n\n", 1)[0]
    assert older.count("double WIDTH") == 1 and "idea 4" in older


def test_extra_scalars_from_the_engine_are_shown(tmp_path):
    ws = blank(tmp_path)
    ctx = context.build(ws, [], extra={"experiment": 7, "noise": "sigma 0.0012", "_private": "x", "obj": object()})
    assert "experiment: 7" in ctx.prompt and "noise: sigma 0.0012" in ctx.prompt
    assert "_private" not in ctx.prompt and "obj:" not in ctx.prompt
    assert ctx.extra["experiment"] == 7


def test_no_history_yet(tmp_path):
    ws = blank(tmp_path)
    p = context.build(ws, []).prompt
    assert "No experiments yet" in p and "(empty: start your notebook)" in p


def test_the_llm_templates_train_py_fits_whole(tmp_path):
    from autoresearch.workspace import init_workspace

    ws = init_workspace(tmp_path / "llm", profile="cpu")
    train = (ws.root / "train.py").read_text()
    rows = [row("aaaaaaa", 1.9, "keep", "baseline", kind="baseline")]
    rows += [row(f"{i:07x}", 1.9 + i * 1e-3, "discard", f"idea {i} " * 20) for i in range(1, 300)]
    p = context.build(ws, rows).prompt
    assert train in p and len(p) <= context.MAX_CHARS
    assert "val_bpb" in p and "`train.py`" in p
