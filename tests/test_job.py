"""One file brought up to date by a FileJob on the calling thread: no pool, no scheduler."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from factories import blob, file_entry, make_manifest, sha
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.job import FileJob, SyncCancelled, settled_outcome
from lhymirror.fetch.plan import PlanItem, plan_sync
from lhymirror.mirror.store import MirrorStore

BASE = "https://course.example.edu/ml"


def item_of(store: MirrorStore, *files: dict[str, Any]) -> PlanItem:
    manifest = make_manifest(*files)
    (item,) = plan_sync(manifest, store).items
    return item


def job(store: MirrorStore, **options: Any) -> FileJob:
    downloader = Downloader(
        store, policy=RetryPolicy(attempts=2), sleep=lambda _: None, rng=random.Random(0)
    )
    return FileJob(store, downloader, new_session(), **options)


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


@responses.activate
def test_a_missing_file_is_fetched_verified_and_recorded_on_this_thread(
    store: MirrorStore,
) -> None:
    data = blob(5000, 1)
    responses.get(f"{BASE}/a.pdf", body=data, headers={"ETag": '"v1"'})
    item = item_of(store, file_entry("a", data))
    threads_before = set(threading.enumerate())  # other tests may have left idle threads
    outcome = job(store).run(item)
    assert (outcome.outcome, outcome.size, outcome.sha256) == ("downloaded", 5000, sha(data))
    assert store.file_path("slides/a.pdf").read_bytes() == data
    record = store.record("a")
    assert record is not None
    assert (record.sha256, record.source, record.etag) == (sha(data), f"{BASE}/a.pdf", '"v1"')
    assert set(threading.enumerate()) <= threads_before  # no thread of the job's outlives it


@responses.activate
def test_a_split_file_is_fetched_in_parts_and_joined(store: MirrorStore) -> None:
    whole = blob(9000, 2)
    responses.get(f"{BASE}/d.part0", body=whole[:4000])
    responses.get(f"{BASE}/d.part1", body=whole[4000:])
    parts = [{"urls": [f"{BASE}/d.part0"]}, {"urls": [f"{BASE}/d.part1"]}]
    entry = {"id": "d", "kind": "dataset", "path": "data/d.tar", "parts": parts}
    item = item_of(store, {**entry, "size": len(whole), "sha256": sha(whole)})
    outcome = job(store).run(item)
    assert (outcome.outcome, outcome.bytes_received) == ("downloaded", 9000)
    assert store.file_path("data/d.tar").read_bytes() == whole
    assert not store.assembly_path("d").exists()


@responses.activate
def test_a_touched_intact_file_is_reverified_without_a_request(store: MirrorStore) -> None:
    data = blob(3000, 3)
    responses.get(f"{BASE}/a.pdf", body=data)
    assert job(store).run(item_of(store, file_entry("a", data))).verified
    target = store.file_path("slides/a.pdf")
    os.utime(target, ns=(0, target.stat().st_mtime_ns + 3_000_000_000))
    item = item_of(store, file_entry("a", data))
    assert item.action == "verify"
    outcome = job(store).run(item)
    assert outcome.outcome == "up-to-date"
    assert len(responses.calls) == 1  # only the first download


@responses.activate
def test_failures_become_a_failed_outcome(store: MirrorStore) -> None:
    data = blob(3000, 4)
    responses.get(f"{BASE}/a.pdf", status=404)
    outcome = job(store).run(item_of(store, file_entry("a", data)))
    assert (outcome.outcome, outcome.failure) == ("failed", "download")
    assert f"{BASE}/a.pdf: HTTP 404 Not Found" in (outcome.reason or "")
    assert not store.file_path("slides/a.pdf").exists()


def test_a_cancelled_run_starts_no_job(store: MirrorStore) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(SyncCancelled):
        job(store, cancelled=cancelled).run(item_of(store, file_entry("a", blob(10, 5))))


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        ({"status": 404}, "gone"),
        ({"status": 410}, "gone"),
        ({"status": 403}, "other"),
        ({"body": b"<html><body>quota</body></html>", "content_type": "text/html"}, "html"),
        ({"body": b"%PDF-" + bytes(2995)}, "checksum"),
        ({"body": requests.ConnectionError("[Errno 111] Connection refused")}, "unreachable"),
    ],
)
@responses.activate
def test_a_failed_file_says_why_by_cause(
    store: MirrorStore, answer: dict[str, Any], cause: str
) -> None:
    responses.get(f"{BASE}/a.pdf", **answer)
    outcome = job(store).run(item_of(store, file_entry("a", blob(3000, 6))))
    assert (outcome.outcome, outcome.cause) == ("failed", cause)


def test_a_manual_file_and_an_offline_one_say_so(store: MirrorStore) -> None:
    manual = item_of(store, {"id": "m", "kind": "slide", "path": "slides/m.pdf", "manual": "ask"})
    assert manual.action == "manual"
    assert settled_outcome(manual).cause == "manual"
    manifest = make_manifest(file_entry("a", blob(10, 7)))
    (offline,) = plan_sync(manifest, store, offline=True).items
    assert settled_outcome(offline).cause == "offline"
