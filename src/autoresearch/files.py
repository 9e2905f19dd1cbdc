"""Small file helpers every layer uses: whole-or-nothing writes, reading the end of a file, and
removing a folder a run wrote, whatever it made of it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import uuid
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: once, at import, before any thread
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def atomic_write(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` (or bytes) so that a reader sees the old or the new file, never a torn one:
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
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            os.fchmod(fh.fileno(), (0o666 | executable) & ~_UMASK)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_own(path: Path):
    """`path` opened for reading only when it is a regular file of its own: not through a link
    (at its last name), not a FIFO or a device (opened without blocking), else OSError."""
    fh = open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)), "rb")
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise OSError(f"{path} is not a regular file")
    return fh


def read_own(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The bytes of the regular file at `path`, at most `limit` of them; None when there is none,
    it is a link, a FIFO or a device, or it is larger. For files the agent can write: a link must
    not bring another file in, a FIFO must not hold the engine, /dev/zero must not fill it."""
    try:
        with _open_own(path) as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def read_tail(path: Path, limit: int) -> str | None:
    """The last `limit` bytes of a file as text, a cut first line dropped; None when unreadable,
    a link or not a regular file (logs lie where the agent writes: a link there must not show
    another file, a FIFO must not hold the reader)."""
    try:
        with _open_own(path) as fh:
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


def behind_a_link(root: Path, path: str) -> bool:
    """Whether a folder on the way from `root` to `path` (relative, with slashes) is a link or
    a file: writing there would land elsewhere, and git refuses such a path. (Folders that do
    not exist yet are made new.)"""
    here = Path(root)
    for part in path.split("/")[:-1]:
        here = here / part
        if not os.path.lexists(here):
            return False
        if here.is_symlink() or not here.is_dir():
            return True
    return False


def real_folder(path: Path) -> Path:
    """`path` as a folder of its own: a link or a file in its place is removed, then it is made."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def remove_tree(path: Path) -> None:
    """Remove `path` and all under it, as deep as a run may have nested it: no recursion (a
    folder nested a thousand deep would overflow Python's stack in shutil.rmtree) and no path
    longer than two names (each sub-folder is moved up beside the top before it is emptied).
    Never follows a link; a folder a run made read-only is made writable first. A file or a
    link at `path` is unlinked. What cannot be removed stays, without an error: this runs in
    clean-ups, where an error would hide the one that matters."""
    path = Path(path)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)  # a folder, not a link (just looked): readable to be opened
        top = os.open(path, _FOLDER)
    except OSError:
        return
    tag = uuid.uuid4().hex[:12]
    moved = 0
    try:
        todo: list[str | None] = [None]  # None: the top folder itself; else a folder in it
        while todo:
            name = todo.pop()
            try:
                fd = top if name is None else os.open(name, _FOLDER, dir_fd=top)
            except OSError:
                continue
            try:
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o700)
                with os.scandir(fd) as found:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in found]
                for entry, is_dir in entries:
                    with contextlib.suppress(OSError):
                        if not is_dir:
                            os.unlink(entry, dir_fd=fd)
                            continue
                        # opening a folder needs it readable, moving it writable (its ".." changes);
                        # the run that made it 000 or 0500 has ended, so this follows no swapped link
                        with contextlib.suppress(OSError):
                            os.chmod(entry, 0o700, dir_fd=fd)
                        if name is None:
                            todo.append(entry)
                        else:
                            moved += 1
                            up = f".removing-{tag}-{moved}"
                            os.rename(entry, up, src_dir_fd=fd, dst_dir_fd=top)
                            todo.append(up)
            except OSError:
                pass
            finally:
                if fd != top:
                    os.close(fd)
            if name is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(path)
