"""What an operation tells while it runs: the one small events protocol of the library.

Pass any object with these methods (or a subclass of :class:`Silent` overriding the ones you
care about) as ``events=``. Calls may come from worker threads (``sync`` transfers files in
parallel): an implementation that keeps state must lock it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lhymirror.fetch.sync import FileOutcome


class CheckEvents(Protocol):
    """Progress of ``pack``, ``verify`` and ``unpack``: bytes read and checked."""

    def checking(self, what: str, total: int | None) -> None:
        """*what* (packing, verifying, unpacking) starts reading *total* bytes (None: unknown)."""
        ...

    def progressed(self, nbytes: int) -> None:
        """*nbytes* more bytes were read and checked."""
        ...


class Events(CheckEvents, Protocol):
    """Every event: ``sync``'s transfers and finished files, and :class:`CheckEvents`.

    ``sync`` needs only the first five methods (``lhymirror.fetch.sync.SyncEvents``); ``pack``,
    ``verify`` and ``unpack`` only :class:`CheckEvents`.
    """

    def started(self, key: str, total: int | None, offset: int) -> None:
        """A transfer of *key* (an entry id, or ``<id>.partNN``) began at byte *offset*."""
        ...

    def advanced(self, key: str, nbytes: int) -> None:
        """*nbytes* more bytes of *key* arrived."""
        ...

    def restarted(self, key: str, offset: int) -> None:
        """The transfer of *key* starts over from *offset* (earlier bytes were dropped)."""
        ...

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """*source* failed for *key*; it is tried again after *delay* seconds."""
        ...

    def file_finished(self, outcome: FileOutcome) -> None:
        """``sync`` is done with one file, whatever its outcome."""
        ...


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

    def checking(self, what: str, total: int | None) -> None:
        """Ignored."""

    def progressed(self, nbytes: int) -> None:
        """Ignored."""
