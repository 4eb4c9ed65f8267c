"""Google Drive: the download URL of a file id, and what an HTML answer from Drive means.

Drive answers a download request either with the file, or with an HTML page: a confirmation page
for files too large to virus-scan (follow its form or link once), a quota page ("too many users
have viewed or downloaded this file recently"), or a not-found / sign-in page for files that are
gone or private. :func:`classify_page` tells them apart; everything here is a pure function.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

from lhymirror.fetch.sources.base import (
    Body,
    Request,
    Resolved,
    SourceFailed,
    SourceSettings,
    is_html_response,
)
from lhymirror.fetch.sources.https import host_of, parse_or_fail
from lhymirror.manifest.sources import GDriveSource

DOWNLOAD_URL = "https://drive.usercontent.google.com/download"
LEGACY_BASE = "https://drive.google.com"
MAX_PAGE_BYTES = 256 * 1024  # Drive's pages are a few KiB; never read a big body as a page

QUOTA_REASON = "Google Drive quota exceeded for this file; try again later"
GONE_REASON = "file does not exist or is not shared publicly"

_QUOTA_MARKERS = ("quota exceeded", "too many users have viewed or downloaded")
_GONE_MARKERS = (
    "does not exist",
    "page not found",
    "you need access",
    "request access",
    "accounts.google.com/servicelogin",
    "sign in - google accounts",
    "google drive: sign-in",
)
_GOOGLE_HOSTS = ("google.com", "googleusercontent.com")


def download_url(file_id: str) -> str:
    """The direct download URL of a Drive file."""
    return f"{DOWNLOAD_URL}?{urlencode({'id': file_id, 'export': 'download'})}"


@dataclass(frozen=True)
class ConfirmPage:
    """A "can't scan this file for viruses" page; ``url`` downloads the file anyway."""

    url: str


@dataclass(frozen=True)
class QuotaExceeded:
    """The file was downloaded too often recently; Drive refuses it for up to 24 hours."""

    reason: str = QUOTA_REASON


@dataclass(frozen=True)
class NotShared:
    """The file is gone, or only its owner (or people signed in) may read it."""

    reason: str = GONE_REASON


@dataclass(frozen=True)
class UnknownPage:
    """Some other HTML page; ``title`` says which."""

    title: str

    @property
    def reason(self) -> str:
        """Why the source failed, for the user."""
        shown = f" ({self.title!r})" if self.title else ""
        return f"Google Drive answered with an unexpected page{shown}"


DrivePage = ConfirmPage | QuotaExceeded | NotShared | UnknownPage


def classify_page(page: str, page_url: str) -> DrivePage:
    """What an HTML page Drive sent instead of a file means (see the module docstring)."""
    parsed = _parse_page(page)
    confirm = _confirm_url(parsed, page_url)
    if confirm is not None:
        return ConfirmPage(confirm)
    text = html.unescape(page).lower()
    if any(marker in text for marker in _QUOTA_MARKERS):
        return QuotaExceeded()
    if any(marker in text for marker in _GONE_MARKERS):
        return NotShared()
    return UnknownPage(parsed.title.strip())


@dataclass
class _Form:
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)


class _PageParser(HTMLParser):
    """Collects the title, the download form's hidden fields and the links of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.form: _Form | None = None
        self.links: list[str] = []
        self._in_title = False
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "title":
            self._in_title = True
        elif tag == "form" and values.get("id") == "download-form" and self.form is None:
            self.form = _Form(values.get("action", ""))
            self._in_form = True
        elif tag == "input" and self._in_form and self.form is not None:
            if values.get("type") == "hidden" and values.get("name"):
                self.form.fields.append((values["name"], values.get("value", "")))
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "form":
            self._in_form = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _parse_page(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return parser


def _confirm_url(parsed: _PageParser, page_url: str) -> str | None:
    """The "download anyway" URL: the newer GET form, else the older ``confirm=`` link."""
    if parsed.form is not None and parsed.form.action:
        action = urljoin(page_url, parsed.form.action)
        if _is_google_https(action):
            separator = "&" if urlsplit(action).query else "?"
            return action + separator + urlencode(parsed.form.fields)
    for link in parsed.links:
        if "confirm=" in link and ("/uc?" in link or "/download?" in link):
            url = urljoin(LEGACY_BASE if link.startswith("/uc?") else page_url, link)
            if _is_google_https(url):
                return url
    return None


def _is_google_https(url: str) -> bool:
    """Only ever follow a confirmation to Google over https."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme == "https" and any(
        host == name or host.endswith("." + name) for name in _GOOGLE_HOSTS
    )


class GDriveAdapter:
    """``gdrive:ID``: the direct download URL; Drive's HTML pages are recognised, not stored."""

    needs_network = True

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        """The direct download URL of the file id."""
        parsed = parse_or_fail(source)
        assert isinstance(parsed, GDriveSource)
        url = download_url(parsed.file_id)
        return Resolved(source, url, host_of(url))

    def open(self, resolved: Resolved, request: Request) -> Body:
        """GET the file; follow a "download anyway" confirmation once; fail on other pages."""
        http = request.http
        response = http.get(resolved.url)
        followed = False
        while is_html_response(response):
            page = classify_page(http.read_page(response, MAX_PAGE_BYTES), response.url)
            if not isinstance(page, ConfirmPage) or followed:
                raise drive_failure(page)
            followed = True
            response = http.get(page.url)
        return http.accept(response)


def drive_failure(page: DrivePage) -> SourceFailed:
    """Why a page Drive sent means this source fails now."""
    if isinstance(page, QuotaExceeded):
        return SourceFailed(page.reason, "transient", category="quota")
    if isinstance(page, ConfirmPage):
        return SourceFailed("Google Drive asked for confirmation again after it was given")
    return SourceFailed(page.reason, category="gone" if isinstance(page, NotShared) else None)


ADAPTER = GDriveAdapter()
