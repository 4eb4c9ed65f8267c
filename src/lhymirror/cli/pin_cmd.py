"""``lhymirror pin``: write recorded checksums back into a manifest (for maintainers)."""

from __future__ import annotations

import argparse
from typing import Any

from lhymirror.api import pin
from lhymirror.cli.common import (
    add_command,
    add_manifest_arguments,
    add_root_argument,
    selected_manifest,
    selected_store,
)
from lhymirror.core.units import count_of


def register(subparsers: Any) -> None:
    """Add the ``pin`` command."""
    parser = add_command(
        subparsers,
        "pin",
        description="""
            Fill in size and sha256 of every manifest entry that has no sha256 yet (and of
            entries accepted with `sync --accept-upstream`) from what sync recorded when it
            verified the download. Other entries and the order of the manifest are kept; the
            file is rewritten in canonical form. Prints what changed.

            The manifests shipped inside an installed package are not written (an upgrade would
            silently undo it, and the change belongs in the repository): name the file with
            --manifest, e.g. manifests/2022.toml in a checkout.
        """,
        example="""
            lhymirror sync --manifest manifests/2022.toml
            lhymirror pin --manifest manifests/2022.toml
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change; write nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Pin recorded checksums; print each change."""
    manifest, path = selected_manifest(args)
    store = selected_store(args, manifest)
    report = pin(manifest, store, path, dry_run=args.dry_run, shipped=args.manifest is None)
    for entry in report.changes:
        print(f"pinned {entry.id}: size {entry.size}, sha256 {entry.sha256}")
    if not report.changes:
        print(f"nothing to pin: {path} already has every recorded checksum")
    elif not report.written:
        entries = count_of(len(report.changes), "entry", "entries")
        print(f"{entries} would change; nothing was written (--dry-run)")
    else:
        print(f"wrote {path} ({count_of(len(report.changes), 'entry', 'entries')} pinned)")
    return 0
