"""Proxies: HTTP_PROXY / NO_PROXY and SOCKS (ALL_PROXY=socks5h://) through tiny local proxies."""

from __future__ import annotations

import http.client
import http.server
import select
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import tomli_w

from factories import sha
from httpserver import CourseServer, pdf_payload
from lhymirror import api
from lhymirror.cli import main
from lhymirror.fetch.download import Downloader

YEAR = 2022


class ForwardProxy(http.server.ThreadingHTTPServer):
    """A plain HTTP forward proxy (absolute-URI GET), recording what it forwarded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ForwardHandler)
        self.forwarded: list[str] = []


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    server: ForwardProxy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.forwarded.append(self.path)
        parts = urlsplit(self.path)
        upstream = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream.request("GET", target, headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Socks5Proxy(socketserver.ThreadingTCPServer):
    """A SOCKS5 proxy (no authentication, CONNECT by name or address), recording the targets."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SocksHandler)
        self.targets: list[tuple[str, int]] = []


class _SocksHandler(socketserver.BaseRequestHandler):
    server: Socks5Proxy

    def handle(self) -> None:
        client: socket.socket = self.request
        _, methods = client.recv(2)
        client.recv(methods)
        client.sendall(b"\x05\x00")  # no authentication
        _, command, _, kind = client.recv(4)
        if kind == 3:  # a name (socks5h: the proxy resolves it)
            host = client.recv(client.recv(1)[0]).decode()
        else:
            host = socket.inet_ntoa(client.recv(4))
        (port,) = struct.unpack("!H", client.recv(2))
        self.server.targets.append((host, port))
        if command != 1:
            client.sendall(b"\x05\x07\x00\x01" + bytes(6))
            return
        upstream = socket.create_connection((host, port), timeout=10)
        client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 0))
        _relay(client, upstream)


def _relay(a: socket.socket, b: socket.socket) -> None:
    with b:
        while True:
            readable, _, _ = select.select([a, b], [], [], 10)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)


def serving(server: socketserver.BaseServer) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    yield from serving(ForwardProxy())


@pytest.fixture
def socks_proxy() -> Iterator[Socks5Proxy]:
    yield from serving(Socks5Proxy())


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def quick(store: Any, **options: Any) -> Any:
        return Downloader(store, sleep=lambda _: None, **options)

    monkeypatch.setattr(api, "build_downloader", quick)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("LHYMIRROR_ROOT", raising=False)
    monkeypatch.delenv("LHYMIRROR_MIRROR", raising=False)


def sync_args(tmp_path: Path, server: CourseServer, host: str = "127.0.0.1") -> list[str]:
    data = pdf_payload(30_000, 1)
    url = server.add("/ml/a.pdf", data).replace("127.0.0.1", host)
    entry = {
        "id": "a", "kind": "slide", "path": "slides/a.pdf", "urls": [url],
        "insecure_http": True, "size": len(data), "sha256": sha(data),
    }  # fmt: skip
    manifest = tmp_path / "m.toml"
    fields = {"schema": 1, "course": "ML", "year": YEAR, "version": "1", "files": [entry]}
    manifest.write_text(tomli_w.dumps(fields))
    return ["sync", "--manifest", str(manifest), "--root", str(tmp_path / "r")]


def test_http_proxy_carries_the_downloads(
    tmp_path: Path,
    http_server: CourseServer,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{forward_proxy.server_address[1]}")
    status = main(sync_args(tmp_path, http_server))
    assert status == 0, capsys.readouterr().err
    assert forward_proxy.forwarded == [f"http://127.0.0.1:{http_server.port}/ml/a.pdf"]


def test_no_proxy_goes_direct(
    tmp_path: Path,
    http_server: CourseServer,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{forward_proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    status = main(sync_args(tmp_path, http_server))
    assert status == 0, capsys.readouterr().err
    assert forward_proxy.forwarded == []
    assert len(http_server.requests) == 1


def test_socks5h_proxy_resolves_names_for_us(
    tmp_path: Path,
    http_server: CourseServer,
    socks_proxy: Socks5Proxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{socks_proxy.server_address[1]}")
    status = main(sync_args(tmp_path, http_server, host="localhost"))
    assert status == 0, capsys.readouterr().err
    assert socks_proxy.targets == [("localhost", http_server.port)]  # the name, not an address


def test_a_proxy_that_refuses_is_a_host_down_not_a_hang(
    tmp_path: Path,
    http_server: CourseServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    status = main(sync_args(tmp_path, http_server))
    err = capsys.readouterr().err
    assert status == 4
    assert "lhymirror: error: no network" in err
    assert "proxy settings" in err


def test_a_socks_proxy_without_pysocks_is_one_clear_line(
    tmp_path: Path,
    http_server: CourseServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "socks" else real_find_spec(name)
    )
    monkeypatch.setenv("all_proxy", "socks5h://127.0.0.1:1080")
    status = main(sync_args(tmp_path, http_server))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert line == (
        "lhymirror: error: a SOCKS proxy needs the socks extra (ALL_PROXY=socks5h://127.0.0.1:1080)"
        ". Install it with: pip install 'lhymirror[socks]'."
    )
    assert http_server.requests == []
