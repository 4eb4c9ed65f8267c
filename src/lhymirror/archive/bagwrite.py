"""Writing a planned bag into an archive: every payload byte checked, the archive hashed.

Members are written in sorted order into a hidden temporary file beside the target. Each payload
file is re-hashed while it is copied and compared with the sha256 the mirror holds it to; the
archive's own sha256 is computed as it is written (:class:`~lhymirror.archive.write.HashingSink`).
When a file turns out damaged, writing stops but hashing goes on, so that every problem is found
in one pass; the unfinished archive is then discarded by the caller.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lhymirror.archive.bag import PAYLOAD_DIR
from lhymirror.archive.write import (
    ArchiveWriter,
    Copied,
    HashingReader,
    HashingSink,
    archive_writer,
)
from lhymirror.core.errors import storage_errors
from lhymirror.core.fsutil import (
    CHUNK_SIZE,
    BackgroundWriteback,
    abandoned_temps,
    temp_beside,
    try_lock,
)
from lhymirror.core.streams import Reads
from lhymirror.manifest.model import FileEntry
from lhymirror.mirror.state import Expected, FileProblem, check_bytes

TEMP_TAG = "packing-"  # names the unfinished archive: .<archive name>.packing-XXXX.tmp

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class MissingFile:
    """A manifest file left out of the bag, and why (``reason`` names no local path)."""

    id: str
    path: str
    reason: str
    problem: FileProblem | None = None  # None only for a path that is never safe

    @classmethod
    def of(cls, entry: FileEntry, problem: FileProblem) -> MissingFile:
        """The entry left out because of *problem* (in its one wording)."""
        return cls(entry.id, entry.path, str(problem), problem)

    @property
    def kind(self) -> str:
        """The problem's kind (``missing``, ``size``, ``checksum``, ``symlink``, …)."""
        return self.problem.kind if self.problem is not None else "unsafe"

    def describe(self) -> str:
        """``<path> (<reason>)``: one line for listings and ``bag-info.txt``."""
        return f"{self.path} ({self.reason})"


@dataclass(frozen=True)
class PayloadFile:
    """A mirror file to pack: where it is and what it must hash to (size from ``stat``)."""

    entry: FileEntry
    source: Path
    size: int
    sha256: str
    expected: Expected  # size (from ``stat``, when the manifest has none), sha256 and origin

    @property
    def bag_path(self) -> str:
        """Its path inside the bag: ``data/<manifest path>``."""
        return f"{PAYLOAD_DIR}/{self.entry.path}"


@dataclass(frozen=True)
class BagPlan:
    """Everything needed to write one bag, decided before any payload byte is read."""

    top: str
    payload: tuple[PayloadFile, ...]
    tag_files: Mapping[str, bytes]
    epoch: int


def write_temp_archive(
    plan: BagPlan, target: Path, fmt: str, progress: ProgressCallback | None
) -> tuple[Path, str, list[MissingFile]]:
    """Write the bag into a temporary file next to *target*.

    Returns the file, its sha256 (hashed as it is written, by a helper thread; empty when
    files were damaged, as the archive is then discarded) and the damaged files.
    """
    with storage_errors(target.parent):
        _remove_abandoned_temps(target)
        fd, temp = temp_beside(target, tag=TEMP_TAG)
    try:
        with storage_errors(temp), os.fdopen(fd, "w+b") as stream:
            try_lock(stream)  # held while writing: tells a later pack this file is not litter
            with BackgroundWriteback(stream) as writeback:
                sink = HashingSink(writeback.watching(stream))
                try:
                    damaged = _write_archive(sink, plan, fmt, progress)  # type: ignore[arg-type]
                    sink.flush()  # a write error (a full disk) is raised here, damage or not
                    sha256 = "" if damaged else sink.hexdigest()
                finally:
                    sink.close()
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, sha256, damaged


def _remove_abandoned_temps(target: Path) -> None:
    """Delete the unfinished archives a killed pack left beside *target* (hidden, often GBs)."""
    for path in abandoned_temps(target, tag=TEMP_TAG):
        path.unlink(missing_ok=True)


def _write_archive(
    stream: BinaryIO,
    plan: BagPlan,
    fmt: str,
    progress: ProgressCallback | None,
) -> list[MissingFile]:
    with archive_writer(stream, fmt, mtime=plan.epoch) as writer:
        return _write_members(writer, plan, progress)


def _write_members(
    writer: ArchiveWriter,
    plan: BagPlan,
    progress: ProgressCallback | None,
) -> list[MissingFile]:
    """Add every member in sorted order; after a damaged file, only hash the rest."""
    damaged: list[MissingFile] = []
    for _key, name, member in _members(plan):
        out = None if damaged else writer
        if isinstance(member, PayloadFile):
            problem = _copy_payload(out, name, member, progress)
            if problem is not None:
                damaged.append(problem)
        elif out is None:
            continue
        elif member is None:
            out.add_directory(name)
        else:
            out.add_bytes(name, member)
    return damaged


def _members(plan: BagPlan) -> list[tuple[str, str, PayloadFile | bytes | None]]:
    """``(sort key, archive name, content)`` of every member, sorted; ``None`` is a folder."""
    top = plan.top
    folders = {top, f"{top}/{PAYLOAD_DIR}"}
    members: list[tuple[str, str, PayloadFile | bytes | None]] = []
    for item in plan.payload:
        name = f"{top}/{item.bag_path}"
        members.append((name, name, item))
        folders.update(_parents(name, stop=top))
    members += [(f"{top}/{tag}", f"{top}/{tag}", data) for tag, data in plan.tag_files.items()]
    members += [(folder + "/", folder, None) for folder in folders]
    return sorted(members, key=lambda member: member[0])


def _parents(name: str, *, stop: str) -> Iterator[str]:
    parent = name.rsplit("/", 1)[0]
    while parent != stop and "/" in parent:
        yield parent
        parent = parent.rsplit("/", 1)[0]


def _copy_payload(
    writer: ArchiveWriter | None, name: str, item: PayloadFile, progress: ProgressCallback | None
) -> MissingFile | None:
    """Copy (or, without a writer, only hash) one payload file; the problem found, if any.

    Only errors reading the mirror file make it a problem of that file; an error writing the
    archive (a full disk) propagates as a storage error.
    """
    try:
        stream = item.source.open("rb")
    except OSError as error:
        return MissingFile.of(item.entry, FileProblem("unreadable", detail=error.strerror or ""))
    try:
        with stream:
            source = _ReadGuard(stream)
            if writer is None:
                copied = _hash_only(source, item.size, progress)
            else:
                copied = writer.add_stream(name, source, item.size, progress=progress)
    except _SourceUnreadable as error:
        return MissingFile.of(item.entry, FileProblem("unreadable", detail=str(error)))
    return _copy_problem(item, copied)


class _SourceUnreadable(Exception):
    """Reading a mirror file failed (as opposed to writing the archive)."""


class _ReadGuard:
    """A mirror file whose read errors are told apart from the archive writer's errors."""

    def __init__(self, stream: io.BufferedIOBase) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except OSError as error:
            raise _SourceUnreadable(error.strerror or str(error)) from error

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._stream.readinto(buffer) or 0
        except OSError as error:
            raise _SourceUnreadable(error.strerror or str(error)) from error


def _hash_only(stream: Reads, size: int, progress: ProgressCallback | None) -> Copied:
    reader = HashingReader(stream, size, progress=progress)
    while reader.read(CHUNK_SIZE):
        pass
    return reader.result()


def _copy_problem(item: PayloadFile, copied: Copied) -> MissingFile | None:
    """The copied bytes against what they are held to (grown: more bytes than expected)."""
    size = None if copied.trailing else copied.size
    problem = check_bytes(item.expected, size, copied.sha256)
    return None if problem is None else MissingFile.of(item.entry, problem)


def verify_payload(
    payload: Sequence[PayloadFile], progress: ProgressCallback | None
) -> list[MissingFile]:
    """Hash every payload file without writing anything; the damaged ones."""
    found = (_copy_payload(None, item.bag_path, item, progress) for item in payload)
    return [problem for problem in found if problem is not None]
