"""The later parts of a split file, fetched on spare connections while the current one streams.

A split file's parts are appended to its assembly in order, so they come one after the other on
one connection. When the file comes from a base the user named (no per-host cap), that connection
proves slow for the rest of the file (the rule that cuts a large file into pieces:
:class:`~lhymirror.fetch.segments.PiecedStream`) and the run has connections to spare
(:class:`~lhymirror.fetch.scheduler.ConnectionBudget`), the later parts are fetched meanwhile,
each verified on its own as a whole download into a staged file next to the partials
(``<key>.part.staged``). When the in-order sequence reaches such a part, its staged bytes are
appended to the assembly (feeding the whole file's digest) instead of being fetched; a part no
prefetch has started yet, or whose prefetch failed, is simply fetched in place. On a fast link
nothing is staged: copying staged bytes costs more than the connection saves.
The joined whole is verified as before.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lhymirror.core.errors import LhymirrorError, storage_errors
from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.fetch.partial import PartialDownload
from lhymirror.fetch.plan import PartPlan, PlanItem
from lhymirror.fetch.scheduler import ConnectionBudget
from lhymirror.fetch.transfer import FetchResult, Target
from lhymirror.mirror.store import MirrorStore


class PartPrefetch:
    """Prefetches of one split file's later parts (see the module docstring)."""

    def __init__(
        self,
        store: MirrorStore,
        item: PlanItem,
        fetcher: Any,
        budget: ConnectionBudget | None,
    ) -> None:
        self._store = store
        self._item = item
        self._fetcher = fetcher
        self._budget = budget if item.capped_host is None else None  # course servers: no
        self._futures: dict[int, Future[FetchResult]] = {}
        self._waiting: deque[tuple[PartPlan, Future[FetchResult]]] = deque()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, after: PartPlan) -> bool:
        """Fetch the parts after *after* on spare connections; True while it waits for more.

        Called when the part before them proves slow, and again whenever the budget has set
        connections aside for this file: each one starts a worker for a part still waiting.
        """
        if self._budget is None:
            return False
        if not self._futures:
            later = self._item.parts[after.index + 1 :]
            self._futures = {part.index: Future() for part in later}
            self._waiting = deque((part, self._futures[part.index]) for part in later)
        with self._lock:  # parts the in-order sequence took (their futures cancelled) do not count
            waiting = sum(1 for _, future in self._waiting if not future.cancelled())
        if waiting == 0:
            self._budget.drop_reservation()  # nothing left to want connections for
            return False
        taken = self._budget.try_acquire(waiting)
        for _ in range(taken):
            with self._lock:
                first = self._waiting.popleft() if self._waiting else None
            if first is None:  # running workers took the rest meanwhile
                self._budget.release()
                continue
            worker = threading.Thread(
                target=self._work, args=(first,), name=f"lhymirror-part-{len(self._workers)}"
            )
            worker.daemon = True
            self._workers.append(worker)
            worker.start()
        if taken < waiting:
            # the bytes still to come, as the parts' share of the file (their sizes: rarely known)
            rest = (self._item.size or 0) * waiting // len(self._item.parts)
            self._budget.want(waiting - taken, rest=rest)
            return True
        self._budget.drop_reservation()  # every part has a worker: no more connections owed
        return False

    def _work(self, job: tuple[PartPlan, Future[FetchResult]] | None) -> None:
        """Fetch *job*, then the waiting parts one after another; then give the connection back."""
        try:
            while job is not None:
                part, future = job
                if future.set_running_or_notify_cancel():  # else it is fetched in place
                    try:
                        future.set_result(self._fetch(part))
                    except BaseException as exc:  # handed to place() through the future
                        future.set_exception(exc)
                with self._lock:
                    job = self._waiting.popleft() if self._waiting else None
        finally:
            assert self._budget is not None
            self._budget.release()

    def _staged_begun(self, part: PartPlan) -> bool:
        """Does an earlier prefetch of *part* hold bytes (a run stopped before it was placed)?"""
        key = _staging_key(part)
        held = self._store.partial_path(key)
        return (
            self._store.partial_state(key) is not None
            and held.is_file()
            and held.stat().st_size > 0
        )

    def _staged_path(self, part: PartPlan) -> Path:
        return self._store.partial_path(part.key).with_name(f"{part.key}.part.staged")

    def _fetch(self, part: PartPlan) -> FetchResult:
        name = f"{self._item.entry.path} (part {part.index + 1} of {len(self._item.parts)})"
        staged = Target(_staging_key(part), self._staged_path(part), part.size, part.sha256, name)
        assert self._budget is not None  # parts are prefetched only on the budget's connections
        session = self._budget.lend_session()
        try:
            result: FetchResult = self._fetcher.fetch(staged, part.sources, session)
            return result
        finally:
            self._budget.return_session(session)

    def place(self, part: PartPlan, target: Target) -> FetchResult | None:
        """Append the staged bytes of *part* at its place (*target*); None: fetch it in place.

        A part staged by an earlier run that was stopped is finished staged (its bytes are
        kept); one no prefetch has started is fetched in place by the caller.
        """
        future = self._futures.pop(part.index, None)
        try:
            if future is not None and not future.cancel():
                staged = future.result()
            elif self._budget is not None and self._staged_begun(part):
                staged = self._fetch(part)
            else:
                return None
        except LhymirrorError:
            return None  # fetched again in place, where its failure is reported if it lasts
        path = self._staged_path(part)
        partial = PartialDownload(self._store, target)
        partial.hashes_while_streaming = False  # its own sha256 was checked when it was staged
        partial.begin(staged.source, staged.etag, staged.last_modified, 0)
        with partial.appending() as handle, storage_errors(path), path.open("rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                partial.append(handle, chunk)
        partial.commit()  # a part in place: marked complete for a later resume
        path.unlink(missing_ok=True)
        return FetchResult(
            part.key,
            staged.size,
            staged.sha256,
            staged.source,
            staged.etag,
            staged.last_modified,
            0,
            staged.bytes_received,
        )

    def close(self) -> None:
        """Drop prefetches not started, wait for running ones (each gives its connection back)."""
        for future in self._futures.values():
            future.cancel()
        for worker in self._workers:
            worker.join()


def _staging_key(part: PartPlan) -> str:
    """The book-keeping key of *part*'s download into its staged file."""
    return f"{part.key}.part.staging"
