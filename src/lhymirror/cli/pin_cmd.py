"""``lhymirror pin``: write recorded checksums back into a manifest (for maintainers)."""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path
from typing import Any

from lhymirror.cli.common import (
    add_command,
    add_manifest_arguments,
    add_root_argument,
    selected_manifest,
    selected_store,
)
from lhymirror.core.errors import UsageError
from lhymirror.core.units import count_of
from lhymirror.manifest.model import FileEntry, Manifest, write_manifest
from lhymirror.mirror.store import MirrorStore

INSTALL_FOLDERS = ("site-packages", "dist-packages")


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
    if args.manifest is None and is_installed_file(path):
        raise UsageError(
            "will not change a manifest inside the installed package",
            where=str(path),
            detail="an upgrade would undo it, and maintainers need the change in the repository",
            hint="Copy it (or use manifests/<year>.toml in a checkout) and pass --manifest FILE.",
        )
    store = selected_store(args, manifest)
    pinned, changes = pin_recorded(manifest, store)
    for entry in changes:
        print(f"pinned {entry.id}: size {entry.size}, sha256 {entry.sha256}")
    if not changes:
        print(f"nothing to pin: {path} already has every recorded checksum")
    elif args.dry_run:
        entries = count_of(len(changes), "entry", "entries")
        print(f"{entries} would change; nothing was written (--dry-run)")
    else:
        write_manifest(pinned, path)
        print(f"wrote {path} ({count_of(len(changes), 'entry', 'entries')} pinned)")
    return 0


def pin_recorded(manifest: Manifest, store: MirrorStore) -> tuple[Manifest, list[FileEntry]]:
    """The manifest with recorded checksums filled in, and the entries that changed."""
    changes = []
    for entry in manifest.files:
        record = store.record(entry.id)
        if record is None or record.path != entry.path:
            continue
        if entry.sha256 is not None and not record.accepted_upstream:
            continue
        if (entry.size, entry.sha256) == (record.size, record.sha256):
            continue
        changes.append(entry.model_copy(update={"size": record.size, "sha256": record.sha256}))
    for entry in changes:
        manifest = manifest.with_file(entry)
    return manifest, changes


def is_installed_file(path: Path) -> bool:
    """True for a file inside an installed package (site-packages and the like)."""
    resolved = path.resolve()
    if any(part in INSTALL_FOLDERS for part in resolved.parts):
        return True
    install_dirs = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return any(resolved.is_relative_to(Path(folder).resolve()) for folder in install_dirs)
