"""The engine's store: an older workspace's files moved in once, with a version, and the pins
kept in the same database."""

from __future__ import annotations

import json

from autoresearch import pins
from autoresearch.research.results import Row, header, line
from autoresearch.store import DB_NAME, Store


def _row(commit: str, value: float, status: str, kind: str = "experiment") -> Row:
    return Row(commit=commit, value=value, memory_gb=0.5, status=status, description=f"{kind} {commit}",
               timestamp="2026-12-01T00:00:00Z", seconds=30.0, training_seconds=20.0, steps=10, kind=kind)


def test_the_files_of_an_older_version_are_moved_in_once_and_said_once(tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    rows = [_row("a" * 7, 1.5, "keep", "baseline"), _row("b" * 7, 1.6, "discard")]
    (private / "results.tsv").write_text(header() + "".join(line(r) for r in rows))
    running = {"branch": "autoresearch/x", "frontier": "a" * 40, "kind": "experiment", "description": "try",
               "candidate": "c" * 40, "measured": [line(_row("c" * 7, 1.4, "discard")).rstrip("\n")],
               "running": "a" * 40, "version": 1, "worker": "w1"}
    (private / "journal-w1.json").write_text(json.dumps(running))
    (private / "seen.json").write_text(json.dumps({"k": {"commit": "b" * 7, "status": "discard", "value": 1.6}}))

    store = Store(private, tmp_path / "results.tsv")
    assert store.rows() == rows
    (name, journal), = store.journals()
    assert name == "w1" and journal.worker == "w1" and journal.candidate == "c" * 40
    assert [r.value for r in journal.measured] == [1.4] and journal.running == ("a" * 40, "experiment", "try")
    assert store.seen()["k"].commit == "b" * 7
    assert sorted(p.name for p in private.iterdir() if p.suffix == ".v0") == \
        ["journal-w1.json.v0", "results.tsv.v0", "seen.json.v0"]
    note = store.take_note()
    assert "version 1" in note and "2 rows" in note and store.take_note() == ""

    again = Store(private)  # opened again: nothing moved twice
    assert again.rows() == rows and len(again.journals()) == 1


def test_a_planted_results_tsv_is_never_moved_in(tmp_path):
    public = tmp_path / "results.tsv"
    public.write_text(header() + line(_row("f" * 7, 0.01, "keep")))
    store = Store(tmp_path / "private", public)
    assert store.rows() == [] and store.take_note() == ""


def test_the_pins_and_settings_live_in_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_HOME", str(tmp_path / "home"))
    root = tmp_path / "ws"
    root.mkdir()
    assert pins.read(root) is None and pins.read_settings(root) is None and not pins.has_settings(root)
    pins.write(pins.fresh(root, "h" * 64, "v" * 64))
    pins.write_settings(root, "budget = 5\n")
    assert pins.where(root) == pins.private_dir(root) / DB_NAME
    assert pins.read(root).val_sha256 == "v" * 64 and pins.read_settings(root) == "budget = 5\n"
    assert pins.has_settings(root)
    assert not list((tmp_path / "home").glob("pins/*"))  # no file beside the database
    pins.forget(root)
    assert pins.read(root) is None and not pins.has_settings(root)


def test_settings_whose_text_was_changed_in_the_database_read_as_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_HOME", str(tmp_path / "home"))
    root = tmp_path / "ws"
    root.mkdir()
    pins.write_settings(root, "budget = 5\n")
    store = Store(pins.private_dir(root))
    record = json.loads(store.pinned("settings"))
    store.pin("settings", json.dumps({**record, "text": "budget = 500\n"}))
    assert pins.read_settings(root) is None


def test_reported_usage_past_the_stores_integers_is_bounded_before_it_is_stored(tmp_path):
    """An agent's usage is a claim: counts past 2**53, below zero or not whole, and costs that are
    NaN, infinite or below zero are dropped, whether they come as a record (Usage) or as a dict
    (a journal written before the bounds), so the row is stored and nothing stays wedged."""
    from autoresearch.agents.base import Usage
    from autoresearch.engine.outcome import make_row, usage_cells

    assert Usage(10**30, -3, float("nan")) == Usage(0, 0, None)
    assert Usage("12", 2.0, "0.5") == Usage(12, 2, 0.5) and Usage(True, 1.5, float("inf")) == Usage(0, 0, None)
    assert usage_cells({"tokens_in": 1e30, "tokens_out": 7, "cost_usd": -1}) == {"tokens_out": 7}
    store = Store(tmp_path)
    row = make_row("abc1234", status="keep", kind="experiment", description="d", reason="r", branch="b",
                   usage={"tokens_in": 10**30, "tokens_out": 7, "cost_usd": float("nan")})
    store.append(row)
    got = store.rows()[-1]
    assert (got.tokens_in, got.tokens_out, got.cost_usd) == (None, 7, None)
