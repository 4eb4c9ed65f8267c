"""A manifest's file list read with the standard library alone, for ``verify --fast``.

Validating a whole manifest (:func:`~lhymirror.manifest.model.parse_manifest`) needs pydantic,
whose import and model building cost more than the rest of a fast verify. A fast verify needs
only each file's path, size and sha256; :func:`peek_files` reads those and gives up (None) on
anything not shaped as a valid manifest would be, so that the caller can validate in full and
say what is wrong.
"""

from __future__ import annotations

import re
import tomllib

from lhymirror.core.safepath import path_problems

_SHA256 = re.compile(r"[0-9a-f]{64}")


def peek_files(text: str) -> dict[str, tuple[int | None, str | None]] | None:
    """``path -> (size, sha256)`` of every ``[[files]]`` entry of manifest TOML *text*.

    None when the text is no TOML, has no list of file tables, or an entry has a missing,
    unsafe or repeated path, a size that is not a non-negative integer or a malformed sha256.
    The rest of the manifest (schema, sources, titles) is not looked at.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    files = raw.get("files")
    if not isinstance(files, list):
        return None
    found: dict[str, tuple[int | None, str | None]] = {}
    for entry in files:
        fields = _fields(entry)
        if fields is None or fields[0] in found:
            return None
        found[fields[0]] = fields[1:]
    return found


def _fields(entry: object) -> tuple[str, int | None, str | None] | None:
    """``(path, size, sha256)`` of one file table, or None when one of them is malformed."""
    if not isinstance(entry, dict):
        return None
    path, size, sha256 = entry.get("path"), entry.get("size"), entry.get("sha256")
    if not isinstance(path, str) or not path or path_problems(path):
        return None
    if size is not None and (type(size) is not int or size < 0):
        return None
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        return None
    return path, size, sha256
