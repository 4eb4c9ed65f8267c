"""The manifest: a typed, validated description of everything one year of a course offers.

``load_manifest`` reads a TOML file (``schema = 1``) and either returns a :class:`Manifest` or
raises :class:`~lhymirror.core.errors.ManifestError` listing *every* problem found, each naming the
file, the entry (``files[12] (hw04-dataset)``) and the field. ``dump_manifest`` is the canonical
writer: a manifest round-trips (load → dump → load gives an equal model) and entries keep their
order, so tools can update checksums in place.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from lhymirror.core.errors import LhymirrorError, ManifestError
from lhymirror.core.safepath import RESERVED_FOLDER, is_reserved, path_problems
from lhymirror.core.units import slugify
from lhymirror.manifest.checks import collection_problems, field_problems, toml_value
from lhymirror.manifest.sources import parse_source, source_kind

FileKind = Literal["slide", "hw-slide", "dataset", "code", "other"]
LinkKind = Literal["video", "notebook", "competition", "page"]
FILE_KINDS: tuple[str, ...] = get_args(FileKind)
LINK_KINDS: tuple[str, ...] = get_args(LinkKind)
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, Field(ge=0)]
EntryId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=60)]
NonEmpty = Annotated[str, Field(min_length=1)]


def _check_source(text: str) -> str:
    parse_source(text)  # raises ValueError with a readable message
    return text


def _check_sources(urls: tuple[str, ...]) -> tuple[str, ...]:
    """Validate every source, reporting all bad ones in one message."""
    problems = []
    for url in urls:
        try:
            parse_source(url)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return urls


SourceText = Annotated[str, Field(min_length=1)]


def _list_as_tuple(value: Any) -> Any:
    """TOML arrays arrive as lists; the model keeps tuples (strict mode accepts only those)."""
    return tuple(value) if isinstance(value, list) else value


def _not_bool_or_float(value: Any) -> Any:
    """``schema = true`` or ``1.0`` equals 1 in Python; the manifest wants the integer."""
    if isinstance(value, bool | float):
        raise ValueError(f"must be the whole number 1, not {toml_value(value)}")
    return value


class _Model(BaseModel):
    # Strict: a quoted "2022" is not a year and 1.0 is not a size. TOML already gives every
    # value its type, so whatever would need coercing is a mistake in the manifest.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Part(_Model):
    """One piece of a file that upstream split into several downloads."""

    urls: Annotated[tuple[SourceText, ...], BeforeValidator(_list_as_tuple)] = Field(min_length=1)
    size: Size | None = None
    sha256: Sha256 | None = None

    @field_validator("urls")
    @classmethod
    def _valid_sources(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        return _check_sources(urls)


def _part_shorthand(value: Any) -> Any:
    """A bare string in ``parts`` is shorthand for a part with that one source."""
    return {"urls": [value]} if isinstance(value, str) else value


class FileEntry(_Model):
    """A file to download and keep: a slide, a homework's slides, a dataset, code."""

    id: EntryId
    kind: FileKind
    title: NonEmpty | None = None
    section: NonEmpty | None = None
    path: NonEmpty
    urls: Annotated[tuple[SourceText, ...], BeforeValidator(_list_as_tuple)] | None = None
    parts: (
        Annotated[
            tuple[Annotated[Part, BeforeValidator(_part_shorthand)], ...],
            BeforeValidator(_list_as_tuple),
        ]
        | None
    ) = None
    size: Size | None = None
    sha256: Sha256 | None = None
    manual: NonEmpty | None = None
    insecure_http: bool = False
    note: NonEmpty | None = None

    @field_validator("path")
    @classmethod
    def _safe_path(cls, path: str) -> str:
        problems = path_problems(path)
        if is_reserved(path):
            problems.append(f"uses the name {RESERVED_FOLDER!r}, reserved for lhymirror's records")
        if "%" in path:
            # BagIt manifests must write '%' as '%25' (RFC 8493), which bagit-python and
            # `sha256sum -c` then fail to match: archives would not verify with standard tools.
            problems.append("contains '%' (archives would not verify with standard BagIt tools)")
        if problems:
            raise ValueError(f"path {path!r} " + "; ".join(problems))
        return path

    @field_validator("urls")
    @classmethod
    def _valid_sources(cls, urls: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if urls is not None:
            if not urls:
                raise ValueError("urls is empty (list at least one source, or use manual)")
            return _check_sources(urls)
        return urls

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


class Link(_Model):
    """A resource kept as a link only: a video, a notebook, a competition page."""

    kind: LinkKind
    title: NonEmpty | None = None
    section: NonEmpty | None = None
    url: NonEmpty
    note: NonEmpty | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return _check_source(url)


class Manifest(_Model):
    """Everything one year of a course offers for download, plus its link-only resources."""

    schema_: Annotated[Literal[1], BeforeValidator(_not_bool_or_float)] = Field(alias="schema")
    course: NonEmpty
    slug: Slug | None = None
    year: Annotated[int, Field(ge=1900, le=2999)]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]*$", max_length=40)]
    homepage: NonEmpty | None = None
    released: dt.date | None = None
    files: Annotated[tuple[FileEntry, ...], BeforeValidator(_list_as_tuple)] = ()
    links: Annotated[tuple[Link, ...], BeforeValidator(_list_as_tuple)] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

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
        return self.model_copy(update={"files": files})


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
    """Validate manifest TOML text; ``where`` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(where, [f"not valid TOML: {exc}"]) from None
    problems = collection_problems(raw)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = field_problems(exc, raw) + problems
        manifest = None
    if problems or manifest is None:
        raise ManifestError(where, problems)
    return manifest


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
    data = manifest.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
    data["schema"] = manifest.schema_  # a required constant: always written
    top = _ordered(data, _TOP_ORDER)
    if manifest.files:
        top["files"] = [_file_dict(entry) for entry in manifest.files]
    if manifest.links:
        top["links"] = [
            _ordered(link.model_dump(exclude_none=True), _LINK_ORDER) for link in manifest.links
        ]
    return top


def _file_dict(entry: FileEntry) -> dict[str, Any]:
    data = entry.model_dump(exclude_none=True, exclude_defaults=True)
    if entry.parts is not None:
        data["parts"] = [_part_value(part) for part in entry.parts]
    return _ordered(data, _FILE_ORDER)


def _part_value(part: Part) -> str | dict[str, Any]:
    if len(part.urls) == 1 and part.size is None and part.sha256 is None:
        return part.urls[0]
    return _ordered(part.model_dump(exclude_none=True), ("urls", "size", "sha256"))


def _ordered(data: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in order:
        if key in data:
            value = data[key]
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def dump_manifest(manifest: Manifest) -> str:
    """Canonical TOML text of a manifest."""
    return tomli_w.dumps(manifest_to_dict(manifest), multiline_strings=False, indent=4)


def write_manifest(manifest: Manifest, path: Path | str) -> None:
    """Write the canonical form of *manifest* to *path* atomically."""
    from lhymirror.core.fsutil import atomic_write_text  # noqa: PLC0415  (keeps model import light)

    atomic_write_text(Path(path), dump_manifest(manifest))


# ---------------------------------------------------------------------------------------------
# Shipped manifests


def _packaged_dir() -> Path:
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
