"""The local mirror: where files live on disk and what lhymirror remembers about them.

Layout (the contract ``sync``, ``status``, ``pack`` and ``verify`` share)::

    ROOT/<year>/<path>                          the files, exactly as the manifest names them
    ROOT/<year>/.lhymirror/state/<id>.json      recorded state of a verified file (FileRecord)
    ROOT/<year>/.lhymirror/partial/<key>.part   bytes of an unfinished download
    ROOT/<year>/.lhymirror/partial/<key>.json   its sidecar (PartialState)
    ROOT/<year>/.lhymirror/partial/<id>.assembly   a split file's parts, appended in order
    ROOT/<year>/.lhymirror/rejected/…           bytes that failed verification, kept for inspection
    ROOT/<year>/.lhymirror/lock                 held while a command writes to the year

Files in the year folder that the manifest does not list are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lhymirror.core.errors import ManifestError, StorageError, storage_errors
from lhymirror.core.fsutil import atomic_write_text, replace_durably, try_lock
from lhymirror.core.safepath import RESERVED_FOLDER, is_reserved, path_problems
from lhymirror.core.units import utc_now
from lhymirror.manifest.model import ENTRY_ID_PATTERN, FileEntry

RECORD_VERSION = 1
_BOOK_KEY = re.compile(ENTRY_ID_PATTERN)  # ids, and the keys derived from them (``id.part00``)


@dataclass(frozen=True)
class FileRecord:
    """What lhymirror knows about a file it verified: written after every successful transfer."""

    id: str
    path: str
    size: int
    sha256: str
    mtime_ns: int  # the file's mtime when verified: unchanged size+mtime means unchanged bytes
    verified_at: str
    source: str | None = None  # what the bytes came from (URL, "file:…" for `add`)
    etag: str | None = None
    last_modified: str | None = None
    accepted_upstream: bool = False  # content differs from the manifest's pin, accepted by the user


@dataclass
class PartialState:
    """Sidecar of a partial download: enough to resume it only with proof."""

    url: str  # the original (pre-redirect) URL the bytes came from
    etag: str | None = None
    last_modified: str | None = None
    expected_size: int | None = None
    expected_sha256: str | None = None
    bytes_held: int = 0
    complete: bool = False  # a verified part of a split file, kept in place in the assembly
    updated_at: str = field(default_factory=utc_now)


class MirrorStore:
    """One year of a local mirror: ``ROOT/<year>`` and its ``.lhymirror`` book-keeping."""

    def __init__(self, root: Path, year: int) -> None:
        self.root = Path(root)
        self.year = year
        self.year_dir = self.root / str(year)
        self.meta_dir = self.year_dir / RESERVED_FOLDER
        self._located: dict[str, Path] = {}  # safe manifest paths, checked once

    # -- paths -----------------------------------------------------------------------------

    def file_path(self, relative: str) -> Path:
        """Final location of a manifest path, to write to: refuses unsafe paths and links."""
        target = self.locate(relative)
        self._refuse_symlinks(target)
        return target

    def locate(self, relative: str) -> Path:
        """Where a manifest path lives; refuses paths that could leave the year folder.

        Links on the way are not looked at (:func:`lhymirror.mirror.state.look_at` does), except
        a linked year folder, which no command works through.
        """
        located = self._located.get(relative)
        if located is None:
            problems = path_problems(relative)
            if problems or is_reserved(relative):
                raise StorageError(
                    "unsafe path", where=relative, detail="; ".join(problems) or "reserved folder"
                )
            located = self._located[relative] = self.year_dir.joinpath(*relative.split("/"))
        self._refuse_linked_year()  # looked at every time: a link may appear meanwhile
        return located

    def _refuse_symlinks(self, target: Path) -> None:
        """Refuse a path with a symlinked component between the year folder and the file."""
        current = self.year_dir
        for part in target.relative_to(self.year_dir).parts:
            current = current / part
            if current.is_symlink():
                raise StorageError(
                    "symlink inside the mirror",
                    where=str(current),
                    hint="lhymirror never writes through links; remove it and run again.",
                )

    def _refuse_linked_year(self) -> None:
        if self.year_dir.is_symlink():
            raise StorageError(
                "symlinked folder in the mirror",
                where=str(self.year_dir),
                hint="lhymirror writes only below real folders; replace the link with a folder.",
            )

    def partial_path(self, key: str) -> Path:
        """Where the unfinished bytes of *key* (an entry id, or ``id.partNN``) are kept."""
        return self._book_file("partial", key, ".part")

    def assembly_path(self, entry_id: str) -> Path:
        """Where the parts of a split file are put together, appended one after another."""
        return self._book_file("partial", entry_id, ".assembly")

    def partial_state_path(self, key: str) -> Path:
        """Sidecar of a partial download."""
        return self._book_file("partial", key, ".json")

    def record_path(self, entry_id: str) -> Path:
        """Where the record of a verified file is kept."""
        return self._book_file("state", entry_id, ".json")

    def rejected_path(self, key: str, sha256: str) -> Path:
        """Where bytes that failed verification are put aside."""
        return self._book_file("rejected", key, f".{sha256[:12]}.bad")

    def _book_file(self, folder: str, key: str, suffix: str) -> Path:
        """lhymirror's own file *key* + *suffix* in *folder* of the records."""
        return self.meta_dir / folder / f"{_safe_key(key)}{suffix}"

    def reject(self, key: str, path: Path, sha256: str) -> Path:
        """Move bytes that failed verification out of the way (into ``rejected/``); return where."""
        destination = self.rejected_path(key, sha256)
        with storage_errors(destination):
            destination.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(path, destination)
        return destination

    def ensure_dirs(self) -> None:
        """Create the book-keeping folders (storage errors become ``StorageError``)."""
        for name in ("state", "partial", "rejected"):
            with storage_errors(self.meta_dir / name):
                (self.meta_dir / name).mkdir(parents=True, exist_ok=True)

    # -- records -----------------------------------------------------------------------------

    def record(self, entry_id: str) -> FileRecord | None:
        """The recorded state of a file, or None (also for an unreadable record)."""
        data = _read_json(self.record_path(entry_id))
        if data is None or data.pop("record_version", None) != RECORD_VERSION:
            return None
        try:
            return FileRecord(**data)
        except TypeError:
            return None

    def save_record(self, record: FileRecord) -> None:
        """Write a file's record atomically."""
        data = {"record_version": RECORD_VERSION, **asdict(record)}
        path = self.record_path(record.id)
        with storage_errors(path):
            atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def partial_state(self, key: str) -> PartialState | None:
        """The sidecar of a partial download, or None."""
        data = _read_json(self.partial_state_path(key))
        if data is None:
            return None
        try:
            return PartialState(**data)
        except TypeError:
            return None

    def save_partial_state(self, key: str, state: PartialState) -> None:
        """Write the sidecar of a partial download atomically.

        Not fsynced: it is rewritten while bytes stream in, and losing an update to a power cut
        costs at most a restart from zero (the final sha256 check catches any bad prefix).
        Atomic, though: a write that fails (a full disk) leaves the previous sidecar whole, so
        the bytes it describes stay resumable once space is freed.
        """
        path = self.partial_state_path(key)
        text = json.dumps(asdict(state), indent=2, sort_keys=True) + "\n"
        with storage_errors(path):
            atomic_write_text(path, text, durable=False)

    def discard_partial(self, key: str) -> None:
        """Remove a partial download, its sidecar, and the pieces of a segmented download."""
        path = self.partial_path(key)
        with storage_errors(path):
            path.unlink(missing_ok=True)
            self.partial_state_path(key).unlink(missing_ok=True)
            for name in _names_starting(path.parent, path.name + "."):
                (path.parent / name).unlink(missing_ok=True)  # pieces, their record, staged

    def discard_partials(self, entry: FileEntry) -> None:
        """Remove every unfinished download of an entry, its parts' assembly included."""
        for key in _download_keys(entry):
            self.discard_partial(key)
        with storage_errors(self.assembly_path(entry.id)):
            self.assembly_path(entry.id).unlink(missing_ok=True)

    def held_bytes(self, entry: FileEntry) -> int:
        """Bytes of the entry's unfinished download (or of its parts' assembly) already on disk."""
        paths = (self.partial_path(entry.id), self.assembly_path(entry.id))
        return sum(_size_or_zero(path) for path in paths)

    # -- lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(
        self,
        *,
        wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[None]:
        """Hold the year's lock; wait up to *wait* seconds for another command to release it.

        The lock is an OS-level lock on an open file, so a killed process never leaves a stale
        lock behind: the kernel releases it when the process dies.
        """
        self.ensure_dirs()
        path = self.meta_dir / "lock"
        with storage_errors(path):
            handle = path.open("a+b")
        try:
            deadline = clock() + wait
            while not try_lock(handle):
                if clock() >= deadline:
                    raise LockedError(
                        "the mirror is in use by another lhymirror command",
                        where=str(self.year_dir),
                        detail=_lock_owner(path),
                        hint="Wait for it to finish, then run again.",
                    )
                sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {utc_now()}\n".encode())
            handle.flush()
            yield
        finally:
            handle.close()  # closing releases the lock


class LockedError(StorageError):
    """Another process holds the mirror's lock."""


def part_key(entry_id: str, index: int) -> str:
    """Book-keeping key of the *index*-th part of a split file."""
    return f"{entry_id}.part{index:02d}"


def _lock_owner(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "held by another process"
    return f"held by {text}" if text else "held by another process"


def _download_keys(entry: FileEntry) -> tuple[str, ...]:
    """Book-keeping keys of an entry's downloads: the whole file's, then each part's."""
    return (entry.id, *(part_key(entry.id, i) for i in range(len(entry.parts or ()))))


def _safe_key(key: str) -> str:
    """*key* when it can name lhymirror's own files; ``ManifestError`` when no id could be it.

    A manifest's ids are checked when it is read; this guards entries built in Python.
    """
    if not _BOOK_KEY.fullmatch(key):
        problem = (
            f"files ({key!r}).id: is not a valid id (lowercase letters, digits, '.', '_', '-')"
        )
        raise ManifestError("<manifest>", [problem])
    return key


def _names_starting(folder: Path, prefix: str) -> list[str]:
    """Names of the entries of *folder* that start with *prefix* (none if it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries if entry.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
