"""The ``--json`` contract of docs/json.md, as data, and a small checker for it.

A schema is a Python type (``int`` never accepts a bool), a tuple of alternatives, a
``frozenset`` of allowed strings, a one-element list (a list of that), or a dict (an object
with exactly these keys). Every key of every document must also be snake_case.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from lhymirror.cli.exitcodes import ExitStatus
from lhymirror.fetch.check import STATUSES
from lhymirror.fetch.plan import Action
from lhymirror.fetch.report import Failure, Outcome
from lhymirror.fetch.transfer import FailureCause
from lhymirror.mirror.state import FileStatus, Origin, ProblemKind
from lhymirror.mirror.status import NextStep

Schema = Any
NULL = type(None)
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def words(literal: Any) -> frozenset[str]:
    """The values of a Literal type as the JSON writes them (snake_case)."""
    return frozenset(value.replace("-", "_") for value in get_args(literal))


def counts_of(literal: Any) -> dict[str, Schema]:
    return dict.fromkeys(words(literal), int)


ERROR: Schema = {
    "kind": frozenset(name.lower() for name in ExitStatus.__members__ if name != "OK"),
    "message": str,
    "what": str,
    "where": (str, NULL),
    "detail": (str, NULL),
    "hint": (str, NULL),
    "problems": [str],
}
COMMON: Schema = {
    "schema": frozenset({1}),
    "command": str,
    "exit_code": int,
    "error": (ERROR, NULL),
}
FILE_PROBLEM: Schema = {
    "kind": words(ProblemKind),
    "expected": (int, str, NULL),
    "actual": (int, str, NULL),
    "origin": (words(Origin), NULL),
    "text": str,
}
PART: Schema = {"urls": [str], "size": (int, NULL), "sha256": (str, NULL)}
CHECKSUM_ORIGIN: Schema = (words(Origin), NULL)

BODIES: dict[str, Schema] = {
    "list": {
        "course": str,
        "slug": str,
        "year": int,
        "version": str,
        "files": [
            {
                "id": str,
                "kind": str,
                "title": (str, NULL),
                "section": (str, NULL),
                "path": str,
                "urls": ([str], NULL),
                "parts": ([PART], NULL),
                "size": (int, NULL),
                "sha256": (str, NULL),
                "manual": (str, NULL),
                "insecure_http": bool,
                "note": (str, NULL),
                "source_kinds": [str],
            }
        ],
        "links": [
            {
                "kind": str,
                "title": (str, NULL),
                "section": (str, NULL),
                "url": str,
                "note": (str, NULL),
            }
        ],
    },
    "sync --dry-run": {
        "dry_run": frozenset({True}),
        "year": int,
        "root": str,
        "offline": bool,
        "counts": counts_of(Action),
        "bytes_to_fetch": int,
        "bytes_still_needed": int,
        "files": [
            {
                "id": str,
                "path": str,
                "kind": str,
                "state": words(Action),
                "reason": str,
                "size": (int, NULL),
                "sha256": (str, NULL),
                "checksum_origin": CHECKSUM_ORIGIN,
                "held_bytes": int,
                "sources": [str],
                "parts": [
                    {"key": str, "size": (int, NULL), "sha256": (str, NULL), "sources": [str]}
                ],
                "accept_upstream": bool,
                "needs_network": [str],
                "problem": (FILE_PROBLEM, NULL),
            }
        ],
    },
    "sync": {
        "dry_run": frozenset({False}),
        "year": int,
        "root": str,
        "offline": bool,
        "complete": bool,
        "counts": counts_of(Outcome),
        "bytes_received": int,
        "files": [
            {
                "id": str,
                "path": str,
                "state": words(Outcome),
                "size": (int, NULL),
                "sha256": (str, NULL),
                "source": (str, NULL),
                "bytes_received": int,
                "reason": (str, NULL),
                "failure": (words(Failure), NULL),
                "cause": (words(FailureCause), NULL),
                "problem": (FILE_PROBLEM, NULL),
            }
        ],
        "hosts_down": [{"host": str, "reason": str, "files": int}],
        "no_network": bool,
    },
    "status": {
        "year": int,
        "root": str,
        "complete": bool,
        "counts": counts_of(FileStatus),
        "bytes_present": int,
        "bytes_to_fetch": int,
        "unknown_sizes": int,
        "next_step": (words(NextStep), NULL),
        "files": [
            {
                "id": str,
                "path": str,
                "kind": str,
                "section": (str, NULL),
                "state": words(FileStatus),
                "detail": (str, NULL),
                "size": (int, NULL),
                "expected_size": (int, NULL),
                "expected_sha256": (str, NULL),
                "checksum_origin": CHECKSUM_ORIGIN,
                "bytes_to_fetch": (int, NULL),
                "problem": (FILE_PROBLEM, NULL),
            }
        ],
    },
    "verify": {
        "target": str,
        "bag": (str, NULL),
        "ok": bool,
        "fast": bool,
        "files_checked": int,
        "bytes_checked": int,
        "problems": [{"kind": str, "path": str, "detail": str}],
        "notes": [str],
    },
    "check": {
        "year": int,
        "counts": dict.fromkeys(STATUSES, int),
        "sources": [
            {
                "id": str,
                "part": (int, NULL),
                "source": str,
                "state": frozenset(STATUSES),
                "detail": (str, NULL),
                "size": (int, NULL),
                "etag": (str, NULL),
                "last_modified": (str, NULL),
                "location": (str, NULL),
            }
        ],
    },
}


def schema_for(document: dict[str, Any]) -> Schema:
    """The schema a document must follow: the common fields, plus its command's unless it is
    an error that came before any report (then the common fields alone)."""
    name = document.get("command")
    if name == "sync" and document.get("dry_run") is True:
        name = "sync --dry-run"
    body = BODIES.get(str(name), {})
    if document.get("error") is not None and not set(document) - set(COMMON):
        body = {}
    return {**COMMON, **body}


def problems(value: Any, schema: Schema, where: str = "$") -> list[str]:
    """Every way *value* departs from *schema*, one line each (empty when it follows it)."""
    if isinstance(schema, tuple):
        return _any_of(value, schema, where)
    if isinstance(schema, frozenset):
        return _one_of(value, schema, where)
    if isinstance(schema, list):
        return _list_of(value, schema[0], where)
    if isinstance(schema, dict):
        return _object(value, schema, where)
    return _scalar(value, schema, where)


def _any_of(value: Any, options: tuple[Schema, ...], where: str) -> list[str]:
    found = [problems(value, option, where) for option in options]
    if any(not p for p in found):
        return []
    return [f"{where}: matches none of {len(options)} alternatives: {found[0][0]}"]


def _one_of(value: Any, allowed: frozenset[Any], where: str) -> list[str]:
    if any(type(item) is type(value) and item == value for item in allowed):
        return []
    return [f"{where}: {value!r} is not one of {sorted(map(str, allowed))}"]


def _list_of(value: Any, item: Schema, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: expected a list, got {type(value).__name__}"]
    return [p for i, element in enumerate(value) for p in problems(element, item, f"{where}[{i}]")]


def _object(value: Any, schema: dict[str, Schema], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {type(value).__name__}"]
    found = [f"{where}: key {key!r} is not snake_case" for key in value if not SNAKE.match(key)]
    found += [f"{where}: missing key {key!r}" for key in schema if key not in value]
    found += [f"{where}: undocumented key {key!r}" for key in value if key not in schema]
    for key, sub in schema.items():
        if key in value:
            found += problems(value[key], sub, f"{where}.{key}")
    return found


def _scalar(value: Any, kind: type, where: str) -> list[str]:
    if kind is int and isinstance(value, bool):
        return [f"{where}: expected int, got bool"]
    if isinstance(value, kind):
        return []
    return [f"{where}: expected {kind.__name__}, got {type(value).__name__}"]


EVENTS: dict[str, Schema] = {
    "started": {"event": str, "key": str, "total": (int, NULL), "offset": int},
    "progress": {"event": str, "key": str, "held_bytes": int},
    "restarted": {"event": str, "key": str, "offset": int},
    "retrying": {"event": str, "key": str, "source": str, "reason": str, "delay": (int, float)},
    "host_down": {"event": str, "host": str, "reason": str},
    "note": {"event": str, "text": str},
    "file_finished": {"event": str, **BODIES["sync"]["files"][0]},
}
