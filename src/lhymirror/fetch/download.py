"""The transfer of one target from an ordered list of sources: resumable, verified, with failover.

Bytes are streamed into the store's partial file while being hashed; only a complete transfer
whose size and sha256 match lands at the target's final path (atomic rename). A partial download
resumes only with proof that the server still has the same bytes: the same URL, and an ETag (else
Last-Modified) sent as ``If-Range``. A source that fails (network, HTTP error, quota or HTML page,
wrong bytes) hands over to the next one; a full disk stops at once, keeping the partial.

Per attempt the flow is: open a response (following a Google Drive confirmation once) → decide
from its status where writing starts (:meth:`Downloader._accepted_offset`) → stream the body
(:meth:`Downloader._stream`) → verify and commit (:meth:`Downloader._commit`).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import requests
import urllib3

from lhymirror.core.errors import DownloadError
from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.fetch import gdrive, kaggle
from lhymirror.fetch.http import (
    InsecureRedirectError,
    RetryPolicy,
    is_retryable_status,
    parse_retry_after,
)
from lhymirror.fetch.partial import PartialDownload
from lhymirror.fetch.transfer import (
    FetchResult,
    ManualStepRequired,
    SilentEvents,
    Target,
    TransferEvents,
    UpstreamChangedError,
)
from lhymirror.manifest.sources import (
    GDriveSource,
    KaggleSource,
    is_local_source,
    local_source_path,
    parse_source,
)
from lhymirror.mirror.store import MirrorStore

SNIFF_BYTES = 1024  # looked at before the first byte is kept (HTML pages, PDF magic)
RESUME_HINT = "Run the same command again to resume."

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_HTML_SUFFIXES = (".html", ".htm")


# -- internal control flow -------------------------------------------------------------------

FailureKind = Literal["transient", "permanent", "changed", "manual"]


class _Retry(Exception):
    """This attempt failed; try the same source again (after *delay*, None = backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _SourceFailed(Exception):
    """This source cannot deliver the target now; the next source is tried."""

    def __init__(
        self,
        reason: str,
        kind: FailureKind = "permanent",
        *,
        actual_sha256: str | None = None,
        rejected: Path | None = None,
        instructions: str | None = None,
        retry_from_zero: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.actual_sha256 = actual_sha256
        self.rejected = rejected
        self.instructions = instructions
        self.retry_from_zero = retry_from_zero  # a resumed transfer failed to verify


@dataclass(frozen=True)
class _Remote:
    """A network source resolved to the request that fetches it."""

    source: str
    url: str  # always re-requested as is (never a cached redirect target)
    auth: tuple[str, str] | None = None
    gdrive: bool = False
    kaggle: KaggleSource | None = None


# -- reading a body --------------------------------------------------------------------------


class _BodyReader:
    """Reads a response body as it arrives, and notices a stalled transfer."""

    def __init__(
        self,
        response: requests.Response,
        policy: RetryPolicy,
        clock: Callable[[], float],
        on_received: Callable[[int], None],
    ) -> None:
        self._raw = response.raw
        self._policy = policy
        self._clock = clock
        self._on_received = on_received
        self._window_start = clock()
        self._window_bytes = 0

    def read(self) -> bytes:
        """The next bytes of the body (b"" at its end); ``_Retry`` on a lost or stalled link."""
        try:
            chunk = self._raw.read1(CHUNK_SIZE, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise _Retry(f"connection lost ({_brief(exc)})") from exc
        self._on_received(len(chunk))
        self._watch(len(chunk))
        return chunk

    def read_head(self, size: int) -> bytes:
        """At least *size* bytes from the start of the body (fewer only at its end)."""
        head = b""
        while len(head) < size and (chunk := self.read()):
            head += chunk
        return head

    def _watch(self, nbytes: int) -> None:
        self._window_bytes += nbytes
        now = self._clock()
        if now - self._window_start < self._policy.stall_window:
            return
        if self._window_bytes < self._policy.stall_min_bytes:
            raise _Retry(
                f"transfer stalled (under {self._policy.stall_min_bytes} bytes "
                f"in {self._policy.stall_window:g} s)"
            )
        self._window_start, self._window_bytes = now, 0


# -- the downloader --------------------------------------------------------------------------


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
        kaggle_credentials: kaggle.KaggleCredentials | None = None,
        offline: bool = False,
        rng: random.Random | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.offline = offline
        self.kaggle_credentials = kaggle_credentials
        self._sleep = sleep
        self._clock = clock
        self._events: TransferEvents = events or SilentEvents()
        self._rng = rng or random.Random()
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    def fetch(
        self, target: Target, sources: Sequence[str], session: requests.Session
    ) -> FetchResult:
        """Try each source in order (failover) until one delivers verified bytes to final_path.

        Raises ``DownloadError`` (every source failed; the detail lists why),
        ``UpstreamChangedError`` (every source served bytes that differ from the pin),
        ``ManualStepRequired`` (only a human step can get the file) or ``StorageError`` (at once;
        the partial is kept for a later resume).
        """
        partial = PartialDownload(self.store, target)
        partial.load()
        failures: list[tuple[str, _SourceFailed]] = []
        needs_network: list[str] = []
        for source in sources:
            if self.offline and not is_local_source(source):
                needs_network.append(source)
                continue
            try:
                return self._fetch_from(target, source, partial, session)
            except _SourceFailed as failure:
                failures.append((source, failure))
        raise _all_failed(target, failures, needs_network)

    def _fetch_from(
        self, target: Target, source: str, partial: PartialDownload, session: requests.Session
    ) -> FetchResult:
        if is_local_source(source):
            return self._copy_local(target, source, partial)
        remote = self._resolve(target, source)
        return self._fetch_remote(remote, partial, session)

    def _resolve(self, target: Target, source: str) -> _Remote:
        """The request for a network source (or why it cannot be made)."""
        try:
            parsed = parse_source(source)
        except ValueError as exc:
            raise _SourceFailed(f"not a usable source ({exc})") from exc
        if isinstance(parsed, GDriveSource):
            return _Remote(source, gdrive.download_url(parsed.file_id), gdrive=True)
        if isinstance(parsed, KaggleSource):
            if self.kaggle_credentials is None:
                raise _SourceFailed(
                    "no Kaggle API credentials",
                    "manual",
                    instructions=kaggle.no_credentials_instructions(parsed),
                )
            url = kaggle.download_url(parsed)
            auth = self.kaggle_credentials.auth if kaggle.is_api_url(url) else None
            return _Remote(source, url, auth=auth, kaggle=parsed)
        return _Remote(source, parsed.url)

    # -- one network source, with retries ------------------------------------------------

    def _fetch_remote(
        self, remote: _Remote, partial: PartialDownload, session: requests.Session
    ) -> FetchResult:
        key = partial.target.key
        failed_attempts = 0
        restarted_after_mismatch = False
        while True:
            try:
                return self._attempt(remote, partial, session)
            except _Retry as retry:
                failed_attempts += 1
                if failed_attempts >= self.policy.attempts:
                    reason = f"{retry.reason}; gave up after {failed_attempts} attempts"
                    raise _SourceFailed(reason, "transient") from None
                delay = retry.delay
                if delay is None:
                    delay = self.policy.backoff(failed_attempts, self._rng)
                self._events.retrying(key, remote.source, retry.reason, delay)
                if delay > 0:
                    self._sleep(delay)
            except _SourceFailed as failure:
                if not failure.retry_from_zero or restarted_after_mismatch:
                    raise
                restarted_after_mismatch = True  # the held prefix may be what was wrong
                self._events.restarted(key, 0)

    def _attempt(
        self, remote: _Remote, partial: PartialDownload, session: requests.Session
    ) -> FetchResult:
        offset = partial.resume_offset(remote.url)
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = partial.validator or ""
        with self._open(remote, partial, session, headers) as response:
            start = self._accepted_offset(remote, partial, response, offset)
            if start is None:  # 416: the bytes held are already the whole file
                partial.begin(remote.url, None, None, offset)
            else:
                self._stream(remote, partial, response, start)
            resumed_from = offset if start is None else start
        return self._commit(partial, remote.source, resumed_from)

    def _open(
        self,
        remote: _Remote,
        partial: PartialDownload,
        session: requests.Session,
        headers: dict[str, str],
    ) -> requests.Response:
        """Send the request; for Drive, recognise its HTML pages and follow a confirmation once."""
        response = self._get(session, remote.url, headers, remote.auth)
        followed = False
        while remote.gdrive and _is_html_response(response):
            page = _read_drive_page(response, partial)
            if not isinstance(page, gdrive.ConfirmPage) or followed:
                raise _drive_failure(page)
            followed = True
            response = self._get(session, page.url, headers, None)
        return response

    def _get(
        self,
        session: requests.Session,
        url: str,
        headers: dict[str, str],
        auth: tuple[str, str] | None,
    ) -> requests.Response:
        """GET *url* as a stream; network trouble becomes ``_Retry``, refusals ``_SourceFailed``."""
        try:
            return session.get(
                url,
                headers=headers,
                auth=auth,
                stream=True,
                timeout=self.policy.timeout,
                allow_redirects=True,
            )
        except InsecureRedirectError as exc:
            raise _SourceFailed(str(exc)) from exc
        except requests.TooManyRedirects as exc:
            raise _SourceFailed("too many redirects") from exc
        except requests.exceptions.SSLError as exc:
            raise _SourceFailed(f"TLS error ({_brief(exc)})") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(f"connection failed ({_brief(exc)})") from exc
        except requests.RequestException as exc:
            raise _SourceFailed(f"request failed ({_brief(exc)})") from exc

    # -- what the answer means -----------------------------------------------------------

    def _accepted_offset(
        self, remote: _Remote, partial: PartialDownload, response: requests.Response, offset: int
    ) -> int | None:
        """Where this response's body goes in the file; None when the bytes held are complete."""
        status = response.status_code
        if status == 416:
            self._after_unsatisfiable_range(partial, response, offset)
            return None
        if is_retryable_status(status):
            raise _Retry(f"HTTP {status}", self._retry_after(response))
        if remote.kaggle is not None and status in (401, 403):
            raise _SourceFailed(
                f"Kaggle refused the download (HTTP {status})",
                "manual",
                instructions=kaggle.forbidden_instructions(remote.kaggle),
            )
        if status not in (200, 206):
            raise _SourceFailed(f"HTTP {status} {response.reason or ''}".rstrip())
        _refuse_encoded(response)
        _refuse_html_type(partial.target, response)
        if status == 206:
            return self._after_partial_content(partial, response, offset)
        _check_offered_size(partial.target, _int_or_none(response.headers.get("Content-Length")))
        return 0

    def _after_partial_content(
        self, partial: PartialDownload, response: requests.Response, offset: int
    ) -> int:
        """Accept a 206 only when it continues exactly where the bytes held end."""
        header = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(header)
        expected = partial.target.expected_size
        start = int(match.group(1)) if match else None
        total = _int_or_none(match.group(3)) if match else None
        if start != offset or (expected is not None and total not in (None, expected)):
            self._restart(partial)
            raise _Retry(f"server sent another range ({header or 'no Content-Range'})", delay=0)
        return offset

    def _after_unsatisfiable_range(
        self, partial: PartialDownload, response: requests.Response, offset: int
    ) -> None:
        """A 416 means "complete" only when the bytes held are exactly the whole file."""
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        total = int(match.group(1)) if match else partial.target.expected_size
        if offset and total == offset:
            return
        self._restart(partial)
        raise _Retry("server refused the range (HTTP 416)", delay=0)

    def _restart(self, partial: PartialDownload) -> None:
        """Drop the bytes held: the next attempt starts from zero."""
        if partial.held:
            self._events.restarted(partial.target.key, 0)
        partial.discard()

    def _retry_after(self, response: requests.Response) -> float | None:
        """The server's Retry-After in seconds (None = use backoff); too long fails the source."""
        delay = parse_retry_after(response.headers.get("Retry-After"), self._now())
        if delay is not None and delay > self.policy.retry_after_cap:
            raise _SourceFailed(
                f"HTTP {response.status_code}, server asks to wait {delay:.0f} s "
                f"(more than {self.policy.retry_after_cap:g} s)",
                "transient",
            )
        return delay

    # -- moving bytes ----------------------------------------------------------------------

    def _stream(
        self, remote: _Remote, partial: PartialDownload, response: requests.Response, start: int
    ) -> None:
        """Stream the body into the partial file from *start*, checking its first bytes."""
        target = partial.target
        reader = _BodyReader(response, self.policy, self._clock, partial.count_received)
        head = b""
        if start == 0:
            head = reader.read_head(SNIFF_BYTES)
            _check_head(target, head)
        if start < partial.held:
            self._events.restarted(target.key, start)
        partial.begin(
            remote.url, response.headers.get("ETag"), response.headers.get("Last-Modified"), start
        )
        self._events.started(target.key, _total_size(target, response, start), start)
        with partial.appending() as handle:
            if head:
                self._keep(partial, handle, head)
            while chunk := reader.read():
                self._keep(partial, handle, chunk)

    def _keep(self, partial: PartialDownload, handle: BinaryIO, chunk: bytes) -> None:
        expected = partial.target.expected_size
        if expected is not None and partial.held + len(chunk) > expected:
            raise _SourceFailed(
                f"server sent more than the expected {expected} bytes",
                _mismatch_kind(partial.target),
            )
        partial.append(handle, chunk)
        self._events.advanced(partial.target.key, len(chunk))

    def _copy_local(self, target: Target, source: str, partial: PartialDownload) -> FetchResult:
        """Copy a file from another local mirror (``file://``) with the same verification."""
        try:
            path = local_source_path(source)
        except ValueError as exc:
            raise _SourceFailed(str(exc)) from exc
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise _SourceFailed(f"cannot read {path} ({exc.strerror or exc})") from exc
        with stream:
            size = os.fstat(stream.fileno()).st_size
            _check_offered_size(target, size)
            partial.begin(source, None, None, 0)
            self._events.started(target.key, size, 0)
            with partial.appending() as handle:
                while chunk := _read_local(stream, path):
                    self._keep(partial, handle, chunk)
        return self._commit(partial, source, 0)

    def _commit(self, partial: PartialDownload, source: str, resumed_from: int) -> FetchResult:
        """Verify the bytes held; put them in place, or aside when they are wrong."""
        target = partial.target
        size = partial.held
        sha = partial.sha256() if partial.hashes_while_streaming else None
        problem = _verification_problem(target, size, sha)
        if problem is not None:
            sha = sha or partial.sha256()
            rejected = partial.quarantine(sha)
            raise _SourceFailed(
                f"{problem}; bytes kept at {rejected}",
                _mismatch_kind(target),
                actual_sha256=sha,
                rejected=rejected,
                retry_from_zero=resumed_from > 0,
            )
        etag, last_modified = partial.etag, partial.last_modified
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


# -- helpers ---------------------------------------------------------------------------------

HTML_REASON = "received an HTML page instead of the file (a quota, login or error page)"


def _verification_problem(target: Target, size: int, sha256: str | None) -> str | None:
    if target.expected_size is not None and size != target.expected_size:
        return f"size differs: got {size} bytes, expected {target.expected_size}"
    if target.expected_sha256 is not None and sha256 != target.expected_sha256:
        return f"sha256 differs: expected {target.expected_sha256}, got {sha256}"
    return None


def _mismatch_kind(target: Target) -> FailureKind:
    """Wrong bytes against a pin mean upstream changed; without a pin they are just wrong."""
    return "changed" if target.expected_sha256 is not None else "permanent"


def _check_offered_size(target: Target, size: int | None) -> None:
    """Fail early, before any byte moves, when the size on offer is not the one expected."""
    if target.expected_size is not None and size is not None and size != target.expected_size:
        raise _SourceFailed(
            f"size differs: offered {size} bytes, expected {target.expected_size}",
            _mismatch_kind(target),
        )


def _check_head(target: Target, head: bytes) -> None:
    """Refuse an HTML page posing as the file, and (unpinned) a PDF that is not one."""
    name = target.name.lower()
    if not name.endswith(_HTML_SUFFIXES) and _looks_like_html(head):
        raise _SourceFailed(HTML_REASON)
    if name.endswith(".pdf") and target.expected_sha256 is None and b"%PDF-" not in head:
        raise _SourceFailed("received something that is not a PDF (no %PDF- header)")


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _is_html_response(response: requests.Response) -> bool:
    return _media_type(response) == "text/html"


def _refuse_html_type(target: Target, response: requests.Response) -> None:
    if _is_html_response(response) and not target.name.lower().endswith(_HTML_SUFFIXES):
        raise _SourceFailed(HTML_REASON)


def _refuse_encoded(response: requests.Response) -> None:
    """The hashed bytes must be the stored bytes: no gzip (or other) transfer encoding."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise _SourceFailed(f"server sent {encoding}-encoded data although asked for identity")


def _total_size(target: Target, response: requests.Response, start: int) -> int | None:
    if target.expected_size is not None:
        return target.expected_size
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match:
        return _int_or_none(match.group(3))
    length = _int_or_none(response.headers.get("Content-Length"))
    return None if length is None else start + length


def _read_drive_page(response: requests.Response, partial: PartialDownload) -> gdrive.DrivePage:
    """Read (a bounded amount of) an HTML page Drive sent, and say what it means."""
    with response:
        try:
            body = response.raw.read(gdrive.MAX_PAGE_BYTES, decode_content=True)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise _Retry(f"connection lost ({_brief(exc)})") from exc
    partial.count_received(len(body))
    return gdrive.classify_page(body.decode("utf-8", errors="replace"), response.url)


def _drive_failure(page: gdrive.DrivePage) -> _SourceFailed:
    if isinstance(page, gdrive.QuotaExceeded):
        return _SourceFailed(page.reason, "transient")
    if isinstance(page, gdrive.ConfirmPage):
        return _SourceFailed("Google Drive asked for confirmation again after it was given")
    return _SourceFailed(page.reason)


def _read_local(stream: BinaryIO, path: Path) -> bytes:
    try:
        return stream.read(CHUNK_SIZE)
    except OSError as exc:
        raise _SourceFailed(f"cannot read {path} ({exc.strerror or exc})") from exc


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _brief(exc: BaseException) -> str:
    """The useful part of a network error's very long message."""
    text = " ".join(str(exc).split())
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return text if len(text) <= 160 else text[:157] + "..."


def _all_failed(
    target: Target, failures: list[tuple[str, _SourceFailed]], needs_network: list[str]
) -> Exception:
    """The one error that sums up why no source delivered the target."""
    reasons = [f"{source}: {failure.reason}" for source, failure in failures]
    if needs_network:
        reasons.append(f"{len(needs_network)} source(s) need the network")
        return DownloadError(
            "network use needed in --offline mode",
            where=target.name,
            detail="; ".join(reasons),
            hint="Run without --offline, or put the file in place with `lhymirror add`.",
        )
    if not failures:
        return DownloadError(
            "no source to download from",
            where=target.name,
            hint="Add a source to the manifest, or put the file in place with `lhymirror add`.",
        )
    kinds = {failure.kind for _, failure in failures}
    if kinds == {"changed"} and target.expected_sha256 is not None:
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
    return DownloadError(
        "download failed", where=target.name, detail="; ".join(reasons), hint=RESUME_HINT
    )
