"""What the archive reader hands out: members, their guarded streams, its limits and errors.

Every failure of the standard library's decoders (zipfile, tarfile, gzip, zlib, lzma) becomes an
:class:`ArchiveReadError` naming the member and saying, in lhymirror's words, what is wrong:
Python's own texts (``File name in directory 'x' and header b'y' differ``) never reach a user.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from lhymirror.core.errors import IntegrityError
from lhymirror.core.safepath import printable
from lhymirror.core.streams import Reads

ArchiveFormat = Literal["zip", "tar", "tar.gz", "tar.compressed"]
MemberKind = Literal["file", "dir", "symlink", "hardlink", "device", "fifo", "other"]
ReadErrorKind = Literal["malformed", "unsafe", "truncated"]

# Errors the standard library raises for damaged archives; all become ArchiveReadError.
DECODE_ERRORS = (
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


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds that keep a hostile archive from exhausting memory, disk or time.

    A member may decompress to at most ``max_ratio`` times its compressed size. Deflate cannot
    exceed about 1032:1, so no honest deflated member (what other tools and older packs write)
    ever trips the default, even all zeros; higher claims are lies or other methods' bombs
    (bzip2, LZMA).
    Members smaller than ``ratio_min_size`` are exempt: tiny files may compress arbitrarily.
    """

    max_ratio: float = 2000.0
    ratio_min_size: int = 1024 * 1024
    max_members: int = 100_000
    max_header_size: int = 1024 * 1024  # tar pax / GNU long-name headers are held in memory
    max_trailing_bytes: int = 16 * 1024 * 1024  # padding read after a tar's end marker


DEFAULT_LIMITS = ArchiveLimits()

_WHAT = {
    "malformed": "unreadable archive member",
    "unsafe": "unsafe archive member",
    "truncated": "truncated archive",
}


class ArchiveReadError(IntegrityError):
    """The archive cannot be read at (or past) *member*: truncated, corrupt or refused.

    ``kind`` is ``"truncated"`` when the archive ends early, ``"malformed"`` for other damage
    and ``"unsafe"`` for a refused claim (a bomb).
    """

    def __init__(self, member: str, detail: str, *, kind: ReadErrorKind = "malformed") -> None:
        self.member = member
        self.kind = kind
        super().__init__(
            _WHAT[kind],
            where=printable(member),
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
        except DECODE_ERRORS as exc:
            self._member.failed = True
            raise read_error(self._name, exc) from exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill the start of *buffer*; straight from the archive when the member allows it."""
        view = memoryview(buffer).cast("B")
        into = getattr(self._inner, "readinto", None)
        if into is None:
            data = self.read(len(view))
            view[: len(data)] = data
            return len(data)
        want = min(len(view), self._left + 1)  # one byte more than declared reveals a liar
        if want == 0:
            return 0
        with self._errors_named():
            n = into(view[:want]) or 0
            self._account(n)
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Up to *size* bytes (``bytes``, no extra copy); b"" at the member's end."""
        limit = self._left + 1  # one byte more than declared reveals a liar
        want = limit if size is None or size < 0 else min(size, limit)
        if want == 0:
            return b""
        with self._errors_named():
            data = self._inner.read(want)
            self._account(len(data))
        return data

    def _account(self, n: int) -> None:
        if n > self._left:
            raise ArchiveReadError(self._name, f"holds more than its declared {self._size} bytes")
        if n == 0 and self._left:
            raise ArchiveReadError(
                self._name,
                f"the archive ends inside this member ({self._size - self._left} of "
                f"{self._size} bytes)",
                kind="truncated",
            )
        self._left -= n


# ---------------------------------------------------------------------------------------------
# The standard library's errors in lhymirror's words

# (text the library's message starts with or contains, kind, what it means)
_KNOWN: tuple[tuple[str, ReadErrorKind, str], ...] = (
    ("File name in directory", "malformed", "the central directory and the member's own header "
     "disagree on its name (a corrupt or forged central directory)"),
    ("Bad magic number for file header", "malformed", "no member header where the central "
     "directory points (a corrupt central directory)"),
    ("Truncated file header", "truncated", "the archive ends inside a member's header"),
    ("Bad magic number for central directory", "malformed", "the central directory is corrupt"),
    ("Truncated central directory", "truncated", "the central directory is cut short"),
    ("Bad offset for central directory", "malformed", "the central directory is not where the "
     "archive's end record says"),
    ("File is not a zip file", "truncated", "no end-of-archive record: the zip is cut short or "
     "its end is damaged"),
    ("Corrupt extra field", "malformed", "a member's extra field is corrupt"),
    ("Corrupt zip64 extra field", "malformed", "a member's zip64 extra field is corrupt"),
    ("Overlapped entries", "unsafe", "members overlap (a possible zip bomb)"),
    ("Bad CRC-32", "malformed", "its CRC-32 does not match: the data is corrupt"),
    ("That compression method is not supported", "malformed", "an unknown compression method "
     "(a corrupt header, or a tool lhymirror cannot read)"),
    ("compression type", "malformed", "a compression method lhymirror cannot read"),
    ("zipfiles that span multiple disks", "malformed", "a zip split over several files, which "
     "lhymirror cannot read"),
    ("zip file version", "malformed", "needs a newer zip version than lhymirror reads"),
    ("strong encryption", "malformed", "is encrypted"),
    ("is encrypted", "malformed", "is encrypted"),
    ("compressed patched data", "malformed", "uses patched data, which lhymirror cannot read"),
    ("Compressed file ended before", "truncated", "the archive ends inside this member"),
    ("unexpected end of data", "truncated", "the archive ends inside this member"),
    ("CRC check failed", "malformed", "the gzip checksum does not match: the data is corrupt"),
    ("Incorrect length of data produced", "malformed", "the gzip length check failed: the data "
     "is corrupt"),
    ("Not a gzipped file", "malformed", "a damaged gzip header"),
    ("Unknown compression method", "malformed", "a damaged gzip header"),
)  # fmt: skip
_BYTES_REPR = re.compile(r"\bb['\"]|\\x[0-9a-f]{2}")


def read_error(member: str, exc: BaseException) -> ArchiveReadError:
    """*exc* (a decoder's failure at *member*) as an ``ArchiveReadError`` in our words."""
    kind, detail = describe(exc)
    return ArchiveReadError(member, detail, kind=kind)


def describe(exc: BaseException) -> tuple[ReadErrorKind, str]:
    """The kind of damage and a one-line description of a decoder's failure."""
    text = str(exc).strip()
    for needle, kind, meaning in _KNOWN:
        if needle in text:
            return kind, meaning
    if isinstance(exc, EOFError):
        return "truncated", "the archive ends inside this member"
    if isinstance(exc, zlib.error | lzma.LZMAError | gzip.BadGzipFile):
        return "malformed", "corrupt compressed data"
    if isinstance(exc, zipfile.BadZipFile | NotImplementedError | RuntimeError):
        return "malformed", "a corrupt zip structure"
    if not text or _BYTES_REPR.search(text):
        return "malformed", "corrupt data"
    return "malformed", text.rstrip(".")
