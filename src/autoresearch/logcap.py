"""A run's output copied into its log file with a cap, by a thread reading the run's pipe
(`proc.supervise` starts it), so that a run printing faster than the disk takes is never
blocked on its pipe and never fills the disk."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from typing import BinaryIO

# A run's log keeps the first LOG_HEAD_BYTES of its output and the last LOG_TAIL_BYTES; what
# lies between is dropped, and one line says so at the cut (cut_line). A run printing 1.5 GB
# in seconds thus leaves a log of about 5 MiB, with how it started and how it ended.
LOG_HEAD_BYTES = 1024 * 1024
LOG_TAIL_BYTES = 4 * 1024 * 1024
LOG_FLUSH_SECONDS = 0.5  # once output was dropped, the kept tail is rewritten this often
LOG_DRAIN_SECONDS = 1.0  # after the group was killed: at most this long to read what is left
_READ_BYTES = 1024 * 1024  # one read from the pipe, and the pipe size asked for (Linux)
_ALIGN_BYTES = 64 * 1024  # the kept tail starts at a line when one starts this close to the cut
_WAKE_SECONDS = 0.1  # how soon the reader notices it was told to stop


def cut_line(dropped: int, head: int, tail: int) -> bytes:
    """The line written where a log's output was dropped."""
    return (f"[autoresearch: {dropped} bytes of output dropped here; "
            f"run.log keeps the first {head} and the last {tail} bytes]\n").encode()


class Tee:
    """The log file the engine reads, and a copy shown in the workspace for people and the agent:
    every write, seek and cut goes to both. The shown copy can be written to, moved or replaced
    by the agent meanwhile; the engine's is where the agent does not write. An error on the
    shown copy stops only that copy."""

    def __init__(self, own: BinaryIO, shown: BinaryIO):
        self.own, self.shown = own, shown

    def _also(self, name: str, *args) -> None:
        if self.shown is not None:
            try:
                getattr(self.shown, name)(*args)
            except OSError:
                with contextlib.suppress(OSError):
                    self.shown.close()
                self.shown = None

    def write(self, data: bytes) -> int:
        written = self.own.write(data)
        self._also("write", data)
        return written

    def seek(self, offset: int) -> int:
        self._also("seek", offset)
        return self.own.seek(offset)

    def truncate(self) -> int:
        self._also("truncate")
        return self.own.truncate()

    def close(self) -> None:
        self._also("close")
        self.own.close()

    def __enter__(self) -> "Tee":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CappedLog:
    """A thread that copies a pipe into a log file with a cap: the first `head` bytes go
    straight through, the rest into a ring of the last `tail` bytes (and more bytes). While
    nothing was dropped the file is the output itself; from the first dropped byte on, the
    part after the head (cut line and tail) is rewritten every LOG_FLUSH_SECONDS, so a reader
    tailing the file live sees the recent output. A write error (disk full) stops the writing,
    never the reading: the run is never blocked on its pipe."""

    def __init__(self, fd: int, log: BinaryIO, head: int, tail: int):
        self.fd, self.log, self.head_cap, self.tail_cap = fd, log, max(0, head), max(0, tail)
        self.head = 0  # bytes of the head written
        self.head_ends_line = True
        self.total = 0  # bytes read from the pipe
        self.ring: deque[bytes] = deque()  # the output after the head, trimmed to about tail_cap
        self.ring_bytes = 0
        self.cut = False  # output was dropped: the part after the head is rewritten
        self.dirty = False  # the ring holds bytes the file does not show yet
        self.dropped = 0
        self.write_error: OSError | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="run.log", daemon=True)
        self.thread.start()

    def close(self) -> int:
        """Stop reading (what is still in the pipe is read for up to LOG_DRAIN_SECONDS, so a
        process outside the group that holds the pipe open cannot hold us), write the final
        tail, close the file; the bytes dropped."""
        self.stopping.set()
        self.thread.join()
        self.log.close()
        return self.dropped

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        flushed, drain_until = time.monotonic(), None
        try:
            while True:
                if drain_until is None and self.stopping.is_set():
                    drain_until = time.monotonic() + LOG_DRAIN_SECONDS
                events = poller.poll(0 if drain_until is not None else _WAKE_SECONDS * 1000)
                if events:
                    data = os.read(self.fd, _READ_BYTES)  # POLLHUP with nothing left: b""
                    if not data:
                        break
                    self._take(data)
                elif drain_until is not None:
                    break  # told to stop and the pipe is empty
                now = time.monotonic()
                if drain_until is not None and now >= drain_until:
                    break
                if self.dirty and now - flushed >= LOG_FLUSH_SECONDS:
                    self._rewrite()
                    flushed = now
        except OSError:
            pass
        finally:
            if self.dirty:
                self._rewrite()

    def _take(self, data: bytes) -> None:
        self.total += len(data)
        if self.head < self.head_cap:
            part = data[: self.head_cap - self.head]
            self._write(part)
            self.head += len(part)
            self.head_ends_line = part.endswith(b"\n")
            data = data[len(part):]
            if not data:
                return
        self.ring.append(data)
        self.ring_bytes += len(data)
        # keep one byte more than the tail: whether the kept tail starts a line
        while self.ring_bytes - len(self.ring[0]) > self.tail_cap:
            self.ring_bytes -= len(self.ring.popleft())
        if not self.cut and self.total <= self.head_cap + self.tail_cap:
            self._write(data)  # nothing dropped yet: straight through
        else:
            self.cut = self.dirty = True

    def _rewrite(self) -> None:
        """Write the cut line and the tail after the head, the file cut after them."""
        self.dirty = False
        kept = b"".join(self.ring)
        tail = kept[len(kept) - self.tail_cap:] if self.tail_cap else b""
        if len(kept) > len(tail) and kept[len(kept) - len(tail) - 1:][:1] != b"\n":
            start = tail.find(b"\n", 0, _ALIGN_BYTES)  # the cut line alone, the first kept line whole
            if 0 <= start < len(tail) - 1:
                tail = tail[start + 1:]
        self.dropped = self.total - self.head - len(tail)
        line = cut_line(self.dropped, self.head_cap, self.tail_cap)
        if not self.head_ends_line:
            line = b"\n" + line
        if self.write_error is None:
            try:
                self.log.seek(self.head)
                self.log.write(line + tail)
                self.log.truncate()
            except OSError as exc:
                self.write_error = exc

    def _write(self, data: bytes) -> None:
        if self.write_error is None:
            try:
                self.log.write(data)
            except OSError as exc:
                self.write_error = exc


def widen_pipe(fd: int) -> None:
    """Ask for a larger pipe (Linux): fewer switches between a fast writer and its reader."""
    import fcntl

    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _READ_BYTES)
