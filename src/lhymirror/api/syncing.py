"""Bringing the mirror up to date: ``plan``, ``sync`` and ``add`` (a file downloaded by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lhymirror.api.events import Silent
from lhymirror.core.errors import UsageError
from lhymirror.fetch.kaggle import KaggleCredentials, load_credentials
from lhymirror.fetch.plan import SyncPlan, plan_sync
from lhymirror.fetch.sync import Fetcher, SyncEvents, SyncReport, import_file, run_sync
from lhymirror.fetch.transfer import TransferEvents
from lhymirror.manifest.model import Manifest
from lhymirror.manifest.sources import source_kind
from lhymirror.mirror.store import FileRecord, MirrorStore

PER_HOST = 2  # concurrent transfers to one course server: polite, still parallel
LOCK_WAIT = 5.0  # seconds a second sync waits for the first before giving up


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
) -> SyncReport:
    """Download, verify and record every selected file; report what happened to each.

    Selection and sources as for :func:`plan` (or pass a *sync_plan* made by it). *jobs*
    transfers run in parallel, at most two to one course server. Files are never half-written:
    bytes reach their path only verified. A failed file does not raise: see the report's
    ``error()``. Raises ``StorageError`` when another command holds the year's lock for longer
    than *lock_wait* seconds or the disk is too small, ``UsageError`` for a bad selection.
    """
    if sync_plan is None:
        sync_plan = plan(
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
    credentials = kaggle_credentials_for(sync_plan)
    return run_sync(
        sync_plan,
        store,
        lambda transfer_events: build_downloader(
            store,
            events=transfer_events,
            offline=sync_plan.offline,
            kaggle_credentials=credentials,
        ),
        jobs=jobs,
        per_host=PER_HOST,
        events=events if events is not None else Silent(),
        lock_wait=lock_wait,
    )


def build_downloader(
    store: MirrorStore,
    *,
    events: TransferEvents,
    offline: bool,
    kaggle_credentials: KaggleCredentials | None,
) -> Fetcher:
    """The downloader of one worker thread (tests replace this to inject sleeps and clocks)."""
    # Imported here: requests is needed only once a file is transferred (see lhymirror.fetch.sync).
    from lhymirror.fetch.download import Downloader  # noqa: PLC0415

    return Downloader(store, events=events, offline=offline, kaggle_credentials=kaggle_credentials)


def kaggle_credentials_for(sync_plan: SyncPlan) -> KaggleCredentials | None:
    """Kaggle credentials, read only when a planned transfer may need them."""
    uses_kaggle = any(
        source_kind(source) == "kaggle"
        for item in sync_plan.items
        if item.needs_transfer
        for source in (*item.sources, *(s for part in item.parts for s in part.sources))
    )
    return load_credentials() if uses_kaggle else None


@dataclass(frozen=True)
class AddReport:
    """A file imported by ``add``: where it went, its record, what it was checked against."""

    id: str
    path: Path
    record: FileRecord
    checked_against: Literal["manifest", "recorded"] | None  # None: it became the reference

    def to_json(self) -> dict[str, Any]:
        """Plain data, as ``add --json`` prints it (see docs/json.md)."""
        return {
            "id": self.id,
            "path": str(self.path),
            "size": self.record.size,
            "sha256": self.record.sha256,
            "checksum_origin": self.checked_against,
        }


def add(manifest: Manifest, store: MirrorStore, entry_id: str, file: Path | str) -> AddReport:
    """Import *file* (downloaded by hand) as the manifest's file *entry_id*, verified first.

    Its size and sha256 are checked when the manifest or an earlier download knows them
    (``IntegrityError`` on a mismatch, or when the bytes are another entry's; nothing is placed
    then); otherwise it becomes the reference. ``UsageError`` for an unknown id or a missing file.
    """
    try:
        entry = manifest.file(entry_id)
    except KeyError:
        raise UsageError(
            "no such file in the manifest",
            where=entry_id,
            hint=f"Run `lhymirror list {manifest.year}` to see the ids.",
        ) from None
    expected = store.expected(entry)
    record = import_file(store, entry, Path(file), others=manifest.files)
    origin = expected.origin if expected.sha256 and expected.origin != "none" else None
    return AddReport(entry.id, store.file_path(entry.path), record, origin)
