"""Bringing one file up to date: re-verify, fetch whole, fetch parts, join, record.

A :class:`FileJob` works on one worker's downloader and session, and needs no thread pool: the
scheduler (:mod:`lhymirror.fetch.scheduler`) runs many, but a test can run one directly. Bytes reach
a final path only once verified; every verified file gets a :class:`FileRecord`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from lhymirror.core.errors import (
    DownloadError,
    IntegrityError,
    LhymirrorError,
    StorageError,
    storage_errors,
)
from lhymirror.core.fsutil import fsync_file, hash_file, replace_durably
from lhymirror.core.units import utc_now
from lhymirror.fetch.plan import PartPlan, PlanItem
from lhymirror.fetch.prefetch import PartPrefetch
from lhymirror.fetch.report import FileOutcome, failed_outcome, outcome_of
from lhymirror.fetch.scheduler import ConnectionBudget
from lhymirror.fetch.transfer import (
    AssemblyDigest,
    FetchResult,
    ManualStepRequired,
    Target,
)
from lhymirror.manifest.model import FileEntry
from lhymirror.mirror.state import EntryState, Expected, FileProblem, check_bytes, hash_regular
from lhymirror.mirror.store import FileRecord, MirrorStore


class Fetcher(Protocol):
    """What a job needs from a downloader (``lhymirror.fetch.download.Downloader``)."""

    def fetch(self, target: Target, sources: Sequence[str], session: Any) -> FetchResult:
        """Fetch *target* from the first source that works; bytes land only when verified."""
        ...


class SyncCancelled(BaseException):
    """Raised inside a worker's transfer events to stop it once the run is interrupted.

    A ``BaseException`` so that no retry loop mistakes it for a network failure.
    """


class FileJob:
    """Brings files up to date with one downloader and session (one worker's, or a test's)."""

    def __init__(
        self,
        store: MirrorStore,
        fetcher: Fetcher,
        session: Any,
        cancelled: threading.Event | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.store = store
        self._budget = budget  # the run's connections: later parts may use spare ones
        self._fetcher = fetcher
        self._session = session
        self._cancelled = cancelled or threading.Event()

    def run(self, item: PlanItem) -> FileOutcome:
        """Bring one file up to date; expected failures become a failed outcome.

        The outcome carries what was wrong with the mirror file before (seen by the plan, or
        found by re-hashing it).
        """
        found = [item.problem] if item.problem is not None else []
        outcome = self._run(item, found)
        return replace(outcome, problem=found[-1]) if found else outcome

    def _run(self, item: PlanItem, found: list[FileProblem]) -> FileOutcome:
        try:
            return self._process(item, found)
        except ManualStepRequired as error:
            return outcome_of(
                item, "manual", size=item.size, reason=error.instructions, cause="manual"
            )
        except IntegrityError as error:
            return failed_outcome(item, error, "integrity")
        except StorageError as error:
            return failed_outcome(item, error, "storage")
        except LhymirrorError as error:
            return failed_outcome(item, error, "download")

    def _process(self, item: PlanItem, found: list[FileProblem]) -> FileOutcome:
        if self._cancelled.is_set():
            raise SyncCancelled
        if item.action == "verify":
            reverified = self._reverify(item, found)
            if reverified is not None:
                return reverified
            if item.entry.is_manual_only:
                return outcome_of(item, "manual", size=item.size, reason=item.entry.manual)
        elif _verified_meanwhile(self.store, item):
            return outcome_of(item, "up-to-date", size=item.size, reason="verified by another run")
        return self._fetch(item)

    def _reverify(self, item: PlanItem, found: list[FileProblem]) -> FileOutcome | None:
        """Re-hash a present file; refresh its record if it matches, else put it aside."""
        entry, expected = item.entry, item.expected
        target = self.store.file_path(entry.path)
        try:
            size, sha = hash_regular(target)
        except OSError as exc:
            found.append(FileProblem("unreadable", detail=exc.strerror or str(exc)))
            return unusable_outcome(item, found[-1])
        problem = check_bytes(expected, size, sha)
        if problem is None:
            old = self.store.record(entry.id)
            record = record_for(
                entry, target, size, sha, source=old.source if old else None, held_to=expected
            )
            if old is not None and (old.path, old.size, old.sha256) == (entry.path, size, sha):
                record = replace(old, mtime_ns=record.mtime_ns, verified_at=record.verified_at)
            self.store.save_record(record)
            return outcome_of(item, "up-to-date", size=size, sha256=sha, source=record.source)
        found.append(problem)
        self.store.reject(entry.id, target, sha)
        return None

    def _fetch(self, item: PlanItem) -> FileOutcome:
        entry = item.entry
        target = self.store.file_path(entry.path)  # its folder is made when its bytes are placed
        if not item.sources and not item.parts:
            return needs_network_outcome(item)  # offline, and re-hashing found other bytes
        if item.sources:
            try:
                return self._fetch_whole(item, target)
            except (DownloadError, IntegrityError):
                if not item.parts:
                    raise  # otherwise fall back to fetching the parts
        return self._fetch_parts(item, target)

    def _fetch_whole(self, item: PlanItem, target: Path) -> FileOutcome:
        size, sha = _expected_for_target(item)
        result = self._fetcher.fetch(
            Target(
                item.id,
                target,
                size,
                sha,
                item.entry.path,
                segmentable=item.capped_host is None,  # course servers keep their cap
                primary=(item.entry.urls or (None,))[0],
            ),
            item.sources,
            self._session,
        )
        assert result.sha256 is not None  # a whole file is always hashed
        record = record_for(
            item.entry,
            target,
            result.size,
            result.sha256,
            source=result.source,
            etag=result.etag,
            last_modified=result.last_modified,
            accepted=item.accept_upstream,
            held_to=item.expected,
        )
        self.store.save_record(record)
        return outcome_of(
            item,
            "resumed" if result.resumed_from else "downloaded",
            size=result.size,
            sha256=result.sha256,
            source=result.source,
            bytes_received=result.bytes_received,
        )

    def _fetch_parts(self, item: PlanItem, target: Path) -> FileOutcome:
        """Append each missing part to the assembly in order, verify the whole, put it in place.

        Parts already complete in the assembly (an earlier run) are kept; once one part has to
        be fetched, every later one is fetched after it, since the assembly ends where it ends.
        """
        assembly = self.store.assembly_path(item.id)
        whole = AssemblyDigest()
        results: list[FetchResult] = []
        offset = 0
        prefetch = PartPrefetch(self.store, item, self._fetcher, self._budget)
        try:
            for part in item.parts:
                held = None if results else _complete_part_size(self.store, part, assembly, offset)
                if held is None:
                    if not results:
                        self._forget_parts_after(item, part)
                    part_target = _part_target(
                        item, part, assembly, offset, whole, prefetch=prefetch
                    )
                    result = prefetch.place(part, part_target) or self._fetcher.fetch(
                        part_target, part.sources, self._session
                    )
                    results.append(result)
                    held = result.size
                offset += held
        finally:
            prefetch.close()
        size, sha = _expected_for_target(item)
        size, sha = _place_assembly(
            self.store,
            item,
            assembly,
            offset,
            target,
            streamed_sha256=whole.hexdigest_of(offset),
            size=size,
            sha256=sha,
        )
        self.store.discard_partials(item.entry)
        first_source = results[0].source if results else None
        self.store.save_record(
            record_for(
                item.entry,
                target,
                size,
                sha,
                source=first_source,
                accepted=item.accept_upstream,
                held_to=item.expected,
            )
        )
        resumed = any(r.resumed_from for r in results)
        return outcome_of(
            item,
            "resumed" if resumed else "downloaded",
            size=size,
            sha256=sha,
            source=first_source,
            bytes_received=sum(r.bytes_received for r in results),
        )

    def _forget_parts_after(self, item: PlanItem, part: PartPlan) -> None:
        """Drop the sidecars of the parts after *part*: their bytes are gone once it is fetched.

        Only the sidecars of their bytes in the assembly: a part staged on its own by a
        prefetch (:mod:`lhymirror.fetch.prefetch`) is still good, and is finished later.
        """
        for later in item.parts[part.index + 1 :]:
            with storage_errors(self.store.partial_state_path(later.key)):
                self.store.partial_state_path(later.key).unlink(missing_ok=True)


def _place_assembly(
    store: MirrorStore,
    item: PlanItem,
    assembly: Path,
    end: int,
    target: Path,
    *,
    streamed_sha256: str | None,
    size: int | None,
    sha256: str | None,
) -> tuple[int, str]:
    """Check the assembled parts (*end* bytes) as a whole; fsync and rename them into place.

    *streamed_sha256* is the sha256 of those bytes when it was computed as the parts were
    appended (None: the parts came from an earlier run, so the assembly is read again).
    Wrong bytes are put aside instead, and every part is fetched again next time.
    """
    with storage_errors(assembly):
        if assembly.stat().st_size != end:  # bytes no finished part accounts for
            os.truncate(assembly, end)
        if streamed_sha256 is None:
            actual_size, actual = hash_file(assembly)
        else:
            actual_size, actual = end, streamed_sha256
    problem = check_bytes(Expected(size, sha256, item.expected.origin), actual_size, actual)
    if problem is not None:
        rejected = store.reject(item.id, assembly, actual)
        store.discard_partials(item.entry)  # a part is bad: fetch them all again
        raise IntegrityError(
            "joined file does not verify",
            where=str(target),
            detail=str(problem),
            hint=f"Nothing was placed; the bytes were kept at {rejected}. "
            "Run again to fetch the parts anew.",
        )
    with storage_errors(target):
        fsync_file(assembly)
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_durably(assembly, target)
    return actual_size, actual


def _expected_for_target(item: PlanItem) -> tuple[int | None, str | None]:
    if item.accept_upstream:
        return None, None
    return item.size, item.expected.sha256


def _part_target(
    item: PlanItem,
    part: PartPlan,
    assembly: Path,
    offset: int,
    whole: AssemblyDigest,
    *,
    prefetch: PartPrefetch,
) -> Target:
    name = f"{item.entry.path} (part {part.index + 1} of {len(item.parts)})"
    primary = item.entry.parts[part.index].urls[0] if item.entry.parts else None
    return Target(
        part.key,
        assembly,
        part.size,
        part.sha256,
        name,
        offset=offset,
        assembly_digest=whole,
        primary=primary,
        when_slow=lambda: prefetch.start(after=part),  # later parts meanwhile, if connections allow
        file_rest=item.size - offset if item.size is not None else None,
    )


def settled_outcome(item: PlanItem) -> FileOutcome:
    """The outcome of an item that needs no transfer (up to date, manual, refused, offline)."""
    if item.action == "up-to-date":
        return outcome_of(item, "up-to-date", size=item.size, sha256=item.expected.sha256)
    if item.action == "manual":
        return outcome_of(item, "manual", size=item.size, reason=item.reason, cause="manual")
    if item.action == "refused" and item.problem is not None:
        return unusable_outcome(item, item.problem)
    return replace(needs_network_outcome(item), problem=item.problem)


def unusable_outcome(item: PlanItem, problem: FileProblem) -> FileOutcome:
    """What stands at the file's path is not a usable file; sync leaves it as it is."""
    return outcome_of(
        item,
        "failed",
        size=item.size,
        reason=str(problem),
        failure="integrity",  # like status, verify and pack: the mirror is not intact
        cause="unusable",
        problem=problem,
    )


def needs_network_outcome(item: PlanItem) -> FileOutcome:
    """The file would have to be downloaded, and ``--offline`` forbids it."""
    reason = item.offline_reason
    return outcome_of(
        item, "failed", size=item.size, reason=reason, failure="download", cause="offline"
    )


def _verified_meanwhile(store: MirrorStore, item: PlanItem) -> bool:
    """True when another run verified the file between planning and taking the lock."""
    return (
        item.action == "fetch"
        and item.reason == "missing"
        and EntryState.read(store, item.entry).unchanged_since_verified
    )


def _complete_part_size(
    store: MirrorStore, part: PartPlan, assembly: Path, offset: int
) -> int | None:
    """The size of *part* when an earlier run left it complete in the assembly at *offset*."""
    state = store.partial_state(part.key)
    if state is None or not state.complete:
        return None
    if part.size is not None and state.bytes_held != part.size:
        return None
    if state.expected_sha256 != part.sha256:
        return None
    try:
        length = assembly.stat().st_size
    except OSError:
        return None
    return state.bytes_held if length >= offset + state.bytes_held else None


def record_for(
    entry: FileEntry,
    target: Path,
    size: int,
    sha256: str,
    *,
    source: str | None,
    etag: str | None = None,
    last_modified: str | None = None,
    accepted: bool = False,
    held_to: Expected | None = None,
) -> FileRecord:
    """The record of a verified file.

    Content that differs from the manifest's pin is marked accepted when this run accepts it,
    or when it is what the file was already held to by an earlier acceptance (*held_to*).
    """
    accepted = accepted or (
        held_to is not None and held_to.origin == "recorded" and held_to.sha256 == sha256
    )
    with storage_errors(target):
        mtime_ns = target.stat().st_mtime_ns
    return FileRecord(
        id=entry.id,
        path=entry.path,
        size=size,
        sha256=sha256,
        mtime_ns=mtime_ns,
        verified_at=utc_now(),
        source=source,
        etag=etag,
        last_modified=last_modified,
        accepted_upstream=accepted and entry.sha256 is not None and sha256 != entry.sha256,
    )
