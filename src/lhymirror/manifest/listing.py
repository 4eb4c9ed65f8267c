"""Choosing a manifest (a shipped year or a file) and listing its entries (``lhymirror list``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from lhymirror.core.errors import UsageError
from lhymirror.manifest.model import (
    FileEntry,
    Link,
    Manifest,
    load_manifest,
    section_sort_key,
    shipped_manifest_path,
)

T = TypeVar("T")


def select_manifest(
    year: int | None = None, path: Path | str | None = None
) -> tuple[Manifest, Path]:
    """The manifest of *year* shipped with lhymirror, or the one at *path*; and where it is.

    With both, they must agree. Raises ``UsageError`` (no year, years disagree, *path* missing
    or a folder) or ``ManifestError`` listing every problem of an invalid manifest.
    """
    if path is not None:
        path = Path(path)
        check_manifest_path(path)
        manifest = load_manifest(path)
        if year is not None and year != manifest.year:
            raise UsageError(
                "year does not match the manifest",
                where=str(path),
                detail=f"asked for {year}, the manifest describes {manifest.year}",
                hint="Drop YEAR or pick the matching manifest.",
            )
        return manifest, path
    if year is None:
        raise UsageError("no year given", hint="Name a YEAR (e.g. 2022) or pass --manifest FILE.")
    shipped = shipped_manifest_path(year)
    return load_manifest(shipped), shipped


def check_manifest_path(path: Path, *, named_by: str = "--manifest") -> None:
    """A manifest path that is not there is a usage error (exit 2), not an invalid manifest.

    *named_by*: the argument that named it (``--manifest`` also allows a YEAR instead).
    """
    if path.is_dir():
        raise UsageError(
            f"{named_by} is a folder", where=str(path), hint="Give the manifest's .toml file."
        )
    if not path.exists():
        instead = ", or name a YEAR to use a shipped manifest" if named_by == "--manifest" else ""
        raise UsageError("no such manifest file", where=str(path), hint=f"Check the path{instead}.")


@dataclass(frozen=True)
class ListReport:
    """The entries of a manifest that ``list`` shows, in manifest order."""

    manifest: Manifest
    files: tuple[FileEntry, ...]
    links: tuple[Link, ...]

    @property
    def known_bytes(self) -> int:
        """Total size of the listed files whose size the manifest gives."""
        return sum(entry.size or 0 for entry in self.files)

    def by_section(self, *, links: bool = True) -> list[tuple[str | None, list[FileEntry | Link]]]:
        """The listed entries grouped by section, sections in course order (lectures first)."""
        entries: list[FileEntry | Link] = [*self.files, *(self.links if links else ())]
        return group_by_section(entries, lambda entry: entry.section)

    def to_json(self) -> dict[str, Any]:
        """Plain data: the manifest's header and every listed entry, every field (null if unset)."""
        manifest = self.manifest
        return {
            "course": manifest.course,
            "slug": manifest.effective_slug,
            "year": manifest.year,
            "version": manifest.version,
            "files": [
                {**asdict(entry), "source_kinds": list(entry.source_kinds)} for entry in self.files
            ],
            "links": [asdict(link) for link in self.links],
        }


def list_entries(manifest: Manifest, kinds: set[str] | None = None) -> ListReport:
    """The manifest's files and links, only those of *kinds* when given."""
    return ListReport(
        manifest,
        tuple(f for f in manifest.files if kinds is None or f.kind in kinds),
        tuple(link for link in manifest.links if kinds is None or link.kind in kinds),
    )


def group_by_section(
    items: list[T], section_of: Callable[[T], str | None]
) -> list[tuple[str | None, list[T]]]:
    """*items* grouped by ``section_of(item)``, sections in course order, items in their order."""
    groups: dict[str | None, list[T]] = {}
    for item in items:
        groups.setdefault(section_of(item), []).append(item)
    return sorted(groups.items(), key=lambda group: section_sort_key(group[0]))
