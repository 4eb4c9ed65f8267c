"""What an HTTP answer means for the file being fetched: the one place statuses are interpreted.

:class:`Exchange` sends one attempt's GET (with ``Range`` and ``If-Range`` when bytes held may be
continued) and turns the answer into a :class:`HttpBody` or a failure:

- ``206`` is accepted only with a ``Content-Range`` that starts exactly where the bytes held end
  (and, when the size is known, names that total); anything else restarts from zero.
- ``416`` means "complete" only when the bytes held are exactly the whole file.
- ``408``, ``429`` and ``5xx`` are tried again, after the server's ``Retry-After`` when it gives
  one (one longer than the policy allows fails the source).
- Other statuses, encoded bodies and HTML pages in place of a file fail the source.

Network errors become :class:`TryAgain` (with the cause) or :class:`SourceFailed` (TLS, unsafe
redirects), and a body that stalls is noticed by :class:`BodyReader`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable

import requests
import urllib3

from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.fetch.http import (
    InsecureRedirectError,
    RetryPolicy,
    is_retryable_status,
    parse_retry_after,
)
from lhymirror.fetch.sources.base import Cause, SourceFailed, TryAgain, is_html_response
from lhymirror.fetch.transfer import Target

HTML_REASON = "received an HTML page instead of the file (a quota, login or error page)"
SNIFF_BYTES = 1024  # looked at before the first byte is kept (HTML pages, PDF magic)
# An HTML page however it starts (a byte order mark, blank lines); matched, not copied: the
# first read of a fast body is a whole chunk.
_HTML_START = re.compile(rb"[\xef\xbb\xbf \t\r\n]*<(?:!doctype html|html)", re.IGNORECASE)

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_HTML_SUFFIXES = (".html", ".htm")
_LINK_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)


class Exchange:
    """HTTP for one attempt at one target (see the module docstring)."""

    def __init__(
        self,
        session: requests.Session,
        target: Target,
        *,
        offset: int,
        validator: str | None,
        policy: RetryPolicy,
        clock: Callable[[], float],
        now: Callable[[], dt.datetime],
        on_received: Callable[[int], None],
        alternative: bool = False,
        end: int | None = None,
    ) -> None:
        """*end*: where the bytes asked for stop (a resumed first piece of a large file)."""
        self._session = session
        self._alternative = alternative  # the file has another source to turn to
        self._target = target
        self._offset = offset
        self._policy = policy
        self._clock = clock
        self._now = now
        self._on_received = on_received
        self._headers = {"Accept-Encoding": "identity"}
        if offset:
            last = str(end - 1) if end is not None and end > offset else ""
            self._headers["Range"] = f"bytes={offset}-{last}"
            self._headers["If-Range"] = validator or ""

    def get(self, url: str, auth: tuple[str, str] | None = None) -> requests.Response:
        """GET *url* streamed; network trouble becomes ``TryAgain``, refusals ``SourceFailed``."""
        policy = self._policy
        first_byte = policy.read_timeout
        if self._alternative:
            first_byte = min(policy.first_byte_timeout, policy.read_timeout)
        try:
            response = self._session.get(
                url,
                headers=self._headers,
                auth=auth,
                stream=True,
                timeout=(policy.connect_timeout, first_byte),
                allow_redirects=True,
            )
        except InsecureRedirectError as exc:
            raise SourceFailed(str(exc)) from exc
        except requests.TooManyRedirects as exc:
            raise SourceFailed("too many redirects") from exc
        except requests.exceptions.SSLError as exc:
            raise SourceFailed(f"TLS error ({brief(exc)})", cause="tls") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise TryAgain("connection failed (connect timed out)", cause="connect") from exc
        except requests.Timeout as exc:  # the headers did not come: no first byte
            reason = f"connection failed (no answer in {first_byte:g} s)"
            if self._alternative:
                raise SourceFailed(reason, "transient", cause="timeout") from exc
            raise TryAgain(reason, cause="timeout") from exc
        except requests.ConnectionError as exc:
            raise TryAgain(f"connection failed ({brief(exc)})", cause=_cause_of(exc)) from exc
        except requests.RequestException as exc:
            raise SourceFailed(f"request failed ({brief(exc)})") from exc
        if first_byte != policy.read_timeout:
            _set_read_timeout(response, policy.read_timeout)  # the body gets the usual patience
        return response

    def read_page(self, response: requests.Response, limit: int) -> str:
        """Read at most *limit* bytes of a page sent instead of the file, and close it."""
        with response:
            try:
                body = response.raw.read(limit, decode_content=True)
            except _LINK_ERRORS as exc:
                raise TryAgain(f"connection lost ({brief(exc)})", cause="read") from exc
        self._on_received(len(body))
        return str(body.decode("utf-8", errors="replace"))

    def accept(self, response: requests.Response) -> HttpBody:
        """The body to stream from this answer (closed again when it is refused)."""
        try:
            start = self._accepted_offset(response)
        except BaseException:
            response.close()
            raise
        offered = None
        if start == 0:
            offered = _int_or_none(response.headers.get("Content-Length"))
        reader = BodyReader(response, self._policy, self._clock, self._on_received)
        total = _total_size(self._target, response, start or 0)
        return HttpBody(response, reader, start, total, offered)

    # -- what the answer means -----------------------------------------------------------

    def _accepted_offset(self, response: requests.Response) -> int | None:
        """Where this response's body goes in the file; None when the bytes held are complete."""
        status = response.status_code
        if status == 416:
            self._after_unsatisfiable_range(response)
            return None
        if is_retryable_status(status):
            raise TryAgain(f"HTTP {status}", self._retry_after(response), cause="status")
        if status not in (200, 206):
            reason = f"HTTP {status} {response.reason or ''}".rstrip()
            raise SourceFailed(reason, category="gone" if status in (404, 410) else None)
        _refuse_encoded(response)
        _refuse_html_type(self._target, response)
        if status == 206:
            return self._after_partial_content(response)
        return 0

    def _after_partial_content(self, response: requests.Response) -> int:
        """Accept a 206 only when it continues exactly where the bytes held end."""
        header = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(header)
        expected = self._target.expected_size
        start = int(match.group(1)) if match else None
        total = _int_or_none(match.group(3)) if match else None
        if start != self._offset or (expected is not None and total not in (None, expected)):
            raise TryAgain(
                f"server sent another range ({header or 'no Content-Range'})",
                delay=0,
                cause="range",
                restart=True,
            )
        return self._offset

    def _after_unsatisfiable_range(self, response: requests.Response) -> None:
        """A 416 means "complete" only when the bytes held are exactly the whole file."""
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        total = int(match.group(1)) if match else self._target.expected_size
        if self._offset and total == self._offset:
            return
        raise TryAgain("server refused the range (HTTP 416)", delay=0, cause="range", restart=True)

    def _retry_after(self, response: requests.Response) -> float | None:
        """The server's Retry-After in seconds (None = use backoff); too long fails the source."""
        delay = parse_retry_after(response.headers.get("Retry-After"), self._now())
        if delay is not None and delay > self._policy.retry_after_cap:
            raise SourceFailed(
                f"HTTP {response.status_code}, server asks to wait {delay:.0f} s "
                f"(more than {self._policy.retry_after_cap:g} s)",
                "transient",
                category="quota" if response.status_code == 429 else None,
            )
        return delay


class HttpBody:
    """An accepted answer: where its body goes, its validators, and the body as it arrives."""

    sniff = True

    def __init__(
        self,
        response: requests.Response,
        reader: BodyReader,
        start: int | None,
        total: int | None,
        offered_size: int | None,
    ) -> None:
        self._response = response
        self._reader = reader
        self.start = start
        self.total = total
        self.offered_size = offered_size
        self.etag: str | None = response.headers.get("ETag")
        self.last_modified: str | None = response.headers.get("Last-Modified")
        self.accepts_ranges = response.headers.get("Accept-Ranges", "").lower() == "bytes"

    def read(self) -> bytes:
        """The next bytes of the body (b"" at its end)."""
        return self._reader.read()

    def close(self) -> None:
        """Release the connection."""
        self._response.close()


# A body arriving at least this fast is read in whole chunks (each then takes at most 0.1 s),
# once this many bytes prove the rate; slower bodies are read as their bytes arrive.
BULK_RATE = 10 * CHUNK_SIZE  # bytes per second
BULK_EVIDENCE = CHUNK_SIZE


class BodyReader:
    """Reads a response body as it arrives, and notices a stalled transfer.

    A slow body is read as it arrives (``read1``: whatever one receive gives), so progress, the
    rate limit, the stall check and the decision to cut a file come every few KiB. A fast body
    is read in whole chunks: ``read1`` asks for a fresh buffer of a chunk's size for every
    receive and keeps a fraction of it, which costs more than the bytes themselves at loopback
    speed (page faults). The stall check holds either way: a body that slows down is read as it
    arrives again from the next stall window on.
    """

    def __init__(
        self,
        response: requests.Response,
        policy: RetryPolicy,
        clock: Callable[[], float],
        on_received: Callable[[int], None],
    ) -> None:
        self._raw = response.raw
        self._policy = policy
        self._clock = clock
        self._on_received = on_received
        self._window_start = clock()
        self._window_bytes = 0
        self._bulk = False  # read whole chunks (the body comes fast)

    def read(self) -> bytes:
        """The next bytes of the body (b"" at its end); ``TryAgain`` on a lost or stalled link."""
        try:
            if self._bulk:
                chunk: bytes = self._raw.read(CHUNK_SIZE, decode_content=False)
            else:
                chunk = self._raw.read1(CHUNK_SIZE, decode_content=False)
        except _LINK_ERRORS as exc:
            raise TryAgain(f"connection lost ({brief(exc)})", cause="read") from exc
        self._on_received(len(chunk))
        self._watch(len(chunk))
        return chunk

    def _watch(self, nbytes: int) -> None:
        self._window_bytes += nbytes
        now = self._clock()
        if now - self._window_start < self._policy.stall_window:
            if not self._bulk and self._window_bytes >= BULK_EVIDENCE:
                self._bulk = self._window_bytes >= BULK_RATE * (now - self._window_start)
            return
        self._bulk = False
        if self._window_bytes < self._policy.stall_min_bytes:
            raise TryAgain(
                f"transfer stalled (under {self._policy.stall_min_bytes} bytes "
                f"in {self._policy.stall_window:g} s)",
                cause="read",
            )
        self._window_start, self._window_bytes = now, 0


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Give the rest of the body the usual read timeout (best effort: urllib3's socket)."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)


def _cause_of(exc: requests.ConnectionError) -> Cause:
    """Whether *exc* failed to resolve the host's name or to connect to it."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "resolve"
    text = str(exc)
    markers = ("NameResolutionError", "Name or service not known", "getaddrinfo failed")
    if any(marker in text for marker in (*markers, "nodename nor servname", "No address")):
        return "resolve"
    if "Temporary failure in name resolution" in text:
        return "resolve"
    return "connect"


def check_head(target: Target, head: bytes) -> None:
    """Refuse an HTML page posing as the file, and (unpinned) a PDF that is not one.

    *head*: the body's first bytes (at least :data:`SNIFF_BYTES` of them, unless it is shorter).
    """
    name = target.name.lower()
    if not name.endswith(_HTML_SUFFIXES) and _HTML_START.match(head) is not None:
        raise SourceFailed(HTML_REASON, category="html")
    if name.endswith(".pdf") and target.expected_sha256 is None and b"%PDF-" not in head:
        raise SourceFailed("received something that is not a PDF (no %PDF- header)")


def _refuse_html_type(target: Target, response: requests.Response) -> None:
    if is_html_response(response) and not target.name.lower().endswith(_HTML_SUFFIXES):
        raise SourceFailed(HTML_REASON, category="html")


def _refuse_encoded(response: requests.Response) -> None:
    """The hashed bytes must be the stored bytes: no gzip (or other) transfer encoding."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise SourceFailed(f"server sent {encoding}-encoded data although asked for identity")


def _total_size(target: Target, response: requests.Response, start: int) -> int | None:
    if target.expected_size is not None:
        return target.expected_size
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match:
        return _int_or_none(match.group(3))
    length = _int_or_none(response.headers.get("Content-Length"))
    return None if length is None else start + length


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def brief(exc: BaseException) -> str:
    """The useful part of a network error's very long message."""
    text = " ".join(str(exc).split())
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return text if len(text) <= 160 else text[:157] + "..."
