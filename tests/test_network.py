"""Networks as students have them: dead names, refused ports, silent hosts, no network at all.

Offline only: ``.invalid`` names never resolve, port 1 on 127.0.0.1 refuses, and a listening
socket that never accepts stands for a filtered host. Timeouts are made short and sleeps instant.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import tomli_w

from factories import sha
from httpserver import CourseServer, pdf_payload
from lhymirror.cli import main, sync_cmd
from lhymirror.core.errors import DownloadError
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.health import HostHealth
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.transfer import Target
from lhymirror.mirror.store import MirrorStore

YEAR = 2022
QUICK = RetryPolicy(attempts=5, backoff_base=0.0, connect_timeout=0.5, read_timeout=0.3)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- host health on its own ------------------------------------------------------------------


def test_a_host_is_down_after_two_connection_failures_in_a_row() -> None:
    downs: list[tuple[str, str]] = []
    health = HostHealth(on_down=lambda host, reason: downs.append((host, reason)))
    assert not health.failed("a.example", "connection refused", "f1")
    health.reached("a.example")  # an answer clears the count
    assert not health.failed("a.example", "connection refused", "f1")
    assert health.failed("a.example", "connect timed out", "f2")
    assert health.is_down("a.example")
    assert health.failed("a.example", "connect timed out", "f3")  # reported once only
    assert downs == [("a.example", "connect timed out")]
    assert not health.is_down("b.example")


def test_a_down_host_is_skipped_then_probed_by_one_request_later() -> None:
    clock = Clock()
    health = HostHealth(probe_after=60, clock=clock)
    health.failed("h", "refused", "f1")
    health.failed("h", "refused", "f1")
    assert not health.usable("h", "f2")
    assert not health.usable("h", "f3")
    clock.now = 61
    assert health.usable("h", "f4")  # one probe
    assert not health.usable("h", "f5")  # not all
    health.reached("h")
    assert health.usable("h", "f6")
    assert not health.is_down("h")
    assert health.down_hosts() == ()


def test_all_down_needs_every_host_tried_to_be_down() -> None:
    health = HostHealth(threshold=1)
    assert not health.all_down()  # nothing tried
    health.failed("a", "refused", "f1")
    assert health.all_down()
    assert health.usable("b", "f2")
    assert not health.all_down()
    health.failed("b", "name not resolved", "f2")
    assert health.all_down()
    assert [(d.host, d.files) for d in health.down_hosts()] == [("a", 1), ("b", 1)]


# -- the downloader with host health ---------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", YEAR)


def target(store: MirrorStore, name: str, data: bytes) -> Target:
    return Target(name, store.year_dir / name, len(data), sha(data), name)


@responses.activate
def test_a_refusing_host_is_given_up_and_skipped_for_the_next_files(store: MirrorStore) -> None:
    dead, good = "https://dead.example/ml", "https://good.example/ml"
    refused = requests.ConnectionError("[Errno 111] Connection refused")
    files = {f"f{i}.bin": bytes([i]) * 1000 for i in range(4)}
    for name, data in files.items():
        responses.get(f"{dead}/{name}", body=refused)
        responses.get(f"{good}/{name}", body=data)
    health = HostHealth()
    downloader = Downloader(store, policy=QUICK, sleep=lambda _: None, health=health)
    session = new_session()
    for name, data in files.items():
        result = downloader.fetch(
            target(store, name, data), [f"{dead}/{name}", f"{good}/{name}"], session
        )
        assert result.source == f"{good}/{name}"
    dead_calls = [c for c in responses.calls if "dead.example" in (c.request.url or "")]
    assert len(dead_calls) == 2  # two failures in a row, then never again
    (down,) = health.down_hosts()
    assert (down.host, down.reason, down.files) == ("dead.example", "Connection refused", 4)


def test_an_unresolvable_name_is_not_tried_five_times(store: MirrorStore) -> None:
    data = b"x" * 100
    attempts: list[float] = []
    downloader = Downloader(store, policy=RetryPolicy(backoff_base=0.1), sleep=attempts.append)
    started = time.monotonic()
    source = "https://files.lhymirror.invalid/a.bin"
    with pytest.raises(DownloadError) as caught:
        downloader.fetch(target(store, "a.bin", data), [source], new_session())
    assert time.monotonic() - started < 5
    assert len(attempts) == 1  # one retry, not four
    assert "gave up after 2 attempts" in (caught.value.detail or "")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


# -- end to end: the CLI ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick_downloader(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(store: MirrorStore, **options: Any) -> Any:
        return Downloader(store, policy=QUICK, sleep=lambda _: None, **options)

    monkeypatch.setattr(sync_cmd, "build_downloader", build)
    monkeypatch.delenv("LHYMIRROR_ROOT", raising=False)
    monkeypatch.delenv("LHYMIRROR_MIRROR", raising=False)


def write_manifest(tmp_path: Path, files: list[dict[str, Any]]) -> Path:
    path = tmp_path / "course.toml"
    data = {"schema": 1, "course": "ML", "year": YEAR, "version": "1", "files": files}
    path.write_text(tomli_w.dumps(data))
    return path


def slide(name: str, data: bytes, *urls: str) -> dict[str, Any]:
    return {
        "id": name,
        "kind": "slide",
        "path": f"slides/{name}.pdf",
        "urls": list(urls),
        "insecure_http": True,
        "size": len(data),
        "sha256": sha(data),
    }


def test_no_network_stops_fast_with_one_line_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = [f"h{i}.lhymirror.invalid" for i in range(3)]
    files = [
        slide(f"l{i:02d}", b"%PDF-" + bytes(100), f"https://{hosts[i % 3]}/l{i:02d}.pdf")
        for i in range(12)
    ]
    root = tmp_path / "mirror"
    args = ["sync", "--manifest", str(write_manifest(tmp_path, files)), "--root", str(root)]
    started = time.monotonic()
    status = main(args)
    elapsed = time.monotonic() - started
    _, err = capsys.readouterr()
    assert status == 4
    assert elapsed < 5
    lines = err.strip().splitlines()
    assert lines[-1].startswith("lhymirror: error: no network (could not reach any of 3 hosts: ")
    assert "Check the connection or proxy settings" in lines[-1]
    assert len(lines) <= 10
    assert not (root / str(YEAR) / "slides").exists()  # no empty folder
    assert not any((root / str(YEAR) / ".lhymirror" / "partial").iterdir())


def test_a_silent_host_costs_two_timeouts_not_two_per_file(
    tmp_path: Path,
    http_server: CourseServer,
    silent_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = []
    for i in range(10):
        data = pdf_payload(20_000, i)
        good = http_server.add(f"/ml/l{i}.pdf", data)
        files.append(slide(f"l{i}", data, f"http://127.0.0.1:{silent_port}/l{i}.pdf", good))
    root = tmp_path / "mirror"
    args = ["sync", "--manifest", str(write_manifest(tmp_path, files)), "--root", str(root)]
    started = time.monotonic()
    status = main(args)
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "10 downloaded" in out
    assert elapsed < 5  # 10 files x 5 attempts x 0.3 s would be 15 s
    assert f"127.0.0.1:{silent_port}: not reachable (no answer in 0.3 s); " in err
    assert "files used their other sources" in err
