"""The disk share of one run: what it may fill of the disk under its scratch folder.

A run writes into its scratch folder on the host's disk (its copy of the code, its home, its
hand-over, its compile cache); the engine needs room on that disk to record the run, and the
next run to start. Nothing here knows about sandboxes or runs: a folder, a share, a check.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from autoresearch import proc

DISK_SHARE = 0.5


class DiskGuard:
    """Stops a run that fills the disk: it may use at most DISK_SHARE of the space, and of the
    inodes, that were free under its scratch folder when it started (the engine needs room to
    record it, and the next run to start). Checked at each tick of the supervisor and once more
    when the trainer and the evaluator exit (a run can fill a disk in milliseconds and exit
    before the next tick), with statvfs: cheap, whatever the number of files."""

    def __init__(self, folder: Path, allowed: int | None = None):
        self.folder = folder
        free, inodes = self._free()
        self.allowed = allowed if allowed is not None else int(free * DISK_SHARE)
        self.floor = free - self.allowed
        # a file system that reports no inode count (some do: 0 files) is checked for space only
        self.inode_floor = inodes - int(inodes * DISK_SHARE) if inodes > 0 else None

    def _free(self) -> tuple[int, int]:
        st = os.statvfs(self.folder)
        return st.f_bavail * st.f_frsize, (st.f_favail if st.f_files > 0 else 0)

    def __call__(self) -> str:
        try:
            free, inodes = self._free()
        except OSError:
            return ""
        if free < self.floor:
            return (f"over its disk share: the run wrote more than {self.allowed / 2**30:.2f} GiB "
                    f"(a run may fill {100 * DISK_SHARE:g} % of the disk space free when it starts)")
        if self.inode_floor is not None and inodes < self.inode_floor:
            return (f"over its disk share: the run made more files than the disk had room for "
                    f"(a run may use {100 * DISK_SHARE:g} % of the inodes free when it starts)")
        return ""

    def after(self, outcome: proc.RunOutcome) -> proc.RunOutcome:
        """`outcome` of a process that exited, stopped after all if it left the disk over its share."""
        over = "" if outcome.error or outcome.timed_out else self()
        return replace(outcome, returncode=None, error=over) if over else outcome
