"""Small file helpers every layer uses: whole-or-nothing writes and reading the end of a file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: once, at import, before any thread
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, never a torn one:
    a new file beside it (a name of its own, made with O_EXCL), fsynced, renamed over `path`.

    A link planted at `path` is replaced, never written through. The file gets the permissions
    a plain open() would give a new file (0o666 less the umask, 0644 usually), not mkstemp's
    private 0600; an existing regular file's executable bits stay. On any error the new file
    is removed and `path` is as it was."""
    path = Path(path)
    try:
        st = os.lstat(path)
        executable = stat.S_IMODE(st.st_mode) & 0o111 if stat.S_ISREG(st.st_mode) else 0
    except OSError:
        executable = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), (0o666 | executable) & ~_UMASK)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_tail(path: Path, limit: int) -> str | None:
    """The last `limit` bytes of a file as text, a cut first line dropped; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    return text.split("\n", 1)[-1] if size > limit else text


def open_unlinked(path: Path, *, append: bool = False):
    """`path` opened for binary writing, never through a link: a link planted in its place is
    removed first, and O_NOFOLLOW refuses one that appears in between. (run.log is in the
    workspace, where the agent writes: a link there must not aim the run's output at a file
    of the engine's.)"""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o666), "ab" if append else "wb", buffering=0)


def real_folder(path: Path) -> Path:
    """`path` as a folder of its own: a link or a file in its place is removed, then it is made."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path
