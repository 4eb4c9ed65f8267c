"""The bases a user names (``sync --from``, ``--mirror``): checked before anything else is fetched.

A base is an ``http(s)://`` URL with a host, or a local folder (a path or a ``file://`` URL)
that exists. Anything else is a usage error. An http(s) base that cannot be reached at all (its
name does not resolve, the connection is refused or times out) stops the sync, so that a typo in
a classmate's address does not silently download gigabytes from the original sources instead;
``--fallback-upstream`` allows that. A base that answers, even with an error status, is
reachable: a file it lacks still falls back to the next source, per file. The check runs beside
the first transfers from the bases themselves (:class:`BaseCheck`); only the other sources wait
for it, so on a far link it costs no round trips.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lhymirror.core.errors import DownloadError, UsageError
from lhymirror.manifest.sources import is_local_source, local_source_path


def check_base(base: str, option: str) -> None:
    """``UsageError`` when *base* is neither an http(s) URL with a host nor an existing folder."""
    scheme = base.partition("://")[0].lower() if "://" in base else ""
    if scheme in ("http", "https"):
        parts = urlsplit(base)
        if not parts.hostname or any(ch.isspace() for ch in base) or parts.query:
            raise UsageError(
                f"{option}: not a usable base URL",
                where=base,
                hint="Give http(s)://HOST/PATH (no spaces, no ?query), or a local folder.",
            )
        if not _port_is_valid(base):
            raise UsageError(f"{option}: not a usable base URL (bad port)", where=base)
        return
    if scheme and scheme != "file":
        raise UsageError(
            f"{option}: unsupported base",
            where=base,
            detail=f"{scheme}: is not one of http, https or a local folder",
            hint="Serve the copy over HTTP (`python -m http.server -d mirror`) or mount it.",
        )
    try:
        folder = local_source_path(base) if is_local_source(base) else Path(base).expanduser()
    except ValueError as exc:
        raise UsageError(f"{option}: not a usable base", where=base, detail=str(exc)) from exc
    if not folder.is_dir():
        raise UsageError(
            f"{option}: no such folder",
            where=str(folder),
            hint="Check the path (is the drive mounted?), or give an http(s) URL.",
        )


def _port_is_valid(base: str) -> bool:
    try:
        urlsplit(base).port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return True


PROXY_VARIABLES = ("ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY")


def check_proxy_support(env: Mapping[str, str]) -> None:
    """``UsageError`` when a proxy variable names a SOCKS proxy and PySocks is not installed.

    Without it every request would fail the same way; one line at the start says what to do.
    """
    for name in PROXY_VARIABLES:
        value = env.get(name) or env.get(name.lower()) or ""
        if value.lower().startswith("socks") and importlib.util.find_spec("socks") is None:
            raise UsageError(
                "a SOCKS proxy needs the socks extra",
                where=f"{name}={value}",
                hint="Install it with: pip install 'lhymirror[socks]'.",
            )


def network_bases(bases: Iterable[str]) -> list[str]:
    """The http(s) bases among *bases* (the ones a probe applies to)."""
    return [base for base in bases if base.lower().startswith(("http://", "https://"))]


def probe_bases(
    bases: Iterable[tuple[str, str]],
    *,
    timeout: tuple[float, float],
    session_factory: Callable[[], Any] | None = None,
) -> None:
    """``DownloadError`` naming the first (option, base) pair that cannot be reached at all.

    One HEAD request per base; any HTTP answer (even 404) counts as reached.
    """
    # Imported here: a sync that names no network base never needs requests.
    import requests  # noqa: PLC0415

    from lhymirror.fetch.http import new_session  # noqa: PLC0415
    from lhymirror.fetch.response import brief  # noqa: PLC0415

    bases = list(bases)
    if not bases:
        return
    session = (session_factory or new_session)()
    try:
        for option, base in bases:
            try:
                session.head(base, timeout=timeout, allow_redirects=False).close()
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise DownloadError(
                    f"{option} base cannot be reached",
                    where=base,
                    detail=brief(exc),
                    hint="Check the address and the connection; nothing was downloaded. "
                    "Add --fallback-upstream to download from the original sources instead.",
                ) from exc
            except requests.RequestException:
                continue  # it answered something: reachable
    finally:
        session.close()


class BaseCheck:
    """:func:`probe_bases` on a helper thread, while the first files come from the bases.

    A source on a named base, or a local one, is used at once; any other source (the original
    sources, the Internet Archive) waits in :meth:`allows` until every base has proved reachable.
    :meth:`result` raises the check's error once the run is over.
    """

    def __init__(
        self,
        bases: Iterable[tuple[str, str]],
        *,
        timeout: tuple[float, float],
        probe: Callable[..., None] = probe_bases,
    ) -> None:
        self._bases = list(bases)
        self._prefixes = tuple(base.rstrip("/") + "/" for _, base in self._bases)
        self._failure: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._check,
            args=(probe, timeout),
            name="lhymirror-base-check",
            daemon=True,
        )
        self._thread.start()

    def _check(self, probe: Callable[..., None], timeout: tuple[float, float]) -> None:
        try:
            probe(self._bases, timeout=timeout)
        except BaseException as exc:  # raised by result(), on the run's thread
            self._failure = exc
        finally:
            self._done.set()

    def allows(self, source: str) -> bool:
        """May *source* be fetched? Waits for the check unless it is on a base or local."""
        if source.startswith(self._prefixes) or is_local_source(source):
            return True
        self._done.wait()
        return self._failure is None

    def result(self) -> None:
        """Wait for the check; raise its ``DownloadError`` when a base cannot be reached."""
        self._done.wait()
        if self._failure is not None:
            raise self._failure
