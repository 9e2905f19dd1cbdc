"""`autoresearch init`: a workspace is a git repository with the harness, the baseline and a config."""

from __future__ import annotations

import hashlib

import pytest

from autoresearch import capsliterals
from autoresearch.errors import AutoresearchError
from autoresearch.config import Config
from autoresearch.workspace import Workspace, init_workspace

from support import cli, git


def test_init_makes_a_workspace_with_a_first_commit_on_main(tmp_path):
    result = cli("init", str(tmp_path / "ws"), "--profile", "cpu", "--budget", "7")
    assert result.returncode == 0, result.stderr
    ws = tmp_path / "ws"
    assert git(ws, "branch", "--show-current").strip() == "main"
    tracked = set(git(ws, "ls-files").split())
    assert {"prepare.py", "train.py", "program.md", ".gitignore", "autoresearch.toml"} <= tracked
    assert git(ws, "status", "--porcelain") == ""
    config = Workspace.load(ws).config
    assert (config.profile, config.dataset, config.budget) == ("cpu", "pysource", 7.0)
    assert config.editable == ("train.py",) and (config.metric, config.direction) == ("val_bpb", "lower")
    assert config.harness_sha256 == hashlib.sha256((ws / "prepare.py").read_bytes()).hexdigest()
    harness = capsliterals.read_constants((ws / "prepare.py").read_text())
    assert harness["TIME_BUDGET"].value == 7 and harness["DATASET"].value == "pysource"
    for ignored in ("results.tsv", "run.log", ".autoresearch/"):
        assert ignored in (ws / ".gitignore").read_text()


def test_profiles_freeze_their_constants_into_the_files(tmp_path):
    ws = init_workspace(tmp_path / "big", profile="cuda-large", dataset="pysource")
    harness = capsliterals.read_constants((ws.root / "prepare.py").read_text())
    train = capsliterals.read_constants((ws.root / "train.py").read_text())
    assert harness["MAX_SEQ_LEN"].value == 2048 and harness["VOCAB_SIZE"].value == 8192
    assert harness["TIME_BUDGET"].value == 300 and harness["EVAL_TOKENS"].value == 40 * 2**19
    assert train["DEPTH"].value == 8 and train["TOTAL_BATCH_SIZE"].value == 2**19
    assert train["WINDOW_PATTERN"].value == "SSSL"


def test_a_non_empty_folder_that_is_not_a_workspace_is_refused_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("init", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not empty" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_init_twice_says_it_is_already_a_workspace(tmp_path):
    init_workspace(tmp_path / "ws", profile="cpu")
    with pytest.raises(AutoresearchError, match="already"):
        init_workspace(tmp_path / "ws", profile="cpu")


def test_a_new_workspace_where_a_deleted_one_was_starts_with_no_records_of_it(tmp_path):
    # the engine's records live outside the workspace, keyed by its path: `rm -rf research`
    # and a new init there must not take on the old ledger, pins or code already run
    import shutil

    from autoresearch.research.results import Row

    old = init_workspace(tmp_path / "ws", profile="cpu")
    old.store.append(Row(commit="1234567", value=1.5, memory_gb=None, status="keep", description="old", kind="baseline"))
    old.store.put_document("finalize:old", "{}")
    assert len(old.store.rows()) == 1
    shutil.rmtree(old.root)
    said = []
    new = init_workspace(tmp_path / "ws", profile="cpu", out=said.append)
    assert new.store.rows() == [] and new.store.document("finalize:old") is None
    assert new.pins.harness_sha256 == new.config.harness_sha256
    assert len(said) == 1 and "earlier workspace" in said[0] and ".previous-" in said[0]
    result = cli("init", str(tmp_path / "other"), "--profile", "cpu")
    assert "earlier workspace" not in result.stdout  # nothing to say where there was none


def test_an_init_that_fails_puts_the_earlier_records_back_and_a_running_engine_keeps_them(tmp_path, monkeypatch):
    import shutil

    from autoresearch import gitrepo
    from autoresearch.pins import private_dir
    from autoresearch.research.results import Row
    from autoresearch.state import StateFolder

    old = init_workspace(tmp_path / "ws", profile="cpu")
    old.store.append(Row(commit="1234567", value=1.5, memory_gb=None, status="keep", description="old", kind="baseline"))
    shutil.rmtree(old.root)

    def broken(root, message):
        raise OSError("disk full")

    monkeypatch.setattr(gitrepo, "init", broken)
    with pytest.raises(OSError):
        init_workspace(tmp_path / "ws", profile="cpu")
    monkeypatch.undo()
    assert not (tmp_path / "ws").exists() and [r.description for r in old.store.rows()] == ["old"]
    private = private_dir(tmp_path / "ws")
    assert not list(private.parent.glob(f"{private.name}.previous-*"))

    with StateFolder(tmp_path / "ws").locked("autoresearch run"):  # its engine still runs
        with pytest.raises(AutoresearchError, match="another autoresearch process"):
            init_workspace(tmp_path / "ws", profile="cpu")
        assert [r.description for r in old.store.rows()] == ["old"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--budget", "-3"], "above 0"),
    (["--template", "blank"], "--command"),
])
def test_bad_options_are_one_line_and_leave_no_folder(tmp_path, args, message):
    result = cli("init", str(tmp_path / "ws"), "--profile", "cpu", *args)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "ws").exists()


def test_files_dataset_path_is_stored_absolute(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a document\n")
    monkeypatch.chdir(tmp_path)
    ws = init_workspace(tmp_path / "ws", profile="cpu", dataset="files:docs")
    assert ws.config.dataset == f"files:{tmp_path / 'docs'}"
    assert capsliterals.read_constants((ws.root / "prepare.py").read_text())["DATASET"].value == ws.config.dataset


def test_config_round_trips_through_toml():
    config = Config(budget=12.5, editable=("a.py", "b.py"), direction="higher", harness_sha256="ab")
    assert Config.from_toml(config.to_toml()) == config


def test_help_explains_the_commands():
    result = cli("--help")
    assert result.returncode == 0 and "init" in result.stdout and "prepare" in result.stdout
