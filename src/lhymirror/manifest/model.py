"""The manifest: a typed, validated description of everything one year of a course offers.

``load_manifest`` reads a TOML file (``schema = 1``) and either returns a :class:`Manifest` or
raises :class:`~lhymirror.core.errors.ManifestError` listing *every* problem found, each naming the
file, the entry (``files[12] (hw04-dataset)``) and the field. ``dump_manifest`` is the canonical
writer: a manifest round-trips (load → dump → load gives an equal model) and entries keep their
order, so tools can update checksums in place.

The objects are plain frozen dataclasses. The rules they were checked against live in
:mod:`lhymirror.manifest.schema` (pydantic), which is imported only for a text not checked before
(:mod:`lhymirror.manifest.checked`).
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from lhymirror.core.errors import LhymirrorError, ManifestError
from lhymirror.core.units import slugify
from lhymirror.manifest.sources import source_kind

FileKind = Literal["slide", "hw-slide", "dataset", "code", "other"]
LinkKind = Literal["video", "notebook", "competition", "page"]
FILE_KINDS: tuple[str, ...] = get_args(FileKind)
LINK_KINDS: tuple[str, ...] = get_args(LinkKind)
# An entry id names lhymirror's own files of the entry (its record, its partial download), so
# it is a safe file name; the names derived from it (``<id>.part00``) keep to the same letters.
ENTRY_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One piece of a file that upstream split into several downloads."""

    urls: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """A file to download and keep: a slide, a homework's slides, a dataset, code."""

    id: str
    kind: FileKind
    title: str | None = None
    section: str | None = None
    path: str
    urls: tuple[str, ...] | None = None
    parts: tuple[Part, ...] | None = None
    size: int | None = None
    sha256: str | None = None
    manual: str | None = None
    insecure_http: bool = False
    note: str | None = None

    @property
    def is_manual_only(self) -> bool:
        """True when the file can only be obtained by a human step."""
        return self.manual is not None and not self.urls and not self.parts

    @property
    def all_sources(self) -> tuple[str, ...]:
        """Every source string of the entry, parts included, in order."""
        if self.parts:
            return tuple(url for part in self.parts for url in part.urls)
        return self.urls or ()

    @property
    def source_kinds(self) -> tuple[str, ...]:
        """The distinct kinds of source, in first-seen order (``https``, ``gdrive``…)."""
        kinds = [source_kind(src) for src in self.all_sources]
        if self.manual:
            kinds.append("manual")
        return tuple(dict.fromkeys(kinds))


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A resource kept as a link only: a video, a notebook, a competition page."""

    kind: LinkKind
    title: str | None = None
    section: str | None = None
    url: str
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """Everything one year of a course offers for download, plus its link-only resources."""

    schema: Literal[1] = 1
    course: str
    slug: str | None = None
    year: int
    version: str
    homepage: str | None = None
    released: dt.date | None = None
    files: tuple[FileEntry, ...] = ()
    links: tuple[Link, ...] = ()

    @property
    def effective_slug(self) -> str:
        """The slug used in archive names: ``slug`` or one derived from ``course``."""
        if self.slug:
            return self.slug
        return slugify(self.course, default="course")

    def file(self, entry_id: str) -> FileEntry:
        """The file entry with this id; ``KeyError`` if there is none."""
        for entry in self.files:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    def unknown_ids(self, ids: Iterable[str]) -> list[str]:
        """Those of *ids* that name no file entry, in their order."""
        known = {entry.id for entry in self.files}
        return [entry_id for entry_id in ids if entry_id not in known]

    def with_file(self, entry: FileEntry) -> Manifest:
        """A copy of the manifest with the entry of the same id replaced, order kept."""
        files = tuple(entry if old.id == entry.id else old for old in self.files)
        return replace(self, files=files)


def part_table(value: Any) -> Any:
    """A bare string in ``parts`` is shorthand for a part with that one source."""
    return {"urls": [value]} if isinstance(value, str) else value


def build_manifest(raw: dict[str, Any]) -> Manifest:
    """The :class:`Manifest` of raw data that passed the manifest's rules (not checked again).

    Use :func:`manifest_from_data` for data that may be invalid.
    """
    files = tuple(_file_entry(entry) for entry in raw.get("files", ()))
    links = tuple(Link(**link) for link in raw.get("links", ()))
    return Manifest(**{**raw, "files": files, "links": links})


def _file_entry(data: dict[str, Any]) -> FileEntry:
    fields = dict(data)
    if fields.get("urls") is not None:
        fields["urls"] = tuple(fields["urls"])
    if fields.get("parts") is not None:
        tables = (part_table(part) for part in fields["parts"])
        fields["parts"] = tuple(Part(**{**t, "urls": tuple(t["urls"])}) for t in tables)
    return FileEntry(**fields)


# ---------------------------------------------------------------------------------------------
# Reading


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate a manifest file; raise ``ManifestError`` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), [f"cannot read: {exc}"]) from None
    return parse_manifest(text, where=str(path))


def parse_manifest(text: str, *, where: str = "<manifest>") -> Manifest:
    """Validate manifest TOML text; ``where`` names it in error messages.

    A text that passed before, under this version of lhymirror, is not checked again (see
    :mod:`lhymirror.manifest.checked`): its TOML is parsed and the manifest built.
    """
    from lhymirror.manifest import checked  # noqa: PLC0415  (a sibling that imports this one)

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(where, [f"not valid TOML: {exc}"]) from None
    if checked.passed_before(text):
        return build_manifest(raw)
    manifest = manifest_from_data(raw, where=where)
    checked.remember_passed(text)
    return manifest


def manifest_from_data(raw: dict[str, Any], *, where: str = "<manifest>") -> Manifest:
    """Check raw manifest data (parsed TOML) and build it; ``ManifestError`` lists every problem.

    Python data may give lists as tuples and an absent optional field as None.
    """
    if not isinstance(raw, dict):
        raise ManifestError(where, [f"must be a table, not {type(raw).__name__}"])
    from lhymirror.manifest.schema import data_problems  # noqa: PLC0415  (pydantic: slow)

    problems = data_problems(raw)
    if problems:
        raise ManifestError(where, problems)
    return build_manifest(raw)


# ---------------------------------------------------------------------------------------------
# Warnings (valid, but worth a maintainer's look)


# A GitHub URL on a branch or on the "latest" release serves whatever is there today.
_MOVING_REF = re.compile(
    r"^https://(?:github\.com/[^/]+/[^/]+/(?:(?:raw|blob)/(?:main|master|HEAD)/"
    r"|releases/(?:latest|download/latest)/)"
    r"|raw\.githubusercontent\.com/[^/]+/[^/]+/(?:main|master|HEAD)/)",
    re.IGNORECASE,
)


def manifest_warnings(manifest: Manifest) -> list[str]:
    """Findings that do not make a manifest invalid but weaken what users get from it."""
    warnings = []
    for index, entry in enumerate(manifest.files):
        label = f"files[{index}] ({entry.id})"
        if entry.sha256 is None and not entry.is_manual_only:
            warnings.append(f"{label}: no sha256 (trusted on first download only)")
        if entry.kind == "dataset" and entry.urls is not None and len(entry.urls) < 2:
            warnings.append(f"{label}: dataset has a single source (no failover)")
        for source in entry.all_sources:
            if _MOVING_REF.match(source):
                warnings.append(
                    f"{label}: {source} follows a moving branch or release "
                    "(its bytes can change; use a commit or tag)"
                )
    for index, link in enumerate(manifest.links):
        if link.section is None:
            warnings.append(f"links[{index}] ({link.url}): link has no section")
    return warnings


# ---------------------------------------------------------------------------------------------
# Writing

_TOP_ORDER = ("schema", "course", "slug", "year", "version", "homepage", "released")
_FILE_ORDER = (
    "id", "kind", "title", "section", "path", "urls", "parts",
    "size", "sha256", "manual", "insecure_http", "note",
)  # fmt: skip
_LINK_ORDER = ("kind", "title", "section", "url", "note")


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """The manifest as plain TOML-ready data, keys in canonical order, defaults left out."""
    data = _set_fields(manifest)
    data["schema"] = manifest.schema  # a required constant: always written
    top = _ordered(data, _TOP_ORDER)
    if manifest.files:
        top["files"] = [_file_dict(entry) for entry in manifest.files]
    if manifest.links:
        top["links"] = [_ordered(_set_fields(link), _LINK_ORDER) for link in manifest.links]
    return top


def _file_dict(entry: FileEntry) -> dict[str, Any]:
    data = _set_fields(entry)
    if entry.parts is not None:
        data["parts"] = [_part_value(part) for part in entry.parts]
    return _ordered(data, _FILE_ORDER)


def _part_value(part: Part) -> str | dict[str, Any]:
    if len(part.urls) == 1 and part.size is None and part.sha256 is None:
        return part.urls[0]
    return _ordered(_set_fields(part), ("urls", "size", "sha256"))


def _set_fields(item: Part | FileEntry | Link | Manifest) -> dict[str, Any]:
    """The fields of *item* that differ from their defaults (None is every optional's)."""
    return {
        field.name: getattr(item, field.name)
        for field in fields(item)
        if getattr(item, field.name) not in (None, field.default)
    }


def _ordered(data: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in order:
        if key in data:
            value = data[key]
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def dump_manifest(manifest: Manifest) -> str:
    """Canonical TOML text of a manifest."""
    import tomli_w  # noqa: PLC0415  (only writers need it)

    return tomli_w.dumps(manifest_to_dict(manifest), multiline_strings=False, indent=4)


def write_manifest(manifest: Manifest, path: Path | str) -> None:
    """Write the canonical form of *manifest* to *path* atomically."""
    from lhymirror.core.fsutil import atomic_write_text  # noqa: PLC0415  (keeps model import light)

    atomic_write_text(Path(path), dump_manifest(manifest))


# ---------------------------------------------------------------------------------------------
# Shipped manifests


def _packaged_dir() -> Path:
    import importlib.resources  # noqa: PLC0415  (only a shipped year needs it)

    return Path(str(importlib.resources.files("lhymirror") / "manifests"))


def _checkout_dir() -> Path:
    # In an editable install the wheel's force-included copy does not exist; the repository's
    # top-level manifests/ folder is the same data.
    return Path(__file__).resolve().parents[3] / "manifests"


def shipped_manifest_dir() -> Path:
    """Folder holding the manifests shipped with lhymirror."""
    packaged = _packaged_dir()
    return packaged if packaged.is_dir() else _checkout_dir()


def shipped_years() -> list[int]:
    """Years for which a manifest ships with lhymirror, ascending."""
    folder = shipped_manifest_dir()
    return sorted(int(p.stem) for p in folder.glob("*.toml") if p.stem.isdigit())


def shipped_manifest_path(year: int) -> Path:
    """Path of the shipped manifest of *year*; ``LhymirrorError`` if none ships."""
    path = shipped_manifest_dir() / f"{year}.toml"
    if not path.is_file():
        years = ", ".join(str(y) for y in shipped_years()) or "none"
        raise LhymirrorError(
            "no manifest for this year",
            where=str(year),
            detail=f"lhymirror ships manifests for {years}",
            hint="Pass --manifest FILE to use another manifest.",
        )
    return path


# ---------------------------------------------------------------------------------------------
# Ordering helpers shared by listings and index pages

_SECTION_NUMBER = re.compile(r"^(?P<name>.*?)\s*(?P<num>\d+)$")


def section_sort_key(section: str | None) -> tuple[int, str, int, str]:
    """Order sections as the course page does: lectures, then homework, then the rest."""
    if section is None:
        return (3, "", 0, "")
    match = _SECTION_NUMBER.match(section)
    name, number = (match["name"], int(match["num"])) if match else (section, 0)
    group = 0 if name.lower().startswith("lecture") else 1 if name.upper() == "HW" else 2
    return (group, name.lower(), number, section)
