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

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from lhymirror.archive.bag import (
    MISSING_FILE_LABEL,
    PAYLOAD_DIR,
    PAYLOAD_MANIFEST,
    TAG_FILES,
    TAG_MANIFEST,
    bag_info_values,
    parse_bag_info,
    parse_checksum_manifest,
    parse_payload_oxum,
    parse_sidecar,
    sidecar_path,
)
from lhymirror.archive.read import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    ArchiveMember,
    ArchiveReader,
    ArchiveReadError,
)
from lhymirror.core.errors import IntegrityError, LhymirrorError, UsageError
from lhymirror.core.fsutil import CHUNK_SIZE, ThreadedDigest
from lhymirror.core.safepath import path_problems
from lhymirror.core.streams import Reads
from lhymirror.manifest.model import FileEntry, Manifest, parse_manifest
from lhymirror.mirror.state import Checked, EntryState, describe
from lhymirror.mirror.store import MirrorStore

REQUIRED_TAG_FILES = ("bagit.txt", "bag-info.txt", PAYLOAD_MANIFEST, TAG_MANIFEST)
PARSED_TAG_FILES = frozenset({*REQUIRED_TAG_FILES, "lhymirror.toml"})
MAX_TAG_FILE_SIZE = 16 * 1024 * 1024
MAX_SIDECAR_SIZE = 64 * 1024
SUPPORTED_BAGIT_VERSIONS = ("0.97", "1.0")

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Problem:
    """One finding: what is wrong (``kind``), where (``path``) and the specifics (``detail``).

    Kinds: missing, extra, size, checksum, unsafe, malformed, oxum, tagmanifest, sidecar;
    for a mirror file also unverified (no checksum known yet), symlink, not_a_file and
    unreadable (see :mod:`lhymirror.mirror.state`).
    """

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclass
class VerifyReport:
    """The outcome of one verification: intact when it lists no problem."""

    target: str
    bag: str | None = None  # the bag's top folder name, once known
    files_checked: int = 0
    bytes_checked: int = 0
    fast: bool = False
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth telling that are not problems

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def add(self, kind: str, path: str, detail: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(kind, path, detail))

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "target": self.target,
            "bag": self.bag,
            "ok": self.ok,
            "fast": self.fast,
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "problems": [asdict(problem) for problem in self.problems],
            "notes": list(self.notes),
        }


class MemberSink(Protocol):
    """Where verified reading also writes each bag file (``unpack``); paths relative to the bag."""

    def open(self, relative: str, mode: int) -> contextlib.AbstractContextManager[BinaryIO]:
        """A writable stream for the bag file *relative* (mode: its permission bits)."""
        ...


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
    scan = _BagScan(report, top=None)
    try:
        reader = ArchiveReader(path, hash_archive=not fast, check_crc=False, limits=limits)
    except OSError as exc:
        raise IntegrityError("cannot read the archive", where=str(path), detail=str(exc)) from exc
    with reader:
        complete = _scan_members(reader, scan, fast=fast, sink=sink, progress=progress)
        if complete:
            _finish_archive(reader, scan)
        archive_sha = reader.archive_sha256()
    _check_bag(scan, fast=fast)
    _check_sidecar(path, archive_sha, report)
    return report


def verify_folder(
    root: Path, *, fast: bool = False, progress: ProgressCallback | None = None
) -> VerifyReport:
    """Verify an extracted bag folder on disk; symlinks inside it are reported, never followed."""
    root = Path(root)
    report = VerifyReport(str(root), fast=fast)
    scan = _BagScan(report, top=root.name)
    _scan_folder(root, "", scan, fast=fast, progress=progress)
    _check_bag(scan, fast=fast)
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
    report = VerifyReport(str(store.year_dir), fast=fast)
    for entry in manifest.files:
        _check_mirror_file(entry, store, report, fast=fast, progress=progress)
    return report


# ---------------------------------------------------------------------------------------------
# What was found, whatever the container


@dataclass
class _Found:
    size: int
    sha256: str | None  # None when not hashed (fast) or unreadable


@dataclass
class _BagScan:
    """What a pass over a bag found: payload and tag files by path relative to the bag."""

    report: VerifyReport
    top: str | None  # the bag's top folder, as the paths in problems show it
    payload: dict[str, _Found] = field(default_factory=dict)
    tags: dict[str, _Found] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)  # present but not readable: reported

    def display(self, relative: str) -> str:
        return f"{self.top}/{relative}" if self.top else relative

    def add(self, kind: str, relative: str, detail: str) -> None:
        self.report.add(kind, self.display(relative), detail)

    def record(self, relative: str, found: _Found, text: bytes | None) -> None:
        """File a bag file under payload or tag files; keep the text of tag files we parse."""
        if relative.startswith(f"{PAYLOAD_DIR}/"):
            self.payload[relative] = found
            self.report.files_checked += 1
            self.report.bytes_checked += found.size
            return
        self.tags[relative] = found
        if text is not None:
            try:
                self.texts[relative] = text.decode("utf-8")
            except UnicodeDecodeError:
                self.add("malformed", relative, "not valid UTF-8")


def _digest(
    stream: Reads,
    *,
    keep: int = 0,
    sink: BinaryIO | None = None,
    progress: ProgressCallback | None = None,
    threaded: bool = True,
) -> tuple[int, str, bytes | None]:
    """Read *stream* to its end in chunks: size, sha256 and, up to *keep* bytes, the content.

    The content is None when *keep* is 0 or the stream is longer than *keep*. With *threaded*,
    hashing overlaps with reading the next chunk.
    """
    digest: Any = ThreadedDigest() if threaded else hashlib.sha256()
    try:
        size = 0
        kept: bytearray | None = bytearray() if keep else None
        while chunk := stream.read(CHUNK_SIZE):
            n = len(chunk)
            digest.update(chunk)
            size += n
            if sink is not None:
                sink.write(chunk)
            if kept is not None:
                if len(kept) + n <= keep:
                    kept += chunk
                else:
                    kept = None
            if progress is not None:
                progress(n)
    except BaseException:
        if threaded:
            digest.close()
        raise
    return size, digest.hexdigest(), bytes(kept) if kept is not None else None


def _keep_limit(relative: str) -> int:
    return MAX_TAG_FILE_SIZE if relative in PARSED_TAG_FILES else 0


# ---------------------------------------------------------------------------------------------
# Archives


def _scan_members(
    reader: ArchiveReader,
    scan: _BagScan,
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


def _place_member(member: ArchiveMember, scan: _BagScan) -> str | None:
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
    scan: _BagScan,
    *,
    fast: bool,
    sink: MemberSink | None,
    progress: ProgressCallback | None,
) -> None:
    is_payload = relative.startswith(f"{PAYLOAD_DIR}/")
    if fast and is_payload and sink is None:
        scan.record(relative, _Found(member.size, None), None)
        return
    try:
        with member.open() as stream, _sink_stream(sink, relative, member.mode) as out:
            # Not threaded: the archive's own bytes are already hashed on the other core.
            size, sha, text = _digest(
                stream, keep=_keep_limit(relative), sink=out, progress=progress, threaded=False
            )
    except ArchiveReadError as error:
        scan.add(error.kind, relative, _error_detail(error))
        scan.unreadable.add(relative)
        if is_payload:  # present, as far as counts go (Payload-Oxum)
            scan.payload[relative] = _Found(member.size, None)
        return
    scan.record(relative, _Found(size, sha), text)


@contextlib.contextmanager
def _sink_stream(sink: MemberSink | None, relative: str, mode: int) -> Iterator[BinaryIO | None]:
    if sink is None:
        yield None
        return
    with sink.open(relative, mode) as out:
        yield out


def _error_detail(error: LhymirrorError) -> str:
    return error.detail or error.what


def _finish_archive(reader: ArchiveReader, scan: _BagScan) -> None:
    """Read what follows the last member (gzip CRC, padding): damage there is a problem too."""
    try:
        reader.drain()
    except ArchiveReadError as error:
        scan.report.add(error.kind, error.member, _error_detail(error))


def _check_sidecar(archive: Path, archive_sha: str | None, report: VerifyReport) -> None:
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


def _scan_folder(
    folder: Path,
    prefix: str,
    scan: _BagScan,
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
            _scan_folder(Path(entry.path), relative + "/", scan, fast=fast, progress=progress)
        elif entry.is_file(follow_symlinks=False):
            _read_disk_file(Path(entry.path), relative, scan, fast=fast, progress=progress)
        else:
            scan.add("unsafe", relative, "is a special file (device, fifo or socket)")
            scan.unreadable.add(relative)


def _read_disk_file(
    path: Path, relative: str, scan: _BagScan, *, fast: bool, progress: ProgressCallback | None
) -> None:
    if fast and relative.startswith(f"{PAYLOAD_DIR}/"):
        scan.record(relative, _Found(path.lstat().st_size, None), None)
        return
    try:
        with _open_no_follow(path) as stream:
            size, sha, text = _digest(stream, keep=_keep_limit(relative), progress=progress)
    except OSError as exc:
        scan.add("malformed", relative, f"unreadable: {exc.strerror or exc}")
        scan.unreadable.add(relative)
        return
    scan.record(relative, _Found(size, sha), text)


def _open_no_follow(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    return os.fdopen(fd, "rb", buffering=0)


# ---------------------------------------------------------------------------------------------
# The bag's own rules (RFC 8493) and lhymirror's additions


def _check_bag(scan: _BagScan, *, fast: bool) -> None:
    """Compare what was found with the bag's declarations; add a problem for every mismatch."""
    scan.report.bag = scan.top
    if scan.top is None and not scan.payload and not scan.tags:
        scan.report.add("malformed", scan.report.target, "holds no bag (no files at all)")
        return
    for name in REQUIRED_TAG_FILES:
        if name not in scan.tags and name not in scan.unreadable:
            scan.add("missing", name, "required BagIt tag file is absent")
    _check_declaration(scan)
    expected = _parse_tag(scan, PAYLOAD_MANIFEST, parse_checksum_manifest) or {}
    sizes = _declared_sizes(scan, expected)
    _check_payload(scan, expected, sizes, fast=fast)
    bag_info = _parse_tag(scan, "bag-info.txt", parse_bag_info) or []
    _check_oxum(scan, bag_info)
    _note_partial(scan, bag_info)
    _check_tag_manifest(scan)
    if fast:
        scan.report.notes.append("fast: payload counts and sizes only; checksums not checked")


def _parse_tag(scan: _BagScan, name: str, parser: Callable[..., Any]) -> Any:
    """Parse a tag file's text; a malformed one is a problem (and gives None)."""
    text = scan.texts.get(name)
    if text is None:
        if name in scan.tags and name not in scan.unreadable:
            scan.add("malformed", name, f"larger than {MAX_TAG_FILE_SIZE} bytes")
        return None
    try:
        return parser(text, where=scan.display(name))
    except LhymirrorError as error:
        scan.add("malformed", name, error.message)
        return None


def _check_declaration(scan: _BagScan) -> None:
    fields = _parse_tag(scan, "bagit.txt", parse_bag_info)
    if fields is None:
        return
    versions = bag_info_values(fields, "BagIt-Version")
    encodings = bag_info_values(fields, "Tag-File-Character-Encoding")
    if len(versions) != 1 or versions[0] not in SUPPORTED_BAGIT_VERSIONS:
        scan.add("malformed", "bagit.txt", f"unsupported BagIt-Version {versions}")
    if len(encodings) != 1 or encodings[0].upper().replace("-", "") != "UTF8":
        scan.add("malformed", "bagit.txt", f"tag file encoding must be UTF-8, not {encodings}")


def _declared_sizes(scan: _BagScan, expected: dict[str, str]) -> dict[str, int]:
    """Payload sizes from the embedded ``lhymirror.toml``; its checksums must agree too."""
    text = scan.texts.get("lhymirror.toml")
    if text is None:
        return {}
    try:
        manifest = parse_manifest(text, where=scan.display("lhymirror.toml"))
    except LhymirrorError as error:
        scan.add("malformed", "lhymirror.toml", error.message)
        return {}
    sizes: dict[str, int] = {}
    for entry in manifest.files:
        relative = f"{PAYLOAD_DIR}/{entry.path}"
        if entry.size is not None:
            sizes[relative] = entry.size
        listed = expected.get(relative)
        if listed is not None and entry.sha256 is not None and listed != entry.sha256:
            scan.add(
                "checksum",
                relative,
                f"lhymirror.toml says sha256 {entry.sha256}, {PAYLOAD_MANIFEST} says {listed}",
            )
    return sizes


def _check_payload(
    scan: _BagScan, expected: dict[str, str], sizes: dict[str, int], *, fast: bool
) -> None:
    for relative, checksum in sorted(expected.items()):
        problems = path_problems(relative)
        if problems or not relative.startswith(f"{PAYLOAD_DIR}/"):
            why = "; ".join(problems) or f"is outside {PAYLOAD_DIR}/"
            scan.add("malformed", PAYLOAD_MANIFEST, f"lists {relative!r}, which {why}")
            continue
        if relative in scan.unreadable:
            continue
        found = scan.payload.get(relative)
        if found is None:
            scan.add("missing", relative, f"listed in {PAYLOAD_MANIFEST}, absent from the bag")
        elif relative in sizes and found.size != sizes[relative]:
            scan.add("size", relative, f"expected {sizes[relative]} bytes, found {found.size}")
        elif not fast and found.sha256 != checksum:
            scan.add("checksum", relative, f"expected sha256 {checksum}, got {found.sha256}")
    for relative in sorted(set(scan.payload) - set(expected)):
        scan.add("extra", relative, f"not listed in {PAYLOAD_MANIFEST}")


def _note_partial(scan: _BagScan, bag_info: list[tuple[str, str]]) -> None:
    missing = bag_info_values(bag_info, MISSING_FILE_LABEL)
    if missing:
        scan.report.notes.append(
            f"partial bag: {len(missing)} course files were missing when it was packed "
            f"({MISSING_FILE_LABEL} in bag-info.txt)"
        )


def _check_oxum(scan: _BagScan, bag_info: list[tuple[str, str]]) -> None:
    values = bag_info_values(bag_info, "Payload-Oxum")
    if not values:
        return
    if len(values) > 1:
        scan.add("malformed", "bag-info.txt", "Payload-Oxum is given more than once")
        return
    try:
        declared_bytes, declared_count = parse_payload_oxum(values[0])
    except IntegrityError as error:
        scan.add("malformed", "bag-info.txt", error.message)
        return
    actual_bytes = sum(found.size for found in scan.payload.values())
    actual_count = len(scan.payload)
    if (declared_bytes, declared_count) != (actual_bytes, actual_count):
        scan.add(
            "oxum",
            "bag-info.txt",
            f"Payload-Oxum declares {declared_bytes} bytes in {declared_count} files, "
            f"the bag holds {actual_bytes} bytes in {actual_count} files",
        )


def _check_tag_manifest(scan: _BagScan) -> None:
    listed = _parse_tag(scan, TAG_MANIFEST, parse_checksum_manifest)
    if listed is None:
        return
    for relative, checksum in sorted(listed.items()):
        if relative.startswith(f"{PAYLOAD_DIR}/") or path_problems(relative):
            scan.add("malformed", TAG_MANIFEST, f"lists {relative!r}, which is not a tag file")
            continue
        found = scan.tags.get(relative)
        if found is None:
            if relative not in scan.unreadable and relative not in REQUIRED_TAG_FILES:
                scan.add("missing", relative, f"listed in {TAG_MANIFEST}, absent from the bag")
        elif found.sha256 != checksum:
            scan.add("tagmanifest", relative, f"expected sha256 {checksum}, got {found.sha256}")
    for relative in sorted(set(scan.tags) - set(listed)):
        if relative.startswith("tagmanifest-"):
            continue
        if relative in TAG_FILES or relative.startswith("manifest-"):
            scan.add("tagmanifest", relative, f"not listed in {TAG_MANIFEST}")
        else:
            scan.add("extra", relative, f"not a known tag file and not in {TAG_MANIFEST}")


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
