"""Networks as students have them: dead names, refused ports, silent hosts, no network at all.

Offline only: ``.invalid`` names never resolve, port 1 on 127.0.0.1 refuses, and a listening
socket that never accepts stands for a filtered host. Timeouts are made short and sleeps instant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import tomli_w

from factories import sha
from httpserver import CourseServer, Fault, pdf_payload
from lhymirror import api
from lhymirror.cli import main
from lhymirror.core.errors import DownloadError
from lhymirror.core.units import parse_rate
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.health import HostHealth
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.ratelimit import RateLimiter
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


# -- end to end: the CLI ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def quick_downloader(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(store: MirrorStore, **options: Any) -> Any:
        return Downloader(store, **{"policy": QUICK, **options}, sleep=lambda _: None)

    monkeypatch.setattr(api, "build_downloader", build)
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
    folders = [path for path in root.rglob("*") if path.is_dir()]
    assert not [path for path in folders if not any(path.iterdir())]  # no empty folder
    assert [path.name for path in root.rglob("*") if path.is_file()] == ["lock"]


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
    assert "skipped for the rest of the run (" in err  # how many files: as the workers raced
    assert " files had a source there)" in err


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


# -- --retries, --timeout, --limit-rate ------------------------------------------------------


@pytest.mark.parametrize(("retries", "requests_made"), [("0", 1), ("2", 3)])
@responses.activate
def test_retries_sets_the_tries_after_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], retries: str, requests_made: int
) -> None:
    url = "https://course.example.edu/ml/a.pdf"
    responses.get(url, status=503)
    manifest = write_manifest(tmp_path, [slide("a", b"%PDF-1", url)])
    status, _, err = run(
        ["sync", "--manifest", str(manifest), "--root", str(tmp_path), "--retries", retries],
        capsys,
    )
    assert status == 4
    assert len(responses.calls) == requests_made
    assert f"gave up after {requests_made} attempts" in err


def test_timeout_bounds_the_wait_for_a_silent_server(
    tmp_path: Path, silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{silent_port}/a.pdf"
    manifest = write_manifest(tmp_path, [slide("a", b"%PDF-1", url)])
    args = ["sync", "--manifest", str(manifest), "--root", str(tmp_path), "--timeout", "0.2"]
    started = time.monotonic()
    status, _, err = run(args, capsys)
    assert status == 4
    assert time.monotonic() - started < 3
    assert "no answer in 0.2 s" in err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--timeout", "0"), ("--timeout", "-1"), ("--retries", "-1"), ("--retries", "x"),
     ("--limit-rate", "0"), ("--limit-rate", "fast"), ("--limit-rate", "2T"),
     ("--split-size", "big"), ("--split-size", "-1")],
)  # fmt: skip
def test_bad_option_values_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    manifest = write_manifest(tmp_path, [slide("a", b"%PDF-1", "https://h.example/a.pdf")])
    with pytest.raises(SystemExit) as caught:
        main(["sync", "--manifest", str(manifest), "--root", str(tmp_path), option, value])
    assert caught.value.code == 2
    assert option in capsys.readouterr().err


def test_the_rate_cap_paces_all_transfers_together() -> None:
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    limiter = RateLimiter(1000, clock=clock, sleep=sleep)
    for _ in range(20):
        limiter.take(500)  # 10 000 bytes at 1000 B/s: 10 s, less the half-second burst
    assert sum(slept) == pytest.approx(9.5)
    clock.now += 100  # an idle while does not build up more than the burst
    slept.clear()
    limiter.take(2000)
    assert sum(slept) == pytest.approx(1.5)


@responses.activate
def test_the_downloader_feeds_every_byte_received_to_the_rate_cap(store: MirrorStore) -> None:
    data = bytes(300_000)
    responses.get("https://h.example/a.bin", body=data)
    taken: list[int] = []

    class Counting(RateLimiter):
        def take(self, nbytes: int) -> None:
            taken.append(nbytes)

    downloader = Downloader(store, limiter=Counting(1))
    downloader.fetch(target(store, "a.bin", data), ["https://h.example/a.bin"], new_session())
    assert sum(taken) == len(data)


def test_rates_read_like_wget() -> None:
    assert parse_rate("2M") == 2 * 1024 * 1024
    assert parse_rate("500k") == 500 * 1024
    assert parse_rate("1.5MiB/s") == 1.5 * 1024 * 1024
    assert parse_rate("4096") == 4096


# -- --from and --mirror bases ---------------------------------------------------------------


@pytest.mark.parametrize(
    "base", ["ftp://files.example/m", "https://", "http://h.example/m?x=1", "no/such/folder"]
)
def test_a_malformed_or_missing_base_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], base: str
) -> None:
    manifest = write_manifest(tmp_path, [slide("a", b"%PDF-1", "https://h.example/a.pdf")])
    args = ["sync", "--manifest", str(manifest), "--root", str(tmp_path / "r"), "--from", base]
    status, _, err = run(args, capsys)
    assert status == 2
    assert err.startswith("lhymirror: error: --from: ")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option", ["--from", "--mirror"])
def test_an_unreachable_base_stops_at_the_start(
    tmp_path: Path, http_server: CourseServer, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    data = pdf_payload(5000, 1)
    url = http_server.add("/ml/a.pdf", data)
    manifest = write_manifest(tmp_path, [slide("a", data, url)])
    base = "http://classmate.lhymirror.invalid:8000/mirror"
    args = ["sync", "--manifest", str(manifest), "--root", str(tmp_path / "r"), option, base]
    status, _, err = run(args, capsys)
    assert status == 4
    (line,) = err.strip().splitlines()
    assert line.startswith(f"lhymirror: error: {option} base cannot be reached ({base})")
    assert "--fallback-upstream" in line
    assert http_server.requests == []  # nothing was downloaded from upstream
    folders = [path for path in (tmp_path / "r").rglob("*") if path.is_dir()]
    assert not [path for path in folders if not any(path.iterdir())]  # no empty folder
    status, out, err = run([*args, "--fallback-upstream"], capsys)
    assert status == 0, err
    assert "1 downloaded" in out


def test_a_reachable_base_that_lacks_a_file_falls_back_per_file(
    tmp_path: Path, http_server: CourseServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pdf_payload(5000, 2)
    url = http_server.add("/ml/a.pdf", data)
    manifest = write_manifest(tmp_path, [slide("a", data, url)])
    base = f"http://127.0.0.1:{http_server.port}/elsewhere"
    args = ["sync", "--manifest", str(manifest), "--root", str(tmp_path / "r"), "--from", base]
    status, out, err = run(args, capsys)
    assert status == 0, err
    assert "1 downloaded" in out


def test_a_local_folder_is_a_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = b"%PDF-" + bytes(1000)
    other = tmp_path / "usb" / str(YEAR) / "slides"
    other.mkdir(parents=True)
    (other / "a.pdf").write_bytes(data)
    manifest = write_manifest(tmp_path, [slide("a", data, "https://h.lhymirror.invalid/a.pdf")])
    args = ["sync", "--manifest", str(manifest), "--root", str(tmp_path / "r")]
    status, _, err = run([*args, "--from", str(tmp_path / "usb")], capsys)
    assert status == 0, err
    assert (tmp_path / "r" / str(YEAR) / "slides" / "a.pdf").read_bytes() == data


# -- a first byte that does not come ---------------------------------------------------------


def test_the_body_keeps_the_full_read_timeout(
    store: MirrorStore, http_server: CourseServer
) -> None:

    data = pdf_payload(200_000, 4)
    slow = http_server.add(
        "/ml/slow.pdf", data, faults=Fault(stall_after=50_000, stall_seconds=0.6)
    )
    other = http_server.add("/ml/other.pdf", data)
    policy = RetryPolicy(read_timeout=5, first_byte_timeout=0.3, attempts=1)
    downloader = Downloader(store, policy=policy, sleep=lambda _: None)
    result = downloader.fetch(target(store, "a.pdf", data), [slow, other], new_session())
    assert result.source == slow  # a 0.6 s pause mid-body is not a silent server


def test_the_only_source_is_waited_for_with_the_read_timeout(
    store: MirrorStore, silent_port: int
) -> None:
    policy = RetryPolicy(read_timeout=0.4, first_byte_timeout=0.1, attempts=1)
    downloader = Downloader(store, policy=policy, sleep=lambda _: None)
    with pytest.raises(DownloadError) as caught:
        downloader.fetch(
            target(store, "a.pdf", b"x"), [f"http://127.0.0.1:{silent_port}/a.pdf"], new_session()
        )
    assert "no answer in 0.4 s" in (caught.value.detail or "")


def test_an_unsupported_base_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, [slide("a", b"%PDF-1", "https://h.example/a.pdf")])
    args = ["sync", "--manifest", str(manifest), "--root", str(tmp_path / "r")]
    status, _, err = run([*args, "--from", "ftp://files.example/m"], capsys)
    assert status == 2
    assert err.splitlines() == [
        "lhymirror: error: --from: unsupported base (ftp://files.example/m): ftp: is not one of "
        "http, https or a local folder. Serve the copy over HTTP (`python -m http.server -d "
        "mirror`) or mount it."
    ]


def test_the_base_check_holds_only_the_sources_that_are_not_on_a_base() -> None:
    import threading

    from lhymirror.core.errors import DownloadError
    from lhymirror.fetch.bases import BaseCheck

    answer = threading.Event()
    verdicts: list[bool] = []

    def probe(bases: object, **_: object) -> None:
        assert answer.wait(10)
        raise DownloadError("--mirror base cannot be reached", where="http://m.example/x")

    check = BaseCheck([("--mirror", "http://m.example/x")], timeout=(1, 1), probe=probe)
    assert check.allows("http://m.example/x/h.example/a.pdf")  # at once, while the probe runs
    assert check.allows("file:///media/usb/mirror/2022/a.pdf")
    waiting = threading.Thread(target=lambda: verdicts.append(check.allows("https://h.example/a")))
    waiting.start()
    waiting.join(0.05)
    assert waiting.is_alive() and verdicts == []  # the upstream source waits for the verdict
    answer.set()
    waiting.join(10)
    assert verdicts == [False]
    with pytest.raises(DownloadError, match="cannot be reached"):
        check.result()


def test_a_base_that_answers_lets_every_source_through() -> None:
    from lhymirror.fetch.bases import BaseCheck

    check = BaseCheck([("--from", "http://m.example")], timeout=(1, 1), probe=lambda *a, **k: None)
    assert check.allows("https://h.example/a")
    check.result()
