"""A run may fill at most half of the disk (space and inodes) that was free when it started.

A run can allocate gigabytes in milliseconds (`fallocate`) and exit before the supervisor's
next tick: the share is checked at each tick and once more when the process exits, before the
engine writes anything of the run, so a run that filled the disk is the run's failure and the
engine goes on."""

from __future__ import annotations

import io
import os
import sys

from autoresearch import proc
from autoresearch.engine import diskguard
from autoresearch.engine.guard import Guard
from autoresearch.engine.lifecycle import Pen
from autoresearch.engine.measure import Limits
from autoresearch.engine.diskguard import DiskGuard
from autoresearch.engine.runner import Runner
from autoresearch.store import Journal
from support import blank, head

MiB = 1 << 20


def test_a_run_that_fills_the_disk_is_stopped_by_the_disk_guard(tmp_path):
    """A real process writes 4 MiB every 50 ms into a real folder; the guard allows 32 MiB."""
    writer = ("import os, time\n"
              "with open('big', 'wb') as fh:\n"
              "    for _ in range(200):\n"
              "        fh.write(os.urandom(4 << 20)); fh.flush(); os.fsync(fh.fileno()); time.sleep(0.05)\n")
    guard = DiskGuard(tmp_path, allowed=32 * MiB)
    outcome = proc.supervise([sys.executable, "-c", writer], tmp_path, dict(os.environ), tmp_path / "run.log", 120,
                             stop_when=guard, tick=0.1)
    assert outcome.returncode is None and outcome.error.startswith("over its disk share: the run wrote more than")
    assert (tmp_path / "big").stat().st_size < 200 * (4 << 20)  # stopped long before the end
    assert outcome.seconds < 60


def test_a_run_that_fills_the_disk_and_exits_before_a_tick_is_stopped_all_the_same(tmp_path):
    """fallocate and exit 0 at once: no tick ever saw it; the check at the exit does."""
    filler = "import os\nfd = os.open('big', os.O_CREAT | os.O_WRONLY)\nos.posix_fallocate(fd, 0, 64 << 20)\n"
    guard = DiskGuard(tmp_path, allowed=32 * MiB)
    outcome = proc.supervise([sys.executable, "-c", filler], tmp_path, dict(os.environ), tmp_path / "run.log", 120,
                             stop_when=guard, tick=60)
    assert outcome.returncode == 0 and not outcome.error  # exited long before its first tick
    stopped = guard.after(outcome)
    assert stopped.returncode is None and stopped.error.startswith("over its disk share")
    (tmp_path / "big").unlink()
    assert guard.after(outcome) == outcome  # the space back: an exit is as it was


def test_a_run_that_uses_up_the_inodes_is_stopped(tmp_path):
    """A disk can be filled with empty files too: the inodes are counted like the space."""
    guard = DiskGuard(tmp_path)
    if guard.inode_floor is None:  # pragma: no cover - a file system without an inode count
        return
    free = os.statvfs(tmp_path).f_favail
    guard.inode_floor = free - 100  # as if half of the free inodes were 100
    for i in range(50):
        (tmp_path / f"f{i}").touch()
    assert guard() == ""
    for i in range(50, 400):
        (tmp_path / f"f{i}").touch()
    assert guard().startswith("over its disk share: the run made more files")


def test_the_engine_records_a_run_that_filled_the_disk_and_exited_as_the_runs_failure(tmp_path, monkeypatch):
    """Through the real Runner and its sandbox: a program that allocates past its share and exits
    0 before the first tick is a failed run whose reason says so, its score never read; its
    scratch folder (and the space) is gone after the run."""
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    monkeypatch.setattr(diskguard, "DISK_SHARE", 32 * MiB / free)  # a share of about 32 MiB
    program = ("import os\nfd = os.open('big', os.O_CREAT | os.O_WRONLY)\n"
               "os.posix_fallocate(fd, 0, 256 << 20)\nprint('score: 0.0')\n")
    ws = blank(tmp_path, program, budget=60)
    sha = head(ws.root)
    runner = Runner(ws, Limits.of(ws.config), Guard(ws), stream=io.StringIO(), live=False)
    pen = Pen(ws.store, "test", Journal(branch="test", frontier=sha, kind="baseline", description="fill",
                                        candidate=sha))
    m = runner.run(sha, pen, kind="baseline", description="fill")
    pen.close()
    assert not m.ok and m.value is None
    assert "over its disk share" in m.reason
    assert os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize > free - 32 * MiB  # the space is back
