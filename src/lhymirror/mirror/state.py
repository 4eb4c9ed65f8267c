"""What one manifest file is held to, what is on disk for it, and the one check between them.

Every command that looks at a mirror file (``status``, ``sync``, ``verify --year``, ``pack``,
``add``) builds one :class:`EntryState` per entry (one record read, one ``lstat`` walk) and asks
it, or :func:`check_bytes` for bytes not yet in the mirror (a download, an import), what is
wrong. The answer is a :class:`FileProblem` with a ``kind``, the expected and actual values and
where the expectation came from; :func:`describe` is the only place that words one.

The check runs in one order, as BagIt tools do: is there a regular file, then its size, then its
sha256. Symbolic links are never followed: a link in place of a file, or a linked folder on the
way to it, is a ``symlink`` problem of that file in every command. A directory, fifo, socket or
device in place of a file is ``not_a_file``; a file that cannot be opened is ``unreadable``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lhymirror.core.fsutil import CHUNK_SIZE, ThreadedDigest, open_no_follow, open_regular
from lhymirror.manifest.model import FileEntry
from lhymirror.mirror.store import FileRecord, MirrorStore

Origin = Literal["manifest", "recorded", "none"]
ProblemKind = Literal[
    "missing", "symlink", "not_a_file", "unreadable", "size", "checksum", "unverified"
]
DiskKind = Literal["absent", "file", "symlink", "not_a_file", "unreadable"]
# What stands at a file's path but is not a usable file: never followed, read around or replaced
# (a problem kind, and a file status of the same name).
Unusable = Literal["symlink", "not_a_file", "unreadable"]
UNUSABLE: tuple[Unusable, ...] = ("symlink", "not_a_file", "unreadable")
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Expected:
    """The size and checksum a file is held to, and where they come from."""

    size: int | None
    sha256: str | None
    origin: Origin


def expected_of(entry: FileEntry, record: FileRecord | None) -> Expected:
    """Size and sha256 a file must have: the manifest's pin, else the first verified download.

    A record whose content the user accepted although it differs from the pin
    (``sync --accept-upstream``) overrides the pin. A record of another path is ignored.
    """
    if (
        record is not None
        and record.path == entry.path
        and (entry.sha256 is None or record.accepted_upstream)
    ):
        return Expected(record.size, record.sha256, "recorded")
    if entry.sha256 is not None:
        return Expected(entry.size, entry.sha256, "manifest")
    return Expected(entry.size, None, "none")


# ---------------------------------------------------------------------------------------------
# Problems and their one wording


@dataclass(frozen=True)
class FileProblem:
    """What is wrong with a file's bytes (or with what stands at its path).

    ``expected``/``actual``: sizes for ``size``, sha256s for ``checksum``, the link's path for
    ``symlink``. ``detail``: what stands there instead (``not_a_file``), the system's reason
    (``unreadable``), or the manual step (``missing``).
    """

    kind: ProblemKind
    expected: int | str | None = None
    actual: int | str | None = None
    origin: Origin | None = None
    detail: str = ""

    def __str__(self) -> str:
        return describe(self)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` output (``text`` is :func:`describe`)."""
        return {
            "kind": self.kind,
            "expected": self.expected,
            "actual": self.actual,
            "origin": self.origin,
            "text": describe(self),
        }


def describe(problem: FileProblem) -> str:
    """The one wording of a problem, the same in every command."""
    return _WORDING[problem.kind](problem)


def _origin(problem: FileProblem) -> str:
    return f" ({problem.origin})" if problem.origin not in (None, "none") else ""


def _in_parentheses(text: str) -> str:
    return f" ({text})" if text else ""


_WORDING: dict[ProblemKind, Callable[[FileProblem], str]] = {
    "missing": lambda p: "not in the mirror" + _in_parentheses(p.detail),
    "symlink": lambda p: f"symlink inside the mirror at {p.actual} (not followed)",
    "not_a_file": lambda p: f"not a regular file ({p.detail})",
    "unreadable": lambda p: f"unreadable ({p.detail})",
    "size": lambda p: (
        f"size differs: expected {p.expected} bytes{_origin(p)}, "
        f"got {'more' if p.actual is None else p.actual}"
    ),
    "checksum": lambda p: f"sha256 differs: expected {p.expected}{_origin(p)}, got {p.actual}",
    "unverified": lambda p: "no checksum known yet",
}


def check_bytes(expected: Expected, size: int | None, sha256: str | None) -> FileProblem | None:
    """Bytes of *size* and *sha256* (None: not known) against what they are held to.

    Size first, then sha256; an expectation that is unknown is not checked.
    """
    if expected.size is not None and size != expected.size:
        return FileProblem("size", expected.size, size, expected.origin)
    if expected.sha256 is not None and sha256 is not None and sha256 != expected.sha256:
        return FileProblem("checksum", expected.sha256, sha256, expected.origin)
    return None


# ---------------------------------------------------------------------------------------------
# What is on disk


@dataclass(frozen=True)
class OnDisk:
    """What stands at a file's path, seen without following links."""

    kind: DiskKind
    size: int | None = None
    mtime_ns: int | None = None
    detail: str = ""  # the link's path, what stands there instead, or why it cannot be read


def look_at(store: MirrorStore, path: Path) -> OnDisk:
    """``lstat`` each folder from the year folder down to *path*, then the file itself."""
    current = store.year_dir
    for part in path.relative_to(store.year_dir).parts:
        current = current / part
        try:
            info = current.lstat()
        except FileNotFoundError:
            return OnDisk("absent")
        except NotADirectoryError:
            folder = _relative(store, current.parent)
            return OnDisk("not_a_file", detail=f"its folder {folder} is a file")
        except OSError as exc:
            return OnDisk("unreadable", detail=_reason(exc))
        if stat.S_ISLNK(info.st_mode):
            return OnDisk("symlink", detail=_relative(store, current))
    return _regular_file(path, info)


def _regular_file(path: Path, info: os.stat_result) -> OnDisk:
    """A readable regular file as *info* saw it, or what stands there instead."""
    if stat.S_ISDIR(info.st_mode):
        return OnDisk("not_a_file", detail="a directory")
    if not stat.S_ISREG(info.st_mode):
        return OnDisk("not_a_file", detail=f"a {_special_kind(info.st_mode)}")
    try:
        os.close(open_no_follow(path))  # readable? (the type is known from the stat)
    except OSError as exc:
        return OnDisk("unreadable", detail=_reason(exc))
    return OnDisk("file", info.st_size, info.st_mtime_ns)


def _relative(store: MirrorStore, path: Path) -> str:
    return path.relative_to(store.year_dir).as_posix()


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def hash_regular(path: Path, progress: ProgressCallback | None = None) -> tuple[int, str]:
    """``(size, sha256)`` of a regular file, read without following links (``OSError``)."""
    digest = ThreadedDigest()  # hashing overlaps with reading the next chunk
    size = 0
    try:
        with open_regular(path) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(len(chunk))
    except BaseException:
        digest.close()
        raise
    return size, digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# One entry's state


@dataclass(frozen=True)
class Checked:
    """The result of hashing a file against its expectation."""

    problem: FileProblem | None
    size: int | None = None  # None when the file could not be read
    sha256: str | None = None


@dataclass(frozen=True)
class EntryState:
    """Everything known about one manifest file before any byte is read.

    Built once per entry per command by :meth:`read`: the record (read once), what the file is
    held to, and what is on disk.
    """

    entry: FileEntry
    path: Path
    record: FileRecord | None
    expected: Expected
    disk: OnDisk

    @classmethod
    def read(cls, store: MirrorStore, entry: FileEntry) -> EntryState:
        """The state of *entry* in *store* (``StorageError`` for a path that is never safe)."""
        path = store.locate(entry.path)
        record = store.record(entry.id)
        return cls(entry, path, record, expected_of(entry, record), look_at(store, path))

    @property
    def present(self) -> bool:
        """True when a regular, readable file stands at the path."""
        return self.disk.kind == "file"

    @property
    def unchanged_since_verified(self) -> bool:
        """True when the file was verified against what it is held to now (a record of other
        bytes, e.g. from an older pin, does not count) and its size and mtime are unchanged."""
        record = self.record
        if record is None or record.path != self.entry.path:
            return False
        if record.sha256 != self.expected.sha256 or not self.present:
            return False
        return (self.disk.size, self.disk.mtime_ns) == (record.size, record.mtime_ns)

    def check(self, sha256: str | None = None, *, size: int | None = None) -> FileProblem | None:
        """The one check: a regular file, then its size, then its sha256 (when given).

        *size* is the size hashed, when it was (else the size ``lstat`` saw). A present file of
        the right size with no checksum known is ``unverified``.
        """
        problem = self._disk_problem()
        if problem is not None:
            return problem
        problem = check_bytes(self.expected, self.disk.size if size is None else size, sha256)
        if problem is None and self.expected.sha256 is None:
            return FileProblem("unverified")
        return problem

    def verify(self, progress: ProgressCallback | None = None) -> Checked:
        """Hash the file and check it (a file that fails to read is ``unreadable``)."""
        problem = self._disk_problem()
        if problem is not None:
            return Checked(problem)
        try:
            size, sha256 = hash_regular(self.path, progress)
        except OSError as exc:
            return Checked(FileProblem("unreadable", detail=_reason(exc)))
        return Checked(self.check(sha256, size=size), size, sha256)

    def _disk_problem(self) -> FileProblem | None:
        disk = self.disk
        if disk.kind == "absent":
            manual = "manual download: import it with `lhymirror add`"
            return FileProblem("missing", detail=manual if self.entry.is_manual_only else "")
        if disk.kind == "symlink":
            return FileProblem("symlink", actual=disk.detail)
        if disk.kind in ("not_a_file", "unreadable"):
            return FileProblem(disk.kind, detail=disk.detail)
        return None


# ---------------------------------------------------------------------------------------------
# The state ``status`` shows


FileStatus = Literal[
    "ok", "missing", "partial", "changed", "unverified", "manual", "symlink", "not_a_file",
    "unreadable",
]  # fmt: skip


_STATUS_OF: dict[ProblemKind, FileStatus] = {
    "missing": "missing",
    "symlink": "symlink",
    "not_a_file": "not_a_file",
    "unreadable": "unreadable",
    "size": "changed",
    "checksum": "changed",
    "unverified": "unverified",
}


@dataclass(frozen=True)
class LocalState:
    """The local state of one manifest file, as ``status`` shows it."""

    entry_id: str
    status: FileStatus
    detail: str = ""
    size: int | None = None
    expected: Expected | None = None
    problem: FileProblem | None = None


def local_state(store: MirrorStore, entry: FileEntry, *, rehash: bool = False) -> LocalState:
    """Classify one file without any network access (re-hashing only when needed)."""
    state = EntryState.read(store, entry)
    expected = state.expected
    if state.disk.kind == "absent":
        return _absent_state(store, state)
    if not rehash and expected.sha256 and state.unchanged_since_verified:
        return LocalState(entry.id, "ok", size=state.disk.size, expected=expected)
    problem = state.check()
    size = state.disk.size
    if problem is None:
        checked = state.verify()
        problem, size = checked.problem, checked.size
    if problem is None:
        return LocalState(entry.id, "ok", size=size, expected=expected)
    status = _STATUS_OF[problem.kind]
    return LocalState(entry.id, status, describe(problem), size, expected, problem)


def _absent_state(store: MirrorStore, state: EntryState) -> LocalState:
    entry, expected = state.entry, state.expected
    missing = state.check()
    held = store.held_bytes(entry)
    if held:
        total = expected.size or entry.size
        percent = f" {100 * held // total}%" if total else ""
        return LocalState(
            entry.id, "partial", f"{held} bytes held{percent}", held, expected, missing
        )
    if entry.is_manual_only:
        return LocalState(entry.id, "manual", entry.manual or "", None, expected, missing)
    return LocalState(entry.id, "missing", "", None, expected, missing)
