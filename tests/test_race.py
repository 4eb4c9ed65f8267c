"""A silent first source raced by the next one: the first verified copy wins, the loser stops.

Offline: a listening socket that never answers stands for a filtered host, a tiny socket server
answers after a delay (a late first source), and the 127.0.0.1 test server is the second source.
Timeouts are made short; each test ends in well under a second of waiting.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from factories import sha
from httpserver import CourseServer, Fault, pdf_payload
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.health import HostHealth
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.race import DEADLINES, Race, RaceLost
from lhymirror.fetch.scheduler import ConnectionBudget
from lhymirror.fetch.transfer import Target
from lhymirror.mirror.store import MirrorStore

RACING = RetryPolicy(read_timeout=20, first_byte_timeout=0.2, backoff_base=0)


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


def target(store: MirrorStore, name: str, data: bytes) -> Target:
    return Target(name, store.year_dir / name, len(data), sha(data), name)


class LateServer:
    """Answers every GET with *data* after *delay* seconds, all at once."""

    def __init__(self, data: bytes, delay: float) -> None:
        self.data, self.delay = data, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # so that close() is noticed
        self.port = self.listener.getsockname()[1]
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with conn:
                request = b""
                while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
                    request += chunk
                if self._stop.wait(self.delay):
                    return
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.data)}\r\n"
                    'ETag: "late"\r\nConnection: close\r\n\r\n'
                ).encode()
                try:
                    conn.sendall(head + self.data)
                    self.answered += 1
                except OSError:
                    pass  # the client gave up

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=5)


def race_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lhymirror-race" and t.is_alive()]


def leftovers(store: MirrorStore) -> list[str]:
    folder = store.partial_path("x").parent
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_silent_first_source_is_raced_and_broken_off_once_the_next_wins(
    store: MirrorStore, http_server: CourseServer, silent_port: int
) -> None:
    data = pdf_payload(60_000, 1)
    good = http_server.add("/ml/a.pdf", data)
    downloader = Downloader(store, policy=RACING, sleep=lambda _: None)
    started = time.monotonic()
    result = downloader.fetch(
        target(store, "a.pdf", data), [f"http://127.0.0.1:{silent_port}/a.pdf", good], new_session()
    )
    assert time.monotonic() - started < 3  # 0.2 s of silence, not the 20 s read timeout
    assert result.source == good
    assert (store.year_dir / "a.pdf").read_bytes() == data
    assert race_threads() == []  # nothing left running
    assert leftovers(store) == []  # no racer bytes, no partial of the silent source


def test_a_late_first_source_that_finishes_first_wins_and_the_racer_stops(
    store: MirrorStore, http_server: CourseServer
) -> None:
    data = pdf_payload(200_000, 2)
    slow = http_server.add("/ml/a.pdf", data, faults=Fault(trickle=(8192, 0.1)))  # ~2.5 s
    late = LateServer(data, delay=0.5)
    try:
        downloader = Downloader(store, policy=RACING, sleep=lambda _: None)
        started = time.monotonic()
        result = downloader.fetch(
            target(store, "a.pdf", data), [late.url("a.pdf"), slow], new_session()
        )
        elapsed = time.monotonic() - started
    finally:
        late.close()
    assert result.source == late.url("a.pdf")
    assert elapsed < 2  # the racer was stopped, not waited for
    assert (store.year_dir / "a.pdf").read_bytes() == data
    assert [r.completed for r in http_server.requests] == [False]  # the racer's, cut short
    assert race_threads() == []
    assert leftovers(store) == []  # the racer's partial bytes are gone


def test_a_late_first_source_loses_to_a_racer_that_finishes_first(
    store: MirrorStore, http_server: CourseServer
) -> None:
    data = pdf_payload(50_000, 3)
    good = http_server.add("/ml/a.pdf", data)
    late = LateServer(data, delay=1.0)
    try:
        downloader = Downloader(store, policy=RACING, sleep=lambda _: None)
        started = time.monotonic()
        result = downloader.fetch(
            target(store, "a.pdf", data), [late.url("a.pdf"), good], new_session()
        )
        elapsed = time.monotonic() - started
    finally:
        late.close()
    assert result.source == good
    assert elapsed < 0.9  # the first source's late answer was not waited for
    assert late.answered == 0
    assert (store.year_dir / "a.pdf").read_bytes() == data
    assert race_threads() == []
    assert leftovers(store) == []


def test_files_whose_first_source_answers_start_no_thread_and_leave_nothing_armed(
    store: MirrorStore, http_server: CourseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common case costs no thread per file: one helper thread keeps every deadline."""
    started: list[str] = []

    class Counted(threading.Thread):
        def start(self) -> None:
            started.append(self.name)
            super().start()

    monkeypatch.setattr("lhymirror.fetch.race.threading.Thread", Counted)
    downloader = Downloader(store, policy=RACING, sleep=lambda _: None)
    for number in range(20):
        data = pdf_payload(5_000, number)
        first = http_server.add(f"/ml/{number}.pdf", data)
        other = http_server.add(f"/other/{number}.pdf", data)
        name = f"{number}.pdf"
        result = downloader.fetch(target(store, name, data), [first, other], new_session())
        assert result.source == first

    assert [name for name in started if name.startswith("lhymirror-race")] == []
    assert started.count("lhymirror-deadlines") <= 1
    assert DEADLINES.armed() == 0
    assert leftovers(store) == []


def test_what_a_racer_of_an_earlier_run_left_goes_once_the_file_is_placed(
    store: MirrorStore, http_server: CourseServer
) -> None:
    data = pdf_payload(5_000, 7)
    first = http_server.add("/ml/a.pdf", data)
    other = http_server.add("/other/a.pdf", data)
    folder = store.partial_path("a.pdf").parent
    folder.mkdir(parents=True)
    for name in ("a.pdf.race.part", "a.pdf.race.json", "a.pdf.race.part.4096"):
        (folder / name).write_bytes(b"left by a killed run")
    downloader = Downloader(store, policy=RACING, sleep=lambda _: None)

    result = downloader.fetch(target(store, "a.pdf", data), [first, other], new_session())

    assert result.source == first
    assert leftovers(store) == []


def test_without_a_spare_connection_the_silent_source_is_given_up_instead(
    store: MirrorStore, http_server: CourseServer, silent_port: int
) -> None:
    data = pdf_payload(30_000, 4)
    good = http_server.add("/ml/a.pdf", data)
    budget = ConnectionBudget(1)
    budget.acquire()  # the file's own connection: none is spare
    downloader = Downloader(store, policy=RACING, sleep=lambda _: None, budget=budget)
    result = downloader.fetch(
        target(store, "a.pdf", data), [f"http://127.0.0.1:{silent_port}/a.pdf", good], new_session()
    )
    assert result.source == good
    assert budget.try_acquire(1) == 0  # the file still holds its one connection, no more
    budget.release()
    assert budget.try_acquire(1) == 1


def test_the_silence_counts_against_the_host_and_a_down_host_is_skipped(
    store: MirrorStore, http_server: CourseServer, silent_port: int
) -> None:
    downs: list[tuple[str, str]] = []
    health = HostHealth(on_down=lambda host, reason: downs.append((host, reason)))
    downloader = Downloader(store, policy=RACING, sleep=lambda _: None, health=health)
    for i in range(3):
        data = pdf_payload(20_000, 10 + i)
        good = http_server.add(f"/ml/{i}.pdf", data)
        started = time.monotonic()
        silent = f"http://127.0.0.1:{silent_port}/{i}.pdf"
        result = downloader.fetch(target(store, f"{i}.pdf", data), [silent, good], new_session())
        assert result.source == good
        if i == 2:  # the host is down: skipped at once, no wait for its silence
            assert time.monotonic() - started < 0.15
    assert downs == [(f"127.0.0.1:{silent_port}", "no answer in 0.2 s")]


def test_only_one_runner_wins_a_race() -> None:
    race = Race()
    race.claim("racer")
    race.claim("racer")  # the winner may claim again (a retry of its commit)
    with pytest.raises(RaceLost):
        race.claim("first")
    with pytest.raises(RaceLost):
        race.check("first")
    race.check("racer")
