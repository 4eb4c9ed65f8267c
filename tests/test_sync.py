"""Running a sync plan with a fake downloader: records, split files, failures, limits, lock."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from factories import blob, file_entry, make_manifest, sha
from lhymirror.core.errors import DownloadError, IntegrityError, StorageError
from lhymirror.core.fsutil import atomic_write_bytes
from lhymirror.fetch.job import SyncCancelled
from lhymirror.fetch.plan import plan_sync
from lhymirror.fetch.report import FileOutcome, SyncReport
from lhymirror.fetch.scheduler import largest_first
from lhymirror.fetch.sources.kaggle import credentials_for_plan as kaggle_credentials_for
from lhymirror.fetch.sync import check_free_space, run_sync, write_verified
from lhymirror.fetch.transfer import FetchResult, ManualStepRequired, Target, UpstreamChangedError
from lhymirror.manifest.model import Manifest
from lhymirror.mirror.state import EntryState, local_state
from lhymirror.mirror.store import LockedError, MirrorStore, PartialState, part_key

YEAR = 2022


def url(name: str, host: str = "course.example.edu") -> str:
    return f"https://{host}/ml/{name}"


def entry(entry_id: str, data: bytes | None = None, **options: Any) -> dict[str, Any]:
    return file_entry(entry_id, data, base_url=url("").rstrip("/"), **options)


class FakeDownloader:
    """Serves bytes from a dict of source -> bytes, verifying like the real engine."""

    def __init__(self, server: FakeServer, events: Any) -> None:
        self.server = server
        self.events = events

    def fetch(self, target: Target, sources: Sequence[str], session: Any) -> FetchResult:
        self.server.calls.append((target, tuple(sources), session, threading.current_thread()))
        hook = self.server.hooks.get(target.key)
        if hook is not None:
            hook(target, self.events)
        reasons = []
        for source in sources:
            data = self.server.content.get(source)
            if data is None:
                reasons.append(f"{source}: 404")
                continue
            if target.expected_sha256 not in (None, sha(data)):
                reasons.append(f"{source}: wrong bytes")
                continue
            self.events.started(target.key, len(data), 0)
            self.events.advanced(target.key, len(data))
            if target.offset is None:
                atomic_write_bytes(target.final_path, data)
            else:  # a part, appended in place to the assembly
                with target.final_path.open("ab") as assembly:
                    assembly.truncate(target.offset)
                    assembly.write(data)
            return FetchResult(target.key, len(data), sha(data), source, '"e1"', None, 0, len(data))
        raise DownloadError("all sources failed", where=target.name, detail="; ".join(reasons))


class FakeServer:
    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}
        self.calls: list[tuple[Target, tuple[str, ...], Any, threading.Thread]] = []
        self.hooks: dict[str, Callable[[Target, Any], None]] = {}
        self.sessions: list[object] = []

    def factory(self, events: Any) -> FakeDownloader:
        return FakeDownloader(self, events)

    def new_session(self) -> object:
        session = SimpleNamespace(closed=False)
        session.close = lambda: setattr(session, "closed", True)  # type: ignore[attr-defined]
        self.sessions.append(session)
        return session


class Recorder:
    def __init__(self) -> None:
        self.finished: list[FileOutcome] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: None

    def file_finished(self, outcome: FileOutcome) -> None:
        self.finished.append(outcome)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", YEAR)


def sync(manifest: Manifest, store: MirrorStore, server: FakeServer, **options: Any) -> SyncReport:
    run_options = {k: options.pop(k) for k in ("jobs", "per_host", "events") if k in options}
    plan = plan_sync(manifest, store, **options)
    return run_sync(plan, store, server.factory, session_factory=server.new_session, **run_options)


# -- downloading and recording ---------------------------------------------------------------


def test_missing_files_are_downloaded_and_recorded(store: MirrorStore, server: FakeServer) -> None:
    a, b = blob(3000, 1), blob(5000, 2)
    server.content.update({url("a.pdf"): a, url("b.pdf"): b})
    recorder = Recorder()
    report = sync(make_manifest(entry("a", a), entry("b", b)), store, server, events=recorder)
    assert report.complete
    assert [f.outcome for f in report.files] == ["downloaded", "downloaded"]
    assert store.file_path("slides/a.pdf").read_bytes() == a
    record = store.record("b")
    assert record is not None
    assert (record.size, record.sha256, record.source, record.etag) == (
        5000,
        sha(b),
        url("b.pdf"),
        '"e1"',
    )
    assert record.mtime_ns == store.file_path("slides/b.pdf").stat().st_mtime_ns
    assert report.bytes_received == 8000
    assert {f.id for f in recorder.finished} == {"a", "b"}
    assert report.to_json()["counts"]["downloaded"] == 2


def test_second_sync_fetches_nothing(store: MirrorStore, server: FakeServer) -> None:
    a = blob(3000, 3)
    server.content[url("a.pdf")] = a
    manifest = make_manifest(entry("a", a))
    sync(manifest, store, server)
    server.calls.clear()
    report = sync(manifest, store, server)
    assert server.calls == []
    assert server.sessions and len(server.sessions) == 1  # none created the second time
    assert report.files[0].outcome == "up-to-date"
    assert report.complete


def test_first_download_is_trusted_then_held_to(store: MirrorStore, server: FakeServer) -> None:
    a = blob(2000, 4)
    server.content[url("a.pdf")] = a
    manifest = make_manifest(entry("a", a, pin=False))
    assert sync(manifest, store, server).complete
    assert EntryState.read(store, manifest.file("a")).expected.sha256 == sha(a)
    # The file disappears and upstream now serves other bytes: they are refused.
    store.file_path("slides/a.pdf").unlink()
    server.content[url("a.pdf")] = blob(2000, 5)
    report = sync(manifest, store, server)
    assert report.files[0].outcome == "failed"
    assert report.files[0].failure == "download"
    assert not store.file_path("slides/a.pdf").exists()


def test_damaged_file_is_put_aside_and_fetched_again(
    store: MirrorStore, server: FakeServer
) -> None:
    a = blob(4000, 6)
    server.content[url("a.pdf")] = a
    manifest = make_manifest(entry("a", a))
    sync(manifest, store, server)
    target = store.file_path("slides/a.pdf")
    damaged = bytearray(a)
    damaged[100] ^= 0xFF
    target.write_bytes(bytes(damaged))
    report = sync(manifest, store, server)
    assert report.files[0].outcome == "downloaded"
    assert target.read_bytes() == a
    assert store.rejected_path("a", sha(bytes(damaged))).read_bytes() == damaged


def test_touched_but_intact_file_is_reverified_without_download(
    store: MirrorStore, server: FakeServer
) -> None:
    a = blob(4000, 7)
    server.content[url("a.pdf")] = a
    manifest = make_manifest(entry("a", a))
    sync(manifest, store, server)
    target = store.file_path("slides/a.pdf")
    os.utime(target, ns=(0, target.stat().st_mtime_ns + 3_000_000_000))
    server.calls.clear()
    report = sync(manifest, store, server)
    assert server.calls == []
    assert report.files[0].outcome == "up-to-date"
    record = store.record("a")
    assert record is not None
    assert record.mtime_ns == target.stat().st_mtime_ns
    assert record.source == url("a.pdf")  # the earlier provenance is kept
    assert EntryState.read(store, manifest.file("a")).unchanged_since_verified


def test_reverified_file_is_recorded_with_its_new_checksum(
    store: MirrorStore, server: FakeServer
) -> None:
    old, new = blob(1000, 30), blob(1000, 31)
    server.content[url("a.pdf")] = old
    sync(make_manifest(entry("a", old)), store, server)
    store.file_path("slides/a.pdf").write_bytes(new)  # the maintainer's newer version
    report = sync(make_manifest(entry("a", new)), store, server)
    assert report.files[0].outcome == "up-to-date"
    record = store.record("a")
    assert record is not None
    assert record.sha256 == sha(new)


def test_files_not_in_the_manifest_are_left_alone(store: MirrorStore, server: FakeServer) -> None:
    a = blob(100, 8)
    server.content[url("a.pdf")] = a
    extra = store.year_dir / "slides" / "notes.txt"
    extra.parent.mkdir(parents=True)
    extra.write_text("mine")
    sync(make_manifest(entry("a", a)), store, server)
    assert extra.read_text() == "mine"


# -- split files -----------------------------------------------------------------------------


def split_entry(whole: bytes, *, pin: bool = True, part_sha: bool = False) -> dict:
    half = len(whole) // 2
    pieces = [whole[:half], whole[half:]]
    parts = [
        {"urls": [url(f"d.part{i}")], **({"size": len(p), "sha256": sha(p)} if part_sha else {})}
        for i, p in enumerate(pieces)
    ]
    fields: dict[str, Any] = {"id": "d", "kind": "dataset", "path": "data/d.tar", "parts": parts}
    if pin:
        fields.update(size=len(whole), sha256=sha(whole))
    return fields


def serve_parts(server: FakeServer, whole: bytes) -> None:
    half = len(whole) // 2
    server.content[url("d.part0")] = whole[:half]
    server.content[url("d.part1")] = whole[half:]


def test_split_file_is_joined_verified_and_parts_removed(
    store: MirrorStore, server: FakeServer
) -> None:
    whole = blob(10_001, 9)
    serve_parts(server, whole)
    report = sync(make_manifest(split_entry(whole, part_sha=True)), store, server)
    assert report.files[0].outcome == "downloaded"
    assert store.file_path("data/d.tar").read_bytes() == whole
    keys = [call[0].key for call in server.calls]
    assert keys == [part_key("d", 0), part_key("d", 1)]
    assert server.calls[0][0].final_path == store.assembly_path("d")
    assert [call[0].offset for call in server.calls] == [0, 5000]
    assert server.calls[1][0].expected_sha256 == sha(whole[5000:])
    assert not any((store.meta_dir / "partial").iterdir())
    record = store.record("d")
    assert record is not None
    assert record.sha256 == sha(whole)


def test_split_file_that_does_not_join_to_its_pin_is_not_placed(
    store: MirrorStore, server: FakeServer
) -> None:
    whole = blob(8000, 10)
    serve_parts(server, blob(8000, 11))
    report = sync(make_manifest(split_entry(whole)), store, server)
    outcome = report.files[0]
    assert (outcome.outcome, outcome.failure) == ("failed", "integrity")
    assert sha(whole) in (outcome.reason or "")
    assert not store.file_path("data/d.tar").exists()
    assert not store.assembly_path("d").exists()  # fetched again next time
    assert "kept at" in (outcome.reason or "")
    assert len(list((store.meta_dir / "rejected").iterdir())) == 1
    assert not list(store.file_path("data/d.tar").parent.glob(".*.tmp"))


def test_finished_parts_are_not_fetched_again(store: MirrorStore, server: FakeServer) -> None:
    whole = blob(6000, 12)
    serve_parts(server, whole)
    store.ensure_dirs()
    store.assembly_path("d").write_bytes(whole[:3000])
    store.save_partial_state(part_key("d", 0), PartialState("x", bytes_held=3000, complete=True))
    report = sync(make_manifest(split_entry(whole)), store, server)
    assert report.complete
    assert [(call[0].key, call[0].offset) for call in server.calls] == [(part_key("d", 1), 3000)]


def test_bytes_past_the_finished_parts_are_not_joined(
    store: MirrorStore, server: FakeServer
) -> None:
    whole = blob(6000, 14)
    store.ensure_dirs()
    store.assembly_path("d").write_bytes(whole + b"left by something else")
    for i, piece in enumerate((whole[:3000], whole[3000:])):
        store.save_partial_state(
            part_key("d", i), PartialState("x", bytes_held=len(piece), complete=True)
        )
    report = sync(make_manifest(split_entry(whole, pin=False)), store, server)
    assert report.complete
    assert server.calls == []
    assert store.file_path("data/d.tar").read_bytes() == whole


def test_split_file_comes_whole_from_another_mirror_or_else_in_parts(
    store: MirrorStore, server: FakeServer, tmp_path: Path
) -> None:
    whole = blob(6000, 13)
    serve_parts(server, whole)
    other = tmp_path / "other"
    manifest = make_manifest(split_entry(whole))
    report = sync(manifest, store, server, from_bases=[str(other)])  # nothing there
    assert report.complete
    assert [call[0].key for call in server.calls] == ["d", part_key("d", 0), part_key("d", 1)]
    store.file_path("data/d.tar").unlink()
    server.calls.clear()
    from_uri = (other / "2022" / "data" / "d.tar").as_uri()
    server.content[from_uri] = whole
    assert sync(manifest, store, server, from_bases=[str(other)]).complete
    assert [call[0].key for call in server.calls] == ["d"]


# -- accepting upstream changes ---------------------------------------------------------------


def test_accept_upstream_records_the_new_content(store: MirrorStore, server: FakeServer) -> None:
    old, new = blob(1000, 14), blob(1200, 15)
    server.content[url("a.pdf")] = new
    manifest = make_manifest(entry("a", old))
    assert sync(manifest, store, server).files[0].failure == "download"
    report = sync(manifest, store, server, accept_upstream=["a"])
    assert report.complete
    target = server.calls[-1][0]
    assert (target.expected_size, target.expected_sha256) == (None, None)
    record = store.record("a")
    assert record is not None
    assert record.accepted_upstream
    assert EntryState.read(store, manifest.file("a")).expected.sha256 == sha(new)
    server.calls.clear()
    assert sync(manifest, store, server).files[0].outcome == "up-to-date"
    assert server.calls == []


def test_accepted_content_stays_accepted_when_fetched_again(
    store: MirrorStore, server: FakeServer
) -> None:
    old, new = blob(1000, 14), blob(1200, 15)
    server.content[url("a.pdf")] = new
    manifest = make_manifest(entry("a", old))
    assert sync(manifest, store, server, accept_upstream=["a"]).complete
    store.file_path(manifest.file("a").path).unlink()  # lost on disk
    assert sync(manifest, store, server).files[0].outcome == "downloaded"
    record = store.record("a")
    assert record is not None and record.accepted_upstream
    assert local_state(store, manifest.file("a")).status == "ok"


# -- failures --------------------------------------------------------------------------------


def raising(error: BaseException) -> Callable[[Target, Any], None]:
    def hook(target: Target, events: Any) -> None:
        raise error

    return hook


def test_failures_are_reported_per_file_by_kind(store: MirrorStore, server: FakeServer) -> None:
    ok = blob(100, 16)
    server.content[url("ok.pdf")] = ok
    server.hooks["changed"] = raising(
        UpstreamChangedError("x", "a" * 64, {url("changed.pdf"): "b" * 64}, [], "differs")
    )
    server.hooks["disk"] = raising(StorageError("cannot write to disk", where="/m"))
    server.hooks["kaggle"] = raising(
        ManualStepRequired("rules not accepted", instructions="accept the rules at K")
    )
    manifest = make_manifest(
        entry("ok", ok), entry("gone"), entry("changed"), entry("disk"), entry("kaggle")
    )
    report = sync(manifest, store, server, jobs=2)
    by_id = {f.id: f for f in report.files}
    assert by_id["ok"].outcome == "downloaded"
    assert (by_id["gone"].outcome, by_id["gone"].failure) == ("failed", "download")
    assert "404" in (by_id["gone"].reason or "")
    assert by_id["changed"].failure == "integrity"
    assert by_id["disk"].failure == "storage"
    assert (by_id["kaggle"].outcome, by_id["kaggle"].reason) == ("manual", "accept the rules at K")
    assert not report.complete
    assert [f.id for f in report.files] == ["ok", "gone", "changed", "disk", "kaggle"]


def test_manual_only_file_is_reported_pending(store: MirrorStore, server: FakeServer) -> None:
    manual = {"id": "m", "kind": "dataset", "path": "data/m.zip", "manual": "Log in at X."}
    report = sync(make_manifest(manual), store, server)
    assert (report.files[0].outcome, report.files[0].reason) == ("manual", "Log in at X.")
    assert server.calls == []


def test_offline_reports_what_would_be_downloaded(store: MirrorStore, server: FakeServer) -> None:
    report = sync(make_manifest(entry("a")), store, server, offline=True)
    assert report.files[0].failure == "download"
    assert url("a.pdf") in (report.files[0].reason or "")
    assert server.calls == []


def test_offline_is_decided_in_the_plan_with_one_wording(
    store: MirrorStore, server: FakeServer
) -> None:
    """Moved from the downloader's offline tests: the plan withholds every network source (a
    Drive one too), so nothing is requested; a file re-hashed to other bytes gets the same
    reason as a missing one."""
    good = blob(3000, 21)
    drive = "gdrive:1AbCdEfGhIjKlMnOp"
    manifest = make_manifest(entry("a", urls=[url("a.pdf"), drive]), entry("b", good))
    target = store.file_path("slides/b.pdf")
    target.parent.mkdir(parents=True)
    target.write_bytes(blob(3000, 22))  # same size, other bytes: found only by re-hashing
    plan = plan_sync(manifest, store, offline=True)
    report = run_sync(plan, store, server.factory, session_factory=server.new_session)
    assert server.calls == []
    a, b = report.files
    assert (a.outcome, a.failure, b.outcome, b.failure) == ("failed", "download") * 2
    assert a.reason == f"offline: would download from {url('a.pdf')}, {drive}"
    assert b.reason == f"offline: would download from {url('b.pdf')}"
    assert [f.reason for f in report.files] == [item.offline_reason for item in plan.items]
    assert (a.problem and a.problem.kind, b.problem and b.problem.kind) == ("missing", "checksum")
    assert report.offline and report.to_json()["files"][1]["problem"]["kind"] == "checksum"


def test_not_enough_space_stops_before_any_download(store: MirrorStore, server: FakeServer) -> None:
    a = blob(5000, 17)
    server.content[url("a.pdf")] = a
    plan = plan_sync(make_manifest(entry("a", a)), store)
    with pytest.raises(StorageError, match="not enough free space") as caught:
        run_sync(
            plan,
            store,
            server.factory,
            session_factory=server.new_session,
            disk_usage=lambda path: SimpleNamespace(free=4000),
        )
    assert str(store.year_dir) in caught.value.message
    assert "5.0 kB still to download, 4.0 kB free" in caught.value.message
    assert server.calls == []
    check_free_space(plan, store, lambda path: SimpleNamespace(free=5000))


def test_a_held_lock_makes_sync_give_up_clearly(store: MirrorStore, server: FakeServer) -> None:
    plan = plan_sync(make_manifest(entry("a")), store)
    with store.lock(), pytest.raises(LockedError, match="in use by another"):
        run_sync(plan, store, server.factory, session_factory=server.new_session, lock_wait=0)


# -- concurrency -----------------------------------------------------------------------------


def test_at_most_per_host_transfers_to_one_host(store: MirrorStore, server: FakeServer) -> None:
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    def busy(target: Target, events: Any) -> None:
        host = "b" if target.key.startswith("b") else "a"
        with lock:
            active[host] = active.get(host, 0) + 1
            peak[host] = max(peak.get(host, 0), active[host])
        time.sleep(0.02)
        with lock:
            active[host] -= 1

    entries = []
    for i in range(6):
        for host in ("a", "b"):
            entry_id = f"{host}{i}"
            data = blob(10, i)
            server.content[url(f"{entry_id}.pdf", f"{host}.example")] = data
            server.hooks[entry_id] = busy
            entries.append(entry(entry_id, data, urls=[url(f"{entry_id}.pdf", f"{host}.example")]))
    report = sync(make_manifest(*entries), store, server, jobs=6, per_host=2)
    assert report.complete
    assert peak == {"a": 2, "b": 2}
    threads = {call[3] for call in server.calls}
    sessions_by_thread = {call[3]: call[2] for call in server.calls}
    assert len(server.sessions) == len(threads) <= 6  # one session per worker thread
    assert all(s.closed for s in server.sessions)  # type: ignore[attr-defined]
    assert len(set(map(id, sessions_by_thread.values()))) == len(threads)


def test_a_free_worker_takes_another_host_while_one_is_at_its_cap(
    store: MirrorStore, server: FakeServer
) -> None:
    together = threading.Barrier(3, timeout=5)  # breaks unless b0 starts beside a0 and a1

    def meet(target: Target, events: Any) -> None:
        together.wait()

    entries = []
    for entry_id, size in (("a0", 300), ("a1", 200), ("a2", 100), ("b0", 10)):
        data = blob(size, size)
        source = url(f"{entry_id}.pdf", f"{entry_id[0]}.example")
        server.content[source] = data
        if entry_id != "a2":
            server.hooks[entry_id] = meet
        entries.append(entry(entry_id, data, urls=[source]))
    report = sync(make_manifest(*entries), store, server, jobs=3, per_host=2)
    assert report.complete
    assert [call[0].key for call in server.calls][-1] == "a2"  # waited for a free slot on a


def test_a_mirror_the_user_named_gets_every_job(store: MirrorStore, server: FakeServer) -> None:
    together = threading.Barrier(3, timeout=5)  # breaks unless 3 transfers run at once

    def meet(target: Target, events: Any) -> None:
        together.wait()

    entries = []
    for i in range(6):
        data = blob(10, i)
        server.content[f"https://lan.example/m/course.example.edu/ml/f{i}.pdf"] = data
        server.hooks[f"f{i}"] = meet
        entries.append(entry(f"f{i}", data))
    report = sync(
        make_manifest(*entries),
        store,
        server,
        jobs=4,
        per_host=1,
        mirrors=["https://lan.example/m"],
    )
    assert report.complete
    assert {(o.source or "").split("/")[2] for o in report.files} == {"lan.example"}


def test_interrupt_stops_running_transfers_and_keeps_partials(
    store: MirrorStore, server: FakeServer
) -> None:
    stopped = threading.Event()
    progressing = threading.Event()

    def endless(target: Target, events: Any) -> None:
        partial = store.partial_path(target.key)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(b"x" * 10)
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                progressing.set()
                events.advanced(target.key, 10)
                time.sleep(0.001)
        except SyncCancelled:
            stopped.set()
            raise

    def interrupt(target: Target, events: Any) -> None:
        progressing.wait(5)
        raise KeyboardInterrupt

    server.hooks.update({"slow": endless, "ctrl-c": interrupt})
    plan = plan_sync(make_manifest(entry("slow"), entry("ctrl-c")), store)
    with pytest.raises(KeyboardInterrupt):
        run_sync(plan, store, server.factory, session_factory=server.new_session, jobs=2)
    assert stopped.is_set()
    assert store.partial_path("slow").read_bytes() == b"x" * 10


# -- verified writes ------------------------------------------------------------------------


def test_write_verified_places_nothing_on_mismatch(tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(blob(3000, 18))
    target = tmp_path / "out" / "file.bin"
    with pytest.raises(IntegrityError, match="sha256 differs: expected 0000"):
        write_verified(target, [source], size=3000, sha256="0" * 64)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    with pytest.raises(IntegrityError, match="size differs: expected 10 bytes, got 3000"):
        write_verified(target, [source], size=10, sha256=None)
    assert write_verified(target, [source, source], size=None, sha256=None)[0] == 6000


# -- progress display (cli/progress.py) ------------------------------------------------------


def test_largest_transfers_start_first_and_unknown_sizes_before_them(store: MirrorStore) -> None:
    manifest = make_manifest(
        entry("small", blob(10, 1)),
        entry("unknown"),
        entry("big", blob(1000, 2)),
        entry("middle", blob(100, 3)),
    )
    plan = plan_sync(manifest, store)
    assert [item.id for item in largest_first(plan.items)] == ["unknown", "big", "middle", "small"]


def test_kaggle_credentials_are_loaded_whatever_the_case_of_the_scheme(
    store: MirrorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "student")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    manifest = make_manifest(entry("a", urls=["Kaggle:ml2022spring-hw1/a.csv"]))
    credentials = kaggle_credentials_for(plan_sync(manifest, store))
    assert credentials is not None and credentials.username == "student"
