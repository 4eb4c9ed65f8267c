"""The BitTorrent engine: libtorrent, loaded lazily, and sessions with lhymirror's settings.

libtorrent is an optional extra (``pip install 'lhymirror[swarm]'``); it is imported here and
only here, when a swarm command runs, so the rest of lhymirror neither needs nor loads it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lhymirror import __version__
from lhymirror.core.errors import MissingExtraError, UsageError, storage_errors
from lhymirror.core.fsutil import atomic_write_bytes

INSTALL_COMMAND = "pip install 'lhymirror[swarm]'"
DEFAULT_PORT = 6881


def libtorrent() -> Any:
    """The libtorrent module, or ``MissingExtraError`` saying how to install it."""
    try:
        return importlib.import_module("libtorrent")
    except ImportError as exc:
        raise MissingExtraError(
            "BitTorrent support is not installed",
            hint=f"Install it with `{INSTALL_COMMAND}`.",
        ) from exc


@dataclass(frozen=True)
class SessionOptions:
    """How a session meets peers: where it listens, DHT and local discovery, upload cap."""

    bind: str = "0.0.0.0"
    port: int = DEFAULT_PORT  # 0: any free port
    dht: bool = True
    lsd: bool = True  # local service discovery: a classroom LAN finds peers with no tracker
    upload_limit: int | None = None  # bytes per second, None: unlimited

    @property
    def listen_interface(self) -> str:
        """``ADDRESS:PORT`` as libtorrent's ``listen_interfaces`` wants it."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{host}:{self.port}"


def open_session(options: SessionOptions) -> Any:
    """A libtorrent session with *options*; no UPnP or NAT-PMP (lhymirror opens no router)."""
    lt = libtorrent()
    alerts = lt.alert_category
    settings: dict[str, Any] = {
        "listen_interfaces": options.listen_interface,
        "enable_dht": options.dht,
        "enable_lsd": options.lsd,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,  # classmates behind one NAT
        # Connect over TCP: uTP yields to other traffic, but between two machines of a LAN (or
        # on loopback) it is several times slower (57 MB: 4.8 s against 0.8 s over TCP here).
        # Peers that come in over uTP are still accepted.
        "enable_outgoing_utp": False,
        "user_agent": f"lhymirror/{__version__}",
        "alert_mask": alerts.error | alerts.status | alerts.storage,
    }
    if options.upload_limit:
        settings["upload_rate_limit"] = options.upload_limit
    session = lt.session(settings)
    if options.upload_limit:
        # By default peers on the local network are exempt from rate limits; the cap is
        # meant for exactly those (a classroom), so every address joins the global class.
        address_filter = lt.ip_filter()
        everyone = 1 << lt.session.global_peer_class_id
        address_filter.add_rule("0.0.0.0", "255.255.255.255", everyone)
        address_filter.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", everyone)
        session.set_peer_class_filter(address_filter)
    return session


def listen_port(session: Any) -> int:
    """The port a session actually listens on (the chosen one when asked for port 0)."""
    return int(session.listen_port())


def parse_peer(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) of a peer to connect to; ``UsageError`` when malformed."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            "invalid peer address", where=text, hint="Write it as HOST:PORT, e.g. 10.0.0.5:6881."
        )
    return host, int(port)


def torrent_params(source: str) -> Any:
    """``add_torrent_params`` for a ``.torrent`` file or a ``magnet:`` link."""
    lt = libtorrent()
    if source.startswith("magnet:"):
        try:
            return lt.parse_magnet_uri(source)
        except RuntimeError as exc:
            raise UsageError("invalid magnet link", where=source[:60], detail=str(exc)) from exc
    path = Path(source).expanduser()
    if not path.is_file():
        raise UsageError(
            "no such torrent file", where=str(path), hint="Give a .torrent file or a magnet link."
        )
    try:
        return lt.load_torrent_file(str(path))
    except RuntimeError as exc:
        raise UsageError(
            "not a torrent file", where=str(path), detail=str(exc).rstrip(".")
        ) from exc


def info_hash_hex(params_or_info: Any) -> str:
    """The hex name of a torrent: its v1 info-hash when it has one, else the v2 one."""
    hashes = params_or_info.info_hashes
    hashes = hashes() if callable(hashes) else hashes
    best = hashes.v1 if hashes.has_v1() else hashes.v2
    return str(best)


def file_layout(info: Any) -> Any:
    """The ``file_storage`` of a ``torrent_info`` (``layout()`` since libtorrent 2.1)."""
    layout = getattr(info, "layout", None)
    return layout() if layout is not None else info.files()


class ResumeFiles:
    """libtorrent resume data kept as ``<folder>/<info-hash>.resume``, so a rerun continues."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        """The resume file of the torrent named *name* (its info-hash in hex)."""
        return self.folder / f"{name}.resume"

    def load(self, name: str) -> Any | None:
        """The saved ``add_torrent_params``, or None (also when unreadable: a fresh start)."""
        try:
            data = self.path(name).read_bytes()
        except OSError:
            return None
        try:
            return libtorrent().read_resume_data(data)
        except RuntimeError:
            return None

    def save(self, name: str, params: Any) -> None:
        """Write the resume data of a torrent atomically (not fsynced: it is rewritten often)."""
        data = bytes(libtorrent().write_resume_data_buf(params))
        path = self.path(name)
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, durable=False)

    def forget(self, name: str) -> None:
        """Remove the resume data of a finished torrent."""
        with storage_errors(self.path(name)):
            self.path(name).unlink(missing_ok=True)
