"""Large files fetched as several ranges at once: proof per range, resume, lies, budget."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from factories import blob, sha
from httpserver import CourseServer
from lhymirror.core.errors import DownloadError
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.scheduler import ConnectionBudget
from lhymirror.fetch.transfer import Target
from lhymirror.mirror.store import MirrorStore

MiB = 1024 * 1024
URL = "https://files.example.org/big.bin"
POLICY = RetryPolicy(
    segment_min_size=1 * MiB, segments=4, backoff_base=0, attempts=3, segment_min_seconds=0
)


class RangeServer:
    """A ``responses`` callback serving *data* with ranges; it can lie or stop short once."""

    def __init__(
        self,
        data: bytes,
        *,
        lie_at: int | None = None,
        short_at: int | None = None,
        url: str = URL,
    ):
        self.data = data
        self.lie_at = lie_at
        self.short_at = short_at
        self.ranges: list[str | None] = []
        self._lock = threading.Lock()
        responses.add_callback(responses.GET, url, callback=self)

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        header = request.headers.get("Range")
        with self._lock:
            self.ranges.append(header)
        base = {"ETag": '"v1"', "Accept-Ranges": "bytes", "Content-Type": "application/zip"}
        size = len(self.data)
        if header is None:
            return 200, base, self.data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", header)
        assert match is not None
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else size - 1
        if first == self.lie_at:
            first += 1  # the wrong range, announced honestly: the client must notice
        body = self.data[first : last + 1]
        if first == self.short_at:
            self.short_at = None
            body = body[: len(body) // 3]  # the connection ends early, once
        return 206, {**base, "Content-Range": f"bytes {first}-{last}/{size}"}, body


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


def big_target(store: MirrorStore, data: bytes, **options: Any) -> Target:
    fields: dict[str, Any] = {"segmentable": True, **options}
    return Target("big", store.year_dir / "big.bin", len(data), sha(data), "big.bin", **fields)


def downloader(store: MirrorStore, budget: ConnectionBudget | None, **options: Any) -> Downloader:
    return Downloader(store, policy=POLICY, sleep=lambda _: None, budget=budget, **options)


@responses.activate
def test_a_large_file_comes_in_ranges_on_spare_connections(store: MirrorStore) -> None:
    data = blob(4 * MiB + 123, 1)
    server = RangeServer(data)
    budget = ConnectionBudget(4)
    result = downloader(store, budget).fetch(big_target(store, data), [URL], new_session())
    assert result.sha256 == sha(data)
    assert (store.year_dir / "big.bin").read_bytes() == data
    assert server.ranges[0] is None  # the first request is the usual one
    pieces = sorted(r for r in server.ranges[1:] if r)
    assert len(pieces) == 3 and all(re.fullmatch(r"bytes=\d+-\d+", r) for r in pieces)
    # Received: every byte once, plus what the first response had sent past its piece's end.
    assert len(data) <= result.bytes_received <= len(data) + MiB
    assert budget.try_acquire(4) == 4  # every connection was given back
    assert not any((store.meta_dir / "partial").iterdir())  # no piece left behind


@responses.activate
def test_no_spare_connection_means_one_stream(store: MirrorStore) -> None:
    data = blob(3 * MiB, 2)
    server = RangeServer(data)
    budget = ConnectionBudget(1)
    assert budget.try_acquire(1) == 1  # this transfer's own connection
    downloader(store, budget).fetch(big_target(store, data), [URL], new_session())
    assert server.ranges == [None]


@responses.activate
def test_a_capped_host_or_a_small_file_is_not_cut(store: MirrorStore) -> None:
    data = blob(3 * MiB, 3)
    server = RangeServer(data)
    target = big_target(store, data, segmentable=False)
    downloader(store, ConnectionBudget(4)).fetch(target, [URL], new_session())
    assert server.ranges == [None]  # not segmentable: one request
    small = blob(MiB // 2, 4)  # under POLICY's split size
    small_url = "https://files.example.org/small.bin"
    small_server = RangeServer(small, url=small_url)
    target = Target(
        "s", store.year_dir / "s.bin", len(small), sha(small), "s.bin", segmentable=True
    )
    downloader(store, ConnectionBudget(4)).fetch(target, [small_url], new_session())
    assert small_server.ranges == [None]  # ranges proven, connections free: still one request


@responses.activate
def test_a_server_lying_about_one_range_falls_back_to_one_stream(store: MirrorStore) -> None:
    data = blob(4 * MiB, 5)
    size = len(data)
    lie = size // 4 * 2  # the start of the second piece after the first
    server = RangeServer(data, lie_at=lie)
    retries: list[str] = []

    class Events:
        def started(self, *args: object) -> None: ...
        def advanced(self, *args: object) -> None: ...
        def restarted(self, *args: object) -> None: ...
        def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
            retries.append(reason)

    result = downloader(store, ConnectionBudget(4), events=Events()).fetch(
        big_target(store, data), [URL], new_session()
    )
    assert result.sha256 == sha(data)
    assert (store.year_dir / "big.bin").read_bytes() == data
    assert any(f"range {lie}-" in reason and "wrongly" in reason for reason in retries)
    # The good pieces before the lie were kept: the next attempt, in one stream, starts at it
    # (and as this server lies there too, starts again from zero: still only verified bytes).
    assert server.ranges[-2:] == [f"bytes={lie}-", None]
    assert not any((store.meta_dir / "partial").iterdir())


@responses.activate
def test_pieces_resume_where_their_files_end_in_a_later_run(store: MirrorStore) -> None:
    data = blob(4 * MiB, 6)
    size = len(data)
    short = size // 4 * 3
    server = RangeServer(data, short_at=short)
    once = RetryPolicy(segment_min_size=MiB, segments=4, attempts=1, segment_min_seconds=0)
    with pytest.raises(DownloadError):
        Downloader(store, policy=once, budget=ConnectionBudget(4)).fetch(
            big_target(store, data), [URL], new_session()
        )
    held = (store.meta_dir / "partial" / f"big.part.{short}").stat().st_size
    assert 0 < held < size - short
    # A new process (a new downloader) continues every piece where its file ends.
    server.ranges.clear()
    result = downloader(store, ConnectionBudget(4)).fetch(
        big_target(store, data), [URL], new_session()
    )
    assert result.sha256 == sha(data)
    # The first pieces were joined before the cut one failed; its bytes are taken as they are,
    # and only the rest is fetched (too little now to cut again).
    assert server.ranges == [f"bytes={short + held}-"]
    assert result.bytes_received == size - short - held


def test_the_test_server_answers_pieces_with_proof(
    store: MirrorStore, http_server: CourseServer
) -> None:
    data = blob(3 * MiB, 7)
    url = http_server.add("/ml/big.bin", data, content_type="application/zip")
    budget = ConnectionBudget(3)
    budget.acquire()  # this transfer's own (the scheduler takes it for every running file)
    result = downloader(store, budget).fetch(big_target(store, data), [url], new_session())
    assert result.sha256 == sha(data)
    ranges = [r.range_header for r in http_server.requests if r.range_header]
    assert len(ranges) == 2  # two spare connections: two pieces after the first
    assert all(r.status == 206 for r in http_server.requests if r.range_header)


def sync_on_budget(plan: Any, store: MirrorStore, *, jobs: int) -> tuple[Any, ConnectionBudget]:
    """run_sync of *plan* with *jobs* connections shared by its downloaders, and that budget."""
    from lhymirror.fetch.sync import run_sync

    budget = ConnectionBudget(jobs)
    report = run_sync(
        plan,
        store,
        lambda events: Downloader(store, policy=POLICY, events=events, budget=budget),
        jobs=jobs,
        budget=budget,
    )
    return report, budget


def test_a_sync_from_a_base_fetches_its_large_file_in_pieces(
    tmp_path: Path, http_server: CourseServer
) -> None:
    from factories import manifest_data
    from httpserver import Fault
    from lhymirror.fetch.plan import plan_sync
    from lhymirror.manifest.model import manifest_from_data

    big, small = blob(3 * MiB, 8), blob(1000, 9)
    http_server.add("/base/2022/data/big.zip", big, content_type="application/zip")
    http_server.add("/base/2022/data/small.zip", small, content_type="application/zip")
    # slow enough for the small file to end and give its connection to the pieces meanwhile
    http_server.set_faults("/base/2022/data/big.zip", Fault(trickle=(256 * 1024, 0.02)))
    files = [
        {"id": name, "kind": "dataset", "path": f"data/{name}.zip", "size": len(data),
         "sha256": sha(data), "urls": [f"https://course.lhymirror.invalid/{name}.zip"]}
        for name, data in (("big", big), ("small", small))
    ]  # fmt: skip
    store = MirrorStore(tmp_path / "mirror", 2022)
    base = f"http://127.0.0.1:{http_server.port}/base"
    plan = plan_sync(manifest_from_data(manifest_data(*files)), store, from_bases=[base])
    report, budget = sync_on_budget(plan, store, jobs=4)
    assert report.complete
    assert store.file_path("data/big.zip").read_bytes() == big
    pieces = [r for r in http_server.requests if r.range_header and "big" in r.path]
    assert len(pieces) == 3  # the spare connections, and the small file's once it ended
    (small_request,) = [r for r in http_server.requests if "small" in r.path]
    # that piece asked on the small file's open connection (no new one: a round trip saved)
    assert small_request.connection_id in {r.connection_id for r in pieces}
    assert budget.try_acquire(4) == 4


def test_a_slow_transfer_gets_the_next_connection_given_back_before_a_new_file() -> None:
    budget = ConnectionBudget(3)
    budget.acquire()  # this thread's file, found slow
    other_file = threading.Thread(target=budget.acquire)
    other_file.start()
    other_file.join()  # a second file holds one; one is free
    assert budget.want(2) == 1  # the free one is set aside at once
    new_file = threading.Thread(target=budget.acquire)
    new_file.start()
    budget.release()  # the second file ends: its connection comes here, not to the new file
    new_file.join(0.05)
    assert new_file.is_alive()
    assert budget.reserved() == 2
    assert budget.try_acquire(3) == 2  # the pieces take them
    budget.release(2)  # the pieces end: now the new file starts
    new_file.join(10)
    assert not new_file.is_alive()


def test_a_connection_given_back_goes_to_the_slow_transfer_with_the_most_left() -> None:
    budget = ConnectionBudget(2)
    budget.acquire()
    budget.acquire()  # the two slow transfers' own
    waiting, read = threading.Barrier(3), threading.Event()
    got: dict[str, int] = {}

    def transfer(name: str, rest: int) -> None:
        assert budget.want(1, rest=rest) == 0
        waiting.wait(10)
        assert read.wait(10)
        got[name] = budget.reserved()

    threads = [
        threading.Thread(target=transfer, args=("parts", 5 * MiB)),
        threading.Thread(target=transfer, args=("large", 50 * MiB)),
    ]
    for thread in threads:
        thread.start()
    waiting.wait(10)
    budget.release()  # a third transfer ends
    read.set()
    for thread in threads:
        thread.join(10)
    assert got == {"parts": 0, "large": 1}


def test_a_reservation_not_used_is_given_back() -> None:
    budget = ConnectionBudget(4)
    budget.acquire()
    assert budget.want(5) == 3
    waiting = threading.Thread(target=budget.acquire)
    waiting.start()
    budget.drop_reservation()  # no cut after all: the connections and the claim go back
    waiting.join(10)
    assert not waiting.is_alive()
    budget.unhold()
    assert budget.try_acquire(4) == 3  # the other thread holds its one


class Spy:
    """Wraps a downloader and records the keys of the targets it fetched, and on which thread."""

    def __init__(self, inner: Downloader) -> None:
        self.inner = inner
        self.keys: list[tuple[str, str]] = []

    def fetch(self, target: Target, sources: Any, session: Any) -> Any:
        self.keys.append((target.key, threading.current_thread().name))
        return self.inner.fetch(target, sources, session)


RATED = RetryPolicy(segment_min_size=MiB, segments=4, backoff_base=0, segment_min_seconds=60)


@pytest.mark.parametrize(
    ("jobs", "policy", "prefetched"), [(1, POLICY, False), (4, POLICY, True), (4, RATED, False)]
)
def test_the_later_parts_of_a_split_file_come_meanwhile_on_spare_connections_when_slow(
    tmp_path: Path, http_server: CourseServer, jobs: int, policy: RetryPolicy, prefetched: bool
) -> None:
    """POLICY finds every connection slow; with RATED no connection of this test is."""
    from factories import manifest_data
    from httpserver import Fault
    from lhymirror.fetch.plan import plan_sync
    from lhymirror.fetch.sync import run_sync
    from lhymirror.manifest.model import manifest_from_data

    pieces = [blob(300_000, 10 + i) for i in range(4)]
    whole = b"".join(pieces)
    upstream = "https://course.lhymirror.invalid/d"
    for i, piece in enumerate(pieces):
        http_server.add(f"/mirror/course.lhymirror.invalid/d/part{i}", piece)
    # the first part takes a while, so the spare connections start the others first
    http_server.set_faults(
        "/mirror/course.lhymirror.invalid/d/part0", Fault(trickle=(32_768, 0.02))
    )
    entry = {
        "id": "d", "kind": "dataset", "path": "data/d.tar", "size": len(whole),
        "sha256": sha(whole), "parts": [f"{upstream}/part{i}" for i in range(4)],
    }  # fmt: skip
    store = MirrorStore(tmp_path / "mirror", 2022)
    mirror = f"http://127.0.0.1:{http_server.port}/mirror"
    plan = plan_sync(manifest_from_data(manifest_data(entry)), store, mirrors=[mirror])
    (item,) = plan.items
    assert item.capped_host is None
    budget = ConnectionBudget(jobs, split_size=MiB)
    spies: list[Spy] = []

    def factory(events: Any) -> Spy:
        spies.append(Spy(Downloader(store, policy=policy, events=events, budget=budget)))
        return spies[-1]

    report = run_sync(plan, store, factory, jobs=jobs, budget=budget)
    assert report.complete
    assert store.file_path("data/d.tar").read_bytes() == whole
    keys = [key for spy in spies for key, _ in spy.keys]
    staged = sorted(key for key in keys if key.endswith(".part.staging"))
    if prefetched:
        assert staged == [f"d.part0{i}.part.staging" for i in (1, 2, 3)]
        assert sorted(k for k in keys if not k.endswith(".staging")) == ["d.part00"]
    else:  # no spare connection, or no need of one: one part after the other
        assert staged == []
    assert not any((store.meta_dir / "partial").iterdir())
    assert len([r for r in http_server.requests if "/part" in r.path]) == 4  # each part once
    assert budget.try_acquire(jobs) == jobs


@pytest.mark.slow
def test_pieces_survive_kill_9_and_resume(tmp_path: Path, http_server: CourseServer) -> None:
    import os
    import signal
    import subprocess
    import sys

    import tomli_w

    import lhymirror
    from httpserver import Fault

    data = blob(3 * MiB, 20)
    route = "/base/2022/data/big.zip"
    http_server.add(route, data, content_type="application/zip")
    http_server.set_faults(route, Fault(trickle=(32 * 1024, 0.02)))
    entry = {
        "id": "big", "kind": "dataset", "path": "data/big.zip", "size": len(data),
        "sha256": sha(data), "urls": ["https://course.lhymirror.invalid/big.zip"],
    }  # fmt: skip
    manifest = tmp_path / "m.toml"
    fields = {"schema": 1, "course": "ML", "year": 2022, "version": "1", "files": [entry]}
    manifest.write_text(tomli_w.dumps(fields))
    root = tmp_path / "r"
    base = f"http://127.0.0.1:{http_server.port}/base"
    args = ["sync", "--manifest", str(manifest), "--root", str(root), "--from", base]
    args += ["--split-size", "1M", "--jobs", "4"]
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}

    def cli() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "lhymirror", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip

    first = cli()
    try:
        http_server.wait_for_bytes(route, MiB, timeout=20)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
    partial = root / "2022" / ".lhymirror" / "partial"
    held = {
        int(p.name.rsplit(".", 1)[1]): p.stat().st_size for p in partial.glob("big.part.*[0-9]")
    }
    assert len(held) == 3 and any(held.values())
    assert (partial / "big.part.segments.json").is_file()
    starts = sorted(held)
    ends = [*starts[1:], len(data)]
    wanted = {
        f"bytes={start + held[start]}-{end - 1}"
        for start, end in zip(starts, ends, strict=True)
        if held[start] < end - start
    }
    before = len(http_server.requests)
    http_server.set_faults(route, None)
    second = cli()
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert (root / "2022" / "data" / "big.zip").read_bytes() == data
    asked = {r.range_header for r in http_server.requests[before:] if r.range_header}
    assert wanted <= asked  # every piece continued where its file ended
    assert not any(partial.iterdir())


def test_the_split_size_is_the_runs_share_per_connection_within_bounds() -> None:
    policy = RetryPolicy()
    assert policy.split_size(24_000_000, 8) == 4 * MiB  # a small run: the floor
    assert policy.split_size(80 * MiB, 8) == 10 * MiB  # its share per connection
    assert policy.split_size(1200 * MiB, 8) == 32 * MiB  # a whole course: the usual size
    asked = RetryPolicy(segment_min_size=64 * MiB, segment_share=False)  # --split-size 64M
    assert asked.split_size(24_000_000, 8) == 64 * MiB


@responses.activate
def test_the_runs_split_size_in_the_budget_decides_what_is_cut(store: MirrorStore) -> None:
    data = blob(2 * MiB, 5)
    server = RangeServer(data)
    large = RetryPolicy(  # would never cut 2 MiB
        segment_min_size=32 * MiB, backoff_base=0, segment_min_seconds=0
    )
    budget = ConnectionBudget(4, split_size=1 * MiB)  # what this run chose
    Downloader(store, policy=large, sleep=lambda _: None, budget=budget).fetch(
        big_target(store, data), [URL], new_session()
    )
    assert len([r for r in server.ranges if r]) == 3
    assert (store.year_dir / "big.bin").read_bytes() == data


def test_split_size_given_on_the_command_line_is_used_as_it_is() -> None:
    from argparse import Namespace

    from lhymirror.cli.sync_cmd import retry_policy

    policy = retry_policy(Namespace(timeout=None, retries=None, split_size=8 * MiB))
    assert policy is not None
    assert policy.split_size(1200 * MiB, 8) == 8 * MiB
    assert retry_policy(Namespace(timeout=None, retries=None, split_size=None)) is None


class SteppingClock:
    """A clock that moves *step* seconds each time it is read: the link's speed, as time."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@responses.activate
@pytest.mark.parametrize(("step", "cut"), [(2.0, True), (0.05, False)])
def test_a_file_is_cut_only_when_one_connection_is_slow(
    store: MirrorStore, step: float, cut: bool
) -> None:
    data = blob(8 * MiB, 5)
    server = RangeServer(data)
    rated = RetryPolicy(segment_min_size=MiB, segments=4, backoff_base=0, segment_min_seconds=1)
    fetcher = Downloader(
        store, policy=rated, sleep=lambda _: None, budget=ConnectionBudget(4),
        clock=SteppingClock(step),
    )  # fmt: skip
    result = fetcher.fetch(big_target(store, data), [URL], new_session())
    assert result.sha256 == sha(data)
    assert any(r is not None for r in server.ranges) is cut


def test_a_part_no_spare_connection_has_started_is_fetched_in_place(tmp_path: Path) -> None:
    """And a spare connection comes back as soon as no part is left for it."""
    import time
    from types import SimpleNamespace

    from lhymirror.fetch.plan import PartPlan
    from lhymirror.fetch.prefetch import PartPrefetch
    from lhymirror.fetch.transfer import FetchResult

    store = MirrorStore(tmp_path / "mirror", 2022)
    store.ensure_dirs()
    parts = tuple(
        PartPlan(i, f"d.part{i}", (f"https://x.example/{i}",), None, None) for i in range(4)
    )
    item: Any = SimpleNamespace(
        parts=parts, entry=SimpleNamespace(path="d.tar"), capped_host=None, size=40
    )
    go = {i: threading.Event() for i in range(4)}
    asked: list[int] = []

    class Fetcher:
        def fetch(self, target: Target, sources: Any, session: Any) -> FetchResult:
            index = int(sources[0].rsplit("/", 1)[1])
            asked.append(index)
            assert go[index].wait(10)
            target.final_path.write_bytes(bytes([index]) * 10)
            return FetchResult(target.key, 10, None, sources[0], None, None, 0, 10)

    budget = ConnectionBudget(2, session_factory=lambda: SimpleNamespace(close=dict))
    budget.acquire()  # the file's own connection
    prefetch = PartPrefetch(store, item, Fetcher(), budget)
    prefetch.start(after=parts[0])  # one spare connection: it takes part 1
    deadline = time.monotonic() + 10
    while asked != [1] and time.monotonic() < deadline:
        time.sleep(0.001)
    assembly = store.assembly_path("d")
    assembly.parent.mkdir(parents=True, exist_ok=True)
    target = Target(parts[2].key, assembly, None, None, "d.tar (part 3 of 4)", offset=0)
    assert prefetch.place(parts[2], target) is None  # not started: the caller fetches it
    go[1].set()
    go[3].set()
    placed = prefetch.place(parts[1], Target(parts[1].key, assembly, None, None, "p2", offset=0))
    assert placed is not None and assembly.read_bytes() == bytes([1]) * 10
    while budget.try_acquire(1) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # the worker fetched part 3, found nothing left and gave it back
    assert asked == [1, 3]
    prefetch.close()


def test_a_part_staged_by_a_stopped_run_is_finished_not_fetched_again(
    tmp_path: Path, http_server: CourseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from factories import manifest_data
    from lhymirror.fetch.partial import PartialDownload
    from lhymirror.fetch.plan import plan_sync
    from lhymirror.manifest.model import manifest_from_data

    pieces = [blob(300_000, 30 + i) for i in range(4)]
    whole = b"".join(pieces)
    for i, piece in enumerate(pieces):
        http_server.add(f"/mirror/course.lhymirror.invalid/d/part{i}", piece)
    entry = {
        "id": "d", "kind": "dataset", "path": "data/d.tar", "size": len(whole),
        "sha256": sha(whole),
        "parts": [f"https://course.lhymirror.invalid/d/part{i}" for i in range(4)],
    }  # fmt: skip
    store = MirrorStore(tmp_path / "mirror", 2022)
    mirror = f"http://127.0.0.1:{http_server.port}/mirror"
    plan = plan_sync(manifest_from_data(manifest_data(entry)), store, mirrors=[mirror])
    # An earlier run, killed while a prefetch of the last part was on its way:
    url = f"{mirror}/course.lhymirror.invalid/d/part3"
    etag = requests.head(url, timeout=5).headers["ETag"]
    staged_file = store.partial_path("d.part03").with_name("d.part03.part.staged")
    store.ensure_dirs()
    staged = PartialDownload(store, Target("d.part03.part.staging", staged_file, None, None, "p4"))
    with monkeypatch.context() as patch:  # it held enough to have written its sidecar
        patch.setattr("lhymirror.fetch.partial.FIRST_STATE_AT", 100_000)
        staged.begin(url, etag, None, 0)
        with staged.appending() as handle:
            staged.append(handle, pieces[3][:100_000])
    assert store.partial_state("d.part03.part.staging") is not None

    report, _ = sync_on_budget(plan, store, jobs=1)  # no spare connection: no prefetch
    assert report.complete
    assert store.file_path("data/d.tar").read_bytes() == whole
    last = [r for r in http_server.requests if r.path.endswith("/part3") and r.method == "GET"]
    assert [r.range_header for r in last] == ["bytes=100000-"]  # only what it lacked
    assert not any((store.meta_dir / "partial").iterdir())


@responses.activate
def test_the_cut_of_an_earlier_run_is_kept_even_with_no_connection_to_spare(
    store: MirrorStore,
) -> None:
    """The first piece stops where the next one starts; the pieces then come on its connection."""
    import json

    from lhymirror.fetch.partial import PartialDownload

    data = blob(4 * MiB, 9)
    server = RangeServer(data)
    target = big_target(store, data)
    store.ensure_dirs()
    partial = PartialDownload(store, target)  # a run killed with 1 MiB of the first piece ...
    partial.begin(URL, '"v1"', None, 0)
    with partial.appending() as handle:
        partial.append(handle, data[:MiB])
    record = {"url": URL, "etag": '"v1"', "size": len(data), "bounds": [2 * MiB]}
    partial.path.with_name(partial.path.name + ".segments.json").write_text(json.dumps(record))
    # ... and 1 MiB of the second
    partial.path.with_name(f"{partial.path.name}.{2 * MiB}").write_bytes(data[2 * MiB : 3 * MiB])
    budget = ConnectionBudget(1)
    budget.acquire()  # this transfer's own: none to spare
    result = downloader(store, budget).fetch(target, [URL], new_session())
    assert result.sha256 == sha(data)
    assert server.ranges == [f"bytes={MiB}-{2 * MiB - 1}", f"bytes={3 * MiB}-{4 * MiB - 1}"]
    assert result.bytes_received == 2 * MiB  # what it lacked, no more


@responses.activate
def test_a_connection_given_back_after_a_cut_goes_to_the_next_file_not_to_the_cut(
    store: MirrorStore,
) -> None:
    from lhymirror.fetch.partial import PartialDownload
    from lhymirror.fetch.segments import PiecedStream

    data = blob(8 * MiB, 11)
    RangeServer(data)
    budget = ConnectionBudget(3)
    budget.acquire()  # this file's own
    other = threading.Thread(target=budget.acquire)
    other.start()
    other.join()  # another file's: one connection is free
    store.ensure_dirs()
    partial = PartialDownload(store, big_target(store, data))
    partial.begin(URL, '"v1"', None, 0)
    stream = PiecedStream(
        partial, URL, '"v1"', policy=POLICY, budget=budget,
        clock=SteppingClock(1.0), on_bytes=lambda _: None,
    )  # fmt: skip
    assert stream.cutter(MiB) is None  # slow: it takes the free one and waits for another
    assert stream.cutter(MiB) is not None  # half a second later it cuts with what it has
    budget.release()  # the other file ends
    assert budget.reserved() == 0  # its connection is not set aside for a cut already made
    stream.close(None)
    budget.unhold()
    assert budget.try_acquire(3) == 3


def test_a_cut_that_cannot_be_recorded_gives_its_connections_back(
    store: MirrorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lhymirror.core.errors import StorageError
    from lhymirror.fetch import segments
    from lhymirror.fetch.partial import PartialDownload

    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segments, "atomic_write_bytes", full_disk)
    data = blob(8 * MiB, 12)
    budget = ConnectionBudget(4)
    budget.acquire()
    store.ensure_dirs()
    partial = PartialDownload(store, big_target(store, data))
    with pytest.raises(StorageError):
        segments.plan_cut(
            partial, URL, '"v1"', MiB, ranges_proven=True, policy=POLICY, budget=budget
        )
    assert budget.try_acquire(4) == 3  # none lost: only this file's own is held
