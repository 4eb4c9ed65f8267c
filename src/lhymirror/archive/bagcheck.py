"""What a pass over a bag found, and the bag's rules (RFC 8493 and lhymirror's additions).

A pass over an archive or a bag folder (:mod:`lhymirror.archive.scan`) records each bag file's
size and sha256 in a :class:`BagScan`; :func:`check_bag` then compares them with the bag's own
declarations (``manifest-sha256.txt``, ``tagmanifest-sha256.txt``, ``Payload-Oxum``, the
embedded ``lhymirror.toml``) and adds a :class:`Problem` to the :class:`VerifyReport` for every
mismatch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

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
)
from lhymirror.core.errors import IntegrityError, LhymirrorError
from lhymirror.core.fsutil import CHUNK_SIZE, ThreadedDigest, read_buffer
from lhymirror.core.safepath import path_problems, printable
from lhymirror.core.streams import Reads
from lhymirror.core.units import count_of
from lhymirror.manifest.peek import peek_files

REQUIRED_TAG_FILES = ("bagit.txt", "bag-info.txt", PAYLOAD_MANIFEST, TAG_MANIFEST)
PARSED_TAG_FILES = frozenset({*REQUIRED_TAG_FILES, "lhymirror.toml"})
MAX_TAG_FILE_SIZE = 16 * 1024 * 1024
SUPPORTED_BAGIT_VERSIONS = ("0.97", "1.0")

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Problem:
    """One finding: what is wrong (``kind``), where (``path``) and the specifics (``detail``).

    Kinds: missing, extra, size, checksum, unsafe, malformed, truncated (the archive ends early;
    nothing after it was read), oxum, tagmanifest, sidecar; for a mirror file also unverified
    (no checksum known yet), symlink, not_a_file and unreadable (see
    :mod:`lhymirror.mirror.state`).
    """

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        # Paths come from the archive: a hostile name must still print as one line.
        return f"{self.kind}: {printable(self.path)}: {printable(self.detail)}"


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
    mirror_year: int | None = None  # set when this is a check of the local mirror of that year

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def add(self, kind: str, path: str, detail: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(kind, path, detail))

    def error(self) -> IntegrityError | None:
        """The error that sums up a failed verification (with how to repair), or None."""
        if self.ok:
            return None
        hint = "Fetch the archive again or re-pack it from a good mirror."
        if self.mirror_year is not None:
            hint = (
                f"`lhymirror sync {self.mirror_year} --rehash` fetches missing and damaged "
                "files again (`lhymirror add` imports manual ones)."
            )
        problems = count_of(len(self.problems), "problem")
        return IntegrityError("not intact", where=self.target, detail=problems, hint=hint)

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


# ---------------------------------------------------------------------------------------------
# What was found, whatever the container


@dataclass
class Found:
    """One bag file as read: its size and sha256 (None when not hashed or unreadable)."""

    size: int
    sha256: str | None  # None when not hashed (fast) or unreadable


@dataclass
class BagScan:
    """What a pass over a bag found: payload and tag files by path relative to the bag."""

    report: VerifyReport
    top: str | None  # the bag's top folder, as the paths in problems show it
    payload: dict[str, Found] = field(default_factory=dict)
    tags: dict[str, Found] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)  # present but not readable: reported
    on_disk: bool = False  # an extracted folder (where the OS may have added its clutter)
    complete: bool = True  # False when the archive could not be read to its end

    def display(self, relative: str) -> str:
        """*relative* as problems show it: under the bag's top folder when it is known."""
        return f"{self.top}/{relative}" if self.top else relative

    def add(self, kind: str, relative: str, detail: str) -> None:
        """Record a problem about the bag file *relative*."""
        self.report.add(kind, self.display(relative), detail)

    def record(self, relative: str, found: Found, text: bytes | None) -> None:
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


def digest(
    stream: Reads,
    *,
    keep: int = 0,
    sink: BinaryIO | None = None,
    progress: ProgressCallback | None = None,
    threaded: bool = True,
) -> tuple[int, str, bytes | None]:
    """Read *stream* to its end in chunks: size, sha256 and, up to *keep* bytes, the content.

    The content is None when *keep* is 0 or the stream is longer than *keep*. With *threaded*,
    hashing overlaps with reading the next chunk; without, a stream that can ``readinto`` is
    read into one reused buffer (the helper thread needs bytes that stay as they are).
    """
    digest: Any = ThreadedDigest() if threaded else hashlib.sha256()
    readinto = None if threaded else getattr(stream, "readinto", None)
    try:
        size = 0
        kept: bytearray | None = bytearray() if keep else None
        for chunk in _chunks(stream, readinto):
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


def _chunks(
    stream: Reads, readinto: Callable[[memoryview], int | None] | None
) -> Iterator[bytes | memoryview]:
    """The stream's bytes in chunks; with *readinto*, views of one buffer each reused next."""
    if readinto is None:
        while chunk := stream.read(CHUNK_SIZE):
            yield chunk
        return
    with read_buffer() as view:
        while n := readinto(view):
            yield view[:n]


def keep_limit(relative: str) -> int:
    """How many bytes of *relative* to keep for parsing (0: a file that is only hashed)."""
    return MAX_TAG_FILE_SIZE if relative in PARSED_TAG_FILES else 0


# ---------------------------------------------------------------------------------------------
# The bag's own rules (RFC 8493) and lhymirror's additions


def check_bag(scan: BagScan, *, fast: bool) -> None:
    """Compare what was found with the bag's declarations; add a problem for every mismatch."""
    scan.report.bag = scan.top
    if not scan.complete:
        # What was not read is neither missing nor proof that what was read is extra: the one
        # problem that stopped the reading says it all. What was read is still checked.
        scan.report.notes.append("the archive could not be read to its end: later files unchecked")
    elif scan.top is None and not scan.payload and not scan.tags:
        scan.report.add("malformed", scan.report.target, "holds no bag (no files at all)")
        return
    for name in REQUIRED_TAG_FILES:
        if name not in scan.tags and name not in scan.unreadable and scan.complete:
            scan.add("missing", name, "required BagIt tag file is absent")
    _check_declaration(scan)
    expected = _parse_tag(scan, PAYLOAD_MANIFEST, parse_checksum_manifest)
    _set_aside_clutter(scan, expected or {})
    sizes = _declared_sizes(scan, expected or {}, fast=fast)
    _check_payload(scan, expected, sizes, fast=fast)
    bag_info = _parse_tag(scan, "bag-info.txt", parse_bag_info) or []
    if scan.complete:
        _check_oxum(scan, bag_info)
    _note_partial(scan, bag_info)
    _check_tag_manifest(scan)
    if fast:
        scan.report.notes.append("fast: payload counts and sizes only; checksums not checked")


def _parse_tag(scan: BagScan, name: str, parser: Callable[..., Any]) -> Any:
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


def _check_declaration(scan: BagScan) -> None:
    fields = _parse_tag(scan, "bagit.txt", parse_bag_info)
    if fields is None:
        return
    versions = bag_info_values(fields, "BagIt-Version")
    encodings = bag_info_values(fields, "Tag-File-Character-Encoding")
    if len(versions) != 1 or versions[0] not in SUPPORTED_BAGIT_VERSIONS:
        scan.add("malformed", "bagit.txt", f"unsupported BagIt-Version {versions}")
    if len(encodings) != 1 or encodings[0].upper().replace("-", "") != "UTF8":
        scan.add("malformed", "bagit.txt", f"tag file encoding must be UTF-8, not {encodings}")


def _declared_sizes(scan: BagScan, expected: dict[str, str], *, fast: bool) -> dict[str, int]:
    """Payload sizes from the embedded ``lhymirror.toml``; its checksums must agree too.

    *fast* reads only its file list (:func:`~lhymirror.manifest.peek.peek_files`) unless that
    finds it malformed; otherwise the whole manifest is validated.
    """
    text = scan.texts.get("lhymirror.toml")
    if text is None:
        return {}
    files = peek_files(text) if fast else None
    if files is None:
        from lhymirror.manifest.model import parse_manifest  # noqa: PLC0415 (may import pydantic)

        try:
            manifest = parse_manifest(text, where=scan.display("lhymirror.toml"))
        except LhymirrorError as error:
            scan.add("malformed", "lhymirror.toml", error.message)
            return {}
        files = {entry.path: (entry.size, entry.sha256) for entry in manifest.files}
    sizes: dict[str, int] = {}
    for path, (size, sha256) in files.items():
        relative = f"{PAYLOAD_DIR}/{path}"
        if size is not None:
            sizes[relative] = size
        listed = expected.get(relative)
        if listed is not None and sha256 is not None and listed != sha256:
            scan.add(
                "checksum",
                relative,
                f"lhymirror.toml says sha256 {sha256}, {PAYLOAD_MANIFEST} says {listed}",
            )
    return sizes


def _check_payload(
    scan: BagScan, expected: dict[str, str] | None, sizes: dict[str, int], *, fast: bool
) -> None:
    if expected is None and not scan.complete:
        return  # the payload manifest was not read: nothing to compare the payload with
    expected = expected or {}
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
            if scan.complete:
                scan.add("missing", relative, f"listed in {PAYLOAD_MANIFEST}, absent from the bag")
        elif relative in sizes and found.size != sizes[relative]:
            scan.add("size", relative, f"expected {sizes[relative]} bytes, found {found.size}")
        elif not fast and found.sha256 != checksum:
            scan.add("checksum", relative, f"expected sha256 {checksum}, got {found.sha256}")
    for relative in sorted(set(scan.payload) - set(expected)):
        scan.add("extra", relative, f"not listed in {PAYLOAD_MANIFEST}")


# Files an operating system writes into any folder it shows (macOS Finder, Windows Explorer):
# in an extracted bag they are not damage, so they are noted, unless the bag lists them.
OS_CLUTTER = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_CLUTTER_NOTE = "{} ignored: a file the operating system adds to folders, not part of the bag"


def _is_clutter(relative: str) -> bool:
    return relative.rsplit("/", 1)[-1].casefold() in OS_CLUTTER


def _set_aside_clutter(scan: BagScan, expected: dict[str, str]) -> None:
    """Take unlisted OS clutter out of an extracted bag's payload (it counts for nothing)."""
    if not scan.on_disk:
        return
    for relative in sorted(scan.payload):
        if relative not in expected and _is_clutter(relative):
            found = scan.payload.pop(relative)
            scan.report.files_checked -= 1
            scan.report.bytes_checked -= found.size
            scan.report.notes.append(_CLUTTER_NOTE.format(scan.display(relative)))


def _note_partial(scan: BagScan, bag_info: list[tuple[str, str]]) -> None:
    missing = bag_info_values(bag_info, MISSING_FILE_LABEL)
    if missing:
        scan.report.notes.append(
            f"partial bag: {len(missing)} course files were missing when it was packed "
            f"({MISSING_FILE_LABEL} in bag-info.txt)"
        )


def _check_oxum(scan: BagScan, bag_info: list[tuple[str, str]]) -> None:
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
            f"Payload-Oxum declares {declared_bytes} bytes in {count_of(declared_count, 'file')}, "
            f"the bag holds {actual_bytes} bytes in {count_of(actual_count, 'file')}",
        )


def _check_tag_manifest(scan: BagScan) -> None:
    listed = _parse_tag(scan, TAG_MANIFEST, parse_checksum_manifest)
    if listed is None:
        return
    for relative, checksum in sorted(listed.items()):
        if relative.startswith(f"{PAYLOAD_DIR}/") or path_problems(relative):
            scan.add("malformed", TAG_MANIFEST, f"lists {relative!r}, which is not a tag file")
            continue
        found = scan.tags.get(relative)
        if found is None:
            unchecked = relative in scan.unreadable or not scan.complete
            if not unchecked and relative not in REQUIRED_TAG_FILES:
                scan.add("missing", relative, f"listed in {TAG_MANIFEST}, absent from the bag")
        elif found.sha256 != checksum:
            scan.add("tagmanifest", relative, f"expected sha256 {checksum}, got {found.sha256}")
    for relative in sorted(set(scan.tags) - set(listed)):
        if relative.startswith("tagmanifest-"):
            continue
        if scan.on_disk and _is_clutter(relative):
            scan.report.notes.append(_CLUTTER_NOTE.format(scan.display(relative)))
            continue
        if relative in TAG_FILES or relative.startswith("manifest-"):
            scan.add("tagmanifest", relative, f"not listed in {TAG_MANIFEST}")
        else:
            scan.add("extra", relative, f"not a known tag file and not in {TAG_MANIFEST}")
