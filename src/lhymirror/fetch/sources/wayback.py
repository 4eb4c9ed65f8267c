"""``wayback:<timestamp>/<url>``: the Internet Archive's raw capture of a URL.

The Wayback Machine serves the bytes it captured, unchanged, at
``https://web.archive.org/web/<timestamp>id_/<url>``. A timestamp it holds no capture for
(``2022``, ``20220701``) is answered with a redirect to the nearest capture, which is followed
as long as it stays on the archive; ``404`` means the URL was never archived (the next source is
tried), ``429`` and ``5xx`` are tried again after ``Retry-After`` like any other server. Only
entries with a pinned sha256 may name such a source, so a capture of another revision, or of an
error page, is rejected by the checksum rather than kept.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from lhymirror.fetch.sources.base import Body, Request, Resolved, SourceFailed, SourceSettings
from lhymirror.fetch.sources.https import host_of, parse_or_fail
from lhymirror.manifest.sources import WAYBACK_BASE, WaybackSource

NOT_ARCHIVED = "not archived in the Wayback Machine"


class WaybackAdapter:
    """Raw captures from a Wayback Machine (the Internet Archive's, or another at *base*)."""

    needs_network = True

    def __init__(self, base: str = WAYBACK_BASE) -> None:
        self.base = base

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        """The raw-capture URL of the source's original URL and timestamp."""
        parsed = parse_or_fail(source)
        if not isinstance(parsed, WaybackSource):  # the registry maps only wayback: here
            raise SourceFailed(f"not a usable source ({source!r} is not a wayback: source)")
        url = parsed.capture_url(self.base)
        return Resolved(source, url, host_of(url))

    def open(self, resolved: Resolved, request: Request) -> Body:
        """GET the capture (redirects to the nearest one are followed) and interpret it."""
        response = request.http.get(resolved.url)
        if not self._on_archive(response.url):
            response.close()
            raise SourceFailed(
                f"the Wayback Machine redirected away from the archive ({response.url})"
            )
        if response.status_code == 404:
            response.close()
            raise SourceFailed(NOT_ARCHIVED)
        return request.http.accept(response)

    def _on_archive(self, url: str) -> bool:
        base = urlsplit(self.base)
        final = urlsplit(url)
        return (final.scheme, final.netloc) == (base.scheme, base.netloc) and final.path.startswith(
            base.path
        )


ADAPTER = WaybackAdapter()
