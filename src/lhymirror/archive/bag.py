"""BagIt (RFC 8493) tag files as plain text: formatting and strict parsing.

Pure string functions shared by ``pack`` (which writes bags) and ``verify``/``unpack`` (which read
them). Nothing here touches the disk. Parsers never trust their input: any malformed line raises
:class:`~lhymirror.core.errors.IntegrityError` naming the file (``where``) and the line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lhymirror.core.errors import IntegrityError

if TYPE_CHECKING:
    from lhymirror.manifest.model import Manifest

BAG_DECLARATION = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
PAYLOAD_DIR = "data"
PAYLOAD_MANIFEST = "manifest-sha256.txt"
TAG_MANIFEST = "tagmanifest-sha256.txt"
MISSING_FILE_LABEL = "Missing-File"  # bag-info.txt label `pack --partial` writes per missing file
TAG_FILES = (
    "bagit.txt",
    "bag-info.txt",
    PAYLOAD_MANIFEST,
    TAG_MANIFEST,
    "lhymirror.toml",
    "index.html",
)

_ENCODE = {"%": "%25", "\r": "%0D", "\n": "%0A"}
_ENCODED = re.compile(r"%(25|0[dD]|0[aA])")
_DECODE = {"25": "%", "0D": "\r", "0A": "\n"}
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_MANIFEST_LINE = re.compile(r"^(?P<sum>\S+)[ \t]+(?P<path>.+)$")
_OXUM = re.compile(r"^(?P<bytes>[0-9]{1,20})\.(?P<count>[0-9]{1,20})$")


def encode_bag_path(path: str) -> str:
    """Percent-encode ``%``, CR and LF in a path, as RFC 8493 §2.1.3 requires (and only those)."""
    return "".join(_ENCODE.get(ch, ch) for ch in path)


def decode_bag_path(text: str) -> str:
    """Undo :func:`encode_bag_path`; other ``%xx`` sequences are left as they are."""
    return _ENCODED.sub(lambda m: _DECODE[m.group(1).upper()], text)


def format_checksum_manifest(entries: Iterable[tuple[str, str]]) -> str:
    """``<sha256>  <path>`` lines sorted by path: a valid BagIt manifest and ``sha256sum -c`` input.

    The two-space separator is what ``sha256sum`` writes; BagIt accepts any run of blanks.
    (A path containing ``%`` is percent-encoded for BagIt and so would not match for
    ``sha256sum``; manifest paths with ``%`` are rare and still valid BagIt.)
    """
    rows = sorted(entries, key=lambda row: row[0])
    return "".join(f"{sha256.lower()}  {encode_bag_path(path)}\n" for path, sha256 in rows)


def parse_checksum_manifest(text: str, *, where: str) -> dict[str, str]:
    """Map each (decoded) path to its lowercase sha256; refuse malformed or duplicate lines."""
    found: dict[str, str] = {}
    for number, line in _numbered_lines(text):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.match(line)
        if match is None or not _SHA256.match(match["sum"]):
            raise _malformed(where, number, "expected '<sha256> <path>'", line)
        path = decode_bag_path(match["path"])
        if path in found:
            raise _malformed(where, number, f"{path!r} is listed twice", line)
        found[path] = match["sum"].lower()
    return found


def format_bag_info(fields: Sequence[tuple[str, str]]) -> str:
    """``Label: value`` lines in the given order (labels may repeat, as RFC 8493 allows)."""
    lines = []
    for label, value in fields:
        if not label or ":" in label or label != label.strip() or _has_line_break(label):
            raise ValueError(f"invalid bag-info label {label!r}")
        lines.append(f"{label}: {' '.join(value.split())}\n")
    return "".join(lines)


def parse_bag_info(text: str, *, where: str) -> list[tuple[str, str]]:
    """``(label, value)`` pairs in file order; folded continuation lines are joined by a space."""
    fields: list[tuple[str, str]] = []
    for number, line in _numbered_lines(text):
        if not line.strip():
            continue
        if line[0] in " \t":
            if not fields:
                raise _malformed(where, number, "continuation line before any label", line)
            label, value = fields[-1]
            fields[-1] = (label, f"{value} {line.strip()}".strip())
            continue
        label, colon, value = line.partition(":")
        if not colon or not label.strip():
            raise _malformed(where, number, "expected 'Label: value'", line)
        fields.append((label.strip(), value.strip()))
    return fields


def bag_info_values(fields: Sequence[tuple[str, str]], label: str) -> list[str]:
    """Every value of *label* (case-insensitive, as labels are) in file order."""
    wanted = label.casefold()
    return [value for name, value in fields if name.casefold() == wanted]


def payload_oxum(total_bytes: int, count: int) -> str:
    """The ``Payload-Oxum`` value: ``<octet count>.<stream count>``."""
    if total_bytes < 0 or count < 0:
        raise ValueError("Payload-Oxum counts cannot be negative")
    return f"{total_bytes}.{count}"


def parse_payload_oxum(value: str, *, where: str = "Payload-Oxum") -> tuple[int, int]:
    """``(total bytes, file count)`` from a ``Payload-Oxum`` value."""
    match = _OXUM.match(value.strip())
    if match is None:
        raise IntegrityError(
            "malformed Payload-Oxum",
            where=where,
            detail=f"expected '<bytes>.<count>', got {value[:80]!r}",
            hint="The bag's bag-info.txt is damaged.",
        )
    return int(match["bytes"]), int(match["count"])


def bag_folder_name(manifest: Manifest) -> str:
    """The bag's top folder (and archive stem): ``<slug>-<year>-v<version>``."""
    return f"{manifest.effective_slug}-{manifest.year}-v{manifest.version}"


def _numbered_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with their 1-based numbers; LF, CRLF and CR endings all accepted (RFC 8493 §2)."""
    text = text.removeprefix("\ufeff")
    return enumerate(re.split(r"\r\n|\r|\n", text.removesuffix("\n")), start=1)


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text


def _malformed(where: str, number: int, detail: str, line: str) -> IntegrityError:
    return IntegrityError(
        "malformed tag file",
        where=f"{where} line {number}",
        detail=f"{detail}: {line[:120]!r}",
        hint="The bag is damaged or was not written by a BagIt tool.",
    )


# The archive's own checksum file, beside it: ``<archive>.sha256`` in ``sha256sum`` format.


def sidecar_path(archive: Path) -> Path:
    """Where the checksum file of *archive* lives."""
    return archive.with_name(archive.name + ".sha256")


def format_sidecar(sha256: str, archive_name: str) -> str:
    """The sidecar's text: one ``sha256sum`` line."""
    return f"{sha256}  {archive_name}\n"


def parse_sidecar(text: str, archive_name: str) -> str | None:
    """The sha256 a ``sha256sum``-format text gives for *archive_name*, or None."""
    for line in text.splitlines():
        checksum, _, listed = line.strip().partition(" ")
        listed = listed.lstrip(" ").removeprefix("*")
        if listed.rsplit("/", 1)[-1] == archive_name and len(checksum) == 64:
            return checksum.lower()
    return None
