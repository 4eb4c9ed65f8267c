"""The manifest's rules, checked by pydantic: what makes raw TOML data a valid manifest.

These models only *check*; the objects the rest of lhymirror uses are the plain dataclasses of
:mod:`lhymirror.manifest.model`, built from the data once it passed. pydantic's import and model
building cost about 0.1 s, more than a no-op sync, so this module is imported only when a
manifest text has not been checked before (see :mod:`lhymirror.manifest.checked`).

Each model has the fields of its dataclass, same names and defaults (a test holds them equal).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from lhymirror.core.safepath import RESERVED_FOLDER, is_reserved, path_problems
from lhymirror.manifest.checks import collection_problems, field_problems, toml_value
from lhymirror.manifest.model import ENTRY_ID_PATTERN, FileKind, LinkKind, part_table
from lhymirror.manifest.sources import parse_source

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, Field(ge=0)]
EntryId = Annotated[str, Field(pattern=ENTRY_ID_PATTERN, max_length=100)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=60)]
NonEmpty = Annotated[str, Field(min_length=1)]
SourceText = Annotated[str, Field(min_length=1)]


def data_problems(raw: dict[str, Any]) -> list[str]:
    """Every problem of raw manifest data (parsed TOML), in the manifest's words; [] if valid."""
    problems = collection_problems(raw)
    try:
        ManifestSchema.model_validate(raw)
    except ValidationError as exc:
        problems = field_problems(exc, raw) + problems
    return problems


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


def _list_as_tuple(value: Any) -> Any:
    """TOML arrays arrive as lists; strict mode accepts only tuples for the tuple fields."""
    return tuple(value) if isinstance(value, list) else value


def _not_bool_or_float(value: Any) -> Any:
    """``schema = true`` or ``1.0`` equals 1 in Python; the manifest wants the integer."""
    if isinstance(value, bool | float):
        raise ValueError(f"must be the whole number 1, not {toml_value(value)}")
    return value


class _Schema(BaseModel):
    # Strict: a quoted "2022" is not a year and 1.0 is not a size. TOML already gives every
    # value its type, so whatever would need coercing is a mistake in the manifest.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PartSchema(_Schema):
    """One piece of a file that upstream split into several downloads."""

    urls: Annotated[tuple[SourceText, ...], BeforeValidator(_list_as_tuple)] = Field(min_length=1)
    size: Size | None = None
    sha256: Sha256 | None = None

    @field_validator("urls")
    @classmethod
    def _valid_sources(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        return _check_sources(urls)


class FileSchema(_Schema):
    """A file to download and keep: a slide, a homework's slides, a dataset, code."""

    id: EntryId
    kind: FileKind
    title: NonEmpty | None = None
    section: NonEmpty | None = None
    path: NonEmpty
    urls: Annotated[tuple[SourceText, ...], BeforeValidator(_list_as_tuple)] | None = None
    parts: (
        Annotated[
            tuple[Annotated[PartSchema, BeforeValidator(part_table)], ...],
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


class LinkSchema(_Schema):
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


class ManifestSchema(_Schema):
    """Everything one year of a course offers for download, plus its link-only resources."""

    # `schema` would shadow BaseModel.schema(); the TOML key is still "schema".
    schema_: Annotated[Literal[1], BeforeValidator(_not_bool_or_float)] = Field(alias="schema")
    course: NonEmpty
    slug: Slug | None = None
    year: Annotated[int, Field(ge=1900, le=2999)]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]*$", max_length=40)]
    homepage: NonEmpty | None = None
    released: dt.date | None = None
    files: Annotated[tuple[FileSchema, ...], BeforeValidator(_list_as_tuple)] = ()
    links: Annotated[tuple[LinkSchema, ...], BeforeValidator(_list_as_tuple)] = ()
