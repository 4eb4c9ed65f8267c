"""Findings on raw manifest data, in the manifest's own words.

pydantic's errors are reworded in TOML's terms (``year: must be a whole number, not the string
'2022'``) and located as ``files[3] (an-id).sha256``; the checks across entries (duplicate ids
and paths, a path that is both a file and a folder, the shape of each entry) run on the raw
data so that they are reported together with the field errors.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from lhymirror.core.safepath import collision_key, printable


def field_problems(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _describe_location(error["loc"], raw)
        problems.append(f"{loc}: {_describe_error(error)}")
    return problems


def _describe_error(error: Any) -> str:
    """One pydantic error in the manifest's own words (TOML types, not Python's)."""
    kind = error["type"]
    field = error["loc"][-1] if error["loc"] else ""
    value = error.get("input")
    if kind == "string_pattern_mismatch" and field in _PATTERN_HINTS:
        return f"{value!r} {_PATTERN_HINTS[field]}"
    template = _MESSAGES.get(kind)
    if template is None:
        message = str(error["msg"]).removeprefix("Value error, ")
        return message.replace("Input should be", "must be")
    quoted = isinstance(value, str) and kind in ("int_type", "bool_type", "date_type")
    unquote = " (write it without quotes)" if quoted else ""
    return template.format(value=toml_value(value), unquote=unquote, **(error.get("ctx") or {}))


_MESSAGES = {
    "extra_forbidden": "unknown key (check its spelling against the manifest format in the README)",
    "missing": "required key is missing",
    "int_type": "must be a whole number, not {value}{unquote}",
    "string_type": "must be a string in quotes, not {value}",
    "bool_type": "must be true or false, not {value}{unquote}",
    "date_type": "must be a date like 2022-06-30, not {value}{unquote}",
    "tuple_type": "must be a list in [ ], not {value}",
    "list_type": "must be a list in [ ], not {value}",
    "model_type": "must be a table, not {value}",
    "model_attributes_type": "must be a table, not {value}",
    "dict_type": "must be a table, not {value}",
    "literal_error": "must be {expected}, not {value}",
    "greater_than_equal": "must be {ge} or more, not {value}",
    "less_than_equal": "must be {le} or less, not {value}",
    "string_too_short": "must not be empty",
    "string_too_long": "is longer than {max_length} characters",
    "too_short": "must list at least one",
}

_TOML_WORDS: tuple[tuple[type | tuple[type, ...], Any], ...] = (
    (bool, lambda value: "true" if value else "false"),
    (str, lambda value: f"the string {value!r}"),
    ((int, float), str),
    (dt.datetime, lambda _: "a date with a time"),
    (dt.date, lambda _: "a date"),
    (dt.time, lambda _: "a time"),
    ((list, tuple), lambda _: "a list"),
    (dict, lambda _: "a table"),
)


def toml_value(value: Any) -> str:
    """How a TOML value reads in a message: its text for scalars, its type for the rest."""
    for kind, words in _TOML_WORDS:
        if isinstance(value, kind):
            return str(words(value))
    return type(value).__name__


_PATTERN_HINTS = {
    "sha256": "is not a sha256 (64 lowercase hex digits)",
    "id": "is not a valid id (lowercase letters, digits, '.', '_', '-')",
    "slug": "is not a valid slug (lowercase letters, digits and single '-')",
    "version": "is not a valid version (letters, digits, '.', '_', '-')",
}


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # TOML's bare keys; others are shown quoted


def _describe_location(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """Turn pydantic's ``('files', 3, 'sha256')`` into ``files[3] (an-id).sha256``."""
    text = ""
    node: Any = raw
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
            node = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                text += f" ({printable(node['id'])})"
        else:
            key = str(step) if _BARE_KEY.match(str(step)) else f'"{printable(str(step))}"'
            text += f".{key}" if text else key
            node = node.get(step) if isinstance(node, dict) else None
    return text or "manifest"


def collection_problems(raw: dict[str, Any]) -> list[str]:
    """Cross-entry and cross-field checks, run on raw data so they report with field errors."""
    files = raw.get("files")
    if not isinstance(files, list | tuple):
        return []
    entries = [(i, entry) for i, entry in enumerate(files) if isinstance(entry, dict)]
    return [
        *_duplicate_problems(entries, "id", lambda v: v),
        *_id_prefix_problems(entries),
        *_duplicate_problems(entries, "path", collision_key),
        *_file_folder_problems(entries),
        *(p for i, entry in entries for p in _entry_shape_problems(i, entry)),
    ]


def _entry_label(index: int, entry: dict[str, Any]) -> str:
    entry_id = entry.get("id")
    if isinstance(entry_id, str):
        return f"files[{index}] ({printable(entry_id)})"
    return f"files[{index}]"


def _duplicate_problems(
    entries: list[tuple[int, dict[str, Any]]], field: str, key: Any
) -> Iterator[str]:
    seen: dict[str, tuple[int, str]] = {}
    for index, entry in entries:
        value = entry.get(field)
        if not isinstance(value, str):
            continue
        first = seen.setdefault(key(value), (index, value))
        if first[0] != index:
            same = "the same" if first[1] == value else "a colliding (case or Unicode form)"
            yield (
                f"{_entry_label(index, entry)}.{field}: {value!r} is {same} {field} as "
                f"files[{first[0]}] ({first[1]!r})"
            )


def _id_prefix_problems(entries: list[tuple[int, dict[str, Any]]]) -> Iterator[str]:
    """An id may not be another id and a dot (``a`` and ``a.part00``).

    lhymirror names its own files of an entry so (``a.part00`` holds the first part of ``a``,
    ``a.race`` a second download of it), and the two entries would share those files.
    """
    ids = {entry["id"]: index for index, entry in entries if isinstance(entry.get("id"), str)}
    for index, entry in entries:
        entry_id = entry.get("id")
        if not isinstance(entry_id, str):
            continue
        for cut in (i for i, char in enumerate(entry_id) if char == "."):
            first = ids.get(entry_id[:cut])
            if first is not None:
                yield (
                    f"{_entry_label(index, entry)}.id: {entry_id!r} starts with the id of "
                    f"files[{first}] ({entry_id[:cut]!r}) and a dot, as lhymirror's own files "
                    "of that entry are named; choose another id"
                )
                break


def _file_folder_problems(entries: list[tuple[int, dict[str, Any]]]) -> Iterator[str]:
    """A path that is another entry's folder (``v`` and ``v/w.pdf``) cannot be both on disk."""
    files: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, entry in entries:
        if isinstance(entry.get("path"), str):
            files.setdefault(collision_key(entry["path"]), (index, entry))
    for index, entry in entries:
        path = entry.get("path")
        if not isinstance(path, str):
            continue
        segments = collision_key(path).split("/")
        for depth in range(1, len(segments)):
            clash = files.get("/".join(segments[:depth]))
            if clash is not None:
                other_index, other = clash
                yield (
                    f"{_entry_label(index, entry)}.path: {path!r} needs "
                    f"{'/'.join(path.split('/')[:depth])!r} to be a folder, but "
                    f"{_entry_label(other_index, other)} is a file there ({other['path']!r})"
                )
                break


def _entry_shape_problems(index: int, entry: dict[str, Any]) -> Iterator[str]:
    label = _entry_label(index, entry)
    # None is "not given" (TOML has no null; Python data may spell an absent field so).
    has_urls, has_parts = entry.get("urls") is not None, entry.get("parts") is not None
    if has_urls and has_parts:
        yield f"{label}: has both urls and parts (give exactly one)"
    elif not has_urls and not has_parts and entry.get("manual") is None:
        yield f"{label}: has no urls, parts or manual (give one)"
    yield from _wayback_problems(label, entry)
    if entry.get("insecure_http") is True:
        return
    for source in _raw_sources(entry):
        if source.lower().startswith("http://"):
            yield (
                f"{label}.urls: {source!r} is plain http; use https, or set "
                "insecure_http = true if the host offers nothing else"
            )


def _wayback_problems(label: str, entry: dict[str, Any]) -> Iterator[str]:
    """A Wayback capture is trusted only when a pinned sha256 proves its bytes."""
    raw_urls = entry.get("urls")
    urls: list[Any] = list(raw_urls) if isinstance(raw_urls, list | tuple) else []
    in_urls = any(isinstance(u, str) and u.lower().startswith("wayback:") for u in urls)
    in_parts = any(s.lower().startswith("wayback:") for s in _raw_sources(entry) if s not in urls)
    if in_parts:
        yield f"{label}.parts: wayback: sources are for whole files only (give them in urls)"
    if in_urls and entry.get("sha256") is None:
        yield (
            f"{label}.urls: a wayback: source needs the entry's sha256 (a capture is only "
            "trusted when its bytes are proven)"
        )


def _raw_sources(entry: dict[str, Any]) -> Iterable[str]:
    urls = entry.get("urls")
    if isinstance(urls, list | tuple):
        yield from (u for u in urls if isinstance(u, str))
    parts = entry.get("parts")
    if isinstance(parts, list | tuple):
        for part in parts:
            if isinstance(part, str):
                yield part
            elif isinstance(part, dict) and isinstance(part.get("urls"), list | tuple):
                yield from (u for u in part["urls"] if isinstance(u, str))
