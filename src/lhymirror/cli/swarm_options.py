"""Options the BitTorrent commands share (``seed``, ``fetch``, ``sync --swarm``)."""

from __future__ import annotations

import argparse
import re

from lhymirror.core.errors import UsageError
from lhymirror.swarm.engine import SessionOptions, parse_peer

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?B)?(?:/s)?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def add_session_arguments(parser: argparse.ArgumentParser, *, port: int | None) -> None:
    """``--port --bind --no-dht --no-lsd --peer``; *port* None: any free port by default."""
    default = "any free port" if port is None else str(port)
    parser.add_argument(
        "--port", type=port_number, default=port if port is not None else 0, metavar="N",
        help=f"BitTorrent listen port (default: {default}; 0: any free port)",
    )  # fmt: skip
    parser.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDRESS",
        help="listen on this address only (default: every interface)",
    )  # fmt: skip
    parser.add_argument(
        "--no-dht", dest="dht", action="store_false",
        help="do not look for peers in the DHT (on by default)",
    )  # fmt: skip
    parser.add_argument(
        "--no-lsd", dest="lsd", action="store_false",
        help="do not look for peers on the local network (local service discovery)",
    )  # fmt: skip
    parser.add_argument(
        "--peer", dest="peers", action="append", default=[], type=peer_address,
        metavar="HOST:PORT", help="connect to this peer, e.g. a classmate's seed (repeatable)",
    )  # fmt: skip


def session_options(args: argparse.Namespace, *, upload_limit: int | None = None) -> SessionOptions:
    """The session options the shared arguments describe."""
    return SessionOptions(
        bind=args.bind, port=args.port, dht=args.dht, lsd=args.lsd, upload_limit=upload_limit
    )


def port_number(text: str) -> int:
    """argparse type for ``--port``: 0 (any free port) to 65535."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return number


def peer_address(text: str) -> tuple[str, int]:
    """argparse type for ``--peer``."""
    try:
        return parse_peer(text)
    except UsageError as exc:  # argparse reports it its own way
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from exc


def rate(text: str) -> int:
    """argparse type for a rate: bytes per second, with an optional K, M or G (binary)."""
    match = _RATE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate such as 500K or 2M")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
