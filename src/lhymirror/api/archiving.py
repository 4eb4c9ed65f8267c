"""Archives: ``pack`` a mirror, ``verify`` an archive, bag folder or mirror, ``unpack``."""

from __future__ import annotations

from pathlib import Path

from lhymirror.api.events import CheckEvents, Silent
from lhymirror.archive.pack import PackResult, collect_payload, pack_year
from lhymirror.archive.unpack import unpack_archive
from lhymirror.archive.verify import VerifyReport, verify_path
from lhymirror.archive.verify import verify_mirror as _verify_mirror
from lhymirror.core.errors import UsageError
from lhymirror.manifest.model import Manifest
from lhymirror.mirror.store import MirrorStore


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

    *fmt*: ``zip``, ``tar`` or ``tar.gz``. Every byte is checked against its sha256 on the way
    (reported through ``events.checking`` and ``events.progressed``); the same files give the
    same archive. Raises ``IntegrityError`` (``IncompleteMirrorError``, listing them all) when a
    file is missing or damaged unless *partial*, and when an archive of this name with other
    content exists unless *force*.
    """
    events = events if events is not None else Silent()
    events.checking("packing", sum(item.size for item in collect_payload(manifest, store)[0]))
    return pack_year(
        manifest,
        store,
        Path(out_dir),
        fmt=fmt,
        partial=partial,
        force=force,
        source_date_epoch=source_date_epoch,
        progress=events.progressed,
    )


def verify(
    path: Path | str, *, fast: bool = False, events: CheckEvents | None = None
) -> VerifyReport:
    """Verify an archive written by ``pack`` (.zip, .tar, .tar.gz) or an extracted bag folder.

    Streams, never extracts; every problem is in the report (``report.error()`` sums them up).
    *fast*: counts and sizes only. Raises ``UsageError`` when *path* does not exist and
    ``IntegrityError`` when it is no archive at all.
    """
    events = events if events is not None else Silent()
    events.checking("verifying", None)
    return verify_path(Path(path), fast=fast, progress=events.progressed)


def verify_mirror(
    manifest: Manifest, store: MirrorStore, *, fast: bool = False, events: CheckEvents | None = None
) -> VerifyReport:
    """Re-hash every file of the year's mirror against the manifest and the recorded checksums.

    *fast*: compare sizes only. Raises ``UsageError`` when the mirror has no folder for the year.
    """
    if not store.year_dir.is_dir():
        raise UsageError(
            "no mirror of this year",
            where=str(store.year_dir),
            hint=f"Run `lhymirror sync {manifest.year}` first, or point --root at the mirror.",
        )
    events = events if events is not None else Silent()
    events.checking("verifying", None)
    return _verify_mirror(manifest, store, fast=fast, progress=events.progressed)


def unpack(
    archive: Path | str, dest: Path | str | None = None, *, events: CheckEvents | None = None
) -> Path:
    """Extract *archive*'s bag folder to *dest* (default ``./<bag folder>``), verified; its path.

    Everything is checked before DEST appears (``UnpackError``, an ``IntegrityError`` listing
    every problem, and nothing left behind otherwise). ``UsageError`` when DEST is taken.
    """
    events = events if events is not None else Silent()
    events.checking("unpacking", None)
    return unpack_archive(
        Path(archive), Path(dest) if dest is not None else None, progress=events.progressed
    )
