"""Where an archive's bytes come from: a regular file, or a pipe read as a stream.

``lhymirror verify <(cat X.tar.gz)`` and ``cat X.tar | lhymirror verify /dev/stdin`` give a
pipe: it cannot seek, so only tar (read front to back) can come from one; a zip keeps its
directory at the end and must be saved to a file first. Devices (``/dev/zero`` never ends),
sockets and other special files are refused by their type, before a byte is read, and a FIFO
is opened without waiting for a writer, so nothing can hang or grow without limit here.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lhymirror.core.errors import UsageError, storage_errors
from lhymirror.core.fsutil import CHUNK_SIZE, ThreadedDigest

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


class SequentialHasher:
    """File wrapper that hashes the file's bytes in order as the reader's reads pass over them.

    The archive is thus read once for both its members and its own checksum; the hashing itself
    runs in a helper thread (:class:`~lhymirror.core.fsutil.ThreadedDigest`). Reads that continue
    where hashing stopped are hashed as they pass; small gaps are read once more; anything else
    (a zip's central directory, read first) waits for :meth:`hexdigest`.
    """

    _MAX_GAP = CHUNK_SIZE

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pos = 0
        self._hashed = 0
        self._digest = ThreadedDigest()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset, whence = self._pos + offset, io.SEEK_SET
        self._pos = self._raw.seek(offset, whence)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if 0 < self._pos - self._hashed <= self._MAX_GAP:
            self._catch_up(self._pos)
        self._raw.seek(self._pos)
        data = self._raw.read(size)
        start, self._pos = self._pos, self._pos + len(data)
        if start <= self._hashed < self._pos:
            self._digest.update(memoryview(data)[self._hashed - start :])
            self._hashed = self._pos
        return data

    def _catch_up(self, target: int | None) -> None:
        self._raw.seek(self._hashed)
        while target is None or self._hashed < target:
            want = CHUNK_SIZE if target is None else min(CHUNK_SIZE, target - self._hashed)
            chunk = self._raw.read(want)
            if not chunk:
                break
            self._digest.update(chunk)
            self._hashed += len(chunk)
        self._raw.seek(self._pos)

    def hexdigest(self) -> str:
        """sha256 of the whole file (reads whatever the reader skipped)."""
        self._catch_up(None)
        return self._digest.hexdigest()

    def stop(self) -> None:
        """Drop the hashing (the reader was closed before the result was asked for)."""
        self._digest.close()
