"""``file:`` sources: a file of another lhymirror mirror on this machine (``sync --from DIR``).

Copied with the same verification as a download, without the network (allowed ``--offline``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.fetch.sources.base import Body, Request, Resolved, SourceFailed, SourceSettings
from lhymirror.manifest.sources import local_source_path


class LocalAdapter:
    """Reads the file a ``file:`` URL names."""

    needs_network = False

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        """The file's URL; ``SourceFailed`` for a file URL naming another host."""
        try:
            path = local_source_path(source)
        except ValueError as exc:
            raise SourceFailed(str(exc)) from exc
        return Resolved(source, source, None, detail=path)

    def open(self, resolved: Resolved, request: Request) -> Body:
        """Open the file (always from its start: a copy is cheap to repeat)."""
        path = resolved.detail
        assert isinstance(path, Path)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise SourceFailed(f"cannot read {path} ({exc.strerror or exc})") from exc
        return LocalBody(stream, path)


class LocalBody:
    """A local file as a body: whole, no validators, nothing to sniff."""

    start = 0
    etag = None
    last_modified = None
    sniff = False
    accepts_ranges = False  # a copy is never cut into pieces

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._stream = stream
        self._path = path
        self.total = self.offered_size = os.fstat(stream.fileno()).st_size

    def read(self) -> bytes:
        """The next chunk of the file."""
        try:
            return self._stream.read(CHUNK_SIZE)
        except OSError as exc:
            raise SourceFailed(f"cannot read {self._path} ({exc.strerror or exc})") from exc

    def close(self) -> None:
        """Close the file."""
        self._stream.close()


ADAPTER = LocalAdapter()
