"""Where an archive's bytes come from: a regular file, or a pipe read as a stream.

``lhymirror verify <(cat X.tar.gz)`` and ``cat X.tar | lhymirror verify /dev/stdin`` give a
pipe: it cannot seek, so only tar (read front to back) can come from one; a zip keeps its
directory at the end and must be saved to a file first. Devices (``/dev/zero`` never ends),
sockets and other special files are refused by their type, before a byte is read, and a FIFO
is opened without waiting for a writer, so nothing can hang or grow without limit here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lhymirror.core.errors import UsageError, storage_errors
from lhymirror.core.fsutil import CHUNK_SIZE, read_buffer

HEAD_SIZE = 512  # one tar block: enough to tell every supported format apart


@dataclass
class ArchiveInput:
    """An opened archive: its stream (a pipe's first bytes replayed), and what it allows."""

    stream: BinaryIO
    head: bytes  # the first HEAD_SIZE bytes (fewer when the input is shorter)
    seekable: bool  # a regular file; False for a pipe
    size: int | None  # None for a pipe


def open_input(path: Path) -> ArchiveInput:
    """Open *path* for reading as an archive; ``UsageError`` for what can never be one."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise UsageError(
            "cannot read the archive", where=str(path), detail=exc.strerror or str(exc)
        ) from exc
    if stat.S_ISREG(mode):
        with storage_errors(path):
            stream = path.open("rb")
        head = stream.read(HEAD_SIZE)
        stream.seek(0)
        return ArchiveInput(stream, head, True, os.fstat(stream.fileno()).st_size)
    if not stat.S_ISFIFO(mode):
        raise UsageError(
            "not an archive",
            where=str(path),
            detail=f"a {_special_kind(mode)}, not a file",
            hint="Give the .zip / .tar / .tar.gz file `lhymirror pack` wrote, or a bag folder.",
        )
    return _open_pipe(path)


def _open_pipe(path: Path) -> ArchiveInput:
    # O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait forever. Reads block
    # again afterwards; with no writer they end at once (empty input).
    with storage_errors(path):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    os.set_blocking(fd, True)
    stream = os.fdopen(fd, "rb")
    head = stream.read(HEAD_SIZE)
    if not head:
        stream.close()
        raise UsageError(
            "nothing to read",
            where=str(path),
            detail="the pipe is empty or nothing writes to it",
            hint="Give the archive file itself, or start the program that writes to the pipe.",
        )
    replay = io.BufferedReader(_Replay(head, stream), CHUNK_SIZE)
    return ArchiveInput(replay, head, False, None)


def _special_kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"


class _Replay(io.RawIOBase):
    """A pipe whose first bytes were already read to detect the format: gives them again."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._rest.close()
        super().close()


class FileHasher:
    """sha256 of a whole regular file, computed by a helper thread while the caller reads it.

    The helper reads with positional reads (``os.preadv``) into one reused buffer, so it shares
    no file offset with the caller's reads of the members and allocates nothing per chunk: the
    two reads run side by side on two cores, and whichever comes second finds the bytes in the
    page cache (they advance through the file at about the same pace).
    """

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._fd = stream.fileno()
        self._path = path
        self._digest = hashlib.sha256()
        self._error: OSError | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                view = stack.enter_context(read_buffer())
                read_at = _positional_reader(self._fd, self._path, stack)
                offset = 0
                while not self._stopping.is_set() and (n := read_at(view, offset)):
                    self._digest.update(view[:n])
                    offset += n
        except OSError as exc:
            self._error = exc

    def hexdigest(self) -> str:
        """sha256 of the whole file (waits for the helper); raises the OSError it met."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def stop(self) -> None:
        """Stop hashing (the reader is being closed, with or without asking for the result)."""
        self._stopping.set()
        self._thread.join()


def _positional_reader(
    fd: int, path: Path, stack: contextlib.ExitStack
) -> Callable[[memoryview, int], int]:
    """``read_at(buffer, offset)``: fills *buffer* from *offset* without moving a shared offset."""
    preadv = getattr(os, "preadv", None)
    if preadv is not None:
        return lambda buffer, offset: int(preadv(fd, [buffer], offset))
    own = stack.enter_context(path.open("rb", buffering=0))  # no preadv (Windows): own handle

    def read_at(buffer: memoryview, offset: int) -> int:
        own.seek(offset)
        return own.readinto(buffer) or 0

    return read_at
