"""Making torrents: of an archive (``pack --torrent``) and of a year's mirror (``torrent``).

Torrents are hybrid v1+v2 (BEP 52: SHA-256 merkle trees per file, so identical files have
identical roots in every torrent), carry web seeds (BEP 19 ``url-list``) so they work with no
peer at all, and are reproducible: no clock, no file times, files in path order, and the
creation date is the manifest's ``released`` date or absent.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lhymirror.core.errors import StorageError, UsageError, storage_errors
from lhymirror.core.fsutil import atomic_write_bytes
from lhymirror.core.units import count_of
from lhymirror.manifest.model import FileEntry, Manifest
from lhymirror.mirror.state import local_state
from lhymirror.mirror.store import MirrorStore
from lhymirror.swarm.engine import libtorrent

CREATOR = "lhymirror"
MIN_PIECE = 16 * 1024  # BEP 52: a power of two of at least 16 KiB
MAX_PIECE = 16 * 1024 * 1024
TARGET_PIECES = 1500  # few enough for small metadata, enough for many peers to share work

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class TorrentFile:
    """One file of a torrent: its path inside the torrent, and where its bytes are."""

    path: str  # POSIX, first segment is the torrent's name
    source: Path
    size: int


@dataclass(frozen=True)
class Torrent:
    """A made torrent: its bencoded bytes and what peers and people call it."""

    data: bytes
    name: str
    info_hash: str  # hex, v1
    magnet: str
    files: tuple[TorrentFile, ...]
    piece_size: int

    @property
    def total_size(self) -> int:
        """Bytes of payload."""
        return sum(item.size for item in self.files)


def piece_size_for(total: int) -> int:
    """A power of two from 16 KiB to 16 MiB giving at most about 1500 pieces for *total* bytes."""
    piece = MIN_PIECE
    while piece < MAX_PIECE and total > piece * TARGET_PIECES:
        piece *= 2
    return piece


def describe(manifest: Manifest, what: str) -> str:
    """The torrent's comment: which course, year and manifest version it holds."""
    return f"{manifest.course}, {manifest.year}, manifest version {manifest.version}: {what}"


def creation_date(manifest: Manifest) -> int | None:
    """The fixed creation date of a torrent: the manifest's ``released`` date, else none."""
    if manifest.released is None:
        return None
    return calendar.timegm(manifest.released.timetuple())


def check_web_seed(url: str) -> str:
    """A web seed must be an http(s) URL; ``UsageError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            "invalid web seed",
            where=url,
            detail="not an http:// or https:// URL",
            hint="Give the URL where the archive (or the mirror's base) can be downloaded.",
        )
    return url


def make_torrent(
    files: Sequence[TorrentFile],
    *,
    comment: str,
    web_seeds: Sequence[str] = (),
    created: int | None = None,
    progress: ProgressCallback | None = None,
) -> Torrent:
    """Hash *files* into a hybrid v1+v2 torrent (files in path order, so reproducible).

    All files must sit under one folder in the same layout as their torrent paths (the
    torrent's root, found from the first file). *progress* gets the bytes of each piece hashed.
    """
    lt = libtorrent()
    ordered = tuple(sorted(files, key=lambda item: item.path))
    if not ordered:
        raise UsageError("nothing to share", hint="The torrent would hold no file.")
    total = sum(item.size for item in ordered)
    piece = piece_size_for(total)
    entries = [lt.create_file_entry(item.path, item.size) for item in ordered]
    creator = lt.create_torrent(entries, piece)
    creator.set_creator(CREATOR)
    creator.set_comment(comment)
    creator.set_creation_date(created or 0)  # 0: no creation date at all
    for url in web_seeds:
        creator.add_url_seed(check_web_seed(url))
    base = _base_folder(ordered[0])
    callback = (lambda _index: progress(piece)) if progress is not None else (lambda _index: None)
    with storage_errors(base):
        try:
            lt.set_piece_hashes(creator, str(base), callback)
        except RuntimeError as exc:  # a file vanished or shrank while being hashed
            raise StorageError(
                "cannot read the files to share", where=str(base), detail=str(exc)
            ) from exc
    data = bytes(lt.bencode(creator.generate()))
    info = lt.torrent_info(lt.bdecode(data))
    return Torrent(
        data=data,
        name=info.name(),
        info_hash=str(info.info_hashes().v1),
        magnet=str(lt.make_magnet_uri(info)),
        files=ordered,
        piece_size=piece,
    )


def _base_folder(item: TorrentFile) -> Path:
    """The folder that holds the torrent's top entry (its name) in *item*'s layout."""
    depth = len(item.path.split("/"))
    return item.source.parents[depth - 1]


def archive_torrent(
    archive: Path,
    manifest: Manifest | None,
    *,
    web_seeds: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> Torrent:
    """A single-file torrent of an archive written by ``pack`` (*manifest*: its course, for
    the comment and date; None when only the archive is at hand, e.g. ``seed ARCHIVE``)."""
    with storage_errors(archive):
        size = archive.stat().st_size
    what = f"archive {archive.name}"
    return make_torrent(
        [TorrentFile(archive.name, archive, size)],
        comment=describe(manifest, what) if manifest is not None else what,
        web_seeds=web_seeds,
        created=creation_date(manifest) if manifest is not None else None,
        progress=progress,
    )


def mirror_files(
    manifest: Manifest, store: MirrorStore, *, rehash: bool = False
) -> list[tuple[FileEntry, TorrentFile]]:
    """``(entry, TorrentFile)`` for every verified file of the year, as ``<year>/<path>``.

    A file counts when it is held to a known sha256 and matches it (by size and mtime since it
    was verified, or re-hashed when that changed or *rehash*).
    """
    found: list[tuple[FileEntry, TorrentFile]] = []
    for entry in manifest.files:
        state = local_state(store, entry, rehash=rehash)
        if state.status != "ok":
            continue
        path = store.file_path(entry.path)
        found.append((entry, TorrentFile(f"{store.year}/{entry.path}", path, int(state.size or 0))))
    return found


def mirror_torrent(
    manifest: Manifest,
    store: MirrorStore,
    *,
    web_seeds: Sequence[str] = (),
    rehash: bool = False,
    found: Sequence[tuple[FileEntry, TorrentFile]] | None = None,
    progress: ProgressCallback | None = None,
) -> Torrent:
    """A multi-file torrent of a year's verified files (*found*, else looked up), named after
    the year.

    Web seeds are ``--from``-shaped bases (``BASE/<year>/<path>``): BEP 19 fetches a file of a
    multi-file torrent from ``BASE/<name>/<path>``, which is the same URL.
    """
    if found is None:
        found = mirror_files(manifest, store, rehash=rehash)
    files = [item for _entry, item in found]
    if not files:
        raise UsageError(
            "no verified file to share",
            where=str(store.year_dir),
            hint=f"Run `lhymirror sync {manifest.year}` first.",
        )
    return make_torrent(
        files,
        comment=describe(manifest, f"mirror of {count_of(len(files), 'file')}"),
        web_seeds=[_as_folder(check_web_seed(url)) for url in web_seeds],
        created=creation_date(manifest),
        progress=progress,
    )


def _as_folder(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def write_torrent(path: Path, torrent: Torrent) -> None:
    """Write the ``.torrent`` file atomically."""
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, torrent.data)
