"""``lhymirror torrent``: a multi-file torrent of a year's mirror, for sharing with a class."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lhymirror import api
from lhymirror.cli.common import (
    ByteProgress,
    add_command,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    selected_manifest,
    selected_store,
)
from lhymirror.core.units import count_of


def register(subparsers: Any) -> None:
    """Add the ``torrent`` command."""
    parser = add_command(
        subparsers,
        "torrent",
        description="""
            Write a BitTorrent file (hybrid v1+v2) holding every verified file of a year's
            mirror as <year>/<path>, and print its magnet link. Classmates download it with
            `lhymirror sync YEAR --swarm FILE.torrent`; anyone with the files shares them with
            `lhymirror seed --year YEAR`. Identical files have identical v2 file roots, so a
            mirror that grows still shares what it had.

            Each --web-seed BASE is an HTTP copy shaped like `sync --from` (BASE/<year>/<path>),
            for example a classmate's `python -m http.server -d mirror`: the torrent then
            works with no peer at all. The same files and options give the same bytes.
            Needs the swarm extra: pip install 'lhymirror[swarm]'.
        """,
        example="""
            lhymirror torrent 2022 --web-seed http://10.0.0.5:8000/
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser)
    parser.add_argument(
        "--out", type=Path, metavar="FILE",
        help="where to write the torrent (default: ./<slug>-<year>-mirror.torrent)",
    )  # fmt: skip
    parser.add_argument(
        "--web-seed", dest="web_seeds", action="append", default=[], metavar="BASE",
        help="an HTTP(S) base serving BASE/<year>/<path> (repeatable)",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Make the torrent, write it, print its magnet link."""
    api.require_swarm()
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    with ByteProgress(quiet=args.quiet) as progress:
        written = api.torrent_mirror(
            manifest, store, args.out, web_seeds=args.web_seeds, events=progress
        )
    if not args.quiet:
        torrent = written.torrent
        missing = f"; {written.left_out} not verified here, left out" if written.left_out else ""
        print(
            f"{written.path}: {count_of(len(torrent.files), 'file')}, "
            f"{format_size(torrent.total_size)}{missing}",
            file=sys.stderr,
        )
    print(written.magnet)
    return 0
