"""Sharing over BitTorrent, as functions of :mod:`lhymirror.api` (re-exported there).

Everything here needs the ``swarm`` extra (libtorrent); without it each function raises
``MissingExtraError`` before doing any work. libtorrent is imported only when a function runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lhymirror._api_events import CheckEvents, Silent

if TYPE_CHECKING:
    from lhymirror.manifest.model import Manifest
    from lhymirror.mirror.store import MirrorStore
    from lhymirror.swarm.engine import SessionOptions
    from lhymirror.swarm.make import Torrent
    from lhymirror.swarm.seed import Seeder, SeedTarget


@dataclass(frozen=True)
class SwarmSource:
    """A BitTorrent swarm ``sync`` takes files from first: a .torrent file or magnet link."""

    source: str
    options: SessionOptions
    peers: Sequence[tuple[str, int]] = ()
    wait: float = 60.0  # give up once the swarm delivered nothing for this long (seconds)


@dataclass(frozen=True)
class WrittenTorrent:
    """A torrent written to *path*; *left_out*: files of the year not verified, not in it."""

    path: Path
    torrent: Torrent
    left_out: int = 0

    @property
    def magnet(self) -> str:
        """The magnet link that names the torrent."""
        return self.torrent.magnet


def require_swarm() -> None:
    """Raise ``MissingExtraError`` when the ``swarm`` extra (libtorrent) is not installed.

    Call it before long work whose end needs the extra (e.g. packing before a torrent).
    """
    from lhymirror.swarm.engine import libtorrent  # noqa: PLC0415

    libtorrent()


def torrent_archive(
    archive: Path | str,
    manifest: Manifest | None = None,
    *,
    web_seeds: Sequence[str] = (),
    events: CheckEvents | None = None,
) -> WrittenTorrent:
    """Write ``<archive>.torrent`` beside an archive made by ``pack``: hybrid v1+v2, reproducible.

    *manifest* names the course in the torrent's comment; *web_seeds* are HTTP(S) URLs of the
    archive (or of its folder, ending in ``/``) so the torrent works with no peer at all.
    ``UsageError`` for a malformed web seed, ``StorageError`` when it cannot be written.
    """
    from lhymirror.swarm.make import archive_torrent, write_torrent  # noqa: PLC0415

    require_swarm()
    archive = Path(archive)
    events = events if events is not None else Silent()
    events.checking("hashing torrent", archive.stat().st_size)
    torrent = archive_torrent(archive, manifest, web_seeds=web_seeds, progress=events.progressed)
    path = archive.with_name(archive.name + ".torrent")
    write_torrent(path, torrent)
    return WrittenTorrent(path, torrent)


def torrent_mirror(
    manifest: Manifest,
    store: MirrorStore,
    out: Path | str | None = None,
    *,
    web_seeds: Sequence[str] = (),
    events: CheckEvents | None = None,
) -> WrittenTorrent:
    """Write a multi-file torrent of every verified file of the year's mirror (``<year>/<path>``).

    *out* defaults to ``./<slug>-<year>-mirror.torrent``. *web_seeds* are ``--from``-shaped
    bases (``BASE/<year>/<path>``). ``UsageError`` when no file is verified or a web seed is
    malformed; the result counts the files left out.
    """
    from lhymirror.swarm.make import mirror_files, mirror_torrent, write_torrent  # noqa: PLC0415

    require_swarm()
    found = mirror_files(manifest, store)
    events = events if events is not None else Silent()
    events.checking("hashing", sum(item.size for _entry, item in found))
    torrent = mirror_torrent(
        manifest, store, web_seeds=web_seeds, found=found, progress=events.progressed
    )
    default = f"{manifest.effective_slug}-{manifest.year}-mirror.torrent"
    path = Path(out) if out is not None else Path(default)
    write_torrent(path, torrent)
    return WrittenTorrent(path, torrent, left_out=len(manifest.files) - len(torrent.files))


def fetch_torrent(
    torrent: str,
    out_dir: Path | str = ".",
    *,
    options: SessionOptions | None = None,
    peers: Sequence[tuple[str, int]] = (),
    wait: float | None = None,
    events: CheckEvents | None = None,
) -> Path:
    """Download the archive a torrent (a .torrent file or magnet link) holds into *out_dir*.

    From peers and the torrent's web seeds; verified like :func:`lhymirror.api.verify` before
    it appears (the .torrent is kept beside it); an interrupted download resumes. Its path.
    Raises ``DownloadError`` when nothing arrived for *wait* seconds (default 60; run again to
    resume) and
    ``IntegrityError`` when the archive is damaged (nothing placed).
    """
    from lhymirror.swarm.engine import SessionOptions  # noqa: PLC0415
    from lhymirror.swarm.fetch_archive import fetch_archive  # noqa: PLC0415
    from lhymirror.swarm.leech import DEFAULT_WAIT  # noqa: PLC0415

    require_swarm()
    events = events if events is not None else Silent()
    events.checking("fetching", None)
    return fetch_archive(
        torrent,
        Path(out_dir),
        options=options if options is not None else SessionOptions(),
        peers=peers,
        wait=wait if wait is not None else DEFAULT_WAIT,
        progress=events.progressed,
    )


def seed_archive(
    archive: Path | str,
    *,
    torrent: Path | str | None = None,
    options: SessionOptions | None = None,
) -> Seeder:
    """A seeder of an archive, verified first (``IntegrityError`` when damaged: never served).

    *torrent* defaults to ``<archive>.torrent``, else one is made. Call ``run(on_status)`` on
    the result to seed until ``stop()``; ``target.magnet`` names it.
    """
    from lhymirror.swarm.seed import archive_target  # noqa: PLC0415

    require_swarm()
    target = archive_target(Path(archive), Path(torrent) if torrent is not None else None, None)
    return _seeder(target, options)


def seed_mirror(
    manifest: Manifest,
    store: MirrorStore,
    *,
    torrent: Path | str | None = None,
    options: SessionOptions | None = None,
) -> Seeder:
    """A seeder of the year's mirror: every file re-hashed against what it is held to first.

    With *torrent* (e.g. the class's), its files are served where the mirror has them verified;
    without, the torrent of every verified file is made. Run it as :func:`seed_archive`'s.
    """
    from lhymirror.swarm.seed import mirror_target  # noqa: PLC0415

    require_swarm()
    target = mirror_target(manifest, store, Path(torrent) if torrent is not None else None)
    return _seeder(target, options)


def _seeder(target: SeedTarget, options: SessionOptions | None) -> Seeder:
    from lhymirror.swarm.engine import SessionOptions  # noqa: PLC0415
    from lhymirror.swarm.seed import Seeder  # noqa: PLC0415

    return Seeder(target, options if options is not None else SessionOptions())
