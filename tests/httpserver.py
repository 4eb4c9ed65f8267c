"""A real threaded HTTP/1.1 test server on 127.0.0.1 with Range support and fault modes.

Used by the download engine's end-to-end tests. Everything is deterministic and offline.

Example::

    with CourseServer() as server:
        data = pdf_payload(100_000, seed=1)
        url = server.add("/kurs/vl01.pdf", data, faults=Fault(cut_after=1000, cut_times=1))
        ...  # first GET is cut after 1000 body bytes, the retry succeeds
        assert server.count("/kurs/vl01.pdf") == 2

It answers GET and HEAD. Paths are compared percent-decoded and the query string is ignored
(``url_for`` produces the percent-encoded form). Content is bytes (``add``) or a file streamed
from disk (``add_file``). Every resource has a strong ETag and a Last-Modified date;
``Range: bytes=...`` is honoured (one range; a bad one gets the whole body, an unsatisfiable one
416) unless ``If-Range`` names another version.

A request to a route is processed as: ``statuses`` step -> ``redirect_to`` -> content
(``etag_changes``, ``body_override``, Range, body faults).

Caveats:

* ``bytes_sent``/``wait_for_bytes`` count bytes handed to the socket (accounted just *before*
  each write), not bytes the client has read; kernel buffers can hold a few hundred KiB, so use
  ``trickle`` when a client must be killed "half-way".
* A cut closes the connection with a clean FIN after exactly N body bytes (the client sees a
  short read); the connection is never reused afterwards. Stalls and trickles that the client
  abandons also close the connection.
* Log records and fault counters are updated before the corresponding bytes are sent, so a
  test that has received a response can inspect ``server.requests`` without waiting.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import mimetypes
import re
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal
from urllib.parse import quote, unquote

from factories import blob

__all__ = [
    "DEFAULT_LAST_MODIFIED",
    "CourseServer",
    "Fault",
    "RequestRecord",
    "http_date",
    "pdf_payload",
    "strong_etag",
]

DEFAULT_LAST_MODIFIED = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)
PDF_HEADER = b"%PDF-1.5\n"
PDF_TRAILER = b"\n%%EOF\n"
CONTENT_TYPE = "application/pdf"

_CHUNK = 64 * 1024
_POLL = 0.01
_URL_SAFE = "/:@!$&'()*+,;=-._~"
_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)
_DISCONNECT_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.EBADF, errno.ENOTCONN})


# --------------------------------------------------------------------------- helpers


def pdf_payload(n: int, seed: int = 0) -> bytes:
    """Return ``n`` deterministic bytes that start with ``%PDF-1.5\\n``.

    If there is room (n >= 16) the payload also ends with ``\\n%%EOF\\n``.
    """
    head, tail = len(PDF_HEADER), len(PDF_TRAILER)
    if n < head:
        raise ValueError(f"a PDF payload needs at least {head} bytes")
    if n >= head + tail:
        return PDF_HEADER + blob(n - head - tail, seed) + PDF_TRAILER
    return PDF_HEADER + blob(n - head, seed)


def http_date(when: datetime) -> str:
    """Format an aware datetime as an IMF-fixdate HTTP-date."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def strong_etag(data: bytes) -> str:
    """Return the strong ETag of ``data``: a quoted SHA-256 prefix."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _parse_http_date(value: str) -> datetime | None:
    """Parse an HTTP-date; return None if it is not a valid date."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _route_key(path: str) -> str:
    """The percent-decoded path without its query: how routes are registered and found."""
    decoded = unquote(path.partition("?")[0]) or "/"
    return decoded if decoded.startswith("/") else "/" + decoded


# --------------------------------------------------------------------------- faults


StatusSpec = int | tuple[int, Mapping[str, str]]


@dataclass(frozen=True)
class Fault:
    """Per-route fault configuration; all fields are optional and composable.

    Body faults (``cut_*``, ``stall_*``, ``trickle``) count bytes of *this response's body*
    (for a 206 that is relative to the range start), and only apply to responses whose body is
    longer than the given offset.
    """

    #: Send headers with the full Content-Length, then close (FIN) after this many body bytes.
    cut_after: int | None = None
    #: Only the first K responses that would be cut are cut (None = every one).
    cut_times: int | None = None
    #: Send this many body bytes, then stop sending (until the client disconnects or the
    #: server stops) while keeping the socket open.
    stall_after: int | None = None
    #: Resume sending after this many seconds (None: only the client or a stop ends a stall).
    stall_seconds: float | None = None
    #: Only the first K responses that would stall do stall (None = every one).
    stall_times: int | None = None
    #: (chunk_bytes, delay_seconds): send the body slowly.
    trickle: tuple[int, float] | None = None
    #: After ``change_after`` content requests, replace the content with these bytes.
    etag_changes: bytes | None = None
    change_after: int = 1
    #: Successive requests get these plain-text responses first (status or (status, headers));
    #: a 200 step means "serve the resource normally this time".
    statuses: Sequence[StatusSpec] = ()
    #: Answer with this Location (a path on this server or a full URL) and redirect_status.
    redirect_to: str | None = None
    redirect_status: int = 302
    #: Serve these bytes as a plain 200 HTML page (no validators, no ranges) instead of the
    #: resource: a login or quota page where a file was expected.
    body_override: bytes | None = None

    def __post_init__(self) -> None:
        """Validate the configuration early, in the test's thread."""
        for name in ("cut_after", "cut_times", "stall_after", "stall_times"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.trickle is not None and (self.trickle[0] <= 0 or self.trickle[1] < 0):
            raise ValueError("trickle must be (chunk_bytes > 0, delay_seconds >= 0)")
        if self.change_after < 1:
            raise ValueError("change_after must be >= 1")
        if self.redirect_status not in {301, 302, 303, 307, 308}:
            raise ValueError("redirect_status must be a redirect (301, 302, 303, 307 or 308)")

    def step(self, index: int) -> tuple[int, Mapping[str, str]] | None:
        """The ``statuses`` entry *index* as (status, headers); None past the end."""
        if index >= len(self.statuses):
            return None
        spec = self.statuses[index]
        return (spec, {}) if isinstance(spec, int) else (int(spec[0]), dict(spec[1]))


# --------------------------------------------------------------------------- log records


@dataclass(frozen=True)
class RequestRecord:
    """An immutable snapshot of one logged request and what was answered."""

    method: str
    path: str
    status: int | None
    body_bytes_sent: int
    range_header: str | None
    completed: bool
    fault: str | None
    connection_id: int
    headers: Message  # the request's headers (case-insensitive get / [])


@dataclass
class _Entry:
    """Mutable log entry, updated by the handler thread under the server lock."""

    method: str
    path: str
    headers: Message
    connection_id: int
    status: int | None = None
    body_bytes_sent: int = 0
    completed: bool = False
    fault: str | None = None

    def snapshot(self) -> RequestRecord:
        """Return an immutable copy."""
        return RequestRecord(
            self.method,
            self.path,
            self.status,
            self.body_bytes_sent,
            self.headers.get("Range"),
            self.completed,
            self.fault,
            self.connection_id,
            self.headers,
        )


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class _Entity:
    """One version of a resource: bytes held, or a file read when served."""

    size: int
    etag: str
    last_modified: datetime
    content_type: str = CONTENT_TYPE
    data: bytes = b""
    file: Path | None = None

    def open(self) -> BinaryIO:
        """The body, for reading."""
        return self.file.open("rb") if self.file is not None else io.BytesIO(self.data)


def _file_entity(path: Path) -> _Entity:
    """The current version of a file on disk (stat'ed on every request)."""
    st = path.stat()
    return _Entity(
        st.st_size,
        f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
        datetime.fromtimestamp(int(st.st_mtime), UTC),
        mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        file=path,
    )


@dataclass
class _Route:
    """A registered URL with its content (bytes or a file), faults and fault counters."""

    source: _Entity | Path | None
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


def _entity(data: bytes, last_modified: datetime, content_type: str) -> _Entity:
    return _Entity(
        len(data),
        strong_etag(data),
        last_modified.replace(microsecond=0),
        content_type,
        data=bytes(data),
    )


# --------------------------------------------------------------------------- HTTP semantics


RangeResult = tuple[int, int] | Literal["ignore", "unsatisfiable"]


def _parse_range(header: str, size: int) -> RangeResult:
    """Parse a single byte range; return inclusive (start, end), "ignore" or "unsatisfiable"."""
    match = _RANGE_RE.fullmatch(header)
    if match is None:
        return "ignore"  # syntax error, other unit or multiple ranges -> full 200
    first, last = match.groups()
    if not first:
        if not last:
            return "ignore"
        suffix = int(last)  # bytes=-S: the last S bytes
        return "unsatisfiable" if suffix == 0 or size == 0 else (max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return "ignore"
    if start >= size:
        return "unsatisfiable"
    return start, min(int(last), size - 1) if last else size - 1


def _if_range_allows(value: str | None, entity: _Entity) -> bool:
    """Evaluate If-Range: True if the Range header may be honoured (strong comparison)."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == entity.etag
    return _parse_http_date(value) == entity.last_modified


def _is_disconnect(exc: OSError) -> bool:
    """True if ``exc`` means the peer went away (or the server shut the socket down)."""
    return isinstance(exc, ConnectionError | TimeoutError) or exc.errno in _DISCONNECT_ERRNOS


def _phrase(status: int) -> str:
    """Return e.g. "503 Service Unavailable" (or just the number for unknown codes)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


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

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log (everything is in ``server.requests``)."""

    def do_GET(self) -> None:
        """Log the request, answer it and absorb client disconnects."""
        path = _route_key(self.path)
        self.entry = self.owner._log_start(self.command, path, self.headers, self.conn_id)
        try:
            self._respond(path)
        except OSError as exc:
            self.close_connection = True
            self.owner._mark_incomplete(self.entry)
            if not _is_disconnect(exc):
                raise

    do_HEAD = do_GET  # the same answer without its body (and with no Range, no body faults)

    # ----- sending

    def _start(
        self, status: int, headers: Sequence[tuple[str, str]], fault: str | None, *, final: bool
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

    def _send_text(
        self,
        status: int,
        text: str,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        """Send a complete small plain-text response."""
        body = text.encode()
        self._start(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *(headers or {}).items(),
            ],
            fault,
            final=self.command == "HEAD",
        )
        if self.command != "HEAD":
            self._write(body, True)

    # ----- dispatch

    def _respond(self, path: str) -> None:
        """Route a GET through the ``statuses`` steps, then serve the content."""
        route = self.owner._lookup(path)
        if route is None:
            return self._send_text(404, f"404 Not Found: {path}\n")
        step = self.owner._take_step(route)
        if step is not None and step[0] != 200:
            status, headers = step
            return self._send_text(status, f"{_phrase(status)}\n", headers, "status")
        location = route.fault.redirect_to
        if location is not None:
            status = route.fault.redirect_status
            return self._send_text(
                status, f"Moved to {location}\n", {"Location": location}, "redirect"
            )
        entity = self.owner._entity_for_request(route)
        override = route.fault.body_override
        if entity is not None and override is not None:
            page = _Entity(len(override), "", DEFAULT_LAST_MODIFIED, "text/html", data=override)
            fields = [("Content-Type", page.content_type), ("Content-Length", str(page.size))]
            return self._send_body(route, page, 200, fields, (0, page.size), label="override")
        if entity is None:
            return self._send_text(404, f"404 Not Found: {path}\n")
        return self._serve(route, entity)

    def _serve(self, route: _Route, entity: _Entity) -> None:
        """Decide between 200, 206 and 416 and send accordingly."""
        size = entity.size
        headers = [
            ("ETag", entity.etag),
            ("Last-Modified", http_date(entity.last_modified)),
            ("Content-Type", entity.content_type),
            ("Accept-Ranges", "bytes"),
        ]
        header = self.headers.get("Range")
        parsed: RangeResult = "ignore"
        # RFC 9110 14.2: Range is for GET only; 13.1.5: an If-Range that names another version
        # means the whole new body.
        if (
            header is not None
            and self.command == "GET"
            and _if_range_allows(self.headers.get("If-Range"), entity)
        ):
            parsed = _parse_range(header, size)
        if parsed == "unsatisfiable":
            fields = {"Content-Range": f"bytes */{size}"}
            return self._send_text(416, f"Range {header} is not satisfiable.\n", fields)
        status, start, stop = 200, 0, size
        if parsed != "ignore":
            start, end = parsed
            status, stop = 206, end + 1
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        headers.append(("Content-Length", str(stop - start)))
        return self._send_body(route, entity, status, headers, (start, stop))

    def _send_body(
        self,
        route: _Route,
        entity: _Entity,
        status: int,
        headers: list[tuple[str, str]],
        span: tuple[int, int],
        *,
        label: str | None = None,
    ) -> None:
        """Send status, headers and the body bytes [start, stop) applying the body faults."""
        start, stop = span
        length = stop - start
        is_get = self.command == "GET"
        cut_at = self.owner._claim(route, "cut", length) if is_get else None
        stall_at = self.owner._claim(route, "stall", length) if is_get else None
        label = "cut" if cut_at is not None else "stall" if stall_at is not None else label
        self._start(status, headers, label, final=length == 0 or not is_get)
        if length and is_get:
            with entity.open() as stream:
                stream.seek(start)
                self._stream(stream, length, route.fault, cut_at, stall_at)

    def _stream(
        self,
        stream: BinaryIO,
        length: int,
        fault: Fault,
        cut_at: int | None,
        stall_at: int | None,
    ) -> None:
        """Copy ``length`` bytes from ``stream`` to the client, applying cut/stall/trickle."""
        chunk_size, delay = fault.trickle or (_CHUNK, 0.0)
        pos = 0
        while True:
            if pos == stall_at and not self._pause(fault.stall_seconds):
                return self._abort()
            if pos == cut_at:
                return self._cut()
            if pos >= length:
                return None
            limit = min(x for x in (cut_at, stall_at, length) if x is not None and x > pos)
            chunk = stream.read(min(chunk_size, limit - pos))
            if not chunk:  # the file shrank underneath us
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

    def _pause(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: for ever); False as soon as the server stops or the client
        disconnects."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self.owner._stopping.is_set():
            remaining = _POLL if deadline is None else deadline - time.monotonic()
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
            kwargs={"poll_interval": _POLL},
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

    def url_for(self, path: str) -> str:
        """Full, percent-encoded URL for ``path``."""
        return f"{self.url}{quote(_route_key(path), safe=_URL_SAFE)}"

    # ----- content

    def add(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str = CONTENT_TYPE,
        faults: Fault | None = None,
    ) -> str:
        """Serve ``data`` at ``path``; returns the full URL. Replaces any earlier route."""
        with self._lock:
            entity = _entity(data, DEFAULT_LAST_MODIFIED, content_type)
            self._routes[_route_key(path)] = _Route(entity, faults or Fault())
        return self.url_for(path)

    def add_file(self, path: str, file: str | Path, *, faults: Fault | None = None) -> str:
        """Serve a file from disk, streamed; ETag/Last-Modified come from its stat()."""
        file = Path(file)
        if not file.is_file():
            raise FileNotFoundError(file)
        with self._lock:
            self._routes[_route_key(path)] = _Route(file, faults or Fault())
        return self.url_for(path)

    def replace(self, path: str, data: bytes) -> None:
        """Change a route's content: new ETag, Last-Modified one hour later."""
        with self._lock:
            route = self._routes.get(_route_key(path))
            if route is None:
                raise KeyError(f"no route registered for {path!r}")
            self._replace_locked(route, data)

    def remove(self, path: str) -> None:
        """Unregister a route (later requests get 404)."""
        with self._lock:
            self._routes.pop(_route_key(path), None)

    def set_faults(self, path: str, fault: Fault | None) -> None:
        """Set (or clear with None) a route's faults and reset their counters.

        A path that has no content yet gets a content-less route (404 once no step applies).
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
        """Number of logged requests (for ``path``)."""
        with self._lock:
            return len(self._entries(path))

    def bytes_sent(self, path: str | None = None) -> int:
        """Total response body bytes handed to the socket (for ``path``)."""
        with self._lock:
            return sum(entry.body_bytes_sent for entry in self._entries(path))

    def reset_log(self) -> None:
        """Forget all logged requests (fault counters are kept)."""
        with self._lock:
            self._log.clear()

    def wait_for_bytes(self, path: str | None, n: int, timeout: float = 5.0) -> int:
        """Block until ``bytes_sent(path) >= n``; return it. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (current := self.bytes_sent(path)) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise TimeoutError(f"waited {timeout}s for {n} body bytes, got {current}")
                self._cond.wait(remaining)
            return current

    # ----- internals used by the handler (all under the lock)

    def _entries(self, path: str | None) -> list[_Entry]:
        key = None if path is None else _route_key(path)
        return [entry for entry in self._log if key is None or entry.path == key]

    def _replace_locked(self, route: _Route, data: bytes) -> None:
        """Swap a route's content for ``data`` (lock held)."""
        old = _file_entity(route.source) if isinstance(route.source, Path) else route.source
        base = old.last_modified if old is not None else DEFAULT_LAST_MODIFIED
        content_type = old.content_type if old is not None else CONTENT_TYPE
        route.source = _entity(data, base + timedelta(hours=1), content_type)

    def _lookup(self, path: str) -> _Route | None:
        with self._lock:
            return self._routes.get(path)

    def _take_step(self, route: _Route) -> tuple[int, Mapping[str, str]] | None:
        """Consume the route's next ``statuses`` step."""
        with self._lock:
            step = route.fault.step(route.steps_used)
            if step is not None:
                route.steps_used += 1
            return step

    def _entity_for_request(self, route: _Route) -> _Entity | None:
        """Return the entity to serve now, applying ``etag_changes`` atomically."""
        with self._lock:
            source = route.source
            if source is None:
                return None
            entity = _file_entity(source) if isinstance(source, Path) else source
            route.content_requests += 1
            fault = route.fault
            due = route.content_requests >= fault.change_after
            if fault.etag_changes is not None and not route.changed and due:
                route.changed = True
                self._replace_locked(route, fault.etag_changes)
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

    def _log_start(self, method: str, path: str, headers: Message, connection_id: int) -> _Entry:
        """Append a log entry for a new request."""
        entry = _Entry(method, path, headers, connection_id)
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
