"""Seeding: share an archive or a year's mirror with peers until told to stop.

What is seeded is verified first (never serve damaged bytes): an archive with the archive
verifier, a year's files against their recorded checksums. libtorrent then checks the bytes
against the torrent's own hashes and serves only pieces that pass; the torrent is added in
upload mode, so seeding never writes into the mirror.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lhymirror.archive.verify import verify_archive
from lhymirror.core.errors import IntegrityError, UsageError
from lhymirror.manifest.model import Manifest
from lhymirror.mirror.store import MirrorStore
from lhymirror.swarm.engine import (
    SessionOptions,
    file_layout,
    libtorrent,
    listen_port,
    open_session,
    torrent_params,
)
from lhymirror.swarm.make import Torrent, archive_torrent, mirror_files, mirror_torrent

TICK = 1.0  # seconds between status reports
PEER_LOOK = 0.2  # seconds between looks at who is connected (for the summary)


@dataclass(frozen=True)
class SeedStatus:
    """A look at a seeding torrent."""

    state: str  # checking, seeding, partial (seeds what it has), error
    peers: int
    upload_rate: int  # payload bytes per second
    uploaded: int  # payload bytes sent since start
    seconds: float
    peers_seen: int


@dataclass(frozen=True)
class SeedTarget:
    """What to seed: the torrent's params, where its files are, and its magnet link."""

    params: Any
    save_path: Path
    magnet: str
    name: str
    whole: bool = True  # every file of the torrent must check out (else only what is here)


def archive_target(
    archive: Path, torrent_file: Path | None, manifest: Manifest | None
) -> SeedTarget:
    """Verify *archive*; seed it with *torrent_file* (default ``<archive>.torrent``, else new)."""
    if not archive.is_file():
        raise UsageError("no such archive", where=str(archive), hint="Give the path of a .zip.")
    report = verify_archive(archive)
    if not report.ok:
        raise IntegrityError(
            "the archive is damaged; not seeding it",
            where=str(archive),
            detail=str(report.problems[0]),
            hint="Run `lhymirror verify` on it for every problem; fetch it again.",
        )
    lt = libtorrent()
    default = archive.with_name(archive.name + ".torrent")
    torrent_file = torrent_file or (default if default.is_file() else None)
    if torrent_file is not None:
        params = torrent_params(str(torrent_file))
        magnet = str(lt.make_magnet_uri(params.ti))
        layout = file_layout(params.ti)
        if layout.num_files() != 1 or params.ti.name() != archive.name:
            raise UsageError(
                "the torrent is not one of this archive",
                where=str(torrent_file),
                detail=f"it holds {params.ti.name()!r}",
                hint="Give the torrent written beside the archive by `lhymirror pack --torrent`.",
            )
    else:
        made = archive_torrent(archive, manifest)
        params, magnet = _params_of(made), made.magnet
    return SeedTarget(params, archive.parent, magnet, archive.name)


def mirror_target(manifest: Manifest, store: MirrorStore, torrent_file: Path | None) -> SeedTarget:
    """Seed a year's mirror: every file re-hashed against what it is held to first.

    With *torrent_file* (e.g. the class's torrent), its files are served from the mirror where
    the mirror has them verified; without, the torrent of every verified file is made.
    """
    if torrent_file is None:
        made = mirror_torrent(manifest, store, rehash=True)
        return SeedTarget(_params_of(made), store.root, made.magnet, made.name)
    params = torrent_params(str(torrent_file))
    verified = {item.path for _entry, item in mirror_files(manifest, store, rehash=True)}
    layout = file_layout(params.ti)
    priorities = [
        4 if str(layout.file_path(i)).replace("\\", "/") in verified else 0
        for i in range(layout.num_files())
    ]
    if not any(priorities):
        raise UsageError(
            "none of the torrent's files is verified in this mirror",
            where=str(torrent_file),
            hint=f"Check --root, or sync first: `lhymirror sync {manifest.year}`.",
        )
    params.file_priorities = priorities
    magnet = str(libtorrent().make_magnet_uri(params.ti))
    return SeedTarget(params, store.root, magnet, params.ti.name(), whole=False)


def _params_of(torrent: Torrent) -> Any:
    lt = libtorrent()
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(torrent.data))
    return params


class Seeder:
    """Seeds one target in its own session until :meth:`stop`."""

    def __init__(
        self,
        target: SeedTarget,
        options: SessionOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        lt = libtorrent()
        self.target = target
        self.session = open_session(options)
        params = target.params
        params.save_path = str(target.save_path)
        params.flags |= lt.torrent_flags.upload_mode  # serve, never write
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        self.handle = self.session.add_torrent(params)
        self.clock = clock
        self.started = clock()
        self.stopped = threading.Event()
        self.peers_seen: set[str] = set()

    @property
    def port(self) -> int:
        """The port peers reach this seed on."""
        return listen_port(self.session)

    def connect(self, peers: list[tuple[str, int]]) -> None:
        """Connect to peers named by the user."""
        for peer in peers:
            self.handle.connect_peer(peer)

    def status(self) -> SeedStatus:
        """How the seeding goes now."""
        lt = libtorrent()
        st = self.handle.status()
        if st.errc.value():
            state = "error"
        elif st.state in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data):
            state = "checking"
        else:
            state = "seeding" if st.is_seeding else "partial"
        return SeedStatus(
            state,
            int(st.num_peers),
            int(st.upload_payload_rate),
            int(st.total_payload_upload),
            self.clock() - self.started,
            len(self.peers_seen),
        )

    def run(self, on_status: Callable[[SeedStatus], None], *, tick: float = TICK) -> SeedStatus:
        """Report the status every *tick* seconds until :meth:`stop`; the last status."""
        next_report = self.clock() + tick
        while not self.stopped.wait(PEER_LOOK):
            for peer in self.handle.get_peer_info():
                self.peers_seen.add(str(peer.ip))
            if self.clock() < next_report:
                continue
            next_report += tick
            status = self.status()
            self._refuse_bad(status)
            on_status(status)
        return self.status()

    def _refuse_bad(self, status: SeedStatus) -> None:
        if status.state == "error":
            raise IntegrityError(
                "seeding stopped",
                where=str(self.target.save_path / self.target.name),
                detail=self.handle.status().errc.message(),
                hint="Check that the files are there and readable, then seed again.",
            )
        if status.state == "partial" and self.target.whole:
            raise IntegrityError(
                "the files do not match the torrent; not seeding",
                where=str(self.target.save_path / self.target.name),
                detail=f"{100 - self.handle.status().progress * 100:.0f}% of the bytes differ",
                hint="Give the torrent that was made for these files (or make a new one).",
            )

    def stop(self) -> None:
        """Make :meth:`run` return (safe from a signal handler or another thread)."""
        self.stopped.set()
