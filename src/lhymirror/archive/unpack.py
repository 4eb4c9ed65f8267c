"""Safe extraction of a bag archive: verified while extracted, put in place only when intact.

The archive is read once (see :func:`lhymirror.archive.verify.verify_archive`); each safe member is
written into a fresh temporary folder created next to the destination (the same file system,
so the final move is a rename). Nothing is written through a link (none can exist in a folder
we just created and only fill with regular files opened with ``O_EXCL``), modes are normalised
to 0644 / 0755, and unsafe members are refused before a byte of them is written. Only when the
whole archive verified is the bag folder renamed to its destination; otherwise the temporary
folder is deleted and nothing appears there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from lhymirror.archive.read import DEFAULT_LIMITS, ArchiveLimits, ArchiveReadError
from lhymirror.archive.verify import VerifyReport, verify_archive
from lhymirror.core.errors import IntegrityError, UsageError, storage_errors
from lhymirror.core.fsutil import DIR_MODE, EXECUTABLE_MODE, FILE_MODE, fsync_dir
from lhymirror.core.units import count_of

TEMP_PREFIX = ".lhymirror-unpack-"
_BAG_FOLDER = "bag"  # the bag's folder inside the temporary folder


class UnpackError(IntegrityError):
    """The archive did not verify; ``report`` lists every problem. Nothing was extracted."""

    def __init__(self, archive: Path, report: VerifyReport) -> None:
        self.report = report
        count = len(report.problems)
        super().__init__(
            "archive failed verification, nothing extracted",
            where=str(archive),
            detail=count_of(count, "problem"),
            hint="Get a fresh copy of the archive (or run `lhymirror pack` again).",
        )


def unpack_archive(
    archive: Path,
    dest: Path | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Path:
    """Extract *archive*'s bag folder to *dest* (default: ``./<top folder>``); return its path.

    *dest* may be an existing empty folder (as ``unzip -d`` allows); it is replaced by the bag
    folder. Raises ``UsageError`` when *dest* is anything else that exists, ``UnpackError`` (an
    ``IntegrityError``) when the archive is not intact, with nothing changed at *dest* either way.
    """
    archive = Path(archive)
    if not archive.exists() or archive.is_dir():  # a pipe may stream a tar: reading decides
        raise UsageError(
            "no such archive", where=str(archive), hint="Give a file `lhymirror pack` wrote."
        )
    if dest is not None:
        _refuse_existing(dest)
    parent = Path(dest).parent if dest is not None else Path.cwd()
    with storage_errors(parent):
        parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent))
    try:
        sink = _FolderSink(temp / _BAG_FOLDER)
        report = verify_archive(archive, progress=progress, limits=limits, sink=sink)
        if not report.ok or report.bag is None:
            raise UnpackError(archive, report)
        target = Path(dest) if dest is not None else parent / report.bag
        _refuse_existing(target)
        with storage_errors(target):
            sink.root.mkdir(mode=DIR_MODE, exist_ok=True)  # an archive of tag files only
            if os.name == "nt" and target.is_dir():
                target.rmdir()  # POSIX rename replaces an empty folder atomically; Windows cannot
            sink.root.rename(target)
            fsync_dir(target.parent)
        return target
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _refuse_existing(dest: Path) -> None:
    """``UsageError`` unless *dest* is free: absent, or an empty folder (not a link to one)."""
    if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        return
    if dest.exists() or dest.is_symlink():
        raise UsageError(
            "destination already exists and is not an empty folder",
            where=str(dest),
            hint="Choose another DEST, or move the existing folder away first.",
        )


class _FolderSink:
    """Writes bag files below *root*, a folder of our own; a ``MemberSink``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def open(self, relative: str, mode: int) -> Iterator[BinaryIO]:
        """A new regular file for *relative* (never an existing file, never through a link)."""
        target = self.root.joinpath(*relative.split("/"))
        with storage_errors(target):
            self._make_folders(target.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_BINARY", 0)
        with storage_errors(target):
            try:
                fd = os.open(target, flags, 0o600)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise ArchiveReadError(
                    relative, "clashes with another member of the same path", kind="unsafe"
                ) from exc
            with os.fdopen(fd, "wb") as stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            target.chmod(EXECUTABLE_MODE if mode & 0o111 else FILE_MODE)

    def _make_folders(self, folder: Path) -> None:
        """Create *folder* and its missing parents below the root with mode 0755."""
        missing = []
        current = folder
        while not current.is_dir():
            if current.exists() or current.is_symlink():
                raise ArchiveReadError(
                    current.relative_to(self.root).as_posix(),
                    "a file stands where the bag needs a folder",
                    kind="unsafe",
                )
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            path.mkdir(mode=DIR_MODE)
            path.chmod(DIR_MODE)  # whatever the umask
