"""The kinds of source a manifest entry can name, and how to read them.

A source is written as a string in the manifest: an ``https://`` (or, with ``insecure_http``,
``http://``) URL, ``gdrive:<file-id>``, ``kaggle:<competition>[/<file>]`` or
``wayback:<timestamp>/<https-url>`` (the Internet Archive's capture of that URL nearest to the
timestamp, ``YYYY[MM[DD[hh[mm[ss]]]]]``; only for entries with a pinned sha256).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

if sys.platform == "win32":  # what urllib.request does, without importing its HTTP client
    from nturl2path import url2pathname
else:
    url2pathname = unquote

_GDRIVE_ID = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_KAGGLE_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_WAYBACK = re.compile(r"^(?P<timestamp>\d{4,14})/(?P<url>https?://.+)$")
_SPACE = re.compile(r"\s")  # what str.isspace() calls white space, found without a loop
WAYBACK_BASE = "https://web.archive.org/web/"


@dataclass(frozen=True)
class HttpSource:
    """A plain HTTP(S) URL."""

    url: str

    @property
    def kind(self) -> str:
        return urlsplit(self.url).scheme

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class GDriveSource:
    """A Google Drive file, by id."""

    file_id: str
    kind = "gdrive"

    def __str__(self) -> str:
        return f"gdrive:{self.file_id}"


@dataclass(frozen=True)
class KaggleSource:
    """A Kaggle competition's data, or one file of it."""

    competition: str
    file: str | None = None
    kind = "kaggle"

    @property
    def page_url(self) -> str:
        """The competition's data page, where its rules are accepted."""
        return f"https://www.kaggle.com/c/{self.competition}/data"

    def __str__(self) -> str:
        suffix = f"/{self.file}" if self.file else ""
        return f"kaggle:{self.competition}{suffix}"


@dataclass(frozen=True)
class WaybackSource:
    """The Wayback Machine's capture of *url* nearest to *timestamp* (raw bytes, no banner)."""

    timestamp: str
    url: str
    kind = "wayback"

    def capture_url(self, base: str = WAYBACK_BASE) -> str:
        """The raw capture (``id_``): the archive redirects to the nearest capture it holds."""
        return f"{base}{self.timestamp}id_/{self.url}"

    @property
    def page_url(self) -> str:
        """The capture as a browser shows it (with the archive's banner)."""
        return f"{WAYBACK_BASE}{self.timestamp}/{self.url}"

    def __str__(self) -> str:
        return f"wayback:{self.timestamp}/{self.url}"


Source = HttpSource | GDriveSource | KaggleSource | WaybackSource


def parse_source(text: str) -> Source:
    """Parse a manifest source string; raise ``ValueError`` saying what is wrong with it."""
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not a source (expected https://…, gdrive:ID or kaggle:NAME)")
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        return _parse_http(text)
    if scheme == "gdrive":
        if not _GDRIVE_ID.match(rest):
            raise ValueError(f"{text!r}: a Google Drive id is 10+ letters, digits, '-' or '_'")
        return GDriveSource(rest)
    if scheme == "kaggle":
        competition, _, file = rest.partition("/")
        if not _KAGGLE_SLUG.match(competition):
            raise ValueError(f"{text!r}: expected kaggle:<competition>[/<file>]")
        return KaggleSource(competition, file or None)
    if scheme == "wayback":
        match = _WAYBACK.match(rest)
        if not match:
            raise ValueError(f"{text!r}: expected wayback:<timestamp YYYY[MMDDhhmmss]>/<URL>")
        return WaybackSource(match["timestamp"], _parse_http(match["url"]).url)
    raise ValueError(
        f"{text!r}: unknown source scheme {scheme!r} (use https, gdrive, kaggle or wayback)"
    )


def _parse_http(text: str) -> HttpSource:
    parts = urlsplit(text)
    if not parts.hostname:
        raise ValueError(f"{text!r}: URL has no host")
    if _SPACE.search(text):
        raise ValueError(f"{text!r}: URL contains white space (percent-encode it as %20)")
    return HttpSource(text)


def wayback_source(url: str, timestamp: str) -> str:
    """The ``wayback:`` source of *url*'s capture nearest to *timestamp*."""
    return str(WaybackSource(timestamp, url))


def source_kind(text: str) -> str:
    """Short kind of a source string for listings: https, http, gdrive, kaggle, wayback (or ?)."""
    try:
        return parse_source(text).kind
    except ValueError:
        return "?"


# Local files: never written in a manifest (parse_source rejects them), but made by
# `sync --from DIR` to take a file from another lhymirror mirror on this machine.


def is_local_source(text: str) -> bool:
    """True for a ``file:`` source (no network needed)."""
    return text[:5].lower() == "file:"


def local_source(path: Path) -> str:
    """The ``file://`` source of a local file."""
    return path.expanduser().absolute().as_uri()


def local_source_path(text: str) -> Path:
    """The path a ``file:`` source names; ``ValueError`` for one on another host."""
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"only local file URLs are supported, not host {parts.netloc!r}")
    return Path(url2pathname(parts.path))
