"""The few stream methods lhymirror's readers actually call, as structural types.

Hashing and copying take any object with the right method (an open file, an archive member, a
hashing wrapper), so they are typed by what they call rather than by ``BinaryIO``.
"""

from __future__ import annotations

from typing import Protocol


class Reads(Protocol):
    """Anything with ``read(size) -> bytes`` (b"" at the end)."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to *size* bytes; all that is left for a negative *size*."""
        ...


class ReadsInto(Protocol):
    """Anything that reads into a caller's buffer: ``readinto(buffer) -> count`` (0 at the end)."""

    def readinto(self, buffer: memoryview, /) -> int | None:
        """Fill the start of *buffer*; the number of bytes read."""
        ...
