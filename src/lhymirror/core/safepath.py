"""Rules for relative paths that must be safe on every operating system.

Used for manifest ``path`` fields and for member names read from archives, so that nothing a
manifest or an archive says can escape its folder or collide on Windows and macOS.
"""

from __future__ import annotations

import re
import unicodedata

WINDOWS_FORBIDDEN_CHARS = frozenset('<>:"|?*')
WINDOWS_RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
    + ["COM¹", "COM²", "COM³", "LPT¹", "LPT²", "LPT³"]
)
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# lhymirror keeps its own records in this folder of a mirror (and of a download folder): no
# manifest path may use it, in any case or normalisation.
RESERVED_FOLDER = ".lhymirror"
MAX_SEGMENT_BYTES = 255  # the longest file name ext4, APFS, NTFS (in UTF-16 units) accept


def path_problems(path: str) -> list[str]:
    """Return every reason why *path* is not a safe relative POSIX path (empty when it is safe)."""
    if not path:
        return ["is empty"]
    problems: list[str] = []
    if path.startswith("/"):
        problems.append("is absolute (starts with '/')")
    if _DRIVE_LETTER.match(path):
        problems.append("starts with a Windows drive letter")
    if "\\" in path:
        problems.append("contains a backslash (use '/' between folders)")
    if _CONTROL.search(path):
        problems.append("contains a NUL or control character")
    segments = path.split("/")
    inner = segments[1:] if path.startswith("/") else segments
    for segment in inner:
        problems.extend(_segment_problems(segment))
    return _unique(problems)


def _segment_problems(segment: str) -> list[str]:
    if segment == "":
        return ["has an empty segment ('//' or a trailing '/')"]
    if segment in (".", ".."):
        return [f"contains a '{segment}' segment"]
    problems = []
    forbidden = sorted(WINDOWS_FORBIDDEN_CHARS.intersection(segment))
    if forbidden:
        problems.append(f"contains characters Windows forbids: {' '.join(forbidden)}")
    stem = segment.split(".", 1)[0].rstrip(" ").upper()
    if stem in WINDOWS_RESERVED_NAMES:
        problems.append(f"uses a name Windows reserves: {segment!r}")
    if segment[-1] in ". ":
        problems.append(f"has a segment ending in a dot or space: {segment!r}")
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        problems.append(
            f"has a name longer than {MAX_SEGMENT_BYTES} bytes (file systems refuse it)"
        )
    return problems


def printable(text: str) -> str:
    """*text* with control and other non-printing characters escaped (``\\n``, ``\\x1b``), so
    that a hostile name prints as one line and cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )


def collision_key(path: str) -> str:
    """Key under which two paths collide on case-insensitive, normalising file systems."""
    return unicodedata.normalize("NFC", path).casefold()


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def is_reserved(relative: str) -> bool:
    """True when *relative* (a POSIX path) lies in the reserved :data:`RESERVED_FOLDER`."""
    return collision_key(relative.split("/", 1)[0]) == RESERVED_FOLDER
