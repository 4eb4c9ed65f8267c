"""Which hosts answer, learned within one run: a host that cannot be reached is skipped.

A connection-level failure (name resolution, refused or unreachable, connect timeout, no first
byte, TLS failure) counts against the *host* of the source; any answer at all (even an HTTP error)
clears the count. After :attr:`HostHealth.threshold` failures in a row the host is down for the
run: every remaining source on it is skipped at once, so each file goes straight to its next
source instead of paying timeouts × attempts on a dead host. Once in a while (doubling from
``probe_after`` seconds) one request is let through to see whether the host came back.

Shared by every worker thread of a run (all methods take a lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostDown:
    """A host that was down at the end of a run, and what it did to the files."""

    host: str
    reason: str  # the last connection failure, e.g. "connect timed out"
    files: int  # files that had a source on it skipped or abandoned because it was down


@dataclass
class _Host:
    failures_in_a_row: int = 0
    down: bool = False
    reason: str = ""
    next_probe: float = 0.0
    probe_interval: float = 0.0
    avoided: set[str] = field(default_factory=set)  # file keys that skipped it


class HostHealth:
    """The health of every host a run talked to (see the module docstring)."""

    def __init__(
        self,
        *,
        threshold: int = 2,
        probe_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_down: Callable[[str, str], None] | None = None,
    ) -> None:
        self.threshold = max(1, threshold)
        self.probe_after = probe_after
        self._clock = clock
        self._on_down = on_down
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()

    def usable(self, host: str, key: str) -> bool:
        """True when a request to *host* (for the file *key*) should be made now.

        A down host is usable once per probe interval (one request, not all); otherwise the
        file is counted as one that avoided it.
        """
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            if not state.down:
                return True
            now = self._clock()
            if now >= state.next_probe:
                state.probe_interval *= 2
                state.next_probe = now + state.probe_interval
                return True
            state.avoided.add(key)
            return False

    def failed(self, host: str, reason: str, key: str) -> bool:
        """Count a connection-level failure; True when *host* is (now) down."""
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            state.failures_in_a_row += 1
            state.reason = reason
            if state.down:
                state.avoided.add(key)
                return True
            if state.failures_in_a_row < self.threshold:
                return False
            state.down = True
            state.probe_interval = self.probe_after
            state.next_probe = self._clock() + self.probe_after
            state.avoided.add(key)
        if self._on_down is not None:
            self._on_down(host, reason)
        return True

    def reached(self, host: str) -> None:
        """*host* answered: it is up, and its count starts again."""
        with self._lock:
            state = self._hosts.get(host)
            if state is not None:
                state.failures_in_a_row = 0
                state.down = False

    def is_down(self, host: str) -> bool:
        """True when *host* is down for now."""
        with self._lock:
            state = self._hosts.get(host)
            return state is not None and state.down

    def reason(self, host: str) -> str:
        """The last connection failure of *host* ("" when none)."""
        with self._lock:
            state = self._hosts.get(host)
            return state.reason if state is not None else ""

    def all_down(self) -> bool:
        """True when requests were made and every host they went to is down."""
        with self._lock:
            hosts = self._hosts.values()
            return bool(hosts) and all(state.down for state in hosts)

    def down_hosts(self) -> tuple[HostDown, ...]:
        """The hosts down now, in the order they were first asked for (for the report)."""
        with self._lock:
            return tuple(
                HostDown(host, state.reason, len(state.avoided))
                for host, state in self._hosts.items()
                if state.down
            )
