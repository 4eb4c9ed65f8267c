"""``lhymirror status``: the local state of each file of a year, without any network access."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from lhymirror.api import status
from lhymirror.cli.common import (
    add_command,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    selected_manifest,
    selected_store,
    this_run_command,
)
from lhymirror.cli.jsonout import finish, wants_json
from lhymirror.core.units import count_of
from lhymirror.mirror.state import FileStatus
from lhymirror.mirror.status import TO_FETCH, StatusReport

LABELS: dict[FileStatus, str] = {
    "ok": "ok",
    "missing": "missing",
    "partial": "partial",
    "changed": "changed on disk",
    "unverified": "unverified",
    "manual": "manual pending",
    "symlink": "symlink",
    "not_a_file": "not a file",
    "unreadable": "unreadable",
}


def register(subparsers: Any) -> None:
    """Add the ``status`` command."""
    parser = add_command(
        subparsers,
        "status",
        description="""
            Show the local state of every file of a year's manifest, by lecture and homework:
            ok (present and verified), missing, partial (how much is held), changed on disk,
            unverified (no checksum known yet), manual pending, or symlink, not a file and
            unreadable for what lhymirror will not use in place of the file (links are never
            followed); then how much is still to fetch and the command to run next. Only files
            changed since they were verified are re-hashed, unless --rehash is given. Never
            uses the network.

            Exit status: 0 every file ok, 8 files still to fetch (missing, partial or
            unverified), 5 a file changed on disk or unusable, 7 only manual steps left, 2 when
            --root is not a folder.
        """,
        example="""
            lhymirror status 2022
            lhymirror status 2022 --rehash --json
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--rehash", action="store_true", help="re-hash every present file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print each file's local state by section, what is left and the next step."""
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    report = status(manifest, store, rehash=args.rehash)
    if not wants_json(args):
        command = functools.partial(this_run_command, args, manifest)
        print("\n".join(status_lines(report, command)))
    return finish(args, report.to_json(), report.error())


def status_lines(report: StatusReport, command: Callable[[str], str]) -> list[str]:
    """The files by section (as ``list`` groups them), the counts, then the next step."""
    manifest = report.manifest
    lines = [f"{manifest.course}, {manifest.year}: {report.year_dir}"]
    id_width = max((len(f.entry.id) for f in report.files), default=2)
    for section, files in report.by_section():
        lines += ["", section or "(no section)"]
        for f in files:
            label = LABELS.get(f.state, f.state)
            detail = f"  ({f.local.detail})" if f.local.detail else ""
            lines.append(f"  {f.entry.id:<{id_width}}  {label:<15}  {f.entry.path}{detail}")
    counts = report.counts()
    lines += [
        "",
        f"{counts['ok']} of {count_of(len(report.files), 'file')} ok "
        f"({format_size(report.bytes_present)})"
        + "".join(f", {counts[s]} {LABELS[s]}" for s in LABELS if s != "ok" if counts[s]),
    ]
    step = next_step_line(report, command)
    if step:
        lines.append(step)
    return lines


def next_step_line(report: StatusReport, command: Callable[[str], str]) -> str | None:
    """``next: …``: the command that brings the mirror closer to complete, or None."""
    step = report.next_step()
    if step == "fix":
        return (
            "next: remove or replace what stands at the paths marked above (links are never "
            f"followed), then run `{command('sync')}`"
        )
    if step == "sync":
        to_fetch = len(report.with_state(*TO_FETCH))
        unknown = f", {report.unknown_sizes} of unknown size" if report.unknown_sizes else ""
        return (
            f"next: `{command('sync')}` fetches {count_of(to_fetch, 'file')} "
            f"({format_size(report.bytes_to_fetch)}{unknown})"
        )
    if step == "add":
        manual = len(report.with_state("manual"))
        return (
            f"next: download {'it' if manual == 1 else f'the {manual} manual files'} by hand "
            f"as noted above, then `{command('add')} ID FILE`"
        )
    return None
