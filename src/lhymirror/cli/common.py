"""Pieces every command shares: help formatting, manifest selection, output helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lhymirror.cli.commands import COMMANDS
from lhymirror.core.errors import UsageError
from lhymirror.core.units import format_size
from lhymirror.manifest.model import Manifest, load_manifest, shipped_manifest_path
from lhymirror.mirror.store import MirrorStore

__all__ = [
    "HelpFormatter",
    "add_command",
    "add_manifest_arguments",
    "add_root_argument",
    "byte_progress",
    "format_size",
    "mirror_root",
    "print_json",
    "selected_manifest",
    "selected_store",
]

ROOT_ENV = "LHYMIRROR_ROOT"
DEFAULT_ROOT = Path("mirror")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-written line breaks of descriptions and examples."""


def add_command(
    subparsers: Any,
    name: str,
    *,
    description: str,
    example: str,
    summary: str | None = None,
) -> argparse.ArgumentParser:
    """Add a sub-command whose ``--help`` ends with an example.

    The one-line summary of a top-level command comes from :data:`commands.COMMANDS`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary if summary is not None else COMMANDS[name].summary,
        description=textwrap.dedent(description).strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent(example).strip(), "  "),
        formatter_class=HelpFormatter,
    )
    # Also accepted after the command; SUPPRESS keeps a --debug given before it.
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return parser


def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    """``YEAR`` | ``--year YEAR`` | ``--manifest FILE``: which manifest a command works on."""
    parser.add_argument("year_pos", nargs="?", type=int, metavar="YEAR", help="course year")
    parser.add_argument("--year", type=int, dest="year_opt", metavar="YEAR", help="course year")
    parser.add_argument(
        "--manifest", type=Path, metavar="FILE", help="use this manifest instead of a shipped one"
    )


def add_root_argument(parser: argparse.ArgumentParser, *, help_prefix: str = "") -> None:
    """``--root DIR``: the mirror folder (default ``$LHYMIRROR_ROOT``, else ``./mirror``)."""
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help=f"{help_prefix}the mirror folder (default: ${ROOT_ENV}, else ./{DEFAULT_ROOT})",
    )


def mirror_root(root: Path | None) -> Path:
    """The mirror folder: ``--root``, else ``$LHYMIRROR_ROOT``, else ``./mirror``."""
    if root is None:
        root = Path(os.environ.get(ROOT_ENV, "").strip() or DEFAULT_ROOT)
    return root.expanduser()


def selected_store(args: argparse.Namespace, manifest: Manifest) -> MirrorStore:
    """The mirror of the manifest's year under the chosen root."""
    return MirrorStore(mirror_root(args.root), manifest.year)


def selected_manifest(args: argparse.Namespace) -> tuple[Manifest, Path]:
    """Load the manifest chosen by ``YEAR`` / ``--year`` / ``--manifest``."""
    year = _selected_year(args)
    if args.manifest is not None:
        manifest = load_manifest(args.manifest)
        if year is not None and year != manifest.year:
            raise UsageError(
                "year does not match the manifest",
                where=str(args.manifest),
                detail=f"asked for {year}, the manifest describes {manifest.year}",
                hint="Drop YEAR or pick the matching manifest.",
            )
        return manifest, args.manifest
    if year is None:
        raise UsageError("no year given", hint="Name a YEAR (e.g. 2022) or pass --manifest FILE.")
    path = shipped_manifest_path(year)
    return load_manifest(path), path


def _selected_year(args: argparse.Namespace) -> int | None:
    if args.year_pos is not None and args.year_opt is not None and args.year_pos != args.year_opt:
        raise UsageError(
            "two different years given",
            detail=f"{args.year_pos} and --year {args.year_opt}",
            hint="Give the year once.",
        )
    year: int | None = args.year_pos if args.year_pos is not None else args.year_opt
    return year


def print_json(data: Any) -> None:
    """Write *data* as indented JSON to stdout."""
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


@contextlib.contextmanager
def byte_progress(
    desc: str, *, total: int | None = None, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr, shown only on a terminal and never when *quiet*."""
    if quiet or not sys.stderr.isatty():
        yield _ignore  # and tqdm is not even imported: it costs start-up time in scripts
        return
    from tqdm import tqdm  # noqa: PLC0415

    with tqdm(
        total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False
    ) as bar:

        def advance(nbytes: int) -> None:
            bar.update(nbytes)

        yield advance


def _ignore(nbytes: int) -> None:
    """A progress callback that shows nothing."""
