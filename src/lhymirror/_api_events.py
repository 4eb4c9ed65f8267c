"""What the operations of :mod:`lhymirror.api` tell while they run (re-exported there)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lhymirror.fetch.report import FileOutcome

# Events: what an operation tells while it runs. Calls may come from worker threads (sync
# transfers files in parallel): an implementation that keeps state must lock it.


class CheckEvents(Protocol):
    """Progress of ``pack``, ``verify`` and ``unpack``: bytes read and checked."""

    def checking(self, what: str, total: int | None) -> None:
        """*what* (packing, verifying, unpacking) starts reading *total* bytes (None: unknown)."""
        ...

    def progressed(self, nbytes: int) -> None:
        """*nbytes* more bytes were read and checked."""
        ...


class SyncEvents(Protocol):
    """Progress of ``sync``: transfers (keys are entry ids, or ``<id>.partNN``), finished files
    and notes such as what a swarm delivered."""

    def started(self, key: str, total: int | None, offset: int) -> None:
        """A transfer of *key* began at byte *offset* (*total*: its size when known)."""

    def advanced(self, key: str, nbytes: int) -> None:
        """*nbytes* more bytes of *key* arrived."""

    def restarted(self, key: str, offset: int) -> None:
        """The transfer of *key* starts over from *offset* (earlier bytes were dropped)."""

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """*source* failed for *key*; it is tried again after *delay* seconds."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """``sync`` is done with one file, whatever its outcome."""

    def note(self, line: str) -> None:
        """A line worth telling the user (e.g. ``swarm: 3 of 5 files (1.2 GB)``)."""

    def host_down(self, host: str, reason: str) -> None:
        """*host* could not be reached (*reason*); its sources are skipped from now on."""


class Events(SyncEvents, CheckEvents, Protocol):
    """Every event of every operation: one object can follow them all."""


class Silent:
    """Events that show nothing: the default, and a base class to override methods of."""

    def started(self, key: str, total: int | None, offset: int) -> None:
        """Ignored."""

    def advanced(self, key: str, nbytes: int) -> None:
        """Ignored."""

    def restarted(self, key: str, offset: int) -> None:
        """Ignored."""

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """Ignored."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """Ignored."""

    def note(self, line: str) -> None:
        """Ignored."""

    def host_down(self, host: str, reason: str) -> None:
        """Ignored."""

    def checking(self, what: str, total: int | None) -> None:
        """Ignored."""

    def progressed(self, nbytes: int) -> None:
        """Ignored."""
