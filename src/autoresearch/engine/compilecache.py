"""Compile caches kept between runs of one commit (the `compile_cache` setting, off by default).

A run compiles into its own scratch cache folder (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR
under /scratch/cache). With the setting on, the engine keeps a copy of that folder after the
first run of a commit that measured, in its private folder (`compile/<commit>`), and copies
it into the cache folder of later runs of the same commit that are re-runs of the frontier
or baseline runs, so that those compile warm.

Who can touch what (docs/trust.md):
- a cache is written from the first measured run of its commit that finds none kept (the first,
  or the first after the cache was pruned); no run writes into one that is kept;
- it is read only by re-runs of the frontier and later baseline runs of that same commit: never
  by another commit's runs, never by a candidate's own runs (the runs that decide whether a
  change is kept always compile cold), never by the evaluator (it has a cache of its own);
- what is kept is a copy of regular files only (no links, no devices, no FIFOs), at most
  MAX_BYTES and MAX_ENTRIES, and at most 1/(2 KEEP) of the disk space free when it is kept, and
  each run gets a fresh copy, so nothing a run writes reaches another run.

What a run leaves in its cache folder is not inspected: a commit's first run can leave
anything there (its trained weights, say) for the frontier's re-runs of that commit to read.
That can make a kept change's later runs look better than its first, never a change get kept.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from autoresearch import pins
from autoresearch.files import remove_tree

READERS = ("rerun", "baseline")  # the kinds of run that get a warm cache
MAX_BYTES = 4 << 30  # a cache larger than this is not kept (an Inductor cache of one model is MBs)
MAX_DEPTH = 32  # folders deep: Inductor's and Triton's caches are a few
# files and folders: a model's caches hold hundreds to a few thousand; empty files cost no bytes
# but an inode each, and the kept caches of KEEP commits must not use up the disk's inodes
MAX_ENTRIES = 20_000
KEEP = 8  # the caches of this many commits are kept, the most recently used
NEVER = ("finalize",)  # kinds whose commits are never run as a frontier: nothing of theirs is kept
_lock = threading.Lock()  # a pool's workers are threads: one keeps or prunes at a time


class CompileCache:
    def __init__(self, root: Path):
        self.root = root  # the engine's private folder for caches: one folder per commit

    @classmethod
    def of(cls, ws_root: Path) -> "CompileCache":
        return cls(pins.private_dir(ws_root) / "compile")

    def _folder(self, commit: str) -> Path:
        return self.root / commit

    def seed(self, commit: str, kind: str, into: Path, owner: int | None) -> bool:
        """Copy the commit's kept cache into a run's fresh cache folder `into`; whether it did.
        A cache that cannot be read (pruned meanwhile, a file the engine may not read) is no cache."""
        kept = self._folder(commit)
        if kind not in READERS:
            return False
        with _lock:
            try:
                if not kept.is_dir():
                    return False
                os.utime(kept)  # recently used: kept longer
                if copy_regular(kept, into, owner=owner) is not None:
                    return True
            except OSError:
                pass
        _empty(into, owner)  # a copy cut short is no cache: the run compiles cold
        return False

    def keep(self, commit: str, kind: str, run_cache: Path) -> bool:
        """After a measured run of `commit`: its cache folder kept, when the commit has none yet.
        Whatever goes wrong here costs the next runs a warm compile, never this run's measurement."""
        if kind in NEVER:
            return False
        with _lock:
            if self._folder(commit).exists():
                return False
            tmp = None
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                for left in self.root.glob(".*"):  # a copy cut short by a kill: never kept, so never read
                    remove_tree(left)
                tmp = Path(tempfile.mkdtemp(prefix=f".{commit}.", dir=self.root))
                # KEEP caches must leave the disk room for the research: each at most a share of what is free
                limit = min(MAX_BYTES, shutil.disk_usage(self.root).free // (2 * KEEP))
                if copy_regular(run_cache, tmp / "cache", owner=None, limit=limit) is None:
                    return False
                os.replace(tmp / "cache", self._folder(commit))
                self._prune()
                return True
            except OSError:
                return False
            finally:
                if tmp is not None:
                    remove_tree(tmp)

    def _prune(self) -> None:
        """Only the KEEP most recently used commits' caches stay."""
        folders = sorted((p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in folders[KEEP:]:
            remove_tree(old)


def _empty(folder: Path, owner: int | None) -> None:
    remove_tree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(folder, owner, owner)


def copy_regular(src: Path, dst: Path, *, owner: int | None, limit: int = MAX_BYTES,
                 entries: int = MAX_ENTRIES) -> int | None:
    """Copy the regular files and folders under `src` to `dst` (made if missing), owned by
    `owner` when given: links, devices, FIFOs and sockets are left behind, so that reading a
    run's folder can never block or leave it. The bytes copied, or None past `limit` or past
    MAX_DEPTH folders deep (os.walk recurses: a run's folder nested a thousand deep would
    overflow the stack) or past `entries` files and folders."""
    total = made = 0
    for dirpath, dirnames, filenames in os.walk(src):  # never follows a link to a folder
        here = dst / Path(dirpath).relative_to(src)
        made += 1 + len(filenames)
        if len(here.relative_to(dst).parts) >= MAX_DEPTH and dirnames or made > entries:
            return None
        here.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(here, owner, owner)
        dirnames[:] = [d for d in dirnames if stat.S_ISDIR(os.lstat(os.path.join(dirpath, d)).st_mode)]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as source:
                total += os.fstat(source.fileno()).st_size
                if total > limit:
                    return None
                with open(here / name, "xb") as target:
                    shutil.copyfileobj(source, target)
            if owner is not None:
                os.chown(here / name, owner, owner)
    return total
