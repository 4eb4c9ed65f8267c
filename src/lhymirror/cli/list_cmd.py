"""``lhymirror list``: what a year's manifest holds, grouped by section."""

from __future__ import annotations

import argparse
from typing import Any

from lhymirror.api import list_entries
from lhymirror.cli.common import (
    add_command,
    add_list_option,
    add_manifest_arguments,
    format_size,
    selected_manifest,
)
from lhymirror.cli.jsonout import finish, wants_json
from lhymirror.core.units import count_of
from lhymirror.manifest.listing import ListReport
from lhymirror.manifest.model import (
    FILE_KINDS,
    LINK_KINDS,
    FileEntry,
)


def register(subparsers: Any) -> None:
    """Add the ``list`` command."""
    parser = add_command(
        subparsers,
        "list",
        description="""
            Show every file of a year's manifest grouped by lecture and homework: id, kind,
            size when known, local path and the kinds of source it comes from. Link-only
            resources (videos, notebooks, competition pages) are counted; --links lists them.
        """,
        example="""
            lhymirror list 2022 --kind dataset
            lhymirror list --manifest my-course.toml --json
        """,
    )
    add_manifest_arguments(parser)
    add_list_option(
        parser,
        "--kind",
        metavar="KIND",
        choices=FILE_KINDS + LINK_KINDS,
        help=f"only entries of these kinds ({', '.join(FILE_KINDS + LINK_KINDS)}); "
        "comma-separated or repeated",
    )
    parser.add_argument("--links", action="store_true", help="also list link-only resources")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List the manifest."""
    manifest, _ = selected_manifest(args)
    kinds = set(args.kind) if args.kind else None
    report = list_entries(manifest, kinds)
    if wants_json(args):
        return finish(args, report.to_json(), None)
    show_links = args.links or bool(kinds and kinds & set(LINK_KINDS))
    lines = _table_lines(report, show_links=show_links)
    print("\n".join(lines))
    return 0


def _table_lines(report: ListReport, *, show_links: bool) -> list[str]:
    manifest, files, links = report.manifest, report.files, report.links
    lines = [f"{manifest.course}, {manifest.year} (manifest version {manifest.version})"]
    id_width = max((len(f.id) for f in files), default=2)
    for section, group in report.by_section(links=show_links):
        lines.append("")
        lines.append(section or "(no section)")
        for entry in group:
            if isinstance(entry, FileEntry):
                lines.append(_file_row(entry, id_width))
            else:
                title = entry.title or ""
                lines.append(f"  {'':<{id_width}}  {entry.kind:<11}  {title}  {entry.url}")
    total = report.known_bytes
    unknown = sum(1 for f in files if f.size is None)
    lines.append("")
    lines.append(
        f"{count_of(len(files), 'file')}, {format_size(total)} known"
        + (f" ({unknown} of unknown size)" if unknown else "")
        + f"; {count_of(len(links), 'link')}"
        + ("" if show_links or not links else " (--links to show them)")
    )
    return lines


def _file_row(entry: FileEntry, id_width: int) -> str:
    sources = ",".join(entry.source_kinds)
    parts = f" [{count_of(len(entry.parts), 'part')}]" if entry.parts else ""
    return (
        f"  {entry.id:<{id_width}}  {entry.kind:<11}  {format_size(entry.size):>9}  "
        f"{entry.path}  ({sources}{parts})"
    )
