"""Reproducible archive writers: zip, tar and tar.gz with every varying field pinned.

The same members give byte-identical archives on any machine and at any time:

* members must be added in strictly increasing name order (the writer refuses anything else);
* every member gets the same timestamp (for zip clamped to 1980-01-01 .. 2107-12-31, the range
  its DOS date can hold), files mode 0644 and folders 0755, uid/gid 0 and no user/group names;
* tar uses the POSIX pax format (pax headers only where ustar cannot hold a name or size);
  tar.gz has no file name and a zero time in its gzip header;
* a zip stores every member as is (no deflate), and tar.gz has a fixed compression level.
  Deflated bytes depend on the zlib build (a Python linked with another deflate implementation,
  e.g. zlib-ng, gives different but equally valid bytes), so only a zip or plain tar is
  byte-identical on every platform; a tar.gz is so on platforms with the same zlib.

Why a zip stores even text: a course is almost all PDFs, videos and compressed datasets (the
2022 manifest: 7 MB of text, CSV and notebooks in 2.9 GB), so deflating the text saves a few
MB, while it costs pack, verify and every extraction about 10 ms per MB of text on one core,
and verify reads stored members straight into its buffers. ``tar.gz`` is there for whoever
wants everything compressed.

Payload is streamed from a file object in :data:`~lhymirror.core.fsutil.CHUNK_SIZE` pieces and
hashed on the way, so memory stays constant whatever the file size.
"""

from __future__ import annotations

import calendar
import contextlib
import gzip
import hashlib
import io
import mmap
import queue
import tarfile
import threading
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from lhymirror.core.fsutil import CHUNK_SIZE, DIR_MODE, FILE_MODE, aligned_buffer
from lhymirror.core.streams import Reads

FORMATS = ("zip", "tar", "tar.gz")
FORMAT_EXTENSIONS = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz"}
# tar.gz's, pinned so the output never drifts; level 1 deflates text about 6x faster than
# level 6 for about 10% more bytes (most payload is already compressed).
COMPRESS_LEVEL = 1
ZIP_MIN_EPOCH = calendar.timegm((1980, 1, 1, 0, 0, 0))
ZIP_MAX_EPOCH = calendar.timegm((2107, 12, 31, 23, 59, 58))

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Copied:
    """What a streamed member turned out to hold.

    ``size`` is the number of bytes read from the source (at most the size announced);
    ``trailing`` is true when the source still had bytes after that: the file grew.
    """

    size: int
    sha256: str
    trailing: bool = False


def archive_extension(fmt: str) -> str:
    """File name extension of an archive format: ``.zip``, ``.tar``, ``.tar.gz``."""
    try:
        return FORMAT_EXTENSIONS[fmt]
    except KeyError:
        raise ValueError(f"unknown archive format {fmt!r}") from None


def zip_date_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    """A zip member's date and time (UTC) for *epoch*, clamped to what zip can store."""
    clamped = min(max(epoch, ZIP_MIN_EPOCH), ZIP_MAX_EPOCH)
    return time.gmtime(clamped)[:6]


class ArchiveWriter(ABC):
    """Writes members, in strictly increasing name order, to one archive stream."""

    def __init__(self, mtime: int) -> None:
        self.mtime = int(mtime)
        self._last_name: str | None = None

    def add_directory(self, name: str) -> None:
        """Add a folder entry (``name`` without a trailing slash)."""
        self._check_order(name + "/")
        self._write_directory(name)

    def add_bytes(self, name: str, data: bytes) -> None:
        """Add a small member held in memory (a tag file)."""
        self._check_order(name)
        self._write_stream(name, io.BytesIO(data), len(data))

    def add_stream(
        self,
        name: str,
        stream: Reads,
        size: int,
        *,
        progress: ProgressCallback | None = None,
    ) -> Copied:
        """Copy *size* bytes of *stream* into a member, hashing them as they pass.

        If *stream* ends early the member is completed with zero bytes (so the archive stays
        well-formed) and ``Copied.size`` tells how much was really read; the caller must then
        discard the archive.
        """
        self._check_order(name)
        reader = HashingReader(stream, size, progress=progress)
        self._write_stream(name, reader, size)
        return reader.result()

    @abstractmethod
    def _write_directory(self, name: str) -> None: ...

    @abstractmethod
    def _write_stream(self, name: str, stream: Reads, size: int) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the archive (end records); the target stream is left open."""

    @abstractmethod
    def abandon(self) -> None:
        """Give up an unfinished archive: nothing more is written (the caller discards it)."""

    def _check_order(self, name: str) -> None:
        if self._last_name is not None and name <= self._last_name:
            raise ValueError(f"archive members out of order: {name!r} after {self._last_name!r}")
        self._last_name = name


class HashingReader:
    """Reads at most *limit* bytes from *stream*, hashing them; pads with zeros if it ends early.

    The member's sha256 is computed on the calling thread, before the bytes are handed on: a
    buffer filled by :meth:`readinto` goes to the archive's writer thread next and is reused.
    """

    def __init__(
        self, stream: Reads, limit: int, *, progress: ProgressCallback | None = None
    ) -> None:
        self._stream = stream
        self._remaining = limit
        # On the calling thread: a third thread (tried) loses more to GIL hand-offs on two
        # cores than it gains, as the archive's writer thread already hashes the other pass.
        self._digest = hashlib.sha256()
        self._read = 0
        self._short = False
        self._progress = progress

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of *buffer* from a stream that can ``readinto``; 0 at the end."""
        want = min(len(buffer), self._remaining)
        got = 0
        while got < want and not self._short:
            n = self._stream.readinto(buffer[got:want]) or 0  # type: ignore[attr-defined]
            self._short = not n
            got += n
        self._digest.update(buffer[:got])
        self._account(got, want)
        buffer[got:want] = bytes(want - got)  # zeros after an early end (see _account)
        return want

    def read(self, size: int = -1) -> bytes:
        """Up to *size* bytes (never more than one chunk, whatever is asked)."""
        want = CHUNK_SIZE if size is None or size < 0 else min(size, CHUNK_SIZE)
        want = min(want, self._remaining)
        pieces = []
        got = 0
        while got < want and not self._short:
            piece = self._stream.read(want - got)
            self._short = not piece
            self._digest.update(piece)
            pieces.append(piece)
            got += len(piece)
        self._account(got, want)
        if got < want:
            pieces.append(bytes(want - got))  # zeros after an early end (see _account)
        return b"".join(pieces) if len(pieces) != 1 else pieces[0]

    def _account(self, got: int, want: int) -> None:
        # A source that ends early is padded with zeros to the member's announced size, so the
        # archive stays well-formed; the caller sees the short size in result() and discards it.
        self._read += got
        if self._progress is not None and got:
            self._progress(got)
        self._remaining -= want

    def result(self) -> Copied:
        """Size and sha256 of the bytes really read, and whether the source had more."""
        trailing = not self._short and bool(self._stream.read(1))
        return Copied(self._read, self._digest.hexdigest(), trailing)


class ZipArchiveWriter(ArchiveWriter):
    """A zip with Unix modes, fixed times and stored members (see the module's docstring)."""

    def __init__(self, target: BinaryIO, mtime: int) -> None:
        super().__init__(mtime)
        self._zip = zipfile.ZipFile(target, mode="w", allowZip64=True)
        self._lender = target if isinstance(target, HashingSink) else None
        self._date_time = zip_date_time(self.mtime)

    def _info(self, name: str, mode: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self._date_time)
        info.create_system = 3  # Unix, whatever the machine: unzip then applies the modes below
        info.external_attr = mode << 16
        info.compress_type = zipfile.ZIP_STORED
        return info

    def _write_directory(self, name: str) -> None:
        info = self._info(name + "/", 0o040000 | DIR_MODE)
        info.external_attr |= 0x10  # MS-DOS directory flag, for Windows tools
        self._zip.writestr(info, b"")

    def _write_stream(self, name: str, stream: Reads, size: int) -> None:
        info = self._info(name, 0o100000 | FILE_MODE)
        info.file_size = size  # lets zipfile choose zip64 headers from the size, deterministically
        lender = self._lender
        with self._zip.open(info, mode="w") as member:
            if lender is None or not hasattr(stream, "readinto"):
                while chunk := stream.read(CHUNK_SIZE):
                    member.write(chunk)
                return
            # Stored data goes from the file into a lent buffer and on to the writer thread
            # without a copy (a fresh 1 MiB object per chunk costs more than the copy itself).
            while n := stream.readinto(view := lender.borrow()):
                member.write(view[:n])
            lender.give_back(view)

    def close(self) -> None:
        """Write the central directory."""
        self._zip.close()

    def abandon(self) -> None:
        """Drop the file so that zipfile never writes a central directory into it."""
        self._zip.fp = None


class TarArchiveWriter(ArchiveWriter):
    """A pax-format tar (optionally gzip-compressed) with normalised owners, modes and times."""

    def __init__(self, target: BinaryIO, mtime: int, *, gzip_level: int | None = None) -> None:
        super().__init__(mtime)
        self._gzip: gzip.GzipFile | None = None
        if gzip_level is not None:
            self._gzip = gzip.GzipFile(
                filename="", mode="wb", fileobj=target, compresslevel=gzip_level, mtime=0
            )
        self._tar = tarfile.TarFile(
            fileobj=self._gzip or target,
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            copybufsize=CHUNK_SIZE,
        )

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.size = size
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def _write_directory(self, name: str) -> None:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, DIR_MODE))

    def _write_stream(self, name: str, stream: Reads, size: int) -> None:
        self._tar.addfile(self._info(name, tarfile.REGTYPE, FILE_MODE, size), stream)

    def close(self) -> None:
        """Write the end-of-archive blocks (and the gzip trailer)."""
        self._tar.close()
        if self._gzip is not None:
            self._gzip.close()

    def abandon(self) -> None:
        """Drop the file so that gzip never writes its trailer into it."""
        if self._gzip is not None:
            # None is how GzipFile itself marks a closed file; typeshed does not admit it.
            self._gzip.fileobj = None  # type: ignore[assignment]


@contextlib.contextmanager
def archive_writer(target: BinaryIO, fmt: str, *, mtime: int) -> Iterator[ArchiveWriter]:
    """An :class:`ArchiveWriter` of format *fmt* on *target*, finished when the block ends.

    *target* must be seekable for zip (member headers are completed in place). On an exception
    the archive is left unfinished: the caller discards it.
    """
    writer: ArchiveWriter
    if fmt == "zip":
        writer = ZipArchiveWriter(target, mtime)
    elif fmt == "tar":
        writer = TarArchiveWriter(target, mtime)
    elif fmt == "tar.gz":
        writer = TarArchiveWriter(target, mtime, gzip_level=COMPRESS_LEVEL)
    else:
        raise ValueError(f"unknown archive format {fmt!r} (use one of {', '.join(FORMATS)})")
    try:
        yield writer
    except BaseException:
        writer.abandon()
        raise
    writer.close()


class HashingSink:
    """A write-only, sequential view of *target* that writes and hashes on a helper thread.

    Writes are queued in order and carried out by one helper thread, which also hashes them:
    the archive's own sha256 costs no read-back, and writing and hashing the archive overlap
    with reading, hashing and CRC-ing the next member on the calling thread. A buffer lent by
    :meth:`borrow` is handed over without a copy and comes back once written; other ``bytes``
    are kept as they are and any other buffer is copied (it might be reused). Write errors
    are raised by the next call after them. Memory is bounded: *depth* writes wait at most.

    The sink does not seek: a zip written through it gives each member a data descriptor
    (general purpose flag bit 3) after its data instead of patching the local header
    afterwards, which every zip reader that uses the central directory (unzip, 7-Zip, Python,
    Windows, macOS) reads.
    """

    def __init__(self, target: BinaryIO, *, buffers: int = 4, depth: int = 8) -> None:
        self._target = target
        self._digest = hashlib.sha256()
        self._written = 0
        self._error: BaseException | None = None
        self._lent: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._own: set[int] = set()
        for _ in range(buffers):
            buffer = aligned_buffer()
            self._own.add(id(buffer))
            self._lent.put(buffer)
        self._slots = threading.BoundedSemaphore(depth)
        self._queue: queue.SimpleQueue[_Write | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._thread.start()

    def borrow(self) -> memoryview:
        """A :data:`CHUNK_SIZE` buffer to fill and pass to :meth:`write` (or :meth:`give_back`)."""
        return memoryview(self._lent.get())

    def give_back(self, view: memoryview | mmap.mmap) -> None:
        """Return a borrowed buffer (the writer thread does so once it is written)."""
        self._lent.put(view.obj if isinstance(view, memoryview) else view)  # type: ignore[arg-type]

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue *data* to be written to the target and hashed."""
        self._raise_error()
        view = memoryview(data)
        owner = view.obj if id(view.obj) in self._own else None
        block = data if owner is not None or isinstance(data, bytes) else bytes(data)
        self._slots.acquire()
        self._queue.put(_Write(block, owner))  # type: ignore[arg-type]
        self._written += view.nbytes
        return view.nbytes

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                if self._error is None:
                    self._target.write(item.data)
                    self._digest.update(item.data)
            except BaseException as exc:  # raised on the caller's thread by its next call
                self._error = exc
            finally:
                if item.owner is not None:
                    self.give_back(item.owner)
                self._slots.release()

    def _drain(self) -> None:
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def tell(self) -> int:
        """Bytes written so far."""
        return self._written

    def seekable(self) -> bool:
        """Never: writers must produce the archive front to back."""
        return False

    def seek(self, offset: int, whence: int = 0) -> int:
        """Refused, so that zipfile writes data descriptors instead of patching headers."""
        raise io.UnsupportedOperation("the archive is written sequentially")

    def flush(self) -> None:
        """Write everything queued, then flush the target."""
        self._drain()
        self._target.flush()

    def hexdigest(self) -> str:
        """The sha256 of everything written (waits for the queued writes)."""
        self._drain()
        return self._digest.hexdigest()

    def close(self) -> None:
        """Finish the queued writes and stop the helper thread (the target stays open)."""
        self._queue.put(None)
        self._thread.join()


@dataclass(frozen=True)
class _Write:
    data: bytes | memoryview
    owner: mmap.mmap | None  # a lent buffer, to give back once written
