"""The local state of every file of a year, without any network access."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from lhymirror.core.errors import (
    IncompleteError,
    IntegrityError,
    LhymirrorError,
    MissingFilesError,
    UsageError,
)
from lhymirror.core.units import count_of, format_size
from lhymirror.manifest.listing import group_by_section
from lhymirror.manifest.model import FileEntry, Manifest
from lhymirror.mirror.state import UNUSABLE, FileStatus, LocalState, local_state
from lhymirror.mirror.store import MirrorStore

NextStep = Literal["fix", "sync", "add"]
TO_FETCH: tuple[FileStatus, ...] = ("missing", "partial", "changed", "unverified")


@dataclass(frozen=True)
class FileState:
    """One manifest file and its local state."""

    entry: FileEntry
    local: LocalState

    @property
    def state(self) -> FileStatus:
        """ok, missing, partial, changed, unverified or manual."""
        return self.local.status

    @property
    def bytes_to_fetch(self) -> int | None:
        """Bytes ``sync`` still has to download for this file: 0 when none, None when unknown."""
        if self.state not in (*TO_FETCH, *UNUSABLE):
            return 0
        expected = self.local.expected
        size = expected.size if expected is not None else self.entry.size
        if size is None:
            return None
        held = (self.local.size or 0) if self.state == "partial" else 0
        return max(size - held, 0)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``status --json``."""
        expected = self.local.expected
        return {
            "id": self.entry.id,
            "path": self.entry.path,
            "kind": self.entry.kind,
            "section": self.entry.section,
            "state": self.state,
            "detail": self.local.detail or None,
            "size": self.local.size,
            "expected_size": expected.size if expected else None,
            "expected_sha256": expected.sha256 if expected else None,
            "checksum_origin": expected.origin if expected else None,
            "bytes_to_fetch": self.bytes_to_fetch,
            "problem": self.local.problem.to_json() if self.local.problem else None,
        }


@dataclass(frozen=True)
class StatusReport:
    """Every file of the manifest and its local state, in manifest order."""

    manifest: Manifest
    root: Path
    year_dir: Path
    files: tuple[FileState, ...]

    def counts(self) -> dict[str, int]:
        """How many files are in each state (every state listed)."""
        counter = Counter(f.state for f in self.files)
        return {state: counter.get(state, 0) for state in get_args(FileStatus)}

    def with_state(self, *states: FileStatus) -> list[FileState]:
        """The files in one of *states*, in manifest order."""
        return [f for f in self.files if f.state in states]

    @property
    def complete(self) -> bool:
        """True when every file is present and verified."""
        return all(f.state == "ok" for f in self.files)

    @property
    def bytes_present(self) -> int:
        """Total size of the files that are present and verified."""
        return sum(f.local.size or 0 for f in self.with_state("ok"))

    @property
    def bytes_to_fetch(self) -> int:
        """Bytes ``sync`` still has to download, as far as sizes are known."""
        return sum(f.bytes_to_fetch or 0 for f in self.files)

    @property
    def unknown_sizes(self) -> int:
        """How many files still to fetch have no known size."""
        return sum(1 for f in self.files if f.bytes_to_fetch is None)

    def by_section(self) -> list[tuple[str | None, list[FileState]]]:
        """The files grouped by section, sections in course order (as ``list`` shows them)."""
        return group_by_section(list(self.files), lambda f: f.entry.section)

    def next_step(self) -> NextStep | None:
        """What to do next: ``fix`` what stands in a file's way, ``sync`` while files can be
        fetched, then ``add`` the manual ones."""
        if self.with_state(*UNUSABLE):
            return "fix"
        if self.with_state(*TO_FETCH):
            return "sync"
        if self.with_state("manual"):
            return "add"
        return None

    def error(self) -> LhymirrorError | None:
        """The error that sums up an incomplete mirror, or None when every file is verified.

        Damaged or unusable files (``IntegrityError``) outrank files still to fetch
        (``MissingFilesError``), which outrank manual steps (``IncompleteError``): after a sync
        only those are left.
        """
        where = str(self.year_dir)
        unusable = self.with_state(*UNUSABLE)
        if unusable:
            return IntegrityError(
                f"{count_of(len(unusable), 'path')} not usable as the file",
                where=where,
                detail=", ".join(f"{f.entry.path}: {f.local.detail}" for f in unusable[:3])
                + (", …" if len(unusable) > 3 else ""),
                hint="Remove or replace what stands there (links are never followed), "
                "then run `lhymirror sync` for this year.",
            )
        changed = self.with_state("changed")
        if changed:
            return IntegrityError(
                f"{count_of(len(changed), 'file')} changed on disk since verified",
                where=where,
                hint="Run `lhymirror sync` for this year to fetch them again.",
            )
        to_fetch = self.with_state(*TO_FETCH)
        if to_fetch:
            unknown = f", {self.unknown_sizes} of unknown size" if self.unknown_sizes else ""
            return MissingFilesError(
                f"{count_of(len(to_fetch), 'file')} not downloaded and verified yet",
                where=where,
                detail=f"{format_size(self.bytes_to_fetch)} to fetch{unknown}",
                hint="Run `lhymirror sync` for this year.",
            )
        manual = self.with_state("manual")
        if manual:
            return IncompleteError(
                f"{count_of(len(manual), 'manual step')} pending",
                where=where,
                hint="Download each of them by hand and import it with `lhymirror add`.",
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain data, as ``status --json`` prints it (see docs/json.md)."""
        return {
            "year": self.manifest.year,
            "root": str(self.root),
            "complete": self.complete,
            "counts": self.counts(),
            "bytes_present": self.bytes_present,
            "bytes_to_fetch": self.bytes_to_fetch,
            "unknown_sizes": self.unknown_sizes,
            "next_step": self.next_step(),
            "files": [f.to_json() for f in self.files],
        }


def read_status(manifest: Manifest, store: MirrorStore, *, rehash: bool = False) -> StatusReport:
    """Classify every file of the manifest in the mirror; never uses the network.

    Only files changed since they were verified are re-hashed, unless *rehash*. Raises
    ``UsageError`` when the mirror root is missing or not a folder (a wrong ``--root``) and
    ``StorageError`` when a file cannot be read. Nothing is written.
    """
    _check_root(store.root, manifest.year)
    files = tuple(FileState(e, local_state(store, e, rehash=rehash)) for e in manifest.files)
    return StatusReport(manifest, store.root, store.year_dir, files)


def _check_root(root: Path, year: int) -> None:
    if root.is_dir():
        return
    if root.exists():
        raise UsageError(
            "the mirror root is not a folder",
            where=str(root),
            hint="Point --root (or $LHYMIRROR_ROOT) at the folder sync downloads into.",
        )
    raise UsageError(
        "no mirror here",
        where=str(root),
        detail="the folder does not exist",
        hint=f"Run `lhymirror sync {year}` first, or point --root at your mirror.",
    )
