"""Local file-system primitives: streaming hashes and atomic, durable writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from lhymirror.core.streams import ReadsInto

if TYPE_CHECKING:  # concurrent.futures loads logging: only the writers need it (start-up)
    from concurrent.futures import Future

T = TypeVar("T")

CHUNK_SIZE = 1024 * 1024
# Modes of what lhymirror writes (files in archives and extractions, folders, executables).
FILE_MODE = 0o644
DIR_MODE = 0o755
EXECUTABLE_MODE = 0o755
PAGE_SIZE = mmap.PAGESIZE


def aligned_buffer(size: int = CHUNK_SIZE) -> mmap.mmap:
    """A zeroed buffer of *size* bytes that starts on a page, for file data to pass through.

    The kernel's copy of file data slows down (4K aliasing) when the destination lies 1 to 31
    bytes past the source within a page: on this project's benchmark machine (AMD EPYC) a read
    into a ``bytearray`` of 1 MiB, which malloc places 16 bytes into a page, took twice as long
    as into a page-aligned buffer, and up to five times as long 1 to 8 bytes past. Reads that
    start at a page of the file (whole files, the archive's own sha256, zip members after
    their first page: see ``read_zip``) are thus best made into a buffer that starts on one:
    an anonymous ``mmap``. Private, so a forked child never writes into the parent's copy.
    """
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX (Windows has no fork, and no flags)
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    return mmap.mmap(-1, size)


_spare = threading.local()  # each thread's read buffer, kept for its next read_buffer()


@contextlib.contextmanager
def read_buffer() -> Iterator[memoryview]:
    """An :func:`aligned_buffer` of :data:`CHUNK_SIZE` bytes, lent for one read loop.

    Each thread keeps one for its next loop, so reading many small files maps no new memory;
    a loop inside another gets a buffer of its own.
    """
    view: memoryview | None = getattr(_spare, "view", None)
    _spare.view = None
    if view is None:
        view = memoryview(aligned_buffer())
    try:
        yield view
    finally:
        _spare.view = view


def hash_stream(
    stream: ReadsInto, *, digest: Any = None, limit: int | None = None
) -> tuple[int, str]:
    """Read *stream* to its end (or *limit* bytes) in fixed-size chunks; ``(size, sha256 hex)``.

    With *digest* (a ``hashlib`` sha256 object) the bytes are added to it, so that a caller can
    go on hashing what follows.
    """
    digest = digest if digest is not None else hashlib.sha256()
    size = 0
    with read_buffer() as view:
        while limit is None or size < limit:
            wanted = view if limit is None else view[: min(CHUNK_SIZE, limit - size)]
            n = stream.readinto(wanted)
            if not n:
                break
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def hash_file(path: Path) -> tuple[int, str]:
    """``(size, sha256 hex)`` of a file, read in constant memory."""
    with path.open("rb", buffering=0) as stream:
        return hash_stream(stream)


def open_no_follow(path: Path) -> int:
    """A read-only descriptor of *path*; never follows a link, never blocks on a fifo."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    return os.open(path, flags | getattr(os, "O_BINARY", 0))


def open_regular(path: Path) -> BinaryIO:
    """*path* opened for unbuffered reading when it is a regular file (``OSError`` otherwise).

    Never through a symbolic link (its last component), and never blocking on a fifo that
    stands there instead: what a mirror or an extracted bag holds is not trusted to be a file.
    """
    fd = open_no_follow(path)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def fsync_file(path: Path) -> None:
    """Make a file's bytes durable (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside *path* durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def in_folder(folder: Path, action: Callable[[], T]) -> T:
    """``action()``, first creating *folder* (and its parents) if it turns out to be missing.

    The folder nearly always exists: trying first spares two system calls a file.
    """
    try:
        return action()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return action()


def replace_durably(source: Path, target: Path) -> None:
    """Atomically rename *source* over *target* and make the rename durable."""
    source.replace(target)
    fsync_dir(target.parent)


def temp_beside(target: Path, *, tag: str = "") -> tuple[int, Path]:
    """A new hidden temporary file in *target*'s folder (so it can be renamed over *target*).

    Its name is ``.<target name>.<tag><random>.tmp``; a *tag* lets a caller find its own
    leftovers later (see :func:`abandoned_temps`).
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{tag}", suffix=".tmp", dir=target.parent)
    return fd, Path(name)


def abandoned_temps(target: Path, *, tag: str) -> list[Path]:
    """Temporary files of :func:`temp_beside` (*tag*) beside *target* that nobody holds a lock on.

    A writer that locks its temporary file (:func:`try_lock`) while it works is alive as long as
    the lock is held; a file without a lock was left by a killed process.
    """
    found = []
    for path in sorted(target.parent.glob(f".{target.name}.{tag}*.tmp")):
        try:
            with path.open("rb") as handle:
                if try_lock(handle):
                    found.append(path)
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def try_lock(handle: Any) -> bool:
    """Take an exclusive OS lock on an open file without waiting; False if another holds it.

    The kernel releases the lock when the file is closed or the process dies, so a killed
    process never leaves a stale lock behind.
    """
    try:
        import fcntl  # noqa: PLC0415  (POSIX only)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt  # noqa: PLC0415

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def atomic_writer(
    target: Path, *, mode: int = FILE_MODE, durable: bool = True
) -> Iterator[BinaryIO]:
    """Write *target* through a temporary file in the same folder, renamed only on success.

    ``durable=False`` skips the fsyncs: readers still see the old or the new content, never a
    mix, but a power cut may lose the update. Fit for hints that are rewritten often.
    """
    fd, tmp = in_folder(target.parent, lambda: temp_beside(target))
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        tmp.chmod(mode)
        if durable:
            replace_durably(tmp, target)
        else:
            tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace *target* with *data* atomically (and durably unless told otherwise)."""
    with atomic_writer(target, durable=durable) as stream:
        stream.write(data)


def atomic_write_text(target: Path, text: str, *, durable: bool = True) -> None:
    """Replace *target* with UTF-8 *text* atomically (and durably unless told otherwise)."""
    atomic_write_bytes(target, text.encode("utf-8"), durable=durable)


class BackgroundWriteback:
    """Pushes a growing file's written bytes to disk from a helper thread as it grows.

    Every *every* bytes the stream is flushed and ``fdatasync`` runs in the background, so the
    disk works while the caller goes on hashing and the final fsync (still needed before the
    rename that publishes the file) has little left to do. Errors are left for that final fsync
    to report. Use as a context manager around the writing.
    """

    def __init__(self, stream: BinaryIO, *, every: int = 64 * CHUNK_SIZE) -> None:
        self._stream = stream
        self._every = every
        self._pending = 0
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writeback")
        self._inflight: Future[None] | None = None

    def __enter__(self) -> BackgroundWriteback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def written(self, nbytes: int) -> None:
        """Account for *nbytes* just written; start a background flush when enough piled up."""
        self._pending += nbytes
        if self._pending < self._every or (self._inflight and not self._inflight.done()):
            return
        self._stream.flush()
        self._pending = 0
        self._inflight = self._pool.submit(_sync_data_quietly, self._stream.fileno())

    def close(self) -> None:
        """Wait for a flush in progress (the stream itself stays open)."""
        self._pool.shutdown(wait=True)

    def watching(self, stream: BinaryIO) -> BinaryIO:
        """*stream*, with every write counted towards the next background flush."""
        return _CountedWrites(stream, self.written)  # type: ignore[return-value]


class _CountedWrites:
    """A stream proxy that reports the size of each write (everything else passes through)."""

    def __init__(self, stream: BinaryIO, written: Callable[[int], None]) -> None:
        self._stream = stream
        self._written = written

    def write(self, data: bytes) -> int:
        count = self._stream.write(data)
        self._written(len(data))
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _sync_data_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        getattr(os, "fdatasync", os.fsync)(fd)


class ThreadedDigest:
    """A sha256 computed by a helper thread, in order, from bytes the caller hands over.

    hashlib releases the GIL on large buffers, so the hashing overlaps with whatever the caller
    does next. Small updates are batched into blocks of about *batch* bytes; at most *depth*
    blocks wait for the helper, so memory stays bounded. Hand over only immutable data
    (``bytes``, or views of ``bytes``), never a buffer that will be reused.
    """

    def __init__(self, *, batch: int = CHUNK_SIZE, depth: int = 4) -> None:
        self._digest = hashlib.sha256()
        self._batch = batch
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._slots = threading.BoundedSemaphore(depth)

    def update(self, data: bytes | memoryview) -> None:
        """Queue *data* for hashing."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._batch:
            self._hand_over()

    def hexdigest(self) -> str:
        """The digest of everything queued (waits for the helper to finish)."""
        self._hand_over()
        self._pool.shutdown(wait=True)
        return self._digest.hexdigest()

    def close(self) -> None:
        """Stop the helper without waiting for queued blocks."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _hand_over(self) -> None:
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        self._slots.acquire()
        future = self._pool.submit(self._digest.update, block)
        future.add_done_callback(lambda _: self._slots.release())
