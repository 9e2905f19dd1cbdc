"""files.remove_tree: a folder a run wrote goes, whatever the run made of it, and nothing outside it;
and the files the engine reads where the agent writes (logs, workers' records) are read as what they are."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autoresearch.engine.compilecache import copy_regular
from autoresearch.files import remove_tree


def nest(top, depth: int) -> None:
    """`depth` folders named d inside each other under `top`, made relative to each other's
    descriptors (the whole path is longer than the system lets one path be)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as fh:
        fh.write("x")
    os.mkfifo("pipe", dir_fd=fd)
    os.fchmod(fd, 0o500)  # read-only: emptied all the same
    os.close(fd)


def test_a_tree_deeper_than_the_stack_and_the_longest_path_is_removed(tmp_path):
    top = tmp_path / "scratch"
    top.mkdir()
    nest(top, 5000)  # 10,000 characters of path, five times the recursion limit
    remove_tree(top)
    assert not top.exists() and list(tmp_path.iterdir()) == []


def test_links_inside_are_removed_and_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    top = tmp_path / "scratch"
    (top / "a" / "b").mkdir(parents=True)
    os.symlink(outside, top / "a" / "b" / "to-outside")
    os.symlink(outside / "keep.txt", top / "file-link")
    os.chmod(top / "a", 0o500)
    remove_tree(top)
    assert not top.exists() and (outside / "keep.txt").read_text() == "keep"


def test_a_link_or_a_file_in_place_of_the_folder_is_unlinked_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.symlink(outside, tmp_path / "scratch")
    remove_tree(tmp_path / "scratch")
    assert not os.path.lexists(tmp_path / "scratch") and (outside / "keep.txt").exists()
    remove_tree(tmp_path / "missing")  # nothing there: nothing to do, no error


def test_a_compile_cache_nested_past_its_depth_is_not_kept_and_does_not_overflow(tmp_path):
    run_cache = tmp_path / "cache"
    run_cache.mkdir()
    nest(run_cache, 3000)
    try:
        assert copy_regular(run_cache, tmp_path / "kept", owner=None) is None
    finally:
        remove_tree(run_cache)  # pytest's own clean-up recurses
    (tmp_path / "shallow" / "inductor" / "ab").mkdir(parents=True)
    (tmp_path / "shallow" / "inductor" / "ab" / "kernel.py").write_text("k")
    assert copy_regular(tmp_path / "shallow", tmp_path / "kept2", owner=None) == 1


LOCKED = """
import os, sys
from autoresearch.files import remove_tree
top = sys.argv[1]
os.makedirs(os.path.join(top, "a", "b", "c"))
open(os.path.join(top, "a", "b", "c", "data"), "w").write("x" * 1000)
os.chmod(os.path.join(top, "a", "b", "c"), 0o500)  # read-only, two levels down: moved up to be emptied
os.chmod(os.path.join(top, "a", "b"), 0o000)  # unreadable
os.makedirs(os.path.join(top, "w"))
os.chmod(os.path.join(top, "w"), 0o300)  # writable, not readable
os.chmod(top, 0o500)
remove_tree(top)
print(os.path.exists(top))
"""


def test_folders_a_run_made_unreadable_or_read_only_go_too_without_root(tmp_path):
    """A user's engine has no root to read past a folder's mode: the run that made the folders
    was that user, so the modes are set back first. (As root, the script runs as nobody.)"""
    base = Path(tempfile.mkdtemp(prefix="autoresearch-test-"))  # pytest's own folder is root's alone
    try:
        argv = [sys.executable, "-c", LOCKED, str(base / "scratch")]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("no setpriv to run as another user")
            os.chmod(base, 0o777)
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        done = subprocess.run(argv, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "False"
    finally:
        remove_tree(base)


def test_a_log_is_read_only_when_it_is_a_regular_file_of_its_own(tmp_path):
    """Logs lie in the workspace, where the agent writes: a link there shows nothing of the file
    it points at, a FIFO holds no reader, a regular file is read as it is."""
    from autoresearch.files import read_tail

    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET outside the workspace\n")
    (tmp_path / "run.log").symlink_to(secret)
    assert read_tail(tmp_path / "run.log", 1000) is None
    os.mkfifo(tmp_path / "fifo.log")
    assert read_tail(tmp_path / "fifo.log", 1000) is None  # returns at once: no writer is waited for
    (tmp_path / "w1.log").write_text("step 1\nstep 2\n")
    assert read_tail(tmp_path / "w1.log", 1000) == "step 1\nstep 2\n"


def test_a_workers_record_naming_a_path_is_not_a_worker(tmp_path):
    """current-<worker>.json is written by the engine in the workspace, so the agent can write one
    too: its worker name becomes a log's file name, and only a plain name is taken."""
    import json

    from autoresearch.state import Current, StateFolder

    state = StateFolder(tmp_path)
    state.path.mkdir()
    state.seat("w1").write_current(Current(commit="abc1234", description="a run", kind="experiment", started_at=1.0))
    record = json.loads((state.path / "current-w1.json").read_text())
    for n, worker in enumerate(("../../../etc/passwd", 7)):
        (state.path / f"current-x{n}.json").write_text(json.dumps({**record, "worker": worker}))
    assert [c.worker for c in state.worker_runs()] == ["w1"]


def test_a_record_the_agent_made_a_fifo_or_a_link_to_a_device_is_no_record(tmp_path):
    """status and the dashboard read the state folder's records: a FIFO there must not hold them,
    a link to /dev/zero must not fill their memory, a link to a file must not show it."""
    import json

    from autoresearch.state import StateFolder

    state = StateFolder(tmp_path)
    state.path.mkdir()
    os.mkfifo(state.path / "current.json")
    (state.path / "loop.json").symlink_to("/dev/zero")
    assert state.current() is None and state.loop() is None
    (state.path / "loop.json").unlink()
    (tmp_path / "elsewhere.json").write_text(json.dumps({"state": "running"}))
    (state.path / "loop.json").symlink_to(tmp_path / "elsewhere.json")
    assert state.loop() is None
