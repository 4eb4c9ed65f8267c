"""``lhymirror verify``: prove an archive, an extracted bag or the local mirror intact, offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lhymirror.api import verify, verify_mirror
from lhymirror.archive.bagcheck import VerifyReport
from lhymirror.cli.common import (
    ByteProgress,
    add_command,
    add_root_argument,
    format_size,
    selected_manifest,
    selected_store,
)
from lhymirror.cli.jsonout import finish, wants_json
from lhymirror.core.errors import UsageError
from lhymirror.core.units import count_of


def register(subparsers: Any) -> None:
    """Add the ``verify`` command."""
    parser = add_command(
        subparsers,
        "verify",
        description="""
            Check that an archive written by `lhymirror pack` (.zip, .tar, .tar.gz), an
            extracted bag folder, or a year of the local mirror (--year) is intact. Never
            uses the network.

            An archive is read as a stream, without extracting: every payload file's size
            and sha256 against manifest-sha256.txt, the tag files against
            tagmanifest-sha256.txt, Payload-Oxum, and the archive against its .sha256 file
            when there is one. Hostile members (.., absolute paths, links, devices,
            duplicates, bombs) are reported, never followed. For the mirror every file is
            re-hashed against the manifest and the recorded checksums.

            Every problem is printed on its own line (kind: path: detail), then a summary.
            --fast checks counts and sizes only and says so.

            A .tar or .tar.gz may come from a pipe (`lhymirror verify <(curl …)`); its
            .sha256 file is then not checked. A zip cannot (save it to a file first).

            Exit status: 0 intact, 5 not intact (or not an archive at all), 2 when PATH
            does not exist, is a device, socket, empty pipe or a zip from a pipe, or the
            arguments are wrong.
        """,
        example="""
            lhymirror verify dist/lhy-ml-2022-v1.zip
            lhymirror verify --year 2022 --fast --json
        """,
    )
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        metavar="PATH",
        help="an archive (.zip, .tar, .tar.gz) or an extracted bag folder",
    )
    parser.add_argument(
        "--year", type=int, dest="year_opt", metavar="YEAR", help="check this year's mirror"
    )
    parser.add_argument(
        "--manifest", type=Path, metavar="FILE", help="with --year: use this manifest"
    )
    add_root_argument(parser, help_prefix="with --year: ")
    parser.add_argument("--fast", action="store_true", help="counts and sizes only: no checksums")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run, year_pos=None)


def run(args: argparse.Namespace) -> int:
    """Verify what was asked; print the problems and a summary."""
    with ByteProgress(quiet=wants_json(args) or args.quiet) as progress:
        report = _verify(args, progress)
    if not wants_json(args):
        print("\n".join(report_lines(report, quiet=args.quiet)))
    return finish(args, report.to_json(), report.error())


def _verify(args: argparse.Namespace, progress: ByteProgress) -> VerifyReport:
    wants_mirror = args.year_opt is not None or args.manifest is not None
    if args.path is not None and wants_mirror:
        raise UsageError(
            "PATH and --year/--manifest given together",
            hint="Verify an archive or bag folder (PATH), or the mirror (--year), not both.",
        )
    if args.path is not None:
        return verify(args.path, fast=args.fast, events=progress)
    if not wants_mirror:
        raise UsageError(
            "nothing to verify",
            hint="Give an archive or a bag folder, or --year YEAR for the local mirror.",
        )
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    return verify_mirror(manifest, store, fast=args.fast, events=progress)


def report_lines(report: VerifyReport, *, quiet: bool = False) -> list[str]:
    """Every problem on its own line, the notes, then the summary line (*quiet*: problems only)."""
    lines = [str(problem) for problem in report.problems]
    if not quiet:
        lines += [f"note: {note}" for note in report.notes]
        lines.append(summary_line(report))
    return lines


def summary_line(report: VerifyReport) -> str:
    """``intact: N files, X MB checked`` or ``NOT intact: K problems …``."""
    checked = f"{count_of(report.files_checked, 'file')}, {format_size(report.bytes_checked)}"
    how = " (sizes only, --fast)" if report.fast else ""
    if report.ok:
        return f"intact: {checked} checked{how}: {report.target}"
    problems = count_of(len(report.problems), "problem")
    return f"NOT intact: {problems} ({checked} checked{how}): {report.target}"
