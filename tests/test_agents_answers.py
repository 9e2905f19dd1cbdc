"""The answers models actually give: a line of prose and a whole file in one fenced block.

The `openai` and `anthropic` agents against the loopback server (real SDKs, real HTTP),
and `answers.parse` / `editing.apply` on their own for the rules that attribute a fenced
block to a file and refuse fragments. An answer with no usable edit gets its one retry.
"""

from __future__ import annotations

import pytest

from autoresearch import agents
from autoresearch.agents import answers, context, editing
from autoresearch.agents.answers import EditError
from support import API_KEY, blank, commit, dirty

KEY = API_KEY
API = ["openai", "anthropic"]

SCORE = '''\
"""A tiny experiment: the score is how far LR is from 0.1 (lower is better)."""
import math

LR = 0.5
WIDTH = 4
DEPTH = 2
STEPS = 10


def schedule(step, total):
    warm = max(1, total // 10)
    if step < warm:
        return LR * (step + 1) / warm
    return LR * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def score(lr, width, depth):
    penalty = 0.0 * width + 0.0 * depth
    return abs(lr - 0.1) + 1.0 + penalty


def main():
    best = min(score(schedule(s, STEPS), WIDTH, DEPTH) for s in range(STEPS))
    print(f"score: {best:.6f}")


if __name__ == "__main__":
    main()
'''
NEW = SCORE.replace("LR = 0.5", "LR = 0.2")
PROSE = "I lowered the learning rate to 0.2 so the schedule peaks nearer 0.1."
WHOLE = f"{PROSE}\n\n```python\n{NEW}```\n"  # the shape of the issue: prose, one fence, no markers
FRAGMENT = "Lower the learning rate:\n\n```python\nLR = 0.2\n```\n"
NO_EDIT = "I think the learning rate is too high; I would lower it to 0.2 and see what happens."


pytestmark = pytest.mark.usefixtures("api_env")


def agent(name, llm):
    base = llm.url + "/v1" if name == "openai" else llm.url
    return agents.load(name, base_url=base, model="fake-model")


def two_files(tmp_path):
    """A workspace with two editable files: score.py (SCORE) and model.py."""
    ws = blank(tmp_path, editable=("score.py", "model.py"), text=SCORE)
    (ws.root / "model.py").write_text("HIDDEN = 64\nLAYERS = 2\n")
    commit(ws, "a model file")
    return ws


# --- through the agents, against the loopback server --------------------------------------


@pytest.mark.parametrize("name", API)
def test_prose_and_one_fenced_whole_file_replace_the_file(tmp_path, llm, name):
    ws = blank(tmp_path, text=SCORE)
    llm.add(WHOLE)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert (ws.root / "score.py").read_text() == NEW
    assert dirty(ws) == ["score.py"]
    assert proposal.description == PROSE
    assert len(llm.history) == 1


@pytest.mark.parametrize("opening, expected", [
    ("```python score.py\n", NEW),
    ("score.py:\n```python\n", NEW),
    ("### score.py\n```python\n", NEW),
    ("**score.py**\n\n```\n", NEW),
    ("Here is the whole of `score.py`:\n```py\n", NEW),
    ("```python\n# score.py\n", "# score.py\n" + NEW),
])
def test_with_two_editable_files_the_fence_that_names_one_replaces_it(tmp_path, llm, opening, expected):
    ws = two_files(tmp_path)
    llm.add(f"Lower the learning rate to 0.2.\n\n{opening}{NEW}```\n")
    proposal = agent("openai", llm).propose(context.build(ws, []))
    assert (ws.root / "score.py").read_text() == expected
    assert (ws.root / "model.py").read_text() == "HIDDEN = 64\nLAYERS = 2\n"
    assert dirty(ws) == ["score.py"]
    assert proposal.description == "Lower the learning rate to 0.2."
    assert len(llm.history) == 1


def test_fences_naming_two_editable_files_are_two_whole_file_edits(tmp_path, llm):
    ws = two_files(tmp_path)
    llm.add(f"DESCRIPTION: lower LR, wider model\n\nscore.py:\n```python\n{NEW}```\n\n"
            "model.py:\n```python\nHIDDEN = 128\nLAYERS = 2\n```\n")
    proposal = agent("openai", llm).propose(context.build(ws, []))
    assert proposal.description == "lower LR, wider model"
    assert (ws.root / "score.py").read_text() == NEW
    assert (ws.root / "model.py").read_text() == "HIDDEN = 128\nLAYERS = 2\n"
    assert len(llm.history) == 1


@pytest.mark.parametrize("name", API)
def test_a_fenced_fragment_is_sent_back_with_the_reason_and_a_good_second_answer_applies(tmp_path, llm, name):
    ws = blank(tmp_path, text=SCORE)
    llm.add(FRAGMENT, WHOLE)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert len(llm.history) == 2
    retry = llm.history[1]
    assert "the fenced block is only 1 of score.py's" in retry.last_user()
    assert "send SEARCH/REPLACE blocks, or the whole file" in retry.last_user()
    assert [m["role"] for m in retry.body["messages"] if m["role"] != "system"] == ["user", "assistant", "user"]
    assert (ws.root / "score.py").read_text() == NEW
    assert proposal.description == PROSE


@pytest.mark.parametrize("name", API)
def test_a_second_fragment_is_skipped_and_changes_nothing(tmp_path, llm, name):
    ws = blank(tmp_path, text=SCORE)
    llm.add(FRAGMENT, FRAGMENT, WHOLE)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert proposal.description.startswith("malformed edit skipped: the fenced block is only 1 of score.py's")
    assert dirty(ws) == []
    assert (ws.root / "score.py").read_text() == SCORE
    assert len(llm.history) == 2  # no third call


@pytest.mark.parametrize("name", API)
def test_an_answer_with_no_edit_gets_its_one_retry_with_the_reason(tmp_path, llm, name):
    ws = blank(tmp_path, text=SCORE)
    llm.add(NO_EDIT, WHOLE)
    proposal = agent(name, llm).propose(context.build(ws, []))
    assert len(llm.history) == 2
    assert "no edit:" in llm.history[1].last_user()
    assert (ws.root / "score.py").read_text() == NEW
    assert proposal.description == PROSE


def test_two_answers_with_no_edit_are_skipped_after_exactly_two_requests(tmp_path, llm):
    ws = blank(tmp_path, text=SCORE)
    llm.add(NO_EDIT, NO_EDIT, WHOLE)
    proposal = agent("openai", llm).propose(context.build(ws, []))
    assert proposal.description.startswith("malformed edit skipped: no edit:")
    assert dirty(ws) == []
    assert len(llm.history) == 2


def test_a_fence_that_echoes_the_file_unchanged_is_sent_back(tmp_path, llm):
    ws = blank(tmp_path, text=SCORE)
    llm.add(f"Here is the file.\n\n```python\n{SCORE}```\n", WHOLE)
    agent("openai", llm).propose(context.build(ws, []))
    assert "no edit: the fenced score.py is the same as the current file" in llm.history[1].last_user()
    assert (ws.root / "score.py").read_text() == NEW


def test_the_format_still_prefers_edit_blocks_and_mentions_the_fenced_file(tmp_path, llm):
    ws = blank(tmp_path, text=SCORE)
    llm.add(WHOLE)
    agent("openai", llm).propose(context.build(ws, []))
    system = " ".join(llm.history[0].texts())
    assert "<<<<<<< SEARCH" in system
    assert "whole of one file in one fenced code block" in system


# --- answers.parse: which fenced block is which file ---------------------------------------

ONE = ("score.py",)
TWO = ("score.py", "model.py")


def fenced(answer):
    return [(b.kind, b.path, b.fenced, b.text) for b in answer.blocks]


def test_parse_one_unnamed_fence_is_the_one_editable_file():
    answer = answers.parse(f"{PROSE}\n\n```python\n{NEW}```\n", ONE)
    assert fenced(answer) == [("FILE", "score.py", True, NEW)]
    assert answer.description == PROSE


def test_parse_without_editable_files_a_fence_is_no_edit():
    with pytest.raises(EditError, match="^no edit:"):
        answers.parse(f"{PROSE}\n\n```python\n{NEW}```\n")


@pytest.mark.parametrize("text", [
    "```python score.py\nX = 1\n```\n",
    "```score.py\nX = 1\n```\n",
    "```python title=\"score.py\"\nX = 1\n```\n",
    "score.py:\n```python\nX = 1\n```\n",
    "### score.py\n\n```python\nX = 1\n```\n",
    "**score.py**\n```\nX = 1\n```\n",
    "File: `./score.py`\n```python\nX = 1\n```\n",
    "The new `score.py`:\n```python\nX = 1\n```\n",
])
def test_parse_a_fence_names_its_file_in_the_info_string_or_on_the_line_before(text):
    assert fenced(answers.parse(text, TWO)) == [("FILE", "score.py", True, "X = 1\n")]


def test_parse_a_first_line_comment_names_the_file():
    answer = answers.parse("```python\n# model.py: the model\nHIDDEN = 128\n```\n", TWO)
    assert fenced(answer) == [("FILE", "model.py", True, "# model.py: the model\nHIDDEN = 128\n")]
    with pytest.raises(EditError, match="does not say which file"):
        answers.parse("```python\n# used by model.py\nHIDDEN = 128\n```\n", TWO)


def test_parse_fences_naming_different_files_are_several_whole_file_edits():
    text = ("Two changes.\n\nscore.py:\n```python\nLR = 0.2\n```\n\n```bash\npython score.py\n```\n\n"
            "```python model.py\nHIDDEN = 128\n```\n")
    answer = answers.parse(text, TWO)
    assert [(b.path, b.text) for b in answer.blocks] == [("score.py", "LR = 0.2\n"), ("model.py", "HIDDEN = 128\n")]
    assert answer.description == "Two changes."


def test_parse_a_path_inside_a_folder_is_found_by_its_last_part():
    answer = answers.parse("model.py:\n```python\nX = 1\n```\n", ("score.py", "src/model.py"))
    assert fenced(answer) == [("FILE", "src/model.py", True, "X = 1\n")]


@pytest.mark.parametrize("text, editable, fragment", [
    ("```python\nX = 1\n```\n", TWO, r"^no edit: the fenced block does not say which file it is"),
    ("prepare.py:\n```python\nX = 1\n```\n", ONE, r"^no edit: the fenced block names prepare.py, which may not change"),
    ("```python prepare.py\nX = 1\n```\n", ONE, r"names prepare.py"),
    ("```bash\npython score.py\n```\n", ONE, r"^no edit: the fenced block \(bash\) is not score.py"),
    ("```diff\n--- a/score.py\n+++ b/score.py\n@@ -1 +1 @@\n-LR = 0.5\n+LR = 0.2\n```\n", ONE, "a diff is not applied"),
    ("```\n--- a/score.py\n+++ b/score.py\n```\n", ONE, "a diff is not applied"),
    ("score.py:\n```\n--- a/score.py\n+++ b/score.py\n```\n", ONE, "for score.py is a diff"),
    ("```python\nX = 1\n```\nor\n```python\nX = 2\n```\n", ONE, "2 fenced code blocks and does not say which one is score.py"),
    ("score.py:\n```python\nX = 1\n```\n```python score.py\nX = 2\n```\n", TWO, "lines 2 and 5 are both score.py"),
    ("Here it is:\n```python\nX = 1\n", ONE, "starts on line 2 is not closed"),
    (NO_EDIT, ONE, r"^no edit: the answer has no edit blocks and no fenced file"),
    ("", ONE, r"^no edit:"),
])
def test_parse_refuses_what_it_cannot_attribute_with_a_reason(text, editable, fragment):
    with pytest.raises(EditError, match=fragment):
        answers.parse(text, editable)


def test_parse_an_answer_in_the_format_without_any_code_is_a_deliberate_no_change():
    answer = answers.parse("DESCRIPTION: nothing worth trying\n\nI would leave the file as it is.", ONE)
    assert answer == answers.Answer("nothing worth trying", ())


def test_parse_description_from_the_description_line_outside_the_fence_first():
    text = ("Some thinking.\n\n```python\n# DESCRIPTION: not this one\nLR = 0.2\n```\n"
            "DESCRIPTION: lower LR to 0.2\n")
    answer = answers.parse(text, ONE)
    assert answer.description == "lower LR to 0.2"
    assert answer.blocks[0].text == "# DESCRIPTION: not this one\nLR = 0.2\n"


def test_parse_description_skips_the_line_that_only_introduces_the_fence():
    answer = answers.parse("Here is the updated file:\n```python\nLR = 0.2\n```\n"
                           "This lowers the learning rate\nso that it ends nearer 0.1.\n", ONE)
    assert answer.description == "This lowers the learning rate"
    assert answers.parse("score.py:\n```python\nLR = 0.2\n```\n", ONE).description == ""
    long = answers.parse("## " + "word " * 100 + "\n```python\nLR = 0.2\n```\n", ONE).description
    assert "\n" not in long and len(long) <= 200 and not long.startswith("#")


def test_parse_tilde_and_longer_fences_keep_their_contents():
    inner = 'DOC = """\n```\nan example\n```\n"""\n'
    assert answers.parse(f"x\n````python\n{inner}````\n", ONE).blocks[0].text == inner
    assert answers.parse("x\n~~~py\nLR = 0.2\n~~~\n", ONE).blocks[0].text == "LR = 0.2\n"
    indented = answers.parse("1. the file:\n   ```python\n   def f():\n       return 1\n   ```\n", ONE)
    assert indented.blocks[0].text == "def f():\n    return 1\n"


def test_parse_edit_blocks_win_over_fences():
    text = ("DESCRIPTION: lower LR\n```\n<<<<<<< SEARCH score.py\nLR = 0.5\n=======\nLR = 0.2\n>>>>>>> REPLACE\n```\n"
            "```python\nLR = 0.3\n```\n")
    answer = answers.parse(text, ONE)
    assert [(b.kind, b.path, b.fenced) for b in answer.blocks] == [("SEARCH", "score.py", False)]


# --- editing.apply: a fenced block must be the whole file ----------------------------------


def test_apply_a_fenced_whole_file(tmp_path):
    ws = blank(tmp_path, text=SCORE)
    assert editing.apply(ws.root, answers.parse(WHOLE, ONE)) == ["score.py"]
    assert (ws.root / "score.py").read_text() == NEW


@pytest.mark.parametrize("body, fragment", [
    ("LR = 0.2\nWIDTH = 8\n", r"^the fenced block is only 2 of score.py's 19 lines of code"),
    ("def schedule(step, total):\n    warm = max(1,\n", r"the fenced block for score.py is not valid Python"),
    (NEW.replace("def main():", "# ... rest of the code unchanged ...\n\n\ndef main():"), r"leaves code out"),
    (SCORE, r"^no edit: the fenced score.py is the same as the current file"),
])
def test_apply_refuses_a_fenced_block_that_is_not_the_whole_new_file(tmp_path, body, fragment):
    ws = blank(tmp_path, text=SCORE)
    with pytest.raises(EditError, match=fragment):
        editing.apply(ws.root, answers.parse(f"Change.\n```python\n{body}```\n", ONE))
    assert dirty(ws) == []


def test_apply_a_small_file_may_shrink_and_a_new_one_may_be_created(tmp_path):
    ws = blank(tmp_path, editable=("score.py", "extra.py"), text="A = 1\nB = 2\nC = 3\n")
    (ws.root / "extra.py").unlink()
    commit(ws, "no extra yet")
    answer = answers.parse("score.py:\n```python\nA = 1\n```\nextra.py:\n```python\nX = 1\n```\n", ("score.py", "extra.py"))
    assert sorted(editing.apply(ws.root, answer)) == ["extra.py", "score.py"]
    assert (ws.root / "score.py").read_text() == "A = 1\n"
    assert (ws.root / "extra.py").read_text() == "X = 1\n"
