"""Segmented downloads of large files: the rest of a file fetched as several ranges at once.

When a whole file of known size has at least ``policy.segment_min_size`` bytes still to come,
its server proved it serves ranges (a strong ETag, and a 206 or ``Accept-Ranges: bytes``), and
the run has connections to spare (:class:`ConnectionBudget`), the remainder ``[start, size)`` is
cut into pieces. The response already open streams the first piece into the partial file as
usual; every other piece is fetched on its own connection (``Range`` + ``If-Range`` with that
ETag) into a file of its own next to the partial, and must come back as a 206 whose
``Content-Range`` is exactly that piece, with the same ETag. The pieces are then appended to the
partial in order, hashed on the way, and the whole file is verified as any other download.

The cut is recorded (``<key>.segments.json``: URL, ETag, size, boundaries), so after ``kill -9``
the next run continues each piece where its file ends. A piece a server answers wrongly makes
the attempt fail with cause ``range``; its pieces are dropped and the same source is tried again
without segments (the bytes of the first piece stay). Nothing but a verified whole file ever
reaches the final path.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests

from lhymirror.core.errors import storage_errors
from lhymirror.core.fsutil import CHUNK_SIZE, atomic_write_bytes
from lhymirror.fetch.partial import PartialDownload, strong_etag
from lhymirror.fetch.policy import RetryPolicy
from lhymirror.fetch.scheduler import ConnectionBudget
from lhymirror.fetch.sources.base import TryAgain

# How long a file's one connection runs before its rate decides whether to cut the rest.
RATE_WINDOW = 0.1  # seconds
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Piece:
    """One range ``[start, end)`` of the file, fetched into its own file."""

    start: int
    end: int
    path: Path

    def held(self) -> int:
        """Bytes of the piece already on disk (from this run or an earlier one)."""
        try:
            return min(self.path.stat().st_size, self.end - self.start)
        except OSError:
            return 0


@dataclass(frozen=True)
class Cut:
    """The pieces after the first, and where the first (streamed by the open response) ends."""

    first_end: int
    pieces: tuple[Piece, ...]
    meta: Path

    def discard(self) -> None:
        """Remove the pieces' files and the record of the cut."""
        for piece in self.pieces:
            piece.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def _split_size(policy: RetryPolicy, budget: ConnectionBudget | None) -> int:
    """The run's split size (the budget's, chosen for the run), else the policy's."""
    if budget is not None and budget.split_size is not None:
        return budget.split_size
    return policy.segment_min_size


def plan_cut(
    partial: PartialDownload,
    url: str,
    etag: str | None,
    start: int,
    *,
    ranges_proven: bool,
    policy: RetryPolicy,
    budget: ConnectionBudget | None,
    earlier_only: bool = False,
) -> tuple[Cut, int] | None:
    """The cut of ``[start, size)`` and the extra connections taken for it; None: no cut.

    *earlier_only*: only the cut an earlier run made, if its pieces are still ahead of *start*
    (however short the rest now, and with no connection to spare: then the pieces come one
    after the other on this transfer's own connection once its first piece is done).
    """
    size = partial.target.expected_size
    meta = _meta_path(partial)
    etag = strong_etag(etag)
    usable = cut_possible(
        partial,
        etag,
        start,
        ranges_proven=ranges_proven,
        policy=policy,
        budget=budget,
        whatever_the_rest=earlier_only,
    )
    if not usable or budget is None or size is None or etag is None:
        if not earlier_only:
            _drop_saved(meta)
        return None
    saved = [bound for bound in _saved_bounds(meta, url, etag, size) or () if bound > start]
    if earlier_only:
        return (_cut(partial, saved, size, meta), budget.try_acquire(len(saved))) if saved else None
    extra = budget.try_acquire(policy.segments - 1)
    if extra == 0:
        _drop_saved(meta)
        return None
    bounds = saved
    if not bounds:
        step = (size - start) // (extra + 1)
        bounds = [start + step * (i + 1) for i in range(extra)]
        _drop_saved(meta)
        try:
            with storage_errors(meta):
                record = {"url": url, "etag": etag, "size": size, "bounds": bounds}
                atomic_write_bytes(meta, json.dumps(record).encode())
        except BaseException:
            budget.release(extra)  # no cut: the connections taken for it go back
            raise
    return _cut(partial, bounds, size, meta), extra


def _cut(partial: PartialDownload, bounds: list[int], size: int, meta: Path) -> Cut:
    edges = [*bounds, size]
    pieces = tuple(
        Piece(edges[i], edges[i + 1], partial.path.with_name(f"{partial.path.name}.{edges[i]}"))
        for i in range(len(bounds))
    )
    return Cut(bounds[0], pieces, meta)


def cut_possible(
    partial: PartialDownload,
    etag: str | None,
    start: int,
    *,
    ranges_proven: bool,
    policy: RetryPolicy,
    budget: ConnectionBudget | None,
    whatever_the_rest: bool = False,
) -> bool:
    """May the rest of *partial* from *start* be cut into pieces (connections aside)?"""
    target = partial.target
    size = target.expected_size
    return (
        budget is not None
        and target.segmentable
        and target.offset is None
        and size is not None
        and strong_etag(etag) is not None
        and ranges_proven
        and (whatever_the_rest or size - start >= _split_size(policy, budget))
    )


def _meta_path(partial: PartialDownload) -> Path:
    return partial.path.with_name(partial.path.name + ".segments.json")


def adopt_held_piece(partial: PartialDownload) -> None:
    """Append the piece an earlier attempt left where the bytes held end (it continues them).

    After an interrupted run the file's first piece ends where the next piece starts; the bytes
    of that piece are kept, not fetched again (the whole file is verified at the end anyway).
    """
    meta = _meta_path(partial)
    size, etag, url = partial.target.expected_size, strong_etag(partial.etag), partial.url
    if size is None or etag is None or url is None or partial.in_place:
        return
    if partial.held not in (_saved_bounds(meta, url, etag, size) or ()):
        return
    path = partial.path.with_name(f"{partial.path.name}.{partial.held}")
    if not path.is_file() or path.stat().st_size == 0:
        return
    partial.begin(url, partial.etag, partial.last_modified, partial.held)
    with partial.appending() as handle, storage_errors(path), path.open("rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            partial.append(handle, chunk)
    path.unlink()


def next_piece_start(partial: PartialDownload, offset: int) -> int | None:
    """Where the piece after *offset* of an earlier run's cut starts, if it holds bytes.

    A resumed first piece asks only for the bytes up to there: the rest is that piece's.
    """
    size, etag, url = partial.target.expected_size, strong_etag(partial.etag), partial.url
    if not offset or size is None or etag is None or url is None:
        return None
    if partial.in_place or not partial.target.segmentable:
        return None
    for bound in _saved_bounds(_meta_path(partial), url, etag, size) or ():
        if bound > offset:
            piece = partial.path.with_name(f"{partial.path.name}.{bound}")
            return bound if piece.is_file() and piece.stat().st_size > 0 else None
    return None


def _saved_bounds(meta: Path, url: str, etag: str, size: int) -> list[int] | None:
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (data.get("url"), data.get("etag"), data.get("size")) != (
        url,
        etag,
        size,
    ):
        return None
    bounds = data.get("bounds")
    if not isinstance(bounds, list) or not all(isinstance(b, int) for b in bounds):
        return None
    return sorted(bounds) if all(0 < b < size for b in bounds) else None


def _drop_saved(meta: Path) -> None:
    """Forget an earlier cut: its record and its pieces."""
    if not meta.exists():
        return
    with contextlib.suppress(OSError, ValueError):
        bounds = json.loads(meta.read_text(encoding="utf-8")).get("bounds", [])
        for start in bounds:
            meta.with_name(meta.name.removesuffix(".segments.json") + f".{start}").unlink(
                missing_ok=True
            )
    meta.unlink(missing_ok=True)


class PieceFetcher:
    """Fetches the pieces of a cut on their own connections (threads), each into its file."""

    def __init__(
        self,
        url: str,
        *,
        etag: str,
        size: int,
        policy: RetryPolicy,
        sessions: ConnectionBudget,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool],
    ) -> None:
        self._url = url
        self._etag = etag
        self._size = size
        self._policy = policy
        self._sessions = sessions  # a piece takes the session a finished transfer gave back
        self._on_bytes = on_bytes  # received and kept (progress, rate cap, counts)
        self._cancelled = cancelled

    def start(self, pieces: tuple[Piece, ...], threads: int) -> list[Any]:
        """Start fetching every piece on *threads* threads; the futures, in piece order.

        No thread: no future either (None each); the caller fetches them with :meth:`fetch`.
        """
        if threads < 1:
            return [None] * len(pieces)
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="piece")
        futures = [executor.submit(self.fetch, piece) for piece in pieces]
        executor.shutdown(wait=False)
        return futures

    def fetch(self, piece: Piece) -> None:
        """Fetch the rest of *piece*; ``TryAgain`` (cause ``range``) when the answer is wrong."""
        held = piece.held()
        if held >= piece.end - piece.start or self._cancelled():  # done, or the file stopped
            return
        first, last = piece.start + held, piece.end - 1
        session = self._sessions.lend_session()
        try:
            headers = {
                "Accept-Encoding": "identity",
                "Range": f"bytes={first}-{last}",
                "If-Range": self._etag,
            }
            try:
                response = session.get(
                    self._url, headers=headers, stream=True, timeout=self._policy.timeout
                )
            except requests.RequestException as exc:
                raise TryAgain(f"a piece failed ({type(exc).__name__})", cause="range") from exc
            with response:
                self._check(response, first, last)
                self._copy(response, piece)
        finally:
            self._sessions.return_session(session)

    def _check(self, response: requests.Response, first: int, last: int) -> None:
        """A piece must be exactly the range asked for, of the same version of the file."""
        header = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(header)
        proven = (
            response.status_code == 206
            and match is not None
            and (int(match.group(1)), int(match.group(2)), int(match.group(3)))
            == (first, last, self._size)
            and strong_etag(response.headers.get("ETag")) == self._etag
        )
        if not proven:
            raise TryAgain(
                f"server answered the range {first}-{last} wrongly "
                f"(HTTP {response.status_code}, {header or 'no Content-Range'})",
                cause="range",
            )

    def _copy(self, response: requests.Response, piece: Piece) -> None:
        wanted = piece.end - piece.start - piece.held()
        with storage_errors(piece.path), piece.path.open("ab") as out:
            while wanted > 0 and not self._cancelled():
                try:
                    chunk = response.raw.read1(min(CHUNK_SIZE, wanted), decode_content=False)
                except (OSError, requests.RequestException) as exc:
                    raise TryAgain("a piece's connection was lost", cause="read") from exc
                if not chunk:
                    raise TryAgain("a piece ended early", cause="read")
                out.write(chunk)
                wanted -= len(chunk)
                self._on_bytes(len(chunk))


class PiecedStream:
    """One attempt's pieces: cut while the first piece streams, then joined in order.

    :meth:`cutter` is asked, as the open response streams, whether to cut now (once connections
    are free); :meth:`join` appends the pieces after the first; :meth:`close` always runs.
    """

    def __init__(
        self,
        partial: PartialDownload,
        url: str,
        etag: str | None,
        *,
        policy: RetryPolicy,
        budget: ConnectionBudget,
        clock: Callable[[], float],
        on_bytes: Callable[[int], None],
    ) -> None:
        self._partial = partial
        self._url = url
        self._etag = etag
        self._policy = policy
        self._budget = budget
        self._clock = clock
        self._on_bytes = on_bytes
        self._next_look = clock()
        self._since: tuple[float, int] | None = None  # (time, bytes held) of the first look
        self._wanting = False  # found slow: waiting for connections for its pieces
        self._stop = threading.Event()
        self.cut: Cut | None = None
        self._extra = 0
        self._futures: list[Any] = []  # one a piece; None: fetched by join() itself
        self._fetcher: PieceFetcher | None = None
        self._earlier_checked = False  # has the cut of an earlier run been looked for?

    def cutter(self, held: int) -> int | None:
        """Where the open response should stop, once the rest is cut into pieces; else None."""
        if self.cut is not None:
            return None
        if not self._earlier_checked:
            self._earlier_checked = True
            planned = self._plan(held, earlier_only=True)
            if planned is not None:  # the pieces of an earlier run hold bytes: keep its cut
                return self._start(planned)
        return self._look(self._clock(), held)

    def _look(self, now: float, held: int) -> int | None:
        """The rate rule: cut once the rest proves slow on this one connection."""
        if self._wanting:  # slow: connections given back come to this file first
            return self._use_spare_connections(now, held)
        if now < self._next_look:
            return None
        if self._since is None and self._policy.segment_min_seconds > 0:
            self._since = (now, held)  # the connection's rate is measured from its first bytes
            self._next_look = now + RATE_WINDOW
            return None
        self._next_look = now + 0.5  # looked at again twice a second
        if not self._slow(now, held):
            return None
        self._wanting = True
        return self._use_spare_connections(now, held, first=True)

    def _use_spare_connections(self, now: float, held: int, *, first: bool = False) -> int | None:
        """The rest is slow on one connection: cut it into pieces (a part: start the later ones).

        The pieces wait for connections (:meth:`ConnectionBudget.want`): all of them, or any
        at all once half a second has passed since the file was found slow.
        """
        when_slow = self._partial.target.when_slow
        if when_slow is not None:
            if first or self._budget.reserved():
                self._wanting = when_slow()  # True: it waits for more connections
            return None
        if first and not cut_possible(
            self._partial,
            self._etag,
            held,
            ranges_proven=True,
            policy=self._policy,
            budget=self._budget,
        ):
            self._wanting, self._next_look = False, math.inf
            return None
        wanted = min(self._policy.segments, self._budget.total) - 1
        rest = (self._partial.target.expected_size or 0) - held
        reserved = self._budget.want(wanted, rest=rest)
        if reserved < wanted and (reserved == 0 or now < self._next_look):
            return None
        self._wanting = False
        planned = self._plan(held)
        if planned is None:
            self._budget.drop_reservation()
            self._next_look = math.inf  # the rest is too short to cut now
            return None
        return self._start(planned)

    def _plan(self, held: int, *, earlier_only: bool = False) -> tuple[Cut, int] | None:
        """:func:`plan_cut` for this stream's rest from *held* (its ranges are proven)."""
        return plan_cut(
            self._partial,
            self._url,
            self._etag,
            held,
            ranges_proven=True,
            policy=self._policy,
            budget=self._budget,
            earlier_only=earlier_only,
        )

    def _start(self, planned: tuple[Cut, int]) -> int:
        """Start fetching the pieces of *planned* on its extra connections; the first's end."""
        self.cut, self._extra = planned
        self._budget.drop_reservation()  # the cut is made: no more connections owed to it
        self._fetcher = PieceFetcher(
            self._url,
            etag=strong_etag(self._etag) or "",
            size=self._partial.target.expected_size or 0,
            policy=self._policy,
            sessions=self._budget,
            on_bytes=self._on_bytes,
            cancelled=self._stop.is_set,
        )
        self._futures = self._fetcher.start(self.cut.pieces, self._extra)
        return self.cut.first_end

    def _slow(self, now: float, held: int) -> bool:
        """Would the rest take longer than ``segment_min_seconds`` at the rate so far?"""
        if self._since is None:
            return True
        began, held_then = self._since
        target = self._partial.target
        rest = (target.file_rest or target.expected_size or 0) - held
        return rest > (held - held_then) / max(now - began, 1e-6) * self._policy.segment_min_seconds

    def join(self, keep: Callable[[BinaryIO, bytes], None]) -> None:
        """Append every piece, in order, after the first (``TryAgain`` when one failed)."""
        assert self.cut is not None
        partial = self._partial
        with partial.appending() as handle:
            for piece, future in zip(self.cut.pieces, self._futures, strict=True):
                if future is not None:
                    future.result()
                elif self._fetcher is not None:  # no connection was spare: on this one, now
                    self._fetcher.fetch(piece)
                if partial.held != piece.start:
                    raise TryAgain("connection lost before the first piece ended", cause="read")
                with storage_errors(piece.path), piece.path.open("rb") as stream:
                    while chunk := stream.read(CHUNK_SIZE):
                        keep(handle, chunk)
        self.cut.discard()

    def close(self, failure: BaseException | None) -> None:
        """Stop and wait for the pieces; drop them when a server answered a range wrongly."""
        self._stop.set()
        wait([future for future in self._futures if future is not None])
        self._budget.release(self._extra)
        self._extra = 0
        if self.cut is not None and isinstance(failure, TryAgain) and failure.cause == "range":
            self.cut.discard()
