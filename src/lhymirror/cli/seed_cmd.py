"""``lhymirror seed``: share a verified archive or year's mirror over BitTorrent until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lhymirror import api
from lhymirror.cli.common import (
    add_command,
    add_root_argument,
    format_size,
    selected_manifest,
    selected_store,
)
from lhymirror.cli.swarm_options import add_session_arguments, rate, session_options
from lhymirror.core.errors import UsageError
from lhymirror.core.units import count_of
from lhymirror.swarm.engine import DEFAULT_PORT

if TYPE_CHECKING:
    from lhymirror.swarm.seed import Seeder, SeedStatus


def register(subparsers: Any) -> None:
    """Add the ``seed`` command."""
    parser = add_command(
        subparsers,
        "seed",
        description="""
            Share an archive (with <archive>.torrent beside it, or --torrent FILE) or a
            year's mirror (--year) with BitTorrent peers until Ctrl-C. What is shared is
            verified first: the archive like `lhymirror verify`, the mirror's files against
            their recorded checksums; damaged bytes are never served, and seeding never
            writes to your files. Peers find you through the DHT (--no-dht to stay off it)
            and local service discovery on your network; a live line shows peers and upload
            rate, a summary follows on exit. Needs the swarm extra:
            pip install 'lhymirror[swarm]'.
        """,
        example="""
            lhymirror seed dist/lhy-ml-2022-v1.zip --upload-limit 2M
            lhymirror seed --year 2022 --torrent lhy-ml-2022-mirror.torrent
        """,
    )
    parser.add_argument("archive", nargs="?", type=Path, metavar="ARCHIVE", help="an archive")
    parser.add_argument("--year", type=int, dest="year_opt", metavar="YEAR", help="seed a mirror")
    parser.add_argument(
        "--manifest", type=Path, metavar="FILE", help="use this manifest instead of a shipped one"
    )
    add_root_argument(parser)
    parser.add_argument(
        "--torrent", type=Path, metavar="FILE",
        help="seed exactly this torrent (default: <archive>.torrent, or the year's files)",
    )  # fmt: skip
    parser.add_argument(
        "--upload-limit", type=rate, metavar="RATE",
        help="cap the upload rate, e.g. 500K or 2M (bytes per second; default: no cap)",
    )  # fmt: skip
    add_session_arguments(parser, port=DEFAULT_PORT)
    parser.set_defaults(handler=run, year_pos=None)


def run(args: argparse.Namespace) -> int:
    """Verify, then seed until SIGINT or SIGTERM; print a summary."""
    api.require_swarm()
    seeder = _seeder(args)
    target = seeder.target
    print(f"seeding {target.name} on {args.bind}:{_listening_port(seeder, args)}", file=sys.stderr)
    print(target.magnet)
    sys.stdout.flush()
    seeder.connect(args.peers)
    previous = {sig: signal.signal(sig, lambda *_: seeder.stop()) for sig in _STOP_SIGNALS}
    live = sys.stderr.isatty() and not args.quiet
    try:
        final = seeder.run(lambda status: _show(status, live))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if live:
            sys.stderr.write("\n")
    if not args.quiet:
        print(_summary(final), file=sys.stderr)
    return 0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LISTEN_WAIT = 2.0  # seconds for libtorrent to open its listen socket


def _listening_port(seeder: Seeder, args: argparse.Namespace) -> int:
    """The port peers reach the seed on; a seed nobody can reach is a usage error, not a wait."""
    deadline = time.monotonic() + LISTEN_WAIT
    while (port := seeder.port) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if port == 0:
        seeder.stop()
        raise UsageError(
            "cannot listen for peers",
            where=f"{args.bind}:{args.port}",
            hint="Give --bind an address of this machine and --port a free port (0: any).",
        )
    return port


def _seeder(args: argparse.Namespace) -> Seeder:
    if (args.archive is None) == (args.year_opt is None and args.manifest is None):
        raise UsageError(
            "name what to seed",
            hint="Give an ARCHIVE, or --year YEAR for the mirror (not both).",
        )
    options = session_options(args, upload_limit=args.upload_limit)
    if args.archive is not None:
        return api.seed_archive(args.archive, torrent=args.torrent, options=options)
    manifest, _ = selected_manifest(args)
    return api.seed_mirror(
        manifest, selected_store(args, manifest), torrent=args.torrent, options=options
    )


def _show(status: SeedStatus, live: bool) -> None:
    if not live:
        return
    line = (
        f"{status.state}: {status.peers} peers, up {format_size(status.upload_rate)}/s, "
        f"{format_size(status.uploaded)} sent"
    )
    sys.stderr.write(f"\r{line:<70}")
    sys.stderr.flush()


def _summary(status: SeedStatus) -> str:
    minutes = status.seconds / 60
    return (
        f"seeded {format_size(status.uploaded)} to {count_of(status.peers_seen, 'peer')} "
        f"in {minutes:.1f} min"
    )
