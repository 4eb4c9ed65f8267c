"""The later parts of a split file, fetched on spare connections while the current one streams.

A split file's parts are appended to its assembly in order, so they used to come one after the
other on one connection. When the file comes from a base the user named (no per-host cap) and the
run has connections to spare (:class:`~lhymirror.fetch.scheduler.ConnectionBudget`), the parts
after the first missing one are fetched meanwhile, each verified on its own as a whole download
into a staged file next to the partials (``<key>.part.staged``). When the in-order sequence
reaches such a part, its staged bytes are appended to the assembly (feeding the whole file's
digest) instead of being fetched; a part whose prefetch failed is simply fetched in place.
The joined whole is verified as before.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
        session_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._store = store
        self._item = item
        self._fetcher = fetcher
        self._budget = budget if item.capped_host is None else None  # course servers: no
        self._session_factory = session_factory
        self._futures: dict[int, Future[FetchResult]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._extra = 0

    def start(self, after: PartPlan) -> None:
        """Start fetching the parts after *after* on the connections free now."""
        later = self._item.parts[after.index + 1 :]
        if self._budget is None or not later:
            return
        self._extra = self._budget.try_acquire(len(later))
        self._budget.drop_reservation()  # what this file may use is taken now
        if self._extra == 0:
            return
        self._executor = ThreadPoolExecutor(self._extra, thread_name_prefix="lhymirror-part")
        for part in later:
            self._futures[part.index] = self._executor.submit(self._fetch, part)

    def _staged_path(self, part: PartPlan) -> Path:
        return self._store.partial_path(part.key).with_name(f"{part.key}.part.staged")

    def _fetch(self, part: PartPlan) -> FetchResult:
        name = f"{self._item.entry.path} (part {part.index + 1} of {len(self._item.parts)})"
        staged = Target(
            f"{part.key}.part.staging", self._staged_path(part), part.size, part.sha256, name
        )
        if self._session_factory is not None:
            session = self._session_factory()
        else:
            from lhymirror.fetch.http import new_session  # noqa: PLC0415 - loads requests

            session = new_session()
        try:
            result: FetchResult = self._fetcher.fetch(staged, part.sources, session)
            return result
        finally:
            session.close()

    def place(self, part: PartPlan, target: Target) -> FetchResult | None:
        """Append the staged bytes of *part* at its place (*target*); None: fetch it in place."""
        future = self._futures.pop(part.index, None)
        if future is None:
            return None
        try:
            staged = future.result()
        except LhymirrorError:
            return None  # fetched again in place, where its failure is reported if it lasts
        path = self._staged_path(part)
        partial = PartialDownload(self._store, target)
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
        """Drop prefetches not started, wait for running ones, give the connections back."""
        if self._executor is not None:
            for future in self._futures.values():
                future.cancel()
            wait(list(self._futures.values()))
            self._executor.shutdown(wait=True)
        if self._budget is not None and self._extra:
            self._budget.release(self._extra)
            self._extra = 0
