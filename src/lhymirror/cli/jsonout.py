"""The ``--json`` output: one JSON document on stdout per run, as docs/json.md describes.

Every document has ``schema`` (1), ``command``, ``exit_code`` and ``error`` (null, or the
error that decided the exit code), then the command's own fields: the ``to_json()`` of its
report. An error before there is a report gives the common fields alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lhymirror.cli.common import hint_for_this_run
from lhymirror.cli.exitcodes import ExitStatus, exit_status_for
from lhymirror.core.errors import LhymirrorError, ManifestError

if TYPE_CHECKING:
    from lhymirror.fetch.report import FileOutcome

SCHEMA = 1


def wants_json(args: argparse.Namespace) -> bool:
    """True when the command was asked for ``--json`` (or ``--json-lines``)."""
    return bool(getattr(args, "json", False) or getattr(args, "json_lines", False))


def command_name(args: argparse.Namespace) -> str:
    """The command as typed: ``sync``, ``manifest check``."""
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if action else str(args.command)


def error_json(error: LhymirrorError | None, status: int) -> dict[str, Any] | None:
    """The error as plain data (``kind`` names the exit code), or None."""
    if error is None:
        return None
    return {
        "kind": _kind(status),
        "message": error.message,
        "what": error.what,
        "where": error.where,
        "detail": error.detail,
        "hint": error.hint,
        "problems": list(error.problems) if isinstance(error, ManifestError) else [],
    }


def print_document(
    args: argparse.Namespace,
    body: dict[str, Any] | None = None,
    *,
    error: LhymirrorError | None = None,
    status: int | None = None,
) -> int:
    """Print the run's JSON document on stdout; return its exit status."""
    if status is None:
        status = exit_status_for(error) if error is not None else ExitStatus.OK
    document = {
        "schema": SCHEMA,
        "command": command_name(args),
        "exit_code": int(status),
        "error": error_json(error, status),
        **(body or {}),
    }
    lines = bool(getattr(args, "json_lines", False))  # then the document is the last line
    with _reader_may_leave():
        json.dump(
            document, sys.stdout, indent=None if lines else 2, ensure_ascii=False, default=str
        )
        sys.stdout.write("\n")
        sys.stdout.flush()
    return int(status)


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    """A document for a reader that went away (`--json | head`) is dropped, nothing more.

    The exit status (and, for an error, the one-line message on stderr) still tell what happened.
    """
    try:
        yield
    except BrokenPipeError:
        # Python's recipe: point stdout at devnull so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def finish(args: argparse.Namespace, body: dict[str, Any], error: LhymirrorError | None) -> int:
    """End a command that has a report: the JSON document with ``--json``, else raise *error*.

    *error* is the report's own verdict (``report.error()``); ``main`` prints it as one line.
    """
    if error is not None:
        hint_for_this_run(args, error)
    if wants_json(args):
        status = print_document(args, body, error=error)
        if error is not None:
            print(f"lhymirror: error: {error.message}", file=sys.stderr)
        return status
    if error is not None:
        raise error
    return ExitStatus.OK


def _kind(status: int) -> str:
    try:
        return ExitStatus(status).name.lower()
    except ValueError:
        return "error"


class JsonLines:
    """``sync --json-lines``: each event as one JSON object on its own line of stdout.

    A ``SyncEvents`` (calls come from worker threads). ``advanced`` is reported at most once
    per *interval* seconds per transfer, as ``progress`` with the bytes held so far.
    """

    def __init__(self, *, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._interval = interval
        self._clock = clock
        self._held: dict[str, int] = {}
        self._shown: dict[str, float] = {}

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, ensure_ascii=False, default=str)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def started(self, key: str, total: int | None, offset: int) -> None:
        """A transfer began."""
        with self._lock:
            self._held[key] = offset
        self._emit("started", key=key, total=total, offset=offset)

    def advanced(self, key: str, nbytes: int) -> None:
        """More bytes arrived: a ``progress`` line now and then."""
        now = self._clock()
        with self._lock:
            held = self._held[key] = self._held.get(key, 0) + nbytes
            if now - self._shown.get(key, -self._interval) < self._interval:
                return
            self._shown[key] = now
        self._emit("progress", key=key, held_bytes=held)

    def restarted(self, key: str, offset: int) -> None:
        """A transfer starts over."""
        with self._lock:
            self._held[key] = offset
        self._emit("restarted", key=key, offset=offset)

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """A source failed and is tried again."""
        self._emit("retrying", key=key, source=source, reason=reason, delay=delay)

    def file_finished(self, outcome: FileOutcome) -> None:
        """A file is done."""
        self._emit("file_finished", **outcome.to_json())

    def note(self, line: str) -> None:
        """A line worth telling."""
        self._emit("note", text=line)

    def host_down(self, host: str, reason: str) -> None:
        """A host is skipped for the rest of the run."""
        self._emit("host_down", host=host, reason=reason)
