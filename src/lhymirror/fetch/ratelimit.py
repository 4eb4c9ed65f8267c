"""A total bandwidth cap shared by every transfer of a run (``sync --limit-rate``).

A virtual clock advances by ``n / rate`` seconds for every *n* bytes received, whichever thread
received them; a thread whose bytes run ahead of the real clock sleeps the difference. A short
burst (half a second's worth) is allowed so that small reads are not each paced. Clock and sleep
are injected, so tests run instantly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BURST_SECONDS = 0.5


class RateLimiter:
    """Paces received bytes to *rate* bytes per second in total (thread-safe)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._virtual = clock() - BURST_SECONDS  # the bytes allowed so far, in clock time

    def take(self, nbytes: int) -> None:
        """Account for *nbytes* just received; sleep until the total is back under the cap."""
        if nbytes <= 0:
            return
        with self._lock:
            now = self._clock()
            self._virtual = max(self._virtual, now - BURST_SECONDS) + nbytes / self.rate
            wait = self._virtual - now
        if wait > 0:
            self._sleep(wait)
