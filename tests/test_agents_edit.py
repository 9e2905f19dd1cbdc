"""The edit format of the API agents: parsing, all-or-nothing application, refusals."""

from __future__ import annotations

import pytest

from autoresearch.agents import answers, editing
from autoresearch.agents.answers import EditError
from support import blank, dirty


def block(path, search, replace):
    return f"<<<<<<< SEARCH {path}\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_parse_reads_description_and_blocks_in_order():
    text = ("Some thinking first.\n**DESCRIPTION:** lower LR to 0.2\n\n" + block("score.py", "LR = 0.5", "LR = 0.2")
            + "<<<<<<< APPEND notes.md\nLR 0.2 next\n>>>>>>> END\n")
    answer = answers.parse(text)
    assert answer.description == "lower LR to 0.2"
    assert [(b.kind, b.path) for b in answer.blocks] == [("SEARCH", "score.py"), ("APPEND", "notes.md")]
    assert answer.blocks[0].search == "LR = 0.5\n" and answer.blocks[0].text == "LR = 0.2\n"


def test_parse_without_description_line_uses_first_prose_line():
    answer = answers.parse("## Halve the learning rate\n" + block("score.py", "LR = 0.5", "LR = 0.25"))
    assert answer.description == "Halve the learning rate"


@pytest.mark.parametrize("text, fragment", [
    ("<<<<<<< SEARCH score.py\nLR = 0.5\n=======\nLR = 0.2\n", "not closed"),
    ("<<<<<<< SEARCH score.py\nLR = 0.5\n>>>>>>> REPLACE\n", "no '======='"),
    ("<<<<<<< SEARCH\nLR = 0.5\n=======\nLR = 0.2\n>>>>>>> REPLACE\n", "must name its file"),
    ("LR = 0.2\n>>>>>>> REPLACE\n", "closing marker outside"),
])
def test_parse_rejects_malformed_blocks_with_a_message_for_the_model(text, fragment):
    with pytest.raises(EditError, match=fragment):
        answers.parse(text)


def test_apply_search_replace_append_and_whole_file(tmp_path):
    ws = blank(tmp_path)
    answer = answers.parse("DESCRIPTION: x\n" + block("score.py", "LR = 0.5", "LR = 0.2")
                           + "<<<<<<< FILE notes.md\n# notes\n>>>>>>> END\n"
                           + "<<<<<<< APPEND notes.md\n- tried 0.2\n>>>>>>> END\n")
    changed = editing.apply(ws.root, answer)
    assert sorted(changed) == ["notes.md", "score.py"]
    assert "LR = 0.2\n" in (ws.root / "score.py").read_text()
    assert (ws.root / "notes.md").read_text() == "# notes\n- tried 0.2\n"


def test_apply_tolerates_trailing_whitespace_differences(tmp_path):
    ws = blank(tmp_path)
    answer = answers.parse(block("score.py", "LR = 0.5   \nWIDTH = 4", "LR = 0.3\nWIDTH = 4"))
    editing.apply(ws.root, answer)
    assert "LR = 0.3\nWIDTH = 4\n" in (ws.root / "score.py").read_text()


def test_apply_is_all_or_nothing(tmp_path):
    ws = blank(tmp_path)
    before = (ws.root / "score.py").read_text()
    answer = answers.parse(block("score.py", "LR = 0.5", "LR = 0.2") + block("score.py", "DEPTH = 9", "DEPTH = 3"))
    with pytest.raises(EditError, match="SEARCH block 2 for score.py does not match"):
        editing.apply(ws.root, answer)
    assert (ws.root / "score.py").read_text() == before
    assert dirty(ws) == []


def test_apply_refuses_ambiguous_search(tmp_path):
    ws = blank(tmp_path, text="A = 1\nA = 1\n")
    with pytest.raises(EditError, match="matches 2 places"):
        editing.apply(ws.root, answers.parse(block("score.py", "A = 1", "A = 2")))


def test_apply_refuses_python_that_does_not_parse(tmp_path):
    ws = blank(tmp_path)
    with pytest.raises(EditError, match=r"not valid Python .*line 2"):
        editing.apply(ws.root, answers.parse(block("score.py", "LR = 0.5", "LR = (0.5")))
    assert dirty(ws) == []


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", ".git/hooks/pre-commit", ".autoresearch/x", "results.tsv"])
def test_apply_refuses_paths_the_guard_cannot_see(tmp_path, path):
    ws = blank(tmp_path)
    with pytest.raises(EditError):
        editing.apply(ws.root, answers.parse(f"<<<<<<< FILE {path}\nx = 1\n>>>>>>> END\n"))
    assert not (tmp_path / "outside.py").exists()
    assert not (ws.root / ".git" / "hooks" / "pre-commit").exists()


def test_apply_writes_a_tracked_forbidden_file_for_the_engine_to_judge(tmp_path):
    # program.md is tracked and not editable: written, so the engine's guard reverts it and logs `invalid`.
    ws = blank(tmp_path)
    editing.apply(ws.root, answers.parse(block("program.md", "# Research brief", "# Anything goes")))
    assert dirty(ws) == ["program.md"]


def test_apply_refuses_a_path_through_a_symlink_out_of_the_workspace(tmp_path):
    ws = blank(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ws.root / "link").symlink_to(outside)
    with pytest.raises(EditError, match="outside the workspace"):
        editing.apply(ws.root, answers.parse("<<<<<<< FILE link/x.py\nx = 1\n>>>>>>> END\n"))
    assert not (outside / "x.py").exists()
