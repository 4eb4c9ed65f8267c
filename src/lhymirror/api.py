"""The library facade: every operation of the ``lhymirror`` command as a function.

Each function takes plain values, returns a report (with ``to_json()``, and ``error()``: the
error that sums up unfinished work, ``None`` when all is done) and tells what it is doing
through an :class:`Events` object; none prints or exits. Expected failures raise
:class:`~lhymirror.core.errors.LhymirrorError` subclasses (``UsageError``, ``ManifestError``,
``StorageError``…). The same names are available as ``lhymirror.<name>``.

Each function imports what it needs when called, so importing this module stays cheap (the
command line's start-up depends on it). See README.md, "Use as a library".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lhymirror._api_events import CheckEvents, Events, Silent, SyncEvents
from lhymirror._api_share import (
    SwarmSource,
    WrittenTorrent,
    fetch_torrent,
    require_swarm,
    seed_archive,
    seed_mirror,
    torrent_archive,
    torrent_mirror,
)
from lhymirror.fetch.build import build_downloader

if TYPE_CHECKING:
    from lhymirror.archive.bagcheck import VerifyReport
    from lhymirror.archive.pack import PackResult
    from lhymirror.fetch.check import CheckReport
    from lhymirror.fetch.plan import SyncPlan
    from lhymirror.fetch.policy import RetryPolicy
    from lhymirror.fetch.report import AddReport, FileOutcome, SyncReport
    from lhymirror.manifest.listing import ListReport
    from lhymirror.manifest.model import Manifest
    from lhymirror.mirror.pin import PinReport
    from lhymirror.mirror.status import StatusReport
    from lhymirror.mirror.store import MirrorStore

__all__ = [  # noqa: RUF022 - in the order of the flow
    "CheckEvents",
    "SyncEvents",
    "Events",
    "Silent",
    "open_manifest",
    "list_entries",
    "open_mirror",
    "plan",
    "sync",
    "add",
    "pin",
    "status",
    "pack",
    "verify",
    "verify_mirror",
    "unpack",
    "check",
    "SwarmSource",
    "WrittenTorrent",
    "require_swarm",
    "torrent_archive",
    "torrent_mirror",
    "fetch_torrent",
    "seed_archive",
    "seed_mirror",
]

PER_HOST = 2  # concurrent transfers to one course server: polite, still parallel
LOCK_WAIT = 5.0  # seconds a second sync waits for the first before giving up


# ---------------------------------------------------------------------------------------------
# Manifests and the mirror


def open_manifest(year: int | None = None, path: Path | str | None = None) -> tuple[Manifest, Path]:
    """The manifest of *year* shipped with lhymirror, or the one at *path*; and where it is.

    With both, they must agree. Raises ``UsageError`` (no year, years disagree, *path* missing
    or a folder) or ``ManifestError`` listing every problem of an invalid manifest.
    """
    from lhymirror.manifest.listing import select_manifest  # noqa: PLC0415

    return select_manifest(year, path)


def list_entries(manifest: Manifest, kinds: set[str] | None = None) -> ListReport:
    """The manifest's files and links (only those of *kinds* when given), by section on demand."""
    from lhymirror.manifest.listing import list_entries as listing  # noqa: PLC0415

    return listing(manifest, kinds)


def open_mirror(manifest: Manifest, root: Path | str) -> MirrorStore:
    """The local mirror of the manifest's year under *root* (``root/<year>``); touches nothing."""
    from lhymirror.mirror.store import MirrorStore  # noqa: PLC0415

    return MirrorStore(Path(root).expanduser(), manifest.year)


# ---------------------------------------------------------------------------------------------
# Bringing the mirror up to date


def plan(
    manifest: Manifest,
    store: MirrorStore,
    *,
    only: Sequence[str] = (),
    kinds: Sequence[str] = (),
    mirrors: Sequence[str] = (),
    from_bases: Sequence[str] = (),
    rehash: bool = False,
    accept_upstream: Sequence[str] = (),
    offline: bool = False,
) -> SyncPlan:
    """What ``sync`` would do for each selected file, without touching anything.

    *only*: ids or globs on ids or paths; *kinds*: file kinds; *mirrors*: ``wget --mirror``
    copies (``BASE/HOST/PATH``); *from_bases*: other lhymirror mirrors (``BASE/<year>/<path>``);
    *accept_upstream*: ids whose changed upstream content is taken; *offline*: no network
    source is planned. Raises ``UsageError`` for an *only* or *accept_upstream* that matches
    nothing.
    """
    from lhymirror.fetch.plan import plan_sync  # noqa: PLC0415

    return plan_sync(
        manifest,
        store,
        only=list(only),
        kinds=list(kinds),
        mirrors=list(mirrors),
        from_bases=list(from_bases),
        rehash=rehash,
        accept_upstream=list(accept_upstream),
        offline=offline,
    )


def sync(
    manifest: Manifest,
    store: MirrorStore,
    *,
    only: Sequence[str] = (),
    kinds: Sequence[str] = (),
    mirrors: Sequence[str] = (),
    from_bases: Sequence[str] = (),
    rehash: bool = False,
    accept_upstream: Sequence[str] = (),
    offline: bool = False,
    jobs: int = 4,
    events: SyncEvents | None = None,
    lock_wait: float = LOCK_WAIT,
    sync_plan: SyncPlan | None = None,
    swarm: SwarmSource | None = None,
    policy: RetryPolicy | None = None,
    limit_rate: float | None = None,
    fallback_upstream: bool = False,
) -> SyncReport:
    """Download, verify and record every selected file; report what happened to each.

    Selection and sources as for :func:`plan` (or pass a *sync_plan* made by it). *jobs*
    transfers run in parallel, at most two to one course server. Bytes reach a file's path only
    verified. A failed file does not raise: see the report's ``error()``. Raises
    ``StorageError`` when another command holds the year's lock for longer than *lock_wait*
    seconds or the disk is too small, ``UsageError`` for a bad selection or a malformed base,
    ``DownloadError`` when an http(s) base cannot be reached at all (unless
    *fallback_upstream*).

    *swarm*: first take the files a BitTorrent swarm holds (the ``swarm`` extra;
    ``MissingExtraError`` without it). *policy*: timeouts and retries; *limit_rate*: bytes per
    second for the whole run.
    """
    from lhymirror.fetch.bases import (  # noqa: PLC0415
        BaseCheck,
        check_base,
        check_proxy_support,
        network_bases,
    )
    from lhymirror.fetch.health import HostHealth  # noqa: PLC0415
    from lhymirror.fetch.policy import RetryPolicy  # noqa: PLC0415
    from lhymirror.fetch.ratelimit import RateLimiter  # noqa: PLC0415
    from lhymirror.fetch.scheduler import ConnectionBudget  # noqa: PLC0415
    from lhymirror.fetch.sources.kaggle import credentials_for_plan  # noqa: PLC0415
    from lhymirror.fetch.sync import run_sync  # noqa: PLC0415

    bases = [("--from", base) for base in from_bases] + [("--mirror", b) for b in mirrors]
    for option, base in bases:
        check_base(base, option)
    check_proxy_support(os.environ)
    if swarm is not None and not offline:
        require_swarm()  # a missing extra is reported before any work

    def make_plan() -> SyncPlan:
        return plan(
            manifest,
            store,
            only=only,
            kinds=kinds,
            mirrors=mirrors,
            from_bases=from_bases,
            rehash=rehash,
            accept_upstream=accept_upstream,
            offline=offline,
        )

    sync_plan = sync_plan if sync_plan is not None else make_plan()
    rules = policy or RetryPolicy()
    network = [(option, base) for option, base in bases if network_bases([base])]
    base_check = None
    if network and not offline and not fallback_upstream and sync_plan.with_action("fetch"):
        base_check = BaseCheck(network, timeout=rules.timeout)
    events = events if events is not None else Silent()
    from_swarm: dict[str, FileOutcome] = {}
    if swarm is not None and not offline and sync_plan.with_action("fetch"):
        from lhymirror.swarm.leech import sync_from_swarm  # noqa: PLC0415

        if base_check is not None:
            base_check.result()  # peers and web seeds are other sources too

        delivered = sync_from_swarm(
            sync_plan,
            store,
            swarm.source,
            options=swarm.options,
            events=events,
            peers=swarm.peers,
            wait=swarm.wait,
        )
        events.note(delivered.summary())
        from_swarm = delivered.placed
        sync_plan = make_plan() if from_swarm else sync_plan
    credentials = credentials_for_plan(sync_plan)
    health = HostHealth(on_down=events.host_down)
    limiter = RateLimiter(limit_rate) if limit_rate else None
    # large files from a base use the spare connections:
    split_size = rules.split_size(sync_plan.bytes_to_fetch(), jobs)
    budget = ConnectionBudget(jobs, split_size=split_size)
    report = run_sync(
        sync_plan,
        store,
        lambda transfer_events: build_downloader(
            store,
            events=transfer_events,
            kaggle_credentials=credentials,
            health=health,
            limiter=limiter,
            budget=budget,
            base_check=base_check,
            **({"policy": policy} if policy else {}),
        ),
        health=health,
        budget=budget,
        jobs=jobs,
        per_host=PER_HOST,
        events=events,
        lock_wait=lock_wait,
    )
    if base_check is not None:
        base_check.result()  # an unreachable base fails the run, whatever came meanwhile
    if not from_swarm:
        return report
    from lhymirror.swarm.leech import merge_reports  # noqa: PLC0415

    return merge_reports(report, from_swarm)


def add(manifest: Manifest, store: MirrorStore, entry_id: str, file: Path | str) -> AddReport:
    """Import *file* (downloaded by hand) as the manifest's file *entry_id*, verified first.

    Its size and sha256 are checked when the manifest or an earlier download knows them
    (``IntegrityError`` on a mismatch, or when the bytes are another entry's; nothing is placed
    then); otherwise it becomes the reference. ``UsageError`` for an unknown id or a missing file.
    """
    from lhymirror.core.errors import UsageError  # noqa: PLC0415
    from lhymirror.fetch.report import AddReport  # noqa: PLC0415
    from lhymirror.fetch.sync import import_file  # noqa: PLC0415
    from lhymirror.mirror.state import expected_of  # noqa: PLC0415

    try:
        entry = manifest.file(entry_id)
    except KeyError:
        raise UsageError(
            "no such file in the manifest",
            where=entry_id,
            hint=f"Run `lhymirror list {manifest.year}` to see the ids.",
        ) from None
    expected = expected_of(entry, store.record(entry.id))
    record = import_file(store, entry, Path(file), others=manifest.files)
    origin = expected.origin if expected.sha256 and expected.origin != "none" else None
    return AddReport(entry.id, store.file_path(entry.path), record, origin)


def pin(
    manifest: Manifest,
    store: MirrorStore,
    path: Path | str,
    *,
    dry_run: bool = False,
    shipped: bool = False,
) -> PinReport:
    """Write the sizes and sha256 that sync recorded into the manifest file at *path*.

    Entries without a sha256 (or accepted with ``sync --accept-upstream``) get the recorded
    ones; the file is rewritten canonically, order kept. Nothing is written with *dry_run* or
    when nothing changes. *shipped*: *path* is the manifest lhymirror ships for the year,
    refused (``UsageError``) inside an installed package, where an upgrade would undo it.
    """
    from lhymirror.mirror.pin import pin_manifest  # noqa: PLC0415

    return pin_manifest(manifest, store, path, dry_run=dry_run, shipped=shipped)


def status(manifest: Manifest, store: MirrorStore, *, rehash: bool = False) -> StatusReport:
    """The local state of every file of the manifest, by section; never uses the network.

    Only files changed since they were verified are re-hashed, unless *rehash*. The report
    gives bytes still to fetch, ``next_step()`` (``"sync"``, ``"add"`` or None) and
    ``error()``. Raises ``UsageError`` when the mirror root is missing or not a folder and
    ``StorageError`` when a file cannot be read. Nothing is written.
    """
    from lhymirror.mirror.status import read_status  # noqa: PLC0415

    return read_status(manifest, store, rehash=rehash)


# ---------------------------------------------------------------------------------------------
# Archives


def pack(
    manifest: Manifest,
    store: MirrorStore,
    out_dir: Path | str,
    *,
    fmt: str = "zip",
    partial: bool = False,
    force: bool = False,
    source_date_epoch: int | None = None,
    events: CheckEvents | None = None,
) -> PackResult:
    """Pack the year's mirror into ``out_dir/<slug>-<year>-v<version>.<fmt>`` (+ ``.sha256``).

    *fmt*: ``zip``, ``tar`` or ``tar.gz``. Every byte is checked against its sha256 on the way;
    the same files give the same archive. Raises ``IntegrityError`` (``IncompleteMirrorError``,
    listing them all) when a file is missing or damaged unless *partial*, and when an archive of
    this name with other content exists unless *force*.
    """
    from lhymirror.archive.pack import pack_year  # noqa: PLC0415

    events = events if events is not None else Silent()
    return pack_year(
        manifest,
        store,
        Path(out_dir),
        fmt=fmt,
        partial=partial,
        force=force,
        source_date_epoch=source_date_epoch,
        progress=events.progressed,
        started=lambda total: events.checking("packing", total),
    )


def verify(
    path: Path | str, *, fast: bool = False, events: CheckEvents | None = None
) -> VerifyReport:
    """Verify an archive written by ``pack`` (.zip, .tar, .tar.gz) or an extracted bag folder.

    Streams, never extracts; every problem is in the report (``error()`` sums them up).
    *fast*: counts and sizes only. Raises ``UsageError`` when *path* does not exist and
    ``IntegrityError`` when it is no archive at all.
    """
    from lhymirror.archive.verify import verify_path  # noqa: PLC0415

    events = events if events is not None else Silent()
    events.checking("verifying", None)
    return verify_path(Path(path), fast=fast, progress=events.progressed)


def verify_mirror(
    manifest: Manifest, store: MirrorStore, *, fast: bool = False, events: CheckEvents | None = None
) -> VerifyReport:
    """Re-hash every file of the year's mirror against the manifest and the recorded checksums.

    *fast*: compare sizes only. Raises ``UsageError`` when the mirror has no folder for the year.
    """
    from lhymirror.archive.verify import verify_mirror as check_mirror  # noqa: PLC0415
    from lhymirror.core.errors import UsageError  # noqa: PLC0415

    if not store.year_dir.is_dir():
        raise UsageError(
            "no mirror of this year",
            where=str(store.year_dir),
            hint=f"Run `lhymirror sync {manifest.year}` first, or point --root at the mirror.",
        )
    events = events if events is not None else Silent()
    events.checking("verifying", None)
    return check_mirror(manifest, store, fast=fast, progress=events.progressed)


def unpack(
    archive: Path | str, dest: Path | str | None = None, *, events: CheckEvents | None = None
) -> Path:
    """Extract *archive*'s bag folder to *dest* (default ``./<bag folder>``), verified; its path.

    Everything is checked before *dest* appears (``UnpackError``, an ``IntegrityError`` listing
    every problem, leaves nothing behind). ``UsageError`` when *dest* is taken.
    """
    from lhymirror.archive.unpack import unpack_archive  # noqa: PLC0415

    events = events if events is not None else Silent()
    events.checking("unpacking", None)
    return unpack_archive(
        Path(archive), Path(dest) if dest is not None else None, progress=events.progressed
    )


# ---------------------------------------------------------------------------------------------
# For maintainers


def check(
    manifest: Manifest,
    store: MirrorStore,
    *,
    only: Sequence[str] = (),
    jobs: int = 8,
    per_host: int = 2,
    timeout: float = 20.0,
    archive: bool = False,
) -> CheckReport:
    """Ask every source of every file whether it is still there and unchanged; download nothing.

    Each source is alive, changed (size differs from the manifest, or ETag/Last-Modified from
    what *store* recorded), moved, gone, quota, unreachable or unknown. *only*: entry ids;
    *jobs*: requests at once, *per_host* to one host; *timeout*: seconds without an answer;
    *archive*: also ask the Internet Archive for the capture ``sync`` tries last. The report's
    ``error()`` is the verdict: ``IntegrityError`` when a source changed, ``DownloadError``
    when one is gone or unreachable. ``UsageError`` for an unknown id in *only*.
    """
    from lhymirror.core.errors import UsageError  # noqa: PLC0415
    from lhymirror.fetch.check import check_sources  # noqa: PLC0415
    from lhymirror.fetch.sources.kaggle import load_credentials  # noqa: PLC0415

    unknown = manifest.unknown_ids(only)
    if unknown:
        raise UsageError(
            "no such entry",
            where=", ".join(unknown),
            hint=f"Run `lhymirror list {manifest.year}` to see the ids.",
        )
    return check_sources(
        manifest,
        records=store.record,
        only=only,
        jobs=jobs,
        per_host=per_host,
        timeout=(min(10.0, timeout), timeout),
        kaggle_credentials=load_credentials(),
        archive=archive,
    )
