"""The workspace's settings come from the engine's pinned copy, and an editable file cannot carry
weights: hostile edits through the real engine (`autoresearch experiment`), as an agent makes them.

1. The agent adds autoresearch.toml to its editable files and switches the harness record off,
   or raises the budget: refused (an `invalid` row), the tree back at the frontier, the pinned
   settings unchanged. A person changes a setting with `autoresearch settings --accept`.
2. The agent puts data into train.py (a long base64 string, a long list of floats, a file over
   the size cap, bytes that are not text): refused before anything runs.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import random
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest
import tomlkit

from autoresearch import pins
from autoresearch.store import Store
from autoresearch.config import Config
from autoresearch.engine import guard
from autoresearch.errors import AutoresearchError
from autoresearch.state import StateFolder
from autoresearch.workspace import Workspace

from support import assert_intact, blank, cli, experiment, experiment_json, git, head, llm_like, rows, train_text



def edit_toml(root: Path, **changes) -> None:
    """Edit autoresearch.toml in the working tree as a text editor would (no validation)."""
    path = root / "autoresearch.toml"
    doc = tomlkit.parse(path.read_text())
    for key, value in changes.items():
        table, _, name = key.rpartition(".")
        (doc[table] if table else doc)[name] = value
    path.write_text(tomlkit.dumps(doc))


# A train.py that hands the harness a bad model (2.0) but prints a good number (0.5): the score
# is the printed line only when the harness record is off.
LIAR = train_text(value=2.0).replace('print(f"val_bpb:          {v:.6f}")', 'print("val_bpb:          0.500000")')


def refused(root: Path, frontier: str, before: int, settings: Config, description: str) -> dict:
    out = experiment_json(root, description)
    assert out["status"] == "invalid", out
    assert_intact(root, frontier, before + 1)
    assert rows(root)[-1].status == "invalid"
    assert git(root, "show", "HEAD:autoresearch.toml") == (root / "autoresearch.toml").read_text().rstrip("\n")
    assert Workspace.load(root).config == settings
    return out


# -- 1. the settings ---------------------------------------------------------------------


@pytest.mark.parametrize("committed", [False, True], ids=["in the tree", "committed by the agent"])
def test_an_agent_that_makes_the_settings_editable_to_switch_the_record_off_is_refused(ws, committed):
    frontier, before, settings = head(ws), len(rows(ws)), Workspace.load(ws).config
    edit_toml(ws, editable=["train.py", "autoresearch.toml"], **{"metric.harness_record": False})
    (ws / "train.py").write_text(LIAR)
    if committed:
        git(ws, "commit", "-qam", "the agent's own commit")
    out = refused(ws, frontier, before, settings, "print the score myself")
    assert "autoresearch.toml" in out["reason"]
    assert Workspace.load(ws).config.harness_record is True


def test_an_agent_that_raises_its_budget_is_refused(ws):
    frontier, before, settings = head(ws), len(rows(ws)), Workspace.load(ws).config
    edit_toml(ws, editable=["train.py", "autoresearch.toml"], budget=15.0)
    (ws / "train.py").write_text(train_text(value=0.5))
    out = refused(ws, frontier, before, settings, "train 7.5x longer")
    assert "autoresearch.toml" in out["reason"]
    assert Workspace.load(ws).config.budget == 2


AGENT = r'''
import json, os, sys
from pathlib import Path

step = json.loads(Path(os.environ["STEP"]).read_text())
for name, content in step.items():
    Path(name).write_text(content)
print("DESCRIPTION: edits " + ", ".join(step))
'''


def test_run_refuses_the_same_edit_of_the_settings(tmp_path):
    """`autoresearch run` with a command agent that makes the same edit: refused in the same way."""
    root = tmp_path / "ws"
    llm_like(root)
    (tmp_path / "agent.py").write_text(AGENT)
    toml = tomlkit.parse((root / "autoresearch.toml").read_text())
    toml["editable"], toml["budget"] = ["train.py", "autoresearch.toml"], 15.0
    (tmp_path / "step.json").write_text(json.dumps({"autoresearch.toml": tomlkit.dumps(toml),
                                                    "train.py": train_text(value=0.5)}))
    r = cli("run", "--agent", "command", "--agent-command", f"{sys.executable} {tmp_path / 'agent.py'}",
            "--max-experiments", "1", cwd=root, env={"STEP": str(tmp_path / "step.json")})
    assert r.returncode == 0, r.stdout + r.stderr
    last = rows(root)[-1]
    assert last.status == "invalid" and "settings are not editable" in last.reason, last
    assert_intact(root, git(root, "rev-parse", f"{last.commit}^{{commit}}"), len(rows(root)))
    assert Workspace.load(root).config.budget == 2


def test_an_editable_list_that_names_the_settings_or_the_harness_is_refused():
    text = Config().to_toml()
    for names in (["train.py", "autoresearch.toml"], ["prepare.py"], ["."], ["./autoresearch.toml"]):
        doc = tomlkit.parse(text)
        doc["editable"] = names
        with pytest.raises(AutoresearchError, match="editable"):
            Config.from_toml(tomlkit.dumps(doc))


def test_settings_accept_changes_what_the_next_experiment_uses(ws):
    edit_toml(ws, **{"metric.harness_record": False})
    shown = cli("settings", cwd=ws)
    assert shown.returncode == 0 and "differs" in shown.stdout and "harness_record" in shown.stdout, shown.stdout
    assert Workspace.load(ws).config.harness_record is True  # not until accepted
    r = cli("settings", "--accept", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert Workspace.load(ws).config.harness_record is False
    assert "harness_record" in git(ws, "log", "-1", "--format=%s")
    assert "matches" in cli("settings", cwd=ws).stdout
    (ws / "train.py").write_text(LIAR)  # now the printed line is the score, as the user asked
    out = experiment_json(ws, "print the score")
    assert out["source"] == "printed line" and out["value"] == 0.5 and out["status"] == "keep", out
    assert git(ws, "show", "HEAD:autoresearch.toml") == (ws / "autoresearch.toml").read_text().rstrip("\n")


def test_an_accepted_setting_survives_a_discarded_experiment(ws):
    edit_toml(ws, **{"keep.max_runs": 4})
    assert cli("settings", "--accept", cwd=ws).returncode == 0
    (ws / "train.py").write_text(train_text(value=3.0))
    assert experiment_json(ws, "worse")["status"] == "discard"
    assert Workspace.load(ws).config.keep.max_runs == 4
    assert tomlkit.parse((ws / "autoresearch.toml").read_text())["keep"]["max_runs"] == 4
    assert "matches" in cli("settings", cwd=ws).stdout
    (ws / "train.py").write_text(train_text(value=0.5))
    assert experiment_json(ws, "better")["status"] == "keep"
    assert tomlkit.parse(git(ws, "show", "HEAD:autoresearch.toml"))["keep"]["max_runs"] == 4
    assert git(ws, "status", "--porcelain") == ""


@pytest.mark.parametrize("edit, message", [
    (lambda root: (root / "autoresearch.toml").write_text("budget = [\n"), "not valid TOML"),
    (lambda root: edit_toml(root, editable=["train.py", "autoresearch.toml"]), "editable"),
    (lambda root: edit_toml(root, **{"harness.sha256": "cd" * 32}), "fingerprint"),
    (lambda root: edit_toml(root, budget="long"), "budget"),
], ids=["bad toml", "editable settings", "harness sha", "bad value"])
def test_settings_accept_refuses_bad_input_in_one_line_and_changes_nothing(ws, edit, message):
    settings, commit = Workspace.load(ws).config, head(ws)
    edit(ws)
    r = cli("settings", "--accept", cwd=ws)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert Workspace.load(ws).config == settings and head(ws) == commit


def test_settings_accept_refuses_while_an_engine_holds_the_lock(ws):
    edit_toml(ws, budget=3.0)
    with StateFolder(ws).locked("autoresearch run"):
        r = cli("settings", "--accept", cwd=ws)
    assert r.returncode == 1 and "another autoresearch process" in r.stderr
    assert Workspace.load(ws).config.budget == 2


def test_an_older_workspace_is_pinned_from_its_committed_settings_not_the_tree(tmp_path):
    root = tmp_path / "old"
    llm_like(root)
    Store(pins.private_dir(root)).unpin("settings")  # as a workspace whose pinned settings were lost
    edit_toml(root, budget=15.0)  # an uncommitted edit in the tree
    assert Workspace.load(root).config.budget == 2
    assert pins.read_settings(root) == git(root, "show", "HEAD:autoresearch.toml") + "\n"


def test_save_updates_the_pinned_settings(tmp_path):
    from dataclasses import replace

    ws = blank(tmp_path)
    ws.save(replace(ws.config, budget=7.0))
    git(ws.root, "checkout", "--", "autoresearch.toml")  # the tree's copy back as committed
    assert Workspace.load(ws.root).config.budget == 7.0


# -- 2. data in the editable files --------------------------------------------------------


def weights_change(root: Path, body: str) -> dict:
    frontier, before = head(root), len(rows(root))
    log = (root / "run.log").read_bytes()
    (root / "train.py").write_text(train_text(value=0.1, body=body))
    out = experiment_json(root, "a better model, trained elsewhere")
    assert out["status"] == "invalid", out
    assert_intact(root, frontier, before + 1)
    assert (root / "run.log").read_bytes() == log  # nothing ran
    return out


def test_a_train_py_carrying_a_base64_blob_is_refused(ws):
    blob = base64.b64encode(random.Random(1).randbytes(6000)).decode()
    out = weights_change(ws, f"WEIGHTS = {blob!r}\n")
    assert "train.py" in out["reason"] and "string" in out["reason"]


def test_a_train_py_carrying_a_long_list_of_floats_is_refused(ws):
    rng = random.Random(2)
    floats = ", ".join(f"{rng.uniform(-1, 1):.6f}" for _ in range(1000))
    out = weights_change(ws, f"WEIGHTS = [{floats}]\n")
    assert "train.py" in out["reason"] and "1000" in out["reason"]


def test_many_small_constants_are_refused(ws):
    rng = random.Random(3)
    lines = "".join(f"W{i} = ({rng.uniform(-1, 1):.6f}, {rng.uniform(-1, 1):.6f})\n" for i in range(1500))
    out = weights_change(ws, lines)
    assert "constants" in out["reason"]


def test_a_literal_hidden_from_a_utf8_reading_by_a_coding_declaration_is_refused():
    """`# coding: utf-7` makes Python run other code than a UTF-8 reading shows: here a line
    that is a syntax error read as UTF-8 (so it was never checked) and a comment read as UTF-7,
    beside a 2,048-number literal."""
    body = "PRIOR = [" + ", ".join(str(i % 97) for i in range(2048)) + "]\n"
    hidden = "# (((\n".encode("utf-7").replace(b"#", b"+ACM-")  # '#' written the UTF-7 way
    data = b"# -*- coding: utf-7 -*-\n" + hidden + body.encode("utf-7")
    assert len(ast.parse(data).body[0].value.elts) == 2048  # what Python runs
    reason = guard.payload_problem("train.py", data)
    assert "utf-7" in reason and "encoding" in reason


def test_a_coding_declaration_behind_a_lone_carriage_return_is_refused():
    """Python ends a line at a lone \\r, tokenize's encoding detection does not: a file that
    starts with one reads as a blank first line to the detection and as `coding: utf-7` to
    Python, which then runs a "comment" as code."""
    data = b'\r# coding: utf-7\nx = 1  # harmless +AAo-print("hidden")\nprint("ok")\n'
    assert any(isinstance(n, ast.Expr) and "hidden" in ast.dump(n) for n in ast.parse(data).body)  # what runs
    reason = guard.payload_problem("train.py", data)
    assert "carriage return" in reason
    assert guard.payload_problem("train.py", b"x = 1\r\nprint(x)\r\n") == ""  # Windows line ends: fine


def test_a_file_python_runs_as_a_zip_archive_is_refused(tmp_path):
    """Python runs a file that ends in a zip archive as the archive's __main__.py, whatever its
    name: text that shows one program, code that runs another, which no literal check read."""
    buf = io.BytesIO()
    buf.write(b"print('visible')\n'''\n")
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_STORED) as z:
        z.writestr("__main__.py", "W = '" + "x" * 20_000 + "'\nprint('hidden', len(W))\n")
    (tmp_path / "train.py").write_bytes(buf.getvalue())
    ran = subprocess.run([sys.executable, str(tmp_path / "train.py")], capture_output=True, text=True)
    assert ran.stdout == "hidden 20000\n"  # what Python runs
    assert "zip" in guard.literal_problem("train.py", buf.getvalue())


def test_a_file_nested_too_deep_for_the_guards_parse_is_refused(tmp_path):
    """How deep a parse may nest depends on the stack of whoever parses: a file just too deep
    for the guard, deep in the engine, still ran as a program (here with a 40 KB constant)."""
    source = "W = '" + "x" * 40_000 + "'\n_ = 0" + "+0" * 2_900 + "\nprint(len(W))\n"
    (tmp_path / "train.py").write_text(source)
    ran = subprocess.run([sys.executable, str(tmp_path / "train.py")], capture_output=True, text=True)
    assert ran.stdout == "40000\n", ran.stderr  # Python runs it

    def deep(k: int) -> str:
        return guard.payload_problem("train.py", source.encode()) if k == 0 else deep(k - 1)

    for depth in (0, 20, 60):
        assert deep(depth) != "", depth  # refused, whether the parse got through or gave up


def test_a_syntax_error_is_refused_before_it_runs():
    reason = guard.payload_problem("train.py", b"def broken(:\n    pass\n")
    assert reason.startswith("train.py line 1: SyntaxError")


def test_a_literal_behind_a_byte_order_mark_is_refused(ws):
    """Python runs a file that starts with a UTF-8 byte-order mark; a str parse refuses it."""
    rng = random.Random(4)
    floats = ", ".join(f"{rng.uniform(-1, 1):.6f}" for _ in range(1000))
    frontier, before = head(ws), len(rows(ws))
    (ws / "train.py").write_bytes(b"\xef\xbb\xbf" + train_text(value=0.1, body=f"WEIGHTS = [{floats}]\n").encode())
    out = experiment_json(ws, "weights behind a BOM")
    assert out["status"] == "invalid" and "1000" in out["reason"], out
    assert_intact(ws, frontier, before + 1)


def test_a_train_py_over_the_size_cap_is_refused(ws):
    filler = "".join(f"# {i:06d} padding that carries nothing but its length.....................\n" for i in range(1000))
    out = weights_change(ws, filler)
    assert "KiB" in out["reason"]


def test_an_editable_file_that_is_not_text_is_refused(tmp_path):
    root = blank(tmp_path, editable=("score.py", "table.dat"), branch="autoresearch/test").root
    assert experiment(root, "baseline").returncode == 0
    frontier, before = head(root), len(rows(root))
    (root / "table.dat").write_bytes(bytes(range(256)) * 4)
    out = experiment_json(root, "binary data")
    assert out["status"] == "invalid" and "UTF-8" in out["reason"], out
    assert_intact(root, frontier, before + 1)


def test_the_editable_files_together_have_a_cap(tmp_path):
    names = ("score.py", "a.txt", "b.txt", "c.txt", "d.txt", "e.txt")
    root = blank(tmp_path, editable=names, branch="autoresearch/test").root
    assert experiment(root, "baseline").returncode == 0
    frontier, before = head(root), len(rows(root))
    for name in names[1:]:
        (root / name).write_text("x" * 60_000 + "\n")  # each under the cap of one file
    out = experiment_json(root, "data in pieces")
    assert out["status"] == "invalid" and "together" in out["reason"], out
    assert_intact(root, frontier, before + 1)


def test_the_template_train_py_passes_the_literal_check_with_room():
    texts = {"template": resources.files("autoresearch").joinpath("templates", "llm", "train.py").read_text()}
    for name, text in texts.items():
        assert guard.payload_problem("train.py", text.encode()) == "", name
        # with room: twice the file still passes every limit but the size cap
        assert guard.literal_problem("train.py", text + "\n" + text) == "", name
        assert len(text.encode()) * 2 <= guard.MAX_FILE_BYTES, name


def test_the_notes_are_exempt_but_the_same_text_in_train_py_is_not(ws):
    notes = ws / "notes.md"
    filler = "".join(f"# note {i:05d}: a long notebook, never run, never scored ...................\n" for i in range(1200))
    notes.write_text(filler)
    (ws / "train.py").write_text(train_text(value=2.0))
    assert experiment_json(ws, "long notes")["status"] == "discard"
    assert notes.read_text() == filler
    (ws / "train.py").write_text(train_text(value=0.5, body=filler))
    out = experiment_json(ws, "the notebook in the code")
    assert out["status"] == "invalid" and "train.py" in out["reason"], out
    assert notes.read_text() == filler


def test_syntax_this_python_cannot_parse_is_left_to_a_run_by_another_interpreter():
    """A command that runs another Python (a newer one) may run syntax this one cannot parse:
    not refused there (its size caps still hold); a file Python would run as a zip still is."""
    newer = b"type Number = int | float\nprint('score: 1.0')\n" if sys.version_info < (3, 12) else b"def broken(:\n"
    assert guard.payload_problem("score.py", newer, ours=False) == ""
    assert guard.payload_problem("score.py", newer).startswith("score.py line 1: SyntaxError")
    assert "zip" in guard.payload_problem("score.py", b"print(1)\n'''\nPK\x05\x06\x00\x00", ours=False)


def test_the_guard_knows_which_commands_run_its_own_python():
    from autoresearch.engine.command import runs_our_python

    assert runs_our_python("python train.py") and runs_our_python("python3 train.py")
    assert not runs_our_python("python3.99 train.py") and not runs_our_python("uv run train.py")
    assert not runs_our_python("cd x && python train.py")  # run by a shell: who knows
