"""Is every source of every entry still there, and unchanged? Asked without downloading bodies.

For maintainers (``lhymirror check``). Each source is asked once, with ``HEAD`` (or, where a
server refuses ``HEAD``, ``GET`` with ``Range: bytes=0-0``, closed after the headers); what it says
is compared with the manifest's size and with the ETag / Last-Modified recorded when the mirror
downloaded the file from that same source. The outcome of a source is one of:

- ``alive``: it answers with the file, and nothing says it changed;
- ``changed``: its size differs from the manifest, or its validators from the recorded ones;
- ``moved``: it answers, but only after a permanent redirect (the manifest should follow it);
- ``gone``: 404/410, access denied, an HTML page instead of the file, Drive's not-found page,
  or a Wayback URL that was never archived;
- ``quota``: rate limited (429) or Google Drive's quota page: try again later;
- ``unreachable``: no answer (name resolution, connection, timeout, 5xx);
- ``unknown``: it cannot be told without a human step (Kaggle without credentials, …).

Polite by construction: at most *per_host* requests to one host at a time, every request with a
timeout, no retries, and no body read beyond a page that Drive sends in place of a file.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import requests

from lhymirror.core.errors import DownloadError, IntegrityError, LhymirrorError
from lhymirror.core.units import count_of
from lhymirror.fetch.http import is_retryable_status, new_session
from lhymirror.fetch.plan import CourseArchive, course_archive
from lhymirror.fetch.response import brief
from lhymirror.fetch.scheduler import PerThread
from lhymirror.fetch.sources import gdrive, kaggle
from lhymirror.fetch.sources.base import is_html_response
from lhymirror.manifest.model import FileEntry, Manifest
from lhymirror.manifest.sources import (
    GDriveSource,
    KaggleSource,
    WaybackSource,
    parse_source,
)
from lhymirror.mirror.store import FileRecord

Status = Literal["alive", "changed", "moved", "gone", "quota", "unreachable", "unknown"]
STATUSES: tuple[Status, ...] = get_args(Status)
_REFUSES_HEAD = (403, 405, 501)  # 403: signed storage URLs (GitHub release assets) are GET-only
_PERMANENT = (301, 308)
_HTML_SUFFIXES = (".html", ".htm")


@dataclass(frozen=True)
class Probe:
    """What one source said: its status, why, and the facts it gave."""

    status: Status
    detail: str = ""
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None  # where a permanent redirect leads


@dataclass(frozen=True)
class SourceCheck:
    """The probe of one source of one entry (``part``: index of a split file's part)."""

    entry_id: str
    part: int | None
    source: str
    probe: Probe

    def to_json(self) -> dict[str, Any]:
        """The check as plain data."""
        probe = self.probe
        return {
            "id": self.entry_id,
            "part": self.part,
            "source": self.source,
            "state": probe.status,
            "detail": probe.detail or None,
            "size": probe.size,
            "etag": probe.etag,
            "last_modified": probe.last_modified,
            "location": probe.location,
        }


@dataclass(frozen=True)
class CheckReport:
    """Every source of every entry checked, in manifest order."""

    year: int
    checks: tuple[SourceCheck, ...]

    @property
    def counts(self) -> dict[str, int]:
        """How many sources have each status (every status listed, zeros included)."""
        found = Counter(check.probe.status for check in self.checks)
        return {status: found[status] for status in STATUSES}

    def with_status(self, *statuses: Status) -> list[SourceCheck]:
        """The checks whose status is one of *statuses*."""
        return [check for check in self.checks if check.probe.status in statuses]

    def error(self) -> LhymirrorError | None:
        """The verdict: None when no source is gone, unreachable or changed; else the error
        that sums it up, changed sources (``IntegrityError``) before gone or unreachable ones
        (``DownloadError``)."""
        where = str(self.year)
        changed = self.with_status("changed")
        if changed:
            return IntegrityError(
                f"{count_of(len(changed), 'source')} changed",
                where=where,
                hint="Check the new bytes (lhymirror sync --accept-upstream ID) and update the "
                "pins.",
            )
        failed = self.with_status("gone", "unreachable")
        if failed and len(self.with_status("unreachable")) == len(self.checks):
            return DownloadError(
                "no source answered",
                where=where,
                hint="Check the connection or proxy settings, then run the same command again.",
            )
        if failed:
            return DownloadError(
                f"{count_of(len(failed), 'source')} gone or unreachable",
                where=where,
                hint="Replace or remove those sources in the manifest.",
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        return {
            "year": self.year,
            "counts": self.counts,
            "sources": [check.to_json() for check in self.checks],
        }


@dataclass(frozen=True)
class _Job:
    entry: FileEntry
    part: int | None
    source: str
    size: int | None  # the size the manifest expects of this source's bytes
    record: FileRecord | None  # what the mirror recorded when it downloaded from this source


def check_sources(
    manifest: Manifest,
    *,
    records: Callable[[str], FileRecord | None] = lambda _: None,
    only: Sequence[str] = (),
    jobs: int = 4,
    per_host: int = 2,
    timeout: tuple[float, float] = (10.0, 20.0),
    kaggle_credentials: kaggle.KaggleCredentials | None = None,
    archive: bool = False,
    session_factory: Callable[[], requests.Session] = new_session,
) -> CheckReport:
    """Probe every source of the manifest's files (or of the ids in *only*), politely.

    *records* gives the mirror's record of an entry (``MirrorStore.record``), so validators seen
    at download time can be compared. *archive*: also probe the Wayback capture that ``sync``
    would try last for a pinned course-server file. Never raises for what a source answers.
    """
    chosen = set(only)
    last_resort = course_archive(manifest) if archive else None
    work = [
        job
        for entry in manifest.files
        if not chosen or entry.id in chosen
        for job in _jobs(entry, records(entry.id), last_resort)
    ]
    prober = _Prober(timeout, kaggle_credentials, session_factory, per_host)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            probes = list(pool.map(prober.probe, work))
    finally:
        prober.sessions.close()
    checks = tuple(
        SourceCheck(job.entry.id, job.part, job.source, probe)
        for job, probe in zip(work, probes, strict=True)
    )
    return CheckReport(manifest.year, checks)


def _jobs(entry: FileEntry, record: FileRecord | None, archive: CourseArchive | None) -> list[_Job]:
    if entry.parts:
        return [
            _Job(entry, index, source, part.size, None)
            for index, part in enumerate(entry.parts)
            for source in part.urls
        ]
    sources = list(entry.urls or ())
    if archive is not None and entry.sha256 is not None:
        sources += [s for s in archive.captures(sources)[:1] if s not in sources]
    return [
        _Job(entry, None, source, entry.size, record if _came_from(record, source) else None)
        for source in sources
    ]


def _came_from(record: FileRecord | None, source: str) -> bool:
    return record is not None and record.source == source and not record.accepted_upstream


class _Prober:
    """Sends the requests of each probe, one session per thread, a few per host at a time."""

    def __init__(
        self,
        timeout: tuple[float, float],
        credentials: kaggle.KaggleCredentials | None,
        session_factory: Callable[[], requests.Session],
        per_host: int,
    ) -> None:
        self._timeout = timeout
        self._credentials = credentials
        self.sessions = PerThread(session_factory, lambda session: session.close())
        self._per_host = max(1, per_host)
        self._hosts: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def probe(self, job: _Job) -> Probe:
        """Ask one source; whatever goes wrong becomes a status, never an exception."""
        try:
            parsed = parse_source(job.source)
        except ValueError as exc:
            return Probe("unknown", str(exc))
        if isinstance(parsed, KaggleSource):
            if self._credentials is None:
                return Probe("unknown", "needs Kaggle credentials (KAGGLE_USERNAME/KAGGLE_KEY)")
            url, auth = kaggle.download_url(parsed), self._credentials.auth
        elif isinstance(parsed, GDriveSource):
            url, auth = gdrive.download_url(parsed.file_id), None
        elif isinstance(parsed, WaybackSource):
            url, auth = parsed.capture_url(), None
        else:
            url, auth = parsed.url, None
        with self._host_slot(urlsplit(url).hostname or ""):
            try:
                response = self._ask(url, auth, head=not isinstance(parsed, GDriveSource))
            except requests.exceptions.SSLError as exc:
                return Probe("unreachable", f"TLS error ({brief(exc)})")
            except (requests.ConnectionError, requests.Timeout) as exc:
                return Probe("unreachable", brief(exc))
            except requests.RequestException as exc:
                return Probe("unknown", brief(exc))
            with response:
                return _interpret(job, parsed, response)

    def _ask(self, url: str, auth: tuple[str, str] | None, *, head: bool) -> requests.Response:
        session = self.sessions.get()
        if head:
            response = session.head(url, auth=auth, timeout=self._timeout, allow_redirects=True)
            if response.status_code not in _REFUSES_HEAD:
                return response
            response.close()
        headers = {"Range": "bytes=0-0", "Accept-Encoding": "identity"}
        return session.get(url, headers=headers, auth=auth, timeout=self._timeout, stream=True)

    def _host_slot(self, host: str) -> threading.Semaphore:
        with self._lock:
            return self._hosts.setdefault(host, threading.Semaphore(self._per_host))


def _interpret(job: _Job, parsed: object, response: requests.Response) -> Probe:
    """What the answer means for this source (the response is closed by the caller)."""
    if response.status_code in (200, 206):
        return _answered(job, parsed, response)
    return _refusal(parsed, response.status_code, response.headers.get("Retry-After"))


def _refusal(parsed: object, status: int, wait: str | None) -> Probe:
    if status == 429:
        return Probe("quota", f"HTTP 429 (rate limited{f', retry after {wait} s' if wait else ''})")
    if status in (404, 410):
        detail = "not archived in the Wayback Machine" if isinstance(parsed, WaybackSource) else ""
        return Probe("gone", detail or f"HTTP {status}")
    if status in (401, 403) and isinstance(parsed, KaggleSource):
        return Probe("unknown", f"HTTP {status}: accept the rules at {parsed.page_url}")
    if status in (401, 403):
        return Probe("gone", f"HTTP {status} (access denied)")
    if is_retryable_status(status):
        return Probe("unreachable", f"HTTP {status}")
    return Probe("unknown", f"HTTP {status}")


def _answered(job: _Job, parsed: object, response: requests.Response) -> Probe:
    if is_html_response(response) and not job.entry.path.lower().endswith(_HTML_SUFFIXES):
        if isinstance(parsed, GDriveSource):
            page = response.raw.read(gdrive.MAX_PAGE_BYTES, decode_content=True)
            return _drive_page(gdrive.classify_page(page.decode("utf-8", "replace"), response.url))
        return Probe("gone", "serves an HTML page instead of the file")
    seen = Probe(
        "alive",
        size=_offered_size(response),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
    )
    if job.size is not None and seen.size is not None and seen.size != job.size:
        return replace(seen, status="changed", detail=f"size {seen.size} B, manifest {job.size} B")
    changed = _validator_change(job.record, seen.etag, seen.last_modified)
    if changed:
        return replace(seen, status="changed", detail=changed)
    if any(r.status_code in _PERMANENT for r in response.history):
        detail = f"permanently redirected to {response.url}"
        return replace(seen, status="moved", detail=detail, location=response.url)
    return seen


def _drive_page(page: gdrive.DrivePage) -> Probe:
    if isinstance(page, gdrive.ConfirmPage):
        return Probe("alive", "large file: Drive asks to confirm the download")
    if isinstance(page, gdrive.QuotaExceeded):
        return Probe("quota", page.reason)
    if isinstance(page, gdrive.NotShared):
        return Probe("gone", page.reason)
    return Probe("unknown", page.reason)


def _offered_size(response: requests.Response) -> int | None:
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length", "").strip()
    return int(length) if length.isdigit() else None


def _validator_change(record: FileRecord | None, etag: str | None, modified: str | None) -> str:
    """Why the validators say the file changed since it was downloaded ("" when they do not)."""
    if record is None:
        return ""
    if record.etag and etag:
        if _strip_weak(record.etag) != _strip_weak(etag):
            return f"ETag {etag}, recorded {record.etag} when downloaded"
        return ""
    if record.last_modified and modified and record.last_modified != modified:
        return f"Last-Modified {modified}, recorded {record.last_modified} when downloaded"
    return ""


def _strip_weak(etag: str) -> str:
    return etag.removeprefix("W/")
