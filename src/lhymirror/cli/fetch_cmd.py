"""``lhymirror fetch``: download an archive over BitTorrent (peers and web seeds), verified."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lhymirror import api
from lhymirror.cli.common import ByteProgress, add_command
from lhymirror.cli.swarm_options import add_session_arguments, session_options
from lhymirror.swarm.leech import DEFAULT_WAIT


def register(subparsers: Any) -> None:
    """Add the ``fetch`` command."""
    parser = add_command(
        subparsers,
        "fetch",
        description="""
            Download the archive a torrent holds (a .torrent written by `lhymirror pack
            --torrent`, or a magnet link) from BitTorrent peers and the torrent's web seeds
            into OUT. The archive is verified like `lhymirror verify` does before it appears
            in OUT; the .torrent is kept beside it, so `lhymirror seed` can share it on.
            Interrupted downloads resume (kept under OUT/.lhymirror/swarm/). Prints the
            archive's path. Needs the swarm extra: pip install 'lhymirror[swarm]'.

            Exit status: 0 fetched and verified, 4 the swarm stopped delivering (run again
            to resume), 5 the archive is damaged (nothing placed).
        """,
        example="""
            lhymirror fetch lhy-ml-2022-v1.zip.torrent --out ~/Downloads
        """,
    )
    parser.add_argument("torrent", metavar="TORRENT", help="a .torrent file or a magnet link")
    parser.add_argument(
        "--out", type=Path, default=Path(), metavar="DIR",
        help="folder for the archive (default: the current folder)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
        help=f"give up when nothing arrived for this long (default {DEFAULT_WAIT:.0f})",
    )  # fmt: skip
    add_session_arguments(parser, port=None)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Fetch, verify, place; print the archive's path."""
    api.require_swarm()
    with ByteProgress(quiet=args.quiet) as progress:
        archive = api.fetch_torrent(
            args.torrent,
            args.out,
            options=session_options(args),
            peers=args.peers,
            wait=args.wait,
            events=progress,
        )
    if not args.quiet:
        print(f"{archive.name}: fetched and verified", file=sys.stderr)
    print(archive)
    return 0
