"""The ``--json`` output: one JSON document on stdout per run, as docs/json.md describes.

Every document has ``schema`` (1), ``command``, ``exit_code`` and ``error`` (null, or the
error that decided the exit code), then the command's own fields: the ``to_json()`` of its
report. An error before there is a report gives the common fields alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lhymirror.cli.exitcodes import ExitStatus, exit_status_for
from lhymirror.core.errors import LhymirrorError, ManifestError

SCHEMA = 1


def wants_json(args: argparse.Namespace) -> bool:
    """True when the command was asked for ``--json``."""
    return bool(getattr(args, "json", False))


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
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
    return int(status)


def finish(args: argparse.Namespace, body: dict[str, Any], error: LhymirrorError | None) -> int:
    """End a command that has a report: the JSON document with ``--json``, else raise *error*.

    *error* is the report's own verdict (``report.error()``); ``main`` prints it as one line.
    """
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
