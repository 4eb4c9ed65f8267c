"""``sync --swarm``: take a year's files from a torrent, verified against the manifest.

The swarm is one more untrusted source. Files download into ``<year>/.lhymirror/swarm/`` (with
libtorrent's resume data beside them, so a killed run continues), and reach their final paths
only after every completed file matched the size and sha256 it is held to. A torrent whose files
do not match the manifest is refused with nothing placed. Files the swarm did not deliver in
time are left to the entry's normal sources (the caller runs the ordinary sync for them).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lhymirror.core.errors import IntegrityError, UsageError, storage_errors
from lhymirror.core.fsutil import hash_file, replace_durably
from lhymirror.core.units import count_of, format_size
from lhymirror.fetch.job import record_for
from lhymirror.fetch.plan import PlanItem, SyncPlan
from lhymirror.fetch.report import FileOutcome, SyncReport
from lhymirror.fetch.transfer import TransferEvents
from lhymirror.mirror.state import FileProblem, check_bytes
from lhymirror.mirror.store import MirrorStore
from lhymirror.swarm.engine import (
    ResumeFiles,
    SessionOptions,
    file_layout,
    info_hash_hex,
    open_session,
    torrent_params,
)
from lhymirror.swarm.transfer import SwarmProgress, TorrentRun

SWARM_DIR = "swarm"
DEFAULT_WAIT = 60.0  # seconds the swarm may deliver nothing before other sources take over


@dataclass(frozen=True)
class Wanted:
    """A torrent file the sync takes: its index in the torrent and its plan item."""

    index: int
    item: PlanItem
    torrent_path: str
    size: int


@dataclass(frozen=True)
class SwarmResult:
    """What the swarm delivered: the files placed, and how many it was asked for."""

    placed: dict[str, FileOutcome]
    wanted: int
    metadata: bool = True  # False: no peer sent a magnet link's metadata in time

    def summary(self) -> str:
        """One line for the user."""
        if not self.metadata:
            return "swarm: no peer sent the torrent's metadata; every file from its sources"
        size = format_size(sum(outcome.size or 0 for outcome in self.placed.values()))
        left = self.wanted - len(self.placed)
        rest = f"; {count_of(left, 'file')} from their usual sources" if left else ""
        return f"swarm: {len(self.placed)} of {count_of(self.wanted, 'file')} ({size}){rest}"


def swarm_folder(store: MirrorStore) -> Path:
    """Where swarm downloads and their resume data live: ``<year>/.lhymirror/swarm``."""
    return store.meta_dir / SWARM_DIR


def sync_from_swarm(
    plan: SyncPlan,
    store: MirrorStore,
    source: str,
    *,
    options: SessionOptions,
    events: TransferEvents,
    peers: Sequence[tuple[str, int]] = (),
    wait: float = DEFAULT_WAIT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SwarmResult:
    """Download the plan's files that *source* (a .torrent or magnet link) holds; place them.

    Returns the outcome of each file placed. Raises ``IntegrityError`` when the torrent does
    not match the manifest (nothing placed), ``UsageError`` when it is no mirror of the year.
    """
    params = torrent_params(source)
    session = open_session(options)
    with store.lock():
        folder = swarm_folder(store)
        with storage_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
        name = info_hash_hex(params)
        run = TorrentRun(
            session, params, folder / name, ResumeFiles(folder), clock=clock, sleep=sleep
        )
        try:
            run.connect(peers)
            info = run.wait_for_metadata(wait)
            if info is None:
                return SwarmResult({}, 0, metadata=False)
            wanted = match_torrent(info, plan, store, source)
            run.want_only([w.index for w in wanted], info.num_files())
            sizes = {w.index: w.size for w in wanted}
            by_index = {w.index: w for w in wanted}
            progress = SwarmProgress(
                started=lambda i, total, offset: events.started(by_index[i].item.id, total, offset),
                advanced=lambda i, n: events.advanced(by_index[i].item.id, n),
            )
            complete = run.download(sizes, stall_timeout=wait, progress=progress, peers=peers)
        finally:
            run.close()
        done = [w for w in wanted if w.index in complete]
        outcomes = place_verified(done, store, run, source)
        if len(done) == len(wanted):
            run.forget()
        elif outcomes:
            # The resume data says pieces of the placed files are here; they are not any more.
            # Without it, the next run checks the unfinished files on disk instead.
            run.resume.forget(run.name)
    return SwarmResult(outcomes, len(wanted))


def match_torrent(info: Any, plan: SyncPlan, store: MirrorStore, source: str) -> list[Wanted]:
    """The torrent's files this sync wants; refuses a torrent that contradicts the manifest.

    A mirror torrent holds ``<year>/<path>``. A file of a manifest path must have the size the
    file is held to. Only files the plan fetches and whose sha256 is known are wanted: with no
    checksum to hold it to, a file is never taken from the swarm.
    """
    files = file_layout(info)
    year = str(plan.year)
    if info.name() != year:
        raise UsageError(
            "not a torrent of this year's mirror",
            where=_short(source),
            detail=f"it holds {info.name()!r}, not the folder {year}/",
            hint="An archive's torrent is downloaded with `lhymirror fetch FILE.torrent`.",
        )
    items = {item.entry.path: item for item in plan.items}
    wanted: list[Wanted] = []
    matched = 0
    for index in range(files.num_files()):
        if files.file_flags(index) & files.flag_pad_file:
            continue
        path = str(files.file_path(index)).replace("\\", "/")
        item = items.get(path.partition("/")[2])
        if item is None:
            continue
        matched += 1
        size = int(files.file_size(index))
        problem = check_bytes(item.expected, size, None)
        if problem is not None:
            raise IntegrityError(
                "the torrent does not match the manifest",
                where=_short(source),
                detail=f"{path} in the torrent: {problem}",
                hint="Nothing was placed. Ask for the torrent of this manifest's version, "
                "or sync without --swarm.",
            )
        if item.action == "fetch" and item.expected.sha256 is not None:
            wanted.append(Wanted(index, item, path, size))
    if not matched:
        raise IntegrityError(
            "the torrent holds no file of the manifest",
            where=_short(source),
            hint="Check that it is a torrent of this course and year.",
        )
    return wanted


def place_verified(
    done: Sequence[Wanted], store: MirrorStore, run: TorrentRun, source: str
) -> dict[str, FileOutcome]:
    """Hash every completed file; place them all only if every one matches (else none)."""
    hashed = []
    for wanted in done:
        path = run.save_path.joinpath(*wanted.torrent_path.split("/"))
        with storage_errors(path):
            size, sha = hash_file(path)
        hashed.append((wanted, path, size, sha))
    bad = [(entry, problem) for entry in hashed if (problem := _problem(*entry))]
    if bad:
        for (wanted, path, _size, sha), _problem_found in bad:
            store.reject(wanted.item.id, path, sha)
        run.forget()
        (wanted, *_), problem = bad[0]
        more = f" (and {count_of(len(bad) - 1, 'more file')})" if len(bad) > 1 else ""
        raise IntegrityError(
            "the torrent does not match the manifest",
            where=_short(source),
            detail=f"{wanted.item.entry.path}: {problem}{more}",
            hint="Nothing from it was placed (its bytes are under .lhymirror/rejected/). "
            "Sync without --swarm, or ask for the right torrent.",
        )
    outcomes: dict[str, FileOutcome] = {}
    origin = f"swarm:{run.name}"
    for wanted, path, size, sha in hashed:
        item = wanted.item
        target = store.file_path(item.entry.path)
        with storage_errors(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(path, target)
        store.save_record(
            record_for(item.entry, target, size, sha, source=origin, held_to=item.expected)
        )
        store.discard_partials(item.entry)
        outcomes[item.id] = FileOutcome(
            item.id, item.entry.path, "downloaded", size=size, sha256=sha, source=origin,
            bytes_received=size,
        )  # fmt: skip
    return outcomes


def _problem(wanted: Wanted, path: Path, size: int, sha: str) -> FileProblem | None:
    return check_bytes(wanted.item.expected, size, sha)


def merge_reports(report: SyncReport, swarm: dict[str, FileOutcome]) -> SyncReport:
    """The sync's report with the outcome of each file the swarm delivered."""
    files = tuple(swarm.get(outcome.id, outcome) for outcome in report.files)
    return dataclasses.replace(report, files=files)  # keeps hosts_down and no_network


def _short(source: str) -> str:
    return source if len(source) <= 80 else source[:77] + "…"
