"""Pack one year of the local mirror into a reproducible, versioned BagIt archive.

Flow: collect the manifest's files from the mirror (each must be present and held to a known
sha256) → plan the bag (tag files are computed up front from the known checksums) → write every
member in sorted order into a temporary archive next to the target, re-hashing each payload file
while it is copied → on success rename the archive into place and write its ``.sha256`` sidecar.

Every byte is hashed exactly once in the normal case. When a file turns out damaged (or changes
while it is read), packing stops writing but keeps hashing the remaining files so that *all*
problems are reported together. Without ``partial`` it then refuses; with ``partial`` it packs
again without the damaged files (a rare path that reads the files before them a second time,
because ``bag-info.txt``, which lists missing files, sorts before ``data/``).

The archive depends only on the manifest, the file contents and the bagging date (from
``SOURCE_DATE_EPOCH``, else the manifest's ``released`` date, else 1980-01-01; never the clock),
so packing the same files twice, on any machine, gives the same bytes.

Packing only reads the mirror; it takes no lock. A ``sync`` running at the same time can make
a pack fail (a file changes under it) but never produce an archive with unverified bytes. The
unfinished archive is locked while it is written, so the next pack can tell (and delete) the
leftover of a pack that was killed from one still running.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lhymirror import __version__
from lhymirror.archive.bag import (
    BAG_DECLARATION,
    MISSING_FILE_LABEL,
    PAYLOAD_DIR,
    PAYLOAD_MANIFEST,
    TAG_MANIFEST,
    bag_folder_name,
    format_bag_info,
    format_checksum_manifest,
    format_sidecar,
    payload_oxum,
    sidecar_path,
)
from lhymirror.archive.bagwrite import (
    BagPlan,
    MissingFile,
    PayloadFile,
    ProgressCallback,
    verify_payload,
    write_temp_archive,
)
from lhymirror.archive.index_page import IndexFile, render_index
from lhymirror.archive.write import (
    FORMATS,
    ZIP_MIN_EPOCH,
    archive_extension,
)
from lhymirror.core.errors import IntegrityError, StorageError, UsageError, storage_errors
from lhymirror.core.fsutil import (
    atomic_write_text,
    hash_file,
    replace_durably,
)
from lhymirror.manifest.model import FileEntry, Manifest, dump_manifest
from lhymirror.mirror.state import EntryState, Expected, expected_of
from lhymirror.mirror.store import MirrorStore

SOURCE_DATE_EPOCH_ENV = "SOURCE_DATE_EPOCH"
SOURCE_ORGANIZATION = "National Taiwan University (Prof. Hung-yi Lee)"
_MAX_ATTEMPTS = 3  # partial packs restarted because files failed (or changed) while being read


@dataclass(frozen=True)
class PackResult:
    """What ``pack`` produced."""

    archive: Path
    checksum_file: Path
    sha256: str
    files: int
    payload_bytes: int
    missing: tuple[MissingFile, ...]
    unchanged: bool  # an identical archive of this name already existed


class IncompleteMirrorError(IntegrityError):
    """The mirror lacks files of the manifest or holds damaged ones; ``missing`` lists them all."""

    def __init__(self, store: MirrorStore, missing: Sequence[MissingFile], total: int) -> None:
        self.missing = tuple(missing)
        super().__init__(
            "cannot pack an incomplete mirror",
            where=str(store.year_dir),
            detail=f"{len(self.missing)} of {total} files missing or damaged",
            hint=(
                f"Run `lhymirror sync {store.year}` (and `lhymirror add` for manual files), "
                "or pass --partial to pack only what is verified."
            ),
        )


# ---------------------------------------------------------------------------------------------
# Public API


def archive_name(manifest: Manifest, fmt: str, *, partial: bool = False) -> str:
    """``<slug>-<year>-v<version>[-partial].zip|.tar|.tar.gz`` (partial: with files missing)."""
    _check_format(fmt)
    return bag_folder_name(manifest) + ("-partial" if partial else "") + archive_extension(fmt)


def bagging_epoch(
    manifest: Manifest,
    source_date_epoch: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """The one instant a bag is dated with (never the clock, so packs are reproducible).

    ``source_date_epoch`` if given, else ``$SOURCE_DATE_EPOCH``, else the manifest's ``released``
    date (midnight UTC), else 1980-01-01.
    """
    if source_date_epoch is not None:
        return int(source_date_epoch)
    text = environ.get(SOURCE_DATE_EPOCH_ENV, "").strip()
    if text:
        if not text.isdigit():
            raise UsageError(
                f"invalid {SOURCE_DATE_EPOCH_ENV}",
                detail=f"{text[:40]!r} is not a whole number of seconds since 1970",
                hint=f"Set it to an integer such as 1700000000, or unset {SOURCE_DATE_EPOCH_ENV}.",
            )
        return int(text)
    if manifest.released is not None:
        return calendar.timegm(manifest.released.timetuple())
    return ZIP_MIN_EPOCH


def pack_year(
    manifest: Manifest,
    store: MirrorStore,
    out_dir: Path,
    *,
    fmt: str = "zip",
    partial: bool = False,
    force: bool = False,
    source_date_epoch: int | None = None,
    progress: ProgressCallback | None = None,
    started: Callable[[int], None] | None = None,
) -> PackResult:
    """Write ``out_dir/<slug>-<year>-v<version>[-partial].<ext>`` and its ``.sha256`` sidecar.

    Refuses (``IncompleteMirrorError``, listing every file) when a file is missing or damaged,
    unless *partial* (then named ``-partial``); refuses (``IntegrityError``) to replace a complete
    archive of the same name whose bytes differ, unless *force*. *started* is told the payload's
    bytes once the files are found; *progress* receives the number of payload bytes read, chunk
    by chunk.
    """
    epoch = bagging_epoch(manifest, source_date_epoch)
    if manifest.files and not store.year_dir.is_dir():
        raise UsageError(
            "no mirror of this year here",
            where=str(store.year_dir),
            hint=f"Run `lhymirror sync {manifest.year}` first, or point --root at your mirror.",
        )
    payload, missing = collect_payload(manifest, store)
    if started is not None:
        started(sum(item.size for item in payload))
    missing = _by_path(missing)
    if missing and not partial:
        damaged = verify_payload(payload, progress)
        raise IncompleteMirrorError(store, _by_path(missing + damaged), len(manifest.files))
    with storage_errors(Path(out_dir)):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    for _attempt in range(_MAX_ATTEMPTS):
        if manifest.files and not payload:  # --partial, but nothing at all is verified
            raise IncompleteMirrorError(store, missing, len(manifest.files))
        plan = plan_bag(manifest, store, payload, missing, epoch)
        target = Path(out_dir) / archive_name(manifest, fmt, partial=bool(missing))
        temp, sha256, damaged = write_temp_archive(plan, target, fmt, progress)
        if not damaged:
            return _install(temp, sha256, target, plan, missing, force=force or bool(missing))
        temp.unlink(missing_ok=True)
        if not partial:
            raise IncompleteMirrorError(store, _by_path(damaged), len(manifest.files))
        failed = {item.id for item in damaged}
        payload = [item for item in payload if item.entry.id not in failed]
        missing = _by_path(missing + damaged)
    raise IntegrityError(
        "mirror files keep changing while being packed",
        where=str(store.year_dir),
        hint="Let other lhymirror commands (sync) finish, then run pack again.",
    )


def collect_payload(
    manifest: Manifest, store: MirrorStore
) -> tuple[list[PayloadFile], list[MissingFile]]:
    """Split the manifest's files into packable ones and missing ones (no file is read)."""
    payload: list[PayloadFile] = []
    missing: list[MissingFile] = []
    for entry in manifest.files:
        found = _check_entry(entry, store)
        if isinstance(found, PayloadFile):
            payload.append(found)
        else:
            missing.append(found)
    return payload, missing


def plan_bag(
    manifest: Manifest,
    store: MirrorStore,
    payload: Sequence[PayloadFile],
    missing: Sequence[MissingFile],
    epoch: int,
) -> BagPlan:
    """Decide the bag's members and compute its tag files from the known checksums."""
    top = bag_folder_name(manifest)
    filled = _filled_manifest(manifest, store, payload)
    present = {item.entry.id for item in payload}
    index_files = [
        IndexFile(entry, entry.size if entry.id in present else None, entry.id in present)
        for entry in filled.files
    ]
    tags = {
        "bagit.txt": BAG_DECLARATION,
        "bag-info.txt": format_bag_info(_bag_info_fields(manifest, payload, missing, top, epoch)),
        PAYLOAD_MANIFEST: format_checksum_manifest(
            (item.bag_path, item.sha256) for item in payload
        ),
        "lhymirror.toml": dump_manifest(filled),
        "index.html": render_index(filled, index_files),
    }
    tag_files = {name: text.encode("utf-8") for name, text in tags.items()}
    tag_files[TAG_MANIFEST] = format_checksum_manifest(
        (name, hashlib.sha256(data).hexdigest()) for name, data in tag_files.items()
    ).encode("utf-8")
    ordered = tuple(sorted(payload, key=lambda item: item.bag_path))
    return BagPlan(top=top, payload=ordered, tag_files=tag_files, epoch=epoch)


# ---------------------------------------------------------------------------------------------
# Collecting


def _check_entry(entry: FileEntry, store: MirrorStore) -> PayloadFile | MissingFile:
    """The payload for one entry, or why it cannot be packed (checked by ``lstat`` only)."""
    try:
        state = EntryState.read(store, entry)
    except StorageError as error:
        return MissingFile(entry.id, entry.path, f"unsafe path in the mirror: {error.what}")
    problem = state.check()
    if problem is not None:
        return MissingFile.of(entry, problem)
    sha256, size = state.expected.sha256, state.disk.size
    assert sha256 is not None and size is not None  # no problem: a present, verified file
    expected = Expected(size, sha256, state.expected.origin)
    return PayloadFile(entry, state.path, size, sha256, expected)


def _by_path(missing: Sequence[MissingFile]) -> list[MissingFile]:
    return sorted(missing, key=lambda item: item.path)


def _filled_manifest(
    manifest: Manifest, store: MirrorStore, payload: Sequence[PayloadFile]
) -> Manifest:
    """The manifest with every size and sha256 known for the packed files filled in."""
    by_id = {item.entry.id: item for item in payload}
    files = tuple(_filled_entry(entry, by_id.get(entry.id), store) for entry in manifest.files)
    return replace(manifest, files=files)


def _filled_entry(entry: FileEntry, item: PayloadFile | None, store: MirrorStore) -> FileEntry:
    if item is not None:
        return replace(entry, size=item.size, sha256=item.sha256)
    expected = expected_of(entry, store.record(entry.id))
    if expected.sha256 is None:
        return entry
    return replace(entry, size=expected.size, sha256=expected.sha256)


def _bag_info_fields(
    manifest: Manifest,
    payload: Sequence[PayloadFile],
    missing: Sequence[MissingFile],
    top: str,
    epoch: int,
) -> list[tuple[str, str]]:
    description = f"{manifest.course} ({manifest.year}): course files for offline use"
    if manifest.homepage:
        description += f", from {manifest.homepage}"
    fields = [
        ("Source-Organization", SOURCE_ORGANIZATION),
        ("External-Description", description + "."),
        ("External-Identifier", top),
        ("Bagging-Date", time.strftime("%Y-%m-%d", time.gmtime(epoch))),
        ("Payload-Oxum", payload_oxum(sum(item.size for item in payload), len(payload))),
        ("Bag-Software-Agent", f"lhymirror {__version__}"),
        ("Manifest-Version", manifest.version),
    ]
    fields += [(MISSING_FILE_LABEL, f"{PAYLOAD_DIR}/{item.describe()}") for item in missing]
    return fields


# ---------------------------------------------------------------------------------------------
# Installing


def _install(
    temp: Path,
    sha256: str,
    target: Path,
    plan: BagPlan,
    missing: Sequence[MissingFile],
    *,
    force: bool,
) -> PackResult:
    """Move the finished archive into place unless an identical one is there already."""
    try:
        unchanged = _same_as_existing(target, sha256, force=force)
        with storage_errors(target):
            if unchanged:
                temp.unlink()
            else:
                temp.chmod(0o644)
                replace_durably(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    checksum_file = sidecar_path(target)
    with storage_errors(checksum_file):
        atomic_write_text(checksum_file, format_sidecar(sha256, target.name))
    return PackResult(
        archive=target,
        checksum_file=checksum_file,
        sha256=sha256,
        files=len(plan.payload),
        payload_bytes=sum(item.size for item in plan.payload),
        missing=tuple(missing),
        unchanged=unchanged,
    )


def _same_as_existing(target: Path, sha256: str, *, force: bool) -> bool:
    """True when *target* already holds these bytes; refuses a different one unless *force*."""
    if not target.exists():
        return False
    with storage_errors(target):
        _, existing = hash_file(target)  # a re-pack of the same version: rare, worth the read
    if existing == sha256:
        return True
    if not force:
        raise IntegrityError(
            "an archive of this version already exists with different content",
            where=str(target),
            hint="Bump `version` in the manifest (or pass --force to replace it).",
        )
    return False


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(
            "unknown archive format",
            where=fmt,
            hint=f"Use one of: {', '.join(FORMATS)}.",
        )
