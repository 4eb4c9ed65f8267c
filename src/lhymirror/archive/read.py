"""Safe, streaming reading of zip, tar and tar.gz archives, without extracting anything.

An archive is hostile input. :class:`ArchiveReader` yields its members one at a time, in the
order they are stored, each with its kind, declared size and every reason it is unsafe
(a name with ``..``, an absolute path, a drive letter or a backslash; a symlink, hardlink,
device or fifo; a duplicate; a size or compression ratio the archive cannot honestly hold).
Only safe regular files can be opened, through a stream that never yields more than the
member's declared size and turns every decoding failure into an :class:`ArchiveReadError`
naming the member. Memory stays bounded: data is read in chunks, tar headers are capped, the
number of members is capped, and oversized claims are refused before anything is read.

A tar or compressed tar may come from a pipe (read front to back); a zip needs a file (see
:mod:`lhymirror.archive.source`). While the members pass, a helper thread can hash the file's
own bytes (for its ``.sha256`` sidecar) on the other core.

The zip and tar specifics live in :mod:`~lhymirror.archive.read_zip` and
:mod:`~lhymirror.archive.read_tar`; members, limits and errors in
:mod:`~lhymirror.archive.members` (re-exported here).

Usage::

    with ArchiveReader(path, hash_archive=True) as reader:
        for member in reader:
            if member.is_safe_file:
                with member.open() as stream: ...
        reader.drain()
        sha256 = reader.archive_sha256()
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lhymirror.archive.members import (
    DECODE_ERRORS,
    DEFAULT_LIMITS,
    ArchiveFormat,
    ArchiveFormatError,
    ArchiveLimits,
    ArchiveMember,
    ArchiveReadError,
    MemberKind,
    ReadErrorKind,
    read_error,
)
from lhymirror.archive.read_tar import CorruptHeader, OversizedHeader, TarWalker
from lhymirror.archive.read_zip import zip_members
from lhymirror.archive.source import ArchiveInput, FileHasher, open_input
from lhymirror.core.errors import UsageError
from lhymirror.core.safepath import collision_key, path_problems

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveFormat",
    "ArchiveFormatError",
    "ArchiveLimits",
    "ArchiveMember",
    "ArchiveReadError",
    "ArchiveReader",
    "MemberKind",
    "detect_format",
]


def detect_format(path: Path) -> ArchiveFormat:
    """Tell zip from tar from compressed tar by the file's first bytes (never by its name)."""
    opened = open_input(Path(path))
    try:
        return _format_of(opened, str(path))
    finally:
        opened.stream.close()


def _format_of(opened: ArchiveInput, where: str) -> ArchiveFormat:
    head = opened.head
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith((b"BZh", b"\xfd7zXZ\x00")):
        return "tar.compressed"
    if len(head) == 512 and (
        head[257:262] == b"ustar" or _valid_tar_checksum(head) or not head.strip(b"\0")
    ):
        return "tar"
    # A zip may start with other data (a self-extractor): only its end record tells. A file's
    # end record is found within its last 64 KiB, so this reads little.
    if opened.seekable and zipfile.is_zipfile(opened.stream):
        opened.stream.seek(0)
        return "zip"
    raise ArchiveFormatError(
        "not an archive",
        where=where,
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

    With ``hash_archive`` the archive file's own sha256 is computed meanwhile by a helper
    thread (:meth:`archive_sha256`; never for a pipe, which cannot be read
    twice: check ``seekable``). ``check_crc=False`` skips zip's CRC-32 check, for callers that
    compare every member's sha256 anyway. :meth:`drain` reads what follows the last member (a
    gzip stream's CRC, a tar's padding) so that damage there is found too.
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
        self.limits = limits
        self.check_crc = check_crc
        opened = open_input(self.path)
        self.source: Any = opened.stream  # the archive's bytes, read by the format's walker
        try:
            self.format = _format_of(opened, str(self.path))
            if self.format == "zip" and not opened.seekable:
                raise UsageError(
                    "cannot read a zip from a pipe",
                    where=str(self.path),
                    detail="a zip keeps its table of contents at its end",
                    hint="Save it to a file first, then verify the file.",
                )
        except BaseException:
            self.source.close()
            raise
        self.seekable = opened.seekable
        self.archive_size = opened.size  # None for a pipe
        self._hasher = (
            FileHasher(self.source, self.path) if hash_archive and self.seekable else None
        )
        self.last: str | None = None  # the last member seen, for naming damage after it
        self._names: dict[str, str] = {}  # collision key -> first name seen
        self._members = 0  # every member counts, duplicates included
        self._tar = TarWalker(self) if self.format != "zip" else None

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the archive file (and stop hashing it)."""
        if self._hasher is not None:
            self._hasher.stop()
        self.source.close()

    def __iter__(self) -> Iterator[ArchiveMember]:
        if self._tar is None:
            return zip_members(self)
        return self._tar.members()

    def drain(self) -> None:
        """After the last member, read to the end: a gzip trailer's CRC, a tar's zero padding."""
        if self._tar is not None:
            self._tar.drain()

    @property
    def stopped_early(self) -> bool:
        """True when a tar member's data could not be read: nothing after it was read."""
        return self._tar is not None and self._tar.broken

    def archive_sha256(self) -> str | None:
        """sha256 of the whole archive file when hashing (reads what the members skipped)."""
        return self._hasher.hexdigest() if self._hasher is not None else None

    # -- checks shared by the zip and tar readers ---------------------------------------------

    @property
    def after_last(self) -> str:
        """Where damage found between members is: after the last one, or the archive itself."""
        return f"after {self.last}" if self.last is not None else str(self.path)

    def name_problems(self, name: str, kind: MemberKind) -> list[str]:
        """Every reason the member *name* of *kind* is unsafe; counts it against the cap."""
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

    def claim_problem(self, size: int, compressed: int | None) -> str | None:
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
        if self.archive_size is not None and size > self.archive_size * limits.max_ratio:
            return (
                f"claims {size} bytes, far beyond what a {self.archive_size}-byte archive can "
                "hold (a possible bomb)"
            )
        return None

    def guarded(self, action: Callable[[], Any]) -> Any:
        """Run a tar step; damage becomes an ArchiveReadError naming the last good member."""
        where = self.after_last
        try:
            return action()
        except ArchiveReadError:
            raise
        except OversizedHeader as exc:
            raise ArchiveReadError(where, str(exc), kind="unsafe") from exc
        except CorruptHeader as exc:
            kind: ReadErrorKind = "truncated" if exc.truncated else "malformed"
            raise ArchiveReadError(where, str(exc), kind=kind) from exc
        except DECODE_ERRORS as exc:
            raise read_error(where, exc) from exc
