"""``lhymirror add``: import a file downloaded by hand into the mirror, verified."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lhymirror.api import add
from lhymirror.cli.common import (
    add_command,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    selected_manifest,
    selected_store,
)


def register(subparsers: Any) -> None:
    """Add the ``add`` command."""
    parser = add_command(
        subparsers,
        "add",
        description="""
            Copy a file you downloaded yourself (a manual step, a blocked download) to its
            place in the mirror. Its size and sha256 are checked first when the manifest or an
            earlier download knows them; on a mismatch nothing is placed (exit status 5).
            The file of another entry (same sha256) is refused too (exit status 5).
            Works for any file of the manifest.
        """,
        example="""
            lhymirror add 2022 hw04-dataset ~/Downloads/Dataset.tar.gz
            lhymirror add --manifest my-course.toml hw04-dataset Dataset.tar.gz
        """,
    )
    add_manifest_arguments(parser)
    parser.add_argument("entry_id", metavar="ID", help="the file's id (see `lhymirror list`)")
    parser.add_argument("file", type=Path, metavar="FILE", help="the file you downloaded")
    add_root_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Import the file; raise ``IntegrityError`` (exit 5) when it is not the expected one."""
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    report = add(manifest, store, args.entry_id, args.file)
    note = (
        f"matches the {report.checked_against} sha256"
        if report.checked_against
        else "no checksum was known: recorded as the reference"
    )
    if not args.quiet:
        print(
            f"added {report.id}: {report.path} ({format_size(report.record.size)}, "
            f"sha256 {report.record.sha256[:12]}…, {note})"
        )
    return 0
