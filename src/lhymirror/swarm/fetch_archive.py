"""``lhymirror fetch``: download an archive from its torrent (peers and web seeds), verified.

The archive downloads into ``OUT/.lhymirror/swarm/<info-hash>/`` with libtorrent's resume data
beside it (a killed run continues), is verified like ``lhymirror verify`` does, and only then
is moved to ``OUT/<name>``; the ``.torrent`` is kept beside it so the archive can be seeded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lhymirror.archive.verify import verify_archive
from lhymirror.core.errors import DownloadError, IntegrityError, UsageError, storage_errors
from lhymirror.core.fsutil import replace_durably
from lhymirror.core.safepath import RESERVED_FOLDER, path_problems
from lhymirror.core.units import count_of
from lhymirror.swarm.engine import (
    ResumeFiles,
    SessionOptions,
    file_layout,
    info_hash_hex,
    libtorrent,
    open_session,
    torrent_params,
)
from lhymirror.swarm.transfer import SwarmProgress, TorrentRun

PARTIAL_DIR = Path(RESERVED_FOLDER) / "swarm"
CHECK_TIMEOUT = 600.0  # seconds to hash an archive already there against the torrent


def fetch_archive(
    source: str,
    out_dir: Path,
    *,
    options: SessionOptions,
    peers: Sequence[tuple[str, int]] = (),
    wait: float = 60.0,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download, verify and place the archive a torrent (file or magnet link) holds.

    An archive already in *out_dir* that holds exactly the torrent's bytes is kept as it is.
    """
    params = torrent_params(source)
    if _already_there(source, params, out_dir, options, clock=clock, sleep=sleep):
        return out_dir / str(params.ti.name())
    folder = out_dir / PARTIAL_DIR
    with storage_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
    name = info_hash_hex(params)
    run = TorrentRun(
        open_session(options), params, folder / name, ResumeFiles(folder), clock=clock, sleep=sleep
    )
    try:
        run.connect(peers)
        info = run.wait_for_metadata(wait)
        if info is None:
            raise DownloadError(
                "no peer sent the torrent's metadata",
                where=source[:80],
                detail=f"nothing for {wait:.0f} s",
                hint="Use the .torrent file, name a peer with --peer, or try again later.",
            )
        archive_name = _archive_name(info, source)
        size = int(file_layout(info).file_size(0))
        report = SwarmProgress(
            started=lambda _i, _total, offset: progress(offset) if progress else None,
            advanced=lambda _i, n: progress(n) if progress else None,
        )
        complete = run.download({0: size}, stall_timeout=wait, progress=report, peers=peers)
    finally:
        run.close()
    if not complete:
        raise DownloadError(
            "the swarm stopped delivering",
            where=archive_name,
            detail=f"nothing arrived for {wait:.0f} s",
            hint="Run the same command again to resume (or name a peer with --peer).",
        )
    return _place(run, archive_name, out_dir, source)


def _already_there(
    source: str,
    params: Any,
    out_dir: Path,
    options: SessionOptions,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> bool:
    """True when ``OUT/<name>`` holds exactly the torrent's bytes (libtorrent checks them)."""
    if params.ti is None or file_layout(params.ti).num_files() != 1:
        return False
    target = out_dir / str(params.ti.name())
    if not target.is_file() or target.stat().st_size != params.ti.total_size():
        return False
    lt = libtorrent()
    check = torrent_params(source)  # a copy to change
    check.save_path = str(out_dir)
    check.flags |= lt.torrent_flags.upload_mode  # look, never write
    session = open_session(SessionOptions(bind=options.bind, port=0, dht=False, lsd=False))
    handle = session.add_torrent(check)
    deadline = clock() + CHECK_TIMEOUT
    checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
    while clock() < deadline:
        status = handle.status()
        if status.has_metadata and status.state not in checking and status.state != 0:
            return bool(status.is_seeding)
        sleep(0.05)
    return False


def _archive_name(info: object, source: str) -> str:
    layout = file_layout(info)
    name = str(info.name())  # type: ignore[attr-defined]
    if layout.num_files() != 1 or path_problems(name) or "/" in name:
        raise UsageError(
            "not a torrent of one archive",
            where=source[:80],
            detail=f"it holds {count_of(layout.num_files(), 'file')} under {name!r}",
            hint="A mirror's torrent is downloaded with `lhymirror sync YEAR --swarm TORRENT`.",
        )
    return name


def _place(run: TorrentRun, name: str, out_dir: Path, source: str) -> Path:
    downloaded = run.save_path / name
    report = verify_archive(downloaded)
    if not report.ok:
        rejected = out_dir / RESERVED_FOLDER / "rejected" / name
        with storage_errors(rejected):
            rejected.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(downloaded, rejected)
        run.forget()
        raise IntegrityError(
            "the downloaded archive is damaged",
            where=name,
            detail=str(report.problems[0]),
            hint=f"Nothing was placed; it is kept as {rejected}. Ask for a good torrent.",
        )
    target = out_dir / name
    with storage_errors(target):
        replace_durably(downloaded, target)
        if not source.startswith("magnet:"):
            torrent_copy = target.with_name(name + ".torrent")
            if Path(source).resolve() != torrent_copy.resolve():
                shutil.copyfile(source, torrent_copy)
    run.forget()
    _remove_if_empty(out_dir / PARTIAL_DIR)
    return target


def _remove_if_empty(folder: Path) -> None:
    """Leave no empty work folders behind in OUT (``.lhymirror/swarm``, then ``.lhymirror``)."""
    for empty in (folder, folder.parent):
        try:
            empty.rmdir()
        except OSError:  # not empty (another download's resume data, a rejected archive)
            return
