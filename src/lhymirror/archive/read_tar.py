"""The tar half of :class:`~lhymirror.archive.read.ArchiveReader`: members front to back.

A tar (plain or compressed) is read as a stream, so it may also come from a pipe. Damaged
headers stop the reading with an error instead of ending it quietly (as tarfile would), and
extension headers larger than the limit are refused before tarfile holds them in memory.
"""

from __future__ import annotations

import functools
import gzip
import tarfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self

from lhymirror.archive.members import (
    DEFAULT_LIMITS,
    ArchiveMember,
    ArchiveReadError,
    MemberKind,
)
from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.core.streams import Reads

if TYPE_CHECKING:
    from lhymirror.archive.read import ArchiveReader

_TAR_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_TAR_KINDS: dict[bytes, MemberKind] = {
    **dict.fromkeys(tarfile.REGULAR_TYPES, "file"),
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "device",
    tarfile.BLKTYPE: "device",
    tarfile.FIFOTYPE: "fifo",
}


class CorruptHeader(Exception):
    """A damaged tar header (tarfile would silently stop reading there)."""

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


class OversizedHeader(Exception):
    """A tar extension header larger than the limit (tarfile would hold it in memory)."""


class TarWalker:
    """Reads a tar's members for one reader, then what follows its end marker."""

    def __init__(self, reader: ArchiveReader) -> None:
        self._reader = reader
        self._archive: tarfile.TarFile | None = None
        self._gzip: gzip.GzipFile | None = None
        self.broken = False  # reading stopped at a damaged member: the rest cannot be trusted

    def _open(self) -> tarfile.TarFile:
        reader = self._reader
        tarinfo = _tarinfo_class(reader.limits.max_header_size)
        if reader.format == "tar" and reader.seekable:
            return tarfile.open(fileobj=reader.source, mode="r:", tarinfo=tarinfo)
        if reader.format == "tar":
            return tarfile.open(fileobj=reader.source, mode="r|", tarinfo=tarinfo)
        if reader.format == "tar.gz":
            # GzipFile (not tarfile's own gzip stream) so that the trailer's CRC is checked.
            self._gzip = gzip.GzipFile(fileobj=reader.source, mode="rb")
            return tarfile.open(fileobj=self._gzip, mode="r|", tarinfo=tarinfo)
        return tarfile.open(fileobj=reader.source, mode="r|*", tarinfo=tarinfo)

    def members(self) -> Iterator[ArchiveMember]:
        """Every member, in stored order; stops after one whose data could not be read."""
        reader = self._reader
        archive = reader.guarded(self._open)
        self._archive = archive
        declared_total = 0
        while True:
            info = reader.guarded(archive.next)
            if info is None:
                return
            archive.members.clear()  # tarfile keeps every header otherwise: memory grows
            declared_total += info.size
            size = reader.archive_size
            if reader.format == "tar" and size is not None and info.size > size:
                raise ArchiveReadError(
                    info.name,
                    f"the archive ends inside this member (it claims {info.size} bytes, more "
                    f"than the whole {size}-byte archive)",
                    kind="truncated",
                )
            claim = self._claim_problem(info.size, declared_total)
            if claim:
                # Skipping the member would mean inflating all it claims: stop here.
                raise ArchiveReadError(info.name, f"{claim}; not read further", kind="unsafe")
            kind = _TAR_KINDS.get(info.type, "other")
            problems = reader.name_problems(info.name, kind)
            reader.last = info.name
            member = ArchiveMember(
                info.name,
                kind,
                info.size,
                info.mode & 0o7777,
                tuple(problems),
                functools.partial(_open_tar_member, archive, info),
            )
            yield member
            if member.failed:
                self.broken = True
                return  # the stream is out of step: nothing after this member can be trusted

    def _claim_problem(self, size: int, declared_total: int) -> str | None:
        reader = self._reader
        if reader.format == "tar":
            return None  # stored data: a claim beyond the file is truncation (checked above)
        archive_size = reader.archive_size
        if archive_size is not None and declared_total > archive_size * reader.limits.max_ratio:
            return "the members claim far more bytes than the archive can hold (a possible bomb)"
        return reader.claim_problem(size, None)

    def drain(self) -> None:
        """Read past the end marker: gzip checks its CRC at the very end; padding must be zero."""
        reader = self._reader
        if self.broken:
            return
        source: Any = self._gzip
        if source is None and reader.format == "tar" and self._archive is not None:
            source = reader.source
            if reader.seekable:
                source.seek(self._archive.offset)
        if source is None:
            return
        trailing = 0
        while True:
            chunk = reader.guarded(lambda: source.read(CHUNK_SIZE))
            if not chunk:
                return
            trailing += len(chunk)
            if chunk.count(0) != len(chunk):
                raise ArchiveReadError(reader.after_last, "data after the end-of-archive marker")
            if trailing > reader.limits.max_trailing_bytes:
                raise ArchiveReadError(
                    reader.after_last, "too much padding after the end-of-archive marker"
                )


def _tarinfo_class(limit: int) -> type[tarfile.TarInfo]:
    """The checked TarInfo with this header-size limit."""
    if limit == _CheckedTarInfo.max_header_size:
        return _CheckedTarInfo
    return type("_LimitedTarInfo", (_CheckedTarInfo,), {"max_header_size": limit})


# HeaderError's subclasses are not in tarfile.__all__, so typeshed leaves them out.
_tar_internals: Any = tarfile


class _CheckedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses damaged and oversized headers instead of ending quietly."""

    max_header_size = DEFAULT_LIMITS.max_header_size

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _tar_internals.EOFHeaderError:
            raise  # a zero block: the regular end of the archive
        except _tar_internals.EmptyHeaderError as exc:
            raise CorruptHeader(
                "the archive ends without its end-of-archive marker", truncated=True
            ) from exc
        except _tar_internals.TruncatedHeaderError as exc:
            raise CorruptHeader(
                "the archive ends inside a member's header", truncated=True
            ) from exc
        except _tar_internals.InvalidHeaderError as exc:
            raise CorruptHeader(f"damaged header ({exc})") from exc

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _TAR_HEADER_TYPES and self.size > self.max_header_size:
            raise OversizedHeader(
                f"an extended header claims {self.size} bytes (limit {self.max_header_size})"
            )
        # A private tarfile hook (not in typeshed): it reads the member's extension headers.
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


def _open_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Reads:
    stream = archive.extractfile(info)
    if stream is None:  # only for members that are not regular files, which are never opened
        raise ValueError(f"member {info.name!r} holds no data")
    return stream
