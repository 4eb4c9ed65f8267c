"""How hard one source is tried: attempts, backoff, timeouts (no network library needed)."""

from __future__ import annotations

import random
from dataclasses import dataclass

# A piece costs a connection and a request (two round trips on a far link: 0.4 s at 200 ms, what
# 1 MiB/s moves in 0.4 s); a file of 4 MiB in up to 4 pieces keeps that under a third of a piece.
SPLIT_FLOOR = 4 * 1024 * 1024


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
    # ... and only when, at the rate its one connection has reached, the rest would take longer
    # than this (seconds): on a fast link pieces cost requests and a join, and win nothing.
    segment_min_seconds: float = 1.0
    # Lower that size to the run's share per connection (see split_size); False once a size
    # was asked for (--split-size).
    segment_share: bool = True
    stall_window: float = 30.0  # seconds; fewer than stall_min_bytes in a window = stalled
    stall_min_bytes: int = 1024

    def split_size(self, bytes_to_fetch: int, connections: int) -> int:
        """The size from which a run fetching *bytes_to_fetch* on *connections* splits files.

        ``segment_min_size``, lowered to the run's share per connection, but never below
        ``SPLIT_FLOOR``: on a link that limits each connection, a file larger than its share
        would otherwise be the last transfer, running alone on one connection.
        """
        if not self.segment_share:
            return self.segment_min_size
        share = bytes_to_fetch // max(1, connections)
        return min(self.segment_min_size, max(SPLIT_FLOOR, share))

    @property
    def timeout(self) -> tuple[float, float]:
        """The ``(connect, read)`` timeout pair for ``requests``."""
        return (self.connect_timeout, self.read_timeout)

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Delay before the next attempt after *failures* failed ones ("full jitter")."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(failures - 1, 0))
        return rng.uniform(0.0, ceiling)
