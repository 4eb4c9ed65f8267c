"""``lhymirror pack``: a year's mirror as one reproducible, verified BagIt archive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lhymirror import api
from lhymirror.api import pack
from lhymirror.archive.pack import IncompleteMirrorError, PackResult
from lhymirror.archive.write import FORMATS
from lhymirror.cli.common import (
    ByteProgress,
    add_command,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    selected_manifest,
    selected_store,
)
from lhymirror.core.errors import UsageError
from lhymirror.core.units import count_of
from lhymirror.manifest.model import Manifest

DEFAULT_OUT = Path("dist")


def register(subparsers: Any) -> None:
    """Add the ``pack`` command."""
    parser = add_command(
        subparsers,
        "pack",
        description="""
            Pack every file of a year's manifest from the local mirror into
            OUT/<slug>-<year>-v<version>.zip (or .tar, .tar.gz), laid out as a BagIt bag with
            an offline index.html, and write <archive>.sha256 next to it. Every byte is checked
            against its sha256 while it is packed. Packing the same files again gives the same
            bytes. Prints the archive's path on stdout.

            Refuses (exit 5) when a file is missing or damaged, listing them all, unless
            --partial, which packs the rest as OUT/<slug>-<year>-v<version>-partial.zip (the
            complete archive keeps the version's own name); refuses to replace an existing
            complete archive of the same version with different content unless --force.
            Works offline.

            --torrent also writes <archive>.torrent (hybrid BitTorrent v1+v2, reproducible)
            and prints its magnet link; each --web-seed URL where the archive can be
            downloaded over HTTP lets the torrent work with no peer at all. Needs the swarm
            extra: pip install 'lhymirror[swarm]'.
        """,
        example="""
            lhymirror pack 2022 --root ~/lhy-mirror --out ~/usb
            lhymirror pack 2022 --format tar.gz --partial
            lhymirror pack 2022 --torrent --web-seed https://example.org/lhy-ml-2022-v1.zip
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder for the archive (default: ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default="zip",
        help=(
            "archive format (default: zip, which opens natively everywhere; its members are "
            "stored, the same bytes on every platform; tar.gz compresses)"
        ),
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="pack what is verified; record missing files in bag-info.txt and index.html",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing archive of this version even if its content differs",
    )
    parser.add_argument(
        "--torrent",
        action="store_true",
        help="also write <archive>.torrent and print its magnet link (swarm extra)",
    )
    parser.add_argument(
        "--web-seed", dest="web_seeds", action="append", default=[], metavar="URL",
        help="an HTTP(S) URL of the archive (or of its folder, ending in /) for the torrent "
        "(repeatable)",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Pack the year and print the archive's path (and the torrent's magnet link)."""
    if args.web_seeds and not args.torrent:
        raise UsageError("--web-seed needs --torrent", hint="Add --torrent.")
    if args.torrent:
        api.require_swarm()  # before packing: a missing extra should not cost a whole pack first
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    with ByteProgress(quiet=args.quiet) as progress:
        try:
            result = pack(
                manifest,
                store,
                args.out,
                fmt=args.fmt,
                partial=args.partial,
                force=args.force,
                events=progress,
            )
        except IncompleteMirrorError as error:
            for item in error.missing:
                print(f"  {item.kind}: {item.describe()}", file=sys.stderr)
            raise
    if not args.quiet:
        print_summary(result)
    print(result.archive)
    if args.torrent:
        write_archive_torrent(args, manifest, result.archive)
    return 0


def write_archive_torrent(args: argparse.Namespace, manifest: Manifest, archive: Path) -> None:
    """Write ``<archive>.torrent`` beside the archive and print its magnet link."""
    with ByteProgress(quiet=args.quiet) as progress:
        written = api.torrent_archive(archive, manifest, web_seeds=args.web_seeds, events=progress)
    if not args.quiet:
        seeds = f", {len(args.web_seeds)} web seed(s)" if args.web_seeds else ""
        print(
            f"{written.path.name}: written "
            f"({format_size(written.torrent.piece_size)} pieces{seeds})",
            file=sys.stderr,
        )
    print(written.magnet)


def print_summary(result: PackResult) -> None:
    """What was packed, on stderr (stdout carries only the archive's path)."""
    for item in result.missing:
        print(f"  {item.kind}: {item.describe()}", file=sys.stderr)
    packed = f"{count_of(result.files, 'file')}, {format_size(result.payload_bytes)}"
    if result.missing:
        packed += f"; {len(result.missing)} missing (recorded in bag-info.txt and index.html)"
    state = "unchanged, identical archive already there" if result.unchanged else "written"
    print(f"{result.archive.name}: {state} ({packed})", file=sys.stderr)
    print(f"sha256 {result.sha256}  ({result.checksum_file.name})", file=sys.stderr)
