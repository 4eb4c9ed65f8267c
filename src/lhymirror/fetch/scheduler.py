"""Running many transfers on a thread pool, at most a few at a time on one host.

At most ``per_host`` items go to one capped host at a time (for a sync: the course server of a
file's first source), so a course server is not hammered by ``--jobs`` connections at once,
while a free worker takes the next item of another host instead of waiting. Items of no capped
host (bases the user named) take any free worker. Each worker thread keeps its own state (a
``requests`` session and a downloader), made on first use by :class:`PerThread`.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Generic, Protocol, TypeVar

from lhymirror.fetch.plan import PlanItem

R = TypeVar("R")
W = TypeVar("W")


class Schedulable(Protocol):
    """What the scheduler needs of an item: the host it is capped on (None: not capped)."""

    @property
    def capped_host(self) -> str | None:
        """The host whose slots the item takes."""


S = TypeVar("S", bound=Schedulable)


class ConnectionBudget:
    """The connections a run may hold at once (``--jobs``): one per transfer, extras for pieces.

    Every transfer holds one. A transfer found slow on its one connection asks for more
    (:meth:`want`): it gets the free ones at once, and the next ones given back go to it before
    any new file starts, so its pieces (or later parts) wait for the first transfer to end
    instead of for the whole queue. Until then no connection sits idle for it.
    """

    def __init__(
        self,
        total: int,
        *,
        split_size: int | None = None,
        session_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.total = max(1, total)
        self.split_size = split_size
        self._free = self.total
        self._reserved: dict[int, int] = {}  # thread id -> connections set aside for its pieces
        self._wanted: dict[int, int] = {}  # thread id -> connections it still waits for
        self._rest: dict[int, int] = {}  # thread id -> bytes its transfer still has to fetch
        self._cond = threading.Condition()
        self.session_factory = session_factory  # how new sessions are made (None: new_session)
        self._idle_sessions: list[Any] = []
        self._sessions: list[Any] = []

    def lend_session(self) -> Any:
        """A session for one transfer: the one given back last (its connection kept alive), or new.

        A transfer that takes the connection a finished one gave back takes its session too, so
        it asks on the open connection instead of opening one: a round trip on a far link.
        """
        with self._cond:
            if self._idle_sessions:
                return self._idle_sessions.pop()
        if self.session_factory is None:
            from lhymirror.fetch.http import new_session  # noqa: PLC0415 - loads requests

            self.session_factory = new_session
        session = self.session_factory()
        with self._cond:
            self._sessions.append(session)
        return session

    def return_session(self, session: Any) -> None:
        """Take back a session lent by :meth:`lend_session` (its transfer is over)."""
        with self._cond:
            self._idle_sessions.append(session)

    def close_sessions(self) -> None:
        """Close every session lent (errors ignored: this runs on the way out)."""
        with self._cond:
            sessions, self._sessions, self._idle_sessions = self._sessions, [], []
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()

    def unhold(self) -> None:
        """Give back this thread's connection and what is left of its reservation."""
        self.drop_reservation()
        self.release()

    def want(self, count: int, *, rest: int = 0) -> int:
        """Ask for *count* connections for this thread's pieces; how many are set aside now.

        Free connections are set aside at once, and connections given back later go to this
        thread (before any new file starts) until it has *count* or drops its reservation.
        Among the threads waiting, the one with the most bytes still to come (*rest*) is
        served first: as with the order of the files, the longest transfer must not end last.
        """
        ident = threading.get_ident()
        with self._cond:
            mine = self._reserved.get(ident, 0)
            self._wanted[ident] = max(0, count - mine)
            self._rest[ident] = rest
            self._grant()
            return self._reserved.get(ident, 0)

    def reserved(self) -> int:
        """Connections set aside for this thread (see :meth:`want`)."""
        with self._cond:
            return self._reserved.get(threading.get_ident(), 0)

    def drop_reservation(self) -> None:
        """Give back what is set aside for this thread, and stop waiting for more."""
        ident = threading.get_ident()
        with self._cond:
            self._wanted.pop(ident, None)
            self._rest.pop(ident, None)
            extra = self._reserved.pop(ident, 0)
        if extra:
            self.release(extra)

    def acquire(self) -> None:
        """Take one connection, waiting while pieces of other files hold them all."""
        with self._cond:
            while self._free < 1:
                self._cond.wait()
            self._free -= 1

    def try_acquire(self, wanted: int) -> int:
        """Take up to *wanted* connections: this thread's reserved ones, then free ones."""
        with self._cond:
            mine = self._reserved.get(threading.get_ident(), 0)
            reserved = max(0, min(wanted, mine))
            if reserved:
                self._reserved[threading.get_ident()] = mine - reserved
            taken = max(0, min(wanted - reserved, self._free))
            self._free -= taken
            return reserved + taken

    def release(self, count: int = 1) -> None:
        """Give *count* connections back (to a slow transfer waiting for them, if any)."""
        with self._cond:
            self._free = min(self.total, self._free + count)
            self._grant()
            self._cond.notify_all()

    def _grant(self) -> None:
        """Set free connections aside for the threads waiting for them (lock held)."""
        waiting = sorted(self._wanted.items(), key=lambda item: -self._rest.get(item[0], 0))
        for ident, count in waiting:
            given = min(count, self._free)
            if given:
                self._free -= given
                self._reserved[ident] = self._reserved.get(ident, 0) + given
            if count - given:
                self._wanted[ident] = count - given
            else:
                del self._wanted[ident]


class Scheduler:
    """Runs items on *jobs* threads, starting each when its host has a free slot.

    With a *budget*, each running item holds one of its connections (pieces of large files take
    the spare ones: :mod:`lhymirror.fetch.segments`).
    """

    def __init__(
        self,
        jobs: int,
        per_host: int,
        cancelled: threading.Event,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.jobs = max(1, jobs)
        self.per_host = max(1, per_host)
        self.cancelled = cancelled  # set when the run is interrupted
        self.budget = budget

    def run(self, items: Sequence[S], work: Callable[[S], R], done: Callable[[S, R], None]) -> None:
        """Call ``work(item)`` for every item on the pool, and ``done(item, result)`` in order.

        *done* is called on this thread as each item finishes. Dispatching by host (rather than
        letting a worker block on a busy host) keeps every thread busy while a capped course
        server is saturated and other hosts still have work. On an interrupt (or a bug) the
        ``cancelled`` event is set, so running work stops at its next event, and it re-raises.
        """
        pending = list(items)
        running: dict[Future[R], S] = {}
        on_host: Counter[str] = Counter()
        executor = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="lhymirror-sync")
        try:
            while pending or running:
                while len(running) < self.jobs and (item := self._next(pending, on_host)):
                    pending.remove(item)
                    if item.capped_host is not None:
                        on_host[item.capped_host] += 1
                    running[executor.submit(self._holding, work, item)] = item
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    if item.capped_host is not None:
                        on_host[item.capped_host] -= 1
                    done(item, future.result())
        except BaseException:
            self.cancelled.set()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown(wait=True)

    def _holding(self, work: Callable[[S], R], item: S) -> R:
        """``work(item)``, holding its connections of the budget meanwhile."""
        if self.budget is None:
            return work(item)
        self.budget.acquire()
        try:
            return work(item)
        finally:
            self.budget.unhold()

    def _next(self, pending: list[S], on_host: Counter[str]) -> S | None:
        """The first pending item whose host is uncapped or below its cap."""
        for item in pending:
            if item.capped_host is None or on_host[item.capped_host] < self.per_host:
                return item
        return None


class PerThread(Generic[W]):
    """One value per worker thread, made on first use; all of them closed at the end."""

    def __init__(self, make: Callable[[], W], close: Callable[[W], None]) -> None:
        self._make = make
        self._close = close
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[W] = []

    def get(self) -> W:
        """This thread's value."""
        if not hasattr(self._local, "value"):
            value = self._make()
            with self._lock:
                self._made.append(value)
            self._local.value = value
        made: W = self._local.value
        return made

    def close(self) -> None:
        """Close every value made (errors ignored: this runs on the way out)."""
        for value in self._made:
            with contextlib.suppress(Exception):
                self._close(value)


def largest_first(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Transfer order: unknown sizes (usually datasets) first, then by decreasing size.

    Starting the long transfers first keeps one big file from finishing alone at the end while
    the other workers sit idle; the report keeps the manifest's order regardless.
    """
    return sorted(items, key=lambda item: (item.size is not None, -(item.size or 0)))
