"""Running one torrent download in a libtorrent session: peers, progress, resume data, stalls.

The caller decides which files it wants and what to do with them once complete; this module
only drives libtorrent until they are complete or until the swarm delivers nothing for a while,
saving resume data as it goes so a killed run continues where it stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lhymirror.core.errors import StorageError
from lhymirror.swarm.engine import ResumeFiles, info_hash_hex, libtorrent

POLL = 0.1  # seconds between looks at the torrent's progress
RESUME_EVERY = 2.0  # seconds between resume data saves while bytes arrive
CLOSE_WAIT = 5.0  # seconds to wait for the last resume data on the way out


@dataclass
class SwarmProgress:
    """Per-file progress callbacks: ``started(index, total, offset)``, ``advanced(index, n)``."""

    started: Callable[[int, int, int], None] = lambda _i, _total, _offset: None
    advanced: Callable[[int, int], None] = lambda _i, _n: None
    seen: dict[int, int] = field(default_factory=dict)

    def update(self, done: dict[int, int], sizes: dict[int, int]) -> None:
        """Report the bytes of each file complete now (verified pieces only)."""
        for index, now in done.items():
            before = self.seen.get(index)
            if before is None:
                self.started(index, sizes[index], now)
            elif now > before:
                self.advanced(index, now - before)
            self.seen[index] = now


class TorrentRun:
    """One torrent added to a session, saved under *save_path*, resumable from *resume*."""

    def __init__(
        self,
        session: Any,
        params: Any,
        save_path: Path,
        resume: ResumeFiles,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.lt = libtorrent()
        self.session = session
        self.name = info_hash_hex(params)
        self.resume = resume
        self.save_path = save_path
        self.clock = clock
        self.sleep = sleep
        saved = resume.load(self.name)
        if saved is not None:
            if params.ti is not None:
                saved.ti = params.ti
            saved.url_seeds = list({*saved.url_seeds, *params.url_seeds})
            params = saved
        params.save_path = str(save_path)
        self.handle = session.add_torrent(params)
        self._last_save = clock()

    # -- metadata and files --------------------------------------------------------------------

    def wait_for_metadata(self, timeout: float) -> Any | None:
        """The torrent's ``torrent_info`` (from a magnet link: once peers sent it), or None."""
        deadline = self.clock() + timeout
        while not self.handle.status().has_metadata:
            self.check_alerts()
            if self.clock() >= deadline:
                return None
            self.sleep(POLL)
        return self.handle.torrent_file()

    def want_only(self, indices: Iterable[int], num_files: int) -> None:
        """Download only the files at *indices* (priority 0 for every other file)."""
        wanted = set(indices)
        self.handle.prioritize_files([4 if i in wanted else 0 for i in range(num_files)])

    def connect(self, peers: Sequence[tuple[str, int]]) -> None:
        """Connect to peers named by the user (a LAN without discovery, tests on 127.0.0.1)."""
        for peer in peers:
            self.handle.connect_peer(peer)

    def file_done(self) -> dict[int, int]:
        """Bytes of verified pieces per file index."""
        flags = self.lt.torrent_handle.piece_granularity
        return dict(enumerate(self.handle.file_progress(flags)))

    # -- the download loop -----------------------------------------------------------------

    def download(
        self,
        sizes: dict[int, int],
        *,
        stall_timeout: float,
        progress: SwarmProgress,
        peers: Sequence[tuple[str, int]] = (),
    ) -> set[int]:
        """Run until every file in *sizes* is complete, or nothing arrives for *stall_timeout*.

        Returns the indices of the complete files. Peers are (re)connected whenever none is
        connected, so a seeder that starts late is still found.
        """
        last_total = -1
        last_change = self.clock()
        while True:
            self.check_alerts()
            held = self.file_done()
            done = {index: held[index] for index in sizes}
            progress.update(done, sizes)
            complete = {index for index, size in sizes.items() if done[index] >= size}
            if len(complete) == len(sizes):
                return complete
            total = sum(done.values())
            now = self.clock()
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change >= stall_timeout:
                return complete
            if peers and self.handle.status().num_peers == 0:
                self.connect(peers)
            if now - self._last_save >= RESUME_EVERY:
                self.request_resume_data()
            self.sleep(POLL)

    # -- resume data and alerts --------------------------------------------------------------

    def request_resume_data(self) -> None:
        """Ask libtorrent for the torrent's resume data (saved when its alert arrives)."""
        flags = self.lt.save_resume_flags_t
        self.handle.save_resume_data(flags.flush_disk_cache | flags.save_info_dict)
        self._last_save = self.clock()

    def check_alerts(self) -> bool:
        """Handle pending alerts: save resume data, raise on storage errors; True if saved."""
        saved = False
        for alert in self.session.pop_alerts():
            if isinstance(alert, self.lt.save_resume_data_alert):
                self.resume.save(self.name, alert.params)
                saved = True
            elif isinstance(alert, self.lt.file_error_alert | self.lt.torrent_error_alert):
                raise StorageError(
                    "the swarm download could not write its files",
                    where=str(self.save_path),
                    detail=str(alert.message()),
                    hint="Check the disk and the folder's permissions, then run again.",
                )
        return saved

    def close(self) -> None:
        """Save the last resume data and take the torrent out of the session (files closed)."""
        try:
            self.handle.pause()
            self.request_resume_data()
            deadline = self.clock() + CLOSE_WAIT
            while not self.check_alerts() and self.clock() < deadline:
                self.sleep(POLL)
        finally:
            self.session.remove_torrent(self.handle)

    def forget(self) -> None:
        """Drop resume data and the download folder once their bytes were taken elsewhere."""
        self.resume.forget(self.name)
        shutil.rmtree(self.save_path, ignore_errors=True)
