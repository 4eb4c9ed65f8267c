"""Small builders shared by the test modules: seeded payloads, checksums and manifests."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from lhymirror.manifest.model import FileEntry, Manifest, manifest_from_data
from lhymirror.mirror.store import FileRecord, MirrorStore


def blob(n: int, seed: int) -> bytes:
    """*n* deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    """sha256 hex digest of *data*."""
    return hashlib.sha256(data).hexdigest()


def file_entry(
    entry_id: str,
    data: bytes | None = None,
    *,
    kind: str = "slide",
    base_url: str = "https://course.example.edu/ml",
    pin: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Raw manifest data for one file: a slide (or, with ``kind="dataset"``, a zip).

    With *data* and *pin*, its size and sha256 are pinned; *extra* adds or overrides fields.
    """
    folder, suffix = ("data", "zip") if kind == "dataset" else ("slides", "pdf")
    fields: dict[str, Any] = {
        "id": entry_id,
        "kind": kind,
        "path": f"{folder}/{entry_id}.{suffix}",
        "urls": [f"{base_url}/{entry_id}.{suffix}"],
    }
    if data is not None and pin:
        fields.update(size=len(data), sha256=sha(data))
    fields.update(extra)
    return fields


def one_entry(**fields: Any) -> FileEntry:
    """One validated slide entry, ``l01`` at ``https://example.org/l01.pdf``; *fields* override."""
    return make_manifest(file_entry("l01", base_url="https://example.org", **fields)).files[0]


def place(store: MirrorStore, entry: FileEntry, data: bytes, *, record: bytes | None) -> Path:
    """Put *data* at the entry's path; record *record*'s checksum as verified (if given)."""
    target = store.file_path(entry.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if record is not None:
        store.save_record(
            FileRecord(
                id=entry.id,
                path=entry.path,
                size=len(record),
                sha256=sha(record),
                mtime_ns=target.stat().st_mtime_ns,
                verified_at="2024-01-01T00:00:00Z",
            )
        )
    return target


def manifest_data(*files: dict[str, Any], year: int = 2022) -> dict[str, Any]:
    """Raw data of a minimal valid manifest holding *files*."""
    return {"schema": 1, "course": "ML", "year": year, "version": "1", "files": list(files)}


def make_manifest(*files: dict[str, Any], year: int = 2022, **top: Any) -> Manifest:
    """A validated manifest holding *files*; *top* adds or overrides top-level fields."""
    return manifest_from_data({**manifest_data(*files, year=year), **top})


def write_manifest(path: Path, *files: dict[str, Any], year: int = 2022, **top: Any) -> Path:
    """Write a manifest holding *files* as TOML to *path*; *top* as for :func:`make_manifest`."""
    path.write_text(tomli_w.dumps({**manifest_data(*files, year=year), **top}), encoding="utf-8")
    return path


# -- archives built member by member, hostile ones included -------------------------------------

FORMATS = ("zip", "tar", "tar.gz")


@dataclass(frozen=True)
class Spec:
    """One member to write: kind is file, dir, symlink, hardlink, fifo or device."""

    name: str
    data: bytes = b""
    kind: str = "file"
    mode: int = 0o644
    link: str = "target"


_ZIP_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "device": stat.S_IFCHR,
}
_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "device": tarfile.CHRTYPE,
}


def write_archive(
    path: Path, fmt: str, members: Iterable[Spec | tuple[str, bytes]], **zip_options: int
) -> Path:
    """Write *members* as given (order, duplicates and bad names kept) in format *fmt*."""
    specs = [m if isinstance(m, Spec) else Spec(*m) for m in members]
    if fmt == "zip":
        _write_zip(path, specs, **zip_options)
    else:
        _write_tar(path, specs, gzip_it=fmt == "tar.gz")
    return path


def _write_zip(path: Path, specs: list[Spec], compression: int = zipfile.ZIP_DEFLATED) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are the point of some tests
        for spec in specs:
            name = spec.name + "/" if spec.kind == "dir" else spec.name
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (_ZIP_TYPES[spec.kind] | spec.mode) << 16
            info.compress_type = compression
            data = spec.link.encode() if spec.kind == "symlink" else spec.data
            archive.writestr(info, data)


def _write_tar(path: Path, specs: list[Spec], *, gzip_it: bool) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for spec in specs:
            info = tarfile.TarInfo(spec.name)
            info.type = _TAR_TYPES[spec.kind]
            info.mode = spec.mode
            info.linkname = spec.link if spec.kind in ("symlink", "hardlink") else ""
            info.size = len(spec.data) if spec.kind == "file" else 0
            archive.addfile(info, io.BytesIO(spec.data) if spec.kind == "file" else None)
    data = buffer.getvalue()
    path.write_bytes(gzip.compress(data, mtime=0) if gzip_it else data)
