"""The transfer of one target from an ordered list of sources: resumable, verified, with failover.

Bytes are streamed into the store's partial file while being hashed; only a complete transfer
whose size and sha256 match lands at the target's final path (atomic rename). A partial download
resumes only with proof that the server still has the same bytes: the same URL, and an ETag (else
Last-Modified) sent as ``If-Range``. A source that fails (network, HTTP error, quota or HTML page,
wrong bytes) hands over to the next one; a full disk stops at once, keeping the partial.

The loop here knows no kind of source: each source string is resolved and opened by the adapter
its scheme maps to (:mod:`lhymirror.fetch.sources`), answers are interpreted in
:mod:`lhymirror.fetch.response`, and attempts are repeated by :mod:`lhymirror.fetch.retry`.
Per attempt the flow is: open the source → stream its body (:meth:`Downloader._stream`) → verify
and commit (:meth:`Downloader._commit`).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

import requests

from lhymirror.core.errors import DownloadError
from lhymirror.fetch.bases import BaseCheck
from lhymirror.fetch.health import HostHealth
from lhymirror.fetch.http import RetryPolicy
from lhymirror.fetch.partial import PartialDownload
from lhymirror.fetch.plan import RESUME_HINT
from lhymirror.fetch.race import Gate, gated, may_race, race_sources
from lhymirror.fetch.ratelimit import RateLimiter
from lhymirror.fetch.response import HTML_REASON, SNIFF_BYTES, Exchange, check_head
from lhymirror.fetch.retry import Attempts, run_attempts
from lhymirror.fetch.scheduler import ConnectionBudget
from lhymirror.fetch.segments import PiecedStream, adopt_held_piece, next_piece_start
from lhymirror.fetch.sources.base import (
    CONNECTION_CAUSES,
    Body,
    Cause,
    FailureKind,
    Request,
    Resolved,
    SourceAdapter,
    SourceFailed,
    SourceSettings,
    TryAgain,
    as_copy,
    most_hopeful,
)
from lhymirror.fetch.sources.https import parse_or_fail
from lhymirror.fetch.sources.kaggle import KaggleCredentials
from lhymirror.fetch.sources.registry import adapter_for
from lhymirror.fetch.transfer import (
    FetchResult,
    ManualStepRequired,
    SilentEvents,
    Target,
    TransferEvents,
    UpstreamChangedError,
    with_cause,
)
from lhymirror.mirror.state import Expected, FileProblem, check_bytes
from lhymirror.mirror.store import MirrorStore

__all__ = ["HTML_REASON", "RESUME_HINT", "Downloader"]


class Downloader:
    """Fetches targets into a :class:`MirrorStore`; safe to share between worker threads.

    All per-transfer state lives in the call to :meth:`fetch`; the instance holds only
    configuration (and the seedable random source of the backoff jitter).
    """

    def __init__(
        self,
        store: MirrorStore,
        *,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so sharing it is safe
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        events: TransferEvents | None = None,
        kaggle_credentials: KaggleCredentials | None = None,
        rng: random.Random | None = None,
        now: Callable[[], dt.datetime] | None = None,
        health: HostHealth | None = None,
        limiter: RateLimiter | None = None,
        budget: ConnectionBudget | None = None,
        base_check: BaseCheck | None = None,
    ) -> None:
        self.store = store
        self.base_check = base_check  # the named bases' check: other sources wait for it
        self.health = health  # shared by the run's downloaders; None: every host is tried
        self.limiter = limiter  # the run's total bandwidth cap (None: none)
        self.budget = budget  # the run's connections; None: never fetch pieces at once
        self._whole_only: set[str] = set()  # URLs that answered a piece wrongly
        self.policy = policy
        self.kaggle_credentials = kaggle_credentials
        self._settings = SourceSettings(kaggle_credentials=kaggle_credentials)
        self._sleep = sleep
        self._clock = clock
        self._events: TransferEvents = events or SilentEvents()
        self._rng = rng or random.Random()
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    def fetch(
        self, target: Target, sources: Sequence[str], session: requests.Session
    ) -> FetchResult:
        """Try each source in order (failover) until one delivers verified bytes to final_path.

        A silent source is raced by the next ones (:mod:`lhymirror.fetch.race`).

        Raises ``DownloadError`` (every source failed; the detail lists why),
        ``UpstreamChangedError`` (every source served bytes that differ from the pin),
        ``ManualStepRequired`` (only a human step can get the file) or ``StorageError`` (at once;
        the partial is kept for a later resume, once its sidecar could be written).
        """
        partial = PartialDownload(self.store, target)
        partial.load()
        failures: list[tuple[str, SourceFailed]] = []
        for index, source in enumerate(sources):  # --offline: the plan left out network ones
            alternative = index + 1 < len(sources)
            if alternative and may_race(self, partial, source):
                outcome = race_sources(
                    self, source, sources[index + 1 :], partial, session, failures=failures
                )
                if outcome == "exhausted":
                    break
                if outcome != "next":
                    return outcome
                continue
            try:
                return self._fetch_from(adapter_for(source), source, partial, session, alternative)
            except SourceFailed as failure:
                failures.append((source, as_copy(failure, target, source, alternative)))
        raise _all_failed(target, failures)

    def _fetch_from(
        self,
        adapter: SourceAdapter | None,
        source: str,
        partial: PartialDownload,
        session: requests.Session,
        alternative: bool,
        *,
        gate: Gate | None = None,
    ) -> FetchResult:
        """Resolve *source*, then attempt it until it delivers, fails, or its budget is spent.

        *alternative*: another source follows, so a silent server is not waited for long.
        *gate*: the source runs in a race (:mod:`lhymirror.fetch.race`).
        """
        adapter = _usable(adapter, source, self.base_check)
        resolved = adapter.resolve(source, self._settings)
        if gate is not None:
            gate.resolved(resolved)
        key = partial.target.key
        _skip_if_down(self.health, resolved, key)
        budgets: dict[Cause, int] = {"resolve": self.policy.resolve_attempts}
        return run_attempts(
            gated(
                lambda: self._attempt(adapter, resolved, partial, session, alternative, gate=gate),
                gate,
            ),
            Attempts(self.policy, self._rng, self._clock, per_cause=budgets),
            sleep=self._sleep,
            on_retry=lambda reason, delay: self._events.retrying(key, source, reason, delay),
            on_restart=lambda: self._events.restarted(key, 0),
        )

    def _attempt(
        self,
        adapter: SourceAdapter,
        resolved: Resolved,
        partial: PartialDownload,
        session: requests.Session,
        alternative: bool = False,
        *,
        gate: Gate | None = None,
    ) -> FetchResult:
        adopt_held_piece(partial)
        offset = partial.resume_offset(resolved.url)
        exchange = Exchange(
            session,
            partial.target,
            offset=offset,
            validator=partial.validator,
            policy=self.policy,
            clock=self._clock,
            now=self._now,
            on_received=_receiver(self.limiter, partial, gate),
            alternative=alternative,
            end=next_piece_start(partial, offset) if self.budget is not None else None,
        )
        try:
            body = adapter.open(resolved, Request(partial.target, offset, exchange))
        except (TryAgain, SourceFailed) as failure:
            if isinstance(failure, TryAgain) and failure.restart:
                _restart(self._events, partial)
            _note_host(self.health, resolved, failure.cause, failure.reason, partial, gate=gate)
            raise
        _note_host(self.health, resolved, None, "", partial, gate=gate)
        try:
            if body.start is None:  # the bytes held are already the whole file
                partial.begin(resolved.url, None, None, offset)
            else:
                _check_offered_size(partial.target, body.offered_size)
                if not _stream_in_pieces(self, resolved.url, partial, body):
                    self._stream(resolved.url, partial, body)
        finally:
            body.close()
        resumed_from = offset if body.start is None else body.start
        return _commit(partial, resolved.source, resumed_from, gate)

    # -- moving bytes ----------------------------------------------------------------------

    def _stream(
        self,
        url: str,
        partial: PartialDownload,
        body: Body,
        cutter: Callable[[int], int | None] | None = None,
    ) -> None:
        """Stream *body* into the partial file from where it starts, checking its first bytes.

        *cutter(held)*: where to stop instead of the body's end, once it says (pieces).
        """
        target = partial.target
        start = body.start or 0
        head = b""
        if start == 0 and body.sniff:
            while len(head) < SNIFF_BYTES and (chunk := body.read()):
                head += chunk
            check_head(target, head)
        if start < partial.held:
            self._events.restarted(target.key, start)
        partial.begin(url, body.etag, body.last_modified, start)
        self._events.started(target.key, body.total, start)
        end: int | None = None
        with partial.appending() as handle:
            chunk = head or body.read()
            while chunk:
                if end is None and cutter is not None:
                    end = cutter(partial.held)
                if end is not None:
                    chunk = chunk[: max(0, end - partial.held)]
                if chunk:
                    self._keep(partial, handle, chunk)
                if end is not None and partial.held >= end:
                    break
                chunk = body.read()

    def _keep(
        self, partial: PartialDownload, handle: BinaryIO, chunk: bytes, *, count: bool = True
    ) -> None:
        expected = partial.target.expected_size
        if expected is not None and partial.held + len(chunk) > expected:
            too_long = FileProblem("size", expected, None)  # "got more"
            raise SourceFailed(f"server sent {too_long}", _mismatch_kind(partial.target))
        partial.append(handle, chunk)
        if count:  # a piece's bytes were counted as they arrived
            self._events.advanced(partial.target.key, len(chunk))


# -- helpers ---------------------------------------------------------------------------------


def _commit(
    partial: PartialDownload, source: str, resumed_from: int, gate: Gate | None = None
) -> FetchResult:
    """Verify the bytes held; put them in place, or aside when they are wrong.

    In a race, verified bytes are placed only by the runner that claims the win first.
    """
    target = partial.target
    size = partial.held
    sha = partial.sha256() if partial.hashes_while_streaming else None
    problem = _verification_problem(target, size, sha)
    if problem is not None:
        sha = sha or partial.sha256()
        rejected = partial.quarantine(sha)
        raise SourceFailed(
            f"{problem}; bytes kept at {rejected}",
            _mismatch_kind(target),
            actual_sha256=sha,
            rejected=rejected,
            retry_from_zero=resumed_from > 0,
        )
    etag, last_modified = partial.etag, partial.last_modified
    if gate is not None:
        gate.claim()
    partial.commit()
    return FetchResult(
        key=target.key,
        size=size,
        sha256=sha,
        source=source,
        etag=etag,
        last_modified=last_modified,
        resumed_from=resumed_from,
        bytes_received=partial.received,
    )


def _stream_in_pieces(
    downloader: Downloader, url: str, partial: PartialDownload, body: Body
) -> bool:
    """Stream *body*, cutting the rest into pieces on other connections once some are free.

    A part of a split file is not cut: once its connection proves slow, the later parts are
    fetched meanwhile instead (``Target.when_slow``). False when neither is in question for
    this body (nothing was streamed then).
    """
    budget = downloader.budget
    ranges_proven = body.start not in (None, 0) or body.accepts_ranges
    cuttable = ranges_proven and url not in downloader._whole_only
    if budget is None or not (cuttable or partial.target.when_slow is not None):
        return False
    key, lock = partial.target.key, threading.Lock()
    receive = _receiver(downloader.limiter, partial)

    def on_bytes(nbytes: int) -> None:
        with lock:
            receive(nbytes)
        downloader._events.advanced(key, nbytes)

    pieces = PiecedStream(
        partial,
        url,
        body.etag,
        policy=downloader.policy,
        budget=budget,
        clock=downloader._clock,
        on_bytes=on_bytes,
    )
    failure: BaseException | None = None
    try:
        downloader._stream(url, partial, body, cutter=pieces.cutter)
        if pieces.cut is not None:
            body.close()
            pieces.join(lambda handle, chunk: downloader._keep(partial, handle, chunk, count=False))
    except BaseException as exc:
        failure = exc
        if isinstance(exc, TryAgain) and exc.cause == "range":
            downloader._whole_only.add(url)
        raise
    finally:
        pieces.close(failure)
        budget.drop_reservation()
    return True


def _usable(
    adapter: SourceAdapter | None, source: str, base_check: BaseCheck | None
) -> SourceAdapter:
    """*source*'s adapter; ``SourceFailed`` when there is none or the source must not be asked."""
    if adapter is None:
        parse_or_fail(source)  # says what is wrong with the source string
        raise SourceFailed(f"not a usable source ({source!r})")
    if base_check is not None and not base_check.allows(source):
        raise SourceFailed("not tried: a named base cannot be reached", cause="connect")
    return adapter


def _restart(events: TransferEvents, partial: PartialDownload) -> None:
    """Drop the bytes held: the next attempt starts from zero."""
    if partial.held:
        events.restarted(partial.target.key, 0)
    partial.discard()


def _receiver(
    limiter: RateLimiter | None, partial: PartialDownload, gate: Gate | None = None
) -> Callable[[int], None]:
    """What is told of each chunk received: the partial's count, the rate cap, the race."""
    if limiter is None and gate is None:
        return partial.count_received

    def received(nbytes: int) -> None:
        if gate is not None:
            gate.check()  # a race's loser stops here
        partial.count_received(nbytes)
        if limiter is not None:
            limiter.take(nbytes)

    return received


def _skip_if_down(health: HostHealth | None, resolved: Resolved, key: str) -> None:
    """``SourceFailed`` at once when the source's host is down for this run."""
    host = resolved.host
    if host is not None and health is not None and not health.usable(host, key):
        reason = f"{host} not reachable ({health.reason(host)}); skipped"
        raise SourceFailed(reason, "transient", cause="connect")


def _note_host(
    health: HostHealth | None,
    resolved: Resolved,
    cause: Cause | None,
    reason: str,
    partial: PartialDownload,
    *,
    gate: Gate | None,
) -> None:
    """Tell the run's host health (and race) how the host answered; a host down fails the source.

    A race's loser that was broken off stops here (``RaceLost``): that is not the host's fault.
    """
    if gate is not None:
        if cause is None:
            gate.opened()  # it answered
        else:
            gate.check()
    key = partial.target.key
    host = resolved.host
    if host is None or health is None:
        return
    if cause not in CONNECTION_CAUSES:
        health.reached(host)
    elif health.failed(host, _host_reason(reason), key):
        raise SourceFailed(f"{reason}; {host} not reachable", "transient", cause=cause)


def _host_reason(reason: str) -> str:
    """ "connection failed (connect timed out)" -> "connect timed out" (for the host's line)."""
    prefix = "connection failed ("
    if reason.startswith(prefix) and reason.endswith(")"):
        return reason[len(prefix) : -1]
    return reason


def _verification_problem(target: Target, size: int, sha256: str | None) -> FileProblem | None:
    return check_bytes(Expected(target.expected_size, target.expected_sha256, "none"), size, sha256)


def _mismatch_kind(target: Target) -> FailureKind:
    """Wrong bytes against a pin mean upstream changed; without a pin they are just wrong."""
    return "changed" if target.expected_sha256 is not None else "permanent"


def _check_offered_size(target: Target, size: int | None) -> None:
    """Fail early, before any byte moves, when the size on offer is not the one expected."""
    if size is None:
        return
    problem = check_bytes(Expected(target.expected_size, None, "none"), size, None)
    if problem is not None:
        raise SourceFailed(f"{problem} (the size on offer)", _mismatch_kind(target))


def _all_failed(target: Target, failures: list[tuple[str, SourceFailed]]) -> Exception:
    """The one error that sums up why no source delivered the target."""
    reasons = [f"{source}: {failure.reason}" for source, failure in failures]
    if not failures:
        return DownloadError(
            "no source to download from",
            where=target.name,
            hint="Add a source to the manifest, or put the file in place with `lhymirror add`.",
        )
    kinds = {failure.kind for _, failure in failures}
    own_changed = any(failure.category == "checksum" for _, failure in failures)
    if kinds == {"changed"} and own_changed and target.expected_sha256 is not None:
        return UpstreamChangedError(
            target.name,
            target.expected_sha256,
            {source: failure.actual_sha256 for source, failure in failures},
            [failure.rejected for _, failure in failures if failure.rejected is not None],
            "; ".join(reasons),
        )
    manual = [failure for _, failure in failures if failure.kind == "manual"]
    if manual and not kinds & {"transient", "changed"}:
        return ManualStepRequired(
            "manual step needed",
            where=target.name,
            detail="; ".join(reasons),
            instructions=manual[0].instructions or "",
        )
    error = DownloadError(
        "download failed", where=target.name, detail="; ".join(reasons), hint=RESUME_HINT
    )
    return with_cause(error, most_hopeful(failure.category for _, failure in failures))
