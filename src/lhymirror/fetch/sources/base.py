"""The protocol every kind of source implements, and what it exchanges with the download loop.

A source string (``https://…``, ``gdrive:ID``, ``kaggle:NAME``, ``file:…``) is handled by the
:class:`SourceAdapter` its scheme maps to (:mod:`lhymirror.fetch.sources.registry`). The adapter
*resolves* the string to the request that fetches it (:class:`Resolved`), then, once per attempt,
*opens* it: sends the request(s) the source kind needs and interprets what comes back, handing
the download loop a :class:`Body` to stream, or raising :class:`TryAgain` (this attempt failed,
the same source may work) or :class:`SourceFailed` (use the next source).

Adapters never import a network library: HTTP goes through the :class:`HttpExchange` of the
attempt (:mod:`lhymirror.fetch.response`), which owns what statuses and ranges mean. So this
package stays cheap to import, and adding a kind of source is one module and one registry line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from requests import Response

    from lhymirror.fetch.sources.kaggle import KaggleCredentials
    from lhymirror.fetch.transfer import Target

FailureKind = Literal["transient", "permanent", "changed", "manual"]
# What went wrong with an attempt, for per-cause retry budgets and host health:
# resolve = name resolution, connect = refused/unreachable/connect timeout, timeout = no answer
# (first byte) in time, tls = TLS handshake or certificate, read = lost or stalled body,
# status = a retryable HTTP status, range = the server answered a range wrongly.
Cause = Literal["resolve", "connect", "timeout", "tls", "read", "status", "range"]
# The causes that count against the host (see lhymirror.fetch.health).
CONNECTION_CAUSES: frozenset[Cause] = frozenset({"resolve", "connect", "timeout", "tls"})
# Why a source failed, as a person would group it (the summary's causes; see SourceFailed).
Category = Literal["unreachable", "gone", "quota", "html", "checksum", "copy", "manual", "other"]
# Most hopeful first. A file whose sources all failed is told by the most hopeful of their
# categories: it is "gone" only when every source is; one that failed anywhere for a passing
# reason (network, quota, server trouble: "other") may still come with a rerun.
_MOST_HOPEFUL_FIRST: tuple[Category, ...] = (
    "quota", "unreachable", "other", "html", "checksum", "manual", "gone", "copy",
)  # fmt: skip


def most_hopeful(categories: Iterable[Category]) -> Category:
    """The category that tells the failure of a file all of whose sources failed as given."""
    found = set(categories)
    return next((c for c in _MOST_HOPEFUL_FIRST if c in found), "other")


class TryAgain(Exception):
    """This attempt failed; the same source may work (after *delay*; None = backoff).

    *restart*: the bytes held cannot be continued; the next attempt starts from zero.
    """

    def __init__(
        self, reason: str, delay: float | None = None, *, cause: Cause, restart: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.cause: Cause = cause
        self.restart = restart


class SourceFailed(Exception):
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
        cause: Cause | None = None,
        category: Category | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.actual_sha256 = actual_sha256
        self.rejected = rejected
        self.instructions = instructions
        self.retry_from_zero = retry_from_zero  # a resumed transfer failed to verify
        self.cause = cause  # the cause of the last attempt, when attempts ran out
        self._category = category

    @property
    def category(self) -> Category:
        """The kind of problem: given where it was raised, else told by the kind and cause."""
        if self._category is not None:
            return self._category
        if self.kind == "changed" or "differs" in self.reason:
            return "checksum"
        if self.kind == "manual":
            return "manual"
        if self.cause in CONNECTION_CAUSES:
            return "unreachable"
        return "other"


def as_copy(failure: SourceFailed, target: Target, source: str, alternative: bool) -> SourceFailed:
    """Other bytes from a copy (not the entry's first source) say nothing about upstream."""
    if failure.kind != "changed" or target.primary is None or source == target.primary:
        return failure
    then = "; the next source is tried" if alternative else ""
    return SourceFailed(
        f"this copy differs from the pinned file ({failure.reason}){then}",
        "changed",
        actual_sha256=failure.actual_sha256,
        rejected=failure.rejected,
        category="copy",
    )


@dataclass(frozen=True)
class SourceSettings:
    """What adapters may need beyond the source string (credentials)."""

    kaggle_credentials: KaggleCredentials | None = None


@dataclass(frozen=True)
class Resolved:
    """A source resolved to what fetches it."""

    source: str  # the source string as given (reported as where the bytes came from)
    url: str  # what is requested, always as is; a resume is proven against this URL
    host: str | None  # the network host (None: no network needed)
    auth: tuple[str, str] | None = None
    detail: object = None  # adapter-specific (e.g. the parsed Kaggle source)


class Body(Protocol):
    """An opened source: where its bytes go in the file, and the bytes themselves."""

    @property
    def start(self) -> int | None:
        """Offset of the first byte of the body; None: the bytes held are already complete."""

    @property
    def etag(self) -> str | None:
        """The validator that proves a later resume (None: none given)."""

    @property
    def last_modified(self) -> str | None:
        """The other validator (used when there is no strong ETag)."""

    @property
    def total(self) -> int | None:
        """Size of the whole file when known (for progress)."""

    @property
    def offered_size(self) -> int | None:
        """The size on offer for a whole-file answer, checked before any byte moves."""

    @property
    def sniff(self) -> bool:
        """True when the first bytes must be checked (an HTML page posing as the file)."""

    @property
    def accepts_ranges(self) -> bool:
        """True when the server said it serves byte ranges (``Accept-Ranges: bytes``)."""

    def read(self) -> bytes:
        """The next bytes (b"" at the end); raises ``TryAgain``/``SourceFailed``."""

    def close(self) -> None:
        """Release the connection or file."""


class HttpExchange(Protocol):
    """HTTP for one attempt: the request carries the attempt's range; answers are interpreted."""

    def get(self, url: str, auth: tuple[str, str] | None = None) -> Response:
        """Send the attempt's GET (streamed); network trouble raises ``TryAgain``."""

    def read_page(self, response: Response, limit: int) -> str:
        """Read (at most *limit* bytes of) an answer that is a page, not the file; close it."""

    def accept(self, response: Response) -> Body:
        """What the answer means for the file: a body to stream, or ``TryAgain``/``SourceFailed``.

        The response is closed when this raises.
        """


@dataclass(frozen=True)
class Request:
    """One attempt at a source: the target, the bytes held, and HTTP to reach it."""

    target: Target
    offset: int  # bytes held that may be continued (0: from the start)
    http: HttpExchange


def is_html_response(response: Response) -> bool:
    """True when the answer says it is an HTML page."""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0]
    return media_type.strip().lower() == "text/html"


class SourceAdapter(Protocol):
    """One kind of source (see the module docstring)."""

    @property
    def needs_network(self) -> bool:
        """False for sources that are read locally (allowed with ``--offline``)."""

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        """What fetches *source*; ``SourceFailed`` when it cannot be fetched at all."""

    def open(self, resolved: Resolved, request: Request) -> Body:
        """Send the request(s) of one attempt and interpret the answer."""
