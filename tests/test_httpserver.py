"""Tests for the CourseServer test HTTP server (tests/httpserver.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from factories import blob
from httpserver import (
    DEFAULT_LAST_MODIFIED,
    CourseServer,
    Fault,
    http_date,
    pdf_payload,
    strong_etag,
)

PDF = "/kurs/vl01.pdf"
SIZE = 10_000
TIMEOUT = 5.0
ChunkError = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def data() -> bytes:
    """The default payload served at PDF."""
    return pdf_payload(SIZE, seed=7)


@pytest.fixture
def server(http_server: CourseServer, data: bytes) -> CourseServer:
    """The function-scoped server with ``data`` registered at PDF."""
    http_server.add(PDF, data)
    return http_server


def get(server: CourseServer, path: str = PDF, **headers: str) -> requests.Response:
    """GET ``path`` without redirects; keyword arguments become headers (``_`` -> ``-``)."""
    hdrs = {name.replace("_", "-"): value for name, value in headers.items()}
    return requests.get(server.url_for(path), headers=hdrs, timeout=TIMEOUT, allow_redirects=False)


def raw_request(
    server: CourseServer, target: str, headers: Mapping[str, str] | None = None
) -> socket.socket:
    """Send one GET on a fresh socket and return the socket (for exact byte-level reads)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_until_eof(sock: socket.socket) -> bytes:
    """Read everything until the peer closes."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of the response head; return (head, body bytes already read)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the end of the response head"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_exactly(sock: socket.socket, n: int, already: bytes = b"") -> bytes:
    """Read until ``n`` bytes (including ``already``) have arrived."""
    buf = already
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return buf


def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``predicate`` (every few ms) until it is true or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.002)


# --------------------------------------------------------------------------- payload helpers


def test_pdf_payload_has_header_and_trailer() -> None:
    body = pdf_payload(100, seed=3)
    assert len(body) == 100
    assert body.startswith(b"%PDF-1.5\n")
    assert body.endswith(b"\n%%EOF\n")
    assert pdf_payload(10).startswith(b"%PDF-1.5\n")
    with pytest.raises(ValueError):
        pdf_payload(3)


def test_http_date_and_etag_helpers() -> None:
    assert http_date(DEFAULT_LAST_MODIFIED) == "Mon, 15 Jan 2024 12:00:00 GMT"
    etag = strong_etag(b"x")
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault(cut_after=-1)
    with pytest.raises(ValueError):
        Fault(trickle=(0, 0.1))
    with pytest.raises(ValueError):
        Fault(change_after=0)
    with pytest.raises(ValueError):
        Fault(redirect_status=200)


# --------------------------------------------------------------------------- basics


def test_full_get(server: CourseServer, data: bytes) -> None:
    resp = get(server)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["ETag"] == strong_etag(data)
    assert resp.headers["Last-Modified"] == "Mon, 15 Jan 2024 12:00:00 GMT"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "application/pdf"
    assert server.url.startswith("http://127.0.0.1:")


def test_head(server: CourseServer) -> None:
    resp = requests.head(server.url_for(PDF), timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["Content-Length"] == str(SIZE)
    (record,) = server.requests
    assert (record.method, record.status, record.body_bytes_sent) == ("HEAD", 200, 0)
    assert record.completed


def test_head_ignores_range_and_is_never_cut(server: CourseServer) -> None:
    server.set_faults(PDF, Fault(cut_after=10, cut_times=1))
    resp = requests.head(server.url_for(PDF), headers={"Range": "bytes=0-9"}, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(SIZE)
    with pytest.raises(ChunkError):
        get(server)


def test_custom_content_type(http_server: CourseServer) -> None:
    http_server.add("/n.html", b"<p>notes</p>", content_type="text/html")
    assert get(http_server, "/n.html").headers["Content-Type"] == "text/html"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=100-199", 100, 199),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        ("bytes=9000-20000", 9000, SIZE - 1),
        ("bytes=-20000", 0, SIZE - 1),
        ("bytes=0-0", 0, 0),
    ],
)
def test_range_forms(server: CourseServer, data: bytes, header: str, first: int, last: int) -> None:
    resp = get(server, Range=header)
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert resp.content == data[first : last + 1]
    assert server.requests[-1].range_header == header


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=20000-20010", "bytes=-0"])
def test_unsatisfiable_range(server: CourseServer, header: str) -> None:
    resp = get(server, Range=header)
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("header", ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-"])
def test_invalid_or_multi_range_is_served_full(
    server: CourseServer, data: bytes, header: str
) -> None:
    resp = get(server, Range=header)
    assert resp.status_code == 200
    assert resp.content == data


# --------------------------------------------------------------------------- conditionals


def test_if_range_etag(server: CourseServer, data: bytes) -> None:
    etag = strong_etag(data)
    assert get(server, Range="bytes=10-", If_Range=etag).status_code == 206
    assert get(server, Range="bytes=10-", If_Range='"other"').status_code == 200
    assert get(server, Range="bytes=10-", If_Range="W/" + etag).status_code == 200


def test_if_range_date(server: CourseServer) -> None:
    exact = http_date(DEFAULT_LAST_MODIFIED)
    later = "Tue, 16 Jan 2024 12:00:00 GMT"
    assert get(server, Range="bytes=10-", If_Range=exact).status_code == 206
    assert get(server, Range="bytes=10-", If_Range=later).status_code == 200
    assert get(server, Range="bytes=10-", If_Range="garbage").status_code == 200


def test_if_range_mismatch_beats_416(server: CourseServer) -> None:
    assert get(server, Range="bytes=99999-", If_Range='"old"').status_code == 200


# --------------------------------------------------------------------------- routing + log


def test_404_keeps_connection_alive(server: CourseServer, data: bytes) -> None:
    with requests.Session() as session:
        missing = session.get(server.url_for("/nope.pdf"), timeout=TIMEOUT)
        found = session.get(server.url_for(PDF), timeout=TIMEOUT)
    assert missing.status_code == 404
    assert b"404" in missing.content
    assert found.content == data
    first, second = server.requests
    assert first.connection_id == second.connection_id


def test_percent_encoded_paths(http_server: CourseServer) -> None:
    url = http_server.add("/Vorlesung 1 (ü).pdf", b"pdf")
    assert "%20" in url and " " not in url
    assert requests.get(url, timeout=TIMEOUT).content == b"pdf"
    assert http_server.requests[0].path == "/Vorlesung 1 (ü).pdf"
    assert http_server.count("/Vorlesung%201%20(%C3%BC).pdf") == 1
    assert requests.get(f"{url}?dl=1", timeout=TIMEOUT).content == b"pdf"  # queries are ignored


def test_request_log(server: CourseServer) -> None:
    get(server, X_Trace="abc", Range="bytes=0-99")
    get(server, "/missing")
    record, missing = server.requests
    assert record.headers["x-trace"] == "abc"
    assert record.headers["X-TRACE"] == "abc"
    assert "range" in record.headers
    assert record.range_header == "bytes=0-99"
    assert (record.path, record.status) == (PDF, 206)
    assert record.body_bytes_sent == 100 and record.completed and record.fault is None
    assert missing.status == 404 and missing.range_header is None
    assert server.count() == 2 and server.count(PDF) == 1
    assert server.bytes_sent(PDF) == 100
    server.reset_log()
    assert server.count() == 0 and server.bytes_sent() == 0


def test_concurrent_requests(server: CourseServer, data: bytes) -> None:
    def fetch(_: int) -> bytes:
        return get(server).content

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(fetch, range(32)))
    assert all(body == data for body in bodies)
    assert server.count(PDF) == 32
    assert server.bytes_sent(PDF) == 32 * SIZE


def test_url_requires_started_server() -> None:
    with pytest.raises(RuntimeError):
        _ = CourseServer().url


# ------------------------------------------------------------------ files, redirects, replace


def test_add_file_streams_from_disk(http_server: CourseServer, tmp_path: Path) -> None:
    data = blob(300_000, 5)
    file = tmp_path / "big.pdf"
    file.write_bytes(data)
    url = http_server.add_file("/big.pdf", file)
    full = requests.get(url, timeout=TIMEOUT)
    assert full.content == data
    assert full.headers["Content-Type"] == "application/pdf"
    part = requests.get(url, headers={"Range": "bytes=200000-"}, timeout=TIMEOUT)
    assert part.status_code == 206 and part.content == data[200_000:]
    # Changing the file changes the validators, so a stale If-Range gives a full 200.
    old_etag = full.headers["ETag"]
    file.write_bytes(data[:1000])
    os.utime(file, (1_000_000_000, 1_000_000_000))
    fresh = requests.get(url, headers={"Range": "bytes=10-", "If-Range": old_etag}, timeout=5)
    assert fresh.status_code == 200 and fresh.content == data[:1000]


def test_body_override(server: CourseServer) -> None:
    page = b"<html><body>Quota exceeded</body></html>"
    server.set_faults(PDF, Fault(body_override=page))
    resp = get(server, Range="bytes=100-")
    assert resp.status_code == 200
    assert resp.content == page
    assert resp.headers["Content-Type"] == "text/html"
    assert "ETag" not in resp.headers
    assert server.requests[0].fault == "override"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect(server: CourseServer, data: bytes, status: int) -> None:
    faults = (
        Fault(redirect_to=PDF) if status == 302 else Fault(redirect_to=PDF, redirect_status=status)
    )
    server.set_faults("/old.pdf", faults)
    resp = get(server, "/old.pdf")
    assert resp.status_code == status
    assert resp.headers["Location"] == PDF
    followed = requests.get(server.url_for("/old.pdf"), timeout=TIMEOUT)
    assert followed.content == data
    assert [r.status_code for r in followed.history] == [status]
    assert server.requests[0].fault == "redirect"


def test_replace_changes_content_and_validators(server: CourseServer, data: bytes) -> None:
    before = get(server)
    server.replace(PDF, b"new content")
    after = get(server)
    assert after.content == b"new content"
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.headers["Last-Modified"] == "Mon, 15 Jan 2024 13:00:00 GMT"
    assert after.headers["Content-Type"] == "application/pdf"
    assert get(server, Range="bytes=5-", If_Range=before.headers["ETag"]).status_code == 200
    with pytest.raises(KeyError):
        server.replace("/unknown", b"x")


def test_remove(server: CourseServer) -> None:
    server.remove(PDF)
    assert get(server).status_code == 404


# --------------------------------------------------------------------------- cut


def test_cut_after_sends_exactly_n_bytes_then_eof(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(cut_after=1234))
    with raw_request(server, PDF) as sock:
        raw = read_until_eof(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"Content-Length: {SIZE}".encode() in head
    assert body == data[:1234]
    (record,) = server.requests
    assert (record.status, record.body_bytes_sent, record.fault) == (200, 1234, "cut")
    assert not record.completed


def test_cut_times_then_success(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(cut_after=500, cut_times=2))
    for _ in range(2):
        with pytest.raises(ChunkError):
            get(server)
    assert get(server).content == data
    assert [r.fault for r in server.requests] == ["cut", "cut", None]
    assert server.bytes_sent(PDF) == 500 + 500 + SIZE


def test_cut_counts_from_range_start_and_resume_works(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(cut_after=100))  # every response is cut
    with raw_request(server, PDF, {"Range": "bytes=5000-"}) as sock:
        raw = read_until_eof(sock)
    assert raw.partition(b"\r\n\r\n")[2] == data[5000:5100]
    tail = get(server, Range=f"bytes={SIZE - 100}-")  # body not longer than cut_after: no cut
    assert tail.status_code == 206 and tail.content == data[-100:]


def test_session_recovers_after_cut(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(cut_after=10, cut_times=1))
    with requests.Session() as session:
        with pytest.raises(ChunkError):
            session.get(server.url_for(PDF), timeout=TIMEOUT)
        assert session.get(server.url_for(PDF), timeout=TIMEOUT).content == data
    first, second = server.requests
    assert first.connection_id != second.connection_id


# --------------------------------------------------------------------------- content changes


def test_etag_changes_after_first_request(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(etag_changes=b"version two"))
    first = get(server, Range="bytes=0-99")
    assert first.content == data[:100]
    resumed = get(server, Range="bytes=100-", If_Range=first.headers["ETag"])
    assert resumed.status_code == 200
    assert resumed.content == b"version two"
    assert resumed.headers["ETag"] == strong_etag(b"version two")
    assert resumed.headers["Last-Modified"] != first.headers["Last-Modified"]


def test_etag_changes_after_n_requests(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(etag_changes=b"v2", change_after=2))
    assert [get(server).content for _ in range(3)] == [data, data, b"v2"]


# --------------------------------------------------------------------------- stall


def test_stall_for_duration(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(stall_after=10, stall_seconds=0.05))
    assert get(server).content == data
    assert server.requests[0].fault == "stall"


def test_stall_ends_when_client_disconnects(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(stall_after=1000, stall_times=1))
    with raw_request(server, PDF) as sock:
        _, body = read_head(sock)
        assert read_exactly(sock, 1000, body) == data[:1000]
    eventually(lambda: server.active_connections == 0)
    (record,) = server.requests
    assert not record.completed and record.body_bytes_sent == 1000
    assert get(server).content == data  # stall_times=1: the next request is fine


def test_stop_ends_stalled_and_idle_handlers_promptly(data: bytes) -> None:
    server = CourseServer().start()
    server.add(PDF, data, faults=Fault(stall_after=100))  # stalls until client/server leave
    session = requests.Session()
    session.get(server.url_for("/idle-keepalive"), timeout=TIMEOUT)  # idle pooled connection
    sock = raw_request(server, PDF)
    try:
        server.wait_for_bytes(PDF, 100, timeout=TIMEOUT)
        assert server.active_connections == 2
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        assert server.active_connections == 0
        assert read_until_eof(sock).endswith(data[:100])  # socket was closed by the server
    finally:
        sock.close()
        session.close()
    assert not server.errors


def test_stop_unblocks_a_handler_whose_client_does_not_read() -> None:
    server = CourseServer().start()
    server.add("/huge.bin", bytes(32 * 1024 * 1024))  # far more than the socket buffers
    sock = raw_request(server, "/huge.bin")
    try:
        server.wait_for_bytes("/huge.bin", 1, timeout=TIMEOUT)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
    finally:
        sock.close()
    assert server.bytes_sent() < 32 * 1024 * 1024
    assert not server.errors


# --------------------------------------------------------------------------- trickle


def test_trickle_and_wait_for_bytes(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(trickle=(500, 0.002)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(get, server)
        assert server.wait_for_bytes(PDF, 5000, timeout=TIMEOUT) >= 5000
        assert future.result(timeout=TIMEOUT).content == data
    assert server.requests[0].completed


def test_trickle_with_cut(server: CourseServer, data: bytes) -> None:
    server.set_faults(PDF, Fault(trickle=(1000, 0.001), cut_after=2500))
    with raw_request(server, PDF) as sock:
        raw = read_until_eof(sock)
    assert raw.partition(b"\r\n\r\n")[2] == data[:2500]


def test_trickle_stops_when_client_disconnects(server: CourseServer) -> None:
    server.set_faults(PDF, Fault(trickle=(100, 0.005)))
    with raw_request(server, PDF) as sock:
        read_head(sock)
        server.wait_for_bytes(PDF, 300, timeout=TIMEOUT)
    eventually(lambda: server.active_connections == 0)
    (record,) = server.requests
    assert not record.completed and record.body_bytes_sent < SIZE


SUBPROCESS_CLIENT = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1]) as resp, open(sys.argv[2], "wb") as out:
    while chunk := resp.read(256):
        out.write(chunk)
        out.flush()
"""


def test_sigkill_client_mid_transfer(server: CourseServer, tmp_path: Path) -> None:
    server.set_faults(PDF, Fault(trickle=(256, 0.01)))  # ~25 KiB/s: 10 kB take ~0.4 s
    target = tmp_path / "partial.pdf"
    cmd = [sys.executable, "-c", SUBPROCESS_CLIENT, server.url_for(PDF), str(target)]
    proc = subprocess.Popen(cmd)
    try:
        server.wait_for_bytes(PDF, 2048, timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    eventually(lambda: server.active_connections == 0)
    (record,) = server.requests
    assert not record.completed
    assert 2048 <= record.body_bytes_sent < SIZE
    written = target.stat().st_size if target.exists() else 0
    assert written <= record.body_bytes_sent


def test_wait_timeouts(server: CourseServer) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_bytes(PDF, 1, timeout=0.02)
    get(server)
    assert server.wait_for_bytes(PDF, SIZE, timeout=0.02) == SIZE
    with pytest.raises(TimeoutError):
        server.wait_for_bytes(PDF, SIZE + 1, timeout=0.02)


# --------------------------------------------------------------------------- statuses


def test_statuses_sequence_with_retry_after(server: CourseServer, data: bytes) -> None:
    retry_date = http_date(datetime(2030, 1, 1, tzinfo=UTC))
    server.set_faults(
        PDF,
        Fault(statuses=[(503, {"Retry-After": "2"}), (429, {"Retry-After": retry_date}), 200]),
    )
    first, second, third, fourth = (get(server) for _ in range(4))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
    assert (second.status_code, second.headers["Retry-After"]) == (429, retry_date)
    assert third.status_code == 200 and third.content == data  # 200 step = normal serving
    assert fourth.status_code == 200 and fourth.content == data
    assert [r.fault for r in server.requests] == ["status", "status", None, None]


def test_status_step_on_contentless_route(http_server: CourseServer) -> None:
    http_server.set_faults("/busy", Fault(statuses=[(500, {"X-A": "1"})]))
    first = get(http_server, "/busy")
    assert (first.status_code, first.headers["X-A"]) == (500, "1")
    assert first.content == b"500 Internal Server Error\n"
    assert get(http_server, "/busy").status_code == 404


def test_set_faults_resets_counters(server: CourseServer) -> None:
    fault = Fault(statuses=[503])
    server.set_faults(PDF, fault)
    assert get(server).status_code == 503
    assert get(server).status_code == 200
    server.set_faults(PDF, fault)
    assert get(server).status_code == 503
    server.set_faults(PDF, None)
    assert get(server).status_code == 200
