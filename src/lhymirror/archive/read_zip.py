"""The zip half of :class:`~lhymirror.archive.read.ArchiveReader`: members from the directory.

A zip is read through its central directory (so the file must be seekable), members in the
order their data is stored. Overlapping members (how non-recursive zip bombs multiply a little
data) and members whose data would run past the archive's end are flagged before anything is
read.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lhymirror.archive.members import (
    DECODE_ERRORS,
    ArchiveMember,
    ArchiveReadError,
    MemberKind,
    read_error,
)
from lhymirror.core.fsutil import PAGE_SIZE
from lhymirror.core.streams import Reads

if TYPE_CHECKING:
    from lhymirror.archive.read import ArchiveReader


def zip_members(reader: ArchiveReader) -> Iterator[ArchiveMember]:
    """Every member of the zip *reader* reads, in the order of their data."""
    try:
        _check_directory_size(reader)
        archive = zipfile.ZipFile(reader.source)
    except DECODE_ERRORS as exc:
        raise read_error(reader.after_last, exc) from exc
    with archive:
        infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
        if len(infos) > reader.limits.max_members:
            raise ArchiveReadError(
                reader.after_last,
                f"{len(infos)} members, more than {reader.limits.max_members}",
                kind="unsafe",
            )
        overlaps = _zip_overlaps(infos, reader.archive_size)
        for info in infos:
            yield _zip_member(reader, archive, info, overlaps.get(info.header_offset))


def _check_directory_size(reader: ArchiveReader) -> None:
    """Refuse a central directory too big for the member limit before zipfile holds it all.

    zipfile builds an object per directory entry up front; the end record's claims bound that.
    """
    end = zipfile._EndRecData(reader.source)  # type: ignore[attr-defined]
    if end is None:
        return  # no end record: ZipFile says so
    entries, directory_size = end[4], end[5]  # _ECD_ENTRIES_TOTAL, _ECD_SIZE
    limit = reader.limits.max_members
    if entries > limit or directory_size > limit * _MAX_ENTRY_SIZE:
        raise ArchiveReadError(
            reader.after_last,
            f"the central directory claims {entries} members in {directory_size} bytes, "
            f"more than the limit of {limit} members",
            kind="unsafe",
        )


_MAX_ENTRY_SIZE = 512  # bytes one directory entry may take on average (46 + name + extras)


def _zip_member(
    reader: ArchiveReader,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    layout_problem: str | None,
) -> ArchiveMember:
    kind = _zip_kind(info)
    name = info.filename.rstrip("/") if kind == "dir" else info.filename
    problems = reader.name_problems(name, kind)
    if layout_problem:
        problems.append(layout_problem)
    if info.flag_bits & 0x1:
        problems.append("is encrypted")
    claim = reader.claim_problem(info.file_size, info.compress_size)
    if claim:
        problems.append(claim)
    mode = (info.external_attr >> 16) & 0o7777 if info.create_system == 3 else 0
    reader.last = name
    return ArchiveMember(
        name,
        kind,
        info.file_size,
        mode or 0o644,
        tuple(problems),
        lambda: _open_zip_member(archive, info, check_crc=reader.check_crc),
    )


def _open_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, check_crc: bool) -> Reads:
    stream = archive.open(info)  # checks the member's own header against the directory
    if check_crc or not hasattr(stream, "_expected_crc"):
        return stream
    # The caller compares every member's sha256, which subsumes the CRC-32.
    if _preadv is not None and info.compress_type == zipfile.ZIP_STORED:
        stream.close()
        return _StoredSpan(archive, info)
    # Skipping zipfile's own CRC pass saves a third of the CPU of a verify.
    stream._expected_crc = None
    return stream


_preadv = getattr(os, "preadv", None)  # POSIX; elsewhere stored members go through zipfile


class _StoredSpan:
    """A stored member's bytes, read straight into the caller's buffer by positional reads.

    No copy, no allocation per chunk and no shared file offset to seek: zipfile's layers took a
    fifth of a verify's main-thread CPU. Opened only after ``ZipFile.open`` has checked the
    member's local header; reads stop at the declared size, and an archive that ends early
    gives 0 (the caller reports it as truncated). The first read stops at a page of the file,
    so that every later one copies page to page into a page-aligned buffer (see
    :func:`~lhymirror.core.fsutil.aligned_buffer`: a member whose data starts a few bytes
    before a page took five times as long to read otherwise).
    """

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        assert archive.fp is not None
        self._fd = archive.fp.fileno()
        header = os.pread(self._fd, 4, info.header_offset + 26)
        if len(header) < 4:
            raise EOFError("the archive ends inside a member's header")
        name_length, extra_length = struct.unpack("<HH", header)
        self._pos = info.header_offset + 30 + name_length + extra_length
        self._left = min(info.compress_size, info.file_size)

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of *buffer* (up to the member's end); 0 at the end."""
        view = memoryview(buffer).cast("B")[: self._left]
        if not view:
            return 0
        if head := -self._pos % PAGE_SIZE:
            view = view[:head]
        assert _preadv is not None
        n: int = _preadv(self._fd, [view], self._pos)
        self._pos += n
        self._left -= n
        return n

    def read(self, size: int = -1, /) -> bytes:
        """*size* bytes, fewer only at the end (all that is left for a negative *size*)."""
        buffer = bytearray(self._left if size < 0 else min(size, self._left))
        view, got = memoryview(buffer), 0
        while got < len(buffer) and (n := self.readinto(view[got:])):
            got += n
        return bytes(buffer[:got])


def _zip_kind(info: zipfile.ZipInfo) -> MemberKind:
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    file_type = stat.S_IFMT(mode)
    if file_type == 0:
        return "dir" if info.filename.endswith("/") else "file"
    return _KINDS_BY_TYPE.get(file_type, "other")


_KINDS_BY_TYPE: dict[int, MemberKind] = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
    stat.S_IFIFO: "fifo",
}


def _zip_overlaps(infos: list[zipfile.ZipInfo], archive_size: int | None) -> dict[int, str]:
    """Members whose data overlaps the next one's, or runs past the archive's end.

    Overlapping members are how non-recursive zip bombs multiply a little data many times.
    *infos* must be sorted by header offset.
    """
    problems: dict[int, str] = {}
    for index, info in enumerate(infos):
        end = info.header_offset + 30 + len(info.orig_filename.encode()) + info.compress_size
        following = infos[index + 1] if index + 1 < len(infos) else None
        if following is not None and end > following.header_offset:
            problems[info.header_offset] = (
                f"overlaps member {following.filename!r} (a possible zip bomb)"
            )
        elif archive_size is not None and end > archive_size:
            problems[info.header_offset] = (
                f"claims {info.compress_size} compressed bytes, past the end of the archive"
            )
    return problems
