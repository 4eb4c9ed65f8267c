"""One helper thread that runs calls at their deadlines, instead of a waiting thread per file.

Every file with a second source arms a deadline (the first-byte timeout, after which its other
sources race the silent one), and almost every deadline is cancelled long before it is due. A
thread started per file just to wait cost more than the small files' own work, so one thread
serves them all: it starts when a call is armed and ends after a while with nothing armed.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

IDLE_SECONDS = 5.0  # the helper thread ends after this long with nothing armed


class Deadlines:
    """Calls armed to run on one helper thread once their delay has passed, unless cancelled.

    A call runs on the helper thread, so it must be quick (start a thread of its own for real
    work). Deadlines are real time: the thread waits on them, so no clock is injected.
    """

    def __init__(self, *, idle: float = IDLE_SECONDS) -> None:
        self._idle = idle
        self._changed = threading.Condition()
        self._due: list[tuple[float, int]] = []  # (deadline, id), a heap
        self._calls: dict[int, Callable[[], None]] = {}  # armed and not cancelled
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, call: Callable[[], None]) -> Callable[[], None]:
        """Arm *call* to run after *delay* seconds; return what cancels it (harmless once run)."""
        with self._changed:
            ident = next(self._ids)
            heapq.heappush(self._due, (time.monotonic() + delay, ident))
            self._calls[ident] = call
            if self._thread is None:
                try:
                    self._start()
                except RuntimeError:  # no thread to be had: nothing is armed
                    del self._calls[ident]
                    raise
            else:
                self._changed.notify()

        def cancel() -> None:
            with self._changed:
                self._calls.pop(ident, None)

        return cancel

    @property
    def serving(self) -> bool:
        """Is the helper thread running (it ends after a while with nothing armed)?"""
        with self._changed:
            return self._thread is not None

    def armed(self) -> int:
        """How many calls wait for their deadline."""
        with self._changed:
            return len(self._calls)

    def _start(self) -> None:
        """Start the helper thread (called holding the lock, with no helper running)."""
        thread = threading.Thread(target=self._serve, name="lhymirror-deadlines", daemon=True)
        thread.start()
        self._thread = thread

    def _serve(self) -> None:
        try:
            while (call := self._next_call()) is not None:
                call()
        finally:  # a call that raised (a bug) ends this thread; another serves what is armed
            with self._changed:
                if self._thread is threading.current_thread():
                    self._thread = None
                    if self._calls:
                        self._start()

    def _next_call(self) -> Callable[[], None] | None:
        """The next call that is due, waiting for it; None once idle for long enough."""
        idle_since: float | None = None
        with self._changed:
            while True:
                while self._due and self._due[0][1] not in self._calls:
                    heapq.heappop(self._due)  # cancelled
                now = time.monotonic()
                if self._due:
                    idle_since = None
                    deadline, ident = self._due[0]
                    if deadline <= now:
                        heapq.heappop(self._due)
                        return self._calls.pop(ident)
                    self._changed.wait(deadline - now)
                    continue
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= self._idle:
                    self._thread = None
                    return None
                self._changed.wait(self._idle - (now - idle_since))
