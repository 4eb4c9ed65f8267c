"""Carry out a sync plan: lock the year, fetch in parallel, join split files, record, report.

:func:`run_sync` takes the year's lock, checks free space, then hands the plan's transfers to the
:class:`~lhymirror.fetch.scheduler.Scheduler` (a thread pool with per-host slots: see there).
Each worker thread has its own ``requests`` session and downloader, and brings one file at a
time up to date with a :class:`~lhymirror.fetch.job.FileJob`. Every verified file gets a
:class:`FileRecord`; bytes reach a final path only once verified. The result is a
:class:`~lhymirror.fetch.report.SyncReport`.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from lhymirror.core.errors import IntegrityError, StorageError, UsageError, storage_errors
from lhymirror.core.fsutil import CHUNK_SIZE, BackgroundWriteback, ThreadedDigest, atomic_writer
from lhymirror.core.units import format_size
from lhymirror.fetch.health import HostHealth
from lhymirror.fetch.job import (
    Fetcher,
    FileJob,
    SyncCancelled,
    record_for,
    settled_outcome,
)
from lhymirror.fetch.plan import PlanItem, SyncPlan
from lhymirror.fetch.report import FileOutcome, SyncReport
from lhymirror.fetch.scheduler import ConnectionBudget, PerThread, Scheduler, largest_first
from lhymirror.fetch.transfer import TransferEvents
from lhymirror.manifest.model import FileEntry
from lhymirror.mirror.state import Expected, Origin, check_bytes, expected_of
from lhymirror.mirror.store import FileRecord, MirrorStore


class SyncEvents(TransferEvents, Protocol):
    """Transfer events plus one call per finished file (for progress displays)."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """A file is done (whatever the outcome)."""
        ...


DownloaderFactory = Callable[[TransferEvents], Fetcher]


def run_sync(
    plan: SyncPlan,
    store: MirrorStore,
    downloader_factory: DownloaderFactory,
    *,
    jobs: int = 4,
    per_host: int = 2,
    events: SyncEvents | None = None,
    session_factory: Callable[[], Any] | None = None,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
    lock_wait: float = 5.0,
    health: HostHealth | None = None,
    budget: ConnectionBudget | None = None,
) -> SyncReport:
    """Run *plan* under the year's lock and report what happened to each file.

    ``downloader_factory(events)`` builds one downloader per worker thread; sleeps and clocks are
    injected there; ``session_factory`` (default :func:`lhymirror.fetch.http.new_session`)
    makes the sessions, which go from one transfer to the next with their open connections.
    *health* is the host health the downloaders share (the report names the hosts down);
    *budget* the connections they share (large files fetch pieces on spare ones). Raises
    ``StorageError`` when the lock is held elsewhere or space is short.
    """
    sessions = budget if budget is not None else ConnectionBudget(jobs)
    if session_factory is not None:
        sessions.session_factory = session_factory
    with store.lock(wait=lock_wait):
        check_free_space(plan, store, disk_usage)
        try:
            outcomes = _run_items(
                plan.items,
                store=store,
                downloader_factory=downloader_factory,
                sessions=sessions,
                display=events,
                scheduler=Scheduler(jobs, per_host, threading.Event(), budget),
            )
        finally:
            sessions.close_sessions()
    if health is None:
        return SyncReport(plan.year, plan.root, outcomes, offline=plan.offline)
    no_network = health.all_down() and not any(
        outcome.verified for outcome in outcomes if outcome.bytes_received
    )
    if no_network:
        _remove_empty_folders(store)
    return SyncReport(
        plan.year, plan.root, outcomes, health.down_hosts(), no_network, offline=plan.offline
    )


def _remove_empty_folders(store: MirrorStore) -> None:
    """After a sync that reached nothing, leave no empty book-keeping folder behind."""
    for name in ("partial", "rejected", "state"):
        with contextlib.suppress(OSError):
            (store.meta_dir / name).rmdir()  # only ever removes an empty folder


def _run_items(
    items: tuple[PlanItem, ...],
    *,
    store: MirrorStore,
    downloader_factory: DownloaderFactory,
    sessions: ConnectionBudget,
    display: SyncEvents | None,
    scheduler: Scheduler,
) -> tuple[FileOutcome, ...]:
    """Settle the items that need no transfer, run the others, report in the plan's order."""
    events = _Events(display, scheduler.cancelled)
    outcomes: dict[str, FileOutcome] = {}
    downloaders = PerThread(lambda: downloader_factory(events), lambda _: None)

    def finish(item: PlanItem, outcome: FileOutcome) -> None:
        events.file_finished(outcome)
        outcomes[item.id] = outcome

    def work(item: PlanItem) -> FileOutcome:
        session = sessions.lend_session()  # the one a finished transfer gave back, if any
        try:
            job = FileJob(store, downloaders.get(), session, scheduler.cancelled, scheduler.budget)
            return job.run(item)
        finally:
            sessions.return_session(session)

    for item in items:
        if not item.needs_transfer:
            finish(item, settled_outcome(item))
    scheduler.run(largest_first(i for i in items if i.needs_transfer), work, finish)
    return tuple(outcomes[item.id] for item in items)


def check_free_space(
    plan: SyncPlan, store: MirrorStore, disk_usage: Callable[[Path], Any] = shutil.disk_usage
) -> None:
    """``StorageError`` when the fetches of known size need more room than the disk has."""
    needed = plan.bytes_still_needed()
    if not needed:
        return
    folder = _existing_ancestor(store.year_dir)
    with storage_errors(folder):
        free = int(disk_usage(folder).free)
    if needed > free:
        raise StorageError(
            "not enough free space",
            where=str(store.year_dir),
            detail=f"{format_size(needed)} still to download, {format_size(free)} free",
            hint="Free some space or choose another --root; nothing was downloaded.",
        )


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path.cwd()


# ---------------------------------------------------------------------------------------------
# Writing verified files from local bytes (importing a hand-downloaded file)


def write_verified(
    target: Path,
    inputs: Iterable[Path],
    *,
    size: int | None,
    sha256: str | None,
    what: str = "copied",
    named: Path | None = None,
    check: Callable[[int, str], None] | None = None,
    origin: Origin = "none",
) -> tuple[int, str]:
    """Concatenate *inputs* into *target* while hashing; place it only if size/sha256 match.

    The bytes go to a temporary file next to *target*, are fsynced and renamed into place
    atomically; on a mismatch nothing is placed and ``IntegrityError`` names both checksums
    and *named* (default *target*). *check(size, sha256)* may refuse the bytes too, by raising.
    *origin* says where *size* and *sha256* come from (for the message).
    """
    digest = ThreadedDigest()  # hashing overlaps with reading and writing the next chunk
    total = 0
    with storage_errors(target), atomic_writer(target) as out, BackgroundWriteback(out) as wb:
        try:
            for path in inputs:
                with path.open("rb") as stream:
                    while chunk := stream.read(CHUNK_SIZE):
                        digest.update(chunk)
                        out.write(chunk)
                        wb.written(len(chunk))
                        total += len(chunk)
        except BaseException:
            digest.close()
            raise
        actual = digest.hexdigest()
        if check is not None:
            check(total, actual)
        problem = check_bytes(Expected(size, sha256, origin), total, actual)
        if problem is not None:
            raise IntegrityError(
                f"{what} file does not verify",
                where=str(named or target),
                detail=str(problem),
                hint="Nothing was placed; check that it is the right file.",
            )
    return total, actual


def import_file(
    store: MirrorStore, entry: FileEntry, source: Path, *, others: Iterable[FileEntry] = ()
) -> FileRecord:
    """Copy a file the user downloaded by hand into the mirror, verified, and record it.

    Checks size and sha256 when known (pinned or recorded); a file of unknown checksum is
    trusted and recorded as the reference, unless its bytes are those another entry of
    *others* is held to (a mix-up). Leftover partial downloads of the entry are removed.
    Errors name *source*, the user's file.
    """
    expected = expected_of(entry, store.record(entry.id))
    source = source.expanduser().absolute()
    if source.is_dir():
        raise UsageError("is a folder", where=str(source), hint="Give the downloaded file.")
    if not source.is_file():
        raise UsageError("no such file", where=str(source), hint="Check the path and try again.")
    target = store.file_path(entry.path)
    owners = _owners_by_sha256(store, entry, others)

    def not_another_entrys(size: int, sha: str) -> None:
        other = owners.get(sha)
        if other is not None and sha != expected.sha256:
            raise IntegrityError(
                f"this is the file of another entry, not of {entry.id}",
                where=str(source),
                detail=f"its sha256 is that of {other.id} ({other.path})",
                hint=f"Nothing was placed. Import it as {other.id}, or give the file of "
                f"{entry.id} ({entry.path}).",
            )

    with store.lock():
        size, sha = write_verified(
            target,
            [source],
            size=expected.size,
            sha256=expected.sha256,
            what="imported",
            named=source,
            check=not_another_entrys,
            origin=expected.origin,
        )
        record = record_for(entry, target, size, sha, source=f"file:{source}", held_to=expected)
        store.save_record(record)
        store.discard_partials(entry)
    return record


def _owners_by_sha256(
    store: MirrorStore, entry: FileEntry, others: Iterable[FileEntry]
) -> dict[str, FileEntry]:
    """The other entries by the sha256 they are held to (pinned or recorded)."""
    owners: dict[str, FileEntry] = {}
    for other in others:
        if other.id != entry.id:
            sha = expected_of(other, store.record(other.id)).sha256
            if sha is not None:
                owners.setdefault(sha, other)
    return owners


class _Events:
    """Forwards transfer events to the display, and stops a transfer once cancelled."""

    def __init__(self, target: SyncEvents | None, cancelled: threading.Event) -> None:
        self._target = target
        self._cancelled = cancelled

    def _check(self) -> None:
        if self._cancelled.is_set():
            raise SyncCancelled

    def started(self, key: str, total: int | None, offset: int) -> None:
        self._check()
        if self._target is not None:
            self._target.started(key, total, offset)

    def advanced(self, key: str, nbytes: int) -> None:
        self._check()
        if self._target is not None:
            self._target.advanced(key, nbytes)

    def restarted(self, key: str, offset: int) -> None:
        self._check()
        if self._target is not None:
            self._target.restarted(key, offset)

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        self._check()
        if self._target is not None:
            self._target.retrying(key, source, reason, delay)

    def file_finished(self, outcome: FileOutcome) -> None:
        if self._target is not None:
            self._target.file_finished(outcome)
