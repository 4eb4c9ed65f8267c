"""Plain ``https://`` (and, where the manifest allows, ``http://``) URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

from lhymirror.fetch.sources.base import Body, Request, Resolved, SourceFailed, SourceSettings
from lhymirror.manifest.sources import HttpSource, parse_source


class HttpsAdapter:
    """A URL is requested as is; its answer means what HTTP says it means."""

    needs_network = True

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        """The URL itself (``SourceFailed`` when it is not a usable URL)."""
        parsed = parse_or_fail(source)
        if not isinstance(parsed, HttpSource):  # the registry maps only http(s) here
            raise SourceFailed(f"not a usable source ({source!r} is not a URL)")
        return Resolved(source, parsed.url, host_of(parsed.url))

    def open(self, resolved: Resolved, request: Request) -> Body:
        """GET the URL and interpret the answer."""
        return request.http.accept(request.http.get(resolved.url, resolved.auth))


def parse_or_fail(source: str) -> object:
    """The parsed manifest source; ``SourceFailed`` saying what is wrong with it."""
    try:
        return parse_source(source)
    except ValueError as exc:
        raise SourceFailed(f"not a usable source ({exc})") from exc


def host_of(url: str) -> str | None:
    """The host a URL connects to (lower case), with its port when the URL names one."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.hostname is None or port is None:
        return parts.hostname
    return f"{parts.hostname}:{port}"


ADAPTER = HttpsAdapter()
