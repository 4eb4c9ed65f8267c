"""``pin``: write the checksums sync recorded back into a manifest (for maintainers)."""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lhymirror.core.errors import UsageError
from lhymirror.manifest.model import FileEntry, Manifest, write_manifest
from lhymirror.mirror.state import expected_of
from lhymirror.mirror.store import MirrorStore

INSTALL_FOLDERS = ("site-packages", "dist-packages")


@dataclass(frozen=True)
class PinReport:
    """The pinned manifest, the entries that changed, and whether the file was written."""

    path: Path
    manifest: Manifest
    changes: tuple[FileEntry, ...]
    written: bool

    def to_json(self) -> dict[str, Any]:
        """Plain data, as ``pin --json`` prints it (see docs/json.md)."""
        return {
            "manifest": str(self.path),
            "written": self.written,
            "changes": [
                {"id": entry.id, "size": entry.size, "sha256": entry.sha256}
                for entry in self.changes
            ],
        }


def pin_manifest(
    manifest: Manifest,
    store: MirrorStore,
    path: Path | str,
    *,
    dry_run: bool = False,
    shipped: bool = False,
) -> PinReport:
    """Fill in size and sha256 of entries without a sha256 (or accepted with
    ``sync --accept-upstream``) from the mirror's records, and rewrite *path* canonically.

    Nothing is written with *dry_run* or when nothing changes. *shipped*: *path* is the
    manifest lhymirror ships for the year; inside an installed package it is refused
    (``UsageError``): an upgrade would undo the change, which belongs in the repository.
    """
    path = Path(path)
    if shipped and is_installed_file(path):
        raise UsageError(
            "will not change a manifest inside the installed package",
            where=str(path),
            detail="an upgrade would undo it, and maintainers need the change in the repository",
            hint="Copy it (or use manifests/<year>.toml in a checkout) and pass --manifest FILE.",
        )
    pinned, changes = pin_recorded(manifest, store)
    write = bool(changes) and not dry_run
    if write:
        write_manifest(pinned, path)
    return PinReport(path, pinned, tuple(changes), write)


def pin_recorded(manifest: Manifest, store: MirrorStore) -> tuple[Manifest, list[FileEntry]]:
    """The manifest with recorded checksums filled in, and the entries that changed."""
    changes = []
    for entry in manifest.files:
        expected = expected_of(entry, store.record(entry.id))
        pinned = (expected.size, expected.sha256)
        if expected.origin != "recorded" or (entry.size, entry.sha256) == pinned:
            continue
        changes.append(replace(entry, size=expected.size, sha256=expected.sha256))
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
