"""Tests of lhymirror.fetch.download: one target, many sources, resumable and verified.

Exact HTTP semantics are tested with ``responses``; cut connections, changing ETags and stalls
against the real threaded server of tests/httpserver.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from factories import blob, sha
from httpserver import CourseServer, Fault
from lhymirror.core.errors import DownloadError, StorageError, storage_errors
from lhymirror.fetch.download import HTML_REASON, Downloader
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.partial import PartialDownload
from lhymirror.fetch.transfer import (
    AssemblyDigest,
    FetchResult,
    ManualStepRequired,
    Target,
    UpstreamChangedError,
)
from lhymirror.mirror.store import MirrorStore, PartialState

URL = "https://files.example.org/ml2022/a.bin"
URL_B = "https://mirror.example.net/ml2022/a.bin"
ETAG = '"abc123"'
LAST_MODIFIED = "Mon, 15 Jan 2024 12:00:00 GMT"


@dataclass
class Recorder:
    """A TransferEvents that remembers every call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def started(self, key: str, total: int | None, offset: int) -> None:
        self.calls.append(("started", key, total, offset))

    def advanced(self, key: str, nbytes: int) -> None:
        self.calls.append(("advanced", key, nbytes))

    def restarted(self, key: str, offset: int) -> None:
        self.calls.append(("restarted", key, offset))

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        self.calls.append(("retrying", key, source, reason, delay))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]

    def advanced_bytes(self) -> int:
        return sum(call[2] for call in self.named("advanced"))


@dataclass
class Env:
    store: MirrorStore
    events: Recorder
    sleeps: list[float]
    make: Callable[..., Downloader]

    def target(
        self,
        data: bytes | None,
        *,
        name: str = "slides/a.bin",
        key: str = "a",
        pinned: bool = True,
        size: bool = True,
    ) -> Target:
        return Target(
            key=key,
            final_path=self.store.file_path(name),
            expected_size=len(data) if data is not None and size else None,
            expected_sha256=sha(data) if data is not None and pinned else None,
            name=name,
        )

    def fetch(self, target: Target, sources: list[str], **options: Any) -> FetchResult:
        return self.make(**options).fetch(target, sources, new_session())

    def hold_partial(
        self, target: Target, prefix: bytes, *, url: str = URL, **validators: str | None
    ) -> None:
        """Leave a partial download behind, as a killed earlier run would."""
        path = self.store.partial_path(target.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(prefix)
        self.store.save_partial_state(
            target.key,
            PartialState(
                url=url,
                etag=validators.get("etag", ETAG),
                last_modified=validators.get("last_modified", LAST_MODIFIED),
                expected_size=target.expected_size,
                expected_sha256=target.expected_sha256,
                bytes_held=len(prefix),
            ),
        )


@pytest.fixture
def env(tmp_path: Path) -> Env:
    store = MirrorStore(tmp_path / "mirror", 2022)
    events = Recorder()
    sleeps: list[float] = []

    def make(**options: Any) -> Downloader:
        options.setdefault("policy", RetryPolicy(attempts=3, connect_timeout=2, read_timeout=2))
        return Downloader(
            store, sleep=sleeps.append, events=events, rng=random.Random(0), **options
        )

    return Env(store, events, sleeps, make)


def ranged(
    data: bytes, *, etag: str | None = ETAG, last_modified: str | None = LAST_MODIFIED
) -> Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]:
    """A ``responses`` callback that serves *data* like a server honouring Range + If-Range."""

    def serve(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        wanted = request.headers.get("Range")
        condition = request.headers.get("If-Range")
        if wanted and condition in (etag, last_modified):
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return 206, headers, data[start:]
        return 200, headers, data

    return serve


def sent(index: int) -> requests.PreparedRequest:
    return responses.calls[index].request


def assert_no_partial(env: Env, key: str = "a") -> None:
    assert not env.store.partial_path(key).exists()
    assert not env.store.partial_state_path(key).exists()


# -- a fresh download ----------------------------------------------------------------------


@responses.activate
def test_fresh_download_is_verified_and_moved_into_place(env: Env) -> None:
    data = blob(3 * 1024 * 1024 + 17, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)

    result = env.fetch(target, [URL])

    assert target.final_path.read_bytes() == data
    assert result == FetchResult("a", len(data), sha(data), URL, ETAG, LAST_MODIFIED, 0, len(data))
    assert_no_partial(env)
    request = sent(0)
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.headers["User-Agent"].startswith("lhymirror/")
    assert "Range" not in request.headers and "If-Range" not in request.headers
    assert env.events.named("started") == [("started", "a", len(data), 0)]
    assert env.events.advanced_bytes() == len(data)


@responses.activate
def test_unpinned_download_reports_what_it_got(env: Env) -> None:
    data = blob(5000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    result = env.fetch(env.target(None), [URL])
    assert (result.size, result.sha256) == (len(data), sha(data))


@responses.activate
def test_server_name_is_never_used(env: Env) -> None:
    data = blob(100, 1)
    responses.get(URL, body=data, headers={"Content-Disposition": 'attachment; filename="../x"'})
    target = env.target(data)
    env.fetch(target, [URL])
    assert target.final_path.read_bytes() == data
    assert sorted(p.name for p in target.final_path.parent.iterdir()) == ["a.bin"]


# -- resuming with proof -----------------------------------------------------------------------


@responses.activate
def test_resume_sends_range_with_etag_and_accepts_matching_206(env: Env) -> None:
    data = blob(200_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data[:70_000])

    result = env.fetch(target, [URL])

    assert sent(0).headers["Range"] == "bytes=70000-"
    assert sent(0).headers["If-Range"] == ETAG
    assert sent(0).headers["Accept-Encoding"] == "identity"
    assert target.final_path.read_bytes() == data
    assert (result.resumed_from, result.bytes_received) == (70_000, 130_000)
    assert env.events.named("started") == [("started", "a", 200_000, 70_000)]
    assert_no_partial(env)


@responses.activate
def test_resume_falls_back_to_last_modified_without_etag(env: Env) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data, etag=None))
    target = env.target(data)
    env.hold_partial(target, data[:4000], etag=None)
    result = env.fetch(target, [URL])
    assert sent(0).headers["If-Range"] == LAST_MODIFIED
    assert result.resumed_from == 4000


@responses.activate
def test_no_resume_without_a_validator(env: Env) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data, etag=None))
    target = env.target(data)
    env.hold_partial(target, data[:4000], etag=None, last_modified=None)
    result = env.fetch(target, [URL])
    assert "Range" not in sent(0).headers
    assert result.resumed_from == 0
    assert target.final_path.read_bytes() == data


@responses.activate
def test_no_resume_from_bytes_of_another_url(env: Env) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data[:4000], url=URL_B)
    assert env.fetch(target, [URL]).resumed_from == 0
    assert "Range" not in sent(0).headers


@responses.activate
def test_no_resume_when_the_pin_changed_since(env: Env) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data[:4000])
    state = env.store.partial_state("a")
    assert state is not None
    state.expected_sha256 = "0" * 64
    env.store.save_partial_state("a", state)
    assert env.fetch(target, [URL]).resumed_from == 0


@responses.activate
def test_206_at_another_offset_discards_and_restarts_from_zero(env: Env) -> None:
    data = blob(10_000, 1)
    wrong = {"Content-Range": f"bytes 0-9999/{len(data)}", "ETag": ETAG}
    responses.get(URL, status=206, headers=wrong, body=data)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data[:4000])

    result = env.fetch(target, [URL])

    assert sent(0).headers["Range"] == "bytes=4000-"
    assert "Range" not in sent(1).headers
    assert ("restarted", "a", 0) in env.events.calls
    assert result.resumed_from == 0
    assert target.final_path.read_bytes() == data
    assert env.sleeps == []  # restarting is not a reason to wait


@responses.activate
def test_206_whose_total_differs_from_the_expected_size_restarts(env: Env) -> None:
    data = blob(10_000, 1)
    odd = {"Content-Range": "bytes 4000-9999/20000", "ETag": ETAG}
    responses.get(URL, status=206, headers=odd, body=data[4000:])
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data[:4000])
    assert env.fetch(target, [URL]).resumed_from == 0
    assert target.final_path.read_bytes() == data


@responses.activate
def test_200_to_a_range_request_restarts_from_zero(env: Env) -> None:
    data = blob(10_000, 1)
    responses.get(URL, body=data, headers={"ETag": '"new"'})
    target = env.target(data)
    env.hold_partial(target, data[:4000])

    result = env.fetch(target, [URL])

    assert sent(0).headers["Range"] == "bytes=4000-"
    assert env.events.named("restarted") == [("restarted", "a", 0)]
    assert (result.resumed_from, result.etag) == (0, '"new"')
    assert target.final_path.read_bytes() == data


@responses.activate
def test_416_with_the_whole_file_held_verifies_it_as_complete(env: Env) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data)
    result = env.fetch(target, [URL])
    assert len(responses.calls) == 1
    assert (result.resumed_from, result.bytes_received) == (10_000, 0)
    assert target.final_path.read_bytes() == data
    assert_no_partial(env)


@responses.activate
def test_416_with_an_incomplete_partial_restarts(env: Env) -> None:
    data = blob(10_000, 1)
    responses.get(URL, status=416, headers={"Content-Range": "bytes */12000"})
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data, size=False)
    env.hold_partial(target, data[:10_000])
    result = env.fetch(target, [URL])
    assert "Range" not in sent(1).headers
    assert result.resumed_from == 0
    assert target.final_path.read_bytes() == data


@responses.activate
def test_resumed_bytes_that_fail_verification_are_fetched_again_from_zero(env: Env) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, b"\0" * 4000)  # a damaged prefix (e.g. after a power loss)

    result = env.fetch(target, [URL])

    assert sent(0).headers["Range"] == "bytes=4000-"
    assert "Range" not in sent(1).headers
    assert result.resumed_from == 0
    assert target.final_path.read_bytes() == data
    assert len(list(env.store.rejected_path("a", "0" * 64).parent.iterdir())) == 1


def test_sidecar_is_written_after_the_first_bytes_then_updated(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed mid-transfer leaves a sidecar that says how much is held."""
    monkeypatch.setattr("lhymirror.fetch.partial.FIRST_STATE_AT", 4)
    monkeypatch.setattr("lhymirror.fetch.partial.STATE_EVERY", 6)
    target = env.target(blob(20, 1))
    partial = PartialDownload(env.store, target)
    partial.begin(URL, ETAG, None, 0)
    assert env.store.partial_state("a") is None  # nothing held yet: nothing to prove
    with partial.appending() as handle:
        partial.append(handle, b"123")
        assert env.store.partial_state("a") is None
        partial.append(handle, b"45")
        state = env.store.partial_state("a")
        assert state is not None and (state.bytes_held, state.url, state.etag) == (5, URL, ETAG)
        partial.append(handle, b"12345")  # 10 held: under 5 + 6
        assert (state := env.store.partial_state("a")) and state.bytes_held == 5
        partial.append(handle, b"1")
        assert (state := env.store.partial_state("a")) and state.bytes_held == 11


def test_a_restart_after_a_failed_attempt_writes_the_new_sidecar_past_the_threshold_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lhymirror.fetch.partial.FIRST_STATE_AT", 10)
    partial = PartialDownload(env.store, env.target(blob(40, 1)))
    partial.begin(URL, ETAG, None, 0)
    with pytest.raises(ConnectionError), partial.appending() as handle:
        partial.append(handle, b"12345")
        raise ConnectionError("the first source went away")
    state = env.store.partial_state("a")
    assert state is not None and (state.url, state.bytes_held) == (URL, 5)  # kept on a failure
    partial.begin(URL_B, '"other"', None, 0)  # the next source, from zero
    assert env.store.partial_state("a") is None
    with partial.appending() as handle:
        partial.append(handle, b"123456789")
        assert env.store.partial_state("a") is None
        partial.append(handle, b"0")
        state = env.store.partial_state("a")
        assert state is not None and (state.url, state.etag, state.bytes_held) == (
            URL_B,
            '"other"',
            10,
        )


def test_a_fresh_start_removes_the_sidecar_of_other_bytes_first(env: Env) -> None:
    """Bytes from an earlier source must never be resumed under a sidecar that is not theirs."""
    target = env.target(blob(20, 1))
    env.store.partial_path("a").parent.mkdir(parents=True, exist_ok=True)
    env.store.partial_path("a").write_bytes(b"old bytes")
    old = PartialState(
        url="https://old.example/a", etag='"old"', last_modified=None, expected_size=20,
        expected_sha256=target.expected_sha256, bytes_held=9,
    )  # fmt: skip
    env.store.save_partial_state("a", old)
    partial = PartialDownload(env.store, target)
    partial.load()
    assert partial.resume_offset("https://old.example/a") == 9
    partial.begin(URL, ETAG, None, 0)  # the old source now answers 200, say: start again
    with partial.appending() as handle:
        partial.append(handle, b"new")
    assert env.store.partial_state("a") is None
    assert env.store.partial_path("a").read_bytes() == b"new"
    later = PartialDownload(env.store, target)  # the next run, after a kill
    later.load()
    assert later.resume_offset("https://old.example/a") == 0
    assert later.resume_offset(URL) == 0  # no proof where the bytes came from: from zero


@responses.activate
def test_a_small_download_that_ends_well_writes_no_sidecar(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files dominate a course: each sidecar costs a file creation, a rename, a removal."""
    data = blob(300_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    saved: list[int] = []
    real_save = env.store.save_partial_state
    monkeypatch.setattr(
        env.store,
        "save_partial_state",
        lambda key, state: (saved.append(state.bytes_held), real_save(key, state)),
    )
    target = env.target(data)

    env.fetch(target, [URL])

    assert saved == []
    assert not any(env.store.partial_path("a").parent.iterdir())
    assert target.final_path.read_bytes() == data


def test_weak_etag_is_not_used_as_proof(env: Env) -> None:
    partial = PartialDownload(env.store, env.target(blob(10, 1)))
    partial.begin(URL, 'W/"weak"', LAST_MODIFIED, 0)
    assert partial.validator == LAST_MODIFIED


@responses.activate
def test_interrupted_transfer_keeps_a_resumable_partial(env: Env) -> None:
    data = blob(3 * 1024 * 1024, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))

    class Interrupting(Recorder):
        def advanced(self, key: str, nbytes: int) -> None:
            raise KeyboardInterrupt

    target = env.target(data)
    downloader = Downloader(env.store, events=Interrupting(), sleep=env.sleeps.append)
    with pytest.raises(KeyboardInterrupt):
        downloader.fetch(target, [URL], new_session())
    held = env.store.partial_path("a").stat().st_size
    state = env.store.partial_state("a")
    assert held > 0 and state is not None
    assert (state.bytes_held, state.url, state.etag) == (held, URL, ETAG)
    assert env.fetch(target, [URL]).resumed_from == held


# -- parts of a split file, kept in place in the assembly ------------------------------------

EARLIER_PARTS = blob(5000, 9)


def part_in_place(env: Env, data: bytes, held: bytes = b"", **fields: Any) -> Target:
    """A part whose assembly already holds the parts before it (and *held* of its own)."""
    assembly = env.store.assembly_path("d")
    assembly.parent.mkdir(parents=True, exist_ok=True)
    assembly.write_bytes(EARLIER_PARTS + held)
    target = Target(
        "d.part01", assembly, len(data), sha(data), "data/d.tar", offset=len(EARLIER_PARTS)
    )
    if held:
        env.store.save_partial_state(
            target.key,
            PartialState(URL, ETAG, LAST_MODIFIED, len(data), sha(data), len(held), **fields),
        )
    return target


@pytest.mark.parametrize("etag", [ETAG, None], ids=["resumed", "server-ignores-range"])
@responses.activate
def test_a_part_is_appended_in_place_and_stays_there(env: Env, etag: str | None) -> None:
    data = blob(100_000, 3)
    responses.add_callback(responses.GET, URL, callback=ranged(data, etag=etag, last_modified=None))
    target = part_in_place(env, data, held=data[:40_000])

    result = env.fetch(target, [URL])

    assert target.final_path.read_bytes() == EARLIER_PARTS + data
    assert result.resumed_from == (40_000 if etag else 0)
    assert (result.size, result.sha256) == (len(data), sha(data))
    state = env.store.partial_state(target.key)
    assert state is not None and state.complete and state.bytes_held == len(data)
    assert not env.store.partial_path(target.key).exists()


@responses.activate
def test_a_part_without_its_own_checksum_is_hashed_only_to_name_a_failure(env: Env) -> None:
    data = blob(3000, 6)
    responses.get(URL, body=data)
    target = replace(part_in_place(env, data), expected_sha256=None)
    assert env.fetch(target, [URL]).sha256 is None  # the joined whole is checked instead

    too_short = replace(target, key="d.part02", offset=len(EARLIER_PARTS) + len(data))
    too_short = replace(too_short, expected_size=len(data) + 1)
    with pytest.raises(DownloadError, match="size differs"):
        env.fetch(too_short, [URL])
    assert env.store.rejected_path("d.part02", sha(data)).read_bytes() == data
    assert target.final_path.read_bytes() == EARLIER_PARTS + data


@responses.activate
def test_a_bad_part_is_put_aside_and_the_parts_before_it_stay(env: Env) -> None:
    good, bad = blob(3000, 4), blob(3000, 5)
    responses.get(URL, body=bad)
    target = part_in_place(env, good)

    with pytest.raises(UpstreamChangedError):
        env.fetch(target, [URL])

    assert target.final_path.read_bytes() == EARLIER_PARTS
    assert env.store.rejected_path(target.key, sha(bad)).read_bytes() == bad
    assert env.store.partial_state(target.key) is None


# -- retries -------------------------------------------------------------------------------


@responses.activate
def test_5xx_and_429_are_retried_with_backoff(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, status=503)
    responses.get(URL, status=429)
    responses.get(URL, status=500)
    responses.get(URL, body=data)
    target = env.target(data)
    result = env.fetch(target, [URL], policy=RetryPolicy(attempts=4, backoff_base=1.0))
    assert result.sha256 == sha(data)
    assert len(env.sleeps) == 3
    assert [0 <= s <= cap for s, cap in zip(env.sleeps, (1, 2, 4), strict=True)] == [True] * 3
    reasons = [call[3] for call in env.events.named("retrying")]
    assert reasons == ["HTTP 503", "HTTP 429", "HTTP 500"]


@responses.activate
def test_retry_after_seconds_is_honoured(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, status=503, headers={"Retry-After": "7"})
    responses.get(URL, body=data)
    env.fetch(env.target(data), [URL])
    assert env.sleeps == [7.0]


@responses.activate
def test_retry_after_date_is_honoured(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, status=429, headers={"Retry-After": "Fri, 01 Mar 2024 12:00:42 GMT"})
    responses.get(URL, body=data)
    now = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    env.fetch(env.target(data), [URL], now=lambda: now)
    assert env.sleeps == [42.0]


@responses.activate
def test_retry_after_beyond_the_cap_moves_to_the_next_source(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, status=429, headers={"Retry-After": "3600"})
    responses.get(URL_B, body=data)
    result = env.fetch(env.target(data), [URL, URL_B])
    assert result.source == URL_B
    assert env.sleeps == []
    assert [call.request.url for call in responses.calls] == [URL, URL_B]


@responses.activate
def test_connection_errors_are_retried(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, body=requests.ConnectionError("[Errno 111] Connection refused"))
    responses.get(URL, body=data)
    assert env.fetch(env.target(data), [URL]).sha256 == sha(data)
    assert env.events.named("retrying")[0][3] == "connection failed (Connection refused)"


@responses.activate
def test_a_source_is_given_up_after_its_attempts(env: Env) -> None:
    responses.get(URL, status=500)
    with pytest.raises(DownloadError) as caught:
        env.fetch(env.target(blob(10, 1)), [URL])
    assert len(responses.calls) == 3
    assert len(env.sleeps) == 2
    assert "gave up after 3 attempts" in str(caught.value)
    assert "Run the same command again to resume" in str(caught.value)


@responses.activate
def test_404_is_not_retried_and_the_next_source_is_used(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, status=404)
    responses.get(URL_B, body=data)
    result = env.fetch(env.target(data), [URL, URL_B])
    assert result.source == URL_B
    assert [call.request.url for call in responses.calls] == [URL, URL_B]
    assert env.sleeps == []


# -- failover and the final error ------------------------------------------------------------


@responses.activate
def test_every_source_failing_names_each_reason(env: Env) -> None:
    responses.get(URL, status=403)
    responses.get(URL_B, status=410)
    with pytest.raises(DownloadError) as caught:
        env.fetch(env.target(blob(10, 1)), [URL, URL_B])
    message = str(caught.value)
    assert message.startswith("download failed (slides/a.bin): ")
    assert f"{URL}: HTTP 403" in message and f"{URL_B}: HTTP 410" in message
    assert type(caught.value) is DownloadError


def test_no_sources_at_all(env: Env) -> None:
    with pytest.raises(DownloadError, match="no source"):
        env.fetch(env.target(blob(10, 1)), [])


@responses.activate
def test_html_page_by_content_type_is_refused_before_saving(env: Env) -> None:
    data = blob(1000, 1)
    page = b"<!DOCTYPE html><html><title>Sign in</title></html>"
    responses.get(URL, body=page, content_type="text/html; charset=utf-8")
    responses.get(URL_B, body=data)
    target = env.target(data)
    env.hold_partial(target, data[:300], url=URL_B, etag=None, last_modified=None)
    assert env.fetch(target, [URL, URL_B]).source == URL_B
    with pytest.raises(DownloadError, match="received an HTML page instead of the file"):
        env.fetch(env.target(data, key="b", name="b.bin"), [URL])
    assert not env.store.partial_path("b").exists()


@responses.activate
def test_html_page_by_its_first_bytes_is_refused(env: Env) -> None:
    page = b"\n  <!doctype html>\n<html><body>Quota exceeded</body></html>"
    responses.get(URL, body=page, content_type="application/octet-stream")
    with pytest.raises(DownloadError, match=re.escape(HTML_REASON)):
        env.fetch(env.target(None), [URL])
    assert not env.store.partial_path("a").exists()


@responses.activate
def test_an_html_target_may_be_html(env: Env) -> None:
    page = b"<!DOCTYPE html><html><body>course page</body></html>"
    responses.get(URL, body=page, content_type="text/html")
    target = env.target(page, name="pages/index.html")
    assert env.fetch(target, [URL]).sha256 == sha(page)


@responses.activate
def test_unpinned_pdf_must_look_like_a_pdf(env: Env) -> None:
    responses.get(URL, body=b"PK\x03\x04 a zip, not a pdf", content_type="application/pdf")
    with pytest.raises(DownloadError, match="not a PDF"):
        env.fetch(env.target(None, name="slides/lecture1.pdf"), [URL])


@responses.activate
def test_gzip_encoded_answer_fails_the_source(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, body=b"\x1f\x8b...", headers={"Content-Encoding": "gzip"})
    responses.get(URL_B, body=data)
    assert env.fetch(env.target(data), [URL, URL_B]).source == URL_B
    assert len(responses.calls) == 2


@responses.activate
def test_offered_size_mismatch_fails_before_downloading(env: Env) -> None:
    data = blob(1000, 1)
    responses.get(URL, body=blob(999, 1), auto_calculate_content_length=True)
    with pytest.raises(
        UpstreamChangedError,
        match=r"size differs: expected 1000 bytes, got 999 \(the size on offer\)",
    ):
        env.fetch(env.target(data), [URL])
    assert not env.store.partial_path("a").exists()


@responses.activate
def test_unpinned_size_mismatch_found_after_download_is_a_download_error(env: Env) -> None:
    responses.get(URL, body=blob(999, 1))  # no Content-Length: found once the body is in
    target = Target("a", env.store.file_path("a.bin"), 1000, None, "a.bin")
    with pytest.raises(DownloadError, match="size differs: expected 1000 bytes, got 999") as caught:
        env.fetch(target, [URL])
    assert not isinstance(caught.value, UpstreamChangedError)
    assert env.store.rejected_path("a", sha(blob(999, 1))).is_file()
    assert not target.final_path.exists()


@responses.activate
def test_sha_mismatch_quarantines_the_bytes_and_keeps_the_good_file(env: Env) -> None:
    good, bad = blob(1000, 1), blob(1000, 2)
    responses.get(URL, body=bad)
    target = env.target(good)
    target.final_path.parent.mkdir(parents=True)
    target.final_path.write_bytes(good)

    with pytest.raises(UpstreamChangedError) as caught:
        env.fetch(target, [URL])

    error = caught.value
    assert target.final_path.read_bytes() == good
    rejected = env.store.rejected_path("a", sha(bad))
    assert rejected.read_bytes() == bad
    assert error.rejected == [rejected]
    assert error.actual == {URL: sha(bad)}
    assert error.expected_sha256 == sha(good)
    message = str(error)
    assert message.startswith(
        "content differs from the manifest (upstream may have been updated) (slides/a.bin)"
    )
    assert sha(good) in message and sha(bad) in message and URL in message
    assert_no_partial(env)


@responses.activate
def test_sha_mismatch_fails_over_to_the_next_source(env: Env) -> None:
    good = blob(1000, 1)
    responses.get(URL, body=blob(1000, 2))
    responses.get(URL_B, body=good)
    target = env.target(good)
    assert env.fetch(target, [URL, URL_B]).source == URL_B
    assert target.final_path.read_bytes() == good


@responses.activate
def test_upstream_changed_only_when_every_source_differs(env: Env) -> None:
    good = blob(1000, 1)
    responses.get(URL, body=blob(1000, 2))
    responses.get(URL_B, status=404)
    with pytest.raises(DownloadError) as caught:
        env.fetch(env.target(good), [URL, URL_B])
    assert not isinstance(caught.value, UpstreamChangedError)

    responses.replace(responses.GET, URL_B, body=blob(1000, 3))
    with pytest.raises(UpstreamChangedError) as changed:
        env.fetch(env.target(good), [URL, URL_B])
    assert set(changed.value.actual) == {URL, URL_B}


@responses.activate
def test_other_bytes_from_a_copy_never_say_that_upstream_changed(env: Env) -> None:
    good = blob(1000, 1)
    own = dataclasses.replace(env.target(good), primary=URL)
    responses.get(URL, status=404)
    responses.get(URL_B, body=blob(1000, 3))  # a copy (a mirror, the Internet Archive…)
    with pytest.raises(DownloadError) as caught:
        env.fetch(own, [URL, URL_B])
    message = str(caught.value)
    assert f"{URL_B}: this copy differs from the pinned file (sha256 differs" in message
    assert "accept-upstream" not in message and "upstream may" not in message
    assert caught.value.cause == "gone"  # the file's own source decides
    assert env.store.rejected_path("a", sha(blob(1000, 3))).is_file()  # kept for inspection

    responses.replace(responses.GET, URL, body=blob(1000, 2))  # the file's own source changed
    with pytest.raises(UpstreamChangedError) as changed:
        env.fetch(own, [URL, URL_B])
    assert set(changed.value.actual) == {URL, URL_B}
    assert f"{URL_B}: this copy differs from the pinned file" in str(changed.value)
    assert f"{URL}: this copy" not in str(changed.value)

    with pytest.raises(DownloadError) as copy_only:  # its own source not tried (e.g. withheld)
        env.fetch(own, [URL_B])
    assert not isinstance(copy_only.value, UpstreamChangedError)
    assert copy_only.value.cause == "copy"
    assert "the next source is tried" not in str(copy_only.value)


# -- safety, storage, offline, local copies ------------------------------------------------------


@responses.activate
def test_https_to_http_redirect_fails_the_source(env: Env) -> None:
    data = blob(100, 1)
    responses.get(URL, status=302, headers={"Location": "http://files.example.org/a.bin"})
    responses.get(URL_B, body=data)
    assert env.fetch(env.target(data), [URL, URL_B]).source == URL_B
    assert [call.request.url for call in responses.calls] == [URL, URL_B]


@responses.activate
def test_the_original_url_is_always_requested_again(env: Env) -> None:
    data = blob(10_000, 1)
    signed = "https://objects.example.com/a.bin?X-Signature=1"
    responses.get(URL, status=302, headers={"Location": signed})
    responses.add_callback(responses.GET, signed, callback=ranged(data))
    target = env.target(data)
    env.hold_partial(target, data[:4000])
    result = env.fetch(target, [URL])
    assert sent(0).url == URL and sent(0).headers["Range"] == "bytes=4000-"
    assert sent(1).headers["Range"] == "bytes=4000-"  # Range and If-Range survive the redirect
    assert result.resumed_from == 4000


@responses.activate
def test_disk_full_stops_at_once_and_keeps_the_partial(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(10_000, 1)
    responses.add_callback(responses.GET, URL, callback=ranged(data))
    responses.get(URL_B, body=data)

    def no_space(self: PartialDownload, handle: Any, chunk: bytes) -> None:
        with storage_errors(self.path):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PartialDownload, "append", no_space)
    target = env.target(data)
    with pytest.raises(StorageError, match="cannot write to disk"):
        env.fetch(target, [URL, URL_B])
    assert len(responses.calls) == 1  # not a failover reason
    state = env.store.partial_state("a")
    assert state is not None and state.url == URL


@responses.activate
def test_local_copy_is_verified_and_fails_over(env: Env, tmp_path: Path) -> None:
    good = blob(3000, 1)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(blob(3000, 9))
    missing = tmp_path / "missing.bin"
    responses.get(URL, body=good)
    target = env.target(good)
    result = env.fetch(target, [missing.as_uri(), wrong.as_uri(), URL])
    assert result.source == URL
    assert env.store.rejected_path("a", sha(wrong.read_bytes())).is_file()


@responses.activate
def test_kaggle_without_credentials_needs_a_manual_step(env: Env) -> None:
    with pytest.raises(ManualStepRequired) as caught:
        env.fetch(env.target(None, key="hw1-data"), ["kaggle:ml2022spring-hw1/train.csv"])
    assert "lhymirror add" in caught.value.instructions
    assert len(responses.calls) == 0


@responses.activate
def test_manual_step_is_not_claimed_while_a_source_may_still_work(env: Env) -> None:
    responses.get(URL, status=503)
    with pytest.raises(DownloadError) as caught:
        env.fetch(env.target(None), [URL, "kaggle:ml2022spring-hw1"])
    assert not isinstance(caught.value, ManualStepRequired)
    assert "no Kaggle API credentials" in str(caught.value)


# -- against the real test server ---------------------------------------------------------------


def real_downloader(env: Env, **policy: Any) -> Downloader:
    return env.make(policy=RetryPolicy(**{"attempts": 4, "read_timeout": 2.0, **policy}))


def test_cut_twice_resumes_with_proof_and_bounded_resent_bytes(
    env: Env, http_server: CourseServer
) -> None:
    data = blob(3 * 1024 * 1024 + 5, 1)
    url = http_server.add("/ml2022/hw1.bin", data, faults=Fault(cut_after=1_000_000, cut_times=2))
    target = env.target(data)

    result = real_downloader(env).fetch(target, [url], new_session())

    assert target.final_path.read_bytes() == data
    log = http_server.requests
    assert len(log) == 3
    assert log[0].range_header is None
    assert log[1].range_header == "bytes=1000000-"
    assert log[2].range_header == "bytes=2000000-"
    assert all(record.headers.get("If-Range") for record in log[1:])
    assert http_server.bytes_sent() <= len(data) + 64 * 1024  # at most a socket buffer again
    assert result.resumed_from == 2_000_000
    assert result.bytes_received == len(data)
    assert len(env.sleeps) == 2


def test_killed_run_resumes_on_the_next_run(env: Env, http_server: CourseServer) -> None:
    """A transfer that stops on an error leaves its sidecar, however few bytes it holds."""
    data = blob(600_000, 1)
    url = http_server.add("/ml2022/hw2.bin", data, faults=Fault(cut_after=250_000, cut_times=1))
    target = env.target(data)
    with pytest.raises(DownloadError):
        real_downloader(env, attempts=1).fetch(target, [url], new_session())
    state = json.loads(env.store.partial_state_path("a").read_text())
    assert (state["url"], state["bytes_held"]) == (url, 250_000)
    assert state["etag"]

    result = real_downloader(env).fetch(target, [url], new_session())

    assert result.resumed_from == 250_000
    assert http_server.requests[-1].range_header == "bytes=250000-"
    assert target.final_path.read_bytes() == data


def test_content_changed_between_attempts_restarts_from_zero(
    env: Env, http_server: CourseServer
) -> None:
    old, new = blob(400_000, 1), blob(420_000, 2)
    fault = Fault(cut_after=100_000, cut_times=1, etag_changes=new, change_after=1)
    url = http_server.add("/ml2022/hw3.bin", old, faults=fault)
    target = env.target(None)

    result = real_downloader(env).fetch(target, [url], new_session())

    assert http_server.requests[1].range_header == "bytes=100000-"
    assert http_server.requests[1].status == 200  # If-Range failed: whole new content
    assert ("restarted", "a", 0) in env.events.calls
    assert (result.resumed_from, result.sha256) == (0, sha(new))
    assert target.final_path.read_bytes() == new


@pytest.mark.parametrize("changes", [False, True], ids=["resumed", "restarted"])
def test_a_part_feeds_the_assembly_digest_through_cuts_and_restarts(
    env: Env, http_server: CourseServer, changes: bool
) -> None:
    old, new = blob(400_000, 1), blob(420_000, 2)
    fault = Fault(cut_after=100_000, cut_times=1, etag_changes=new if changes else None)
    url = http_server.add("/ml2022/part2.bin", old, faults=fault)
    assembly = env.store.assembly_path("d")
    assembly.parent.mkdir(parents=True, exist_ok=True)
    assembly.write_bytes(EARLIER_PARTS)
    whole = AssemblyDigest()
    target = Target("d.part02", assembly, None, None, "d.tar", len(EARLIER_PARTS), whole)

    real_downloader(env).fetch(target, [url], new_session())

    served = new if changes else old
    assert assembly.read_bytes() == EARLIER_PARTS + served
    assert whole.hexdigest_of(len(EARLIER_PARTS) + len(served)) == sha(EARLIER_PARTS + served)


def test_stall_detector_aborts_a_trickling_transfer(env: Env, http_server: CourseServer) -> None:
    data = blob(200_000, 1)
    url = http_server.add("/ml2022/slow.bin", data, faults=Fault(trickle=(64, 0.01)))
    downloader = real_downloader(env, attempts=2, stall_window=0.05, stall_min_bytes=100_000)
    with pytest.raises(DownloadError, match="stalled"):
        downloader.fetch(env.target(data), [url], new_session())
    assert http_server.count("/ml2022/slow.bin") == 2


def test_silent_server_times_out_and_the_retry_resumes(env: Env, http_server: CourseServer) -> None:
    data = blob(300_000, 1)
    fault = Fault(stall_after=100_000, stall_times=1)
    url = http_server.add("/ml2022/quiet.bin", data, faults=fault)
    target = env.target(data)
    result = real_downloader(env, read_timeout=0.1).fetch(target, [url], new_session())
    assert result.resumed_from == 100_000
    assert target.final_path.read_bytes() == data


def test_retry_after_from_a_real_server(env: Env, http_server: CourseServer) -> None:
    data = blob(5000, 1)
    fault = Fault(statuses=[(503, {"Retry-After": "3"}), (429, {"Retry-After": "1"})])
    url = http_server.add("/r.bin", data, faults=fault)
    real_downloader(env).fetch(env.target(data), [url], new_session())
    assert env.sleeps == [3.0, 1.0]
