"""What a run or an agent writes never reaches a terminal or a results.tsv cell raw: escape
sequences, control characters, bidi overrides and invalid UTF-8 are taken out
(research.results.printable) in the rows, in `status`, the report and the log tail."""

from __future__ import annotations

import json
import time

import pytest

from autoresearch import resultsfile
from autoresearch.research.history import History
from autoresearch.research.results import Row, clean, header, line, parse, printable
from autoresearch.views import report as report_mod
from autoresearch.views import snapshot as st

from support import cli

# a window title (OSC), clear screen (CSI), a C1 CSI, a lone surrogate, a right-to-left override,
# a bell, a backspace, a carriage return and DEL
HOSTILE = "t\x1b]0;pwned\x07ry \x1b[2Jwider\x9b6n layers\udcff \u202eevil\u2066 \x08x\ry\x7f"
BAD = ("\x1b", "\x07", "\x9b", "\udcff", "\u202e", "\u2066", "\x08", "\r", "\x7f", "pwned")


def assert_harmless(text: str) -> None:
    found = [c for c in BAD if c in text]
    assert not found, (found, text)
    assert all(c in "\n\t" or c.isprintable() for c in text), repr(text)


def test_printable_keeps_the_text_and_drops_the_rest():
    assert printable("\x1b[1;31mloss\x1b[0m 1.25\tok\n") == "loss 1.25\tok\n"
    assert printable("a\x1b]0;pwned\x07b\x1b]2;t\x1b\\c") == "abc"
    assert printable("a\x9b2Jb\x9d0;x\x9cc") == "abc"
    assert printable(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"  # invalid UTF-8: replaced
    assert printable("x\udcffy") == "x\ufffdy"
    assert printable("left \u202eright\u202c \u2067iso\u2069") == "left right iso"
    assert printable("日本語 — ü €") == "日本語 — ü €"
    assert_harmless(printable(HOSTILE))


def test_a_hostile_description_round_trips_through_the_results_without_escapes(tmp_path):
    row = Row(commit="abc1234", value=1.0, memory_gb=0.5, status="crash", description=HOSTILE,
              reason=HOSTILE + "\nTraceback\tline", agent="agent\x1b[31m", branch="autoresearch/x\u202e")
    cells = row.cells()
    for cell in cells:
        assert_harmless(cell)
        assert "\t" not in cell and "\n" not in cell
    assert clean(HOSTILE) == "try wider layers\ufffd evil xy"
    _, (back,) = parse(header() + line(row))
    assert back.description == clean(HOSTILE) and back.reason == clean(HOSTILE) + " Traceback line"
    # on disk too (a lone surrogate could not even be written out as UTF-8)
    path = tmp_path / "results.tsv"
    resultsfile.append(path, row)
    _, (read,) = resultsfile.read(path)
    for text in (read.description, read.reason, read.agent, read.branch, path.read_text()):
        assert_harmless(text)


def _raw_row(commit: str, description: str, reason: str = "", agent: str = "", branch: str = "autoresearch/test") -> str:
    """A results line written by hand (a file from before the rule, or edited): cells as they are."""
    return "\t".join([commit, "1.500000", "0.1", "discard", description, "2025-03-08T22:20:00Z", "62.0", "60.0",
                      "100", "experiment", reason, agent, "", "", "", branch, "", "", "", "", ""]) + "\n"


def test_status_shows_nothing_raw_from_the_log_the_rows_or_the_agent(research_workspace, sleeper):
    root = research_workspace["root"]
    # by hand: a results.tsv that is not UTF-8 is refused, and a carriage return ends a line
    escapes = HOSTILE.replace("\udcff", "").replace("\r", "")
    with open(root / "results.tsv", "a", encoding="utf-8") as fh:
        fh.write(_raw_row("abcdef1", escapes, escapes, agent="openai\x1b]0;pwned\x07\u202e"))
    with open(root / "run.log", "ab") as fh:
        fh.write(b"\x1b]0;pwned\x07\x1b[2J\xc2\x9b6n\xe2\x80\xae\xff\xfe\n"
                 b"step 00004 | progress 4.0% | loss 2.920000 | note \x1b[2J\x1b]0;pwned\x07 | remaining 96s\n")
    state = root / ".autoresearch"
    state.mkdir(exist_ok=True)
    (state / "current.json").write_text(json.dumps({
        "commit": "0123456789ab", "description": HOSTILE, "kind": "experiment", "started_at": time.time() - 5,
        "budget": 60, "pid": sleeper, "agent": "openai\x1b[2J",
    }))
    (state / "loop.json").write_text(json.dumps({
        "pid": sleeper, "tag": "test", "branch": "autoresearch/test", "agent": "openai\x9b2J",
        "started_at": time.time() - 600, "updated_at": time.time(), "state": "running\x1b]0;pwned\x07\u202e",
    }))
    done = cli("status", cwd=root, env={"TERM": "dumb"})
    assert done.returncode == 0, done.stderr
    assert_harmless(done.stdout)
    assert "step 4" in done.stdout and "96 s remaining" in done.stdout  # the progress line still reads
    assert "'try wider layers\ufffd evil xy'" in done.stdout  # the description, quoted, made harmless
    as_json = cli("status", "--json", cwd=root)
    assert as_json.returncode == 0 and all(ord(c) < 128 for c in as_json.stdout)  # JSON escapes the rest


def test_the_log_tail_shown_to_a_user_is_printable(research_workspace):
    root = research_workspace["root"]
    (root / "run.log").write_bytes(b"start \x1b[31mred\x1b[0m\n\x1b]0;pwned\x07title\n"
                                   b"bad \xff\xfe bytes \xc2\x9b2J \xe2\x80\xae rtl\n"
                                   b"10%\r50%\r100%\n\x1b[2Kstep 8\r\x1b[K\n")
    tail = st.log_tail(st.open_source(root))
    assert_harmless(tail)
    assert tail.splitlines() == ["start red", "title", "bad \ufffd\ufffd bytes   rtl", "100%", "step 8"]


@pytest.mark.parametrize("status", ["keep", "crash"])
def test_the_report_lists_hostile_descriptions_and_reasons_printable(status):
    # rows as a results file from before the rule could hold them (read, not written by us)
    rows = [Row("abc1234", 2.0, 0.1, "keep", "baseline", kind="baseline"),
            Row("def5678", 1.5 if status == "keep" else 0.0, 0.1, status, HOSTILE, reason=HOSTILE)]
    md = report_mod.markdown(History(rows), metric="score\x1b[2J", name="ws\x1b]0;pwned\x07")
    assert_harmless(md)
    assert "try wider layers\ufffd evil xy" in md
