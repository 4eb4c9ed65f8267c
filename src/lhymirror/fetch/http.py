"""HTTP plumbing shared by every transfer: sessions, timeouts, retry policy, redirect safety.

A session from :func:`new_session` verifies TLS, asks for unencoded bodies (the bytes hashed must
be the bytes stored), follows at most 10 redirects and refuses any redirect from ``https`` to
``http``. Sessions are not thread-safe: one transfer uses a session at a time (a sync lends its
sessions from transfer to transfer: ``ConnectionBudget.lend_session`` in ``fetch.scheduler``).

A request of such a session that waits for an answer can be broken off from another thread
(:func:`interrupt`): a race between sources ends its loser this way, without waiting for a timeout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading
import weakref
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from lhymirror import __version__
from lhymirror.fetch.policy import RetryPolicy

__all__ = [
    "MAX_REDIRECTS",
    "USER_AGENT",
    "InsecureRedirectError",
    "RetryPolicy",
    "SafeSession",
    "interrupt",
    "is_retryable_status",
    "new_session",
    "parse_retry_after",
]

MAX_REDIRECTS = 10
USER_AGENT = f"lhymirror/{__version__} (+https://pypi.org/project/lhymirror/)"
RETRYABLE_STATUSES = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    """True for answers worth asking again: 408, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


class InsecureRedirectError(requests.exceptions.InvalidURL):
    """A redirect would have downgraded an ``https`` transfer to plain ``http``."""


class SafeSession(requests.Session):
    """A ``requests.Session`` that refuses redirects from ``https`` to ``http``.

    It also reads the environment's proxy settings once per host: requests scans the whole
    environment twice for every request, which costs more than a small file's transfer. Like
    any ``requests.Session`` it serves one thread at a time (lhymirror never shares one).
    """

    def __init__(self) -> None:
        super().__init__()
        self._environ_proxies: dict[tuple[str, str, Any], dict[str, str]] = {}

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:
        """What requests merges, with the environment's proxies for each host read once.

        The proxies and CA bundle the environment names are merged here as requests would, and
        requests is then asked to merge the rest without reading the environment again (a
        session serves one thread at a time, so the flag is this request's alone meanwhile).
        """
        if not self.trust_env or proxies is None or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, proxies.get("no_proxy"))
        if key not in self._environ_proxies:
            self._environ_proxies[key] = get_environ_proxies(url, no_proxy=key[2])
        for name, value in self._environ_proxies[key].items():
            proxies.setdefault(name, value)
        if verify is True or verify is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            verify = bundle or verify
        try:
            self.trust_env = False
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        finally:
            self.trust_env = True

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """The redirect's target; raise :class:`InsecureRedirectError` for a downgrade."""
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        absolute = urljoin(resp.url, target)
        if urlsplit(resp.url).scheme == "https" and urlsplit(absolute).scheme == "http":
            resp.close()
            raise InsecureRedirectError(
                f"refused redirect from https to http ({resp.url} -> {absolute})", response=resp
            )
        return target


# The connection each thread's latest request went out on (weak: a closed one may go).
_IN_USE: weakref.WeakValueDictionary[int, urllib3.connection.HTTPConnection] = (
    weakref.WeakValueDictionary()
)


class _TrackedHTTP(urllib3.connection.HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _IN_USE[threading.get_ident()] = self
        super().request(*args, **kwargs)


class _TrackedHTTPS(urllib3.connection.HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _IN_USE[threading.get_ident()] = self
        super().request(*args, **kwargs)


class _TrackedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _TrackedHTTP


class _TrackedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPS


class _TrackingAdapter(HTTPAdapter):
    """Remembers the connection of each thread's request, so :func:`interrupt` can end it."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackedPool,
            "https": _TrackedHTTPSPool,
        }


def interrupt(thread_id: int) -> None:
    """Break off the request thread *thread_id* is making (it fails as a lost connection).

    Requests through a proxy are not tracked: they end at their own timeout.
    """
    connection = _IN_USE.get(thread_id)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def new_session(user_agent: str | None = None) -> requests.Session:
    """A session for one transfer at a time: TLS verified, identity encoding, safe redirects."""
    session = SafeSession()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _TrackingAdapter())
    session.verify = True
    session.max_redirects = MAX_REDIRECTS
    session.headers["User-Agent"] = user_agent or USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    return session


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), or None.

    A date in the past means "now" (0.0); an unreadable value is ignored (None).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    reference = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    return max(0.0, (when - reference).total_seconds())
