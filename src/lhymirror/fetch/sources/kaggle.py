"""Kaggle competitions: API credentials, download URLs and the human steps Kaggle requires.

Credentials come from ``KAGGLE_USERNAME``/``KAGGLE_KEY``, else from ``kaggle.json`` (in
``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``). They are sent only to ``www.kaggle.com`` with HTTP
basic auth; ``requests`` drops the ``Authorization`` header when a redirect leaves that host (to
the storage host holding the data), and lhymirror never adds it back. :class:`KaggleAdapter`
fetches with them, and says which human step helps when Kaggle refuses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from lhymirror.core.errors import UsageError
from lhymirror.fetch.sources.base import Body, Request, Resolved, SourceFailed, SourceSettings
from lhymirror.fetch.sources.https import host_of, parse_or_fail
from lhymirror.manifest.sources import KaggleSource, source_kind

if TYPE_CHECKING:
    from lhymirror.fetch.plan import SyncPlan

API_HOST = "www.kaggle.com"
API_BASE = f"https://{API_HOST}/api/v1/competitions/data"
TOKEN_PAGE = "https://www.kaggle.com/settings"


@dataclass(frozen=True)
class KaggleCredentials:
    """A Kaggle API token (the key never appears in a repr)."""

    username: str
    key: str = field(repr=False)

    @property
    def auth(self) -> tuple[str, str]:
        """The ``(user, password)`` pair for HTTP basic auth."""
        return (self.username, self.key)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the Kaggle CLI keeps ``kaggle.json``."""
    env = os.environ if env is None else env
    folder = env.get("KAGGLE_CONFIG_DIR")
    return Path(folder) / "kaggle.json" if folder else Path.home() / ".kaggle" / "kaggle.json"


def load_credentials(
    env: Mapping[str, str] | None = None, config_path: Path | None = None
) -> KaggleCredentials | None:
    """Kaggle credentials from the environment, else from ``kaggle.json``; None when absent.

    A ``kaggle.json`` that exists but cannot be used raises ``UsageError`` naming the file.
    """
    env = os.environ if env is None else env
    username, key = env.get("KAGGLE_USERNAME"), env.get("KAGGLE_KEY")
    if username and key:
        return KaggleCredentials(username, key)
    path = config_path if config_path is not None else default_config_path(env)
    if not path.is_file():
        return None
    return _read_config(path)


def credentials_for_plan(plan: SyncPlan) -> KaggleCredentials | None:
    """Kaggle credentials, read only when a planned transfer may need them."""
    uses_kaggle = any(
        source_kind(source) == "kaggle"
        for item in plan.items
        if item.needs_transfer
        for source in (*item.sources, *(s for part in item.parts for s in part.sources))
    )
    return load_credentials() if uses_kaggle else None


def _read_config(path: Path) -> KaggleCredentials:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad_config(path, f"cannot read it ({exc})") from exc
    if not isinstance(data, dict):
        raise _bad_config(path, "expected a JSON object")
    username, key = data.get("username"), data.get("key")
    if not isinstance(username, str) or not isinstance(key, str) or not username or not key:
        raise _bad_config(path, 'expected {"username": "...", "key": "..."}')
    return KaggleCredentials(username, key)


def _bad_config(path: Path, detail: str) -> UsageError:
    return UsageError(
        "unusable Kaggle credentials",
        where=str(path),
        detail=detail,
        hint=f"Download a fresh API token from {TOKEN_PAGE} and save it there.",
    )


def download_url(source: KaggleSource) -> str:
    """The API URL of one competition file, or of all its data (a zip) without a file."""
    competition = quote(source.competition, safe="")
    if source.file:
        return f"{API_BASE}/download/{competition}/{quote(source.file, safe='/')}"
    return f"{API_BASE}/download-all/{competition}"


def is_api_url(url: str) -> bool:
    """True when *url* is on the host credentials may be sent to."""
    parts = urlsplit(url)
    return parts.scheme == "https" and parts.hostname == API_HOST


def rules_url(competition: str) -> str:
    """The page where a signed-in user accepts a competition's rules."""
    return f"https://www.kaggle.com/c/{competition}/rules"


def forbidden_instructions(source: KaggleSource) -> str:
    """What to do when Kaggle refuses the download (401/403)."""
    return (
        f"accept the competition rules at {rules_url(source.competition)} (signed in), "
        "then run again"
    )


def no_credentials_instructions(source: KaggleSource) -> str:
    """Exact steps to take when no Kaggle credentials are configured.

    The command that imports a hand-downloaded file is the CLI's to print: only it knows the
    entry (not a part of it), the manifest and the mirror the user chose.
    """
    return (
        f"create an API token at {TOKEN_PAGE} (Account > API > Create New Token) and save it "
        "as ~/.kaggle/kaggle.json (or set KAGGLE_USERNAME and KAGGLE_KEY), then run again; "
        f"or download the file by hand from {source.page_url} and import it with `lhymirror add`"
    )


class KaggleAdapter:
    """``kaggle:NAME[/FILE]``: the competition data API, with the user's token."""

    needs_network = True

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        """The API URL, with credentials; a manual step when there are none."""
        parsed = parse_or_fail(source)
        assert isinstance(parsed, KaggleSource)
        credentials = settings.kaggle_credentials
        if credentials is None:
            raise SourceFailed(
                "no Kaggle API credentials",
                "manual",
                instructions=no_credentials_instructions(parsed),
            )
        url = download_url(parsed)
        auth = credentials.auth if is_api_url(url) else None
        return Resolved(source, url, host_of(url), auth=auth, detail=parsed)

    def open(self, resolved: Resolved, request: Request) -> Body:
        """GET the data; a refusal (401/403) means the rules were not accepted."""
        response = request.http.get(resolved.url, resolved.auth)
        if response.status_code in (401, 403):
            response.close()
            assert isinstance(resolved.detail, KaggleSource)
            raise SourceFailed(
                f"Kaggle refused the download (HTTP {response.status_code})",
                "manual",
                instructions=forbidden_instructions(resolved.detail),
            )
        return request.http.accept(response)


ADAPTER = KaggleAdapter()
