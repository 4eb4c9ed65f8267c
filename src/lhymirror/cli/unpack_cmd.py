"""``lhymirror unpack``: extract an archive safely, verifying every byte on the way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lhymirror.api import unpack
from lhymirror.archive.unpack import UnpackError
from lhymirror.cli.common import add_command
from lhymirror.cli.exitcodes import ExitStatus


def register(subparsers: Any) -> None:
    """Add the ``unpack`` command."""
    parser = add_command(
        subparsers,
        "unpack",
        description="""
            Extract the bag folder of an archive written by `lhymirror pack` to DEST
            (default: ./<slug>-<year>-v<version>), for people without a good unarchiver.
            Every file is checked against the bag's checksums while it is written into a
            temporary folder next to DEST; only when the whole archive is intact is the
            folder renamed to DEST. Unsafe members (.., absolute paths, links, devices,
            duplicates, bombs) are refused. Prints DEST's path on stdout. A .tar or .tar.gz
            may come from a pipe (`lhymirror unpack <(curl -sL URL) DEST`); a zip cannot.

            Exit status: 0 extracted; 5 the archive is damaged (every problem is listed and
            nothing is left at DEST); 2 DEST exists and is not an empty folder,
            or ARCHIVE does not exist, is a device or a zip from a pipe.
        """,
        example="""
            lhymirror unpack dist/lhy-ml-2022-v1.zip ~/courses/ml2022
        """,
    )
    parser.add_argument("archive", type=Path, metavar="ARCHIVE", help="the .zip/.tar/.tar.gz")
    parser.add_argument(
        "dest", nargs="?", type=Path, metavar="DEST", help="folder to create (absent or empty)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Unpack and print where."""
    try:
        target = unpack(args.archive, args.dest)
    except UnpackError as error:
        for problem in error.report.problems:
            print(f"  {problem}", file=sys.stderr)
        raise
    print(target)
    return ExitStatus.OK
