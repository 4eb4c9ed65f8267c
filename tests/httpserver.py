"""A real threaded HTTP/1.1 test server on 127.0.0.1 with Range support and fault modes.

Used by the download engine's end-to-end tests. Everything is deterministic and offline.

Example::

    with CourseServer() as server:
        data = pdf_payload(100_000, seed=1)
        url = server.add("/kurs/vl01.pdf", data, faults=Fault(cut_after=1000, cut_times=1))
        ...  # first GET is cut after 1000 body bytes, the retry succeeds
        assert server.count("/kurs/vl01.pdf") == 2

Routing rules:

* Paths are compared percent-decoded (``/a%20b.pdf`` and ``/a b.pdf`` are the same route);
  ``url_for`` produces the percent-encoded form.
* The query string is ignored for lookup, unless a route was registered *with* that exact
  query: ``add("/x?dl=1", ...)`` is a separate route that only matches the exact raw query
  ``dl=1``; any other query (or none) falls back to the route ``/x``.
* ``set_faults`` may be called for a path without content (e.g. a pure redirect or a
  ``statuses`` sequence); once no fault applies, such a route answers 404.

Order in which a request to a route is processed: ``statuses`` step (consumed by every
GET/HEAD, hops excluded) -> ``require_header`` -> ``redirect_to`` -> content (``etag_changes``,
``body_override``, ``content_encoding``, conditional requests, Range, body faults).

Caveats:

* ``body_bytes_sent``/``bytes_sent``/``wait_for_bytes`` count bytes handed to the socket
  (accounted just *before* each write), not bytes the client has read; kernel buffers can
  hold a few hundred KiB, so use ``trickle`` when a client must be killed "half-way".
* A cut closes the connection with a clean FIN after exactly N body bytes (the client sees
  a short read / IncompleteRead); the connection is never reused afterwards. Stalls and
  trickles that are abandoned by the client also close the connection.
* Log records and fault counters are updated before the corresponding bytes are sent, so a
  test that has received a response can inspect ``server.requests`` without waiting.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import html
import io
import mimetypes
import random
import re
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Literal
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "DEFAULT_LAST_MODIFIED",
    "CourseServer",
    "Fault",
    "Headers",
    "RequestRecord",
    "StatusStep",
    "http_date",
    "payload",
    "pdf_payload",
    "strong_etag",
]

#: Last-Modified used by ``add()`` unless given explicitly.
DEFAULT_LAST_MODIFIED = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)
#: Prefix of the internal URLs used for the intermediate hops of ``redirect_chain``.
HOP_PREFIX = "/__hop__/"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NO_BODY_STATUSES = frozenset({204, 304})
PDF_HEADER = b"%PDF-1.5\n"
PDF_TRAILER = b"\n%%EOF\n"

_CHUNK = 64 * 1024
_POLL = 0.01
_SERVE_POLL = 0.01
_MAX_DRAIN = 16 * 1024 * 1024
_URL_SAFE = "/:@!$&'()*+,;=-._~"
_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)
_DISCONNECT_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.EBADF, errno.ENOTCONN})


# --------------------------------------------------------------------------- helpers


def payload(n: int, seed: int = 0) -> bytes:
    """Return ``n`` deterministic pseudo-random bytes derived from ``seed``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    return random.Random(seed).randbytes(n)


def pdf_payload(n: int, seed: int = 0) -> bytes:
    """Return ``n`` deterministic bytes that start with ``%PDF-1.5\\n``.

    If there is room (n >= 16) the payload also ends with ``\\n%%EOF\\n``.
    """
    head, tail = len(PDF_HEADER), len(PDF_TRAILER)
    if n < head:
        raise ValueError(f"a PDF payload needs at least {head} bytes")
    if n >= head + tail:
        return PDF_HEADER + payload(n - head - tail, seed) + PDF_TRAILER
    return PDF_HEADER + payload(n - head, seed)


def http_date(when: datetime | float) -> str:
    """Format a datetime (naive = UTC) or POSIX timestamp as an IMF-fixdate HTTP-date."""
    if isinstance(when, datetime):
        moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(when, UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def strong_etag(data: bytes) -> str:
    """Return the default strong ETag for ``data``: a quoted SHA-256 prefix."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _parse_http_date(value: str) -> datetime | None:
    """Parse an HTTP-date; return None if it is not a valid date."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _to_second(moment: datetime) -> datetime:
    """Normalise a datetime to aware UTC with whole seconds (HTTP-date resolution)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)


def _split_route(path: str) -> tuple[str, str]:
    """Split a route/request path into (percent-decoded path, raw query)."""
    raw_path, _, query = path.partition("?")
    decoded = unquote(raw_path) or "/"
    return (decoded if decoded.startswith("/") else "/" + decoded), query


def _route_key(path: str) -> str:
    """Return the canonical route key for a registered path."""
    decoded, query = _split_route(path)
    return f"{decoded}?{query}" if query else decoded


def _quote_target(path: str, query: str = "") -> str:
    """Percent-encode a decoded path and append the raw query."""
    target = quote(path, safe=_URL_SAFE)
    return f"{target}?{query}" if query else target


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping; repeated fields are joined with ``", "``."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._data: dict[str, tuple[str, str]] = {}
        for name, value in items:
            low = name.lower()
            if low in self._data:
                first, old = self._data[low]
                self._data[low] = (first, f"{old}, {value}")
            else:
                self._data[low] = (name, value)

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._data.values())

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class StatusStep:
    """One canned response of ``Fault.statuses``.

    A step with status 200 and no body means "serve the resource normally this time".
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


StatusSpec = int | tuple[int, Mapping[str, str]] | StatusStep


@dataclass(frozen=True)
class Fault:
    """Per-route fault configuration; all fields are optional and composable.

    Body faults (``cut_*``, ``stall_*``, ``trickle``) count bytes of *this response's body*
    (for a 206 that is relative to the range start), and only apply to GET responses whose
    body is longer than the given offset.
    """

    #: Send headers with the full Content-Length, then close (FIN) after this many body bytes.
    cut_after: int | None = None
    #: Only the first K responses that would be cut are cut (None = every one).
    cut_times: int | None = None
    #: Send this many body bytes, then stop sending while keeping the socket open.
    stall_after: int | None = None
    #: Resume sending once this event is set.
    stall_release: threading.Event | None = None
    #: Resume sending after this many seconds. With neither release nor seconds the stall
    #: lasts until the client disconnects or the server stops.
    stall_seconds: float | None = None
    #: Only the first K responses that would stall do stall (None = every one).
    stall_times: int | None = None
    #: (chunk_bytes, delay_seconds): send the body slowly.
    trickle: tuple[int, float] | None = None
    #: Always answer 200 with the full body, ignoring Range.
    ignore_range: bool = False
    #: Answer Range requests with a 206 whose Content-Range/body start at a different offset.
    wrong_content_range: bool = False
    #: After ``change_after`` content requests, replace the content with these bytes.
    etag_changes: bytes | None = None
    change_after: int = 1
    #: Redirect target: a path on this server or a full URL (e.g. the ``localhost`` form).
    redirect_to: str | None = None
    redirect_status: int = 302
    #: Total number of redirect responses before reaching ``redirect_to``.
    redirect_chain: int = 1
    #: Successive requests get these responses first (int, (int, headers) or StatusStep).
    statuses: Sequence[StatusSpec] = ()
    #: Serve these bytes (status 200, no validators, no ranges) instead of the resource.
    body_override: bytes | None = None
    override_content_type: str = "text/html; charset=utf-8"
    #: "gzip": gzip-encode the body when the client's Accept-Encoding allows it.
    content_encoding: Literal["gzip"] | None = None
    #: Headers that must be present with these exact values: missing -> 401, wrong -> 403.
    require_header: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        """Validate the configuration early, in the test's thread."""
        for name in ("cut_after", "cut_times", "stall_after", "stall_times"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.trickle is not None and (self.trickle[0] <= 0 or self.trickle[1] < 0):
            raise ValueError("trickle must be (chunk_bytes > 0, delay_seconds >= 0)")
        if self.redirect_status not in REDIRECT_STATUSES:
            raise ValueError(f"redirect_status must be one of {sorted(REDIRECT_STATUSES)}")
        if self.redirect_chain < 1:
            raise ValueError("redirect_chain must be >= 1")
        if self.content_encoding not in (None, "gzip"):
            raise ValueError("only content_encoding='gzip' is supported")
        if self.change_after < 1:
            raise ValueError("change_after must be >= 1")
        self.steps  # noqa: B018 - validates the statuses entries

    @property
    def steps(self) -> tuple[StatusStep, ...]:
        """The ``statuses`` entries normalised to StatusStep objects."""
        return tuple(_to_step(spec) for spec in self.statuses)


def _to_step(spec: StatusSpec) -> StatusStep:
    """Convert one ``statuses`` entry into a StatusStep (duck-typed on purpose)."""
    if isinstance(spec, int):
        return StatusStep(spec)
    if isinstance(spec, tuple):
        status, headers = spec
        return StatusStep(int(status), dict(headers))
    return StatusStep(spec.status, dict(spec.headers), spec.body)


# --------------------------------------------------------------------------- log records


@dataclass(frozen=True)
class RequestRecord:
    """An immutable snapshot of one logged request and what was answered."""

    method: str
    target: str
    path: str
    query: str
    headers: Headers
    status: int | None
    body_bytes_sent: int
    range_header: str | None
    completed: bool
    fault: str | None
    connection_id: int


@dataclass
class _Entry:
    """Mutable log entry, updated by the handler thread under the server lock."""

    method: str
    target: str
    path: str
    query: str
    headers: Headers
    connection_id: int
    status: int | None = None
    body_bytes_sent: int = 0
    completed: bool = False
    fault: str | None = None

    def snapshot(self) -> RequestRecord:
        """Return an immutable copy."""
        return RequestRecord(
            method=self.method,
            target=self.target,
            path=self.path,
            query=self.query,
            headers=self.headers,
            status=self.status,
            body_bytes_sent=self.body_bytes_sent,
            range_header=self.headers.get("Range"),
            completed=self.completed,
            fault=self.fault,
            connection_id=self.connection_id,
        )

    def matches(self, path: str | None) -> bool:
        """True if this entry belongs to ``path`` (with query: exact path+query)."""
        if path is None:
            return True
        decoded, query = _split_route(path)
        return self.path == decoded and (not query or self.query == query)


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class _Entity:
    """A concrete representation to serve."""

    size: int
    etag: str
    last_modified: datetime
    content_type: str
    data: bytes | None = None
    file: Path | None = None

    def open(self) -> IO[bytes]:
        """Open the body for reading."""
        if self.file is not None:
            return self.file.open("rb")
        return io.BytesIO(self.data or b"")

    def read_all(self) -> bytes:
        """Return the whole body."""
        with self.open() as stream:
            return stream.read()


@dataclass(frozen=True)
class _FileSource:
    """A file on disk; stat'ed on every request so on-disk changes are visible."""

    path: Path
    content_type: str

    def entity(self) -> _Entity:
        """Return the current representation of the file."""
        st = self.path.stat()
        return _Entity(
            size=st.st_size,
            etag=f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
            last_modified=datetime.fromtimestamp(int(st.st_mtime), UTC),
            content_type=self.content_type,
            file=self.path,
        )


def _gzip_entity(entity: _Entity) -> _Entity:
    """Return the gzip-encoded variant (weak ETag, as nginx does)."""
    encoded = gzip.compress(entity.read_all(), mtime=0)
    etag = entity.etag.removeprefix("W/")
    return _Entity(len(encoded), "W/" + etag, entity.last_modified, entity.content_type, encoded)


@dataclass
class _Reply:
    """A content response under construction: body span, headers and a log label."""

    entity: _Entity
    headers: list[tuple[str, str]]
    status: int = 200
    start: int = 0
    stop: int | None = None
    label: str | None = None


@dataclass
class _Route:
    """A registered URL with its content source, faults and fault counters."""

    source: _Entity | _FileSource | None
    fault: Fault = field(default_factory=Fault)
    content_requests: int = 0
    changed: bool = False
    cuts: int = 0
    stalls: int = 0
    steps_used: int = 0

    def reset_counters(self) -> None:
        """Forget how often the faults have fired."""
        self.content_requests = self.cuts = self.stalls = self.steps_used = 0
        self.changed = False


# --------------------------------------------------------------------------- HTTP semantics


RangeResult = tuple[int, int] | Literal["ignore", "unsatisfiable"]


def _parse_range(header: str, size: int) -> RangeResult:
    """Parse a single byte range; return inclusive (start, end), "ignore" or "unsatisfiable"."""
    match = _RANGE_RE.fullmatch(header)
    if match is None:
        return "ignore"  # syntax error, other unit or multiple ranges -> full 200
    first, last = match.groups()
    if not first:
        return _suffix_range(last, size)
    start = int(first)
    if last and int(last) < start:
        return "ignore"
    if start >= size:
        return "unsatisfiable"
    return start, min(int(last), size - 1) if last else size - 1


def _suffix_range(last: str, size: int) -> RangeResult:
    """Resolve ``bytes=-S`` (the last S bytes)."""
    if not last:
        return "ignore"
    suffix = int(last)
    if suffix == 0 or size == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


def _if_range_allows(value: str | None, entity: _Entity) -> bool:
    """Evaluate If-Range: True if the Range header may be honoured."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return (
            not value.startswith("W/")
            and not entity.etag.startswith("W/")
            and (value == entity.etag)
        )
    date = _parse_http_date(value)
    return date is not None and date == entity.last_modified


def _etag_list_matches(value: str, etag: str) -> bool:
    """Weak comparison of an If-None-Match list against ``etag``."""
    if value.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in value.split(","))


def _not_modified(headers: Mapping[str, str], entity: _Entity) -> bool:
    """True if the conditional GET/HEAD should be answered with 304."""
    none_match = headers.get("If-None-Match")
    if none_match is not None:
        return _etag_list_matches(none_match, entity.etag)
    since = headers.get("If-Modified-Since")
    date = _parse_http_date(since) if since else None
    return date is not None and entity.last_modified <= date


def _accepts_gzip(value: str | None) -> bool:
    """True if an Accept-Encoding value allows gzip (q-values honoured)."""
    prefs: dict[str, float] = {}
    for part in (value or "").split(","):
        token, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if token:
            prefs[token.lower()] = quality
    for name in ("gzip", "x-gzip"):
        if name in prefs:
            return prefs[name] > 0
    return prefs.get("*", 0.0) > 0


def _auth_failure(required: Mapping[str, str] | None, headers: Mapping[str, str]) -> int | None:
    """Return 401 (missing header), 403 (wrong value) or None (all present and right)."""
    for name, expected in (required or {}).items():
        got = headers.get(name)
        if got is None:
            return 401
        if got != expected:
            return 403
    return None


def _wrong_range(start: int, end: int, size: int) -> tuple[int, int]:
    """Shift a range to a different start (0, or 1 if 0 was asked), keeping its length."""
    shifted = 0 if start > 0 else min(1, size - 1)
    return shifted, min(shifted + end - start, size - 1)


def _parse_hop(path: str) -> tuple[int, str]:
    """Split ``/__hop__/K/orig`` into (K, "/orig"); other paths give (0, path)."""
    if not path.startswith(HOP_PREFIX):
        return 0, path
    number, slash, rest = path[len(HOP_PREFIX) :].partition("/")
    if not number.isdecimal() or not slash:
        return 0, path
    return int(number), "/" + rest


def _is_disconnect(exc: OSError) -> bool:
    """True if ``exc`` means the peer went away (or the server shut the socket down)."""
    return isinstance(exc, ConnectionError | TimeoutError) or exc.errno in _DISCONNECT_ERRNOS


def _phrase(status: int) -> str:
    """Return e.g. "503 Service Unavailable" (or just the number for unknown codes)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _html(title: str, text: str) -> bytes:
    """Return a tiny HTML page."""
    head = f"<!DOCTYPE html><html><head><title>{title}</title></head>"
    return f"{head}<body><h1>{title}</h1><p>{text}</p></body></html>\n".encode()


def _shutdown_socket(sock: socket.socket) -> None:
    """Shut a socket down in both directions, ignoring errors (wakes blocked readers)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- handler


class _Handler(BaseHTTPRequestHandler):
    """Request handler; the behaviour lives here, the state in CourseServer."""

    protocol_version = "HTTP/1.1"
    server_version = "CourseServer/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 30.0
    server: _HTTPServer

    # ----- plumbing

    def setup(self) -> None:
        """Set up the streams and register the connection with the owner."""
        super().setup()
        self.owner: CourseServer = self.server.owner
        self.conn_id = self.owner._register_connection(self.connection)
        self.entry: _Entry | None = None

    def finish(self) -> None:
        """Close the streams and unregister the connection."""
        try:
            super().finish()
        finally:
            self.owner._unregister_connection(self.conn_id)

    def version_string(self) -> str:
        """Return the Server header value."""
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log (everything is in ``server.requests``)."""

    def do_GET(self) -> None:
        """Handle GET."""
        self._handle(self._respond)

    def do_HEAD(self) -> None:
        """Handle HEAD."""
        self._handle(self._respond)

    def do_POST(self) -> None:
        """Reject POST with 405."""
        self._handle(self._method_not_allowed)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _handle(self, respond: Callable[[str, str], None]) -> None:
        """Log the request, run ``respond`` and absorb client disconnects."""
        self._drain_request_body()
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute-form request target
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        path, query = _split_route(target)
        self.entry = self.owner._log_start(self, target, path, query)
        try:
            respond(path, query)
        except OSError as exc:
            self.close_connection = True
            self.owner._mark_incomplete(self.entry)
            if not _is_disconnect(exc):
                raise

    def _drain_request_body(self) -> None:
        """Read and discard a request body so that keep-alive stays in sync."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > _MAX_DRAIN:
            self.close_connection = True
        elif length > 0:
            self.rfile.read(length)

    # ----- low-level sending

    def _start(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        fault: str | None,
        *,
        final: bool = False,
    ) -> None:
        """Record the status, then send the status line and headers.

        ``final`` means no body follows: the entry is marked completed *before* sending, so
        a client that got the response always finds a finished record in the log.
        """
        self.owner._set_status(self.entry, status, fault, final)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _write(self, chunk: bytes, last: bool) -> None:
        """Account for and send one body chunk (accounting first, so the log never lags)."""
        self.owner._add_bytes(self.entry, len(chunk), last)
        try:
            self.wfile.write(chunk)
        except OSError:
            self.owner._add_bytes(self.entry, -len(chunk), False)
            raise

    def _send_simple(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        extra: Iterable[tuple[str, str]] = (),
        fault: str | None = None,
    ) -> None:
        """Send a complete small response (body omitted for HEAD, 204 and 304)."""
        if status in _NO_BODY_STATUSES:
            headers, body = list(extra), b""
        else:
            headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        headers_only = self.command == "HEAD" or not body
        self._start(status, headers, fault, final=headers_only)
        if not headers_only:
            self._write(body, True)

    # ----- dispatch

    def _method_not_allowed(self, path: str, query: str) -> None:
        """Answer 405 for anything but GET/HEAD."""
        body = _html("405 Method Not Allowed", f"{self.command} is not supported.")
        self._send_simple(405, body, extra=[("Allow", "GET, HEAD")])

    def _respond(self, path: str, query: str) -> None:
        """Route a GET/HEAD through statuses, auth, redirects and content serving."""
        hop, path = _parse_hop(path)
        route = self.owner._lookup(path, query)
        if route is None:
            return self._not_found(path)
        fault = route.fault
        if hop == 0 and self._answered_by_step(route):
            return None
        if hop == 0 and self._answered_by_auth(fault):
            return None
        if fault.redirect_to is not None:
            return self._redirect(fault, hop, path, query)
        entity = self.owner._entity_for_request(route) if hop == 0 else None
        if entity is None:
            return self._not_found(path)
        return self._serve(route, fault, entity)

    def _not_found(self, path: str) -> None:
        """Answer 404 with an HTML body."""
        body = _html("404 Not Found", f"The requested URL {quote(path)} was not found.")
        self._send_simple(404, body)

    def _answered_by_step(self, route: _Route) -> bool:
        """Send the next ``statuses`` step, if any; False means serve normally."""
        step = self.owner._take_step(route)
        if step is None or (step.status == 200 and step.body is None):
            return False
        body = step.body if step.body is not None else f"{_phrase(step.status)}\n".encode()
        self._send_simple(
            step.status, body, "text/plain; charset=utf-8", step.headers.items(), "status"
        )
        return True

    def _answered_by_auth(self, fault: Fault) -> bool:
        """Send 401/403 if ``require_header`` is not satisfied."""
        status = _auth_failure(fault.require_header, self.headers)
        if status is None:
            return False
        extra = [("WWW-Authenticate", 'Basic realm="course"')] if status == 401 else []
        body = _html(_phrase(status), "Authentication required.")
        self._send_simple(status, body, extra=extra, fault="auth")
        return True

    def _redirect(self, fault: Fault, hop: int, path: str, query: str) -> None:
        """Send one redirect of the chain (hop = redirects already issued)."""
        assert fault.redirect_to is not None
        if hop + 1 < fault.redirect_chain:
            location = f"{HOP_PREFIX}{hop + 1}{_quote_target(path, query)}"
        else:
            location = fault.redirect_to
        link = f'Moved to <a href="{html.escape(location)}">here</a>.'
        body = _html(_phrase(fault.redirect_status), link)
        self._send_simple(
            fault.redirect_status, body, extra=[("Location", location)], fault="redirect"
        )

    # ----- content

    def _serve(self, route: _Route, fault: Fault, entity: _Entity) -> None:
        """Serve the resource: override, encoding, 304, Range, then the body."""
        if fault.body_override is not None:
            return self._serve_override(route, fault)
        headers: list[tuple[str, str]] = []
        rangeable = not fault.ignore_range
        if fault.content_encoding == "gzip":
            headers.append(("Vary", "Accept-Encoding"))
            if _accepts_gzip(self.headers.get("Accept-Encoding")):
                entity, rangeable = _gzip_entity(entity), False
                headers.append(("Content-Encoding", "gzip"))
        headers += [("ETag", entity.etag), ("Last-Modified", http_date(entity.last_modified))]
        if _not_modified(self.headers, entity):
            return self._start(304, headers, None, final=True)
        headers.append(("Content-Type", entity.content_type))
        if rangeable:
            headers.append(("Accept-Ranges", "bytes"))
        return self._serve_range(route, _Reply(entity, headers), rangeable)

    def _serve_override(self, route: _Route, fault: Fault) -> None:
        """Serve ``body_override`` as a plain 200 (no validators, no ranges)."""
        body = fault.body_override or b""
        entity = _Entity(len(body), "", DEFAULT_LAST_MODIFIED, fault.override_content_type, body)
        headers = [("Content-Type", entity.content_type), ("Content-Length", str(len(body)))]
        self._send_body(route, _Reply(entity, headers, label="override"))

    def _serve_range(self, route: _Route, reply: _Reply, rangeable: bool) -> None:
        """Decide between 200, 206 and 416 and send accordingly."""
        entity, size = reply.entity, reply.entity.size
        header = self.headers.get("Range")
        parsed: RangeResult = "ignore"
        # RFC 9110 14.2: Range is only defined for GET; If-Range mismatch means full 200.
        wanted = header is not None and rangeable and self.command == "GET"
        if wanted and header and _if_range_allows(self.headers.get("If-Range"), entity):
            parsed = _parse_range(header, size)
        if parsed == "unsatisfiable":
            body = _html("416 Range Not Satisfiable", f"Range {header} is not satisfiable.")
            return self._send_simple(416, body, extra=[("Content-Range", f"bytes */{size}")])
        if parsed == "ignore":
            reply.headers.append(("Content-Length", str(size)))
            return self._send_body(route, reply)
        start, end = parsed
        if route.fault.wrong_content_range:
            start, end = _wrong_range(start, end, size)
            reply.label = "wrong_content_range"
        reply.headers += [
            ("Content-Range", f"bytes {start}-{end}/{size}"),
            ("Content-Length", str(end - start + 1)),
        ]
        reply.status, reply.start, reply.stop = 206, start, end + 1
        return self._send_body(route, reply)

    def _send_body(self, route: _Route, reply: _Reply) -> None:
        """Send status, headers and the body bytes [start, stop) applying the body faults."""
        stop = reply.entity.size if reply.stop is None else reply.stop
        length = stop - reply.start
        is_get = self.command == "GET"
        cut_at = self.owner._claim(route, "cut", length) if is_get else None
        stall_at = self.owner._claim(route, "stall", length) if is_get else None
        label = "cut" if cut_at is not None else "stall" if stall_at is not None else reply.label
        headers_only = not is_get or length == 0
        self._start(reply.status, reply.headers, label, final=headers_only)
        if headers_only:
            return
        with reply.entity.open() as stream:
            stream.seek(reply.start)
            self._stream(stream, length, route.fault, cut_at, stall_at)

    def _stream(
        self,
        stream: IO[bytes],
        length: int,
        fault: Fault,
        cut_at: int | None,
        stall_at: int | None,
    ) -> None:
        """Copy ``length`` bytes from ``stream`` to the client, applying cut/stall/trickle."""
        chunk_size, delay = fault.trickle or (_CHUNK, 0.0)
        pos = 0
        while True:
            if pos == stall_at and not self._stall(fault):
                return self._abort()
            if pos == cut_at:
                return self._cut()
            if pos >= length:
                return None
            limit = min(x for x in (cut_at, stall_at, length) if x is not None and x > pos)
            chunk = stream.read(min(chunk_size, limit - pos))
            if not chunk:  # file shrank underneath us
                return self._abort()
            self._write(chunk, pos + len(chunk) == length)
            pos += len(chunk)
            if delay and pos < length and not self._pause(delay):
                return self._abort()

    # ----- body faults

    def _cut(self) -> None:
        """Close the connection mid-body with a clean FIN (the client sees a short read)."""
        self.close_connection = True
        self.owner._mark_incomplete(self.entry)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)

    def _abort(self) -> None:
        """Give up on the response (client gone, server stopping or file changed)."""
        self.close_connection = True
        self.owner._mark_incomplete(self.entry)

    def _stall(self, fault: Fault) -> bool:
        """Stop sending until released/timed out (True) or client/server gone (False)."""
        deadline = None if fault.stall_seconds is None else time.monotonic() + fault.stall_seconds
        while True:
            if fault.stall_release is not None and fault.stall_release.is_set():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return True
            if not self._pause(_POLL):
                return False

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the server stops or the client disconnects."""
        deadline = time.monotonic() + seconds
        while not self.owner._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._client_gone(min(remaining, _POLL)):
                return False
        return False

    def _client_gone(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds for the client to close the connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], wait)
            if not readable:
                return False
            data = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        if data:  # pipelined request bytes: not a disconnect; avoid spinning
            self.owner._stopping.wait(wait)
        return not data


# --------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that reports to a CourseServer and tracks handler threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, owner: CourseServer) -> None:
        self.owner = owner
        super().__init__((owner.host, 0), _Handler)

    def server_bind(self) -> None:
        """Bind without the (potentially slow) reverse DNS lookup of HTTPServer."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        """Handle the connection in a tracked daemon thread."""
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="CourseServer-handler",
            daemon=True,
        )
        self.owner._track_thread(thread)
        thread.start()

    def handle_error(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        """Record unexpected handler exceptions instead of printing them.

        A client that drops its connection (e.g. after aborting a response with body bytes
        unread) is a normal disconnect, not a server error.
        """
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        self.owner._record_error(traceback.format_exc())


class CourseServer:
    """Threaded HTTP/1.1 server on 127.0.0.1:<random port> serving registered byte payloads.

    Use as a context manager or call ``start()``/``stop()``. All methods are thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._routes: dict[str, _Route] = {}
        self._log: list[_Entry] = []
        self._errors: list[str] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._connections: dict[int, socket.socket] = {}
        self._next_connection_id = 0

    # ----- lifecycle

    def start(self) -> CourseServer:
        """Bind 127.0.0.1:0 and serve in a background daemon thread."""
        if self._httpd is not None or self._stopping.is_set():
            raise RuntimeError("CourseServer can only be started once")
        self._httpd = _HTTPServer(self)
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _SERVE_POLL},
            name="CourseServer",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, drop every open connection (stalled ones too) and join all threads.

        Raises RuntimeError if a handler thread is still alive after ``timeout`` seconds.
        """
        httpd = self._httpd
        if httpd is None or self._serve_thread is None:
            return
        with self._cond:
            self._stopping.set()
            connections = list(self._connections.values())
            self._cond.notify_all()
        httpd.shutdown()
        for sock in connections:
            _shutdown_socket(sock)
        httpd.server_close()
        deadline = time.monotonic() + timeout
        self._serve_thread.join(timeout)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread for thread in threads if thread.is_alive()]
        if alive:
            raise RuntimeError(f"{len(alive)} CourseServer handler thread(s) did not stop")

    def __enter__(self) -> CourseServer:
        return self.start() if self._httpd is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----- URLs

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def localhost_url(self) -> str:
        """Base URL with host ``localhost`` (a *different host* for clients, same server)."""
        return f"http://localhost:{self.port}"

    def url_for(self, path: str, *, host: str | None = None) -> str:
        """Full, percent-encoded URL for ``path`` (pass ``host="localhost"`` for cross-host)."""
        decoded, query = _split_route(path)
        return f"http://{host or self.host}:{self.port}{_quote_target(decoded, query)}"

    # ----- content registration

    def add(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = None,
        last_modified: datetime | None = None,
        content_type: str = "application/pdf",
        faults: Fault | None = None,
    ) -> str:
        """Serve ``data`` at ``path``; returns the full URL. Replaces any earlier route."""
        entity = _Entity(
            size=len(data),
            etag=etag or strong_etag(data),
            last_modified=_to_second(last_modified or DEFAULT_LAST_MODIFIED),
            content_type=content_type,
            data=bytes(data),
        )
        with self._lock:
            self._routes[_route_key(path)] = _Route(entity, faults or Fault())
        return self.url_for(path)

    def add_file(
        self,
        path: str,
        fs_path: str | Path,
        *,
        content_type: str | None = None,
        faults: Fault | None = None,
    ) -> str:
        """Serve a file from disk, streamed; ETag/Last-Modified come from its stat()."""
        file = Path(fs_path)
        if not file.is_file():
            raise FileNotFoundError(file)
        ctype = content_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        with self._lock:
            self._routes[_route_key(path)] = _Route(_FileSource(file, ctype), faults or Fault())
        return self.url_for(path)

    def replace(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = None,
        last_modified: datetime | None = None,
    ) -> None:
        """Change a route's content; Last-Modified defaults to the old one + 1 hour."""
        with self._lock:
            route = self._require_route(path)
            self._replace_locked(route, data, etag, last_modified)

    def remove(self, path: str) -> None:
        """Unregister a route (later requests get 404)."""
        with self._lock:
            self._routes.pop(_route_key(path), None)

    def set_faults(self, path: str, fault: Fault | None) -> None:
        """Set (or clear with None) a route's faults and reset their counters.

        A path that has no content yet gets a content-less route (useful for redirects).
        """
        with self._lock:
            route = self._routes.setdefault(_route_key(path), _Route(None))
            route.fault = fault or Fault()
            route.reset_counters()

    # ----- request log

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of all logged requests, oldest first."""
        with self._lock:
            return [entry.snapshot() for entry in self._log]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected exceptions raised inside handler threads."""
        with self._lock:
            return list(self._errors)

    @property
    def active_connections(self) -> int:
        """Number of currently open client connections."""
        with self._lock:
            return len(self._connections)

    def count(self, path: str | None = None) -> int:
        """Number of logged requests (for ``path``; with a query: that exact query)."""
        with self._lock:
            return sum(1 for entry in self._log if entry.matches(path))

    def bytes_sent(self, path: str | None = None) -> int:
        """Total response body bytes handed to the socket (for ``path``)."""
        with self._lock:
            return sum(entry.body_bytes_sent for entry in self._log if entry.matches(path))

    def reset_log(self) -> None:
        """Forget all logged requests (fault counters are kept)."""
        with self._lock:
            self._log.clear()

    def wait_for_bytes(self, path: str | None, n: int, timeout: float = 5.0) -> int:
        """Block until ``bytes_sent(path) >= n``; return it. Raises TimeoutError."""
        return self._wait_until(lambda: self.bytes_sent(path), n, timeout, "body bytes")

    def wait_for_requests(self, path: str | None, n: int, timeout: float = 5.0) -> int:
        """Block until ``count(path) >= n``; return it. Raises TimeoutError."""
        return self._wait_until(lambda: self.count(path), n, timeout, "requests")

    def _wait_until(self, value: Callable[[], int], n: int, timeout: float, what: str) -> int:
        """Wait on the condition until ``value() >= n``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (current := value()) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise TimeoutError(f"waited {timeout}s for {n} {what}, got {current}")
                self._cond.wait(remaining)
            return current

    # ----- internals used by the handler (all under the lock)

    def _require_route(self, path: str) -> _Route:
        """Return the route registered for ``path`` or raise KeyError."""
        route = self._routes.get(_route_key(path))
        if route is None:
            raise KeyError(f"no route registered for {path!r}")
        return route

    def _replace_locked(
        self,
        route: _Route,
        data: bytes,
        etag: str | None,
        last_modified: datetime | None,
    ) -> None:
        """Swap a route's content for ``data`` (lock held)."""
        old = route.source.entity() if isinstance(route.source, _FileSource) else route.source
        base = old.last_modified if old is not None else DEFAULT_LAST_MODIFIED
        route.source = _Entity(
            size=len(data),
            etag=etag or strong_etag(data),
            last_modified=_to_second(last_modified or base + timedelta(hours=1)),
            content_type=old.content_type if old is not None else "application/octet-stream",
            data=bytes(data),
        )

    def _lookup(self, path: str, query: str) -> _Route | None:
        """Find the route for a decoded path and raw query."""
        with self._lock:
            if query and f"{path}?{query}" in self._routes:
                return self._routes[f"{path}?{query}"]
            return self._routes.get(path)

    def _take_step(self, route: _Route) -> StatusStep | None:
        """Consume the route's next ``statuses`` step."""
        with self._lock:
            steps = route.fault.steps
            if route.steps_used >= len(steps):
                return None
            route.steps_used += 1
            return steps[route.steps_used - 1]

    def _entity_for_request(self, route: _Route) -> _Entity | None:
        """Return the entity to serve now, applying ``etag_changes`` atomically."""
        with self._lock:
            source = route.source
            if source is None:
                return None
            entity = source.entity() if isinstance(source, _FileSource) else source
            route.content_requests += 1
            fault = route.fault
            due = route.content_requests >= fault.change_after
            if fault.etag_changes is not None and not route.changed and due:
                route.changed = True
                self._replace_locked(route, fault.etag_changes, None, None)
            return entity

    def _claim(self, route: _Route, kind: Literal["cut", "stall"], length: int) -> int | None:
        """Return the body offset of a cut/stall if one fires for this ``length``-byte body."""
        with self._lock:
            fault = route.fault
            offset = fault.cut_after if kind == "cut" else fault.stall_after
            times = fault.cut_times if kind == "cut" else fault.stall_times
            if offset is None or offset >= length:
                return None
            used = route.cuts if kind == "cut" else route.stalls
            if times is not None and used >= times:
                return None
            if kind == "cut":
                route.cuts += 1
            else:
                route.stalls += 1
            return offset

    def _log_start(self, handler: _Handler, target: str, path: str, query: str) -> _Entry:
        """Append a log entry for a new request."""
        entry = _Entry(
            method=handler.command,
            target=target,
            path=path,
            query=query,
            headers=Headers(handler.headers.items()),
            connection_id=handler.conn_id,
        )
        with self._cond:
            self._log.append(entry)
            self._cond.notify_all()
        return entry

    def _set_status(
        self, entry: _Entry | None, status: int, fault: str | None, completed: bool
    ) -> None:
        """Record the response status (before the status line is sent)."""
        with self._lock:
            if entry is not None:
                entry.status, entry.fault, entry.completed = status, fault, completed

    def _add_bytes(self, entry: _Entry | None, n: int, last: bool) -> None:
        """Account body bytes; ``last`` marks the response as completed."""
        with self._cond:
            if entry is not None:
                entry.body_bytes_sent += n
                entry.completed = last
            self._cond.notify_all()

    def _mark_incomplete(self, entry: _Entry | None) -> None:
        """Mark a response as not fully delivered."""
        with self._lock:
            if entry is not None:
                entry.completed = False

    def _record_error(self, text: str) -> None:
        """Keep an unexpected handler traceback."""
        with self._lock:
            self._errors.append(text)

    def _track_thread(self, thread: threading.Thread) -> None:
        """Remember a handler thread so stop() can join it."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _register_connection(self, sock: socket.socket) -> int:
        """Register an accepted socket; shut it right down if the server is stopping."""
        with self._lock:
            self._next_connection_id += 1
            conn_id = self._next_connection_id
            if self._stopping.is_set():
                _shutdown_socket(sock)
            else:
                self._connections[conn_id] = sock
            return conn_id

    def _unregister_connection(self, conn_id: int) -> None:
        """Forget a closed connection."""
        with self._cond:
            self._connections.pop(conn_id, None)
            self._cond.notify_all()
