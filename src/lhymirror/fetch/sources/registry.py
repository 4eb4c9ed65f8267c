"""Which adapter handles which source: one line per kind of source."""

from __future__ import annotations

from lhymirror.fetch.sources import gdrive, https, kaggle, local, wayback
from lhymirror.fetch.sources.base import SourceAdapter

ADAPTERS: dict[str, SourceAdapter] = {
    "https": https.ADAPTER,
    "http": https.ADAPTER,
    "gdrive": gdrive.ADAPTER,
    "kaggle": kaggle.ADAPTER,
    "file": local.ADAPTER,
    "wayback": wayback.ADAPTER,
}


def adapter_for(source: str) -> SourceAdapter | None:
    """The adapter of *source*'s scheme (None: no kind of source has that scheme)."""
    scheme, sep, _ = source.partition(":")
    return ADAPTERS.get(scheme.lower()) if sep else None
