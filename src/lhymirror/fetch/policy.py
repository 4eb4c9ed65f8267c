"""How hard one source is tried: attempts, backoff, timeouts (no network library needed)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one source is tried before the next one is used."""

    attempts: int = 5  # per source
    resolve_attempts: int = 2  # a name that does not resolve rarely does a second later
    backoff_base: float = 0.5  # seconds; exponential with full jitter
    backoff_cap: float = 30.0
    retry_after_cap: float = 120.0  # never sleep longer than this for a Retry-After
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    # When the file has another source, a server that sends no answer for this long is left
    # for that source (and counts against its host) instead of being waited for and retried.
    first_byte_timeout: float = 10.0
    # A whole file with this much still to come is fetched as up to `segments` ranges at once,
    # on servers that prove ranges, when the run has connections to spare (fetch/segments.py).
    segment_min_size: int = 32 * 1024 * 1024
    segments: int = 4
    stall_window: float = 30.0  # seconds; fewer than stall_min_bytes in a window = stalled
    stall_min_bytes: int = 1024

    @property
    def timeout(self) -> tuple[float, float]:
        """The ``(connect, read)`` timeout pair for ``requests``."""
        return (self.connect_timeout, self.read_timeout)

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Delay before the next attempt after *failures* failed ones ("full jitter")."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(failures - 1, 0))
        return rng.uniform(0.0, ceiling)
