"""Carry out a sync plan: lock the year, fetch in parallel, join split files, record, report.

:func:`run_sync` takes the year's lock, checks free space, then runs the plan's transfers on a
thread pool. Each worker thread has its own ``requests`` session and downloader. At most
``per_host`` transfers go to one manifest host at a time (the host of a file's first source): a
course server is not hammered by ``--jobs`` connections at once, while a free worker takes the
next file of another host instead of waiting. Bases the user named (``--mirror``, ``--from``)
are not capped.
Every verified file gets a :class:`FileRecord`; bytes reach a final path only once verified.
The result is a :class:`SyncReport`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, get_args

from lhymirror.core.errors import (
    DownloadError,
    IncompleteError,
    IntegrityError,
    LhymirrorError,
    StorageError,
    UsageError,
    storage_errors,
)
from lhymirror.core.fsutil import (
    CHUNK_SIZE,
    BackgroundWriteback,
    ThreadedDigest,
    atomic_writer,
    fsync_file,
    hash_file,
    replace_durably,
)
from lhymirror.core.jsondata import snake_case, snake_keys
from lhymirror.core.units import count_of, format_size, utc_now
from lhymirror.fetch.plan import (
    PartPlan,
    PlanItem,
    SyncPlan,
)
from lhymirror.fetch.transfer import (
    AssemblyDigest,
    FetchResult,
    ManualStepRequired,
    Target,
    TransferEvents,
)
from lhymirror.manifest.model import FileEntry
from lhymirror.mirror.store import Expected, FileRecord, MirrorStore

Outcome = Literal["downloaded", "resumed", "up-to-date", "failed", "manual"]
Failure = Literal["download", "integrity", "storage"]
VERIFIED_OUTCOMES = ("downloaded", "resumed", "up-to-date")


class Fetcher(Protocol):
    """What :func:`run_sync` needs from a downloader (``lhymirror.fetch.download.Downloader``)."""

    def fetch(self, target: Target, sources: Sequence[str], session: Any) -> FetchResult:
        """Fetch *target* from the first source that works; bytes land only when verified."""
        ...


class SyncEvents(TransferEvents, Protocol):
    """Transfer events plus one call per finished file (for progress displays)."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """A file is done (whatever the outcome)."""
        ...


DownloaderFactory = Callable[[TransferEvents], Fetcher]


class SyncCancelled(BaseException):
    """Raised inside a worker's transfer events to stop it once the run is interrupted.

    A ``BaseException`` so that no retry loop mistakes it for a network failure.
    """


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file."""

    id: str
    path: str
    outcome: Outcome
    size: int | None = None
    sha256: str | None = None
    source: str | None = None  # where the bytes came from
    bytes_received: int = 0
    reason: str | None = None  # why it failed, or the manual step to take
    failure: Failure | None = None

    @property
    def verified(self) -> bool:
        """True when the file is present and verified."""
        return self.outcome in VERIFIED_OUTCOMES


@dataclass(frozen=True)
class SyncReport:
    """Result of a sync: one outcome per selected file, in manifest order."""

    year: int
    root: str
    files: tuple[FileOutcome, ...]
    offline: bool = False  # the network was forbidden: failures say to run without --offline

    @property
    def complete(self) -> bool:
        """True when every selected file is present and verified."""
        return all(f.verified for f in self.files)

    def with_outcome(self, outcome: Outcome) -> list[FileOutcome]:
        """The files that ended with *outcome*."""
        return [f for f in self.files if f.outcome == outcome]

    def counts(self) -> dict[str, int]:
        """How many files ended with each outcome (every outcome listed)."""
        counter = Counter(f.outcome for f in self.files)
        return {name: counter.get(name, 0) for name in get_args(Outcome)}

    def failures_of(self, kind: Failure) -> list[FileOutcome]:
        """Failed files of one kind (download, integrity, storage)."""
        return [f for f in self.files if f.failure == kind]

    @property
    def bytes_received(self) -> int:
        """Bytes transferred in this run."""
        return sum(f.bytes_received for f in self.files)

    def error(self) -> LhymirrorError | None:
        """The error that sums up an unfinished sync, or None when every file is verified.

        Failures outrank manual steps; among failures integrity outranks storage, which
        outranks download: the most serious finding decides.
        """
        where = str(Path(self.root) / str(self.year))
        failed = len(self.with_outcome("failed"))
        if self.failures_of("integrity"):
            return IntegrityError(
                f"{count_of(len(self.failures_of('integrity')), 'file')} did not verify",
                where=where,
                hint="The bad bytes are kept under .lhymirror/rejected/ for inspection.",
            )
        if self.failures_of("storage"):
            return StorageError(
                f"{count_of(failed, 'file')} could not be stored",
                where=where,
                hint="Free some space or fix the permissions, then run the same command again.",
            )
        if failed:
            return DownloadError(
                f"{count_of(failed, 'file')} could not be downloaded",
                where=where,
                hint="Run it without --offline to download them."
                if self.offline
                else "Run the same command again to resume.",
            )
        manual = len(self.with_outcome("manual"))
        if manual:
            return IncompleteError(
                f"{count_of(manual, 'manual step')} pending",
                where=where,
                hint="Download each of them by hand and import it with `lhymirror add`.",
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data, as ``sync --json`` prints it (see docs/json.md)."""
        return {
            "year": self.year,
            "root": self.root,
            "offline": self.offline,
            "complete": self.complete,
            "counts": snake_keys(self.counts()),
            "bytes_received": self.bytes_received,
            "files": [
                {
                    "id": f.id,
                    "path": f.path,
                    "state": snake_case(f.outcome),
                    "size": f.size,
                    "sha256": f.sha256,
                    "source": f.source,
                    "bytes_received": f.bytes_received,
                    "reason": f.reason,
                    "failure": f.failure,
                }
                for f in self.files
            ],
        }


def _outcome(item: PlanItem, outcome: Outcome, **fields: Any) -> FileOutcome:
    return FileOutcome(item.id, item.entry.path, outcome, **fields)


def _failed(item: PlanItem, error: LhymirrorError, failure: Failure) -> FileOutcome:
    return _outcome(item, "failed", size=item.size, reason=error.message, failure=failure)


# ---------------------------------------------------------------------------------------------
# Running a plan


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
) -> SyncReport:
    """Run *plan* under the year's lock and report what happened to each file.

    ``downloader_factory(events)`` builds one downloader per worker thread; sleeps and clocks are
    injected there; ``session_factory`` defaults to :func:`lhymirror.fetch.http.new_session`. Raises
    ``StorageError`` when the lock is held elsewhere or space is short.
    """
    with store.lock(wait=lock_wait):
        check_free_space(plan, store, disk_usage)
        sessions = session_factory or _new_session
        runner = _Runner(store, downloader_factory, sessions, events, per_host)
        try:
            outcomes = runner.run(plan.items, jobs=max(1, jobs))
        finally:
            runner.close()
    return SyncReport(plan.year, plan.root, outcomes, offline=plan.offline)


def _new_session() -> Any:
    # Imported here: a sync with nothing to transfer never needs requests, and starts faster.
    from lhymirror.fetch.http import new_session  # noqa: PLC0415

    return new_session()


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


class _Worker(NamedTuple):
    downloader: Fetcher
    session: Any


class _Runner:
    """Runs plan items on a thread pool; one instance per ``run_sync`` call."""

    def __init__(
        self,
        store: MirrorStore,
        downloader_factory: DownloaderFactory,
        session_factory: Callable[[], Any],
        events: SyncEvents | None,
        per_host: int,
    ) -> None:
        self.store = store
        self.cancelled = threading.Event()
        self.events = _Events(events, self.cancelled)
        self._downloader_factory = downloader_factory
        self._session_factory = session_factory
        self._per_host = max(1, per_host)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[Any] = []

    # -- orchestration -------------------------------------------------------------------

    def run(self, items: Sequence[PlanItem], *, jobs: int) -> tuple[FileOutcome, ...]:
        outcomes: dict[str, FileOutcome] = {}
        for item in items:
            if not item.needs_transfer:
                outcomes[item.id] = self._finish(_settled_outcome(item))
        work = [item for item in items if item.needs_transfer]
        if work:
            outcomes.update(self._run_pool(work, jobs))
        return tuple(outcomes[item.id] for item in items)

    def _run_pool(self, work: list[PlanItem], jobs: int) -> dict[str, FileOutcome]:
        """Run *work* on *jobs* threads, starting each item only when its host has a free slot.

        Dispatching by host (rather than letting a worker block on a busy host) keeps every
        thread busy while a capped course server is saturated and other hosts still have work.
        """
        pending = largest_first(work)
        running: dict[Future[FileOutcome], PlanItem] = {}
        on_host: Counter[str] = Counter()
        results: dict[str, FileOutcome] = {}
        executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lhymirror-sync")
        try:
            while pending or running:
                while len(running) < jobs and (item := self._next_startable(pending, on_host)):
                    pending.remove(item)
                    if item.capped_host is not None:
                        on_host[item.capped_host] += 1
                    running[executor.submit(self.process, item)] = item
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    item = running.pop(future)
                    if item.capped_host is not None:
                        on_host[item.capped_host] -= 1
                    results[item.id] = self._finish(future.result())
        except BaseException:
            # Ctrl-C or a bug: stop the running transfers at their next event; partials stay.
            self.cancelled.set()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
        return results

    def _next_startable(self, pending: list[PlanItem], on_host: Counter[str]) -> PlanItem | None:
        """The first pending item whose host is uncapped or below its cap."""
        for item in pending:
            if item.capped_host is None or on_host[item.capped_host] < self._per_host:
                return item
        return None

    def _finish(self, outcome: FileOutcome) -> FileOutcome:
        self.events.file_finished(outcome)
        return outcome

    def close(self) -> None:
        for session in self._sessions:
            with contextlib.suppress(Exception):
                session.close()

    def _worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            session = self._session_factory()
            with self._lock:
                self._sessions.append(session)
            worker = _Worker(self._downloader_factory(self.events), session)
            self._local.worker = worker
        return worker

    # -- one file ------------------------------------------------------------------------

    def process(self, item: PlanItem) -> FileOutcome:
        """Bring one file up to date; expected failures become a failed outcome."""
        try:
            return self._process(item)
        except ManualStepRequired as error:
            return _outcome(item, "manual", size=item.size, reason=error.instructions)
        except IntegrityError as error:
            return _failed(item, error, "integrity")
        except StorageError as error:
            return _failed(item, error, "storage")
        except LhymirrorError as error:
            return _failed(item, error, "download")

    def _process(self, item: PlanItem) -> FileOutcome:
        if self.cancelled.is_set():
            raise SyncCancelled
        if item.action == "verify":
            reverified = self._reverify(item)
            if reverified is not None:
                return reverified
            if item.entry.is_manual_only:
                return _outcome(item, "manual", size=item.size, reason=item.entry.manual)
        elif _verified_meanwhile(self.store, item):
            return _outcome(item, "up-to-date", size=item.size, reason="verified by another run")
        return self._fetch(item)

    def _reverify(self, item: PlanItem) -> FileOutcome | None:
        """Re-hash a present file; refresh its record if it matches, else put it aside."""
        entry, expected = item.entry, item.expected
        target = self.store.file_path(entry.path)
        with storage_errors(target):
            size, sha = hash_file(target)
        if sha == expected.sha256 and (expected.size is None or size == expected.size):
            old = self.store.record(entry.id)
            record = _record_for(
                entry, target, size, sha, source=old.source if old else None, held_to=expected
            )
            if old is not None and (old.path, old.size, old.sha256) == (entry.path, size, sha):
                record = replace(old, mtime_ns=record.mtime_ns, verified_at=record.verified_at)
            self.store.save_record(record)
            return _outcome(item, "up-to-date", size=size, sha256=sha, source=record.source)
        self.store.reject(entry.id, target, sha)
        return None

    def _fetch(self, item: PlanItem) -> FileOutcome:
        entry = item.entry
        target = self.store.file_path(entry.path)
        with storage_errors(target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
        if not item.sources and not item.parts:
            raise DownloadError(
                "needs the network",
                where=entry.path,
                detail="offline, and no local source has it: "
                + (", ".join(item.withheld) or "no source"),
                hint="Run without --offline, or give --from a folder that has it.",
            )
        if item.sources:
            try:
                return self._fetch_whole(item, target)
            except (DownloadError, IntegrityError):
                if not item.parts:
                    raise  # otherwise fall back to fetching the parts
        return self._fetch_parts(item, target)

    def _expected_for_target(self, item: PlanItem) -> tuple[int | None, str | None]:
        if item.accept_upstream:
            return None, None
        return item.size, item.expected.sha256

    def _fetch_whole(self, item: PlanItem, target: Path) -> FileOutcome:
        size, sha = self._expected_for_target(item)
        worker = self._worker()
        result = worker.downloader.fetch(
            Target(item.id, target, size, sha, item.entry.path), item.sources, worker.session
        )
        assert result.sha256 is not None  # a whole file is always hashed
        record = _record_for(
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
        return _outcome(
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
        worker = self._worker()
        assembly = self.store.assembly_path(item.id)
        whole = AssemblyDigest()
        results: list[FetchResult] = []
        offset = 0
        for part in item.parts:
            held = None if results else _complete_part_size(self.store, part, assembly, offset)
            if held is None:
                if not results:
                    self._forget_parts_after(item, part)
                part_target = self._part_target(item, part, assembly, offset, whole)
                result = worker.downloader.fetch(part_target, part.sources, worker.session)
                results.append(result)
                held = result.size
            offset += held
        size, sha = self._expected_for_target(item)
        size, sha = self._place_assembly(
            item, assembly, offset, target, whole.hexdigest_of(offset), size=size, sha256=sha
        )
        self.store.discard_partials(item.entry)
        first_source = results[0].source if results else None
        self.store.save_record(
            _record_for(
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
        return _outcome(
            item,
            "resumed" if resumed else "downloaded",
            size=size,
            sha256=sha,
            source=first_source,
            bytes_received=sum(r.bytes_received for r in results),
        )

    def _part_target(
        self, item: PlanItem, part: PartPlan, assembly: Path, offset: int, whole: AssemblyDigest
    ) -> Target:
        name = f"{item.entry.path} (part {part.index + 1} of {len(item.parts)})"
        return Target(
            part.key, assembly, part.size, part.sha256, name, offset=offset, assembly_digest=whole
        )

    def _forget_parts_after(self, item: PlanItem, part: PartPlan) -> None:
        """Drop the sidecars of the parts after *part*: their bytes are gone once it is fetched."""
        for later in item.parts[part.index + 1 :]:
            self.store.discard_partial(later.key)

    def _place_assembly(
        self,
        item: PlanItem,
        assembly: Path,
        end: int,
        target: Path,
        streamed_sha256: str | None,
        *,
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
        problem = _verification_problem(actual_size, actual, size=size, sha256=sha256)
        if problem is not None:
            rejected = self.store.reject(item.id, assembly, actual)
            self.store.discard_partials(item.entry)  # a part is bad: fetch them all again
            raise IntegrityError(
                f"joined file {problem[0]}",
                where=str(target),
                detail=problem[1],
                hint=f"Nothing was placed; the bytes were kept at {rejected}. "
                "Run again to fetch the parts anew.",
            )
        with storage_errors(target):
            fsync_file(assembly)
            replace_durably(assembly, target)
        return actual_size, actual


def largest_first(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Transfer order: unknown sizes (usually datasets) first, then by decreasing size.

    Starting the long transfers first keeps one big file from finishing alone at the end while
    the other workers sit idle; the report keeps the manifest's order regardless.
    """
    return sorted(items, key=lambda item: (item.size is not None, -(item.size or 0)))


def _settled_outcome(item: PlanItem) -> FileOutcome:
    """The outcome of an item that needs no transfer (up to date, manual, needs network)."""
    if item.action == "up-to-date":
        return _outcome(item, "up-to-date", size=item.size, sha256=item.expected.sha256)
    if item.action == "manual":
        return _outcome(item, "manual", size=item.size, reason=item.reason)
    needs = ", ".join(item.withheld) or "a network source"
    return _outcome(
        item,
        "failed",
        size=item.size,
        reason=f"offline: would download from {needs}",
        failure="download",
    )


def _verified_meanwhile(store: MirrorStore, item: PlanItem) -> bool:
    """True when another run verified the file between planning and taking the lock."""
    return (
        item.action == "fetch"
        and item.reason == "missing"
        and store.is_unchanged_since_verified(item.entry)
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


def _record_for(
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
) -> tuple[int, str]:
    """Concatenate *inputs* into *target* while hashing; place it only if size/sha256 match.

    The bytes go to a temporary file next to *target*, are fsynced and renamed into place
    atomically; on a mismatch nothing is placed and ``IntegrityError`` names both checksums
    and *named* (default *target*). *check(size, sha256)* may refuse the bytes too, by raising.
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
        _check_verified(named or target, what, total, actual, size=size, sha256=sha256)
    return total, actual


def _check_verified(
    target: Path, what: str, total: int, actual: str, *, size: int | None, sha256: str | None
) -> None:
    problem = _verification_problem(total, actual, size=size, sha256=sha256)
    if problem is not None:
        raise IntegrityError(
            f"{what} file {problem[0]}",
            where=str(target),
            detail=problem[1],
            hint="Nothing was placed; check that it is the right file.",
        )


def _verification_problem(
    total: int, actual: str, *, size: int | None, sha256: str | None
) -> tuple[str, str] | None:
    """What is wrong with bytes of *total* size and sha256 *actual*, as (what, detail)."""
    if sha256 is not None and actual != sha256:
        return "does not match its checksum", f"expected sha256 {sha256}, got {actual}"
    if size is not None and total != size:
        return "has the wrong size", f"expected {size} bytes, got {total}"
    return None


def import_file(
    store: MirrorStore, entry: FileEntry, source: Path, *, others: Iterable[FileEntry] = ()
) -> FileRecord:
    """Copy a file the user downloaded by hand into the mirror, verified, and record it.

    Checks size and sha256 when known (pinned or recorded); a file of unknown checksum is
    trusted and recorded as the reference, unless its bytes are those another entry of
    *others* is held to (a mix-up). Leftover partial downloads of the entry are removed.
    Errors name *source*, the user's file.
    """
    expected = store.expected(entry)
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
        )
        record = _record_for(entry, target, size, sha, source=f"file:{source}", held_to=expected)
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
            sha = store.expected(other).sha256
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
