"""Reading a bag once, from an archive (as a stream) or from a folder on disk, into a BagScan.

An archive is read without extracting: each payload member is hashed in
:data:`~lhymirror.core.fsutil.CHUNK_SIZE` pieces as it passes and only ``(size, sha256)`` per
path is kept, so memory does not grow with the archive. A folder is walked without following
links. Unsafe or unreadable members become problems; nothing here raises for damage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from lhymirror.archive.bag import PAYLOAD_DIR, parse_sidecar, sidecar_path
from lhymirror.archive.bagcheck import (
    BagScan,
    Found,
    ProgressCallback,
    VerifyReport,
    digest,
    keep_limit,
)
from lhymirror.archive.read import ArchiveMember, ArchiveReader, ArchiveReadError
from lhymirror.core.errors import LhymirrorError
from lhymirror.core.fsutil import open_regular

MAX_SIDECAR_SIZE = 64 * 1024


class MemberSink(Protocol):
    """Where verified reading also writes each bag file (``unpack``); paths relative to the bag."""

    def open(self, relative: str, mode: int) -> contextlib.AbstractContextManager[BinaryIO]:
        """A writable stream for the bag file *relative* (mode: its permission bits)."""
        ...


# ---------------------------------------------------------------------------------------------
# Archives


def scan_members(
    reader: ArchiveReader,
    scan: BagScan,
    *,
    fast: bool,
    sink: MemberSink | None,
    progress: ProgressCallback | None,
) -> bool:
    """Read every member into *scan*; False when the archive could not be read to its end."""
    try:
        for member in reader:
            relative = _place_member(member, scan)
            if relative is not None:
                _read_member(member, relative, scan, fast=fast, sink=sink, progress=progress)
    except ArchiveReadError as error:
        scan.report.add(error.kind, error.member, _error_detail(error))
        return False
    return True


def _place_member(member: ArchiveMember, scan: BagScan) -> str | None:
    """The member's path relative to the bag's top folder, or None (reported if it must be)."""
    if member.unsafe:
        scan.report.add("unsafe", member.name, "; ".join(member.unsafe))
        relative = _relative_to_top(member.name, scan.top)
        if relative and relative not in scan.payload and relative not in scan.tags:
            scan.unreadable.add(relative)  # reported: not "missing" as well
        return None
    if scan.top is None and (member.kind == "dir" or "/" in member.name):
        scan.top = member.name.split("/", 1)[0]
    relative = _relative_to_top(member.name, scan.top)
    if relative is None:
        scan.report.add("extra", member.name, f"outside the bag's top folder {scan.top!r}")
        return None
    if member.kind != "file" or not relative:
        return None
    return relative


def _relative_to_top(name: str, top: str | None) -> str | None:
    if top is None:
        return None
    if name == top:
        return ""
    return name[len(top) + 1 :] if name.startswith(f"{top}/") else None


def _read_member(
    member: ArchiveMember,
    relative: str,
    scan: BagScan,
    *,
    fast: bool,
    sink: MemberSink | None,
    progress: ProgressCallback | None,
) -> None:
    is_payload = relative.startswith(f"{PAYLOAD_DIR}/")
    if fast and is_payload and sink is None:
        scan.record(relative, Found(member.size, None), None)
        return
    try:
        with member.open() as stream, _sink_stream(sink, relative, member.mode) as out:
            # Not threaded: the archive's own bytes are already hashed on the other core.
            size, sha, text = digest(
                stream, keep=keep_limit(relative), sink=out, progress=progress, threaded=False
            )
    except ArchiveReadError as error:
        scan.add(error.kind, relative, _error_detail(error))
        scan.unreadable.add(relative)
        if is_payload:  # present, as far as counts go (Payload-Oxum)
            scan.payload[relative] = Found(member.size, None)
        return
    scan.record(relative, Found(size, sha), text)


@contextlib.contextmanager
def _sink_stream(sink: MemberSink | None, relative: str, mode: int) -> Iterator[BinaryIO | None]:
    if sink is None:
        yield None
        return
    with sink.open(relative, mode) as out:
        yield out


def _error_detail(error: LhymirrorError) -> str:
    """The part of *error* a problem line shows."""
    return error.detail or error.what


def finish_archive(reader: ArchiveReader, scan: BagScan) -> None:
    """Read what follows the last member (gzip CRC, padding): damage there is a problem too."""
    try:
        reader.drain()
    except ArchiveReadError as error:
        scan.report.add(error.kind, error.member, _error_detail(error))


def check_sidecar(archive: Path, archive_sha: str | None, report: VerifyReport) -> None:
    """Compare the archive with its ``<archive>.sha256`` file, when there is one."""
    sidecar = sidecar_path(archive)
    if not sidecar.is_file():
        return
    if archive_sha is None:
        report.notes.append(f"{sidecar.name} not checked (--fast reads no archive bytes)")
        return
    try:
        with sidecar.open("rb") as stream:
            text = stream.read(MAX_SIDECAR_SIZE + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.add("sidecar", str(sidecar), f"unreadable: {exc}")
        return
    expected = parse_sidecar(text, archive.name)
    if expected is None:
        report.add("sidecar", str(sidecar), f"has no '<sha256>  {archive.name}' line")
    elif expected != archive_sha:
        report.add(
            "sidecar",
            str(sidecar),
            f"the archive's sha256 is {archive_sha}, the sidecar says {expected}",
        )


# ---------------------------------------------------------------------------------------------
# Bag folders on disk


def scan_folder(
    folder: Path,
    prefix: str,
    scan: BagScan,
    *,
    fast: bool,
    progress: ProgressCallback | None,
) -> None:
    """Walk *folder* without following links; record files relative to the bag root."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        scan.add("malformed", prefix.rstrip("/") or ".", f"unreadable folder: {exc.strerror}")
        return
    for entry in entries:
        relative = prefix + entry.name
        if entry.is_symlink():
            scan.add("unsafe", relative, "is a symbolic link (not followed)")
            scan.unreadable.add(relative)
        elif entry.is_dir(follow_symlinks=False):
            scan_folder(Path(entry.path), relative + "/", scan, fast=fast, progress=progress)
        elif entry.is_file(follow_symlinks=False):
            _read_disk_file(Path(entry.path), relative, scan, fast=fast, progress=progress)
        else:
            scan.add("unsafe", relative, "is a special file (device, fifo or socket)")
            scan.unreadable.add(relative)


def _read_disk_file(
    path: Path, relative: str, scan: BagScan, *, fast: bool, progress: ProgressCallback | None
) -> None:
    if fast and relative.startswith(f"{PAYLOAD_DIR}/"):
        scan.record(relative, Found(path.lstat().st_size, None), None)
        return
    try:
        with open_regular(path) as stream:
            size, sha, text = digest(stream, keep=keep_limit(relative), progress=progress)
    except OSError as exc:
        scan.add("malformed", relative, f"unreadable: {exc.strerror or exc}")
        scan.unreadable.add(relative)
        return
    scan.record(relative, Found(size, sha), text)
