"""Safe, streaming reading of zip, tar and tar.gz archives, without extracting anything.

An archive is hostile input. :func:`open_archive` yields its members one at a time, in the
order they are stored, each with its kind, declared size and every reason it is unsafe
(a name with ``..``, an absolute path, a drive letter or a backslash; a symlink, hardlink,
device or fifo; a duplicate; a size or compression ratio the archive cannot honestly hold).
Only safe regular files can be opened, through a stream that never yields more than the
member's declared size and turns every decoding failure into an :class:`ArchiveReadError`
naming the member. Memory stays bounded: data is read in chunks, tar headers are capped, the
number of members is capped, and oversized claims are refused before anything is read.

While the members pass, the archive's own bytes can be hashed (for its ``.sha256`` sidecar)
without a second sequential read in the usual case.

Usage::

    with ArchiveReader(path, hash_archive=True) as reader:
        for member in reader:
            if member.is_safe_file:
                with member.open() as stream: ...
        reader.drain()
        sha256 = reader.archive_sha256()
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Self

from lhymirror.core.errors import IntegrityError
from lhymirror.core.fsutil import CHUNK_SIZE, ThreadedDigest
from lhymirror.core.safepath import collision_key, path_problems
from lhymirror.core.streams import Reads

ArchiveFormat = Literal["zip", "tar", "tar.gz", "tar.compressed"]
MemberKind = Literal["file", "dir", "symlink", "hardlink", "device", "fifo", "other"]

# Errors the standard library raises for damaged archives; all become ArchiveReadError.
_DECODE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    NotImplementedError,  # an unsupported zip compression method
    RuntimeError,  # zipfile: an encrypted member
    ValueError,
)
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


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds that keep a hostile archive from exhausting memory, disk or time.

    A member may decompress to at most ``max_ratio`` times its compressed size. Deflate cannot
    exceed about 1032:1, so no honest deflated member (what ``pack`` writes) ever trips the
    default, even all zeros; higher claims are lies or other methods' bombs (bzip2, LZMA).
    Members smaller than ``ratio_min_size`` are exempt: tiny files may compress arbitrarily.
    """

    max_ratio: float = 2000.0
    ratio_min_size: int = 1024 * 1024
    max_members: int = 100_000
    max_header_size: int = 1024 * 1024  # tar pax / GNU long-name headers are held in memory
    max_trailing_bytes: int = 16 * 1024 * 1024  # padding read after a tar's end marker


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveReadError(IntegrityError):
    """The archive cannot be read at (or past) *member*: truncated, corrupt or refused.

    ``kind`` is ``"malformed"`` for damage and ``"unsafe"`` for a refused claim (a bomb).
    """

    def __init__(self, member: str, detail: str, *, kind: str = "malformed") -> None:
        self.member = member
        self.kind = kind
        super().__init__(
            "unreadable archive member" if kind == "malformed" else "unsafe archive member",
            where=member,
            detail=detail,
            hint="The archive is damaged or hostile; get a fresh copy.",
        )


class ArchiveFormatError(IntegrityError):
    """The file is not a zip or tar archive at all."""


@dataclass
class ArchiveMember:
    """One member as the archive declares it. Open it (safe files only) before the next one."""

    name: str  # as stored, without a directory's trailing slash
    kind: MemberKind
    size: int  # declared (uncompressed) size
    mode: int  # permission bits as stored (0o644 when the archive holds none)
    unsafe: tuple[str, ...] = ()
    _opener: Callable[[], Reads] | None = field(default=None, repr=False)
    failed: bool = False  # reading its data failed (a tar cannot be read past that point)

    @property
    def is_safe_file(self) -> bool:
        """True for a regular file with nothing wrong in its header."""
        return self.kind == "file" and not self.unsafe

    def open(self) -> MemberStream:
        """A stream of the member's bytes, failing with ``ArchiveReadError`` on damage."""
        if not self.is_safe_file or self._opener is None:
            raise ValueError(f"member {self.name!r} cannot be opened")
        return MemberStream(self, self._opener)


class MemberStream(io.RawIOBase):
    """Reads one member: at most its declared size, every decoding error named after it."""

    def __init__(self, member: ArchiveMember, opener: Callable[[], Reads]) -> None:
        super().__init__()
        self._member = member
        self._name = member.name
        self._left = member.size
        self._size = member.size
        with self._errors_named():
            self._inner = opener()

    @contextlib.contextmanager
    def _errors_named(self) -> Iterator[None]:
        try:
            yield
        except ArchiveReadError:
            self._member.failed = True
            raise
        except _DECODE_ERRORS as exc:
            self._member.failed = True
            raise ArchiveReadError(self._name, _describe(exc)) from exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        """Up to *size* bytes (``bytes``, no extra copy); b"" at the member's end."""
        limit = self._left + 1  # one byte more than declared reveals a liar
        want = limit if size is None or size < 0 else min(size, limit)
        if want == 0:
            return b""
        with self._errors_named():
            data = self._inner.read(want)
            if len(data) > self._left:
                raise ArchiveReadError(
                    self._name, f"holds more than its declared {self._size} bytes"
                )
            if not data and self._left:
                raise ArchiveReadError(
                    self._name, f"truncated: {self._size - self._left} of {self._size} bytes"
                )
        self._left -= len(data)
        return data


def detect_format(path: Path) -> ArchiveFormat:
    """Tell zip from tar from compressed tar by the file's first bytes (never by its name)."""
    with path.open("rb") as stream:
        head = stream.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or (
        not head.startswith(b"\x1f\x8b") and zipfile.is_zipfile(path)
    ):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith((b"BZh", b"\xfd7zXZ\x00")):
        return "tar.compressed"
    if len(head) == 512 and (
        head[257:262] == b"ustar" or _valid_tar_checksum(head) or not head.strip(b"\0")
    ):
        return "tar"
    raise ArchiveFormatError(
        "not an archive",
        where=str(path),
        detail="not a zip, tar or tar.gz file" if head else "the file is empty",
        hint="Give the .zip / .tar / .tar.gz file `lhymirror pack` wrote, or a bag folder.",
    )


def _valid_tar_checksum(block: bytes) -> bool:
    try:
        stored = int(block[148:156].strip(b" \x00") or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 256 + sum(block[156:512])


class ArchiveReader:
    """Iterate over an archive's members (see the module docstring); use as a context manager.

    With ``hash_archive`` the archive file's own sha256 is computed on the way, from the same
    reads, by a helper thread (:meth:`archive_sha256`). ``check_crc=False`` skips zip's CRC-32
    check, for callers that compare every member's sha256 anyway. :meth:`drain` reads what
    follows the last member (a gzip stream's CRC, a tar's padding) so that damage there is found
    too.
    """

    def __init__(
        self,
        path: Path,
        *,
        hash_archive: bool = False,
        check_crc: bool = True,
        limits: ArchiveLimits = DEFAULT_LIMITS,
    ) -> None:
        self.path = Path(path)
        self.format = detect_format(self.path)
        self.limits = limits
        self.archive_size = self.path.stat().st_size
        self._raw = self.path.open("rb")
        self._hasher = _SequentialHasher(self._raw) if hash_archive else None
        self._check_crc = check_crc
        self._source: Any = self._hasher or self._raw
        self._names: dict[str, str] = {}  # collision key -> first name seen
        self._members = 0  # every member counts, duplicates included
        self._last = "(start of archive)"
        self._finished_tar: tarfile.TarFile | None = None
        self._gzip: gzip.GzipFile | None = None
        self._broken = False

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the archive file (and stop hashing it)."""
        if self._hasher is not None:
            self._hasher.stop()
        self._raw.close()

    def __iter__(self) -> Iterator[ArchiveMember]:
        if self.format == "zip":
            return self._zip_members()
        return self._tar_members()

    def drain(self) -> None:
        """After the last member, read to the end: a gzip trailer's CRC, a tar's zero padding."""
        if self.format != "zip" and not self._broken:
            self._drain_tar_tail()

    def archive_sha256(self) -> str | None:
        """sha256 of the whole archive file when hashing (reads what the members skipped)."""
        return self._hasher.hexdigest() if self._hasher is not None else None

    # -- shared checks ------------------------------------------------------------------------

    def _name_problems(self, name: str, kind: MemberKind) -> list[str]:
        problems = list(path_problems(name))
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            problems.append("is not valid UTF-8")
        if kind == "symlink":
            problems.append("is a symbolic link")
        elif kind == "hardlink":
            problems.append("is a hard link")
        elif kind in ("device", "fifo", "other"):
            problems.append(f"is a special file ({kind})")
        key = collision_key(name)
        first = self._names.get(key)
        if first is None:
            self._names[key] = name
        elif first == name:
            problems.append("is a duplicate member (the name appears more than once)")
        else:
            problems.append(f"collides with {first!r} on case-insensitive file systems")
        self._members += 1
        if self._members > self.limits.max_members:
            raise ArchiveReadError(
                name, f"more than {self.limits.max_members} members", kind="unsafe"
            )
        return problems

    def _claim_problem(self, size: int, compressed: int | None) -> str | None:
        """Why a declared size cannot be honest, or None."""
        limits = self.limits
        if size < limits.ratio_min_size:
            return None
        if compressed is not None and size > compressed * limits.max_ratio:
            ratio = size / max(compressed, 1)
            return (
                f"claims {size} bytes from {compressed} compressed ({ratio:.0f}:1, more than "
                f"{limits.max_ratio:.0f}:1: a possible zip bomb)"
            )
        if size > self.archive_size * limits.max_ratio:
            return (
                f"claims {size} bytes, far beyond what a {self.archive_size}-byte archive can "
                "hold (a possible bomb)"
            )
        return None

    # -- zip ----------------------------------------------------------------------------------

    def _zip_members(self) -> Iterator[ArchiveMember]:
        try:
            archive = zipfile.ZipFile(self._source)
        except _DECODE_ERRORS as exc:
            raise ArchiveReadError(self._last, f"not a readable zip: {_describe(exc)}") from exc
        with archive:
            infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
            if len(infos) > self.limits.max_members:
                raise ArchiveReadError(
                    self._last, f"{len(infos)} members, more than {self.limits.max_members}"
                )
            overlaps = _zip_overlaps(infos, self.archive_size)
            for info in infos:
                yield self._zip_member(archive, info, overlaps.get(info.header_offset))

    def _zip_member(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, layout_problem: str | None
    ) -> ArchiveMember:
        kind = _zip_kind(info)
        name = info.filename.rstrip("/") if kind == "dir" else info.filename
        problems = self._name_problems(name, kind)
        if layout_problem:
            problems.append(layout_problem)
        if info.flag_bits & 0x1:
            problems.append("is encrypted")
        claim = self._claim_problem(info.file_size, info.compress_size)
        if claim:
            problems.append(claim)
        mode = (info.external_attr >> 16) & 0o7777 if info.create_system == 3 else 0
        self._last = name
        return ArchiveMember(
            name,
            kind,
            info.file_size,
            mode or 0o644,
            tuple(problems),
            lambda: self._open_zip_member(archive, info),
        )

    def _open_zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Reads:
        stream = archive.open(info)
        if not self._check_crc and hasattr(stream, "_expected_crc"):
            # The caller compares every member's sha256, which subsumes the CRC-32; skipping
            # zipfile's own CRC pass saves a third of the CPU of a verify.
            stream._expected_crc = None
        return stream

    # -- tar ----------------------------------------------------------------------------------

    def _open_tar(self) -> tarfile.TarFile:
        if self.format == "tar":
            return tarfile.open(fileobj=self._source, mode="r:", tarinfo=self._tarinfo_class())
        if self.format == "tar.gz":
            # GzipFile (not tarfile's own gzip stream) so that the trailer's CRC is checked.
            self._gzip = gzip.GzipFile(fileobj=self._source, mode="rb")
            return tarfile.open(fileobj=self._gzip, mode="r|", tarinfo=self._tarinfo_class())
        return tarfile.open(fileobj=self._source, mode="r|*", tarinfo=self._tarinfo_class())

    def _tarinfo_class(self) -> type[tarfile.TarInfo]:
        """The checked TarInfo with this reader's header-size limit."""
        limit = self.limits.max_header_size
        if limit == _CheckedTarInfo.max_header_size:
            return _CheckedTarInfo
        return type("_LimitedTarInfo", (_CheckedTarInfo,), {"max_header_size": limit})

    def _tar_members(self) -> Iterator[ArchiveMember]:
        archive = self._guarded(self._open_tar)
        self._finished_tar = archive
        declared_total = 0
        while True:
            info = self._guarded(archive.next)
            if info is None:
                return
            archive.members.clear()  # tarfile keeps every header otherwise: memory grows
            declared_total += info.size
            if self.format == "tar" and info.size > self.archive_size:
                raise ArchiveReadError(
                    info.name,
                    f"truncated or forged: claims {info.size} bytes, more than the whole "
                    f"{self.archive_size}-byte archive",
                )
            claim = self._tar_claim_problem(info.size, declared_total)
            if claim:
                # Skipping the member would mean inflating all it claims: stop here.
                raise ArchiveReadError(info.name, f"{claim}; not read further", kind="unsafe")
            kind = _tar_kind(info)
            problems = self._name_problems(info.name, kind)
            self._last = info.name
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
                self._broken = True
                return  # the stream is out of step: nothing after this member can be trusted

    def _tar_claim_problem(self, size: int, declared_total: int) -> str | None:
        if self.format == "tar":
            return None  # stored data: a claim beyond the file is truncation (checked above)
        if declared_total > self.archive_size * self.limits.max_ratio:
            return "the members claim far more bytes than the archive can hold (a possible bomb)"
        return self._claim_problem(size, None)

    def _guarded(self, action: Callable[[], Any]) -> Any:
        """Run a tar step; damage becomes an ArchiveReadError naming the last good member."""
        try:
            return action()
        except ArchiveReadError:
            raise
        except _OversizedHeader as exc:
            raise ArchiveReadError(f"after {self._last}", str(exc), kind="unsafe") from exc
        except (*_DECODE_ERRORS, _CorruptHeader) as exc:
            raise ArchiveReadError(f"after {self._last}", _describe(exc)) from exc

    def _drain_tar_tail(self) -> None:
        """Read past the end marker: gzip checks its CRC at the very end; padding must be zero."""
        source: Any = self._gzip if self._gzip is not None else None
        if source is None and self.format == "tar" and self._finished_tar is not None:
            source = self._source
            source.seek(self._finished_tar.offset)
        if source is None:
            return
        trailing = 0
        while True:
            chunk = self._guarded(lambda: source.read(CHUNK_SIZE))
            if not chunk:
                return
            trailing += len(chunk)
            if chunk.count(0) != len(chunk):
                raise ArchiveReadError(
                    f"after {self._last}", "data after the end-of-archive marker"
                )
            if trailing > self.limits.max_trailing_bytes:
                raise ArchiveReadError(
                    f"after {self._last}", "too much padding after the end-of-archive marker"
                )


class _CorruptHeader(Exception):
    """A damaged tar header (tarfile would silently stop reading there)."""


class _OversizedHeader(Exception):
    """A tar extension header larger than the limit (tarfile would hold it in memory)."""


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
            raise _CorruptHeader("truncated: the end-of-archive marker is missing") from exc
        except (_tar_internals.TruncatedHeaderError, _tar_internals.InvalidHeaderError) as exc:
            raise _CorruptHeader(f"damaged header ({exc})") from exc

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _TAR_HEADER_TYPES and self.size > self.max_header_size:
            raise _OversizedHeader(
                f"an extended header claims {self.size} bytes (limit {self.max_header_size})"
            )
        # A private tarfile hook (not in typeshed): it reads the member's extension headers.
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


class _SequentialHasher:
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


def _open_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Reads:
    stream = archive.extractfile(info)
    if stream is None:  # only for members that are not regular files, which are never opened
        raise ValueError(f"member {info.name!r} holds no data")
    return stream


def _zip_kind(info: zipfile.ZipInfo) -> MemberKind:
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    file_type = stat.S_IFMT(mode)
    if file_type == 0:
        return "dir" if info.filename.endswith("/") else "file"
    return _kind_of_mode(file_type)


def _kind_of_mode(file_type: int) -> MemberKind:
    if stat.S_ISREG(file_type):
        return "file"
    if stat.S_ISDIR(file_type):
        return "dir"
    if stat.S_ISLNK(file_type):
        return "symlink"
    if stat.S_ISCHR(file_type) or stat.S_ISBLK(file_type):
        return "device"
    if stat.S_ISFIFO(file_type):
        return "fifo"
    return "other"


def _tar_kind(info: tarfile.TarInfo) -> MemberKind:
    return _TAR_KINDS.get(info.type, "other")


def _zip_overlaps(infos: list[zipfile.ZipInfo], archive_size: int) -> dict[int, str]:
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
        elif end > archive_size:
            problems[info.header_offset] = (
                f"claims {info.compress_size} compressed bytes, past the end of the archive"
            )
    return problems


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
        return f"truncated or corrupt compressed data ({text})"
    return text
