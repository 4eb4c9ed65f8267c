"""What one transfer is about: its target, its result, its progress hooks and its outcomes.

The vocabulary shared by the download engine (:mod:`lhymirror.fetch.download`) and the code that
plans and runs transfers (:mod:`lhymirror.fetch.sync`). It needs no network library, so a sync with
nothing to transfer never imports one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from lhymirror.core.errors import DownloadError, IncompleteError, IntegrityError
from lhymirror.core.fsutil import hash_stream


class AssemblyDigest:
    """sha256 of the first :attr:`covered` bytes of a split file's assembly, carried across parts.

    The parts are appended in place and in order, so feeding each part's bytes to one digest as
    they stream gives the whole file's sha256 when the last part ends: the joined file needs no
    second read. Where the bytes on disk and the digest part ways (bytes held from an earlier
    run, a part started again from zero), :meth:`cover` reads or rewinds to where they agree.
    """

    def __init__(self) -> None:
        self._digest: Any = hashlib.sha256()
        self.covered = 0
        self._marks: dict[int, Any] = {}  # digest states at the offsets cover() was asked for

    def cover(self, path: Path, end: int) -> None:
        """Make the digest cover exactly the first *end* bytes of *path* (at least that long)."""
        if self.covered > end:  # the bytes after *end* were dropped: forget what they gave
            self._marks = {mark: state for mark, state in self._marks.items() if mark <= end}
            start = max(self._marks, default=0)
            self._digest = self._marks[start].copy() if start else hashlib.sha256()
            self.covered = start
        if self.covered < end:
            self._read(path, end)
        self._marks[end] = self._digest.copy()

    def update(self, chunk: bytes) -> None:
        """Add bytes just appended after the covered ones."""
        self._digest.update(chunk)
        self.covered += len(chunk)

    def hexdigest_of(self, size: int) -> str | None:
        """The sha256 of the first *size* bytes, when that is exactly what is covered."""
        return self._digest.hexdigest() if self.covered == size else None

    def _read(self, path: Path, end: int) -> None:
        with path.open("rb", buffering=0) as stream:
            stream.seek(self.covered)
            wanted = end - self.covered
            size, _ = hash_stream(stream, digest=self._digest, limit=wanted)
        self.covered += size
        if self.covered < end:
            raise OSError(f"{path} ends at {self.covered} bytes, expected {end}")


@dataclass(frozen=True)
class Target:
    """One thing to download: a file, or one part of a split file.

    A file is streamed into the store's partial file and renamed to *final_path* once verified.
    A part (*offset* set) is appended in place to *final_path*, the split file's assembly,
    starting at *offset*, where the parts before it end; once verified it simply stays there.
    """

    key: str  # book-keeping key: entry id, or store.part_key(id, i) for a part
    final_path: Path  # where the verified bytes end up; parent dirs created
    expected_size: int | None
    expected_sha256: str | None  # None = trust on first use (the caller records the result)
    name: str  # the manifest path (for messages and content sniffing by extension)
    offset: int | None = None  # a part: where it starts in the assembly at final_path
    # A part: the digest of the whole assembly, fed as the part's bytes are appended.
    assembly_digest: AssemblyDigest | None = field(default=None, compare=False, repr=False)
    # May its remainder be fetched as several ranges at once (a host that is not capped)?
    segmentable: bool = False
    # The entry's own first source: only its other bytes can mean that upstream changed; any
    # other source is a copy (a mirror, --from, the Internet Archive). None: not known.
    primary: str | None = None
    # A part of a split file: called once its one connection proves slow for the rest of the
    # file (*file_rest* bytes from the part's start), to fetch the later parts meanwhile, and
    # again as connections are set aside for it; True while it waits for more of them.
    when_slow: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    file_rest: int | None = None


@dataclass(frozen=True)
class FetchResult:
    """What a successful :meth:`Downloader.fetch` delivered."""

    key: str
    size: int
    sha256: str | None  # None for a part without a checksum of its own: the whole is checked
    source: str  # the source string that delivered the bytes (as given to fetch)
    etag: str | None
    last_modified: str | None
    resumed_from: int  # offset the successful transfer resumed at (0 = from scratch)
    bytes_received: int  # body bytes received over the network for this target, all attempts


class TransferEvents(Protocol):
    """Progress hooks, called from the worker thread doing the transfer."""

    def started(self, key: str, total: int | None, offset: int) -> None:
        """A body starts streaming at *offset* of *total* bytes (None = unknown)."""

    def advanced(self, key: str, nbytes: int) -> None:
        """*nbytes* more bytes were received and kept."""

    def restarted(self, key: str, offset: int) -> None:
        """The bytes held went back to *offset* (e.g. a 200 answer to a Range request)."""

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """An attempt failed for *reason*; the next one starts after *delay* seconds."""


class SilentEvents:
    """The default :class:`TransferEvents`: ignores everything."""

    def started(self, key: str, total: int | None, offset: int) -> None:
        """Ignored."""

    def advanced(self, key: str, nbytes: int) -> None:
        """Ignored."""

    def restarted(self, key: str, offset: int) -> None:
        """Ignored."""

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """Ignored."""


# Why a file could not be fetched, grouped the way the help differs: unreachable hosts (network,
# proxy, --from), gone (404/410, not shared: the manifest needs a new source), quota (wait),
# html (a page instead of data), checksum (the file's own source served other bytes: kept aside),
# copy (only copies served other bytes), manual, offline (--offline), other.
FailureCause = Literal[
    "unreachable",
    "gone",
    "quota",
    "html",
    "checksum",
    "copy",
    "manual",
    "offline",
    "storage",
    "unusable",
    "other",
]


def with_cause(error: DownloadError, cause: FailureCause) -> DownloadError:
    """*error*, marked with the cause of the failure."""
    error.cause = cause
    return error


class ManualStepRequired(IncompleteError):
    """Only a human can get this file now; ``instructions`` says exactly what to do."""

    def __init__(
        self, what: str, *, instructions: str, where: str | None = None, detail: str | None = None
    ) -> None:
        self.instructions = instructions
        super().__init__(what, where=where, detail=detail, hint=_sentence(instructions))


class UpstreamChangedError(IntegrityError):
    """Every source served bytes that differ from the manifest's pin; they were kept aside.

    ``actual`` maps each source to the sha256 it served (None when the size alone differed and
    nothing was downloaded); ``rejected`` lists where the bytes were put.
    """

    def __init__(
        self,
        where: str,
        expected_sha256: str,
        actual: dict[str, str | None],
        rejected: list[Path],
        detail: str,
    ) -> None:
        self.expected_sha256 = expected_sha256
        self.actual = actual
        self.rejected = rejected
        super().__init__(
            "content differs from the manifest (upstream may have been updated)",
            where=where,
            detail=detail,
            hint="Inspect the kept bytes; if they are right, update the manifest's size and "
            "sha256 (or run sync with --accept-upstream).",
        )


def _sentence(text: str) -> str:
    """*text* as a sentence: capitalised, ending with a full stop."""
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "." if text else text
