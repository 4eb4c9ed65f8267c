"""Offline verification of an archive, an extracted bag folder or a year of the local mirror.

Nothing here touches the network (the module imports nothing that could). Every check runs to
the end and every finding becomes a :class:`Problem` naming its path, so one run reports all
that is wrong: missing, extra, size and checksum mismatches, unsafe or unreadable members, a
wrong ``Payload-Oxum``, tag files that differ from ``tagmanifest-sha256.txt`` and an archive
that differs from its ``.sha256`` sidecar.

An archive is read once, as a stream, without extracting: each payload member is hashed in
:data:`~lhymirror.core.fsutil.CHUNK_SIZE` pieces as it passes and only ``(size, sha256)`` per
path is kept, so memory does not grow with the archive. ``fast`` checks counts and sizes only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lhymirror.archive.bagcheck import (
    BagScan,
    Problem,
    ProgressCallback,
    VerifyReport,
    check_bag,
)
from lhymirror.archive.read import DEFAULT_LIMITS, ArchiveLimits, ArchiveReader
from lhymirror.archive.scan import (
    MemberSink,
    check_sidecar,
    finish_archive,
    scan_folder,
    scan_members,
)
from lhymirror.core.errors import IntegrityError, LhymirrorError, UsageError

if TYPE_CHECKING:  # verifying an archive needs neither (nor pydantic, which they import)
    from lhymirror.manifest.model import FileEntry, Manifest
    from lhymirror.mirror.store import MirrorStore

__all__ = [
    "MemberSink",
    "Problem",
    "VerifyReport",
    "verify_archive",
    "verify_folder",
    "verify_mirror",
    "verify_path",
]


# ---------------------------------------------------------------------------------------------
# Entry points


def verify_path(
    path: Path,
    *,
    fast: bool = False,
    progress: ProgressCallback | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> VerifyReport:
    """Verify an archive (.zip, .tar, .tar.gz) or an extracted bag folder."""
    path = Path(path)
    if path.is_dir():
        return verify_folder(path, fast=fast, progress=progress)
    if not path.exists():
        raise UsageError(
            "no such file or folder",
            where=str(path),
            hint="Give an archive written by `lhymirror pack`, a bag folder, or --year YEAR.",
        )
    return verify_archive(path, fast=fast, progress=progress, limits=limits)


def verify_archive(
    path: Path,
    *,
    fast: bool = False,
    progress: ProgressCallback | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    sink: MemberSink | None = None,
) -> VerifyReport:
    """Verify an archive in one streaming pass; with *sink*, also write each bag file there.

    Raises ``ArchiveFormatError`` (an ``IntegrityError``) when the file is no archive at all.
    """
    path = Path(path)
    report = VerifyReport(str(path), fast=fast)
    scan = BagScan(report, top=None)
    try:
        reader = ArchiveReader(path, hash_archive=not fast, check_crc=False, limits=limits)
    except OSError as exc:
        raise IntegrityError("cannot read the archive", where=str(path), detail=str(exc)) from exc
    with reader:
        complete = scan_members(reader, scan, fast=fast, sink=sink, progress=progress)
        scan.complete = complete and not reader.stopped_early
        if scan.complete:
            finish_archive(reader, scan)
        archive_sha = reader.archive_sha256()
    check_bag(scan, fast=fast)
    if reader.seekable:
        check_sidecar(path, archive_sha, report)
    else:
        report.notes.append(
            "read from a pipe: the archive's own sha256 (its .sha256 file) was not checked; "
            "save the archive to a file and verify that to check it"
        )
    return report


def verify_folder(
    root: Path, *, fast: bool = False, progress: ProgressCallback | None = None
) -> VerifyReport:
    """Verify an extracted bag folder on disk; symlinks inside it are reported, never followed."""
    root = Path(root)
    report = VerifyReport(str(root), fast=fast)
    scan = BagScan(report, top=root.name, on_disk=True)
    scan_folder(root, "", scan, fast=fast, progress=progress)
    check_bag(scan, fast=fast)
    return report


def verify_mirror(
    manifest: Manifest,
    store: MirrorStore,
    *,
    fast: bool = False,
    progress: ProgressCallback | None = None,
) -> VerifyReport:
    """Check each manifest file in the mirror against the size and sha256 it is held to.

    Every file is re-hashed (no size-and-mtime shortcut) unless *fast*, which compares sizes.
    """
    report = VerifyReport(str(store.year_dir), fast=fast, mirror_year=manifest.year)
    for entry in manifest.files:
        _check_mirror_file(entry, store, report, fast=fast, progress=progress)
    return report


# ---------------------------------------------------------------------------------------------
# The local mirror


def _check_mirror_file(
    entry: FileEntry,
    store: MirrorStore,
    report: VerifyReport,
    *,
    fast: bool,
    progress: ProgressCallback | None,
) -> None:
    from lhymirror.mirror.state import Checked, EntryState, describe  # noqa: PLC0415

    try:
        state = EntryState.read(store, entry)
    except LhymirrorError as error:
        report.add("unsafe", entry.path, error.message)
        return
    checked = Checked(state.check(), state.disk.size) if fast else state.verify(progress)
    if checked.size is not None:
        report.files_checked += 1
        report.bytes_checked += checked.size
    if checked.problem is not None:
        report.add(checked.problem.kind, entry.path, describe(checked.problem))
