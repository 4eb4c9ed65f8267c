"""Tests of lhymirror.fetch.response: how a body is read, and what its first bytes may be."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.fetch.http import RetryPolicy
from lhymirror.fetch.response import BULK_EVIDENCE, BodyReader, check_head
from lhymirror.fetch.sources.base import SourceFailed, TryAgain
from lhymirror.fetch.transfer import Target


class Link:
    """A response body that arrives *per_read* bytes at a time, *seconds* apart (clock too)."""

    def __init__(self, size: int, per_read: int, seconds: float) -> None:
        self.left = size
        self.per_read = per_read
        self.seconds = seconds
        self.now = 100.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        self.calls.append("read1")
        return self._give(min(amount, self.per_read))

    def read(self, amount: int, decode_content: bool = True) -> bytes:
        self.calls.append("read")
        return self._give(amount)  # blocks until *amount* bytes came, as urllib3's read does

    def _give(self, amount: int) -> bytes:
        given = min(amount, self.left)
        self.left -= given
        self.now += self.seconds * given / self.per_read
        return b"x" * given


def drain(link: Link, policy: RetryPolicy | None = None) -> int:
    response: Any = SimpleNamespace(raw=link)
    reader = BodyReader(response, policy or RetryPolicy(), link.clock, lambda _: None)
    total = 0
    while chunk := reader.read():
        total += len(chunk)
    return total


def test_a_fast_body_is_read_in_whole_chunks_once_its_rate_is_proven() -> None:
    link = Link(40 * CHUNK_SIZE, per_read=256 * 1024, seconds=0.0005)  # ~500 MB/s
    assert drain(link) == 40 * CHUNK_SIZE
    proof = BULK_EVIDENCE // link.per_read
    assert link.calls[:proof] == ["read1"] * proof
    assert set(link.calls[proof:]) == {"read"}


def test_a_slow_body_is_read_as_it_arrives() -> None:
    link = Link(4 * CHUNK_SIZE, per_read=16 * 1024, seconds=0.016)  # ~1 MB/s
    assert drain(link) == 4 * CHUNK_SIZE
    assert set(link.calls) == {"read1"}


def test_a_body_that_slows_down_is_read_as_it_arrives_from_the_next_window() -> None:
    policy = RetryPolicy(stall_window=1.0)
    link = Link(64 * CHUNK_SIZE, per_read=CHUNK_SIZE, seconds=0.001)
    response: Any = SimpleNamespace(raw=link)
    reader = BodyReader(response, policy, link.clock, lambda _: None)
    for _ in range(8):
        reader.read()
    assert link.calls[-1] == "read"
    link.per_read, link.seconds = 16 * 1024, 0.5  # the link slows down to 32 KiB/s
    reader.read()  # one whole chunk still (the window is over when it has come)
    reader.read()
    assert link.calls[-2:] == ["read", "read1"]


def test_a_stalled_body_is_still_noticed() -> None:
    link = Link(CHUNK_SIZE, per_read=100, seconds=20.0)  # 5 bytes a second
    with pytest.raises(TryAgain, match="stalled"):
        drain(link, RetryPolicy(stall_window=30.0, stall_min_bytes=1024))


def _target(name: str, sha256: str | None = "0" * 64) -> Target:
    return Target("k", Path("unused"), None, sha256, name)


def _looks_like_html(head: bytes) -> bool:
    """The rule as first written: skip a byte order mark and blank space, ignore case."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html"))


@given(
    st.text(alphabet="\ufeff \t\r\n", max_size=20).map(lambda s: s.encode()),
    st.sampled_from([b"<!DOCTYPE html>", b"<html>", b"<HTML lang=en>", b"<!doctype HTML>"]),
    st.binary(max_size=64),
)
def test_an_html_page_is_refused_however_it_starts(lead: bytes, tag: bytes, rest: bytes) -> None:
    with pytest.raises(SourceFailed, match="HTML page"):
        check_head(_target("data/a.zip"), lead + tag + rest)


@given(
    st.builds(
        lambda lead, tag, rest: lead + tag + rest,
        st.sampled_from([b"", b"\xef\xbb\xbf", b" \r\n", b"\t", b"x"]),
        st.sampled_from([b"", b"<html", b"<HTML>", b"<!DOCTYPE html", b"<!doctype", b"<htm"]),
        st.binary(max_size=32),
    )
)
def test_html_is_recognised_as_the_first_rule_did(head: bytes) -> None:
    refused = True
    try:
        check_head(_target("data/a.zip"), head)
    except SourceFailed:
        pass
    else:
        refused = False
    assert refused is _looks_like_html(head)


def test_a_page_named_html_and_an_unpinned_pdf_are_judged_by_their_names() -> None:
    check_head(_target("index.html"), b"<!doctype html><p>")
    check_head(_target("a.pdf", sha256=None), b"%PDF-1.7\n")
    with pytest.raises(SourceFailed, match="not a PDF"):
        check_head(_target("a.pdf", sha256=None), b"PK\x03\x04")
